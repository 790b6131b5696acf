//! [`LeaseBook`]: the tokens a replica took from Redis ahead of need, per
//! key, spent locally without a round trip.
//!
//! The invariant behind the over-admission bound: after every refill a key
//! holds at most `size - 1` tokens here (a refill that brings more discards
//! the rest), and concurrent refills only ask for the room that is left. So
//! each replica holds fewer than `size` unspent tokens per key, and any
//! window admits at most `rate·T + burst + replicas × (size - 1)`.

use std::collections::HashMap;

#[derive(Debug, Default)]
struct Slot {
    /// Tokens held.
    tokens: u32,
    /// Extra tokens asked for by refills in flight.
    asking: u32,
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

    /// Takes `n` tokens held for `key`, if there are that many.
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

    /// How many tokens a refill that needs `n` should ask for (at least
    /// `n`); records the extra as asked for until [`settle`](Self::settle).
    pub(crate) fn plan(&mut self, key: &str, n: u32) -> u32 {
        let cap = self.size - 1;
        let slot = self.slots.entry(key.to_owned()).or_default();
        let extra = cap.saturating_sub(slot.tokens.saturating_add(slot.asking));
        slot.asking += extra;
        n.saturating_add(extra)
    }

    /// A refill planned with [`plan`](Self::plan) ended: `granted` tokens
    /// came (`None`: refused or failed). The `n` needed are spent by the
    /// caller; the rest is kept up to the cap.
    pub(crate) fn settle(&mut self, key: &str, n: u32, want: u32, granted: Option<u32>) {
        let cap = self.size - 1;
        let slot = self.slots.entry(key.to_owned()).or_default();
        slot.asking = slot.asking.saturating_sub(want.saturating_sub(n));
        if let Some(g) = granted {
            let extra = g.saturating_sub(n);
            let keep = extra.min(cap.saturating_sub(slot.tokens));
            slot.tokens += keep;
            self.discarded += u64::from(extra - keep);
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

    /// Keys with nothing held and nothing asked for take no memory.
    fn tidy(&mut self, key: &str) {
        if self
            .slots
            .get(key)
            .is_some_and(|s| s.tokens == 0 && s.asking == 0)
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
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refill_then_spend_locally() {
        let mut book = LeaseBook::new(8);
        assert!(!book.take("a", 1));
        let want = book.plan("a", 1);
        assert_eq!(want, 8);
        book.settle("a", 1, want, Some(8));
        assert_eq!(book.held("a"), 7);
        for _ in 0..7 {
            assert!(book.take("a", 1));
        }
        assert!(!book.take("a", 1));
        assert_eq!(book.keys(), 0, "an empty key is forgotten");
    }

    #[test]
    fn concurrent_refills_share_the_room() {
        let mut book = LeaseBook::new(8);
        let first = book.plan("a", 1);
        let second = book.plan("a", 1);
        assert_eq!((first, second), (8, 1), "the second asks only for itself");
        book.settle("a", 1, second, Some(1));
        book.settle("a", 1, first, Some(8));
        assert_eq!(book.held("a"), 7);
        assert_eq!(book.discarded(), 0);
    }

    #[test]
    fn a_refusal_frees_the_room() {
        let mut book = LeaseBook::new(4);
        let want = book.plan("a", 2);
        book.settle("a", 2, want, None);
        assert_eq!(book.keys(), 0);
        assert_eq!(book.plan("a", 1), 4);
    }

    proptest! {
        /// Whatever the interleaving of plans, grants and spends, a key
        /// never holds `size` tokens or more.
        #[test]
        fn never_holds_a_whole_lease(
            size in 1u32..16,
            ops in proptest::collection::vec((0u8..3, 1u32..6, 0u32..20), 1..200),
        ) {
            let mut book = LeaseBook::new(size);
            let mut open: Vec<(u32, u32)> = Vec::new();
            for (kind, n, g) in ops {
                match kind {
                    0 => { let _ = book.take("k", n); }
                    1 => open.push((n, book.plan("k", n))),
                    _ => if let Some((n, want)) = open.pop() {
                        // Redis never grants more than asked.
                        let granted = (g >= n).then_some(g.min(want));
                        book.settle("k", n, want, granted);
                    },
                }
                prop_assert!(book.held("k") < size.max(1));
            }
        }
    }
}
