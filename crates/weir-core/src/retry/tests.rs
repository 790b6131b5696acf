#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use weir_context::{Cause, Context};

use super::*;

const MS: Duration = Duration::from_millis(1);

/// 100 ms, doubling, no jitter: attempts start at 0, 100, 300, 700 ms.
fn plain(max_attempts: u32) -> RetryPolicyBuilder<String> {
    RetryPolicy::builder()
        .base(100 * MS)
        .jitter(Jitter::None)
        .max_attempts(max_attempts)
}

/// An operation that fails `n` times (with "fail 1", "fail 2", ...), then
/// returns the attempt number.
fn flaky(
    n: u32,
) -> (
    Arc<AtomicU32>,
    impl FnMut() -> std::future::Ready<Result<u32, String>>,
) {
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let op = move || {
        let k = c.fetch_add(1, Ordering::Relaxed) + 1;
        std::future::ready(if k <= n {
            Err(format!("fail {k}"))
        } else {
            Ok(k)
        })
    };
    (calls, op)
}

#[test]
fn auto_traits() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<RetryPolicy>();
    send_sync::<RetryPolicy<std::io::Error>>();
    send_sync::<RetryBudget>();
    send_sync::<RetryError>();
    send_sync::<RetryReport>();
    let policy: RetryPolicy<String> = plain(2).build().unwrap();
    let call = retry(&policy, || async { Ok::<_, String>(1) });
    send(&call);
    send(&call.with_report());
}

#[tokio::test(start_paused = true)]
async fn backs_off_exponentially_until_a_success() {
    let policy = plain(5).build().unwrap();
    let (calls, op) = flaky(3);
    let start = Instant::now();
    let (out, report) = retry(&policy, op).with_report().await;
    assert_eq!(out.unwrap(), 4);
    assert_eq!(start.elapsed(), 700 * MS);
    assert_eq!(calls.load(Ordering::Relaxed), 4);
    assert_eq!((report.attempts, report.retries), (4, 3));
    assert_eq!((report.waited, report.elapsed), (700 * MS, 700 * MS));
    assert!(!report.budget_refused);
}

#[tokio::test(start_paused = true)]
async fn gives_up_with_the_last_error_and_the_attempt_count() {
    let policy = plain(3).build().unwrap();
    let (_, op) = flaky(10);
    let err = retry(&policy, op).await.unwrap_err();
    assert_eq!(err.reason(), Some(GiveUpReason::MaxAttempts));
    assert_eq!(err.last_error().map(String::as_str), Some("fail 3"));
    assert_eq!(err.attempts(), 3);
    assert_eq!(err.report().retries, 2);
    assert_eq!(
        err.to_string(),
        "gave up after 3 attempt(s) (out of attempts): fail 3"
    );
    assert!(std::error::Error::source(&err).is_none());
    assert_eq!(err.into_last_error().unwrap(), "fail 3");
}

#[tokio::test(start_paused = true)]
async fn the_classifier_decides_what_is_retried() {
    let policy = plain(5)
        .retry_if(|e: &String| e != "fail 2")
        .build()
        .unwrap();
    let (calls, op) = flaky(10);
    let err = retry(&policy, op).await.unwrap_err();
    assert_eq!(err.reason(), Some(GiveUpReason::NotRetryable));
    assert_eq!(err.last_error().unwrap(), "fail 2");
    assert_eq!(calls.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn no_attempt_starts_after_max_elapsed() {
    // Attempts at 0 and 100 ms; the third would start at 300 ms > 250 ms.
    let policy = plain(10).max_elapsed(250 * MS).build().unwrap();
    let (_, op) = flaky(10);
    let start = Instant::now();
    let err = retry(&policy, op).await.unwrap_err();
    assert_eq!(err.reason(), Some(GiveUpReason::MaxElapsed));
    assert_eq!(err.attempts(), 2);
    assert_eq!(
        start.elapsed(),
        100 * MS,
        "it does not sleep towards a retry it will not make"
    );
}

#[tokio::test(start_paused = true)]
async fn never_sleeps_past_the_context_deadline() {
    let policy = plain(10).build().unwrap();
    let ctx = Context::background().with_timeout(250 * MS);
    let (_, op) = flaky(10);
    let start = Instant::now();
    let err = retry(&policy, op).context(&ctx).await.unwrap_err();
    assert_eq!(err.reason(), Some(GiveUpReason::Deadline));
    assert_eq!(err.last_error().unwrap(), "fail 2");
    assert_eq!(start.elapsed(), 100 * MS);
    assert!(!ctx.is_cancelled(), "it gave up before the deadline");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_context_stops_an_attempt_or_a_backoff() {
    let policy = plain(10).build().unwrap();
    // During an attempt: the second one hangs until the deadline.
    let ctx = Context::background().with_timeout(150 * MS);
    let calls = AtomicU32::new(0);
    let err = retry(&policy, || {
        let k = calls.fetch_add(1, Ordering::Relaxed);
        async move {
            if k == 0 {
                return Err("first".to_owned());
            }
            std::future::pending::<Result<u32, String>>().await
        }
    })
    .context(&ctx)
    .await
    .unwrap_err();
    assert_eq!(err.cause(), Some(&Cause::DeadlineExceeded));
    assert_eq!(err.last_error().unwrap(), "first");
    assert_eq!(err.attempts(), 2);
    assert_eq!(err.report().elapsed, 150 * MS);
    assert_eq!(
        err.to_string(),
        "retry stopped after 2 attempt(s): context deadline exceeded"
    );

    // During a backoff: cancelled 50 ms into the 100 ms wait.
    let ctx = Context::background();
    let canceller = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(50 * MS).await;
            ctx.cancel_with("operator said stop");
        })
    };
    let (_, op) = flaky(10);
    let err = retry(&policy, op).context(&ctx).await.unwrap_err();
    canceller.await.unwrap();
    assert_eq!(err.cause().unwrap().to_string(), "operator said stop");
    assert_eq!((err.attempts(), err.report().waited), (1, 50 * MS));

    // Already cancelled: the operation is never called.
    let (calls, op) = flaky(0);
    let err = retry(&policy, op).context(&ctx).await.unwrap_err();
    assert_eq!((err.attempts(), calls.load(Ordering::Relaxed)), (0, 0));
    assert!(err.last_error().is_none());
    let stats = policy.stats();
    assert_eq!((stats.calls, stats.stopped, stats.in_progress), (3, 3, 0));
    assert!(stats.is_balanced());
}

