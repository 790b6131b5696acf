//! The lock-free GCRA bucket: one `AtomicU64` of state, updated by
//! compare-and-swap. Time is a plain `u64` of nanoseconds here (the caller
//! reads the tokio clock), which keeps this file free of tokio and lets loom
//! model it.
//!
//! # The state
//!
//! `state` holds the *theoretical arrival time* (TAT) of the generic cell
//! rate algorithm: the instant at which the bucket would be full again if
//! nothing else were taken. With `period` nanoseconds per token and
//! `tau = burst × period`, a request for `n` tokens at `now` computes
//! `new = max(tat, now) + n × period` and conforms when
//! `new - tau <= now`; `new - tau` is the instant it conforms at (its
//! delay, for a reservation). The tokens available at `now` are
//! `(tau - max(0, tat - now)) / period`, which may be negative while
//! reservations are outstanding, exactly as in Go's `x/time/rate`.
//!
//! # Changing the quota
//!
//! `period`, `tau` and `frozen` sit in their own atomics. A quota change
//! (`set_quota`, serialized by the `config` mutex) swaps `state` to
//! [`LOCKED`], stores the new parameters, and stores a rescaled TAT that
//! keeps the *token count* where it was (Go's `SetLimitAt`/`SetBurstAt`
//! semantics). Deciders read `state` first and the parameters after, then
//! CAS `state` from the value they read; a change in between always leaves a
//! different value in `state` (the writer nudges an unchanged TAT by one
//! nanosecond, see `set_quota`), so a decider that mixed old and new
//! parameters fails its CAS and retries; an answer that writes nothing (a
//! refusal, a peek) re-reads `state` and decides again if it moved. This
//! gives every decision one
//! consistent `(state, parameters)` pair without a lock or an `ArcSwap` on
//! the hot path; deciders only spin for the few instructions the writer
//! holds `LOCKED`. Quota changes are rare; decisions are the hot path.
//!
//! A `Rate::zero()` bucket freezes its clock at the change: `frozen` holds
//! the instant every decision uses instead of `now`, so nothing refills.

use std::collections::VecDeque;

use crate::loom::{AtomicU64, Mutex, Ordering, backoff, lock};
use crate::rate::{MAX_TAU_NS, Quota, ZERO_RATE_PERIOD_NS};

/// The state word while a quota change is being written.
pub(crate) const LOCKED: u64 = u64::MAX;

/// How many past quota changes a reservation can be carried across when it
/// is cancelled. Older reservations are not refunded.
const HISTORY: usize = 32;

/// The parameters a decision uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    /// Nanoseconds per token; 0 = unlimited.
    pub(crate) period: u64,
    /// `burst × period`.
    pub(crate) tau: u64,
    /// 0: time flows. Otherwise the clock value every decision uses (a
    /// zero-rate bucket).
    pub(crate) frozen: u64,
}

impl Params {
    fn from_quota(q: &Quota, now: u64) -> Self {
        Params {
            period: q.period_ns,
            tau: q.tau_ns(),
            frozen: if q.zero { now } else { 0 },
        }
    }

    #[inline]
    fn now_eff(&self, now: u64) -> u64 {
        if self.frozen != 0 { self.frozen } else { now }
    }
}

/// One quota change, kept so an older reservation's position can be carried
/// into the new units when it is cancelled.
#[derive(Debug, Clone, Copy)]
struct Change {
    /// The generation this change produced.
    gen_after: u64,
    old: Params,
    new: Params,
    now: u64,
}

#[derive(Debug)]
struct Config {
    quota: Quota,
    params: Params,
    generation: u64,
    history: VecDeque<Change>,
}

/// What a decision does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Only looks: grants or refuses, takes nothing.
    Peek,
    /// Takes the tokens if they are there now.
    Take,
    /// Takes the tokens if they conform within `max_wait` nanoseconds (0:
    /// only now, `u64::MAX`: any time), and reports the quota generation,
    /// which a reservation needs to be cancelled across a quota change.
    Reserve {
        /// The furthest in the future the tokens may be granted for.
        max_wait: u64,
    },
}

