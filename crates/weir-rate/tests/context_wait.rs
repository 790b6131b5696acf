//! `acquire_n_within(ctx, n)`: Go's `WaitN(ctx, n)` — fail at once when the
//! tokens would come after the deadline, stop with the cause when the
//! context ends first, and take nothing in either case.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::time::{Instant, sleep};
use weir_context::{Cause, Context};
use weir_rate::{Rate, RateLimiter, WaitError};

fn ten_per_second() -> RateLimiter {
    // One token every 100ms, burst 1.
    RateLimiter::new(Rate::per_second(10)).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_deadline_too_soon_fails_at_once_and_takes_nothing() {
    let limiter = ten_per_second();
    limiter.try_acquire().unwrap();
    let start = Instant::now();
    let ctx = Context::background().with_timeout(Duration::from_millis(50));
    let err = limiter.acquire_within(&ctx).await.unwrap_err();
    assert_eq!(err, WaitError::WouldExceedDeadline { requested: 1 });
    assert_eq!(start.elapsed(), Duration::ZERO, "it did not wait");
    // Nothing was taken: the next token is still due at 100ms.
    sleep(Duration::from_millis(100)).await;
    limiter.try_acquire().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_deadline_late_enough_waits_for_the_token() {
    let limiter = ten_per_second();
    limiter.try_acquire().unwrap();
    let start = Instant::now();
    let ctx = Context::background().with_timeout(Duration::from_millis(150));
    limiter.acquire_within(&ctx).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn a_cancel_while_waiting_stops_with_its_cause_and_gives_the_tokens_back() {
    let limiter = ten_per_second();
    limiter.try_acquire().unwrap();
    let ctx = Context::background();
    let canceller = ctx.clone();
    tokio::spawn(async move {
        sleep(Duration::from_millis(30)).await;
        canceller.cancel_with("client went away");
    });
    let start = Instant::now();
    let err = limiter.acquire_within(&ctx).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(30));
    match err {
        WaitError::Stopped(cause) => assert_eq!(cause.to_string(), "client went away"),
        other => panic!("unexpected {other:?}"),
    }
    // The reservation was given back: the token due at 100ms is free.
    sleep(Duration::from_millis(70)).await;
    limiter.try_acquire().unwrap();
}

#[tokio::test(start_paused = true)]
async fn too_many_tokens_or_a_cancelled_context_fail_at_once() {
    let limiter = ten_per_second();
    let ctx = Context::background();
    let err = limiter.acquire_n_within(&ctx, 2).await.unwrap_err();
    assert!(matches!(err, WaitError::InsufficientCapacity(_)));
    ctx.cancel();
    let err = limiter.acquire_within(&ctx).await.unwrap_err();
    assert_eq!(err, WaitError::Stopped(Cause::Cancelled));
    // A cancelled context took nothing.
    limiter.try_acquire().unwrap();
}
