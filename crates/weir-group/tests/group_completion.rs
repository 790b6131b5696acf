//! The completion queue under `Group`: every task delivers its outcome
//! exactly once (on completion, or as it is dropped), the group waits for
//! the task itself to end, and dropping the group lets go of everything.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use weir_group::{Group, GroupError};

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A future whose destructor takes a while, then says it is done: tokio
/// drops a task's future after the task's last poll, which is after the
/// task delivered its outcome to the group. The destructor first waits for
/// `start` (so that it overlaps what the test does next), then yields its
/// thread many times.
struct SlowToDrop<F> {
    fut: Pin<Box<F>>,
    start: Arc<AtomicBool>,
    dropped: Arc<AtomicBool>,
}

impl<F: Future> Future for SlowToDrop<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.fut.as_mut().poll(cx)
    }
}

impl<F> Drop for SlowToDrop<F> {
    fn drop(&mut self) {
        while !self.start.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        for _ in 0..100_000 {
            std::thread::yield_now();
        }
        self.dropped.store(true, Ordering::SeqCst);
    }
}

/// Waits until `alive()` is back to `before`: tokio takes a task off its
/// count a moment after the task's `JoinHandle` sees it complete (with a
/// `JoinSet` too), so a multi-thread test cannot ask for it at once.
async fn settle_to(before: usize) {
    let settled = timeout(Duration::from_secs(10), async {
        while alive() != before {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "{} tasks alive, {before} before", alive());
}

/// Thousands of tasks end on two worker threads while nobody polls the
/// group; `join` then has every value, and returns only once every task's
/// future is gone (one of them takes a while to drop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_that_end_while_the_group_is_not_polled_are_all_waited_for() {
    const N: usize = 20_000;
    let before = alive();
    let gate = CancellationToken::new();
    let ended = Arc::new(AtomicUsize::new(0));
    let all_ended = Arc::new(Notify::new());
    let slow_dropped = Arc::new(AtomicBool::new(false));
    let mut group: Group<usize, &'static str> = Group::new();
    for i in 0..N - 1 {
        let (gate, ended) = (gate.clone(), Arc::clone(&ended));
        group
            .spawn(async move {
                gate.cancelled().await;
                ended.fetch_add(1, Ordering::SeqCst);
                Ok(i)
            })
            .await;
    }
    // The last to end, and slow to drop: `join` starts while its future's
    // destructor runs.
    let (gate_, ended_, all_ended_) = (gate.clone(), Arc::clone(&ended), Arc::clone(&all_ended));
    let fut = Box::pin(async move {
        gate_.cancelled().await;
        while ended_.load(Ordering::SeqCst) < N - 1 {
            tokio::task::yield_now().await;
        }
        ended_.fetch_add(1, Ordering::SeqCst);
        all_ended_.notify_one();
        Ok(N - 1)
    });
    let start = Arc::new(AtomicBool::new(false));
    let (start_, dropped) = (Arc::clone(&start), Arc::clone(&slow_dropped));
    group
        .spawn(SlowToDrop {
            fut,
            start: start_,
            dropped,
        })
        .await;
    gate.cancel();
    timeout(Duration::from_secs(60), all_ended.notified())
        .await
        .unwrap_or_else(|_| panic!("{} of {N} tasks ended", ended.load(Ordering::SeqCst)));
    start.store(true, Ordering::SeqCst);
    let values = group.join().await.unwrap().into_values_ordered();
    assert!(
        slow_dropped.load(Ordering::SeqCst),
        "join returned before every task's future was dropped"
    );
    assert_eq!(values, (0..N).collect::<Vec<_>>());
    settle_to(before).await;
}

/// `join_next` hands a task's result out only once the task's future is
/// gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_next_hands_out_a_task_only_once_its_future_is_gone() {
    const N: usize = 2_000;
    let before = alive();
    let slow_dropped = Arc::new(AtomicBool::new(false));
    let mut group: Group<usize, &'static str> = Group::new();
    let dropped = Arc::clone(&slow_dropped);
    let fut = Box::pin(async { Ok(usize::MAX) });
    let start = Arc::new(AtomicBool::new(true));
    group
        .spawn(SlowToDrop {
            fut,
            start,
            dropped,
        })
        .await;
    for i in 0..N {
        group
            .spawn(async move {
                tokio::task::yield_now().await;
                Ok(i)
            })
            .await;
    }
    let mut joined = 0;
    while let Some(result) = group.join_next().await {
        if result.unwrap() == usize::MAX {
            assert!(
                slow_dropped.load(Ordering::SeqCst),
                "join_next handed out a task whose future was not dropped yet"
            );
        }
        joined += 1;
    }
    assert_eq!(joined, N + 1);
    settle_to(before).await;
}

/// Dropping a group with thousands of tasks, half of them ended with their
/// values not joined and half still running, drops every value and every
/// future, and leaves no task behind.
#[tokio::test(start_paused = true)]
async fn dropping_a_group_drops_every_task_and_every_unjoined_value() {
    const N: usize = 4_000;
    let before = alive();
    let dropped = Arc::new(AtomicUsize::new(0));
    let mut group: Group<Counted, &'static str> = Group::new();
    for i in 0..N {
        let counter = Arc::clone(&dropped);
        group
            .spawn(async move {
                if i % 2 == 0 {
                    // Ends at once: its value waits in the group.
                    return Ok(Counted(counter));
                }
                let _guard = Counted(counter);
                sleep(Duration::from_secs(3600)).await;
                Err("never")
            })
            .await;
    }
    // Let the even ones end.
    settle_to(before + N / 2).await;
    assert_eq!(group.len(), N);
    drop(group);
    // Aborted tasks are dropped on the runtime; let it run.
    settle_to(before).await;
    assert_eq!(dropped.load(Ordering::SeqCst), N);
}

