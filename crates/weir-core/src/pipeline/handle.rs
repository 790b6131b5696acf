//! The caller's side of a running pipeline: its output, its errors and its
//! handle.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{self, Poll};

use weir_chan::lane::LaneRx;

use std::time::Duration;

use futures::Stream;

use super::error::PipelineError;
use super::progress::PipelineProgress;
use super::report::PipelineReport;
use super::run::{Shared, SinkState};
use crate::channel::{self, EdgeRx};
use weir_context::{ConfigError, Context, GraceExpired, RunError};

/// The output of a running pipeline, as a [`Stream`].
///
/// Ends when the last stage has passed on its last item. Made by
/// [`Pipeline::into_stream`](crate::Pipeline::into_stream).
///
/// # Dropped
///
/// Dropping the stream before it ends stops the whole pipeline: every stage
/// stops promptly (even one in the middle of an item), items in flight are
/// counted as cancelled, and what was waiting in the output is counted in
/// [`PipelineReport::undelivered`]. [`PipelineHandle::join`] then returns `Ok` with
/// the report: walking away from the output is not an error.
#[must_use = "streams do nothing unless polled"]
pub struct ItemStream<T> {
    /// `None` only if the pipeline had no output edge to give, which does
    /// not happen; the stream is then empty.
    rx: Option<EdgeRx<T>>,
    sink: Arc<SinkState>,
    done: bool,
}

impl<T> ItemStream<T> {
    pub(crate) fn new(rx: Option<EdgeRx<T>>, sink: Arc<SinkState>) -> Self {
        let done = rx.is_none();
        Self { rx, sink, done }
    }

    /// Receives the next output item; `None` once the pipeline's output has
    /// ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped before it completes, no item is
    /// lost.
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

// Nothing in the stream is ever pinned in place: the receivers it holds are
// moved freely (the one that needs pinning is boxed).
impl<T> Unpin for ItemStream<T> {}

impl<T> Stream for ItemStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<Option<T>> {
        let this = &mut *self;
        let Some(rx) = this.rx.as_mut().filter(|_| !this.done) else {
            return Poll::Ready(None);
        };
        let polled = rx.poll_recv(cx);
        match &polled {
            Poll::Ready(Some(_)) => {
                this.sink.delivered.fetch_add(1, Relaxed);
            }
            Poll::Ready(None) => this.done = true,
            Poll::Pending => {}
        }
        polled
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.rx.as_ref().map_or(0, EdgeRx::len), None)
    }
}

impl<T> Drop for ItemStream<T> {
    fn drop(&mut self) {
        let Some(rx) = self.rx.as_mut() else { return };
        if self.done || rx.is_finished() {
            return;
        }
        // The consumer walks away: stop everything upstream.
        self.sink.consumer_gone.store(true, Relaxed);
        self.sink.token.cancel();
        let left = channel::close_and_drain(rx);
        self.sink.undelivered.fetch_add(left, Relaxed);
        tracing::debug!(
            undelivered = left,
            "pipeline output dropped before its end; pipeline stopped"
        );
    }
}

impl<T> fmt::Debug for ItemStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemStream")
            .field("buffered", &self.rx.as_ref().map_or(0, EdgeRx::len))
            .field("done", &self.done)
            .finish()
    }
}

/// The errors of failed items under
/// [`ErrorPolicy::Continue`](crate::ErrorPolicy::Continue), as a [`Stream`].
///
/// Ends when every stage has ended. It is bounded
/// ([`Pipeline::error_capacity`](crate::Pipeline::error_capacity)) and never
/// blocks the pipeline: when it is full, further errors are only counted
/// ([`PipelineReport::errors_dropped`]). Taken with [`PipelineHandle::errors`].
#[must_use = "streams do nothing unless polled"]
pub struct ErrorStream<E> {
    rx: LaneRx<PipelineError<E>>,
}

impl<E> ErrorStream<E> {
    /// Receives the next error; `None` once every stage has ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn recv(&mut self) -> Option<PipelineError<E>> {
        std::future::poll_fn(|cx| self.rx.poll_recv(cx)).await
    }
}

