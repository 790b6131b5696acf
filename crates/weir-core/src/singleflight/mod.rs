//! Duplicate call suppression: Go's `golang.org/x/sync/singleflight`.
//!
//! A [`Singleflight`] runs one call per key at a time. A caller that asks
//! for a key while a call for it is in flight does not start another: it
//! waits for that call and gets a clone of its result, with
//! [`shared`](Flight::shared) set. Use it in front of a cache miss, a token
//! refresh or a config reload, so a burst of identical requests costs one
//! backend call.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//! use weir_core::Singleflight;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> anyhow::Result<()> {
//! let flights: Singleflight<&str, String> = Singleflight::new();
//! let backend_calls = Arc::new(AtomicUsize::new(0));
//! let load = || {
//!     let backend_calls = Arc::clone(&backend_calls);
//!     move || async move {
//!         backend_calls.fetch_add(1, Ordering::Relaxed);
//!         tokio::time::sleep(Duration::from_millis(10)).await;
//!         anyhow::Ok("ada".to_owned())
//!     }
//! };
//! let (a, b) = tokio::join!(flights.call("user:7", load()), flights.call("user:7", load()));
//! let (a, b) = (a?, b?);
//! assert_eq!((a.value.as_str(), b.value.as_str()), ("ada", "ada"));
//! assert!(a.shared && b.shared);
//! assert_eq!(backend_calls.load(Ordering::Relaxed), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Who runs the call, and what if its caller goes away
//!
//! The call is not tied to the caller that started it. It is one future
//! shared by all its callers (futures' [`Shared`]) and runs inside whichever
//! of them is being polled. So:
//!
//! - **the first caller may leave**: dropped, or its context cancelled.
//!   The others carry the call on where it stood, and get its result;
//!   nothing is restarted and nobody hangs;
//! - **when the last caller leaves**, the call is dropped (at its next
//!   `.await`, like any dropped future) and the key is free again: work
//!   nobody waits for does not go on in the background;
//! - no task is spawned: no runtime is needed, nothing outlives the callers,
//!   nothing needs tracking.
//!
//! This was chosen over the alternatives: running the call in a spawned
//! task outlives every caller (work and a task for nobody) and needs
//! `'static` bookkeeping; failing the others when the first caller leaves
//! turns one caller's timeout into everyone's error. The price: the call
//! makes progress only while a caller is polled, on that caller's task.
//! Spawn inside the call if it must run on its own task or finish even when
//! every caller gave up.
//!
//! # Contexts
//!
//! [`SingleflightCall::context`] bounds one caller's wait: when that
//! context is cancelled or its deadline passes, that caller gets
//! [`SingleflightError::Stopped`] with the [`Cause`](crate::Cause) and leaves; the call
//! goes on for the others. Do not let the call capture one caller's
//! context: its cancellation would then end the call, and fail every caller
//! (a well-known trap of Go's singleflight).
//!
//! # Errors and panics
//!
//! - The call's error reaches every caller as
//!   [`SingleflightError::Failed`], the one value in an [`Arc`]: errors such
//!   as `anyhow::Error` and `std::io::Error` are not `Clone`, and an `Arc`
//!   costs one allocation per failed call, not per caller.
//! - A panic in the call (or in the closure that makes it) is caught and
//!   reaches every caller as [`SingleflightError::Panicked`], with its
//!   message and payload, as soon as it happens (go.dev/issue/41133); the
//!   key is free again. Nothing hangs and nothing is lost. One `DEBUG`
//!   event is logged per panicking call (the error goes to the callers as a
//!   value); nothing is logged otherwise.
//!
//! # Forget
//!
//! [`Singleflight::forget`] frees a key while its call is in flight: the
//! next caller starts a new call; the callers of the old one still get its
//! result, and the old call's end does not touch the new one
//! (go.dev/issue/31420).
//!
//! # Go mapping
//!
//! | Go (`singleflight.Group`) | weir |
//! |---|---|
//! | `Do(key, fn)` → `v, err, shared` | [`group.call(key, f).await`](Singleflight::call) → `Ok(Flight { value, shared })` or `Err(SingleflightError)` |
//! | `DoChan(key, fn)` | `tokio::spawn` a clone of the group calling `call`; or `call` inside `select!` (it is cancel safe) |
//! | `Forget(key)` | [`group.forget(&key)`](Singleflight::forget), which also says whether a call was in flight |
//! | a panic re-panics in every caller (and `DoChan` crashes the program) | [`SingleflightError::Panicked`] for every caller |
//! | `runtime.Goexit` in `fn` | no equivalent: a Rust future ends by returning, panicking, or being dropped |
//!
//! [`Shared`]: futures::future::Shared

