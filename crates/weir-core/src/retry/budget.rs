//! [`RetryBudget`]: retries as at most a fraction of requests, over a
//! sliding window (Finagle's and tower's retry budget).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use weir_context::ConfigError;

/// The window is counted in this many slots; the oldest is forgotten as a
/// new one begins.
const SLOTS: usize = 10;

/// A shared allowance of retries: at most `ratio` retries per request over
/// the last `window`, plus `min_per_second` retries a second whatever the
/// traffic (so a quiet service can still retry).
///
/// Without a budget, every caller retries every failure up to its maximum
/// attempts: when a backend fails half its requests, three attempts make
/// 1.75 requests out of each one, and the retries deepen the outage they
/// react to. With a budget shared by every caller of the backend, the extra
/// load is capped at `ratio` (plus the small reserve), whatever the failure
/// rate: retries still mask scattered failures, but stop during an outage.
///
/// Each call of [`retry`](super::retry) with a policy that has this budget
/// [`deposit`](Self::deposit)s once, and each retry
/// [`withdraw`](Self::withdraw)s; a refused retry ends the call with
/// [`GiveUpReason::Budget`](super::GiveUpReason::Budget). Hand-written
/// retry loops can share the same budget through these two methods.
///
/// Cheap to clone: clones share one budget. Time is tokio's.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_core::RetryBudget;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), weir_core::ConfigError> {
/// let budget = RetryBudget::builder()
///     .ratio(0.1)
///     .min_per_second(0)
///     .window(Duration::from_secs(10))
///     .build()?;
/// for _ in 0..100 {
///     budget.deposit();
/// }
/// let granted = (0..100).filter(|_| budget.withdraw()).count();
/// assert_eq!(granted, 10);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    ratio: f64,
    /// Retries allowed over a window whatever the requests.
    reserve: u64,
    slot: Duration,
    state: Mutex<Slots>,
}

/// Requests and retries per slot; `slots[current]` began at `began`.
#[derive(Debug)]
struct Slots {
    requests: [u64; SLOTS],
    retries: [u64; SLOTS],
    current: usize,
    began: Instant,
}

impl RetryBudget {
    /// The settings, starting from tower's defaults: ratio 0.2, 10 retries a
    /// second, a 10 s window.
    pub fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder::new()
    }

    /// Records a request (a first attempt).
    pub fn deposit(&self) {
        let mut s = self.lock();
        let i = s.current;
        s.requests[i] += 1;
    }

    /// Takes one retry from the budget; `false` (and nothing taken) when the
    /// retries of the window already reach the allowance.
    pub fn withdraw(&self) -> bool {
        let mut s = self.lock();
        if s.retries.iter().sum::<u64>() >= self.allowance(&s) {
            return false;
        }
        let i = s.current;
        s.retries[i] += 1;
        true
    }

    /// Retries [`withdraw`](Self::withdraw) would grant now.
    pub fn available(&self) -> u64 {
        let s = self.lock();
        self.allowance(&s)
            .saturating_sub(s.retries.iter().sum::<u64>())
    }

    fn allowance(&self, s: &Slots) -> u64 {
        let requests: u64 = s.requests.iter().sum();
        // Whole retries only; the product is finite (ratio ≤ 1000).
        (self.inner.ratio * requests as f64).floor() as u64 + self.inner.reserve
    }

    /// The slots, with the ones older than the window cleared.
    fn lock(&self) -> MutexGuard<'_, Slots> {
        // Only counter updates run under this lock.
        let mut s = self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let slot = self.inner.slot;
        let mut passed = 0;
        while now.saturating_duration_since(s.began) >= slot && passed < SLOTS {
            s.current = (s.current + 1) % SLOTS;
            let i = s.current;
            s.requests[i] = 0;
            s.retries[i] = 0;
            s.began += slot;
            passed += 1;
        }
        if passed == SLOTS {
            // Idle for a whole window or more: every slot is clear.
            s.began = now;
        }
        s
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("RetryBudget")
            .field("ratio", &self.inner.ratio)
            .field("reserve", &self.inner.reserve)
            .field("window", &(self.inner.slot * SLOTS as u32))
            .field("requests", &s.requests.iter().sum::<u64>())
            .field("retries", &s.retries.iter().sum::<u64>())
            .finish()
    }
}