/// A future whose destructor panics, after it returned its value.
struct PanicsOnDrop(u32);

impl Future for PanicsOnDrop {
    type Output = Result<u32, &'static str>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(self.0))
    }
}

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("destructor of {}", self.0);
    }
}

/// tokio catches a panic of the task's future's destructor, after the task
/// delivered its value; the group reports it as the task's result.
#[tokio::test(start_paused = true)]
async fn a_panic_in_a_finished_futures_destructor_is_the_tasks_result() {
    let before = alive();
    let mut group: Group<u32, &'static str> = Group::new();
    group.spawn_named("bad-drop", PanicsOnDrop(1)).await;
    group.spawn(async { Ok(2) }).await;
    let err = group.join().await.unwrap_err();
    assert_eq!(err.error().len(), 1);
    match err.error().first() {
        GroupError::Panicked { task, panic } => {
            assert_eq!(
                (task.as_str(), panic.message()),
                ("bad-drop", "destructor of 1")
            );
        }
        other => panic!("unexpected: {other:?}"),
    }
    let report = err.report();
    assert_eq!((report.succeeded, report.panicked), (1, 1));
    assert!(report.is_balanced());
    assert_eq!(report.values().copied().collect::<Vec<_>>(), [2]);

    // join_next reads it too.
    let mut group: Group<u32, &'static str> = Group::new();
    group.spawn(PanicsOnDrop(3)).await;
    let err = group.join_next().await.unwrap().unwrap_err();
    assert_eq!(err.to_string(), "task #0 panicked: destructor of 3");
    assert!(group.join_next().await.is_none());
    assert_eq!(alive(), before);
}

/// A task that its runtime stops (the runtime shut down) is reported as
/// aborted to a waiter on another runtime; the wait does not hang.
#[test]
fn tasks_stopped_by_their_runtimes_shutdown_are_reported_aborted() {
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group: Group<u32, &'static str> = Group::new();
    first.block_on(async {
        group.spawn(async { Ok(1) }).await;
        group
            .spawn_named("sleeper", async {
                sleep(Duration::from_secs(3600)).await;
                Ok(2)
            })
            .await;
        // Let the first one end, and the sleeper start sleeping.
        tokio::task::yield_now().await;
    });
    drop(first);
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let err = second
        .block_on(async { timeout(Duration::from_secs(60), group.join()).await })
        .expect("join hung on tasks of a runtime that is gone")
        .unwrap_err();
    assert_eq!(err.error().len(), 1);
    match err.error().first() {
        GroupError::Aborted { task } => assert_eq!(task, "sleeper"),
        other => panic!("unexpected: {other:?}"),
    }
    let report = err.report();
    assert_eq!(
        (report.spawned, report.succeeded, report.aborted),
        (2, 1, 1)
    );
    assert_eq!(report.values().copied().collect::<Vec<_>>(), [1]);
}

/// `spawn` outside a runtime panics, like `tokio::spawn`, and leaves the
/// group as it was.
#[test]
fn a_spawn_outside_a_runtime_panics_and_leaves_the_group_as_it_was() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group: Group<u32, &'static str> = Group::new();
    rt.block_on(group.spawn(async { Ok(1) }));
    let spawned = std::panic::catch_unwind(AssertUnwindSafe(|| {
        futures::executor::block_on(group.spawn(async { Ok(2) }));
    }));
    assert!(spawned.is_err(), "spawning outside a runtime panics");
    assert_eq!(group.len(), 1);
    rt.block_on(group.spawn(async { Ok(3) }));
    let report = rt.block_on(group.join()).unwrap();
    assert_eq!(report.spawned, 2, "the failed spawn is not counted");
    assert_eq!(report.into_values_ordered(), [1, 3]);
}

/// A failure of the user's, numbered, to tell racing failures apart.
#[derive(Debug)]
struct Failure(usize);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "failure {}", self.0)
    }
}

/// On two worker threads many tasks fail at once: the failure that
/// cancelled the group (the cause of its context) is the very value that
/// `join` reports first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_failures_race_the_cause_is_the_first_error_of_join() {
    for round in 0..100 {
        let gate = CancellationToken::new();
        let mut group: Group<(), Failure> = Group::new();
        let ctx = group.context().clone();
        for i in 0..16 {
            let gate = gate.clone();
            group
                .spawn(async move {
                    gate.cancelled().await;
                    Err(Failure(i))
                })
                .await;
        }
        gate.cancel();
        let err = group.join().await.unwrap_err();
        assert_eq!(err.error().len(), 16);
        let first = err.error().first().error().unwrap();
        let cause = ctx.cause().unwrap();
        let cause = cause.downcast_ref::<Failure>().unwrap();
        assert!(
            std::ptr::eq(first, cause),
            "round {round}: the cause is {cause} but join's first error is {first}"
        );
    }
}
