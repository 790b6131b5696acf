//! [`QueueConsumerBuilder`]: a consumer's settings, checked at
//! [`start`](QueueConsumerBuilder::start), which starts its tasks.

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use weir_context::{ConfigError, Context, MAX_CAPACITY};

use super::consumer::QueueConsumer;
use super::delivery::DeliveryStream;
use super::report::Counters;
use super::shared::{Scripts, Settings, Shared};
use super::{Keys, check_name, check_timeout, tasks};
use crate::health::Health;

/// The most entries one read asks for.
const MAX_BATCH: usize = 10_000;
/// The longest `BLOCK` of a read: `close` waits for the read in progress.
const MAX_BLOCK: Duration = Duration::from_secs(60);
/// The shortest visibility timeout: the heartbeat runs three times in it.
const MIN_VISIBILITY: Duration = Duration::from_millis(30);
/// Longer visibility timeouts are lowered to this.
const MAX_VISIBILITY: Duration = Duration::from_secs(24 * 3600);
/// Acknowledgements waiting for the acker (it takes them all at once).
const ACK_QUEUE: usize = 4096;

/// Settings for a [`QueueConsumer`]; start with [`QueueConsumer::builder`].
///
/// | setting | default |
/// |---|---|
/// | [`group`](Self::group) | `"weir"` |
/// | [`consumer`](Self::consumer) | `<pid>-<random>`, unique per process |
/// | [`batch`](Self::batch) | 64 entries per read (`XREADGROUP COUNT`) |
/// | [`prefetch`](Self::prefetch) | four batches: deliveries read and not yet ended (reads go on while acknowledgements are in flight) |
/// | [`block`](Self::block) | 200 ms (`XREADGROUP BLOCK`) |
/// | [`max_deliveries`](Self::max_deliveries) | 5 |
/// | [`visibility_timeout`](Self::visibility_timeout) | 30 s |
/// | [`dead_letter_max_len`](Self::dead_letter_max_len) | 100,000 |
/// | [`prefix`](Self::prefix) | `"weir:queue"` |
/// | [`timeout`](Self::timeout) | 1 s per Redis call (plus the block for reads) |
/// | [`context`](Self::context) | a fresh context |
pub struct QueueConsumerBuilder<T> {
    name: String,
    prefix: String,
    group: String,
    consumer: Option<String>,
    batch: usize,
    prefetch: Option<usize>,
    block: Duration,
    max_deliveries: u32,
    visibility: Duration,
    dead_max_len: u64,
    timeout: Duration,
    parent: Option<Context>,
    _jobs: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for QueueConsumerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueConsumerBuilder")
            .field("name", &self.name)
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .field("batch", &self.batch)
            .field("prefetch", &self.prefetch)
            .field("block", &self.block)
            .field("max_deliveries", &self.max_deliveries)
            .field("visibility", &self.visibility)
            .finish_non_exhaustive()
    }
}

impl<T> Clone for QueueConsumerBuilder<T> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            prefix: self.prefix.clone(),
            group: self.group.clone(),
            consumer: self.consumer.clone(),
            batch: self.batch,
            prefetch: self.prefetch,
            block: self.block,
            max_deliveries: self.max_deliveries,
            visibility: self.visibility,
            dead_max_len: self.dead_max_len,
            timeout: self.timeout,
            parent: self.parent.clone(),
            _jobs: PhantomData,
        }
    }
}

