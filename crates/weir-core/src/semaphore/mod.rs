//! A weighted semaphore: Go's `golang.org/x/sync/semaphore`, on tokio's
//! fair semaphore.
//!
//! A [`Semaphore`] has a size fixed when it is made. A caller takes `n`
//! permits at once ([`Semaphore::acquire`], [`Semaphore::try_acquire`]) and
//! gets a [`WeightedPermit`] that gives them back when it is dropped, or, Go's
//! way, forgets the guard and gives them back later with
//! [`Semaphore::release`].
//!
//! # Examples
//!
//! ```
//! use weir_core::{Context, Semaphore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let memory = Semaphore::new(100)?; // 100 MiB for decoding, shared by all
//! let big = memory.acquire(80).await?;
//! assert_eq!(memory.available(), 20);
//! assert!(memory.try_acquire(30).is_err()); // would have to wait
//!
//! let ctx = Context::background();
//! let waiter = tokio::spawn({
//!     let memory = memory.clone();
//!     async move { memory.acquire(30).context(&ctx).await.map(|p| p.num_permits()) }
//! });
//! drop(big); // the waiter gets its 30 now
//! assert_eq!(waiter.await??, 30);
//! # Ok(())
//! # }
//! ```
//!
//! # Order: strictly first come, first served
//!
//! Waiters are served in the order they started waiting. A waiting request
//! for many permits holds back every later one, even a request for one
//! permit that would fit: small requests cannot starve a large one (Go's
//! "a writer among readers" case). [`Semaphore::try_acquire`] never jumps
//! the queue either: it fails while anyone waits.
//!
//! Two exceptions, both harmless to the others:
//!
//! - a request larger than the whole size can never succeed; it waits only
//!   for its context to end and does not join the queue, so the others keep
//!   flowing (as in Go). Without a context it fails at once with
//!   [`SemaphoreError::TooLarge`] rather than wait forever;
//! - a request for zero permits succeeds at once, queue or not.
//!
//! # Cancellation, errors, panics and drop
//!
//! - A wait ends early when its context (given with
//!   [`WeightedAcquire::context`]) is cancelled or its deadline passes:
//!   [`SemaphoreError::Stopped`] with the [`Cause`](crate::Cause)
//!   ([`Cause::DeadlineExceeded`](crate::Cause::DeadlineExceeded) for a deadline). A context cancelled before
//!   the call, or before the permits were handed over, always wins: the
//!   call takes nothing even if permits were free (go.dev/issue/63615).
//! - Dropping a waiting [`WeightedAcquire`] takes nothing; permits already
//!   set aside for it go on to the next waiters at once, so cancelling the
//!   waiter at the head of the queue never strands the ones behind it (Go's
//!   `TestAllocCancelDoesntStarve`).
//! - A [`WeightedPermit`] gives its permits back when it is dropped: at the
//!   end of a scope, when a task holding it ends, panics or is aborted.
//! - Nothing here panics on any input. Releasing more than is held is
//!   [`SemaphoreError::ReleaseExceedsHeld`], where Go panics.
//!
//! # Go mapping
//!
//! | Go (`semaphore.Weighted`) | weir |
//! |---|---|
//! | `NewWeighted(n)` | [`Semaphore::new(n)`](Semaphore::new), `Err` for 0 or more than [`Semaphore::MAX_SIZE`] |
//! | `Acquire(ctx, n)` | [`sem.acquire(n).context(ctx).await`](Semaphore::acquire), returning a guard |
//! | `TryAcquire(n)` | [`sem.try_acquire(n)`](Semaphore::try_acquire), returning a guard |
//! | `Release(n)` | drop the guard; or [`permit.forget()`](WeightedPermit::forget) then [`sem.release(n)`](Semaphore::release) |
//!
//! # Comparison to `tokio::sync::Semaphore`
//!
//! This is tokio's semaphore (the same fair queue, the same lock-free fast
//! path) with what Go's adds and tokio's lacks:
//!
//! - a **fixed size**, so a request larger than the size is known to be
//!   hopeless and does not block the queue (on tokio's it waits at the head
//!   forever and blocks everyone behind it);
//! - a **context**: a wait ends with the reason ([`Cause`](crate::Cause)), and a deadline
//!   is a context, not a separate timeout wrapper;
//! - **explicit release** checked against what was forgotten, instead of
//!   `add_permits`, which can silently grow a tokio semaphore past its
//!   intended size;
//! - owned guards without `Arc<Semaphore>` juggling: a [`Semaphore`] is
//!   already a cheap, cloneable handle.
//!
//! Use tokio's directly for an unweighted limit you close to wake waiters,
//! or for a size that changes ([`add_permits`](tokio::sync::Semaphore::add_permits)).

