//! The adaptive limit against a simulated resource, on paused tokio time:
//! deterministic (seeded) and fast.
//!
//! The resource serves `C` jobs at once in `BASE` (100 ms, ±10% seeded
//! noise); past `C` every job slows down with the square of the overload
//! (`BASE × (n / C)²` with `n` jobs in flight: queueing and contention),
//! so goodput falls past `C`. `C` is 40 for the first phase and halves to
//! 20 for the second. 160 closed-loop clients each take a slot, call the
//! resource, and go again.
//!
//! Beside AIMD and the gradient, a sweep of fixed limits (an
//! `AdaptiveLimit` with `min = max`, so every run shares the code path).
//! The same two phases also drive a real `Pool` built with
//! `.adaptive(limit)`, its queue kept full, in place of the clients: the
//! pool's workers follow the limit, and it must settle the same way.
//! `cargo test -p weir-core --test adaptive_simulation -- --nocapture`
//! prints the table that docs/benchmarks.md shows.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::{Instant, sleep, sleep_until};
use tracing_subscriber::layer::SubscriberExt;
use weir_core::pool::Pool;
use weir_core::{AdaptiveLimit, Aimd, Gradient};

const BASE: Duration = Duration::from_millis(100);
const C1: usize = 40;
const C2: usize = 20;
const PHASE: Duration = Duration::from_secs(30);
const CLIENTS: usize = 160;
const SAMPLE: Duration = Duration::from_millis(100);

/// The simulated resource: capacity, jobs in flight, the noise source.
struct Resource {
    capacity: usize,
    busy: usize,
    rng: SmallRng,
}

impl Resource {
    /// A job starts: its latency, from the jobs in flight with it.
    fn start(&mut self) -> Duration {
        self.busy += 1;
        let over = (self.busy as f64 / self.capacity as f64).max(1.0);
        let noise = self.rng.random_range(0.9..1.1);
        BASE.mul_f64(over * over * noise)
    }
}

/// One move of the limit, from its tracing event.
#[derive(Debug, Clone)]
struct Move {
    at: Duration,
    new: usize,
    reason: String,
}

