//! A long-lived worker pool for services: N worker tasks fed by one bounded
//! queue, with backpressure, a drop pattern, per-job results, resizing and a
//! graceful shutdown.
//!
//! A [`Pool`] is a cheap, clonable handle: any task can submit jobs at any
//! time. Each job comes back through a [`Ticket`] (a future of its result),
//! or, for fire-and-forget submitters, on the pool's [`PoolResults`] stream.
//!
//! | you want to | call |
//! |---|---|
//! | wait for room (backpressure) | [`submit`](Pool::submit) |
//! | never wait; get the job back if full | [`try_submit`](Pool::try_submit) |
//! | wait at most `d` | [`submit_timeout`](Pool::submit_timeout) |
//! | cap how many callers wait | [`max_waiting_submits`](PoolBuilder::max_waiting_submits) |
//! | not hold a ticket | [`submit_detached`](Pool::submit_detached) + [`results`](Pool::results) |
//! | change the worker count | [`resize`](Pool::resize) |
//! | see what happened | [`report`](Pool::report), [`progress`](Pool::progress) |
//! | stop | [`close`](Pool::close), [`join`](Pool::join), [`shutdown`](Pool::shutdown), [`cancel`](Pool::cancel) |
//!
//! [`Pool::builder`] checks its settings when it builds (a [`ConfigError`](weir_context::ConfigError)
//! for zero or too many workers, a zero results capacity, no tokio runtime)
//! and spawns the workers on the current runtime.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use weir_core::pool::{JobError, Pool};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> anyhow::Result<()> {
//! let pool = Pool::builder()
//!     .workers(2)
//!     .queue(8)
//!     .name("resize-images")
//!     .build(|n: u32| async move {
//!         tokio::time::sleep(Duration::from_millis(100)).await;
//!         if n == 3 {
//!             anyhow::bail!("image {n} is corrupt");
//!         }
//!         Ok(n * 10)
//!     })?;
//!
//! let mut tickets = Vec::new();
//! for n in 0..5 {
//!     tickets.push(pool.submit(n).await?); // waits while the queue is full
//! }
//! for ticket in tickets {
//!     match ticket.await {
//!         Ok(out) => println!("done: {out}"),
//!         Err(JobError::Failed(e)) => println!("failed: {e}"),
//!         Err(other) => println!("{other}"),
//!     }
//! }
//! let report = pool.join().await?; // close, drain, wait for the workers
//! assert_eq!((report.completed, report.failed), (4, 1));
//! # Ok(())
//! # }
//! ```
//!
//! # What happens on error, panic, cancellation and drop
//!
//! * **Error**: the handler's `Err(e)` resolves the job's ticket to
//!   [`JobError::Failed`]`(e)` and counts in the report's `failed`. The
//!   worker takes the next job.
//! * **Panic**: caught. The ticket resolves to [`JobError::Panicked`] with
//!   the [`Panic`](weir_context::Panic) (message and payload), `panicked` counts it, the
//!   builder's [`on_panic`](PoolBuilder::on_panic) handler is called, and
//!   the worker slot carries on (a [`JobHandler`] is replaced by a fresh one
//!   from its factory).
//! * **Cancellation** ([`Pool::cancel`], the builder's
//!   [`context`](PoolBuilder::context) cancelled or past its deadline, the
//!   grace period of [`shutdown`](Pool::shutdown)): intake closes, running
//!   jobs are dropped at their next `.await`, queued jobs are dropped; their
//!   tickets resolve to [`JobError::Cancelled`] with the [`Cause`](weir_context::Cause), the
//!   report's `cancelled` counts them, and `join`/`shutdown` return
//!   [`PoolError::Stopped`] with that cause.
//! * **Dropping a ticket** does not cancel its job; the result is discarded.
//! * **Dropping the last [`Pool`] handle** closes intake like
//!   [`close`](Pool::close): the workers finish what is queued, then end. No
//!   task outlives that (a [`WeakPool`] or the [`PoolResults`] stream does
//!   not keep the pool open). To bound the time, call `shutdown(grace)`.
//! * **Rejections** (`try_submit` on a full queue, `submit_timeout` past its
//!   deadline, a submit beyond [`max_waiting_submits`](PoolBuilder::max_waiting_submits),
//!   any submit on a closed pool) hand the job back in the error and count
//!   in `rejected`.
//!
//! Logs: each worker runs in a tracing span `worker` with the fields `pool`
//! (the name) and `worker` (its index). A job that fails or panics logs one
//! event, with the error's `Display` text: `DEBUG` when its ticket or a held
//! results stream receives it, `WARN` for a detached job whose result nobody
//! can receive. A successful job logs nothing.
//!
//! # How jobs reach the workers
//!
//! A worker takes a share of the queue at once (`len / workers` jobs, at
//! least 1, at most 64), so under load the queue's lock is paid per share,
//! not per job. The jobs of its share that it has not started go back to
//! the front of the queue, in order, as soon as it would wait for anything
//! (a job that is not done at its first poll, a full results stream, a
//! panic's fresh worker, a shrink, its end), and idle workers are woken for
//! them: a slow job never holds quick ones while another worker is free.
//! With one worker, jobs start in submission order. A share counts as
//! queued in the [`PoolReport`].
//!
//! # A job that submits to its own pool
//!
//! A job may hold a [`Pool`] (or a [`WeakPool`]) handle and submit follow-up
//! jobs. With [`submit`](Pool::submit) that can deadlock: when every worker
//! runs such a job and the queue is full, each waits for room only a worker
//! could make. Nothing moves until the pool is closed ([`close`](Pool::close),
//! `join`, `shutdown`, cancellation), which fails the waiting submits with
//! [`SubmitError::Closed`] (handing their jobs back). Use
//! [`try_submit`](Pool::try_submit) (and handle [`TrySubmitError::Full`]) or
//! [`submit_timeout`](Pool::submit_timeout) inside jobs. A handler closure
//! that captures a `Pool` keeps the pool open after its other handles are
//! dropped; capture a [`WeakPool`] instead.
//!
//! # Comparison to a hand-written pool
//!
//! The Go shape (`jobs` channel, N goroutines, `results` channel,
//! `sync.WaitGroup`) written with tokio needs a shared receiver, a results
//! channel sized so workers never block forever, panic handling, and a
//! shutdown that neither loses queued jobs nor leaks tasks. The pool is that,
//! plus counters, resizing and tickets; `benches/pool.rs` measures its cost
//! beside the hand-written version.

