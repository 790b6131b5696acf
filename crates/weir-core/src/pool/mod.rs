//! A long-lived worker pool for services: N worker tasks fed by one bounded
//! queue, with backpressure, a drop pattern, per-job results, resizing and a
//! graceful shutdown.
//!
//! A [`Pool`] is a cheap, clonable handle: any task can submit jobs at any
//! time. Each job comes back through a [`Ticket`] (a future of its result),
//! or, for fire-and-forget submitters, on the pool's [`Results`] stream.
//!
//! | you want to | call |
//! |---|---|
//! | wait for room (backpressure) | [`submit`](Pool::submit) |
//! | never wait; get the job back if full | [`try_submit`](Pool::try_submit) |
//! | wait at most `d` | [`submit_timeout`](Pool::submit_timeout) |
//! | not hold a ticket | [`submit_detached`](Pool::submit_detached) + [`results`](Pool::results) |
//! | change the worker count | [`resize`](Pool::resize) |
//! | see what happened | [`stats`](Pool::stats) |
//! | stop | [`shutdown`](Pool::shutdown), [`shutdown_timeout`](Pool::shutdown_timeout), [`cancel`](Pool::cancel) |
//!
//! [`Pool::builder`] needs a tokio runtime: `build` spawns the workers on the
//! current one (and returns [`PoolError::NoRuntime`] outside of one).
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
//! let report = pool.shutdown().await;
//! assert_eq!(report.stats.completed, 4);
//! assert_eq!(report.stats.failed, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # What happens on error, panic, cancellation and drop
//!
//! * **Error**: the handler's `Err(e)` resolves the job's ticket to
//!   [`JobError::Failed`]`(e)`, counts in `stats().failed` and logs a `warn`
//!   event. The worker takes the next job.
//! * **Panic**: caught. The ticket resolves to [`JobError::Panicked`] with the
//!   panic's message, `stats().panicked` counts it, an `error` event is logged
//!   and the worker slot carries on (a [`PoolWorker`] is replaced by a fresh
//!   one from its factory).
//! * **Cancellation** ([`Pool::cancel`], the builder's
//!   [`token`](PoolBuilder::token), the deadline of
//!   [`shutdown_timeout`](Pool::shutdown_timeout)): intake closes, running
//!   jobs are dropped at their next `.await`, queued jobs are dropped; all of
//!   their tickets resolve to [`JobError::Cancelled`] and `stats().cancelled`
//!   counts them.
//! * **Dropping a ticket** does not cancel its job; the result is discarded.
//! * **Dropping the last [`Pool`] handle** closes intake like
//!   [`close`](Pool::close): the workers finish what is queued, then end. No
//!   task outlives that (a [`WeakPool`] or the [`Results`] stream does not keep
//!   the pool open). To bound the time, call `shutdown_timeout` instead.
//! * **Rejections** (`try_submit` on a full queue, `submit_timeout` past its
//!   deadline, any submit on a closed pool) hand the job back in the error,
//!   count in `stats().rejected` and log a `debug` event (a drop pattern
//!   rejects often; the count is the signal).
//!
//! Each worker runs in a tracing span `worker` with the fields `pool` (the
//! name) and `worker` (its index).
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
//! queued in [`PoolStats`].
//!
//! # A job that submits to its own pool
//!
//! A job may hold a [`Pool`] (or a [`WeakPool`]) handle and submit follow-up
//! jobs. With [`submit`](Pool::submit) that can deadlock: when every worker
//! runs such a job and the queue is full, each waits for room only a worker
//! could make. Nothing moves until the pool is closed ([`close`](Pool::close),
//! `shutdown`, cancellation), which fails the waiting submits with
//! [`SubmitError`] (handing their jobs back). Use
//! [`try_submit`](Pool::try_submit) (and handle [`TrySubmitError::Full`]) or
//! [`submit_timeout`](Pool::submit_timeout) inside jobs. A handler closure that captures a `Pool` keeps the pool open after
//! its other handles are dropped; capture a [`WeakPool`] instead.
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
mod error;
mod queue;
mod results;
mod stats;
mod ticket;
mod worker;

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use weir_context::Context;

pub use builder::PoolBuilder;
pub use error::{JobError, PoolError, SubmitError, SubmitTimeoutError, TrySubmitError};
pub use results::Results;
pub use stats::{PoolReport, PoolStats};
pub use ticket::{JobId, JobResult, Ticket};
pub use worker::PoolWorker;

use queue::{PushTimeoutError, QueueTx, TryPushError, WeakQueueTx};
use ticket::{Envelope, Reply};
use worker::Shared;

/// A handle to a worker pool; see the [module docs](self).
///
/// Clones share the pool. The pool closes (and its workers end after
/// draining the queue) when the last handle is dropped or on
/// [`close`](Self::close), [`shutdown`](Self::shutdown) and friends.
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
    E: Send + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.shared.name)
            .field("closed", &self.queue.is_closed())
            .field("stats", &self.shared.stats())
            .finish()
    }
}

impl Pool<(), (), ()> {
    /// Starts configuring a pool. Finish with
    /// [`build`](PoolBuilder::build) (a closure handler) or
    /// [`build_with`](PoolBuilder::build_with) (a [`PoolWorker`] per worker).
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }
}