/// The settings of a [`RetryBudget`], checked at [`build`](Self::build).
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()`"]
pub struct RetryBudgetBuilder {
    ratio: f64,
    min_per_second: u32,
    window: Duration,
}

impl Default for RetryBudgetBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryBudgetBuilder {
    /// The most a ratio may be (tower's bound): a thousand retries a request.
    pub const MAX_RATIO: f64 = 1000.0;
    /// The shortest window.
    pub const MIN_WINDOW: Duration = Duration::from_secs(1);
    /// The longest window.
    pub const MAX_WINDOW: Duration = Duration::from_secs(60);

    /// Ratio 0.2, 10 retries a second, a 10 s window (tower's defaults).
    pub fn new() -> Self {
        Self {
            ratio: 0.2,
            min_per_second: 10,
            window: Duration::from_secs(10),
        }
    }

    /// Retries allowed per request over the window (0.1: one retry per ten
    /// requests). Checked at `build()`: from 0 to 1,000.
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// Retries allowed each second whatever the number of requests (default
    /// 10), so a service with little traffic can still retry. Checked at
    /// `build()`: not zero together with a zero ratio.
    pub fn min_per_second(mut self, n: u32) -> Self {
        self.min_per_second = n;
        self
    }

    /// How far back requests and retries are counted (default 10 s).
    /// Checked at `build()`: from 1 s to 60 s.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Checks the settings and makes the budget.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a ratio that is negative, above
    /// [`MAX_RATIO`](Self::MAX_RATIO) or not a number, a window outside
    /// [`MIN_WINDOW`](Self::MIN_WINDOW)..=[`MAX_WINDOW`](Self::MAX_WINDOW),
    /// or a ratio and a minimum both zero (no retry could ever be made).
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        const C: &str = "retry budget";
        let ratio = self.ratio;
        if !(0.0..=Self::MAX_RATIO).contains(&ratio) {
            return Err(ConfigError::invalid(
                C,
                "ratio",
                format!("must be from 0 to {} (got {ratio})", Self::MAX_RATIO),
            ));
        }
        if !(Self::MIN_WINDOW..=Self::MAX_WINDOW).contains(&self.window) {
            return Err(ConfigError::invalid(
                C,
                "window",
                format!("must be from 1 s to 60 s (got {:?})", self.window),
            ));
        }
        if ratio == 0.0 && self.min_per_second == 0 {
            return Err(ConfigError::invalid(
                C,
                "ratio",
                "and min_per_second are both zero: no retry could ever be made",
            ));
        }
        let reserve = (f64::from(self.min_per_second) * self.window.as_secs_f64()).floor() as u64;
        Ok(RetryBudget {
            inner: Arc::new(Inner {
                ratio,
                reserve,
                slot: self.window / SLOTS as u32,
                state: Mutex::new(Slots {
                    requests: [0; SLOTS],
                    retries: [0; SLOTS],
                    current: 0,
                    began: Instant::now(),
                }),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::time::advance;

    fn budget(ratio: f64, min: u32) -> RetryBudget {
        RetryBudget::builder()
            .ratio(ratio)
            .min_per_second(min)
            .build()
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_a_fraction_of_requests_plus_a_reserve() {
        let b = budget(0.2, 1); // reserve: 1/s × 10 s = 10
        assert_eq!(b.available(), 10);
        for _ in 0..50 {
            b.deposit();
        }
        assert_eq!(b.available(), 20);
        assert_eq!((0..100).filter(|_| b.withdraw()).count(), 20);
        assert!(!b.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_slides() {
        let b = budget(0.5, 0);
        for _ in 0..10 {
            b.deposit();
        }
        assert_eq!((0..10).filter(|_| b.withdraw()).count(), 5);
        // 9 s on: still inside the window.
        advance(Duration::from_secs(9)).await;
        assert!(!b.withdraw());
        // 10 s on: the first slot (its deposits and withdrawals) is gone.
        advance(Duration::from_secs(1)).await;
        assert_eq!(b.available(), 0);
        b.deposit();
        b.deposit();
        assert!(b.withdraw());
        assert!(!b.withdraw());
        // A long idle spell clears everything at once.
        advance(Duration::from_secs(3600)).await;
        assert_eq!(b.available(), 0);
        for _ in 0..4 {
            b.deposit();
        }
        assert_eq!(b.available(), 2);
    }

    #[test]
    fn settings_are_checked() {
        let err = |b: RetryBudgetBuilder| b.build().unwrap_err().setting().to_owned();
        let b = RetryBudget::builder;
        assert_eq!(err(b().ratio(-0.1)), "ratio");
        assert_eq!(err(b().ratio(f64::NAN)), "ratio");
        assert_eq!(err(b().ratio(1000.5)), "ratio");
        assert_eq!(err(b().window(Duration::ZERO)), "window");
        assert_eq!(err(b().window(Duration::MAX)), "window");
        assert_eq!(err(b().ratio(0.0).min_per_second(0)), "ratio");
        assert!(b().ratio(0.0).build().is_ok());
        assert!(b().ratio(1000.0).min_per_second(u32::MAX).build().is_ok());
    }
}
