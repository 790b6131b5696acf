//! Fan-in: `merge` and `merge_in_turn`.
#![allow(clippy::unwrap_used)]

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use proptest::prelude::*;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use weir_core::{Fan, FanError, FanHandle, FanReceiver};

type Input<T> = Pin<Box<dyn Stream<Item = T> + Send>>;

/// `items`, one every `every`, starting after `every`.
/// The settings every test uses: a `Fan` under `token`.
fn fan(token: &CancellationToken) -> Fan {
    Fan::new().context(token)
}

fn paced<T: Send + 'static>(items: Vec<T>, every: Duration) -> Input<T> {
    Box::pin(stream::iter(items).then(move |x| async move {
        sleep(every).await;
        x
    }))
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

#[test]
fn public_types_are_send_sync_unpin() {
    fn send_unpin<T: Send + Unpin>() {}
    fn send_sync<T: Send + Sync>() {}
    send_unpin::<FanReceiver<String>>();
    send_sync::<FanReceiver<String>>();
    send_sync::<FanHandle>();
    send_sync::<Fan>();
    send_sync::<FanError>();
}

#[tokio::test(start_paused = true)]
async fn merge_of_three_inputs_delivers_everything_once_then_closes() {
    let before = alive();
    let token = CancellationToken::new();
    let start = Instant::now();
    let inputs = vec![
        paced((0..5).collect::<Vec<u32>>(), Duration::from_millis(10)), // closes at 50ms
        paced((100..103).collect(), Duration::from_millis(30)),         // closes at 90ms
        paced((200..210).collect(), Duration::from_millis(1)),          // closes at 10ms
    ];
    let mut out = fan(&token).merge(inputs).unwrap();
    let mut got = Vec::new();
    while let Some(x) = out.recv().await {
        got.push(x);
    }
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(90),
        "closes with the last input"
    );

    // Each input's items keep their order.
    for range in [0..5, 100..103, 200..210] {
        let from_input: Vec<u32> = got.iter().copied().filter(|x| range.contains(x)).collect();
        assert_eq!(from_input, range.collect::<Vec<_>>());
    }
    // Inputs interleave: the fast input is done before the slow one starts.
    assert_eq!(got[0], 200);
    assert_eq!(*got.last().unwrap(), 102);
    assert_eq!(got.len(), 18);

    out.join().await.unwrap();
    settle().await;
    assert_eq!(alive(), before, "no forwarding task outlives the merge");
}

