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

/// A pool whose ticket jobs fail, and a detached job whose failure nobody
/// takes: one event each, DEBUG for the ticket, WARN for the orphan.
async fn failing_pool() {
    let pool = weir::Pool::builder()
        .workers(2)
        .name("images")
        .build(|x: u32| async move {
            if x.is_multiple_of(2) {
                anyhow::bail!("pool job {x} is bad");
            }
            Ok(x)
        })
        .unwrap();
    for x in 0..4 {
        let ticket = pool.submit(x).await.unwrap();
        let _ = ticket.await;
    }
    // Nobody holds the results stream: the failure can only be logged.
    pool.submit_detached(10).await.unwrap();
    pool.join().await.unwrap();
}

#[test]
#[ignore = "run by logging_is_display_once_per_failure in a child process"]
fn child_pool() {
    let lines = capture(failing_pool());
    for x in [0, 2] {
        let hits = failure_lines(&lines, &format!("pool job {x} is bad"));
        assert_eq!(hits.len(), 1, "job {x}: {hits:#?}\nall:\n{lines:#?}");
        assert!(hits[0].contains("DEBUG"), "{}", hits[0]);
    }
    let orphan = failure_lines(&lines, "pool job 10 is bad");
    assert_eq!(orphan.len(), 1, "{lines:#?}");
    assert!(orphan[0].contains("WARN"), "{}", orphan[0]);
    assert_no_debug_text(&lines);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .count(),
        1,
        "only the orphan's failure is a warning: {lines:#?}"
    );
}

/// A fail-fast group with a failing and a panicking task, and a pipeline
/// under fail-fast: each failure is one event.
async fn failing_group() {
    let mut group: weir::group::Group<u32> = weir::group::Group::builder()
        .error_policy(weir::ErrorPolicy::Continue)
        .build()
        .unwrap();
    group
        .spawn_named("fetch-a", async { anyhow::bail!("group task a is bad") })
        .await;
    group.spawn_named("fetch-b", async { Ok(1) }).await;
    group
        .spawn_named("fetch-c", async { anyhow::bail!("group task c is bad") })
        .await;
    let err = group.join().await.unwrap_err();
    assert_eq!(err.error().len(), 2);
    let err = weir::Pipeline::from_iter(0..100u32)
        .map("parse", 2, |x| async move {
            if x == 7 {
                anyhow::bail!("fail-fast item {x} is bad");
            }
            Ok(x)
        })
        .run()
        .await
        .unwrap_err();
    assert_eq!(err.error().stage(), Some("parse"));
}

#[test]
#[ignore = "run by logging_is_display_once_per_failure in a child process"]
fn child_group() {
    let lines = capture(failing_group());
    for needle in [
        "group task a is bad",
        "group task c is bad",
        "fail-fast item 7 is bad",
    ] {
        let hits = failure_lines(&lines, needle);
        assert_eq!(hits.len(), 1, "{needle}: {hits:#?}\nall:\n{lines:#?}");
        assert!(hits[0].contains("DEBUG"), "{}", hits[0]);
    }
    assert_no_debug_text(&lines);
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
    run_child("child_pool");
    run_child("child_group");
}
