//! Graceful shutdown with `weir::Shutdown`.
//!
//! A small "service" runs four tasks: an accept loop, a metrics flusher, a
//! cache writer that needs 300ms to persist its state, and a legacy sync job
//! that ignores its token. A real service would wait for ctrl-c or SIGTERM
//! with `shutdown.on_signal().await`; this demo listens for them too, but
//! cancels the root token itself after 1s so that it ends on its own. The
//! grace period is 1s: the stubborn task is aborted and named in the report.
//!
//! The runtime's clock is paused, so the simulated time takes no time.
//! Run with `cargo run --example graceful_shutdown`.

use std::time::Duration;

use weir::shutdown::{Shutdown, Trigger};

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> anyhow::Result<()> {
    let start = tokio::time::Instant::now();
    let shutdown = Shutdown::new();

    shutdown.spawn("accept-loop", |token| async move {
        let mut accepted = 0u32;
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(150)) => accepted += 1,
            }
        }
        println!("   accept-loop: stopped accepting after {accepted} connections");
    });

    shutdown.spawn("metrics", |token| async move {
        let mut interval = tokio::time::interval(Duration::from_millis(400));
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                _ = interval.tick() => {}
            }
        }
        println!("   metrics: final flush");
        anyhow::Ok(())
    });

    shutdown.spawn("cache-writer", |token| async move {
        token.cancelled().await;
        tokio::time::sleep(Duration::from_millis(300)).await; // persist
        println!("   cache-writer: state persisted");
        anyhow::Ok(())
    });

    shutdown.spawn("legacy-sync", |_token| async move {
        // Never looks at its token.
        for _round in 0u64.. {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });

    println!("running: {:?}", shutdown.running());
    let trigger = tokio::select! {
        trigger = shutdown.on_signal() => trigger,
        () = tokio::time::sleep(Duration::from_secs(1)) => {
            println!("{:>6?}  demo: no signal needed, cancelling the root token", start.elapsed());
            shutdown.token().cancel();
            Trigger::Cancelled
        }
    };
    println!(
        "{:>6?}  shutdown triggered by {trigger:?}, grace 1s",
        start.elapsed()
    );

    let report = shutdown.shutdown(Duration::from_secs(1)).await;
    println!("{:>6?}  {report}", start.elapsed());
    println!("   finished: {:?}", report.finished);
    println!("   failed:   {:?}", report.failed);
    println!("   aborted:  {:?}", report.aborted);
    let alive = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    println!("   tasks still alive: {alive}");
    anyhow::ensure!(report.aborted == ["legacy-sync"] && alive == 0);
    Ok(())
}