impl<J, O, E> Pool<J, O, E>
where
    J: Send + 'static,
    O: Send + 'static,
    E: Send + 'static,
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
    /// [`SubmitError`] with the job if the pool is closed (or closes while
    /// this waits).
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
    /// job, which is counted in `stats().rejected`.
    pub fn try_submit(&self, job: J) -> Result<Ticket<O, E>, TrySubmitError<J>> {
        let (tx, rx) = oneshot::channel();
        let id = self.try_push(job, Reply::Ticket(tx))?;
        Ok(Ticket::new(id, rx))
    }

    /// Submits a job, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`SubmitTimeoutError::Timeout`] or [`SubmitTimeoutError::Closed`], each
    /// with the job, which is counted in `stats().rejected`.
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

    /// Submits a job whose result goes to the [`Results`] stream instead of
    /// a ticket, waiting while the queue is full. Take the stream with
    /// [`results`](Self::results) first: results that end while nobody holds
    /// it are discarded (and still counted).
    ///
    /// # Errors
    ///
    /// [`SubmitError`] with the job if the pool is closed.
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
                return Err(SubmitError(env.job));
            }
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
                Err(SubmitError(env.job))
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
        let waiting = counters.waiting();
        let pushed = self
            .queue
            .push_timeout(Envelope { id, job, reply }, timeout)
            .await;
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

    /// Counts a rejection and logs it.
    fn rejected(&self, id: JobId, reason: &'static str) {
        self.shared.counters.rejected();
        tracing::debug!(pool = %self.shared.name, job = %id, reason, "job rejected");
    }

    /// Takes the [`Results`] stream of detached jobs. Only the first call
    /// returns it; later calls return `None`.
    pub fn results(&self) -> Option<Results<O, E>> {
        self.shared.take_results()
    }

    /// Changes the number of workers while the pool runs. Growing spawns the
    /// new workers at once; shrinking lets the extra workers finish their
    /// current job and leave (idle ones leave at once). Like pond's `Resize`
    /// and ants' `Tune`.
    ///
    /// # Errors
    ///
    /// [`PoolError::ZeroWorkers`] for `0`; [`PoolError::Closed`] once the
    /// pool is closed.
    pub fn resize(&self, workers: usize) -> Result<(), PoolError> {
        if workers == 0 {
            return Err(PoolError::ZeroWorkers);
        }
        if self.queue.is_closed() || self.shared.token.is_cancelled() {
            return Err(PoolError::Closed);
        }
        let leaving = self.shared.resize(workers);
        // Wake idle workers that should leave; busy ones look after their job.
        if leaving > 0 {
            self.queue.kick(leaving);
        }
        Ok(())
    }

    /// A snapshot of the counters; see [`PoolStats`].
    pub fn stats(&self) -> PoolStats {
        self.shared.stats()
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Whether the pool takes no more jobs.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Stops intake without waiting: submits fail from now on, the workers
    /// finish what is queued and end. [`shutdown`](Self::shutdown) does this
    /// and waits.
    pub fn close(&self) {
        self.queue.close();
        self.shared.tracker.close();
    }

    /// Stops the pool now: intake closes, running jobs are dropped at their
    /// next `.await`, queued jobs are dropped; their tickets resolve to
    /// [`JobError::Cancelled`]. Does not wait (call [`shutdown`](Self::shutdown)
    /// afterwards to wait for the workers and get the report).
    pub fn cancel(&self) {
        self.close();
        self.shared.cancel_now();
    }

    /// The pool's context (a child of the builder's
    /// [`context`](PoolBuilder::context) or [`token`](PoolBuilder::token), if
    /// any): cancelling it cancels the pool; [`Context::cause`] says why the
    /// pool was stopped.
    pub fn context(&self) -> &Context {
        &self.shared.ctx
    }

    /// The pool's cancellation token (a child of the builder's
    /// [`token`](PoolBuilder::token), if any): cancelling it is
    /// [`cancel`](Self::cancel).
    pub fn token(&self) -> CancellationToken {
        self.shared.token.clone()
    }

    /// Stops intake, drains the queue (every queued job runs), waits for
    /// every worker to end and reports. Calling it again, or from another
    /// handle, waits for the same end.
    ///
    /// A [`Results`] stream that is held but not read can keep a worker
    /// waiting (backpressure): read or drop it, or use
    /// [`shutdown_timeout`](Self::shutdown_timeout).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not undo the shutdown: intake stays closed
    /// and the workers drain and end on their own.
    pub async fn shutdown(&self) -> PoolReport {
        self.shutdown_inner(None).await
    }

    /// Like [`shutdown`](Self::shutdown), but drains only until `grace` has
    /// passed; then it cancels the rest (running jobs dropped, queued jobs
    /// dropped, their tickets [`JobError::Cancelled`]) and reports how many
    /// jobs were drained and how many cancelled.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the deadline leaves the pool draining, as
    /// after [`close`](Self::close); nothing is cancelled.
    pub async fn shutdown_timeout(&self, grace: Duration) -> PoolReport {
        self.shutdown_inner(Some(grace)).await
    }

    async fn shutdown_inner(&self, grace: Option<Duration>) -> PoolReport {
        let start = tokio::time::Instant::now();
        let before = self.stats();
        self.close();
        let tracker = &self.shared.tracker;
        let timed_out = match grace {
            None => {
                tracker.wait().await;
                false
            }
            Some(grace) => {
                if tokio::time::timeout(grace, tracker.wait()).await.is_ok() {
                    false
                } else {
                    let left = self.stats().in_flight();
                    tracing::warn!(pool = %self.shared.name, jobs = left, ?grace, "shutdown grace period over; cancelling the rest");
                    self.shared
                        .ctx
                        .cancel_with("pool shutdown grace period ended");
                    self.shared.cancel_now();
                    tracker.wait().await;
                    true
                }
            }
        };
        let stats = self.stats();
        PoolReport {
            drained: (stats.completed + stats.failed + stats.panicked)
                .saturating_sub(before.completed + before.failed + before.panicked),
            cancelled: stats.cancelled.saturating_sub(before.cancelled),
            timed_out,
            elapsed: start.elapsed(),
            stats,
            cause: self.shared.ctx.cause(),
        }
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
