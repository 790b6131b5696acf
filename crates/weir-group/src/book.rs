//! The group's book of its tasks: their `JoinHandle`s, spawn indexes and
//! names, keyed by tokio task id.
//!
//! The group keeps a task's handle to abort it, to see that it has ended
//! (a task delivers its outcome from inside its last poll; tokio drops its
//! future a moment later), and to hear of a panic in the destructor of a
//! future that had already returned. What the group knows of a task (its
//! index, its name) is kept here rather than in the task, so that tasks stay
//! small: a task delivers only its tokio id with its outcome. (tokio draws
//! task ids from one 64-bit counter, so an id is not reused while the group
//! may still name its task; tokio-util's `JoinMap` keys its tasks by id too.)
//!
//! The common case costs a `Vec` push per task. As it spawns, the book now
//! and then lets go of the handles of tasks that have ended (which frees
//! their task memory); a long-lived group that is joined one task at a time
//! and is never empty is compacted now and then, so that what it keeps stays
//! proportional to the tasks not yet joined.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, Waker};

use tokio::task::{Id, JoinError, JoinHandle};
use weir_context::Panic;

/// `join_next` compacts the book after this many joins, if they are at
/// least half of what it holds.
pub(crate) const COMPACT_AFTER: usize = 1024;

/// `spawn` looks for ended tasks, to let go of their handles (and so of
/// their memory), after this many spawns, or after twice as many as the
/// handles the last look kept, if more. So a look examines at most 1.5
/// handles per spawn since the last, and the group holds at most three
/// times as many handles as it has running tasks, plus this many.
pub(crate) const SWEEP_EVERY: usize = 64;

/// Panics that tokio caught after a task had delivered its outcome (in the
/// destructor of its future), by task: they replace that outcome.
pub(crate) type Late = Vec<(Id, Panic)>;

pub(crate) struct Book<R> {
    /// Spawn index of `tasks[0]`.
    base: u64,
    /// The tasks spawned since the last compaction, in spawn order.
    tasks: Vec<Record<R>>,
    /// Whether every task's id is above the id of the task spawned before
    /// it. tokio draws ids from one counter, so a group, which spawns from
    /// one place at a time, sees them rise; tokio does not promise it, so
    /// the book checks. While it holds, an id is found in `tasks` by binary
    /// search, and sorting by id is sorting by spawn order.
    rising: bool,
    /// The id of the last task spawned.
    last_id: Option<Id>,
    /// `tasks` as a map from id to spawn index; built when first needed,
    /// and only if ids did not rise.
    positions: Option<HashMap<Id, u64>>,
    /// Tasks not yet joined at the last compaction.
    older: HashMap<Id, Older<R>>,
    /// Tasks handed out one by one by `join_next` since the last compaction.
    joined: Vec<Id>,
    /// Names given to `spawn_named`, until the task is joined.
    names: HashMap<Id, Arc<str>>,
    /// Where in `tasks` the handles are that may still be held (the others
    /// are gone), so that sweeping costs what is held, not what was spawned.
    pending: Vec<usize>,
    /// `record` sweeps when `tasks` reaches this length.
    sweep_at: usize,
    /// Where in `tasks` `handle_mut` last found a task.
    finger: usize,
}

impl<R> Default for Book<R> {
    fn default() -> Self {
        Self {
            base: 0,
            tasks: Vec::new(),
            rising: true,
            last_id: None,
            positions: None,
            older: HashMap::new(),
            joined: Vec::new(),
            names: HashMap::new(),
            pending: Vec::new(),
            sweep_at: 0,
            finger: 0,
        }
    }
}

/// One task spawned since the last compaction.
struct Record<R> {
    id: Id,
    /// `None` once the task is seen to have ended.
    handle: Option<JoinHandle<R>>,
}

/// A task that was not joined yet when the book was compacted.
struct Older<R> {
    index: u64,
    handle: Option<JoinHandle<R>>,
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
fn note_late<R>(late: &mut Late, id: Id, ended: Result<R, JoinError>) {
    if let Err(join_error) = ended
        && join_error.is_panic()
    {
        late.push((id, Panic::from_payload(join_error.into_panic())));
    }
}

/// Reads the handle of an ended task, letting go of it; leaves it while the
/// task runs.
fn sweep_one<R>(handle: &mut Option<JoinHandle<R>>, id: Id, late: &mut Late) {
    if let Some(running) = handle
        && let Some(ended) = try_join(running)
    {
        *handle = None;
        note_late(late, id, ended);
    }
}

impl<R> Book<R> {
    /// The spawn index the next task gets.
    pub(crate) fn next_index(&self) -> u64 {
        self.base + self.tasks.len() as u64
    }

    /// Whether sorting the group's tasks by tokio id sorts them by spawn
    /// order (see `rising`).
    pub(crate) fn ids_in_spawn_order(&self) -> bool {
        self.rising
    }

    /// Keeps the handle (and the name) of the task just spawned; now and
    /// then lets go of the handles of tasks that have ended.
    pub(crate) fn record(
        &mut self,
        handle: JoinHandle<R>,
        name: Option<Arc<str>>,
        late: &mut Late,
    ) {
        let id = handle.id();
        let index = self.next_index();
        if self.last_id.is_some_and(|last| last >= id) {
            self.rising = false;
        }
        self.last_id = Some(id);
        self.pending.push(self.tasks.len());
        self.tasks.push(Record {
            id,
            handle: Some(handle),
        });
        if let Some(positions) = &mut self.positions {
            positions.insert(id, index);
        }
        if let Some(name) = name {
            self.names.insert(id, name);
        }
        if self.tasks.len() >= self.sweep_at {
            self.sweep(late);
            let kept = self.pending.len() + self.older.len();
            self.sweep_at = self.tasks.len() + (2 * kept).max(SWEEP_EVERY);
        }
    }

