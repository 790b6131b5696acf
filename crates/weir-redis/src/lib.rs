//! weir across processes: a shared rate limiter and a durable job queue on
//! Redis, for services that run as many replicas.
//!
//! | item | what it is |
//! |---|---|
//! | [`SharedRateLimiter`] | `weir_rate::RateLimiter`'s GCRA with its state in Redis: one atomic Lua script per decision on the server's clock, keyed, an outage policy, an optional local lease |
//! | `SharedRateLimitLayer` (feature `tower`) | a tower layer keyed by request on a [`SharedRateLimiter`] |
//! | [`QueueProducer`] | enqueues serde jobs on a Redis stream, bounded: producers wait or fail when it is full |
//! | [`QueueConsumer`] | reads a consumer group in batches, hands jobs on with an ack handle ([`Delivery`]), retries, dead-letters, reclaims a dead consumer's jobs; a source for a `Pipeline`, a feeder for a `Pool` |
//! | [`LocalRedisServer`] | a private `redis-server` on a free loopback port, for tests, examples and benches |
//!
//! Every call to Redis runs under a per-call timeout: a slow or unreachable
//! Redis is an error value or an explicit policy, never a hang, and each
//! construct logs the change to *degraded* and back to *healthy* once.
//!
//! # The client
//!
//! The [`redis`] crate (re-exported here) with tokio and its reconnecting
//! `ConnectionManager`: the most used Rust client, with `EVALSHA` scripts,
//! streams and automatic reconnection; the benches in `benches/redis.rs`
//! put its round trip beside the plain loops that the targets compare
//! with (docs/benchmarks.md).
//!
//! Use it through the `weir` facade with the `redis` feature:
//! `weir::redis::SharedRateLimiter`.
#![forbid(unsafe_code)]

pub use redis;

mod conn;
mod error;
mod health;
mod limiter;
pub mod queue;
mod script;
mod server;

pub use error::RedisFailure;
pub use limiter::{
    Grant, GrantSource, OutagePolicy, SharedAcquire, SharedRateError, SharedRateLimiter,
    SharedRateLimiterBuilder, SharedRateStats, SharedWaitError,
};
#[cfg(feature = "tower")]
pub use limiter::{SharedRateLimit, SharedRateLimitLayer};
pub use queue::{
    AckHandle, DeadLetter, Delivery, DeliveryStream, EnqueueBatchError, EnqueueError, FailOutcome,
    QueueConsumer, QueueConsumerBuilder, QueueError, QueueProducer, QueueProducerBuilder,
    QueueProducerStats, QueueReport,
};
pub use server::{INSTALL_HINT, LocalRedisServer, LocalServerError, LocalServerOptions};

/// Locks a std mutex, taking the data of a poisoned one: every critical
/// section here is a few assignments that leave the data consistent.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
