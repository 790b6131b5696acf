//! Pool with a retry policy (`PoolBuilder::retry`): retries counted in the
//! report, the classifier, the budget, the pool's deadline, panics not
//! retried, cancellation during a backoff, and each attempt taking its own
//! slot of an adaptive limit.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::{Instant, sleep};
use weir_core::pool::{JobError, JobHandler, Pool};
use weir_core::{AdaptiveLimit, Cause, Context, Jitter, RetryBudget, RetryPolicy};

const MS: Duration = Duration::from_millis(1);

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// 10 ms, doubling, no jitter: attempts at 0, 10, 30, 70 ms.
fn policy(max_attempts: u32) -> RetryPolicy<String> {
    RetryPolicy::builder()
        .base(10 * MS)
        .jitter(Jitter::None)
        .max_attempts(max_attempts)
        .retry_if(|e: &String| e.starts_with("busy"))
        .build()
        .unwrap()
}

/// Job `(id, fails)`: fails `fails` times with "busy", then answers `id`.
/// `calls` counts the handler's calls per job id.
fn flaky_pool(
    policy: RetryPolicy<String>,
    calls: Arc<[AtomicU32; 16]>,
) -> Pool<(usize, u32), usize, String> {
    Pool::builder()
        .workers(4)
        .retry(policy)
        .build(move |(id, fails): (usize, u32)| {
            let calls = Arc::clone(&calls);
            async move {
                let n = calls[id].fetch_add(1, Ordering::SeqCst);
                if fails == u32::MAX {
                    return Err(format!("not found: {id}"));
                }
                if n < fails {
                    Err(format!("busy {id}"))
                } else {
                    Ok(id)
                }
            }
        })
        .unwrap()
}

fn calls() -> Arc<[AtomicU32; 16]> {
    Arc::new(std::array::from_fn(|_| AtomicU32::new(0)))
}

