//! The local limiters of [`OutagePolicy::Local`](super::OutagePolicy::Local):
//! one `weir_rate::RateLimiter` per key, at the replica's share of the rate,
//! used only while Redis does not answer and dropped when it does again.

use std::collections::HashMap;
use std::sync::Mutex;

use weir_rate::{Rate, RateLimiter};

/// Above this many keys, full buckets (indistinguishable from new ones)
/// are dropped before a new key is added.
const PRUNE_ABOVE: usize = 4096;

#[derive(Debug)]
pub(crate) struct Fallback {
    rate: Rate,
    burst: u32,
    limiters: Mutex<HashMap<String, RateLimiter>>,
}

impl Fallback {
    /// `rate` was checked by the builder (`RateLimiter::new` accepted it).
    pub(crate) fn new(rate: Rate, burst: u32) -> Self {
        Self {
            rate,
            burst,
            limiters: Mutex::new(HashMap::new()),
        }
    }

    /// The key's local limiter, made on first use.
    pub(crate) fn limiter(&self, key: &str) -> Option<RateLimiter> {
        let mut map = crate::lock(&self.limiters);
        if let Some(l) = map.get(key) {
            return Some(l.clone());
        }
        if map.len() >= PRUNE_ABOVE {
            let burst = self.burst;
            map.retain(|_, l| l.available() < burst);
        }
        let limiter = RateLimiter::new(self.rate).ok()?;
        map.insert(key.to_owned(), limiter.clone());
        Some(limiter)
    }

    /// Redis answers again: the local buckets are of no more use.
    pub(crate) fn clear(&self) {
        crate::lock(&self.limiters).clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        crate::lock(&self.limiters).len()
    }
}
