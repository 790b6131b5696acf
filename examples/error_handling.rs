//! Error handling in concurrent code, three ways:
//!
//! 1. the Result-carrying channel: every item comes out as a `Result`;
//! 2. the error stream: good items flow on, errors go to a side stream;
//! 3. fail-fast: the first error cancels everything (errgroup).
//!
//! Plus per-job results from a pool and all errors at once from a group.
//! Run with `cargo run --example error_handling`.

use std::time::Duration;

use futures::StreamExt;
use tokio::time::sleep;
use weir::group::Group;
use weir::{ErrorPolicy, Pipeline, Pool};

/// Pretend to fetch a URL: the ones containing "bad" fail.
async fn fetch(url: &'static str) -> anyhow::Result<usize> {
    sleep(Duration::from_millis(20)).await;
    if url.contains("bad") {
        anyhow::bail!("{url}: 503 service unavailable");
    }
    Ok(url.len() * 100)
}

const URLS: [&str; 6] = [
    "a.example",
    "bad.example",
    "c.example",
    "dd.example",
    "bad2.example",
    "f.example",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Panics below are on purpose; print them on one line, without a backtrace.
    std::panic::set_hook(Box::new(|info| eprintln!("   (panic hook: {info})")));
    // 1. The Result-carrying channel: the stage never fails; each item *is*
    //    a Result, and the consumer decides per item.
    println!("1. Result-carrying channel (the item is a Result):");
    let results = Pipeline::from_iter(URLS)
        .map_ordered("fetch", 3, |url| async move {
            anyhow::Ok((url, fetch(url).await))
        })
        .collect()
        .await?;
    for (url, r) in &results {
        match r {
            Ok(bytes) => println!("   {url:<13} ok, {bytes} bytes"),
            Err(e) => println!("   {url:<13} error: {e}"),
        }
    }

    // 2. The error stream: failed items leave the flow and are reported on
    //    the side; the rest goes on. Counts say what happened.
    println!("\n2. error stream (ErrorPolicy::Continue):");
    let (out, mut handle) = Pipeline::from_iter(URLS)
        .error_policy(ErrorPolicy::Continue)
        .map("fetch", 3, fetch)
        .into_stream()?;
    let errors = handle.errors().expect("error stream");
    let (sizes, errors) = tokio::join!(out.collect::<Vec<_>>(), errors.collect::<Vec<_>>());
    let report = handle.join().await?;
    println!("   sizes: {sizes:?}");
    for e in &errors {
        println!("   error: {e}");
    }
    let fetch_stage = report.stage("fetch").expect("stage");
    println!(
        "   fetch stage: in {} out {} failed {}",
        fetch_stage.input, fetch_stage.output, fetch_stage.failed
    );

    // 3. Fail-fast: the first error stops the pipeline and is returned.
    println!("\n3. fail-fast (the default):");
    match Pipeline::from_iter(URLS)
        .map("fetch", 3, fetch)
        .collect()
        .await
    {
        Ok(v) => println!("   all fetched: {v:?}"),
        Err(e) => println!("   stopped at the first error: {e}"),
    }

    // A pool gives each job its own ticket with its own Result.
    println!("\n4. pool: one ticket per job, errors and panics per job:");
    let pool = Pool::builder().workers(2).queue(8).name("fetchers").build(
        |url: &'static str| async move {
            if url == "f.example" {
                panic!("parser bug on {url}");
            }
            fetch(url).await
        },
    )?;
    let mut tickets = Vec::new();
    for url in URLS {
        tickets.push((
            url,
            pool.submit(url)
                .await
                .map_err(|_| anyhow::anyhow!("pool closed"))?,
        ));
    }
    for (url, ticket) in tickets {
        match ticket.await {
            Ok(bytes) => println!("   {url:<13} ok, {bytes} bytes"),
            Err(e) => println!("   {url:<13} {e}"),
        }
    }
    let report = pool.join().await?;
    println!(
        "   report: completed {} failed {} panicked {}",
        report.completed, report.failed, report.panicked
    );

    // A group can collect every error instead of only the first.
    println!("\n5. group: ErrorPolicy::Continue gathers every error (Go's errors.Join):");
    let mut group: Group<usize> = Group::builder()
        .error_policy(ErrorPolicy::Continue)
        .build()?;
    for url in URLS {
        group.spawn_named(url, fetch(url)).await;
    }
    match group.join().await {
        Ok(report) => println!("   all ok: {:?}", report.into_values()),
        Err(err) => {
            println!("   {} tasks failed:", err.error().len());
            for e in err.error() {
                println!("   - {e}");
            }
            println!("   and {} succeeded", err.report().succeeded);
        }
    }
    Ok(())
}
