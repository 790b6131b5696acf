#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::{advance, sleep};
use weir_context::{Cause, Context};

use super::*;

fn aimd(initial: usize) -> AdaptiveLimit {
    AdaptiveLimit::builder()
        .aimd(Aimd::new().latency_threshold(Duration::from_millis(50)))
        .initial(initial)
        .min(2)
        .max(12)
        .window(Duration::from_millis(1))
        .window_samples(4)
        .build()
        .unwrap()
}

/// Runs `n` jobs of `latency` each with `workers` callers, each job ending
/// with `outcome`.
async fn drive(
    limit: &AdaptiveLimit,
    workers: usize,
    n: usize,
    latency: Duration,
    outcome: LimitOutcome,
) {
    let left = Arc::new(Mutex::new(n));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (limit, left) = (limit.clone(), Arc::clone(&left));
        tasks.push(tokio::spawn(async move {
            loop {
                {
                    let mut left = left.lock().unwrap();
                    if *left == 0 {
                        return;
                    }
                    *left -= 1;
                }
                let permit = limit.acquire().await.unwrap();
                sleep(latency).await;
                permit.finish(outcome);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[test]
fn auto_traits() {
    fn send_sync_unpin<T: Send + Sync + Unpin>() {}
    fn send_unpin<T: Send + Unpin>() {}
    send_sync_unpin::<AdaptiveLimit>();
    send_sync_unpin::<AdaptivePermit>();
    send_sync_unpin::<AdaptiveLimitStats>();
    send_sync_unpin::<AdaptiveLimitError>();
    send_unpin::<AdaptiveAcquire>();
}

#[tokio::test(start_paused = true)]
async fn waits_at_the_limit_first_come_first_served() {
    let limit = aimd(2);
    let a = limit.acquire().await.unwrap();
    let b = limit.try_acquire().unwrap();
    assert_eq!(
        limit.try_acquire().unwrap_err(),
        AdaptiveLimitError::WouldWait { limit: 2 }
    );
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..3 {
        let (limit, order) = (limit.clone(), Arc::clone(&order));
        waiters.push(tokio::spawn(async move {
            let permit = limit.acquire().await.unwrap();
            order.lock().unwrap().push(i);
            sleep(Duration::from_millis(1)).await;
            permit.ignore();
        }));
        tokio::task::yield_now().await;
    }
    assert!(order.lock().unwrap().is_empty());
    // Nobody jumps the queue, not even try_acquire once a slot frees.
    a.ignore();
    assert!(limit.try_acquire().is_err());
    b.ignore();
    for w in waiters {
        w.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2]);
    let stats = limit.stats();
    assert_eq!((stats.accepted, stats.rejected, stats.ignored), (5, 2, 5));
    assert!(stats.is_balanced());
    assert!(limit.balanced());
    assert_eq!(limit.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_context_ends_the_wait_and_takes_nothing() {
    let limit = aimd(2);
    let held = (
        limit.acquire().await.unwrap(),
        limit.acquire().await.unwrap(),
    );
    let ctx = Context::background().with_timeout(Duration::from_millis(30));
    let err = limit.acquire().context(&ctx).await.unwrap_err();
    assert_eq!(err.cause(), Some(&Cause::DeadlineExceeded));
    // Already cancelled: refused even with a free slot.
    let cancelled = Context::background();
    cancelled.cancel();
    held.0.success();
    assert!(matches!(
        limit.acquire().context(&cancelled).await,
        Err(AdaptiveLimitError::Stopped(Cause::Cancelled))
    ));
    // A queued waiter that is dropped passes its place on: the next one
    // gets the slot.
    let p = limit.acquire().await.unwrap();
    let first = tokio::spawn({
        let limit = limit.clone();
        async move { limit.acquire().await.map(|p| p.success()) }
    });
    tokio::task::yield_now().await; // queued first
    let second = tokio::spawn({
        let limit = limit.clone();
        async move { limit.acquire().await.map(|p| p.success()) }
    });
    tokio::task::yield_now().await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    drop(p);
    second.await.unwrap().unwrap();
    assert_eq!(limit.in_flight(), 1);
    drop(held.1);
    let stats = limit.stats();
    assert_eq!((stats.stopped, stats.abandoned, stats.succeeded), (2, 2, 2));
    assert!(stats.is_balanced() && limit.balanced());
}

#[tokio::test(start_paused = true)]
async fn aimd_grows_while_full_and_fast_and_backs_off_on_drops() {
    let limit = aimd(4);
    let mut moves = limit.subscribe();
    drive(
        &limit,
        12,
        400,
        Duration::from_millis(10),
        LimitOutcome::Success,
    )
    .await;
    assert_eq!(limit.limit(), 12, "grows to max while every window is full");
    assert!(moves.has_changed().unwrap());
    assert_eq!(*moves.borrow_and_update(), 12);
    let before = limit.stats().adjustments;
    drive(
        &limit,
        12,
        200,
        Duration::from_millis(10),
        LimitOutcome::Dropped,
    )
    .await;
    let stats = limit.stats();
    assert_eq!(stats.limit, 2, "drops take it down to min");
    assert_eq!((stats.min_seen, stats.max_seen), (2, 12));
    assert!(stats.adjustments > before);
    assert!(stats.is_balanced() && limit.balanced());
}

#[tokio::test(start_paused = true)]
async fn aimd_backs_off_when_windows_are_slow() {
    let limit = aimd(8);
    drive(
        &limit,
        8,
        200,
        Duration::from_millis(80),
        LimitOutcome::Success,
    )
    .await;
    assert_eq!(limit.limit(), 2);
    assert_eq!(
        limit.stats().last_window_latency,
        Some(Duration::from_millis(80))
    );
}

#[tokio::test(start_paused = true)]
async fn a_falling_limit_waits_for_running_jobs_to_end() {
    let limit = AdaptiveLimit::builder()
        .aimd(Aimd::new().backoff(0.5))
        .initial(8)
        .min(1)
        .window(Duration::from_millis(1))
        .window_samples(1)
        .build()
        .unwrap();
    let mut held: Vec<_> = (0..8).map(|_| limit.try_acquire().unwrap()).collect();
    advance(Duration::from_millis(2)).await;
    // Bad news needs no full window: one drop, 8 → 4, with 7 still running.
    held.pop().unwrap().dropped();
    assert_eq!((limit.limit(), limit.in_flight()), (4, 7));
    assert!(limit.balanced());
    assert!(limit.try_acquire().is_err());
    // Three more end without a verdict: 4 in flight, still no room.
    for _ in 0..3 {
        drop(held.pop());
    }
    assert!(limit.try_acquire().is_err());
    // One more: room for one.
    held.pop().unwrap().ignore();
    let p = limit.try_acquire().unwrap();
    assert!(limit.try_acquire().is_err());
    assert!(limit.balanced());
    drop(p);
    drop(held);
    assert_eq!(limit.in_flight(), 0);
    assert!(limit.balanced());
    assert_eq!(limit.stats().accepted, 9);
}

#[tokio::test(start_paused = true)]
async fn jobs_admitted_under_an_earlier_limit_are_not_samples() {
    // A slow job admitted before the limit moved must not back the new
    // limit off; a slow job admitted under it must.
    let limit = AdaptiveLimit::builder()
        .aimd(
            Aimd::new()
                .latency_threshold(Duration::from_millis(50))
                .backoff(0.5),
        )
        .initial(4)
        .min(1)
        .window(Duration::from_millis(1))
        .window_samples(1)
        .build()
        .unwrap();
    let old = limit.try_acquire().unwrap();
    let mut quick: Vec<_> = (0..3).map(|_| limit.try_acquire().unwrap()).collect();
    advance(Duration::from_millis(5)).await;
    quick.pop().unwrap().dropped(); // 4 → 2
    assert_eq!(limit.limit(), 2);
    // The other two were admitted under 4: their verdicts count nowhere.
    quick.into_iter().for_each(AdaptivePermit::dropped);
    assert_eq!(limit.limit(), 2);
    let windows = limit.stats().windows;
    advance(Duration::from_millis(100)).await;
    old.success(); // 105 ms, but admitted under the old limit
    assert_eq!((limit.stats().windows, limit.limit()), (windows, 2));
    let fresh: Vec<_> = (0..2).map(|_| limit.try_acquire().unwrap()).collect();
    advance(Duration::from_millis(100)).await;
    fresh.into_iter().for_each(AdaptivePermit::success);
    assert_eq!((limit.stats().windows, limit.limit()), (windows + 1, 1));
}

#[tokio::test(start_paused = true)]
async fn gradient_finds_a_resource_capacity() {
    // A resource that serves 8 at once in 10 ms and queues the rest.
    let limit = AdaptiveLimit::builder()
        .initial(2)
        .window(Duration::from_millis(1))
        .window_samples(8)
        .build()
        .unwrap();
    let busy = Arc::new(Mutex::new(0usize));
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (limit, busy) = (limit.clone(), Arc::clone(&busy));
        tasks.push(tokio::spawn(async move {
            for _ in 0..150 {
                let permit = limit.acquire().await.unwrap();
                let n = {
                    let mut b = busy.lock().unwrap();
                    *b += 1;
                    *b
                };
                let ms = 10 * n.max(8) as u64 / 8;
                sleep(Duration::from_millis(ms)).await;
                *busy.lock().unwrap() -= 1;
                permit.success();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = limit.stats();
    assert!((6..=11).contains(&stats.limit), "{stats}");
    // The probe measured the unloaded latency.
    assert_eq!(stats.baseline_latency, Some(Duration::from_millis(10)));
    assert!(stats.is_balanced());
}

#[tokio::test(start_paused = true)]
async fn stats_display_as_a_table() {
    let limit = aimd(3);
    limit.try_acquire().unwrap().success();
    let table = limit.stats().to_string();
    assert!(table.starts_with("limit"), "{table}");
    assert!(table.contains("adaptive limit (aimd)"), "{table}");
    assert_eq!(table.lines().count(), 2);
}

#[derive(Debug, Clone)]
enum Op {
    Take,
    End(usize, LimitOutcome),
    Abandon(usize),
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Take),
        3 => (any::<usize>(), prop_oneof![
            Just(LimitOutcome::Success),
            Just(LimitOutcome::Dropped),
            Just(LimitOutcome::Ignored)
        ]).prop_map(|(i, o)| Op::End(i, o)),
        1 => any::<usize>().prop_map(Op::Abandon),
        2 => (0u64..40).prop_map(Op::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the jobs do, the limit stays within min..=max, the permits
    /// match the limit, and every admitted job is accounted for.
    #[test]
    fn permits_and_counts_add_up(ops in proptest::collection::vec(op(), 1..200), gradient in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async move {
            let b = AdaptiveLimit::builder()
                .initial(3)
                .min(1)
                .max(6)
                .window(Duration::from_millis(1))
                .window_samples(2);
            let limit = if gradient {
                b.gradient(Gradient::new().probe_every(3)).build().unwrap()
            } else {
                b.aimd(Aimd::new().latency_threshold(Duration::from_millis(20))).build().unwrap()
            };
            let mut held: Vec<AdaptivePermit> = Vec::new();
            for op in ops {
                match op {
                    Op::Take => {
                        if let Ok(p) = limit.try_acquire() {
                            held.push(p);
                        }
                    }
                    Op::End(i, o) if !held.is_empty() => {
                        let n = held.len();
                        held.swap_remove(i % n).finish(o);
                    }
                    Op::Abandon(i) if !held.is_empty() => {
                        let n = held.len();
                        drop(held.swap_remove(i % n));
                    }
                    Op::Wait(ms) => advance(Duration::from_millis(ms)).await,
                    _ => {}
                }
                let s = limit.stats();
                prop_assert!((1..=6).contains(&s.limit));
                prop_assert_eq!(s.in_flight, held.len());
                prop_assert!(s.is_balanced());
                prop_assert!(limit.balanced());
                prop_assert_eq!(*limit.subscribe().borrow(), s.limit);
                if held.len() < s.limit {
                    // A free slot must be takeable.
                    let p = limit.try_acquire();
                    prop_assert!(p.is_ok());
                    held.push(p.unwrap());
                }
            }
            drop(held);
            prop_assert!(limit.balanced());
            prop_assert_eq!(limit.in_flight(), 0);
            Ok(())
        })?;
    }
}
