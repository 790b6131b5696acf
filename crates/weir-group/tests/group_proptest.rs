//! Accounting and ordering properties over random mixes of tasks that
//! succeed, fail or panic after random delays (paused time).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Once;
use std::time::Duration;

use proptest::prelude::*;
use weir_group::{Group, GroupError};

const PLANNED: &str = "planned panic";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ok,
    Err,
    Panic,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Ok), Just(Kind::Err), Just(Kind::Panic)]
}

/// Keeps the planned panics out of the test output; others still print.
fn quiet_planned_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if weir_context::__private::panic_message(info.payload()) != PLANNED {
                default(info);
            }
        }));
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Spawns task `i` as `t{i}` (through `limit`, if any): after `delay` ms it returns `Ok(i)`, `Err(i)` or
/// panics. The tasks ignore the token, so every one of them runs to its end.
async fn spawn_all(tasks: &[(Kind, u64)], limit: Option<usize>) -> Group<usize, usize> {
    let mut group = Group::new();
    if let Some(limit) = limit {
        group.set_limit(limit).unwrap();
    }
    for (i, &(kind, delay)) in tasks.iter().enumerate() {
        group
            .spawn_named(format!("t{i}"), async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                match kind {
                    Kind::Ok => Ok(i),
                    Kind::Err => Err(i),
                    Kind::Panic => panic!("{PLANNED}"),
                }
            })
            .await;
    }
    group
}

fn index_of(task: &str) -> usize {
    task.strip_prefix('t').unwrap().parse().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn wait_all_returns_exactly_one_entry_per_task(
        tasks in prop::collection::vec((kind(), 0u64..50), 0..16),
        limit in prop::option::of(1usize..4),
    ) {
        quiet_planned_panics();
        let (completion, ordered) = runtime().block_on(async {
            let completion = spawn_all(&tasks, limit).await.wait_all().await;
            let ordered = spawn_all(&tasks, limit).await.wait_all_ordered().await;
            (completion, ordered)
        });
        prop_assert_eq!(completion.len(), tasks.len());
        prop_assert_eq!(ordered.len(), tasks.len());

        // Each task appears exactly once in the completion-order results.
        let mut seen = BTreeSet::new();
        for result in &completion {
            let i = match result {
                Ok(i) => *i,
                Err(e) => index_of(e.task()),
            };
            prop_assert!(seen.insert(i), "task {} reported twice", i);
        }
        prop_assert_eq!(seen.len(), tasks.len());

        // In spawn order, entry i is task i with the outcome it was given.
        for (i, (result, &(kind, _))) in ordered.iter().zip(&tasks).enumerate() {
            match (kind, result) {
                (Kind::Ok, Ok(v)) => prop_assert_eq!(*v, i),
                (Kind::Err, Err(GroupError::Failed { task, error })) => {
                    prop_assert_eq!(index_of(task), i);
                    prop_assert_eq!(*error, i);
                }
                (Kind::Panic, Err(GroupError::Panicked { task, message })) => {
                    prop_assert_eq!(index_of(task), i);
                    prop_assert_eq!(message.as_str(), PLANNED);
                }
                (kind, result) => prop_assert!(false, "task {i}: {kind:?} gave {result:?}"),
            }
        }
    }

    #[test]
    fn wait_returns_the_earliest_failure_by_paused_time(
        tasks in prop::collection::vec((kind(), 0u64..50), 0..16)
    ) {
        quiet_planned_panics();
        let result = runtime().block_on(async { spawn_all(&tasks, None).await.wait().await });
        let earliest = tasks
            .iter()
            .filter(|(kind, _)| *kind != Kind::Ok)
            .map(|(_, delay)| *delay)
            .min();
        match (earliest, result) {
            (None, Ok(values)) => {
                let mut values = values;
                values.sort_unstable();
                prop_assert_eq!(values, (0..tasks.len()).collect::<Vec<_>>());
            }
            (Some(earliest), Err(error)) => {
                let i = index_of(error.task());
                let (kind, delay) = tasks[i];
                // Several tasks may fail at the same instant; any of them is
                // the first.
                prop_assert_eq!(delay, earliest);
                match kind {
                    Kind::Err => prop_assert_eq!(error.into_error(), Some(i)),
                    Kind::Panic => prop_assert!(error.is_panic()),
                    Kind::Ok => prop_assert!(false, "an Ok task reported {error}"),
                }
            }
            (earliest, result) => {
                prop_assert!(false, "earliest failure {earliest:?} but wait gave {result:?}")
            }
        }
    }
}