#[tokio::test(start_paused = true)]
async fn failed_attempts_are_retried_and_counted() {
    let before = alive();
    let policy = policy(4);
    let calls = calls();
    let pool = flaky_pool(policy.clone(), Arc::clone(&calls));
    let start = Instant::now();
    let ok = pool.submit((0, 0)).await.unwrap();
    let twice = pool.submit((1, 2)).await.unwrap();
    let never = pool.submit((2, 10)).await.unwrap();
    assert_eq!(ok.await, Ok(0));
    assert_eq!(twice.await, Ok(1));
    assert_eq!(start.elapsed(), 30 * MS, "attempts at 0, 10 and 30 ms");
    assert_eq!(never.await, Err(JobError::Failed("busy 2".to_owned())));
    assert_eq!(
        start.elapsed(),
        70 * MS,
        "four attempts, then the last error"
    );
    let report = pool.join().await.unwrap();
    assert_eq!((report.completed, report.failed), (2, 1));
    assert_eq!((report.attempts, report.retries), (1 + 3 + 4, 2 + 3));
    assert_eq!(report.budget_refusals, 0);
    assert!(report.is_balanced());
    let counts: Vec<u32> = calls
        .iter()
        .take(3)
        .map(|c| c.load(Ordering::SeqCst))
        .collect();
    assert_eq!(counts, [1, 3, 4]);
    // The policy's own stats count the pool's calls too.
    let stats = policy.stats();
    assert_eq!((stats.calls, stats.succeeded, stats.gave_up), (3, 2, 1));
    assert!(stats.is_balanced());
    assert!(report.to_string().contains("attempts  retries"));
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn an_error_the_policy_does_not_retry_fails_at_once() {
    let calls = calls();
    let pool = flaky_pool(policy(4), Arc::clone(&calls));
    let start = Instant::now();
    let ticket = pool.submit((3, u32::MAX)).await.unwrap();
    assert_eq!(
        ticket.await,
        Err(JobError::Failed("not found: 3".to_owned()))
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(calls[3].load(Ordering::SeqCst), 1);
    let report = pool.join().await.unwrap();
    assert_eq!((report.attempts, report.retries), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn the_budget_caps_the_retries_of_every_job() {
    // No ratio, one retry a second: 10 retries over the 10 s window.
    let budget = RetryBudget::builder()
        .ratio(0.0)
        .min_per_second(1)
        .build()
        .unwrap();
    let policy = RetryPolicy::builder()
        .base(MS)
        .max_attempts(4)
        .budget(budget)
        .seed(1)
        .build()
        .unwrap();
    let pool = Pool::builder()
        .workers(8)
        .queue(64)
        .retry(policy)
        .build(|n: u32| async move { Err::<u32, _>(format!("down {n}")) })
        .unwrap();
    let mut tickets = Vec::new();
    for n in 0..40 {
        tickets.push(pool.submit(n).await.unwrap());
    }
    for (n, t) in tickets.into_iter().enumerate() {
        assert_eq!(t.await, Err(JobError::Failed(format!("down {n}"))));
    }
    let report = pool.join().await.unwrap();
    assert_eq!(report.failed, 40);
    assert_eq!(report.retries, 10, "the budget's reserve, and no more");
    assert_eq!(report.attempts, 40 + 10);
    // A job ends out of attempts (after 3 retries) or refused once.
    let refused = report.budget_refusals;
    assert!(
        (40 - report.retries / 3..=40).contains(&refused),
        "{refused}"
    );
}

#[tokio::test(start_paused = true)]
async fn no_backoff_is_slept_past_the_pools_deadline() {
    let policy = RetryPolicy::builder()
        .base(20 * MS)
        .jitter(Jitter::None)
        .max_attempts(10)
        .build()
        .unwrap();
    let ctx = Context::background().with_timeout(50 * MS);
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&attempts);
    let pool = Pool::builder()
        .workers(1)
        .context(&ctx)
        .retry(policy)
        .build(move |_: ()| {
            seen.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>("503".to_owned()) }
        })
        .unwrap();
    let start = Instant::now();
    let ticket = pool.submit(()).await.unwrap();
    // Attempts at 0 and 20 ms; the next backoff (40 ms) would end at 60.
    assert_eq!(ticket.await, Err(JobError::Failed("503".to_owned())));
    assert_eq!(start.elapsed(), 20 * MS);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    let report = pool.join().await.unwrap();
    assert_eq!((report.attempts, report.retries), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_not_retried() {
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&attempts);
    let pool = Pool::builder()
        .workers(1)
        .retry(policy(5))
        .build(move |n: u32| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 1 {
                    panic!("bad job");
                }
                Ok::<_, String>(n)
            }
        })
        .unwrap();
    let t = pool.submit(1).await.unwrap();
    assert!(matches!(t.await, Err(JobError::Panicked(p)) if p.message() == "bad job"));
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    let report = pool.join().await.unwrap();
    assert_eq!(
        (report.panicked, report.attempts, report.retries),
        (1, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_pool_ends_a_backoff() {
    let before = alive();
    let policy = RetryPolicy::builder()
        .base(Duration::from_secs(10))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let pool = Pool::builder()
        .workers(1)
        .retry(policy.clone())
        .build(|_: ()| async { Err::<(), _>("busy".to_owned()) })
        .unwrap();
    let ticket = pool.submit(()).await.unwrap();
    sleep(MS).await; // the first attempt failed; the backoff runs
    pool.context().cancel_with("maintenance".to_owned());
    let start = Instant::now();
    match ticket.await {
        Err(JobError::Cancelled(cause)) => {
            assert_eq!(cause.downcast_ref::<String>().unwrap(), "maintenance");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "the backoff was cut short");
    let err = pool.join().await.unwrap_err();
    assert!(matches!(err.error().cause(), Cause::Error(_)));
    assert_eq!(err.report().cancelled, 1);
    let stats = policy.stats();
    assert_eq!((stats.in_progress, stats.abandoned), (0, 1));
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn with_an_adaptive_limit_each_attempt_takes_its_own_slot() {
    let limit = AdaptiveLimit::builder().initial(2).build().unwrap();
    let calls = calls();
    let pool = Pool::builder()
        .adaptive(limit.clone())
        .retry(policy(3))
        .build({
            let calls = Arc::clone(&calls);
            move |id: usize| {
                let calls = Arc::clone(&calls);
                async move {
                    match calls[id].fetch_add(1, Ordering::SeqCst) {
                        0 => Err("busy".to_owned()),
                        _ => Ok(id),
                    }
                }
            }
        })
        .unwrap();
    for id in 0..4 {
        assert_eq!(pool.submit(id).await.unwrap().await, Ok(id));
    }
    let report = pool.join().await.unwrap();
    assert_eq!((report.attempts, report.retries), (8, 4));
    let stats = limit.stats();
    assert_eq!(stats.accepted, 8, "one slot per attempt");
    // The default classification: an error says nothing about the load.
    assert_eq!((stats.succeeded, stats.ignored), (4, 4));
}

/// A stateful handler: each attempt is one `handle` call with a clone.
struct Counter {
    seen: Vec<String>,
}

impl JobHandler for Counter {
    type Job = String;
    type Output = usize;
    type Error = String;

    async fn handle(&mut self, job: String) -> Result<usize, String> {
        self.seen.push(job.clone());
        if self.seen.len() < 3 {
            Err("busy".to_owned())
        } else {
            Ok(self.seen.len())
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_job_handler_is_retried_with_a_clone_of_the_job() {
    let pool = Pool::builder()
        .workers(1)
        .retry(policy(3))
        .build_with(|_| Counter { seen: Vec::new() })
        .unwrap();
    assert_eq!(pool.submit("a".to_owned()).await.unwrap().await, Ok(3));
    let report = pool.join().await.unwrap();
    assert_eq!((report.attempts, report.retries), (3, 2));
}
