//! `PipelineHandle::progress` and `Pool::progress`: a snapshot a period,
//! rates between snapshots, one final snapshot when the construct ends,
//! then the end of the stream; bad intervals. Paused time.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::StreamExt;
use tokio::time::{Instant, sleep};
use weir_core::{
    Pipeline, PipelineProgress, PipelineSnapshot, Pool, PoolProgress, PoolSnapshot, Problem,
    StageProgress,
};

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[test]
fn auto_traits() {
    fn send_unpin<T: Send + Unpin>() {}
    fn send_sync<T: Send + Sync>() {}
    send_unpin::<PipelineProgress>();
    send_unpin::<PoolProgress>();
    send_sync::<PipelineSnapshot>();
    send_sync::<StageProgress>();
    send_sync::<PoolSnapshot>();
}

/// A source, then a stage of one worker at 100 ms an item: 10 items a
/// second through `slow`, the rest waiting in front of it.
fn slow_pipeline(items: u64) -> Pipeline<u64> {
    Pipeline::from_iter(0..items)
        .name("progress-test")
        .capacity(4)
        .map("slow", 1, |x| async move {
            sleep(Duration::from_millis(100)).await;
            anyhow::Ok(x)
        })
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_a_period_then_the_final_one_then_the_end() {
    let start = Instant::now();
    let (out, handle) = slow_pipeline(35).into_stream().unwrap();
    assert_eq!(handle.name(), "progress-test");
    let drain = tokio::spawn(out.count());
    let snapshots: Vec<PipelineSnapshot> = handle
        .progress(Duration::from_secs(1))
        .unwrap()
        .collect()
        .await;
    // 35 items at 10 a second: periods at 1, 2 and 3 s, the end at 3.5 s.
    assert_eq!(snapshots.len(), 4, "{snapshots:#?}");
    assert_eq!(start.elapsed(), Duration::from_millis(3_500));
    for (i, s) in snapshots.iter().enumerate() {
        assert_eq!(s.is_final, i == 3);
        assert_eq!(s.stages.len(), 2);
        assert_eq!(s.stages[0].name, "source");
        assert_eq!(s.stages[1].name, "slow");
        assert_eq!(s.stages[0].queued, 0, "the source has no queue before it");
    }
    for s in &snapshots[..3] {
        assert_eq!(s.since_previous, Duration::from_secs(1));
        let slow = s.stage("slow").unwrap();
        assert!(
            (9.0..=11.0).contains(&slow.input_per_sec),
            "about 10 items a second in: {slow:?}"
        );
        assert!(
            (9.0..=11.0).contains(&slow.output_per_sec),
            "about 10 items a second out: {slow:?}"
        );
        // The source is far ahead: the queue before `slow` is full (4
        // items; a chunk may wait on top of it, uncounted).
        assert!(slow.queued >= 1 && slow.queued <= 8, "{slow:?}");
        assert!(slow.in_flight <= 1);
    }
    let last = snapshots.last().unwrap();
    assert_eq!(last.since_previous, Duration::from_millis(500));
    assert!(last.report.is_balanced(), "{:#?}", last.report);
    assert_eq!(last.report.stage("slow").unwrap().output, 35);
    assert_eq!(last.stage("slow").unwrap().queued, 0);
    assert_eq!(drain.await.unwrap(), 35);
    handle.join().await.unwrap();
    assert_eq!(alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_pipeline_ends_the_stream_with_its_final_counts() {
    let (out, handle) = slow_pipeline(1_000).into_stream().unwrap();
    let drain = tokio::spawn(out.count());
    let mut progress = handle.progress(Duration::from_millis(250)).unwrap();
    let first = progress.next().await.unwrap();
    assert!(!first.is_final);
    handle.cancel();
    let last = progress.next().await.unwrap();
    assert!(last.is_final);
    assert!(last.report.is_balanced(), "{:#?}", last.report);
    assert!(last.report.cancelled() > 0);
    assert!(progress.next().await.is_none());
    assert!(progress.next().await.is_none(), "stays ended");
    drain.await.unwrap();
    assert!(handle.join().await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_stream_made_after_the_end_gives_the_final_snapshot_at_once() {
    let (out, handle) = slow_pipeline(3).into_stream().unwrap();
    assert_eq!(out.count().await, 3);
    while !handle.is_finished() {
        tokio::task::yield_now().await;
    }
    let start = Instant::now();
    let snapshots: Vec<_> = handle
        .progress(Duration::from_secs(60))
        .unwrap()
        .collect()
        .await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(snapshots.len(), 1);
    assert!(snapshots[0].is_final);
    assert_eq!(snapshots[0].report.delivered, 3);
    handle.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn zero_is_an_error_and_an_endless_period_gives_only_the_end() {
    let (out, handle) = slow_pipeline(5).into_stream().unwrap();
    let err = handle.progress(Duration::ZERO).unwrap_err();
    assert_eq!(err.problem(), &Problem::Zero);
    assert_eq!(
        err.to_string(),
        "pipeline `progress-test`: progress interval must be at least 1 (got 0)"
    );
    let drain = tokio::spawn(out.count());
    let snapshots: Vec<_> = handle.progress(Duration::MAX).unwrap().collect().await;
    assert_eq!(snapshots.len(), 1);
    assert!(snapshots[0].is_final);
    assert_eq!(drain.await.unwrap(), 5);
    handle.join().await.unwrap();

    let pool = Pool::builder()
        .name("zero")
        .build(|x: u32| async move { anyhow::Ok(x) })
        .unwrap();
    assert_eq!(
        pool.progress(Duration::ZERO).unwrap_err().problem(),
        &Problem::Zero
    );
    pool.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn pool_progress_rates_and_final_snapshot() {
    let pool = Pool::builder()
        .workers(2)
        .queue(100)
        .name("progress-pool")
        .build(|x: u32| async move {
            sleep(Duration::from_millis(100)).await;
            anyhow::Ok(x)
        })
        .unwrap();
    let progress = pool.progress(Duration::from_secs(1)).unwrap();
    for job in 0..50 {
        pool.submit_detached(job).await.unwrap();
    }
    let snapshots = tokio::spawn(progress.collect::<Vec<_>>());
    // The stream does not keep the pool open: join closes it, the workers
    // drain, the stream ends with the final report.
    let report = pool.join().await.unwrap();
    let snapshots = snapshots.await.unwrap();
    // Two workers at 100 ms a job: 20 a second, 50 jobs in 2.5 s.
    assert_eq!(snapshots.len(), 3, "{snapshots:#?}");
    let last = snapshots.last().unwrap();
    assert!(last.is_final);
    assert_eq!(last.report, report);
    assert_eq!(last.since_previous, Duration::from_millis(500));
    let first = &snapshots[0];
    assert_eq!(
        first.submitted_per_sec, 50.0,
        "all 50 came in the first second"
    );
    assert!((18.0..=22.0).contains(&first.finished_per_sec), "{first:?}");
    assert_eq!(first.report.running, 2);
    assert_eq!(first.report.queued + first.report.finished(), 48);
    assert_eq!(alive(), 0);
}
