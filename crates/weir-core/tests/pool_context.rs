//! A pool under a `Context`: its deadline stops the pool, and the shutdown
//! report says why the pool was stopped.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::time::{Instant, sleep};
use weir_core::{Cause, Context, JobError, Pool};

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(start_paused = true)]
async fn a_context_deadline_cancels_the_pool_and_is_the_reports_cause() {
    let before = alive();
    let start = Instant::now();
    let ctx = Context::background().with_timeout(Duration::from_millis(300));
    let pool = Pool::builder()
        .workers(2)
        .queue(8)
        .context(&ctx)
        .build(|ms: u64| async move {
            sleep(Duration::from_millis(ms)).await;
            anyhow::Ok(ms)
        })
        .unwrap();
    let quick = pool.submit(100).await.unwrap();
    let slow = pool.submit(10_000).await.unwrap();
    assert_eq!(quick.await.unwrap(), 100);
    assert!(matches!(slow.await, Err(JobError::Cancelled)));
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert!(matches!(
        pool.context().cause(),
        Some(Cause::DeadlineExceeded)
    ));
    let report = pool.shutdown().await;
    assert_eq!(report.cause, Some(Cause::DeadlineExceeded));
    drop(pool);
    drop(ctx);
    tokio::task::yield_now().await;
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn shutdown_timeout_names_its_grace_period_and_a_drain_has_no_cause() {
    let pool = Pool::builder()
        .workers(1)
        .queue(4)
        .build(|ms: u64| async move {
            sleep(Duration::from_millis(ms)).await;
            anyhow::Ok(ms)
        })
        .unwrap();
    let _stuck = pool.submit(60_000).await.unwrap();
    let report = pool.shutdown_timeout(Duration::from_millis(100)).await;
    assert!(report.timed_out);
    assert_eq!(
        report.cause.map(|c| c.to_string()).as_deref(),
        Some("pool shutdown grace period ended")
    );

    let pool = Pool::builder()
        .workers(1)
        .queue(4)
        .build(|x: u64| async move { anyhow::Ok(x) })
        .unwrap();
    pool.submit(1).await.unwrap().await.unwrap();
    let report = pool.shutdown().await;
    assert_eq!(report.cause, None);
    assert_eq!(report.drained, 0);
}
