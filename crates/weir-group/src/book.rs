//! The group's book of its tasks' `JoinHandle`s, by spawn index.
//!
//! The group keeps a task's handle to abort it, to see that it has ended
//! (a task delivers its outcome from inside its last poll; tokio drops its
//! future a moment later), and to hear of a panic in the destructor of a
//! future that had already returned. The outcome a task delivers carries its
//! spawn index, so the book is a `Vec` by index: the common case costs a
//! push per spawn.
//!
//! A long-lived group must not keep a slot per task it ever ran: now and
//! then, as it spawns, the book lets go of the handles of the tasks that
//! have ended (which frees their task memory), and when most of its slots
//! are empty it moves the few handles still held to a map and starts a new
//! `Vec`. So what it keeps stays proportional to the tasks still running.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Poll, Waker};

use tokio::task::{JoinError, JoinHandle};
use weir_context::Panic;

/// `after_spawn` looks for ended tasks, to let go of their handles (and so
/// of their memory), after this many spawns, or after twice as many as the
/// handles the last look kept, if more. So a look examines at most 1.5
/// handles per spawn since the last, and the book holds at most three times
/// as many handles as there are running tasks, plus this many.
pub(crate) const SWEEP_EVERY: usize = 64;

/// The `Vec` of slots is replaced when it is at least this long and at
/// most half of its slots still hold a handle.
pub(crate) const COMPACT_AT: usize = 1024;

/// Panics that tokio caught after a task had delivered its outcome (in the
/// destructor of its future), by spawn index: they replace that outcome.
pub(crate) type Late = Vec<(u64, Panic)>;

pub(crate) struct Book<R> {
    /// Spawn index of `slots[0]`.
    base: u64,
    /// A slot per task spawned since the last compaction, in spawn order;
    /// `None` once the task is seen to have ended.
    slots: Vec<Option<JoinHandle<R>>>,
    /// Handles still held at the last compaction, by spawn index.
    older: HashMap<u64, JoinHandle<R>>,
    /// Where in `slots` the handles are that may still be held (the others
    /// are gone), so that sweeping costs what is held, not what was spawned.
    pending: Vec<usize>,
    /// Spawns since the last sweep.
    since_sweep: usize,
    /// `after_spawn` sweeps when `since_sweep` reaches this.
    sweep_after: usize,
}

impl<R> Default for Book<R> {
    fn default() -> Self {
        Self {
            base: 0,
            slots: Vec::new(),
            older: HashMap::new(),
            pending: Vec::new(),
            since_sweep: 0,
            sweep_after: 0,
        }
    }
}

/// What tokio says of a task that has ended, without waiting; `None` while
/// it has not ended. Reads past tokio's cooperative budget: a group sweeps
/// many handles in one go.
fn try_join<R>(handle: &mut JoinHandle<R>) -> Option<Result<R, JoinError>> {
    if !handle.is_finished() {
        return None;
    }
    let mut cx = std::task::Context::from_waker(Waker::noop());
    match Pin::new(&mut tokio::task::coop::unconstrained(handle)).poll(&mut cx) {
        Poll::Ready(result) => Some(result),
        Poll::Pending => None,
    }
}

/// Notes a panic that tokio caught after the task delivered its outcome: in
/// the destructor of its future (or, for an aborted task, while dropping
/// it). The task's wrapper catches every other panic itself.
fn note_late<R>(late: &mut Late, index: u64, ended: Result<R, JoinError>) {
    if let Err(join_error) = ended
        && join_error.is_panic()
    {
        late.push((index, Panic::from_payload(join_error.into_panic())));
    }
}

impl<R> Book<R> {
    /// The spawn index the next task gets.
    pub(crate) fn next_index(&self) -> u64 {
        self.base + self.slots.len() as u64
    }

    /// Keeps the handle of the task just spawned (index
    /// [`next_index`](Self::next_index)); now and then lets go of the
    /// handles of tasks that have ended.
    pub(crate) fn record(&mut self, handle: JoinHandle<R>, late: &mut Late) {
        self.pending.push(self.slots.len());
        self.slots.push(Some(handle));
        self.since_sweep += 1;
        if self.since_sweep >= self.sweep_after {
            self.sweep(late);
            if self.slots.len() >= COMPACT_AT && 2 * self.pending.len() <= self.slots.len() {
                self.compact();
            }
            let kept = self.pending.len() + self.older.len();
            self.sweep_after = (2 * kept).max(SWEEP_EVERY);
            self.since_sweep = 0;
        }
    }

    /// Moves the handles still held to `older` and starts a new `Vec`.
    fn compact(&mut self) {
        let base = self.base;
        self.base = self.next_index();
        for (i, slot) in self.slots.drain(..).enumerate() {
            if let Some(handle) = slot {
                self.older.insert(base + i as u64, handle);
            }
        }
        self.pending.clear();
    }

    /// Waits until the task with this index has ended, letting go of its
    /// handle. Cancel safe: the handle stays in the book until the task has
    /// ended.
    pub(crate) async fn wait_ended(&mut self, index: u64, late: &mut Late) {
        if let Some(i) = index.checked_sub(self.base) {
            let slot = usize::try_from(i).ok().and_then(|i| self.slots.get_mut(i));
            if let Some(slot) = slot
                && let Some(handle) = slot
            {
                let ended = handle.await;
                *slot = None;
                note_late(late, index, ended);
            }
        } else if let Some(handle) = self.older.get_mut(&index) {
            let ended = handle.await;
            self.older.remove(&index);
            note_late(late, index, ended);
        }
    }

    /// Lets go of the handles of every task that has ended.
    fn sweep(&mut self, late: &mut Late) {
        let (slots, base) = (&mut self.slots, self.base);
        self.pending.retain(|&i| {
            let Some(slot) = slots.get_mut(i) else {
                return false;
            };
            if let Some(handle) = slot
                && let Some(ended) = try_join(handle)
            {
                *slot = None;
                note_late(late, base + i as u64, ended);
            }
            slot.is_some()
        });
        self.older.retain(|&index, handle| match try_join(handle) {
            Some(ended) => {
                note_late(late, index, ended);
                false
            }
            None => true,
        });
    }

    /// Waits until every task has ended (each has delivered its outcome
    /// already, or will at once), letting go of every handle.
    pub(crate) async fn finish(&mut self, late: &mut Late) {
        // The ended ones first, without waiting (nor yielding every 128).
        self.sweep(late);
        for &i in &self.pending {
            let index = self.base + i as u64;
            if let Some(slot) = self.slots.get_mut(i)
                && let Some(handle) = slot
            {
                let ended = handle.await;
                *slot = None;
                note_late(late, index, ended);
            }
        }
        self.pending.clear();
        for (&index, handle) in &mut self.older {
            let ended = handle.await;
            note_late(late, index, ended);
        }
        self.older.clear();
    }

    /// Aborts every task that may still run.
    pub(crate) fn abort_all(&self) {
        let slots = self.pending.iter().filter_map(|&i| self.slots.get(i));
        for handle in slots.flatten().chain(self.older.values()) {
            handle.abort();
        }
    }

    /// Forgets every task: the group is empty. Indexes go on counting.
    pub(crate) fn clear(&mut self) {
        self.base = self.next_index();
        self.slots.clear();
        self.older.clear();
        self.pending.clear();
        self.since_sweep = 0;
        self.sweep_after = 0;
    }

    /// Handles the book still holds (tasks not seen to have ended).
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.slots.iter().flatten().count() + self.older.len()
    }

    /// Slots and map entries the book keeps, held or not.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.slots.len() + self.older.len()
    }
}
