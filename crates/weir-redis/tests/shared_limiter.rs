//! The shared limiter against a real redis-server that each test starts
//! itself: the script's arithmetic, keys and expiry, four replica
//! processes sharing one limit (with and without the lease), Redis killed
//! and restarted, stalled, and its scripts flushed, and the tower layer.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tower::{Layer, ServiceExt, service_fn};
use weir_context::Context;
use weir_rate::Rate;
use weir_redis::{
    GrantSource, OutagePolicy, SharedRateError, SharedRateLimitLayer, SharedRateLimiter,
    SharedWaitError,
};

use support::*;

fn limiter(url: &str, rate: Rate) -> SharedRateLimiter {
    SharedRateLimiter::builder(rate).build_url(url).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_counts_like_the_local_limiter() {
    let server = server().await;
    let l = limiter(&server.url(), Rate::per_second(10).burst(3));
    assert_eq!(l.available("a").await.unwrap(), 3);
    for _ in 0..3 {
        assert_eq!(
            l.try_acquire("a").await.unwrap().source(),
            GrantSource::Redis
        );
    }
    let err = l.try_acquire("a").await.unwrap_err();
    let wait = err.retry_after().unwrap();
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(100),
        "{wait:?}"
    );
    assert_eq!(l.available("a").await.unwrap(), 0);
    assert!(
        l.try_acquire_n("a", 4)
            .await
            .unwrap_err()
            .retry_after()
            .is_none()
    );
    // A wait reserves its token and sleeps until it is due.
    let ctx = Context::background();
    assert_eq!(
        l.acquire("a").context(&ctx).await.unwrap().source(),
        GrantSource::Redis
    );
    let s = l.stats();
    assert!(s.is_balanced(), "{s}");
    assert_eq!(s.script_loads, 1, "loaded once, then run by hash");
    // A deadline shorter than the next token: refused at once. The next
    // token is a minute away and the deadline a second, so a slow machine
    // cannot reach the deadline first (this runs on real time).
    let slow = limiter(&server.url(), Rate::per_minute(1).burst(1));
    slow.try_acquire("b").await.unwrap();
    let hurried = Context::background().with_timeout(Duration::from_secs(1));
    let err = slow.acquire("b").context(&hurried).await.unwrap_err();
    assert!(
        matches!(err, SharedWaitError::WouldExceedDeadline { requested: 1 }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_wait_gives_its_token_back() {
    let server = server().await;
    // One token per 200 ms.
    let l = limiter(&server.url(), Rate::per_second(5));
    let start = tokio::time::Instant::now();
    l.try_acquire("a").await.unwrap();
    let ctx = Context::background();
    let waiter = {
        let (l, ctx) = (l.clone(), ctx.clone());
        tokio::spawn(async move { l.acquire("a").context(&ctx).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    ctx.cancel();
    assert!(matches!(
        waiter.await.unwrap(),
        Err(SharedWaitError::Stopped(_))
    ));
    // Refunded: the bucket is full again at 200 ms (kept, it would be in
    // debt until 400 ms).
    tokio::time::sleep_until(start + Duration::from_millis(300)).await;
    assert_eq!(l.available("a").await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_independent_and_idle_keys_expire() {
    let server = server().await;
    let l = SharedRateLimiter::builder(Rate::per_second(100).burst(5))
        .prefix("t")
        .build_url(&server.url())
        .unwrap();
    l.try_acquire_n("a", 5).await.unwrap();
    assert!(l.try_acquire("a").await.unwrap_err().is_limited());
    l.try_acquire_n("b", 5).await.unwrap();
    let mut raw = raw(&server.url()).await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg("t:{a}")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(
        (1..=50).contains(&pttl),
        "expires when full again: {pttl} ms"
    );
    eventually(Duration::from_secs(5), "idle keys expire", || {
        let mut raw = raw.clone();
        async move {
            let n: i64 = redis::cmd("EXISTS")
                .arg("t:{a}")
                .arg("t:{b}")
                .query_async(&mut raw)
                .await
                .unwrap();
            n == 0
        }
    })
    .await;
}

/// What a replica process reports.
#[derive(Debug, Serialize, Deserialize)]
struct ReplicaResult {
    admitted: u64,
    /// Wall clock (µs) before its first granted request.
    first_us: u64,
    /// Wall clock (µs) after its last granted request.
    last_us: u64,
    held: u32,
    unavailable: u64,
    balanced: bool,
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Four processes (this binary run again as replicas) take as fast as they
/// can from one shared key for `RUN` seconds. The GCRA's promise over the
/// run: admitted ≤ burst + span / period, where span covers every decision
/// (Redis and this machine read the same clock); and the replicas, always
/// asking, get at least 99% of what the bucket gave out meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_replica_processes_share_one_limit() {
    let server = server().await;
    let (rate, burst, replicas) = (400u64, 40u32, 4u64);
    let run = Duration::from_secs(3);
    for lease in [0u32, 8] {
        let start_us = unix_us() + 2_000_000;
        let end_us = start_us + run.as_micros() as u64;
        let key = format!("shared-{lease}");
        let env = |i: u64| {
            vec![
                ("WEIR_URL", server.url()),
                ("WEIR_KEY", key.clone()),
                ("WEIR_RATE", rate.to_string()),
                ("WEIR_BURST", burst.to_string()),
                ("WEIR_LEASE", lease.to_string()),
                ("WEIR_START_US", start_us.to_string()),
                ("WEIR_END_US", end_us.to_string()),
                ("WEIR_INDEX", i.to_string()),
            ]
        };
        let children: Vec<_> = (0..replicas)
            .map(|i| spawn_self("replica_entry", "replica", &env(i)))
            .collect();
        let mut results = Vec::new();
        for child in children {
            let line = result_of(child, Duration::from_secs(60)).await;
            results.push(serde_json::from_str::<ReplicaResult>(&line).unwrap());
        }
        let total: u64 = results.iter().map(|r| r.admitted).sum();
        let held: u64 = results.iter().map(|r| u64::from(r.held)).sum();
        let first = results.iter().map(|r| r.first_us).min().unwrap();
        let last = results.iter().map(|r| r.last_us).max().unwrap();
        let latest_start = results.iter().map(|r| r.first_us).max().unwrap();
        let period_us = 1_000_000 / rate;
        let upper = u64::from(burst) + (last - first) / period_us;
        let lease_bound = replicas * u64::from(lease);
        // Every replica asked from its first request to the end.
        let lower = (u64::from(burst) + (end_us - latest_start) / period_us) * 99 / 100;
        let shares: Vec<u64> = results.iter().map(|r| r.admitted).collect();
        println!(
            "lease {lease}: admitted {total} (shares {shares:?}), held {held}; \
             at most {upper} (+ lease bound {lease_bound}), at least {lower}"
        );
        assert!(
            total <= upper + lease_bound,
            "over the limit: {total} > {upper} + {lease_bound}"
        );
        assert!(
            total + held >= lower,
            "under 99%: {total} + {held} < {lower}"
        );
        assert!(
            results
                .iter()
                .all(|r| r.admitted > 0 && r.unavailable == 0 && r.balanced)
        );
    }
}

/// The replica role of [`four_replica_processes_share_one_limit`]: run
/// only as a child process (the parent sets the environment).
#[tokio::test(flavor = "current_thread")]
#[ignore = "a child process of four_replica_processes_share_one_limit"]
async fn replica_entry() {
    if std::env::var(ROLE).as_deref() != Ok("replica") {
        return;
    }
    let var = |k: &str| std::env::var(k).unwrap();
    let num = |k: &str| var(k).parse::<u64>().unwrap();
    let rate = Rate::per_second(num("WEIR_RATE") as u32).burst(num("WEIR_BURST") as u32);
    let mut builder = SharedRateLimiter::builder(rate).timeout(Duration::from_secs(2));
    if num("WEIR_LEASE") > 0 {
        builder = builder.lease(num("WEIR_LEASE") as u32);
    }
    let l = builder.build_url(&var("WEIR_URL")).unwrap();
    let key = var("WEIR_KEY");
    // Connect (and load the script) before the start.
    l.available(&key).await.unwrap();
    let (start, end) = (num("WEIR_START_US"), num("WEIR_END_US"));
    tokio::time::sleep(Duration::from_micros(start.saturating_sub(unix_us()))).await;
    let mut r = ReplicaResult {
        admitted: 0,
        first_us: 0,
        last_us: 0,
        held: 0,
        unavailable: 0,
        balanced: false,
    };
    loop {
        let before = unix_us();
        if before >= end {
            break;
        }
        match l.try_acquire(&key).await {
            Ok(_) => {
                if r.admitted == 0 {
                    r.first_us = before;
                }
                r.admitted += 1;
                r.last_us = unix_us();
            }
            Err(SharedRateError::Limited { retry_after }) => {
                let wait = retry_after
                    .unwrap()
                    .min(Duration::from_micros(end.saturating_sub(unix_us())));
                tokio::time::sleep(wait).await;
            }
            Err(_) => r.unavailable += 1,
        }
    }
    r.held = l.leased(&key);
    r.balanced = l.stats().is_balanced();
    println!("{RESULT}{}", serde_json::to_string(&r).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_mid_run() {
    trace_init();
    let mut server = server().await;
    let timeout = Duration::from_millis(200);
    let make = |policy| {
        SharedRateLimiter::builder(Rate::per_second(1000).burst(100))
            .timeout(timeout)
            .recheck_every(Duration::from_millis(100))
            .on_outage(policy)
            .build_url(&server.url())
            .unwrap()
    };
    let open = make(OutagePolicy::FailOpen);
    let closed = make(OutagePolicy::FailClosed);
    let local = make(OutagePolicy::local(0.5));
    for l in [&open, &closed, &local] {
        assert_eq!(
            l.try_acquire("k").await.unwrap().source(),
            GrantSource::Redis
        );
    }
    server.kill().await;
    // Each call ends within the timeout (the bound is loose: it checks
    // that nothing hangs, not how fast it answers).
    let never_hangs = timeout + Duration::from_secs(2);
    for _ in 0..20 {
        let t = tokio::time::Instant::now();
        let g = open.try_acquire("k").await.unwrap();
        assert_eq!(g.source(), GrantSource::FailOpen);
        let e = closed.try_acquire("k").await.unwrap_err();
        assert!(matches!(e, SharedRateError::Unavailable(_)), "{e}");
        match local.try_acquire("k").await {
            Ok(g) => assert_eq!(g.source(), GrantSource::Local),
            Err(e) => assert!(e.is_limited(), "{e}"),
        }
        assert!(
            t.elapsed() < 3 * never_hangs,
            "a decision hung: {:?}",
            t.elapsed()
        );
    }
    assert!(open.is_degraded() && closed.is_degraded() && local.is_degraded());
    server.restart().await.unwrap();
    for l in [&open, &closed, &local] {
        eventually(Duration::from_secs(15), "recovers by itself", || async {
            matches!(l.try_acquire("k").await, Ok(g) if g.source() == GrantSource::Redis)
        })
        .await;
        let s = l.stats();
        println!("{s}");
        assert!(s.is_balanced(), "{s}");
        assert_eq!((s.outages, s.recoveries), (1, 1));
        assert!(s.policy_decisions >= 20);
        assert!(!l.is_degraded());
    }
    // Scripts live on the server: the restarted one had none, so one of the
    // limiters loaded it again after a NOSCRIPT.
    let loads: u64 = [&open, &closed, &local]
        .iter()
        .map(|l| l.stats().script_loads)
        .sum();
    assert_eq!(
        loads, 2,
        "once on the first server, once on the restarted one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_times_out_then_recovers() {
    let server = server().await;
    let l = SharedRateLimiter::builder(Rate::per_second(1000).burst(100))
        .timeout(Duration::from_millis(100))
        .recheck_every(Duration::from_millis(50))
        .on_outage(OutagePolicy::FailOpen)
        .build_url(&server.url())
        .unwrap();
    l.try_acquire("k").await.unwrap();
    let mut raw = raw(&server.url()).await;
    // The server runs nothing else for 800 ms.
    let stall = tokio::spawn(async move {
        let _: () = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg("0.8")
            .query_async(&mut raw)
            .await
            .unwrap();
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        l.try_acquire("k").await.unwrap().source(),
        GrantSource::FailOpen
    );
    assert!(l.stats().timeouts >= 1);
    stall.await.unwrap();
    eventually(
        Duration::from_secs(10),
        "recovers after the stall",
        || async { matches!(l.try_acquire("k").await, Ok(g) if g.source() == GrantSource::Redis) },
    )
    .await;
    assert_eq!(l.stats().recoveries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_flush_mid_run_recovers() {
    let server = server().await;
    let l = limiter(&server.url(), Rate::per_second(10_000).burst(1000));
    for _ in 0..10 {
        l.try_acquire("k").await.unwrap();
    }
    let mut raw = raw(&server.url()).await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw)
        .await
        .unwrap();
    for _ in 0..10 {
        assert_eq!(
            l.try_acquire("k").await.unwrap().source(),
            GrantSource::Redis
        );
    }
    let s = l.stats();
    assert_eq!((s.script_loads, s.redis_failures, s.granted), (2, 0, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_layer_shares_each_keys_limit_across_replicas() {
    let server = server().await;
    let service = || {
        let l = limiter(&server.url(), Rate::per_second(1));
        SharedRateLimitLayer::new(l, |req: &(String, u32)| req.0.clone()).layer(service_fn(
            |req: (String, u32)| async move { Ok::<_, std::convert::Infallible>(req.1) },
        ))
    };
    // Two replicas of the service, each with its own limiter.
    let (a, b) = (service(), service());
    assert_eq!(a.clone().oneshot(("ann".into(), 1)).await.unwrap(), 1);
    let err = b.clone().oneshot(("ann".into(), 2)).await.unwrap_err();
    let refused = err.downcast_ref::<SharedRateError>().unwrap();
    assert!(
        refused
            .retry_after()
            .is_some_and(|d| d <= Duration::from_secs(1))
    );
    assert_eq!(b.clone().oneshot(("bob".into(), 3)).await.unwrap(), 3);
    // Waiting up to 2 s: served when ann's next token is due.
    let waiting = SharedRateLimitLayer::new(
        limiter(&server.url(), Rate::per_second(1)),
        |r: &(String, u32)| r.0.clone(),
    )
    .max_wait(Duration::from_secs(2))
    .layer(service_fn(|req: (String, u32)| async move {
        Ok::<_, std::convert::Infallible>(req.1)
    }));
    assert_eq!(waiting.oneshot(("ann".into(), 4)).await.unwrap(), 4);
}
