//! Graceful shutdown with `weir::Shutdown`.
//!
//! A small "service" runs four tasks: an accept loop, a metrics flusher, a
//! cache writer that needs 300ms to persist its state, and a legacy sync job
//! that ignores its context. A real service would wait for ctrl-c or SIGTERM
//! with `shutdown.on_signal().await`; this demo listens for them too, but
//! cancels the root context itself after 1s so that it ends on its own. The
//! grace period is 1s: the stubborn task is aborted and named in the report.
//!
//! The runtime's clock is paused, so the simulated time takes no time.
//! Run with `cargo run --example graceful_shutdown`.

use std::time::Duration;

use weir::{GraceExpired, Shutdown, ShutdownTrigger, TaskFailure};

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> anyhow::Result<()> {
    let start = tokio::time::Instant::now();
    let shutdown = Shutdown::new();

    shutdown.spawn("accept-loop", |ctx| async move {
        let mut accepted = 0u32;
        loop {
            tokio::select! {
                () = ctx.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(150)) => accepted += 1,
            }
        }
        println!("   accept-loop: stopped accepting after {accepted} connections");
    })?;

    shutdown.spawn("metrics", |ctx| async move {
        let mut interval = tokio::time::interval(Duration::from_millis(400));
        loop {
            tokio::select! {
                () = ctx.cancelled() => break,
                _ = interval.tick() => {}
            }
        }
        println!("   metrics: final flush");
        anyhow::Ok(())
    })?;

    shutdown.spawn("cache-writer", |ctx| async move {
        ctx.cancelled().await;
        tokio::time::sleep(Duration::from_millis(300)).await; // persist
        println!("   cache-writer: state persisted");
        anyhow::Ok(())
    })?;

    shutdown.spawn("legacy-sync", |_ctx| async move {
        // Never looks at its context.
        for _round in 0u64.. {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })?;

    println!("running: {:?}", shutdown.running());
    let trigger = tokio::select! {
        trigger = shutdown.on_signal() => trigger,
        () = tokio::time::sleep(Duration::from_secs(1)) => {
            println!("{:>6?}  demo: no signal needed, cancelling the root context", start.elapsed());
            shutdown.context().cancel_with("demo over");
            ShutdownTrigger::Cancelled
        }
    };
    println!(
        "{:>6?}  shutdown started ({trigger}), grace 1s",
        start.elapsed()
    );

    // Ok when every task ended well; here the legacy task has to be aborted,
    // so the error names it and carries the report.
    let report = match shutdown.shutdown(Duration::from_secs(1)).await {
        Ok(report) => report,
        Err(err) => {
            println!("{:>6?}  not clean: {err}", start.elapsed());
            err.into_report()
        }
    };
    println!("{report}");
    let alive = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    println!("   tasks still alive: {alive}");
    let aborted_by_grace = report.failures.iter().any(|f| {
        matches!(f, TaskFailure::Aborted { task, cause }
            if &**task == "legacy-sync" && cause.downcast_ref::<GraceExpired>().is_some())
    });
    anyhow::ensure!(report.aborted == 1 && report.finished == 3 && aborted_by_grace && alive == 0);
    Ok(())
}
