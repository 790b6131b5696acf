//! Graceful shutdown: every task's end is counted whenever it happens, the
//! failures keep their values, `join` waits without cancelling, `shutdown`
//! aborts the stragglers with `GraceExpired`, and no task is left alive.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use weir_core::{
    Cause, Context, GraceExpired, MAX_KEPT_FAILURES, RunError, Shutdown, ShutdownError,
    ShutdownReport, ShutdownTrigger, SpawnRefused, TaskFailure,
};

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

const GRACE: Duration = Duration::from_secs(2);
/// Every wait in these tests is bounded: a hang fails instead of blocking.
const LIMIT: Duration = Duration::from_secs(24 * 3600);

type Outcome = Result<ShutdownReport, RunError<ShutdownError, ShutdownReport>>;

async fn bounded<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(LIMIT, fut)
        .await
        .expect("the call hung")
}

async fn shutdown(s: &Shutdown, grace: Duration) -> Outcome {
    bounded(s.shutdown(grace)).await
}

fn cooperative(shutdown: &Shutdown, name: &str, cleanup: Duration) {
    shutdown
        .spawn(name, move |ctx| async move {
            ctx.cancelled().await;
            tokio::time::sleep(cleanup).await;
        })
        .unwrap();
}

fn stubborn(shutdown: &Shutdown, name: &str) {
    shutdown
        .spawn(name, |_ctx| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        })
        .unwrap();
}

#[derive(Debug, Clone, PartialEq)]
struct FlushFailed {
    pending: u32,
}

impl std::fmt::Display for FlushFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "flush failed with {} writes pending", self.pending)
    }
}

#[derive(Debug, Clone, PartialEq)]
struct PanicCode(u32);

