//! Shared by the integration tests: a private redis-server per test, raw
//! commands, tracing, and re-running this test binary as another process
//! (a replica, a consumer).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use weir_redis::{LocalRedisServer, LocalServerOptions};

/// A server of the test's own on a free loopback port; a missing
/// redis-server fails the test with the one line that says how to install
/// it (never a silent skip).
pub async fn server() -> LocalRedisServer {
    server_with(LocalServerOptions::new()).await
}

pub async fn server_with(options: LocalServerOptions) -> LocalRedisServer {
    match LocalRedisServer::start_with(options).await {
        Ok(server) => server,
        Err(e) => panic!("{e}"),
    }
}

/// A plain connection for the test's own commands.
pub async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    // No response timeout: `DEBUG SLEEP` answers late on purpose.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
}

pub fn client(url: &str) -> redis::Client {
    redis::Client::open(url).unwrap()
}

pub fn trace_init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// The environment variable that makes this test binary act as a child
/// process: its value names the role.
pub const ROLE: &str = "WEIR_REDIS_TEST_ROLE";

/// Starts this test binary again, running only the ignored test `entry`
/// with `env` set: a separate process, not a task.
pub fn spawn_self(entry: &str, role: &str, env: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        entry,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(ROLE, role)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// The line a child prints with its result, and how the parent finds it.
pub const RESULT: &str = "WEIR-RESULT ";

/// Waits (bounded) for a child to exit and returns its result line.
pub async fn result_of(child: Child, within: Duration) -> String {
    let out = tokio::time::timeout(within, child.wait_with_output())
        .await
        .expect("child process did not finish in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed ({}): {stdout}",
        out.status
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT))
        .unwrap_or_else(|| panic!("no result line in: {stdout}"))
        .to_owned()
}

/// Polls `check` every 20 ms until it holds, at most `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
