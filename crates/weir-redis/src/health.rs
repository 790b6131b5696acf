//! [`Health`]: whether a component can reach Redis, logged once per change
//! of state (healthy -> degraded -> healthy), never once per failed call.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::time::Instant;

use crate::error::RedisFailure;

/// One component's view of Redis: healthy until a call fails, degraded
/// until one succeeds again.
#[derive(Debug)]
pub(crate) struct Health {
    /// What is logged as the `component` field: `shared rate limiter
    /// `weir:rate``, `queue `orders` consumer `c1``.
    component: String,
    /// A hint for the hot path; the truth is `since`, under its lock.
    degraded: AtomicBool,
    since: Mutex<Option<Instant>>,
    outages: AtomicU64,
    recoveries: AtomicU64,
}

impl Health {
    pub(crate) fn new(component: String) -> Self {
        Self {
            component,
            degraded: AtomicBool::new(false),
            since: Mutex::new(None),
            outages: AtomicU64::new(0),
            recoveries: AtomicU64::new(0),
        }
    }

    /// A call failed. Returns `true` (and logs one `WARN` event) when this
    /// turned a healthy component degraded.
    pub(crate) fn failed(&self, err: &RedisFailure) -> bool {
        if self.degraded.load(Ordering::Acquire) {
            return false;
        }
        let mut since = crate::lock(&self.since);
        if since.is_some() {
            return false;
        }
        *since = Some(Instant::now());
        self.degraded.store(true, Ordering::Release);
        self.outages.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(component = %self.component, error = %err, "redis unreachable: degraded");
        true
    }

    /// A call succeeded. Returns `true` (and logs one `INFO` event) when
    /// this turned a degraded component healthy again.
    pub(crate) fn succeeded(&self) -> bool {
        if !self.degraded.load(Ordering::Acquire) {
            return false;
        }
        let mut since = crate::lock(&self.since);
        let Some(start) = since.take() else {
            return false;
        };
        self.degraded.store(false, Ordering::Release);
        self.recoveries.fetch_add(1, Ordering::Relaxed);
        tracing::info!(component = %self.component, degraded_for = ?start.elapsed(), "redis reachable again: healthy");
        true
    }

    pub(crate) fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    /// Healthy -> degraded changes so far.
    pub(crate) fn outages(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }

    /// Degraded -> healthy changes so far.
    pub(crate) fn recoveries(&self) -> u64 {
        self.recoveries.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_change_per_state() {
        let h = Health::new("test".into());
        let err = RedisFailure::Timeout(Duration::from_millis(5));
        assert!(!h.succeeded(), "healthy stays healthy");
        assert!(h.failed(&err));
        assert!(!h.failed(&err), "a second failure changes nothing");
        assert!(h.is_degraded());
        assert!(h.succeeded());
        assert!(!h.succeeded());
        assert!(h.failed(&err));
        assert_eq!((h.outages(), h.recoveries()), (2, 1));
    }
}
