//! The queue between submitters and workers: the one place that knows how a
//! job travels from [`Pool::submit`](super::Pool::submit) to a worker.
//!
//! Two shapes, chosen by the builder's `queue(cap)`:
//!
//! * **Buffered** (`cap > 0`): a bounded `async_channel` of `cap` slots. Workers
//!   share the one receiver (MPMC, no `Mutex`). Submitters that wait for
//!   room keep their job: they only ever `try_send` and sleep on a
//!   [`Notify`] that workers ring, only when someone waits (one `SeqCst`
//!   load per job otherwise), with hysteresis: when a pop leaves the queue
//!   at most half full, or before a worker that freed a slot waits for
//!   anything itself. Under load a woken submitter so refills half the
//!   queue at once instead of one slot per wake-up; when the workers are
//!   slow (their jobs wait), room is announced at once.
//! * **Hand-off** (`cap == 0`): an unbounded channel whose admission is a
//!   [`Semaphore`] holding one permit per *idle* worker. A worker adds its
//!   permit when it starts waiting and a submitter takes one before it sends,
//!   so at most as many jobs are in flight to workers as workers are idle: the
//!   channel never holds more than that.
//!
//! The hand-off queue keeps the invariant `jobs in channel + free permits =
//! idle offers`.
//!
//! Besides jobs, the channel carries [`Msg::Wake`]: a shrinking `resize`
//! sends one per retiring worker (only if there is room or, in hand-off mode,
//! an idle worker) so that an idle worker wakes up and leaves. That keeps a
//! worker's idle wait a single `recv` (no extra wakers to register per idle
//! period); cancellation wakes idle workers by closing the queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, TryAcquireError};

/// What travels through the queue.
pub(crate) enum Msg<T> {
    /// A job.
    Item(T),
    /// Wake one idle worker so it looks at the pool's size again.
    Wake,
}

/// The item of a message handed back by a failed send of `Msg::Item`.
fn item<T>(msg: Msg<T>) -> T {
    match msg {
        Msg::Item(item) => item,
        // Every send of `Msg::Wake` is a `try_send` whose error is ignored
        // (see `QueueTx::wake`), so a `Wake` is never handed back here.
        Msg::Wake => unreachable!("a wake message is never handed back to a submitter"),
    }
}

/// Why a push without waiting failed; the item comes back.
pub(crate) enum TryPushError<T> {
    /// No room (buffered) or no idle worker (hand-off).
    Full(T),
    /// The queue is closed.
    Closed(T),
}

/// Why a push with a deadline failed; the item comes back.
pub(crate) enum PushTimeoutError<T> {
    /// No room came before the deadline.
    Timeout(T),
    /// The queue is closed.
    Closed(T),
}

/// State shared by both ends.
#[derive(Debug)]
struct Room {
    /// Hand-off mode: one permit per idle worker that offered itself.
    idle: Option<Semaphore>,
    /// Buffered mode: submitters waiting for room.
    waiters: AtomicUsize,
    /// Rung by workers while `waiters > 0`: after a pop that leaves the
    /// queue at or below `low_water`, or before a worker that popped since
    /// its last ring waits for anything (see [`QueueRx::settle`]).
    freed: Notify,
    /// Buffered mode: half the capacity.
    low_water: usize,
}

/// Creates a queue: `cap == 0` is the hand-off queue.
pub(crate) fn queue<T>(cap: usize) -> (QueueTx<T>, QueueRx<T>) {
    let (tx, rx, idle) = if cap == 0 {
        let (tx, rx) = async_channel::unbounded();
        (tx, rx, Some(Semaphore::new(0)))
    } else {
        let (tx, rx) = async_channel::bounded(cap);
        (tx, rx, None)
    };
    let room = Arc::new(Room {
        idle,
        waiters: AtomicUsize::new(0),
        freed: Notify::new(),
        low_water: cap / 2,
    });
    (
        QueueTx {
            tx,
            room: room.clone(),
        },
        QueueRx {
            rx,
            room,
            offered: false,
            owed: false,
        },
    )
}

/// The submitting end. Cloning it keeps the queue open; the queue closes
/// when the last clone is dropped or [`close`](Self::close) is called.
#[derive(Debug)]
pub(crate) struct QueueTx<T> {
    tx: async_channel::Sender<Msg<T>>,
    room: Arc<Room>,
}

impl<T> Clone for QueueTx<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            room: self.room.clone(),
        }
    }
}