impl<E> Stream for ErrorStream<E> {
    type Item = PipelineError<E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl<E> fmt::Debug for ErrorStream<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorStream")
            .field("buffered", &self.rx.len())
            .finish()
    }
}

/// Control over a running pipeline: cancel it, watch it, wait for it.
///
/// | call | does |
/// |---|---|
/// | [`cancel`](Self::cancel) | stops now |
/// | [`join`](Self::join) | waits for the end; the report, or the error with the report |
/// | [`shutdown`](Self::shutdown) | waits up to a grace period for the end, then cancels |
/// | [`report`](Self::report) | a snapshot of the counters while it runs |
/// | [`progress`](Self::progress) | a snapshot every period, with rates, until it ends |
/// | [`errors`](Self::errors) | the error stream under [`ErrorPolicy::Continue`](crate::ErrorPolicy::Continue) |
///
/// A pipeline has no `close()`: its intake is its source, which ends when
/// your iterator or stream ends, your generator returns, or every sender of
/// the receiver given to [`Pipeline::from_receiver`](crate::Pipeline::from_receiver)
/// is dropped; what entered before that runs to its end.
///
/// # Dropped
///
/// Dropping the handle does not stop the pipeline (like dropping a tokio
/// `JoinHandle`): it runs on until its output ends, the output stream is
/// dropped, or its context is cancelled. No task is leaked either way.
pub struct PipelineHandle<E = anyhow::Error> {
    shared: Arc<Shared<E>>,
}

impl<E> fmt::Debug for PipelineHandle<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineHandle")
            .field("shared", &self.shared)
            .finish()
    }
}

impl<E> PipelineHandle<E> {
    pub(crate) fn new(shared: Arc<Shared<E>>) -> Self {
        Self { shared }
    }

    /// Stops the pipeline: every stage stops promptly, items in flight are
    /// counted as cancelled, and [`join`](Self::join) returns
    /// [`PipelineError::Stopped`] with [`Cause::Cancelled`](crate::Cause::Cancelled) (unless a stage
    /// failed first under fail-fast, or the pipeline had already finished).
    /// For a cause of your own, `handle.context().cancel_with(value)`.
    pub fn cancel(&self) {
        self.shared.ctx.cancel();
    }

    /// The pipeline's context: a child of the one given to
    /// [`Pipeline::context`](crate::Pipeline::context). It is cancelled when
    /// the pipeline stops for any reason (cancel, first error under
    /// fail-fast, the consumer gone), so a task can wait on it; cancelling
    /// it is [`cancel`](Self::cancel), and `cancel_with(value)` makes
    /// `value` the cause [`join`](Self::join) reports.
    pub fn context(&self) -> &Context {
        &self.shared.ctx
    }

    /// A snapshot of the pipeline's counts and per-stage rates every
    /// `every`, and a last one as soon as every stage has ended: a live,
    /// cheap view of a long run (a progress bar per stage, a log line a
    /// minute). See [`PipelineProgress`].
    ///
    /// The stream only reads the counters the [`report`](Self::report) is
    /// made of, so it costs the pipeline nothing; any number of them may
    /// run at once.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] ([`Problem::Zero`](crate::Problem::Zero)) for a
    /// zero `every`. An `every` so long that the next tick is beyond the
    /// clock's range gives only the final snapshot.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures::StreamExt;
    /// use weir_core::Pipeline;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> anyhow::Result<()> {
    /// let (out, handle) = Pipeline::from_iter(0..50u64)
    ///     .map("slow", 1, |x| async move {
    ///         tokio::time::sleep(Duration::from_millis(100)).await;
    ///         anyhow::Ok(x)
    ///     })
    ///     .into_stream()?;
    /// let drain = tokio::spawn(out.count());
    /// let mut progress = handle.progress(Duration::from_secs(1))?;
    /// let first = progress.next().await.expect("a snapshot a second");
    /// let rate = first.stage("slow").map_or(0.0, |s| s.output_per_sec);
    /// assert!((8.0..=10.0).contains(&rate), "about 10 items a second: {rate}");
    /// let rest: Vec<_> = progress.collect().await;
    /// let last = rest.last().expect("the final snapshot");
    /// assert!(last.is_final && last.report.is_balanced());
    /// assert_eq!(drain.await?, 50);
    /// handle.join().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn progress(&self, every: Duration) -> Result<PipelineProgress, ConfigError>
    where
        E: Send + 'static,
    {
        PipelineProgress::start(Arc::clone(&self.shared), every)
    }

