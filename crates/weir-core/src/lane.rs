//! The bounded channel under a chunked pipeline edge: many senders, one
//! reader, a `VecDeque` behind a `Mutex`.
//!
//! Why not tokio's `mpsc`: a pipeline edge carries *packets* (a chunk, or a
//! lone item when the pipeline is idle), so under load its cost is paid once
//! per chunk and does not matter; in an idle pipeline it is paid once per
//! item and is most of the item's latency. One hop through tokio's bounded
//! `mpsc` (its semaphore, whose permit return takes a lock; its block list;
//! its `AtomicWaker`) cost about 40 ns more per round trip on the 2-core
//! bench machine than one lock, a push and a wake-up here (see
//! `docs/benchmarks.md`, "Third round"). Both sides of a lane take the
//! lock for a few instructions only; wake-ups happen after it is released.
//!
//! * **Reader:** [`LaneRx::poll_recv`] pops the front packet or leaves its
//!   waker; every push takes that waker and wakes it. Each successful
//!   receive spends one unit of tokio's cooperative budget, as tokio's own
//!   channels do, so a reader that never finds its lane empty still yields.
//! * **Senders:** [`LaneTx::try_send`] never waits; [`LaneTx::send`] waits
//!   on a [`Notify`] for room. Each pop rings it once if a sender is
//!   waiting, so every slot freed reaches a waiting sender, and a sender
//!   whose wait is cancelled passes on a ring it got (tokio's `Notify`
//!   does). No sender waits while there is room.
//! * **Closing:** the lane closes when the reader closes it or is dropped
//!   (sends fail from then on; waiting senders are woken and fail), and
//!   ends for the reader once every sender is gone and the packets sent
//!   before were read.
//!
//! Everything shared is behind the one lock (plus tokio's `Notify`), so
//! there is no hand-written atomic protocol here to model.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

/// Slots allocated up front at most; a longer lane grows when it fills.
const PREALLOCATED: usize = 64;

/// What the lock guards.
struct State<T> {
    queue: VecDeque<T>,
    capacity: usize,
    /// Live senders; at zero (and empty) the reader sees the end.
    senders: usize,
    /// The reader closed the lane or is gone: sends fail.
    closed: bool,
    /// The reader's waker, while it waits for a packet.
    reader: Option<Waker>,
    /// Senders waiting for room.
    waiting: usize,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Rung when a slot frees (or the lane closes) and a sender waits.
    room: Notify,
}

impl<T> Shared<T> {
    /// The state. No code holding the lock can panic, but if some did, the
    /// state is still consistent (every change is one field at a time), so
    /// a poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A new lane with room for `capacity` packets (at least 1).
pub(crate) fn lane<T>(capacity: usize) -> (LaneTx<T>, LaneRx<T>) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::with_capacity(capacity.min(PREALLOCATED)),
            capacity,
            senders: 1,
            closed: false,
            reader: None,
            waiting: 0,
        }),
        room: Notify::new(),
    });
    (
        LaneTx {
            shared: Arc::clone(&shared),
        },
        LaneRx { shared },
    )
}

/// Why [`LaneTx::try_send`] failed; the packet comes back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TrySendError<T> {
    /// The lane is full.
    Full(T),
    /// The reader closed the lane or is gone.
    Closed(T),
}

/// A sending half. Clones share the lane; the reader sees the end once all
/// of them are dropped.
pub(crate) struct LaneTx<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for LaneTx<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for LaneTx<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.senders -= 1;
        let reader = if state.senders == 0 {
            state.reader.take()
        } else {
            None
        };
        drop(state);
        if let Some(reader) = reader {
            reader.wake();
        }
    }
}

impl<T> fmt::Debug for LaneTx<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaneTx")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl<T> LaneTx<T> {
    /// Puts `packet` at the back of the lane if there is room, and wakes the
    /// reader if it waits.
    pub(crate) fn try_send(&self, packet: T) -> Result<(), TrySendError<T>> {
        let state = self.shared.lock();
        match room(&state) {
            Ok(()) => {
                push(state, packet);
                Ok(())
            }
            Err(TrySendError::Full(())) => Err(TrySendError::Full(packet)),
            Err(TrySendError::Closed(())) => Err(TrySendError::Closed(packet)),
        }
    }

    /// As [`try_send`](Self::try_send), but makes the packet only once there
    /// is room for it (under the lock, so `make` must be quick): a sender
    /// whose lane is full keeps its items as they are.
    pub(crate) fn try_send_with(&self, make: impl FnOnce() -> T) -> Result<(), TrySendError<()>> {
        let state = self.shared.lock();
        room(&state)?;
        push(state, make());
        Ok(())
    }

    /// Sends `packet`, waiting for room; `Err` gives it back when the lane
    /// is closed.
    ///
    /// Cancel safe in the sense that matters here: if the future is dropped
    /// the packet is dropped with it, unsent, and any ring for room it had
    /// received goes to another waiting sender.
    pub(crate) async fn send(&self, packet: T) -> Result<(), T> {
        let mut packet = match self.try_send(packet) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(packet)) => return Err(packet),
            Err(TrySendError::Full(packet)) => packet,
        };
        let _waiting = Waiting::new(&self.shared);
        loop {
            // Registered before looking, so a ring after the look is kept.
            let notified = self.shared.room.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            packet = match self.try_send(packet) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(packet)) => return Err(packet),
                Err(TrySendError::Full(packet)) => packet,
            };
            notified.await;
        }
    }

    /// Whether the reader closed the lane or is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }
}