mod call;
mod error;
mod state;

use std::borrow::Borrow;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::FutureExt;
use futures::future::{Shared, WeakShared};
use weir_context::__private::catch;

pub use call::{Flight, SingleflightCall};
pub use error::SingleflightError;
use state::{Ending, Entry, State, lock};

type Outcome<V, E> = Result<Flight<V>, SingleflightError<E>>;
type Call<V, E> = Shared<Pin<Box<dyn Future<Output = Outcome<V, E>> + Send>>>;
type WeakCall<V, E> = WeakShared<Pin<Box<dyn Future<Output = Outcome<V, E>> + Send>>>;

/// One call per key at a time, its result shared by every caller that
/// asked for the key while it ran. See the [module docs](self) for who runs
/// the call, contexts, errors, panics and the Go mapping.
///
/// `V` is the call's value (`Clone`: each caller gets a clone), `E` its
/// error (by default [`anyhow::Error`]; shared in an [`Arc`], so it need not
/// be `Clone`). Cheap to clone: clones share one set of calls.
pub struct Singleflight<K, V, E = anyhow::Error> {
    state: Arc<Mutex<State<K, V, E>>>,
}

impl<K, V, E> Singleflight<K, V, E> {
    /// No calls in flight.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State::new())),
        }
    }
}

impl<K, V, E> Singleflight<K, V, E>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// Runs `f()` for `key`, unless a call for `key` is in flight: then
    /// waits for that one. Every caller of one call gets a clone of its
    /// result. Go's `Do`.
    ///
    /// `f` is called (once) only by the caller that starts the call, at its
    /// first poll; the others drop theirs. Bound this caller's wait with
    /// [`.context(ctx)`](SingleflightCall::context).
    ///
    /// # Errors
    ///
    /// - [`SingleflightError::Failed`]: the call returned `Err` (shared by
    ///   every caller of that call).
    /// - [`SingleflightError::Panicked`]: the call, or `f` itself, panicked.
    /// - [`SingleflightError::Stopped`]: this caller's context was
    ///   cancelled or its deadline passed first (or already when it
    ///   started); the call goes on for the others.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future only takes this caller out. The
    /// call goes on for the other callers; if it was the last one, the call
    /// is dropped and the key is free again.
    pub fn call<F, Fut>(&self, key: K, f: F) -> SingleflightCall<'_, K, V, E, F>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        SingleflightCall::new(self, key, f)
    }

    /// Lets the next caller for `key` start a new call even while one is in
    /// flight. The callers of the old call still get its result. Returns
    /// whether a call for `key` was in flight.
    pub fn forget<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut state = self.lock();
        match state.calls.remove(key) {
            Some(entry) => {
                state.forgotten.insert(entry.id, entry.callers);
                true
            }
            None => false,
        }
    }

    /// How many keys have a call in flight (forgotten calls not counted).
    pub fn in_flight(&self) -> usize {
        self.lock().calls.len()
    }

    /// Joins the call in flight for `key`, or starts one.
    fn join_or_start<F, Fut>(&self, key: K, f: F) -> Call<V, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        let mut state = self.lock();
        if let Some(entry) = state.calls.get_mut(&key)
            && let Some(call) = entry.call.upgrade()
        {
            entry.callers += 1;
            return call;
        }
        // No call, or one whose callers all left (its `Ending` removes its
        // own record, and only that).
        let id = state.next_id;
        state.next_id += 1;
        let ending = Ending {
            state: Arc::clone(&self.state),
            key: key.clone(),
            id,
            ended: false,
        };
        let run: Pin<Box<dyn Future<Output = Outcome<V, E>> + Send>> = Box::pin(async move {
            let mut ending = ending;
            let out = catch(async move { f().await }).await;
            let shared = ending.end();
            match out {
                Ok(Ok(value)) => Ok(Flight { value, shared }),
                Ok(Err(error)) => Err(SingleflightError::Failed {
                    error: Arc::new(error),
                    shared,
                }),
                Err(panic) => {
                    // Once per call, not per caller; every caller gets it.
                    tracing::debug!(panic = %panic, shared, "singleflight call panicked");
                    Err(SingleflightError::Panicked { panic, shared })
                }
            }
        });
        let call = run.shared();
        // A fresh `Shared` always downgrades; without a record the call
        // would simply not be joinable.
        if let Some(weak) = call.downgrade() {
            let entry = Entry {
                id,
                call: weak,
                callers: 1,
            };
            state.calls.insert(key, entry);
        }
        call
    }
}