mod builder;
mod counters;
mod error;
mod progress;

mod report;
mod results;
mod runner;
mod ticket;
mod worker;

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{SemaphorePermit, TryAcquireError, oneshot};

use weir_context::__private::{check_workers, deadline_after};
use weir_context::{Context, GraceExpired, RunError};

pub use builder::PoolBuilder;
pub use error::{
    JobError, PoolError, ResizeError, SubmitError, SubmitTimeoutError, TrySubmitError,
};
pub use progress::{PoolProgress, PoolSnapshot};
pub use report::PoolReport;
pub use results::PoolResults;
pub use ticket::{JobId, JobResult, Ticket};
pub use worker::JobHandler;

use ticket::{Envelope, Reply};
use weir_chan::queue::{PushTimeoutError, QueueTx, TryPushError, WeakQueueTx};
use worker::Shared;

/// A handle to a worker pool; see the [module docs](self).
///
/// Clones share the pool. The pool closes (and its workers end after
/// draining the queue) when the last handle is dropped or on
/// [`close`](Self::close), [`join`](Self::join) or
/// [`shutdown`](Self::shutdown); it stops at once on
/// [`cancel`](Self::cancel).
pub struct Pool<J, O, E = anyhow::Error> {
    queue: QueueTx<Envelope<J, O, E>>,
    shared: Arc<Shared<J, O, E>>,
}

impl<J, O, E> Clone for Pool<J, O, E> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<J, O, E> fmt::Debug for Pool<J, O, E>
where
    J: Send + 'static,
    O: Send + 'static,
    E: fmt::Display + Send + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.shared.name)
            .field("closed", &self.queue.is_closed())
            .field("report", &self.shared.report())
            .finish()
    }
}

impl Pool<(), (), ()> {
    /// Starts configuring a pool. Finish with
    /// [`build`](PoolBuilder::build) (a closure handler) or
    /// [`build_with`](PoolBuilder::build_with) (a [`JobHandler`] per worker).
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }
}

