//! Scrapes the `metrics_prometheus` example over HTTP after its known run
//! and checks the names and values of weir's series (docs/observability.md).
//!
//! The example is started with `--serve` (cargo test builds it), prints its
//! address once the run is done, and serves until its standard input
//! closes; this test reads the address, sends `GET /metrics` on loopback,
//! then closes the example's stdin and checks that it exited cleanly.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn example() -> PathBuf {
    // target/<profile>/deps/metrics_scrape-<hash> -> target/<profile>/examples
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("metrics_prometheus")
}

/// `GET /metrics` on `addr` (host:port), the body.
fn scrape(addr: &str) -> String {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// The samples of a Prometheus text page: `name{k="v",...}` with the labels
/// sorted, to the value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let mut labels: Vec<&str> = rest.trim_end_matches('}').split(',').collect();
                labels.sort_unstable();
                (name, labels.join(","))
            }
            None => (series, String::new()),
        };
        out.insert(format!("{name}{{{labels}}}"), value.parse().unwrap());
    }
    out
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    labels.sort_unstable();
    format!("{name}{{{}}}", labels.join(","))
}

#[test]
fn the_example_serves_the_known_runs_metrics() {
    let path = example();
    assert!(path.exists(), "{} not built", path.display());
    let mut child = Command::new(&path)
        .arg("--serve")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read the example's lines on a thread, so a hung example fails the
    // test after a while instead of hanging it.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut printed = Vec::new();
    let addr = loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!("no `ready:` line; it printed:\n{}", printed.join("\n"));
        };
        if let Some(url) = line.strip_prefix("ready: http://") {
            break url.split('/').next().unwrap().to_owned();
        }
        printed.push(line);
    };
    assert!(addr.starts_with("127.0.0.1:"), "loopback only: {addr}");
    let text = scrape(&addr);

    // Stop the example: close its stdin; it shuts down and exits 0.
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");

    let samples = samples(&text);
    let get = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let k = key(name, labels);
        *samples
            .get(&k)
            .unwrap_or_else(|| panic!("{k} not scraped; got:\n{text}"))
    };

    let pool = |outcome| {
        get(
            "weir_pool_jobs_total",
            &[("pool", "thumbnails"), ("outcome", outcome)],
        )
    };
    assert_eq!(pool("completed"), 17.0);
    assert_eq!(pool("failed"), 3.0);
    assert_eq!(pool("panicked"), 0.0);
    assert_eq!(pool("cancelled"), 0.0);
    assert_eq!(pool("rejected"), 0.0);
    for gauge in [
        "weir_pool_jobs_queued",
        "weir_pool_jobs_running",
        "weir_pool_workers",
    ] {
        assert_eq!(get(gauge, &[("pool", "thumbnails")]), 0.0, "{gauge}");
    }
    assert_eq!(
        get(
            "weir_pool_job_duration_seconds_count",
            &[("pool", "thumbnails")]
        ),
        20.0
    );
    // Each job sleeps 2 ms: none is in the 1 ms bucket, all in the 5 ms one
    // (a loaded machine may stretch a sleep, never shorten it).
    let bucket = |le| {
        get(
            "weir_pool_job_duration_seconds_bucket",
            &[("pool", "thumbnails"), ("le", le)],
        )
    };
    assert_eq!(bucket("0.001"), 0.0);
    assert_eq!(bucket("+Inf"), 20.0);

    let stage = |name, stage| get(name, &[("pipeline", "orders"), ("stage", stage)]);
    assert_eq!(stage("weir_stage_items_in_total", "source"), 1000.0);
    assert_eq!(stage("weir_stage_items_out_total", "source"), 1000.0);
    assert_eq!(stage("weir_stage_items_in_total", "parse"), 1000.0);
    assert_eq!(stage("weir_stage_items_out_total", "parse"), 990.0);
    assert_eq!(stage("weir_stage_items_failed_total", "parse"), 10.0);
    assert_eq!(stage("weir_stage_items_in_total", "large"), 990.0);
    assert_eq!(stage("weir_stage_items_filtered_total", "large"), 490.0);
    assert_eq!(stage("weir_stage_items_out_total", "large"), 500.0);
    assert_eq!(stage("weir_stage_items_cancelled_total", "large"), 0.0);
    assert_eq!(stage("weir_stage_queue_depth", "large"), 0.0);
    assert_eq!(stage("weir_stage_items_in_flight", "parse"), 0.0);
    assert_eq!(
        stage("weir_stage_item_duration_seconds_count", "parse"),
        1000.0
    );
    assert_eq!(
        stage("weir_stage_item_duration_seconds_count", "large"),
        990.0
    );

    assert_eq!(
        get("weir_limiter_allowed_total", &[("limiter", "api")]),
        5.0
    );
    assert_eq!(get("weir_limiter_denied_total", &[("limiter", "api")]), 3.0);

    assert_eq!(
        get("weir_group_tasks_spawned_total", &[("group", "fetch")]),
        4.0
    );
    let group = |outcome| {
        get(
            "weir_group_tasks_total",
            &[("group", "fetch"), ("outcome", outcome)],
        )
    };
    assert_eq!(group("succeeded"), 3.0);
    assert_eq!(group("failed"), 1.0);
    assert_eq!(get("weir_group_tasks_live", &[("group", "fetch")]), 0.0);

    // Every weir series is one of the documented names.
    let documented = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/observability.md"),
    )
    .unwrap();
    for name in samples.keys().filter_map(|k| k.split('{').next()) {
        if !name.starts_with("weir_") {
            continue;
        }
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| b.ends_with("_seconds"))
            .unwrap_or(name);
        assert!(
            documented.contains(&format!("`{base}`")),
            "{base} is not in docs/observability.md"
        );
    }
}
