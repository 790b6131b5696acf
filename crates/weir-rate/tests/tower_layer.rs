//! The tower layers (feature `tower`, turned on for tests by the crate's
//! self dev-dependency, so `cargo test --workspace` runs these).
#![cfg(feature = "tower")]
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};
use weir_rate::tower::{KeyedRateLimitLayer, RateLimitExceeded, RateLimitLayer};
use weir_rate::{KeyedRateLimiter, Rate, RateLimiter};

const MS: Duration = Duration::from_millis(1);

fn echo()
-> impl Service<u32, Response = u32, Error = Infallible, Future: Send> + Clone + Send + std::fmt::Debug
{
    service_fn(|x: u32| async move { Ok::<_, Infallible>(x) })
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_limiter() {
    let lim = RateLimiter::new(Rate::per_second(10)).unwrap();
    let svc = RateLimitLayer::new(lim.clone()).layer(echo());
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..6 {
        let svc = svc.clone(); // tower's RateLimit would give each clone its own window
        tasks.spawn(async move { (svc.oneshot(i).await.unwrap(), Instant::now()) });
    }
    let mut times = Vec::new();
    while let Some(r) = tasks.join_next().await {
        times.push(r.unwrap().1 - start);
    }
    times.sort();
    let want: Vec<_> = (0..6).map(|i| MS * 100 * i).collect();
    assert_eq!(times, want, "6 calls over 6 clones at 10/s");
}

#[tokio::test(start_paused = true)]
async fn sheds_load_beyond_max_wait_without_taking_tokens() {
    let lim = RateLimiter::new(Rate::per_second(10).burst(2)).unwrap();
    let svc = RateLimitLayer::new(lim.clone())
        .max_wait(MS * 150)
        .layer(echo());
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), 1);
    assert_eq!(svc.clone().oneshot(2).await.unwrap(), 2);
    let start = Instant::now();
    assert_eq!(svc.clone().oneshot(3).await.unwrap(), 3); // waits 100 ms
    assert_eq!(start.elapsed(), MS * 100);
    // Next token is 100 ms away, the one after 200 ms: over the bound.
    let pending = tokio::spawn(svc.clone().oneshot(4));
    tokio::task::yield_now().await;
    let err = svc.clone().oneshot(5).await.unwrap_err();
    let shed = err.downcast_ref::<RateLimitExceeded>().unwrap();
    assert_eq!(shed.max_wait(), MS * 150);
    assert!(err.to_string().contains("rate limit exceeded"), "{err}");
    assert_eq!(start.elapsed(), MS * 100, "rejected at once");
    assert_eq!(pending.await.unwrap().unwrap(), 4);
    // The rejected call took nothing: the next token comes on schedule.
    assert_eq!(start.elapsed(), MS * 200);
    let t = Instant::now();
    assert_eq!(svc.clone().oneshot(6).await.unwrap(), 6);
    assert_eq!(t.elapsed(), MS * 100);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_waiting_service_gives_the_token_back() {
    let lim = RateLimiter::new(Rate::per_second(10)).unwrap();
    let mut svc = RateLimitLayer::new(lim.clone()).layer(echo());
    svc.ready().await.unwrap();
    svc.call(1).await.unwrap();
    let mut waiting = svc.clone();
    assert!(futures::poll!(std::future::poll_fn(|cx| waiting.poll_ready(cx))).is_pending());
    assert!(format!("{waiting:?}").contains("waiting"));
    assert!(lim.try_acquire().is_err(), "its token is reserved");
    drop(waiting);
    tokio::time::advance(MS * 100).await;
    assert_eq!(lim.available(), 1, "given back");
}

#[tokio::test(start_paused = true)]
async fn call_without_poll_ready_is_an_error_not_a_panic() {
    let lim = RateLimiter::new(Rate::per_second(10)).unwrap();
    let mut svc = RateLimitLayer::new(lim).layer(echo());
    let err = svc.call(1).await.unwrap_err();
    assert!(err.to_string().contains("poll_ready"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn inner_errors_pass_through() {
    let lim = RateLimiter::new(Rate::per_second(10)).unwrap();
    let failing = service_fn(|_: u32| async { Err::<u32, _>(std::io::Error::other("boom")) });
    let err = RateLimitLayer::new(lim)
        .layer(failing)
        .oneshot(1)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "boom");
}

#[tokio::test(start_paused = true)]
async fn keyed_layer_limits_each_key() {
    let keyed = KeyedRateLimiter::new(Rate::per_second(10)).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let inner = {
        let calls = calls.clone();
        service_fn(move |req: (u8, u32)| {
            calls.fetch_add(1, Ordering::Relaxed);
            async move { Ok::<_, Infallible>(req.1) }
        })
    };
    let svc = KeyedRateLimitLayer::new(keyed.clone(), |req: &(u8, u32)| req.0).layer(inner);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (key, i) in [(1, 0), (1, 1), (1, 2), (2, 3), (2, 4)] {
        let svc = svc.clone();
        tasks.spawn(async move {
            svc.oneshot((key, i)).await.unwrap();
            (key, Instant::now() - start)
        });
        tokio::task::yield_now().await;
    }
    let mut done = Vec::new();
    while let Some(r) = tasks.join_next().await {
        done.push(r.unwrap());
    }
    done.sort();
    assert_eq!(
        done,
        vec![
            (1, Duration::ZERO),
            (1, MS * 100),
            (1, MS * 200),
            (2, Duration::ZERO),
            (2, MS * 100)
        ]
    );
    assert_eq!(calls.load(Ordering::Relaxed), 5);
    assert_eq!(keyed.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn keyed_layer_sheds_and_dropped_futures_give_back() {
    let keyed = KeyedRateLimiter::new(Rate::per_second(10)).unwrap();
    let svc = KeyedRateLimitLayer::new(keyed.clone(), |req: &(u8, u32)| req.0)
        .max_wait(MS * 100)
        .layer(service_fn(|req: (u8, u32)| async move {
            Ok::<_, Infallible>(req.1)
        }));
    assert_eq!(svc.clone().oneshot((1, 1)).await.unwrap(), 1);
    // Second call on key 1 would wait 100 ms: allowed, but dropped early.
    let fut = svc.clone().oneshot((1, 2));
    assert!(tokio::time::timeout(MS * 10, fut).await.is_err());
    // The dropped call gave its token back, so the next one waits only 90 ms.
    let start = Instant::now();
    assert_eq!(svc.clone().oneshot((1, 3)).await.unwrap(), 3);
    assert_eq!(start.elapsed(), MS * 90);
    // Two ahead would be 200 ms away: shed.
    let _held = keyed.limiter(&1).reserve();
    let err = svc.clone().oneshot((1, 4)).await.unwrap_err();
    assert!(err.is::<RateLimitExceeded>());
}