/// Collects the limit's moves ("adaptive limit moved" events) with the
/// (paused) time they happened at.
#[derive(Clone)]
struct Moves {
    start: Instant,
    moves: Arc<Mutex<Vec<Move>>>,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Moves {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        #[derive(Default)]
        struct Fields {
            new: Option<u64>,
            reason: String,
        }
        impl tracing::field::Visit for Fields {
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                if field.name() == "new" {
                    self.new = Some(value);
                }
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "reason" {
                    self.reason = value.to_owned();
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut f = Fields::default();
        event.record(&mut f);
        if let Some(new) = f.new {
            self.moves.lock().unwrap().push(Move {
                at: self.start.elapsed(),
                new: new as usize,
                reason: f.reason,
            });
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
struct Run {
    name: String,
    /// Completions per second in phase 1, phase 2, overall.
    goodput: [f64; 3],
    p50: Duration,
    p99: Duration,
    /// (time since start, limit, windows closed) every `SAMPLE`.
    series: Vec<(Duration, usize, u64)>,
    initial: usize,
    moves: Vec<Move>,
    /// With [`Driver::Pool`]: the pool's workers at each sample.
    workers: Vec<usize>,
}

/// What calls the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    /// `CLIENTS` closed-loop clients, each taking a slot of the limit.
    Clients,
    /// A `Pool` with `.adaptive(limit)` whose queue a feeder keeps full.
    Pool,
}

impl Run {
    /// When (time after the phase began, windows after it began) the limit
    /// came to stay within ±25% of `capacity` for the rest of the phase.
    /// The gradient's probe windows (from a "probe" move to its "probe end")
    /// do not count: a probe halves the limit for one window on purpose.
    fn settled(&self, phase: usize, capacity: usize) -> Option<(Duration, u64)> {
        let (from, to) = (PHASE * phase as u32, PHASE * (phase as u32 + 1));
        let ok = |l: usize| {
            let l = l as f64;
            l >= capacity as f64 * 0.75 && l <= capacity as f64 * 1.25
        };
        // Every (time, limit) of the phase, the probe windows left out.
        let mut points = vec![(from, self.limit_at(from))];
        points.extend(
            self.moves
                .iter()
                .filter(|m| m.at > from && m.at < to && m.reason != "probe")
                .map(|m| (m.at, m.new)),
        );
        let at = match points.iter().rposition(|p| !ok(p.1)) {
            None => from,
            Some(last_bad) => points.get(last_bad + 1)?.0,
        };
        Some((at - from, self.windows_at(at) - self.windows_at(from)))
    }

    /// The limit in force at `t` (the last move before it).
    fn limit_at(&self, t: Duration) -> usize {
        self.moves
            .iter()
            .take_while(|m| m.at <= t)
            .last()
            .map_or(self.initial, |m| m.new)
    }

    /// Windows closed by `t` (the first sample at or after it).
    fn windows_at(&self, t: Duration) -> u64 {
        self.series
            .iter()
            .find(|s| s.0 >= t)
            .or(self.series.last())
            .map_or(0, |s| s.2)
    }

    /// The median limit over the second half of a phase.
    fn resting(&self, phase: usize) -> usize {
        let from = PHASE * phase as u32 + PHASE / 2;
        let to = PHASE * (phase as u32 + 1);
        let mut l: Vec<usize> = self
            .series
            .iter()
            .filter(|(t, ..)| *t >= from && *t < to)
            .map(|x| x.1)
            .collect();
        l.sort_unstable();
        l[l.len() / 2]
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Runs the two phases against the limit `make` builds, on a fresh paused
/// runtime, with closed-loop clients.
fn simulate(name: &str, make: impl FnOnce() -> AdaptiveLimit) -> Run {
    simulate_on(Driver::Clients, name, make)
}

/// One job against the resource: records its completion and latency.
async fn call(
    resource: &Mutex<Resource>,
    done: &Mutex<Vec<(Duration, Duration)>>,
    start: Instant,
) -> Duration {
    let latency = resource.lock().unwrap().start();
    sleep(latency).await;
    resource.lock().unwrap().busy -= 1;
    done.lock().unwrap().push((start.elapsed(), latency));
    latency
}

/// Runs the two phases against the limit `make` builds, on a fresh paused
/// runtime, driven by `driver`.
fn simulate_on(driver: Driver, name: &str, make: impl FnOnce() -> AdaptiveLimit) -> Run {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let start = Instant::now();
        let moves = Moves {
            start,
            moves: Arc::default(),
        };
        let _log =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(moves.clone()));
        let limit = make();
        let initial = limit.limit();
        let end = start + 2 * PHASE;
        let resource = Arc::new(Mutex::new(Resource {
            capacity: C1,
            busy: 0,
            rng: SmallRng::seed_from_u64(7),
        }));
        // (completed at, latency)
        let done = Arc::new(Mutex::new(Vec::<(Duration, Duration)>::new()));
        let mut tasks = Vec::new();
        let mut pool = None;
        match driver {
            Driver::Clients => {
                for _ in 0..CLIENTS {
                    let (limit, resource, done) = (limit.clone(), resource.clone(), done.clone());
                    tasks.push(tokio::spawn(async move {
                        while Instant::now() < end {
                            let permit = limit.acquire().await.unwrap();
                            call(&resource, &done, start).await;
                            permit.success();
                        }
                    }));
                }
            }
            Driver::Pool => {
                let (resource, done) = (resource.clone(), done.clone());
                let p: Pool<(), Duration, String> = Pool::builder()
                    .name("simulated")
                    .queue(CLIENTS)
                    .adaptive(limit.clone())
                    .build(move |()| {
                        let (resource, done) = (resource.clone(), done.clone());
                        async move { Ok(call(&resource, &done, start).await) }
                    })
                    .unwrap();
                let feeder = p.clone();
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < end {
                        feeder.submit_detached(()).await.unwrap();
                    }
                }));
                pool = Some(p);
            }
        }
        let halve = {
            let resource = resource.clone();
            tokio::spawn(async move {
                sleep_until(start + PHASE).await;
                resource.lock().unwrap().capacity = C2;
            })
        };
        let mut series = Vec::new();
        let mut workers = Vec::new();
        let mut at = start;
        while at < end {
            sleep_until(at).await;
            let s = limit.stats();
            series.push((at - start, s.limit, s.windows));
            if let Some(pool) = &pool {
                let r = pool.report();
                assert_eq!(r.limit, Some(s.limit));
                workers.push(r.workers);
            }
            at += SAMPLE;
        }
        for t in tasks {
            t.await.unwrap();
        }
        if let Some(pool) = pool {
            // Whatever is queued runs out after the end; it is not counted.
            pool.cancel();
            let report = pool.join().await.unwrap_err().into_report();
            assert!(report.is_balanced(), "{report:?}");
        }
        halve.await.unwrap();
        let done = done.lock().unwrap();
        let phase = |p: u32| {
            let (from, to) = (PHASE * p, PHASE * (p + 1));
            done.iter().filter(|(t, _)| *t >= from && *t < to).count() as f64 / PHASE.as_secs_f64()
        };
        let mut lat: Vec<Duration> = done.iter().map(|d| d.1).collect();
        lat.sort_unstable();
        assert!(limit.stats().is_balanced());
        Run {
            name: name.to_owned(),
            goodput: [phase(0), phase(1), (phase(0) + phase(1)) / 2.0],
            p50: percentile(&lat, 0.5),
            p99: percentile(&lat, 0.99),
            series,
            initial,
            moves: moves.moves.lock().unwrap().clone(),
            workers,
        }
    })
}

