//! Where a bounded run's slots come from: a fixed window (a semaphore of
//! `limit` permits) or an adaptive limit, whose slots are given back with
//! each item's outcome.

use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::adaptive::{AdaptiveLimit, AdaptivePermit, ClassifyOutcome};

/// The slots of a run whose items end with `Result<T, E>`.
pub(super) trait Window<T, E>: 'static {
    /// Held by an item's task while it runs.
    type Slot: Send + 'static;

    /// Waits for a free slot; `None` if none will ever come.
    fn take(&self) -> impl Future<Output = Option<Self::Slot>> + Send + '_;

    /// The item's body returned `result`: its slot is given back.
    fn give_back(slot: Self::Slot, result: &Result<T, E>);

    /// A slot taken for an item that did not exist (the input ended).
    fn unused(slot: Self::Slot);
}

/// `limit` slots, always.
#[derive(Debug)]
pub(super) struct Fixed(pub(super) Arc<Semaphore>);

impl<T, E> Window<T, E> for Fixed {
    type Slot = OwnedSemaphorePermit;

    fn take(&self) -> impl Future<Output = Option<Self::Slot>> + Send + '_ {
        let permits = Arc::clone(&self.0);
        // The semaphore is never closed.
        async move { permits.acquire_owned().await.ok() }
    }

    #[inline]
    fn give_back(slot: Self::Slot, _: &Result<T, E>) {
        drop(slot);
    }

    #[inline]
    fn unused(slot: Self::Slot) {
        drop(slot);
    }
}

/// The slots of an adaptive limit; each item's result teaches it, as
/// `classify` says. A panicking or aborted item drops its slot unjudged.
#[derive(Debug)]
pub(super) struct Adaptive<C> {
    pub(super) limit: AdaptiveLimit,
    pub(super) classify: Arc<C>,
}

impl<T, E, C> Window<T, E> for Adaptive<C>
where
    C: ClassifyOutcome<T, E> + Send + Sync + 'static,
{
    type Slot = (AdaptivePermit, Arc<C>);

    fn take(&self) -> impl Future<Output = Option<Self::Slot>> + Send + '_ {
        // Without a context the wait ends only with a slot; the run's
        // context is watched beside it (`Driver::next_event`).
        self.limit
            .slot()
            .map(|permit| Some((permit, Arc::clone(&self.classify))))
    }

    fn give_back((permit, classify): Self::Slot, result: &Result<T, E>) {
        permit.finish(classify.classify(result));
    }

    fn unused((permit, _): Self::Slot) {
        permit.unused();
    }
}
