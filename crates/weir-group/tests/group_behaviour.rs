//! weir's own promises for `Group`: bounded before spawning, cancel on the
//! first failure, panics as errors, nothing outlives the group.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt as _;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use weir_group::{Group, GroupError, LimitError, Rejected};

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

/// Sleeps `ms` unless the token is cancelled first.
async fn cooperative(token: CancellationToken, ms: u64) -> Result<(), &'static str> {
    tokio::select! {
        _ = token.cancelled() => Err("cancelled"),
        _ = sleep(Duration::from_millis(ms)) => Ok(()),
    }
}

#[tokio::test(start_paused = true)]
async fn limit_3_runs_30_tasks_in_10_rounds_never_more_than_3_alive() {
    let before = alive();
    let mut group: Group<usize, &'static str> = Group::new().limit(3).unwrap();
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
    let values = group.wait_ordered().await.unwrap();
    assert_eq!(values, (0..30).collect::<Vec<_>>());
    assert_eq!(max_running.load(Ordering::SeqCst), 3);
    assert_eq!(max_alive.load(Ordering::SeqCst), 3);
    assert_eq!(start.elapsed(), Duration::from_millis(1000), "10 rounds");
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn an_error_at_50ms_cancels_the_siblings_and_is_returned() {
    let before = alive();
    let mut group: Group<(), &'static str> = Group::new();
    let token = group.token().clone();
    let stopped = Arc::new(AtomicUsize::new(0));
    for _ in 0..5 {
        let (token, stopped) = (token.clone(), Arc::clone(&stopped));
        group
            .spawn(async move {
                let result = cooperative(token, 10_000).await;
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
    let start = Instant::now();
    let watcher = {
        let token = token.clone();
        async move {
            token.cancelled().await;
            start.elapsed()
        }
    };
    let (result, cancelled_at) = tokio::join!(group.wait(), watcher);
    match result {
        Err(GroupError::Failed { task, error }) => {
            assert_eq!(task, "failer");
            assert_eq!(error, "boom");
        }
        other => panic!("unexpected: {other:?}"),
    }
    assert_eq!(cancelled_at, Duration::from_millis(50));
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    assert_eq!(stopped.load(Ordering::SeqCst), 5, "siblings saw the cancel");
    assert_eq!(alive(), before, "no task outlives wait");
}

#[tokio::test(start_paused = true)]
async fn the_first_error_to_happen_wins_not_the_first_spawned() {
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
    let err = group.wait().await.unwrap_err();
    assert_eq!(err.task(), "#1");
    assert_eq!(err.into_error(), Some("early"));
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_reported_with_message_and_task_name() {
    let before = alive();
    let mut group: Group<(), &'static str> = Group::new();
    let token = group.token().clone();
    group.spawn(cooperative(token.clone(), 10_000)).await;
    group
        .spawn_named("exploder", async {
            sleep(Duration::from_millis(5)).await;
            panic!("kaboom {}", 7)
        })
        .await;
    let err = group.wait().await.unwrap_err();
    assert!(err.is_panic());
    match &err {
        GroupError::Panicked { task, message } => {
            assert_eq!(task, "exploder");
            assert_eq!(message, "kaboom 7");
        }
        other => panic!("unexpected: {other:?}"),
    }
    assert_eq!(err.to_string(), "task exploder panicked: kaboom 7");
    assert!(token.is_cancelled(), "a panic cancels like an error");
    assert_eq!(alive(), before);

    // Unnamed tasks are named by their spawn index.
    let mut group: Group<(), &'static str> = Group::new();
    group.spawn(async { Ok(()) }).await;
    group.spawn(async { panic!("second") }).await;
    assert_eq!(group.wait().await.unwrap_err().task(), "#1");
}

#[tokio::test(start_paused = true)]
async fn resume_panics_re_raises_in_the_waiter_after_all_tasks_end() {
    let before = alive();
    let ended = Arc::new(AtomicBool::new(false));
    let mut group: Group<(), &'static str> = Group::new().resume_panics(true);
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
    group
        .spawn(async {
            sleep(Duration::from_millis(5)).await;
            panic!("resumed")
        })
        .await;
    let payload = std::panic::AssertUnwindSafe(group.wait())
        .catch_unwind()
        .await
        .unwrap_err();
    assert_eq!(weir_context::__private::panic_message(&*payload), "resumed");
    assert!(
        ended.load(Ordering::SeqCst),
        "waited for the other task first"
    );
    assert_eq!(alive(), before);

    // join_next resumes as soon as it reaches the panicked task.
    let mut group: Group<(), &'static str> = Group::new().resume_panics(true);
    group.spawn(async { panic!("at once") }).await;
    let payload = std::panic::AssertUnwindSafe(group.join_next())
        .catch_unwind()
        .await
        .unwrap_err();
    assert_eq!(weir_context::__private::panic_message(&*payload), "at once");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_group_aborts_every_task() {
    let before = alive();
    let dropped = Arc::new(AtomicUsize::new(0));
    let mut group: Group<(), &'static str> = Group::new();
    let token = group.token().clone();
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
    assert!(token.is_cancelled(), "dropping cancels the token");
    // Aborted tasks are dropped on the runtime; let it run.
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    assert_eq!(dropped.load(Ordering::SeqCst), 5);
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_wait_future_aborts_the_tasks() {
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
    let timed_out = tokio::time::timeout(Duration::from_secs(1), group.wait()).await;
    assert!(timed_out.is_err());
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    assert_eq!(dropped.load(Ordering::SeqCst), 3);
    assert_eq!(alive(), before);
}

/// A future that counts its polls, to prove a rejected future is untouched.
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
    let mut group: Group<u32, &'static str> = Group::new().limit(1).unwrap();
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
    let rejected: Rejected<Tagged> = group.try_spawn_named("tagged", tagged).unwrap_err();
    assert_eq!(rejected.to_string(), "the task group is at its limit");
    assert_eq!(rejected.get_ref().id, 7);
    let tagged = rejected.into_inner();
    assert_eq!(polls.load(Ordering::SeqCst), 0, "never polled");

    assert_eq!(group.join_next().await.unwrap().unwrap(), 1);
    group.try_spawn(tagged).unwrap();
    assert_eq!(group.wait().await.unwrap(), [7]);
    assert_eq!(polls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_waits_the_grace_then_aborts() {
    let before = alive();
    let dropped = Arc::new(AtomicUsize::new(0));
    let mut group: Group<&'static str, &'static str> = Group::new();
    let token = group.token().clone();
    group.spawn_named("quick", async { Ok("quick") }).await;
    {
        let token = token.clone();
        group
            .spawn_named("polite", async move {
                token.cancelled().await;
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
            token.cancelled().await;
            Err("interrupted")
        })
        .await;
    let start = Instant::now();
    let report = group.shutdown(Duration::from_millis(100)).await;
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(report.values, ["quick", "polite"]);
    assert_eq!(report.aborted, ["stubborn"]);
    assert!(!report.drained());
    assert_eq!(report.errors.len(), 1);
    assert_eq!(
        report.errors[0].to_string(),
        "task grumpy failed: interrupted"
    );
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert_eq!(alive(), before, "no task outlives shutdown");
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_an_endless_grace_does_not_overflow() {
    let mut group: Group<u8, &'static str> = Group::new();
    group.spawn(async { Ok(1) }).await;
    let report = group.shutdown(Duration::MAX).await;
    assert!(report.drained());
    assert_eq!(report.values, [1]);
}

#[tokio::test(start_paused = true)]
async fn the_parent_token_cancels_the_group_but_not_the_reverse() {
    let parent = CancellationToken::new();
    let group: Group<(), &'static str> = Group::with_token(parent.clone());
    parent.cancel();
    assert!(group.is_cancelled());

    let parent = CancellationToken::new();
    let mut group: Group<(), &'static str> = Group::with_token(parent.clone());
    group.spawn(async { Err("x") }).await;
    assert!(group.join_next().await.unwrap().is_err());
    assert!(group.is_cancelled());
    assert!(!parent.is_cancelled());
    group.cancel();
    assert!(!parent.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_cooperative_tasks_without_aborting() {
    let mut group: Group<(), &'static str> = Group::new();
    for _ in 0..4 {
        group
            .spawn(cooperative(group.token().clone(), 10_000))
            .await;
    }
    let start = Instant::now();
    group.cancel();
    let results = group.wait_all().await;
    assert_eq!(results.len(), 4);
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap_err().error() == Some(&"cancelled"))
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn wait_is_in_completion_order_and_wait_ordered_in_spawn_order() {
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
    assert_eq!(spawn_all().await.wait().await.unwrap(), [1, 2, 0]);
    assert_eq!(spawn_all().await.wait_ordered().await.unwrap(), [0, 1, 2]);
    let all: Vec<u64> = spawn_all()
        .await
        .wait_all_ordered()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(all, [0, 1, 2]);

    let mut group = spawn_all().await;
    let mut seen = Vec::new();
    while let Some(result) = group.join_next().await {
        seen.push(result.unwrap());
    }
    assert_eq!(seen, [1, 2, 0]);
    assert!(group.is_empty());
}

#[tokio::test(start_paused = true)]
async fn without_fail_fast_every_error_is_collected_like_errors_join() {
    let mut group: Group<u32, String> = Group::new().fail_fast(false);
    let token = group.token().clone();
    for (name, ms, fail) in [("a", 30, true), ("b", 10, true), ("c", 20, false)] {
        group
            .spawn_named(name, async move {
                sleep(Duration::from_millis(ms)).await;
                if fail {
                    Err(format!("{name} broke"))
                } else {
                    Ok(3)
                }
            })
            .await;
    }
    let errors = group.wait_joined().await.unwrap_err();
    assert!(!token.is_cancelled() || errors.len() == 2);
    assert_eq!(errors.len(), 2);
    assert_eq!(errors.first().unwrap().task(), "b");
    assert_eq!(
        errors.to_string(),
        "task b failed: b broke\ntask a failed: a broke"
    );
    let tasks: Vec<String> = errors.into_iter().map(|e| e.task().to_owned()).collect();
    assert_eq!(tasks, ["b", "a"]);

    let mut group: Group<u32, String> = Group::new().fail_fast(false);
    let token = group.token().clone();
    group.spawn(async { Err("no".to_string()) }).await;
    group
        .spawn(async {
            sleep(Duration::from_millis(5)).await;
            Ok(1)
        })
        .await;
    tokio::task::yield_now().await;
    assert!(!token.is_cancelled(), "fail_fast(false) does not cancel");
    let all = group.wait_all().await;
    assert_eq!(all.len(), 2);

    let group: Group<u32, String> = Group::new();
    assert_eq!(group.wait_joined().await.unwrap(), Vec::<u32>::new());
}

#[tokio::test(start_paused = true)]
async fn a_task_spawned_after_a_failure_still_runs_with_the_token_cancelled() {
    let mut group: Group<bool, &'static str> = Group::new();
    group.spawn(async { Err("first") }).await;
    assert!(group.join_next().await.unwrap().is_err());
    let token = group.token().clone();
    group.spawn(async move { Ok(token.is_cancelled()) }).await;
    assert!(group.join_next().await.unwrap().unwrap());
}

#[tokio::test]
async fn bad_limits_are_errors_not_panics() {
    assert_eq!(
        Group::<(), &'static str>::new().limit(0).unwrap_err(),
        LimitError::Zero
    );
    assert_eq!(
        LimitError::Zero.to_string(),
        "a task group limit must be at least 1"
    );
    let group = Group::<(), &'static str>::new().limit(usize::MAX).unwrap();
    assert_eq!(group.max_tasks(), Some(tokio::sync::Semaphore::MAX_PERMITS));
    assert!(group.wait().await.unwrap().is_empty());
}

#[tokio::test]
async fn errors_convert_into_anyhow() {
    async fn run() -> anyhow::Result<Vec<u8>> {
        let mut group: Group<u8> = Group::new();
        group.spawn(async { anyhow::bail!("disk full") }).await;
        Ok(group.wait().await?)
    }
    let err = run().await.unwrap_err();
    assert_eq!(err.to_string(), "task #0 failed: disk full");
    let group_err = err.downcast::<GroupError<anyhow::Error>>().unwrap();
    assert_eq!(group_err.into_error().unwrap().to_string(), "disk full");
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn error<T: std::error::Error + Send + Sync + 'static>() {}
    send_sync::<Group<u32, anyhow::Error>>();
    send_sync::<Group>();
    send_sync::<weir_group::ShutdownReport<u32, anyhow::Error>>();
    error::<GroupError<anyhow::Error>>();
    error::<GroupError<std::io::Error>>();
    error::<weir_group::GroupErrors<anyhow::Error>>();
    error::<Rejected<std::future::Ready<Result<(), ()>>>>();
    error::<LimitError>();
    // A group (and its futures) can move to another thread.
    fn send<T: Send>(_: &T) {}
    let mut group: Group<u32, String> = Group::new();
    send(&group.spawn(async { Ok(1) }));
    send(&group.join_next());
}

#[tokio::test(start_paused = true)]
async fn a_long_lived_group_joined_one_by_one_keeps_naming_tasks_right() {
    let before = alive();
    let mut group: Group<u64, String> = Group::new().limit(8).unwrap();
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
    assert_eq!(alive(), before);
}
