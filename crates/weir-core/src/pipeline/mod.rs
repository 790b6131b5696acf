//! Pipelines: typed chains of concurrent stages between bounded channels.
//!
//! A [`Pipeline`] starts from a source ([`from_iter`](Pipeline::from_iter),
//! [`from_stream`](Pipeline::from_stream),
//! [`from_receiver`](Pipeline::from_receiver) or a generator function,
//! [`generate`](Pipeline::generate)), goes through stages
//! ([`map`](Pipeline::map), [`map_ordered`](Pipeline::map_ordered),
//! [`filter`](Pipeline::filter), [`filter_map`](Pipeline::filter_map),
//! [`inspect`](Pipeline::inspect), [`stage`](Pipeline::stage)) and ends in a
//! sink ([`collect`](Pipeline::collect), [`for_each`](Pipeline::for_each),
//! [`run`](Pipeline::run), or [`into_stream`](Pipeline::into_stream) for the
//! output as a `Stream` plus a [`PipelineHandle`]).
//!
//! Nothing runs until a sink is called. Then every stage runs in its own
//! tokio task(s) — a stage with `workers > 1` runs that many tasks, on as
//! many cores as the runtime has — connected by bounded channels of
//! [`capacity`](Pipeline::capacity) items, so a slow stage holds back the
//! ones before it instead of letting memory grow.
//!
//! # Examples
//!
//! ```
//! use weir_core::Pipeline;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let squares = Pipeline::from_iter(1..=5u64)
//!     .map_ordered("square", 4, |x| async move { anyhow::Ok(x * x) })
//!     .filter("odd", |x| x % 2 == 1)
//!     .collect()
//!     .await?;
//! assert_eq!(squares, vec![1, 9, 25]);
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! Stage functions return `Result<T, E>`. Under [`ErrorPolicy::FailFast`]
//! (the default) the first `Err`, panic or timeout stops the pipeline and is
//! what [`PipelineHandle::join`] (or the sink) returns, naming the stage.
//! Under [`ErrorPolicy::Continue`] the failed item is dropped, counted, and
//! its error goes to the [`ErrorStream`]; the pipeline goes on.
//!
//! # Panics
//!
//! A panic in a stage function is caught in the worker and becomes
//! [`PipelineError::Panicked`] with the stage's name and the panic message,
//! under either policy; the worker itself keeps running under `Continue`.
//!
//! # Stage options
//!
//! [`timeout`](Pipeline::timeout), [`adaptive`](Pipeline::adaptive) and
//! [`retry`](Pipeline::retry) apply to the stage added just before them.
//! Together they nest, from the outside in: the retries; for each attempt
//! a slot of the adaptive limit; inside it the per-item timeout; inside
//! that the stage function. A backoff holds no slot, a timeout is the
//! attempt's, and a panic is never retried.
//!
//! # Cancellation
//!
//! [`PipelineHandle::cancel`], or the end of the [`Context`] given to
//! [`Pipeline::context`] (cancelled, or its deadline passed), stops every
//! task promptly — a stage in the middle of an item drops it at its next
//! `.await` — and `join` returns [`PipelineError::Stopped`] with the
//! [`Cause`](crate::Cause), inside a [`RunError`] that
//! carries the final [`PipelineReport`].
//!
//! # Dropped
//!
//! Dropping the output stream stops the pipeline the same way, but `join`
//! returns `Ok`: the consumer chose to stop. Whatever stopped it, no task of
//! the pipeline is alive once `join` returns, and every item that entered a
//! stage is accounted for in the [`PipelineReport`]:
//! `input = output + filtered + failed + cancelled`.
//!
//! # Settings
//!
//! Zero workers, a zero capacity, a zero or misplaced per-item timeout, a
//! misplaced [`adaptive`](Pipeline::adaptive) or [`retry`](Pipeline::retry)
//! option (before any stage, or after `filter` or `inspect`), more
//! than [`MAX_WORKERS`](crate::MAX_WORKERS) workers in a stage, or a start
//! outside a tokio runtime are a [`ConfigError`] when
//! the pipeline starts (its sink, or [`into_stream`](Pipeline::into_stream));
//! nothing runs then. A capacity above [`MAX_CAPACITY`](crate::MAX_CAPACITY)
//! is lowered to it.

mod error;
mod handle;
mod options;
mod progress;
mod report;
pub(crate) mod run;
mod stage;

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use error::PipelineError;
pub use handle::{ErrorStream, ItemStream, PipelineHandle};
pub use progress::{PipelineProgress, PipelineSnapshot, StageProgress};
pub use report::{PipelineReport, StageReport};
pub use run::{EmitError, Emitter};
pub use stage::Stage;

use crate::DEFAULT_CAPACITY;
use crate::adaptive::AdaptiveLimit;
use weir_chan::lane::{LaneTx, lane};

