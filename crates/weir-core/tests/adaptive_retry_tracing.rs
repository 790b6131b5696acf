//! The events of the adaptive limit and of retry. Every move of an
//! adaptive limit is one DEBUG event with the limit's name, the algorithm,
//! the old and new values and the reason; nothing is logged when it does
//! not move. Every retry is one DEBUG event with the attempt, the delay and
//! the error in Display form; giving up logs nothing (the error is
//! returned). In their own test binary: tracing's per-callsite interest
//! cache is global, so a thread-local subscriber is only reliable when no
//! other test thread touches the same callsites (each test here touches its
//! own).
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::advance;
use tracing_subscriber::layer::SubscriberExt;
use weir_core::{AdaptiveLimit, Aimd, Jitter, RetryPolicy, retry};

/// Captures every event as `LEVEL field=value ...`.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={:?}", field.name(), value));
            }
        }
        let mut fields = Fields(event.metadata().level().to_string());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

#[tokio::test(start_paused = true)]
async fn every_move_is_one_debug_event_with_old_and_new() {
    let events = Events::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(events.clone()));
    let limit = AdaptiveLimit::builder()
        .name("db")
        .aimd(Aimd::new().backoff(0.5))
        .initial(4)
        .window(Duration::from_millis(1))
        .window_samples(1)
        .build()
        .unwrap();
    // A window closes on a verdict per slot: four drops, 4 → 2.
    let held: Vec<_> = (0..4).map(|_| limit.try_acquire().unwrap()).collect();
    advance(Duration::from_millis(1)).await;
    held.into_iter().for_each(|p| p.dropped());
    // One at a time, twice: a window that was never full: no move, no event.
    for _ in 0..2 {
        let p = limit.try_acquire().unwrap();
        advance(Duration::from_millis(1)).await;
        p.success();
    }
    // Both slots busy: full, 2 → 3.
    let held: Vec<_> = (0..2).map(|_| limit.try_acquire().unwrap()).collect();
    advance(Duration::from_millis(1)).await;
    held.into_iter().for_each(|p| p.success());
    assert_eq!(
        *events.0.lock().unwrap(),
        [
            "DEBUG message=adaptive limit moved name=db algorithm=\"aimd\" old=4 new=2 reason=\"drop\"",
            "DEBUG message=adaptive limit moved name=db algorithm=\"aimd\" old=2 new=3 reason=\"increase\"",
        ]
    );
    assert_eq!(limit.stats().adjustments, 2);
}

#[tokio::test(start_paused = true)]
async fn every_retry_is_one_debug_event_and_giving_up_logs_nothing() {
    let events = Events::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(events.clone()));
    let policy = RetryPolicy::builder()
        .base(Duration::from_millis(100))
        .jitter(Jitter::None)
        .max_attempts(3)
        .build()
        .unwrap();
    let mut n = 0;
    let err = retry(&policy, || {
        n += 1;
        let attempt = n;
        async move { Err::<(), _>(anyhow::anyhow!("boom {attempt}").context("fetch failed")) }
    })
    .await
    .unwrap_err();
    assert_eq!(err.attempts(), 3);
    assert_eq!(
        *events.0.lock().unwrap(),
        [
            "DEBUG message=attempt failed; retrying attempt=1 delay=100ms error=fetch failed: boom 1",
            "DEBUG message=attempt failed; retrying attempt=2 delay=200ms error=fetch failed: boom 2",
        ]
    );
}
