//! The quit handshake with `weir::spawn_worker`.
//!
//! Go's version: `quit <- "Bye!"` tells the boring goroutine to stop, and
//! `<-quit` waits for its reply after it has cleaned up. In weir the worker
//! gets a `Context`, and `stop().await` cancels it and returns the goodbye
//! the worker returned after its cleanup.
//!
//! A second worker ignores its context: `shutdown(grace)` gives it 500ms,
//! then aborts it and says so.
//!
//! The runtime's clock is paused, so the simulated time takes no time.
//! Run with `cargo run --example quit`.

use std::time::Duration;

use tokio::sync::mpsc;
use weir::{WorkerBuilder, WorkerError, spawn_worker};

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> anyhow::Result<()> {
    println!("== Joe talks until told to quit, then says goodbye");
    let (tx, mut messages) = mpsc::channel(1);
    let joe = spawn_worker(move |quit| async move {
        let mut said = 0u32;
        loop {
            tokio::select! {
                () = quit.cancelled() => break,
                sent = tx.send(format!("Joe {said}")) => {
                    if sent.is_err() {
                        break;
                    }
                    said += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        // Cleanup before saying goodbye: flush, close, release.
        tokio::time::sleep(Duration::from_millis(50)).await;
        anyhow::Ok(format!("See you! (said {said} things, cleaned up)"))
    });
    for _ in 0..4 {
        if let Some(msg) = messages.recv().await {
            println!("   {msg}");
        }
    }
    println!("   main: Bye!");
    let goodbye = joe.stop().await?;
    println!("   Joe says: {goodbye:?}");

    println!("== a stubborn worker that ignores its context");
    let stubborn = WorkerBuilder::new("stubborn").spawn(|_quit| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        anyhow::Ok("never said")
    });
    let start = tokio::time::Instant::now();
    match stubborn.shutdown(Duration::from_millis(500)).await {
        Err(err @ WorkerError::TimedOut { .. }) => {
            println!("   after {:?}: {err}", start.elapsed());
        }
        other => anyhow::bail!("expected a timeout, got {other:?}"),
    }
    let alive = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    println!("   tasks still alive: {alive}");
    anyhow::ensure!(alive == 0);
    Ok(())
}