impl Mode {
    /// How far ahead of `now` a grant may be usable (0: only now).
    #[inline]
    fn max_wait(self) -> u64 {
        match self {
            Mode::Reserve { max_wait } => max_wait,
            Mode::Peek | Mode::Take => 0,
        }
    }

    /// Whether a grant takes the tokens (writes the state).
    #[inline]
    fn takes(self) -> bool {
        match self {
            Mode::Peek => false,
            Mode::Take | Mode::Reserve { .. } => true,
        }
    }
}

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Granted. `act` is the clock value at which the tokens may be used
    /// (`<= now` for an immediate grant); `tat_after` and `generation`
    /// identify the reservation for a later cancel.
    Granted {
        act: u64,
        tat_after: u64,
        generation: u64,
    },
    /// Not granted; `earliest` is when the same request could be granted, or
    /// `None` if never under this quota (n > burst, or a zero rate).
    Denied { earliest: Option<u64> },
}

/// What one `(state, params)` pair says about a request.
#[derive(Debug, Clone, Copy)]
enum Verdict {
    Unlimited,
    /// Granted: usable at `act`; `new` is the state after taking it.
    Take {
        act: u64,
        new: u64,
    },
    Deny(Option<u64>),
}

impl Decision {
    /// A grant usable at `act` that leaves the state at `tat_after`.
    #[inline]
    fn granted(act: u64, tat_after: u64, generation: u64) -> Self {
        Decision::Granted {
            act,
            tat_after,
            generation,
        }
    }
}

/// Where one round of a decision leaves it.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// The answer.
    Done(Decision),
    /// Another decision wrote the state first: decide again from this one.
    Again(u64),
    /// The state moved under a non-writing answer, or a quota change holds
    /// it: back off, re-read it and decide again.
    Wait,
}

/// What [`Gcra::standing`] reports.
#[cfg(feature = "http")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Standing {
    /// Whole tokens in the bucket.
    pub(crate) available: u32,
    /// Nanoseconds until one more whole token is there; `None` when the
    /// bucket is full or never refills.
    pub(crate) next_token_ns: Option<u64>,
    /// Nanoseconds per token.
    pub(crate) period: u64,
    /// `burst × period`.
    pub(crate) tau: u64,
    /// A bucket that never refills ([`Rate::zero`](crate::Rate::zero)).
    pub(crate) frozen: bool,
}

#[cfg(feature = "http")]
impl Standing {
    fn of(tat: u64, p: Params, now: u64) -> Option<Self> {
        if p.period == 0 {
            return None;
        }
        let now_eff = p.now_eff(now);
        let debt = tat.saturating_sub(now_eff);
        let whole = p.tau.saturating_sub(debt) / p.period;
        let full = whole.saturating_mul(p.period) >= p.tau;
        // One more token once the debt has shrunk to `tau - (whole + 1) × period`.
        let next_token_ns = (!full && p.frozen == 0).then(|| {
            let target = p.tau - (whole + 1) * p.period;
            debt.saturating_sub(target).max(1)
        });
        Some(Standing {
            available: u32::try_from(whole).unwrap_or(u32::MAX),
            next_token_ns,
            period: p.period,
            tau: p.tau,
            frozen: p.frozen != 0,
        })
    }
}

/// The bucket.
///
/// `state` is the only word written by decisions; it sits on its own cache
/// line so that contended CASes do not keep invalidating the line holding
/// the (read-mostly) parameters.
#[derive(Debug)]
pub(crate) struct Gcra {
    state: CacheLine<AtomicU64>,
    params: CacheLine<AtomicParams>,
    config: Mutex<Config>,
}

#[derive(Debug)]
struct AtomicParams {
    period: AtomicU64,
    tau: AtomicU64,
    frozen: AtomicU64,
    generation: AtomicU64,
}

/// Pads and aligns its content to a cache line (128 bytes covers the
/// adjacent-line prefetcher of x86 and the 128-byte lines of Apple's chips).
#[derive(Debug)]
#[repr(align(128))]
struct CacheLine<T>(T);

