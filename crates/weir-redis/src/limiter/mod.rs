//! [`SharedRateLimiter`]: one GCRA token bucket per key, shared by every
//! replica through Redis.

mod backend;
mod breaker;
mod builder;
mod fallback;
mod lease;
#[cfg(feature = "tower")]
mod tower;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_context::{Cause, Context};
use weir_rate::{Rate, WaitError};

use crate::error::{RedisFailure, bounded};
use backend::{Backend, Op, Params, Reply};
use breaker::{Admit, Breaker};
use fallback::Fallback;
use lease::{LeaseBook, Outcome, Step};

pub use builder::SharedRateLimiterBuilder;
#[cfg(feature = "tower")]
pub use tower::{SharedRateLimit, SharedRateLimitLayer};

/// The largest wait handed to the script, in microseconds: far beyond any
/// bucket (`burst × period` is at most 2^52 µs) and exact in Lua's doubles.
const MAX_WAIT_US: u64 = 1 << 52;

/// What a [`SharedRateLimiter`] answers while Redis does not (a call ran
/// past the timeout or failed).
///
/// Whatever the policy, no call waits longer than the limiter's timeout
/// for Redis; while it stays down, one call per
/// [`recheck_every`](SharedRateLimiterBuilder::recheck_every) interval
/// probes it and every other call gets the policy's answer at once. Every
/// answer of the policy is counted in [`SharedRateStats::policy_decisions`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum OutagePolicy {
    /// Grant everything: availability over the limit. Each replica then
    /// admits whatever it is asked.
    FailOpen,
    /// Refuse everything with [`SharedRateError::Unavailable`]: the limit
    /// over availability. The default.
    FailClosed,
    /// Each replica enforces `share` of the rate (and of the burst, at
    /// least 1) with a local [`weir_rate::RateLimiter`] per key. With `N`
    /// replicas, `share = 1.0 / N` keeps the total near the shared limit.
    Local {
        /// The fraction of the rate each replica enforces on its own, in
        /// `(0, 1]`.
        share: f64,
    },
}

impl OutagePolicy {
    /// [`OutagePolicy::Local`] with `share`.
    pub fn local(share: f64) -> Self {
        Self::Local { share }
    }
}

/// Which answer granted the tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrantSource {
    /// The shared bucket in Redis.
    Redis,
    /// Tokens this replica had leased earlier (see
    /// [`lease`](SharedRateLimiterBuilder::lease)).
    Lease,
    /// Redis did not answer and the policy is [`OutagePolicy::FailOpen`].
    FailOpen,
    /// Redis did not answer; the replica's local limiter granted them
    /// ([`OutagePolicy::Local`]).
    Local,
}

/// Tokens were granted; says by whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    source: GrantSource,
}

impl Grant {
    /// Who granted the tokens.
    pub fn source(&self) -> GrantSource {
        self.source
    }

    /// Whether the outage policy granted them (Redis did not answer).
    pub fn is_degraded(&self) -> bool {
        matches!(self.source, GrantSource::FailOpen | GrantSource::Local)
    }
}

/// Why [`SharedRateLimiter::try_acquire_n`] granted nothing.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SharedRateError {
    /// The bucket lacks the tokens. `retry_after` is when the same request
    /// could be granted if nobody else takes tokens meanwhile; `None` when
    /// it never can be (more tokens than the burst).
    #[error("{}", limited_message(*.retry_after))]
    Limited {
        /// When to retry.
        retry_after: Option<Duration>,
    },
    /// Redis did not answer and the policy is [`OutagePolicy::FailClosed`].
    #[error("shared rate limiter unavailable: {0}")]
    Unavailable(RedisFailure),
}

fn limited_message(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!("rate limited: retry in {d:?}"),
        None => "rate limited: more tokens than the burst can never be granted".to_owned(),
    }
}

impl SharedRateError {
    /// When to retry: the bucket's answer for [`Limited`](Self::Limited);
    /// `None` when the request can never be granted, or Redis is down.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Limited { retry_after } => *retry_after,
            Self::Unavailable(_) => None,
        }
    }

    /// Whether the bucket refused (as opposed to Redis being down).
    pub fn is_limited(&self) -> bool {
        matches!(self, Self::Limited { .. })
    }
}

