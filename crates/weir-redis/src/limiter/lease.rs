//! [`LeaseBook`]: the tokens a replica took from Redis ahead of need, per
//! key, spent locally without a round trip.
//!
//! One refill at a time per key: a caller that finds the key empty while a
//! refill is in flight waits for it instead of making a round trip of its
//! own, then takes from what it brought — or shares its answer (a refusal,
//! Redis down). So concurrent callers of one key cost one round trip per
//! lease, not one each. (A refill ahead of need, while tokens are left,
//! was measured and dropped: under the cap it can only bring the room that
//! is left, so it makes more, smaller round trips for the same tokens. The
//! lease's throughput per key and replica is at most `k` tokens per round
//! trip.)
//!
//! The invariant behind the over-admission bound: after every refill a key
//! holds at most `size - 1` tokens here (a refill asks for no more than
//! that on top of what it needs, and anything beyond is discarded). So each
//! replica holds fewer than `size` unspent tokens per key, and any window
//! admits at most `rate·T + burst + replicas × (size - 1)`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::RedisFailure;

/// How a refill ended.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// Redis granted `0` or more tokens (the refiller's `n` included).
    Granted(u32),
    /// Redis refused; retry after this long (from `at`), or never.
    Refused {
        retry: Option<Duration>,
        at: Instant,
    },
    /// Redis did not answer (the outage policy answers).
    Failed(RedisFailure),
    /// The refiller's future was dropped: nothing is known.
    Dropped,
}

/// What a caller does next.
#[derive(Debug)]
pub(crate) enum Step {
    /// It took its tokens from the lease.
    Took,
    /// It refills: ask Redis for `want` (at least `n`), then [`LeaseBook::finish`].
    Refill { want: u32 },
    /// Another refill is in flight: wait on `notify` (enabled before the
    /// generation is checked again), then call [`LeaseBook::begin`] again
    /// with `seen: Some(round)`.
    Wait { notify: Arc<Notify>, round: u64 },
    /// The refill it waited for was refused: so is this call, for
    /// the same time.
    Refused(Option<Duration>),
    /// The refill it waited for found Redis down.
    Failed(RedisFailure),
}

#[derive(Debug, Default)]
struct Slot {
    tokens: u32,
    refilling: bool,
    /// Callers waiting for the refill in flight.
    waiters: u32,
    /// Refills finished so far.
    round: u64,
    /// How the last one ended.
    last: Option<Outcome>,
    notify: Option<Arc<Notify>>,
}

impl Slot {
    fn begin(&mut self, cap: u32, n: u32, seen: Option<u64>) -> Step {
        if seen.is_some() {
            self.waiters = self.waiters.saturating_sub(1);
        }
        if n > 0 && self.tokens >= n {
            self.tokens -= n;
            return Step::Took;
        }
        if let Some(seen) = seen
            && self.round > seen
        {
            match &self.last {
                Some(Outcome::Refused { retry, at }) => {
                    return Step::Refused(retry.map(|r| r.saturating_sub(at.elapsed())));
                }
                Some(Outcome::Failed(f)) => return Step::Failed(f.clone()),
                _ => {}
            }
        }
        if self.refilling {
            self.waiters += 1;
            let notify = self.notify.get_or_insert_with(Default::default);
            return Step::Wait {
                notify: Arc::clone(notify),
                round: self.round,
            };
        }
        self.refilling = true;
        Step::Refill {
            want: n.saturating_add(cap.saturating_sub(self.tokens)),
        }
    }
}

#[derive(Debug)]
pub(crate) struct LeaseBook {
    size: u32,
    slots: HashMap<String, Slot>,
    discarded: u64,
}

impl LeaseBook {
    pub(crate) fn new(size: u32) -> Self {
        Self {
            size,
            slots: HashMap::new(),
            discarded: 0,
        }
    }

    /// The next step of a caller that needs `n` tokens for `key`; `seen` is
    /// the generation it waited on, if it waited.
    pub(crate) fn begin(&mut self, key: &str, n: u32, seen: Option<u64>) -> Step {
        let cap = self.size - 1;
        // No allocation for a key that has a slot: this is the hot path of
        // every decision with a lease.
        let step = match self.slots.get_mut(key) {
            Some(slot) => slot.begin(cap, n, seen),
            None => {
                let mut slot = Slot::default();
                let step = slot.begin(cap, n, seen);
                self.slots.insert(key.to_owned(), slot);
                step
            }
        };
        if matches!(step, Step::Took | Step::Refused(_) | Step::Failed(_)) {
            self.tidy(key);
        }
        step
    }

    /// Takes `n` tokens held for `key`, if there are that many (no refill:
    /// for callers that go to Redis on their own anyway).
    pub(crate) fn take(&mut self, key: &str, n: u32) -> bool {
        let Some(slot) = self.slots.get_mut(key) else {
            return false;
        };
        if n == 0 || slot.tokens < n {
            return false;
        }
        slot.tokens -= n;
        self.tidy(key);
        true
    }

    /// Whether the refill a caller waits on (generation `round`) has ended.
    pub(crate) fn ended_since(&self, key: &str, round: u64) -> bool {
        self.slots
            .get(key)
            .is_none_or(|s| s.round > round || !s.refilling)
    }

