//! [`QueueProducer`]: enqueues jobs, bounded.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionManager;
use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_context::{Cause, ConfigError, Context};

use super::wire;
use super::{Keys, check_name, check_timeout, scripts};
use crate::error::{RedisFailure, bounded};
use crate::health::Health;
use crate::script::LuaScript;

/// Jobs per script call in [`QueueProducer::enqueue_all`].
const CHUNK: usize = 256;

/// The longest pause between two looks at a full queue.
const MAX_FULL_PAUSE: Duration = Duration::from_millis(200);

/// Why a job was not enqueued.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EnqueueError {
    /// The queue holds `max_len` jobs not yet done
    /// ([`try_enqueue`](QueueProducer::try_enqueue) does not wait).
    #[error("queue full: {len} of {max_len} jobs not yet done")]
    Full {
        /// Jobs in the queue (waiting or in progress).
        len: u64,
        /// The bound.
        max_len: u64,
    },
    /// The job could not be serialised to JSON.
    #[error("cannot encode job: {0}")]
    Encode(Arc<serde_json::Error>),
    /// Redis did not answer in time; the job may or may not have been added
    /// if the call ran past its timeout.
    #[error("queue unavailable: {0}")]
    Unavailable(RedisFailure),
    /// The producer's context was cancelled (or passed its deadline) while
    /// it waited for room.
    #[error("enqueue stopped: {0}")]
    Stopped(Cause),
}

/// [`QueueProducer::enqueue_all`] stopped part way: the first `enqueued`
/// jobs are in the queue, the others are not.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{enqueued} job(s) enqueued, then: {error}")]
pub struct EnqueueBatchError {
    /// How many jobs, from the front of the batch, were enqueued.
    pub enqueued: usize,
    /// Why the next one was not.
    pub error: EnqueueError,
}

/// Counters of a [`QueueProducer`] (shared by its clones).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueProducerStats {
    /// Jobs added to the stream.
    pub enqueued: u64,
    /// Times a call found the queue full (and waited, or refused).
    pub full: u64,
    /// Calls to Redis that failed or timed out.
    pub redis_failures: u64,
}

/// A job that ended in the dead-letter stream, with its error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The entry's id in the dead-letter stream.
    pub id: String,
    /// The job's id in the job stream when it failed.
    pub job_id: String,
    /// The job, as JSON (decode it with [`job`](Self::job)).
    pub payload: String,
    /// The error of its last delivery (`Display` of the handler's error).
    pub error: String,
    /// How many deliveries it had.
    pub attempts: u32,
    /// The consumer that moved it.
    pub consumer: String,
}

impl DeadLetter {
    /// The job, decoded.
    ///
    /// # Errors
    ///
    /// When the payload is not a `T` (or was the reason it died).
    pub fn job<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.payload)
    }
}

/// Settings for a [`QueueProducer`]; start with [`QueueProducer::builder`].
///
/// | setting | default |
/// |---|---|
/// | [`max_len`](Self::max_len) | 10,000 jobs not yet done |
/// | [`prefix`](Self::prefix) | `"weir:queue"` |
/// | [`timeout`](Self::timeout) | 1 s per Redis call |
/// | [`context`](Self::context) | a fresh context (waits for room end only by their own bound) |
pub struct QueueProducerBuilder<T> {
    name: String,
    prefix: String,
    max_len: u64,
    timeout: Duration,
    parent: Option<Context>,
    _jobs: PhantomData<fn(&T)>,
}

impl<T> fmt::Debug for QueueProducerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueProducerBuilder")
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("max_len", &self.max_len)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<T> Clone for QueueProducerBuilder<T> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            prefix: self.prefix.clone(),
            max_len: self.max_len,
            timeout: self.timeout,
            parent: self.parent.clone(),
            _jobs: PhantomData,
        }
    }
}

impl<T: Serialize> QueueProducerBuilder<T> {
    /// The bound: the most jobs not yet done (waiting, or delivered and not
    /// acknowledged) the queue holds. At the bound, [`enqueue`](QueueProducer::enqueue)
    /// waits and [`try_enqueue`](QueueProducer::try_enqueue) fails. Zero is
    /// a [`ConfigError`]; above `weir_context::MAX_CAPACITY` it is lowered.
    pub fn max_len(mut self, max_len: u64) -> Self {
        self.max_len = max_len;
        self
    }

