//! [`QueueReport`], [`QueueError`], and the counters behind them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use weir_context::Cause;

use crate::error::RedisFailure;

/// What a [`QueueConsumer`](super::QueueConsumer) did: every delivery it
/// read, and how each one ended.
///
/// The law ([`is_balanced`](Self::is_balanced)):
///
/// `read = acknowledged + retried + dead_lettered + released + abandoned + in_flight`
///
/// `reclaimed` counts the deliveries of `read` that came from another
/// (dead or stalled) consumer's pending entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueReport {
    /// The queue's name.
    pub queue: String,
    /// This consumer's name in the group.
    pub consumer: String,
    /// Deliveries taken from Redis: new entries and reclaimed ones.
    pub read: u64,
    /// Of those, reclaimed from other consumers (`XAUTOCLAIM`).
    pub reclaimed: u64,
    /// Acknowledged after success (and deleted from the stream).
    pub acknowledged: u64,
    /// Failed, and added again for another delivery.
    pub retried: u64,
    /// Moved to the dead-letter stream with their error: failed on their
    /// last delivery, could not be decoded, or delivered too often without
    /// an outcome.
    pub dead_lettered: u64,
    /// Read but not started, and given back to the other consumers at
    /// once (on `close`, or by [`Delivery::release`](super::Delivery::release)).
    pub released: u64,
    /// Ended with no outcome recorded in Redis: dropped without an
    /// outcome, cancelled, the outcome's call to Redis failed, or another
    /// consumer had reclaimed the entry. They stay pending in Redis and are
    /// reclaimed after the visibility timeout.
    pub abandoned: u64,
    /// Read and not yet ended (held by the caller or the hand-off).
    pub in_flight: u64,
    /// Calls to Redis that failed or timed out.
    pub redis_failures: u64,
    /// Healthy -> degraded changes.
    pub outages: u64,
    /// From the start to the end of the run (or to now).
    pub elapsed: Duration,
}

impl QueueReport {
    /// Deliveries that ended, one way or another.
    pub fn finished(&self) -> u64 {
        self.acknowledged + self.retried + self.dead_lettered + self.released + self.abandoned
    }

    /// Whether every read delivery is accounted for (see the law above).
    pub fn is_balanced(&self) -> bool {
        self.read == self.finished() + self.in_flight
    }
}

impl fmt::Display for QueueReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = vec![
            format!("{} / {}", self.queue, self.consumer),
            self.read.to_string(),
            self.reclaimed.to_string(),
            self.acknowledged.to_string(),
            self.retried.to_string(),
            self.dead_lettered.to_string(),
            self.released.to_string(),
            self.abandoned.to_string(),
            self.in_flight.to_string(),
        ];
        weir_context::__private::write_table(
            f,
            &[
                "queue / consumer",
                "read",
                "reclaimed",
                "acked",
                "retried",
                "dead",
                "released",
                "abandoned",
                "in flight",
            ],
            &[row],
        )
    }
}

/// Why a consumer's run ended early, or why an outcome could not be
/// recorded.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The consumer was cancelled ([`cancel`](super::QueueConsumer::cancel),
    /// or its context was cancelled or passed its deadline), with the cause.
    #[error("queue consumer stopped: {0}")]
    Stopped(Cause),
    /// [`shutdown`](super::QueueConsumer::shutdown)'s grace period ran out:
    /// the deliveries still in flight were abandoned (they are reclaimed by
    /// the other consumers).
    #[error("queue consumer did not finish within its grace period of {0:?}")]
    GraceExpired(Duration),
    /// Redis did not record an outcome in time; the entry stays pending and
    /// is reclaimed after the visibility timeout.
    #[error("queue: {0}")]
    Redis(RedisFailure),
}

/// How one delivery ended (what it is counted as).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Acknowledged,
    Retried,
    DeadLettered,
    Released,
    Abandoned,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) read: AtomicU64,
    pub(crate) reclaimed: AtomicU64,
    acknowledged: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    released: AtomicU64,
    abandoned: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) failures: AtomicU64,
}

impl Counters {
    /// A delivery was read (`reclaimed`: from another consumer).
    pub(crate) fn read(&self, reclaimed: bool) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.read.fetch_add(1, Ordering::Relaxed);
        if reclaimed {
            self.reclaimed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A delivery ended; returns the deliveries still in flight.
    pub(crate) fn ended(&self, how: Ending) -> u64 {
        self.ended_many(how, 1)
    }

    /// `n` deliveries ended the same way; returns the deliveries still in
    /// flight.
    pub(crate) fn ended_many(&self, how: Ending, n: u64) -> u64 {
        let c = match how {
            Ending::Acknowledged => &self.acknowledged,
            Ending::Retried => &self.retried,
            Ending::DeadLettered => &self.dead_lettered,
            Ending::Released => &self.released,
            Ending::Abandoned => &self.abandoned,
        };
        c.fetch_add(n, Ordering::Relaxed);
        self.in_flight.fetch_sub(n, Ordering::AcqRel) - n
    }

    pub(crate) fn report(
        &self,
        queue: &str,
        consumer: &str,
        outages: u64,
        elapsed: Duration,
    ) -> QueueReport {
        let load = |a: &AtomicU64| a.load(Ordering::Acquire);
        QueueReport {
            queue: queue.to_owned(),
            consumer: consumer.to_owned(),
            read: load(&self.read),
            reclaimed: load(&self.reclaimed),
            acknowledged: load(&self.acknowledged),
            retried: load(&self.retried),
            dead_lettered: load(&self.dead_lettered),
            released: load(&self.released),
            abandoned: load(&self.abandoned),
            in_flight: load(&self.in_flight),
            redis_failures: load(&self.failures),
            outages,
            elapsed,
        }
    }
}
