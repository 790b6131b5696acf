//! Fan-in with `weir::merge`: three producers, one consumer.
//!
//! Three "sensors" report at different speeds and stop at different times.
//! `merge` forwards their readings into one bounded output as they come, and
//! the output closes once every sensor has stopped. A second run shows the
//! token stopping a merge of endless inputs.
//!
//! Run with `cargo run --example fan_in`.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

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
    let token = CancellationToken::new();
    let start = tokio::time::Instant::now();

    println!("== merge: three sensors, closing at different times");
    let inputs = vec![
        sensor("fast", 6, Duration::from_millis(20)),
        sensor("medium", 4, Duration::from_millis(50)),
        sensor("slow", 2, Duration::from_millis(120)),
    ];
    let mut merged = weir::merge(inputs, &token);
    let mut n = 0;
    while let Some(reading) = merged.recv().await {
        n += 1;
        println!("{:>5}ms  {reading}", start.elapsed().as_millis());
    }
    merged.join().await?; // every forwarding task has ended
    println!("output closed after {n} readings (6 + 4 + 2): every input closed\n");

    println!("== merge: endless inputs, stopped by the token after 200ms");
    let endless = |name| sensor(name, u32::MAX, Duration::from_millis(30));
    let mut merged = weir::merge(vec![endless("a"), endless("b")], &token);
    let stopper = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stopper.cancel();
    });
    let mut n = 0;
    while merged.recv().await.is_some() {
        n += 1;
    }
    merged.join().await?;
    println!("received {n} readings, then the token closed the output; no task left running");
    Ok(())
}
