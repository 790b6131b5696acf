//! Waits with a context: `acquire_n(n).context(ctx)`, Go's `WaitN(ctx, n)`.
//! They fail at once when the tokens would come after the deadline, stop
//! with the cause when the context ends first, and take nothing in either
//! case.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use weir_context::{Cause, Context};
use weir_rate::{KeyedRateLimiter, Rate, RateLimiter, WaitError};

const MS: Duration = Duration::from_millis(1);

fn ten_per_second() -> RateLimiter {
    // One token every 100ms, burst 1.
    RateLimiter::new(Rate::per_second(10)).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_deadline_too_soon_fails_at_once_and_takes_nothing() {
    let limiter = ten_per_second();
    limiter.try_acquire().unwrap();
    let start = Instant::now();
    let ctx = Context::background().with_timeout(MS * 50);
    let err = limiter.acquire().context(&ctx).await.unwrap_err();
    assert_eq!(err, WaitError::WouldExceedDeadline { requested: 1 });
    assert_eq!(
        err.to_string(),
        "rate: waiting for 1 token(s) would exceed the context's deadline"
    );
    assert_eq!(start.elapsed(), Duration::ZERO, "it did not wait");
    assert!(!ctx.is_cancelled(), "the wait never cancels its context");
    // Nothing was taken: the next token is still due at 100ms.
    sleep(MS * 100).await;
    limiter.try_acquire().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_deadline_late_enough_waits_for_the_token() {
    let limiter = ten_per_second();
    limiter.try_acquire().unwrap();
    let start = Instant::now();
    let ctx = Context::background().with_timeout(MS * 150);
    limiter.acquire().context(ctx).await.unwrap();
    assert_eq!(start.elapsed(), MS * 100);
}

#[tokio::test(start_paused = true)]
async fn a_token_due_exactly_at_the_deadline_is_granted() {
    // Go: only a delay *longer* than the time left fails.
    let limiter = ten_per_second();
    limiter.try_acquire().unwrap();
    let start = Instant::now();
    let ctx = Context::background().with_timeout(MS * 100);
    limiter.acquire().context(&ctx).await.unwrap();
    assert_eq!(start.elapsed(), MS * 100);
}

#[tokio::test(start_paused = true)]
async fn a_cancel_while_waiting_stops_with_its_cause_and_gives_the_tokens_back() {
    let limiter = ten_per_second();
    limiter.try_acquire().unwrap();
    let ctx = Context::background();
    let canceller = ctx.clone();
    tokio::spawn(async move {
        sleep(MS * 30).await;
        canceller.cancel_with("client went away");
    });
    let start = Instant::now();
    let err = limiter.acquire().context(&ctx).await.unwrap_err();
    assert_eq!(start.elapsed(), MS * 30);
    match &err {
        WaitError::Stopped(cause) => assert_eq!(cause.to_string(), "client went away"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.to_string(), "rate: wait stopped: client went away");
    // The reservation was given back: the token due at 100ms is free.
    sleep(MS * 70).await;
    limiter.try_acquire().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_deadline_that_passes_in_the_queue_is_deadline_exceeded() {
    let limiter = ten_per_second();
    limiter.try_acquire().unwrap();
    // The head of the line holds the queue until its token, at 100ms.
    let head = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.acquire().await }
    });
    tokio::task::yield_now().await;
    let start = Instant::now();
    let ctx = Context::background().with_timeout(MS * 50);
    let err = limiter.acquire().context(&ctx).await.unwrap_err();
    assert_eq!(err, WaitError::Stopped(Cause::DeadlineExceeded));
    assert_eq!(start.elapsed(), MS * 50);
    head.await.unwrap().unwrap();
    assert_eq!(start.elapsed(), MS * 100);
    // The stopped waiter never reserved: the next token is at 200ms.
    sleep(MS * 100).await;
    limiter.try_acquire().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_deadline_that_passed_before_its_timer_fired_is_deadline_exceeded() {
    // `with_timeout(ZERO)`: the deadline is now, its timer has not run.
    let limiter = ten_per_second();
    let ctx = Context::background().with_timeout(Duration::ZERO);
    assert!(!ctx.is_cancelled());
    let err = limiter.acquire().context(&ctx).await.unwrap_err();
    assert_eq!(err, WaitError::Stopped(Cause::DeadlineExceeded));
    assert_eq!(limiter.available(), 1, "took nothing, though it was there");
}

#[tokio::test(start_paused = true)]
async fn too_many_tokens_or_a_cancelled_context_fail_at_once() {
    let limiter = ten_per_second();
    let ctx = Context::background();
    let err = limiter.acquire_n(2).context(&ctx).await.unwrap_err();
    assert!(matches!(err, WaitError::InsufficientCapacity(_)));
    ctx.cancel();
    let err = limiter.acquire().context(&ctx).await.unwrap_err();
    assert_eq!(err, WaitError::Stopped(Cause::Cancelled));
    let err = limiter.acquire_n(0).context(&ctx).await.unwrap_err();
    assert_eq!(err, WaitError::Stopped(Cause::Cancelled), "n = 0 too");
    // A cancelled context took nothing.
    limiter.try_acquire().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_spent_zero_rate_is_insufficient_capacity_even_with_a_deadline() {
    let limiter = RateLimiter::new(Rate::zero().burst(1)).unwrap();
    limiter.try_acquire().unwrap();
    let ctx = Context::background().with_timeout(Duration::from_secs(1));
    let start = Instant::now();
    let err = limiter.acquire().context(&ctx).await.unwrap_err();
    let WaitError::InsufficientCapacity(err) = err else {
        panic!("{err:?}");
    };
    assert!(err.to_string().contains("rate zero"), "{err}");
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_token_or_an_endless_timeout_converts() {
    let limiter = ten_per_second();
    limiter.try_acquire().unwrap();
    let token = CancellationToken::new();
    let wait = tokio::spawn({
        let (limiter, token) = (limiter.clone(), token.clone());
        async move { limiter.acquire().context(token).await }
    });
    tokio::task::yield_now().await;
    token.cancel();
    assert_eq!(
        wait.await.unwrap().unwrap_err(),
        WaitError::Stopped(Cause::Cancelled)
    );
    // A timeout beyond the clock's range is no deadline: it just waits.
    let start = Instant::now();
    let endless = Context::background().with_timeout(Duration::MAX);
    assert_eq!(endless.deadline(), None);
    limiter.acquire().context(&endless).await.unwrap();
    assert_eq!(start.elapsed(), MS * 100);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_wait_with_a_context_takes_nothing_and_cancels_nothing() {
    let limiter = RateLimiter::new(Rate::per_second(10).burst(3)).unwrap();
    limiter.try_acquire_n(3).unwrap();
    let ctx = Context::background().with_timeout(Duration::from_secs(10));
    let wait = limiter.acquire_n(3).context(&ctx);
    assert!(tokio::time::timeout(MS * 100, wait).await.is_err());
    assert!(!ctx.is_cancelled());
    // 1 token refilled, as if the wait had never been.
    assert_eq!(limiter.available(), 1);
    tokio::time::advance(MS * 200).await;
    assert_eq!(limiter.available(), 3);
}

#[tokio::test(start_paused = true)]
async fn waiters_with_contexts_keep_their_order() {
    let limiter = RateLimiter::new(Rate::per_second(10).burst(2)).unwrap();
    limiter.try_acquire_n(2).unwrap();
    let ctx = Context::background().with_timeout(Duration::from_secs(1));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, n) in [(0u32, 2u32), (1, 1), (2, 2), (3, 1)] {
        let (limiter, ctx) = (limiter.clone(), ctx.clone());
        tasks.spawn(async move {
            limiter.acquire_n(n).context(ctx).await.unwrap();
            (start.elapsed(), i)
        });
        tokio::task::yield_now().await;
    }
    let mut done = tasks.join_all().await;
    done.sort();
    let order: Vec<_> = done.iter().map(|(_, i)| *i).collect();
    assert_eq!(order, [0, 1, 2, 3]);
    let at: Vec<_> = done.iter().map(|(at, _)| *at).collect();
    assert_eq!(at, [MS * 200, MS * 300, MS * 500, MS * 600]);
}

#[tokio::test(start_paused = true)]
async fn keyed_waits_take_a_context_the_same_way() {
    let keyed = KeyedRateLimiter::new(Rate::per_second(10)).unwrap();
    keyed.try_acquire(&"a").unwrap();
    let hurried = Context::background().with_timeout(MS * 50);
    assert_eq!(
        keyed.acquire(&"a").context(&hurried).await.unwrap_err(),
        WaitError::WouldExceedDeadline { requested: 1 }
    );
    let cancelled = Context::background();
    cancelled.cancel();
    assert_eq!(
        keyed
            .acquire_n(&"a", 1)
            .context(&cancelled)
            .await
            .unwrap_err(),
        WaitError::Stopped(Cause::Cancelled)
    );
    keyed.acquire(&"b").context(&hurried).await.unwrap();
    let start = Instant::now();
    let patient = Context::background().with_timeout(MS * 100);
    keyed.acquire(&"a").context(patient).await.unwrap();
    assert_eq!(start.elapsed(), MS * 100);
}
