//! Pool with an adaptive limit (`PoolBuilder::adaptive`): the worker count
//! follows the limit within its min and max, each job holds a slot, the
//! report shows the limit, settings are checked, nothing outlives `join`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::{Instant, sleep};
use weir_core::pool::{JobError, Pool};
use weir_core::{AdaptiveLimit, Aimd, LimitOutcome, Problem};

const MS: Duration = Duration::from_millis(1);

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// AIMD between 2 and 8, from 4: +1 after each fully used window without a
/// drop, ×0.75 after a window with one.
fn limit() -> AdaptiveLimit {
    AdaptiveLimit::builder()
        .name("backend")
        .aimd(Aimd::new())
        .min(2)
        .max(8)
        .initial(4)
        .window(10 * MS)
        .window_samples(4)
        .build()
        .unwrap()
}

/// A backend that takes 10 ms a job and answers "busy" while `overloaded`;
/// `running` counts the jobs inside it, `peak` the most at once.
#[derive(Clone, Default)]
struct Backend {
    overloaded: Arc<AtomicBool>,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Backend {
    async fn call(&self, _job: u32) -> Result<u32, String> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        sleep(10 * MS).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        if self.overloaded.load(Ordering::SeqCst) {
            Err("busy".to_owned())
        } else {
            Ok(1)
        }
    }
}

fn pool(limit: &AdaptiveLimit, backend: &Backend) -> Pool<u32, u32, String> {
    let backend = backend.clone();
    Pool::builder()
        .name("adaptive")
        .queue(64)
        .adaptive(limit.clone())
        // A "busy" answer is an overload signal.
        .classify(|r: &Result<u32, String>| match r {
            Ok(_) => LimitOutcome::Success,
            Err(_) => LimitOutcome::Dropped,
        })
        .build(move |job: u32| {
            let backend = backend.clone();
            async move { backend.call(job).await }
        })
        .unwrap()
}

/// Keeps the pool's queue full until `stop`.
fn feed(pool: &Pool<u32, u32, String>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let pool = pool.clone();
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            if pool.submit_detached(0).await.is_err() {
                break;
            }
        }
    })
}

