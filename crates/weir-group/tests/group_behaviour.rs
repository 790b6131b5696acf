//! weir's own promises for `Group`: bounded before spawning, cancel on the
//! first failure, every failure and the report from `join`, panics as
//! errors with their payload, nothing outlives the group.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt as _;
use tokio::time::{Instant, sleep};
use weir_context::Problem;
use weir_group::{
    ErrorPolicy, Group, GroupError, GroupErrors, GroupReport, RunError, TrySpawnError,
};

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Counts its drops: proves a task's future was dropped (aborted or ended).
struct DropGuard(Arc<AtomicUsize>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Sleeps `ms` unless the context is cancelled first.
async fn cooperative(ctx: weir_context::Context, ms: u64) -> Result<(), &'static str> {
    ctx.run(sleep(Duration::from_millis(ms)))
        .await
        .map_err(|_| "cancelled")
}

#[tokio::test(start_paused = true)]
async fn limit_3_runs_30_tasks_in_10_rounds_never_more_than_3_alive() {
    let before = alive();
    let mut group: Group<usize, &'static str> = Group::builder().limit(3).build().unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let max_running = Arc::new(AtomicUsize::new(0));
    let max_alive = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    for i in 0..30 {
        let (running, max_running, max_alive) = (
            Arc::clone(&running),
            Arc::clone(&max_running),
            Arc::clone(&max_alive),
        );
        group
            .spawn(async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                max_running.fetch_max(now, Ordering::SeqCst);
                max_alive.fetch_max(alive() - before, Ordering::SeqCst);
                sleep(Duration::from_millis(100)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(i)
            })
            .await;
        // The slot is taken before the spawn: never more than 3 tasks exist.
        assert!(alive() - before <= 3, "{} tasks alive", alive() - before);
    }
    let report = group.join().await.unwrap();
    assert_eq!(report.into_values_ordered(), (0..30).collect::<Vec<_>>());
    assert_eq!(max_running.load(Ordering::SeqCst), 3);
    assert_eq!(max_alive.load(Ordering::SeqCst), 3);
    assert_eq!(start.elapsed(), Duration::from_millis(1000), "10 rounds");
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn an_error_at_50ms_cancels_the_siblings_and_join_reports_every_failure() {
    let before = alive();
    let mut group: Group<(), &'static str> = Group::new();
    let ctx = group.context().clone();
    let stopped = Arc::new(AtomicUsize::new(0));
    for _ in 0..5 {
        let (ctx, stopped) = (ctx.clone(), Arc::clone(&stopped));
        group
            .spawn(async move {
                let result = cooperative(ctx, 10_000).await;
                if result.is_err() {
                    stopped.fetch_add(1, Ordering::SeqCst);
                }
                result
            })
            .await;
    }
    group
        .spawn_named("failer", async {
            sleep(Duration::from_millis(50)).await;
            Err("boom")
        })
        .await;
    group.spawn(async { Ok(()) }).await;
    let start = Instant::now();
    let watcher = {
        let ctx = ctx.clone();
        async move {
            ctx.cancelled().await;
            start.elapsed()
        }
    };
    let (result, cancelled_at) = tokio::join!(group.join(), watcher);
    let err = result.unwrap_err();
    let errors = err.error();
    match errors.first() {
        GroupError::Failed { task, error } => {
            assert_eq!(task, "failer");
            assert_eq!(**error, "boom");
        }
        other => panic!("unexpected: {other:?}"),
    }
    // The first failure, then the five siblings it cancelled.
    assert_eq!(errors.len(), 6);
    assert!(
        errors
            .iter()
            .skip(1)
            .all(|e| e.error() == Some(&"cancelled"))
    );
    let report = err.report();
    assert_eq!((report.spawned, report.succeeded, report.failed), (7, 1, 6));
    assert!(report.is_balanced());
    assert_eq!(cancelled_at, Duration::from_millis(50));
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    assert_eq!(stopped.load(Ordering::SeqCst), 5, "siblings saw the cancel");
    assert_eq!(alive(), before, "no task outlives join");
}

#[tokio::test(start_paused = true)]
async fn the_first_error_to_happen_is_first_not_the_first_spawned() {
    let mut group: Group<(), &'static str> = Group::new();
    group
        .spawn(async {
            sleep(Duration::from_millis(30)).await;
            Err("late")
        })
        .await;
    group
        .spawn(async {
            sleep(Duration::from_millis(10)).await;
            Err("early")
        })
        .await;
    let errors = group.join().await.unwrap_err().into_error();
    assert_eq!(errors.first().task(), "#1");
    let all: Vec<&str> = errors.iter().map(|e| *e.error().unwrap()).collect();
    assert_eq!(all, ["early", "late"]);
    assert_eq!(
        errors.first().clone().into_error().as_deref(),
        Some(&"early")
    );
}

#[tokio::test(start_paused = true)]
async fn join_carries_the_report_with_counts_and_the_successful_values() {
    let before = alive();
    let mut group: Group<u32, String> = Group::builder()
        .error_policy(ErrorPolicy::Continue)
        .build()
        .unwrap();
    for (i, ms) in [(0u32, 40u64), (1, 10), (2, 30), (3, 20), (4, 5), (5, 25)] {
        group
            .spawn(async move {
                sleep(Duration::from_millis(ms)).await;
                match i {
                    1 => Err(format!("task {i} refused")),
                    4 => panic!("task {i} exploded"),
                    _ => Ok(i * 10),
                }
            })
            .await;
    }
    let err: RunError<GroupErrors<String>, GroupReport<u32>> = group.join().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "task #4 panicked: task 4 exploded\ntask #1 failed: task 1 refused"
    );
    let report = err.report();
    assert_eq!(
        (
            report.spawned,
            report.succeeded,
            report.failed,
            report.panicked,
            report.aborted
        ),
        (6, 4, 1, 1, 0)
    );
    assert!(report.is_balanced());
    assert_eq!(report.finished(), 6);
    assert_eq!(report.elapsed, Duration::from_millis(40));
    assert_eq!(
        report.values().copied().collect::<Vec<_>>(),
        [30, 50, 20, 0],
        "completion order"
    );
    assert_eq!(
        report.to_string(),
        "spawned  succeeded  failed  panicked  aborted  elapsed\n\
         6                4       1         1        0     40ms\n"
    );
    let (errors, report) = err.into_parts();
    assert_eq!(errors.len(), 2);
    assert_eq!(report.clone().into_values(), [30, 50, 20, 0]);
    assert_eq!(report.into_values_ordered(), [0, 20, 30, 50]);
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn continue_runs_every_task_and_reports_every_error() {
    let before = alive();
    let ran = Arc::new(AtomicUsize::new(0));
    let mut group: Group<u32, String> = Group::builder()
        .error_policy(ErrorPolicy::Continue)
        .build()
        .unwrap();
    let ctx = group.context().clone();
    for (name, ms, fail) in [
        ("a", 30, true),
        ("b", 10, true),
        ("c", 20, false),
        ("d", 50, false),
    ] {
        let (ran, ctx) = (Arc::clone(&ran), ctx.clone());
        group
            .spawn_named(name, async move {
                // A task that would stop on a cancel: under Continue it
                // never sees one.
                ctx.run(sleep(Duration::from_millis(ms)))
                    .await
                    .map_err(|e| e.to_string())?;
                ran.fetch_add(1, Ordering::SeqCst);
                if fail {
                    Err(format!("{name} broke"))
                } else {
                    Ok(3)
                }
            })
            .await;
    }
    tokio::time::sleep(Duration::from_millis(15)).await;
    assert!(!ctx.is_cancelled(), "Continue does not cancel");
    let err = group.join().await.unwrap_err();
    assert_eq!(ran.load(Ordering::SeqCst), 4, "every task ran to its end");
    let errors = err.error();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors.first().task(), "b");
    assert_eq!(
        errors.to_string(),
        "task b failed: b broke\ntask a failed: a broke"
    );
    let tasks: Vec<String> = err
        .into_error()
        .into_iter()
        .map(|e| e.task().to_owned())
        .collect();
    assert_eq!(tasks, ["b", "a"]);
    assert_eq!(alive(), before);

    let group: Group<u32, String> = Group::new();
    let report = group.join().await.unwrap();
    assert_eq!(report.spawned, 0);
    assert_eq!(report.into_values(), Vec::<u32>::new());
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_reported_with_message_payload_and_task_name() {
    let before = alive();
    let mut group: Group<(), &'static str> = Group::new();
    let ctx = group.context().clone();
    group.spawn(cooperative(ctx.clone(), 10_000)).await;
    group
        .spawn_named("exploder", async {
            sleep(Duration::from_millis(5)).await;
            let n = std::hint::black_box(7);
            panic!("kaboom {n}")
        })
        .await;
    let err = group.join().await.unwrap_err();
    let first = err.error().first();
    assert!(first.is_panic());
    match first {
        GroupError::Panicked { task, panic } => {
            assert_eq!(task, "exploder");
            assert_eq!(panic.message(), "kaboom 7");
            assert!(panic.payload_is::<String>());
        }
        other => panic!("unexpected: {other:?}"),
    }
    assert_eq!(first.to_string(), "task exploder panicked: kaboom 7");
    assert!(ctx.is_cancelled(), "a panic cancels like an error");
    assert_eq!(err.report().panicked, 1);
    assert_eq!(alive(), before);
}

/// A panic payload of the user's own type, not a string.
#[derive(Debug, Clone, PartialEq)]
struct Code(u32);

#[tokio::test(start_paused = true)]
async fn a_non_string_panic_payload_downcasts() {
    let mut group: Group<(), &'static str> = Group::new();
    group
        .spawn_named("coded", async { std::panic::panic_any(Code(42)) })
        .await;
    let err = group.join().await.unwrap_err();
    let panic = err.error().first().panic().unwrap();
    assert_eq!(panic.message(), "<non-string panic payload>");
    assert_eq!(panic.downcast_payload::<Code>(), Some(Code(42)));
    let payload = panic.take_payload().unwrap();
    assert_eq!(payload.downcast_ref::<Code>(), Some(&Code(42)));
}

#[tokio::test(start_paused = true)]
async fn resume_panics_re_raises_the_original_payload_after_all_tasks_end() {
    let before = alive();
    let ended = Arc::new(AtomicBool::new(false));
    let mut group: Group<(), &'static str> = Group::builder().resume_panics(true).build().unwrap();
    {
        let ended = Arc::clone(&ended);
        group
            .spawn(async move {
                sleep(Duration::from_millis(100)).await;
                ended.store(true, Ordering::SeqCst);
                Ok(())
            })
            .await;
    }
    group.spawn(async { Err("an ordinary error first") }).await;
    group
        .spawn(async {
            sleep(Duration::from_millis(5)).await;
            std::panic::panic_any(Code(7))
        })
        .await;
    let payload = std::panic::AssertUnwindSafe(group.join())
        .catch_unwind()
        .await
        .unwrap_err();
    assert_eq!(payload.downcast_ref::<Code>(), Some(&Code(7)));
    assert!(
        ended.load(Ordering::SeqCst),
        "waited for the other task first"
    );
    assert_eq!(alive(), before);

    // join_next resumes as soon as it reaches the panicked task.
    let mut group: Group<(), &'static str> = Group::builder().resume_panics(true).build().unwrap();
    group.spawn(async { panic!("at once") }).await;
    let payload = std::panic::AssertUnwindSafe(group.join_next())
        .catch_unwind()
        .await
        .unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"at once"));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_group_aborts_every_task() {
    let before = alive();
    let dropped = Arc::new(AtomicUsize::new(0));
    let mut group: Group<(), &'static str> = Group::new();
    let ctx = group.context().clone();
    for _ in 0..5 {
        let guard = DropGuard(Arc::clone(&dropped));
        group
            .spawn(async move {
                let _guard = guard;
                sleep(Duration::from_secs(3600)).await;
                Ok(())
            })
            .await;
    }
    tokio::task::yield_now().await;
    assert_eq!(alive() - before, 5);
    drop(group);
    assert!(ctx.is_cancelled(), "dropping cancels the context");
    // Aborted tasks are dropped on the runtime; let it run.
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    assert_eq!(dropped.load(Ordering::SeqCst), 5);
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_join_future_aborts_the_tasks() {
    let before = alive();
    let dropped = Arc::new(AtomicUsize::new(0));
    let mut group: Group<(), &'static str> = Group::new();
    for _ in 0..3 {
        let guard = DropGuard(Arc::clone(&dropped));
        group
            .spawn(async move {
                let _guard = guard;
                sleep(Duration::from_secs(3600)).await;
                Ok(())
            })
            .await;
    }
    let timed_out = tokio::time::timeout(Duration::from_secs(1), group.join()).await;
    assert!(timed_out.is_err());
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    assert_eq!(dropped.load(Ordering::SeqCst), 3);
    assert_eq!(alive(), before);
}

/// A future that counts its polls, to prove a refused future is untouched.
struct Tagged {
    id: u32,
    polls: Arc<AtomicUsize>,
}

impl Future for Tagged {
    type Output = Result<u32, &'static str>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Ok(self.id))
    }
}