/// Why [`SharedRateLimiter::acquire_n`] granted nothing.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SharedWaitError {
    /// More tokens than the burst: they could never be granted at once.
    #[error("cannot acquire {requested} tokens: more than the burst of {burst}")]
    InsufficientCapacity {
        /// The tokens asked for.
        requested: u32,
        /// The burst of the bucket that refused.
        burst: u32,
    },
    /// The tokens would only be ready after the context's deadline; nothing
    /// was taken and nothing was waited for.
    #[error("waiting for {requested} token(s) would exceed the context's deadline")]
    WouldExceedDeadline {
        /// The tokens asked for.
        requested: u32,
    },
    /// The context was cancelled, or its deadline passed, first.
    #[error("rate: wait stopped: {0}")]
    Stopped(Cause),
    /// Redis did not answer and the policy is [`OutagePolicy::FailClosed`].
    #[error("shared rate limiter unavailable: {0}")]
    Unavailable(RedisFailure),
}

/// Counters of a [`SharedRateLimiter`] (all replicas' clones of one handle
/// share them; other processes have their own).
///
/// Every decision counts once by its source and once by its outcome, so
/// `granted + refused + unavailable + stopped = redis_decisions +
/// lease_decisions + policy_decisions` ([`is_balanced`](Self::is_balanced)).
/// Calls that end before any source decides (more tokens than the burst, a
/// context already cancelled, a context cancelled during the Redis call)
/// are not counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedRateStats {
    /// Decisions that granted the tokens.
    pub granted: u64,
    /// Decisions that refused them (the bucket, or the local limiter, lacked them).
    pub refused: u64,
    /// Decisions that answered [`SharedRateError::Unavailable`] (fail closed).
    pub unavailable: u64,
    /// Waits whose context ended while they slept for reserved tokens.
    pub stopped: u64,
    /// Decisions Redis made.
    pub redis_decisions: u64,
    /// Decisions answered from the local lease, without a round trip.
    pub lease_decisions: u64,
    /// Decisions the outage policy made while Redis did not answer.
    pub policy_decisions: u64,
    /// Redis calls that failed or timed out.
    pub redis_failures: u64,
    /// Of those, the ones that timed out.
    pub timeouts: u64,
    /// Healthy -> degraded changes.
    pub outages: u64,
    /// Degraded -> healthy changes.
    pub recoveries: u64,
    /// `SCRIPT LOAD`s: the first use, and one after each `NOSCRIPT`.
    pub script_loads: u64,
    /// Leased tokens thrown away because the key already held a lease's
    /// worth (under-admission, never over).
    pub lease_discarded: u64,
}

impl SharedRateStats {
    /// Every decision counted.
    pub fn decisions(&self) -> u64 {
        self.redis_decisions + self.lease_decisions + self.policy_decisions
    }

    /// Whether the outcomes add up to the sources (see the type's docs).
    pub fn is_balanced(&self) -> bool {
        self.granted + self.refused + self.unavailable + self.stopped == self.decisions()
    }
}

impl fmt::Display for SharedRateStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<Vec<String>> = [
            ("granted", self.granted),
            ("refused", self.refused),
            ("unavailable", self.unavailable),
            ("stopped", self.stopped),
            ("by redis", self.redis_decisions),
            ("by lease", self.lease_decisions),
            ("by outage policy", self.policy_decisions),
            ("redis failures", self.redis_failures),
            ("  of which timeouts", self.timeouts),
            ("outages", self.outages),
            ("recoveries", self.recoveries),
            ("script loads", self.script_loads),
            ("lease tokens discarded", self.lease_discarded),
        ]
        .into_iter()
        .map(|(name, n)| vec![name.to_owned(), n.to_string()])
        .collect();
        weir_context::__private::write_table(f, &["shared rate limiter", "count"], &rows)
    }
}

