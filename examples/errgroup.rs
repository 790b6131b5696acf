//! errgroup: fetch several "URLs" at most three at a time; one fails, which
//! cancels the others, and `wait` reports that first failure.
//!
//! The fetches are simulated with sleeps. Run with
//! `cargo run --example errgroup`.

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use weir::group::{Group, GroupError};

/// A "URL", how long fetching it takes, and whether the server fails.
const SITES: [(&str, u64, bool); 6] = [
    ("https://example.com/", 120, true),
    ("https://example.org/", 300, true),
    ("https://flaky.example/", 200, false),
    ("https://example.net/", 800, true),
    ("https://slow.example/", 1_000, true),
    ("https://late.example/", 150, true),
];

/// Fetches `url`, stopping early if the group's token is cancelled.
async fn fetch(
    url: &'static str,
    ms: u64,
    healthy: bool,
    token: CancellationToken,
    start: Instant,
) -> anyhow::Result<usize> {
    let at = || start.elapsed().as_millis();
    println!("{:>5} ms  start   {url}", at());
    tokio::select! {
        _ = token.cancelled() => {
            println!("{:>5} ms  stop    {url} (cancelled)", at());
            Err(anyhow!("cancelled"))
        }
        _ = sleep(Duration::from_millis(ms)) => {
            if healthy {
                let bytes = url.len() * 1_000;
                println!("{:>5} ms  done    {url} ({bytes} bytes)", at());
                Ok(bytes)
            } else {
                println!("{:>5} ms  FAIL    {url} (HTTP 503)", at());
                Err(anyhow!("HTTP 503 Service Unavailable"))
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("fail fast: {} URLs, at most 3 at a time", SITES.len());
    let start = Instant::now();
    let mut group: Group<usize> = Group::new().limit(3)?;
    for (url, ms, healthy) in SITES {
        // Waits here while three fetches are running.
        let token = group.token().clone();
        group
            .spawn_named(url, fetch(url, ms, healthy, token, start))
            .await;
    }
    match group.wait().await {
        Ok(sizes) => println!("all fetched: {sizes:?}"),
        Err(GroupError::Failed { task, error }) => {
            println!(
                "{:>5} ms  wait    returned the first error: {task}: {error}",
                start.elapsed().as_millis()
            );
        }
        Err(other) => return Err(other).context("unexpected failure"),
    }
    println!("every task has ended; nothing is left running\n");

    println!("collect everything: fail_fast(false) + wait_all, one entry per URL");
    let start = Instant::now();
    let mut group: Group<usize> = Group::new().limit(3)?.fail_fast(false);
    for (url, ms, healthy) in SITES {
        let token = group.token().clone();
        group
            .spawn_named(url, fetch(url, ms / 4, healthy, token, start))
            .await;
    }
    for (result, (url, _, _)) in group.wait_all_ordered().await.iter().zip(SITES) {
        match result {
            Ok(bytes) => println!("  ok      {url}: {bytes} bytes"),
            Err(error) => println!("  failed  {error}"),
        }
    }
    Ok(())
}
