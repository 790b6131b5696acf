//! The pooling pattern: a parent hands N pieces of work to a pool of
//! children and gathers their results.
//!
//! In Go: start N goroutines reading one `jobs` channel, send the work, close
//! the channel, read N results from a `results` channel. Here the parent
//! submits 12 "page fetches" to a pool of 4 and reads the pool's results
//! stream; results arrive in completion order and carry the job id, so the
//! parent can put them back in its own order. The clock is paused.
//!
//! Run with `cargo run --example pooling`.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::{Instant, sleep};
use weir::pool::Pool;

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> anyhow::Result<()> {
    let pages: Vec<String> = (1..=12).map(|n| format!("/page/{n}")).collect();

    let pool =
        Pool::builder()
            .workers(4)
            .queue(4)
            .name("fetchers")
            .build(|path: String| async move {
                // Pretend to fetch: longer paths take longer; page 9 is missing.
                let ms = 50 * (path.len() as u64 % 4 + 1);
                sleep(Duration::from_millis(ms)).await;
                if path.ends_with("/9") {
                    anyhow::bail!("404 for {path}");
                }
                Ok((path.clone(), ms * 10))
            })?;

    // Take the results stream before submitting, then let a child task feed
    // the pool so the parent can read results while work is still queued.
    let mut results = pool
        .results()
        .ok_or_else(|| anyhow::anyhow!("results already taken"))?;
    let start = Instant::now();
    let feeder = {
        let pool = pool.clone();
        let pages = pages.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for page in pages {
                ids.push(pool.submit_detached(page).await?);
            }
            pool.join().await?; // no more work: the stream ends after the last result
            anyhow::Ok(ids)
        })
    };
    drop(pool);

    println!("parent: handed {} pages to 4 workers", pages.len());
    let mut by_id = BTreeMap::new();
    while let Some((id, result)) = results.next().await {
        match &result {
            Ok((page, bytes)) => {
                println!("  {:>6?}  {id}: {page} -> {bytes} bytes", start.elapsed())
            }
            Err(e) => println!("  {:>6?}  {id}: {e}", start.elapsed()),
        }
        by_id.insert(id, result);
    }
    let ids = feeder.await??;

    println!(
        "parent: gathered {} results in {:?}",
        by_id.len(),
        start.elapsed()
    );
    let (ok, failed): (Vec<_>, Vec<_>) = ids.iter().map(|id| &by_id[id]).partition(|r| r.is_ok());
    println!(
        "parent: {} fetched, {} failed; in submission order: {:?}",
        ok.len(),
        failed.len(),
        ids.iter()
            .map(|id| by_id[id]
                .as_ref()
                .map(|(p, _)| p.as_str())
                .unwrap_or("<error>"))
            .collect::<Vec<_>>()
    );
    assert_eq!(by_id.len(), pages.len(), "every piece of work came back");
    Ok(())
}
