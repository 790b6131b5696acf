//! The logging rules for shutdown, workers and bounded fan-out: one event
//! per failure, from the owner, formatted with `Display`; WARN when nobody
//! receives the failure (a `Shutdown` task), DEBUG when it is handed back
//! (a worker's `stop`, a bounded run's error); nothing for a success.
#![allow(clippy::unwrap_used)]

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::{Layer, Registry};
use weir_core::{Bounded, Shutdown, spawn_worker};

#[derive(Debug, Clone)]
struct Seen {
    level: Level,
    message: String,
    fields: Vec<(String, String)>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Seen>>>);

impl Capture {
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Fields<'a>(&'a mut Seen);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.0.message = text;
        } else {
            self.0.fields.push((field.name().to_owned(), text));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .fields
            .push((field.name().to_owned(), value.to_owned()));
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        // Only weir's own events.
        if !event.metadata().target().starts_with("weir_core") {
            return;
        }
        let mut seen = Seen {
            level: *event.metadata().level(),
            message: String::new(),
            fields: Vec::new(),
        };
        event.record(&mut Fields(&mut seen));
        self.0.lock().unwrap().push(seen);
    }
}

fn capture() -> (Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::default();
    let subscriber = Registry::default().with(capture.clone());
    let guard = tracing::subscriber::set_default(subscriber);
    (capture, guard)
}

fn failures(seen: &[Seen]) -> Vec<&Seen> {
    seen.iter()
        .filter(|e| e.message.contains("failed") || e.message.contains("panicked"))
        .collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_shutdown_tasks_failure_is_one_warn_event_in_display_form() {
    let (capture, _guard) = capture();
    let s = Shutdown::new();
    s.spawn("db", |_ctx| async {
        Err(anyhow::anyhow!("disk full").context("flush failed"))
    })
    .unwrap();
    s.spawn("cache", |_ctx| async {
        if true {
            panic!("poisoned");
        }
    })
    .unwrap();
    s.spawn("fine", |_ctx| async {}).unwrap();
    let err = s.join().await.unwrap_err();
    assert_eq!(err.report().failed + err.report().panicked, 2);

    let seen = capture.take();
    let failures = failures(&seen);
    assert_eq!(failures.len(), 2, "one event per failure: {seen:#?}");
    assert!(failures.iter().all(|e| e.level == Level::WARN));
    let db = failures
        .iter()
        .find(|e| e.field("task") == Some("db"))
        .unwrap();
    // Display with the chain, never Debug (which would print a backtrace).
    assert_eq!(db.field("error"), Some("flush failed: disk full"));
    let cache = failures
        .iter()
        .find(|e| e.field("task") == Some("cache"))
        .unwrap();
    assert_eq!(cache.field("panic"), Some("poisoned"));
    assert!(
        seen.iter().all(|e| e.field("task") != Some("fine")),
        "nothing about a task that ended well"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_aborted_shutdown_task_is_one_warn_event_with_the_grace() {
    let (capture, _guard) = capture();
    let s = Shutdown::new();
    s.spawn("stubborn", |_ctx| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    })
    .unwrap();
    s.shutdown(Duration::from_secs(1)).await.unwrap_err();
    let seen = capture.take();
    let aborted: Vec<_> = seen
        .iter()
        .filter(|e| e.field("task") == Some("stubborn"))
        .collect();
    assert_eq!(aborted.len(), 1, "{seen:#?}");
    assert_eq!(aborted[0].level, Level::WARN);
    assert_eq!(
        aborted[0].field("cause"),
        Some("the shutdown grace period of 1s ran out")
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_workers_failure_handed_back_by_stop_is_one_debug_event() {
    let (capture, _guard) = capture();
    let worker = spawn_worker(|ctx| async move {
        ctx.cancelled().await;
        Err::<(), _>(std::io::Error::other("flush failed"))
    });
    worker.stop().await.unwrap_err();
    let seen = capture.take();
    let failures = failures(&seen);
    assert_eq!(failures.len(), 1, "{seen:#?}");
    assert_eq!(failures[0].level, Level::DEBUG);
    assert_eq!(failures[0].field("error"), Some("flush failed"));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bounded_failures_are_debug_events_and_successes_are_silent() {
    let (capture, _guard) = capture();
    Bounded::new(4)
        .run(0..20u32, |i| async move { Ok::<_, String>(i) })
        .await
        .unwrap();
    assert!(
        capture.take().is_empty(),
        "nothing on a successful item's path"
    );

    let results = Bounded::new(2)
        .run_all(0..6u32, |i| async move {
            if i % 3 == 0 {
                return Err(format!("bad {i}"));
            }
            Ok(i)
        })
        .await
        .unwrap();
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 2);
    let seen = capture.take();
    let failures = failures(&seen);
    assert_eq!(failures.len(), 2, "{seen:#?}");
    assert!(failures.iter().all(|e| e.level == Level::DEBUG));
    assert!(failures.iter().any(|e| e.field("error") == Some("bad 3")));
}