#[derive(Debug, Default)]
struct Counters {
    granted: AtomicU64,
    refused: AtomicU64,
    unavailable: AtomicU64,
    stopped: AtomicU64,
    redis: AtomicU64,
    lease: AtomicU64,
    policy: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A GCRA token bucket per key, kept in Redis and shared by every process
/// that uses the same Redis and key prefix: `weir_rate::RateLimiter`'s
/// algorithm and verbs, across replicas.
///
/// Each decision is one atomic Lua script (loaded once, run by its hash,
/// loaded again after `NOSCRIPT`) that reads the server's clock
/// (`redis.call('TIME')`), so replicas' clocks do not matter. A key's
/// bucket lives at `<prefix>:{<key>}` (hash-tagged, so a Redis Cluster
/// routes it) and expires when the bucket is full again.
///
/// Clones share one connection, one set of counters and one lease book.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_rate::Rate;
/// use weir_redis::{GrantSource, OutagePolicy, SharedRateLimiter};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = weir_redis::LocalRedisServer::start().await?;
/// # let url = server.url();
/// // Every replica builds the same limiter on the same Redis.
/// let limiter = SharedRateLimiter::builder(Rate::per_minute(600).burst(20))
///     .prefix("api")
///     .timeout(Duration::from_millis(50))
///     .on_outage(OutagePolicy::local(0.25)) // 4 replicas
///     .build_url(&url)?;
/// for _ in 0..20 {
///     let grant = limiter.try_acquire("tenant-7").await?;
///     assert_eq!(grant.source(), GrantSource::Redis);
/// }
/// let refused = limiter.try_acquire("tenant-7").await.unwrap_err();
/// assert!(refused.retry_after().unwrap() <= Duration::from_millis(100));
/// limiter.try_acquire("tenant-8").await?; // its own bucket
/// # Ok(())
/// # }
/// ```
///
/// # Precision
///
/// The script counts in whole microseconds: the period (`per / count` of
/// the [`Rate`]) is rounded up to a microsecond, so the limiter never
/// grants faster than asked, and rates above one token per microsecond are
/// a [`ConfigError`](weir_context::ConfigError). Replicas should use the
/// same rate for a key; each decision uses the rate of the replica that
/// makes it.
///
/// # Redis slow or down
///
/// Every call to Redis is bounded by the [`timeout`](SharedRateLimiterBuilder::timeout);
/// past it (or on any error) the [`OutagePolicy`] answers, the change to
/// *degraded* is logged once (`WARN`) and counted, and from then on one
/// call per [`recheck_every`](SharedRateLimiterBuilder::recheck_every)
/// interval probes Redis while the others get the policy's answer at once.
/// The first probe that succeeds logs the return to *healthy* (`INFO`) and
/// the limiter uses Redis again.
///
/// # The local lease
///
/// With [`lease(k)`](SharedRateLimiterBuilder::lease) a replica that needs
/// tokens takes up to `k` in the same round trip (as many as the bucket
/// has) and spends the rest locally, with no round trip, until they run
/// out. One caller at a time refills a key's lease; the others wait for
/// that refill and take from it (or share its refusal). A replica holds
/// fewer than `k` unspent tokens per key, so over any window of `T` the
/// keys admit at most `rate·T + burst + replicas × k` (the over-admission
/// bound; the tests measure it). Tokens held by a replica that gets no
/// more requests are not used by the others (under-admission of at most
/// the same amount). A busy key gets at most `k` decisions per round trip.
///
/// # Cancellation and drop
///
/// Nothing here spawns a task. Dropping a `try_acquire` future may leave
/// its decision made in Redis (tokens taken, unused); dropping a waiting
/// `acquire_n` future keeps its reserved tokens taken (never
/// over-admits); cancelling its context instead gives them back when no
/// later reservation depends on them.
#[derive(Clone)]
pub struct SharedRateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    prefix: String,
    rate: Rate,
    params: Params,
    timeout: Duration,
    policy: OutagePolicy,
    fallback: Option<Fallback>,
    breaker: Breaker,
    lease: Option<Mutex<LeaseBook>>,
    counters: Counters,
}

impl fmt::Debug for SharedRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRateLimiter")
            .field("prefix", &self.inner.prefix)
            .field("rate", &self.inner.rate)
            .field("timeout", &self.inner.timeout)
            .field("policy", &self.inner.policy)
            .field("degraded", &self.inner.breaker.health().is_degraded())
            .finish_non_exhaustive()
    }
}

impl SharedRateLimiter {
    /// Starts configuring a limiter for `rate` (its burst defaults to 1, as
    /// for `weir_rate::RateLimiter`).
    pub fn builder(rate: Rate) -> SharedRateLimiterBuilder {
        SharedRateLimiterBuilder::new(rate)
    }

