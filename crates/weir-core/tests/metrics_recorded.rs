//! The `metrics` feature: what a pool and a pipeline record through the
//! `metrics` facade, read back from metrics-util's debugging recorder.
//! Each test runs a current-thread runtime on paused time inside its own
//! local recorder, so tests in parallel do not see each other's series.
#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::time::sleep;
use weir_core::{ErrorPolicy, Pipeline, Pool};

/// Every series: `name{label=value,...}` to its value.
#[derive(Debug, Default)]
struct Series(BTreeMap<String, DebugValue>);

impl Series {
    fn read(snapshotter: &Snapshotter) -> Self {
        let mut series = BTreeMap::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            series.insert(format!("{}{{{}}}", key.name(), labels.join(",")), value);
        }
        Self(series)
    }

    fn counter(&self, key: &str) -> u64 {
        match self.0.get(key) {
            Some(DebugValue::Counter(n)) => *n,
            other => panic!("{key}: {other:?} in {self:#?}"),
        }
    }

    fn gauge(&self, key: &str) -> f64 {
        match self.0.get(key) {
            Some(DebugValue::Gauge(v)) => v.into_inner(),
            other => panic!("{key}: {other:?} in {self:#?}"),
        }
    }

    fn histogram(&self, key: &str) -> Vec<f64> {
        match self.0.get(key) {
            Some(DebugValue::Histogram(v)) => v.iter().map(|x| x.into_inner()).collect(),
            other => panic!("{key}: {other:?} in {self:#?}"),
        }
    }
}

/// Runs `test` on a paused current-thread runtime with a recorder of its
/// own (its tasks run on this thread, where the local recorder is), and
/// returns what was recorded.
fn recorded<F: Future<Output = ()>>(test: impl FnOnce(Snapshotter) -> F) -> Series {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let inner = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(test(inner));
    });
    Series::read(&snapshotter)
}

fn quiet_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !format!("{info}").contains("deliberate") {
            default(info);
        }
    }));
}

#[test]
fn a_pool_records_its_outcomes_gauges_and_job_durations() {
    quiet_panics();
    let series = recorded(|_| async {
        let pool = Pool::builder()
            .workers(2)
            .queue(16)
            .name("thumbs")
            .build(|n: u32| async move {
                sleep(Duration::from_millis(10 * u64::from(n % 3 + 1))).await;
                match n {
                    3 | 7 => anyhow::bail!("bad image {n}"),
                    5 => panic!("deliberate"),
                    _ => Ok(n),
                }
            })
            .unwrap();
        let mut tickets = Vec::new();
        for n in 0..10 {
            tickets.push(pool.submit(n).await.unwrap());
        }
        for t in tickets {
            let _ = t.await;
        }
        let late = pool.clone();
        pool.join().await.unwrap();
        assert!(late.try_submit(99).is_err(), "closed: rejected");
        assert_eq!(late.report().rejected, 1);
        assert_eq!(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
            0,
            "the publisher ends with the pool"
        );
    });
    let jobs = |outcome| format!("weir_pool_jobs_total{{pool=thumbs,outcome={outcome}}}");
    assert_eq!(series.counter(&jobs("completed")), 7);
    assert_eq!(series.counter(&jobs("failed")), 2);
    assert_eq!(series.counter(&jobs("panicked")), 1);
    assert_eq!(series.counter(&jobs("cancelled")), 0);
    // Rejected after the pool's end: counted in the report, published
    // only while the pool runs.
    assert_eq!(series.counter(&jobs("rejected")), 0);
    assert_eq!(series.gauge("weir_pool_jobs_queued{pool=thumbs}"), 0.0);
    assert_eq!(series.gauge("weir_pool_jobs_running{pool=thumbs}"), 0.0);
    assert_eq!(series.gauge("weir_pool_workers{pool=thumbs}"), 0.0);
    let mut durations = series.histogram("weir_pool_job_duration_seconds{pool=thumbs}");
    durations.sort_by(f64::total_cmp);
    assert_eq!(durations.len(), 10, "one per job that ran to its end");
    assert_eq!(durations[0], 0.01);
    assert_eq!(durations[9], 0.03);
}

