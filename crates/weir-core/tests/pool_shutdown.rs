//! Pool: shutdown drains, shutdown_timeout aborts stragglers, cancellation,
//! dropping the last handle; no task outlives any of them.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::time::Duration;

use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use weir_core::pool::{JobError, Pool, SubmitError};

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

#[tokio::test(start_paused = true)]
async fn shutdown_drains_the_queue_and_leaves_no_task() {
    let before = alive();
    let pool = sleepy(2, 10);
    assert_eq!(
        alive(),
        before + 3,
        "one task per worker and a token watcher"
    );
    let mut tickets = Vec::new();
    for _ in 0..6 {
        tickets.push(pool.submit(100).await.unwrap());
    }
    let start = Instant::now();
    let report = pool.shutdown().await;
    assert_eq!(start.elapsed(), 300 * MS, "6 jobs on 2 workers");
    assert_eq!(report.drained, 6);
    assert_eq!(report.cancelled, 0);
    assert!(!report.timed_out);
    assert_eq!(report.elapsed, 300 * MS);
    assert_eq!(report.stats.completed, 6);
    assert_eq!(report.stats.workers, 0);
    assert_eq!(alive(), before, "no task outlives shutdown");
    for t in tickets {
        assert_eq!(t.await, Ok(100));
    }
    // Closed for good, and says so with the job.
    assert!(pool.is_closed());
    let SubmitError(job) = pool.submit(1).await.unwrap_err();
    assert_eq!(job, 1);
    assert!(pool.resize(3).is_err());
    // A second shutdown reports nothing new.
    let again = pool.shutdown().await;
    assert_eq!((again.drained, again.cancelled), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn shutdown_timeout_cancels_the_stragglers_and_reports_the_numbers() {
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
    let report = pool.shutdown_timeout(500 * MS).await;
    assert_eq!(start.elapsed(), 500 * MS, "aborted at the deadline");
    assert!(report.timed_out);
    assert_eq!(report.drained, 2);
    assert_eq!(report.cancelled, 4);
    assert_eq!(report.stats.completed, 2);
    assert_eq!(report.stats.cancelled, 4);
    assert_eq!(report.stats.submitted, 6);
    assert_eq!(report.stats.in_flight(), 0);
    assert_eq!(alive(), before, "no task outlives shutdown_timeout");
    for t in quick {
        assert_eq!(t.await, Ok(100));
    }
    for t in slow {
        assert_eq!(t.await, Err(JobError::Cancelled));
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_timeout_that_finishes_in_time_cancels_nothing() {
    let pool = sleepy(1, 4);
    let t = pool.submit(100).await.unwrap();
    let report = pool.shutdown_timeout(Duration::from_secs(1)).await;
    assert!(!report.timed_out);
    assert_eq!((report.drained, report.cancelled), (1, 0));
    assert_eq!(report.elapsed, 100 * MS);
    assert_eq!(t.await, Ok(100));
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
async fn the_token_stops_the_pool_and_cancels_running_and_queued_jobs() {
    let before = alive();
    let parent = CancellationToken::new();
    let pool = Pool::builder()
        .workers(1)
        .queue(4)
        .token(parent.clone())
        .build(|n: u64| async move {
            sleep(MS * n as u32).await;
            Ok::<_, Infallible>(n)
        })
        .unwrap();
    let running = pool.submit(1_000).await.unwrap();
    let queued = pool.submit(1_000).await.unwrap();
    sleep(10 * MS).await;
    parent.cancel();
    assert_eq!(running.await, Err(JobError::Cancelled));
    assert_eq!(queued.await, Err(JobError::Cancelled));
    let start = Instant::now();
    let report = pool.shutdown().await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(report.stats.cancelled, 2);
    assert_eq!(report.stats.in_flight(), 0);
    assert!(pool.is_closed());
    assert!(pool.try_submit(1).unwrap_err().is_closed());
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn cancel_does_not_touch_the_parent_token() {
    let parent = CancellationToken::new();
    let pool = Pool::builder()
        .workers(1)
        .token(parent.clone())
        .build(|n: u64| async move { Ok::<_, Infallible>(n) })
        .unwrap();
    pool.cancel();
    assert!(pool.token().is_cancelled());
    assert!(!parent.is_cancelled());
    let report = pool.shutdown().await;
    assert_eq!(report.stats.workers, 0);
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_token_of_an_idle_pool_ends_every_task_without_shutdown() {
    let before = alive();
    let pool = sleepy(3, 4);
    sleep(MS).await; // every worker idle, waiting on the queue
    pool.token().cancel();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(pool.is_closed());
    assert_eq!(pool.stats().workers, 0);
    assert_eq!(alive(), before, "workers and the token watcher ended");
    let SubmitError(job) = pool.submit(1).await.unwrap_err();
    assert_eq!(job, 1);
}
