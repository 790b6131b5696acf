//! The drop pattern: a bounded queue for producers that must never block.
//!
//! A [`Shedder`] is the sending side of a bounded queue whose
//! [`offer`](Shedder::offer) is a plain function: it returns at once, whether
//! or not there is room. When the queue is full, the [`ShedPolicy`] decides what is
//! dropped: the new item ([`ShedPolicy::DropNewest`]) or the oldest queued one
//! ([`ShedPolicy::DropOldest`]). Either way the dropped item is handed back in the
//! [`Offer`], the shedder's drop counter goes up and a `warn` event is logged
//! (on the 1st, 2nd, 4th, 8th, ... drop, so a flood of drops does not flood the
//! log). The consumer side is a [`ShedReceiver`], which has
//! [`recv`](ShedReceiver::recv) and implements [`Stream`].
//!
//! Use it where a producer must keep its own pace: a UDP/DNS server loop that
//! hands requests to a handler, a metrics or telemetry emitter, a UI event
//! source. Do not use it where every item matters: use a bounded
//! `tokio::sync::mpsc` channel (backpressure) instead.
//!
//! # Examples
//!
//! ```
//! use weir_core::shed::{Offer, ShedPolicy, Shedder};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let (tx, mut rx) = Shedder::new(2, ShedPolicy::DropNewest)?;
//! assert!(tx.offer(1).is_sent());
//! assert!(tx.offer(2).is_sent());
//! // The queue is full: the new item is refused and handed back.
//! assert_eq!(tx.offer(3), Offer::Dropped(3));
//! assert_eq!(tx.dropped(), 1);
//! drop(tx);
//! assert_eq!(rx.recv().await, Some(1));
//! assert_eq!(rx.recv().await, Some(2));
//! assert_eq!(rx.recv().await, None); // every Shedder is gone and the queue is drained
//! # Ok(())
//! # }
//! ```
//!
//! # Settings
//!
//! A capacity of 0 is a [`ConfigError`] from [`Shedder::new`]; a capacity
//! above [`MAX_CAPACITY`](crate::MAX_CAPACITY) is lowered to it. Nothing is
//! allocated up front: the queue grows as items arrive, so a huge capacity
//! costs nothing until it is used.
//!
//! # No context, no join: a documented deviation
//!
//! Other constructs take a [`Context`](crate::Context) with `.context(..)`
//! and end with `join`. A `Shedder` spawns no task and never waits: there is
//! nothing to cancel and nothing to wait for. It ends when its sides are
//! dropped, and its counters ([`Shedder::sent`], [`Shedder::dropped`]) are
//! its report, readable at any time.
//!
//! # Closing, dropping and cancellation
//!
//! - When every [`Shedder`] clone is dropped, the receiver still yields the
//!   queued items, then `None`.
//! - When the [`ShedReceiver`] is dropped, the items still queued are dropped
//!   with it (they are not counted as shed) and every later `offer` returns
//!   [`Offer::Closed`] with the item.
//! - `offer` cannot be cancelled: it does not await. [`ShedReceiver::recv`] is
//!   cancel safe.
//!
//! # Why not a channel crate
//!
//! `DropOldest` has to evict the oldest queued item from the sending side.
//! Neither `tokio::sync::mpsc` nor `async-channel` can do that (a sender can
//! only push), so the queue is a lane of weir's own hand-off (`weir-chan`),
//! whose evicting push takes the oldest item out under the lane's lock. The
//! lock is held only for a push or a pop, never across an `.await`.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::Stream;
use weir_chan::lane::{LaneRx, LaneTx, TryRecvError, TrySendError, lane};
use weir_context::__private::check_capacity;
use weir_context::ConfigError;

/// What a full [`Shedder`] drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShedPolicy {
    /// Refuse the new item: [`offer`](Shedder::offer) returns
    /// [`Offer::Dropped`] with the item it was given. The queue keeps the
    /// oldest items (a server that serves requests in arrival order).
    DropNewest,
    /// Evict the oldest queued item to make room for the new one:
    /// [`offer`](Shedder::offer) queues the new item and returns
    /// [`Offer::Evicted`] with the evicted one. The queue keeps the newest
    /// items (a sensor reading or a price, where only the latest matters).
    DropOldest,
}