fn fixed(n: usize) -> Run {
    simulate(&format!("fixed {n}"), || {
        AdaptiveLimit::builder()
            .min(n)
            .max(n)
            .initial(n)
            .build()
            .unwrap()
    })
}

/// The default limit: the gradient, with no knowledge of the resource.
fn gradient() -> Run {
    simulate("gradient (defaults)", || {
        AdaptiveLimit::builder()
            .gradient(Gradient::new())
            .build()
            .unwrap()
    })
}

/// AIMD needs a latency threshold: a quarter above the unloaded latency.
fn aimd(backoff: f64) -> Run {
    simulate(
        &format!("AIMD, threshold 125 ms, backoff {backoff}"),
        || {
            AdaptiveLimit::builder()
                .aimd(
                    Aimd::new()
                        .latency_threshold(BASE.mul_f64(1.25))
                        .backoff(backoff),
                )
                .build()
                .unwrap()
        },
    )
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e3)
}

fn settle_cell(run: &Run, phase: usize, capacity: usize) -> String {
    match run.settled(phase, capacity) {
        Some((t, w)) => format!("{:.1} s ({w} windows)", t.as_secs_f64()),
        None => "never".to_owned(),
    }
}

fn print_table(rows: &[(&str, &Run)]) {
    println!(
        "| limit | goodput, C=40 (jobs/s) | goodput, C=20 | goodput, whole run | p50 (ms) | p99 (ms) | limit at rest, C=40 / C=20 | within ±25% of C from the start | within ±25% after C halves |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (label, r) in rows {
        println!(
            "| {label} | {:.0} | {:.0} | {:.0} | {} | {} | {} / {} | {} | {} |",
            r.goodput[0],
            r.goodput[1],
            r.goodput[2],
            ms(r.p50),
            ms(r.p99),
            r.resting(0),
            r.resting(1),
            settle_cell(r, 0, C1),
            settle_cell(r, 1, C2),
        );
    }
}