use crate::channel::{self, EdgeRx, Halt};
use crate::retry::RetryPolicy;
use options::{Extra, ItemOpts, Retry};
use report::StageCounters;
use run::{Env, Shared, SinkState};
use stage::{FilterMapFn, MapFn, Process, SyncFn};
use weir_context::__private::{Construct, Label, Origin, check_capacity, check_workers};
use weir_context::{ConfigError, Context, ErrorPolicy, RunError};

/// Size of the error stream unless [`Pipeline::error_capacity`] says
/// otherwise.
pub const DEFAULT_ERROR_CAPACITY: usize = 1024;

/// Everything a stage's launch needs from the pipeline being started.
struct Launch<E> {
    shared: Arc<Shared<E>>,
    errors: LaneTx<PipelineError<E>>,
    capacity: usize,
    runtime: tokio::runtime::Handle,
}

impl<E: fmt::Display + Send + 'static> Launch<E> {
    /// Registers a stage's counters; `tasks` is how many tasks it runs,
    /// `limit` its adaptive limit (for the report).
    fn stage(
        &self,
        name: &Arc<str>,
        workers: usize,
        tasks: usize,
        limit: Option<AdaptiveLimit>,
    ) -> Arc<StageCounters> {
        let counters = Arc::new(StageCounters::new(
            Arc::clone(name),
            workers,
            tasks,
            self.shared.started,
            limit,
        ));
        self.shared
            .stages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::clone(&counters));
        counters
    }

    fn env(&self, counters: &Arc<StageCounters>) -> Env<E> {
        Env {
            shared: Arc::clone(&self.shared),
            counters: Arc::clone(counters),
            errors: self.errors.clone(),
            halt: Halt::new(&self.shared.token),
            #[cfg(feature = "metrics")]
            item_duration: crate::metrics::stage_item_duration(&self.shared.name, &counters.name),
        }
    }

    /// Spawns one task of a stage, in its own span.
    fn spawn<F>(&self, name: &str, worker: usize, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let span = tracing::info_span!("stage", stage = %name, worker);
        #[cfg(feature = "metrics")]
        let task = self.shared.work.track_future(task);
        crate::spawn::tracked_on(
            &self.shared.tracker,
            &self.runtime,
            &Label {
                construct: Construct::Pipeline,
                name: &self.shared.name,
                task: "stage",
                stage: Some(name),
                index: Some(worker),
                origin: self.shared.origin,
            },
            task.instrument(span),
        );
    }
}

/// Starts a pipeline's stages up to this point; the argument is how many
/// tasks will read the last stage's output, and the result is one receiver
/// for each of them.
type LaunchFn<T, E> = Box<dyn FnOnce(&Launch<E>, usize) -> Vec<EdgeRx<T>> + Send>;

/// The options of a pipeline's last stage ([`Pipeline::timeout`],
/// [`Pipeline::adaptive`], [`Pipeline::retry`]), plain data owned by the
/// builder until the stage is sealed (the next stage is added, or the
/// pipeline starts). `I` is the stage's input type.
struct StageOpts<I, E> {
    /// Whether the stage runs an async function per item, which the
    /// adaptive limit and retry apply to (`filter` and `inspect` do not).
    runs_async: bool,
    timeout: Option<Duration>,
    adaptive: Option<AdaptiveLimit>,
    retry: Option<Retry<I, E>>,
}

impl<I, E> StageOpts<I, E> {
    fn new(runs_async: bool) -> Self {
        Self {
            runs_async,
            timeout: None,
            adaptive: None,
            retry: None,
        }
    }

    /// What each worker applies to an item.
    fn into_item_opts(self) -> ItemOpts<I, E> {
        let extra = (self.adaptive.is_some() || self.retry.is_some()).then(|| {
            Arc::new(Extra {
                limit: self.adaptive,
                retry: self.retry,
            })
        });
        ItemOpts {
            timeout: self.timeout,
            extra,
        }
    }
}

/// Builds the launch of a stage and everything before it, given the
/// stage's options, which it then owns (read once, as the stage starts).
type SealFn<I, T, E> = Box<dyn FnOnce(ItemOpts<I, E>) -> LaunchFn<T, E> + Send>;

/// The last stage of a pipeline being built: its options, still open to
/// [`Pipeline::timeout`] and the others, and what builds its launch from
/// them.
struct LastStage<I, T, E> {
    seal: SealFn<I, T, E>,
    opts: StageOpts<I, E>,
}

/// What a [`Pipeline`] has been given so far: a bare source, or stages of
/// which the last one is still open to options.
enum Chain<T, E, In> {
    Source(LaunchFn<T, E>),
    Stage(LastStage<In, T, E>),
}

impl<T, E, In> Chain<T, E, In> {
    /// Closes the last stage's options: the launch of the whole chain.
    fn seal(self) -> LaunchFn<T, E> {
        match self {
            Self::Source(launch) => launch,
            Self::Stage(LastStage { seal, opts }) => seal(opts.into_item_opts()),
        }
    }
}

