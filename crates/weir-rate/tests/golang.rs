//! The scenarios of Go's `golang.org/x/time/rate` tests (`rate_test.go`
//! and `sometimes_test.go`), ported to weir-rate on tokio's paused clock.
//!
//! Go passes explicit instants (`AllowN(t, n)`); here the paused clock is
//! advanced to each instant instead, so time only moves forward: Go's
//! "jump backwards" cases have no equivalent and are left out
//! (`TestLimiterJumpBackwards`, `TestReserveJumpBack*`), and
//! `TestReserveSetBurst`'s last request is made at t3 instead of t0.
//! A burst of 0 is rejected here (Go's `TestZeroBurst` limiter denies every
//! request), and a zero rate is spelled `Rate::zero()`.
//!
//! `Sometimes`: Go's examples print what ran and check the output; here the
//! calls that ran are collected and compared. `time.Sleep` is a paused-clock
//! advance. Go's `TestSometimesNegative` (a negative interval, which Go
//! treats as unset) has no equivalent: a `Duration` is never negative, and
//! `Duration::ZERO` is the unset interval (`TestSometimesZero`).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use weir_rate::{Rate, RateLimiter, Reservation, Sometimes};

/// Go's `d`.
const D: Duration = Duration::from_millis(100);

/// The test's clock: `t(k)` is `t0 + k·d`.
struct Clock {
    t0: Instant,
}

impl Clock {
    fn new() -> Self {
        Clock { t0: Instant::now() }
    }

    fn t(&self, k: u32) -> Instant {
        self.t0 + D * k
    }

    /// Moves the paused clock forward to `t(k)`.
    async fn at(&self, k: u32) {
        let target = self.t(k);
        let now = Instant::now();
        assert!(target >= now, "time only moves forward");
        if target > now {
            tokio::time::advance(target - now).await;
        }
    }
}

fn limiter(per_second: u32, burst: u32) -> RateLimiter {
    RateLimiter::new(Rate::per_second(per_second).burst(burst)).unwrap()
}

/// Go's `run`: `(t, tokens before, n, ok)` rows.
async fn run(clock: &Clock, lim: &RateLimiter, rows: &[(u32, u32, u32, bool)]) {
    for (i, &(t, toks, n, ok)) in rows.iter().enumerate() {
        clock.at(t).await;
        assert_eq!(lim.available(), toks, "step {i}: tokens at t{t}");
        assert_eq!(
            lim.try_acquire_n(n).is_ok(),
            ok,
            "step {i}: AllowN(t{t}, {n})"
        );
    }
}

/// Go's `runReserve`: reserves `n` at `t(t)`, expects `ok` and, if ok, the
/// tokens ready at `t(act)`.
async fn reserve(
    clock: &Clock,
    lim: &RateLimiter,
    t: u32,
    n: u32,
    act: u32,
    ok: bool,
) -> Reservation {
    reserve_max(clock, lim, t, n, act, ok, None).await
}

async fn reserve_max(
    clock: &Clock,
    lim: &RateLimiter,
    t: u32,
    n: u32,
    act: u32,
    ok: bool,
    max: Option<Duration>,
) -> Reservation {
    clock.at(t).await;
    let r = match max {
        Some(max) => lim.reserve_n_within(n, max),
        None => lim.reserve_n(n),
    };
    assert_eq!(r.ok(), ok, "reserveN(t{t}, {n}) ok");
    if ok {
        assert_eq!(
            r.ready_at(),
            Some(clock.t(act)),
            "reserveN(t{t}, {n}) time to act"
        );
    }
    r
}

#[tokio::test(start_paused = true)]
async fn limiter_burst_1() {
    let c = Clock::new();
    let lim = limiter(10, 1);
    #[rustfmt::skip]
    run(&c, &lim, &[
        (0, 1, 1, true), (0, 0, 1, false), (0, 0, 1, false),
        (1, 1, 1, true), (1, 0, 1, false), (1, 0, 1, false),
        (2, 1, 2, false), // burst size is 1, so n=2 always fails
        (2, 1, 1, true), (2, 0, 1, false),
    ]).await;
}