#[tokio::test(start_paused = true)]
async fn try_spawn_hands_the_future_back_unchanged_for_a_retry() {
    let mut group: Group<u32, &'static str> = Group::builder().limit(1).build().unwrap();
    group
        .spawn(async {
            sleep(Duration::from_millis(10)).await;
            Ok(1)
        })
        .await;
    let polls = Arc::new(AtomicUsize::new(0));
    let tagged = Tagged {
        id: 7,
        polls: Arc::clone(&polls),
    };
    let refused: TrySpawnError<Tagged> = group.try_spawn_named("tagged", tagged).unwrap_err();
    assert_eq!(refused.to_string(), "the task group is at its limit");
    assert_eq!(format!("{refused:?}"), "TrySpawnError { .. }");
    assert_eq!(refused.get_ref().id, 7);
    let tagged = refused.into_inner();
    assert_eq!(polls.load(Ordering::SeqCst), 0, "never polled");

    assert_eq!(group.join_next().await.unwrap().unwrap(), 1);
    group.try_spawn(tagged).unwrap();
    let report = group.join().await.unwrap();
    assert_eq!(report.spawned, 2, "join_next's task is counted");
    assert_eq!(report.into_values(), [7], "but its value went to join_next");
    assert_eq!(polls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_waits_the_grace_then_aborts() {
    let before = alive();
    let dropped = Arc::new(AtomicUsize::new(0));
    let mut group: Group<&'static str, &'static str> = Group::new();
    let ctx = group.context().clone();
    group.spawn_named("quick", async { Ok("quick") }).await;
    {
        let ctx = ctx.clone();
        group
            .spawn_named("polite", async move {
                ctx.cancelled().await;
                sleep(Duration::from_millis(20)).await; // cleanup
                Ok("polite")
            })
            .await;
    }
    let guard = DropGuard(Arc::clone(&dropped));
    group
        .spawn_named("stubborn", async move {
            let _guard = guard;
            sleep(Duration::from_secs(3600)).await;
            Ok("stubborn")
        })
        .await;
    group
        .spawn_named("grumpy", async move {
            ctx.cancelled().await;
            Err("interrupted")
        })
        .await;
    let start = Instant::now();
    let err = group
        .shutdown(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(
        err.to_string(),
        "task grumpy failed: interrupted\ntask stubborn was aborted before it finished"
    );
    assert!(err.error().iter().nth(1).unwrap().is_aborted());
    let report = err.report();
    assert_eq!(
        (
            report.spawned,
            report.succeeded,
            report.failed,
            report.aborted
        ),
        (4, 2, 1, 1)
    );
    assert!(report.is_balanced());
    assert_eq!(
        report.values().copied().collect::<Vec<_>>(),
        ["quick", "polite"]
    );
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert_eq!(alive(), before, "no task outlives shutdown");
}

#[tokio::test(start_paused = true)]
async fn shutdown_of_tasks_that_end_in_time_is_ok() {
    let before = alive();
    let mut group: Group<u8, &'static str> = Group::new();
    group.spawn(async { Ok(1) }).await;
    let ctx = group.context().clone();
    group
        .spawn(async move {
            ctx.cancelled().await;
            Ok(2)
        })
        .await;
    let report = group.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!((report.succeeded, report.aborted), (2, 0));
    assert_eq!(report.into_values_ordered(), [1, 2]);
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_an_endless_grace_does_not_overflow() {
    let mut group: Group<u8, &'static str> = Group::new();
    group.spawn(async { Ok(1) }).await;
    let report = group.shutdown(Duration::MAX).await.unwrap();
    assert_eq!(report.aborted, 0);
    assert_eq!(report.into_values(), [1]);

    // And a zero grace aborts at once what has not ended.
    let mut group: Group<u8, &'static str> = Group::new();
    group
        .spawn(async {
            sleep(Duration::from_secs(1)).await;
            Ok(1)
        })
        .await;
    let start = Instant::now();
    let err = group.shutdown(Duration::ZERO).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(err.report().aborted, 1);
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_cooperative_tasks_without_aborting() {
    let mut group: Group<(), &'static str> = Group::new();
    for _ in 0..4 {
        group
            .spawn(cooperative(group.context().clone(), 10_000))
            .await;
    }
    let start = Instant::now();
    group.cancel();
    let err = group.join().await.unwrap_err();
    assert_eq!(err.error().len(), 4);
    assert!(err.error().iter().all(|e| e.error() == Some(&"cancelled")));
    assert_eq!(err.report().aborted, 0, "cancel aborts nothing");
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn values_in_completion_order_and_in_spawn_order() {
    async fn after(ms: u64, v: u64) -> Result<u64, &'static str> {
        sleep(Duration::from_millis(ms)).await;
        Ok(v)
    }
    let spawn_all = || async {
        let mut group: Group<u64, &'static str> = Group::new();
        for (i, ms) in [30, 10, 20].into_iter().enumerate() {
            group.spawn(after(ms, i as u64)).await;
        }
        group
    };
    let report = spawn_all().await.join().await.unwrap();
    assert_eq!(report.clone().into_values(), [1, 2, 0]);
    assert_eq!(report.into_values_ordered(), [0, 1, 2]);

    let mut group = spawn_all().await;
    let mut seen = Vec::new();
    while let Some(result) = group.join_next().await {
        seen.push(result.unwrap());
    }
    assert_eq!(seen, [1, 2, 0]);
    assert!(group.is_empty());
    let report = group.join().await.unwrap();
    assert_eq!((report.spawned, report.succeeded), (3, 3));
    assert_eq!(report.values().count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_task_spawned_after_a_failure_still_runs_with_the_context_cancelled() {
    let mut group: Group<bool, &'static str> = Group::new();
    group.spawn(async { Err("first") }).await;
    assert!(group.join_next().await.unwrap().is_err());
    let ctx = group.context().clone();
    group.spawn(async move { Ok(ctx.is_cancelled()) }).await;
    assert!(group.join_next().await.unwrap().unwrap());
}

#[tokio::test]
async fn a_limit_of_zero_is_a_config_error() {
    let err = Group::<(), &'static str>::builder()
        .limit(0)
        .build()
        .unwrap_err();
    assert_eq!(err.problem(), &Problem::Zero);
    assert_eq!(err.to_string(), "group: limit must be at least 1 (got 0)");
}

#[tokio::test]
async fn a_huge_limit_works_as_no_limit() {
    let before = alive();
    let mut group: Group<u32, &'static str> = Group::builder().limit(usize::MAX).build().unwrap();
    assert_eq!(group.max_tasks(), Some(tokio::sync::Semaphore::MAX_PERMITS));
    let gate = tokio_util::sync::CancellationToken::new();
    for i in 0..1_000 {
        let gate = gate.clone();
        // Nothing ends until every task is spawned: none is refused.
        group
            .try_spawn(async move {
                gate.cancelled().await;
                Ok(i)
            })
            .unwrap();
    }
    assert_eq!(alive() - before, 1_000);
    gate.cancel();
    let report = group.join().await.unwrap();
    assert_eq!(report.succeeded, 1_000);
    assert_eq!(alive(), before);
}

#[tokio::test]
async fn the_builders_settings_show_in_debug() {
    let builder = Group::<(), &'static str>::builder()
        .limit(3)
        .error_policy(ErrorPolicy::Continue)
        .resume_panics(true);
    let text = format!("{builder:?}");
    assert!(text.contains("limit: Some(3)"), "{text}");
    assert!(text.contains("Continue"), "{text}");
    let group = builder.clone().build().unwrap();
    let text = format!("{group:?}");
    assert!(
        text.starts_with("Group { tasks: 0, max_tasks: Some(3), cancelled: false, error_policy: Continue, resume_panics: true"),
        "{text}"
    );
}

#[tokio::test]
async fn errors_convert_into_anyhow() {
    async fn run() -> anyhow::Result<Vec<u8>> {
        let mut group: Group<u8> = Group::new();
        group.spawn(async { anyhow::bail!("disk full") }).await;
        Ok(group.join().await?.into_values())
    }
    let err = run().await.unwrap_err();
    assert_eq!(err.to_string(), "task #0 failed: disk full");
    let run_error = err
        .downcast::<RunError<GroupErrors<anyhow::Error>, GroupReport<u8>>>()
        .unwrap();
    assert_eq!(run_error.report().failed, 1);
    let error = run_error.into_error().into_vec().remove(0).into_error();
    assert_eq!(error.unwrap().to_string(), "disk full");
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn error<T: std::error::Error + Send + Sync + 'static>() {}
    send_sync::<Group<u32, anyhow::Error>>();
    send_sync::<Group>();
    send_sync::<weir_group::GroupBuilder<std::rc::Rc<u8>, anyhow::Error>>();
    send_sync::<GroupReport<u32>>();
    error::<GroupError<anyhow::Error>>();
    error::<GroupError<std::io::Error>>();
    error::<GroupErrors<anyhow::Error>>();
    error::<RunError<GroupErrors<anyhow::Error>, GroupReport<String>>>();
    error::<TrySpawnError<std::future::Ready<Result<(), ()>>>>();
    fn unpin<T: Unpin>() {}
    unpin::<Group<u32, anyhow::Error>>();
    unpin::<GroupReport<u32>>();
    unpin::<GroupErrors<anyhow::Error>>();
    // A group (and its futures) can move to another thread.
    fn send<T: Send>(_: &T) {}
    let mut group: Group<u32, String> = Group::new();
    send(&group.spawn(async { Ok(1) }));
    send(&group.join_next());
    send(&group.join());
}

#[tokio::test(start_paused = true)]
async fn a_long_lived_group_joined_one_by_one_keeps_naming_tasks_right() {
    let before = alive();
    let mut group: Group<u64, String> = Group::builder().limit(8).build().unwrap();
    // Task #0 lives through all the others and fails last.
    group
        .spawn(async {
            sleep(Duration::from_secs(3600)).await;
            Err("old".to_string())
        })
        .await;
    let mut failed = Vec::new();
    let mut joined = 0;
    let mut note = |result: Result<u64, GroupError<String>>| {
        joined += 1;
        if let Err(error) = result {
            failed.push(error.task().to_owned());
        }
    };
    for i in 1..=5000u64 {
        let task = async move {
            sleep(Duration::from_millis(i % 7)).await;
            if i % 1000 == 0 {
                Err(format!("e{i}"))
            } else {
                Ok(i)
            }
        };
        if i % 2000 == 0 {
            group.spawn_named(format!("n{i}"), task).await;
        } else {
            group.spawn(task).await;
        }
        // Never empty, never large: the group's bookkeeping is compacted.
        while group.len() > 4 {
            note(group.join_next().await.unwrap());
        }
    }
    while let Some(result) = group.join_next().await {
        note(result);
    }
    assert_eq!(joined, 5001);
    assert_eq!(failed, ["#1000", "n2000", "#3000", "n4000", "#5000", "#0"]);
    let report = group.join().await.unwrap();
    assert_eq!(
        (report.spawned, report.succeeded, report.failed),
        (5001, 4995, 6)
    );
    assert_eq!(alive(), before);
}