    /// The first part of the queue's keys (the consumers must use the same).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one call may wait for Redis. Zero or above an hour is a
    /// [`ConfigError`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Ends [`enqueue`](QueueProducer::enqueue)'s waits for room when `ctx`
    /// is cancelled or passes its deadline (the producer uses a child).
    pub fn context(mut self, ctx: impl Into<Context>) -> Self {
        self.parent = Some(ctx.into());
        self
    }

    /// Builds the producer; it connects on first use.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an empty name, a zero bound, a zero or
    /// over-long timeout, or outside a tokio runtime.
    pub fn build(self, client: redis::Client) -> Result<QueueProducer<T>, ConfigError> {
        let construct = format!("queue `{}` producer", self.name);
        check_name(&construct, &self.name)?;
        if self.max_len == 0 {
            return Err(ConfigError::zero(construct, "max_len"));
        }
        let max_len = self.max_len.min(weir_context::MAX_CAPACITY as u64);
        check_timeout(&construct, self.timeout)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::no_runtime(construct));
        }
        let conn = crate::conn::manager(client, self.timeout)
            .map_err(|e| ConfigError::invalid(construct.clone(), "client", e.to_string()))?;
        let ctx = self
            .parent
            .as_ref()
            .map_or_else(Context::background, Context::child);
        Ok(QueueProducer {
            inner: Arc::new(Inner {
                keys: Keys::new(&self.prefix, &self.name),
                max_len,
                timeout: self.timeout,
                conn,
                enqueue: LuaScript::new(scripts::ENQUEUE),
                health: Health::new(construct),
                ctx,
                enqueued: AtomicU64::new(0),
                full: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            }),
            _jobs: PhantomData,
        })
    }

    /// [`build`](Self::build) on a client for `url`.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), and a [`ConfigError`] for a URL the
    /// client does not accept.
    pub fn build_url(self, url: &str) -> Result<QueueProducer<T>, ConfigError> {
        let client = redis::Client::open(url).map_err(|e| {
            ConfigError::invalid(
                format!("queue `{}` producer", self.name),
                "url",
                e.to_string(),
            )
        })?;
        self.build(client)
    }
}

/// Enqueues serde-serialised jobs (as JSON) on the queue's Redis stream,
/// for [`QueueConsumer`](super::QueueConsumer)s in any process.
///
/// The queue is bounded: each call checks the number of jobs not yet done
/// and adds the job in one atomic script, so the stream never grows past
/// [`max_len`](QueueProducerBuilder::max_len) whatever the number of
/// producers; nothing relies on `MAXLEN` trimming, which would drop jobs
/// nobody acknowledged. Clones share one connection and the counters.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use weir_redis::{EnqueueError, QueueProducer};
///
/// #[derive(Serialize, Deserialize)]
/// struct Resize { image: u64 }
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = weir_redis::LocalRedisServer::start().await?;
/// # let url = server.url();
/// let producer = QueueProducer::<Resize>::builder("images")
///     .max_len(2)
///     .build_url(&url)?;
/// producer.enqueue(&Resize { image: 7 }).await?; // waits while the queue is full
/// producer.enqueue(&Resize { image: 8 }).await?;
/// let full = producer.try_enqueue(&Resize { image: 9 }).await.unwrap_err();
/// assert!(matches!(full, EnqueueError::Full { len: 2, max_len: 2 }));
/// # Ok(())
/// # }
/// ```
///
/// # Cancellation
///
/// A call dropped before its script ran adds nothing; one dropped (or
/// timed out) while the script runs may have added the job.
pub struct QueueProducer<T> {
    inner: Arc<Inner>,
    _jobs: PhantomData<fn(&T)>,
}

impl<T> Clone for QueueProducer<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            _jobs: PhantomData,
        }
    }
}

impl<T> fmt::Debug for QueueProducer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueProducer")
            .field("stream", &self.inner.keys.stream)
            .field("max_len", &self.inner.max_len)
            .finish_non_exhaustive()
    }
}