    /// The rate, burst included.
    pub fn rate(&self) -> Rate {
        self.inner.rate
    }

    /// The burst (bucket size).
    pub fn burst(&self) -> u32 {
        self.inner.params.burst
    }

    /// The Redis key of `key`'s bucket: `<prefix>:{<key>}`.
    pub fn redis_key(&self, key: &str) -> String {
        self.inner.redis_key(key)
    }

    /// Tokens this replica holds in its lease for `key` (0 without a lease).
    pub fn leased(&self, key: &str) -> u32 {
        self.inner
            .lease
            .as_ref()
            .map_or(0, |book| crate::lock(book).held(key))
    }

    /// Whether the last calls found Redis unreachable (the outage policy
    /// answers).
    pub fn is_degraded(&self) -> bool {
        self.inner.breaker.health().is_degraded()
    }

    /// The counters so far.
    pub fn stats(&self) -> SharedRateStats {
        let i = &*self.inner;
        let c = &i.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SharedRateStats {
            granted: load(&c.granted),
            refused: load(&c.refused),
            unavailable: load(&c.unavailable),
            stopped: load(&c.stopped),
            redis_decisions: load(&c.redis),
            lease_decisions: load(&c.lease),
            policy_decisions: load(&c.policy),
            redis_failures: load(&c.failures),
            timeouts: load(&c.timeouts),
            outages: i.breaker.health().outages(),
            recoveries: i.breaker.health().recoveries(),
            script_loads: i.backend.script_loads(),
            lease_discarded: i.lease.as_ref().map_or(0, |b| crate::lock(b).discarded()),
        }
    }

    /// Takes one token for `key` if the bucket has one now (Go's `Allow`,
    /// redis_rate's `Allow`). See [`try_acquire_n`](Self::try_acquire_n).
    ///
    /// # Errors
    ///
    /// As [`try_acquire_n`](Self::try_acquire_n).
    ///
    /// # Cancel safety
    ///
    /// As [`try_acquire_n`](Self::try_acquire_n).
    pub async fn try_acquire(&self, key: &str) -> Result<Grant, SharedRateError> {
        self.try_acquire_n(key, 1).await
    }

    /// Takes `n` tokens for `key` if they are all there now; takes nothing
    /// otherwise. One round trip, or none when the lease holds `n` tokens.
    /// `n = 0` is granted unless the bucket is in debt (reservations).
    ///
    /// # Errors
    ///
    /// [`SharedRateError::Limited`] with when to retry (`None` at once,
    /// without a round trip, for `n` above the burst);
    /// [`SharedRateError::Unavailable`] when Redis does not answer and the
    /// policy is fail-closed (the local policy refuses with `Limited`).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future during the round trip may leave the tokens
    /// taken in Redis and unused (never more admitted than the limit).
    pub async fn try_acquire_n(&self, key: &str, n: u32) -> Result<Grant, SharedRateError> {
        let inner = &*self.inner;
        if n > inner.params.burst {
            return Err(SharedRateError::Limited { retry_after: None });
        }
        if let Some(book) = &inner.lease {
            return inner.try_with_lease(book, key, n).await;
        }
        let op = Op::Take {
            n,
            want: n,
            max_wait_us: 0,
        };
        match inner.ask(&inner.redis_key(key), op).await {
            Ok(reply) => inner.redis_answer(&reply),
            Err(failure) => inner.policy_try(key, n, failure),
        }
    }

    /// [`acquire_n`](Self::acquire_n) for one token.
    pub fn acquire<'a>(&'a self, key: &'a str) -> SharedAcquire<'a> {
        self.acquire_n(key, 1)
    }