/// A typed chain of concurrent stages between bounded channels.
///
/// `T` is the type of the items coming out of the last stage so far, `E` the
/// error type of the stage functions (by default [`anyhow::Error`]; with it,
/// write `anyhow::Ok(x)` in a closure so the error type is known). `In` is
/// the type the last stage takes (for a pipeline with no stage yet, the
/// source's `T`): [`retry`](Self::retry) runs that stage again on a clone
/// of its input, so it needs `In: Clone`. It is inferred; a program that
/// names a pipeline's type writes `Pipeline<T, E, In>` or, when the last
/// stage keeps the item type (or there is none), `Pipeline<T, E>`.
///
/// See the [module documentation](self) for how it runs, fails, stops and
/// accounts for items.
#[must_use = "a pipeline does nothing until a sink (collect, for_each, run, into_stream) starts it"]
pub struct Pipeline<T, E = anyhow::Error, In = T> {
    chain: Chain<T, E, In>,
    name: Arc<str>,
    capacity: usize,
    error_capacity: usize,
    parent: Option<Context>,
    policy: ErrorPolicy,
    error: Option<ConfigError>,
    /// Where the source was made: the leak check names it.
    origin: Origin,
}

impl<T, E, In> fmt::Debug for Pipeline<T, E, In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .field("error_capacity", &self.error_capacity)
            .field("policy", &self.policy)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<T, E> Pipeline<T, E>
where
    T: Send + 'static,
    E: fmt::Display + Send + 'static,
{
    #[track_caller]
    fn from_launch(launch: LaunchFn<T, E>) -> Self {
        Self {
            origin: Origin::here(),
            chain: Chain::Source(launch),
            name: Arc::from("pipeline"),
            capacity: DEFAULT_CAPACITY,
            error_capacity: DEFAULT_ERROR_CAPACITY,
            parent: None,
            policy: ErrorPolicy::default(),
            error: None,
        }
    }

    /// A pipeline whose source yields the items of `iter`, pulled in its own
    /// task as fast as the first stage takes them.
    ///
    /// The iterator runs inside an async task: it must not block (no file
    /// or network reads inside `next`); use [`from_stream`](Self::from_stream)
    /// or [`generate`](Self::generate) for sources that wait.
    #[allow(clippy::should_implement_trait)]
    #[track_caller]
    pub fn from_iter<I>(iter: I) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        let iter = iter.into_iter();
        Self::from_launch(Box::new(move |l: &Launch<E>, consumers| {
            let name: Arc<str> = Arc::from("source");
            let (tx, rx) = channel::edge(l.capacity, consumers);
            let env = l.env(&l.stage(&name, 1, 1, None));
            l.spawn(&name, 0, run::iter_source(env, iter, tx));
            rx
        }))
    }

    /// A pipeline whose source yields the items of `stream`, polled in its
    /// own task.
    #[track_caller]
    pub fn from_stream<S>(stream: S) -> Self
    where
        S: Stream<Item = T> + Send + 'static,
    {
        Self::from_launch(Box::new(move |l: &Launch<E>, consumers| {
            let name: Arc<str> = Arc::from("source");
            let (tx, rx) = channel::edge(l.capacity, consumers);
            let env = l.env(&l.stage(&name, 1, 1, None));
            l.spawn(&name, 0, run::stream_source(env, stream, tx));
            rx
        }))
    }

    /// A pipeline whose source is a tokio mpsc receiver: whatever is sent on
    /// the matching sender enters the pipeline; the source ends when every
    /// sender is dropped.
    ///
    /// When the first stage has one worker, it reads `rx` itself (no
    /// forwarding task, so an item costs no extra hop) and the
    /// [`PipelineReport`] has no `"source"` stage. When the pipeline stops, `rx` is
    /// closed, so senders see the pipeline is gone.
    #[track_caller]
    pub fn from_receiver(rx: tokio::sync::mpsc::Receiver<T>) -> Self {
        Self::from_launch(Box::new(move |l: &Launch<E>, consumers| {
            if consumers == 1 {
                // One task reads the source: it reads the caller's channel
                // itself, with no forwarding task and no extra hop. The
                // report then has no "source" stage; the first stage's input
                // is what came through the channel.
                return vec![EdgeRx::direct(rx)];
            }
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                let item = rx.recv().await?;
                Some((item, rx))
            });
            let name: Arc<str> = Arc::from("source");
            let (tx, rx) = channel::edge(l.capacity, consumers);
            let env = l.env(&l.stage(&name, 1, 1, None));
            l.spawn(&name, 0, run::stream_source(env, stream, tx));
            rx
        }))
    }

    /// The generator pattern: `f` runs in its own task and sends items with
    /// [`Emitter::send`]; the source ends when `f` returns.
    ///
    /// The generator stops as soon as the pipeline stops (cancel, first
    /// error, or the consumer dropping the output): `f`'s future is dropped
    /// at its next `.await`, and a pending `send` returns [`EmitError`]. There
    /// is no way for it to block forever on a consumer that is gone — the
    /// goroutine leak of the Go version.
    ///
    /// # Errors
    ///
    /// An `Err` returned by `f` is a failure of the stage named `"source"`
    /// (unless it is the consequence of a failed send), and a panic in `f`
    /// is caught as one.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_core::Pipeline;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> anyhow::Result<()> {
    /// // `Pipeline::<u64>` names the item type and, by default, the error type
    /// // (anyhow::Error): nothing after the generator pins them here.
    /// let fib = Pipeline::<u64>::generate(|tx| async move {
    ///     let (mut a, mut b) = (0u64, 1u64);
    ///     loop {
    ///         tx.send(a).await?; // an endless generator: ends when the pipeline stops
    ///         (a, b) = (b, a + b);
    ///     }
    /// });
    /// let (mut out, handle) = fib.into_stream()?;
    /// let mut first = Vec::new();
    /// while let Some(x) = out.recv().await {
    ///     first.push(x);
    ///     if first.len() == 10 {
    ///         break;
    ///     }
    /// }
    /// drop(out); // the consumer walks away: the generator stops
    /// handle.join().await?;
    /// assert_eq!(first, [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]);
    /// # Ok(())
    /// # }
    /// ```
    #[track_caller]
    pub fn generate<F, Fut>(f: F) -> Self
    where
        F: FnOnce(Emitter<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        Self::from_launch(Box::new(move |l: &Launch<E>, consumers| {
            let name: Arc<str> = Arc::from("source");
            let (tx, rx) = channel::edge(l.capacity, consumers);
            let env = l.env(&l.stage(&name, 1, 1, None));
            l.spawn(&name, 0, run::generator_source(env, f, tx));
            rx
        }))
    }
}

