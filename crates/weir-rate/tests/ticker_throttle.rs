//! Ticker (missed-tick behaviours) and the stream throttle.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::time::Instant;
use weir_rate::{MissedTick, Rate, RateLimiter, ThrottleExt, Ticker, throttle};

const MS: Duration = Duration::from_millis(1);

/// Ticks after a 350 ms stall of a 100 ms ticker, as offsets from start.
async fn after_stall(behavior: MissedTick) -> Vec<Duration> {
    let start = Instant::now();
    let mut ticker = Ticker::new(MS * 100).unwrap().missed_tick(behavior);
    assert_eq!(ticker.missed_tick_behavior(), behavior);
    ticker.tick().await; // at 100
    tokio::time::sleep(MS * 350).await; // now 450: ticks at 200, 300, 400 missed
    let mut seen = Vec::new();
    for _ in 0..4 {
        ticker.tick().await;
        seen.push(start.elapsed());
    }
    seen
}

#[tokio::test(start_paused = true)]
async fn first_tick_after_one_period_then_steady() {
    let start = Instant::now();
    let mut ticker = Ticker::new(MS * 250).unwrap();
    assert_eq!(ticker.period(), MS * 250);
    assert_eq!(
        ticker.missed_tick_behavior(),
        MissedTick::Delay,
        "the default"
    );
    for i in 1..=4 {
        let at = ticker.tick().await;
        assert_eq!(at - start, MS * 250 * i);
        assert_eq!(start.elapsed(), MS * 250 * i);
    }
    ticker.reset();
    ticker.tick().await;
    assert_eq!(start.elapsed(), MS * 1250);
}

#[tokio::test(start_paused = true)]
async fn missed_ticks_delay() {
    // The late tick fires at once, then every period from it.
    assert_eq!(
        after_stall(MissedTick::Delay).await,
        vec![MS * 450, MS * 550, MS * 650, MS * 750]
    );
}

#[tokio::test(start_paused = true)]
async fn missed_ticks_burst() {
    // All three missed ticks at once, then back on the original schedule.
    assert_eq!(
        after_stall(MissedTick::Burst).await,
        vec![MS * 450, MS * 450, MS * 450, MS * 500]
    );
}

#[tokio::test(start_paused = true)]
async fn missed_ticks_skip() {
    // One tick at once, then the next multiple of the period.
    assert_eq!(
        after_stall(MissedTick::Skip).await,
        vec![MS * 450, MS * 500, MS * 600, MS * 700]
    );
}

#[tokio::test(start_paused = true)]
async fn ticker_is_a_stream() {
    let start = Instant::now();
    let ticks: Vec<_> = Ticker::new(MS * 10).unwrap().take(3).collect().await;
    assert_eq!(
        ticks,
        vec![start + MS * 10, start + MS * 20, start + MS * 30]
    );
}

#[tokio::test(start_paused = true)]
async fn zero_period_is_an_error() {
    let err = Ticker::new(Duration::ZERO).unwrap_err();
    assert!(err.is_zero());
    assert_eq!(err.to_string(), "ticker: period must be at least 1 (got 0)");
}

#[test]
fn outside_a_runtime_is_an_error_not_a_panic() {
    let err = Ticker::new(MS).unwrap_err();
    assert_eq!(err.problem(), &weir_context::Problem::NoRuntime);
    assert_eq!(err.construct(), "ticker");
}

#[tokio::test(start_paused = true)]
async fn throttle_paces_a_stream() {
    let lim = RateLimiter::new(Rate::per_second(10).burst(2)).unwrap();
    let start = Instant::now();
    let mut times = Vec::new();
    let mut s = futures::stream::iter(0..6).throttle(&lim);
    assert_eq!(Stream::size_hint(&s), (6, Some(6)));
    while let Some(i) = s.next().await {
        times.push((i, start.elapsed()));
    }
    let want: Vec<_> = [0, 0, 100, 200, 300, 400]
        .iter()
        .enumerate()
        .map(|(i, ms)| (i, MS * *ms))
        .collect();
    assert_eq!(times, want);
    assert_eq!(Stream::size_hint(&s), (0, Some(0)));
    // The stream ended without taking a token for a seventh item.
    tokio::time::advance(MS * 100).await;
    assert_eq!(lim.available(), 1);
}

#[tokio::test(start_paused = true)]
async fn throttled_streams_share_the_limiter() {
    let lim = RateLimiter::new(Rate::per_second(10)).unwrap();
    let start = Instant::now();
    let a = throttle(futures::stream::iter(0..5), &lim);
    let b = throttle(futures::stream::iter(5..10), &lim);
    let all: Vec<_> = futures::stream::select(a, b).collect().await;
    assert_eq!(all.len(), 10);
    assert_eq!(start.elapsed(), MS * 900, "10 items at 10/s together");
}

#[tokio::test(start_paused = true)]
async fn dropped_throttle_gives_its_token_back() {
    let lim = RateLimiter::new(Rate::per_second(10).burst(1)).unwrap();
    let mut s = throttle(futures::stream::iter(0..3), &lim);
    assert_eq!(s.next().await, Some(0));
    // The second item waits for a token; drop the stream meanwhile.
    assert!(tokio::time::timeout(MS * 50, s.next()).await.is_err());
    assert!(format!("{s:?}").contains("waiting: true"));
    drop(s);
    tokio::time::advance(MS * 50).await;
    assert_eq!(lim.available(), 1, "the dropped wait took nothing");
}

#[tokio::test(start_paused = true)]
async fn throttle_on_a_spent_zero_rate_ends_instead_of_hanging() {
    let lim = RateLimiter::new(Rate::zero().burst(2)).unwrap();
    let got: Vec<_> = throttle(futures::stream::iter(0..5), &lim).collect().await;
    assert_eq!(got, vec![0, 1]);
}