#[tokio::test(start_paused = true)]
async fn token_stops_merge_early() {
    let before = alive();
    let token = CancellationToken::new();
    let endless = || paced(vec![1u8; 1_000_000], Duration::from_millis(10));
    let mut out = fan(&token)
        .merge(vec![endless(), endless(), endless()])
        .unwrap();
    let stopper = token.clone();
    tokio::spawn(async move {
        sleep(Duration::from_millis(55)).await;
        stopper.cancel();
    });
    let start = Instant::now();
    let mut n = 0;
    while out.recv().await.is_some() {
        n += 1;
    }
    assert_eq!(start.elapsed(), Duration::from_millis(55));
    assert_eq!(n, 15, "5 ticks of 3 inputs before the token fired");
    let handle = out.handle();
    assert!(handle.context().is_cancelled());
    let err = out.join().await.unwrap_err();
    assert!(matches!(err.error(), FanError::Stopped(c) if c.is_cancelled()));
    assert_eq!(err.report().delivered, 15, "the report survives the stop");
    assert!(handle.is_finished());
    settle().await;
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_output_stops_idle_inputs() {
    let before = alive();
    let token = CancellationToken::new();
    let idle = || -> Input<u8> { Box::pin(stream::pending()) };
    let out = fan(&token).merge(vec![idle(), idle(), idle()]).unwrap();
    let handle = out.handle();
    settle().await;
    assert_eq!(alive(), before + 3, "one forwarding task per input");
    drop(out);
    // Inputs never yield, yet every task ends: dropping cancels them.
    tokio::time::timeout(Duration::from_secs(1), handle.join())
        .await
        .expect("tasks end promptly")
        .unwrap();
    settle().await;
    assert_eq!(alive(), before);
    assert!(!token.is_cancelled(), "the caller's token is left alone");
}

#[tokio::test(start_paused = true)]
async fn slow_consumer_backpressures_every_producer() {
    let pulled = Arc::new(AtomicUsize::new(0));
    let token = CancellationToken::new();
    let counted = |p: Arc<AtomicUsize>| -> Input<u32> {
        Box::pin(stream::iter(0..1000).inspect(move |_| {
            p.fetch_add(1, Ordering::SeqCst);
        }))
    };
    let fan = fan(&token).capacity(2);
    let mut out = fan
        .merge(vec![
            counted(pulled.clone()),
            counted(pulled.clone()),
            counted(pulled.clone()),
        ])
        .unwrap();
    sleep(Duration::from_secs(1)).await;
    // 2 in the channel plus at most one chunk (of min(capacity, 32) = 2
    // items) held by each of the 3 tasks.
    let held = pulled.load(Ordering::SeqCst);
    assert!(held <= 2 + 3 * 2, "pulled {held} items without a consumer");
    assert!(out.recv().await.is_some());
    out.handle().cancel();
    let err = out.join().await.unwrap_err();
    assert!(matches!(err.error(), FanError::Stopped(c) if c.is_cancelled()));
    assert_eq!(err.report().delivered, 1);
}

#[tokio::test]
async fn zero_capacity_is_an_error_and_a_huge_one_works() {
    let err = Fan::new()
        .capacity(0)
        .merge(Vec::<Input<u8>>::new())
        .unwrap_err();
    assert!(err.is_zero());
    assert_eq!(
        err.to_string(),
        "merge: capacity must be at least 1 (got 0)"
    );
    let err = Fan::new()
        .capacity(0)
        .merge_in_turn(Vec::<Input<u8>>::new())
        .unwrap_err();
    assert!(err.is_zero());
    // usize::MAX is lowered to MAX_CAPACITY; nothing is allocated for it.
    for capacity in [usize::MAX, 1 << 62] {
        let fan = Fan::new().capacity(capacity);
        let got = fan
            .merge(vec![stream::iter(vec![1u8, 2])])
            .unwrap()
            .collect_all()
            .await;
        assert_eq!(got, [1, 2]);
        let got = fan
            .merge_in_turn(vec![stream::iter(vec![1u8]), stream::iter(vec![2u8])])
            .unwrap()
            .collect_all()
            .await;
        assert_eq!(got, [1, 2]);
    }
}

#[test]
fn outside_a_runtime_is_an_error_not_a_panic() {
    let err = weir_core::merge(vec![stream::iter(vec![1u8])]).unwrap_err();
    assert_eq!(err.problem(), &weir_core::Problem::NoRuntime);
}

#[tokio::test(start_paused = true)]
async fn no_inputs_closes_at_once() {
    let token = CancellationToken::new();
    let out = fan(&token).merge(Vec::<Input<u8>>::new()).unwrap();
    assert!(out.collect_all().await.is_empty());
    let out = fan(&token).merge_in_turn(Vec::<Input<u8>>::new()).unwrap();
    assert!(out.collect_all().await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_input_is_reported_and_the_others_go_on() {
    let token = CancellationToken::new();
    let bad: Input<u32> = Box::pin(stream::iter(0..3).map(|x| {
        if x == 1 {
            panic!("input broke at {x}");
        }
        x
    }));
    let good = paced((10..15).collect(), Duration::from_millis(5));
    let mut out = fan(&token).merge(vec![bad, good]).unwrap();
    let mut got = Vec::new();
    while let Some(x) = out.recv().await {
        got.push(x);
    }
    got.sort();
    assert_eq!(got, [0, 10, 11, 12, 13, 14]);
    let err = out.join().await.unwrap_err();
    match err.error() {
        FanError::Panicked { branch: 0, panic } => {
            assert_eq!(panic.message(), "input broke at 1");
            assert!(panic.payload_is::<String>());
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(err.to_string(), "branch 0 panicked: input broke at 1");
    assert_eq!(err.report().panicked, 1);
    assert_eq!(err.report().delivered, 6);
}

#[tokio::test(start_paused = true)]
async fn merge_in_turn_a_quiet_input_is_not_starved() {
    let token = CancellationToken::new();
    let chatty: Input<String> = Box::pin(stream::iter((0..100).map(|i| format!("c{i}"))));
    // The quiet input is also slow: strict rotation waits for it.
    let quiet = paced(
        (0..3).map(|i| format!("q{i}")).collect(),
        Duration::from_millis(50),
    );
    let out = fan(&token).merge_in_turn(vec![chatty, quiet]).unwrap();
    let got = out.collect_all().await;
    assert_eq!(got.len(), 103);
    assert_eq!(got[..6], ["c0", "q0", "c1", "q1", "c2", "q2"]);
    assert_eq!(got[6..9], ["c3", "c4", "c5"]);
}

#[tokio::test(start_paused = true)]
async fn merge_in_turn_rotates_strictly_and_closed_inputs_leave() {
    let token = CancellationToken::new();
    let inputs: Vec<Input<&str>> = vec![
        Box::pin(stream::iter(vec!["a0", "a1", "a2", "a3"])),
        paced(vec!["b0"], Duration::from_millis(30)),
        paced(vec!["c0", "c1"], Duration::from_millis(10)),
    ];
    let out = fan(&token).merge_in_turn(inputs).unwrap();
    assert_eq!(
        out.collect_all().await,
        ["a0", "b0", "c0", "a1", "c1", "a2", "a3"]
    );
}

#[tokio::test(start_paused = true)]
async fn merge_in_turn_restores_a_dealt_sequence() {
    // The seeds' example: numbers dealt round robin to 3 workers with random
    // delays come back in order.
    let token = CancellationToken::new();
    let inputs: Vec<Input<u32>> = (0..3u32)
        .map(|w| -> Input<u32> {
            Box::pin(
                stream::iter((0..30u32).filter(move |n| n % 3 == w)).then(|n| async move {
                    sleep(Duration::from_millis(u64::from((n * 7) % 11))).await;
                    n
                }),
            )
        })
        .collect();
    let got = fan(&token)
        .merge_in_turn(inputs)
        .unwrap()
        .collect_all()
        .await;
    assert_eq!(got, (0..30).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn merge_in_turn_dropped_output_ends_every_task() {
    let before = alive();
    let token = CancellationToken::new();
    let inputs: Vec<Input<u8>> = vec![Box::pin(stream::repeat(1)), Box::pin(stream::pending())];
    let mut out = fan(&token).merge_in_turn(inputs).unwrap();
    let handle = out.handle();
    // The rotation waits on the idle input after the first item.
    assert_eq!(out.recv().await, Some(1));
    drop(out);
    tokio::time::timeout(Duration::from_secs(1), handle.join())
        .await
        .expect("tasks end promptly")
        .unwrap();
    settle().await;
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn merge_in_turn_token_stops_it() {
    let token = CancellationToken::new();
    let inputs: Vec<Input<u8>> = vec![Box::pin(stream::repeat(1)), Box::pin(stream::repeat(2))];
    let mut out = fan(&token).merge_in_turn(inputs).unwrap();
    assert_eq!(out.recv().await, Some(1));
    assert_eq!(out.recv().await, Some(2));
    token.cancel();
    // At most the buffered items come out, then it closes.
    let rest = StreamExt::count(&mut out).await;
    assert!(rest <= weir_core::DEFAULT_CAPACITY, "rest {rest}");
    let err = out.join().await.unwrap_err();
    assert!(matches!(err.error(), FanError::Stopped(_)));
    assert_eq!(err.report().delivered, 2 + rest as u64);
}

proptest! {
    #[test]
    fn merge_conserves_the_multiset_and_each_input_order(
        inputs in proptest::collection::vec(proptest::collection::vec(0u16..500, 0..40), 0..6),
        capacity in 1usize..8,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let got = rt.block_on(async {
            let token = CancellationToken::new();
            let streams: Vec<Input<(usize, u16)>> = inputs
                .iter()
                .enumerate()
                .map(|(i, items)| -> Input<(usize, u16)> {
                    Box::pin(stream::iter(items.clone().into_iter().map(move |x| (i, x))))
                })
                .collect();
            let out = fan(&token).capacity(capacity).merge(streams).unwrap();
            let handle = out.handle();
            let got = out.collect_all().await;
            handle.join().await.unwrap();
            got
        });
        for (i, items) in inputs.iter().enumerate() {
            let from_i: Vec<u16> = got.iter().filter(|(j, _)| *j == i).map(|(_, x)| *x).collect();
            prop_assert_eq!(&from_i, items);
        }
        prop_assert_eq!(got.len(), inputs.iter().map(Vec::len).sum::<usize>());
    }

    #[test]
    fn merge_in_turn_is_a_round_robin(
        inputs in proptest::collection::vec(proptest::collection::vec(0u16..500, 0..20), 0..5),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let got = rt.block_on(async {
            let token = CancellationToken::new();
            let streams: Vec<Input<u16>> = inputs
                .iter()
                .map(|items| -> Input<u16> { Box::pin(stream::iter(items.clone())) })
                .collect();
            fan(&token).merge_in_turn(streams).unwrap().collect_all().await
        });
        // The expected rotation, computed by hand.
        let mut expected = Vec::new();
        let longest = inputs.iter().map(Vec::len).max().unwrap_or(0);
        for round in 0..longest {
            for items in &inputs {
                if let Some(x) = items.get(round) {
                    expected.push(*x);
                }
            }
        }
        prop_assert_eq!(got, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_on_a_multi_thread_runtime_counts_add_up() {
    let token = CancellationToken::new();
    let inputs = (0..4u64).map(|p| stream::iter((0..10_000u64).map(move |i| p * 1_000_000 + i)));
    let out = fan(&token).merge(inputs).unwrap();
    let handle = out.handle();
    let got = out.collect_all().await;
    assert_eq!(got.len(), 40_000);
    let expected: u64 = (0..4u64)
        .map(|p| (0..10_000u64).map(|i| p * 1_000_000 + i).sum::<u64>())
        .sum();
    assert_eq!(got.iter().sum::<u64>(), expected);
    let finished = handle.clone();
    assert_eq!(handle.join().await.unwrap().delivered, 40_000);
    assert!(finished.is_finished());
}

#[tokio::test(start_paused = true)]
async fn merge_hands_each_item_of_a_quiet_input_over_at_once() {
    // Items travel in chunks under load; an item whose input then has
    // nothing more must not wait in its forwarding task's chunk.
    let token = CancellationToken::new();
    let (tx, rx) = tokio::sync::mpsc::channel::<u32>(8);
    let quiet: Input<u32> = Box::pin(stream::unfold(rx, |mut rx| async move {
        let x = rx.recv().await?;
        Some((x, rx))
    }));
    let busy: Input<u32> = Box::pin(stream::iter(100..164));
    let mut out = fan(&token).merge(vec![quiet, busy]).unwrap();
    let mut busy_items = Vec::new();
    for _ in 0..64 {
        busy_items.push(out.recv().await.unwrap());
    }
    assert_eq!(
        busy_items,
        (100..164).collect::<Vec<_>>(),
        "one input keeps its order"
    );
    for x in [1, 2, 3] {
        tx.send(x).await.unwrap();
        let got = tokio::time::timeout(Duration::from_millis(1), out.recv()).await;
        assert_eq!(got, Ok(Some(x)), "item {x} delivered alone");
    }
    drop(tx);
    assert_eq!(out.recv().await, None);
    out.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn what_an_input_yielded_before_it_panicked_is_delivered() {
    let token = CancellationToken::new();
    let bad: Input<u32> = Box::pin(stream::iter(0..10).map(|x| {
        assert!(x < 5, "input broke at {x}");
        x
    }));
    let out = fan(&token).merge(vec![bad]).unwrap();
    let handle = out.handle();
    assert_eq!(out.collect_all().await, [0, 1, 2, 3, 4]);
    assert!(matches!(
        handle.join().await.map_err(|e| e.into_error()),
        Err(FanError::Panicked { branch: 0, .. })
    ));
}