impl<K, V, E> Singleflight<K, V, E> {
    fn lock(&self) -> MutexGuard<'_, State<K, V, E>> {
        lock(&self.state)
    }
}

impl<K, V, E> Default for Singleflight<K, V, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, E> Clone for Singleflight<K, V, E> {
    fn clone(&self) -> Self {
        Self {
            state: Arc::clone(&self.state),
        }
    }
}

impl<K, V, E> fmt::Debug for Singleflight<K, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Singleflight")
            .field("in_flight", &state.calls.len())
            .field("forgotten", &state.forgotten.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::task::{Context as TaskContext, Poll};
    use weir_context::Cause;

    fn noop() -> TaskContext<'static> {
        TaskContext::from_waker(futures::task::noop_waker_ref())
    }

    #[test]
    fn nothing_is_recorded_before_the_first_poll() {
        let group: Singleflight<&str, u32> = Singleflight::new();
        let call = group.call("key", || async { anyhow::Ok(1) });
        assert_eq!(group.in_flight(), 0);
        drop(call);
        assert_eq!(group.in_flight(), 0);
    }

    #[test]
    fn a_forgotten_call_that_ends_clears_its_record() {
        let group: Singleflight<&str, u32> = Singleflight::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut a = group.call("key", move || async move {
            let _ = rx.await;
            anyhow::Ok(1)
        });
        let mut b = group.call("key", || async { anyhow::Ok(2) });
        assert!(Pin::new(&mut a).poll(&mut noop()).is_pending());
        assert!(Pin::new(&mut b).poll(&mut noop()).is_pending());
        assert!(group.forget("key"));
        assert_eq!(lock(&group.state).forgotten.get(&0), Some(&2));
        tx.send(()).unwrap();
        let Poll::Ready(Ok(flight)) = Pin::new(&mut a).poll(&mut noop()) else {
            panic!("the call did not end");
        };
        assert_eq!((flight.value, flight.shared), (1, true));
        assert!(lock(&group.state).forgotten.is_empty());
        assert!(matches!(
            Pin::new(&mut b).poll(&mut noop()),
            Poll::Ready(Ok(_))
        ));
    }

    #[test]
    fn errors_read_once_and_clone_without_e_clone() {
        #[derive(Debug)]
        struct NotClone;
        impl fmt::Display for NotClone {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("backend down")
            }
        }
        let err = SingleflightError::Failed {
            error: Arc::new(NotClone),
            shared: true,
        };
        let copy = err.clone();
        assert_eq!(copy.to_string(), "backend down");
        assert!(copy.is_shared() && !copy.is_panic() && !copy.is_stopped());
        let stopped: SingleflightError<NotClone> = SingleflightError::Stopped(Cause::Cancelled);
        assert_eq!(
            stopped.to_string(),
            "singleflight wait stopped: context cancelled"
        );
        assert!(std::error::Error::source(&stopped).is_none());
    }
}