impl<T> QueueTx<T> {
    /// Waits for room, then enqueues. Dropping the future before it completes
    /// drops `item` without enqueueing it.
    pub(crate) async fn push(&self, item: T) -> Result<(), T> {
        match &self.room.idle {
            None => self.wait_for_room(item, None).await.map_err(|e| match e {
                PushTimeoutError::Timeout(item) | PushTimeoutError::Closed(item) => item,
            }),
            Some(idle) => match idle.acquire().await {
                Ok(permit) => {
                    permit.forget();
                    self.tx
                        .try_send(Msg::Item(item))
                        .map_err(|e| self::item(e.into_inner()))
                }
                Err(_) => Err(item),
            },
        }
    }

    /// Enqueues if there is room now.
    pub(crate) fn try_push(&self, item: T) -> Result<(), TryPushError<T>> {
        if let Some(idle) = &self.room.idle {
            match idle.try_acquire() {
                Ok(permit) => permit.forget(),
                Err(TryAcquireError::NoPermits) => return Err(TryPushError::Full(item)),
                Err(TryAcquireError::Closed) => return Err(TryPushError::Closed(item)),
            }
        }
        self.tx.try_send(Msg::Item(item)).map_err(|e| match e {
            async_channel::TrySendError::Full(msg) => TryPushError::Full(self::item(msg)),
            async_channel::TrySendError::Closed(msg) => TryPushError::Closed(self::item(msg)),
        })
    }

    /// Waits at most `d` for room; the item comes back on timeout. Dropping
    /// the future before it completes drops `item` without enqueueing it.
    pub(crate) async fn push_timeout(
        &self,
        item: T,
        d: Duration,
    ) -> Result<(), PushTimeoutError<T>> {
        let deadline = tokio::time::Instant::now() + d;
        if let Some(idle) = &self.room.idle {
            return match tokio::time::timeout_at(deadline, idle.acquire()).await {
                Ok(Ok(permit)) => {
                    permit.forget();
                    self.tx
                        .try_send(Msg::Item(item))
                        .map_err(|e| PushTimeoutError::Closed(self::item(e.into_inner())))
                }
                Ok(Err(_)) => Err(PushTimeoutError::Closed(item)),
                Err(_) => Err(PushTimeoutError::Timeout(item)),
            };
        }
        self.wait_for_room(item, Some(deadline)).await
    }

    /// Buffered mode: enqueues, waiting (until `deadline`, if any) on
    /// [`Room::freed`] while the queue is full.
    async fn wait_for_room(
        &self,
        item: T,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(), PushTimeoutError<T>> {
        let mut item = item;
        // Fast path: no registration when there is room.
        match self.tx.try_send(Msg::Item(item)) {
            Ok(()) => return Ok(()),
            Err(async_channel::TrySendError::Closed(m)) => {
                return Err(PushTimeoutError::Closed(self::item(m)));
            }
            Err(async_channel::TrySendError::Full(m)) => item = self::item(m),
        }
        let _waiting = WaiterGuard::new(&self.room);
        let sleep = deadline.map(tokio::time::sleep_until);
        tokio::pin!(sleep);
        loop {
            let freed = self.room.freed.notified();
            tokio::pin!(freed);
            // Register before looking, so a pop after the look rings us.
            freed.as_mut().enable();
            std::sync::atomic::fence(Ordering::SeqCst);
            match self.tx.try_send(Msg::Item(item)) {
                Ok(()) => return Ok(()),
                Err(async_channel::TrySendError::Closed(m)) => {
                    return Err(PushTimeoutError::Closed(self::item(m)));
                }
                Err(async_channel::TrySendError::Full(m)) => item = self::item(m),
            }
            match sleep.as_mut().as_pin_mut() {
                None => freed.await,
                Some(sleep) => tokio::select! {
                    () = &mut freed => {}
                    () = sleep => return Err(PushTimeoutError::Timeout(item)),
                },
            }
        }
    }

    /// Wakes one idle worker, if there is one, without waiting: `false` when
    /// no message could be sent (full queue: the workers are busy and will
    /// look at the pool's size after their job; hand-off: nobody is idle).
    pub(crate) fn wake(&self) -> bool {
        if let Some(idle) = &self.room.idle {
            match idle.try_acquire() {
                Ok(permit) => permit.forget(),
                Err(_) => return false,
            }
        }
        self.tx.try_send(Msg::Wake).is_ok()
    }

    /// Closes the queue: pushes fail, workers drain what is queued.
    pub(crate) fn close(&self) {
        self.tx.close();
        if let Some(idle) = &self.room.idle {
            idle.close();
        }
        self.room.freed.notify_waiters();
    }

    /// Whether the queue is closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// A handle that does not keep the queue open.
    pub(crate) fn downgrade(&self) -> WeakQueueTx<T> {
        WeakQueueTx {
            tx: self.tx.downgrade(),
            room: self.room.clone(),
        }
    }
}

/// Counts a submitter waiting with a deadline for as long as it waits.
struct WaiterGuard<'a>(&'a Room);