#[tokio::test(start_paused = true)]
async fn a_stubborn_task_is_aborted_with_grace_expired_and_counted() {
    let before = alive();
    let s = Shutdown::new();
    cooperative(&s, "cooperative", Duration::from_millis(300));
    stubborn(&s, "stubborn");
    assert_eq!(alive(), before + 2);
    assert_eq!(s.running(), ["cooperative", "stubborn"]);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let err = shutdown(&s, GRACE).await.unwrap_err();
    assert_eq!(err.error().task(), "stubborn");
    assert_eq!(err.error().count(), 1);
    let report = err.report();
    assert_eq!((report.spawned, report.finished, report.aborted), (2, 1, 1));
    assert_eq!((report.failed, report.panicked), (0, 0));
    assert!(report.is_balanced());
    assert!(!report.is_clean());
    assert_eq!(report.waited, GRACE);
    assert_eq!(report.elapsed, Duration::from_secs(1) + GRACE);
    assert_eq!(report.cause, Some(Cause::Cancelled));
    match &report.failures[..] {
        [TaskFailure::Aborted { task, cause }] => {
            assert_eq!(&**task, "stubborn");
            assert_eq!(
                cause.downcast_ref::<GraceExpired>(),
                Some(&GraceExpired { grace: GRACE })
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "task `stubborn` aborted: the shutdown grace period of 2s ran out"
    );
    assert_eq!(
        report.to_string(),
        "tasks  spawned  finished  failed  panicked  aborted\n\
         all          2         1       0         0        1\n\
         task `stubborn` aborted: the shutdown grace period of 2s ran out\n\
         cause: context cancelled; waited 2s, elapsed 3s"
    );
    assert_eq!(alive(), before, "no task outlives shutdown()");
    assert!(s.running().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_clean_shutdown_returns_ok_as_soon_as_the_last_task_ends() {
    let before = alive();
    let s = Shutdown::new();
    cooperative(&s, "a", Duration::from_millis(100));
    cooperative(&s, "b", Duration::from_millis(300));
    let report = shutdown(&s, GRACE).await.unwrap();
    assert_eq!((report.spawned, report.finished), (2, 2));
    assert!(report.is_clean());
    assert!(report.failures.is_empty());
    assert_eq!(report.waited, Duration::from_millis(300));
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn failures_keep_the_error_value_and_the_panic_payload() {
    let before = alive();
    let s = Shutdown::new();
    s.spawn("db", |ctx| async move {
        ctx.cancelled().await;
        Err(FlushFailed { pending: 3 })
    })
    .unwrap();
    s.spawn("cache", |ctx| async move {
        ctx.cancelled().await;
        if ctx.is_cancelled() {
            std::panic::panic_any(PanicCode(7));
        }
    })
    .unwrap();
    s.spawn("anyhow", |ctx| async move {
        ctx.cancelled().await;
        Err(anyhow::anyhow!("inner").context("outer"))
    })
    .unwrap();
    s.spawn("ok", |ctx| async move {
        ctx.cancelled().await;
        Ok::<(), std::io::Error>(())
    })
    .unwrap();
    let err = shutdown(&s, GRACE).await.unwrap_err();
    let report = err.report();
    assert_eq!(
        (
            report.finished,
            report.failed,
            report.panicked,
            report.aborted
        ),
        (1, 2, 1, 0)
    );
    assert_eq!(err.error().count(), 3);
    let find = |name: &str| {
        report
            .failures
            .iter()
            .find(|f| f.task() == name)
            .unwrap()
            .clone()
    };
    let db = find("db");
    assert_eq!(
        db.downcast_ref::<FlushFailed>(),
        Some(&FlushFailed { pending: 3 })
    );
    assert_eq!(
        db.to_string(),
        "task `db` failed: flush failed with 3 writes pending"
    );
    let cache = find("cache");
    let panic = cache.panic().unwrap();
    assert_eq!(panic.downcast_payload::<PanicCode>(), Some(PanicCode(7)));
    assert_eq!(
        cache.to_string(),
        "task `cache` panicked: <non-string panic payload>"
    );
    let any = find("anyhow");
    assert!(any.downcast_ref::<anyhow::Error>().is_some());
    assert_eq!(any.to_string(), "task `anyhow` failed: outer: inner");
    assert!(err.to_string().ends_with(" (and 2 more tasks)"), "{err}");
    assert_eq!(alive(), before);
}

/// Issue 17.2: a task that failed before `shutdown()` was called used to be
/// only counted in `ended_before`, and the report said "clean".
#[tokio::test(start_paused = true)]
async fn a_task_that_panics_before_the_shutdown_makes_it_unclean() {
    let s = Shutdown::new();
    s.spawn("early", |_ctx| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if true {
            panic!("boom at start-up");
        }
    })
    .unwrap();
    s.spawn("one-off", |_ctx| async {}).unwrap();
    cooperative(&s, "server", Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.running(), ["server"]);
    let snapshot = s.report();
    assert_eq!((snapshot.panicked, snapshot.finished), (1, 1));
    assert_eq!(snapshot.running(), 1);
    assert!(!snapshot.is_clean());
    assert!(snapshot.to_string().contains("running"));

    let err = shutdown(&s, GRACE).await.unwrap_err();
    let report = err.report();
    assert!(!report.is_clean());
    assert_eq!(
        (report.spawned, report.finished, report.panicked),
        (3, 2, 1)
    );
    assert_eq!(err.error().task(), "early");
    assert_eq!(
        report.failures[0].panic().map(|p| p.message()),
        Some("boom at start-up")
    );
}

#[tokio::test(start_paused = true)]
async fn join_waits_for_every_task_to_end_on_its_own() {
    let before = alive();
    let s = Shutdown::new();
    for (name, ms) in [("short", 100), ("long", 700)] {
        s.spawn(name, move |ctx| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            assert!(!ctx.is_cancelled(), "join cancels nothing");
        })
        .unwrap();
    }
    let other = s.clone();
    let report = bounded(s.join()).await.unwrap();
    assert_eq!((report.spawned, report.finished), (2, 2));
    assert_eq!(report.waited, Duration::from_millis(700));
    assert_eq!(report.cause, None);
    assert!(!other.is_shutting_down());
    assert!(other.is_closed());
    assert_eq!(alive(), before);
    // Dropping the last handle cancels the root (nothing is left to stop).
    let ctx = other.context().clone();
    drop(other);
    assert!(ctx.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn join_reports_a_failure() {
    let s = Shutdown::new();
    s.spawn("bad", |_ctx| async { Err("no config") }).unwrap();
    let err = bounded(s.join()).await.unwrap_err();
    assert_eq!(err.to_string(), "task `bad` failed: no config");
    assert_eq!(err.report().failed, 1);
}

#[tokio::test(start_paused = true)]
async fn close_refuses_spawns_and_does_not_call_f() {
    let s = Shutdown::new();
    cooperative(&s, "before", Duration::ZERO);
    assert!(!s.is_closed());
    s.close();
    s.close(); // idempotent
    assert!(s.is_closed());
    let called = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&called);
    let refused = s
        .spawn("late", move |_ctx| {
            flag.store(true, Ordering::SeqCst);
            async {}
        })
        .unwrap_err();
    assert_eq!(
        refused,
        SpawnRefused::Closed {
            task: Arc::from("late")
        }
    );
    assert_eq!(refused.task(), "late");
    assert_eq!(
        refused.to_string(),
        "task `late` not started: the shutdown coordinator is closed"
    );
    assert!(!called.load(Ordering::SeqCst));
    // The task accepted before the close still runs and is waited for.
    assert_eq!(s.running(), ["before"]);
    assert!(!s.is_shutting_down());
    let report = shutdown(&s, GRACE).await.unwrap();
    assert_eq!(report.spawned, 1);
}

#[tokio::test(start_paused = true)]
async fn a_spawn_after_the_shutdown_is_refused() {
    let s = Shutdown::new();
    let report = shutdown(&s, GRACE).await.unwrap();
    assert_eq!(report.spawned, 0);
    assert_eq!(report.cause, Some(Cause::Cancelled));
    assert!(matches!(
        s.spawn("late", |_ctx| async {}),
        Err(SpawnRefused::Closed { .. })
    ));
    // A task trying to spawn during the drain is refused too; here it
    // returns the refusal as its own failure.
    let s = Shutdown::new();
    let spawner = s.clone();
    s.spawn("spawner", move |ctx| async move {
        ctx.cancelled().await;
        spawner.spawn("last words", |_ctx| async {})
    })
    .unwrap();
    let err = shutdown(&s, GRACE).await.unwrap_err();
    assert!(err.error().first().downcast_ref::<SpawnRefused>().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_task_spawned_after_the_root_is_cancelled_gets_a_cancelled_context() {
    let s = Shutdown::new();
    s.context().cancel_with("reload");
    let seen = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&seen);
    s.spawn("late", move |ctx| async move {
        flag.store(ctx.is_cancelled(), Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
    })
    .unwrap();
    let report = shutdown(&s, GRACE).await.unwrap();
    assert!(seen.load(Ordering::SeqCst));
    assert_eq!(report.finished, 1);
    assert_eq!(report.waited, Duration::from_millis(50));
    assert_eq!(report.cause.unwrap().to_string(), "reload");
}

#[tokio::test(start_paused = true)]
async fn concurrent_shutdowns_agree_and_leave_nothing() {
    let before = alive();
    let s = Shutdown::new();
    cooperative(&s, "a", Duration::from_millis(100));
    stubborn(&s, "s");
    let other = s.clone();
    let (r1, r2) = tokio::join!(
        shutdown(&s, GRACE),
        shutdown(&other, Duration::from_secs(100))
    );
    let (r1, r2) = (r1.unwrap_err(), r2.unwrap_err());
    assert_eq!(r1.error(), r2.error());
    assert_eq!(
        (r1.report().aborted, r2.report().aborted),
        (1, 1),
        "the first grace to run out aborts; both see it"
    );
    assert_eq!(r2.report().waited, GRACE);
    let again = shutdown(&s, Duration::ZERO).await.unwrap_err();
    assert_eq!(again.report().failures, r1.report().failures);
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn a_zero_grace_aborts_what_has_not_ended_and_does_not_hang() {
    let before = alive();
    let s = Shutdown::new();
    s.spawn("done", |_ctx| async {}).unwrap();
    cooperative(&s, "needs a poll", Duration::ZERO);
    tokio::task::yield_now().await;
    let err = shutdown(&s, Duration::ZERO).await.unwrap_err();
    let report = err.report();
    assert_eq!((report.finished, report.aborted), (1, 1));
    assert_eq!(report.waited, Duration::ZERO);
    assert_eq!(err.error().task(), "needs a poll");
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn a_max_grace_waits_as_long_as_the_tasks_take() {
    let before = alive();
    let s = Shutdown::new();
    cooperative(&s, "slow cleanup", Duration::from_secs(3600));
    let report = shutdown(&s, Duration::MAX).await.unwrap();
    assert_eq!(report.finished, 1);
    assert_eq!(report.waited, Duration::from_secs(3600));
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn the_context_is_the_root_and_its_children_do_not_start_the_shutdown() {
    let s = Shutdown::new();
    let child = s.context().child();
    child.cancel();
    assert!(!s.is_shutting_down(), "a child does not start the shutdown");

    let child = s.context().child();
    let token = s.context().token();
    let (seen, ()) = tokio::join!(s.on_signal(), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        token.cancel();
    });
    assert_eq!(seen, ShutdownTrigger::Cancelled);
    assert!(s.is_shutting_down());
    assert!(child.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn each_task_gets_a_child_of_the_root() {
    let s = Shutdown::new();
    let (tx, rx) = tokio::sync::oneshot::channel::<Context>();
    s.spawn("child", move |ctx| async move {
        let _ = tx.send(ctx.clone());
        ctx.cancelled().await;
    })
    .unwrap();
    let task_ctx = rx.await.unwrap();
    task_ctx.cancel(); // the task's own context: ends the task only
    assert!(!s.is_shutting_down());
    let report = bounded(s.join()).await.unwrap();
    assert_eq!(report.finished, 1);
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_f_is_the_tasks_panic() {
    let s = Shutdown::new();
    s.spawn("maker", |_ctx| -> std::future::Ready<()> {
        panic!("could not build the task")
    })
    .unwrap();
    let err = bounded(s.join()).await.unwrap_err();
    assert_eq!(err.report().panicked, 1);
    assert_eq!(
        err.to_string(),
        "task `maker` panicked: could not build the task"
    );
}

#[tokio::test(start_paused = true)]
async fn only_the_first_failures_are_kept_by_name() {
    let s = Shutdown::new();
    let n = MAX_KEPT_FAILURES as u64 + 44;
    for i in 0..n {
        s.spawn(format!("conn-{i}"), |_ctx| async { Err("reset") })
            .unwrap();
    }
    for i in 0..1000 {
        s.spawn(format!("ok-{i}"), |_ctx| async {}).unwrap();
    }
    let err = bounded(s.join()).await.unwrap_err();
    let report = err.report();
    assert_eq!((report.failed, report.finished), (n, 1000));
    assert_eq!(report.failures.len(), MAX_KEPT_FAILURES);
    assert_eq!(err.error().count(), n);
    assert_eq!(err.error().task(), "conn-0");
    // The table lists a few and says how many more.
    let text = report.to_string();
    assert!(text.contains(&format!("... and {} more", n - 10)), "{text}");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_cancels_and_aborts_every_task() {
    let before = alive();
    let s = Shutdown::new();
    let ctx = s.context().clone();
    cooperative(&s, "a", Duration::from_secs(10));
    stubborn(&s, "b");
    tokio::task::yield_now().await;
    drop(s);
    assert!(ctx.is_cancelled());
    tokio::task::yield_now().await;
    assert_eq!(alive(), before);
}

#[test]
fn spawning_outside_a_runtime_is_refused() {
    let s = Shutdown::new();
    let err = s.spawn("nowhere", |_ctx| async {}).unwrap_err();
    assert!(matches!(err, SpawnRefused::NoRuntime { .. }));
    assert_eq!(
        err.to_string(),
        "task `nowhere` not started: no tokio runtime"
    );
}

#[test]
fn auto_traits() {
    fn send_sync_clone<T: Send + Sync + Clone>() {}
    send_sync_clone::<Shutdown>();
    send_sync_clone::<ShutdownReport>();
    send_sync_clone::<ShutdownError>();
    send_sync_clone::<TaskFailure>();
    send_sync_clone::<SpawnRefused>();
}

/// The same on a multi-thread runtime, with real (short) time: the report
/// and the task count do not depend on the single-threaded scheduler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_thread_shutdown_aborts_stragglers_and_leaves_nothing_alive() {
    let before = alive();
    let s = Shutdown::new();
    for i in 0..8 {
        cooperative(&s, &format!("coop-{i}"), Duration::from_millis(5));
    }
    stubborn(&s, "stubborn");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let err = shutdown(&s, Duration::from_millis(200)).await.unwrap_err();
    let report = err.report();
    assert_eq!((report.finished, report.aborted), (8, 1));
    assert!(report.is_balanced());
    assert_eq!(err.error().task(), "stubborn");
    // On a multi-thread runtime a task is counted until its worker thread
    // has released it: give the workers a moment.
    for _ in 0..100 {
        if alive() == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(alive(), before);
}

/// Every task's end is in the report when `shutdown` returns, also when the
/// aborted tasks are dropped on another worker thread (a race this caught:
/// the tracker was released before the abort was recorded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_balances_on_every_run_on_a_multi_thread_runtime() {
    for round in 0..20u64 {
        let s = Shutdown::new();
        for i in 0..16u64 {
            match (round + i) % 4 {
                0 => stubborn(&s, "stubborn"),
                1 => cooperative(&s, "coop", Duration::from_micros(i * 50)),
                2 => s.spawn("fails", |_ctx| async { Err("no") }).unwrap(),
                _ => s.spawn("done", |_ctx| async {}).unwrap(),
            }
        }
        let err = shutdown(&s, Duration::from_millis(5)).await.unwrap_err();
        let report = err.report();
        assert_eq!(report.spawned, 16);
        assert!(report.is_balanced(), "round {round}: {report}");
        // The four stubborn tasks are always aborted; a cooperative one may
        // be too on a loaded machine (5 ms of real time is short), so only
        // the sum is exact.
        assert!(report.aborted >= 4, "round {round}: {report}");
        assert_eq!(
            report.finished + report.aborted,
            12,
            "round {round}: {report}"
        );
        assert_eq!(report.failed, 4, "round {round}: {report}");
    }
}
