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
//! only push), so the queue is a `VecDeque` behind a `std::sync::Mutex`. The
//! lock is held only for a push or a pop, never across an `.await`. The single
//! consumer is woken through an [`AtomicWaker`], which lets the receiver
//! implement [`Stream`] without boxing a `Notified` future.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures::Stream;
use futures::task::AtomicWaker;
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

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    senders: usize,
    receiver_alive: bool,
}

#[derive(Debug)]
struct Shared<T> {
    state: Mutex<State<T>>,
    rx_waker: AtomicWaker,
    capacity: usize,
    policy: ShedPolicy,
    name: Arc<str>,
    sent: AtomicU64,
    dropped: AtomicU64,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No code path panics while holding the lock, and the state stays
        // consistent after any single push/pop, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

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
    shared: Arc<Shared<T>>,
}

/// The receiving side of a [`Shedder`] queue: [`recv`](ShedReceiver::recv)
/// or use it as a [`Stream`]. There is one receiver per queue.
///
/// Dropping it closes the queue: the items still queued are dropped and every
/// later [`Shedder::offer`] returns [`Offer::Closed`].
pub struct ShedReceiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Shedder<T> {
    /// Creates a queue holding at most `capacity` items, shedding by `policy`
    /// when full. Returns the sending and the receiving side. A capacity
    /// above [`MAX_CAPACITY`](crate::MAX_CAPACITY) is lowered to it; nothing
    /// is allocated for the queue until items arrive.
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
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                // Allocated on first use, so a huge capacity costs nothing up front.
                queue: VecDeque::new(),
                senders: 1,
                receiver_alive: true,
            }),
            rx_waker: AtomicWaker::new(),
            capacity,
            policy,
            name,
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        Ok((
            Shedder {
                shared: Arc::clone(&shared),
            },
            ShedReceiver { shared },
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
        let outcome = {
            let mut state = shared.lock();
            if !state.receiver_alive {
                return Offer::Closed(item);
            }
            if state.queue.len() < shared.capacity {
                state.queue.push_back(item);
                Offer::Sent
            } else {
                match shared.policy {
                    ShedPolicy::DropNewest => Offer::Dropped(item),
                    ShedPolicy::DropOldest => {
                        let evicted = state.queue.pop_front();
                        state.queue.push_back(item);
                        match evicted {
                            Some(old) => Offer::Evicted(old),
                            // Unreachable: a full queue has a front (capacity >= 1).
                            None => Offer::Sent,
                        }
                    }
                }
            }
        };
        match &outcome {
            Offer::Sent => {
                shared.sent.fetch_add(1, Ordering::Relaxed);
                shared.rx_waker.wake();
            }
            Offer::Evicted(_) => {
                shared.sent.fetch_add(1, Ordering::Relaxed);
                shared.record_drop();
                shared.rx_waker.wake();
            }
            Offer::Dropped(_) => shared.record_drop(),
            Offer::Closed(_) => {}
        }
        outcome
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
        self.shared.lock().queue.len()
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
        !self.shared.lock().receiver_alive
    }
}

impl<T> Clone for Shedder<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Shedder {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for Shedder<T> {
    fn drop(&mut self) {
        let last = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            state.senders == 0
        };
        if last {
            self.shared.rx_waker.wake();
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
        let mut state = self.shared.lock();
        match state.queue.pop_front() {
            Some(item) => Ok(item),
            None if state.senders == 0 => Err(ShedTryRecvError::Disconnected),
            None => Err(ShedTryRecvError::Empty),
        }
    }

    /// Polls for the next item (the building block of [`recv`](Self::recv)
    /// and the [`Stream`] impl).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        // Fast path, then register and check again so a wake between the
        // first check and the registration is not missed.
        if let Some(ready) = self.poll_once() {
            return Poll::Ready(ready);
        }
        self.shared.rx_waker.register(cx.waker());
        match self.poll_once() {
            Some(ready) => Poll::Ready(ready),
            None => Poll::Pending,
        }
    }

    fn poll_once(&mut self) -> Option<Option<T>> {
        let mut state = self.shared.lock();
        match state.queue.pop_front() {
            Some(item) => Some(Some(item)),
            None if state.senders == 0 => Some(None),
            None => None,
        }
    }

    /// How many items were shed so far (see [`Shedder::dropped`]).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// How many items are queued now.
    pub fn len(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// `true` when no item is queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `true` once every [`Shedder`] is dropped (items may still be queued).
    pub fn is_closed(&self) -> bool {
        self.shared.lock().senders == 0
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
        let queued = {
            let mut state = self.shared.lock();
            state.receiver_alive = false;
            std::mem::take(&mut state.queue)
        };
        // The items' destructors run outside the lock.
        drop(queued);
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
