//! Bounded fan-out with `weir::for_each_bounded`: at most N at a time.
//!
//! 20 "downloads" of 100ms each, at most 5 in flight. The window refills as
//! soon as one finishes, so the run takes about 4 × 100ms. Then the same
//! with one failing download: fail-fast aborts the rest and returns the error.
//!
//! Run with `cargo run --example fan_out_semaphore`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use weir::BoundedError;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let start = tokio::time::Instant::now();

    let (now, max) = (in_flight.clone(), most.clone());
    let sizes = weir::for_each_bounded(0..20u64, 5, move |id| {
        let (now, max) = (now.clone(), max.clone());
        async move {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            now.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, anyhow::Error>(1_000 + id * 10) // "bytes downloaded"
        }
    })
    .await?;
    println!(
        "20 downloads, limit 5: {} ms, at most {} in flight",
        start.elapsed().as_millis(),
        most.load(Ordering::SeqCst)
    );
    println!("sizes in input order: {sizes:?}\n");

    let start = tokio::time::Instant::now();
    let result = weir::for_each_bounded(0..20u64, 5, |id| async move {
        tokio::time::sleep(Duration::from_millis(50 + id * 5)).await;
        if id == 7 {
            anyhow::bail!("download {id}: connection reset");
        }
        Ok(id)
    })
    .await;
    let Err(err) = result else {
        anyhow::bail!("expected a failure");
    };
    match err.error() {
        BoundedError::Failed { index, error } => println!(
            "fail-fast: item {index} failed ({error}) after {} ms; the rest were aborted",
            start.elapsed().as_millis()
        ),
        other => anyhow::bail!("expected a failure, got {other:?}"),
    }
    println!("{}", err.report());
    Ok(())
}