impl<T> std::ops::Deref for CacheLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl Gcra {
    /// A full bucket at `now` (which must be > 0).
    pub(crate) fn new(quota: Quota, now: u64) -> Self {
        let params = Params::from_quota(&quota, now);
        Gcra {
            state: CacheLine(AtomicU64::new(now)),
            params: CacheLine(AtomicParams {
                period: AtomicU64::new(params.period),
                tau: AtomicU64::new(params.tau),
                frozen: AtomicU64::new(params.frozen),
                generation: AtomicU64::new(0),
            }),
            config: Mutex::new(Config {
                quota,
                params,
                generation: 0,
                history: VecDeque::new(),
            }),
        }
    }

    /// The current quota.
    pub(crate) fn quota(&self) -> Quota {
        lock(&self.config).quota
    }

    /// The bucket as an HTTP response reports it: whole tokens available at
    /// `now` and nanoseconds until the next one, from one consistent
    /// `(state, params)` pair. `None` for an unlimited rate.
    #[cfg(feature = "http")]
    pub(crate) fn standing(&self, now: u64) -> Option<Standing> {
        loop {
            let cur = self.load_state();
            let p = self.params();
            if self.state.load(Ordering::Acquire) != cur {
                continue;
            }
            return Standing::of(cur, p, now);
        }
    }

    /// Reads a consistent `(state, params)` pair's parameters after `state`
    /// was read (Acquire pairs with the writer's Release stores).
    #[inline]
    fn params(&self) -> Params {
        Params {
            period: self.params.period.load(Ordering::Acquire),
            tau: self.params.tau.load(Ordering::Acquire),
            frozen: self.params.frozen.load(Ordering::Acquire),
        }
    }

    /// Reads the state word, waiting out a quota change in progress.
    #[inline]
    fn load_state(&self) -> u64 {
        let mut spins = 0;
        loop {
            let s = self.state.load(Ordering::Acquire);
            if s != LOCKED {
                return s;
            }
            backoff(&mut spins);
        }
    }

    /// Decides on `n` tokens at `now`; `mode` says whether to look, take
    /// now, or reserve. Every answer comes from one consistent
    /// `(state, params)` pair (see the module docs): a grant that takes
    /// tokens by its CAS from the state it read, any other answer by
    /// finding that state unchanged after reading the parameters.
    #[inline]
    pub(crate) fn decide(&self, mode: Mode, n: u32, now: u64) -> Decision {
        let mut spins = 0;
        let mut cur = self.load_state();
        loop {
            let (p, generation) = self.params_for(mode);
            let step = match Self::verdict(&p, cur, n, now, mode.max_wait()) {
                Verdict::Take { act, new } if mode.takes() && n > 0 => {
                    self.commit(cur, new, Decision::granted(act, new, generation))
                }
                // The refusal, the common answer that writes nothing, has
                // an arm of its own: its path does not branch on the others.
                Verdict::Deny(earliest) => self.confirm(cur, Decision::Denied { earliest }),
                Verdict::Unlimited => self.confirm(cur, Decision::granted(now, cur, generation)),
                // A peek, or a take of nothing: granted, nothing written.
                Verdict::Take { act, .. } => {
                    let tat_after = cur.max(p.now_eff(now));
                    self.confirm(cur, Decision::granted(act, tat_after, generation))
                }
            };
            match step {
                Step::Done(decision) => return decision,
                Step::Again(found) => cur = found,
                Step::Wait => {
                    backoff(&mut spins);
                    cur = self.load_state();
                }
            }
        }
    }

    /// The parameters (read after `state`), and the quota generation when
    /// `mode` needs it: only a reservation does, to be cancelled across a
    /// quota change (0 otherwise).
    #[inline]
    fn params_for(&self, mode: Mode) -> (Params, u64) {
        let p = self.params();
        let generation = match mode {
            Mode::Reserve { .. } => self.params.generation.load(Ordering::Acquire),
            Mode::Peek | Mode::Take => 0,
        };
        (p, generation)
    }

