//! Loom models of the lock-free decision path (`gcra.rs`). Run with
//! `RUSTFLAGS="--cfg weir_loom" cargo test -p weir-rate --lib loom`.
#![allow(clippy::unwrap_used)]

use loom::sync::Arc;
use loom::thread;

use crate::Rate;
use crate::gcra::{Decision, Gcra, Mode};

const NOW: u64 = 1_000_000_000;
const P: u64 = 100_000_000; // 10 per second

fn gcra(rate: Rate) -> Arc<Gcra> {
    Arc::new(Gcra::new(rate.to_quota(None).unwrap(), NOW))
}

fn granted(d: Decision) -> bool {
    matches!(d, Decision::Granted { .. })
}

/// Two racing deciders on a one-token bucket: exactly one wins, and the
/// state records exactly one token.
#[test]
fn loom_one_token_two_deciders() {
    loom::model(|| {
        let g = gcra(Rate::per_second(10));
        let g2 = g.clone();
        let t = thread::spawn(move || granted(g2.decide(Mode::Take, 1, NOW)));
        let a = granted(g.decide(Mode::Take, 1, NOW));
        let b = t.join().unwrap();
        assert!(a ^ b, "exactly one of two deciders gets the only token");
        assert_eq!(g.available(NOW), Some(0));
        assert_eq!(g.available(NOW + P), Some(1));
    });
}

/// Three deciders on a two-token bucket: exactly two win.
#[test]
fn loom_two_tokens_three_deciders() {
    loom::model(|| {
        let g = gcra(Rate::per_second(10).burst(2));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let g = g.clone();
                thread::spawn(move || granted(g.decide(Mode::Take, 1, NOW)))
            })
            .collect();
        let mut wins = usize::from(granted(g.decide(Mode::Take, 1, NOW)));
        for h in handles {
            wins += usize::from(h.join().unwrap());
        }
        assert_eq!(wins, 2);
        assert_eq!(g.available(NOW), Some(0));
    });
}

/// A decision racing a quota change: whichever order they take, the token
/// count is carried over (one spent of two), never computed from a mix of
/// old and new parameters.
#[test]
fn loom_decide_vs_set_quota() {
    loom::model(|| {
        let g = gcra(Rate::per_second(10).burst(2));
        let g2 = g.clone();
        let t = thread::spawn(move || {
            let q = Rate::per_second(5).burst(2).to_quota(None).unwrap();
            g2.set_quota(q, NOW);
        });
        assert!(granted(g.decide(Mode::Take, 1, NOW)));
        t.join().unwrap();
        assert_eq!(
            g.available(NOW),
            Some(1),
            "one of two tokens spent, at any rate"
        );
        // The refill now runs at the new rate: 200 ms per token.
        assert_eq!(g.available(NOW + 2 * P - 1), Some(1));
        assert_eq!(g.available(NOW + 2 * P), Some(2));
    });
}

/// A cancel racing a decision: the refund and the new grant never add up to
/// more than the bucket allows.
#[test]
fn loom_cancel_vs_decide() {
    loom::model(|| {
        let g = gcra(Rate::per_second(10).burst(1));
        // Take the only token, then reserve the next one (ready at NOW + P).
        assert!(granted(g.decide(Mode::Take, 1, NOW)));
        let Decision::Granted {
            act,
            tat_after,
            generation,
        } = g.decide(Mode::Reserve { max_wait: u64::MAX }, 1, NOW)
        else {
            panic!("reservation refused");
        };
        assert_eq!(act, NOW + P);
        let g2 = g.clone();
        let t = thread::spawn(move || g2.cancel(1, act, tat_after, generation, NOW));
        // At NOW + P the cancelled token is due again, but only once.
        let late = granted(g.decide(Mode::Take, 1, NOW));
        let refunded = t.join().unwrap();
        assert_eq!(refunded, 1);
        assert!(!late, "the bucket is empty at NOW either way");
        assert_eq!(g.available(NOW + P), Some(1));
    });
}

/// A reservation racing a quota change, cancelled afterwards: in either
/// order the refund is whole (nobody reserved after it) and the bucket ends
/// where it would have been without the reservation, at the new rate.
#[test]
fn loom_reserve_vs_set_quota_then_cancel() {
    loom::model(|| {
        let g = gcra(Rate::per_second(10));
        assert!(granted(g.decide(Mode::Take, 1, NOW))); // the only token
        let g2 = g.clone();
        let t = thread::spawn(move || {
            let q = Rate::per_second(5).to_quota(None).unwrap();
            g2.set_quota(q, NOW);
        });
        let reserved = g.decide(Mode::Reserve { max_wait: u64::MAX }, 1, NOW);
        t.join().unwrap();
        let Decision::Granted {
            act,
            tat_after,
            generation,
        } = reserved
        else {
            panic!("reservation refused");
        };
        assert_eq!(g.cancel(1, act, tat_after, generation, NOW), 1);
        assert_eq!(g.available(NOW), Some(0));
        assert_eq!(g.available(NOW + 2 * P - 1), Some(0));
        assert_eq!(g.available(NOW + 2 * P), Some(1), "refilled at 5/s");
    });
}

/// A full bucket stays full across a quota change, so a one-token request
/// racing the change is granted whatever parameters it sees (a refusal built
/// from half-old, half-new parameters was a bug this model found).
#[test]
fn loom_refusal_never_mixes_old_and_new_quota() {
    loom::model(|| {
        let g = gcra(Rate::per_second(10));
        let g2 = g.clone();
        let t = thread::spawn(move || {
            let q = Rate::per_second(5).to_quota(None).unwrap();
            g2.set_quota(q, NOW);
        });
        assert!(granted(g.decide(Mode::Take, 1, NOW)));
        t.join().unwrap();
        assert_eq!(g.available(NOW), Some(0));
    });
}
