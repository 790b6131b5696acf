//! weir's metrics on a Prometheus endpoint (weir's feature `metrics`).
//!
//! Installs metrics-exporter-prometheus's recorder (durations as
//! Prometheus histograms), serves its text on `GET /metrics` on a loopback
//! port with axum, and runs a known workload through a pool, a pipeline, a
//! rate limiter and a task group, each named, so the series carry those
//! names (docs/observability.md lists every series):
//!
//! - pool `thumbnails`: 20 jobs, the 3 whose number is 3 mod 7 fail;
//! - pipeline `orders`: 1000 rows through `parse` (4 workers; every 100th
//!   row is bad) and `large` (keeps the even ones), errors continued past;
//! - limiter `api`: 5 a second, 5 at once; 8 tries, 3 refused;
//! - group `fetch`: 4 tasks, 1 fails.
//!
//! Then, run by a person (stdout is a terminal) or with `--serve`, it
//! serves until ctrl-c or until its standard input closes (what
//! tests/metrics_scrape.rs does after scraping it): point Prometheus or
//! `curl` at the address it prints. Run by a program without `--serve`
//! (tests/examples.rs), it scrapes itself once, prints the pool's lines and
//! exits. `--port N` picks the port (default: any free one).
//!
//! Run with `cargo run --example metrics_prometheus`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use futures::StreamExt;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir::group::Group;
use weir::rate::{Rate, RateLimiter};
use weir::{ErrorPolicy, Pipeline, Pool, Shutdown};

/// Bucket bounds of the duration histograms, in seconds.
const BUCKETS: &[f64] = &[
    0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let serve = std::env::args().any(|a| a == "--serve") || std::io::stdout().is_terminal();
    let port = port()?;

    // The recorder first: weir's constructs take their series from it when
    // they are built.
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)?
        .install_recorder()
        .context("installing the Prometheus recorder")?;

    let shutdown = Shutdown::new();
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let handle = metrics.clone();
    let app = Router::new().route("/metrics", get(move || std::future::ready(handle.render())));
    shutdown.spawn("metrics endpoint", move |ctx| async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { ctx.cancelled().await })
            .await
    })?;
    // The exporter's housekeeping (histogram buffers between scrapes).
    let upkeep = metrics.clone();
    shutdown.spawn("metrics upkeep", move |ctx| async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        while ctx.run(every.tick()).await.is_ok() {
            upkeep.run_upkeep();
        }
        anyhow::Ok(())
    })?;
    println!("metrics at http://{addr}/metrics");

    run_workload().await?;
    println!("workload done");

    if serve {
        println!("ready: http://{addr}/metrics (ctrl-c or close stdin to stop)");
        tokio::select! {
            _ = shutdown.on_signal() => {}
            () = stdin_closed() => {}
        }
    } else {
        let text = scrape(addr).await?;
        let series = text.lines().filter(|l| l.starts_with("weir_")).count();
        for line in text
            .lines()
            .filter(|l| l.starts_with("weir_pool_jobs_total"))
        {
            println!("{line}");
        }
        println!("scraped {series} weir series from http://{addr}/metrics");
    }
    shutdown.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}

/// `--port N`, or 0 (any free port).
fn port() -> anyhow::Result<u16> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--port") {
        Some(i) => Ok(args
            .get(i + 1)
            .context("--port needs a number")?
            .parse()
            .context("--port needs a number")?),
        None => Ok(0),
    }
}

/// The known run whose counts tests/metrics_scrape.rs checks.
async fn run_workload() -> anyhow::Result<()> {
    let pool = Pool::builder()
        .name("thumbnails")
        .workers(2)
        .queue(8)
        .build(|n: u32| async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            if n % 7 == 3 {
                anyhow::bail!("image {n} is corrupt");
            }
            Ok(n)
        })?;
    for n in 0..20 {
        pool.submit_detached(n).await?;
    }
    let report = pool.join().await?;
    println!(
        "pool thumbnails: completed {}, failed {}",
        report.completed, report.failed
    );

    let (out, mut handle) = Pipeline::from_iter(0..1_000u64)
        .name("orders")
        .error_policy(ErrorPolicy::Continue)
        .map("parse", 4, |row| async move {
            if row % 100 == 99 {
                anyhow::bail!("row {row} is malformed");
            }
            Ok(row)
        })
        .filter("large", |row| row % 2 == 0)
        .into_stream()?;
    let errors = handle.errors().context("the error stream")?;
    let (kept, failed) = futures::join!(out.count(), errors.count());
    handle.join().await?;
    println!("pipeline orders: kept {kept}, failed {failed}");

    let api = RateLimiter::new(Rate::per_second(5).burst(5))?.named("api");
    let allowed = (0..8).filter(|_| api.try_acquire().is_ok()).count();
    println!("limiter api: allowed {allowed} of 8");

    let mut group: Group<u32> = Group::builder()
        .name("fetch")
        .error_policy(ErrorPolicy::Continue)
        .build()?;
    for page in 0..4u32 {
        group
            .spawn(async move {
                if page == 2 {
                    anyhow::bail!("page {page}: HTTP 503");
                }
                Ok(page)
            })
            .await;
    }
    let failed = group.join().await.err().map_or(0, |e| e.report().failed);
    println!("group fetch: failed {failed} of 4");
    Ok(())
}

/// Resolves when standard input reaches its end (or cannot be read).
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// `GET /metrics` over a plain HTTP/1.1 connection: the body.
async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let mut conn = TcpStream::connect(addr).await?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    conn.read_to_string(&mut response).await?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("an HTTP response")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "scrape failed: {head}");
    Ok(body.to_owned())
}
