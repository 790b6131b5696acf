//! Rate limiting: the seeds' `time.Tick` limiter beside a bursty token
//! bucket, then several workers sharing one bucket, then load shedding,
//! then waits with a deadline whose rejections are logged only sometimes.
//!
//! Runs on a paused tokio clock, so the seconds of schedule below pass in an
//! instant and the timestamps (relative to the start) are exact. Run with
//! `cargo run --example rate_limit`.

use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;
use weir::Context;
use weir::rate::{Rate, RateLimiter, Sometimes, ThrottleExt, Ticker};

fn ms(start: Instant) -> u128 {
    start.elapsed().as_millis()
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> anyhow::Result<()> {
    // 1. Ticker-paced (Go: `for range time.Tick(200ms)`): one request per
    //    tick, never two close together, first one after a full period.
    println!("1. ticker every 200 ms (no burst):");
    let start = Instant::now();
    let mut ticker = Ticker::new(Duration::from_millis(200))?;
    for req in 1..=5 {
        ticker.tick().await;
        println!("   request {req} at {:>5} ms", ms(start));
    }

    // 2. Token bucket, 5/s with a burst of 3: the first three go at once,
    //    then one every 200 ms; after an idle second the burst is back.
    println!("2. token bucket 5/s, burst 3:");
    let limiter = RateLimiter::new(Rate::per_second(5).burst(3))?;
    let start = Instant::now();
    for req in 1..=6 {
        limiter.acquire().await?;
        println!("   request {req} at {:>5} ms", ms(start));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!("   (idle 1 s: {} tokens back)", limiter.available());
    for req in 7..=10 {
        limiter.acquire().await?;
        println!("   request {req} at {:>5} ms", ms(start));
    }

    // 3. Three workers share one bucket (clones share it): together they get
    //    5/s, not 15/s, and they are served in arrival order.
    println!("3. three workers sharing 5/s, burst 3:");
    let shared = RateLimiter::new(Rate::per_second(5).burst(3))?;
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..3 {
        let limiter = shared.clone();
        workers.spawn(async move {
            let mut times = Vec::new();
            for _ in 0..3 {
                limiter.acquire().await?;
                times.push(ms(start));
            }
            anyhow::Ok((w, times))
        });
    }
    let mut results = Vec::new();
    while let Some(done) = workers.join_next().await {
        results.push(done??);
    }
    results.sort();
    for (w, times) in results {
        println!("   worker {w} got tokens at {times:?} ms");
    }
    println!("   9 requests took {} ms", ms(start));

    // 4. Load shedding: 20 requests arrive at once; `try_acquire` admits the
    //    burst and tells the rest when to come back, without waiting.
    println!("4. 20 requests at once against 10/s, burst 5:");
    let gate = RateLimiter::new(Rate::per_second(10).burst(5))?;
    let (mut admitted, mut shed) = (0, 0);
    let mut retry = None;
    for _ in 0..20 {
        match gate.try_acquire() {
            Ok(()) => admitted += 1,
            Err(not_until) => {
                shed += 1;
                retry = not_until.wait_time();
            }
        }
    }
    println!("   admitted {admitted}, shed {shed} (retry in {retry:?})");

    // 5. A stream paced by the same kind of bucket.
    println!("5. a stream throttled to 4/s:");
    let start = Instant::now();
    let pacer = RateLimiter::new(Rate::per_second(4))?;
    let mut items = futures::stream::iter(["a", "b", "c", "d"]).throttle(&pacer);
    while let Some(item) = items.next().await {
        println!("   item {item} at {:>5} ms", ms(start));
    }

    // 6. Waits with a deadline (Go's `WaitN(ctx, n)`): a request waits for
    //    its token only if it comes within 300 ms, and fails at once
    //    otherwise, taking nothing. The failures are logged sometimes: the
    //    first, then every third (Go's `rate.Sometimes`).
    println!("6. 2/s, each request willing to wait 300 ms, one every 100 ms:");
    let api = RateLimiter::new(Rate::per_second(2))?;
    let log_shed = Sometimes::new().first(1).every(3);
    let start = Instant::now();
    let mut shed = 0;
    for req in 1..=7 {
        let ctx = Context::background().with_timeout(Duration::from_millis(300));
        match api.acquire().context(&ctx).await {
            Ok(()) => println!("   request {req} at {:>5} ms", ms(start)),
            Err(err) => {
                shed += 1;
                log_shed.run(|| println!("   request {req} shed: {err}"));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("   {shed} requests shed, the first of them logged");
    Ok(())
}