impl<'a> WaiterGuard<'a> {
    fn new(room: &'a Room) -> Self {
        room.waiters.fetch_add(1, Ordering::SeqCst);
        Self(room)
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A [`QueueTx`] that does not keep the queue open.
#[derive(Debug)]
pub(crate) struct WeakQueueTx<T> {
    tx: async_channel::WeakSender<Msg<T>>,
    room: Arc<Room>,
}

impl<T> Clone for WeakQueueTx<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            room: self.room.clone(),
        }
    }
}

impl<T> WeakQueueTx<T> {
    /// The strong handle, if the queue is still open.
    pub(crate) fn upgrade(&self) -> Option<QueueTx<T>> {
        Some(QueueTx {
            tx: self.tx.upgrade()?,
            room: self.room.clone(),
        })
    }
}

/// The receiving end of one worker. Clones share the queue but not the
/// worker-local idle offer.
#[derive(Debug)]
pub(crate) struct QueueRx<T> {
    rx: async_channel::Receiver<Msg<T>>,
    room: Arc<Room>,
    /// Hand-off mode: this worker's idle permit is in the semaphore.
    offered: bool,
    /// This worker freed a slot while a submitter waited and has not rung
    /// [`Room::freed`] since.
    owed: bool,
}

impl<T> Clone for QueueRx<T> {
    fn clone(&self) -> Self {
        Self {
            rx: self.rx.clone(),
            room: self.room.clone(),
            offered: false,
            owed: false,
        }
    }
}

impl<T> QueueRx<T> {
    /// Waits for the next message; `None` once the queue is closed and
    /// empty. Cancel safe: dropping the future loses nothing (the idle offer
    /// stays made and is not made twice).
    pub(crate) async fn pop(&mut self) -> Option<Msg<T>> {
        if let Some(idle) = &self.room.idle
            && !self.offered
        {
            idle.add_permits(1);
            self.offered = true;
        }
        let item = match self.rx.try_recv() {
            Ok(item) => item,
            Err(async_channel::TryRecvError::Closed) => return None,
            Err(async_channel::TryRecvError::Empty) => {
                // Let the tasks that are ready (a submitter among them) run
                // once before this worker registers as a listener: under
                // load the next job is often there by then, and a push that
                // finds no listener does not take the channel's lock
                // (interleaved A/B in `vs_go`: 90-98 ns a job against
                // 103-106 without it).
                tokio::task::yield_now().await;
                self.rx.recv().await.ok()?
            }
        };
        self.taken();
        Some(item)
    }

    /// Takes a job if one is queued, skipping wake messages.
    pub(crate) fn try_pop(&mut self) -> Option<T> {
        loop {
            let msg = self.rx.try_recv().ok()?;
            self.taken();
            if let Msg::Item(item) = msg {
                return Some(item);
            }
        }
    }

    fn taken(&mut self) {
        // The job used up this worker's idle offer (hand-off), or freed a
        // slot that a submitter may be waiting for.
        self.offered = false;
        if self.room.waiters.load(Ordering::SeqCst) != 0 {
            // Hysteresis: ring once the queue is down to half, not at every
            // freed slot, so a waiting submitter refills many slots per
            // wake-up instead of one (no submitter/worker ping-pong per job).
            // A worker that is about to wait rings first (`settle`).
            if self.rx.len() <= self.room.low_water {
                self.owed = false;
                self.room.freed.notify_waiters();
            } else {
                self.owed = true;
            }
        }
    }

    /// Call before the worker waits for anything (the next job, a job that
    /// is not done at once, the results stream, its end): rings waiting
    /// submitters if this worker freed a slot since it last rang, so no
    /// submitter waits on room that exists while the worker is away.
    pub(crate) fn settle(&mut self) {
        if std::mem::take(&mut self.owed) && self.room.waiters.load(Ordering::SeqCst) != 0 {
            self.room.freed.notify_waiters();
        }
    }

    /// Takes back this worker's idle offer before it leaves. `false` means a
    /// submitter already claimed it: a job is on its way and this worker must
    /// take it first.
    pub(crate) fn withdraw(&mut self) -> bool {
        let Some(idle) = &self.room.idle else {
            return true;
        };
        if !self.offered {
            return true;
        }
        match idle.try_acquire() {
            Ok(permit) => {
                permit.forget();
                self.offered = false;
                true
            }
            Err(TryAcquireError::Closed) => true,
            Err(TryAcquireError::NoPermits) => false,
        }
    }

    /// Closes the queue from the worker side (cancellation).
    pub(crate) fn close(&self) {
        self.rx.close();
        if let Some(idle) = &self.room.idle {
            idle.close();
        }
        self.room.freed.notify_waiters();
    }
}