impl<T: DeserializeOwned + Send + 'static> QueueConsumerBuilder<T> {
    pub(crate) fn new(name: String) -> Self {
        Self {
            name,
            prefix: super::DEFAULT_PREFIX.to_owned(),
            group: "weir".to_owned(),
            consumer: None,
            batch: 64,
            prefetch: None,
            block: Duration::from_millis(200),
            max_deliveries: 5,
            visibility: Duration::from_secs(30),
            dead_max_len: 100_000,
            timeout: Duration::from_secs(1),
            parent: None,
            _jobs: PhantomData,
        }
    }

    /// The consumer group: consumers of one group share the jobs. A queue
    /// has one group (acknowledged entries are deleted).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// This consumer's name in the group; unique per live consumer. A
    /// consumer restarted with the same name also gets back what it had
    /// pending (after the visibility timeout).
    pub fn consumer(mut self, name: impl Into<String>) -> Self {
        self.consumer = Some(name.into());
        self
    }

    /// The most entries one read takes (`COUNT`). Zero is a
    /// [`ConfigError`]; above 10,000 too.
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n;
        self
    }

    /// The most deliveries read and not yet ended (buffered, or held by
    /// the caller): the consumer reads only as many as it has room for.
    /// Zero is a [`ConfigError`]; above `MAX_CAPACITY` it is lowered.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = Some(n);
        self
    }

    /// How long an idle read waits for new entries (`BLOCK`); `close`
    /// waits for the read in progress. Zero (which Redis takes as
    /// "forever") and above a minute are a [`ConfigError`].
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// Deliveries a job gets before it goes to the dead-letter stream:
    /// failures ([`Delivery::fail`](super::Delivery::fail)) and deliveries
    /// that ended without an outcome (the consumer died) both count. Zero
    /// is a [`ConfigError`].
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.max_deliveries = n;
        self
    }

    /// How long a delivered job may go without news from its consumer
    /// before another consumer reclaims it. A live consumer renews its
    /// jobs (buffered and in progress) three times per timeout, so only
    /// the jobs of a dead or stalled consumer are reclaimed. Below 30 ms is
    /// a [`ConfigError`]; above a day it is lowered.
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility = timeout;
        self
    }

    /// The dead-letter stream keeps about this many entries (`XADD MAXLEN
    /// ~`): the one place where old entries are dropped, so that it too
    /// stays bounded. Zero is a [`ConfigError`].
    pub fn dead_letter_max_len(mut self, n: u64) -> Self {
        self.dead_max_len = n;
        self
    }

    /// The first part of the queue's keys (the producers must use the same).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one call may wait for Redis (reads wait the block on top).
    /// Zero or above an hour is a [`ConfigError`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs the consumer under `ctx`: cancelling it (or its deadline)
    /// cancels the consumer (see [`QueueConsumer::cancel`]). The consumer
    /// runs on a child, so its own `cancel` does not cancel `ctx`.
    pub fn context(mut self, ctx: impl Into<Context>) -> Self {
        self.parent = Some(ctx.into());
        self
    }

    /// Starts the consumer's tasks (reader, acker, maintenance) on the
    /// current runtime. It connects on first use: a consumer started while
    /// Redis is down waits for it.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a setting out of range (see each setting) or
    /// outside a tokio runtime.
    pub fn start(self, client: redis::Client) -> Result<QueueConsumer<T>, ConfigError> {
        let consumer = self.consumer.clone().unwrap_or_else(default_consumer_name);
        let construct = format!("queue `{}` consumer `{consumer}`", self.name);
        let settings = self.check(&construct, &consumer)?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ConfigError::no_runtime(construct.clone()))?;
        let manager = |timeout| {
            crate::conn::manager(client.clone(), timeout)
                .map_err(|e| ConfigError::invalid(construct.clone(), "client", e.to_string()))
        };
        let conn = manager(self.timeout)?;
        let read_conn = manager(self.timeout)?;
        let ctx = self
            .parent
            .as_ref()
            .map_or_else(Context::background, Context::child);
        let closing = ctx.token().child_token();
        let acker_done = ctx.token().child_token();
        let (acks, ack_rx) = mpsc::channel(ACK_QUEUE);
        let shared = Arc::new(Shared {
            queue: self.name.clone(),
            group: self.group,
            consumer,
            keys: Keys::new(&self.prefix, &self.name),
            conn,
            scripts: Scripts::new(),
            counters: Counters::default(),
            health: Health::new(construct),
            permits: Semaphore::new(settings.prefetch),
            held: Mutex::new(HashSet::new()),
            idle: Notify::new(),
            ctx,
            closing,
            acks,
            started: Instant::now(),
            ended_at: Mutex::new(None),
            settings,
        });
        let (tx, rx) = async_channel::bounded(shared.settings.prefetch);
        let stream = DeliveryStream::new(rx.clone(), shared.closing.clone().cancelled_owned());
        let tracker = TaskTracker::new();
        let reader_done = CancellationToken::new();
        // One span per task, with the queue and the consumer.
        let span = |task: &'static str| tracing::info_span!("queue consumer", queue = %shared.queue, consumer = %shared.consumer, task);
        tracker.spawn_on(
            tasks::read::<T>(
                Arc::clone(&shared),
                read_conn,
                tx.clone(),
                reader_done.clone(),
            )
            .instrument(span("reader")),
            &runtime,
        );
        tracker.spawn_on(
            tasks::acknowledge(Arc::clone(&shared), ack_rx, acker_done.clone())
                .instrument(span("acker")),
            &runtime,
        );
        tracker.spawn_on(
            tasks::maintain::<T>(Arc::clone(&shared), tx, rx, reader_done, acker_done)
                .instrument(span("maintenance")),
            &runtime,
        );
        Ok(QueueConsumer::new(shared, stream, tracker, runtime))
    }

    /// [`start`](Self::start) on a client for `url`.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), and a [`ConfigError`] for a URL the
    /// client does not accept.
    pub fn start_url(self, url: &str) -> Result<QueueConsumer<T>, ConfigError> {
        let client = redis::Client::open(url).map_err(|e| {
            ConfigError::invalid(
                format!("queue `{}` consumer", self.name),
                "url",
                e.to_string(),
            )
        })?;
        self.start(client)
    }

    fn check(&self, construct: &str, consumer: &str) -> Result<Settings, ConfigError> {
        let c = || construct.to_owned();
        check_name(construct, &self.name)?;
        if self.group.is_empty() {
            return Err(ConfigError::invalid(c(), "group", "must not be empty"));
        }
        if consumer.is_empty() {
            return Err(ConfigError::invalid(c(), "consumer", "must not be empty"));
        }
        let batch = weir_context::__private::check_workers(c(), "batch", self.batch).and_then(
            |b| match b {
                b if b > MAX_BATCH => Err(ConfigError::too_large(c(), "batch", MAX_BATCH as u64)),
                b => Ok(b),
            },
        )?;
        let prefetch = match self.prefetch {
            Some(n) => weir_context::__private::check_capacity(c(), "prefetch", n)?,
            None => (batch * 4).min(MAX_CAPACITY),
        };
        if self.block.is_zero() {
            return Err(ConfigError::zero(c(), "block"));
        }
        if self.block > MAX_BLOCK {
            return Err(ConfigError::invalid(
                c(),
                "block",
                "must be at most a minute",
            ));
        }
        if self.max_deliveries == 0 {
            return Err(ConfigError::zero(c(), "max_deliveries"));
        }
        if self.visibility < MIN_VISIBILITY {
            return Err(ConfigError::invalid(
                c(),
                "visibility timeout",
                "must be at least 30 ms",
            ));
        }
        if self.dead_max_len == 0 {
            return Err(ConfigError::zero(c(), "dead_letter_max_len"));
        }
        check_timeout(construct, self.timeout)?;
        Ok(Settings {
            batch,
            prefetch,
            block: self.block,
            max_deliveries: self.max_deliveries,
            visibility: self.visibility.min(MAX_VISIBILITY),
            dead_max_len: self.dead_max_len.min(MAX_CAPACITY as u64),
            timeout: self.timeout,
        })
    }
}

fn default_consumer_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{nanos:08x}", std::process::id())
}
