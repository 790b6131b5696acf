//! Accounting and ordering properties over random mixes of tasks that
//! succeed, fail or panic after random delays (paused time).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Once;
use std::time::Duration;

use proptest::prelude::*;
use weir_group::{ErrorPolicy, Group, GroupError};

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

/// Spawns task `i` as `t{i}` (through `limit`, if any): after `delay` ms it
/// returns `Ok(i)`, `Err(i)` or panics. The tasks ignore the context, so
/// every one of them runs to its end, under either policy.
async fn spawn_all(
    tasks: &[(Kind, u64)],
    limit: Option<usize>,
    policy: ErrorPolicy,
) -> Group<usize, usize> {
    let mut builder = Group::builder().error_policy(policy);
    if let Some(limit) = limit {
        builder = builder.limit(limit);
    }
    let mut group = builder.build().unwrap();
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

fn policy() -> impl Strategy<Value = ErrorPolicy> {
    prop_oneof![Just(ErrorPolicy::FailFast), Just(ErrorPolicy::Continue)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn join_accounts_for_every_task_exactly_once(
        tasks in prop::collection::vec((kind(), 0u64..50), 0..16),
        limit in prop::option::of(1usize..4),
        policy in policy(),
    ) {
        quiet_planned_panics();
        let (completion, report, errors) = runtime().block_on(async {
            match spawn_all(&tasks, limit, policy).await.join().await {
                Ok(report) => (report.values().copied().collect::<Vec<_>>(), report, Vec::new()),
                Err(err) => {
                    let (errors, report) = err.into_parts();
                    let completion = report.values().copied().collect();
                    (completion, report, errors.into_vec())
                }
            }
        });
        let count = |k: Kind| tasks.iter().filter(|(kind, _)| *kind == k).count() as u64;
        prop_assert!(report.is_balanced(), "{}", report);
        prop_assert_eq!(report.spawned, tasks.len() as u64);
        prop_assert_eq!(report.succeeded, count(Kind::Ok));
        prop_assert_eq!(report.failed, count(Kind::Err));
        prop_assert_eq!(report.panicked, count(Kind::Panic));
        prop_assert_eq!(report.aborted, 0);
        prop_assert_eq!(errors.len() as u64, count(Kind::Err) + count(Kind::Panic));

        // Each task appears exactly once: as a value or as an error.
        let mut seen = BTreeSet::new();
        for &i in &completion {
            prop_assert_eq!(tasks[i].0, Kind::Ok);
            prop_assert!(seen.insert(i), "task {} reported twice", i);
        }
        for error in &errors {
            let i = index_of(error.task());
            prop_assert!(seen.insert(i), "task {} reported twice", i);
            match (tasks[i].0, error) {
                (Kind::Err, GroupError::Failed { error, .. }) => prop_assert_eq!(**error, i),
                (Kind::Panic, GroupError::Panicked { panic, .. }) => {
                    prop_assert_eq!(panic.message(), PLANNED);
                }
                (kind, error) => prop_assert!(false, "task {i}: {kind:?} gave {error:?}"),
            }
        }
        prop_assert_eq!(seen.len(), tasks.len());

        // Spawn order is index order.
        let ordered = report.into_values_ordered();
        let oks: Vec<usize> = (0..tasks.len()).filter(|&i| tasks[i].0 == Kind::Ok).collect();
        prop_assert_eq!(ordered, oks);

        // Without a limit every task starts at once, so the order things
        // happened in is the order of the delays: values and failures each
        // come in completion order, the earliest failure first.
        if limit.is_none() {
            let delays = |is: &[usize]| is.iter().map(|&i| tasks[i].1).collect::<Vec<_>>();
            let done = delays(&completion);
            prop_assert!(done.windows(2).all(|w| w[0] <= w[1]), "values out of order: {:?}", done);
            let failed: Vec<usize> = errors.iter().map(|e| index_of(e.task())).collect();
            let failed = delays(&failed);
            prop_assert!(failed.windows(2).all(|w| w[0] <= w[1]), "failures out of order: {:?}", failed);
        }
    }

    #[test]
    fn join_puts_the_earliest_failure_first(
        tasks in prop::collection::vec((kind(), 0u64..50), 0..16)
    ) {
        quiet_planned_panics();
        let result = runtime()
            .block_on(async { spawn_all(&tasks, None, ErrorPolicy::FailFast).await.join().await });
        let earliest = tasks
            .iter()
            .filter(|(kind, _)| *kind != Kind::Ok)
            .map(|(_, delay)| *delay)
            .min();
        match (earliest, result) {
            (None, Ok(report)) => {
                prop_assert_eq!(report.into_values_ordered(), (0..tasks.len()).collect::<Vec<_>>());
            }
            (Some(earliest), Err(err)) => {
                let first = err.error().first();
                let i = index_of(first.task());
                let (kind, delay) = tasks[i];
                // Several tasks may fail at the same instant; any of them is
                // the first.
                prop_assert_eq!(delay, earliest);
                match kind {
                    Kind::Err => prop_assert_eq!(first.error(), Some(&i)),
                    Kind::Panic => prop_assert!(first.is_panic()),
                    Kind::Ok => prop_assert!(false, "an Ok task reported {first}"),
                }
            }
            (earliest, result) => {
                prop_assert!(false, "earliest failure {earliest:?} but join gave {result:?}")
            }
        }
    }
}
