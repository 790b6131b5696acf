//! [`KeyedRateLimiter`]: one bucket per key (per client, per route).

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use weir_context::ConfigError;

use crate::acquire::AcquireTokens;
use crate::error::NotUntil;
use crate::label::{DEFAULT_NAME, Label};
use crate::limiter::RateLimiter;
use crate::rate::{Quota, Rate};

/// One [`RateLimiter`] per key, created on first use with the default
/// [`Rate`] or the key's override. Clones share the map.
///
/// Buckets are kept until [`retain_recent`](Self::retain_recent) removes the
/// ones that are full again (indistinguishable from a new bucket), so call it
/// periodically — e.g. from a [`Ticker`](crate::Ticker) task — to keep memory
/// bounded under many keys. Overrides are kept separately and survive
/// eviction.
///
/// # Examples
///
/// ```
/// # mod weir { pub use weir_rate as rate; }
/// use weir::rate::{KeyedRateLimiter, Rate};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build()?;
/// # rt.block_on(async {
/// let per_client = KeyedRateLimiter::new(Rate::per_second(1).burst(2))?;
/// per_client.set_override("vip", Rate::per_second(100).burst(50))?;
///
/// assert!(per_client.try_acquire(&"alice").is_ok());
/// assert!(per_client.try_acquire(&"alice").is_ok());
/// assert!(per_client.try_acquire(&"alice").is_err()); // alice's burst is spent
/// assert!(per_client.try_acquire(&"bob").is_ok()); // bob has his own bucket
/// for _ in 0..50 {
///     per_client.try_acquire(&"vip")?;
/// }
/// assert_eq!(per_client.len(), 3);
///
/// tokio::time::advance(std::time::Duration::from_secs(5)).await;
/// assert_eq!(per_client.retain_recent(), 3); // all full again: dropped
/// assert!(per_client.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok(())
/// # }
/// ```
pub struct KeyedRateLimiter<K> {
    inner: Arc<Mutex<State<K>>>,
}

struct State<K> {
    /// The buckets' name (see [`KeyedRateLimiter::named`]).
    label: Arc<Label>,
    default: Quota,
    overrides: HashMap<K, Quota>,
    buckets: HashMap<K, RateLimiter>,
}

impl<K> Clone for KeyedRateLimiter<K> {
    fn clone(&self) -> Self {
        KeyedRateLimiter {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K> fmt::Debug for KeyedRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("KeyedRateLimiter")
            .field("name", &state.label.name)
            .field("default", &state.default.rate)
            .field("overrides", &state.overrides.len())
            .field("buckets", &state.buckets.len())
            .finish()
    }
}

impl<K: Hash + Eq + Clone> KeyedRateLimiter<K> {
    /// A keyed limiter whose buckets use `default` unless overridden.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (construct `"rate"`) for a rate that cannot work;
    /// see [`Rate`] for each case.
    pub fn new(default: Rate) -> Result<Self, ConfigError> {
        let quota = default.to_quota(None)?;
        Ok(KeyedRateLimiter {
            inner: Arc::new(Mutex::new(State {
                label: Label::new(DEFAULT_NAME),
                default: quota,
                overrides: HashMap::new(),
                buckets: HashMap::new(),
            })),
        })
    }

    /// Names the limiter (default `"limiter"`): the `limiter` label its
    /// buckets' decisions are recorded under with the `metrics` feature (one
    /// series for all keys; see docs/observability.md). Clones share the
    /// name; bucket handles taken out with [`limiter`](Self::limiter)
    /// before keep the name they had.
    #[must_use = "named returns the named limiter"]
    pub fn named(self, name: impl AsRef<str>) -> Self {
        {
            let mut state = self.state();
            let label = Label::new(name.as_ref());
            for bucket in state.buckets.values_mut() {
                bucket.label = Arc::clone(&label);
            }
            state.label = label;
        }
        self
    }

