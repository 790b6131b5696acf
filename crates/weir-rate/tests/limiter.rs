//! RateLimiter behaviour beyond Go's own tests: pacing over long runs,
//! concurrency, fairness, cancel safety and accounting.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;
use weir_rate::{
    AcquireTokens, InsufficientCapacity, NotUntil, Rate, RateLimiter, Reservation, WaitError,
};

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn ten_per_second_burst_five_paces_1000() {
    let lim = RateLimiter::new(Rate::per_second(10).burst(5)).unwrap();
    let start = Instant::now();
    let mut grants = Vec::new();
    for _ in 0..1000 {
        lim.acquire().await.unwrap();
        grants.push(start.elapsed());
    }
    // 5 at once, then one every 100 ms.
    assert!(grants[..5].iter().all(|g| g.is_zero()));
    for (i, g) in grants.iter().enumerate().skip(5) {
        assert_eq!(*g, MS * 100 * (i as u32 - 4), "grant {i}");
    }
    let total = start.elapsed();
    let want = Duration::from_millis(99_500);
    assert!(total.abs_diff(want) <= MS * 100, "{total:?}");
}

#[tokio::test(start_paused = true)]
async fn eight_tasks_never_exceed_rate_times_t_plus_burst() {
    const RATE: u32 = 100;
    const BURST: u32 = 10;
    let lim = RateLimiter::new(Rate::per_second(RATE).burst(BURST)).unwrap();
    let start = Instant::now();
    let grants = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..8u32 {
        let (lim, grants) = (lim.clone(), grants.clone());
        tasks.spawn(async move {
            // 1000 in all, unevenly split, mixed sizes.
            let n = if task < 4 { 1 } else { 2 };
            let count = if task < 4 { 150 } else { 50 };
            for _ in 0..count {
                lim.acquire_n(n).await.unwrap();
                grants.lock().unwrap().push((start.elapsed(), n));
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let mut grants = grants.lock().unwrap().clone();
    grants.sort();
    let mut taken = 0u64;
    for (at, n) in &grants {
        taken += u64::from(*n);
        let allowed = u64::from(BURST) + (at.as_nanos() * u128::from(RATE) / 1_000_000_000) as u64;
        assert!(
            taken <= allowed,
            "{taken} tokens by {at:?}, only {allowed} allowed"
        );
    }
    assert_eq!(taken, 1000);
    // And no slower than the rate allows: (1000 - burst) / 100 per second.
    let last = grants.last().unwrap().0;
    assert_eq!(last, Duration::from_millis(9_900));
}

#[tokio::test(start_paused = true)]
async fn n_above_burst_is_an_immediate_error() {
    let lim = RateLimiter::new(Rate::per_second(10).burst(3)).unwrap();
    let start = Instant::now();
    let WaitError::InsufficientCapacity(err) = lim.acquire_n(4).await.unwrap_err() else {
        panic!("not InsufficientCapacity");
    };
    assert_eq!((err.requested(), err.burst()), (4, 3));
    assert!(err.to_string().contains("burst 3"), "{err}");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(lim.available(), 3, "took nothing");
    assert!(lim.acquire_n(0).await.is_ok());
    let e: NotUntil = lim.try_acquire_n(4).unwrap_err();
    assert_eq!(e.earliest_possible(), None);
    assert!(e.to_string().contains("never"), "{e}");
    assert!(!lim.reserve_n(4).ok());
}

#[tokio::test(start_paused = true)]
async fn dropped_acquire_takes_nothing_and_gives_nothing() {
    let lim = RateLimiter::new(Rate::per_second(10).burst(5)).unwrap();
    lim.try_acquire_n(5).unwrap(); // empty
    let t0 = Instant::now();
    // A waiter for 3 tokens (ready at +300 ms) dropped after 100 ms.
    let fut = lim.acquire_n(3);
    assert!(tokio::time::timeout(MS * 100, fut).await.is_err());
    // Exactly as if it had never asked: 1 token refilled by now.
    assert_eq!(lim.available(), 1);
    assert!(lim.try_acquire_n(2).is_err());
    // The bucket refills on schedule, no faster (nothing extra returned).
    tokio::time::advance(MS * 399).await;
    assert_eq!(lim.available(), 4);
    tokio::time::advance(MS).await;
    assert_eq!(lim.available(), 5);
    assert_eq!(t0.elapsed(), MS * 500);
    // A later waiter is unaffected.
    lim.try_acquire_n(5).unwrap();
    let start = Instant::now();
    lim.acquire_n(2).await.unwrap();
    assert_eq!(start.elapsed(), MS * 200);
}

#[tokio::test(start_paused = true)]
async fn dropped_waiter_in_queue_takes_nothing() {
    let lim = RateLimiter::new(Rate::per_second(10).burst(2)).unwrap();
    lim.try_acquire_n(2).unwrap();
    let head = tokio::spawn({
        let lim = lim.clone();
        async move {
            lim.acquire_n(2).await.unwrap();
            Instant::now()
        }
    });
    tokio::task::yield_now().await;
    // Second in line, dropped while queued behind the head.
    let queued = tokio::spawn({
        let lim = lim.clone();
        async move { lim.acquire_n(2).await }
    });
    tokio::task::yield_now().await;
    queued.abort();
    assert!(queued.await.unwrap_err().is_cancelled());
    let start = Instant::now();
    let head_at = head.await.unwrap();
    assert_eq!(head_at - start, MS * 200);
    // The aborted waiter never reserved: the bucket refills from the head on.
    tokio::time::advance(MS * 200).await;
    assert_eq!(lim.available(), 2);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    // A large request first, then a stream of small ones: the large one is
    // not starved, and try_acquire cannot slip in ahead of it.
    let lim = RateLimiter::new(Rate::per_second(10).burst(5)).unwrap();
    lim.try_acquire_n(5).unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, n) in [(0, 5), (1, 1), (2, 1), (3, 3), (4, 1)] {
        let (lim, order) = (lim.clone(), order.clone());
        tasks.spawn(async move {
            lim.acquire_n(n).await.unwrap();
            order.lock().unwrap().push((i, Instant::now()));
        });
        tokio::task::yield_now().await; // arrive one after another
    }
    tokio::time::advance(MS * 300).await;
    assert!(
        lim.try_acquire().is_err(),
        "the head's reservation is respected"
    );
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let order = order.lock().unwrap().clone();
    let ids: Vec<_> = order.iter().map(|(i, _)| *i).collect();
    assert_eq!(ids, vec![0, 1, 2, 3, 4]);
    let t0 = order[0].1 - MS * 500;
    let offsets: Vec<_> = order.iter().map(|(_, at)| *at - t0).collect();
    assert_eq!(
        offsets,
        vec![MS * 500, MS * 600, MS * 700, MS * 1000, MS * 1100]
    );
}

#[tokio::test(start_paused = true)]
async fn set_rate_and_burst_mid_stream() {
    let lim = RateLimiter::new(Rate::per_second(10).burst(4)).unwrap();
    lim.try_acquire_n(4).unwrap();
    tokio::time::advance(MS * 100).await; // 1 token
    lim.set_rate(Rate::per_second(100)).unwrap();
    assert_eq!(lim.available(), 1, "the token count carries over");
    tokio::time::advance(MS * 10).await;
    assert_eq!(lim.available(), 2, "then refills at the new rate");
    lim.set_burst(2).unwrap();
    tokio::time::advance(MS * 100).await;
    assert_eq!(lim.available(), 2, "capped by the smaller burst");
    lim.set_burst(8).unwrap();
    assert_eq!(
        lim.available(),
        2,
        "a larger bucket is not refilled at once"
    );
    tokio::time::advance(MS * 60).await;
    assert_eq!(lim.available(), 8);
    assert_eq!(lim.rate(), Rate::per_second(100).burst(8));
    // Invalid changes are errors and change nothing.
    assert!(lim.set_rate(Rate::per_second(0)).is_err());
    assert!(lim.set_burst(0).is_err());
    assert_eq!(lim.rate(), Rate::per_second(100).burst(8));
    // To unlimited and back: back with a full bucket, as in Go.
    lim.set_rate(Rate::unlimited()).unwrap();
    assert!(lim.try_acquire_n(1000).is_ok());
    lim.set_rate(Rate::per_second(1).burst(3)).unwrap();
    assert_eq!(lim.available(), 3);
}

#[tokio::test(start_paused = true)]
async fn waiter_across_a_rate_change_is_refunded_on_drop() {
    let lim = RateLimiter::new(Rate::per_second(10).burst(2)).unwrap();
    lim.try_acquire_n(2).unwrap();
    let mut fut = Box::pin(lim.acquire_n(2)); // ready at +200 ms
    assert!(futures::poll!(fut.as_mut()).is_pending());
    lim.set_rate(Rate::per_second(5)).unwrap(); // debt of 4 tokens now 800 ms
    drop(fut);
    // Only the first 2 tokens of debt remain: 400 ms at 5/s.
    tokio::time::advance(MS * 399).await;
    assert_eq!(lim.available(), 1);
    tokio::time::advance(MS).await;
    assert_eq!(lim.available(), 2);
}

#[tokio::test(start_paused = true)]
async fn peek_and_available_take_nothing() {
    let lim = RateLimiter::new(Rate::per_second(10).burst(2)).unwrap();
    for _ in 0..10 {
        assert!(lim.peek().is_ok());
        assert!(lim.peek_n(2).is_ok());
        assert_eq!(lim.available(), 2);
    }
    lim.try_acquire_n(2).unwrap();
    let e = lim.peek().unwrap_err();
    assert_eq!(e.wait_time(), Some(MS * 100));
    assert_eq!(
        e.wait_time_from(Instant::now() + MS * 150),
        Some(Duration::ZERO)
    );
    assert!(e.to_string().contains("100ms"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn reservation_api() {
    let lim = RateLimiter::new(Rate::per_second(10)).unwrap();
    let now: Reservation = lim.reserve();
    assert!(now.ok());
    assert_eq!(now.delay(), Duration::ZERO);
    let later = lim.reserve_n(1);
    assert_eq!(later.tokens(), 1);
    assert_eq!(later.delay(), MS * 100);
    let start = Instant::now();
    later.ready().await;
    assert_eq!(start.elapsed(), MS * 100);
    assert_eq!(later.delay(), Duration::ZERO);
    tokio::time::advance(MS).await;
    assert_eq!(later.cancel(), 0, "too late once its time has passed");
    assert!(format!("{now:?}").contains("Reservation"));
    drop(now); // keeps its token: nothing to check but that it compiles quietly
}

#[test]
fn clones_share_one_bucket() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let a = RateLimiter::new(Rate::per_second(1).burst(3)).unwrap();
        let b = a.clone();
        assert!(RateLimiter::ptr_eq(&a, &b));
        a.try_acquire_n(2).unwrap();
        assert_eq!(b.available(), 1);
        assert!(format!("{b:?}").contains("available: 1"));
    });
}

#[test]
fn auto_traits() {
    fn send_sync<T: Send + Sync + Unpin + 'static>() {}
    send_sync::<RateLimiter>();
    send_sync::<Reservation>();
    send_sync::<NotUntil>();
    send_sync::<InsufficientCapacity>();
    send_sync::<weir_rate::KeyedRateLimiter<String>>();
    send_sync::<WaitError>();
    send_sync::<weir_rate::Sometimes>();
    fn send_sync_future<T: Send + Sync + std::future::Future>(_: &T) {}
    let lim = RateLimiter::new(Rate::per_second(1)).unwrap();
    send_sync_future::<AcquireTokens<'_>>(&lim.acquire());
    send_sync_future(
        &lim.acquire_n(2)
            .context(weir_context::Context::background()),
    );
    let keyed = weir_rate::KeyedRateLimiter::new(Rate::per_second(1)).unwrap();
    send_sync_future::<AcquireTokens<'static>>(&keyed.acquire(&"k"));
    fn send_unpin<T: Send + Unpin>() {}
    send_unpin::<weir_rate::Ticker>();
    send_unpin::<weir_rate::Throttle<futures::stream::Iter<std::vec::IntoIter<u8>>>>();
}

/// A reference token bucket in integer milliseconds for 10 tokens/s
/// (100 ms per token): Go's algorithm without floats.
struct Model {
    burst: u64,
    tokens_ms: u64,
}

impl Model {
    fn allow(&mut self, n: u64) -> bool {
        if n <= self.burst && self.tokens_ms >= n * 100 {
            self.tokens_ms -= n * 100;
            true
        } else {
            false
        }
    }

    fn advance(&mut self, ms: u64) {
        self.tokens_ms = (self.tokens_ms + ms).min(self.burst * 100);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// try_acquire_n agrees with the reference bucket on every step of a
    /// random schedule, and available() reports its whole tokens.
    #[test]
    fn matches_reference_bucket(
        burst in 1u32..8,
        steps in proptest::collection::vec((0u64..250, 0u32..10), 1..60),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let lim = RateLimiter::new(Rate::per_second(10).burst(burst)).unwrap();
            let mut model = Model { burst: u64::from(burst), tokens_ms: u64::from(burst) * 100 };
            for (advance, n) in steps {
                tokio::time::advance(MS * advance as u32).await;
                model.advance(advance);
                prop_assert_eq!(u64::from(lim.available()), model.tokens_ms / 100);
                prop_assert_eq!(lim.try_acquire_n(n).is_ok(), model.allow(u64::from(n)));
            }
            Ok(())
        })?;
    }

    /// Cancelling reservations in any order never gives back more than was
    /// reserved nor fills the bucket past its burst (as in Go, a cancel does
    /// not return the tokens reserved after it); cancelling the rest newest
    /// first then restores a full bucket.
    #[test]
    fn cancel_all_restores_full_bucket(
        sizes in proptest::collection::vec(1u32..4, 1..12),
        order in proptest::collection::vec(any::<proptest::sample::Index>(), 12),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let lim = RateLimiter::new(Rate::per_second(10).burst(4)).unwrap();
            let mut held: Vec<Reservation> = sizes.iter().map(|n| lim.reserve_n(*n)).collect();
            let mut refunded = 0u32;
            for idx in order {
                if held.is_empty() {
                    break;
                }
                refunded += held.remove(idx.index(held.len())).cancel();
                prop_assert!(lim.available() <= 4);
            }
            prop_assert!(refunded <= sizes.iter().sum::<u32>());
            Ok(())
        })?;
    }

    #[test]
    fn cancel_newest_first_restores_full_bucket(
        sizes in proptest::collection::vec(1u32..4, 1..12),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let lim = RateLimiter::new(Rate::per_second(10).burst(4)).unwrap();
            let held: Vec<Reservation> = sizes.iter().map(|n| lim.reserve_n(*n)).collect();
            let mut refunded = 0u32;
            for r in held.into_iter().rev() {
                refunded += r.cancel();
            }
            prop_assert_eq!(refunded, sizes.iter().sum::<u32>());
            prop_assert_eq!(lim.available(), 4);
            Ok(())
        })?;
    }
}

