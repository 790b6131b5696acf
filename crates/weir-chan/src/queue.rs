//! A bounded queue with many senders and many readers ("workers"): a
//! pool's job queue, the edge into a pipeline stage with several workers,
//! and (one job per take, [`queue_unshared`]) the outputs of a fan-out.
//!
//! One `VecDeque` behind a `Mutex`, with the workers' and the submitters'
//! waits beside it. Two shapes, chosen by the capacity:
//!
//! * **Buffered** (`cap > 0`): at most `cap` jobs wait in the deque. A
//!   worker takes jobs in *batches*, by guided self-scheduling: a share of
//!   `len / workers` of what is queued, at least 1 and at most [`BATCH`],
//!   so under load the lock (and the cache line it lives on) is paid once
//!   per batch, while a short queue is still shared one job per worker.
//!   The batch sits in the worker's [`QueueRx`] and counts as queued; a
//!   worker gives what is left of it back to the front of the queue, in
//!   order, before it waits for anything (a job that is not done at its
//!   first poll, room in the results stream, a fresh worker after a panic)
//!   and when it leaves. A job that computes without awaiting cannot give
//!   its batch back, so a worker that finds the deque empty steals about
//!   half of another worker's batch before it sleeps: no job waits behind a
//!   busy worker while another is idle. The deque may so hold up to
//!   `BATCH` jobs per worker above `cap` for a moment; a submitter waits while it holds `cap` or
//!   more.
//! * **Hand-off** (`cap == 0`): a push needs an *idle offer*: a worker adds
//!   one when it starts waiting, a push takes one, and a worker takes one
//!   job at a time. At most as many jobs wait as workers are idle.
//!
//! Waking:
//!
//! * Each push wakes one sleeping worker, if one sleeps.
//! * Submitters waiting for room sleep on a [`Notify`]. In buffered mode
//!   workers ring it with hysteresis: when a take leaves the deque at most
//!   half full, or before a worker that took jobs since its last ring
//!   waits for anything ([`QueueRx::step_away`]). A woken submitter so refills
//!   half the queue instead of one slot per wake-up, and a slow job never
//!   leaves a submitter waiting on room that exists. In hand-off mode each
//!   new offer rings one waiting submitter.
//! * A shrinking `resize` *kicks* idle workers ([`QueueTx::kick`]): the
//!   pop of a worker that finds no job returns [`Msg::Wake`], and it looks
//!   at the pool's size.
//! * Closing wakes everyone: pushes fail, workers drain what is queued.
//!
//! Everything shared is behind the one lock (a worker's share is a
//! crossbeam deque, whose atomics crossbeam tests), so there is no
//! hand-written atomic protocol here to model.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crossbeam_deque::{Steal, Stealer, Worker};
use tokio::sync::Notify;

use crate::BATCH;

/// What a worker's pop returns.
#[derive(Debug)]
pub enum Msg<T> {
    /// A job.
    Item(T),
    /// Look at the pool's size again (a shrink kicked this worker).
    Wake,
}

/// Why a push without waiting failed; the item comes back.
#[derive(Debug)]
pub enum TryPushError<T> {
    /// No room (buffered) or no idle worker (hand-off).
    Full(T),
    /// The queue is closed.
    Closed(T),
}

/// Why a push with a deadline failed; the item comes back.
#[derive(Debug)]
pub enum PushTimeoutError<T> {
    /// No room came before the deadline.
    Timeout(T),
    /// The queue is closed.
    Closed(T),
}

/// What the lock guards.
#[derive(Debug)]
struct State<T> {
    jobs: VecDeque<T>,
    closed: bool,
    /// Strong [`QueueTx`] handles; the queue closes when the last goes.
    senders: usize,
    /// Workers waiting for a job.
    sleepers: Sleepers,
    /// Kicks from a shrink not yet taken by a worker.
    kicks: usize,
    /// Hand-off mode: idle offers no push has claimed yet.
    offers: usize,
    /// Submitters waiting for room.
    waiters: usize,
    /// The pool's worker count, for the batch share.
    workers: usize,
    /// Per receiver slot: the thief's end of its batch. A worker that finds
    /// the queue empty takes from these before it sleeps.
    batches: Vec<Option<Stealer<T>>>,
    /// Slots whose batch may hold jobs: a slot is listed when its batch is
    /// filled (under the lock) and unlisted by a thief that finds it empty,
    /// so an idle look costs nothing with many workers and no batches.
    loaded: Vec<usize>,
    /// Per slot: in `loaded`.
    listed: Vec<bool>,
}

#[derive(Debug)]
struct Shared<T> {
    state: Mutex<State<T>>,
    /// `0`: hand-off.
    cap: usize,
    /// Buffered mode: a take that leaves at most this many rings `room`.
    low_water: usize,
    /// Submitters waiting for room sleep here.
    room: Notify,
}

impl<T> State<T> {
    /// Marks `slot`'s batch as possibly holding jobs.
    fn list(&mut self, slot: usize) {
        if let Some(l) = self.listed.get_mut(slot)
            && !*l
        {
            *l = true;
            self.loaded.push(slot);
        }
    }

