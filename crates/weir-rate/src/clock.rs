//! Where a limiter reads the time: tokio's clock where it can be paused,
//! the CPU's timestamp counter where it cannot.
//!
//! A decision is a clock read and a compare-and-swap, so the clock read is
//! most of its cost. `tokio::time::Instant::now()` is std's monotonic clock
//! (a `clock_gettime` call through the vDSO) unless the runtime's clock is
//! paused; the timestamp counter, read with [`quanta`] (the clock governor
//! uses), is one instruction and a scaling, with no call. (Figures:
//! `docs/benchmarks.md`.)
//!
//! Only a current-thread runtime can pause its clock (tokio refuses to pause
//! a multi-thread one), so the choice is made once, when the limiter is
//! created:
//!
//! * inside a **multi-thread** runtime: the timestamp counter, anchored to
//!   `tokio::time::Instant::now()` at creation (quanta is calibrated
//!   against the same monotonic clock tokio uses, and falls back to that
//!   clock where the counter is not reliable);
//! * anywhere else (a current-thread runtime, which a test may pause, or no
//!   runtime at all): `tokio::time::Instant::now()`, so paused tests stay
//!   deterministic.
//!
//! Either way the limiter hands out `tokio::time::Instant`s (`ready_at`,
//! `earliest_possible`) and sleeps with tokio's timer.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::time::Instant;

/// A limiter's clock: nanoseconds since its creation.
#[derive(Debug)]
pub(crate) struct Clock {
    /// `tokio::time::Instant::now()` when the clock was made.
    origin: Instant,
    source: Source,
}

#[derive(Debug)]
enum Source {
    /// `tokio::time::Instant::now()`, which follows a paused runtime.
    Tokio,
    /// The timestamp counter, from `raw` at `origin`.
    Counter {
        clock: &'static quanta::Clock,
        raw: u64,
    },
}

/// quanta calibrates once per process (a few milliseconds at most); every
/// limiter shares the result.
fn counter() -> &'static quanta::Clock {
    static COUNTER: OnceLock<quanta::Clock> = OnceLock::new();
    COUNTER.get_or_init(quanta::Clock::new)
}

impl Clock {
    /// The clock for a limiter made here and now (see the module docs).
    pub(crate) fn new() -> Self {
        let unpausable = Handle::try_current()
            .is_ok_and(|h| matches!(h.runtime_flavor(), RuntimeFlavor::MultiThread));
        if unpausable {
            Self::counter()
        } else {
            Self::tokio()
        }
    }

    /// Always `tokio::time::Instant::now()`.
    pub(crate) fn tokio() -> Self {
        Self {
            origin: Instant::now(),
            source: Source::Tokio,
        }
    }

    /// Always the timestamp counter.
    pub(crate) fn counter() -> Self {
        let clock = counter();
        let raw = clock.raw();
        Self {
            origin: Instant::now(),
            source: Source::Counter { clock, raw },
        }
    }

    /// Nanoseconds since the clock was made (saturating far beyond any
    /// limiter's lifetime).
    #[inline]
    pub(crate) fn elapsed_ns(&self) -> u64 {
        match &self.source {
            Source::Tokio => {
                let since = Instant::now().saturating_duration_since(self.origin);
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX / 4)
            }
            Source::Counter { clock, raw } => clock.delta_as_nanos(*raw, clock.raw()),
        }
    }

    /// The tokio instant `ns` nanoseconds after the clock was made; `None`
    /// beyond the range of `Instant` (a time that never comes).
    pub(crate) fn instant_at(&self, ns: u64) -> Option<Instant> {
        self.origin.checked_add(Duration::from_nanos(ns))
    }

    /// The clock's zero.
    pub(crate) fn origin(&self) -> Instant {
        self.origin
    }

    /// Whether it reads the timestamp counter.
    #[cfg(test)]
    pub(crate) fn is_counter(&self) -> bool {
        matches!(self.source, Source::Counter { .. })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_multi_thread_runtime_gets_the_counter_anything_else_tokio_time() {
        assert!(!Clock::new().is_counter(), "no runtime: tokio (std) time");
        let current = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert!(!current.block_on(async { Clock::new() }).is_counter());
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        assert!(multi.block_on(async { Clock::new() }).is_counter());
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_runtime_drives_the_tokio_clock() {
        let clock = Clock::new();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(clock.elapsed_ns(), 3_000_000_000);
        assert_eq!(clock.instant_at(clock.elapsed_ns()), Some(Instant::now()));
        // Far beyond any clock's range on some platforms; never a panic.
        let _ = clock.instant_at(u64::MAX);
    }

    #[test]
    fn the_counter_measures_what_std_measures() {
        // Both clocks time the same interval. Preemption between the paired
        // reads is the only error, so on a loaded machine an attempt may be
        // off: a broken scale is off on every attempt, a preempted read on
        // one.
        let clock = Clock::counter();
        let mut last = (0, 0);
        for _ in 0..5 {
            let (c0, s0) = (clock.elapsed_ns(), std::time::Instant::now());
            std::thread::sleep(Duration::from_millis(50));
            let (s1, c1) = (std::time::Instant::now(), clock.elapsed_ns());
            let by_counter = c1 - c0;
            let by_std = u64::try_from((s1 - s0).as_nanos()).unwrap();
            if by_counter >= 49_000_000 && by_counter.abs_diff(by_std) < 2_000_000 + by_std / 50 {
                return;
            }
            last = (by_counter, by_std);
        }
        panic!("counter {} ns vs std {} ns", last.0, last.1);
    }
}