impl<J, O, E> Pool<J, O, E>
where
    J: Send + 'static,
    O: Send + 'static,
    E: fmt::Display + Send + 'static,
{
    pub(crate) fn from_parts(
        queue: QueueTx<Envelope<J, O, E>>,
        shared: Arc<Shared<J, O, E>>,
    ) -> Self {
        Self { queue, shared }
    }

    /// Submits a job, waiting while the queue is full (backpressure), and
    /// returns its [`Ticket`].
    ///
    /// # Errors
    ///
    /// [`SubmitError::Closed`] with the job if the pool is closed (or closes
    /// while this waits); [`SubmitError::Overloaded`] with the job if the
    /// queue is full and [`max_waiting_submits`](PoolBuilder::max_waiting_submits)
    /// callers already wait. Either is counted in the report's `rejected`.
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped before it completes, the job was not
    /// submitted and is dropped with it (nothing is counted). To keep the
    /// job when giving up, use [`submit_timeout`](Self::submit_timeout) or
    /// [`try_submit`](Self::try_submit).
    ///
    /// Inside a job of this same pool prefer `try_submit`: see
    /// [the module docs](self#a-job-that-submits-to-its-own-pool).
    pub async fn submit(&self, job: J) -> Result<Ticket<O, E>, SubmitError<J>> {
        let (tx, rx) = oneshot::channel();
        let id = self.push(job, Reply::Ticket(tx)).await?;
        Ok(Ticket::new(id, rx))
    }

    /// Submits a job if there is room now, without waiting: the drop pattern
    /// for a caller that must not block.
    ///
    /// With `queue(0)` this succeeds only while a worker is idle and waiting
    /// (right after `build` the workers may not have started yet).
    ///
    /// # Errors
    ///
    /// [`TrySubmitError::Full`] or [`TrySubmitError::Closed`], each with the
    /// job, which is counted in the report's `rejected`.
    pub fn try_submit(&self, job: J) -> Result<Ticket<O, E>, TrySubmitError<J>> {
        let (tx, rx) = oneshot::channel();
        let id = self.try_push(job, Reply::Ticket(tx))?;
        Ok(Ticket::new(id, rx))
    }

    /// Submits a job, waiting at most `timeout` for room. `Duration::ZERO`
    /// tries once without waiting; a timeout whose deadline is beyond the
    /// clock's range (`Duration::MAX`) waits like [`submit`](Self::submit).
    ///
    /// # Errors
    ///
    /// [`SubmitTimeoutError::Timeout`], [`SubmitTimeoutError::Closed`] or
    /// [`SubmitTimeoutError::Overloaded`], each with the job, which is
    /// counted in the report's `rejected`.
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped before it completes, the job was not
    /// submitted and is dropped with it.
    pub async fn submit_timeout(
        &self,
        job: J,
        timeout: Duration,
    ) -> Result<Ticket<O, E>, SubmitTimeoutError<J>> {
        let (tx, rx) = oneshot::channel();
        let id = self.push_timeout(job, Reply::Ticket(tx), timeout).await?;
        Ok(Ticket::new(id, rx))
    }

    /// Submits a job whose result goes to the [`PoolResults`] stream instead
    /// of a ticket, waiting while the queue is full. Take the stream with
    /// [`results`](Self::results) first: results that end while nobody holds
    /// it are discarded (and still counted).
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    ///
    /// # Cancel safety
    ///
    /// As [`submit`](Self::submit).
    pub async fn submit_detached(&self, job: J) -> Result<JobId, SubmitError<J>> {
        self.push(job, Reply::Detached).await
    }

    /// [`try_submit`](Self::try_submit) for a detached job.
    ///
    /// # Errors
    ///
    /// As [`try_submit`](Self::try_submit).
    pub fn try_submit_detached(&self, job: J) -> Result<JobId, TrySubmitError<J>> {
        self.try_push(job, Reply::Detached)
    }

    /// [`submit_timeout`](Self::submit_timeout) for a detached job.
    ///
    /// # Errors
    ///
    /// As [`submit_timeout`](Self::submit_timeout).
    ///
    /// # Cancel safety
    ///
    /// As [`submit_timeout`](Self::submit_timeout).
    pub async fn submit_detached_timeout(
        &self,
        job: J,
        timeout: Duration,
    ) -> Result<JobId, SubmitTimeoutError<J>> {
        self.push_timeout(job, Reply::Detached, timeout).await
    }

    /// Submits, waiting for room: the fast path is one `try_push` and one
    /// atomic add (the id); only a full queue counts a waiter.
    async fn push(&self, job: J, reply: Reply<O, E>) -> Result<JobId, SubmitError<J>> {
        let counters = &self.shared.counters;
        let id = JobId(counters.next_id());
        let env = match self.queue.try_push(Envelope { id, job, reply }) {
            Ok(()) => return Ok(id),
            Err(TryPushError::Full(env)) => env,
            Err(TryPushError::Closed(env)) => {
                self.rejected(id, "closed");
                return Err(SubmitError::Closed(env.job));
            }
        };
        let Ok(_permit) = self.wait_permit() else {
            self.rejected(id, "overloaded");
            return Err(SubmitError::Overloaded(env.job));
        };
        let waiting = counters.waiting();
        let pushed = self.queue.push(env).await;
        match pushed {
            Ok(()) => {
                waiting.done();
                Ok(id)
            }
            Err(env) => {
                self.rejected(id, "closed");
                waiting.done();
                Err(SubmitError::Closed(env.job))
            }
        }
    }

    fn try_push(&self, job: J, reply: Reply<O, E>) -> Result<JobId, TrySubmitError<J>> {
        let id = JobId(self.shared.counters.next_id());
        match self.queue.try_push(Envelope { id, job, reply }) {
            Ok(()) => Ok(id),
            Err(TryPushError::Full(env)) => {
                self.rejected(id, "full");
                Err(TrySubmitError::Full(env.job))
            }
            Err(TryPushError::Closed(env)) => {
                self.rejected(id, "closed");
                Err(TrySubmitError::Closed(env.job))
            }
        }
    }

    async fn push_timeout(
        &self,
        job: J,
        reply: Reply<O, E>,
        timeout: Duration,
    ) -> Result<JobId, SubmitTimeoutError<J>> {
        let counters = &self.shared.counters;
        let id = JobId(counters.next_id());
        let env = match self.queue.try_push(Envelope { id, job, reply }) {
            Ok(()) => return Ok(id),
            Err(TryPushError::Full(env)) if timeout.is_zero() => {
                self.rejected(id, "timeout");
                return Err(SubmitTimeoutError::Timeout(env.job));
            }
            Err(TryPushError::Full(env)) => env,
            Err(TryPushError::Closed(env)) => {
                self.rejected(id, "closed");
                return Err(SubmitTimeoutError::Closed(env.job));
            }
        };
        let Ok(_permit) = self.wait_permit() else {
            self.rejected(id, "overloaded");
            return Err(SubmitTimeoutError::Overloaded(env.job));
        };
        let waiting = counters.waiting();
        let pushed = self.queue.push_timeout(env, timeout).await;
        match pushed {
            Ok(()) => {
                waiting.done();
                Ok(id)
            }
            Err(PushTimeoutError::Timeout(env)) => {
                self.rejected(id, "timeout");
                waiting.done();
                Err(SubmitTimeoutError::Timeout(env.job))
            }
            Err(PushTimeoutError::Closed(env)) => {
                self.rejected(id, "closed");
                waiting.done();
                Err(SubmitTimeoutError::Closed(env.job))
            }
        }
    }

    /// Leave to wait for room, held for as long as the caller waits (a
    /// permit when `max_waiting_submits` is set); `Err` when that many
    /// callers already wait.
    fn wait_permit(&self) -> Result<Option<SemaphorePermit<'_>>, TryAcquireError> {
        match &self.shared.waiting_limit {
            None => Ok(None),
            Some(limit) => limit.try_acquire().map(Some),
        }
    }

    /// Counts a rejection and logs it.
    fn rejected(&self, id: JobId, reason: &'static str) {
        self.shared.counters.rejected();
        tracing::debug!(pool = %self.shared.name, job = %id, reason, "job rejected");
    }

    /// Takes the [`PoolResults`] stream of detached jobs. Only the first
    /// call returns it; later calls return `None`.
    pub fn results(&self) -> Option<PoolResults<O, E>> {
        self.shared.take_results()
    }

    /// Changes the number of workers while the pool runs. Growing spawns the
    /// new workers at once; shrinking lets the extra workers finish their
    /// current job and leave (idle ones leave at once). Like pond's `Resize`
    /// and ants' `Tune`.
    ///
    /// # Errors
    ///
    /// [`ResizeError::Config`] for `0` ([`Problem::Zero`](weir_context::Problem::Zero))
    /// or more than [`MAX_WORKERS`](weir_context::MAX_WORKERS)
    /// ([`Problem::TooLarge`](weir_context::Problem::TooLarge)); nothing
    /// changes. [`ResizeError::Closed`] once the pool is closed.
    pub fn resize(&self, workers: usize) -> Result<(), ResizeError> {
        let workers = check_workers(self.construct(), "workers", workers)?;
        if self.queue.is_closed() || self.shared.token.is_cancelled() {
            return Err(ResizeError::Closed);
        }
        let leaving = self.shared.resize(workers);
        // Wake idle workers that should leave; busy ones look after their job.
        if leaving > 0 {
            self.queue.kick(leaving);
        }
        Ok(())
    }

    fn construct(&self) -> String {
        format!("pool `{}`", self.shared.name)
    }

    /// A live snapshot of the counts; see [`PoolReport`]. After the pool
    /// ended, the final report.
    pub fn report(&self) -> PoolReport {
        self.shared.report()
    }

    /// A snapshot of the pool's counts and rates every `every`, and a last
    /// one as soon as its last worker has ended: a live, cheap view of a
    /// long run. See [`PoolProgress`].
    ///
    /// The stream only reads the counters the [`report`](Self::report) is
    /// made of, so it costs the pool nothing; it does not keep the pool
    /// open.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](weir_context::ConfigError)
    /// ([`Problem::Zero`](weir_context::Problem::Zero)) for a zero `every`.
    /// An `every` so long that the next tick is beyond the clock's range
    /// gives only the final snapshot.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures::StreamExt;
    /// use weir_core::Pool;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> anyhow::Result<()> {
    /// let pool = Pool::builder().workers(2).queue(100).build(|_: u32| async {
    ///     tokio::time::sleep(Duration::from_millis(100)).await;
    ///     anyhow::Ok(())
    /// })?;
    /// let progress = pool.progress(Duration::from_secs(1))?;
    /// for job in 0..60 {
    ///     pool.submit_detached(job).await?;
    /// }
    /// pool.close(); // the workers drain the queue, then the stream ends
    /// let snapshots: Vec<_> = progress.collect().await;
    /// let last = snapshots.last().expect("the final snapshot");
    /// assert!(last.is_final);
    /// assert_eq!(last.report.completed, 60);
    /// // Two workers, 100 ms a job: about 20 jobs a second.
    /// assert!(snapshots[0].finished_per_sec >= 18.0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn progress(&self, every: Duration) -> Result<PoolProgress, weir_context::ConfigError> {
        self.shared.progress(every)
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Whether the pool takes no more jobs.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Stops intake without waiting: submits fail from now on (a submit
    /// waiting for room gets its job back), the workers finish what is
    /// queued and end. [`join`](Self::join) does this and waits.
    pub fn close(&self) {
        self.queue.close();
        self.shared.tracker.close();
    }

    /// Stops the pool now: intake closes, running jobs are dropped at their
    /// next `.await`, queued jobs are dropped; their tickets resolve to
    /// [`JobError::Cancelled`] with [`Cause::Cancelled`](weir_context::Cause::Cancelled). Does not wait
    /// (call [`join`](Self::join) afterwards to wait for the workers and get
    /// the report). The builder's context is not cancelled.
    pub fn cancel(&self) {
        self.close();
        self.shared.cancel_now();
    }

    /// The pool's context: a child of the builder's
    /// [`context`](PoolBuilder::context). Cancelling it (or
    /// `cancel_with(cause)`) cancels the pool; [`Context::cause`] says why
    /// the pool was stopped. `context().token()` gives it as a
    /// `CancellationToken`.
    pub fn context(&self) -> &Context {
        &self.shared.ctx
    }

    /// Closes intake ([`close`](Self::close)), lets the workers finish every
    /// queued job, waits until every worker task has ended and returns the
    /// final report. Calling it from several handles waits for the same
    /// end.
    ///
    /// A [`PoolResults`] stream that is held but not read can keep a worker
    /// waiting (backpressure): read or drop it, or use
    /// [`shutdown`](Self::shutdown) to bound the wait.
    ///
    /// # Errors
    ///
    /// [`PoolError::Stopped`] with the cause, inside a [`RunError`] that
    /// carries the final report, when the pool was cancelled ([`cancel`](Self::cancel),
    /// its context) and at least one accepted job was cancelled with it.
    /// `Ok` when every accepted job ran to its end (failed and panicked
    /// jobs ran to their end: they are counted in the report).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not undo the close: the workers drain and
    /// end on their own.
    pub async fn join(self) -> Result<PoolReport, RunError<PoolError, PoolReport>> {
        self.close();
        self.shared.tracker.wait().await;
        self.ended()
    }

    /// Closes intake, waits up to `grace` for the queued and running jobs to
    /// finish, then cancels the rest with the cause [`GraceExpired`]
    /// `{ grace }` (running jobs are dropped at their next `.await`, queued
    /// ones are dropped, their tickets get [`JobError::Cancelled`]) and waits
    /// for the workers to end. A `grace` whose deadline is beyond the clock's
    /// range waits like [`join`](Self::join); `Duration::ZERO` cancels
    /// whatever has not ended at once.
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join): [`PoolError::Stopped`] with
    /// [`GraceExpired`] as the cause when the grace period ran out with jobs
    /// left, with the final report.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the grace period ends leaves the pool
    /// draining, as after [`close`](Self::close); nothing is cancelled.
    pub async fn shutdown(
        &self,
        grace: Duration,
    ) -> Result<PoolReport, RunError<PoolError, PoolReport>> {
        self.close();
        let tracker = &self.shared.tracker;
        let drained = match deadline_after(grace) {
            None => {
                tracker.wait().await;
                true
            }
            Some(deadline) => tokio::time::timeout_at(deadline, tracker.wait())
                .await
                .is_ok(),
        };
        if !drained && !self.shared.has_ended() {
            let left = self.report().in_flight();
            tracing::debug!(pool = %self.shared.name, jobs = left, ?grace, "shutdown grace period over; cancelling the rest");
            self.shared.ctx.cancel_with(GraceExpired { grace });
            self.shared.cancel_now();
            tracker.wait().await;
        }
        self.ended()
    }

    /// The final report, and how the run ended.
    fn ended(&self) -> Result<PoolReport, RunError<PoolError, PoolReport>> {
        let report = self.report();
        if report.cancelled == 0 {
            return Ok(report);
        }
        Err(RunError::new(
            PoolError::Stopped(self.shared.cause()),
            report,
        ))
    }

    /// A handle that does not keep the pool open: give it to a handler that
    /// submits follow-up jobs, so dropping the other handles still closes
    /// the pool.
    pub fn downgrade(&self) -> WeakPool<J, O, E> {
        WeakPool {
            queue: self.queue.downgrade(),
            shared: Arc::downgrade(&self.shared),
        }
    }
}

/// A [`Pool`] handle that does not keep the pool open; see [`Pool::downgrade`].
pub struct WeakPool<J, O, E = anyhow::Error> {
    queue: WeakQueueTx<Envelope<J, O, E>>,
    shared: Weak<Shared<J, O, E>>,
}

impl<J, O, E> WeakPool<J, O, E> {
    /// The pool, if it is still open.
    pub fn upgrade(&self) -> Option<Pool<J, O, E>> {
        Some(Pool {
            shared: self.shared.upgrade()?,
            queue: self.queue.upgrade()?,
        })
    }
}

impl<J, O, E> Clone for WeakPool<J, O, E> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<J, O, E> fmt::Debug for WeakPool<J, O, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakPool").finish_non_exhaustive()
    }
}