impl<T, E, In> Pipeline<T, E, In>
where
    T: Send + 'static,
    E: fmt::Display + Send + 'static,
{
    /// Names the pipeline (default `"pipeline"`): the `pipeline` label of
    /// its metrics (feature `metrics`, see docs/observability.md) and what
    /// [`PipelineHandle::name`] returns. Applies to the whole pipeline,
    /// wherever it is called in the chain.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Arc::from(name.into());
        self
    }

    /// Sets the size of every channel between stages (default
    /// [`DEFAULT_CAPACITY`]). Applies to the whole
    /// pipeline, wherever it is called in the chain. Zero is a
    /// [`ConfigError`] when the pipeline starts; above
    /// [`MAX_CAPACITY`](crate::MAX_CAPACITY) it is lowered to it.
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n;
        self
    }

    /// Sets the size of the [`ErrorStream`] (default
    /// [`DEFAULT_ERROR_CAPACITY`]); only used under
    /// [`ErrorPolicy::Continue`]. Zero means errors are only counted; above
    /// [`MAX_CAPACITY`](crate::MAX_CAPACITY) it is lowered to it.
    pub fn error_capacity(mut self, n: usize) -> Self {
        self.error_capacity = n;
        self
    }

    /// Runs the pipeline under `ctx` (a [`Context`], `&Context` or
    /// `CancellationToken`): when `ctx` is cancelled or its deadline
    /// passes, the pipeline stops and `join` returns
    /// [`PipelineError::Stopped`] with `ctx`'s [`Cause`](crate::Cause) (for example
    /// [`Cause::DeadlineExceeded`](crate::Cause::DeadlineExceeded)). The pipeline works on a child context,
    /// so its own cancel or failure does not cancel `ctx`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_core::{Cause, Context, Pipeline};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let ctx = Context::background().with_timeout(Duration::from_millis(300));
    /// let err = Pipeline::from_iter(0..100u64)
    ///     .context(ctx)
    ///     .map("slow", 2, |x| async move {
    ///         tokio::time::sleep(Duration::from_millis(100)).await;
    ///         anyhow::Ok(x)
    ///     })
    ///     .run()
    ///     .await
    ///     .unwrap_err();
    /// assert!(matches!(err.error().cause(), Some(Cause::DeadlineExceeded)));
    /// assert!(err.report().is_balanced()); // the counts survive the deadline
    /// # }
    /// ```
    pub fn context(mut self, ctx: impl Into<Context>) -> Self {
        self.parent = Some(ctx.into());
        self
    }

    /// Sets what a failed item does to the pipeline (default
    /// [`ErrorPolicy::FailFast`]).
    pub fn error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Gives each item at most `per_item` in the stage added last: an item
    /// that takes longer is dropped and fails with
    /// [`PipelineError::TimedOut`] under the pipeline's error policy.
    ///
    /// A zero duration, or a call before any stage was added, is a
    /// [`ConfigError`] when the pipeline starts. `Duration::MAX` is no
    /// timeout.
    pub fn timeout(mut self, per_item: Duration) -> Self {
        match &mut self.chain {
            Chain::Stage(last) if !per_item.is_zero() => {
                last.opts.timeout = Some(per_item);
            }
            Chain::Stage(_) => {
                self.error
                    .get_or_insert(ConfigError::zero("pipeline", "per-item timeout"));
            }
            Chain::Source(_) => {
                self.error.get_or_insert(ConfigError::invalid(
                    "pipeline",
                    "timeout",
                    "applies to the stage added before it, and there is none",
                ));
            }
        }
        self
    }

    /// The stage added last, for an option that applies to it; records
    /// the error when there is none, or it runs no async function.
    fn last_async(&mut self, option: &'static str) -> Option<&mut StageOpts<In, E>> {
        let error = match &mut self.chain {
            Chain::Source(_) => ConfigError::invalid(
                "pipeline",
                option,
                "applies to the stage added before it, and there is none",
            ),
            Chain::Stage(last) if !last.opts.runs_async => ConfigError::invalid(
                "pipeline",
                option,
                "applies to a stage that runs an async function per item (map, map_ordered, filter_map, stage), not to filter or inspect",
            ),
            Chain::Stage(last) => return Some(&mut last.opts),
        };
        self.error.get_or_insert(error);
        None
    }

    /// Puts each item of the stage added last under an adaptive
    /// concurrency limit: every attempt to process an item holds a slot of
    /// `limit` while it runs, so at most `limit.limit()` of the stage's
    /// items are processed at once, and each one teaches the limit: a
    /// value (or a filtered item) is a success, the per-item
    /// [`timeout`](Self::timeout) firing is a drop (overload: the limit
    /// falls), an `Err` says nothing about the load (ignored), a panic
    /// frees the slot unjudged. The timeout counts inside the slot; with
    /// [`retry`](Self::retry), each attempt takes its own slot and a
    /// backoff holds none.
    ///
    /// The stage runs the workers it was given, and its worker takes a
    /// slot after it took an item: give the stage as many workers as the
    /// limit may allow ([`AdaptiveLimit::max`]); when the limit is lower,
    /// the other workers each wait with one item for a slot. (The stage
    /// does not spawn and retire workers as the limit moves: a stage's
    /// tasks are fixed when the pipeline starts, and each runs its
    /// [`Stage::setup`] once.) Other users of the same limit share its
    /// slots. The [`StageReport`]'s `limit` is the limit in force; each
    /// move of the limit is its own `DEBUG` event.
    ///
    /// A panicking attempt frees its slot with no verdict and is the
    /// stage's [`PipelineError::Panicked`]. When the pipeline stops
    /// (cancel, deadline, fail-fast, the output dropped), an item waiting
    /// for a slot or holding one is dropped at once and counted as
    /// `cancelled`; a slot it held is freed with no verdict (`abandoned`
    /// in [`AdaptiveLimit::stats`]).
    ///
    /// A call before any stage was added, or after `filter` or `inspect`
    /// (which run no async function), is a [`ConfigError`] when the
    /// pipeline starts.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_core::{AdaptiveLimit, Pipeline};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> anyhow::Result<()> {
    /// let limit = AdaptiveLimit::builder().initial(4).max(16).build()?;
    /// let report = Pipeline::from_iter(0..100u64)
    ///     .map("query", 16, |id| async move {
    ///         tokio::time::sleep(Duration::from_millis(5)).await;
    ///         anyhow::Ok(id)
    ///     })
    ///     .timeout(Duration::from_millis(100))
    ///     .adaptive(limit.clone())
    ///     .run()
    ///     .await?;
    /// assert_eq!(report.stage("query").unwrap().limit, Some(limit.limit()));
    /// assert_eq!(limit.stats().succeeded, 100);
    /// # Ok(())
    /// # }
    /// ```
    pub fn adaptive(mut self, limit: AdaptiveLimit) -> Self {
        if let Some(opts) = self.last_async("adaptive") {
            opts.adaptive = Some(limit);
        }
        self
    }

    /// Adds a stage: chains `launch_stage` after this pipeline.
    /// `runs_async`: whether the stage runs an async function per item
    /// (what [`adaptive`](Self::adaptive) and [`retry`](Self::retry) apply
    /// to).
    fn then<U: Send + 'static>(
        self,
        name: String,
        workers: usize,
        readers: usize,
        runs_async: bool,
        launch_stage: impl FnOnce(
            &Launch<E>,
            Vec<EdgeRx<T>>,
            &Arc<str>,
            ItemOpts<T, E>,
            usize,
        ) -> Vec<EdgeRx<U>>
        + Send
        + 'static,
    ) -> Pipeline<U, E, T> {
        let mut error = self.error;
        if let Err(e) = check_workers("pipeline", format!("workers of stage `{name}`"), workers) {
            error.get_or_insert(e);
        }
        let prev = self.chain.seal();
        let name: Arc<str> = Arc::from(name);
        Pipeline {
            name: self.name,
            chain: Chain::Stage(LastStage {
                seal: Box::new(move |opts| {
                    Box::new(move |l: &Launch<E>, consumers| {
                        let inputs = prev(l, readers);
                        launch_stage(l, inputs, &name, opts, consumers)
                    })
                }),
                opts: StageOpts::new(runs_async),
            }),
            capacity: self.capacity,
            error_capacity: self.error_capacity,
            parent: self.parent,
            policy: self.policy,
            error,
            origin: self.origin,
        }
    }

    /// Adds an unordered stage of `workers` tasks sharing one input, each a
    /// plain processing loop over `make(index)`.
    fn unordered<U, P>(
        self,
        name: String,
        workers: usize,
        runs_async: bool,
        make: impl Fn(usize) -> P + Send + 'static,
    ) -> Pipeline<U, E, T>
    where
        U: Send + 'static,
        P: Process<T, U, E>,
    {
        self.workers(name, workers, runs_async, move |env, input, tx, i, opts| {
            run::unordered_worker(env, input, tx, make(i), opts)
        })
    }

    /// Adds a stage of `workers` tasks sharing one input and one output;
    /// `worker(env, input, output, index, opts)` is each task.
    fn workers<U, W, Fut>(
        self,
        name: String,
        workers: usize,
        runs_async: bool,
        worker: W,
    ) -> Pipeline<U, E, T>
    where
        U: Send + 'static,
        W: Fn(Env<E>, EdgeRx<T>, channel::EdgeTx<U>, usize, ItemOpts<T, E>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.then(
            name,
            workers,
            workers,
            runs_async,
            move |l, inputs, name, opts, consumers| {
                let (tx, rx) = channel::edge(l.capacity, consumers);
                let counters = l.stage(name, workers, workers, opts.limit());
                for (i, input) in inputs.into_iter().enumerate() {
                    let task = worker(l.env(&counters), input, tx.clone(), i, opts.clone());
                    l.spawn(name, i, task);
                }
                rx
            },
        )
    }

    /// Adds a stage that runs `f` on every item with `workers` concurrent
    /// tasks and passes on what it returns, in the order items finish.
    ///
    /// With `workers > 1` the stage runs on several cores (each worker is a
    /// tokio task), unlike `StreamExt::buffer_unordered`, which polls every
    /// future in one task. Use [`map_ordered`](Self::map_ordered) to keep
    /// input order.
    ///
    /// `workers == 0`, or more than [`MAX_WORKERS`](crate::MAX_WORKERS), is
    /// a [`ConfigError`] when the pipeline starts.
    pub fn map<U, F, Fut>(self, name: impl Into<String>, workers: usize, f: F) -> Pipeline<U, E, T>
    where
        U: Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<U, E>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.unordered(name.into(), workers, true, move |_| MapFn(Arc::clone(&f)))
    }

    /// Like [`map`](Self::map), but the output keeps the input's order.
    ///
    /// Items are processed by `workers` concurrent tasks and put back in
    /// order before they are passed on. The reorder window is bounded: at
    /// most `max(capacity, workers)` items are inside the stage (being
    /// processed or waiting for an earlier one), so one slow item holds the
    /// stage back instead of letting its buffer grow. A failed or filtered
    /// item leaves no gap: the items after it still come out in order.
    pub fn map_ordered<U, F, Fut>(
        self,
        name: impl Into<String>,
        workers: usize,
        f: F,
    ) -> Pipeline<U, E, T>
    where
        U: Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<U, E>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.then(
            name.into(),
            workers,
            1,
            true,
            move |l, inputs, name, opts, consumers| {
                let window_size = l.capacity.max(workers);
                let window = Arc::new(Semaphore::new(window_size));
                let (work_tx, work_rxs) = channel::edge(workers, workers);
                // Results go one by one (a multi-reader edge with one reader), so
                // a worker that loses one knows whether it held an item.
                let (done_tx, done_rxs) = channel::edge_of_items(window_size);
                let (tx, rx) = channel::edge(l.capacity, consumers);
                let counters = l.stage(name, workers, workers + 2, opts.limit());
                for input in inputs {
                    let task = run::ordered_dispatcher(
                        l.env(&counters),
                        input,
                        work_tx.clone(),
                        Arc::clone(&window),
                    );
                    l.spawn(name, 0, task);
                }
                drop(work_tx);
                let workers_left = Arc::new(std::sync::atomic::AtomicUsize::new(workers));
                for (i, work_rx) in work_rxs.into_iter().enumerate() {
                    let task = run::ordered_worker(
                        l.env(&counters),
                        work_rx,
                        done_tx.clone(),
                        MapFn(Arc::clone(&f)),
                        opts.clone(),
                        Arc::clone(&workers_left),
                    );
                    l.spawn(name, i, task);
                }
                drop(done_tx);
                for done_rx in done_rxs {
                    let task = run::ordered_reorderer(
                        l.env(&counters),
                        done_rx,
                        tx.clone(),
                        Arc::clone(&window),
                    );
                    l.spawn(name, workers, task);
                }
                rx
            },
        )
    }

    /// Adds a stage that keeps only the items for which `pred` is true; the
    /// others are counted as filtered. One task; `pred` must not block.
    pub fn filter<F>(self, name: impl Into<String>, pred: F) -> Pipeline<T, E>
    where
        F: Fn(&T) -> bool + Send + Sync + 'static,
    {
        let f = Arc::new(move |item: T| pred(&item).then_some(item));
        self.unordered(name.into(), 1, false, move |_| SyncFn(Arc::clone(&f)))
    }

    /// Adds a stage that runs `f` on every item with `workers` concurrent
    /// tasks; `Ok(Some(u))` passes `u` on, `Ok(None)` drops the item
    /// (counted as filtered), `Err` fails it. Output order is the order
    /// items finish.
    pub fn filter_map<U, F, Fut>(
        self,
        name: impl Into<String>,
        workers: usize,
        f: F,
    ) -> Pipeline<U, E, T>
    where
        U: Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<U>, E>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.unordered(name.into(), workers, true, move |_| {
            FilterMapFn(Arc::clone(&f))
        })
    }

    /// Adds a stage that calls `f` on every item and passes it on unchanged
    /// (for logging and metrics). One task; `f` must not block.
    pub fn inspect<F>(self, name: impl Into<String>, f: F) -> Pipeline<T, E>
    where
        F: Fn(&T) + Send + Sync + 'static,
    {
        let f = Arc::new(move |item: T| {
            f(&item);
            Some(item)
        });
        self.unordered(name.into(), 1, false, move |_| SyncFn(Arc::clone(&f)))
    }

    /// Adds a stage written as a type with per-worker setup and teardown
    /// (see [`Stage`]), run by `workers` concurrent tasks. Output order is
    /// the order items finish.
    pub fn stage<S>(
        self,
        name: impl Into<String>,
        workers: usize,
        stage: S,
    ) -> Pipeline<S::Out, E, T>
    where
        S: Stage<T, Error = E>,
    {
        let stage = Arc::new(stage);
        self.workers(
            name.into(),
            workers,
            true,
            move |env, input, tx, i, opts| {
                run::stage_worker(env, input, tx, Arc::clone(&stage), i, opts)
            },
        )
    }

    /// Starts the pipeline and returns its output as a stream, with the
    /// handle to cancel, watch and join it.
    ///
    /// Must be called from within a tokio runtime: the stages are spawned
    /// on it.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if the pipeline was put together wrongly (zero or
    /// too many workers, zero capacity, a zero or misplaced timeout) or
    /// there is no runtime. Nothing was started then.
    pub fn into_stream(self) -> Result<(ItemStream<T>, PipelineHandle<E>), ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let capacity = check_capacity("pipeline", "capacity", self.capacity)?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ConfigError::no_runtime("pipeline"))?;
        let ctx = self
            .parent
            .as_ref()
            .map_or_else(Context::background, Context::child);
        let token = ctx.token();
        let error_capacity = self.error_capacity.min(crate::MAX_CAPACITY);
        let (errors, mut errors_rx) = lane(error_capacity.max(1));
        if self.error_capacity == 0 {
            errors_rx.close();
        }
        let sink = Arc::new(SinkState {
            token: token.clone(),
            consumer_gone: AtomicBool::new(false),
            delivered: AtomicU64::new(0),
            undelivered: AtomicU64::new(0),
        });
        let tracker = TaskTracker::new();
        // With metrics on, the stages' tasks are also tracked apart from the
        // publisher's, which ends when they have.
        #[cfg(feature = "metrics")]
        let work = TaskTracker::new();
        #[cfg(not(feature = "metrics"))]
        let work = tracker.clone();
        let shared = Arc::new(Shared {
            origin: self.origin,
            name: self.name,
            ctx,
            token,
            policy: self.policy,
            tracker,
            work,
            sink: Arc::clone(&sink),
            first_error: Mutex::new(None),
            errors_rx: Mutex::new(Some(errors_rx)),
            errors_taken: AtomicBool::new(false),
            errors_dropped: AtomicU64::new(0),
            interrupted: AtomicBool::new(false),
            stages: Mutex::new(Vec::new()),
            started: Instant::now(),
        });
        let launch = Launch {
            shared: Arc::clone(&shared),
            errors,
            capacity,
            runtime,
        };
        let rx = (self.chain.seal())(&launch, 1).into_iter().next();
        drop(launch);
        shared.work.close();
        #[cfg(feature = "metrics")]
        crate::metrics::publish_pipeline(&shared);
        shared.tracker.close();
        Ok((ItemStream::new(rx, sink), PipelineHandle::new(shared)))
    }

    /// Runs the pipeline and collects its output, in the order it comes
    /// out.
    ///
    /// # Errors
    ///
    /// As [`PipelineHandle::join`], plus [`PipelineError::Config`] (with an
    /// empty report) when the pipeline could not start.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the output, which stops the pipeline (see
    /// [`ItemStream`]'s "Dropped"); the items collected so far are lost.
    pub async fn collect(self) -> Result<Vec<T>, RunError<PipelineError<E>, PipelineReport>> {
        let (mut out, handle) = self.start()?;
        let mut items = Vec::new();
        while let Some(item) = out.recv().await {
            items.push(item);
        }
        drop(out);
        handle.join().await?;
        Ok(items)
    }

    /// Runs the pipeline and awaits `f` on each output item, one at a time,
    /// then returns the report.
    ///
    /// # Errors
    ///
    /// As [`collect`](Self::collect).
    ///
    /// # Cancel safety
    ///
    /// As [`collect`](Self::collect).
    pub async fn for_each<F, Fut>(
        self,
        mut f: F,
    ) -> Result<PipelineReport, RunError<PipelineError<E>, PipelineReport>>
    where
        F: FnMut(T) -> Fut,
        Fut: Future<Output = ()>,
    {
        let (mut out, handle) = self.start()?;
        while let Some(item) = out.recv().await {
            f(item).await;
        }
        drop(out);
        handle.join().await
    }

    /// Runs the pipeline, discarding its output, and returns the report.
    ///
    /// # Errors
    ///
    /// As [`collect`](Self::collect).
    ///
    /// # Cancel safety
    ///
    /// As [`collect`](Self::collect).
    pub async fn run(self) -> Result<PipelineReport, RunError<PipelineError<E>, PipelineReport>> {
        self.for_each(|_| std::future::ready(())).await
    }

    /// [`into_stream`](Self::into_stream) for the sinks: a settings error
    /// is their error, with an empty report.
    #[allow(clippy::type_complexity)]
    fn start(
        self,
    ) -> Result<(ItemStream<T>, PipelineHandle<E>), RunError<PipelineError<E>, PipelineReport>>
    {
        self.into_stream()
            .map_err(|e| RunError::new(PipelineError::Config(e), PipelineReport::default()))
    }
}