    /// Waits until `n` tokens of `key` can be taken and takes them (Go's
    /// `WaitN`): one round trip reserves the tokens in Redis for the instant
    /// they conform (so waiters are served in the order Redis saw them,
    /// across replicas), then it sleeps until then. Give the wait a context
    /// with [`SharedAcquire::context`]: if its deadline comes before the
    /// tokens could, it fails at once without taking anything.
    ///
    /// # Errors
    ///
    /// The future resolves to:
    ///
    /// - [`SharedWaitError::InsufficientCapacity`] at once for `n` above the
    ///   burst;
    /// - [`SharedWaitError::WouldExceedDeadline`] when the tokens would be
    ///   ready only after the context's deadline (nothing taken);
    /// - [`SharedWaitError::Stopped`] with the context's cause when it ended
    ///   first (the reserved tokens are given back unless a later
    ///   reservation already depends on them);
    /// - [`SharedWaitError::Unavailable`] when Redis does not answer and the
    ///   policy is fail-closed. Under the local policy the replica's local
    ///   limiter waits instead.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future while it sleeps keeps the reserved tokens taken
    /// (unused, never over-admitted); cancel the context instead to give
    /// them back.
    pub fn acquire_n<'a>(&'a self, key: &'a str, n: u32) -> SharedAcquire<'a> {
        SharedAcquire {
            limiter: self,
            key,
            n,
            ctx: None,
        }
    }

    /// The wait behind [`SharedAcquire`].
    async fn wait_n(&self, key: &str, ctx: &Context, n: u32) -> Result<Grant, SharedWaitError> {
        let inner = &*self.inner;
        let burst = inner.params.burst;
        if n > burst {
            return Err(SharedWaitError::InsufficientCapacity {
                requested: n,
                burst,
            });
        }
        if ctx.is_cancelled() {
            return Err(SharedWaitError::Stopped(ctx.stopped().into_cause()));
        }
        if let Some(book) = &inner.lease
            && crate::lock(book).take(key, n)
        {
            bump(&inner.counters.lease);
            bump(&inner.counters.granted);
            return Ok(Grant {
                source: GrantSource::Lease,
            });
        }
        let max_wait_us = ctx.remaining().map_or(MAX_WAIT_US, |d| {
            u64::try_from(d.as_micros()).map_or(MAX_WAIT_US, |us| us.min(MAX_WAIT_US))
        });
        let redis_key = inner.redis_key(key);
        let op = Op::Take {
            n,
            want: n,
            max_wait_us,
        };
        let reply = match ctx.run(inner.ask(&redis_key, op)).await {
            Err(stopped) => return Err(SharedWaitError::Stopped(stopped.into_cause())),
            Ok(Err(failure)) => return inner.policy_wait(key, ctx, n, failure).await,
            Ok(Ok(reply)) => reply,
        };
        bump(&inner.counters.redis);
        if !reply.ok {
            bump(&inner.counters.refused);
            return Err(if reply.wait_us < 0 {
                SharedWaitError::InsufficientCapacity {
                    requested: n,
                    burst,
                }
            } else {
                SharedWaitError::WouldExceedDeadline { requested: n }
            });
        }
        let wait = Duration::from_micros(u64::try_from(reply.wait_us).unwrap_or(0));
        if wait.is_zero() {
            bump(&inner.counters.granted);
            return Ok(Grant {
                source: GrantSource::Redis,
            });
        }
        match ctx.run(tokio::time::sleep(wait)).await {
            Ok(()) => {
                bump(&inner.counters.granted);
                Ok(Grant {
                    source: GrantSource::Redis,
                })
            }
            Err(stopped) => {
                bump(&inner.counters.stopped);
                let refund = Op::Refund {
                    n,
                    mark: reply.tat_us,
                };
                // Best effort: a refund that fails leaves the tokens taken.
                let _ = bounded(
                    inner.timeout,
                    inner.backend.eval(&redis_key, inner.params, refund),
                )
                .await;
                Err(SharedWaitError::Stopped(stopped.into_cause()))
            }
        }
    }

    /// Whole tokens in `key`'s bucket now (0 while reservations are
    /// pending); takes nothing. Tokens leased by replicas count as taken.
    ///
    /// # Errors
    ///
    /// [`RedisFailure`] when Redis does not answer (no outage policy applies
    /// to a count).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it takes nothing.
    pub async fn available(&self, key: &str) -> Result<u32, RedisFailure> {
        let inner = &*self.inner;
        let reply = inner.ask(&inner.redis_key(key), Op::Peek).await?;
        Ok(u32::try_from(reply.available.max(0)).unwrap_or(u32::MAX))
    }
}

fn retry_after(reply: &Reply) -> Option<Duration> {
    u64::try_from(reply.wait_us).ok().map(Duration::from_micros)
}

impl Inner {
    fn redis_key(&self, key: &str) -> String {
        format!("{}:{{{key}}}", self.prefix)
    }

