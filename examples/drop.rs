//! The drop pattern with `weir::Shedder`: a producer that must never block.
//!
//! A "DNS server" receives a request every millisecond and must keep
//! reading its socket, whatever the handler does. The handler needs 10ms per
//! request. With a bounded channel and `send().await` the server would stall;
//! with `Shedder::offer` it never waits: when the queue is full, a request is
//! shed, counted and handed back (here: answered with SERVFAIL at once).
//!
//! Run 1 uses `DropNewest` (serve in arrival order, refuse newcomers);
//! run 2 uses `DropOldest` (serve the freshest requests, evict stale ones).
//! The runtime's clock is paused, so the simulated second takes no time.
//!
//! Run with `cargo run --example drop`.

use std::time::Duration;

use weir::{Offer, ShedPolicy, Shedder};

const REQUESTS: u32 = 200;

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> anyhow::Result<()> {
    for policy in [ShedPolicy::DropNewest, ShedPolicy::DropOldest] {
        run(policy).await?;
    }
    Ok(())
}

async fn run(policy: ShedPolicy) -> anyhow::Result<()> {
    println!(
        "== {policy:?}: {REQUESTS} requests, one per 1ms; the handler needs 10ms each; queue of 5"
    );
    let (requests, mut queue) = Shedder::named("dns", 5, policy)?;

    // The slow consumer: handles one request per 10ms until the server stops.
    let handler = tokio::spawn(async move {
        let mut handled = Vec::new();
        while let Some(id) = queue.recv().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
            handled.push(id);
        }
        handled
    });

    // The fast producer: never awaits the consumer.
    let mut refused = Vec::new();
    let mut evicted = Vec::new();
    for id in 0..REQUESTS {
        tokio::time::sleep(Duration::from_millis(1)).await;
        match requests.offer(id) {
            Offer::Sent => {}
            Offer::Dropped(id) => refused.push(id), // answer SERVFAIL for `id`
            Offer::Evicted(old) => evicted.push(old), // answer SERVFAIL for `old`
            Offer::Closed(_) => anyhow::bail!("the handler stopped early"),
        }
    }
    let dropped = requests.dropped();
    drop(requests); // the handler drains the queue, then stops
    let handled = handler.await?;

    println!(
        "   handled: {:>3}  e.g. {:?}",
        handled.len(),
        &handled[..handled.len().min(8)]
    );
    println!(
        "   refused: {:>3}  e.g. {:?}",
        refused.len(),
        &refused[..refused.len().min(8)]
    );
    println!(
        "   evicted: {:>3}  e.g. {:?}",
        evicted.len(),
        &evicted[..evicted.len().min(8)]
    );
    println!("   dropped() counter: {dropped}");
    let accounted = handled.len() + refused.len() + evicted.len();
    println!(
        "   handled + refused + evicted = {accounted} of {REQUESTS} requests: nothing lost silently"
    );
    anyhow::ensure!(accounted == REQUESTS as usize);
    anyhow::ensure!(dropped == (refused.len() + evicted.len()) as u64);
    println!(
        "   last request handled: #{}",
        handled.last().copied().unwrap_or_default()
    );
    Ok(())
}
