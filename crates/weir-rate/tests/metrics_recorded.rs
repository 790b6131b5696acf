//! The `metrics` feature: a limiter's decisions and waits, read back from
//! metrics-util's debugging recorder (a local one per test, on a paused
//! current-thread runtime).
#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use weir_context::Context;
use weir_rate::{KeyedRateLimiter, Rate, RateLimiter, WaitError};

fn recorded<F: Future<Output = ()>>(test: impl FnOnce() -> F) -> BTreeMap<String, DebugValue> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(test());
    });
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

#[test]
fn decisions_and_waits_are_recorded_under_the_limiters_name() {
    let series = recorded(|| async {
        let limiter = RateLimiter::new(Rate::per_second(10).burst(2))
            .unwrap()
            .named("api");
        assert_eq!(limiter.name(), "api");
        assert!(format!("{limiter:?}").contains("\"api\""));
        assert!(limiter.peek().is_ok(), "a peek is no decision");
        assert!(limiter.try_acquire().is_ok());
        assert!(limiter.try_acquire().is_ok());
        assert!(limiter.try_acquire().is_err());
        // Waits 100 ms for the next token.
        limiter.acquire().await.unwrap();
        // More than the burst: refused at once.
        assert!(matches!(
            limiter.acquire_n(3).await,
            Err(WaitError::InsufficientCapacity(_))
        ));
        // A reservation is a decision.
        let r = limiter.reserve();
        assert!(r.ok());
        // A wait its context stops is not the limiter's refusal.
        let ctx = Context::background();
        ctx.cancel();
        assert!(limiter.acquire().context(&ctx).await.is_err());
        // A wait within its deadline waits 200 ms (the reservation first).
        let ctx = Context::background().with_timeout(Duration::from_secs(1));
        limiter.acquire().context(&ctx).await.unwrap();
    });
    assert_eq!(
        series.get("weir_limiter_allowed_total{limiter=api}"),
        Some(&DebugValue::Counter(5))
    );
    assert_eq!(
        series.get("weir_limiter_denied_total{limiter=api}"),
        Some(&DebugValue::Counter(2))
    );
    let Some(DebugValue::Histogram(waits)) = series.get("weir_limiter_wait_seconds{limiter=api}")
    else {
        panic!("{series:#?}")
    };
    let waits: Vec<f64> = waits.iter().map(|w| w.into_inner()).collect();
    assert_eq!(waits, [0.1, 0.2]);
}

#[test]
fn a_keyed_limiter_records_every_key_on_one_series() {
    let series = recorded(|| async {
        let per_client = KeyedRateLimiter::new(Rate::per_second(1))
            .unwrap()
            .named("per-client");
        assert_eq!(per_client.name(), "per-client");
        for client in ["a", "b", "c"] {
            assert!(per_client.try_acquire(&client).is_ok());
            assert!(per_client.try_acquire(&client).is_err());
        }
        assert_eq!(per_client.limiter(&"a").name(), "per-client");
    });
    assert_eq!(
        series.get("weir_limiter_allowed_total{limiter=per-client}"),
        Some(&DebugValue::Counter(3))
    );
    assert_eq!(
        series.get("weir_limiter_denied_total{limiter=per-client}"),
        Some(&DebugValue::Counter(3))
    );
}
