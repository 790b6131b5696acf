//! Fan-in with `weir::merge`: three producers, one consumer.
//!
//! Three "sensors" report at different speeds and stop at different times.
//! `merge` forwards their readings into one bounded output as they come, and
//! the output closes once every sensor has stopped. A second run shows a
//! context with a deadline stopping a merge of endless inputs, and the
//! report that `join` still gives.
//!
//! Run with `cargo run --example fan_in`.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weir::{Cause, Context, Fan, FanError};

/// A producer task that sends `count` readings, one every `every`.
fn sensor(name: &'static str, count: u32, every: Duration) -> ReceiverStream<String> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        for i in 0..count {
            tokio::time::sleep(every).await;
            if tx.send(format!("{name}#{i}")).await.is_err() {
                return; // the merge is gone
            }
        }
        // Dropping `tx` closes this input.
    });
    ReceiverStream::new(rx)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let start = tokio::time::Instant::now();

    println!("== merge: three sensors, closing at different times");
    let inputs = vec![
        sensor("fast", 6, Duration::from_millis(20)),
        sensor("medium", 4, Duration::from_millis(50)),
        sensor("slow", 2, Duration::from_millis(120)),
    ];
    let mut merged = weir::merge(inputs)?;
    let mut n = 0;
    while let Some(reading) = merged.recv().await {
        n += 1;
        println!("{:>5}ms  {reading}", start.elapsed().as_millis());
    }
    let report = merged.join().await?; // every forwarding task has ended
    println!("output closed after {n} readings (6 + 4 + 2): every input closed");
    println!("{report}");

    println!("== merge: endless inputs, stopped by a 200ms deadline");
    let endless = |name| sensor(name, u32::MAX, Duration::from_millis(30));
    let ctx = Context::background().with_timeout(Duration::from_millis(200));
    let mut merged = Fan::new()
        .context(&ctx)
        .merge(vec![endless("a"), endless("b")])?;
    let mut n = 0;
    while merged.recv().await.is_some() {
        n += 1;
    }
    // The deadline is the fan's stop; its error carries the report.
    let Err(err) = merged.join().await else {
        anyhow::bail!("endless inputs cannot end on their own");
    };
    assert!(matches!(
        err.error(),
        FanError::Stopped(Cause::DeadlineExceeded)
    ));
    println!(
        "received {n} readings, then: {err} (delivered {})",
        err.report().delivered
    );
    println!("no task left running");
    Ok(())
}