    /// Writes a grant's new state by CAS from `cur`, the state it was
    /// decided on: the CAS checks that no decision or quota change came in
    /// between (a change always leaves another value behind). A failed CAS
    /// hands back the state it found (read with Acquire, like
    /// `load_state`, so the parameters read next are at least as new), to
    /// decide again from at once: losing to another decision is progress,
    /// not a reason to pause. Only a quota change in progress (`LOCKED`) is
    /// waited out.
    #[inline]
    fn commit(&self, cur: u64, new: u64, granted: Decision) -> Step {
        match self
            .state
            .compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Step::Done(granted),
            Err(found) if found != LOCKED => Step::Again(found),
            Err(_) => Step::Wait,
        }
    }

    /// Confirms an answer that writes nothing: it stands if the state has
    /// not moved since `cur` was read, before the parameters (otherwise a
    /// quota change may have been half seen, and the decision is made
    /// again).
    #[inline]
    fn confirm(&self, cur: u64, answer: Decision) -> Step {
        if self.state.load(Ordering::Acquire) == cur {
            Step::Done(answer)
        } else {
            Step::Wait
        }
    }

    /// The GCRA arithmetic for one `(state, params)` pair.
    #[inline]
    fn verdict(p: &Params, cur: u64, n: u32, now: u64, max_wait: u64) -> Verdict {
        if p.period == 0 {
            return Verdict::Unlimited;
        }
        let now_eff = p.now_eff(now);
        let inc = match u64::from(n).checked_mul(p.period) {
            Some(inc) if inc <= p.tau => inc,
            _ => return Verdict::Deny(None),
        };
        let new = cur.max(now_eff) + inc;
        let conform = new.saturating_sub(p.tau);
        if conform > now_eff {
            if p.frozen != 0 {
                return Verdict::Deny(None);
            }
            if conform - now > max_wait {
                return Verdict::Deny(Some(conform));
            }
        }
        let act = if p.frozen != 0 { now } else { conform.max(now) };
        Verdict::Take { act, new }
    }

    /// Whole tokens available at `now` (0 while in debt); `None` when
    /// unlimited.
    pub(crate) fn available(&self, now: u64) -> Option<u32> {
        loop {
            let cur = self.load_state();
            let p = self.params();
            // Re-read: if a change slipped in between, try again.
            if self.state.load(Ordering::Acquire) != cur {
                continue;
            }
            if p.period == 0 {
                return None;
            }
            let now_eff = p.now_eff(now);
            let debt = cur.saturating_sub(now_eff);
            let tokens = p.tau.saturating_sub(debt) / p.period;
            return Some(u32::try_from(tokens).unwrap_or(u32::MAX));
        }
    }

    /// Installs a new quota at `now`, keeping the token count (Go's
    /// `SetLimitAt`/`SetBurstAt`): tokens already spent stay spent, a larger
    /// burst does not refill the bucket, a smaller one caps it.
    pub(crate) fn set_quota(&self, quota: Quota, now: u64) {
        let mut cfg = lock(&self.config);
        let old = cfg.params;
        let mut new = Params::from_quota(&quota, now);
        if new.frozen != 0 && old.frozen != 0 {
            // Stay frozen at the same instant: nothing refilled meanwhile.
            new.frozen = old.frozen;
        }
        let generation = cfg.generation + 1;
        // Writers are serialized by `config`, so `state` is never LOCKED here.
        let cur = self.state.swap(LOCKED, Ordering::AcqRel);
        let mut tat = transform(cur, &old, &new, now);
        if tat == cur {
            // Never write back the value a decider may have read with the old
            // parameters (ABA). One nanosecond of difference: less debt when
            // the bucket is full (any value <= now is "full"), more otherwise.
            tat = if tat <= new.now_eff(now) {
                tat - 1
            } else {
                tat + 1
            };
        }
        self.params.period.store(new.period, Ordering::Release);
        self.params.tau.store(new.tau, Ordering::Release);
        self.params.frozen.store(new.frozen, Ordering::Release);
        self.params.generation.store(generation, Ordering::Release);
        self.state.store(tat, Ordering::Release);
        cfg.quota = quota;
        cfg.params = new;
        cfg.generation = generation;
        if cfg.history.len() == HISTORY {
            cfg.history.pop_front();
        }
        cfg.history.push_back(Change {
            gen_after: generation,
            old,
            new,
            now,
        });
    }

    /// Cancels a reservation of `n` tokens granted for `act` with
    /// `tat_after` under `generation`, at `now`. Returns the tokens given
    /// back (as Go's `Reservation.CancelAt`: the tokens reserved after this
    /// one are not given back, and nothing is once `act` has passed).
    pub(crate) fn cancel(
        &self,
        n: u32,
        act: u64,
        tat_after: u64,
        generation: u64,
        now: u64,
    ) -> u32 {
        let cfg = lock(&self.config);
        let p = cfg.params;
        if n == 0 || p.period == 0 || act < now {
            return 0;
        }
        // Carry the reservation's mark across later quota changes.
        let mut mark = tat_after;
        if generation != cfg.generation {
            let mut next = generation + 1;
            for ch in cfg.history.iter().filter(|c| c.gen_after > generation) {
                if ch.gen_after != next {
                    return 0; // older than the history we keep
                }
                mark = transform(mark, &ch.old, &ch.new, ch.now);
                next += 1;
            }
            if next != cfg.generation + 1 {
                return 0;
            }
        }
        let full = u64::from(n).saturating_mul(p.period);
        let mut spins = 0;
        loop {
            // `config` is held, so no quota change can be in progress.
            let cur = self.state.load(Ordering::Acquire);
            let after = cur.saturating_sub(mark);
            let restore = full.saturating_sub(after);
            if restore == 0 {
                return 0;
            }
            let new = cur.saturating_sub(restore).max(1);
            match self
                .state
                .compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return u32::try_from(restore / p.period).unwrap_or(u32::MAX),
                Err(_) => backoff(&mut spins),
            }
        }
    }
}

