//! Fan-out: `distribute` and `broadcast`.
#![allow(clippy::unwrap_used)]

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use proptest::prelude::*;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use weir_core::{Fan, FanError};

type Input<T> = Pin<Box<dyn Stream<Item = T> + Send>>;

/// The settings every test uses: a `Fan` under `token`.
fn fan(token: &CancellationToken) -> Fan {
    Fan::new().context(token)
}

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

async fn settle() {
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn distribute_one_slow_consumer_does_not_stall_the_fast_ones() {
    let before = alive();
    let token = CancellationToken::new();
    let outs = fan(&token).distribute(stream::iter(0..200u32), 4).unwrap();
    let mut consumers = Vec::new();
    for (i, mut out) in outs.into_iter().enumerate() {
        let per_item = if i == 0 {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(10)
        };
        consumers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(x) = out.recv().await {
                got.push(x);
                sleep(per_item).await;
            }
            got
        }));
    }
    let mut per_consumer = Vec::new();
    for c in consumers {
        per_consumer.push(c.await.unwrap());
    }
    let counts: Vec<usize> = per_consumer.iter().map(Vec::len).collect();
    // The fast ones need 200 / 3 * 10ms ≈ 670ms: the slow one gets one item.
    assert!(counts[0] <= 1, "slow consumer took {counts:?}");
    assert!(counts[1..].iter().sum::<usize>() >= 199);
    let mut all: Vec<u32> = per_consumer.concat();
    all.sort();
    assert_eq!(all, (0..200).collect::<Vec<_>>(), "each item exactly once");
    settle().await;
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn distribute_dropping_some_outputs_loses_nothing() {
    let token = CancellationToken::new();
    let mut outs = fan(&token).distribute(stream::iter(0..100u32), 3).unwrap();
    let mut first = outs.remove(0);
    let a = first.recv().await.unwrap();
    drop(outs); // two of three outputs gone
    let mut got = vec![a];
    got.extend(first.collect_all().await);
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn distribute_all_outputs_dropped_ends_the_task_even_if_the_input_is_idle() {
    let before = alive();
    let token = CancellationToken::new();
    let idle: Input<u8> = Box::pin(stream::pending());
    let outs = fan(&token).distribute(idle, 3).unwrap();
    let handle = outs[0].handle();
    settle().await;
    assert_eq!(alive(), before + 1);
    drop(outs);
    tokio::time::timeout(Duration::from_secs(1), handle.join())
        .await
        .expect("task ends promptly")
        .unwrap();
    settle().await;
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn distribute_stops_on_the_token() {
    let token = CancellationToken::new();
    let outs = fan(&token).distribute(stream::repeat(7u8), 2).unwrap();
    let handle = outs[0].handle();
    token.cancel();
    let mut got = 0;
    for out in outs {
        let items = out.collect_all().await.len();
        assert!(items <= weir_core::DEFAULT_CAPACITY);
        got += items as u64;
    }
    let err = handle.join().await.unwrap_err();
    assert!(matches!(err.error(), FanError::Stopped(c) if c.is_cancelled()));
    assert_eq!(err.report().delivered, got);
}

#[tokio::test]
async fn zero_or_too_many_outputs_is_an_error() {
    let token = CancellationToken::new();
    let err = fan(&token).distribute(stream::iter(0..3), 0).unwrap_err();
    assert!(err.is_zero());
    assert_eq!(
        err.to_string(),
        "distribute: outputs must be at least 1 (got 0)"
    );
    assert!(
        fan(&token)
            .broadcast(stream::iter(0..3), 0)
            .unwrap_err()
            .is_zero()
    );
    for n in [weir_core::MAX_WORKERS + 1, usize::MAX] {
        let err = fan(&token).distribute(stream::iter(0..3), n).unwrap_err();
        assert!(matches!(err.problem(), weir_core::Problem::TooLarge { .. }));
        let err = fan(&token).broadcast(stream::iter(0..3), n).unwrap_err();
        assert!(matches!(err.problem(), weir_core::Problem::TooLarge { .. }));
    }
    assert!(
        fan(&token)
            .capacity(0)
            .distribute(stream::iter(0..3), 2)
            .unwrap_err()
            .is_zero()
    );
}

#[tokio::test]
async fn a_huge_capacity_is_lowered_and_works() {
    let token = CancellationToken::new();
    let outs = fan(&token)
        .capacity(usize::MAX)
        .broadcast(stream::iter(0..3), 2)
        .unwrap();
    for out in outs {
        assert_eq!(out.collect_all().await, [0, 1, 2]);
    }
    let outs = fan(&token)
        .capacity(usize::MAX)
        .distribute(stream::iter(0..3), 2)
        .unwrap();
    let mut total = 0;
    for out in outs {
        total += out.collect_all().await.len();
    }
    assert_eq!(total, 3);
}

#[tokio::test(start_paused = true)]
async fn broadcast_every_output_sees_every_item_in_order() {
    let before = alive();
    let token = CancellationToken::new();
    let outs = fan(&token).broadcast(stream::iter(0..100u32), 3).unwrap();
    let handle = outs[0].handle();
    let readers: Vec<_> = outs
        .into_iter()
        .enumerate()
        .map(|(i, out)| {
            tokio::spawn(async move {
                out.then(|x| async move {
                    sleep(Duration::from_millis(i as u64)).await;
                    x
                })
                .collect::<Vec<_>>()
                .await
            })
        })
        .collect();
    for r in readers {
        assert_eq!(r.await.unwrap(), (0..100).collect::<Vec<_>>());
    }
    handle.join().await.unwrap();
    settle().await;
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn broadcast_dropping_one_output_does_not_stop_the_others() {
    let token = CancellationToken::new();
    let outs = fan(&token).broadcast(stream::iter(0..50u32), 3).unwrap();
    let mut outs = outs.into_iter();
    let (mut a, mut b, c) = (
        outs.next().unwrap(),
        outs.next().unwrap(),
        outs.next().unwrap(),
    );
    for i in 0..5 {
        assert_eq!(b.recv().await, Some(i));
    }
    drop(b);
    let c = tokio::spawn(c.collect_all());
    let mut got = Vec::new();
    while let Some(x) = a.recv().await {
        got.push(x);
    }
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    assert_eq!(c.await.unwrap(), (0..50).collect::<Vec<_>>());
    a.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn broadcast_the_slowest_output_sets_the_pace() {
    let pulled = Arc::new(AtomicUsize::new(0));
    let p = pulled.clone();
    let token = CancellationToken::new();
    let input = stream::iter(0..1000u32).inspect(move |_| {
        p.fetch_add(1, Ordering::SeqCst);
    });
    let outs = fan(&token).capacity(4).broadcast(input, 2).unwrap();
    let mut outs = outs.into_iter();
    let (fast, slow) = (outs.next().unwrap(), outs.next().unwrap());
    let fast = tokio::spawn(async move {
        let mut fast = fast;
        let mut n = 0;
        while tokio::time::timeout(Duration::from_secs(1), fast.recv())
            .await
            .is_ok_and(|x| x.is_some())
        {
            n += 1;
        }
        (n, fast)
    });
    let (n, fast) = fast.await.unwrap();
    // The slow output holds 4 and the task holds one more: the fast one cannot
    // run further ahead than that.
    assert!(n <= 4 + 1, "fast output ran {n} items ahead");
    assert!(pulled.load(Ordering::SeqCst) <= 4 + 2);
    drop(slow);
    // With the slow one gone, the fast one gets the rest.
    assert_eq!(n + fast.collect_all().await.len(), 1000);
}

#[tokio::test(start_paused = true)]
async fn broadcast_all_outputs_dropped_ends_the_task() {
    let before = alive();
    let token = CancellationToken::new();
    let outs = fan(&token).broadcast(stream::repeat(1u8), 2).unwrap();
    let handle = outs[0].handle();
    drop(outs);
    tokio::time::timeout(Duration::from_secs(1), handle.join())
        .await
        .expect("task ends promptly")
        .unwrap();
    settle().await;
    assert_eq!(alive(), before);
}

#[derive(Debug)]
struct BadClone;

impl Clone for BadClone {
    fn clone(&self) -> Self {
        panic!("cannot clone this");
    }
}

#[tokio::test(start_paused = true)]
async fn broadcast_a_panicking_clone_is_reported() {
    let token = CancellationToken::new();
    let outs = fan(&token)
        .broadcast(stream::iter(vec![BadClone]), 2)
        .unwrap();
    let handle = outs[0].handle();
    for out in outs {
        assert!(out.collect_all().await.is_empty());
    }
    let err = handle.join().await.unwrap_err();
    assert_eq!(err.to_string(), "branch 0 panicked: cannot clone this");
}

proptest! {
    #[test]
    fn distribute_conserves_the_multiset(
        items in proptest::collection::vec(0u16..1000, 0..200),
        n in 1usize..6,
        capacity in 1usize..8,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let mut got = rt.block_on(async {
            let token = CancellationToken::new();
            let outs = fan(&token).capacity(capacity).distribute(stream::iter(items.clone()), n).unwrap();
            let handle = outs[0].handle();
            let readers: Vec<_> = outs.into_iter().map(|o| tokio::spawn(o.collect_all())).collect();
            let mut got = Vec::new();
            for r in readers {
                got.extend(r.await.unwrap());
            }
            handle.join().await.unwrap();
            got
        });
        let mut expected = items.clone();
        expected.sort();
        got.sort();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn broadcast_gives_every_output_the_whole_input(
        items in proptest::collection::vec(0u16..1000, 0..100),
        n in 1usize..5,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let parts = rt.block_on(async {
            let token = CancellationToken::new();
            let outs = fan(&token).broadcast(stream::iter(items.clone()), n).unwrap();
            let readers: Vec<_> = outs.into_iter().map(|o| tokio::spawn(o.collect_all())).collect();
            let mut parts = Vec::new();
            for r in readers {
                parts.push(r.await.unwrap());
            }
            parts
        });
        prop_assert_eq!(parts.len(), n);
        for part in parts {
            prop_assert_eq!(&part, &items);
        }
    }
}
