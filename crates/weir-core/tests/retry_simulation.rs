//! Retries with and without a budget against a backend that fails for a
//! while, on paused tokio time: deterministic (seeded) and fast.
//!
//! Clients send 100 requests a second for 30 s (open loop: a request every
//! 10 ms, whatever happened to the others), each through `retry` with at
//! most 4 attempts and full-jitter backoff from 50 ms. The backend answers
//! in 10 ms; it fails 5% of requests, except from 10 s to 20 s, when it
//! fails 50% (or 100%: an outage). The budget allows retries of 10% of
//! requests over a 10 s window, plus 1 a second.
//!
//! `cargo test -p weir-core --test retry_simulation -- --nocapture` prints
//! the table that docs/benchmarks.md shows.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::{Instant, sleep, sleep_until};
use weir_core::{RetryBudget, RetryPolicy, RetryStats, retry};

const RATE_EVERY: Duration = Duration::from_millis(10);
const RUN: Duration = Duration::from_secs(30);
const OUTAGE: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(20));
const LATENCY: Duration = Duration::from_millis(10);
const BACKGROUND_FAILURES: f64 = 0.05;
const BUDGET_RATIO: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Scenario {
    /// Attempts per call (1: no retry).
    max_attempts: u32,
    budget: bool,
    /// The failure rate during the outage.
    outage_failures: f64,
}

/// What the backend and the callers saw in one part of the run.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// Calls (first attempts) that started in it.
    calls: u64,
    /// Calls that started in it and ended with a value.
    succeeded: u64,
    /// Attempts the backend received in it, first ones included.
    attempts: u64,
}

impl Tally {
    /// Attempts the backend got per request: what the retries multiplied
    /// the load by.
    fn amplification(&self) -> f64 {
        self.attempts as f64 / self.calls as f64
    }

    fn success(&self) -> f64 {
        self.succeeded as f64 / self.calls as f64
    }
}

#[derive(Debug)]
struct Outcome {
    /// Before, during and after the outage.
    parts: [Tally; 3],
    stats: RetryStats,
}

fn part(t: Duration) -> usize {
    match t {
        t if t < OUTAGE.0 => 0,
        t if t < OUTAGE.1 => 1,
        _ => 2,
    }
}

fn simulate(s: Scenario) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut policy = RetryPolicy::<String>::builder()
            .max_attempts(s.max_attempts)
            .base(Duration::from_millis(50))
            .seed(11);
        if s.budget {
            policy = policy.budget(
                RetryBudget::builder()
                    .ratio(BUDGET_RATIO)
                    .min_per_second(1)
                    .window(Duration::from_secs(10))
                    .build()
                    .unwrap(),
            );
        }
        let policy = policy.build().unwrap();
        let start = Instant::now();
        let rng = Arc::new(Mutex::new(SmallRng::seed_from_u64(3)));
        let parts = Arc::new(Mutex::new([Tally::default(); 3]));
        let mut calls = Vec::new();
        let mut at = start;
        while at < start + RUN {
            sleep_until(at).await;
            let called = part(start.elapsed());
            parts.lock().unwrap()[called].calls += 1;
            let (policy, rng, parts) = (policy.clone(), rng.clone(), parts.clone());
            calls.push(tokio::spawn(async move {
                let backend = || {
                    let (rng, parts) = (rng.clone(), parts.clone());
                    async move {
                        let now = part(start.elapsed());
                        parts.lock().unwrap()[now].attempts += 1;
                        let p = if now == 1 {
                            s.outage_failures
                        } else {
                            BACKGROUND_FAILURES
                        };
                        let fails = rng.lock().unwrap().random_bool(p);
                        sleep(LATENCY).await;
                        if fails { Err("503".to_owned()) } else { Ok(()) }
                    }
                };
                if retry(&policy, backend).await.is_ok() {
                    parts.lock().unwrap()[called].succeeded += 1;
                }
            }));
            at += RATE_EVERY;
        }
        for c in calls {
            c.await.unwrap();
        }
        let parts = *parts.lock().unwrap();
        Outcome {
            parts,
            stats: policy.stats(),
        }
    })
}

fn row(label: &str, s: Scenario, o: &Outcome) {
    let [before, during, after] = o.parts;
    println!(
        "| {label} | {:.0}% | {:.2}× | {:.1}% | {:.2}× | {:.1}% | {:.1}% | {} |",
        s.outage_failures * 100.0,
        during.amplification(),
        during.success() * 100.0,
        before.amplification(),
        before.success() * 100.0,
        after.success() * 100.0,
        o.stats.budget_refusals,
    );
}

#[test]
fn a_budget_caps_the_extra_load_of_retries_during_an_outage() {
    let none = |f| Scenario {
        max_attempts: 1,
        budget: false,
        outage_failures: f,
    };
    let unbudgeted = |f| Scenario {
        max_attempts: 4,
        budget: false,
        outage_failures: f,
    };
    let budgeted = |f| Scenario {
        max_attempts: 4,
        budget: true,
        outage_failures: f,
    };
    let mut results = Vec::new();
    println!(
        "| retries | backend fails (10 s to 20 s) | load during the outage (attempts per request) | requests that succeeded, during | load before (5% failures) | succeeded, before | succeeded, after | retries refused by the budget |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for f in [0.5, 1.0] {
        for (label, s) in [
            ("none (1 attempt)", none(f)),
            ("4 attempts, no budget", unbudgeted(f)),
            ("4 attempts, budget 10%", budgeted(f)),
        ] {
            let o = simulate(s);
            row(label, s, &o);
            assert!(o.stats.is_balanced());
            assert_eq!(o.stats.calls, 3000);
            results.push((s, o));
        }
    }
    let get = |s: Scenario| &results.iter().find(|r| r.0 == s).unwrap().1;

    for f in [0.5, 1.0] {
        let (plain, free, capped) = (get(none(f)), get(unbudgeted(f)), get(budgeted(f)));
        assert_eq!(plain.parts[1].amplification(), 1.0);
        // Without a budget the retries multiply the load on the failing
        // backend: 1 + f + f² + f³ attempts per request.
        let expected = 1.0 + f + f * f + f * f * f;
        let free_load = free.parts[1].amplification();
        assert!(
            (free_load - expected).abs() < 0.1,
            "{free_load} vs {expected}"
        );
        // With it, the extra load stays within its fraction: the window
        // counts whole 1 s slots, so it spans at most 11 s (1,100 requests,
        // 110 retries) plus the reserve of 1 a second (10): at most 120
        // retries over the 1,000 requests of the outage.
        let capped_load = capped.parts[1].amplification();
        assert!(
            capped_load <= 1.0 + 120.0 / 1000.0,
            "with the budget: {capped_load}"
        );
        assert!(
            capped_load > 1.05,
            "the budget's share is used: {capped_load}"
        );
        assert!(capped.stats.budget_refusals > 0);
    }
    // In normal times the budget costs nothing: 5% failures are all
    // retried and virtually every request succeeds, with or without it.
    for (s, o) in &results {
        if s.max_attempts > 1 {
            assert!(o.parts[0].success() > 0.99, "{s:?}: {:?}", o.parts[0]);
            assert!(o.parts[2].success() > 0.99, "{s:?}: {:?}", o.parts[2]);
            assert!(o.parts[0].amplification() < 1.0 + 2.0 * BACKGROUND_FAILURES);
        }
    }
    // At 50% failures retries still help, budget or not.
    let (plain, capped) = (get(none(0.5)), get(budgeted(0.5)));
    assert!(capped.parts[1].success() > plain.parts[1].success());
}