    /// Takes `slot` out of `loaded`.
    fn unlist(&mut self, slot: usize) {
        if self.listed.get(slot).copied().unwrap_or(false)
            && let Some(i) = self.loaded.iter().position(|&s| s == slot)
        {
            self.unlist_at(i);
        }
    }

    /// Takes the `i`th entry out of `loaded`.
    fn unlist_at(&mut self, i: usize) {
        let slot = self.loaded.swap_remove(i);
        if let Some(l) = self.listed.get_mut(slot) {
            *l = false;
        }
    }
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No code panics while holding this lock; recover anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The workers waiting for a job, oldest first. Each receiver has a dense
/// slot, so whether a worker is still among the sleepers is one lookup:
/// a woken worker's next look does not search the list.
#[derive(Debug, Default)]
struct Sleepers {
    queue: VecDeque<(usize, Waker)>,
    /// Boxed: touched only when workers sleep, wake or come and go, so it
    /// stays off the cache lines that every push and take use.
    slots: Box<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    /// Per slot: in `queue`.
    asleep: Vec<bool>,
    /// Slots of dropped receivers, for reuse.
    free: Vec<usize>,
}

impl Sleepers {
    /// A slot for a new receiver.
    fn slot(&mut self) -> usize {
        let slots = &mut *self.slots;
        slots.free.pop().unwrap_or_else(|| {
            slots.asleep.push(false);
            slots.asleep.len() - 1
        })
    }

    /// Gives a dropped receiver's slot back (it must not sleep).
    fn release(&mut self, slot: usize) {
        self.remove(slot);
        self.slots.free.push(slot);
    }

    fn len(&self) -> usize {
        self.queue.len()
    }

    fn push(&mut self, slot: usize, waker: Waker) {
        self.remove(slot);
        self.slots.asleep[slot] = true;
        self.queue.push_back((slot, waker));
    }

    /// The oldest sleeper's waker; it no longer sleeps.
    #[inline]
    fn pop(&mut self) -> Option<Waker> {
        let (slot, waker) = self.queue.pop_front()?;
        self.slots.asleep[slot] = false;
        Some(waker)
    }

    /// The wakers of the `n` oldest sleepers (or all there are).
    fn take(&mut self, n: usize) -> Vec<Waker> {
        let n = n.min(self.queue.len());
        (0..n).filter_map(|_| self.pop()).collect()
    }

    /// Takes `slot` out if it sleeps; `false` if a wake-up already did.
    fn remove(&mut self, slot: usize) -> bool {
        if !std::mem::take(&mut self.slots.asleep[slot]) {
            return false;
        }
        if let Some(i) = self.queue.iter().position(|(s, _)| *s == slot) {
            self.queue.remove(i);
        }
        true
    }
}

/// A queue whose readers take one job per look, never a share: for readers
/// that cannot give a share back before they wait (a user's stream may
/// stop being polled at any time), so no job waits in a reader's hands.
/// The share is `len / workers`, so an unbounded worker count makes it 1.
pub fn queue_unshared<T>(cap: usize) -> (QueueTx<T>, QueueCtl<T>) {
    queue(cap, usize::MAX)
}

/// Creates a queue for `workers` workers: `cap == 0` is the hand-off queue.
pub fn queue<T>(cap: usize, workers: usize) -> (QueueTx<T>, QueueCtl<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            jobs: VecDeque::new(),
            closed: false,
            senders: 1,
            sleepers: Sleepers::default(),
            kicks: 0,
            offers: 0,
            waiters: 0,
            workers,
            batches: Vec::new(),
            loaded: Vec::new(),
            listed: Vec::new(),
        }),
        cap,
        low_water: cap / 2,
        room: Notify::new(),
    });
    (
        QueueTx {
            shared: shared.clone(),
        },
        QueueCtl { shared },
    )
}

/// The workers' side of the queue as the pool holds it: makes each
/// worker's [`QueueRx`], closes the queue, tells it the worker count.
#[derive(Debug)]
pub struct QueueCtl<T> {
    shared: Arc<Shared<T>>,
}

impl<T> QueueCtl<T> {
    /// A new worker's receiving end.
    pub fn receiver(&self) -> QueueRx<T> {
        QueueRx::new(self.shared.clone())
    }

    /// Sets the worker count the batch share divides by.
    pub fn set_workers(&self, workers: usize) {
        self.shared.lock().workers = workers;
    }

    /// Closes the queue from the workers' side (cancellation).
    pub fn close(&self) {
        close(&self.shared);
    }

    /// Whether the queue is closed.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// [`QueueTx::kick`], for the pool's own resizing (an adaptive limit).
    pub fn kick(&self, n: usize) {
        kick(&self.shared, n);
    }
}

/// The submitting end. Cloning it keeps the queue open; the queue closes
/// when the last clone is dropped or [`close`](Self::close) is called.
#[derive(Debug)]
pub struct QueueTx<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for QueueTx<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for QueueTx<T> {
    fn drop(&mut self) {
        let last = {
            let mut st = self.shared.lock();
            st.senders -= 1;
            st.senders == 0
        };
        if last {
            self.close();
        }
    }
}

