//! Each task runs in a `task` span with its index and name; failures and
//! panics are events inside it. Alone in its own test binary: tracing's
//! per-callsite interest cache is global, so a thread-local subscriber is
//! only reliable when no other test thread touches the same callsites.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use weir_group::Group;

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
async fn each_task_runs_in_a_span_with_its_index_and_name() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let mut group: Group<(), &'static str> = Group::new();
    group
        .spawn(async {
            tracing::info!("hello from inside");
            Ok(())
        })
        .await;
    group.spawn_named("failer", async { Err("boom") }).await;
    group
        .spawn_named("exploder", async { panic!("kaboom") })
        .await;
    let errors = group.wait_joined().await.unwrap_err();
    assert_eq!(errors.len(), 2);

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("task{index=0}: "), "{log}");
    assert!(log.contains("hello from inside"), "{log}");
    assert!(
        log.contains(r#"task{index=1 name="failer"}"#) && log.contains("task failed"),
        "{log}"
    );
    assert!(
        log.contains(r#"task{index=2 name="exploder"}"#) && log.contains("task panicked"),
        "{log}"
    );
    assert!(log.contains("kaboom"), "{log}");
}