/// The outcome of [`Shedder::offer`]. Every variant but `Sent` hands an item
/// back, so nothing is lost without the caller seeing it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "an item may have been dropped; it is handed back in the Offer"]
pub enum Offer<T> {
    /// The item was queued; no item was dropped.
    Sent,
    /// The queue was full and the policy is [`ShedPolicy::DropNewest`]: the
    /// offered item was not queued and is handed back.
    Dropped(T),
    /// The queue was full and the policy is [`ShedPolicy::DropOldest`]: the
    /// offered item was queued and the oldest queued item, handed back here,
    /// was evicted to make room for it.
    Evicted(T),
    /// The [`ShedReceiver`] is gone: the offered item was not queued and is
    /// handed back. Not counted as a drop.
    Closed(T),
}

impl<T> Offer<T> {
    /// `true` for [`Offer::Sent`].
    pub fn is_sent(&self) -> bool {
        matches!(self, Offer::Sent)
    }

    /// `true` when an item was shed by the policy: [`Offer::Dropped`] or
    /// [`Offer::Evicted`].
    pub fn is_shed(&self) -> bool {
        matches!(self, Offer::Dropped(_) | Offer::Evicted(_))
    }

    /// `true` for [`Offer::Closed`].
    pub fn is_closed(&self) -> bool {
        matches!(self, Offer::Closed(_))
    }

    /// The item handed back, if any (the offered one for `Dropped` and
    /// `Closed`, the evicted one for `Evicted`).
    pub fn into_inner(self) -> Option<T> {
        match self {
            Offer::Sent => None,
            Offer::Dropped(item) | Offer::Evicted(item) | Offer::Closed(item) => Some(item),
        }
    }
}

/// What the senders share: the counters and settings (the queue is the
/// lane).
#[derive(Debug)]
struct Shared {
    capacity: usize,
    policy: ShedPolicy,
    name: Arc<str>,
    sent: AtomicU64,
    dropped: AtomicU64,
}

impl Shared {
    fn record_drop(&self) {
        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(
                shedder = %self.name,
                policy = ?self.policy,
                capacity = self.capacity,
                dropped = n,
                "queue full, item dropped (logged on the 1st, 2nd, 4th, 8th... drop)"
            );
        } else {
            tracing::trace!(shedder = %self.name, dropped = n, "queue full, item dropped");
        }
    }
}

/// The sending side of the drop pattern: [`offer`](Shedder::offer) never
/// blocks and never awaits.
///
/// Cheap to clone (an `Arc` inside); all clones feed the same queue and share
/// the counters. See the [module docs](self).
pub struct Shedder<T> {
    tx: LaneTx<T>,
    shared: Arc<Shared>,
}

/// The receiving side of a [`Shedder`] queue: [`recv`](ShedReceiver::recv)
/// or use it as a [`Stream`]. There is one receiver per queue.
///
/// Dropping it closes the queue: the items still queued are dropped and every
/// later [`Shedder::offer`] returns [`Offer::Closed`].
pub struct ShedReceiver<T> {
    rx: LaneRx<T>,
    shared: Arc<Shared>,
}

impl<T> Shedder<T> {
    /// Creates a queue holding at most `capacity` items, shedding by `policy`
    /// when full. Returns the sending and the receiving side. A capacity
    /// above [`MAX_CAPACITY`](crate::MAX_CAPACITY) is lowered to it; the
    /// queue allocates a few slots up front and grows as it fills.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] ([`Problem::Zero`](crate::Problem::Zero), construct
    /// ``"shedder `shedder`"``, setting `"capacity"`) when `capacity` is 0.
    pub fn new(
        capacity: usize,
        policy: ShedPolicy,
    ) -> Result<(Shedder<T>, ShedReceiver<T>), ConfigError> {
        Self::named("shedder", capacity, policy)
    }

