//! A group's series (feature `metrics`; docs/observability.md): tasks
//! spawned, tasks handed back by outcome, tasks not joined yet. Recorded
//! where the group counts them for its report.

use metrics::{Counter, Gauge, counter, gauge};

#[derive(Debug)]
pub(crate) struct GroupSeries {
    spawned: Counter,
    succeeded: Counter,
    failed: Counter,
    panicked: Counter,
    aborted: Counter,
    live: Gauge,
}

/// How a task's outcome was handed back.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Settled {
    Succeeded,
    Failed,
    Panicked,
    Aborted,
}

impl GroupSeries {
    pub(crate) fn new(group: &str) -> Self {
        let tasks = |outcome: &'static str| counter!("weir_group_tasks_total", "group" => group.to_owned(), "outcome" => outcome);
        Self {
            spawned: counter!("weir_group_tasks_spawned_total", "group" => group.to_owned()),
            succeeded: tasks("succeeded"),
            failed: tasks("failed"),
            panicked: tasks("panicked"),
            aborted: tasks("aborted"),
            live: gauge!("weir_group_tasks_live", "group" => group.to_owned()),
        }
    }

    pub(crate) fn spawned(&self) {
        self.spawned.increment(1);
        self.live.increment(1.0);
    }

    pub(crate) fn settled(&self, outcome: Settled) {
        self.live.decrement(1.0);
        match outcome {
            Settled::Succeeded => &self.succeeded,
            Settled::Failed => &self.failed,
            Settled::Panicked => &self.panicked,
            Settled::Aborted => &self.aborted,
        }
        .increment(1);
    }
}
