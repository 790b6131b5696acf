//! Extreme settings and requests (issue 17): every one gives a value or a
//! clear error — never a panic, never a hang. Each case runs under
//! `within_bound`, so a busy loop or an endless await fails the test.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use futures::StreamExt;
use support::{within, within_bound};
use tokio::time::Instant;
use weir_context::{Context, Problem};
use weir_rate::{KeyedRateLimiter, Rate, RateLimiter, Ticker, WaitError};

const MS: Duration = Duration::from_millis(1);
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn is_insufficient(res: Result<(), WaitError>) -> bool {
    matches!(res, Err(WaitError::InsufficientCapacity(_)))
}

#[test]
fn a_ticker_of_duration_max_never_ticks() {
    within_bound("ticker max", || async {
        let mut ticker = Ticker::new(Duration::MAX).unwrap();
        assert_eq!(ticker.period(), Duration::MAX);
        assert!(tokio::time::timeout(YEAR, ticker.tick()).await.is_err());
        assert!(futures::poll!(ticker.next()).is_pending());
        ticker.reset();
        assert!(tokio::time::timeout(YEAR, ticker.tick()).await.is_err());
    });
}

#[test]
fn a_ticker_of_a_century_ticks_after_a_century() {
    within_bound("ticker century", || async {
        let start = Instant::now();
        let mut ticker = Ticker::new(YEAR * 100).unwrap();
        assert!(tokio::time::timeout(YEAR, ticker.tick()).await.is_err());
        ticker.reset();
        let at = within(YEAR * 200, ticker.tick()).await;
        assert_eq!(at - start, YEAR * 101, "one period after the reset");
    });
}

#[test]
fn the_fastest_rates() {
    within_bound("fastest", || async {
        let err = RateLimiter::new(Rate::new(u32::MAX, Duration::from_nanos(1))).unwrap_err();
        assert_eq!(err.setting(), "count");
        assert!(
            err.to_string()
                .contains("faster than one token per nanosecond"),
            "{err}"
        );
        assert!(err.to_string().contains("Rate::unlimited()"), "{err}");
        // One per nanosecond is the fastest that works.
        let lim = RateLimiter::new(Rate::new(1, Duration::from_nanos(1)).burst(u32::MAX)).unwrap();
        lim.try_acquire_n(u32::MAX).unwrap();
        within(Duration::from_secs(10), lim.acquire_n(1000))
            .await
            .unwrap();
    });
}

#[test]
fn the_slowest_rates() {
    within_bound("slowest", || async {
        for rate in [
            Rate::every(Duration::MAX),
            Rate::new(1, Duration::from_nanos((1 << 61) + 1)),
            Rate::new(u32::MAX, Duration::MAX),
        ] {
            let err = RateLimiter::new(rate).unwrap_err();
            assert_eq!(err.setting(), "period", "{rate}");
            assert!(err.to_string().contains("Rate::zero()"), "{err}");
        }
        // One token every 2^61 ns (73 years) is the slowest that works.
        let slowest = Duration::from_nanos(1 << 61);
        let lim = RateLimiter::new(Rate::every(slowest)).unwrap();
        lim.try_acquire().unwrap();
        let refused = lim.try_acquire().unwrap_err();
        assert_eq!(refused.wait_time(), Some(slowest));
        assert!(refused.earliest_possible().is_some());
        let r = lim.reserve();
        assert_eq!(r.delay(), slowest);
        assert_eq!(r.cancel(), 1);
        // A bound far shorter than that wait fails at once.
        let ctx = Context::background().with_timeout(YEAR);
        assert_eq!(
            within(MS, lim.acquire().context(&ctx)).await.unwrap_err(),
            WaitError::WouldExceedDeadline { requested: 1 }
        );
        // And changing to an impossible rate changes nothing.
        assert!(lim.set_rate(Rate::every(Duration::MAX)).is_err());
        assert_eq!(lim.rate(), Rate::every(slowest).burst(1));
    });
}

