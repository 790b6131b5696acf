//! Timeouts: per message, per call, and for a whole conversation.
//!
//! Go's select-with-timeout comes in two shapes: `time.After(d)` inside the
//! loop bounds each message; one `timeout := time.After(d)` outside the loop
//! bounds the whole conversation. weir has both: `recv_timeout(&mut rx, d)`
//! and a `Context` with a deadline (`Context::background().with_timeout(d)`),
//! plus `with_timeout(fut, d)` for one call.
//!
//! The runtime's clock is paused, so the simulated seconds take no time.
//! Run with `cargo run --example select_timeout`.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use weir::{Cause, Context, RecvTimeoutError, recv_timeout, with_timeout};

/// A talker that sends a message after a pause of `pauses[i]` ms each.
fn talker(name: &'static str, pauses: Vec<u64>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        for (i, pause) in pauses.into_iter().enumerate() {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            if tx
                .send(format!("{name} {i} (after {pause}ms)"))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    rx
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> anyhow::Result<()> {
    let start = Instant::now();

    println!("== per message: each message must come within 800ms");
    let mut rx = talker("Joe", vec![200, 500, 1000, 300]);
    loop {
        match recv_timeout(&mut rx, Duration::from_millis(800)).await {
            Ok(msg) => println!("   {:>6?}  {msg}", start.elapsed()),
            Err(err @ RecvTimeoutError::Timeout(_)) => {
                println!("   {:>6?}  {err}: you're too slow", start.elapsed());
                break;
            }
            Err(RecvTimeoutError::Closed) => {
                println!("   {:>6?}  Joe is done", start.elapsed());
                break;
            }
        }
    }

    println!("== whole conversation: every message is quick, but it all must end within 2s");
    let start = Instant::now();
    let pauses: Vec<u64> = [150, 350, 250, 300, 200, 400, 300, 250, 300, 200].repeat(2);
    let mut rx = talker("Ann", pauses);
    let conversation = Context::background().with_timeout(Duration::from_secs(2));
    let mut heard = 0;
    loop {
        // `run` races the receive against the conversation's deadline.
        match conversation
            .run(recv_timeout(&mut rx, Duration::from_millis(800)))
            .await
        {
            Ok(Ok(msg)) => {
                heard += 1;
                println!("   {:>6?}  {msg}", start.elapsed());
            }
            Ok(Err(err)) => {
                println!("   {err}");
                break;
            }
            Err(stopped) => {
                println!(
                    "   {:>6?}  the conversation's 2s are up after {heard} messages ({})",
                    start.elapsed(),
                    stopped.cause()
                );
                anyhow::ensure!(stopped.cause() == &Cause::DeadlineExceeded);
                break;
            }
        }
    }

    println!("== one call: a lookup that must answer within 300ms");
    for latency in [100, 1000] {
        let lookup = async move {
            tokio::time::sleep(Duration::from_millis(latency)).await;
            "93.184.216.34"
        };
        match with_timeout(lookup, Duration::from_millis(300)).await {
            Ok(addr) => println!("   latency {latency}ms: answer {addr}"),
            Err(elapsed) => println!("   latency {latency}ms: {elapsed} (the lookup was dropped)"),
        }
    }
    Ok(())
}