struct Inner {
    keys: Keys,
    max_len: u64,
    timeout: Duration,
    conn: ConnectionManager,
    enqueue: LuaScript,
    health: Health,
    ctx: Context,
    enqueued: AtomicU64,
    full: AtomicU64,
    failures: AtomicU64,
}

/// One look at the queue: added (with the ids), or full.
enum Added {
    Yes(Vec<String>),
    Full(u64),
}

impl<T: Serialize> QueueProducer<T> {
    /// Starts configuring a producer for the queue `name`:
    /// `QueueProducer::<Job>::builder("jobs")`.
    pub fn builder(name: impl Into<String>) -> QueueProducerBuilder<T> {
        QueueProducerBuilder {
            name: name.into(),
            prefix: super::DEFAULT_PREFIX.to_owned(),
            max_len: 10_000,
            timeout: Duration::from_secs(1),
            parent: None,
            _jobs: PhantomData,
        }
    }
}

impl<T: Serialize> QueueProducer<T> {
    /// Enqueues `job`, waiting while the queue is full (backpressure); the
    /// wait ends with the producer's context. Returns the entry's id.
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Encode`], [`EnqueueError::Unavailable`] (Redis did
    /// not answer within the timeout: the call is not retried), or
    /// [`EnqueueError::Stopped`] when the context ended the wait.
    ///
    /// # Cancel safety
    ///
    /// See [the type's docs](Self#cancellation).
    pub async fn enqueue(&self, job: &T) -> Result<String, EnqueueError> {
        let payload = encode(job)?;
        let mut ids = self.add_waiting(&[payload]).await?;
        Ok(ids.pop().unwrap_or_default())
    }

    /// Enqueues `job` if the queue has room now.
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Full`] when it has none; otherwise as
    /// [`enqueue`](Self::enqueue).
    ///
    /// # Cancel safety
    ///
    /// See [the type's docs](Self#cancellation).
    pub async fn try_enqueue(&self, job: &T) -> Result<String, EnqueueError> {
        let payload = encode(job)?;
        match self.add(&[payload]).await? {
            Added::Yes(mut ids) => Ok(ids.pop().unwrap_or_default()),
            Added::Full(len) => Err(EnqueueError::Full {
                len,
                max_len: self.inner.max_len,
            }),
        }
    }

    /// Enqueues every job, in order, a few hundred per round trip, waiting
    /// for room as [`enqueue`](Self::enqueue) does. Returns their ids.
    ///
    /// # Errors
    ///
    /// [`EnqueueBatchError`]: how many from the front were enqueued, and
    /// why the rest were not. A job that cannot be encoded fails the batch
    /// before anything is enqueued.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave a front part of the batch enqueued.
    pub async fn enqueue_all<'a, I>(&self, jobs: I) -> Result<Vec<String>, EnqueueBatchError>
    where
        I: IntoIterator<Item = &'a T>,
        T: 'a,
    {
        let payloads = jobs
            .into_iter()
            .map(encode)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| EnqueueBatchError { enqueued: 0, error })?;
        let chunk = CHUNK.min(usize::try_from(self.inner.max_len).unwrap_or(CHUNK));
        let mut ids = Vec::with_capacity(payloads.len());
        for part in payloads.chunks(chunk) {
            match self.add_waiting(part).await {
                Ok(mut added) => ids.append(&mut added),
                Err(error) => {
                    return Err(EnqueueBatchError {
                        enqueued: ids.len(),
                        error,
                    });
                }
            }
        }
        Ok(ids)
    }
}

