//! The live tasks of each leak check, and the thread-local that says which
//! check a new task belongs to.
//!
//! A check is current on the thread that started it (the test's thread:
//! `#[tokio::test]` polls the test body there on either runtime flavor)
//! and, while it is polled, in every task registered with it, so tasks
//! that weir's tasks spawn belong to the same check. Checks of tests that
//! run at the same time in one process therefore stay apart: each sees
//! only what its own test created.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::track::{Construct, Label};

/// One check's live tasks, in spawn order.
#[derive(Debug, Default)]
pub(crate) struct Check {
    live: Mutex<Live>,
}

#[derive(Debug, Default)]
struct Live {
    next: u64,
    tasks: BTreeMap<u64, Entry>,
}

/// A registered task, as the check reports it.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) construct: Construct,
    pub(crate) name: Box<str>,
    pub(crate) task: &'static str,
    pub(crate) stage: Option<Box<str>>,
    pub(crate) index: Option<usize>,
    pub(crate) location: Option<&'static Location<'static>>,
}

impl Check {
    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        // A panic while holding this lock leaves the map whole (inserts and
        // removes do not panic half-way), so a poisoned lock is still good.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tasks alive now.
    pub(crate) fn alive(&self) -> Vec<Entry> {
        self.lock().tasks.values().cloned().collect()
    }
}

thread_local! {
    /// The check that tasks spawned from this thread, now, belong to.
    static CURRENT: RefCell<Option<Arc<Check>>> = const { RefCell::new(None) };
}

/// Makes `check` current on this thread; returns the one it replaces.
pub(crate) fn enter(check: Option<Arc<Check>>) -> Option<Arc<Check>> {
    CURRENT.with_borrow_mut(|current| std::mem::replace(current, check))
}

/// Whether `check` is the current one on this thread.
pub(crate) fn is_current(check: &Arc<Check>) -> bool {
    CURRENT.with_borrow(|current| current.as_ref().is_some_and(|c| Arc::ptr_eq(c, check)))
}

/// A task's place in its check; leaving it when dropped.
#[derive(Debug)]
struct Registration {
    check: Arc<Check>,
    id: u64,
}

impl Registration {
    fn new(check: Arc<Check>, label: &Label<'_>) -> Self {
        let entry = Entry {
            construct: label.construct,
            name: label.name.into(),
            task: label.task,
            stage: label.stage.map(Into::into),
            index: label.index,
            location: label.origin.location(),
        };
        let id = {
            let mut live = check.lock();
            let id = live.next;
            live.next += 1;
            live.tasks.insert(id, entry);
            id
        };
        Registration { check, id }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.check.lock().tasks.remove(&self.id);
    }
}

/// Restores the thread's current check when a poll ends (or unwinds).
struct Scope(Option<Arc<Check>>);

impl Drop for Scope {
    fn drop(&mut self) {
        enter(self.0.take());
    }
}

pin_project! {
    /// A task's future, registered with the leak check that was current
    /// when it was spawned: the check lists it until it is dropped.
    #[must_use = "futures do nothing unless polled"]
    #[derive(Debug)]
    pub struct Tracked<F> {
        // Declared first so it is dropped first: the registration outlives
        // the future's own drop, which is still part of the task's end.
        #[pin]
        fut: F,
        registration: Option<Registration>,
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        match this.registration {
            None => this.fut.poll(cx),
            Some(registration) => {
                let _scope = Scope(enter(Some(Arc::clone(&registration.check))));
                this.fut.poll(cx)
            }
        }
    }
}

/// Registers the task that will run `fut` with the leak check current on
/// this thread, if there is one.
pub fn track<F: Future>(label: &Label<'_>, fut: F) -> Tracked<F> {
    let check = CURRENT.with_borrow(Clone::clone);
    Tracked {
        fut,
        registration: check.map(|check| Registration::new(check, label)),
    }
}