/// Whether a send may push now.
fn room<T>(state: &State<T>) -> Result<(), TrySendError<()>> {
    if state.closed {
        Err(TrySendError::Closed(()))
    } else if state.queue.len() >= state.capacity {
        Err(TrySendError::Full(()))
    } else {
        Ok(())
    }
}

/// Pushes `packet`, releases the lock, then wakes the reader if it waits.
fn push<T>(mut state: MutexGuard<'_, State<T>>, packet: T) {
    state.queue.push_back(packet);
    let reader = state.reader.take();
    drop(state);
    if let Some(reader) = reader {
        reader.wake();
    }
}

/// Counts a sender as waiting for room while it exists.
struct Waiting<'a, T> {
    shared: &'a Shared<T>,
}

impl<'a, T> Waiting<'a, T> {
    fn new(shared: &'a Shared<T>) -> Self {
        shared.lock().waiting += 1;
        Self { shared }
    }
}

impl<T> Drop for Waiting<'_, T> {
    fn drop(&mut self) {
        self.shared.lock().waiting -= 1;
    }
}

/// Why [`LaneRx::try_recv`] found nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TryRecvError {
    /// Nothing now; more may come.
    Empty,
    /// Nothing, and nothing more will come (every sender is gone, or the
    /// lane was closed).
    Disconnected,
}

/// The reading half. Dropping it closes the lane.
pub(crate) struct LaneRx<T> {
    shared: Arc<Shared<T>>,
}

impl<T> fmt::Debug for LaneRx<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("LaneRx")
            .field("len", &state.queue.len())
            .field("senders", &state.senders)
            .field("closed", &state.closed)
            .finish_non_exhaustive()
    }
}