impl<T> QueueProducer<T> {
    /// The backlog: jobs in the queue not yet done, waiting or delivered
    /// and not yet acknowledged (`XLEN` of the stream; what `max_len`
    /// bounds).
    ///
    /// # Errors
    ///
    /// [`RedisFailure`] when Redis does not answer in time.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn backlog(&self) -> Result<u64, RedisFailure> {
        let mut conn = self.inner.conn.clone();
        let cmd = redis::cmd("XLEN").arg(&self.inner.keys.stream).clone();
        self.inner.call(cmd.query_async(&mut conn)).await
    }

    /// Up to `count` of the oldest entries of the dead-letter stream.
    ///
    /// # Errors
    ///
    /// [`RedisFailure`] when Redis does not answer in time.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn dead_letters(&self, count: usize) -> Result<Vec<DeadLetter>, RedisFailure> {
        let mut conn = self.inner.conn.clone();
        let cmd = redis::cmd("XRANGE")
            .arg(&self.inner.keys.dead)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(count.max(1))
            .clone();
        let value: Value = self.inner.call(cmd.query_async(&mut conn)).await?;
        let entries = wire::range_reply(&value).map_err(RedisFailure::from)?;
        Ok(entries.into_iter().map(dead_letter).collect())
    }

    /// The counters so far.
    pub fn stats(&self) -> QueueProducerStats {
        let i = &self.inner;
        QueueProducerStats {
            enqueued: i.enqueued.load(Ordering::Relaxed),
            full: i.full.load(Ordering::Relaxed),
            redis_failures: i.failures.load(Ordering::Relaxed),
        }
    }

    /// The Redis keys: the job stream and the dead-letter stream.
    pub fn keys(&self) -> (&str, &str) {
        (&self.inner.keys.stream, &self.inner.keys.dead)
    }

    /// Adds `payloads`, waiting (with growing pauses, within the context)
    /// while the queue is full.
    async fn add_waiting(&self, payloads: &[String]) -> Result<Vec<String>, EnqueueError> {
        let mut pause = Duration::from_millis(2);
        loop {
            if self.inner.ctx.is_cancelled() {
                return Err(EnqueueError::Stopped(self.inner.ctx.stopped().into_cause()));
            }
            match self.add(payloads).await? {
                Added::Yes(ids) => return Ok(ids),
                Added::Full(_) => {
                    if let Err(stopped) = self.inner.ctx.run(tokio::time::sleep(pause)).await {
                        return Err(EnqueueError::Stopped(stopped.into_cause()));
                    }
                    pause = (pause * 2).min(MAX_FULL_PAUSE);
                }
            }
        }
    }

    async fn add(&self, payloads: &[String]) -> Result<Added, EnqueueError> {
        let i = &*self.inner;
        let cmd = i.enqueue.command(&[&i.keys.stream], (i.max_len, payloads));
        let reply: Vec<Value> = i
            .call(i.enqueue.run(&i.conn, &cmd))
            .await
            .map_err(EnqueueError::Unavailable)?;
        let bad = || {
            EnqueueError::Unavailable(RedisFailure::from(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "enqueue script: unexpected reply",
            ))))
        };
        let (ok, len) = match reply.as_slice() {
            [ok, len, ..] => (
                wire::int(ok).ok_or_else(bad)?,
                wire::int(len).ok_or_else(bad)?,
            ),
            _ => return Err(bad()),
        };
        let len = u64::try_from(len).unwrap_or(0);
        if ok != 1 {
            i.full.fetch_add(1, Ordering::Relaxed);
            return Ok(Added::Full(len));
        }
        let ids: Vec<String> = reply[2..].iter().filter_map(wire::text).collect();
        i.enqueued.fetch_add(ids.len() as u64, Ordering::Relaxed);
        Ok(Added::Yes(ids))
    }
}

impl Inner {
    /// One call under the timeout, counted and logged once per change of
    /// state.
    async fn call<V, F>(&self, call: F) -> Result<V, RedisFailure>
    where
        F: Future<Output = redis::RedisResult<V>>,
    {
        let result = bounded(self.timeout, call).await;
        match &result {
            Ok(_) => {
                self.health.succeeded();
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.health.failed(e);
            }
        }
        result
    }
}

fn encode<T: Serialize>(job: &T) -> Result<String, EnqueueError> {
    serde_json::to_string(job).map_err(|e| EnqueueError::Encode(Arc::new(e)))
}

fn dead_letter((id, fields): wire::Entry) -> DeadLetter {
    let mut d = DeadLetter {
        id,
        job_id: String::new(),
        payload: String::new(),
        error: String::new(),
        attempts: 0,
        consumer: String::new(),
    };
    for (k, v) in fields {
        match k.as_str() {
            "job" => d.payload = v,
            "error" => d.error = v,
            "attempts" => d.attempts = v.parse().unwrap_or(0),
            "id" => d.job_id = v,
            "consumer" => d.consumer = v,
            _ => {}
        }
    }
    d
}
