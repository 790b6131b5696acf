//! Per-client rate limiting: one bucket per client, a higher quota for one
//! of them, and eviction of idle buckets so memory stays bounded.
//!
//! Runs on a paused tokio clock (the timestamps are exact). Run with
//! `cargo run --example rate_limit_keyed`.

use std::time::Duration;

use tokio::time::Instant;
use weir::rate::{KeyedRateLimiter, Rate};

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> anyhow::Result<()> {
    // Every client: 2 requests a second, 4 at once. "partner": 50/s, 20.
    let per_client = KeyedRateLimiter::new(Rate::per_second(2).burst(4))?;
    per_client.set_override("partner", Rate::per_second(50).burst(20))?;

    // One second of traffic, in 100 ms steps: "noisy" sends 5 requests per
    // step, "quiet" one per 500 ms, "partner" 3 per step.
    let start = Instant::now();
    let mut report = std::collections::BTreeMap::<&str, (u32, u32)>::new();
    for step in 0..10u32 {
        let mut arrivals = vec!["noisy"; 5];
        if step % 5 == 0 {
            arrivals.push("quiet");
        }
        arrivals.extend(["partner"; 3]);
        for client in arrivals {
            let entry = report.entry(client).or_default();
            match per_client.try_acquire(&client) {
                Ok(()) => entry.0 += 1,
                Err(_) => entry.1 += 1,
            }
        }
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    println!("after {} ms of traffic:", start.elapsed().as_millis());
    for (client, (ok, rejected)) in &report {
        println!(
            "   {client:<8} quota {:<22} admitted {ok:>2}, rejected {rejected:>2}",
            per_client.rate_for(client).to_string()
        );
    }

    // A waiting caller instead of a rejection: "noisy" queues for 3 tokens
    // (a batch); keys do not wait for each other meanwhile.
    let t = Instant::now();
    per_client.acquire_n(&"noisy", 3).await?;
    println!(
        "noisy waited {} ms for a batch of 3 tokens",
        t.elapsed().as_millis()
    );
    // More than the burst can never be granted: an error, not a hang.
    if let Err(err) = per_client.acquire_n(&"noisy", 5).await {
        println!("noisy asking for 5 at once: {err}");
    }

    // Many short-lived clients: 10,000 buckets, then eviction.
    let clients = KeyedRateLimiter::new(Rate::per_second(1).burst(3))?;
    for id in 0..10_000u32 {
        clients.try_acquire(&id)?;
    }
    println!("10000 clients seen: {} buckets held", clients.len());
    println!(
        "evicted right away: {} (none are full again yet)",
        clients.retain_recent()
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    println!(
        "evicted after 1 s idle: {}, {} buckets left",
        clients.retain_recent(),
        clients.len()
    );
    Ok(())
}