#[tokio::test(start_paused = true)]
async fn full_jitter_is_seeded_and_stays_under_the_ceiling() {
    let run = |seed| async move {
        let policy = RetryPolicy::<String>::builder()
            .base(100 * MS)
            .max_attempts(6)
            .seed(seed)
            .build()
            .unwrap();
        let (_, op) = flaky(10);
        let start = Instant::now();
        let err = retry(&policy, op).await.unwrap_err();
        assert_eq!(err.report().waited, start.elapsed());
        start.elapsed()
    };
    let (a, b, c) = (run(1).await, run(1).await, run(2).await);
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Ceilings 100 + 200 + 400 + 800 + 1600 ms.
    assert!(a <= 3100 * MS && c <= 3100 * MS);
}

#[tokio::test(start_paused = true)]
async fn the_budget_refuses_retries_beyond_its_share() {
    let budget = RetryBudget::builder()
        .ratio(0.0)
        .min_per_second(1)
        .window(Duration::from_secs(1))
        .build()
        .unwrap();
    let policy = plain(3).budget(budget.clone()).build().unwrap();
    // The reserve holds one retry: the first call spends it.
    let (_, op) = flaky(1);
    assert_eq!(retry(&policy, op).await.unwrap(), 2);
    let (calls, op) = flaky(5);
    let err = retry(&policy, op).await.unwrap_err();
    assert_eq!(err.reason(), Some(GiveUpReason::Budget));
    assert!(err.report().budget_refused);
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(
        err.to_string(),
        "gave up after 1 attempt(s) (retry budget exhausted): fail 1"
    );
    let stats = policy.stats();
    assert_eq!(
        (
            stats.calls,
            stats.attempts,
            stats.retries,
            stats.budget_refusals
        ),
        (2, 3, 1, 1)
    );
    assert_eq!((stats.succeeded, stats.gave_up), (1, 1));
    assert!(stats.is_balanced());
    assert!((stats.amplification() - 1.5).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_is_abandoned_and_counted() {
    let policy = plain(3).build().unwrap();
    let (_, op) = flaky(10);
    let call = retry(&policy, op);
    // Not polled: nothing began.
    drop(call);
    assert_eq!(policy.stats().calls, 0);
    let (_, op) = flaky(10);
    let timed = tokio::time::timeout(50 * MS, retry(&policy, op)).await;
    assert!(timed.is_err());
    let stats = policy.stats();
    assert_eq!((stats.calls, stats.abandoned, stats.in_progress), (1, 1, 0));
    assert!(stats.is_balanced());
    assert!(stats.to_string().starts_with("retry"));
}

#[tokio::test(start_paused = true)]
async fn clones_share_stats_and_the_random_source() {
    let a = RetryPolicy::<String>::builder().seed(9).build().unwrap();
    let b = a.clone();
    let (_, op) = flaky(1);
    retry(&a, op).await.unwrap();
    let (_, op) = flaky(1);
    retry(&b, op).await.unwrap();
    assert_eq!(a.stats().calls, 2);
    assert_eq!(a.stats(), b.stats());
}