impl<T> QueueTx<T> {
    /// Waits for room, then enqueues. Dropping the future before it completes
    /// drops `item` without enqueueing it.
    pub async fn push(&self, item: T) -> Result<(), T> {
        self.wait_for_room(item, None).await.map_err(|e| match e {
            PushTimeoutError::Timeout(item) | PushTimeoutError::Closed(item) => item,
        })
    }

    /// Enqueues if there is room now.
    pub fn try_push(&self, item: T) -> Result<(), TryPushError<T>> {
        let waker = {
            let mut st = self.shared.lock();
            if st.closed {
                return Err(TryPushError::Closed(item));
            }
            if self.shared.cap == 0 {
                if st.offers == 0 {
                    return Err(TryPushError::Full(item));
                }
                st.offers -= 1;
            } else if st.jobs.len() >= self.shared.cap {
                return Err(TryPushError::Full(item));
            }
            st.jobs.push_back(item);
            st.sleepers.pop()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Waits at most `d` for room; the item comes back on timeout. A `d`
    /// whose deadline is beyond the clock's range waits without one.
    /// Dropping the future before it completes drops `item` without
    /// enqueueing it.
    pub async fn push_timeout(&self, item: T, d: Duration) -> Result<(), PushTimeoutError<T>> {
        let deadline = weir_context::__private::deadline_after(d);
        self.wait_for_room(item, deadline).await
    }

    /// Enqueues, waiting (until `deadline`, if any) on `room` while the
    /// queue is full.
    async fn wait_for_room(
        &self,
        item: T,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(), PushTimeoutError<T>> {
        // Fast path: no registration when there is room.
        let mut item = match self.try_push(item) {
            Ok(()) => return Ok(()),
            Err(TryPushError::Closed(item)) => return Err(PushTimeoutError::Closed(item)),
            Err(TryPushError::Full(item)) => item,
        };
        let _waiting = WaiterGuard::new(&self.shared);
        let sleep = deadline.map(tokio::time::sleep_until);
        tokio::pin!(sleep);
        loop {
            let freed = self.shared.room.notified();
            tokio::pin!(freed);
            // Register before looking, so a ring after the look wakes us.
            freed.as_mut().enable();
            item = match self.try_push(item) {
                Ok(()) => return Ok(()),
                Err(TryPushError::Closed(item)) => return Err(PushTimeoutError::Closed(item)),
                Err(TryPushError::Full(item)) => item,
            };
            match sleep.as_mut().as_pin_mut() {
                None => freed.await,
                Some(sleep) => tokio::select! {
                    () = &mut freed => {}
                    () = sleep => return Err(PushTimeoutError::Timeout(item)),
                },
            }
        }
    }

    /// Kicks `n` workers so they look at the pool's size (a shrink by `n`):
    /// the next `n` workers to find no job (sleeping ones are woken) get
    /// [`Msg::Wake`]; busy workers look after each job anyway. A shrink
    /// replaces the kicks of an earlier one (`n` is how many must leave
    /// now), so kicks never pile up in a busy pool. In hand-off mode a kick
    /// takes an idle offer, as a job would, so at most as many workers are
    /// kicked as are idle.
    pub fn kick(&self, n: usize) {
        kick(&self.shared, n);
    }

    /// Closes the queue: pushes fail, workers drain what is queued.
    pub fn close(&self) {
        close(&self.shared);
    }

    /// Whether the queue is closed.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// A handle that does not keep the queue open.
    pub fn downgrade(&self) -> WeakQueueTx<T> {
        WeakQueueTx {
            shared: self.shared.clone(),
        }
    }
}

/// [`QueueTx::kick`], for either side of the queue.
fn kick<T>(shared: &Shared<T>, n: usize) {
    let wakers: Vec<Waker> = {
        let mut st = shared.lock();
        if st.closed {
            return;
        }
        let n = if shared.cap == 0 {
            let n = n.min(st.offers);
            st.offers -= n;
            st.kicks += n;
            n
        } else {
            st.kicks = st.kicks.max(n);
            n
        };
        st.sleepers.take(n)
    };
    for waker in wakers {
        waker.wake();
    }
}

/// Closes the queue and wakes every sleeper and waiting submitter.
fn close<T>(shared: &Shared<T>) {
    let sleepers = {
        let mut st = shared.lock();
        st.closed = true;
        let all = st.sleepers.len();
        st.sleepers.take(all)
    };
    for waker in sleepers {
        waker.wake();
    }
    shared.room.notify_waiters();
}

/// Counts a submitter waiting for room for as long as it waits.
struct WaiterGuard<'a, T>(&'a Shared<T>);

impl<'a, T> WaiterGuard<'a, T> {
    fn new(shared: &'a Shared<T>) -> Self {
        shared.lock().waiters += 1;
        Self(shared)
    }
}

impl<T> Drop for WaiterGuard<'_, T> {
    fn drop(&mut self) {
        self.0.lock().waiters -= 1;
    }
}

/// A [`QueueTx`] that does not keep the queue open.
#[derive(Debug)]
pub struct WeakQueueTx<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for WeakQueueTx<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> WeakQueueTx<T> {
    /// The strong handle, while some strong handle is still alive.
    pub fn upgrade(&self) -> Option<QueueTx<T>> {
        let mut st = self.shared.lock();
        if st.senders == 0 {
            return None;
        }
        st.senders += 1;
        Some(QueueTx {
            shared: self.shared.clone(),
        })
    }
}

/// The receiving end of one worker, with the batch it took. Dropping it
/// gives the batch back.
#[derive(Debug)]
pub struct QueueRx<T> {
    shared: Arc<Shared<T>>,
    /// This worker's slot among the sleepers.
    slot: usize,
    /// Jobs taken from the queue and not yet started, in queue order. An
    /// idle worker may take (steal) from it, so a job never waits behind a
    /// busy one (a job that computes without awaiting cannot give its
    /// batch back).
    ///
    /// Behind a `Mutex` only so that a receiver is `Sync` (crossbeam's
    /// worker end is not): the owner reaches it through `&mut self` with
    /// `get_mut`, which takes no lock; only the `&self` paths lock it.
    batch: Mutex<Worker<T>>,
    /// Hand-off mode: this worker's idle offer is counted in `offers`.
    offered: bool,
    /// This worker took jobs while a submitter waited and has not rung
    /// `room` since.
    owed: bool,
    /// This worker registered among the sleepers and has not looked since.
    sleeping: bool,
}

impl<T> Drop for QueueRx<T> {
    fn drop(&mut self) {
        self.give_back();
        self.leave_sleepers();
        let mut st = self.shared.lock();
        st.sleepers.release(self.slot);
        if let Some(b) = st.batches.get_mut(self.slot) {
            *b = None;
        }
        st.unlist(self.slot);
    }
}

/// What a look at the queue found.
enum Look<T> {
    Item(T),
    Wake,
    Closed,
    Empty,
}

/// A lock that no code panics under: a poisoned one is used as it is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> QueueRx<T> {
    /// This worker's share, without a lock (see the field).
    #[inline]
    fn batch(&mut self) -> &mut Worker<T> {
        self.batch.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    fn new(shared: Arc<Shared<T>>) -> Self {
        let batch = Worker::new_fifo();
        let slot = {
            let mut st = shared.lock();
            let slot = st.sleepers.slot();
            if st.batches.len() <= slot {
                st.batches.resize_with(slot + 1, || None);
                st.listed.resize(slot + 1, false);
            }
            st.batches[slot] = Some(batch.stealer());
            slot
        };
        Self {
            shared,
            slot,
            batch: Mutex::new(batch),
            offered: false,
            owed: false,
            sleeping: false,
        }
    }

    /// Waits for the next message; `None` once the queue is closed and
    /// empty. Cancel safe: dropping the future loses nothing (a wake-up it
    /// was given passes to another sleeper; the idle offer stays made and
    /// is not made twice).
    pub fn pop(&mut self) -> Pop<'_, T> {
        Pop { rx: self }
    }

