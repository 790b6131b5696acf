//! Open-loop latency (issue 18): weir's `Pool` beside a hand-written pool
//! (an async-channel jobs queue shared by N worker tasks, one job per take,
//! a oneshot reply per job: the shape of `benches/pool.rs`'s
//! `handwritten_oneshot`), under Poisson arrivals at fixed fractions of the
//! pools' closed-loop maximum throughput.
//!
//! # What it measures
//!
//! A job is CPU work that never awaits: a busy loop that reads
//! `std::time::Instant` until its length has passed. Three job kinds: every
//! job 2 µs, every job 20 µs, and mixed (90 % 2 µs, 10 % 200 µs, drawn up
//! front from a seeded RNG).
//!
//! 1. **Closed-loop maximum**, per kind and pool: submit a fixed count of jobs
//!    as fast as the queue takes them (backpressure from the queue of 1024)
//!    and divide the count by the time until the last reply; the median of
//!    three runs, the pools alternating.
//! 2. **Open loop**, per kind, at 30 %, 60 %, 80 % and 95 % of the
//!    **hand-written pool's** closed-loop maximum. The arrival schedule is
//!    computed before the run: exponential gaps (Poisson arrivals) from a
//!    seeded RNG, the same schedule for both pools and every round. One
//!    generator task sleeps until each arrival's intended time
//!    (`tokio::time::sleep_until`; when it is behind it submits at once) and
//!    submits the job (weir: `pool.submit(job).await`, a `Ticket`;
//!    hand-written: a send on the jobs channel with a oneshot). A separate
//!    collector task awaits every reply as it completes and records
//!    `now - intended`. Latency is counted from the *intended* arrival, not
//!    from the submit, so a generator held back by a full queue or a busy
//!    thread does not hide the wait (no coordinated omission).
//!
//! The offered load is the hand-written pool's maximum for both pools
//! because the question is "at the traffic a hand-written pool was sized
//! for, does replacing it by weir change the latency?": the baseline is code
//! this bench does not tune, so its maximum is a fixed reference, and if
//! weir's maximum were lower, the 95 % row would show the overload as
//! latency rather than hide it under a lower offered load. Both maxima are
//! printed.
//!
//! Everything (the pool's workers, the generator, the collector) runs on one
//! tokio multi-thread runtime with 2 worker threads; pool of 2 workers, queue
//! of 1024. Each round runs every (kind, load) cell for both pools, weir
//! first in even rounds and the hand-written pool first in odd ones, so that
//! drift in the machine's load lands on both sides.
//!
//! # How to run
//!
//! `cargo bench --bench open_loop` (about 2 minutes on a 2-core machine).
//!
//! Knobs (environment):
//!
//! * `OPEN_LOOP_ROUNDS` (default 5): rounds per cell.
//! * `OPEN_LOOP_SECS` (default 0.75): the length of one cell in seconds of
//!   arrivals (the count of arrivals is the rate times this); the
//!   closed-loop runs take about a third of it.
//! * `OPEN_LOOP_WORKERS` (default 2): the pools' worker count (the runtime
//!   keeps 2 threads).
//! * `OPEN_LOOP_ONLY` (default all): the kinds to run, comma-separated, of
//!   `2us`, `20us`, `mixed`.
//! * `OPEN_LOOP_ALL` (set to anything): also print every round's figures on
//!   stderr, with the run's wall time beside the schedule's length (a run
//!   much longer than its arrivals fell behind).
//!
//! # How to read it
//!
//! Per kind, the closed-loop maxima, then a row per (load, pool): p50, p99
//! and p99.9 of the latency in µs, each as the median over the rounds and
//! `[min..max]` over the rounds. Compare weir's row with the hand-written
//! row of the same load: a difference smaller than the `[min..max]` spread
//! is run-to-run noise, not a difference between the pools. `late p50` is
//! the median over rounds of the generator's own lateness (submit time minus
//! intended time, p50), the part of the latency that is neither pool's:
//! tokio's timer has a resolution of 1 ms, so arrivals closer together than
//! that are released together at the next tick and every latency includes
//! up to about 1 ms of waiting for it. Small differences at light load are
//! therefore invisible here; what the bench shows is how the queueing delay
//! grows with load, and whether one pool's tail grows faster.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use weir::Pool;

const QUEUE: usize = 1024;
const LOADS: [f64; 4] = [0.30, 0.60, 0.80, 0.95];
const CLOSED_RUNS: usize = 3;
const SEED: u64 = 0x0de1_a7e5;

/// A job's length distribution.
#[derive(Clone, Copy)]
enum Kind {
    /// Every job this long.
    Fixed(Duration),
    /// `long_per_mille` jobs in 1000 are `long`, the others `short`.
    Mixed {
        short: Duration,
        long: Duration,
        long_per_mille: u32,
    },
}

