//! [`WeightedPermit`]: permits taken, given back on drop.

use std::fmt;
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::Semaphore;

/// Permits taken from a [`Semaphore`]; they go back when this guard is
/// dropped (at the end of its scope, or when the task holding it ends,
/// panics or is aborted).
///
/// Move it into a spawned task to release the permits when the task ends.
/// [`forget`](Self::forget) it to release the permits later, by count, with
/// [`Semaphore::release`] (Go's style).
#[must_use = "dropping a permit gives its permits back at once"]
pub struct WeightedPermit {
    permit: OwnedSemaphorePermit,
    sem: Semaphore,
}

impl WeightedPermit {
    pub(super) fn new(permit: OwnedSemaphorePermit, sem: Semaphore) -> Self {
        Self { permit, sem }
    }

    /// How many permits this guard holds.
    pub fn num_permits(&self) -> usize {
        self.permit.num_permits()
    }

    /// The semaphore the permits came from.
    pub fn semaphore(&self) -> &Semaphore {
        &self.sem
    }

    /// Moves `n` of this guard's permits into a new guard; `None` (and no
    /// change) when it holds fewer than `n`.
    pub fn split(&mut self, n: usize) -> Option<WeightedPermit> {
        let permit = self.permit.split(n)?;
        Some(self.sem.wrap(permit))
    }

    /// Moves the permits of `other` into this guard.
    ///
    /// # Errors
    ///
    /// `other`, unchanged, when it came from another semaphore.
    pub fn merge(&mut self, other: WeightedPermit) -> Result<(), WeightedPermit> {
        if !Arc::ptr_eq(&self.sem.inner, &other.sem.inner) {
            return Err(other);
        }
        self.permit.merge(other.permit);
        Ok(())
    }

    /// Drops the guard without giving the permits back: they stay taken
    /// until [`Semaphore::release`] gives them back by count. This is Go's
    /// `Acquire` … `Release(n)` style.
    pub fn forget(self) {
        let Self { permit, sem } = self;
        let mut held = sem.lock_held();
        match held.as_mut() {
            Some(all) => all.merge(permit),
            None => *held = Some(permit),
        }
    }
}

impl fmt::Debug for WeightedPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeightedPermit")
            .field("permits", &self.num_permits())
            .finish()
    }
}
