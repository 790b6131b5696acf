//! Bounded fan-out under an adaptive limit (`Bounded::adaptive`): never
//! more items admitted than the limit allows as it moves, verdicts as
//! `classify` says, the limit's stats in the report, settings checked,
//! aborted items' slots freed.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::sleep;
use weir_core::{
    AdaptiveLimit, Aimd, Bounded, BoundedError, Cause, Context, LimitOutcome, Problem,
};

const MS: Duration = Duration::from_millis(1);

/// A backend that serves 4 at once: past that it answers "busy".
#[derive(Clone, Default)]
struct Backend {
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Backend {
    async fn call(&self) -> Result<(), &'static str> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        sleep(10 * MS).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        if now > 4 { Err("busy") } else { Ok(()) }
    }
}

#[tokio::test(start_paused = true)]
async fn no_item_is_admitted_beyond_the_limit_as_it_moves() {
    let limit = AdaptiveLimit::builder()
        .aimd(Aimd::new())
        .min(1)
        .max(12)
        .initial(8)
        .window(10 * MS)
        .window_samples(2)
        .build()
        .unwrap();
    let backend = Backend::default();
    let admitted = Arc::new(AtomicUsize::new(0));
    let results = Bounded::adaptive(limit.clone())
        .classify(|r: &Result<(), &str>| match r {
            Ok(()) => LimitOutcome::Success,
            Err(_) => LimitOutcome::Dropped,
        })
        .run_all(0..600, |_| {
            // Called right after the item's slot was handed out.
            assert!(
                limit.in_flight() <= limit.limit(),
                "{} in flight under a limit of {}",
                limit.in_flight(),
                limit.limit()
            );
            admitted.fetch_add(1, Ordering::SeqCst);
            let backend = backend.clone();
            async move { backend.call().await }
        })
        .await
        .unwrap();
    assert_eq!(results.len(), 600);
    assert_eq!(admitted.load(Ordering::SeqCst), 600);
    let stats = limit.stats();
    // It started above the capacity, backed off on the "busy" answers, and
    // probed upwards again: it moved both ways.
    assert!(stats.adjustments > 2, "{stats}");
    assert!(stats.min_seen <= 4 && stats.max_seen > 4, "{stats}");
    assert_eq!(stats.accepted, 600);
    assert_eq!(stats.in_flight, 0);
    assert!(stats.is_balanced());
    let busy = results.iter().filter(|r| r.is_err()).count() as u64;
    assert_eq!((stats.succeeded, stats.dropped), (600 - busy, busy));
    assert!(backend.peak.load(Ordering::SeqCst) <= stats.max_seen);
}

#[tokio::test(start_paused = true)]
async fn the_report_carries_the_limits_stats() {
    let limit = AdaptiveLimit::builder()
        .min(2)
        .max(2)
        .initial(2)
        .name("db")
        .build()
        .unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let err = Bounded::adaptive(limit.clone())
        .run(0..10u32, |i| {
            let (running, peak) = (running.clone(), peak.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                sleep(10 * MS).await;
                running.fetch_sub(1, Ordering::SeqCst);
                if i == 5 {
                    Err(format!("item {i}"))
                } else {
                    Ok(i)
                }
            }
        })
        .await
        .unwrap_err();
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    assert!(matches!(err.error(), BoundedError::Failed { index: 5, .. }));
    let report = err.report();
    assert_eq!(report.limit, 2);
    let stats = report.adaptive.as_ref().unwrap();
    assert_eq!(stats.name, "db");
    // The default classification: the error says nothing about the load.
    assert_eq!((stats.succeeded, stats.ignored), (5, 1));
    assert!(stats.is_balanced());
    assert!(report.to_string().contains("db (gradient)"));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_run_frees_every_slot() {
    let limit = AdaptiveLimit::builder().initial(3).build().unwrap();
    let ctx = Context::background().with_timeout(25 * MS);
    let err = Bounded::adaptive(limit.clone())
        .context(&ctx)
        .run(0..100u32, |i| async move {
            sleep(10 * MS).await;
            anyhow::Ok(i)
        })
        .await
        .unwrap_err();
    assert!(matches!(
        err.error(),
        BoundedError::Stopped(Cause::DeadlineExceeded)
    ));
    let report = err.report();
    assert_eq!((report.succeeded, report.cancelled), (6, 3));
    let stats = limit.stats();
    assert_eq!((stats.in_flight, stats.abandoned), (0, 3));
    assert!(stats.is_balanced());
}

#[tokio::test(start_paused = true)]
async fn settings_are_checked_when_the_run_starts() {
    let limit = AdaptiveLimit::builder().build().unwrap();
    let err = Bounded::adaptive(limit.clone())
        .in_batches()
        .run(0..3, |i| async move { anyhow::Ok(i) })
        .await
        .unwrap_err();
    match err.error() {
        BoundedError::Config(e) => {
            assert_eq!(e.setting(), "in_batches");
            assert!(matches!(e.problem(), Problem::Invalid(_)));
        }
        other => panic!("{other}"),
    }
    let err = Bounded::new(2)
        .classify(|_: &Result<i32, anyhow::Error>| LimitOutcome::Dropped)
        .run_all(0..3, |i| async move { anyhow::Ok(i) })
        .await
        .unwrap_err();
    assert_eq!(err.setting(), "classify");
    assert_eq!(limit.stats().accepted, 0, "nothing ran");
}