impl Kind {
    /// The name `OPEN_LOOP_ONLY` matches.
    fn key(self) -> &'static str {
        match self {
            Kind::Fixed(d) if d < Duration::from_micros(10) => "2us",
            Kind::Fixed(_) => "20us",
            Kind::Mixed { .. } => "mixed",
        }
    }

    /// Part of the kind's RNG seed, so that a kind's schedules do not depend
    /// on which other kinds run.
    fn salt(self) -> u64 {
        match self {
            Kind::Fixed(d) => ns(d),
            Kind::Mixed {
                long,
                long_per_mille,
                ..
            } => ns(long) ^ u64::from(long_per_mille) << 40,
        }
    }

    fn name(self) -> String {
        match self {
            Kind::Fixed(d) => format!("{} us", d.as_micros()),
            Kind::Mixed {
                short,
                long,
                long_per_mille,
            } => format!(
                "mixed {}% {} us / {}% {} us",
                (1000 - long_per_mille) / 10,
                short.as_micros(),
                long_per_mille / 10,
                long.as_micros()
            ),
        }
    }

    fn mean_secs(self) -> f64 {
        match self {
            Kind::Fixed(d) => d.as_secs_f64(),
            Kind::Mixed {
                short,
                long,
                long_per_mille,
            } => {
                let p = f64::from(long_per_mille) / 1000.0;
                (1.0 - p) * short.as_secs_f64() + p * long.as_secs_f64()
            }
        }
    }

    fn draw(self, rng: &mut StdRng) -> Duration {
        match self {
            Kind::Fixed(d) => d,
            Kind::Mixed {
                short,
                long,
                long_per_mille,
            } => {
                if rng.random_range(0..1000) < long_per_mille {
                    long
                } else {
                    short
                }
            }
        }
    }
}

/// Arrivals computed before a run: each one's offset from the start and its
/// job's length.
struct Schedule {
    arrivals: Vec<(Duration, Duration)>,
}

impl Schedule {
    /// `n` arrivals at once (offset zero): the closed loop.
    fn closed(kind: Kind, n: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let arrivals = (0..n)
            .map(|_| (Duration::ZERO, kind.draw(&mut rng)))
            .collect();
        Self { arrivals }
    }

    /// `n` Poisson arrivals at `rate` per second: exponential gaps.
    fn poisson(kind: Kind, rate: f64, n: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut t = 0.0_f64;
        let arrivals = (0..n)
            .map(|_| {
                // `random::<f64>()` is in [0, 1), so `1 - u` is in (0, 1].
                let u: f64 = rng.random();
                t += -(1.0 - u).ln() / rate;
                (Duration::from_secs_f64(t), kind.draw(&mut rng))
            })
            .collect();
        Self { arrivals }
    }
}

/// CPU work that does not await.
fn spin(len: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < len {
        std::hint::spin_loop();
    }
}

/// What one run of a schedule measured, in ns: each job's latency from its
/// intended arrival, and the generator's lateness at each submit.
struct Samples {
    latency: Vec<u64>,
    late: Vec<u64>,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Runs `schedule` through `submit` (which waits for queue room and returns
/// the job's reply future) on two spawned tasks: the generator and the
/// collector.
async fn drive<S, SF, R>(schedule: Arc<Schedule>, mut submit: S) -> Samples
where
    S: FnMut(Duration) -> SF + Send + 'static,
    SF: Future<Output = R> + Send,
    R: Future<Output = ()> + Send + 'static,
{
    let n = schedule.arrivals.len();
    // Unbounded on purpose, and bounded in fact by the schedule's length:
    // the generator must never wait for the collector, or the collector's
    // pace would shape the arrivals.
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, R)>();
    let generator = tokio::spawn(async move {
        let mut late = Vec::with_capacity(n);
        let start = Instant::now();
        for &(offset, len) in &schedule.arrivals {
            let intended = start + offset;
            if intended > Instant::now() {
                sleep_until(intended).await;
            }
            late.push(ns(intended.elapsed()));
            let reply = submit(len).await;
            if tx.send((intended, reply)).is_err() {
                break;
            }
        }
        late
    });
    let collector = tokio::spawn(async move {
        let mut latency = Vec::with_capacity(n);
        let mut pending = FuturesUnordered::new();
        let mut open = true;
        loop {
            tokio::select! {
                biased;
                Some(l) = pending.next(), if !pending.is_empty() => latency.push(l),
                msg = rx.recv(), if open => match msg {
                    Some((intended, reply)) => pending.push(async move {
                        reply.await;
                        ns(intended.elapsed())
                    }),
                    None => open = false,
                },
                else => break,
            }
        }
        latency
    });
    let late = generator.await.expect("generator");
    let latency = collector.await.expect("collector");
    assert_eq!(latency.len(), n, "every job replied");
    Samples { latency, late }
}

/// Which pool a run uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Weir,
    Hand,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Weir => "weir",
            Side::Hand => "hand",
        }
    }
}