#[tokio::test(start_paused = true)]
async fn limiter_burst_3() {
    let c = Clock::new();
    let lim = limiter(10, 3);
    #[rustfmt::skip]
    run(&c, &lim, &[
        (0, 3, 2, true), (0, 1, 2, false), (0, 1, 1, true), (0, 0, 1, false),
        (1, 1, 4, false),
        (2, 2, 1, true), (3, 2, 1, true), (4, 2, 1, true), (4, 1, 1, true),
        (4, 0, 1, false), (4, 0, 1, false),
        (9, 3, 3, true), (9, 0, 0, true),
    ]).await;
}

#[tokio::test(start_paused = true)]
async fn limiter_no_truncation_errors() {
    // Go: NewLimiter(0.7692307692307693, 1).Allow() (10 per 13 s).
    let lim = RateLimiter::new(Rate::new(10, Duration::from_secs(13))).unwrap();
    assert!(lim.try_acquire().is_ok());
}

#[test]
fn simultaneous_requests() {
    // A very slowly refilling bucket, 15 racing threads: exactly the burst.
    const BURST: usize = 5;
    let lim = RateLimiter::new(Rate::per_hour(1).burst(BURST as u32)).unwrap();
    let ok = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for _ in 0..15 {
            let (lim, ok) = (lim.clone(), ok.clone());
            s.spawn(move || {
                if lim.try_acquire().is_ok() {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(ok.load(Ordering::Relaxed), BURST);
}

#[tokio::test(start_paused = true)]
async fn long_running_qps() {
    let (limit, burst) = (100u32, 100u32);
    let lim = limiter(limit, burst);
    let start = Instant::now();
    let end = start + Duration::from_secs(5);
    let mut ok = 0u32;
    while Instant::now() < end {
        if lim.try_acquire().is_ok() {
            ok += 1;
        }
        tokio::time::advance(Duration::from_millis(2)).await;
    }
    let ideal = f64::from(burst) + f64::from(limit) * start.elapsed().as_secs_f64();
    // Go's bounds, truncated to integers as Go's `int32(...)` does.
    assert!(ok <= (ideal + 1.0) as u32, "ok = {ok}, ideal {ideal}");
    assert!(ok >= (0.999 * ideal) as u32, "ok = {ok}, ideal {ideal}");
}

#[tokio::test(start_paused = true)]
async fn simple_reserve() {
    let c = Clock::new();
    let lim = limiter(10, 2);
    let _ = reserve(&c, &lim, 0, 2, 0, true).await;
    let _ = reserve(&c, &lim, 0, 2, 2, true).await;
    let _ = reserve(&c, &lim, 3, 2, 4, true).await;
}

#[test]
fn zero_burst_is_rejected() {
    let err = RateLimiter::new(Rate::per_second(10).burst(0)).unwrap_err();
    assert!(err.is_zero());
    assert_eq!(err.to_string(), "rate: burst must be at least 1 (got 0)");
}

#[tokio::test(start_paused = true)]
async fn mix() {
    let c = Clock::new();
    let lim = limiter(10, 2);
    let _ = reserve(&c, &lim, 0, 3, 1, false).await; // n > burst
    let _ = reserve(&c, &lim, 0, 2, 0, true).await;
    run(&c, &lim, &[(1, 1, 2, false)]).await; // not enough tokens
    let _ = reserve(&c, &lim, 1, 2, 2, true).await;
    run(&c, &lim, &[(1, 0, 1, false)]).await; // negative tokens (Go: -1)
    run(&c, &lim, &[(3, 1, 1, true)]).await;
}

#[tokio::test(start_paused = true)]
async fn cancel_invalid() {
    let c = Clock::new();
    let lim = limiter(10, 2);
    let _ = reserve(&c, &lim, 0, 2, 0, true).await;
    let r = reserve(&c, &lim, 0, 3, 3, false).await;
    assert_eq!(r.cancel(), 0); // should have no effect
    let _ = reserve(&c, &lim, 0, 2, 2, true).await; // did not get extra tokens
}

#[tokio::test(start_paused = true)]
async fn cancel_last() {
    let c = Clock::new();
    let lim = limiter(10, 2);
    let _ = reserve(&c, &lim, 0, 2, 0, true).await;
    let r = reserve(&c, &lim, 0, 2, 2, true).await;
    c.at(1).await;
    assert_eq!(r.cancel(), 2); // got 2 tokens back
    let _ = reserve(&c, &lim, 1, 2, 2, true).await;
}

#[tokio::test(start_paused = true)]
async fn cancel_too_late() {
    let c = Clock::new();
    let lim = limiter(10, 2);
    let _ = reserve(&c, &lim, 0, 2, 0, true).await;
    let r = reserve(&c, &lim, 0, 2, 2, true).await;
    c.at(3).await;
    assert_eq!(r.cancel(), 0); // too late to cancel
    let _ = reserve(&c, &lim, 3, 2, 4, true).await;
}

#[tokio::test(start_paused = true)]
async fn cancel_0_tokens() {
    let c = Clock::new();
    let lim = limiter(10, 2);
    let _ = reserve(&c, &lim, 0, 2, 0, true).await;
    let r = reserve(&c, &lim, 0, 1, 1, true).await;
    let _ = reserve(&c, &lim, 0, 1, 2, true).await;
    assert_eq!(r.cancel(), 0); // the later reservation keeps its place
    let _ = reserve(&c, &lim, 0, 1, 3, true).await;
}

#[tokio::test(start_paused = true)]
async fn cancel_1_token() {
    let c = Clock::new();
    let lim = limiter(10, 2);
    let _ = reserve(&c, &lim, 0, 2, 0, true).await;
    let r = reserve(&c, &lim, 0, 2, 2, true).await;
    let _ = reserve(&c, &lim, 0, 1, 3, true).await;
    c.at(2).await;
    assert_eq!(r.cancel(), 1); // got 1 token back
    let _ = reserve(&c, &lim, 2, 2, 4, true).await;
}

#[tokio::test(start_paused = true)]
async fn cancel_multi() {
    let c = Clock::new();
    let lim = limiter(10, 4);
    let _ = reserve(&c, &lim, 0, 4, 0, true).await;
    let ra = reserve(&c, &lim, 0, 3, 3, true).await;
    let _ = reserve(&c, &lim, 0, 1, 4, true).await;
    let rc = reserve(&c, &lim, 0, 1, 5, true).await;
    c.at(1).await;
    assert_eq!(rc.cancel(), 1); // get 1 token back
    assert_eq!(ra.cancel(), 2); // get 2 tokens back, as if C was never reserved
    let _ = reserve(&c, &lim, 1, 3, 5, true).await;
}

#[tokio::test(start_paused = true)]
async fn reserve_set_limit() {
    let c = Clock::new();
    let lim = limiter(5, 2);
    let _ = reserve(&c, &lim, 0, 2, 0, true).await;
    let _ = reserve(&c, &lim, 0, 2, 4, true).await;
    c.at(2).await;
    lim.set_rate(Rate::per_second(10)).unwrap();
    assert_eq!(lim.burst(), 2, "set_rate keeps the burst");
    let _ = reserve(&c, &lim, 2, 1, 4, true).await; // violates Limit and Burst
}

#[tokio::test(start_paused = true)]
async fn reserve_set_burst() {
    let c = Clock::new();
    let lim = limiter(5, 2);
    let _ = reserve(&c, &lim, 0, 2, 0, true).await;
    let _ = reserve(&c, &lim, 0, 2, 4, true).await;
    c.at(3).await;
    lim.set_burst(4).unwrap();
    // Go asks at t0 (a jump back) and gets t9; at t3 the same debt of 4.5
    // tokens at 5/s is 900 ms away.
    let _ = reserve(&c, &lim, 3, 4, 12, true).await;
}

#[tokio::test(start_paused = true)]
async fn reserve_set_limit_cancel() {
    let c = Clock::new();
    let lim = limiter(5, 2);
    let _ = reserve(&c, &lim, 0, 2, 0, true).await;
    let r = reserve(&c, &lim, 0, 2, 4, true).await;
    c.at(2).await;
    lim.set_rate(Rate::per_second(10)).unwrap();
    assert_eq!(r.cancel(), 2); // 2 tokens back, across the rate change
    let _ = reserve(&c, &lim, 2, 2, 3, true).await;
}

#[tokio::test(start_paused = true)]
async fn reserve_with_max() {
    let c = Clock::new();
    let lim = limiter(10, 2);
    let _ = reserve_max(&c, &lim, 0, 2, 0, true, Some(D)).await;
    let _ = reserve_max(&c, &lim, 0, 1, 1, true, Some(D)).await; // close future
    let _ = reserve_max(&c, &lim, 0, 1, 2, false, Some(D)).await; // too far
    // The refused request took nothing.
    let _ = reserve(&c, &lim, 0, 1, 2, true).await;
}

/// Go's `runWait`: `acquire_n(n)` must end with `ok` after `delay` periods.
async fn wait(lim: &RateLimiter, n: u32, delay: u32, ok: bool) {
    let start = Instant::now();
    let res = lim.acquire_n(n).await;
    assert_eq!(res.is_ok(), ok, "WaitN({n}) = {res:?}");
    assert_eq!(start.elapsed(), D * delay, "WaitN({n}) delay");
}

#[tokio::test(start_paused = true)]
async fn wait_simple() {
    let lim = limiter(10, 3);
    // "already-cancelled": a future dropped before it is polled takes nothing.
    drop(lim.acquire_n(1));
    assert_eq!(lim.available(), 3);
    wait(&lim, 4, 0, false).await; // exceed-burst-error, at once
    wait(&lim, 2, 0, true).await; // act-now
    wait(&lim, 3, 2, true).await; // act-later
}

#[tokio::test(start_paused = true)]
async fn wait_cancel() {
    let lim = limiter(10, 3);
    wait(&lim, 2, 0, true).await; // after this, 1 token
    let start = Instant::now();
    // Go cancels the context after d; here the acquire future is dropped.
    let res = tokio::time::timeout(D, lim.acquire_n(3)).await;
    assert!(res.is_err());
    assert_eq!(start.elapsed(), D);
    // It took nothing: 1 + 1 refilled = 2 tokens.
    assert_eq!(lim.available(), 2);
    wait(&lim, 2, 0, true).await; // act-now-after-cancel
}

#[tokio::test(start_paused = true)]
async fn wait_timeout() {
    let lim = limiter(10, 3);
    wait(&lim, 2, 0, true).await;
    // Go fails at once: the wait would pass the deadline. `reserve_n_within`
    // is that check; it takes nothing.
    let r = lim.reserve_n_within(3, D);
    assert!(!r.ok());
    assert_eq!(r.delay(), Duration::MAX);
    assert_eq!(lim.available(), 1);
    // With tokio's timeout the wait runs to the deadline, then takes nothing.
    let start = Instant::now();
    assert!(tokio::time::timeout(D, lim.acquire_n(3)).await.is_err());
    assert_eq!(start.elapsed(), D);
    assert_eq!(lim.available(), 2);
}

#[tokio::test(start_paused = true)]
async fn wait_inf() {
    let lim = RateLimiter::new(Rate::unlimited()).unwrap();
    wait(&lim, 3, 0, true).await; // exceed-burst-no-error
    assert!(lim.try_acquire_n(u32::MAX).is_ok());
    assert_eq!(lim.available(), u32::MAX);
}

#[tokio::test(start_paused = true)]
async fn zero_limit() {
    let lim = RateLimiter::new(Rate::zero().burst(1)).unwrap();
    assert!(lim.try_acquire().is_ok(), "starts full");
    let err = lim.try_acquire().unwrap_err();
    assert_eq!(err.earliest_possible(), None, "never refills");
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(lim.try_acquire().is_err());
    // Waiting would hang forever: an error instead.
    assert!(lim.acquire().await.is_err());
}

#[tokio::test(start_paused = true)]
async fn set_after_zero_limit() {
    let lim = RateLimiter::new(Rate::zero().burst(1)).unwrap();
    assert!(lim.try_acquire().is_ok());
    assert!(lim.try_acquire().is_err());
    tokio::time::advance(Duration::from_secs(10)).await; // nothing refills
    lim.set_rate(Rate::per_second(10)).unwrap();
    // 10/s: the next token in 100 ms.
    wait(&lim, 1, 1, true).await;
}

#[tokio::test(start_paused = true)]
async fn tiny_limit() {
    // The slowest representable rate: one token every 50 years.
    let fifty_years = Duration::from_secs(50 * 365 * 24 * 3600);
    let lim = RateLimiter::new(Rate::every(fifty_years)).unwrap();
    assert!(lim.try_acquire().is_ok());
    let err = lim.try_acquire().unwrap_err();
    assert_eq!(err.wait_time(), Some(fifty_years));
    assert!(
        RateLimiter::new(Rate::every(fifty_years * 100)).is_err(),
        "too slow to represent: an error, not an overflow"
    );
}

/// Calls `s.run` once per label, recording the labels whose call ran.
fn calls(s: &Sometimes, labels: &[&'static str], ran: &mut Vec<&'static str>) {
    for label in labels {
        s.run(|| ran.push(*label));
    }
}

#[test]
fn example_sometimes_once() {
    // The zero value of Sometimes behaves like sync.Once, though less
    // efficiently.
    let s = Sometimes::new();
    let mut ran = Vec::new();
    calls(&s, &["1", "2", "3"], &mut ran);
    assert_eq!(ran, ["1"]);
    assert_eq!(Sometimes::default().run(|| 7), Some(7));
}

#[test]
fn example_sometimes_first() {
    let s = Sometimes::new().first(2);
    let mut ran = Vec::new();
    calls(&s, &["1", "2", "3"], &mut ran);
    assert_eq!(ran, ["1", "2"]);
}

#[test]
fn example_sometimes_every() {
    let s = Sometimes::new().every(2);
    let mut ran = Vec::new();
    calls(&s, &["1", "2", "3"], &mut ran);
    assert_eq!(ran, ["1", "3"]);
}

#[tokio::test(start_paused = true)]
async fn example_sometimes_interval() {
    let s = Sometimes::new().interval(Duration::from_secs(1));
    let mut ran = Vec::new();
    calls(&s, &["1", "2"], &mut ran);
    tokio::time::sleep(Duration::from_secs(1)).await;
    calls(&s, &["3"], &mut ran);
    assert_eq!(ran, ["1", "3"]);
}

#[tokio::test(start_paused = true)]
async fn example_sometimes_mix() {
    let s = Sometimes::new()
        .first(2)
        .every(2)
        .interval(Duration::from_secs(2));
    let mut ran = Vec::new();
    calls(&s, &["1 (First:2)", "2 (First:2)", "3 (Every:2)"], &mut ran);
    tokio::time::sleep(Duration::from_secs(2)).await;
    calls(&s, &["4 (Interval)", "5 (Every:2)", "6"], &mut ran);
    assert_eq!(
        ran,
        [
            "1 (First:2)",
            "2 (First:2)",
            "3 (Every:2)",
            "4 (Interval)",
            "5 (Every:2)"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn sometimes_zero() {
    // Go: `Interval: 0` is unset; the calls must not misbehave.
    let s = Sometimes::new().interval(Duration::ZERO);
    assert_eq!(s.run(|| ()), Some(()));
    assert_eq!(s.run(|| ()), None, "no filter set: once");
}

#[tokio::test(start_paused = true)]
async fn sometimes_max() {
    // Go: `Interval: math.MaxInt64`; here `Duration::MAX`, which never
    // passes (and adding it to an instant must not overflow).
    let s = Sometimes::new().interval(Duration::MAX);
    assert_eq!(s.run(|| ()), Some(()));
    tokio::time::advance(Duration::from_secs(3600 * 24 * 365)).await;
    assert_eq!(s.run(|| ()), None);
}