/// Retry needs to run the last stage again on the same item: its input
/// type must be `Clone`.
impl<T, E, In> Pipeline<T, E, In>
where
    T: Send + 'static,
    E: fmt::Display + Send + 'static,
    In: Clone,
{
    /// Retries each item of the stage added last, as `policy` says: an
    /// item whose stage function returns an error the policy retries
    /// (see [`RetryPolicyBuilder::retry_if`](crate::RetryPolicyBuilder::retry_if)),
    /// or runs past the per-item [`timeout`](Self::timeout), is run again
    /// on a clone of itself (the last attempt on the item itself) after a
    /// backoff, within the policy's attempts, time and budget. The timeout
    /// applies to each attempt; with [`adaptive`](Self::adaptive), each
    /// attempt takes its own slot and a backoff holds none.
    ///
    /// An item whose policy gives up fails with its last error
    /// ([`PipelineError::Failed`], or [`PipelineError::TimedOut`] when the
    /// last attempt timed out) under the pipeline's error policy; a panic is
    /// not retried ([`PipelineError::Panicked`]). No backoff is slept that
    /// would end after the pipeline's deadline: the item fails at once
    /// instead. When the pipeline stops, an attempt or a backoff in
    /// progress is dropped and the item counted as cancelled (the policy's
    /// stats count that call as abandoned). The [`StageReport`] counts
    /// `attempts`, `retries` and `budget_refusals`; each retry is a `DEBUG`
    /// event.
    ///
    /// A call before any stage was added, or after `filter` or `inspect`
    /// (which cannot fail), is a [`ConfigError`] when the pipeline starts.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    /// use weir_core::{Pipeline, RetryPolicy};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> anyhow::Result<()> {
    /// static CALLS: AtomicU32 = AtomicU32::new(0);
    /// let policy = RetryPolicy::builder().base(Duration::from_millis(10)).max_attempts(3).build()?;
    /// let report = Pipeline::from_iter(["a".to_owned(), "b".to_owned()])
    ///     .map("fetch", 2, |key: String| async move {
    ///         // Every other call is busy.
    ///         if CALLS.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
    ///             anyhow::bail!("{key}: busy");
    ///         }
    ///         Ok(key.len())
    ///     })
    ///     .retry(policy)
    ///     .run()
    ///     .await?;
    /// let fetch = report.stage("fetch").unwrap();
    /// assert_eq!(fetch.output, 2);
    /// assert!(fetch.retries >= 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn retry(mut self, policy: RetryPolicy<E>) -> Self {
        if let Some(opts) = self.last_async("retry") {
            opts.retry = Some(Retry {
                policy,
                clone: In::clone,
            });
        }
        self
    }
}
