//! The generator pattern: a function that produces values in its own task,
//! consumed as a stream — and stopped, not leaked, when the consumer leaves.
//!
//! Run with `cargo run --example generator`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use weir::Pipeline;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let produced = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&produced);
    // An endless generator of prime numbers.
    let (mut primes, handle) = Pipeline::<u64>::generate(move |tx| async move {
        let mut n = 2u64;
        loop {
            if (2..n)
                .take_while(|d| d * d <= n)
                .all(|d| !n.is_multiple_of(d))
            {
                counter.fetch_add(1, Ordering::Relaxed);
                tx.send(n).await?; // fails once the consumer is gone: `?` ends the generator
            }
            n += 1;
        }
    })
    .capacity(4)
    .into_stream()?;

    print!("the first 15 primes:");
    for _ in 0..15 {
        if let Some(p) = primes.recv().await {
            print!(" {p}");
        }
    }
    println!();

    drop(primes); // walk away from an endless generator
    let report = handle.join().await?;
    let after_join = produced.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(50)).await;
    println!(
        "generator produced {after_join} primes (15 read, {} were waiting in the buffer when we left)",
        report.undelivered + report.stages[0].cancelled
    );
    println!(
        "50ms later it has produced {}: it stopped, it did not leak",
        produced.load(Ordering::Relaxed)
    );
    Ok(())
}
