//! Pool with a stateful `JobHandler`: setup, teardown, per-worker state,
//! replacement after a panic, failing setup.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::sleep;
use weir_core::Cause;
use weir_core::pool::{JobError, JobHandler, Pool};

const MS: Duration = Duration::from_millis(1);

#[derive(Default)]
struct Log {
    made: AtomicUsize,
    setups: AtomicUsize,
    teardowns: AtomicUsize,
}

/// Counts its own jobs; panics on job 13; setup fails if asked to.
struct Counter {
    index: usize,
    done: u32,
    log: Arc<Log>,
    fail_setup: bool,
}

impl JobHandler for Counter {
    type Job = u32;
    type Output = (usize, u32);
    type Error = String;

    async fn setup(&mut self) -> Result<(), String> {
        self.log.setups.fetch_add(1, Ordering::SeqCst);
        if self.fail_setup {
            return Err(format!("worker {} cannot connect", self.index));
        }
        Ok(())
    }

    async fn handle(&mut self, job: u32) -> Result<(usize, u32), String> {
        sleep(10 * MS).await;
        if job == 13 {
            self.done = 1_000; // a half-made update the panic leaves behind
            panic!("unlucky {job}");
        }
        if job == 4 {
            return Err("four".into());
        }
        self.done += 1;
        Ok((self.index, self.done))
    }

    async fn teardown(&mut self) {
        self.log.teardowns.fetch_add(1, Ordering::SeqCst);
    }
}

fn pool(workers: usize, log: &Arc<Log>, fail_setup: bool) -> Pool<u32, (usize, u32), String> {
    let log = log.clone();
    Pool::builder()
        .workers(workers)
        .queue(8)
        .name("counters")
        .build_with(move |index| {
            log.made.fetch_add(1, Ordering::SeqCst);
            Counter {
                index,
                done: 0,
                log: log.clone(),
                fail_setup,
            }
        })
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn each_worker_keeps_its_own_state_and_is_set_up_and_torn_down_once() {
    let log = Arc::new(Log::default());
    let pool = pool(2, &log, false);
    let mut outputs = Vec::new();
    for n in 0..6 {
        outputs.push(pool.submit(n).await.unwrap());
    }
    let mut per_worker = [0_u32; 2];
    let mut failed = 0;
    for t in outputs {
        match t.await {
            Ok((index, done)) => {
                per_worker[index] += 1;
                assert_eq!(
                    done, per_worker[index],
                    "worker {index} counts its own jobs"
                );
            }
            Err(e) => {
                assert_eq!(e, JobError::Failed("four".into()));
                failed += 1;
            }
        }
    }
    assert_eq!(failed, 1);
    assert_eq!(per_worker.iter().sum::<u32>(), 5);
    assert_eq!(log.setups.load(Ordering::SeqCst), 2);
    assert_eq!(log.teardowns.load(Ordering::SeqCst), 0);
    pool.join().await.unwrap();
    assert_eq!(log.teardowns.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_panic_replaces_the_worker_with_a_fresh_one() {
    let log = Arc::new(Log::default());
    let pool = pool(1, &log, false);
    assert_eq!(pool.submit(1).await.unwrap().await, Ok((0, 1)));
    let err = pool.submit(13).await.unwrap().await.unwrap_err();
    assert_eq!(err.panic().unwrap().message(), "unlucky 13");
    assert_eq!(err.to_string(), "job panicked: unlucky 13");
    // The fresh worker (same slot) starts from zero, not from the half-made 1000.
    assert_eq!(pool.submit(1).await.unwrap().await, Ok((0, 1)));
    assert_eq!(log.made.load(Ordering::SeqCst), 2);
    assert_eq!(log.setups.load(Ordering::SeqCst), 2);
    let report = pool.join().await.unwrap();
    assert_eq!(report.panicked, 1);
    assert_eq!(
        log.teardowns.load(Ordering::SeqCst),
        1,
        "the panicked one is not torn down"
    );
}

#[tokio::test(start_paused = true)]
async fn teardown_runs_when_a_shrink_retires_a_worker() {
    let log = Arc::new(Log::default());
    let pool = pool(3, &log, false);
    sleep(MS).await;
    pool.resize(1).unwrap();
    sleep(MS).await;
    assert_eq!(log.teardowns.load(Ordering::SeqCst), 2);
    assert_eq!(pool.report().workers, 1);
    pool.join().await.unwrap();
    assert_eq!(log.teardowns.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn when_every_setup_fails_the_pool_closes_instead_of_hanging() {
    let before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let log = Arc::new(Log::default());
    let pool = pool(2, &log, true);
    // Submitted before the workers ran their setup: cancelled, not stuck.
    let queued = pool.submit(1).await.unwrap();
    let err = queued.await.unwrap_err();
    let cause = err.cause().unwrap();
    assert_eq!(
        cause.downcast_ref::<String>().map(String::as_str),
        Some("pool `counters`: no worker could start")
    );
    assert!(pool.is_closed());
    assert_eq!(pool.report().workers, 0);
    assert!(pool.submit(2).await.unwrap_err().is_closed());
    let err = pool.join().await.unwrap_err();
    assert_eq!(err.error().cause(), cause);
    assert_eq!(err.report().cancelled, 1);
    assert!(!matches!(cause, Cause::Cancelled));
    assert_eq!(log.setups.load(Ordering::SeqCst), 2);
    assert_eq!(log.teardowns.load(Ordering::SeqCst), 0);
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        before
    );
}
