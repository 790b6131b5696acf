//! KeyedRateLimiter: per-key buckets, overrides, eviction.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::time::Instant;
use weir_rate::{KeyedRateLimiter, Rate};

#[tokio::test(start_paused = true)]
async fn keys_are_independent() {
    let keyed = KeyedRateLimiter::new(Rate::per_second(10).burst(2)).unwrap();
    for key in ["a", "b", "c"] {
        assert!(keyed.try_acquire_n(&key, 2).is_ok());
        assert!(keyed.try_acquire(&key).is_err());
    }
    // Waiting on one key does not hold up another.
    let start = Instant::now();
    keyed.acquire(&"a").await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert!(keyed.try_acquire(&"d").is_ok());
    assert_eq!(keyed.len(), 4);
    assert!(format!("{keyed:?}").contains("buckets: 4"));
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_keys_then_eviction() {
    let keyed = KeyedRateLimiter::new(Rate::per_second(1).burst(3)).unwrap();
    for i in 0..10_000u32 {
        keyed.try_acquire(&i).unwrap();
    }
    assert_eq!(keyed.len(), 10_000);
    // Not yet refilled: nothing can be dropped without losing state.
    assert_eq!(keyed.retain_recent(), 0);
    assert_eq!(keyed.len(), 10_000);
    tokio::time::advance(Duration::from_millis(999)).await;
    assert_eq!(keyed.retain_recent(), 0);
    tokio::time::advance(Duration::from_millis(1)).await;
    // Touch a few keys so they are not full again.
    for i in 0..10u32 {
        keyed.try_acquire(&i).unwrap();
    }
    assert_eq!(keyed.retain_recent(), 9_990);
    assert_eq!(keyed.len(), 10);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(keyed.retain_recent(), 10);
    assert!(keyed.is_empty());
    // An evicted key starts again with a full bucket, as it would have had.
    assert!(keyed.try_acquire_n(&7, 3).is_ok());
}

#[tokio::test(start_paused = true)]
async fn held_or_waited_buckets_are_not_evicted() {
    let keyed = KeyedRateLimiter::new(Rate::per_second(10)).unwrap();
    let held = keyed.limiter(&"held");
    assert_eq!(keyed.retain_recent(), 0, "a clone is held outside");
    drop(held);
    keyed.try_acquire(&"busy").unwrap();
    let waiter = tokio::spawn({
        let keyed = keyed.clone();
        async move { keyed.acquire(&"busy").await }
    });
    tokio::task::yield_now().await;
    tokio::time::advance(Duration::from_millis(50)).await;
    assert_eq!(keyed.retain_recent(), 1, "only the idle one goes");
    assert_eq!(keyed.len(), 1);
    waiter.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn overrides_are_honoured_and_survive_eviction() {
    let keyed = KeyedRateLimiter::new(Rate::per_second(1)).unwrap();
    keyed
        .set_override("vip", Rate::per_second(100).burst(10))
        .unwrap();
    assert_eq!(keyed.rate_for(&"vip"), Rate::per_second(100).burst(10));
    assert_eq!(keyed.rate_for(&"anon"), Rate::per_second(1).burst(1));
    assert!(keyed.try_acquire_n(&"vip", 10).is_ok());
    assert!(keyed.try_acquire_n(&"anon", 2).is_err());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        keyed.retain_recent(),
        2,
        "both buckets are full again and dropped"
    );
    assert!(
        keyed.try_acquire_n(&"vip", 10).is_ok(),
        "the override is kept"
    );
    // An override on a live bucket applies at once, keeping its count.
    keyed.try_acquire(&"anon").unwrap();
    keyed
        .set_override("anon", Rate::per_second(10).burst(5))
        .unwrap();
    let lim = keyed.limiter(&"anon");
    assert_eq!(lim.burst(), 5);
    assert_eq!(lim.available(), 0);
    drop(lim);
    assert!(keyed.remove_override(&"anon"));
    assert!(!keyed.remove_override(&"anon"));
    assert_eq!(keyed.limiter(&"anon").rate(), Rate::per_second(1).burst(1));
    // Bad quotas are errors.
    assert!(keyed.set_override("x", Rate::per_second(0)).is_err());
    assert!(KeyedRateLimiter::<u8>::new(Rate::per_second(1).burst(0)).is_err());
}

#[tokio::test(start_paused = true)]
async fn keyed_acquire_n_above_burst_is_an_error() {
    let keyed = KeyedRateLimiter::new(Rate::per_second(1).burst(2)).unwrap();
    assert!(keyed.acquire_n(&1u8, 3).await.is_err());
    assert!(keyed.acquire_n(&1u8, 2).await.is_ok());
}
