//! What a consumer's tasks, its handle and its deliveries share, and the
//! calls to Redis they make through it.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_context::Context;

use super::delivery::{AckHandle, AckRequest};
use super::report::{Counters, Ending};
use super::{Keys, QueueError, QueueReport, scripts};
use crate::error::{RedisFailure, bounded};
use crate::health::Health;
use crate::script::LuaScript;

/// The checked settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) batch: usize,
    pub(crate) prefetch: usize,
    pub(crate) block: Duration,
    pub(crate) max_deliveries: u32,
    pub(crate) visibility: Duration,
    pub(crate) dead_max_len: u64,
    pub(crate) timeout: Duration,
}

#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) fail: LuaScript,
    pub(crate) release: LuaScript,
    pub(crate) reclaim: LuaScript,
    pub(crate) heartbeat: LuaScript,
    pub(crate) leave: LuaScript,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            fail: LuaScript::new(scripts::FAIL),
            release: LuaScript::new(scripts::RELEASE),
            reclaim: LuaScript::new(scripts::RECLAIM),
            heartbeat: LuaScript::new(scripts::HEARTBEAT),
            leave: LuaScript::new(scripts::LEAVE),
        }
    }
}

/// What the consumer's tasks, its handle and its deliveries share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) queue: String,
    pub(crate) group: String,
    pub(crate) consumer: String,
    pub(crate) keys: Keys,
    pub(crate) conn: ConnectionManager,
    pub(crate) scripts: Scripts,
    pub(crate) settings: Settings,
    pub(crate) counters: Counters,
    pub(crate) health: Health,
    /// One permit per delivery that may be read and not yet ended.
    pub(crate) permits: Semaphore,
    /// Ids read and not yet ended: renewed by the heartbeat.
    pub(crate) held: Mutex<HashSet<Arc<str>>>,
    /// Rung when the last delivery in flight ends.
    pub(crate) idle: Notify,
    /// The run's context.
    pub(crate) ctx: Context,
    /// Cancelled by `close` (and by the context): read nothing more.
    pub(crate) closing: CancellationToken,
    pub(crate) acks: mpsc::Sender<AckRequest>,
    pub(crate) started: Instant,
    pub(crate) ended_at: Mutex<Option<Instant>>,
}

impl Shared {
    /// A delivery was read.
    pub(crate) fn held(&self, id: &Arc<str>, reclaimed: bool) {
        crate::lock(&self.held).insert(Arc::clone(id));
        self.counters.read(reclaimed);
    }

    /// A delivery ended: counted, no longer renewed, its room freed.
    pub(crate) fn ended(&self, id: &str, how: Ending) {
        crate::lock(&self.held).remove(id);
        if self.counters.ended(how) == 0 {
            self.idle.notify_waiters();
        }
        self.permits.add_permits(1);
    }

    /// Deliveries ended together (a batch of acknowledgements): one lock,
    /// one update of each counter.
    pub(crate) fn ended_many(&self, ids: &[&str], how: Ending) {
        if ids.is_empty() {
            return;
        }
        let mut held = crate::lock(&self.held);
        for id in ids {
            held.remove(*id);
        }
        drop(held);
        if self.counters.ended_many(how, ids.len() as u64) == 0 {
            self.idle.notify_waiters();
        }
        self.permits.add_permits(ids.len());
    }

    /// The error for work the consumer's cancellation ended.
    pub(crate) fn stopped(&self) -> QueueError {
        QueueError::Stopped(self.ctx.stopped().into_cause())
    }

    /// Deliveries read and not yet ended.
    pub(crate) fn in_flight(&self) -> u64 {
        self.counters.in_flight.load(Ordering::Acquire)
    }

    /// Runs one Redis call under the timeout, counted and logged once per
    /// change of state; no retry.
    pub(crate) async fn call<V, F>(&self, timeout: Duration, call: F) -> Result<V, RedisFailure>
    where
        F: Future<Output = redis::RedisResult<V>>,
    {
        let result = bounded(timeout, call).await;
        match &result {
            Ok(_) => {
                self.health.succeeded();
            }
            Err(e) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                self.health.failed(e);
            }
        }
        result
    }

    /// Runs a call that records an outcome until it succeeds, the
    /// visibility timeout passes (the entry is then likely reclaimed:
    /// trying on is useless) or the consumer is cancelled.
    pub(crate) async fn persist<V, F, Fut>(&self, mut call: F) -> Result<V, QueueError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = redis::RedisResult<V>>,
    {
        let give_up = Instant::now() + self.settings.visibility;
        let mut pause = Duration::from_millis(20);
        loop {
            if self.ctx.is_cancelled() {
                return Err(self.stopped());
            }
            match self.call(self.settings.timeout, call()).await {
                Ok(v) => return Ok(v),
                Err(e) if Instant::now() + pause >= give_up => return Err(QueueError::Redis(e)),
                Err(_) => {
                    if self.ctx.run(tokio::time::sleep(pause)).await.is_err() {
                        return Err(self.stopped());
                    }
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// The failure script for one delivery: 1 retried, 2 dead-lettered, 0
    /// no longer this consumer's.
    pub(crate) async fn record_failure(
        &self,
        h: &AckHandle,
        error: &str,
        dead: bool,
    ) -> Result<i64, QueueError> {
        let cmd = self.scripts.fail.command(
            &[&self.keys.stream, &self.keys.dead],
            (
                &self.group,
                &self.consumer,
                &*h.id,
                &h.payload,
                h.attempt(),
                error,
                u8::from(dead),
                self.settings.dead_max_len,
            ),
        );
        self.persist(|| self.scripts.fail.run(&self.conn, &cmd))
            .await
    }

    /// Gives deliveries back unstarted, in one script call.
    pub(crate) async fn release(&self, mut handles: Vec<AckHandle>) -> Result<(), QueueError> {
        if handles.is_empty() {
            return Ok(());
        }
        let mut args: Vec<String> = vec![self.group.clone(), self.consumer.clone()];
        for h in &handles {
            args.push(h.id.to_string());
            args.push(h.payload.clone());
            args.push(h.attempts.to_string());
        }
        let cmd = self.scripts.release.command(&[&self.keys.stream], &args);
        let released: Result<i64, _> = self
            .persist(|| self.scripts.release.run(&self.conn, &cmd))
            .await;
        released.map(|_| {
            for h in &mut handles {
                h.end(Ending::Released);
            }
        })
        // On an error the handles drop: abandoned, reclaimed later.
    }

    /// The report now.
    pub(crate) fn report(&self) -> QueueReport {
        let end = (*crate::lock(&self.ended_at)).unwrap_or_else(Instant::now);
        self.counters.report(
            &self.queue,
            &self.consumer,
            self.health.outages(),
            end.duration_since(self.started),
        )
    }
}
