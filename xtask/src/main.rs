//! Project tasks, run as `cargo xtask <task>` (an alias in
//! `.cargo/config.toml`).
//!
//! `cargo xtask test [ARGS]...` makes sure `redis-server` is installed —
//! the Redis tests start private servers of their own — installing it with
//! `apt-get install -y redis-server` (after an `apt-get update` if the first
//! try fails) when it is missing, then runs `cargo test --workspace
//! --features weir-cookbook/metrics [ARGS]...` (the feature builds the
//! `metrics_prometheus` example and its scrape test) and exits with its
//! status. Without `redis-server` and no way
//! to install it, the tests still run, and the Redis ones fail with a line
//! that names the install command.
//!
//! `cargo xtask bench-chart [--run]` draws docs/benchmarks.svg (weir, Go
//! and hand-written tokio per pattern) from docs/benchmarks-vs-go.txt;
//! `--run` first runs `benches/go/run.sh` for fresh figures (see
//! `chart.rs`).

mod chart;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

const INSTALL: [&str; 3] = ["install", "-y", "redis-server"];

/// The cookbook's features the tests need: `metrics` builds the
/// `metrics_prometheus` example and its scrape test.
const COOKBOOK_FEATURES: &str = "weir-cookbook/metrics";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("test") => test(args.collect()),
        Some("bench-chart") => {
            // The workspace root: xtask/ is one level below it.
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .map_or_else(|| PathBuf::from("."), PathBuf::from);
            match chart::bench_chart(&root, &args.collect::<Vec<_>>()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("xtask: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!(
                "usage: cargo xtask test [cargo test arguments]\n       cargo xtask bench-chart [--run]"
            );
            ExitCode::from(2)
        }
    }
}

fn test(extra: Vec<String>) -> ExitCode {
    ensure_redis_server();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["test", "--workspace", "--features", COOKBOOK_FEATURES])
        .args(extra)
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => ExitCode::from(u8::try_from(s.code().unwrap_or(1)).unwrap_or(1).max(1)),
        Err(e) => {
            eprintln!("xtask: cannot run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn redis_server_installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

fn apt_get(args: &[&str]) -> bool {
    Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_redis_server() {
    if redis_server_installed() {
        return;
    }
    eprintln!("xtask: redis-server is missing: apt-get install -y redis-server");
    if apt_get(&INSTALL) && redis_server_installed() {
        return;
    }
    eprintln!("xtask: the install failed: apt-get update, then again");
    if apt_get(&["update"]) && apt_get(&INSTALL) && redis_server_installed() {
        return;
    }
    eprintln!(
        "xtask: could not install redis-server (install it with `apt-get install -y redis-server` as root); \
         the Redis tests will fail"
    );
}
