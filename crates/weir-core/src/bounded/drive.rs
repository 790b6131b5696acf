//! The loop shared by `Bounded::run` and `Bounded::run_all`, in named steps:
//! wait for a permit, start an item, wait for a batch or the rest to end,
//! abort what is left. Every wait goes through one `select!` in
//! [`Driver::next_event`].

use std::future::Future;
use std::pin::Pin;

use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFuture;
use tracing::Instrument;
use weir_context::__private::{catch, catch_call};
use weir_context::Context;

use super::report::{BoundedError, BoundedReport};
use super::window::Window;

/// What the caller's sink wants after a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    /// Fail-fast: start nothing more, abort what is in flight.
    Stop,
}

/// Why a run stopped before its natural end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Halt {
    /// The sink said [`Flow::Stop`].
    Failed,
    /// The context was cancelled.
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// A sliding window: an item starts as soon as one ends.
    Window,
    /// Rounds: start `limit` items, wait for all of them, the next round.
    Batches,
}

/// How a run ended.
pub(super) struct Outcome {
    pub(super) halt: Option<Halt>,
    pub(super) report: BoundedReport,
}

type Joined<T, E> = Result<(usize, Result<T, BoundedError<E>>), JoinError>;

enum Event<T, E, S> {
    Cancelled,
    Joined(Joined<T, E>),
    Permit(S),
    /// Nothing in flight, and no permit asked for.
    Idle,
}

/// Runs `f` over `items` with at most as many in flight as `window` has
/// slots (in batches of `limit`), handing every result to `sink`. Returns
/// only after every task it spawned has ended.
pub(super) async fn drive<I, F, Fut, T, E, W>(
    ctx: &Context,
    window: W,
    limit: usize,
    mode: Mode,
    items: I,
    mut f: F,
    mut sink: impl FnMut(usize, Result<T, BoundedError<E>>) -> Flow,
) -> Outcome
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
    W: Window<T, E>,
{
    let mut run = Driver::new(window, limit);
    // One waiter on the context for the whole run, not one per item.
    let cancelled = ctx.cancelled();
    tokio::pin!(cancelled);
    let mut items = items.into_iter().enumerate();

    let halt = loop {
        if mode == Mode::Batches && run.in_batch == limit {
            // The tap is shut: wait for the whole batch before the next.
            if let Err(halt) = run.until_idle(cancelled.as_mut(), &mut sink).await {
                break Some(halt);
            }
            run.in_batch = 0;
        }
        // Take a permit first (finishing tasks free them), then the item.
        let permit = match run.until_permit(cancelled.as_mut(), &mut sink).await {
            Ok(permit) => permit,
            Err(halt) => break Some(halt),
        };
        let Some((index, item)) = items.next() else {
            W::unused(permit);
            break None;
        };
        if mode == Mode::Batches && run.in_batch == 0 {
            run.round += 1;
            tracing::debug!(round = run.round, "batch starts");
        }
        if run.start(index, &mut f, item, permit, &mut sink) == Flow::Stop {
            break Some(Halt::Failed);
        }
    };
    let halt = match halt {
        // Every item started: collect the rest.
        None => run.until_idle(cancelled.as_mut(), &mut sink).await.err(),
        halt => halt,
    };
    if halt.is_some() {
        run.abort_rest(&mut sink).await;
    }
    if halt == Some(Halt::Cancelled) {
        tracing::debug!(started = run.report.started, "bounded run cancelled");
    }
    run.report.elapsed = run.began.elapsed();
    Outcome {
        halt,
        report: run.report,
    }
}

/// Everything a run has in flight, and its counts.
struct Driver<T, E, W> {
    tasks: JoinSet<(usize, Result<T, BoundedError<E>>)>,
    window: W,
    in_batch: usize,
    round: u64,
    report: BoundedReport,
    began: Instant,
}