    /// The limiter's name (see [`named`](Self::named)).
    pub fn name(&self) -> String {
        self.state().label.name.to_string()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<K>> {
        // The map is only changed by single inserts and removes.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives `key` its own quota. An existing bucket switches at once,
    /// keeping its token count (see [`RateLimiter::set_rate`]).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a rate that cannot work (see [`Rate`]); nothing
    /// changes.
    pub fn set_override(&self, key: K, rate: Rate) -> Result<(), ConfigError> {
        let quota = rate.to_quota(None)?;
        let mut state = self.state();
        if let Some(bucket) = state.buckets.get(&key) {
            bucket.set_rate(quota.rate)?;
        }
        state.overrides.insert(key, quota);
        Ok(())
    }

    /// Puts `key` back on the default quota. Returns whether it had an
    /// override.
    pub fn remove_override(&self, key: &K) -> bool {
        let mut state = self.state();
        let had = state.overrides.remove(key).is_some();
        if had && let Some(bucket) = state.buckets.get(key) {
            // The default was checked in `new`, so this cannot fail.
            let _ = bucket.set_rate(state.default.rate);
        }
        had
    }

    /// The quota `key` gets.
    pub fn rate_for(&self, key: &K) -> Rate {
        let state = self.state();
        state.overrides.get(key).unwrap_or(&state.default).rate
    }

    /// The bucket of `key`, created if needed. Holding the returned clone
    /// keeps the bucket from being evicted.
    pub fn limiter(&self, key: &K) -> RateLimiter {
        let mut state = self.state();
        Self::bucket(&mut state, key).clone()
    }

    fn bucket<'a>(state: &'a mut State<K>, key: &K) -> &'a RateLimiter {
        if !state.buckets.contains_key(key) {
            let quota = state.overrides.get(key).copied().unwrap_or(state.default);
            state.buckets.insert(
                key.clone(),
                RateLimiter::from_quota(quota, Arc::clone(&state.label)),
            );
        }
        match state.buckets.get(key) {
            Some(b) => b,
            None => unreachable!("inserted above"),
        }
    }

    /// Runs `f` on `key`'s bucket (made if needed) under the map's lock,
    /// without cloning the bucket: the HTTP layer's per-request decision.
    #[cfg(feature = "http")]
    pub(crate) fn with_limiter<R>(&self, key: &K, f: impl FnOnce(&RateLimiter) -> R) -> R {
        let mut state = self.state();
        f(Self::bucket(&mut state, key))
    }

    /// Takes one token from `key`'s bucket if there is one now.
    ///
    /// # Errors
    ///
    /// [`NotUntil`] as for [`RateLimiter::try_acquire`].
    pub fn try_acquire(&self, key: &K) -> Result<(), NotUntil> {
        self.try_acquire_n(key, 1)
    }

    /// Takes `n` tokens from `key`'s bucket if they are there now.
    ///
    /// # Errors
    ///
    /// [`NotUntil`] as for [`RateLimiter::try_acquire_n`].
    pub fn try_acquire_n(&self, key: &K, n: u32) -> Result<(), NotUntil> {
        let mut state = self.state();
        Self::bucket(&mut state, key).try_acquire_n(n)
    }

    /// Waits for one token from `key`'s bucket. See
    /// [`acquire_n`](Self::acquire_n).
    ///
    /// # Errors
    ///
    /// As for [`RateLimiter::acquire_n`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future takes nothing.
    pub fn acquire(&self, key: &K) -> AcquireTokens<'static> {
        self.acquire_n(key, 1)
    }

    /// Waits for `n` tokens from `key`'s bucket, as
    /// [`RateLimiter::acquire_n`] does (bound or cancel it with
    /// [`.context(ctx)`](AcquireTokens::context)). Keys do not wait for each
    /// other. The bucket is found (or made) now, and the future holds it, so
    /// it is not evicted while the future lives.
    ///
    /// # Errors
    ///
    /// A [`WaitError`](crate::WaitError), as for [`RateLimiter::acquire_n`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future takes nothing.
    pub fn acquire_n(&self, key: &K, n: u32) -> AcquireTokens<'static> {
        AcquireTokens::owned(self.limiter(key), n)
    }

    /// Drops every bucket that is full again and not in use (no
    /// [`limiter`](Self::limiter) clone, waiter or reservation holds it): such
    /// a bucket is exactly what a new one would be, so nothing is lost.
    /// Returns how many were dropped, and shrinks the map.
    pub fn retain_recent(&self) -> usize {
        let mut state = self.state();
        let before = state.buckets.len();
        state.buckets.retain(|_, b| !b.is_idle());
        state.buckets.shrink_to_fit();
        before - state.buckets.len()
    }

    /// The number of buckets held.
    pub fn len(&self) -> usize {
        self.state().buckets.len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