    /// The task's spawn index, if the book knows the task.
    pub(crate) fn index(&mut self, id: Id) -> Option<u64> {
        if let Some(older) = self.older.get(&id) {
            return Some(older.index);
        }
        if self.rising {
            let i = self.tasks.binary_search_by_key(&id, |r| r.id).ok()?;
            return Some(self.base + i as u64);
        }
        let (base, tasks) = (self.base, &self.tasks);
        let positions = self.positions.get_or_insert_with(|| {
            tasks
                .iter()
                .enumerate()
                .map(|(i, record)| (record.id, base + i as u64))
                .collect()
        });
        positions.get(&id).copied()
    }

    /// Where the task's handle is kept.
    fn handle_mut(&mut self, id: Id) -> Option<&mut Option<JoinHandle<R>>> {
        // Tasks mostly end in the order they were spawned: the one after the
        // last found is a good first guess.
        let guess = self.finger + 1;
        let i = if self.tasks.get(guess).is_some_and(|record| record.id == id) {
            guess
        } else if self.older.contains_key(&id) {
            return self.older.get_mut(&id).map(|older| &mut older.handle);
        } else {
            let index = self.index(id)?;
            usize::try_from(index.checked_sub(self.base)?).ok()?
        };
        self.finger = i;
        self.tasks.get_mut(i).map(|record| &mut record.handle)
    }

    /// Waits until the task has ended, letting go of its handle. Cancel
    /// safe: the handle stays in the book until the task has ended.
    pub(crate) async fn wait_ended(&mut self, id: Id, late: &mut Late) {
        if let Some(slot) = self.handle_mut(id)
            && let Some(handle) = slot
        {
            let ended = handle.await;
            *slot = None;
            note_late(late, id, ended);
        }
    }

    /// The task's name, or `#<index>`; forgets the name (the task is being
    /// handed out).
    pub(crate) fn take_label(&mut self, id: Id) -> String {
        if !self.names.is_empty()
            && let Some(name) = self.names.remove(&id)
        {
            return name.to_string();
        }
        match self.index(id) {
            Some(index) => format!("#{index}"),
            None => format!("#? (tokio task {id})"),
        }
    }

    /// Forgets the name of a task handed out without an error.
    pub(crate) fn forget_name(&mut self, id: Id) {
        if !self.names.is_empty() {
            self.names.remove(&id);
        }
    }

    /// Notes a task that `join_next` handed out (its handle is gone), and
    /// compacts the book when such tasks are most of what it holds.
    pub(crate) fn joined_one(&mut self, id: Id) {
        self.joined.push(id);
        let held = self.tasks.len() + self.older.len();
        if self.joined.len() < COMPACT_AFTER || self.joined.len() * 2 < held {
            return;
        }
        let joined: HashSet<Id> = self.joined.drain(..).collect();
        self.older.retain(|id, _| !joined.contains(id));
        let base = self.base;
        self.base = self.next_index();
        for (i, record) in self.tasks.drain(..).enumerate() {
            if !joined.contains(&record.id) {
                let older = Older {
                    index: base + i as u64,
                    handle: record.handle,
                };
                self.older.insert(record.id, older);
            }
        }
        self.positions = None;
        self.pending.clear();
        self.sweep_at = 0;
        self.finger = 0;
    }

    /// Lets go of the handles of every task that has ended.
    fn sweep(&mut self, late: &mut Late) {
        let tasks = &mut self.tasks;
        self.pending.retain(|&i| {
            let Some(record) = tasks.get_mut(i) else {
                return false;
            };
            sweep_one(&mut record.handle, record.id, late);
            record.handle.is_some()
        });
        for (id, older) in &mut self.older {
            sweep_one(&mut older.handle, *id, late);
        }
    }

    /// Waits until every task has ended (each has delivered its outcome
    /// already, or will at once), letting go of every handle.
    pub(crate) async fn finish(&mut self, late: &mut Late) {
        // The ended ones first, without waiting (nor yielding every 128).
        self.sweep(late);
        for &i in &self.pending {
            if let Some(record) = self.tasks.get_mut(i)
                && let Some(handle) = &mut record.handle
            {
                let ended = handle.await;
                record.handle = None;
                note_late(late, record.id, ended);
            }
        }
        self.pending.clear();
        for (id, older) in &mut self.older {
            if let Some(handle) = &mut older.handle {
                let ended = handle.await;
                older.handle = None;
                note_late(late, *id, ended);
            }
        }
    }

    /// Aborts every task that may still run.
    pub(crate) fn abort_all(&self) {
        let tasks = self.pending.iter().filter_map(|&i| self.tasks.get(i));
        let handles = tasks.map(|r| &r.handle);
        let older = self.older.values().map(|o| &o.handle);
        for handle in handles.chain(older).flatten() {
            handle.abort();
        }
    }

    /// Forgets every task: the group is empty. Indexes go on counting.
    pub(crate) fn clear(&mut self) {
        self.base = self.next_index();
        self.tasks.clear();
        self.positions = None;
        self.older.clear();
        self.joined.clear();
        self.names.clear();
        self.pending.clear();
        self.sweep_at = 0;
        self.finger = 0;
    }

    /// Handles the book still holds (tasks not seen to have ended).
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        let tasks = self.tasks.iter().filter(|r| r.handle.is_some()).count();
        let older = self.older.values().filter(|o| o.handle.is_some()).count();
        tasks + older
    }

    /// Records the book keeps, held or not.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.tasks.len() + self.older.len()
    }
}
