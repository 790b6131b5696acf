//! `Shutdown` under a `Context`: the report says why the shutdown started,
//! and the coordinator never cancels the context it was given.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_core::{Cause, Context, Shutdown, ShutdownTrigger};

fn waiter(s: &Shutdown) {
    s.spawn("worker", |ctx| async move { ctx.cancelled().await })
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_report_carries_the_cause() {
    // Plain shutdown(): Cancelled.
    let s = Shutdown::new();
    waiter(&s);
    let report = s.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!(report.cause, Some(Cause::Cancelled));
    assert_eq!(report.finished, 1);

    // A cause given through the root context: the first cause wins.
    let s = Shutdown::new();
    waiter(&s);
    s.context().cancel_with("config reloaded");
    let report = s.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!(report.cause.unwrap().to_string(), "config reloaded");

    // A signal is kept as itself.
    let s = Shutdown::new();
    s.context().cancel_with(ShutdownTrigger::Terminate);
    let report = s.shutdown(Duration::from_secs(1)).await.unwrap();
    let cause = report.cause.unwrap();
    assert_eq!(
        cause.downcast_ref::<ShutdownTrigger>(),
        Some(&ShutdownTrigger::Terminate)
    );
    assert_eq!(cause.to_string(), "received SIGTERM");
}

#[tokio::test(start_paused = true)]
async fn a_parent_deadline_starts_the_shutdown_without_cancelling_the_parent() {
    let start = Instant::now();
    let service = Context::background();
    let run_for = service.with_timeout(Duration::from_secs(5));
    let s = Shutdown::builder().context(&run_for).build();
    waiter(&s);
    assert_eq!(s.on_signal().await, ShutdownTrigger::Cancelled);
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    let report = s.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!(report.cause, Some(Cause::DeadlineExceeded));
    assert!(report.is_clean());
    assert!(!service.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn the_shutdown_never_cancels_the_context_it_was_given() {
    let parent = Context::background();
    let s = Shutdown::builder().context(parent.clone()).build();
    waiter(&s);
    s.shutdown(Duration::from_secs(1)).await.unwrap();
    drop(s);
    assert!(!parent.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn a_cancellation_token_converts() {
    let parent = CancellationToken::new();
    let s = Shutdown::builder().context(parent.child_token()).build();
    waiter(&s);
    parent.cancel();
    assert_eq!(s.on_signal().await, ShutdownTrigger::Cancelled);
    let report = s.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!(report.finished, 1);
    assert_eq!(report.cause, Some(Cause::Cancelled));
}
