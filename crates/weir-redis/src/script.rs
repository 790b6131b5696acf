//! [`LuaScript`]: a script loaded once and run by its hash (`EVALSHA`),
//! loaded again when the server answers `NOSCRIPT` (after a restart or a
//! `SCRIPT FLUSH`).

use std::sync::atomic::{AtomicU64, Ordering};

use redis::aio::ConnectionManager;
use redis::{ErrorKind, FromRedisValue, RedisResult, ServerErrorKind, ToRedisArgs};

/// One Lua script and its SHA1.
#[derive(Debug)]
pub(crate) struct LuaScript {
    code: &'static str,
    hash: String,
    /// `SCRIPT LOAD`s sent so far (the first use, and after each `NOSCRIPT`).
    loads: AtomicU64,
}

impl LuaScript {
    pub(crate) fn new(code: &'static str) -> Self {
        Self {
            code,
            hash: redis::Script::new(code).get_hash().to_owned(),
            loads: AtomicU64::new(0),
        }
    }

    pub(crate) fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// The `EVALSHA` command for these keys and arguments; send it with
    /// [`run`](Self::run).
    pub(crate) fn command<K: ToRedisArgs, A: ToRedisArgs>(
        &self,
        keys: &[K],
        args: A,
    ) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.hash).arg(keys.len()).arg(keys).arg(args);
        cmd
    }

    /// Sends `cmd` (made by [`command`](Self::command)); on `NOSCRIPT`
    /// loads the script and sends it once more.
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        conn: &ConnectionManager,
        cmd: &redis::Cmd,
    ) -> RedisResult<T> {
        let mut conn = conn.clone();
        match cmd.query_async(&mut conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.load(&mut conn).await?;
                cmd.query_async(&mut conn).await
            }
            other => other,
        }
    }

    async fn load(&self, conn: &mut ConnectionManager) -> RedisResult<()> {
        self.loads.fetch_add(1, Ordering::Relaxed);
        let _: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(self.code)
            .query_async(conn)
            .await?;
        Ok(())
    }
}
