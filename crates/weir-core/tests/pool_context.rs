//! A pool under a `Context`: the pool runs on a child, its deadline stops
//! the pool, and `join`/`shutdown` say why the pool was stopped.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use weir_core::{Cause, Context, GraceExpired, JobError, Pool, PoolError};

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

fn sleepy_under(ctx: impl Into<Context>) -> Pool<u64, u64> {
    Pool::builder()
        .workers(2)
        .queue(8)
        .context(ctx)
        .build(|ms: u64| async move {
            sleep(Duration::from_millis(ms)).await;
            anyhow::Ok(ms)
        })
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_context_deadline_cancels_the_pool_and_is_the_errors_cause() {
    let before = alive();
    let start = Instant::now();
    let ctx = Context::background().with_timeout(Duration::from_millis(300));
    let pool = sleepy_under(&ctx);
    let quick = pool.submit(100).await.unwrap();
    let slow = pool.submit(10_000).await.unwrap();
    assert_eq!(quick.await.unwrap(), 100);
    let err = slow.await.unwrap_err();
    assert_eq!(err.cause(), Some(&Cause::DeadlineExceeded));
    assert_eq!(err.to_string(), "job cancelled: context deadline exceeded");
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert_eq!(pool.context().cause(), Some(Cause::DeadlineExceeded));

    let err = pool.join().await.unwrap_err();
    assert_eq!(err.error(), &PoolError::Stopped(Cause::DeadlineExceeded));
    assert_eq!(err.to_string(), "pool stopped: context deadline exceeded");
    let report = err.report();
    assert_eq!((report.completed, report.cancelled), (1, 1));
    assert!(report.is_balanced());
    drop(ctx);
    tokio::task::yield_now().await;
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn the_pool_runs_on_a_child_of_a_token_or_a_context() {
    // A token converts; cancelling it stops the pool with Cause::Cancelled.
    let token = CancellationToken::new();
    let pool = sleepy_under(&token);
    let running = pool.submit(1_000).await.unwrap();
    sleep(Duration::from_millis(10)).await;
    token.cancel();
    assert!(matches!(
        running.await,
        Err(JobError::Cancelled(Cause::Cancelled))
    ));
    let err = pool.join().await.unwrap_err();
    assert!(err.error().cause().is_cancelled());

    // The pool's own cancel, or its context's, never reaches the parent.
    let parent = Context::background();
    let pool = sleepy_under(parent.clone());
    pool.context().cancel_with("enough");
    assert!(!parent.is_cancelled());
    let pool2 = sleepy_under(parent.clone());
    pool2.cancel();
    assert!(!parent.is_cancelled());
    assert!(pool2.context().token().is_cancelled());
    // Nothing was in flight: nothing was lost, so both end well.
    assert_eq!(pool.join().await.unwrap().cancelled, 0);
    assert_eq!(pool2.join().await.unwrap().cancelled, 0);
}

#[tokio::test(start_paused = true)]
async fn a_cause_given_with_cancel_with_reaches_tickets_and_join() {
    #[derive(Debug, PartialEq)]
    struct Maintenance;
    impl std::fmt::Display for Maintenance {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("down for maintenance")
        }
    }
    let pool = sleepy_under(Context::background());
    let t = pool.submit(1_000).await.unwrap();
    sleep(Duration::from_millis(1)).await;
    pool.context().cancel_with(Maintenance);
    let err = t.await.unwrap_err();
    assert_eq!(err.cause().unwrap().downcast_ref(), Some(&Maintenance));
    let err = pool.join().await.unwrap_err();
    assert_eq!(err.error().cause().downcast_ref(), Some(&Maintenance));
    assert_eq!(err.to_string(), "pool stopped: down for maintenance");
}

#[tokio::test(start_paused = true)]
async fn shutdown_names_its_grace_period_and_a_drain_is_ok() {
    let pool = sleepy_under(Context::background());
    let _stuck = pool.submit(60_000).await.unwrap();
    let err = pool.shutdown(Duration::from_millis(100)).await.unwrap_err();
    let grace = err.error().cause().downcast_ref::<GraceExpired>().copied();
    assert_eq!(
        grace,
        Some(GraceExpired {
            grace: Duration::from_millis(100)
        })
    );
    assert_eq!(
        err.to_string(),
        "pool stopped: the shutdown grace period of 100ms ran out"
    );

    let pool = sleepy_under(Context::background());
    pool.submit(1).await.unwrap().await.unwrap();
    let report = pool.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!((report.completed, report.cancelled), (1, 0));
    assert_eq!(pool.context().cause(), None, "a drain cancels nothing");
}