mod acquire;
mod error;
mod permit;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore as Fair};
use weir_context::ConfigError;

pub use acquire::WeightedAcquire;
pub use error::SemaphoreError;
pub use permit::WeightedPermit;

/// A weighted semaphore with a fixed size: callers take and give back
/// several permits at once, in strict first-come-first-served order. See the
/// [module docs](self) for the order, cancellation and the Go mapping.
///
/// Cheap to clone: clones share one semaphore.
#[derive(Clone)]
pub struct Semaphore {
    inner: Arc<Inner>,
}

struct Inner {
    fair: Arc<Fair>,
    size: usize,
    /// Permits whose guards were forgotten: what [`Semaphore::release`] may
    /// give back. Kept as one merged tokio permit, so "held" is tokio's own
    /// count and nothing can be released twice; touched only by `forget`
    /// and `release`, never on the acquire path.
    held: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Semaphore {
    /// The largest size: what a tokio semaphore holds (`usize::MAX >> 3`).
    pub const MAX_SIZE: usize = Fair::MAX_PERMITS;

    /// A semaphore of `size` permits, all free.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`]: [`Problem::Zero`](crate::Problem::Zero) for a size
    /// of 0, [`Problem::TooLarge`](crate::Problem::TooLarge) above
    /// [`MAX_SIZE`](Self::MAX_SIZE). A size too large is an error rather than
    /// lowered (as concurrency limits elsewhere in weir are): a lowered size
    /// would turn `acquire(size)`, the "wait until everyone is done" idiom,
    /// into a request that can never succeed.
    pub fn new(size: usize) -> Result<Self, ConfigError> {
        if size == 0 {
            return Err(ConfigError::zero("semaphore", "size"));
        }
        if size > Self::MAX_SIZE {
            return Err(ConfigError::too_large(
                "semaphore",
                "size",
                Self::MAX_SIZE as u64,
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                fair: Arc::new(Fair::new(size)),
                size,
                held: Mutex::new(None),
            }),
        })
    }

    /// The size given to [`new`](Self::new).
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// Permits free right now, that [`try_acquire`](Self::try_acquire)
    /// could take. Zero while anyone waits: the waiter at the head of the
    /// queue collects free permits until it has all it asked for.
    pub fn available(&self) -> usize {
        self.inner.fair.available_permits()
    }

    /// Permits taken and then [`forgotten`](WeightedPermit::forget), which
    /// [`release`](Self::release) may give back.
    pub fn held(&self) -> usize {
        self.lock_held().as_ref().map_or(0, |p| p.num_permits())
    }

