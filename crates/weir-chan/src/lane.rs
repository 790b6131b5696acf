//! A bounded channel with many senders and one reader: a `VecDeque` behind
//! a `Mutex`.
//!
//! Room is counted in *weight*: by default each value weighs 1; a lane made
//! with [`lane_weighed`] weighs each value with a function (a chunk weighs
//! its item count), so a bound stays a bound on items however they are
//! grouped. A value heavier than the capacity still enters an empty lane.
//!
//! Why not tokio's `mpsc`: a chunked edge pays its channel once per chunk
//! under load, but once per item when idle, where the hop is most of an
//! item's latency; one lock, a push and a wake-up cost less than tokio's
//! bounded `mpsc` (a semaphore whose permit return takes a lock, a block
//! list, an `AtomicWaker`). `docs/benchmarks.md` has the comparison.
//! Both sides take the lock for a few instructions only; wake-ups happen
//! after it is released.
//!
//! * **Reader:** [`LaneRx::poll_recv`] pops the front value or leaves its
//!   waker; every push takes that waker and wakes it.
//!   [`LaneRx::poll_recv_all`] takes everything queued at once. Each
//!   successful receive spends one unit of tokio's cooperative budget, as
//!   tokio's own channels do, so a reader that never finds its lane empty
//!   still yields.
//! * **Senders:** [`LaneTx::try_send`] never waits; [`LaneTx::send`] waits
//!   on a [`Notify`] for room. Each pop rings it once if a sender is
//!   waiting, so every slot freed reaches a waiting sender, and a sender
//!   whose wait is cancelled passes on a ring it got (tokio's `Notify`
//!   does). No sender waits while there is room.
//!   [`LaneTx::push_evicting`] makes room by dropping the oldest value.
//! * **Closing:** the lane closes when the reader closes it or is dropped
//!   (sends fail from then on; waiting senders are woken and fail), and
//!   ends for the reader once every sender is gone and the values sent
//!   before were read.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

/// What the lock guards.
struct State<T> {
    queue: VecDeque<T>,
    /// The weight of what `queue` holds.
    weight: usize,
    /// Live senders; at zero (and empty) the reader sees the end.
    senders: usize,
    /// The reader closed the lane or is gone: sends fail.
    closed: bool,
    /// The reader's waker, while it waits for a value.
    reader: Option<Waker>,
    /// Senders waiting for room.
    waiting: usize,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// The most weight the lane holds (at least 1).
    capacity: usize,
    /// A value's weight.
    weigh: fn(&T) -> usize,
    /// Rung when room frees (or the lane closes) and a sender waits.
    room: Notify,
}

impl<T> Shared<T> {
    /// The state. No code holding the lock can panic, but if some did, the
    /// state is still consistent (every change is one field at a time), so
    /// a poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `weight` more may enter now.
    fn room(&self, state: &State<T>, weight: usize) -> Result<(), TrySendError<()>> {
        if state.closed {
            Err(TrySendError::Closed(()))
        } else if state.weight > 0 && state.weight.saturating_add(weight) > self.capacity {
            Err(TrySendError::Full(()))
        } else {
            Ok(())
        }
    }

    /// Pushes `value` of `weight`, releases the lock, then wakes the reader
    /// if it waits.
    fn push(&self, mut state: MutexGuard<'_, State<T>>, value: T, weight: usize) {
        state.queue.push_back(value);
        state.weight += weight;
        let reader = state.reader.take();
        drop(state);
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    /// Pops the front value, lowering the weight; whether a sender waits.
    fn pop(&self, state: &mut State<T>) -> Option<(T, bool)> {
        let value = state.queue.pop_front()?;
        state.weight = state.weight.saturating_sub((self.weigh)(&value));
        Some((value, state.waiting > 0))
    }
}

fn weighs_one<T>(_: &T) -> usize {
    1
}

/// A new lane with room for `capacity` values (at least 1), each weighing 1.
pub fn lane<T>(capacity: usize) -> (LaneTx<T>, LaneRx<T>) {
    lane_weighed(capacity, weighs_one)
}

/// A new lane with room for `capacity` weight (at least 1), each value
/// weighing `weigh(&value)`.
pub fn lane_weighed<T>(capacity: usize, weigh: fn(&T) -> usize) -> (LaneTx<T>, LaneRx<T>) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            // Allocated on the first push and grown as it fills, so a huge
            // capacity (or a huge value type) costs nothing up front.
            queue: VecDeque::new(),
            weight: 0,
            senders: 1,
            closed: false,
            reader: None,
            waiting: 0,
        }),
        capacity,
        weigh,
        room: Notify::new(),
    });
    (
        LaneTx {
            shared: Arc::clone(&shared),
        },
        LaneRx { shared },
    )
}

/// Why [`LaneTx::try_send`] failed; the value comes back.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The lane is full.
    Full(T),
    /// The reader closed the lane or is gone.
    Closed(T),
}

