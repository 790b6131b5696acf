//! `Shutdown::on_signal` with a real SIGTERM.
//!
//! This file is its own test binary, so its own process: the SIGTERM it sends
//! to itself can reach no other test. The signal is sent only after
//! `on_signal` has installed tokio's handler, so the default action (exit)
//! never runs. Real time is used (signals arrive through the I/O driver,
//! which a paused clock does not drive); the timeout only guards against a
//! hang, nothing is asserted about speed.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use weir_core::{Shutdown, ShutdownTrigger};

#[tokio::test(flavor = "current_thread")]
async fn sigterm_starts_the_shutdown() {
    let shutdown = Shutdown::new();
    shutdown
        .spawn("server", |ctx| async move {
            ctx.cancelled().await;
        })
        .unwrap();
    let listener = shutdown.clone();
    let waiting = tokio::spawn(async move { listener.on_signal().await });
    // Let `on_signal` run up to its first await: the handlers are installed.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished());

    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let trigger = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("SIGTERM was not seen within 30s")
        .unwrap();
    assert_eq!(trigger, ShutdownTrigger::Terminate);
    assert!(shutdown.is_shutting_down());
    let report = shutdown.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!(report.finished, 1);
    // The signal is the cause the report gives.
    assert_eq!(
        report.cause.unwrap().downcast_ref::<ShutdownTrigger>(),
        Some(&ShutdownTrigger::Terminate)
    );
}