#[tokio::test(start_paused = true)]
async fn no_task_is_spawned() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let lim = RateLimiter::new(Rate::per_second(10)).unwrap();
    lim.acquire_n(1).await.unwrap();
    let _ = tokio::time::timeout(MS, lim.acquire()).await;
    assert_eq!(metrics.num_alive_tasks(), before);
}

/// A limiter made on a multi-thread runtime reads the timestamp counter
/// (that clock cannot be paused, so this runs on real time). What must hold
/// whatever the machine's load: no grant comes earlier than the rate allows
/// (load can only make grants later), and every task gets its tokens.
#[test]
fn on_a_multi_thread_runtime_grants_never_outrun_the_rate() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (rate, burst, tasks, each) = (2_000_u32, 10_u32, 4, 25);
    let grants = rt.block_on(async move {
        let lim = RateLimiter::new(Rate::per_second(rate).burst(burst)).unwrap();
        let start = std::time::Instant::now();
        let grants = Arc::new(Mutex::new(Vec::new()));
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let (lim, grants) = (lim.clone(), grants.clone());
                tokio::spawn(async move {
                    for _ in 0..each {
                        lim.acquire().await.unwrap();
                        grants.lock().unwrap().push(start.elapsed());
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        let mut grants = grants.lock().unwrap().clone();
        grants.sort();
        grants
    });
    assert_eq!(grants.len(), tasks * each);
    let period = Duration::from_secs(1) / rate;
    for (i, at) in grants.iter().enumerate() {
        // The (i+1)-th token exists from (i + 1 - burst) periods on; allow
        // one period for the clocks' rounding.
        let due = period * (i as u32 + 1).saturating_sub(burst);
        assert!(*at + period >= due, "grant {i} at {at:?}, before {due:?}");
    }
}

/// On a multi-thread runtime the limiter reads the timestamp counter, which
/// may run a hair ahead of `tokio::time::Instant::now()`. A grant due now by
/// the bucket's clock must not be taken for a future one (and wait a timer
/// tick): a reservation made from a full bucket has no delay, and waits and
/// `ready()` complete on their first poll.
#[test]
fn a_grant_due_now_never_waits_on_the_timestamp_counter_clock() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let lim = RateLimiter::new(Rate::per_second(1_000_000_000).burst(1_000_000_000)).unwrap();
        for _ in 0..1_000 {
            let r = lim.reserve();
            assert_eq!(r.delay(), Duration::ZERO);
            assert!(futures::poll!(std::pin::pin!(r.ready())).is_ready());
            assert!(futures::poll!(std::pin::pin!(lim.acquire())).is_ready());
        }
    });
}