#[expect(
    clippy::async_yields_async,
    reason = "the submit future ends when the job is queued; its output is the reply future, awaited by the collector"
)]
async fn run_weir(schedule: Arc<Schedule>, workers: usize) -> Samples {
    let pool = Pool::builder()
        .workers(workers)
        .queue(QUEUE)
        .name("open-loop")
        .build(|len: Duration| async move {
            spin(len);
            Ok::<_, Infallible>(())
        })
        .expect("pool");
    let submitter = pool.clone();
    let samples = drive(schedule, move |len| {
        let pool = submitter.clone();
        async move {
            let ticket = pool.submit(len).await.expect("pool open");
            async move { ticket.await.expect("job ran") }
        }
    })
    .await;
    pool.join().await.expect("no job cancelled");
    samples
}

#[expect(
    clippy::async_yields_async,
    reason = "the submit future ends when the job is queued; its output is the reply future, awaited by the collector"
)]
async fn run_hand(schedule: Arc<Schedule>, workers: usize) -> Samples {
    let (jobs_tx, jobs_rx) = async_channel::bounded::<(Duration, oneshot::Sender<()>)>(QUEUE);
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let jobs = jobs_rx.clone();
            tokio::spawn(async move {
                while let Ok((len, reply)) = jobs.recv().await {
                    spin(len);
                    let _ = reply.send(());
                }
            })
        })
        .collect();
    drop(jobs_rx);
    let samples = drive(schedule, move |len| {
        let jobs = jobs_tx.clone();
        async move {
            let (tx, rx) = oneshot::channel();
            jobs.send((len, tx)).await.expect("workers alive");
            async move { rx.await.expect("job ran") }
        }
    })
    .await;
    for h in handles {
        h.await.expect("worker");
    }
    samples
}

fn run(
    rt: &tokio::runtime::Runtime,
    side: Side,
    schedule: &Arc<Schedule>,
    workers: usize,
) -> Samples {
    let schedule = schedule.clone();
    // Spawned, so that the whole run shares the runtime's 2 threads
    // (`block_on`'s own future runs on the calling thread).
    rt.block_on(async move {
        tokio::spawn(async move {
            match side {
                Side::Weir => run_weir(schedule, workers).await,
                Side::Hand => run_hand(schedule, workers).await,
            }
        })
        .await
        .expect("run")
    })
}

/// The `q` quantile of sorted `v` (nearest rank).
fn quantile(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Median (the mean of the middle two for an even count), min and max of
/// per-round values.
fn spread(mut v: Vec<u64>) -> (u64, u64, u64) {
    v.sort_unstable();
    let n = v.len();
    let median = (v[(n - 1) / 2] + v[n / 2]) / 2;
    (median, v[0], v[n - 1])
}

fn us(ns: u64) -> String {
    let us = ns as f64 / 1000.0;
    if us < 100.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.0}")
    }
}