    /// Takes `n` permits, waiting in line for them; `.await` it, after
    /// [`.context(ctx)`](WeightedAcquire::context) to bound the wait.
    ///
    /// The future resolves to a [`WeightedPermit`] that gives the permits
    /// back when dropped.
    ///
    /// # Errors
    ///
    /// - [`SemaphoreError::Stopped`] with the [`Cause`](crate::Cause) when the context was
    ///   cancelled (or its deadline passed) before the permits were handed
    ///   over, or already when the call began; nothing is taken.
    /// - [`SemaphoreError::TooLarge`] when `n` is more than the size and no
    ///   context was given (with a context it waits for the context).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes takes nothing,
    /// and permits set aside for it go on to the next waiters. It loses its
    /// place in the queue.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_core::{Cause, Context, Semaphore, SemaphoreError};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> anyhow::Result<()> {
    /// let sem = Semaphore::new(4)?;
    /// let _all = sem.acquire(4).await?;
    /// let ctx = Context::background().with_timeout(Duration::from_millis(50));
    /// let err = sem.acquire(1).context(&ctx).await.unwrap_err();
    /// assert_eq!(err, SemaphoreError::Stopped(Cause::DeadlineExceeded));
    /// # Ok(())
    /// # }
    /// ```
    pub fn acquire(&self, n: u32) -> WeightedAcquire<'_> {
        WeightedAcquire::new(self, n)
    }

    /// Takes `n` permits if they are free now and nobody is waiting (it
    /// never jumps the queue); never waits.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::WouldWait`] when the permits are not free now or
    /// others are waiting; [`SemaphoreError::TooLarge`] when `n` is more
    /// than the size. Nothing is taken.
    pub fn try_acquire(&self, n: u32) -> Result<WeightedPermit, SemaphoreError> {
        if n as usize > self.inner.size {
            return Err(self.too_large(n));
        }
        match Arc::clone(&self.inner.fair).try_acquire_many_owned(n) {
            Ok(permit) => Ok(self.wrap(permit)),
            Err(_) => Err(SemaphoreError::WouldWait { requested: n }),
        }
    }

    /// Gives back `n` permits that were taken and then
    /// [`forgotten`](WeightedPermit::forget): Go's `Release(n)`. The next
    /// waiters get them at once.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::ReleaseExceedsHeld`] when fewer than `n` permits
    /// are held by forgotten guards (Go panics: "released more than held");
    /// nothing is released. Permits still inside a live [`WeightedPermit`]
    /// are not "held" in this sense: they go back when that guard drops.
    pub fn release(&self, n: usize) -> Result<(), SemaphoreError> {
        if n == 0 {
            return Ok(());
        }
        let released = {
            let mut held = self.lock_held();
            match held.as_mut().and_then(|p| p.split(n)) {
                Some(part) => part,
                None => {
                    return Err(SemaphoreError::ReleaseExceedsHeld {
                        released: n,
                        held: held.as_ref().map_or(0, |p| p.num_permits()),
                    });
                }
            }
        };
        // Dropped outside the lock: tokio hands the permits to the waiters.
        drop(released);
        Ok(())
    }

    fn wrap(&self, permit: OwnedSemaphorePermit) -> WeightedPermit {
        WeightedPermit::new(permit, self.clone())
    }

    fn too_large(&self, n: u32) -> SemaphoreError {
        SemaphoreError::TooLarge {
            requested: n,
            size: self.inner.size,
        }
    }

    fn lock_held(&self) -> MutexGuard<'_, Option<OwnedSemaphorePermit>> {
        // Only `split` and `merge` run under this lock; neither can leave
        // the permit half-updated.
        self.inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("size", &self.size())
            .field("available", &self.available())
            .field("held", &self.held())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use weir_context::Problem;

    #[test]
    fn sizes_are_checked() {
        assert_eq!(Semaphore::new(0).unwrap_err().problem(), &Problem::Zero);
        let err = Semaphore::new(Semaphore::MAX_SIZE + 1).unwrap_err();
        assert!(matches!(err.problem(), Problem::TooLarge { .. }));
        assert_eq!(
            Semaphore::new(Semaphore::MAX_SIZE).unwrap().available(),
            Semaphore::MAX_SIZE
        );
    }

    #[test]
    fn forget_and_release_account_by_count() {
        let sem = Semaphore::new(5).unwrap();
        sem.try_acquire(2).unwrap().forget();
        sem.try_acquire(1).unwrap().forget();
        assert_eq!((sem.held(), sem.available()), (3, 2));
        let err = sem.release(4).unwrap_err();
        assert_eq!(
            err,
            SemaphoreError::ReleaseExceedsHeld {
                released: 4,
                held: 3
            }
        );
        sem.release(3).unwrap();
        assert_eq!((sem.held(), sem.available()), (0, 5));
    }

    #[test]
    fn split_and_merge_stay_on_one_semaphore() {
        let (a, b) = (Semaphore::new(4).unwrap(), Semaphore::new(4).unwrap());
        let mut p = a.try_acquire(4).unwrap();
        let q = p.split(1).unwrap();
        assert!(p.split(9).is_none());
        assert_eq!((p.num_permits(), q.num_permits()), (3, 1));
        let stranger = b.try_acquire(1).unwrap();
        let stranger = p.merge(stranger).unwrap_err();
        assert_eq!(b.available(), 3);
        drop(stranger);
        p.merge(q).unwrap();
        assert_eq!(p.num_permits(), 4);
        drop(p);
        assert_eq!((a.available(), b.available()), (4, 4));
    }
}
