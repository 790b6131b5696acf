//! `Shutdown` under a `Context`: the report says why the shutdown started.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::time::Instant;
use weir_core::{Cause, Context, Shutdown};

#[tokio::test(start_paused = true)]
async fn the_report_carries_the_cause() {
    // Plain shutdown(): Cancelled.
    let s = Shutdown::new();
    s.spawn("worker", |token| async move { token.cancelled().await });
    let report = s.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.cause, Some(Cause::Cancelled));
    assert_eq!(report.finished, ["worker"]);

    // A cause given through the root context.
    let s = Shutdown::new();
    s.spawn("worker", |token| async move { token.cancelled().await });
    s.context().cancel_with("config reloaded");
    let report = s.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.cause.unwrap().to_string(), "config reloaded");
}

#[tokio::test(start_paused = true)]
async fn a_parent_deadline_starts_the_shutdown_without_cancelling_the_parent() {
    let start = Instant::now();
    let service = Context::background();
    let run_for = service.with_timeout(Duration::from_secs(5));
    let s = Shutdown::with_context(&run_for);
    s.spawn("loop", |token| async move { token.cancelled().await });
    s.context().cancelled().await;
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    let report = s.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.cause, Some(Cause::DeadlineExceeded));
    assert!(report.is_clean());
    assert!(!service.is_cancelled());
}
