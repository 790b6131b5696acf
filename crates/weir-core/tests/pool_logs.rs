//! Pool logs: one event per failed or panicked job, `Display` text only (no
//! `Debug`, no backtrace), `DEBUG` when the caller receives the failure and
//! `WARN` when nobody can; nothing on a successful job's path; the events
//! sit in the worker's span with its `pool` and `worker` fields.
#![allow(clippy::unwrap_used)]

use std::backtrace::Backtrace;
use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use weir_core::pool::Pool;

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn lines(&self) -> Vec<String> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

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

fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let out = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(out.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .finish();
    (out, tracing::subscriber::set_default(subscriber))
}

/// An error whose `Debug` carries a backtrace, as an `anyhow::Error` does
/// under `RUST_BACKTRACE=1` (forced here, so the test does not depend on
/// the environment).
struct Traced {
    backtrace: Backtrace,
}

impl fmt::Display for Traced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("disk full")
    }
}

impl fmt::Debug for Traced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Traced {{ DEBUG-ONLY, backtrace: {} }}", self.backtrace)
    }
}

fn pool() -> Pool<u32, u32, Traced> {
    Pool::builder()
        .workers(1)
        .queue(4)
        .results(64)
        .name("logs")
        .build(|n: u32| async move {
            tokio::task::yield_now().await;
            if n == 0 {
                Err(Traced {
                    backtrace: Backtrace::force_capture(),
                })
            } else {
                Ok(n)
            }
        })
        .unwrap()
}

fn events<'a>(lines: &'a [String], what: &str) -> Vec<&'a String> {
    lines.iter().filter(|l| l.contains(what)).collect()
}

#[tokio::test]
async fn a_failed_ticket_job_logs_one_debug_event_with_its_display_text() {
    let (out, _guard) = capture();
    let pool = pool();
    let err = pool.submit(0).await.unwrap().await.unwrap_err();
    assert_eq!(err.to_string(), "disk full");
    let lines = out.lines();
    let failed = events(&lines, "job failed");
    assert_eq!(failed.len(), 1, "one event per failure: {lines:#?}");
    let line = failed[0];
    assert!(line.starts_with("DEBUG"), "{line}");
    assert!(line.contains("error=disk full"), "{line}");
    assert!(
        line.contains("pool=logs") && line.contains("worker=0"),
        "{line}"
    );
    let all = lines.join("\n");
    assert!(!all.contains("DEBUG-ONLY"), "Debug text in the logs: {all}");
    assert!(!all.contains("backtrace"), "a backtrace in the logs: {all}");
    pool.join().await.unwrap();
}

#[tokio::test]
async fn an_anyhow_error_is_logged_with_its_chain_and_no_backtrace() {
    let (out, _guard) = capture();
    let pool: Pool<u32, u32> = Pool::builder()
        .workers(1)
        .build(|n: u32| async move {
            Err(anyhow::anyhow!("connection reset").context(format!("fetching {n}")))
        })
        .unwrap();
    let err = pool.submit(3).await.unwrap().await.unwrap_err();
    assert_eq!(err.to_string(), "fetching 3");
    assert_eq!(format!("{err:#}"), "fetching 3: connection reset");
    let lines = out.lines();
    let failed = events(&lines, "job failed");
    assert_eq!(failed.len(), 1, "{lines:#?}");
    assert!(
        failed[0].contains("error=fetching 3: connection reset"),
        "{}",
        failed[0]
    );
    let all = lines.join("\n");
    assert!(!all.contains("Caused by"), "Debug text in the logs: {all}");
    pool.join().await.unwrap();
}

#[tokio::test]
async fn a_detached_failure_is_warn_when_nobody_holds_the_results_stream() {
    let (out, _guard) = capture();
    let pool = pool();
    // Nobody took the stream: nobody can receive this failure.
    pool.submit_detached(0).await.unwrap();
    pool.submit(1).await.unwrap().await.unwrap();
    let lines = out.lines();
    let failed = events(&lines, "job failed");
    assert_eq!(failed.len(), 1, "{lines:#?}");
    assert!(failed[0].starts_with(" WARN"), "{}", failed[0]);
    assert!(failed[0].contains("error=disk full"), "{}", failed[0]);

    // Taken and held: the reader receives it, so DEBUG.
    out.clear();
    let mut results = pool.results().unwrap();
    pool.submit_detached(0).await.unwrap();
    let (_, r) = results.recv().await.unwrap();
    assert!(r.unwrap_err().is_failed());
    let lines = out.lines();
    let failed = events(&lines, "job failed");
    assert_eq!(failed.len(), 1, "{lines:#?}");
    assert!(failed[0].starts_with("DEBUG"), "{}", failed[0]);

    // Taken, then dropped: nobody again.
    out.clear();
    drop(results);
    pool.submit_detached(0).await.unwrap();
    pool.submit(1).await.unwrap().await.unwrap();
    let lines = out.lines();
    let failed = events(&lines, "job failed");
    assert_eq!(failed.len(), 1, "{lines:#?}");
    assert!(failed[0].starts_with(" WARN"), "{}", failed[0]);
    pool.join().await.unwrap();
}

#[tokio::test]
async fn successful_jobs_log_nothing() {
    let (out, _guard) = capture();
    let pool = pool();
    let mut results = pool.results().unwrap();
    for n in 1..=20 {
        pool.submit(n).await.unwrap().await.unwrap();
        pool.submit_detached(n).await.unwrap();
    }
    for _ in 1..=20 {
        results.recv().await.unwrap().1.unwrap();
    }
    assert_eq!(out.lines(), Vec::<String>::new());
    pool.join().await.unwrap();
}
