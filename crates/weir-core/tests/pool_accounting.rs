//! Pool: the accounting law over random job mixes, checked against what the
//! tickets and the results stream say (property test, paused time).
//!
//! submitted = completed + failed + panicked + cancelled (+ queued + running,
//! both 0 once ended), rejected = every job handed back, `join`/`shutdown`
//! is `Ok` exactly when nothing was cancelled, and no task outlives them.
#![allow(clippy::unwrap_used)]

use std::sync::Once;
use std::time::Duration;

use futures::StreamExt;
use proptest::prelude::*;
use tokio::time::sleep;
use weir_core::GraceExpired;
use weir_core::pool::{JobError, Pool};

const MS: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy)]
enum Kind {
    Ok,
    Fail,
    Panic,
    Slow,
}

#[derive(Debug, Clone, Copy)]
enum Submit {
    Wait,
    Try,
    Timeout,
    Detached,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Ok),
        Just(Kind::Fail),
        Just(Kind::Panic),
        Just(Kind::Slow)
    ]
}

fn submit() -> impl Strategy<Value = Submit> {
    prop_oneof![
        Just(Submit::Wait),
        Just(Submit::Try),
        Just(Submit::Timeout),
        Just(Submit::Detached)
    ]
}

/// What the tickets and the stream said.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    completed: u64,
    failed: u64,
    panicked: u64,
    cancelled: u64,
}

impl Seen {
    fn add(&mut self, r: &Result<u64, JobError<String>>) {
        match r {
            Ok(_) => self.completed += 1,
            Err(JobError::Failed(_)) => self.failed += 1,
            Err(JobError::Panicked(_)) => self.panicked += 1,
            Err(JobError::Cancelled(_)) => self.cancelled += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

fn quiet_deliberate_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = weir_context::__private::panic_message(info.payload());
            if !msg.starts_with("deliberate") {
                default(info);
            }
        }));
    });
}

async fn run_case(
    workers: usize,
    queue: usize,
    jobs: Vec<(Kind, u64, Submit)>,
    grace: Option<u64>,
) {
    let before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let pool = Pool::builder()
        .workers(workers)
        .queue(queue)
        .results(1_000)
        .name("prop")
        .build(|(kind, ms): (Kind, u64)| async move {
            sleep(MS * ms as u32).await;
            match kind {
                Kind::Ok => Ok(ms),
                Kind::Fail => Err(format!("failed after {ms}ms")),
                Kind::Panic => panic!("deliberate panic after {ms}ms"),
                Kind::Slow => {
                    sleep(Duration::from_secs(1)).await;
                    Ok(ms)
                }
            }
        })
        .unwrap();
    let results = pool.results().unwrap();
    let reader = tokio::spawn(async move { results.collect::<Vec<_>>().await });

    let mut tickets = Vec::new();
    let (mut accepted, mut rejected, mut detached) = (0_u64, 0_u64, 0_u64);
    for (kind, ms, how) in jobs {
        let job = (kind, ms);
        let ok = match how {
            Submit::Wait => pool.submit(job).await.map(|t| tickets.push(t)).is_ok(),
            Submit::Try => pool.try_submit(job).map(|t| tickets.push(t)).is_ok(),
            Submit::Timeout => pool
                .submit_timeout(job, 5 * MS)
                .await
                .map(|t| tickets.push(t))
                .is_ok(),
            Submit::Detached => {
                let ok = pool.submit_detached(job).await.is_ok();
                detached += u64::from(ok);
                ok
            }
        };
        if ok {
            accepted += 1;
        } else {
            rejected += 1;
        }
    }
    let ended = match grace {
        Some(ms) => pool.shutdown(MS * ms as u32).await,
        None => pool.clone().join().await,
    };
    let report = match &ended {
        Ok(report) => report.clone(),
        Err(e) => {
            assert!(
                e.error().cause().downcast_ref::<GraceExpired>().is_some(),
                "{e}"
            );
            e.report().clone()
        }
    };
    assert_eq!(
        ended.is_err(),
        report.cancelled > 0,
        "Err iff jobs were cancelled"
    );

    let mut seen = Seen::default();
    for t in tickets {
        seen.add(&t.await);
    }
    let streamed = reader.await.unwrap();
    assert_eq!(
        streamed.len() as u64,
        detached,
        "every detached result exactly once"
    );
    for (_, r) in &streamed {
        seen.add(r);
    }

    let s = report;
    assert_eq!(s.submitted, accepted);
    assert_eq!(s.rejected, rejected);
    assert_eq!((s.queued, s.running, s.workers), (0, 0, 0));
    assert_eq!(
        Seen {
            completed: s.completed,
            failed: s.failed,
            panicked: s.panicked,
            cancelled: s.cancelled,
        },
        seen,
        "the counters say what the tickets say"
    );
    assert_eq!(s.submitted, s.finished(), "the accounting law");
    assert!(s.is_balanced());
    assert_eq!(pool.report(), s, "the final report does not move");
    if grace.is_none() {
        assert_eq!(s.cancelled, 0);
    }
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        before
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn counts_add_up_for_any_job_mix(
        workers in 1_usize..4,
        queue in 0_usize..4,
        jobs in prop::collection::vec((kind(), 0_u64..30, submit()), 0..40),
        grace in prop::option::of(0_u64..200),
    ) {
        quiet_deliberate_panics();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(run_case(workers, queue, jobs, grace));
    }
}

/// Real threads, no paused time: two submitters, resizes and the hand-off
/// queue racing the workers. The counts must still be exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_are_exact_on_a_multi_thread_runtime_with_resizes() {
    for queue in [0, 1, 64] {
        let pool: Pool<u64, u64, String> = Pool::builder()
            .workers(3)
            .queue(queue)
            .build(|n: u64| async move {
                if n.is_multiple_of(7) {
                    tokio::task::yield_now().await;
                }
                if n.is_multiple_of(5) {
                    Err(format!("{n}"))
                } else {
                    Ok(n)
                }
            })
            .unwrap();
        let mut submitters = Vec::new();
        for s in 0..2_u64 {
            let pool = pool.clone();
            submitters.push(tokio::spawn(async move {
                let mut seen = (0_u64, 0_u64, 0_u64); // ok, failed, rejected
                let mut tickets = Vec::new();
                for n in 0..5_000_u64 {
                    let job = s * 1_000_000 + n;
                    if n.is_multiple_of(3) {
                        match pool.try_submit(job) {
                            Ok(t) => tickets.push(t),
                            Err(e) => {
                                assert_eq!(e.into_inner(), job);
                                seen.2 += 1;
                            }
                        }
                    } else {
                        tickets.push(pool.submit(job).await.unwrap());
                    }
                    if n.is_multiple_of(500) {
                        pool.resize(1 + (n as usize / 500) % 4).unwrap();
                    }
                }
                for t in tickets {
                    match t.await {
                        Ok(_) => seen.0 += 1,
                        Err(JobError::Failed(_)) => seen.1 += 1,
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
                seen
            }));
        }
        let (mut ok, mut failed, mut rejected) = (0, 0, 0);
        for s in submitters {
            let (o, f, r) = s.await.unwrap();
            ok += o;
            failed += f;
            rejected += r;
        }
        let s = pool.join().await.unwrap();
        assert_eq!(
            (s.completed, s.failed, s.rejected),
            (ok, failed, rejected),
            "queue({queue})"
        );
        assert_eq!(s.submitted + s.rejected, 10_000);
        assert_eq!(s.submitted, s.finished());
        assert_eq!((s.queued, s.running, s.workers), (0, 0, 0));
    }
}