    /// One Redis call, unless the breaker says Redis is down; failures and
    /// recoveries are counted and logged here.
    async fn ask(&self, redis_key: &str, op: Op) -> Result<Reply, RedisFailure> {
        if let Admit::Skip(last) = self.breaker.admit() {
            return Err(last);
        }
        let result = bounded(self.timeout, self.backend.eval(redis_key, self.params, op)).await;
        match &result {
            Ok(_) => {
                if self.breaker.success()
                    && let Some(fallback) = &self.fallback
                {
                    fallback.clear();
                }
            }
            Err(failure) => {
                bump(&self.counters.failures);
                if failure.is_timeout() {
                    bump(&self.counters.timeouts);
                }
                self.breaker.failure(failure);
            }
        }
        result
    }

    /// Counts Redis's answer to a `try` and turns it into the result.
    fn redis_answer(&self, reply: &Reply) -> Result<Grant, SharedRateError> {
        bump(&self.counters.redis);
        if reply.ok {
            bump(&self.counters.granted);
            Ok(Grant {
                source: GrantSource::Redis,
            })
        } else {
            bump(&self.counters.refused);
            Err(SharedRateError::Limited {
                retry_after: retry_after(reply),
            })
        }
    }

    /// `try_acquire_n` with a lease: from the tokens held; else one refill
    /// per key at a time, the other callers waiting for it.
    async fn try_with_lease(
        &self,
        book: &Mutex<LeaseBook>,
        key: &str,
        n: u32,
    ) -> Result<Grant, SharedRateError> {
        let mut seen = None;
        loop {
            let step = crate::lock(book).begin(key, n, seen);
            match step {
                Step::Took => {
                    bump(&self.counters.lease);
                    bump(&self.counters.granted);
                    return Ok(Grant {
                        source: GrantSource::Lease,
                    });
                }
                Step::Refused(retry_after) => {
                    bump(&self.counters.lease);
                    bump(&self.counters.refused);
                    return Err(SharedRateError::Limited { retry_after });
                }
                Step::Failed(failure) => return self.policy_try(key, n, failure),
                Step::Wait { notify, round } => {
                    let waiting = Waiting {
                        book,
                        key,
                        armed: true,
                    };
                    let woken = notify.notified();
                    tokio::pin!(woken);
                    woken.as_mut().enable();
                    if !crate::lock(book).ended_since(key, round) {
                        woken.await;
                    }
                    waiting.disarm();
                    seen = Some(round);
                }
                Step::Refill { want } => {
                    let mut refill = Refill {
                        book,
                        key,
                        n,
                        done: false,
                    };
                    let op = Op::Take {
                        n,
                        want,
                        max_wait_us: 0,
                    };
                    return match self.ask(&self.redis_key(key), op).await {
                        Ok(reply) => {
                            refill.finish(if reply.ok {
                                Outcome::Granted(reply.granted)
                            } else {
                                Outcome::Refused {
                                    retry: retry_after(&reply),
                                    at: tokio::time::Instant::now(),
                                }
                            });
                            self.redis_answer(&reply)
                        }
                        Err(failure) => {
                            refill.finish(Outcome::Failed(failure.clone()));
                            self.policy_try(key, n, failure)
                        }
                    };
                }
            }
        }
    }

    fn policy_try(
        &self,
        key: &str,
        n: u32,
        failure: RedisFailure,
    ) -> Result<Grant, SharedRateError> {
        bump(&self.counters.policy);
        let local = match (&self.policy, &self.fallback) {
            (OutagePolicy::Local { .. }, Some(fallback)) => fallback.limiter(key),
            _ => None,
        };
        match (self.policy, local) {
            (OutagePolicy::FailOpen, _) => {
                bump(&self.counters.granted);
                Ok(Grant {
                    source: GrantSource::FailOpen,
                })
            }
            (OutagePolicy::Local { .. }, Some(limiter)) => match limiter.try_acquire_n(n) {
                Ok(()) => {
                    bump(&self.counters.granted);
                    Ok(Grant {
                        source: GrantSource::Local,
                    })
                }
                Err(not_until) => {
                    bump(&self.counters.refused);
                    Err(SharedRateError::Limited {
                        retry_after: not_until.wait_time(),
                    })
                }
            },
            _ => {
                bump(&self.counters.unavailable);
                Err(SharedRateError::Unavailable(failure))
            }
        }
    }

