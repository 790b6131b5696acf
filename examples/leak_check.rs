//! A leak check for your own tests: Go's `goleak`, for weir.
//!
//! `LeakCheck::start()` at the top of a test, `verify_none().await` at its
//! end: the check waits up to a grace period for every task to end, then
//! fails naming each weir task still alive (construct, name, worker or
//! stage, and the line that made it), and counts the tasks weir did not
//! spawn from the runtime's own figure.
//!
//! In a test it is the same lines under `#[tokio::test]`, with weir's
//! `testing` feature on in `[dev-dependencies]`:
//!
//! ```toml
//! [dev-dependencies]
//! weir = { version = "0.1", features = ["testing"] }
//! ```
//!
//! The runtime's clock is paused, so the grace periods take no time.
//! Run with `cargo run --example leak_check`.

use std::time::Duration;

use weir::testing::{Construct, LeakCheck};
use weir::{Pipeline, Pool};

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> anyhow::Result<()> {
    println!("== a test that joins what it starts passes");
    let leaks = LeakCheck::start();
    let pool = Pool::builder()
        .name("thumbnails")
        .workers(2)
        .build(|n: u64| async move { anyhow::Ok(n * 2) })?;
    for n in 0..10 {
        drop(pool.submit(n).await?);
    }
    let report = pool.join().await?;
    println!("pool: {} jobs completed", report.completed);
    leaks.verify().await?;
    println!("no weir task left running");

    println!("\n== a test that forgets to join fails, naming what it left behind");
    let leaks = LeakCheck::start().grace(Duration::from_secs(1));
    let forgotten = Pool::builder()
        .name("resize")
        .workers(2)
        .build(|n: u64| async move { anyhow::Ok(n) })?;
    let (_items, pipeline) = Pipeline::from_iter(0..1_000u64)
        .name("etl")
        .map("parse", 1, |n| async move { anyhow::Ok(n) })
        .into_stream()?;
    let Err(err) = leaks.verify().await else {
        anyhow::bail!("the check should have found the pool and the pipeline");
    };
    println!("{err}");
    // The pool's watcher and 2 workers, the pipeline's 2 tasks (and, built
    // with weir's `metrics` feature, the pipeline's metrics publisher).
    let without_metrics = err.leaked.iter().filter(|t| t.task != "metrics").count();
    assert_eq!(without_metrics, 5);

    forgotten.join().await?;
    pipeline.cancel();
    let _ = pipeline.join().await;

    println!("\n== an ignore list, like goleak's IgnoreTopFunction");
    let leaks = LeakCheck::start()
        .ignore_construct(Construct::Pool)
        .ignore_name("etl");
    let warmer = Pool::builder()
        .name("cache-warmer")
        .build(|n: u64| async move { anyhow::Ok(n) })?;
    leaks.verify().await?;
    println!("ignored: every pool's tasks (the pipeline named `etl` would be too)");
    warmer.join().await?;

    let alive = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    assert_eq!(alive, 0);
    println!("done: nothing left running");
    Ok(())
}
