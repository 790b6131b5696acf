//! The drop pattern: `Shedder` policies, counts, closing, and `offer` never
//! waiting.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use proptest::prelude::*;
use weir_core::{
    MAX_CAPACITY, Offer, Problem, ShedPolicy, ShedReceiver, ShedTryRecvError as TryRecvError,
    Shedder,
};

#[test]
fn zero_capacity_is_a_config_error() {
    let err = Shedder::<u32>::new(0, ShedPolicy::DropNewest).unwrap_err();
    assert_eq!(err.problem(), &Problem::Zero);
    assert_eq!(
        (err.construct(), err.setting()),
        ("shedder `shedder`", "capacity")
    );
    assert_eq!(
        err.to_string(),
        "shedder `shedder`: capacity must be at least 1 (got 0)"
    );
    let err = Shedder::<u32>::named("dns", 0, ShedPolicy::DropOldest).unwrap_err();
    assert_eq!(
        err.to_string(),
        "shedder `dns`: capacity must be at least 1 (got 0)"
    );
}

/// Nothing is allocated for the queue up front: with items of 16 TiB, a
/// queue of `MAX_CAPACITY` slots made at `new` would overflow `usize`
/// ("capacity overflow" panic), and even one slot could not be allocated.
#[test]
fn a_huge_capacity_allocates_nothing_up_front() {
    type Huge = [u8; 1 << 44];
    let (tx, rx) = Shedder::<Huge>::new(usize::MAX, ShedPolicy::DropOldest).unwrap();
    assert_eq!(tx.capacity(), MAX_CAPACITY);
    assert!(tx.is_empty() && rx.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_huge_capacity_is_lowered_and_works() {
    let (tx, mut rx) = Shedder::new(usize::MAX, ShedPolicy::DropNewest).unwrap();
    assert_eq!(tx.capacity(), MAX_CAPACITY);
    for i in 0..1000 {
        assert!(tx.offer(i).is_sent());
    }
    assert_eq!(rx.recv().await, Some(0));
    assert_eq!(tx.len(), 999);
}

#[tokio::test(start_paused = true)]
async fn drop_newest_refuses_the_new_item_and_counts_it() {
    let (tx, mut rx) = Shedder::new(2, ShedPolicy::DropNewest).unwrap();
    assert_eq!(tx.offer(1), Offer::Sent);
    assert_eq!(tx.offer(2), Offer::Sent);
    assert_eq!(tx.offer(3), Offer::Dropped(3));
    assert_eq!(tx.offer(4), Offer::Dropped(4));
    assert_eq!((tx.sent(), tx.dropped(), rx.dropped()), (2, 2, 2));
    assert_eq!(tx.len(), 2);
    assert_eq!(rx.recv().await, Some(1));
    // Room again: the next offer is queued.
    assert_eq!(tx.offer(5), Offer::Sent);
    drop(tx);
    assert_eq!(rx.recv().await, Some(2));
    assert_eq!(rx.recv().await, Some(5));
    assert_eq!(rx.recv().await, None);
}

#[tokio::test(start_paused = true)]
async fn drop_oldest_evicts_the_oldest_and_hands_it_back() {
    let (tx, mut rx) = Shedder::new(2, ShedPolicy::DropOldest).unwrap();
    assert_eq!(tx.offer(1), Offer::Sent);
    assert_eq!(tx.offer(2), Offer::Sent);
    assert_eq!(tx.offer(3), Offer::Evicted(1));
    assert_eq!(tx.offer(4), Offer::Evicted(2));
    // Every offered item was queued; two of them were evicted later.
    assert_eq!((tx.sent(), tx.dropped()), (4, 2));
    drop(tx);
    let rest: Vec<_> = (&mut rx).collect().await;
    assert_eq!(rest, [3, 4]);
}

#[test]
fn offer_is_a_plain_function_that_needs_no_runtime() {
    // No tokio runtime exists in this test: `offer` must neither await nor
    // spawn. The type annotation would not compile if `offer` returned a
    // future.
    let (tx, mut rx) = Shedder::new(1, ShedPolicy::DropNewest).unwrap();
    let first: Offer<&str> = tx.offer("a");
    assert!(first.is_sent());
    let second: Offer<&str> = tx.offer("b");
    assert!(second.is_shed());
    assert_eq!(second.into_inner(), Some("b"));
    assert_eq!(rx.try_recv(), Ok("a"));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    drop(tx);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

#[tokio::test(start_paused = true)]
async fn a_stuck_consumer_never_slows_the_producer() {
    let (tx, mut rx) = Shedder::new(8, ShedPolicy::DropOldest).unwrap();
    let start = tokio::time::Instant::now();
    for i in 0..10_000u32 {
        let _ = tx.offer(i);
    }
    // Under a paused clock time only moves when the runtime waits: it did not.
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!((tx.sent(), tx.dropped()), (10_000, 10_000 - 8));
    drop(tx);
    let kept: Vec<u32> = (&mut rx).collect().await;
    assert_eq!(kept, (10_000 - 8..10_000).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn dropped_receiver_closes_and_hands_the_item_back() {
    let live = Arc::new(AtomicUsize::new(0));
    struct Tracked(Arc<AtomicUsize>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let make = || {
        live.fetch_add(1, Ordering::SeqCst);
        Tracked(Arc::clone(&live))
    };

    let (tx, rx) = Shedder::new(4, ShedPolicy::DropNewest).unwrap();
    assert!(tx.offer(make()).is_sent());
    assert!(tx.offer(make()).is_sent());
    assert!(!tx.is_closed());
    drop(rx);
    // The queued items were dropped with the receiver: nothing leaks.
    assert_eq!(live.load(Ordering::SeqCst), 0);
    assert!(tx.is_closed());
    let offer = tx.offer(make());
    assert!(offer.is_closed());
    // The item comes back to the caller, and a closed queue is not a drop.
    let back = offer.into_inner().unwrap();
    assert_eq!(live.load(Ordering::SeqCst), 1);
    drop(back);
    assert_eq!(tx.dropped(), 0);
}

#[tokio::test(start_paused = true)]
async fn receiver_ends_only_after_every_clone_is_dropped_and_the_queue_drained() {
    let (tx, mut rx) = Shedder::new(4, ShedPolicy::DropNewest).unwrap();
    let tx2 = tx.clone();
    assert!(tx.offer(1).is_sent());
    drop(tx);
    assert!(!rx.is_closed());
    assert!(tx2.offer(2).is_sent());
    drop(tx2);
    assert!(rx.is_closed());
    assert_eq!(rx.recv().await, Some(1));
    assert_eq!(rx.recv().await, Some(2));
    assert_eq!(rx.recv().await, None);
    assert_eq!(rx.recv().await, None);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_consumer_is_woken_by_offer_and_by_the_last_drop() {
    let (tx, mut rx) = Shedder::new(4, ShedPolicy::DropNewest).unwrap();
    let consumer = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(item) = rx.recv().await {
            got.push(item);
        }
        got
    });
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(tx.offer(i).is_sent());
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(tx);
    assert_eq!(consumer.await.unwrap(), [0, 1, 2]);
}

#[tokio::test(start_paused = true)]
async fn cancelled_recv_takes_nothing() {
    let (tx, mut rx) = Shedder::new(4, ShedPolicy::DropNewest).unwrap();
    let timed_out = tokio::time::timeout(Duration::from_millis(10), rx.recv()).await;
    assert!(timed_out.is_err());
    assert!(tx.offer(7).is_sent());
    assert_eq!(rx.recv().await, Some(7));
}

#[test]
fn auto_traits() {
    fn send_sync_clone<T: Send + Sync + Clone>() {}
    fn send_sync_unpin<T: Send + Sync + Unpin>() {}
    send_sync_clone::<Shedder<String>>();
    send_sync_unpin::<ShedReceiver<String>>();
    send_sync_unpin::<Offer<String>>();
}

#[derive(Debug, Clone)]
enum Op {
    Offer,
    Recv,
}

proptest! {
    /// Every offered item is accounted for: received, still queued, refused
    /// or evicted; and the items that come out are in the order they went in.
    #[test]
    fn accounting_adds_up(
        capacity in 1usize..6,
        oldest in any::<bool>(),
        ops in proptest::collection::vec(prop_oneof![3 => Just(Op::Offer), 1 => Just(Op::Recv)], 0..200),
    ) {
        let policy = if oldest { ShedPolicy::DropOldest } else { ShedPolicy::DropNewest };
        let (tx, mut rx) = Shedder::new(capacity, policy).unwrap();
        let (mut next, mut refused, mut evicted, mut received) = (0u64, 0u64, 0u64, Vec::new());
        for op in ops {
            match op {
                Op::Offer => {
                    match tx.offer(next) {
                        Offer::Sent => {}
                        Offer::Dropped(item) => { prop_assert_eq!(item, next); refused += 1; }
                        Offer::Evicted(_) => evicted += 1,
                        Offer::Closed(_) => prop_assert!(false, "receiver is alive"),
                    }
                    next += 1;
                    prop_assert!(tx.len() <= capacity);
                }
                Op::Recv => {
                    if let Ok(item) = rx.try_recv() { received.push(item); }
                }
            }
        }
        let queued = tx.len() as u64;
        prop_assert_eq!(tx.dropped(), refused + evicted);
        prop_assert_eq!(tx.sent() + refused, next);
        prop_assert_eq!(received.len() as u64 + queued + evicted, tx.sent());
        drop(tx);
        while let Ok(item) = rx.try_recv() { received.push(item); }
        prop_assert!(received.windows(2).all(|w| w[0] < w[1]));
        if oldest && next > 0 {
            // DropOldest never refuses, so the newest item always gets through.
            prop_assert_eq!(received.last().copied(), Some(next - 1));
        }
    }
}

/// Many producers on several threads against a consumer: every item is
/// received, refused or evicted exactly once, and each producer's items come
/// out in the order it offered them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_producers_account_for_every_item() {
    const PRODUCERS: u64 = 4;
    const EACH: u64 = 2_000;
    for policy in [ShedPolicy::DropNewest, ShedPolicy::DropOldest] {
        let (tx, mut rx) = Shedder::new(16, policy).unwrap();
        let consumer = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(item) = rx.recv().await {
                got.push(item);
                if got.len() % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            got
        });
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut shed = 0u64;
                    for i in 0..EACH {
                        match tx.offer((p, i)) {
                            Offer::Sent => {}
                            Offer::Dropped(_) | Offer::Evicted(_) => shed += 1,
                            Offer::Closed(_) => panic!("receiver is alive"),
                        }
                        if i % 100 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    shed
                })
            })
            .collect();
        drop(tx);
        let mut shed = 0;
        for producer in producers {
            shed += producer.await.unwrap();
        }
        let got = consumer.await.unwrap();
        assert_eq!(got.len() as u64 + shed, PRODUCERS * EACH, "{policy:?}");
        for p in 0..PRODUCERS {
            let mine: Vec<u64> = got
                .iter()
                .filter(|(q, _)| *q == p)
                .map(|(_, i)| *i)
                .collect();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "{policy:?}: order kept"
            );
        }
    }
}