/// After `C` halves, the adaptive limits are within ±25% of it again in at
/// most this many measuring windows (measured: 2 for the gradient, 3 for
/// AIMD; each window lasts about one, overloaded, job latency).
const RESETTLE_WINDOWS: u64 = 10;

fn check_targets(run: &Run, best_fixed: &Run) {
    let name = &run.name;
    for (phase, c) in [(0, C1), (1, C2)] {
        let rest = run.resting(phase) as f64;
        assert!(
            rest >= c as f64 * 0.75 && rest <= c as f64 * 1.25,
            "{name}: rests at {rest} for C = {c}"
        );
        assert!(
            run.settled(phase, c).is_some(),
            "{name}: never settles for C = {c}"
        );
    }
    let (_, windows) = run.settled(1, C2).unwrap();
    assert!(
        windows <= RESETTLE_WINDOWS,
        "{name}: {windows} windows to settle after C halved"
    );
    assert!(
        run.goodput[2] >= 0.9 * best_fixed.goodput[2],
        "{name}: goodput {:.0} < 90% of {} ({:.0})",
        run.goodput[2],
        best_fixed.name,
        best_fixed.goodput[2]
    );
    assert!(run.p99 <= 2 * BASE, "{name}: p99 {:?}", run.p99);
}

#[test]
fn adaptive_limits_find_the_capacity_and_follow_it() {
    let sweep: Vec<Run> = [10, 20, 25, 30, 35, 40, 45, 50, 60, 80]
        .into_iter()
        .map(fixed)
        .collect();
    let best = sweep
        .iter()
        .max_by(|a, b| a.goodput[2].total_cmp(&b.goodput[2]))
        .unwrap();
    let by_limit = |n: usize| {
        sweep
            .iter()
            .find(|r| r.name == format!("fixed {n}"))
            .unwrap()
    };
    let (gradient, aimd_default, aimd_netflix) = (gradient(), aimd(0.75), aimd(0.9));

    println!(
        "best fixed limit of the sweep (whole run): {} ({:.0} jobs/s); the sweep:",
        best.name, best.goodput[2]
    );
    for r in &sweep {
        println!(
            "  {}: {:.0} jobs/s, p99 {} ms",
            r.name,
            r.goodput[2],
            ms(r.p99)
        );
    }
    println!();
    print_table(&[
        ("fixed 10 (too low)", by_limit(10)),
        ("fixed 20 (right for C = 20)", by_limit(20)),
        (
            "fixed 40 (right for C = 40; best of the sweep)",
            by_limit(40),
        ),
        ("fixed 80 (too high)", by_limit(80)),
        (
            "AIMD (threshold 125 ms, backoff 0.75: the default)",
            &aimd_default,
        ),
        (
            "AIMD (threshold 125 ms, backoff 0.9: Netflix's)",
            &aimd_netflix,
        ),
        (
            "gradient (defaults: no knowledge of the resource)",
            &gradient,
        ),
    ]);

    // The sweep's best is the limit that is right for the first phase.
    assert_eq!(best.name, "fixed 40");
    check_targets(&gradient, best);
    check_targets(&aimd_default, best);
    // Backing off by 0.9 once a window reacts too slowly to the halving:
    // the overload it leaves shows in the p99.
    assert!(aimd_netflix.p99 > 2 * BASE);
    // No fixed limit meets the targets in both phases.
    for r in &sweep {
        let settles = r.settled(0, C1).is_some() && r.settled(1, C2).is_some();
        assert!(!settles || r.p99 > 2 * BASE, "{}", r.name);
    }
}

#[test]
fn the_simulation_is_deterministic() {
    let (a, b) = (gradient(), gradient());
    assert_eq!(a.goodput, b.goodput);
    assert_eq!((a.p50, a.p99), (b.p50, b.p99));
    let moves = |r: &Run| r.moves.iter().map(|m| (m.at, m.new)).collect::<Vec<_>>();
    assert_eq!(moves(&a), moves(&b));
    assert!(a.moves.len() > 10);
}

