//! [`GroupReport`]: what a group's run did.

use std::fmt;
use std::time::Duration;

use weir_context::__private::write_table;

/// What a [`Group`](crate::Group) did, from its creation to the end of
/// [`join`](crate::Group::join) or [`shutdown`](crate::Group::shutdown):
/// how many tasks it spawned and how each ended, and the values of the
/// tasks that succeeded.
///
/// Accounting law, once the group has been joined:
/// `spawned == succeeded + failed + panicked + aborted`
/// ([`is_balanced`](Self::is_balanced)). The counts cover every task of the
/// group, those taken with [`join_next`](crate::Group::join_next) included;
/// the values are only those `join` or `shutdown` collected (the others
/// went to the caller of `join_next`).
///
/// `Display` prints one row under a header:
///
/// ```text
/// spawned  succeeded  failed  panicked  aborted  elapsed
/// 5                3       1         1        0     50ms
/// ```
///
/// `Debug` shows the counts and how many values there are, and needs
/// nothing of `T`.
#[derive(Clone)]
#[non_exhaustive]
pub struct GroupReport<T = ()> {
    /// Tasks spawned.
    pub spawned: u64,
    /// Tasks that returned `Ok`.
    pub succeeded: u64,
    /// Tasks that returned `Err`.
    pub failed: u64,
    /// Tasks that panicked.
    pub panicked: u64,
    /// Tasks aborted before they finished (by `shutdown` after its grace
    /// period, or by their runtime shutting down).
    pub aborted: u64,
    /// Time from the group's creation to the end of `join` or `shutdown`.
    pub elapsed: Duration,
    /// The successful values, in completion order.
    values: Vec<T>,
    /// What puts `values` in spawn order.
    order: Order,
}

/// A key per value that sorts the values into spawn order: the tokio ids
/// of their tasks (which rise in spawn order, as the group checked), or
/// their spawn indexes (should ids ever not rise).
#[derive(Debug, Clone)]
pub(crate) enum Order {
    Ids(Vec<tokio::task::Id>),
    Indexes(Vec<u64>),
}

/// How many tasks ended each way.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    pub(crate) spawned: u64,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    pub(crate) panicked: u64,
    pub(crate) aborted: u64,
}

impl<T> GroupReport<T> {
    pub(crate) fn new(counts: Counts, elapsed: Duration, values: Vec<T>, order: Order) -> Self {
        Self {
            spawned: counts.spawned,
            succeeded: counts.succeeded,
            failed: counts.failed,
            panicked: counts.panicked,
            aborted: counts.aborted,
            elapsed,
            values,
            order,
        }
    }

    /// Tasks that ended, however they ended:
    /// `succeeded + failed + panicked + aborted`.
    pub fn finished(&self) -> u64 {
        self.succeeded + self.failed + self.panicked + self.aborted
    }

    /// Whether every spawned task is accounted for
    /// (`spawned == succeeded + failed + panicked + aborted`); always true
    /// for the report of `join` or `shutdown`.
    pub fn is_balanced(&self) -> bool {
        self.spawned == self.finished()
    }

    /// The values of the tasks that succeeded, in the order they finished.
    pub fn values(&self) -> std::slice::Iter<'_, T> {
        self.values.iter()
    }

    /// Takes the values of the tasks that succeeded, in the order they
    /// finished.
    pub fn into_values(self) -> Vec<T> {
        self.values
    }

    /// Takes the values of the tasks that succeeded, in the order the tasks
    /// were spawned.
    pub fn into_values_ordered(self) -> Vec<T> {
        fn sorted<K: Ord, T>(keys: Vec<K>, values: Vec<T>) -> Vec<T> {
            let mut keyed: Vec<(K, T)> = keys.into_iter().zip(values).collect();
            keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            keyed.into_iter().map(|(_, value)| value).collect()
        }
        match self.order {
            Order::Ids(ids) => sorted(ids, self.values),
            Order::Indexes(indexes) => sorted(indexes, self.values),
        }
    }
}

impl<T> fmt::Debug for GroupReport<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupReport")
            .field("spawned", &self.spawned)
            .field("succeeded", &self.succeeded)
            .field("failed", &self.failed)
            .field("panicked", &self.panicked)
            .field("aborted", &self.aborted)
            .field("elapsed", &self.elapsed)
            .field("values", &self.values.len())
            .finish()
    }
}

impl<T> fmt::Display for GroupReport<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_table(
            f,
            &[
                "spawned",
                "succeeded",
                "failed",
                "panicked",
                "aborted",
                "elapsed",
            ],
            &[vec![
                self.spawned.to_string(),
                self.succeeded.to_string(),
                self.failed.to_string(),
                self.panicked.to_string(),
                self.aborted.to_string(),
                format!("{:?}", self.elapsed),
            ]],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> GroupReport<&'static str> {
        let counts = Counts {
            spawned: 5,
            succeeded: 3,
            failed: 1,
            panicked: 1,
            aborted: 0,
        };
        GroupReport::new(
            counts,
            Duration::from_millis(50),
            vec!["c", "a", "b"],
            Order::Indexes(vec![4, 0, 2]),
        )
    }

    #[test]
    fn display_is_a_table() {
        assert_eq!(
            report().to_string(),
            "spawned  succeeded  failed  panicked  aborted  elapsed\n\
             5                3       1         1        0     50ms\n"
        );
    }

    #[test]
    fn debug_needs_nothing_of_the_values() {
        struct Opaque;
        let r = GroupReport::new(
            Counts::default(),
            Duration::ZERO,
            vec![Opaque],
            Order::Indexes(vec![0]),
        );
        assert_eq!(
            format!("{r:?}"),
            "GroupReport { spawned: 0, succeeded: 0, failed: 0, panicked: 0, aborted: 0, \
             elapsed: 0ns, values: 1 }"
        );
    }

    #[test]
    fn values_in_completion_and_spawn_order() {
        let r = report();
        assert!(r.is_balanced());
        assert_eq!(r.finished(), 5);
        assert_eq!(r.values().copied().collect::<Vec<_>>(), ["c", "a", "b"]);
        assert_eq!(r.clone().into_values(), ["c", "a", "b"]);
        assert_eq!(r.into_values_ordered(), ["a", "b", "c"]);
    }
}
