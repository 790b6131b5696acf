//! Runs every example binary (cargo test builds them) and checks that it
//! exits 0 within its time limit and prints the line that shows it worked.
//! An example in `examples/` that is not listed here fails the test, so a
//! new example cannot go unchecked.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// (example, a line fragment its output must contain)
const EXAMPLES: &[(&str, &str)] = &[
    (
        "tour",
        "done: every pipeline above ended with no task left running.",
    ),
    ("generator", "it stopped, it did not leak"),
    ("pipeline", "every item accounted for: true"),
    (
        "worker_pool",
        "submitted 30 = completed 25 + failed 1 + panicked 1 + cancelled 3",
    ),
    ("pooling", "parent: gathered 12 results"),
    ("fan_in", "no task left running"),
    ("fan_in_sequence", "the sequence is restored"),
    ("fan_out", "the others saw every event, in order"),
    ("fan_out_semaphore", "the rest were aborted"),
    ("stop_tap", "each round waits for its slowest request"),
    ("select_timeout", "timed out after 300ms"),
    ("quit", "tasks still alive: 0"),
    ("drop", "nothing lost silently"),
    ("cancellation", "tasks alive after walking away: 0"),
    (
        "context",
        "Cause::DeadlineExceeded: context deadline exceeded",
    ),
    (
        "errgroup",
        "failed  task https://flaky.example/ failed: HTTP 503",
    ),
    ("rate_limit", "item d at   750 ms"),
    (
        "rate_limit_keyed",
        "evicted after 1 s idle: 10000, 0 buckets left",
    ),
    ("semaphore", "0 tasks alive afterwards"),
    (
        "weighted_semaphore",
        "done: every permit is back: 100 of 100 free",
    ),
    ("singleflight", "50 requests, 1 database query"),
    (
        "adaptive_pool",
        "done: the adaptive limit followed the capacity down",
    ),
    (
        "retry",
        "done: the budget kept the extra load within its 10%",
    ),
    ("graceful_shutdown", "tasks still alive: 0"),
    ("leak_check", "done: nothing left running"),
    ("producers_consumers", "12 items, each handled once"),
    ("error_handling", "2 tasks failed"),
    (
        "distributed_rate_limit",
        "total within the shared limit: true",
    ),
    ("distributed_queue", "all 1000 jobs done, 0 dead letters"),
    (
        "http_service",
        "done: drained the request in flight, refused new connections",
    ),
    (
        "metrics_prometheus",
        r#"weir_pool_jobs_total{pool="thumbnails",outcome="completed"} 17"#,
    ),
    (
        "progress",
        "done: 400 items through 3 stages, every item accounted for: true",
    ),
];

/// Examples built only with a feature of this package, and that feature:
/// without it they are not run (`cargo xtask test` turns it on).
const NEED_A_FEATURE: &[(&str, bool)] = &[("metrics_prometheus", cfg!(feature = "metrics"))];

/// Examples that need more than a couple of seconds on a busy machine.
const LIMIT: Duration = Duration::from_secs(60);

fn examples_dir() -> PathBuf {
    // target/<profile>/deps/examples-<hash> -> target/<profile>/examples
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples")
}

fn listed_in_the_tree() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".rs")?.to_owned();
            // Local scratch files (not committed) start with "zz_".
            (!stem.starts_with("zz_")).then_some(stem)
        })
        .collect();
    names.sort();
    names
}

#[test]
fn every_example_is_checked_here() {
    let mut listed: Vec<String> = EXAMPLES.iter().map(|(n, _)| (*n).to_owned()).collect();
    listed.sort();
    for name in listed_in_the_tree() {
        assert!(
            listed.contains(&name),
            "examples/{name}.rs is not in tests/examples.rs: add it with the line it must print"
        );
    }
}

#[test]
fn the_readme_names_every_example() {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    for name in listed_in_the_tree() {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README.md does not name the example `{name}`"
        );
    }
}

#[test]
fn every_example_runs_and_prints_its_key_line() {
    let dir = examples_dir();
    let mut failures = Vec::new();
    for (name, expected) in EXAMPLES {
        if NEED_A_FEATURE.contains(&(*name, false)) {
            continue;
        }
        let path = dir.join(name);
        if !path.exists() {
            failures.push(format!("{name}: binary not found at {}", path.display()));
            continue;
        }
        let start = Instant::now();
        let mut child = Command::new(&path)
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if start.elapsed() > LIMIT {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        match status {
            None => failures.push(format!("{name}: still running after {LIMIT:?}")),
            Some(s) if !s.success() => failures.push(format!(
                "{name}: exited with {s}\nstdout:\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            )),
            Some(_) if !stdout.contains(expected) => failures.push(format!(
                "{name}: output lacks {expected:?}\nstdout:\n{stdout}"
            )),
            Some(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The `progress` example stops cleanly on ctrl-c: a SIGINT once it runs
/// cancels the pipeline, and it exits 0 with a balanced report.
#[cfg(unix)]
#[test]
fn progress_stops_cleanly_on_ctrl_c() {
    use std::io::{BufRead, BufReader, Read};

    let path = examples_dir().join("progress");
    assert!(path.exists(), "{} not built", path.display());
    // Enough items to run for minutes: only the signal ends it in time.
    let mut child = Command::new(&path)
        .args(["--items", "1000000"])
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("running 1000000 items"), "{first}");
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("progress still running {LIMIT:?} after ctrl-c");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        status.success(),
        "{status}\nstdout:\n{rest}\nstderr:\n{stderr}"
    );
    assert!(
        rest.contains("stopped by ctrl-c: ") && rest.contains("every item accounted for: true"),
        "{rest}"
    );
}
