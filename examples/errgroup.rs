//! errgroup: fetch several "URLs" at most three at a time; one fails, which
//! cancels the others (the failure is the cause of the group's context), and
//! `join` reports every failure, the first first, with the report.
//!
//! The fetches are simulated with sleeps. Run with
//! `cargo run --example errgroup`.

use std::time::Duration;

use anyhow::anyhow;
use tokio::time::{Instant, sleep};
use weir::Context;
use weir::group::{ErrorPolicy, Group};

/// A "URL", how long fetching it takes, and whether the server fails.
const SITES: [(&str, u64, bool); 6] = [
    ("https://example.com/", 120, true),
    ("https://example.org/", 300, true),
    ("https://flaky.example/", 200, false),
    ("https://example.net/", 800, true),
    ("https://slow.example/", 1_000, true),
    ("https://late.example/", 150, true),
];

/// Fetches `url`, stopping early if the group's context is cancelled.
async fn fetch(
    url: &'static str,
    ms: u64,
    healthy: bool,
    ctx: Context,
    start: Instant,
) -> anyhow::Result<(&'static str, usize)> {
    let at = || start.elapsed().as_millis();
    println!("{:>5} ms  start   {url}", at());
    match ctx.run(sleep(Duration::from_millis(ms))).await {
        Err(stopped) => {
            println!("{:>5} ms  stop    {url} ({stopped})", at());
            Err(anyhow!(stopped))
        }
        Ok(()) if healthy => {
            let bytes = url.len() * 1_000;
            println!("{:>5} ms  done    {url} ({bytes} bytes)", at());
            Ok((url, bytes))
        }
        Ok(()) => {
            println!("{:>5} ms  FAIL    {url} (HTTP 503)", at());
            Err(anyhow!("HTTP 503 Service Unavailable"))
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("fail fast: {} URLs, at most 3 at a time", SITES.len());
    let start = Instant::now();
    let mut group: Group<(&str, usize)> = Group::builder().limit(3).build()?;
    let ctx = group.context().clone();
    for (url, ms, healthy) in SITES {
        // Waits here while three fetches are running.
        group
            .spawn_named(url, fetch(url, ms, healthy, ctx.clone(), start))
            .await;
    }
    match group.join().await {
        Ok(report) => println!("all fetched: {:?}", report.into_values()),
        Err(err) => {
            println!(
                "{:>5} ms  join    returned the first error: {}",
                start.elapsed().as_millis(),
                err.error().first()
            );
            if let Some(cause) = ctx.cause() {
                println!("          the group's context was cancelled by: {cause}");
            }
            print!("{}", err.report());
        }
    }
    println!("every task has ended; nothing is left running\n");

    println!("collect everything: ErrorPolicy::Continue, every failure and every value");
    let start = Instant::now();
    let mut group: Group<(&str, usize)> = Group::builder()
        .limit(3)
        .error_policy(ErrorPolicy::Continue)
        .build()?;
    for (url, ms, healthy) in SITES {
        let ctx = group.context().clone();
        group
            .spawn_named(url, fetch(url, ms / 4, healthy, ctx, start))
            .await;
    }
    let (errors, report) = match group.join().await {
        Ok(report) => (Vec::new(), report),
        Err(err) => {
            let (errors, report) = err.into_parts();
            (errors.into_vec(), report)
        }
    };
    for (url, bytes) in report.into_values_ordered() {
        println!("  ok      {url}: {bytes} bytes");
    }
    for error in errors {
        println!("  failed  {error}");
    }
    Ok(())
}
