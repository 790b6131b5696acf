//! Graceful shutdown: the report names who finished, failed and was aborted,
//! and no task is left alive.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use weir_core::shutdown::{Shutdown, ShutdownReport, Trigger};

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

const GRACE: Duration = Duration::from_secs(2);

fn cooperative(shutdown: &Shutdown, name: &str, cleanup: Duration) {
    shutdown.spawn(name, move |token| async move {
        token.cancelled().await;
        tokio::time::sleep(cleanup).await;
    });
}

fn stubborn(shutdown: &Shutdown, name: &str) {
    shutdown.spawn(name, |_token| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
}

#[tokio::test(start_paused = true)]
async fn the_report_names_the_stubborn_task_as_aborted() {
    let before = alive();
    let shutdown = Shutdown::new();
    cooperative(&shutdown, "cooperative", Duration::from_millis(300));
    stubborn(&shutdown, "stubborn");
    assert_eq!(alive(), before + 2);
    assert_eq!(shutdown.running(), ["cooperative", "stubborn"]);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let report = shutdown.shutdown(GRACE).await;
    assert_eq!(report.finished, ["cooperative"]);
    assert_eq!(report.aborted, ["stubborn"]);
    assert!(report.failed.is_empty());
    assert_eq!(report.elapsed, GRACE);
    assert!(!report.is_clean());
    assert_eq!(
        report.to_string(),
        "shutdown took 2s: 1 finished, 0 failed, 1 aborted (stubborn)"
    );
    assert_eq!(alive(), before, "no task outlives shutdown()");
    assert!(shutdown.running().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_clean_shutdown_returns_as_soon_as_the_last_task_ends() {
    let before = alive();
    let shutdown = Shutdown::new();
    cooperative(&shutdown, "a", Duration::from_millis(100));
    cooperative(&shutdown, "b", Duration::from_millis(300));
    let report = shutdown.shutdown(GRACE).await;
    assert_eq!(report.finished, ["a", "b"]);
    assert!(report.is_clean());
    assert_eq!(report.elapsed, Duration::from_millis(300));
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn errors_and_panics_during_the_shutdown_are_reported_with_their_message() {
    let before = alive();
    let shutdown = Shutdown::new();
    shutdown.spawn("db", |token| async move {
        token.cancelled().await;
        Err(anyhow::anyhow!("flush failed").context("closing db"))
    });
    shutdown.spawn("cache", |token| async move {
        token.cancelled().await;
        if token.is_cancelled() {
            panic!("cache poisoned");
        }
    });
    shutdown.spawn("ok", |token| async move {
        token.cancelled().await;
        Ok::<(), std::io::Error>(())
    });
    let report = shutdown.shutdown(GRACE).await;
    assert_eq!(report.finished, ["ok"]);
    let mut failed = report.failed.clone();
    failed.sort();
    assert_eq!(
        failed,
        [
            ("cache".to_owned(), "panicked: cache poisoned".to_owned()),
            ("db".to_owned(), "closing db: flush failed".to_owned()),
        ]
    );
    assert!(report.aborted.is_empty());
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn tasks_that_ended_before_the_shutdown_are_only_counted() {
    let shutdown = Shutdown::new();
    shutdown.spawn("one-off", |_token| async {});
    shutdown.spawn("failing one-off", |_token| async { Err("nope") });
    cooperative(&shutdown, "server", Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(shutdown.running(), ["server"]);
    let report = shutdown.shutdown(GRACE).await;
    assert_eq!(report.finished, ["server"]);
    assert!(report.failed.is_empty());
    assert_eq!(report.ended_before, 2);
}

#[tokio::test(start_paused = true)]
async fn every_caller_gets_the_same_report_and_the_shutdown_runs_once() {
    let shutdown = Shutdown::new();
    cooperative(&shutdown, "a", Duration::from_millis(100));
    stubborn(&shutdown, "s");
    let other = shutdown.clone();
    let (r1, r2) = tokio::join!(
        shutdown.shutdown(GRACE),
        other.shutdown(Duration::from_secs(100))
    );
    assert_eq!(r1, r2);
    assert_eq!(r1.aborted, ["s"]);
    let again = shutdown.shutdown(Duration::ZERO).await;
    assert_eq!(again, r1);
}

#[tokio::test(start_paused = true)]
async fn a_spawn_after_the_shutdown_is_refused_and_does_not_run() {
    let shutdown = Shutdown::new();
    let report = shutdown.shutdown(GRACE).await;
    let mut expected = ShutdownReport::default();
    expected.cause = Some(weir_core::Cause::Cancelled);
    assert_eq!(report, expected);
    let called = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&called);
    shutdown.spawn("late", move |_token| {
        flag.store(true, Ordering::SeqCst);
        async {}
    });
    assert!(!called.load(Ordering::SeqCst));
    assert!(shutdown.running().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_task_spawned_during_the_drain_gets_a_cancelled_token_and_is_waited_for() {
    let shutdown = Shutdown::new();
    let spawner = shutdown.clone();
    shutdown.spawn("spawner", move |token| async move {
        token.cancelled().await;
        // Starts a last task while the shutdown is under way.
        spawner.spawn("last words", |token| async move {
            assert!(token.is_cancelled());
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
    });
    let report = shutdown.shutdown(GRACE).await;
    assert_eq!(report.finished, ["spawner", "last words"]);
    assert_eq!(report.elapsed, Duration::from_millis(50));
}

#[tokio::test(start_paused = true)]
async fn tokens_follow_the_root() {
    let shutdown = Shutdown::new();
    let child = shutdown.child_token();
    child.cancel();
    assert!(
        !shutdown.is_shutting_down(),
        "a child does not start the shutdown"
    );

    let child = shutdown.child_token();
    let root = shutdown.token();
    let (seen, wait) = tokio::join!(shutdown.on_signal(), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        root.cancel();
    });
    let () = wait;
    assert_eq!(seen, Trigger::Cancelled);
    assert!(shutdown.is_shutting_down());
    assert!(child.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_parent_of_with_token_starts_the_shutdown() {
    let parent = tokio_util::sync::CancellationToken::new();
    let shutdown = Shutdown::with_token(parent.child_token());
    cooperative(&shutdown, "a", Duration::ZERO);
    parent.cancel();
    assert_eq!(shutdown.on_signal().await, Trigger::Cancelled);
    assert_eq!(shutdown.shutdown(GRACE).await.finished, ["a"]);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_cancels_and_aborts_every_task() {
    let before = alive();
    let shutdown = Shutdown::new();
    let token = shutdown.token();
    cooperative(&shutdown, "a", Duration::from_secs(10));
    stubborn(&shutdown, "b");
    tokio::task::yield_now().await;
    drop(shutdown);
    assert!(token.is_cancelled());
    tokio::task::yield_now().await;
    assert_eq!(alive(), before);
}

#[test]
fn auto_traits() {
    fn send_sync_clone<T: Send + Sync + Clone>() {}
    send_sync_clone::<Shutdown>();
    send_sync_clone::<ShutdownReport>();
}

#[tokio::test(start_paused = true)]
async fn tasks_that_stop_after_the_token_fires_but_before_shutdown_is_called_are_listed() {
    let shutdown = Shutdown::new();
    cooperative(&shutdown, "early stopper", Duration::ZERO);
    shutdown.token().cancel(); // what on_signal does
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(shutdown.running().is_empty());
    let report = shutdown.shutdown(GRACE).await;
    assert_eq!(report.finished, ["early stopper"]);
    assert_eq!(report.ended_before, 0);
    assert_eq!(report.elapsed, Duration::ZERO);
}

/// The same on a multi-thread runtime, with real (short) time: the report
/// and the task count do not depend on the single-threaded scheduler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_thread_shutdown_aborts_stragglers_and_leaves_nothing_alive() {
    let before = alive();
    let shutdown = Shutdown::new();
    for i in 0..8 {
        cooperative(&shutdown, &format!("coop-{i}"), Duration::from_millis(5));
    }
    stubborn(&shutdown, "stubborn");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let report = shutdown.shutdown(Duration::from_millis(200)).await;
    let mut finished = report.finished.clone();
    finished.sort();
    assert_eq!(
        finished,
        (0..8).map(|i| format!("coop-{i}")).collect::<Vec<_>>()
    );
    assert_eq!(report.aborted, ["stubborn"]);
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
