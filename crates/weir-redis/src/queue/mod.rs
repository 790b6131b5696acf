//! A durable job queue on Redis Streams consumer groups: bounded enqueue,
//! batch reads, acknowledgement after success (at-least-once), retries
//! then a dead-letter stream, reclaim of a dead consumer's jobs, graceful
//! shutdown.
//!
//! | item | role |
//! |---|---|
//! | [`QueueProducer`] | enqueues serde jobs; waits (or fails) when the queue holds `max_len` jobs not yet done |
//! | [`QueueConsumer`] | reads, hands on [`Delivery`]s as a [`DeliveryStream`] or feeds a `Pool`; reclaims, renews, shuts down gracefully |
//! | [`Delivery`], [`AckHandle`] | a job and the handle that records its outcome: `ack`, `fail`, `release`; dropped = delivered again later |
//! | [`QueueReport`] | what a consumer did; `read = acknowledged + retried + dead_lettered + released + abandoned + in_flight` |
//!
//! # The keys
//!
//! A queue `name` with prefix `p` (default `weir:queue`) is the stream
//! `p:{name}` and the dead-letter stream `p:{name}:dead` (one hash tag, so
//! both live on one Redis Cluster node and scripts may touch both), read
//! by one consumer group.
//!
//! # Guarantees
//!
//! - **At-least-once**: a job leaves the queue only when its success is
//!   acknowledged or it is dead-lettered; a consumer that dies leaves its
//!   jobs pending, and another one reclaims them after the visibility
//!   timeout. Jobs in progress when a consumer dies may run twice;
//!   acknowledged ones never run again.
//! - **Bounded**: the stream holds at most `max_len` jobs not yet done
//!   (acknowledged entries are deleted with their acknowledgement); the
//!   dead-letter stream keeps about `dead_letter_max_len` entries.
//! - **Durable**: as durable as the server: with `appendonly yes` and
//!   `appendfsync always`, every acknowledged enqueue and every
//!   acknowledged outcome survives a crash of Redis.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use weir_redis::{QueueConsumer, QueueProducer};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct Email { to: String }
//!
//! # #[tokio::main]
//! # async fn main() -> anyhow::Result<()> {
//! # let server = weir_redis::LocalRedisServer::start().await?;
//! # let url = server.url();
//! let producer = QueueProducer::<Email>::builder("emails").build_url(&url)?;
//! producer.enqueue(&Email { to: "ann@example.com".into() }).await?;
//!
//! let consumer = QueueConsumer::<Email>::builder("emails").start_url(&url)?;
//! let pool = weir_core::Pool::builder()
//!     .workers(8)
//!     .build(|email: Email| async move { anyhow::Ok(println!("sending to {}", email.to)) })?;
//! consumer.feed(pool)?; // acks after success, retries and dead-letters failures
//! while producer.backlog().await? > 0 {
//!     tokio::time::sleep(Duration::from_millis(10)).await;
//! }
//! // On shutdown: stop reading, finish what was started.
//! let report = consumer.shutdown(Duration::from_secs(10)).await?;
//! assert_eq!(report.acknowledged, 1);
//! assert!(report.is_balanced());
//! # Ok(())
//! # }
//! ```

mod builder;
mod consumer;
mod delivery;
mod feed;
mod producer;
mod report;
mod scripts;
mod shared;
mod tasks;
mod wire;

use std::time::Duration;

use weir_context::ConfigError;

pub use builder::QueueConsumerBuilder;
pub use consumer::QueueConsumer;
pub use delivery::{AckHandle, Delivery, DeliveryStream, FailOutcome};
pub use producer::{
    DeadLetter, EnqueueBatchError, EnqueueError, QueueProducer, QueueProducerBuilder,
    QueueProducerStats,
};
pub use report::{QueueError, QueueReport};

/// The default first part of a queue's keys.
const DEFAULT_PREFIX: &str = "weir:queue";

/// The longest per-call timeout.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// A queue's Redis keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    pub(crate) stream: String,
    pub(crate) dead: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str, name: &str) -> Self {
        let stream = format!("{prefix}:{{{name}}}");
        Self {
            dead: format!("{stream}:dead"),
            stream,
        }
    }
}

fn check_name(construct: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::invalid(
            construct.to_owned(),
            "name",
            "must not be empty",
        ));
    }
    Ok(())
}

fn check_timeout(construct: &str, timeout: Duration) -> Result<(), ConfigError> {
    if timeout.is_zero() {
        return Err(ConfigError::zero(construct.to_owned(), "timeout"));
    }
    if timeout > MAX_TIMEOUT {
        return Err(ConfigError::invalid(
            construct.to_owned(),
            "timeout",
            "must be at most an hour",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let k = Keys::new("weir:queue", "orders");
        assert_eq!(k.stream, "weir:queue:{orders}");
        assert_eq!(k.dead, "weir:queue:{orders}:dead");
    }

    #[derive(Debug, serde::Deserialize)]
    struct Job;

    fn client() -> redis::Client {
        redis::Client::open("redis://127.0.0.1:1/").unwrap()
    }

    #[tokio::test]
    async fn bad_settings_are_config_errors() {
        let b = || QueueConsumer::<Job>::builder("q");
        let cases = [
            QueueConsumer::<Job>::builder(""),
            b().group(""),
            b().consumer(""),
            b().batch(0),
            b().batch(10_001),
            b().prefetch(0),
            b().block(Duration::ZERO),
            b().block(Duration::from_secs(61)),
            b().max_deliveries(0),
            b().visibility_timeout(Duration::from_millis(29)),
            b().dead_letter_max_len(0),
            b().timeout(Duration::ZERO),
            b().timeout(Duration::MAX),
        ];
        for case in cases {
            let shown = format!("{case:?}");
            let err = case.start(client()).unwrap_err();
            assert!(err.to_string().starts_with("queue `"), "{shown}: {err}");
        }
        let p = || QueueProducer::<u32>::builder("q");
        for case in [
            p().max_len(0),
            p().timeout(Duration::ZERO),
            QueueProducer::<u32>::builder(""),
        ] {
            assert!(case.build(client()).is_err());
        }
        // Huge values are lowered, not refused.
        let c = b()
            .prefetch(usize::MAX)
            .visibility_timeout(Duration::MAX)
            .dead_letter_max_len(u64::MAX)
            .start(client())
            .unwrap();
        c.cancel();
        let _ = c.join().await;
    }

    #[test]
    fn outside_a_runtime() {
        let err = QueueConsumer::<Job>::builder("q")
            .start(client())
            .unwrap_err();
        assert_eq!(err.problem(), &weir_context::Problem::NoRuntime);
        let err = QueueProducer::<u32>::builder("q")
            .build(client())
            .unwrap_err();
        assert_eq!(err.problem(), &weir_context::Problem::NoRuntime);
    }
}
