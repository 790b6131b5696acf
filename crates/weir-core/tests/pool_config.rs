//! Pool: bad settings are a `ConfigError` at build, never a panic or a
//! loop that spawns until memory runs out; extreme durations neither panic
//! nor hang.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::time::Duration;

use tokio::time::{Instant, sleep, timeout};
use weir_core::pool::{Pool, PoolBuilder, SubmitTimeoutError};
use weir_core::{ConfigError, MAX_WORKERS, Problem};

const MS: Duration = Duration::from_millis(1);

fn build(b: PoolBuilder) -> Result<Pool<u64, u64, Infallible>, ConfigError> {
    b.build(|n: u64| async move {
        sleep(MS * n as u32).await;
        Ok(n)
    })
}

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(start_paused = true)]
async fn zero_and_too_many_workers_are_config_errors() {
    let before = alive();
    let err = build(Pool::builder().workers(0).name("images")).unwrap_err();
    assert_eq!(err.problem(), &Problem::Zero);
    assert_eq!(
        (err.construct(), err.setting()),
        ("pool `images`", "workers")
    );
    assert_eq!(
        err.to_string(),
        "pool `images`: workers must be at least 1 (got 0)"
    );
    for n in [MAX_WORKERS + 1, usize::MAX] {
        let err = build(Pool::builder().workers(n)).unwrap_err();
        assert_eq!(
            err.problem(),
            &Problem::TooLarge {
                max: MAX_WORKERS as u64
            },
            "workers({n})"
        );
    }
    assert_eq!(alive(), before, "nothing was spawned");
}

#[tokio::test(start_paused = true)]
async fn max_workers_is_allowed() {
    let pool = build(Pool::builder().workers(MAX_WORKERS).queue(1)).unwrap();
    assert_eq!(pool.report().workers, MAX_WORKERS);
    assert_eq!(pool.submit(1).await.unwrap().await, Ok(1));
    assert_eq!(pool.join().await.unwrap().completed, 1);
}

#[tokio::test(start_paused = true)]
async fn a_huge_queue_or_results_capacity_is_lowered_and_works() {
    let before = alive();
    let pool = build(
        Pool::builder()
            .workers(1)
            .queue(usize::MAX)
            .results(usize::MAX),
    )
    .unwrap();
    let mut results = pool.results().unwrap();
    for n in 0..100 {
        pool.try_submit_detached(n).unwrap();
    }
    let mut sum = 0;
    for _ in 0..100 {
        sum += results.recv().await.unwrap().1.unwrap();
    }
    assert_eq!(sum, (0..100).sum::<u64>());
    assert_eq!(pool.join().await.unwrap().completed, 100);
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn a_zero_results_capacity_and_zero_waiting_submits_are_config_errors() {
    let err = build(Pool::builder().results(0)).unwrap_err();
    assert_eq!((err.setting(), err.problem()), ("results", &Problem::Zero));
    let err = build(Pool::builder().max_waiting_submits(0)).unwrap_err();
    assert_eq!(
        (err.setting(), err.problem()),
        ("max_waiting_submits", &Problem::Zero)
    );
    // A queue of 0 is the hand-off queue, not an error.
    let pool = build(Pool::builder().workers(1).queue(0)).unwrap();
    assert_eq!(pool.submit(1).await.unwrap().await, Ok(1));
    pool.join().await.unwrap();
}

#[test]
fn building_outside_a_runtime_is_a_config_error() {
    let err = Pool::builder()
        .workers(1)
        .build(|n: u32| async move { Ok::<_, Infallible>(n) })
        .unwrap_err();
    assert_eq!(err.problem(), &Problem::NoRuntime);
    assert_eq!(
        err.to_string(),
        "pool `pool`: must be started inside a tokio runtime"
    );
    // A bad setting is reported first, runtime or not.
    let err = Pool::builder()
        .workers(0)
        .build(|n: u32| async move { Ok::<_, Infallible>(n) })
        .unwrap_err();
    assert!(err.is_zero());
}

/// A pool with one worker busy for 100ms and a full queue of one.
async fn full() -> Pool<u64, u64, Infallible> {
    let pool = build(Pool::builder().workers(1).queue(1)).unwrap();
    drop(pool.submit(100).await.unwrap());
    sleep(MS).await;
    drop(pool.submit(100).await.unwrap());
    assert!(pool.try_submit(1).unwrap_err().is_full());
    pool
}

#[tokio::test(start_paused = true)]
async fn submit_timeout_with_duration_max_waits_without_a_deadline() {
    let pool = full().await;
    let start = Instant::now();
    let ticket = timeout(
        Duration::from_secs(60),
        pool.submit_timeout(7, Duration::MAX),
    )
    .await
    .expect("no hang")
    .unwrap();
    assert_eq!(start.elapsed(), 99 * MS, "waited for room like submit");
    assert_eq!(ticket.await, Ok(7));
    let id = timeout(
        Duration::from_secs(60),
        pool.submit_detached_timeout(8, Duration::MAX),
    )
    .await
    .expect("no hang")
    .unwrap();
    assert!(id.get() > 0);
    // A closed pool still answers at once.
    pool.close();
    let err = timeout(
        Duration::from_secs(60),
        pool.submit_timeout(9, Duration::MAX),
    )
    .await
    .expect("no hang")
    .unwrap_err();
    assert!(matches!(err, SubmitTimeoutError::Closed(9)));
    pool.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn submit_timeout_with_duration_zero_tries_once() {
    let pool = full().await;
    let start = Instant::now();
    let err = timeout(
        Duration::from_secs(60),
        pool.submit_timeout(7, Duration::ZERO),
    )
    .await
    .expect("no hang")
    .unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(err.is_timeout());
    assert_eq!(err.into_inner(), 7);
    let err = timeout(
        Duration::from_secs(60),
        pool.submit_detached_timeout(8, Duration::ZERO),
    )
    .await
    .expect("no hang")
    .unwrap_err();
    assert!(matches!(err, SubmitTimeoutError::Timeout(8)));
    assert_eq!(pool.report().rejected, 3);
    // With room, zero succeeds at once.
    sleep(300 * MS).await;
    let ticket = pool.submit_timeout(5, Duration::ZERO).await.unwrap();
    assert_eq!(ticket.await, Ok(5));
    pool.join().await.unwrap();
}
