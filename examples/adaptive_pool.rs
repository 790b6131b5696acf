//! An adaptive concurrency limit (`weir::AdaptiveLimit`) in front of a
//! database whose capacity nobody knows, and which changes.
//!
//! The database serves 40 queries at once in 20 ms (±10%); past that, every
//! query slows down with the square of the overload (queueing and
//! contention), so sending more at once gets *less* done. After 10 s a replica goes down and
//! the capacity halves to 20. A `Pool` runs the queries, and there is
//! always more work waiting in its queue.
//!
//! 1. With a fixed 100 workers (a guess, too high): queries pile up, the
//!    latency balloons, and the throughput collapses when the capacity
//!    halves.
//! 2. With `Pool::builder().adaptive(limit)` (the gradient algorithm,
//!    default settings, no number given): the pool's worker count is the
//!    limit, which climbs until the latency starts to rise, settles near
//!    40, and follows the capacity down to near 20 within a few hundred
//!    milliseconds. Every move is visible (`subscribe()`, the pool's
//!    report, a `DEBUG` event).
//!
//! The runtime's clock is paused, so the simulated seconds take no time.
//!
//! Run with `cargo run --example adaptive_pool`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::{Instant, sleep, sleep_until};
use weir::AdaptiveLimit;
use weir::pool::Pool;

const UNLOADED: Duration = Duration::from_millis(20);
const RUN: Duration = Duration::from_secs(20);
const HALVED_AT: Duration = Duration::from_secs(10);
/// When to print a line, in each half (closer together after a change).
const TICKS_MS: [u64; 6] = [250, 500, 1000, 2000, 5000, 10_000];
/// Jobs waiting in the pool's queue, at most.
const QUEUE: usize = 200;

/// The simulated database: queries in flight, the capacity now, and a
/// seeded source of noise (the same run every time).
struct Database {
    capacity: usize,
    busy: usize,
    noise: u64,
}

impl Database {
    fn begin(&mut self) -> Duration {
        self.busy += 1;
        let over = (self.busy as f64 / self.capacity as f64).max(1.0);
        // xorshift64: ±10% around the model's latency.
        self.noise ^= self.noise << 13;
        self.noise ^= self.noise >> 7;
        self.noise ^= self.noise << 17;
        let jitter = 0.9 + 0.2 * (self.noise % 1000) as f64 / 1000.0;
        UNLOADED.mul_f64(over * over * jitter)
    }
}