    /// Whether every task of the pipeline has ended.
    pub fn is_finished(&self) -> bool {
        self.shared.tracker.is_empty()
    }

    /// The errors of failed items, under
    /// [`ErrorPolicy::Continue`](crate::ErrorPolicy::Continue). Returns the
    /// stream the first time, `None` after that. Under fail-fast the stream
    /// ends without items: the first error comes from [`join`](Self::join).
    pub fn errors(&mut self) -> Option<ErrorStream<E>> {
        let rx = self
            .shared
            .errors_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        self.shared.errors_taken.store(true, Relaxed);
        Some(ErrorStream { rx })
    }

    /// A snapshot of the counters now, while the pipeline runs or after.
    pub fn report(&self) -> PipelineReport {
        self.shared.report()
    }

    /// The pipeline's name ([`Pipeline::name`](crate::Pipeline::name);
    /// `"pipeline"` unless set).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Waits until every task of the pipeline has ended, then says how it
    /// went.
    ///
    /// When `join` returns, no task of the pipeline is alive.
    ///
    /// # Errors
    ///
    /// A [`RunError`] carrying the final [`PipelineReport`] and:
    ///
    /// - under fail-fast, the first failure ([`PipelineError::Failed`],
    ///   [`Panicked`](PipelineError::Panicked) or
    ///   [`TimedOut`](PipelineError::TimedOut)), naming its stage; a failing
    ///   [`Stage::setup`](crate::Stage::setup) under either policy;
    /// - [`PipelineError::Stopped`] with the [`Cause`](crate::Cause) when the
    ///   pipeline was cancelled, or its context's deadline passed, before it
    ///   finished.
    ///
    /// Under [`ErrorPolicy::Continue`](crate::ErrorPolicy::Continue), failed
    /// items do not make `join` fail; they are in the report and on the
    /// error stream. Dropping the output stream early is not an error.
    ///
    /// # Waits for the consumer
    ///
    /// The last stage waits for room in the output, so `join` waits until
    /// the output stream is read to its end or dropped. Awaiting `join`
    /// while holding an unread stream in the same task waits forever: read
    /// or drop the stream first, or call [`cancel`](Self::cancel).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future leaves the pipeline running; the
    /// handle is consumed, so clone its [`context`](Self::context) first if
    /// you will want to cancel it later.
    pub async fn join(self) -> Result<PipelineReport, RunError<PipelineError<E>, PipelineReport>> {
        self.shared.tracker.wait().await;
        self.outcome()
    }

    /// Waits up to `grace` for the pipeline to end on its own, then cancels
    /// it (cause [`GraceExpired`]) and waits for its tasks to end. Returns
    /// what [`join`](Self::join) returns: after a cancel, the error is
    /// [`PipelineError::Stopped`] with the `GraceExpired` cause.
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the grace period is over leaves the
    /// pipeline running, as dropping `join` does; after it, the pipeline is
    /// already cancelled.
    pub async fn shutdown(
        self,
        grace: Duration,
    ) -> Result<PipelineReport, RunError<PipelineError<E>, PipelineReport>> {
        if tokio::time::timeout(grace, self.shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::debug!(
                ?grace,
                "pipeline did not end within its grace period; cancelling"
            );
            self.shared.ctx.cancel_with(GraceExpired { grace });
            self.shared.tracker.wait().await;
        }
        self.outcome()
    }

    /// How the pipeline ended, once every task has.
    fn outcome(&self) -> Result<PipelineReport, RunError<PipelineError<E>, PipelineReport>> {
        let report = self.report();
        let first = self
            .shared
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(err) = first {
            return Err(RunError::new(err, report));
        }
        let interrupted = self.shared.interrupted.load(Relaxed);
        let consumer_gone = self.shared.sink.consumer_gone.load(Relaxed);
        if interrupted && !consumer_gone {
            let cause = self.shared.ctx.stopped().into_cause();
            return Err(RunError::new(PipelineError::Stopped(cause), report));
        }
        Ok(report)
    }
}
