//! What weir logs when things fail: one event per failure, from the
//! construct that owns it, formatted with `Display` — never `Debug`, which
//! for an `anyhow::Error` under `RUST_BACKTRACE=1` prints a backtrace.
//!
//! The checks run in a child process of this test binary started with
//! `RUST_BACKTRACE=1` (setting the variable from inside the test would need
//! `unsafe`), and `anyhow` captures a backtrace for every error there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::Command;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Runs `f` on a current-thread runtime with every event (TRACE and up)
/// captured, and returns the log lines.
fn capture(f: impl std::future::Future<Output = ()>) -> Vec<String> {
    let out = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(out.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f);
    });
    out.text().lines().map(str::to_owned).collect()
}

fn failure_lines<'a>(lines: &'a [String], needle: &str) -> Vec<&'a String> {
    lines.iter().filter(|l| l.contains(needle)).collect()
}

/// What no log line may contain: a backtrace, or an error's `Debug` form.
fn assert_no_debug_text(lines: &[String]) {
    for line in lines {
        assert!(
            !line.contains("backtrace") && !line.contains("Backtrace"),
            "a log line carries a backtrace: {line}"
        );
        assert!(
            !line.contains("Error {") && !line.contains("context:"),
            "a log line carries an error's Debug form: {line}"
        );
    }
}

/// A failing pipeline under each policy: one event per failed item.
async fn failing_pipeline() {
    // Continue, error stream taken: one DEBUG event per failed item.
    let (out, mut handle) = weir::Pipeline::from_iter(0..10u32)
        .error_policy(weir::ErrorPolicy::Continue)
        .map("parse", 2, |x| async move {
            if x % 3 == 0 {
                anyhow::bail!("pipeline item {x} is bad");
            }
            Ok(x)
        })
        .into_stream()
        .unwrap();
    let errors = handle.errors().unwrap();
    let (_items, errors) = tokio::join!(
        futures::StreamExt::collect::<Vec<_>>(out),
        futures::StreamExt::collect::<Vec<_>>(errors)
    );
    assert_eq!(errors.len(), 4);
    handle.join().await.unwrap();
}

#[test]
#[ignore = "run by logging_is_display_once_per_failure in a child process"]
fn child_pipeline() {
    let lines = capture(failing_pipeline());
    for x in [0, 3, 6, 9] {
        let hits = failure_lines(&lines, &format!("pipeline item {x} is bad"));
        assert_eq!(hits.len(), 1, "item {x}: {hits:#?}\nall:\n{lines:#?}");
        assert!(hits[0].contains("DEBUG"), "{}", hits[0]);
    }
    assert_no_debug_text(&lines);
    // Nothing is logged for the six items that succeeded.
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("WARN") && !l.contains("ERROR")),
        "{lines:#?}"
    );
}

/// Runs the ignored test `name` in a child process with `RUST_BACKTRACE=1`.
fn run_child(name: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--exact", name, "--ignored", "--nocapture"])
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 passed"), "{name} did not run:\n{stdout}");
}

#[test]
fn logging_is_display_once_per_failure() {
    run_child("child_pipeline");
}
