//! The "stop tap" with `weir::for_each_in_batches`: 100 requests as 5 rounds
//! of 20. A batch starts, every request in it finishes, then the next batch.
//! Compare with `for_each_bounded`, which refills the window at once.
//!
//! Run with `cargo run --example stop_tap`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let start = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));

    let s = starts.clone();
    let replies = weir::for_each_in_batches(0..100u32, 20, move |id| {
        let s = s.clone();
        async move {
            if let Ok(mut s) = s.lock() {
                s.push(start.elapsed().as_millis() / 10 * 10);
            }
            // Uneven request times: 20..=58ms.
            tokio::time::sleep(Duration::from_millis(20 + u64::from(id * 7 % 39))).await;
            Ok::<_, anyhow::Error>(format!("reply {id}"))
        }
    })
    .await?;
    let batched = start.elapsed();

    let mut rounds = starts
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    rounds.dedup();
    println!("{} replies in {} ms", replies.len(), batched.as_millis());
    println!("rounds started at (ms, rounded): {rounds:?}");
    println!("each round waits for its slowest request before the tap opens again");

    let start = Instant::now();
    weir::for_each_bounded(0..100u32, 20, |id| async move {
        tokio::time::sleep(Duration::from_millis(20 + u64::from(id * 7 % 39))).await;
        Ok::<_, anyhow::Error>(id)
    })
    .await?;
    println!(
        "the same 100 with a sliding window of 20 (for_each_bounded): {} ms",
        start.elapsed().as_millis()
    );
    Ok(())
}