/// What a run measured, per half: queries done and their latencies.
struct Measured {
    done: [u64; 2],
    latencies: Vec<Duration>,
    rests: [usize; 2],
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> anyhow::Result<()> {
    println!("== 1. a fixed 100 workers (a guess)");
    let fixed = AdaptiveLimit::builder()
        .name("fixed")
        .min(100)
        .max(100)
        .initial(100)
        .build()?;
    let guess = run(fixed).await?;

    println!("\n== 2. a pool under an adaptive limit (gradient, defaults)");
    let adaptive = AdaptiveLimit::builder().name("database").build()?;
    let found = run(adaptive.clone()).await?;
    println!("\n{}", adaptive.stats());

    println!("                      queries/s (C=40)  queries/s (C=20)  p99 latency");
    let half = HALVED_AT.as_secs();
    for (name, m) in [("fixed 100", &guess), ("adaptive", &found)] {
        println!(
            "   {name:<17} {:>17} {:>17} {:>9} ms",
            m.done[0] / half,
            m.done[1] / half,
            p99(&m.latencies).as_millis()
        );
    }
    let [before, after] = found.rests;
    assert!((30..=50).contains(&before) && (15..=25).contains(&after));
    assert!(p99(&found.latencies) <= UNLOADED * 2);
    assert!(found.done[1] > guess.done[1] * 2);
    println!(
        "\ndone: the adaptive limit followed the capacity down: {before} (C = 40), then {after} (C = 20), \
         with a p99 latency of {} ms (unloaded: {} ms)",
        p99(&found.latencies).as_millis(),
        UNLOADED.as_millis()
    );
    Ok(())
}

/// A pool of `limit` workers queries the database for twenty (simulated)
/// seconds, its queue kept full; the capacity halves half way.
async fn run(limit: AdaptiveLimit) -> anyhow::Result<Measured> {
    let start = Instant::now();
    let end = start + RUN;
    let db = Arc::new(Mutex::new(Database {
        capacity: 40,
        busy: 0,
        noise: 0x9E37_79B9_7F4A_7C15,
    }));
    let record = Arc::new(Mutex::new((vec![0u64; 2], Vec::new())));
    // Each job holds a slot of the limit while it runs; its `Ok` is a
    // success for the limit (the default classification).
    let pool = {
        let (db, record) = (db.clone(), record.clone());
        Pool::builder()
            .name("queries")
            .queue(QUEUE)
            .adaptive(limit.clone())
            .build(move |()| {
                let (db, record) = (db.clone(), record.clone());
                async move {
                    let latency = db.lock().await.begin();
                    sleep(latency).await;
                    db.lock().await.busy -= 1;
                    let mut r = record.lock().await;
                    r.0[usize::from(start.elapsed() >= HALVED_AT)] += 1;
                    r.1.push(latency);
                    anyhow::Ok(())
                }
            })?
    };
    let feeder = {
        let pool = pool.clone();
        tokio::spawn(async move {
            while Instant::now() < end {
                pool.submit_detached(()).await?;
            }
            anyhow::Ok(())
        })
    };
    // The limit every 100 ms, for its resting value (a median: the gradient
    // halves the limit for one window now and then, to measure the
    // unloaded latency again).
    let sampler = {
        let limit = limit.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < end {
                samples.push((start.elapsed(), limit.limit()));
                sleep(Duration::from_millis(100)).await;
            }
            samples
        })
    };
    // A timeline: the capacity, the limit, what got done since the last line.
    let (mut last_done, mut last_at) = (0, start);
    let ticks = TICKS_MS
        .iter()
        .map(|&ms| start + Duration::from_millis(ms))
        .chain(
            TICKS_MS
                .iter()
                .map(|&ms| start + HALVED_AT + Duration::from_millis(ms)),
        );
    for at in ticks {
        sleep_until(at).await;
        let (done, mean) = {
            let r = record.lock().await;
            let done: u64 = r.0.iter().sum();
            let recent = &r.1[last_done as usize..];
            let mean = recent.iter().sum::<Duration>() / recent.len().max(1) as u32;
            (done, mean)
        };
        let now = limit.limit();
        let workers = pool.report().workers;
        println!(
            "   {:>5} ms  capacity {:>2}  limit {now:>3}  workers {workers:>3}  {:>4} queries/s  mean latency {:>3} ms",
            (at - start).as_millis(),
            db.lock().await.capacity,
            ((done - last_done) as f64 / (at - last_at).as_secs_f64()).round(),
            mean.as_millis()
        );
        (last_done, last_at) = (done, at);
        if at - start == HALVED_AT {
            db.lock().await.capacity = 20;
            println!("   -- a replica goes down: the capacity halves to 20 --");
        }
    }
    let samples = sampler.await?;
    let resting = |from: Duration| {
        let mut l: Vec<usize> = samples
            .iter()
            .filter(|(t, _)| *t >= from && *t < from + HALVED_AT / 2)
            .map(|s| s.1)
            .collect();
        l.sort_unstable();
        l[l.len() / 2]
    };
    let rests = [resting(HALVED_AT / 2), resting(HALVED_AT + HALVED_AT / 2)];
    feeder.await??;
    // What is still queued at the end is not measured: cancel it.
    pool.cancel();
    let report = match pool.join().await {
        Ok(report) => report,
        Err(stopped) => stopped.into_report(),
    };
    assert!(report.is_balanced());
    assert!(limit.stats().is_balanced());
    let (done, latencies) = std::mem::take(&mut *record.lock().await);
    Ok(Measured {
        done: [done[0], done[1]],
        latencies,
        rests,
    })
}

fn p99(latencies: &[Duration]) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    sorted[(sorted.len() - 1) * 99 / 100]
}