    /// [`pop`](Self::pop) as a poll, for a reader that keeps polling until
    /// it is ready (or drops this receiver): a reader that stops polling
    /// while it sleeps keeps its place among the sleepers and may be given
    /// a wake-up it does not use. [`pop`](Self::pop)'s future leaves the
    /// sleepers when it is dropped.
    pub fn poll_pop(&mut self, cx: &mut Context<'_>) -> Poll<Option<Msg<T>>> {
        match self.look(Some(cx)) {
            Look::Item(item) => Poll::Ready(Some(Msg::Item(item))),
            Look::Wake => Poll::Ready(Some(Msg::Wake)),
            Look::Closed => Poll::Ready(None),
            Look::Empty => Poll::Pending,
        }
    }

    /// A job if one can be had without waiting: from this worker's share,
    /// else a new share of the queue or a steal, as [`pop`](Self::pop) takes
    /// them (ringing waiting submitters as it does). `None` says nothing of
    /// the end: [`pop`](Self::pop) tells that. Leaves kicks to `pop`.
    #[inline]
    pub fn try_take(&mut self) -> Option<T> {
        match self.look(None) {
            Look::Item(item) => Some(item),
            Look::Wake | Look::Closed | Look::Empty => None,
        }
    }

    /// Jobs waiting: queued, and in this worker's share.
    pub fn len(&self) -> usize {
        lock(&self.batch).len() + self.shared.lock().jobs.len()
    }

    /// Whether no job waits (queued or in this worker's share).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue is closed and holds nothing, in it or in this
    /// worker's share (other workers' shares may still hold jobs).
    pub fn is_drained(&self) -> bool {
        if !lock(&self.batch).is_empty() {
            return false;
        }
        let st = self.shared.lock();
        st.closed && st.jobs.is_empty()
    }

    /// Looks at the queue once; with `cx`, registers as a sleeper when it is
    /// empty. The batch is served here, inline and without the lock.
    #[inline]
    fn look(&mut self, cx: Option<&mut Context<'_>>) -> Look<T> {
        match self.batch().pop() {
            Some(item) => Look::Item(item),
            None => self.look_shared(cx),
        }
    }

