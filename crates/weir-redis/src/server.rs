//! [`LocalRedisServer`]: a private `redis-server` on a free loopback port,
//! for tests, examples and benches.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// The command that installs the server on Debian and Ubuntu.
pub const INSTALL_HINT: &str = "apt-get install -y redis-server";

/// How long a fresh server may take to answer `PING` (an append-only file
/// being replayed included).
const READY_WITHIN: Duration = Duration::from_secs(20);

/// Why a [`LocalRedisServer`] could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalServerError {
    /// There is no `redis-server` on the `PATH`.
    #[error(
        "redis-server is not installed: install it with `{INSTALL_HINT}` (`cargo xtask test` does)"
    )]
    NotInstalled,
    /// The server could not be started or did not answer in time.
    #[error("redis-server did not start: {0}")]
    Start(String),
}

/// Settings of a [`LocalRedisServer`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LocalServerOptions {
    /// `appendonly yes` with `appendfsync always`: every write the server
    /// acknowledged survives a `SIGKILL` and a restart.
    pub append_only: bool,
}

impl LocalServerOptions {
    /// The default settings: no persistence at all (no RDB, no AOF).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`append_only`](Self::append_only).
    pub fn append_only(mut self, on: bool) -> Self {
        self.append_only = on;
        self
    }
}

/// A `redis-server` of its own, listening on `127.0.0.1` on a free port,
/// with its files in a temporary directory. Killed (and its directory
/// removed) when dropped.
///
/// It is what weir's tests, examples, doc pages and benches use when no
/// `REDIS_URL` is given: never a shared system instance. It needs the
/// `redis-server` binary on the `PATH` ([`INSTALL_HINT`]); without it,
/// [`start`](Self::start) fails with [`LocalServerError::NotInstalled`],
/// whose message names the install command.
///
/// The server runs with `--enable-debug-command local` so that tests can
/// stall it (`DEBUG SLEEP`) from loopback.
///
/// # Examples
///
/// ```
/// use weir_redis::LocalRedisServer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = LocalRedisServer::start().await?;
/// let client = redis::Client::open(server.url())?;
/// let mut conn = client.get_multiplexed_async_connection().await?;
/// let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
/// assert_eq!(pong, "PONG");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct LocalRedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    options: LocalServerOptions,
}

impl LocalRedisServer {
    /// Starts a server with the default options and waits until it answers.
    ///
    /// # Errors
    ///
    /// [`LocalServerError::NotInstalled`] without a `redis-server` binary;
    /// [`LocalServerError::Start`] when it exits or does not answer within
    /// 20 seconds.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future kills the server it was starting.
    pub async fn start() -> Result<Self, LocalServerError> {
        Self::start_with(LocalServerOptions::default()).await
    }

    /// Starts a server with `options`; see [`start`](Self::start).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    ///
    /// # Cancel safety
    ///
    /// As [`start`](Self::start).
    pub async fn start_with(options: LocalServerOptions) -> Result<Self, LocalServerError> {
        let mut last = None;
        // A free port can be taken between the probe and the server's bind:
        // try a few.
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("weir-redis-")
                .tempdir()
                .map_err(|e| LocalServerError::Start(format!("temporary directory: {e}")))?;
            let mut server = Self {
                child: None,
                port: free_port()?,
                dir,
                options: options.clone(),
            };
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                Err(LocalServerError::NotInstalled) => return Err(LocalServerError::NotInstalled),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| LocalServerError::Start("no free port".into())))
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its working directory (append-only files, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Kills the server with `SIGKILL` (no shutdown, no save: a crash) and
    /// waits for it to exit. Its files stay for [`restart`](Self::restart).
    ///
    /// # Cancel safety
    ///
    /// The kill is sent before the first `.await`; dropping the future only
    /// skips waiting for the exit.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Starts the server again on the same port and directory (so with
    /// its append-only file, if it has one) and waits until it answers.
    /// Kills it first if it runs.
    ///
    /// # Errors
    ///
    /// [`LocalServerError::Start`] when it does not answer in time (the
    /// port may have been taken meanwhile).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future kills the server it was starting.
    pub async fn restart(&mut self) -> Result<(), LocalServerError> {
        self.kill().await;
        self.spawn_and_wait().await
    }

    async fn spawn_and_wait(&mut self) -> Result<(), LocalServerError> {
        let child = self.command().spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LocalServerError::NotInstalled,
            _ => LocalServerError::Start(format!("spawn redis-server: {e}")),
        })?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        let client =
            redis::Client::open(self.url()).map_err(|e| LocalServerError::Start(e.to_string()))?;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(LocalServerError::Start(format!(
                    "exited with {status}: {}",
                    self.log_tail()
                )));
            }
            if ping(&client).await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                self.stop_now();
                return Err(LocalServerError::Start(format!(
                    "no answer on port {} within {READY_WITHIN:?}: {}",
                    self.port,
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn command(&self) -> Command {
        let dir = self.dir.path();
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--protected-mode", "yes"])
            .args(["--daemonize", "no", "--save", ""])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(log_path(dir))
            .args(["--loglevel", "warning", "--enable-debug-command", "local"]);
        if self.options.append_only {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(log_path(self.dir.path())).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(3).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    fn stop_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            // Reaped by tokio in the background (kill_on_drop).
        }
    }
}

impl Drop for LocalRedisServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("redis.log")
}

fn free_port() -> Result<u16, LocalServerError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| LocalServerError::Start(format!("no free loopback port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| LocalServerError::Start(format!("no free loopback port: {e}")))
}

async fn ping(client: &redis::Client) -> bool {
    let attempt = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), attempt).await,
        Ok(Ok(_))
    )
}
