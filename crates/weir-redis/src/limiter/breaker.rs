//! When to ask Redis: always while it answers; once it failed, one probe per
//! `recheck` interval while the outage policy answers everyone else at once,
//! so a down Redis costs callers nothing and a restarted one is found again
//! within one interval.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::RedisFailure;
use crate::health::Health;

/// Whether a decision should go to Redis.
#[derive(Debug, Clone)]
pub(crate) enum Admit {
    /// Ask Redis (healthy, or this call is the probe).
    Call,
    /// Degraded and not yet time to probe: apply the outage policy; this
    /// is the failure that caused it.
    Skip(RedisFailure),
}

#[derive(Debug)]
pub(crate) struct Breaker {
    recheck: Duration,
    health: Health,
    probe: Mutex<Probe>,
}

#[derive(Debug)]
struct Probe {
    next: Option<Instant>,
    last: RedisFailure,
}

impl Breaker {
    pub(crate) fn new(component: String, recheck: Duration) -> Self {
        Self {
            recheck,
            health: Health::new(component),
            probe: Mutex::new(Probe {
                next: None,
                last: RedisFailure::Timeout(Duration::ZERO),
            }),
        }
    }

    pub(crate) fn health(&self) -> &Health {
        &self.health
    }

    pub(crate) fn admit(&self) -> Admit {
        if !self.health.is_degraded() {
            return Admit::Call;
        }
        let now = Instant::now();
        let mut probe = crate::lock(&self.probe);
        match probe.next {
            Some(next) if now < next => Admit::Skip(probe.last.clone()),
            _ => {
                // Set before the probe runs: a probe whose future is dropped
                // still spaces the next one.
                probe.next = now.checked_add(self.recheck);
                Admit::Call
            }
        }
    }

    /// Returns `true` when this success ended an outage.
    pub(crate) fn success(&self) -> bool {
        self.health.succeeded()
    }

    pub(crate) fn failure(&self, err: &RedisFailure) {
        let mut probe = crate::lock(&self.probe);
        probe.last = err.clone();
        if self.health.failed(err) {
            probe.next = Instant::now().checked_add(self.recheck);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn probes_once_per_interval_while_degraded() {
        let b = Breaker::new("test".into(), Duration::from_millis(100));
        let err = RedisFailure::Timeout(Duration::from_millis(10));
        assert!(matches!(b.admit(), Admit::Call));
        b.failure(&err);
        assert!(matches!(b.admit(), Admit::Skip(_)));
        tokio::time::advance(Duration::from_millis(99)).await;
        assert!(matches!(b.admit(), Admit::Skip(_)));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(matches!(b.admit(), Admit::Call), "the probe");
        assert!(matches!(b.admit(), Admit::Skip(_)), "one probe at a time");
        b.failure(&err);
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(matches!(b.admit(), Admit::Call));
        b.success();
        assert!(matches!(b.admit(), Admit::Call));
        assert!(matches!(b.admit(), Admit::Call));
        assert_eq!((b.health.outages(), b.health.recoveries()), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_interval_never_overflows() {
        let b = Breaker::new("test".into(), Duration::MAX);
        b.failure(&RedisFailure::Timeout(Duration::ZERO));
        // No next probe can be represented: probe on every call rather
        // than never.
        assert!(matches!(b.admit(), Admit::Call));
    }
}
