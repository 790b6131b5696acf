//! The `metrics` feature: what a group records, read back from
//! metrics-util's debugging recorder (a local one per test, on a paused
//! current-thread runtime).
#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use weir_group::{ErrorPolicy, Group};

fn recorded<F: Future<Output = ()>>(test: impl FnOnce() -> F) -> BTreeMap<String, DebugValue> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(test());
    });
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

#[test]
fn a_group_records_its_tasks_by_outcome() {
    let series = recorded(|| async {
        let mut group: Group<u32> = Group::builder()
            .name("fetch")
            .limit(2)
            .error_policy(ErrorPolicy::Continue)
            .build()
            .unwrap();
        assert_eq!(group.name(), "fetch");
        for i in 0..6u32 {
            group
                .spawn(async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    if i % 3 == 0 {
                        anyhow::bail!("task {i} failed");
                    }
                    Ok(i)
                })
                .await;
        }
        let err = group.join().await.unwrap_err();
        assert_eq!(err.report().succeeded, 4);
        assert_eq!(err.report().failed, 2);

        // A group dropped with a task not joined: the task is aborted.
        let mut dropped: Group<()> = Group::builder().name("dropped").build().unwrap();
        dropped.spawn(std::future::pending()).await;
        drop(dropped);
    });
    let get = |key: &str| series.get(key);
    assert_eq!(
        get("weir_group_tasks_spawned_total{group=fetch}"),
        Some(&DebugValue::Counter(6))
    );
    assert_eq!(
        get("weir_group_tasks_total{group=fetch,outcome=succeeded}"),
        Some(&DebugValue::Counter(4))
    );
    assert_eq!(
        get("weir_group_tasks_total{group=fetch,outcome=failed}"),
        Some(&DebugValue::Counter(2))
    );
    assert_eq!(
        get("weir_group_tasks_live{group=fetch}"),
        Some(&DebugValue::Gauge(0.0.into()))
    );
    assert_eq!(
        get("weir_group_tasks_total{group=dropped,outcome=aborted}"),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        get("weir_group_tasks_live{group=dropped}"),
        Some(&DebugValue::Gauge(0.0.into()))
    );
}