#[test]
fn the_largest_burst() {
    within_bound("largest burst", || async {
        let lim = RateLimiter::new(Rate::per_second(2).burst(u32::MAX)).unwrap();
        assert_eq!(lim.available(), u32::MAX);
        lim.try_acquire_n(u32::MAX).unwrap();
        assert_eq!(lim.available(), 0);
        let r = lim.reserve_n(u32::MAX);
        assert_eq!(r.delay(), Duration::from_millis(500) * u32::MAX);
        assert_eq!(r.cancel(), u32::MAX);
        // Waiting for all of it: 50 days of (paused) time at 1000 a second.
        let lim = RateLimiter::new(Rate::per_second(1000).burst(u32::MAX)).unwrap();
        lim.try_acquire_n(u32::MAX).unwrap();
        let start = Instant::now();
        within(YEAR, lim.acquire_n(u32::MAX)).await.unwrap();
        assert_eq!(start.elapsed(), MS * u32::MAX);
        // Too large a bucket for the period: an error naming the largest.
        let slow = RateLimiter::new(Rate::per_second(1)).unwrap();
        let err = slow.set_burst(u32::MAX).unwrap_err();
        assert_eq!(err.problem(), &Problem::TooLarge { max: 2_305_843_009 });
        assert_eq!(slow.burst(), 1, "unchanged");
    });
}

#[test]
fn more_than_the_burst() {
    within_bound("n > burst", || async {
        let lim = RateLimiter::new(Rate::per_second(10).burst(3)).unwrap();
        for n in [4, u32::MAX] {
            assert!(is_insufficient(within(MS, lim.acquire_n(n)).await));
            let ctx = Context::background().with_timeout(Duration::from_secs(1));
            assert!(is_insufficient(
                within(MS, lim.acquire_n(n).context(ctx)).await
            ));
            assert_eq!(lim.try_acquire_n(n).unwrap_err().earliest_possible(), None);
            assert_eq!(lim.peek_n(n).unwrap_err().wait_time(), None);
            let r = lim.reserve_n(n);
            assert!(!r.ok());
            assert_eq!(r.delay(), Duration::MAX);
            assert_eq!(r.cancel(), 0);
            assert!(!lim.reserve_n_within(n, Duration::MAX).ok());
        }
        assert_eq!(lim.available(), 3, "took nothing");
        let keyed = KeyedRateLimiter::new(Rate::per_second(10)).unwrap();
        assert!(is_insufficient(
            within(MS, keyed.acquire_n(&1, u32::MAX)).await
        ));
    });
}

#[test]
fn zero_tokens() {
    within_bound("n = 0", || async {
        let lim = RateLimiter::new(Rate::per_second(10).burst(2)).unwrap();
        let start = Instant::now();
        within(MS, lim.acquire_n(0)).await.unwrap();
        assert!(lim.try_acquire_n(0).is_ok());
        assert!(lim.reserve_n(0).ok());
        lim.try_acquire_n(2).unwrap();
        let _debt = lim.reserve_n(2); // due at 200 ms
        within(MS, lim.acquire_n(0)).await.unwrap();
        assert!(lim.try_acquire_n(0).is_err(), "in debt, as Go's AllowN(0)");
        assert!(lim.reserve_n(0).ok());
        assert_eq!(start.elapsed(), Duration::ZERO);
    });
}

#[test]
fn a_zero_rate() {
    within_bound("zero", || async {
        let lim = RateLimiter::new(Rate::zero().burst(2)).unwrap();
        lim.try_acquire_n(2).unwrap();
        tokio::time::advance(YEAR).await;
        assert_eq!(lim.available(), 0, "never refills");
        assert!(is_insufficient(within(MS, lim.acquire()).await));
        let ctx = Context::background().with_timeout(Duration::from_secs(1));
        assert!(is_insufficient(
            within(MS, lim.acquire().context(ctx)).await
        ));
        assert_eq!(lim.try_acquire().unwrap_err().earliest_possible(), None);
        assert!(!lim.reserve().ok());
        let huge = RateLimiter::new(Rate::zero().burst(u32::MAX)).unwrap();
        huge.try_acquire_n(u32::MAX).unwrap();
        assert_eq!(huge.available(), 0);
        assert!(RateLimiter::new(Rate::zero().burst(0)).is_err());
    });
}

