//! The records of calls in flight, and [`Ending`], which removes a call's
//! record when the call ends or is dropped.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::WeakCall;

pub(super) struct State<K, V, E> {
    /// The call that serves each key now.
    pub(super) calls: HashMap<K, Entry<V, E>>,
    /// Callers of forgotten calls that have not ended, by call id: the count
    /// decides their `shared` flag when they end.
    pub(super) forgotten: HashMap<u64, usize>,
    pub(super) next_id: u64,
}

pub(super) struct Entry<V, E> {
    pub(super) id: u64,
    /// Weak: when every caller has left, the call is dropped, not kept
    /// alive (and paused) by the map.
    pub(super) call: WeakCall<V, E>,
    /// Callers that joined, the first included. Read once, when the call
    /// ends, under the same lock that joins take: nobody joins after.
    pub(super) callers: usize,
}

impl<K, V, E> State<K, V, E> {
    pub(super) fn new() -> Self {
        Self {
            calls: HashMap::new(),
            forgotten: HashMap::new(),
            next_id: 0,
        }
    }
}

pub(super) fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking `Hash` or `Eq` of a key can poison the lock; the maps
    // are still whole (a failed insert inserts nothing).
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes a call's record when the call ends or is dropped, and tells
/// whether more than one caller joined it.
pub(super) struct Ending<K: Hash + Eq, V, E> {
    pub(super) state: Arc<Mutex<State<K, V, E>>>,
    pub(super) key: K,
    pub(super) id: u64,
    pub(super) ended: bool,
}

impl<K: Hash + Eq, V, E> Ending<K, V, E> {
    pub(super) fn end(&mut self) -> bool {
        self.ended = true;
        let mut state = lock(&self.state);
        // Remove the key's record only if it is this call's: after a
        // `forget`, it belongs to a newer call (go.dev/issue/31420).
        let callers = match state.calls.get(&self.key) {
            Some(entry) if entry.id == self.id => state.calls.remove(&self.key).map(|e| e.callers),
            _ => state.forgotten.remove(&self.id),
        };
        callers.unwrap_or(1) > 1
    }
}

impl<K: Hash + Eq, V, E> Drop for Ending<K, V, E> {
    fn drop(&mut self) {
        // Every caller left before the call ended: the call is being
        // dropped; free the key. (No caller holds the lock while it drops
        // its share of a call.)
        if !self.ended {
            self.end();
        }
    }
}