fn cell((med, min, max): (u64, u64, u64)) -> String {
    format!("{} [{}..{}]", us(med), us(min), us(max))
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a valid value")),
        Err(_) => default,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let rounds: usize = env("OPEN_LOOP_ROUNDS", 5);
    let secs: f64 = env("OPEN_LOOP_SECS", 0.75);
    let workers: usize = env("OPEN_LOOP_WORKERS", 2);
    assert!(rounds > 0, "OPEN_LOOP_ROUNDS must be at least 1");
    assert!(
        secs > 0.0 && secs.is_finite(),
        "OPEN_LOOP_SECS must be positive"
    );
    assert!(workers > 0, "OPEN_LOOP_WORKERS must be at least 1");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let all = [
        Kind::Fixed(Duration::from_micros(2)),
        Kind::Fixed(Duration::from_micros(20)),
        Kind::Mixed {
            short: Duration::from_micros(2),
            long: Duration::from_micros(200),
            long_per_mille: 100,
        },
    ];
    let only: String = env("OPEN_LOOP_ONLY", String::new());
    let kinds: Vec<Kind> = all
        .into_iter()
        .filter(|k| only.is_empty() || only.split(',').any(|o| o.trim() == k.key()))
        .collect();
    assert!(
        !kinds.is_empty(),
        "OPEN_LOOP_ONLY={only}: no kind is named so"
    );
    let verbose = std::env::var_os("OPEN_LOOP_ALL").is_some();

    println!(
        "open-loop latency: runtime 2 threads, pool {workers} workers, queue {QUEUE}, \
         {rounds} rounds, {secs} s per cell"
    );

    // Closed-loop maxima (jobs/s), per kind: (weir, hand).
    let mut maxima = Vec::new();
    for &kind in &kinds {
        let n = ((secs / 3.0) * workers as f64 / kind.mean_secs()).max(1000.0) as usize;
        let schedule = Arc::new(Schedule::closed(kind, n, SEED ^ kind.salt()));
        let mut per = [Vec::new(), Vec::new()];
        for r in 0..CLOSED_RUNS {
            let order = if r % 2 == 0 {
                [Side::Weir, Side::Hand]
            } else {
                [Side::Hand, Side::Weir]
            };
            for side in order {
                let s = run(&rt, side, &schedule, workers);
                let last = s.latency.iter().copied().max().unwrap_or(1).max(1);
                let rate = n as f64 / (last as f64 / 1e9);
                per[usize::from(side == Side::Hand)].push(rate as u64);
            }
        }
        let [w, h] = per.map(|v| spread(v).0);
        maxima.push((w, h));
    }

    // Open loop: samples[kind][load][side] = per-round (p50, p99, p99.9, late p50).
    type Round = (u64, u64, u64, u64);
    let mut samples: Vec<Vec<[Vec<Round>; 2]>> = kinds
        .iter()
        .map(|_| LOADS.iter().map(|_| [Vec::new(), Vec::new()]).collect())
        .collect();
    let schedules: Vec<Vec<(f64, Arc<Schedule>)>> = kinds
        .iter()
        .enumerate()
        .map(|(k, &kind)| {
            LOADS
                .iter()
                .enumerate()
                .map(|(l, load)| {
                    let rate = load * maxima[k].1 as f64;
                    let n = ((rate * secs) as usize).max(200);
                    let seed = SEED ^ kind.salt() ^ ((l as u64 + 1) << 8);
                    (rate, Arc::new(Schedule::poisson(kind, rate, n, seed)))
                })
                .collect()
        })
        .collect();
    for r in 0..rounds {
        let order = if r % 2 == 0 {
            [Side::Weir, Side::Hand]
        } else {
            [Side::Hand, Side::Weir]
        };
        for (k, per_load) in schedules.iter().enumerate() {
            for (l, (_, schedule)) in per_load.iter().enumerate() {
                for side in order {
                    let began = std::time::Instant::now();
                    let mut s = run(&rt, side, schedule, workers);
                    let wall = began.elapsed();
                    s.latency.sort_unstable();
                    s.late.sort_unstable();
                    let round = (
                        quantile(&s.latency, 0.50),
                        quantile(&s.latency, 0.99),
                        quantile(&s.latency, 0.999),
                        quantile(&s.late, 0.50),
                    );
                    if verbose {
                        eprintln!(
                            "round {r} {} {:.0}% {}: p50 {} p99 {} p99.9 {} late p50 {} us, \
                             wall {:.3} s for {:.3} s of arrivals",
                            kinds[k].key(),
                            LOADS[l] * 100.0,
                            side.name(),
                            us(round.0),
                            us(round.1),
                            us(round.2),
                            us(round.3),
                            wall.as_secs_f64(),
                            schedule.arrivals.last().map_or(0.0, |a| a.0.as_secs_f64()),
                        );
                    }
                    samples[k][l][usize::from(side == Side::Hand)].push(round);
                }
            }
        }
    }

    for (k, kind) in kinds.iter().enumerate() {
        let (w, h) = maxima[k];
        println!();
        println!(
            "== {}: closed-loop max weir {w} jobs/s, hand {h} jobs/s (weir/hand {:.2}); \
             offered load from hand's",
            kind.name(),
            w as f64 / h as f64
        );
        println!(
            "{:>5} {:>8} {:>8} {:<5} {:>26} {:>26} {:>26} {:>9}",
            "load", "rate/s", "jobs", "pool", "p50 us", "p99 us", "p99.9 us", "late p50"
        );
        for (l, load) in LOADS.iter().enumerate() {
            let (rate, schedule) = &schedules[k][l];
            for side in [Side::Weir, Side::Hand] {
                let rounds = &samples[k][l][usize::from(side == Side::Hand)];
                let pick = |f: fn(&Round) -> u64| spread(rounds.iter().map(f).collect());
                println!(
                    "{:>4.0}% {:>8.0} {:>8} {:<5} {:>26} {:>26} {:>26} {:>9}",
                    load * 100.0,
                    rate,
                    schedule.arrivals.len(),
                    side.name(),
                    cell(pick(|r| r.0)),
                    cell(pick(|r| r.1)),
                    cell(pick(|r| r.2)),
                    us(pick(|r| r.3).0),
                );
            }
        }
    }
}
