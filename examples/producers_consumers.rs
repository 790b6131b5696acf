//! The four shapes of producers and consumers, and which weir piece fits each.
//!
//! | shape | what it is | weir |
//! |---|---|---|
//! | SPSC | one producer, one consumer | a bounded `tokio::sync::mpsc` channel (or a `Pipeline` stage) |
//! | SPMC | one producer, many consumers | `weir::distribute` (work sharing) or `weir::broadcast` (everyone gets everything) |
//! | MPSC | many producers, one consumer | `weir::merge` (as they come) or `weir::merge_in_turn` (in rotation) |
//! | MPMC | many producers, many consumers | `merge` then `distribute` (or a shared `async-channel`); for a long-lived service, `weir::pool` |
//!
//! Run with `cargo run --example producers_consumers`.

use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// A consumer: takes its items one by one, 5ms of work each.
async fn consume(mut items: weir::FanReceiver<String>) -> Vec<String> {
    let mut done = Vec::new();
    while let Some(item) = items.recv().await {
        tokio::time::sleep(Duration::from_millis(5)).await;
        done.push(item);
    }
    done
}

/// A producer: `count` items named after it, a little apart.
fn producer(name: &'static str, count: u32) -> impl Stream<Item = String> + Send + Unpin {
    Box::pin(stream::iter(0..count).then(move |i| async move {
        tokio::time::sleep(Duration::from_millis(3)).await;
        format!("{name}{i}")
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // SPSC: a bounded channel is all it takes.
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        for i in 0..4 {
            if tx.send(format!("x{i}")).await.is_err() {
                break;
            }
        }
    });
    let got: Vec<String> = ReceiverStream::new(rx).collect().await;
    println!("SPSC  mpsc channel        -> {got:?}");

    // SPMC, work sharing: each item to one consumer.
    let outs = weir::distribute(producer("s", 9), 3)?;
    let mut parts = Vec::new();
    for out in outs {
        parts.push(tokio::spawn(consume(out)));
    }
    for (i, p) in parts.into_iter().enumerate() {
        println!("SPMC  distribute consumer {i} -> {:?}", p.await?);
    }

    // SPMC, every item to every consumer.
    let outs = weir::broadcast(producer("b", 3), 2)?;
    for (i, out) in outs.into_iter().enumerate() {
        // Sequential reads are fine here: 3 items fit in the buffers.
        println!(
            "SPMC  broadcast consumer {i} -> {:?}",
            out.collect_all().await
        );
    }

    // MPSC: many producers into one consumer.
    let merged = weir::merge([producer("p", 3), producer("q", 3)])?;
    println!(
        "MPSC  merge               -> {:?}",
        merged.collect_all().await
    );
    let merged = weir::merge_in_turn([producer("p", 3), producer("q", 3)])?;
    println!(
        "MPSC  merge_in_turn       -> {:?}",
        merged.collect_all().await
    );

    // MPMC: merge the producers, then share the work among consumers.
    let merged = weir::merge([producer("m", 4), producer("n", 4), producer("o", 4)])?;
    let outs = weir::distribute(merged, 2)?;
    let mut parts = Vec::new();
    for out in outs {
        parts.push(tokio::spawn(consume(out)));
    }
    let mut total = 0;
    for (i, p) in parts.into_iter().enumerate() {
        let part = p.await?;
        total += part.len();
        println!("MPMC  merge+distribute consumer {i} -> {part:?}");
    }
    println!("MPMC  {total} items, each handled once");
    Ok(())
}
