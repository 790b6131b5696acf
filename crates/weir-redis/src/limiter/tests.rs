//! The limiter's logic on the in-memory twin of its script, on a paused
//! clock: decisions, keys, the lease, the outage policies and their
//! switches. The same behaviours against a real redis-server are in
//! `tests/shared_limiter.rs`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use weir_context::Context;
use weir_rate::Rate;

use super::backend::fake::{FakeRedis, Fault};
use super::*;

const TIMEOUT: Duration = Duration::from_millis(50);
const RECHECK: Duration = Duration::from_millis(200);

fn builder(rate: Rate) -> SharedRateLimiterBuilder {
    SharedRateLimiter::builder(rate)
        .timeout(TIMEOUT)
        .recheck_every(RECHECK)
}

fn fake() -> Arc<FakeRedis> {
    Arc::new(FakeRedis::new())
}

#[tokio::test(start_paused = true)]
async fn burst_then_pace() {
    let redis = fake();
    let l = builder(Rate::per_second(10).burst(3))
        .build_fake(redis.clone())
        .unwrap();
    assert_eq!(l.available("a").await.unwrap(), 3);
    for _ in 0..3 {
        assert_eq!(
            l.try_acquire("a").await.unwrap().source(),
            GrantSource::Redis
        );
    }
    let err = l.try_acquire("a").await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_millis(100)));
    assert!(err.is_limited());
    assert_eq!(
        l.try_acquire_n("a", 4).await.unwrap_err().retry_after(),
        None,
        "above the burst: never"
    );
    tokio::time::advance(Duration::from_millis(100)).await;
    l.try_acquire("a").await.unwrap();
    let s = l.stats();
    assert_eq!((s.granted, s.refused, s.redis_decisions), (4, 1, 5));
    assert!(s.is_balanced(), "{s}");
}

#[tokio::test(start_paused = true)]
async fn keys_are_independent_and_expire_when_full() {
    let redis = fake();
    let l = builder(Rate::per_second(10).burst(2))
        .prefix("t")
        .build_fake(redis.clone())
        .unwrap();
    l.try_acquire_n("a", 2).await.unwrap();
    assert!(l.try_acquire("a").await.is_err());
    l.try_acquire_n("b", 2).await.unwrap();
    assert_eq!(l.redis_key("a"), "t:{a}");
    assert!(redis.exists("t:{a}"));
    // Two tokens refill in 200 ms: the key is gone then, not before.
    tokio::time::advance(Duration::from_millis(199)).await;
    assert!(redis.exists("t:{a}"));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(!redis.exists("t:{a}"));
}

#[tokio::test(start_paused = true)]
async fn fail_open_and_fail_closed_answer_within_the_timeout() {
    for (policy, granted) in [
        (OutagePolicy::FailOpen, true),
        (OutagePolicy::FailClosed, false),
    ] {
        let redis = fake();
        let l = builder(Rate::per_second(10))
            .on_outage(policy)
            .build_fake(redis.clone())
            .unwrap();
        redis.set_fault(Fault::Hang);
        let start = Instant::now();
        let first = l.try_acquire("a").await;
        assert_eq!(
            start.elapsed(),
            TIMEOUT,
            "the stalled call ends at the timeout"
        );
        assert_eq!(first.is_ok(), granted);
        if let Err(e) = &first {
            assert!(matches!(e, SharedRateError::Unavailable(f) if f.is_timeout()));
        }
        // Degraded: the others are answered at once, without Redis.
        let before = Instant::now();
        for _ in 0..10 {
            let r = l.try_acquire("a").await;
            assert_eq!(r.is_ok(), granted);
            if let Ok(g) = r {
                assert_eq!(g.source(), GrantSource::FailOpen);
                assert!(g.is_degraded());
            }
        }
        assert_eq!(before.elapsed(), Duration::ZERO);
        assert_eq!(redis.calls(), 1);
        let s = l.stats();
        assert_eq!((s.policy_decisions, s.timeouts, s.outages), (11, 1, 1));
        assert!(s.is_balanced(), "{s}");
    }
}

