//! Several replicas of a service sharing one rate limit through Redis: each
//! replica has its own `SharedRateLimiter` (its own connection, as separate
//! processes would), and together they admit what the one limit allows.
//!
//! Uses `REDIS_URL` when it is set; otherwise it starts a redis-server of
//! its own on a free loopback port (`apt-get install -y redis-server`).
//! Run with `cargo run --example distributed_rate_limit`.

use std::time::Duration;

use tokio::time::Instant;
use weir::rate::Rate;
use weir::redis::{LocalRedisServer, OutagePolicy, SharedRateError, SharedRateLimiter};

const REPLICAS: usize = 4;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (url, _server) = match std::env::var("REDIS_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let server = LocalRedisServer::start().await?;
            (server.url(), Some(server))
        }
    };
    // One limit for the whole service: 50 checkouts a second, 10 at once.
    let rate = Rate::per_second(50).burst(10);
    let prefix = format!("example:{}", std::process::id());
    let run = Duration::from_secs(2);

    let start = Instant::now();
    let mut replicas = Vec::new();
    for replica in 0..REPLICAS {
        let limiter = SharedRateLimiter::builder(rate)
            .prefix(prefix.clone())
            .timeout(Duration::from_millis(100))
            .on_outage(OutagePolicy::local(1.0 / REPLICAS as f64))
            .build_url(&url)?;
        replicas.push(tokio::spawn(async move {
            let mut admitted = 0u64;
            while start.elapsed() < run {
                match limiter.try_acquire("checkout").await {
                    Ok(_) => admitted += 1,
                    Err(SharedRateError::Limited { retry_after }) => {
                        tokio::time::sleep(retry_after.unwrap_or(Duration::from_millis(20))).await;
                    }
                    Err(e) => anyhow::bail!("replica {replica}: {e}"),
                }
            }
            anyhow::Ok((admitted, limiter.stats()))
        }));
    }
    let mut total = 0;
    for (i, replica) in replicas.into_iter().enumerate() {
        let (admitted, stats) = replica.await??;
        println!(
            "replica {i}: admitted {admitted:>3} ({} round trips, {} refused)",
            stats.redis_decisions, stats.refused
        );
        total += admitted;
    }
    let elapsed = start.elapsed();
    // The GCRA's promise: at most the burst plus one token per period.
    let allowed = 10 + (elapsed.as_secs_f64() * 50.0) as u64;
    println!(
        "total {total} in {elapsed:.1?}; one limit allows at most 50/s × {elapsed:.1?} + 10 = {allowed}"
    );
    println!("total within the shared limit: {}", total <= allowed);
    assert!(total <= allowed);
    Ok(())
}