/// Maps a TAT under `old` parameters to the TAT under `new` that leaves the
/// same number of tokens at `now` (capped at the new burst).
fn transform(x: u64, old: &Params, new: &Params, now: u64) -> u64 {
    let new_eff = new.now_eff(now);
    if new.period == 0 || old.period == 0 {
        // To unlimited: the value is unused. From unlimited: a full bucket,
        // as Go refills an `Inf` limiter completely.
        return new_eff;
    }
    let old_eff = old.now_eff(now);
    let debt_old = i128::from(x.max(old_eff) - old_eff);
    // Tokens left, in old nanoseconds (negative while reservations are due),
    // converted to new nanoseconds, rounded down (never more tokens).
    let tokens_old = i128::from(old.tau) - debt_old;
    let tokens_new = (tokens_old * i128::from(new.period)).div_euclid(i128::from(old.period));
    let debt_new = (i128::from(new.tau) - tokens_new).clamp(0, i128::from(MAX_TAU_NS) * 2);
    // The clamp bounds the debt, so this fits comfortably in u64.
    new_eff + u64::try_from(debt_new).unwrap_or(MAX_TAU_NS)
}

const _: () = assert!(ZERO_RATE_PERIOD_NS > 0);

#[cfg(all(test, not(loom)))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Rate;

    const S: u64 = 1_000_000_000; // clock origin (any positive value)
    const D: u64 = 100_000_000; // 100 ms

    fn gcra(rate: Rate) -> Gcra {
        Gcra::new(rate.to_quota(None).unwrap(), S)
    }

    fn granted(d: Decision) -> bool {
        matches!(d, Decision::Granted { .. })
    }

    #[test]
    fn burst_then_pace() {
        let g = gcra(Rate::per_second(10).burst(2));
        assert!(granted(g.decide(Mode::Take, 1, S)));
        assert!(granted(g.decide(Mode::Take, 1, S)));
        assert_eq!(
            g.decide(Mode::Take, 1, S),
            Decision::Denied {
                earliest: Some(S + D)
            }
        );
        assert!(granted(g.decide(Mode::Take, 1, S + D)));
        assert_eq!(g.available(S + D), Some(0));
        assert_eq!(g.available(S + 3 * D), Some(2));
    }

    #[test]
    fn transform_keeps_tokens() {
        let old = Params {
            period: 2 * D,
            tau: 4 * D,
            frozen: 0,
        };
        let new = Params {
            period: D,
            tau: 2 * D,
            frozen: 0,
        };
        // 3 tokens of debt beyond an empty bucket... at t2 with tat t8:
        // tokens = 2 - 3 = -1, at the new rate tat = t2 + 3d.
        assert_eq!(transform(S + 8 * D, &old, &new, S + 2 * D), S + 5 * D);
        // A full bucket stays full.
        assert_eq!(transform(S, &old, &new, S + 2 * D), S + 2 * D);
    }
}