    /// [`look`](Self::look) once the batch is empty: takes the lock.
    #[inline(never)]
    fn look_shared(&mut self, cx: Option<&mut Context<'_>>) -> Look<T> {
        let shared = &*self.shared;
        let mut ring_all = false;
        let mut ring_one = false;
        let look = {
            let mut st = shared.lock();
            if std::mem::take(&mut self.sleeping) {
                // Polled again before anyone woke it: out of the list, so
                // it is in there once at most.
                st.sleepers.remove(self.slot);
            }
            if shared.cap == 0 && !self.offered && !st.closed && cx.is_some() {
                // Hand-off: this worker is idle; a submitter may now push.
                st.offers += 1;
                self.offered = true;
                ring_one = st.waiters > 0;
            }
            let len = st.jobs.len();
            if let Some(first) = st.jobs.pop_front() {
                // This job and the rest of the share, which waits in the batch.
                let take = if shared.cap == 0 {
                    1
                } else {
                    (len / st.workers.max(1)).clamp(1, BATCH)
                };
                if take > 1 {
                    let batch = self.batch.get_mut().unwrap_or_else(PoisonError::into_inner);
                    for job in st.jobs.drain(..take - 1) {
                        batch.push(job);
                    }
                    st.list(self.slot);
                }
                self.offered = false;
                if st.waiters > 0 {
                    // Hysteresis: ring once the queue is down to half.
                    if st.jobs.len() <= shared.low_water {
                        ring_all = true;
                    } else {
                        self.owed = true;
                    }
                }
                Look::Item(first)
            } else if let Some(item) = Self::steal(
                self.slot,
                self.batch.get_mut().unwrap_or_else(PoisonError::into_inner),
                &mut st,
            ) {
                self.offered = false;
                Look::Item(item)
            } else if st.closed {
                Look::Closed
            } else if st.kicks > 0 && cx.is_some() {
                st.kicks -= 1;
                self.offered = false;
                Look::Wake
            } else if let Some(cx) = cx {
                st.sleepers.push(self.slot, cx.waker().clone());
                self.sleeping = true;
                // About to sleep: any room this worker freed is announced.
                if std::mem::take(&mut self.owed) && st.waiters > 0 {
                    ring_all = true;
                }
                Look::Empty
            } else {
                Look::Empty
            }
        };
        if ring_all {
            self.owed = false;
            shared.room.notify_waiters();
        } else if ring_one {
            shared.room.notify_one();
        }
        look
    }

    /// Takes a job if one is queued, without waiting, skipping kicks
    /// (draining a cancelled pool).
    pub fn try_pop(&mut self) -> Option<T> {
        if let Some(item) = self.batch().pop() {
            return Some(item);
        }
        self.shared.lock().jobs.pop_front()
    }

    /// Takes about half of another worker's unstarted batch; the first job
    /// comes back and the rest join this worker's batch. Called with the
    /// lock held (`st`), so a batch cannot fill between this look and this
    /// worker's sleep: a batch is filled only under the lock. Slots found
    /// empty are unlisted on the way.
    fn steal(me: usize, mine: &Worker<T>, st: &mut State<T>) -> Option<T> {
        let mut i = 0;
        while let Some(&slot) = st.loaded.get(i) {
            let victim = match st.batches.get(slot) {
                Some(Some(v)) if slot != me => v,
                // This worker's own batch is empty (it is looking).
                _ => {
                    st.unlist_at(i);
                    continue;
                }
            };
            // `Retry` means a race with the owner's pop; a few tries, then on.
            let mut empty = false;
            for _ in 0..4 {
                match victim.steal_batch_and_pop(mine) {
                    Steal::Success(item) => {
                        if !mine.is_empty() {
                            st.list(me);
                        }
                        return Some(item);
                    }
                    Steal::Empty => {
                        empty = true;
                        break;
                    }
                    Steal::Retry => {}
                }
            }
            if empty {
                st.unlist_at(i);
            } else {
                i += 1;
            }
        }
        None
    }