/// A sending half. Clones share the lane; the reader sees the end once all
/// of them are dropped.
pub struct LaneTx<T> {
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
    /// Puts `value` at the back of the lane if there is room, and wakes the
    /// reader if it waits.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let weight = (self.shared.weigh)(&value);
        let state = self.shared.lock();
        match self.shared.room(&state, weight) {
            Ok(()) => {
                self.shared.push(state, value, weight);
                Ok(())
            }
            Err(TrySendError::Full(())) => Err(TrySendError::Full(value)),
            Err(TrySendError::Closed(())) => Err(TrySendError::Closed(value)),
        }
    }

    /// As [`try_send`](Self::try_send) for a value of `weight`, made only
    /// once there is room for it, under the lock (so `make` must be quick):
    /// a sender whose lane is full keeps what it would have sent as it is.
    /// `make` is dropped unused, after the lock is released, when the lane
    /// is full or closed.
    pub fn try_send_with(
        &self,
        weight: usize,
        make: impl FnOnce() -> T,
    ) -> Result<(), TrySendError<()>> {
        let state = self.shared.lock();
        self.shared.room(&state, weight)?;
        self.shared.push(state, make(), weight);
        Ok(())
    }

    /// Sends `value`, waiting for room; `Err` gives it back when the lane
    /// is closed.
    ///
    /// Cancel safe in the sense that matters here: if the future is dropped
    /// the value is dropped with it, unsent, and any ring for room it had
    /// received goes to another waiting sender.
    pub async fn send(&self, value: T) -> Result<(), T> {
        let mut value = match self.try_send(value) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(value)) => return Err(value),
            Err(TrySendError::Full(value)) => value,
        };
        let _waiting = Waiting::new(&self.shared);
        loop {
            // Registered before looking, so a ring after the look is kept.
            let notified = self.shared.room.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            value = match self.try_send(value) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(value)) => return Err(value),
                Err(TrySendError::Full(value)) => value,
            };
            notified.await;
        }
    }

    /// Puts `value` at the back without waiting: when the lane is full, the
    /// oldest values are taken out to make room and handed back (`Ok(Some)`
    /// with the last one taken; in a lane of weight-1 values, exactly one).
    /// `Err` gives `value` back when the lane is closed.
    pub fn push_evicting(&self, value: T) -> Result<Option<T>, T> {
        let weight = (self.shared.weigh)(&value);
        let mut state = self.shared.lock();
        if state.closed {
            return Err(value);
        }
        let mut evicted = None;
        while self.shared.room(&state, weight).is_err() {
            match self.shared.pop(&mut state) {
                Some((old, _)) => evicted = Some(old),
                None => break,
            }
        }
        self.shared.push(state, value, weight);
        Ok(evicted)
    }

    /// Whether the reader closed the lane or is gone.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// How many values wait in the lane.
    pub fn len(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Whether no value waits in the lane.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the lane holds all the weight it may (a value of weight 1
    /// would not enter now).
    pub fn is_full(&self) -> bool {
        self.shared.lock().weight >= self.shared.capacity
    }

    /// A sender that does not keep the lane open.
    pub fn downgrade(&self) -> WeakLaneTx<T> {
        WeakLaneTx {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// A [`LaneTx`] that does not keep the lane open: the reader sees the end
/// when every strong sender is gone, whatever weak ones are left.
pub struct WeakLaneTx<T> {
    shared: Arc<Shared<T>>,
}

impl<T> WeakLaneTx<T> {
    /// A strong sender, while some strong sender is still alive.
    pub fn upgrade(&self) -> Option<LaneTx<T>> {
        let mut state = self.shared.lock();
        if state.senders == 0 {
            return None;
        }
        state.senders += 1;
        Some(LaneTx {
            shared: Arc::clone(&self.shared),
        })
    }
}

impl<T> fmt::Debug for WeakLaneTx<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakLaneTx").finish_non_exhaustive()
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
pub enum TryRecvError {
    /// Nothing now; more may come.
    Empty,
    /// Nothing, and nothing more will come (every sender is gone, or the
    /// lane was closed).
    Disconnected,
}

/// The reading half. Dropping it closes the lane.
pub struct LaneRx<T> {
    shared: Arc<Shared<T>>,
}

impl<T> fmt::Debug for LaneRx<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("LaneRx")
            .field("len", &state.queue.len())
            .field("weight", &state.weight)
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
    /// Takes the front value, or says why there is none, without waiting.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        match self.shared.pop(&mut state) {
            Some((value, ring)) => {
                drop(state);
                if ring {
                    self.shared.room.notify_one();
                }
                Ok(value)
            }
            None if state.senders == 0 || state.closed => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// The front value; `None` once nothing more will come. While the lane
    /// is empty, the reader's waker waits for the next push.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let mut state = self.shared.lock();
        if let Some((value, ring)) = self.shared.pop(&mut state) {
            drop(state);
            if ring {
                self.shared.room.notify_one();
            }
            coop.made_progress();
            return Poll::Ready(Some(value));
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

    /// Moves every queued value to the back of `into`: `Ready(true)` when
    /// it moved some, `Ready(false)` once nothing more will come, and
    /// `Pending` (the reader's waker waits for the next push) otherwise.
    pub fn poll_recv_all(&mut self, cx: &mut Context<'_>, into: &mut VecDeque<T>) -> Poll<bool> {
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let mut state = self.shared.lock();
        if state.queue.is_empty() {
            if state.senders == 0 || state.closed {
                coop.made_progress();
                return Poll::Ready(false);
            }
            match &mut state.reader {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        if into.is_empty() {
            // Swapping keeps both buffers' capacity in use.
            std::mem::swap(&mut state.queue, into);
        } else {
            into.append(&mut state.queue);
        }
        state.weight = 0;
        let ring = state.waiting > 0;
        drop(state);
        if ring {
            self.shared.room.notify_waiters();
        }
        coop.made_progress();
        Poll::Ready(true)
    }

    /// Closes the lane: sends fail from now on, and senders waiting for room
    /// are woken to fail. What was sent before can still be read.
    pub fn close(&mut self) {
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

    /// Closes the lane and takes what it still holds, so the caller drops
    /// it outside the lock (a value's destructor may do anything).
    pub fn close_and_take(&mut self) -> VecDeque<T> {
        self.close();
        let mut state = self.shared.lock();
        state.weight = 0;
        std::mem::take(&mut state.queue)
    }

    /// Whether nothing more can come: closed, or every sender is gone.
    pub fn is_closed(&self) -> bool {
        let state = self.shared.lock();
        state.closed || state.senders == 0
    }

    /// Whether no value waits in the lane.
    pub fn is_empty(&self) -> bool {
        self.shared.lock().queue.is_empty()
    }

    /// How many values wait in the lane.
    pub fn len(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// The weight of what waits in the lane.
    pub fn weight(&self) -> usize {
        self.shared.lock().weight
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

    #[test]
    fn weighed_values_fill_the_lane_by_weight_and_a_heavy_one_enters_an_empty_lane() {
        let (tx, mut rx) = lane_weighed::<Vec<u32>>(4, Vec::len);
        tx.try_send(vec![1, 2, 3]).unwrap();
        assert_eq!(tx.try_send(vec![4, 5]), Err(TrySendError::Full(vec![4, 5])));
        tx.try_send(vec![4]).unwrap();
        assert_eq!(rx.try_recv(), Ok(vec![1, 2, 3]));
        assert_eq!(rx.try_recv(), Ok(vec![4]));
        // Heavier than the whole capacity: admitted alone.
        tx.try_send(vec![0; 9]).unwrap();
        assert_eq!(tx.try_send(vec![1]), Err(TrySendError::Full(vec![1])));
        assert_eq!(rx.try_recv().map(|v| v.len()), Ok(9));
        assert_eq!(
            tx.try_send_with(4, || vec![1, 2, 3, 4]),
            Ok(()),
            "the lane is empty again"
        );
        assert_eq!(
            tx.try_send_with(1, || unreachable!()),
            Err(TrySendError::Full(()))
        );
    }

    #[test]
    fn an_evicting_push_hands_back_the_oldest_and_fails_only_when_closed() {
        let (tx, mut rx) = lane::<u32>(2);
        assert_eq!(tx.push_evicting(1), Ok(None));
        assert_eq!(tx.push_evicting(2), Ok(None));
        assert_eq!(tx.push_evicting(3), Ok(Some(1)));
        assert_eq!(tx.len(), 2);
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Ok(3));
        rx.close();
        assert_eq!(tx.push_evicting(4), Err(4));
    }

    #[test]
    fn taking_everything_at_once_frees_all_room_and_sees_the_end() {
        let (tx, mut rx) = lane::<u32>(3);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut into = VecDeque::from([0]);
        assert_eq!(rx.poll_recv_all(&mut cx, &mut into), Poll::Pending);
        for i in 1..=3 {
            tx.try_send(i).unwrap();
        }
        {
            let mut waiting = pin!(tx.send(4));
            assert!(poll_once(waiting.as_mut()).is_pending());
            assert_eq!(rx.poll_recv_all(&mut cx, &mut into), Poll::Ready(true));
            assert_eq!(into, [0, 1, 2, 3]);
            // All the room freed reaches the waiting sender.
            assert_eq!(poll_once(waiting.as_mut()), Poll::Ready(Ok(())));
        }
        drop(tx);
        into.clear();
        assert_eq!(rx.poll_recv_all(&mut cx, &mut into), Poll::Ready(true));
        assert_eq!(into, [4]);
        assert_eq!(rx.poll_recv_all(&mut cx, &mut into), Poll::Ready(false));
    }

    #[test]
    fn close_and_take_hands_over_what_was_queued_and_fails_later_sends() {
        let (tx, mut rx) = lane::<u32>(3);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(rx.close_and_take(), [1, 2]);
        assert!(rx.is_empty());
        assert_eq!(tx.try_send(3), Err(TrySendError::Closed(3)));
    }

    #[test]
    fn a_weak_sender_upgrades_only_while_a_strong_one_lives() {
        let (tx, mut rx) = lane::<u32>(2);
        let weak = tx.downgrade();
        let strong = weak.upgrade().unwrap();
        drop(tx);
        strong.try_send(1).unwrap();
        drop(strong);
        assert!(weak.upgrade().is_none(), "every strong sender is gone");
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }
}
