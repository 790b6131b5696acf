//! Pool: `join` drains, `shutdown(grace)` cancels the stragglers with
//! `GraceExpired`, `cancel` stops at once, dropping the last handle drains;
//! the final report balances and no task outlives any of them.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::{Instant, sleep};
use weir_core::pool::{JobError, Pool, PoolError, ResizeError, WeakPool};
use weir_core::{Cause, GraceExpired};

const MS: Duration = Duration::from_millis(1);

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

fn sleepy(workers: usize, queue: usize) -> Pool<u64, u64, Infallible> {
    Pool::builder()
        .workers(workers)
        .queue(queue)
        .name("sleepy")
        .build(|n: u64| async move {
            sleep(MS * n as u32).await;
            Ok(n)
        })
        .unwrap()
}

fn is_grace_expired(cause: &Cause) -> bool {
    cause.downcast_ref::<GraceExpired>().is_some()
}

#[tokio::test(start_paused = true)]
async fn join_drains_the_queue_and_leaves_no_task() {
    let before = alive();
    let pool = sleepy(2, 10);
    assert_eq!(
        alive(),
        before + 3,
        "one task per worker and a context watcher"
    );
    let mut tickets = Vec::new();
    for _ in 0..6 {
        tickets.push(pool.submit(100).await.unwrap());
    }
    sleep(50 * MS).await;
    let start = Instant::now();
    let other = pool.clone();
    let report = pool.join().await.unwrap();
    assert_eq!(start.elapsed(), 250 * MS, "6 jobs on 2 workers");
    assert_eq!(report.elapsed, 300 * MS, "since the pool was built");
    assert_eq!((report.completed, report.cancelled), (6, 0));
    assert_eq!(report.workers, 0);
    assert!(report.is_balanced());
    assert_eq!(alive(), before, "no task outlives join");
    for t in tickets {
        assert_eq!(t.await, Ok(100));
    }
    // Closed for good, and says so with the job.
    assert!(other.is_closed());
    let err = other.submit(1).await.unwrap_err();
    assert!(err.is_closed());
    assert_eq!(err.into_inner(), 1);
    assert_eq!(other.resize(3), Err(ResizeError::Closed));
    assert_eq!(
        other.resize(3).unwrap_err().to_string(),
        "the pool is closed"
    );
    // Later: the same final report (the clock is not read again).
    sleep(Duration::from_secs(5)).await;
    let again = other.clone().join().await.unwrap();
    assert_eq!(again.elapsed, 300 * MS);
    assert_eq!(again.completed, 6);
    assert_eq!(again.rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_the_stragglers_with_grace_expired_and_the_report_balances() {
    let before = alive();
    let pool = sleepy(2, 10);
    let mut quick = Vec::new();
    let mut slow = Vec::new();
    // Two quick jobs run first; then four 10s stragglers (two run, two wait).
    for _ in 0..2 {
        quick.push(pool.submit(100).await.unwrap());
    }
    for _ in 0..4 {
        slow.push(pool.submit(10_000).await.unwrap());
    }
    let start = Instant::now();
    let err = pool.shutdown(500 * MS).await.unwrap_err();
    assert_eq!(
        start.elapsed(),
        500 * MS,
        "cancelled at the end of the grace"
    );
    assert!(is_grace_expired(err.error().cause()));
    assert_eq!(
        err.error().cause().downcast_ref::<GraceExpired>(),
        Some(&GraceExpired { grace: 500 * MS })
    );
    let report = err.report();
    assert_eq!(
        (report.submitted, report.completed, report.cancelled),
        (6, 2, 4)
    );
    assert_eq!(report.in_flight(), 0);
    assert!(report.is_balanced());
    assert_eq!(alive(), before, "no task outlives shutdown");
    for t in quick {
        assert_eq!(t.await, Ok(100));
    }
    for t in slow {
        let err = t.await.unwrap_err();
        assert!(is_grace_expired(err.cause().unwrap()), "{err}");
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_that_finishes_in_time_is_ok_and_cancels_nothing() {
    let before = alive();
    let pool = sleepy(1, 4);
    let t = pool.submit(100).await.unwrap();
    let report = pool.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!((report.completed, report.cancelled), (1, 0));
    assert_eq!(report.elapsed, 100 * MS);
    assert_eq!(t.await, Ok(100));
    assert_eq!(pool.context().cause(), None);
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_a_grace_of_duration_max_waits_like_join() {
    let before = alive();
    let pool = sleepy(1, 4);
    let t = pool.submit(10_000).await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(60), pool.shutdown(Duration::MAX))
        .await
        .expect("no hang")
        .unwrap();
    assert_eq!(report.completed, 1);
    assert_eq!(t.await, Ok(10_000));
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_a_zero_grace_cancels_what_is_left_at_once() {
    let before = alive();
    let pool = sleepy(1, 4);
    let running = pool.submit(100).await.unwrap();
    let queued = pool.submit(100).await.unwrap();
    sleep(MS).await;
    let start = Instant::now();
    let err = pool.shutdown(Duration::ZERO).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(err.report().cancelled, 2);
    assert!(err.report().is_balanced());
    assert!(running.await.unwrap_err().is_cancelled());
    assert!(queued.await.unwrap_err().is_cancelled());
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn join_after_cancel_carries_the_cause_and_a_balanced_report() {
    let before = alive();
    let pool = sleepy(1, 4);
    let running = pool.submit(1_000).await.unwrap();
    let queued = pool.submit(1_000).await.unwrap();
    sleep(10 * MS).await;
    pool.cancel();
    assert!(matches!(
        running.await,
        Err(JobError::Cancelled(Cause::Cancelled))
    ));
    assert!(matches!(
        queued.await,
        Err(JobError::Cancelled(Cause::Cancelled))
    ));
    assert!(pool.is_closed());
    assert!(pool.try_submit(1).unwrap_err().is_closed());
    let start = Instant::now();
    let err = pool.join().await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(err.error(), &PoolError::Stopped(Cause::Cancelled));
    let report = err.into_report();
    assert_eq!(
        (report.submitted, report.cancelled, report.rejected),
        (2, 2, 1)
    );
    assert_eq!(report.in_flight(), 0);
    assert!(report.is_balanced());
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_drains_and_leaks_no_task() {
    let before = alive();
    let pool = sleepy(2, 4);
    let other = pool.clone();
    let mut tickets = Vec::new();
    for _ in 0..4 {
        tickets.push(pool.submit(100).await.unwrap());
    }
    drop(pool);
    sleep(MS).await;
    assert!(!other.is_closed(), "a clone keeps it open");
    let results = other.results().unwrap();
    drop(other);
    for t in tickets {
        assert_eq!(t.await, Ok(100), "queued jobs still run");
    }
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    assert_eq!(alive(), before, "the workers ended by themselves");
    // The results stream ends with the workers.
    let rest: Vec<_> = futures::StreamExt::collect(results).await;
    assert!(rest.is_empty());
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_context_of_an_idle_pool_ends_every_task_without_join() {
    let before = alive();
    let pool = sleepy(3, 4);
    sleep(MS).await; // every worker idle, waiting on the queue
    pool.context().cancel();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(pool.is_closed());
    assert_eq!(pool.report().workers, 0);
    assert_eq!(alive(), before, "workers and the context watcher ended");
    let err = pool.submit(1).await.unwrap_err();
    assert_eq!(err.into_inner(), 1);
    // Nothing was in flight: join is Ok.
    assert_eq!(pool.join().await.unwrap().cancelled, 0);
}

/// A worker takes a share of the queue at once and serves it without the
/// queue's lock. A job that cancels its own pool and is done at its first
/// poll never gives the worker a reason to wait, so only the worker's check
/// before each job it takes keeps the rest of that share from running.
#[tokio::test(start_paused = true)]
async fn jobs_behind_one_that_cancels_the_pool_are_cancelled_not_run() {
    let before = alive();
    let ran = Arc::new(AtomicUsize::new(0));
    let this: Arc<OnceLock<WeakPool<u64, u64, Infallible>>> = Arc::new(OnceLock::new());
    let pool = Pool::builder()
        .workers(1)
        .queue(8)
        .name("self-cancelling")
        .build({
            let ran = ran.clone();
            let this = this.clone();
            move |n: u64| {
                ran.fetch_add(1, Ordering::SeqCst);
                if n == 2
                    && let Some(pool) = this.get().and_then(WeakPool::upgrade)
                {
                    pool.cancel();
                }
                std::future::ready(Ok(n))
            }
        })
        .unwrap();
    this.set(pool.downgrade()).unwrap();
    // Queued before the worker first looks (nothing has yielded yet), so
    // its first look takes all five as one share.
    let tickets: Vec<_> = (0..5).map(|n| pool.try_submit(n).unwrap()).collect();
    let mut results = Vec::new();
    for ticket in tickets {
        results.push(ticket.await);
    }
    for (n, result) in results.iter().enumerate().take(3) {
        assert_eq!(result.as_ref().ok(), Some(&(n as u64)));
    }
    for result in &results[3..] {
        assert!(matches!(result, Err(JobError::Cancelled(Cause::Cancelled))));
    }
    assert_eq!(ran.load(Ordering::SeqCst), 3, "no job ran after the cancel");
    let report = pool.join().await.unwrap_err().into_report();
    assert_eq!((report.completed, report.cancelled), (3, 2));
    assert!(report.is_balanced());
    assert_eq!(alive(), before);
}