#[test]
fn an_unlimited_rate() {
    within_bound("unlimited", || async {
        let lim = RateLimiter::new(Rate::unlimited()).unwrap();
        within(MS, lim.acquire_n(u32::MAX)).await.unwrap();
        lim.try_acquire_n(u32::MAX).unwrap();
        lim.peek_n(u32::MAX).unwrap();
        let r = lim.reserve_n(u32::MAX);
        assert!(r.ok());
        assert_eq!(r.delay(), Duration::ZERO);
        assert_eq!(r.cancel(), 0, "nothing was taken from an unlimited bucket");
        assert_eq!(lim.available(), u32::MAX);
        assert_eq!(lim.burst(), 1, "the default burst, kept for later");
    });
}

/// Issue 20: the docs say an unlimited rate does not use its burst but keeps
/// and checks it; the limiter does exactly that.
#[test]
fn an_unlimited_rate_keeps_and_checks_its_burst() {
    within_bound("unlimited burst", || async {
        let err = RateLimiter::new(Rate::unlimited().burst(0)).unwrap_err();
        assert!(err.is_zero());
        assert_eq!(err.setting(), "burst");
        let lim = RateLimiter::new(Rate::unlimited().burst(3)).unwrap();
        assert!(lim.set_rate(Rate::unlimited().burst(0)).is_err());
        assert!(lim.set_burst(0).is_err());
        assert_eq!(lim.burst(), 3);
        assert_eq!(lim.rate(), Rate::unlimited().burst(3));
        // Not used while unlimited: any size, any number, at once.
        for _ in 0..100 {
            lim.try_acquire_n(1000).unwrap();
        }
        within(MS, lim.acquire_n(1000)).await.unwrap();
        // Kept for a later limited rate without a burst: a full bucket of 3.
        lim.set_rate(Rate::per_second(1)).unwrap();
        assert_eq!(lim.burst(), 3);
        assert_eq!(lim.available(), 3);
        lim.try_acquire_n(3).unwrap();
        assert!(lim.try_acquire().is_err());
        // And set_burst on an unlimited limiter changes the kept burst.
        lim.set_rate(Rate::unlimited()).unwrap();
        lim.set_burst(5).unwrap();
        lim.set_rate(Rate::per_second(1)).unwrap();
        assert_eq!(lim.available(), 5);
    });
}

#[test]
fn reservation_bounds() {
    within_bound("reserve bounds", || async {
        let lim = RateLimiter::new(Rate::per_second(10)).unwrap();
        assert!(lim.reserve_n_within(1, Duration::ZERO).ok(), "there now");
        assert!(!lim.reserve_n_within(1, Duration::ZERO).ok(), "not now");
        assert!(!lim.reserve_n_within(1, MS * 99).ok());
        let r = lim.reserve_n_within(1, Duration::MAX);
        assert_eq!(r.delay(), MS * 100);
    });
}

#[test]
fn keyed_settings() {
    within_bound("keyed settings", || async {
        let err = KeyedRateLimiter::<u8>::new(Rate::every(Duration::MAX)).unwrap_err();
        assert_eq!(err.construct(), "rate");
        let keyed = KeyedRateLimiter::new(Rate::per_second(1)).unwrap();
        keyed.try_acquire(&1).unwrap();
        assert!(keyed.set_override(1, Rate::per_second(0)).is_err());
        assert!(keyed.set_override(1, Rate::unlimited().burst(0)).is_err());
        assert_eq!(
            keyed.rate_for(&1),
            Rate::per_second(1).burst(1),
            "unchanged"
        );
        keyed.set_override(1, Rate::unlimited()).unwrap();
        within(MS, keyed.acquire_n(&1, u32::MAX)).await.unwrap();
    });
}
