//! Pool: resize while running, the hand-off queue (`queue(0)`), and a job
//! that submits to its own pool.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::time::Duration;

use tokio::time::{Instant, sleep};
use weir_core::pool::{JobError, Pool, ResizeError, TrySubmitError};
use weir_core::{MAX_WORKERS, Problem};

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
        .build(|n: u64| async move {
            sleep(MS * n as u32).await;
            Ok(n)
        })
        .unwrap()
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn growing_takes_effect_at_once() {
    let before = alive();
    let pool = sleepy(1, 10);
    let start = Instant::now();
    let mut tickets = Vec::new();
    for _ in 0..4 {
        tickets.push(pool.submit(100).await.unwrap());
    }
    pool.resize(4).unwrap();
    assert_eq!(pool.report().workers, 4);
    for t in tickets {
        assert_eq!(t.await, Ok(100));
    }
    assert_eq!(
        start.elapsed(),
        100 * MS,
        "four workers ran the four jobs together"
    );
    pool.join().await.unwrap();
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn shrinking_lets_busy_workers_finish_their_job_first() {
    let before = alive();
    let pool = sleepy(4, 10);
    let start = Instant::now();
    let mut tickets = Vec::new();
    for _ in 0..8 {
        tickets.push(pool.submit(100).await.unwrap());
    }
    settle().await;
    assert_eq!(pool.report().running, 4);
    pool.resize(1).unwrap();
    settle().await;
    assert_eq!(pool.report().workers, 4, "busy workers are not interrupted");
    for t in tickets {
        assert_eq!(t.await, Ok(100), "no job lost to the shrink");
    }
    // First four together (100ms), then one worker runs the other four.
    assert_eq!(start.elapsed(), 500 * MS);
    assert_eq!(pool.report().workers, 1);
    assert_eq!(alive(), before + 2);
    pool.join().await.unwrap();
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn shrinking_an_idle_pool_retires_idle_workers_at_once_and_regrowing_works() {
    for queue in [4, 0] {
        let before = alive();
        let pool = sleepy(4, queue);
        settle().await;
        pool.resize(2).unwrap();
        settle().await;
        assert_eq!(pool.report().workers, 2, "queue({queue})");
        assert_eq!(alive(), before + 3);
        if queue == 0 {
            // The retired workers took back their idle offers: exactly two
            // jobs can be handed off now.
            let a = pool.try_submit(100).unwrap();
            let b = pool.try_submit(100).unwrap();
            assert!(pool.try_submit(100).unwrap_err().is_full());
            assert_eq!((a.await, b.await), (Ok(100), Ok(100)));
        }
        pool.resize(3).unwrap();
        settle().await;
        assert_eq!(pool.report().workers, 3);
        let Err(ResizeError::Config(err)) = pool.resize(0) else {
            panic!("resize(0) accepted")
        };
        assert!(err.is_zero());
        pool.clone().join().await.unwrap();
        assert_eq!(alive(), before);
        assert_eq!(pool.resize(2), Err(ResizeError::Closed));
    }
}

#[tokio::test(start_paused = true)]
async fn queue_zero_hands_off_to_an_idle_worker_only() {
    let pool = sleepy(1, 0);
    // The worker has not started yet: nobody idle.
    assert!(pool.try_submit(1).unwrap_err().is_full());
    settle().await;
    let first = pool.try_submit(100).unwrap();
    // The only worker is taken; there is no queue to wait in.
    let err = pool.try_submit(2).unwrap_err();
    assert!(matches!(err, TrySubmitError::Full(2)));
    // submit waits until the worker is idle again.
    let start = Instant::now();
    let second = pool.submit(50).await.unwrap();
    assert_eq!(start.elapsed(), 100 * MS);
    assert!(pool.report().queued <= 1);
    assert_eq!(first.await, Ok(100));
    assert_eq!(second.await, Ok(50));
    let report = pool.join().await.unwrap();
    assert_eq!(report.completed, 2);
    assert_eq!(report.rejected, 2);
}

#[tokio::test(start_paused = true)]
async fn queue_zero_with_several_workers_admits_one_job_per_idle_worker() {
    let pool = sleepy(3, 0);
    settle().await;
    let tickets: Vec<_> = (0..3).map(|_| pool.try_submit(100).unwrap()).collect();
    assert!(pool.try_submit(100).unwrap_err().is_full());
    let start = Instant::now();
    for t in tickets {
        assert_eq!(t.await, Ok(100));
    }
    assert_eq!(start.elapsed(), 100 * MS);
    pool.join().await.unwrap();
}

/// A job that may submit children to its own pool.
struct Job {
    children: u32,
    pool: Option<Pool<Job, u32, Infallible>>,
    safe: bool,
}

fn recursive(workers: usize, queue: usize) -> Pool<Job, u32, Infallible> {
    Pool::builder()
        .workers(workers)
        .queue(queue)
        .name("recursive")
        .build(|job: Job| async move {
            let mut refused = 0;
            if let Some(pool) = &job.pool {
                for _ in 0..job.children {
                    let child = Job {
                        children: 0,
                        pool: None,
                        safe: job.safe,
                    };
                    if job.safe {
                        if let Err(e) = pool.try_submit(child) {
                            assert!(e.is_full());
                            refused += 1; // run it inline, retry later, or report it
                        }
                    } else {
                        // Waits for room that only this worker could make.
                        let _ = pool.submit(child).await;
                    }
                }
            }
            sleep(10 * MS).await;
            Ok(refused)
        })
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_job_that_submits_to_its_own_full_pool_with_submit_deadlocks() {
    let before = alive();
    let pool = recursive(1, 1);
    let parent = pool
        .submit(Job {
            children: 2,
            pool: Some(pool.clone()),
            safe: false,
        })
        .await
        .unwrap();
    // Child 1 fills the queue; child 2 waits for room while the only worker
    // runs the parent: nothing can move, ever.
    let stuck = tokio::time::timeout(Duration::from_secs(3600), parent).await;
    assert!(stuck.is_err(), "the parent never finishes");
    let r = pool.report();
    assert_eq!((r.running, r.queued), (1, 1));
    // Closing the pool breaks the cycle: the parent's waiting submit fails
    // (handing child 2 back), the parent ends, child 1 drains.
    let report = pool.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!((report.completed, report.cancelled), (2, 0));
    assert_eq!(report.submitted, 2);
    assert_eq!(report.rejected, 1, "child 2, handed back to the parent");
    assert_eq!(report.in_flight(), 0);
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn try_submit_is_the_safe_way_to_submit_from_a_job() {
    let before = alive();
    let pool = recursive(1, 1);
    let parent = pool
        .submit(Job {
            children: 2,
            pool: Some(pool.clone()),
            safe: true,
        })
        .await
        .unwrap();
    assert_eq!(
        parent.await,
        Ok(1),
        "one child queued, one refused and handed back"
    );
    let report = pool.join().await.unwrap();
    assert_eq!(report.completed, 2);
    assert_eq!(report.rejected, 1);
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn submit_timeout_from_a_job_also_escapes_the_deadlock() {
    let pool: Pool<u32, u32, Infallible> = Pool::builder()
        .workers(1)
        .queue(1)
        .build(|n: u32| async move { Ok(n) })
        .unwrap();
    let inner = pool.downgrade();
    let parent_pool: Pool<u32, Result<u32, u32>, JobError<Infallible>> = Pool::builder()
        .workers(1)
        .queue(1)
        .build(move |n: u32| {
            let inner = inner.clone();
            async move {
                let Some(p) = inner.upgrade() else {
                    return Ok(Err(n));
                };
                Ok(match p.submit_timeout(n, 10 * MS).await {
                    Ok(t) => t.await.map_err(|_| n),
                    Err(e) => Err(e.into_inner()),
                })
            }
        })
        .unwrap();
    assert_eq!(parent_pool.submit(3).await.unwrap().await, Ok(Ok(3)));
    parent_pool.join().await.unwrap();
    pool.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn resize_to_zero_or_beyond_max_workers_is_an_error_and_changes_nothing() {
    let before = alive();
    let pool = sleepy(2, 4);
    settle().await;
    for n in [MAX_WORKERS + 1, usize::MAX] {
        let Err(ResizeError::Config(err)) = pool.resize(n) else {
            panic!("resize({n}) accepted")
        };
        assert_eq!(
            err.problem(),
            &Problem::TooLarge {
                max: MAX_WORKERS as u64
            }
        );
        assert_eq!(err.setting(), "workers");
        assert_eq!(
            err.to_string(),
            "pool `pool`: workers is above its maximum of 65536"
        );
    }
    settle().await;
    assert_eq!(pool.report().workers, 2, "nothing was spawned");
    assert_eq!(alive(), before + 3);
    assert_eq!(pool.submit(1).await.unwrap().await, Ok(1));
    pool.join().await.unwrap();
    assert_eq!(alive(), before);
}