#[tokio::test(start_paused = true)]
async fn probes_once_per_recheck_and_recovers_by_itself() {
    let redis = fake();
    let l = builder(Rate::per_second(1000).burst(10))
        .on_outage(OutagePolicy::FailOpen)
        .build_fake(redis.clone())
        .unwrap();
    redis.set_fault(Fault::Down);
    l.try_acquire("a").await.unwrap();
    assert!(l.is_degraded());
    // Four recheck intervals, a decision every 10 ms: 4 probes.
    for _ in 0..80 {
        tokio::time::advance(Duration::from_millis(10)).await;
        l.try_acquire("a").await.unwrap();
    }
    assert_eq!(redis.calls(), 1 + 4);
    redis.set_fault(Fault::None);
    tokio::time::advance(RECHECK).await;
    assert_eq!(
        l.try_acquire("a").await.unwrap().source(),
        GrantSource::Redis
    );
    assert!(!l.is_degraded());
    let s = l.stats();
    assert_eq!((s.outages, s.recoveries, s.redis_failures), (1, 1, 5));
    assert!(s.is_balanced(), "{s}");
}

#[tokio::test(start_paused = true)]
async fn local_policy_enforces_the_share_and_is_dropped_on_recovery() {
    let redis = fake();
    // 100/s burst 20; a share of 0.25: 25/s, burst 5, per replica.
    let l = builder(Rate::per_second(100).burst(20))
        .on_outage(OutagePolicy::local(0.25))
        .build_fake(redis.clone())
        .unwrap();
    redis.set_fault(Fault::Down);
    let mut local = 0;
    for _ in 0..20 {
        match l.try_acquire("a").await {
            Ok(g) => {
                assert_eq!(g.source(), GrantSource::Local);
                local += 1;
            }
            Err(e) => assert_eq!(e.retry_after(), Some(Duration::from_millis(40))),
        }
    }
    assert_eq!(local, 5, "the local burst");
    assert_eq!(l.inner.fallback.as_ref().unwrap().len(), 1);
    // The local limiter waits too, within the context.
    let ctx = Context::background();
    let start = Instant::now();
    assert_eq!(
        l.acquire("a").context(&ctx).await.unwrap().source(),
        GrantSource::Local
    );
    assert_eq!(start.elapsed(), Duration::from_millis(40));
    redis.set_fault(Fault::None);
    tokio::time::advance(RECHECK).await;
    assert_eq!(
        l.try_acquire("a").await.unwrap().source(),
        GrantSource::Redis
    );
    assert_eq!(l.inner.fallback.as_ref().unwrap().len(), 0);
    assert!(l.stats().is_balanced());
}

#[tokio::test(start_paused = true)]
async fn a_lease_spends_locally_without_round_trips() {
    let redis = fake();
    let l = builder(Rate::per_second(100).burst(50))
        .lease(8)
        .build_fake(redis.clone())
        .unwrap();
    for _ in 0..40 {
        l.try_acquire("a").await.unwrap();
    }
    // One round trip per lease of 8.
    assert_eq!(redis.calls(), 5, "round trips for 40 decisions");
    let held = l.leased("a");
    assert_eq!(held, 0);
    // What the lease took is taken in Redis.
    assert_eq!(l.available("a").await.unwrap(), 50 - 40 - held);
    let s = l.stats();
    assert_eq!(
        (s.lease_decisions, s.redis_decisions),
        (35, 5),
        "one decision by Redis per lease"
    );
    assert!(s.is_balanced(), "{s}");
    // While Redis is down, leased tokens are still spent.
    l.try_acquire("a").await.unwrap();
    let held = l.leased("a");
    assert_eq!(held, 7);
    redis.set_fault(Fault::Down);
    for _ in 0..held {
        assert_eq!(
            l.try_acquire("a").await.unwrap().source(),
            GrantSource::Lease
        );
    }
    assert!(
        l.try_acquire("a").await.is_err(),
        "fail closed once the lease is spent"
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_one_refill() {
    let redis = fake();
    let l = builder(Rate::per_second(1000).burst(100))
        .lease(8)
        .build_fake(redis.clone())
        .unwrap();
    redis.set_fault(Fault::Slow(Duration::from_millis(1)));
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let l = l.clone();
            tokio::spawn(async move { l.try_acquire("a").await.map(|g| g.source()) })
        })
        .collect();
    let mut sources = Vec::new();
    for c in calls {
        sources.push(c.await.unwrap().unwrap());
    }
    // A few leases of 8 for 16 callers, not a round trip each: the other
    // callers waited for the refill in flight.
    assert!(redis.calls() <= 4, "{} round trips", redis.calls());
    let by_redis = sources.iter().filter(|s| **s == GrantSource::Redis).count();
    let s = l.stats();
    assert_eq!(s.redis_decisions as usize, by_redis);
    assert_eq!(s.lease_decisions + s.redis_decisions, 16);
    assert!(s.is_balanced(), "{s}");
    // A refusal is shared too: the bucket is empty, one call finds out.
    let drained = builder(Rate::per_minute(1).burst(1))
        .lease(1)
        .build_fake(redis.clone())
        .unwrap();
    drained.try_acquire("b").await.unwrap();
    let before = redis.calls();
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let l = drained.clone();
            tokio::spawn(async move { l.try_acquire("b").await })
        })
        .collect();
    for c in calls {
        assert!(c.await.unwrap().unwrap_err().retry_after().is_some());
    }
    assert_eq!(
        redis.calls() - before,
        1,
        "one round trip for eight refusals"
    );
}