impl<T, E, W> Driver<T, E, W>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
    W: Window<T, E>,
{
    fn new(window: W, limit: usize) -> Self {
        Self {
            tasks: JoinSet::new(),
            window,
            in_batch: 0,
            round: 0,
            report: BoundedReport {
                limit,
                ..BoundedReport::default()
            },
            began: Instant::now(),
        }
    }

    /// The one wait of the run: the context, a task ending, or (when asked)
    /// a permit, in that order of preference.
    async fn next_event(
        &mut self,
        cancelled: Pin<&mut WaitForCancellationFuture<'_>>,
        want_permit: bool,
    ) -> Event<T, E, W::Slot> {
        if !want_permit && self.tasks.is_empty() {
            return Event::Idle;
        }
        let window = &self.window;
        // The context's branch is always enabled, so this never runs out of
        // branches: it waits.
        tokio::select! {
            biased;
            () = cancelled => Event::Cancelled,
            Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => Event::Joined(joined),
            permit = window.take(), if want_permit => match permit {
                Some(permit) => Event::Permit(permit),
                // Never: the window is never closed.
                None => Event::Cancelled,
            },
        }
    }

    /// Waits for a free slot, handing results to `sink` meanwhile.
    async fn until_permit(
        &mut self,
        mut cancelled: Pin<&mut WaitForCancellationFuture<'_>>,
        sink: &mut impl FnMut(usize, Result<T, BoundedError<E>>) -> Flow,
    ) -> Result<W::Slot, Halt> {
        loop {
            match self.next_event(cancelled.as_mut(), true).await {
                Event::Permit(permit) => return Ok(permit),
                Event::Joined(joined) => self.joined(joined, sink)?,
                Event::Cancelled | Event::Idle => return Err(Halt::Cancelled),
            }
        }
    }

    /// Waits until nothing is in flight, handing results to `sink`.
    async fn until_idle(
        &mut self,
        mut cancelled: Pin<&mut WaitForCancellationFuture<'_>>,
        sink: &mut impl FnMut(usize, Result<T, BoundedError<E>>) -> Flow,
    ) -> Result<(), Halt> {
        loop {
            match self.next_event(cancelled.as_mut(), false).await {
                Event::Idle => return Ok(()),
                Event::Joined(joined) => self.joined(joined, sink)?,
                Event::Cancelled => return Err(Halt::Cancelled),
                // Not asked for.
                Event::Permit(_) => {}
            }
        }
    }

    /// Starts the item at `index`: makes its future (a panic there is the
    /// item's panic) and spawns it with `permit`, released when it ends.
    fn start<F, Fut, X>(
        &mut self,
        index: usize,
        f: &mut F,
        item: X,
        permit: W::Slot,
        sink: &mut impl FnMut(usize, Result<T, BoundedError<E>>) -> Flow,
    ) -> Flow
    where
        F: FnMut(X) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        self.in_batch += 1;
        self.report.started += 1;
        match catch_call(|| f(item)) {
            Ok(fut) => {
                let span = tracing::debug_span!("bounded", index);
                crate::spawn::in_set(
                    &mut self.tasks,
                    // The run is an `async fn`: no caller location to record.
                    &weir_context::__private::Label {
                        construct: weir_context::__private::Construct::Bounded,
                        name: "",
                        task: "item",
                        stage: None,
                        index: Some(index),
                        origin: weir_context::__private::Origin::default(),
                    },
                    run_item::<T, E, Fut, W>(index, fut, permit).instrument(span),
                );
                Flow::Continue
            }
            Err(panic) => self.result(index, Err(BoundedError::Panicked { index, panic }), sink),
        }
    }

    /// A task ended: count it and hand its result on.
    fn joined(
        &mut self,
        joined: Joined<T, E>,
        sink: &mut impl FnMut(usize, Result<T, BoundedError<E>>) -> Flow,
    ) -> Result<(), Halt> {
        match joined {
            Ok((index, result)) => match self.result(index, result, sink) {
                Flow::Continue => Ok(()),
                Flow::Stop => Err(Halt::Failed),
            },
            // Panics are caught inside the task: a JoinError is an abort.
            Err(_) => {
                self.report.cancelled += 1;
                Ok(())
            }
        }
    }

    /// Counts a result, logs a failure once (DEBUG: it goes back to the
    /// caller), and hands it to `sink`.
    fn result(
        &mut self,
        index: usize,
        result: Result<T, BoundedError<E>>,
        sink: &mut impl FnMut(usize, Result<T, BoundedError<E>>) -> Flow,
    ) -> Flow {
        match &result {
            Ok(_) => self.report.succeeded += 1,
            Err(BoundedError::Panicked { panic, .. }) => {
                self.report.panicked += 1;
                tracing::debug!(index, panic = %panic, "item panicked");
            }
            Err(BoundedError::Failed { error, .. }) => {
                self.report.failed += 1;
                tracing::debug!(index, error = %error, "item failed");
            }
            // Items only fail or panic; a stop is the run's, not an item's.
            Err(BoundedError::Stopped(_) | BoundedError::Config(_)) => {}
        }
        sink(index, result)
    }

    /// Fail-fast or cancelled: abort what is in flight and wait for it;
    /// results that were already there still reach `sink`.
    async fn abort_rest(
        &mut self,
        sink: &mut impl FnMut(usize, Result<T, BoundedError<E>>) -> Flow,
    ) {
        self.tasks.abort_all();
        while let Some(joined) = self.tasks.join_next().await {
            let _ = self.joined(joined, sink);
        }
    }
}

/// One item's task: the body, with its panic caught, holding its slot
/// until it ends (a panic or an abort drops the slot with no verdict).
async fn run_item<T, E, Fut, W>(
    index: usize,
    fut: Fut,
    permit: W::Slot,
) -> (usize, Result<T, BoundedError<E>>)
where
    Fut: Future<Output = Result<T, E>>,
    W: Window<T, E>,
{
    let result = match catch(fut).await {
        Ok(result) => {
            W::give_back(permit, &result);
            result.map_err(|error| BoundedError::Failed { index, error })
        }
        Err(panic) => Err(BoundedError::Panicked { index, panic }),
    };
    (index, result)
}