/// Samples the report every millisecond for `d`, checking the bounds; the
/// last report.
async fn watch(pool: &Pool<u32, u32, String>, d: Duration) -> weir_core::PoolReport {
    let end = Instant::now() + d;
    loop {
        let r = pool.report();
        assert!((2..=8).contains(&r.workers), "{} workers", r.workers);
        assert!((2..=8).contains(&r.limit.unwrap()), "{r:?}");
        assert!(r.is_balanced());
        if Instant::now() >= end {
            return r;
        }
        sleep(MS).await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_worker_count_follows_the_limit_up_and_down_within_its_bounds() {
    let before = alive();
    let limit = limit();
    let backend = Backend::default();
    let pool = pool(&limit, &backend);
    assert_eq!(pool.report().workers, 4, "starts at the limit's value");
    assert_eq!(pool.report().limit, Some(4));

    let stop = Arc::new(AtomicBool::new(false));
    let feeder = feed(&pool, stop.clone());
    // Full windows without drops: +1 each, up to the max.
    let r = watch(&pool, 300 * MS).await;
    assert_eq!(limit.limit(), 8);
    assert_eq!((r.limit, r.workers), (Some(8), 8));
    assert_eq!(backend.peak.load(Ordering::SeqCst), 8);

    // Overload: the limit falls to its min, and the workers with it.
    backend.overloaded.store(true, Ordering::SeqCst);
    let r = watch(&pool, 300 * MS).await;
    assert_eq!(limit.limit(), 2);
    assert_eq!((r.limit, r.workers), (Some(2), 2));
    let stats = limit.stats();
    assert_eq!((stats.min_seen, stats.max_seen), (2, 8));

    // Recovery: up again.
    backend.overloaded.store(false, Ordering::SeqCst);
    let r = watch(&pool, 300 * MS).await;
    assert_eq!((r.limit, r.workers), (Some(8), 8));

    stop.store(true, Ordering::SeqCst);
    feeder.await.unwrap();
    let report = pool.join().await.unwrap();
    assert!(report.is_balanced());
    assert_eq!(report.workers, 0);
    assert_eq!(report.limit, Some(8));
    let stats = limit.stats();
    assert!(stats.is_balanced());
    assert_eq!(stats.in_flight, 0);
    // Every job that ran took a slot and gave a verdict.
    assert_eq!(stats.accepted, report.completed + report.failed);
    assert_eq!(stats.succeeded, report.completed);
    assert_eq!(stats.dropped, report.failed);
    assert_eq!(alive(), before, "the follower and the workers ended");
}

#[tokio::test(start_paused = true)]
async fn no_more_jobs_run_at_once_than_the_limit_allows() {
    // The same limit in front of the pool and of other callers: the pool's
    // jobs and theirs share its slots.
    let limit = AdaptiveLimit::builder()
        .min(3)
        .max(3)
        .initial(3)
        .build()
        .unwrap();
    let backend = Backend::default();
    let pool = pool(&limit, &backend);
    let held = limit.acquire().await.unwrap();
    let mut tickets = Vec::new();
    for i in 0..12 {
        tickets.push(pool.submit(i).await.unwrap());
    }
    sleep(5 * MS).await;
    // Three workers, one slot taken elsewhere: two jobs run; the third
    // worker's job waits for a slot and counts as running.
    assert_eq!(backend.running.load(Ordering::SeqCst), 2);
    assert_eq!(pool.report().running, 3);
    held.ignore();
    for t in tickets {
        assert_eq!(t.await, Ok(1));
    }
    assert_eq!(backend.peak.load(Ordering::SeqCst), 3);
    pool.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_panic_or_a_cancellation_frees_the_slot_without_a_verdict() {
    let limit = AdaptiveLimit::builder().initial(2).build().unwrap();
    let pool = Pool::builder()
        .adaptive(limit.clone())
        .build(|n: u32| async move {
            if n == 0 {
                panic!("job {n} broke");
            }
            sleep(Duration::from_secs(60)).await;
            Ok::<_, String>(n)
        })
        .unwrap();
    let broke = pool.submit(0).await.unwrap();
    assert!(matches!(broke.await, Err(JobError::Panicked(p)) if p.message() == "job 0 broke"));
    let slow = pool.submit(1).await.unwrap();
    sleep(MS).await;
    assert_eq!(limit.in_flight(), 1);
    pool.cancel();
    assert!(matches!(slow.await, Err(JobError::Cancelled(_))));
    let err = pool.join().await.unwrap_err();
    assert_eq!(err.report().panicked, 1);
    let stats = limit.stats();
    assert_eq!((stats.abandoned, stats.in_flight), (2, 0));
    assert!(stats.is_balanced());
}

#[tokio::test(start_paused = true)]
async fn settings_are_checked_at_build() {
    let err = Pool::builder()
        .name("both")
        .workers(4)
        .adaptive(limit())
        .build(|n: u32| async move { Ok::<_, String>(n) })
        .unwrap_err();
    assert_eq!(err.setting(), "workers");
    assert!(matches!(err.problem(), Problem::Invalid(_)));
    assert_eq!(
        err.to_string(),
        "pool `both`: workers cannot be set together with an adaptive limit: the limit sets the worker count"
    );

    let err = Pool::builder()
        .classify(|_: &Result<u32, String>| LimitOutcome::Dropped)
        .build(|n: u32| async move { Ok::<_, String>(n) })
        .unwrap_err();
    assert_eq!(err.setting(), "classify");

    // A limit's size is its own ConfigError, when the limit is built.
    assert!(AdaptiveLimit::builder().max(0).build().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_closed_pool_stops_following_and_drains() {
    let before = alive();
    let limit = limit();
    let backend = Backend::default();
    let pool = pool(&limit, &backend);
    let mut tickets = Vec::new();
    for i in 0..40 {
        tickets.push(pool.submit(i).await.unwrap());
    }
    pool.close();
    for t in tickets {
        assert_eq!(t.await, Ok(1));
    }
    let report = pool.join().await.unwrap();
    assert_eq!(report.completed, 40);
    assert_eq!(alive(), before);
}