/// Four replicas (limiters on one server) take as fast as they can for
/// 10 s of paused time, with a lease of 10: over the whole run and over
/// every window of 1 s, the admissions stay within `rate·T + burst +
/// replicas × (k - 1)`; the over-admission the lease causes is measured.
#[tokio::test(start_paused = true)]
async fn replicas_with_leases_stay_within_the_bound() {
    let redis = fake();
    let (rate, burst, k, replicas) = (200u64, 20u32, 10u32, 4u64);
    let t = Duration::from_secs(10);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..replicas {
        let l = builder(Rate::per_second(rate as u32).burst(burst))
            .lease(k)
            .build_fake(redis.clone())
            .unwrap();
        redis.set_fault(Fault::Slow(Duration::from_micros(300)));
        tasks.push(tokio::spawn(async move {
            let end = start + t;
            let mut admitted = Vec::new();
            while Instant::now() < end {
                match l.try_acquire("shared").await {
                    Ok(_) => admitted.push(Instant::now() - start),
                    Err(e) => tokio::time::sleep(e.retry_after().unwrap()).await,
                }
            }
            (admitted, l.leased("shared"))
        }));
    }
    let mut all = Vec::new();
    let mut held = 0;
    for task in tasks {
        let (a, h) = task.await.unwrap();
        all.extend(a);
        held += u64::from(h);
    }
    all.sort();
    let total = all.len() as u64;
    let lease_bound = replicas * u64::from(k - 1);
    let limit = rate * t.as_secs() + u64::from(burst);
    assert!(
        total <= limit,
        "{total} > {limit}: over the whole run leased tokens were taken in it"
    );
    assert!(
        total + held >= limit - rate / 50,
        "{total} + {held} < {limit}"
    );
    // Every window of 1 s starting at an admission.
    let w = Duration::from_secs(1);
    let window_limit = rate + u64::from(burst);
    let mut worst = 0i64;
    for (i, from) in all.iter().enumerate() {
        let n = all[i..].iter().take_while(|at| **at <= *from + w).count() as i64;
        worst = worst.max(n - window_limit as i64);
    }
    println!(
        "lease {k}, {replicas} replicas: worst 1 s window {worst} over rate·T + burst (bound {lease_bound})"
    );
    assert!(worst <= lease_bound as i64, "{worst} > {lease_bound}");
}

