//! Each task runs in a `task` span with its index and name; a failure handed
//! back by `join` is one DEBUG event; dropping a group with tasks not joined
//! is a WARN event. Alone in its own test binary: tracing's
//! per-callsite interest cache is global, so a thread-local subscriber is
//! only reliable when no other test thread touches the same callsites.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use weir_group::{ErrorPolicy, Group};

/// Collects what a `fmt` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn spans_debug_events_for_failures_and_a_warn_on_drop() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .without_time()
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let mut group: Group<(), &'static str> = Group::builder()
        .error_policy(ErrorPolicy::Continue)
        .build()
        .unwrap();
    group
        .spawn(async {
            tracing::info!("hello from inside");
            Ok(())
        })
        .await;
    group.spawn_named("failer", async { Err("boom") }).await;
    group
        .spawn_named("exploder", async {
            tracing::info!("about to explode");
            panic!("kaboom")
        })
        .await;
    group.spawn_named("quiet", async { Ok(()) }).await;
    let err = group.join().await.unwrap_err();
    assert_eq!(err.error().len(), 2);

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    // Events from inside a task carry its span: index, and name if any.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("task{index=0}: ") && l.contains("hello from inside")),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(r#"task{index=2 name="exploder"}"#)
                && l.contains("about to explode")),
        "{log}"
    );
    // Each failure join hands back is one DEBUG event, with Display.
    let failures: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("did not succeed"))
        .collect();
    assert_eq!(failures.len(), 2, "{log}");
    assert!(failures.iter().all(|l| l.contains("DEBUG")), "{log}");
    assert!(
        failures[0].contains("error=task failer failed: boom"),
        "{log}"
    );
    assert!(
        failures[1].contains("error=task exploder panicked: kaboom"),
        "{log}"
    );
    // Nothing for the tasks that succeeded, and no WARN: the group was
    // joined.
    assert!(!log.contains("quiet"), "{log}");
    assert!(!log.contains("WARN"), "{log}");

    // Dropping a group with tasks not joined: one WARN event.
    captured.0.lock().unwrap().clear();
    let mut group: Group<(), &'static str> = Group::new();
    group.spawn(std::future::pending()).await;
    group.spawn(async { Ok(()) }).await;
    drop(group);

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("WARN"), "{log}");
    assert!(log.contains("tasks=2"), "{log}");
    assert!(
        log.contains("task group dropped before its tasks were joined"),
        "{log}"
    );
    assert_eq!(log.lines().count(), 1, "{log}");
}
