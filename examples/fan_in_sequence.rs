//! Restoring a sequence with `weir::merge_in_turn`.
//!
//! Numbers 0..15 are dealt round robin to three workers that take a random
//! time per number. Merged as they come (`merge`), the order is scrambled;
//! merged in turn (`merge_in_turn`, one from each worker in rotation), the
//! original sequence comes back exactly.
//!
//! Run with `cargo run --example fan_in_sequence`.

use std::time::Duration;

use futures::{Stream, StreamExt, stream};

const WORKERS: u64 = 3;

/// Worker `w` handles the numbers `n` with `n % WORKERS == w`, each taking a
/// pseudo-random 5..40ms.
fn worker(w: u64) -> impl Stream<Item = u64> + Send + Unpin + 'static {
    Box::pin(
        stream::iter((0..15).filter(move |n| n % WORKERS == w)).then(|n| async move {
            let ms = 5 + (n * 37 + 11) % 35;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            n
        }),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let merged = weir::merge((0..WORKERS).map(worker))?;
    let scrambled = merged.collect_all().await;
    println!("merge (as they come):      {scrambled:?}");

    let in_turn = weir::merge_in_turn((0..WORKERS).map(worker))?;
    let handle = in_turn.handle();
    let restored = in_turn.collect_all().await;
    handle.join().await?;
    println!("merge_in_turn (in turn):   {restored:?}");

    anyhow::ensure!(
        restored == (0..15).collect::<Vec<_>>(),
        "sequence not restored"
    );
    println!("the sequence is restored: strict rotation waits for the worker whose turn it is");
    Ok(())
}