impl<T> Drop for LaneRx<T> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<T> LaneRx<T> {
    /// Takes the front packet, or says why there is none, without waiting.
    //
    // The pop and its ring are written out here and in `poll_recv`: a shared
    // helper that hands the guard back when there is nothing to pop measured
    // 5-10% slower on the idle round trip (A/B of the vs_go binaries).
    pub(crate) fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        match state.queue.pop_front() {
            Some(packet) => {
                let ring = state.waiting > 0;
                drop(state);
                if ring {
                    self.shared.room.notify_one();
                }
                Ok(packet)
            }
            None if state.senders == 0 || state.closed => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// The front packet; `None` once nothing more will come. While the lane
    /// is empty, the reader's waker waits for the next push.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let mut state = self.shared.lock();
        if let Some(packet) = state.queue.pop_front() {
            let ring = state.waiting > 0;
            drop(state);
            if ring {
                self.shared.room.notify_one();
            }
            coop.made_progress();
            return Poll::Ready(Some(packet));
        }
        if state.senders == 0 || state.closed {
            coop.made_progress();
            return Poll::Ready(None);
        }
        match &mut state.reader {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Closes the lane: sends fail from now on, and senders waiting for room
    /// are woken to fail. What was sent before can still be read.
    pub(crate) fn close(&mut self) {
        let mut state = self.shared.lock();
        if state.closed {
            return;
        }
        state.closed = true;
        let reader = state.reader.take();
        drop(state);
        drop(reader);
        self.shared.room.notify_waiters();
    }

    /// Whether nothing more can come: closed, or every sender is gone.
    pub(crate) fn is_closed(&self) -> bool {
        let state = self.shared.lock();
        state.closed || state.senders == 0
    }

    /// Whether no packet waits in the lane.
    pub(crate) fn is_empty(&self) -> bool {
        self.shared.lock().queue.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;

    fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        let waker = futures::task::noop_waker();
        fut.poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn packets_arrive_in_order_up_to_capacity_then_full() {
        let (tx, mut rx) = lane::<u32>(3);
        for i in 0..3 {
            tx.try_send(i).unwrap();
        }
        assert_eq!(tx.try_send(9), Err(TrySendError::Full(9)));
        assert_eq!(rx.try_recv(), Ok(0));
        tx.try_send(3).unwrap();
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn the_reader_sees_the_end_only_after_every_sender_is_gone_and_all_is_read() {
        let (tx, mut rx) = lane::<u32>(4);
        let tx2 = tx.clone();
        tx.try_send(1).unwrap();
        drop(tx);
        assert!(!rx.is_closed(), "one sender is left");
        tx2.try_send(2).unwrap();
        drop(tx2);
        assert!(rx.is_closed() && !rx.is_empty());
        assert_eq!(rx.try_recv(), Ok(1));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(2)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(None));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[tokio::test]
    async fn a_push_wakes_a_waiting_reader_and_the_last_sender_gone_too() {
        let (tx, mut rx) = lane::<u32>(1);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(p) = std::future::poll_fn(|cx| rx.poll_recv(cx)).await {
                got.push(p);
            }
            got
        });
        // Let the reader park on the empty lane first.
        tokio::task::yield_now().await;
        for i in 0..5 {
            tx.send(i).await.unwrap();
            tokio::task::yield_now().await;
        }
        drop(tx);
        assert_eq!(reader.await.unwrap(), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_waiting_sender_gets_the_freed_slot_and_a_cancelled_one_passes_its_ring_on() {
        let (tx, mut rx) = lane::<u32>(1);
        let tx2 = tx.clone();
        tx.try_send(0).unwrap();
        let mut first = Box::pin(tx.send(1));
        let mut second = pin!(tx2.send(2));
        assert!(poll_once(first.as_mut()).is_pending());
        assert!(poll_once(second.as_mut()).is_pending());
        assert_eq!(rx.shared.lock().waiting, 2);
        // One slot frees; the first waiter was rung for it but goes away.
        assert_eq!(rx.try_recv(), Ok(0));
        drop(first);
        assert_eq!(rx.shared.lock().waiting, 1);
        // The ring passed on: the second sender gets the slot.
        assert_eq!(poll_once(second.as_mut()), Poll::Ready(Ok(())));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.shared.lock().waiting, 0);
    }

    #[test]
    fn closing_fails_sends_wakes_waiting_senders_and_keeps_what_was_sent() {
        let (tx, mut rx) = lane::<u32>(1);
        tx.try_send(7).unwrap();
        let mut waiting = pin!(tx.send(8));
        assert!(poll_once(waiting.as_mut()).is_pending());
        rx.close();
        assert!(tx.is_closed());
        assert_eq!(poll_once(waiting.as_mut()), Poll::Ready(Err(8)));
        assert_eq!(tx.try_send(9), Err(TrySendError::Closed(9)));
        // What came before the close is still there to drain.
        assert_eq!(rx.try_recv(), Ok(7));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[test]
    fn dropping_the_reader_closes_the_lane() {
        let (tx, rx) = lane::<u32>(2);
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.try_send(1), Err(TrySendError::Closed(1)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_senders_through_a_one_slot_lane_lose_nothing_and_keep_their_order() {
        const SENDERS: u32 = 4;
        const EACH: u32 = 20_000;
        let (tx, mut rx) = lane::<(u32, u32)>(1);
        let senders: Vec<_> = (0..SENDERS)
            .map(|s| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    for i in 0..EACH {
                        // Both ways of sending, so both meet a full lane.
                        if i % 2 == 0 {
                            tx.send((s, i)).await.unwrap();
                        } else if let Err(TrySendError::Full(p)) = tx.try_send((s, i)) {
                            tx.send(p).await.unwrap();
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        let reader = async {
            let mut next = vec![0; SENDERS as usize];
            while let Some((s, i)) = std::future::poll_fn(|cx| rx.poll_recv(cx)).await {
                assert_eq!(i, next[s as usize], "sender {s} out of order");
                next[s as usize] += 1;
            }
            next
        };
        // A lost wake-up on either side would hang here.
        let next = tokio::time::timeout(std::time::Duration::from_secs(60), reader)
            .await
            .expect("no lost wake-up");
        assert_eq!(next, vec![EACH; SENDERS as usize]);
        for s in senders {
            s.await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_reader_that_never_finds_the_lane_empty_still_yields() {
        let (tx, mut rx) = lane::<u32>(1000);
        for i in 0..1000 {
            tx.try_send(i).unwrap();
        }
        // Within one poll of this task, receives succeed until the task's
        // budget is spent, then the lane asks the task to yield.
        let ready = std::future::poll_fn(|cx| {
            let mut n = 0;
            while let Poll::Ready(Some(_)) = rx.poll_recv(cx) {
                n += 1;
            }
            Poll::Ready(n)
        })
        .await;
        assert!(ready > 0 && ready < 1000, "{ready} receives in one poll");
        // After a yield, receiving goes on where it stopped.
        tokio::task::yield_now().await;
        assert_eq!(rx.try_recv(), Ok(ready));
    }
}