/// The worst case of the lease, built on purpose: every replica holds a
/// lease's worth, idles until the bucket is full, then all spend at once.
/// A window of 1 s then admits `rate·T + burst + replicas × (k - 1)`: the
/// documented bound, reached and not exceeded.
#[tokio::test(start_paused = true)]
async fn the_lease_bound_is_reached_and_not_exceeded() {
    let redis = fake();
    let (rate, burst, k, replicas) = (100u64, 50u32, 10u32, 4u64);
    let limiters: Vec<_> = (0..replicas)
        .map(|_| {
            builder(Rate::per_second(rate as u32).burst(burst))
                .lease(k)
                .build_fake(redis.clone())
                .unwrap()
        })
        .collect();
    for l in &limiters {
        l.try_acquire("k").await.unwrap();
        assert_eq!(l.leased("k"), k - 1);
    }
    tokio::time::advance(Duration::from_secs(1)).await; // the bucket is full again
    let start = Instant::now();
    let w = Duration::from_secs(1);
    let mut tasks = Vec::new();
    for l in limiters {
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0u64;
            loop {
                match l.try_acquire("k").await {
                    Ok(_) if start.elapsed() <= w => admitted += 1,
                    Ok(_) => return admitted,
                    Err(e) => {
                        let wait = e.retry_after().unwrap();
                        if start.elapsed() + wait > w {
                            return admitted;
                        }
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let plain = rate + u64::from(burst);
    let bound = plain + replicas * u64::from(k - 1);
    println!("worst case: {total} in 1 s; rate·T + burst = {plain}; with the lease bound {bound}");
    assert!(total <= bound, "{total} > {bound}");
    assert!(
        total > plain,
        "the lease lets a window exceed rate·T + burst: {total}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_reserves_then_sleeps() {
    let redis = fake();
    let l = builder(Rate::per_second(10).burst(1))
        .build_fake(redis.clone())
        .unwrap();
    l.try_acquire("a").await.unwrap();
    let ctx = Context::background();
    let start = Instant::now();
    l.acquire("a").context(&ctx).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    // A deadline before the next token: refused at once, nothing taken.
    let hurried = Context::background().with_timeout(Duration::from_millis(50));
    let err = l.acquire("a").context(&hurried).await.unwrap_err();
    assert!(matches!(
        err,
        SharedWaitError::WouldExceedDeadline { requested: 1 }
    ));
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    let err = l.acquire_n("a", 2).context(&ctx).await.unwrap_err();
    assert!(matches!(
        err,
        SharedWaitError::InsufficientCapacity {
            requested: 2,
            burst: 1
        }
    ));
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(l.available("a").await.unwrap(), 1);
    assert!(l.stats().is_balanced());
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_wait_gives_its_tokens_back() {
    let redis = fake();
    let l = builder(Rate::per_second(10).burst(1))
        .build_fake(redis.clone())
        .unwrap();
    l.try_acquire("a").await.unwrap();
    let ctx = Context::background();
    let waiter = {
        let (l, ctx) = (l.clone(), ctx.clone());
        tokio::spawn(async move { l.acquire("a").context(&ctx).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    ctx.cancel_with("client went away");
    let err = waiter.await.unwrap().unwrap_err();
    assert!(matches!(&err, SharedWaitError::Stopped(c) if c.to_string() == "client went away"));
    // The reservation was refunded: the token 100 ms after the first is
    // free again (nothing is reserved beyond it).
    tokio::time::advance(Duration::from_millis(70)).await;
    l.try_acquire("a").await.unwrap();
    let s = l.stats();
    assert_eq!(s.stopped, 1);
    assert!(s.is_balanced(), "{s}");
}

#[tokio::test(start_paused = true)]
async fn a_wait_under_fail_closed_is_unavailable_and_never_hangs() {
    let redis = fake();
    let l = builder(Rate::per_second(10))
        .build_fake(redis.clone())
        .unwrap();
    redis.set_fault(Fault::Hang);
    let ctx = Context::background();
    let start = Instant::now();
    let err = l.acquire("a").context(&ctx).await.unwrap_err();
    assert!(matches!(err, SharedWaitError::Unavailable(_)));
    assert_eq!(start.elapsed(), TIMEOUT);
    let cancelled = Context::background();
    cancelled.cancel();
    assert!(matches!(
        l.acquire("a").context(&cancelled).await.unwrap_err(),
        SharedWaitError::Stopped(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_refill_frees_its_room() {
    let redis = fake();
    let l = builder(Rate::per_second(100).burst(50))
        .lease(8)
        .build_fake(redis.clone())
        .unwrap();
    redis.set_fault(Fault::Hang);
    let call = l.try_acquire("a");
    // Dropped while it waits for Redis.
    assert!(
        tokio::time::timeout(Duration::from_millis(10), call)
            .await
            .is_err()
    );
    redis.set_fault(Fault::None);
    let book = l.inner.lease.as_ref().unwrap();
    assert_eq!(crate::lock(book).keys(), 0, "nothing left asked for");
}

#[test]
fn display_and_auto_traits() {
    fn assert_send_sync<T: Send + Sync + Unpin + Clone>() {}
    assert_send_sync::<SharedRateLimiter>();
    assert_send_sync::<SharedRateStats>();
    assert_send_sync::<SharedRateError>();
    let s = SharedRateStats::default();
    let table = s.to_string();
    assert!(
        table.starts_with("shared rate limiter     count\ngranted      "),
        "{table}"
    );
    assert_eq!(table.lines().count(), 14);
    assert_eq!(
        SharedRateError::Limited {
            retry_after: Some(Duration::from_millis(5))
        }
        .to_string(),
        "rate limited: retry in 5ms"
    );
}