    /// Gives the jobs of this worker's batch that it has not started back
    /// to the front of the queue, in order, and wakes sleepers for them.
    fn give_back(&mut self) {
        if self.batch().is_empty() {
            return;
        }
        let batch = self.batch.get_mut().unwrap_or_else(PoisonError::into_inner);
        let wakers: Vec<Waker> = {
            let mut st = self.shared.lock();
            // Under the lock, so no thief takes a job between the pops and
            // the pushes; a job a thief took before is not here, which is
            // fine: it is its job now.
            let mut left = Vec::new();
            while let Some(item) = batch.pop() {
                left.push(item);
            }
            let n = left.len();
            while let Some(item) = left.pop() {
                st.jobs.push_front(item);
            }
            st.sleepers.take(n)
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// Call before the worker waits for anything (a job that is not done at
    /// once, a full results stream, a fresh worker after a panic, its end):
    /// gives the batch back (`give_back`) and rings
    /// waiting submitters if this worker took jobs since it last rang
    /// (`settle`), so neither jobs nor room wait on a
    /// worker that is away.
    pub fn step_away(&mut self) {
        self.give_back();
        self.settle();
    }

    /// Rings waiting submitters if this worker took jobs since it last rang.
    fn settle(&mut self) {
        if std::mem::take(&mut self.owed) && self.shared.lock().waiters > 0 {
            self.shared.room.notify_waiters();
        }
    }

    /// Takes back this worker's idle offer before it leaves. `false` means a
    /// submitter already claimed it: a job is on its way and this worker must
    /// take it first.
    pub fn withdraw(&mut self) -> bool {
        if !self.offered {
            return true;
        }
        let mut st = self.shared.lock();
        if st.closed {
            return true;
        }
        if st.offers > 0 {
            st.offers -= 1;
            self.offered = false;
            true
        } else {
            false
        }
    }

    /// Closes the queue from the worker side (cancellation).
    pub fn close(&self) {
        close(&self.shared);
    }

    /// Leaves the sleepers; a wake-up this worker was given and did not use
    /// goes to the next sleeper.
    #[inline]
    fn leave_sleepers(&mut self) {
        if self.sleeping {
            self.leave_sleepers_now();
        }
    }

    #[cold]
    fn leave_sleepers_now(&mut self) {
        self.sleeping = false;
        let waker = {
            let mut st = self.shared.lock();
            if st.sleepers.remove(self.slot) {
                None
            } else if !st.jobs.is_empty() || st.kicks > 0 {
                // A push, a kick or the close woke it: pass the wake-up on
                // if work is waiting.
                st.sleepers.pop()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The future of [`QueueRx::pop`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Pop<'a, T> {
    rx: &'a mut QueueRx<T>,
}

impl<T> Future for Pop<'_, T> {
    type Output = Option<Msg<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut().rx.look(Some(cx)) {
            Look::Item(item) => Poll::Ready(Some(Msg::Item(item))),
            Look::Wake => Poll::Ready(Some(Msg::Wake)),
            Look::Closed => Poll::Ready(None),
            Look::Empty => Poll::Pending,
        }
    }
}

impl<T> Drop for Pop<'_, T> {
    fn drop(&mut self) {
        // Dropped while sleeping (the worker task itself was dropped).
        self.rx.leave_sleepers();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fmt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Count {
        fn get(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// Polls a pop future once with `w` as its waker.
    fn poll<T>(pop: &mut Pop<'_, T>, w: &Arc<Count>) -> Poll<Option<Msg<T>>> {
        let waker = Waker::from(w.clone());
        Pin::new(pop).poll(&mut Context::from_waker(&waker))
    }

    /// A pop that is ready at once.
    fn pop_now<T>(rx: &mut QueueRx<T>) -> Poll<Option<Msg<T>>> {
        poll(&mut rx.pop(), &Arc::new(Count::default()))
    }

    fn item<T: fmt::Debug>(p: Poll<Option<Msg<T>>>) -> T {
        match p {
            Poll::Ready(Some(Msg::Item(item))) => item,
            Poll::Ready(Some(Msg::Wake)) => panic!("a kick, not a job"),
            Poll::Ready(None) => panic!("closed"),
            Poll::Pending => panic!("pending"),
        }
    }

    fn queued<T: Clone>(tx: &QueueTx<T>) -> Vec<T> {
        tx.shared.lock().jobs.iter().cloned().collect()
    }

    fn sleepers<T>(tx: &QueueTx<T>) -> usize {
        tx.shared.lock().sleepers.len()
    }

    #[test]
    fn a_worker_takes_its_share_of_the_queue_between_1_and_batch() {
        for (cap, workers, queued_jobs, share) in [
            (64, 4, 40, 10),
            (64, 4, 3, 1),
            (1000, 4, 1000, BATCH),
            (8, 1, 8, 8),
            (8, 16, 8, 1),
        ] {
            let (tx, ctl) = queue::<usize>(cap, workers);
            let mut rx = ctl.receiver();
            for i in 0..queued_jobs {
                assert!(tx.try_push(i).is_ok());
            }
            assert_eq!(item(pop_now(&mut rx)), 0);
            assert_eq!(rx.batch().len(), share - 1, "cap {cap}, {workers} workers");
            assert_eq!(queued(&tx).len(), queued_jobs - share);
            // The batch is served first and in order.
            for i in 1..share {
                assert_eq!(item(pop_now(&mut rx)), i);
            }
        }
    }

    #[test]
    fn the_share_follows_the_worker_count() {
        let (tx, ctl) = queue::<usize>(64, 1);
        ctl.set_workers(8);
        let mut rx = ctl.receiver();
        for i in 0..64 {
            assert!(tx.try_push(i).is_ok());
        }
        assert_eq!(item(pop_now(&mut rx)), 0);
        assert_eq!(rx.batch().len(), 64 / 8 - 1);
    }

    #[test]
    fn a_batch_given_back_or_dropped_returns_to_the_front_in_order() {
        let (tx, ctl) = queue::<usize>(16, 1);
        let mut rx = ctl.receiver();
        for i in 0..6 {
            assert!(tx.try_push(i).is_ok());
        }
        assert_eq!(item(pop_now(&mut rx)), 0);
        assert_eq!(item(pop_now(&mut rx)), 1);
        // 2..6 are in the batch; a push lands behind them.
        assert!(tx.try_push(6).is_ok());
        rx.give_back();
        assert_eq!(queued(&tx), vec![2, 3, 4, 5, 6]);

        assert_eq!(item(pop_now(&mut rx)), 2);
        drop(rx);
        assert_eq!(queued(&tx), vec![3, 4, 5, 6]);
    }

    #[test]
    fn a_worker_that_finds_the_queue_empty_takes_from_another_ones_batch() {
        let w2 = Arc::new(Count::default());
        let (tx, ctl) = queue::<usize>(16, 1);
        let (mut rx1, mut rx2) = (ctl.receiver(), ctl.receiver());
        let mut pop2 = rx2.pop();
        assert!(poll(&mut pop2, &w2).is_pending());
        for i in 0..4 {
            assert!(tx.try_push(i).is_ok());
        }
        // The first push woke rx2; rx1 takes everything first (a share of
        // len / 1 workers): 0 now, 1..4 in its batch.
        assert_eq!(w2.get(), 1);
        assert_eq!(item(pop_now(&mut rx1)), 0);
        assert!(queued(&tx).is_empty());
        // rx2 finds the queue empty and takes the front of rx1's batch, as
        // it would while rx1 runs a job that never awaits.
        assert_eq!(item(poll(&mut pop2, &w2)), 1);
        drop(pop2);
        let mut rest = Vec::new();
        while let Some(i) = rx2.try_pop().or_else(|| rx1.try_pop()) {
            rest.push(i);
        }
        rest.sort_unstable();
        assert_eq!(rest, vec![2, 3], "every job once");
    }

    #[test]
    fn each_push_wakes_one_sleeper_and_a_wake_up_not_used_is_passed_on() {
        let (w1, w2) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let (tx, ctl) = queue::<usize>(16, 2);
        let (mut rx1, mut rx2) = (ctl.receiver(), ctl.receiver());
        let mut pop1 = rx1.pop();
        let mut pop2 = rx2.pop();
        assert!(poll(&mut pop1, &w1).is_pending());
        assert!(poll(&mut pop2, &w2).is_pending());
        // The oldest sleeper gets the push.
        assert!(tx.try_push(7).is_ok());
        assert_eq!((w1.get(), w2.get()), (1, 0));
        // Its pop is dropped before it looks: the wake-up goes on.
        drop(pop1);
        assert_eq!(w2.get(), 1);
        assert_eq!(item(poll(&mut pop2, &w2)), 7);
        drop(pop2);
        // A sleeper that leaves without a wake-up passes nothing on.
        let mut pop1 = rx1.pop();
        assert!(poll(&mut pop1, &w1).is_pending());
        assert_eq!(sleepers(&tx), 1);
        drop(pop1);
        assert_eq!(sleepers(&tx), 0);
        assert_eq!((w1.get(), w2.get()), (1, 1));
    }

    #[test]
    fn sleepers_are_woken_oldest_first_and_slots_are_reused() {
        let ws: Vec<_> = (0..3).map(|_| Arc::new(Count::default())).collect();
        let (tx, ctl) = queue::<usize>(8, 3);
        let mut rxs: Vec<_> = (0..3).map(|_| ctl.receiver()).collect();
        {
            let mut pops: Vec<_> = rxs.iter_mut().map(QueueRx::pop).collect();
            for (pop, w) in pops.iter_mut().zip(&ws) {
                assert!(poll(pop, w).is_pending());
            }
            assert_eq!(sleepers(&tx), 3);
            for (i, w) in ws.iter().enumerate() {
                assert!(tx.try_push(i).is_ok());
                assert_eq!(w.get(), 1, "sleeper {i} is woken by push {i}");
            }
            assert_eq!(sleepers(&tx), 0);
            for (pop, w) in pops.iter_mut().zip(&ws) {
                let _ = item(poll(pop, w));
            }
        }
        drop(rxs.pop());
        let _again = ctl.receiver();
        assert_eq!(
            tx.shared.lock().sleepers.slots.asleep.len(),
            3,
            "the slot is reused"
        );
    }

    #[test]
    fn a_pop_polled_again_is_one_sleeper_not_two() {
        let w = Arc::new(Count::default());
        let (tx, ctl) = queue::<usize>(4, 1);
        let mut rx = ctl.receiver();
        let mut pop = rx.pop();
        assert!(poll(&mut pop, &w).is_pending());
        assert!(poll(&mut pop, &w).is_pending());
        assert_eq!(sleepers(&tx), 1);
        assert!(tx.try_push(1).is_ok());
        assert_eq!(item(poll(&mut pop, &w)), 1);
        assert_eq!(sleepers(&tx), 0);
    }

    #[test]
    fn a_kick_reaches_the_next_worker_that_finds_no_job() {
        let w = Arc::new(Count::default());
        let (tx, ctl) = queue::<usize>(4, 1);
        let mut rx = ctl.receiver();
        // No worker sleeps yet: the kick waits for one (no lost shrink).
        tx.kick(1);
        assert!(tx.try_push(1).is_ok());
        // Jobs first, then the kick.
        assert_eq!(item(pop_now(&mut rx)), 1);
        assert!(matches!(pop_now(&mut rx), Poll::Ready(Some(Msg::Wake))));
        // A sleeping worker is woken by a kick.
        let mut pop = rx.pop();
        assert!(poll(&mut pop, &w).is_pending());
        tx.kick(1);
        assert_eq!(w.get(), 1);
        assert!(matches!(poll(&mut pop, &w), Poll::Ready(Some(Msg::Wake))));
        drop(pop);
        // A later shrink replaces the kicks of an earlier one.
        tx.kick(2);
        tx.kick(1);
        assert!(matches!(pop_now(&mut rx), Poll::Ready(Some(Msg::Wake))));
        assert!(matches!(pop_now(&mut rx), Poll::Ready(Some(Msg::Wake))));
        assert!(pop_now(&mut rx).is_pending());
    }

    #[test]
    fn hand_off_admits_one_job_per_idle_offer() {
        let w = Arc::new(Count::default());
        let (tx, ctl) = queue::<usize>(0, 2);
        let mut rx = ctl.receiver();
        assert!(matches!(tx.try_push(1), Err(TryPushError::Full(1))));
        // No idle worker: nobody to kick.
        tx.kick(1);
        assert_eq!(tx.shared.lock().kicks, 0);
        // Waiting offers the worker.
        {
            let mut pop = rx.pop();
            assert!(poll(&mut pop, &w).is_pending());
            assert!(tx.try_push(1).is_ok());
            assert_eq!(w.get(), 1);
            assert!(matches!(tx.try_push(2), Err(TryPushError::Full(2))));
        }
        // The claimed offer cannot be withdrawn: a job is on its way.
        assert!(!rx.withdraw());
        assert_eq!(item(pop_now(&mut rx)), 1);
        assert!(rx.withdraw());
        // An offer not claimed can be; then no job is admitted.
        assert!(pop_now(&mut rx).is_pending());
        assert!(rx.withdraw());
        assert!(matches!(tx.try_push(3), Err(TryPushError::Full(3))));
    }

    #[test]
    fn closing_fails_pushes_wakes_sleepers_and_drains_what_is_queued() {
        let (w, wi) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let (tx, ctl) = queue::<usize>(8, 4);
        let (mut rx, mut idle) = (ctl.receiver(), ctl.receiver());
        let mut idle_pop = idle.pop();
        assert!(poll(&mut idle_pop, &wi).is_pending());
        let mut rx_pop = rx.pop();
        assert!(poll(&mut rx_pop, &w).is_pending());
        tx.close();
        assert_eq!((w.get(), wi.get()), (1, 1));
        assert!(tx.is_closed());
        assert!(matches!(tx.try_push(9), Err(TryPushError::Closed(9))));
        assert!(matches!(poll(&mut idle_pop, &wi), Poll::Ready(None)));
        drop(rx_pop);

        let (tx, ctl) = queue::<usize>(8, 4);
        let mut rx = ctl.receiver();
        for i in 0..8 {
            assert!(tx.try_push(i).is_ok());
        }
        assert!(matches!(tx.try_push(8), Err(TryPushError::Full(8))));
        assert_eq!(item(pop_now(&mut rx)), 0);
        ctl.close();
        // What is queued (the batch first) is still handed out, then None.
        let mut drained = vec![];
        while let Some(i) = rx.try_pop() {
            drained.push(i);
        }
        assert_eq!(drained, (1..8).collect::<Vec<_>>());
        assert!(matches!(pop_now(&mut rx), Poll::Ready(None)));
    }

    #[test]
    fn the_last_strong_sender_closes_the_queue_and_weak_ones_do_not_revive_it() {
        let (tx, ctl) = queue::<usize>(2, 1);
        let weak = tx.downgrade();
        let tx2 = weak.upgrade().unwrap();
        drop(tx);
        assert!(!tx2.is_closed());
        drop(tx2);
        assert!(weak.upgrade().is_none());
        assert!(matches!(pop_now(&mut ctl.receiver()), Poll::Ready(None)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_submitter_is_woken_at_half_the_queue_or_when_the_worker_waits() {
        let (tx, ctl) = queue::<usize>(8, 8);
        let tx = Arc::new(tx);
        let mut rx = ctl.receiver();
        for i in 0..8 {
            assert!(tx.try_push(i).is_ok());
        }
        let pusher = tx.clone();
        let push = tokio::spawn(async move { pusher.push(8).await.is_ok() });
        tokio::task::yield_now().await;
        assert_eq!(tx.shared.lock().waiters, 1);
        // One job at a time (8 workers): the queue is above half, so the
        // submitter is not rung yet...
        assert_eq!(item(pop_now(&mut rx)), 0);
        tokio::task::yield_now().await;
        assert!(!push.is_finished());
        // ...but it is before this worker waits.
        rx.settle();
        assert!(push.await.unwrap());
        // Down to half rings at once.
        let pusher = tx.clone();
        let push = tokio::spawn(async move { pusher.push(9).await.is_ok() });
        tokio::task::yield_now().await;
        assert!(!push.is_finished());
        for _ in 0..4 {
            let _ = item(pop_now(&mut rx));
        }
        assert!(push.await.unwrap());
    }
}