    /// A refill that needed `n` ended; the `n` are the refiller's, the rest
    /// is kept up to the cap. Wakes the waiters.
    pub(crate) fn finish(&mut self, key: &str, n: u32, outcome: Outcome) {
        let cap = self.size - 1;
        let slot = self.slots.entry(key.to_owned()).or_default();
        if let Outcome::Granted(g) = outcome {
            let extra = g.saturating_sub(n);
            let keep = extra.min(cap.saturating_sub(slot.tokens));
            slot.tokens += keep;
            self.discarded += u64::from(extra - keep);
        }
        slot.refilling = false;
        slot.round += 1;
        slot.last = Some(outcome);
        if let Some(notify) = &slot.notify {
            notify.notify_waiters();
        }
        self.tidy(key);
    }

    /// A waiter gave up (its future was dropped).
    pub(crate) fn left(&mut self, key: &str) {
        if let Some(slot) = self.slots.get_mut(key) {
            slot.waiters = slot.waiters.saturating_sub(1);
        }
        self.tidy(key);
    }

    /// Tokens held for `key`.
    pub(crate) fn held(&self, key: &str) -> u32 {
        self.slots.get(key).map_or(0, |s| s.tokens)
    }

    /// Leased tokens thrown away because the key already held its cap.
    pub(crate) fn discarded(&self) -> u64 {
        self.discarded
    }

    /// A key with nothing held, no refill and nobody waiting takes no
    /// memory.
    fn tidy(&mut self, key: &str) {
        if self
            .slots
            .get(key)
            .is_some_and(|s| s.tokens == 0 && !s.refilling && s.waiters == 0)
        {
            self.slots.remove(key);
        }
    }

    #[cfg(test)]
    pub(crate) fn keys(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn want(step: Step) -> u32 {
        match step {
            Step::Refill { want } => want,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refill_then_spend_locally() {
        let mut book = LeaseBook::new(8);
        assert_eq!(want(book.begin("a", 1, None)), 8);
        book.finish("a", 1, Outcome::Granted(8));
        assert_eq!(book.held("a"), 7);
        for _ in 0..7 {
            assert!(matches!(book.begin("a", 1, None), Step::Took));
        }
        assert_eq!(want(book.begin("a", 1, None)), 8);
        book.finish("a", 1, Outcome::Granted(1));
        assert_eq!(book.keys(), 0, "an empty key is forgotten");
    }

    #[test]
    fn one_refill_at_a_time_and_waiters_take_from_it() {
        let mut book = LeaseBook::new(8);
        assert_eq!(want(book.begin("a", 1, None)), 8);
        let Step::Wait { round, .. } = book.begin("a", 1, None) else {
            panic!("the second caller waits")
        };
        assert!(!book.ended_since("a", round));
        book.finish("a", 1, Outcome::Granted(8));
        assert!(book.ended_since("a", round));
        assert!(matches!(book.begin("a", 1, Some(round)), Step::Took));
        assert_eq!(book.held("a"), 6);
    }

    #[test]
    fn waiters_share_a_refusal_and_a_failure() {
        let mut book = LeaseBook::new(4);
        want(book.begin("a", 1, None));
        let Step::Wait { round, .. } = book.begin("a", 1, None) else {
            panic!()
        };
        book.finish(
            "a",
            1,
            Outcome::Refused {
                retry: Some(Duration::from_secs(1)),
                at: Instant::now(),
            },
        );
        assert!(matches!(
            book.begin("a", 1, Some(round)),
            Step::Refused(Some(_))
        ));
        assert_eq!(book.keys(), 0);
        want(book.begin("a", 1, None));
        let Step::Wait { round, .. } = book.begin("a", 1, None) else {
            panic!()
        };
        book.finish(
            "a",
            1,
            Outcome::Failed(RedisFailure::Timeout(Duration::ZERO)),
        );
        assert!(matches!(book.begin("a", 1, Some(round)), Step::Failed(_)));
    }

    #[test]
    fn a_dropped_refill_lets_a_waiter_refill() {
        let mut book = LeaseBook::new(4);
        want(book.begin("a", 1, None));
        let Step::Wait { round, .. } = book.begin("a", 1, None) else {
            panic!()
        };
        book.finish("a", 1, Outcome::Dropped);
        assert_eq!(want(book.begin("a", 1, Some(round))), 4);
    }

    proptest! {
        /// Whatever the interleaving of callers, grants and spends, a key
        /// never holds `size` tokens or more, and at most one refill runs.
        #[test]
        fn never_holds_a_whole_lease(
            size in 1u32..16,
            ops in proptest::collection::vec((0u8..3, 1u32..6, 0u32..20), 1..200),
        ) {
            let mut book = LeaseBook::new(size);
            let mut refill: Option<(u32, u32)> = None;
            for (kind, n, g) in ops {
                match kind {
                    0 | 1 => match book.begin("k", n, None) {
                        Step::Refill { want } => {
                            prop_assert!(refill.is_none(), "two refills at once");
                            refill = Some((n, want));
                        }
                        Step::Wait { .. } => {
                            prop_assert!(refill.is_some());
                            book.left("k");
                        }
                        _ => {}
                    },
                    _ => if let Some((n, want)) = refill.take() {
                        // Redis never grants more than asked, nor less than n.
                        let outcome = if g >= n { Outcome::Granted(g.min(want)) } else { Outcome::Dropped };
                        book.finish("k", n, outcome);
                    },
                }
                prop_assert!(book.held("k") < size);
            }
        }
    }
}
