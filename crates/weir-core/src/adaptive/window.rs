//! The measuring window: the samples the algorithm looks at once, together.

use std::time::Duration;

use tokio::time::Instant;

/// What one window saw, handed to the algorithm when it closes.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Summary {
    /// Mean latency of the successes; `None` when there were none.
    pub(super) mean: Option<Duration>,
    /// Successes counted.
    pub(super) samples: u64,
    /// Drops counted.
    pub(super) drops: u64,
    /// The most jobs in flight at once during the window.
    pub(super) peak_in_flight: usize,
}

/// Samples since the window opened.
///
/// Only jobs admitted under the limit now in force count (the state tags
/// each permit with the limit's epoch).
#[derive(Debug)]
pub(super) struct Window {
    start: Instant,
    total_nanos: u128,
    samples: u64,
    drops: u64,
    peak_in_flight: usize,
}

impl Window {
    pub(super) fn new(now: Instant, in_flight: usize) -> Self {
        Self {
            start: now,
            total_nanos: 0,
            samples: 0,
            drops: 0,
            peak_in_flight: in_flight,
        }
    }

    pub(super) fn saw_in_flight(&mut self, in_flight: usize) {
        self.peak_in_flight = self.peak_in_flight.max(in_flight);
    }

    pub(super) fn success(&mut self, latency: Duration) {
        self.total_nanos += latency.as_nanos();
        self.samples += 1;
    }

    pub(super) fn drop_(&mut self) {
        self.drops += 1;
    }

    /// Whether the window has lasted `min_duration`.
    pub(super) fn lasted(&self, now: Instant, min_duration: Duration) -> bool {
        now.saturating_duration_since(self.start) >= min_duration
    }

    /// Verdicts counted: successes and drops.
    pub(super) fn verdicts(&self) -> u64 {
        self.samples + self.drops
    }

    pub(super) fn summary(&self) -> Summary {
        let mean = (self.samples > 0).then(|| {
            let nanos = self.total_nanos / u128::from(self.samples);
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        });
        Summary {
            mean,
            samples: self.samples,
            drops: self.drops,
            peak_in_flight: self.peak_in_flight,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn it_sums_up_what_it_saw() {
        let mut w = Window::new(Instant::now(), 3);
        w.success(Duration::from_millis(10));
        w.success(Duration::from_millis(30));
        w.drop_();
        w.saw_in_flight(7);
        w.saw_in_flight(2);
        let now = Instant::now();
        assert!(!w.lasted(now, Duration::from_millis(1)));
        assert!(w.lasted(now + Duration::from_millis(1), Duration::from_millis(1)));
        assert_eq!(w.verdicts(), 3);
        assert_eq!(
            w.summary(),
            Summary {
                mean: Some(Duration::from_millis(20)),
                samples: 2,
                drops: 1,
                peak_in_flight: 7
            }
        );
        assert_eq!(Window::new(now, 0).summary().mean, None);
    }
}