#[test]
fn a_limit_that_starts_far_above_the_capacity_comes_down() {
    // Its first windows measure an overloaded latency as the baseline; the
    // early probes correct it.
    let run = simulate("gradient from 100", || {
        AdaptiveLimit::builder().initial(100).build().unwrap()
    });
    let (t, windows) = run.settled(0, C1).expect("settles for C = 40");
    println!("gradient from 100: within ±25% of C = 40 after {t:?} ({windows} windows)");
    assert!(windows <= 40, "{windows} windows");
    assert!(run.settled(1, C2).is_some());
    assert!(run.goodput[2] >= 0.9 * 249.0, "{:?}", run.goodput);
}

/// The median of the pool's worker counts over the second half of a phase.
fn resting_workers(run: &Run, phase: usize) -> usize {
    let from = PHASE * phase as u32 + PHASE / 2;
    let to = PHASE * (phase as u32 + 1);
    let mut w: Vec<usize> = run
        .series
        .iter()
        .zip(&run.workers)
        .filter(|((t, ..), _)| *t >= from && *t < to)
        .map(|(_, w)| *w)
        .collect();
    w.sort_unstable();
    w[w.len() / 2]
}

#[test]
fn a_pool_under_an_adaptive_limit_finds_the_capacity_and_follows_it() {
    let gradient = || {
        AdaptiveLimit::builder()
            .gradient(Gradient::new())
            .build()
            .unwrap()
    };
    let aimd = || {
        AdaptiveLimit::builder()
            .aimd(Aimd::new().latency_threshold(BASE.mul_f64(1.25)))
            .build()
            .unwrap()
    };
    for (name, make) in [
        ("gradient", &gradient as &dyn Fn() -> AdaptiveLimit),
        ("AIMD", &aimd),
    ] {
        let pooled = simulate_on(Driver::Pool, &format!("pool, {name}"), make);
        let clients = simulate(&format!("clients, {name}"), make);
        println!(
            "pool, {name}: goodput {:.0} / {:.0} jobs/s, p99 {} ms, limit at rest {} / {}, workers at rest {} / {}, within ±25% of C after it halves: {}",
            pooled.goodput[0],
            pooled.goodput[1],
            ms(pooled.p99),
            pooled.resting(0),
            pooled.resting(1),
            resting_workers(&pooled, 0),
            resting_workers(&pooled, 1),
            settle_cell(&pooled, 1, C2),
        );
        for (phase, c) in [(0, C1), (1, C2)] {
            let near = |n: usize| {
                let n = n as f64;
                n >= c as f64 * 0.75 && n <= c as f64 * 1.25
            };
            let rest = pooled.resting(phase);
            assert!(
                near(rest),
                "pool, {name}: limit rests at {rest} for C = {c}"
            );
            // The pool's workers follow the limit.
            let workers = resting_workers(&pooled, phase);
            assert!(near(workers), "pool, {name}: {workers} workers for C = {c}");
            assert!(
                pooled.settled(phase, c).is_some(),
                "pool, {name}: never settles for C = {c}"
            );
        }
        let (_, windows) = pooled.settled(1, C2).unwrap();
        assert!(
            windows <= RESETTLE_WINDOWS,
            "pool, {name}: {windows} windows to settle after C halved"
        );
        // The pool does as well as clients taking the limit's slots by hand.
        assert!(
            pooled.goodput[2] >= 0.9 * clients.goodput[2],
            "pool, {name}: goodput {:.0} < 90% of {:.0}",
            pooled.goodput[2],
            clients.goodput[2]
        );
        assert!(pooled.p99 <= 2 * BASE, "pool, {name}: p99 {:?}", pooled.p99);
    }
}