    async fn policy_wait(
        &self,
        key: &str,
        ctx: &Context,
        n: u32,
        failure: RedisFailure,
    ) -> Result<Grant, SharedWaitError> {
        bump(&self.counters.policy);
        let local = match (&self.policy, &self.fallback) {
            (OutagePolicy::Local { .. }, Some(fallback)) => fallback.limiter(key),
            _ => None,
        };
        let (counter, result) = match (self.policy, local) {
            (OutagePolicy::FailOpen, _) => (
                &self.counters.granted,
                Ok(Grant {
                    source: GrantSource::FailOpen,
                }),
            ),
            (OutagePolicy::Local { .. }, Some(limiter)) => {
                match limiter.acquire_n(n).context(ctx).await {
                    Ok(()) => (
                        &self.counters.granted,
                        Ok(Grant {
                            source: GrantSource::Local,
                        }),
                    ),
                    Err(WaitError::Stopped(cause)) => {
                        (&self.counters.stopped, Err(SharedWaitError::Stopped(cause)))
                    }
                    Err(WaitError::WouldExceedDeadline { requested }) => (
                        &self.counters.refused,
                        Err(SharedWaitError::WouldExceedDeadline { requested }),
                    ),
                    Err(WaitError::InsufficientCapacity(e)) => (
                        &self.counters.refused,
                        Err(SharedWaitError::InsufficientCapacity {
                            requested: e.requested(),
                            burst: e.burst(),
                        }),
                    ),
                    Err(_) => (
                        &self.counters.unavailable,
                        Err(SharedWaitError::Unavailable(failure)),
                    ),
                }
            }
            _ => (
                &self.counters.unavailable,
                Err(SharedWaitError::Unavailable(failure)),
            ),
        };
        bump(counter);
        result
    }
}

/// A lease refill in flight: finished exactly once, also when the future
/// that runs it is dropped (then with nothing known), so the key never
/// stays "refilling" and its waiters are always woken.
struct Refill<'a> {
    book: &'a Mutex<LeaseBook>,
    key: &'a str,
    n: u32,
    done: bool,
}

impl Refill<'_> {
    fn finish(&mut self, outcome: Outcome) {
        if !std::mem::replace(&mut self.done, true) {
            crate::lock(self.book).finish(self.key, self.n, outcome);
        }
    }
}

impl Drop for Refill<'_> {
    fn drop(&mut self) {
        self.finish(Outcome::Dropped);
    }
}

/// A caller waiting for another's refill; if its future is dropped, the
/// key's waiter count goes down with it.
struct Waiting<'a> {
    book: &'a Mutex<LeaseBook>,
    key: &'a str,
    armed: bool,
}

impl Waiting<'_> {
    /// It woke: [`LeaseBook::begin`] counts it out.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.armed {
            crate::lock(self.book).left(self.key);
        }
    }
}

/// The wait of [`SharedRateLimiter::acquire`] and
/// [`acquire_n`](SharedRateLimiter::acquire_n): `.await` it, after giving it
/// a context with [`context`](Self::context) if the wait should end with
/// one.
#[must_use = "futures do nothing unless awaited"]
pub struct SharedAcquire<'a> {
    limiter: &'a SharedRateLimiter,
    key: &'a str,
    n: u32,
    ctx: Option<Context>,
}

impl SharedAcquire<'_> {
    /// Bounds the wait by `ctx` (a `Context`, `&Context` or
    /// `CancellationToken`): its cancellation stops the wait, and a
    /// deadline the tokens could not meet fails it at once.
    pub fn context(mut self, ctx: impl Into<Context>) -> Self {
        self.ctx = Some(ctx.into());
        self
    }
}

impl std::fmt::Debug for SharedAcquire<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedAcquire")
            .field("key", &self.key)
            .field("n", &self.n)
            .field("context", &self.ctx.is_some())
            .finish()
    }
}

impl<'a> std::future::IntoFuture for SharedAcquire<'a> {
    type Output = Result<Grant, SharedWaitError>;
    type IntoFuture =
        std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let ctx = self.ctx.unwrap_or_default();
            self.limiter.wait_n(self.key, &ctx, self.n).await
        })
    }
}

#[cfg(test)]
mod tests;