#[test]
fn a_pool_publishes_while_it_runs() {
    let series = recorded(|snapshotter| async move {
        let pool = Pool::builder()
            .workers(1)
            .queue(100)
            .name("steady")
            .build(|_: u32| async move {
                sleep(Duration::from_millis(120)).await;
                anyhow::Ok(())
            })
            .unwrap();
        for n in 0..30 {
            pool.submit_detached(n).await.unwrap();
        }
        assert!(pool.try_submit(0).is_ok());
        sleep(Duration::from_millis(1_050)).await;
        // Published at 1 s: 8 done (120 ms each), one running, the rest
        // of the 31 queued.
        let live = Series::read(&snapshotter);
        assert_eq!(
            live.counter("weir_pool_jobs_total{pool=steady,outcome=completed}"),
            8
        );
        assert_eq!(live.gauge("weir_pool_jobs_running{pool=steady}"), 1.0);
        assert_eq!(live.gauge("weir_pool_jobs_queued{pool=steady}"), 22.0);
        assert_eq!(live.gauge("weir_pool_workers{pool=steady}"), 1.0);
        pool.cancel();
        let err = pool.join().await.unwrap_err();
        assert_eq!(err.report().cancelled, 23);
    });
    // What was published after the live read (a read drains the
    // debugging recorder's counters): the cancelled jobs, nothing more
    // completed.
    assert_eq!(
        series.counter("weir_pool_jobs_total{pool=steady,outcome=cancelled}"),
        23
    );
    assert_eq!(
        series.counter("weir_pool_jobs_total{pool=steady,outcome=completed}"),
        0
    );
}

#[test]
fn a_pipeline_records_each_stage() {
    quiet_panics();
    let series = recorded(|_| async {
        let (out, mut handle) = Pipeline::from_iter(0..100u64)
            .name("etl")
            .error_policy(ErrorPolicy::Continue)
            .map("parse", 2, |x| async move {
                sleep(Duration::from_millis(5)).await;
                if x % 10 == 9 {
                    anyhow::bail!("bad row {x}");
                }
                Ok(x)
            })
            .filter("even", |x| x % 2 == 0)
            .into_stream()
            .unwrap();
        let errors = handle.errors().unwrap();
        let (items, errors) = futures::join!(
            futures::StreamExt::count(out),
            futures::StreamExt::count(errors)
        );
        assert_eq!((items, errors), (50, 10));
        let report = handle.join().await.unwrap();
        assert!(report.is_balanced());
        assert_eq!(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
            0
        );
    });
    let c =
        |name: &str, stage: &str| series.counter(&format!("{name}{{pipeline=etl,stage={stage}}}"));
    assert_eq!(c("weir_stage_items_in_total", "source"), 100);
    assert_eq!(c("weir_stage_items_out_total", "source"), 100);
    assert_eq!(c("weir_stage_items_in_total", "parse"), 100);
    assert_eq!(c("weir_stage_items_out_total", "parse"), 90);
    assert_eq!(c("weir_stage_items_failed_total", "parse"), 10);
    assert_eq!(c("weir_stage_items_in_total", "even"), 90);
    assert_eq!(c("weir_stage_items_filtered_total", "even"), 40);
    assert_eq!(c("weir_stage_items_out_total", "even"), 50);
    assert_eq!(c("weir_stage_items_cancelled_total", "even"), 0);
    let g =
        |name: &str, stage: &str| series.gauge(&format!("{name}{{pipeline=etl,stage={stage}}}"));
    assert_eq!(g("weir_stage_queue_depth", "even"), 0.0);
    assert_eq!(g("weir_stage_items_in_flight", "parse"), 0.0);
    let parse = series.histogram("weir_stage_item_duration_seconds{pipeline=etl,stage=parse}");
    assert_eq!(parse.len(), 100, "every item, failed ones too");
    assert!(parse.iter().all(|&d| d == 0.005), "{parse:?}");
    let even = series.histogram("weir_stage_item_duration_seconds{pipeline=etl,stage=even}");
    assert_eq!(even.len(), 90);
}

#[test]
fn a_cancelled_pipeline_publishes_what_it_cancelled() {
    let series = recorded(|_| async {
        let (out, handle) = Pipeline::from_iter(0..1_000u64)
            .map("slow", 1, |x| async move {
                sleep(Duration::from_millis(100)).await;
                anyhow::Ok(x)
            })
            .into_stream()
            .unwrap();
        let drain = tokio::spawn(futures::StreamExt::count(out));
        sleep(Duration::from_millis(2_550)).await;
        handle.cancel();
        let err = handle.join().await.unwrap_err();
        assert!(err.report().is_balanced());
        assert_eq!(drain.await.unwrap(), 25);
    });
    let c = |name: &str| series.counter(&format!("{name}{{pipeline=pipeline,stage=slow}}"));
    assert_eq!(c("weir_stage_items_out_total"), 25);
    assert_eq!(
        c("weir_stage_items_in_total"),
        25 + c("weir_stage_items_cancelled_total"),
        "the stage balances in the published series too"
    );
}
