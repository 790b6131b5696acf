//! Stages as types: per-worker setup, processing and teardown.

use std::future::Future;
use std::sync::Arc;

use futures::TryFutureExt;

/// A pipeline stage written as a type, for work that needs per-worker state:
/// one database connection, one buffer, one client per worker.
///
/// Each of the stage's workers calls [`setup`](Stage::setup) once with its
/// index, then [`process`](Stage::process) for every item it takes, then
/// [`teardown`](Stage::teardown) once when its input ends or the pipeline
/// stops. The stage value itself is shared by all workers (`&self`), the
/// state is each worker's own (`&mut Self::State`).
///
/// Add it with [`Pipeline::stage`](crate::Pipeline::stage).
///
/// The methods are plain `async fn`s in the trait (no `async_trait` macro,
/// no boxed future per item); implement them with `async fn`. Their futures
/// must be `Send`, because each worker is a tokio task.
///
/// # Errors
///
/// An `Err` from `process` fails that item, under the pipeline's
/// [`ErrorPolicy`](crate::ErrorPolicy). An `Err` (or a panic) from `setup`
/// always fails the whole pipeline, whatever the policy: a worker that
/// cannot start would silently shrink the stage. An `Err` from `teardown` is
/// reported under the policy.
///
/// # Cancellation
///
/// When the pipeline stops, a `process` call in progress is dropped at its
/// next `.await` and its item is counted as cancelled; `teardown` still runs
/// (to completion: keep it short).
///
/// # Examples
///
/// ```
/// use weir_core::{Pipeline, Stage};
///
/// /// Adds a per-worker offset; the "connection" is the worker's index.
/// struct Offset;
///
/// impl Stage<u64> for Offset {
///     type Out = u64;
///     type Error = anyhow::Error;
///     type State = u64;
///
///     async fn setup(&self, worker: usize) -> anyhow::Result<u64> {
///         Ok(worker as u64 * 1000)
///     }
///
///     async fn process(&self, state: &mut u64, item: u64) -> anyhow::Result<u64> {
///         Ok(*state + item)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> anyhow::Result<()> {
/// let out = Pipeline::from_iter(1..=3u64).stage("offset", 1, Offset).collect().await?;
/// assert_eq!(out, vec![1, 2, 3]); // one worker, index 0, offset 0
/// # Ok(())
/// # }
/// ```
pub trait Stage<In: Send + 'static>: Send + Sync + 'static {
    /// What the stage passes on for each item.
    type Out: Send + 'static;
    /// The stage's error type; it must be the pipeline's error type.
    type Error: Send + 'static;
    /// Each worker's own state, made by `setup`.
    type State: Send + 'static;

    /// Makes the state of worker number `worker` (0-based).
    fn setup(&self, worker: usize)
    -> impl Future<Output = Result<Self::State, Self::Error>> + Send;

    /// Processes one item.
    fn process(
        &self,
        state: &mut Self::State,
        item: In,
    ) -> impl Future<Output = Result<Self::Out, Self::Error>> + Send;

    /// Ends a worker's state. The default drops it.
    fn teardown(&self, state: Self::State) -> impl Future<Output = Result<(), Self::Error>> + Send {
        drop(state);
        std::future::ready(Ok(()))
    }
}

/// One worker's way of processing an item: `Ok(Some(out))` passes `out` on,
/// `Ok(None)` filters the item out, `Err` fails it.
pub(crate) trait Process<I, O, E>: Send + 'static {
    fn call(&mut self, item: I) -> impl Future<Output = Result<Option<O>, E>> + Send + '_;
}

/// `map`: an async closure whose output is passed on.
pub(crate) struct MapFn<F>(pub(crate) Arc<F>);

impl<I, O, E, F, Fut> Process<I, O, E> for MapFn<F>
where
    F: Fn(I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, E>> + Send + 'static,
    O: 'static,
{
    fn call(&mut self, item: I) -> impl Future<Output = Result<Option<O>, E>> + Send + '_ {
        (self.0)(item).map_ok(Some)
    }
}

/// `filter_map`: an async closure that may drop the item.
pub(crate) struct FilterMapFn<F>(pub(crate) Arc<F>);

impl<I, O, E, F, Fut> Process<I, O, E> for FilterMapFn<F>
where
    F: Fn(I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<O>, E>> + Send + 'static,
{
    fn call(&mut self, item: I) -> impl Future<Output = Result<Option<O>, E>> + Send + '_ {
        (self.0)(item)
    }
}

/// `filter` and `inspect`: a plain closure, no await, cannot fail.
pub(crate) struct SyncFn<F>(pub(crate) Arc<F>);

impl<I, O, E, F> Process<I, O, E> for SyncFn<F>
where
    F: Fn(I) -> Option<O> + Send + Sync + 'static,
    E: Send + 'static,
    O: Send + 'static,
{
    fn call(&mut self, item: I) -> impl Future<Output = Result<Option<O>, E>> + Send + '_ {
        std::future::ready(Ok((self.0)(item)))
    }
}

/// A [`Stage`] together with one worker's state.
pub(crate) struct StageFn<S: Stage<I>, I: Send + 'static> {
    pub(crate) stage: Arc<S>,
    pub(crate) state: S::State,
}

impl<I, S> Process<I, S::Out, S::Error> for StageFn<S, I>
where
    I: Send + 'static,
    S: Stage<I>,
{
    fn call(
        &mut self,
        item: I,
    ) -> impl Future<Output = Result<Option<S::Out>, S::Error>> + Send + '_ {
        self.stage.process(&mut self.state, item).map_ok(Some)
    }
}