    /// Like [`new`](Shedder::new), with a name for the tracing events
    /// (field `shedder`) and for its [`ConfigError`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the shedder when `capacity` is 0.
    pub fn named(
        name: impl Into<Arc<str>>,
        capacity: usize,
        policy: ShedPolicy,
    ) -> Result<(Shedder<T>, ShedReceiver<T>), ConfigError> {
        let name: Arc<str> = name.into();
        let capacity = check_capacity(format!("shedder `{name}`"), "capacity", capacity)?;
        // The lane allocates a few slots up front and grows as it fills, so
        // a huge capacity costs nothing until items arrive.
        let (tx, rx) = lane(capacity);
        let shared = Arc::new(Shared {
            capacity,
            policy,
            name,
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        Ok((
            Shedder {
                tx,
                shared: Arc::clone(&shared),
            },
            ShedReceiver { rx, shared },
        ))
    }

    /// Offers an item; returns at once.
    ///
    /// - room in the queue: the item is queued, [`Offer::Sent`];
    /// - full, [`ShedPolicy::DropNewest`]: [`Offer::Dropped`] with this item;
    /// - full, [`ShedPolicy::DropOldest`]: this item is queued, [`Offer::Evicted`]
    ///   with the oldest queued item;
    /// - receiver dropped: [`Offer::Closed`] with this item.
    ///
    /// A drop increments [`dropped`](Shedder::dropped) and logs a `warn`
    /// event (rate-limited to the 1st, 2nd, 4th, 8th... drop).
    ///
    /// This is not an `async fn`: it takes a short lock, never waits for the
    /// consumer and needs no runtime.
    pub fn offer(&self, item: T) -> Offer<T> {
        let shared = &*self.shared;
        match shared.policy {
            ShedPolicy::DropNewest => match self.tx.try_send(item) {
                Ok(()) => {
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                    Offer::Sent
                }
                Err(TrySendError::Full(item)) => {
                    shared.record_drop();
                    Offer::Dropped(item)
                }
                Err(TrySendError::Closed(item)) => Offer::Closed(item),
            },
            ShedPolicy::DropOldest => match self.tx.push_evicting(item) {
                Ok(evicted) => {
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                    match evicted {
                        None => Offer::Sent,
                        Some(old) => {
                            shared.record_drop();
                            Offer::Evicted(old)
                        }
                    }
                }
                Err(item) => Offer::Closed(item),
            },
        }
    }

    /// How many items were shed so far (refused by `DropNewest` plus evicted
    /// by `DropOldest`), over all clones.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// How many offered items were queued so far (including ones later
    /// evicted by `DropOldest`).
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// How many items are queued now.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    /// `true` when no item is queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most items the queue holds (the capacity asked for, lowered to
    /// [`MAX_CAPACITY`](crate::MAX_CAPACITY)).
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// The policy chosen at creation.
    pub fn policy(&self) -> ShedPolicy {
        self.shared.policy
    }

    /// `true` once the [`ShedReceiver`] is dropped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl<T> Clone for Shedder<T> {
    fn clone(&self) -> Self {
        Shedder {
            tx: self.tx.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> fmt::Debug for Shedder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shedder")
            .field("name", &self.shared.name)
            .field("capacity", &self.shared.capacity)
            .field("policy", &self.shared.policy)
            .field("sent", &self.sent())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl<T> ShedReceiver<T> {
    /// Receives the next item, waiting for one; `None` once every
    /// [`Shedder`] is dropped and the queue is empty.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped before it completes, no item is
    /// taken from the queue.
    pub async fn recv(&mut self) -> Option<T> {
        futures::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Takes the next item if one is queued, without waiting.
    ///
    /// # Errors
    ///
    /// [`ShedTryRecvError::Empty`] when nothing is queued and a [`Shedder`]
    /// is alive; [`ShedTryRecvError::Disconnected`] when nothing is queued
    /// and every `Shedder` is dropped.
    pub fn try_recv(&mut self) -> Result<T, ShedTryRecvError> {
        self.rx.try_recv().map_err(|e| match e {
            TryRecvError::Empty => ShedTryRecvError::Empty,
            TryRecvError::Disconnected => ShedTryRecvError::Disconnected,
        })
    }

    /// Polls for the next item (the building block of [`recv`](Self::recv)
    /// and the [`Stream`] impl).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.rx.poll_recv(cx)
    }

    /// How many items were shed so far (see [`Shedder::dropped`]).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// How many items are queued now.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// `true` when no item is queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `true` once every [`Shedder`] is dropped (items may still be queued).
    pub fn is_closed(&self) -> bool {
        self.rx.is_closed()
    }
}

impl<T> Stream for ShedReceiver<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.get_mut().poll_recv(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), None)
    }
}

impl<T> Drop for ShedReceiver<T> {
    fn drop(&mut self) {
        // Offers fail from now on; the items' destructors run here, outside
        // the lane's lock.
        drop(self.rx.close_and_take());
    }
}

impl<T> fmt::Debug for ShedReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShedReceiver")
            .field("name", &self.shared.name)
            .field("len", &self.len())
            .field("dropped", &self.dropped())
            .finish()
    }
}

/// Why [`ShedReceiver::try_recv`] returned no item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShedTryRecvError {
    /// Nothing is queued now; a [`Shedder`] is still alive.
    #[error("shed queue is empty")]
    Empty,
    /// Nothing is queued and every [`Shedder`] is dropped.
    #[error("shed queue is empty and every sender is gone")]
    Disconnected,
}
