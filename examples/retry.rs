//! Retry with backoff, jitter and a budget (`weir::retry`).
//!
//! 1. A flaky call: 503 twice, then an answer. Each retry waits a random
//!    delay under a doubling ceiling (full jitter), so callers that failed
//!    together do not come back together.
//! 2. Not every error is worth another attempt: a 404 is given up at once,
//!    with the error itself.
//! 3. A deadline: a backoff that would end past the context's deadline is
//!    not slept; the call gives up early, with the last error.
//! 4. A budget: a backend fails half its requests for ten seconds. Without
//!    a budget, every caller retries every failure and the failing backend
//!    gets almost twice its load; with a budget shared by the callers the
//!    retries stay within 10% of the requests.
//!
//! The runtime's clock is paused, so the simulated seconds take no time.
//!
//! Run with `cargo run --example retry`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::{Instant, sleep, sleep_until};
use weir::{Context, GiveUpReason, RetryBudget, RetryError, RetryPolicy, retry};

/// An HTTP status that is not a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("HTTP {0}")]
struct Status(u16);

impl Status {
    /// Worth another attempt: the server was busy or broken, not the request.
    fn is_transient(&self) -> bool {
        matches!(self.0, 429 | 502 | 503 | 504)
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> anyhow::Result<()> {
    let policy = RetryPolicy::builder()
        .base(Duration::from_millis(100))
        .max_attempts(4)
        .retry_if(Status::is_transient)
        .seed(7)
        .build()?;
    flaky(&policy).await?;
    not_found(&policy).await?;
    deadline(&policy).await?;
    budget().await?;
    println!("\n{}", policy.stats());
    Ok(())
}

async fn flaky(policy: &RetryPolicy<Status>) -> anyhow::Result<()> {
    println!("== 1. 503, 503, then an answer (backoff ceilings 100 ms, 200 ms, 400 ms)");
    let start = Instant::now();
    let calls = AtomicU32::new(0);
    let (answer, report) = retry(policy, || async {
        let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
        let answer = if n < 3 { Err(Status(503)) } else { Ok("42") };
        println!(
            "   {:>4} ms  attempt {n}: {answer:?}",
            start.elapsed().as_millis()
        );
        answer
    })
    .with_report()
    .await;
    println!(
        "   got {:?} after {} attempts ({} retries, {} ms waiting)",
        answer?,
        report.attempts,
        report.retries,
        report.waited.as_millis()
    );
    Ok(())
}

async fn not_found(policy: &RetryPolicy<Status>) -> anyhow::Result<()> {
    println!("\n== 2. a 404 will not go away by asking again");
    let Err(err) = retry(policy, || async { Err::<(), _>(Status(404)) }).await else {
        anyhow::bail!("a 404 cannot succeed");
    };
    println!("   {err}");
    assert_eq!(err.reason(), Some(GiveUpReason::NotRetryable));
    assert_eq!(err.into_last_error(), Some(Status(404)));
    Ok(())
}

async fn deadline(policy: &RetryPolicy<Status>) -> anyhow::Result<()> {
    println!("\n== 3. a deadline of 250 ms: no backoff past it");
    let start = Instant::now();
    let ctx = Context::background().with_timeout(Duration::from_millis(250));
    let Err(err) = retry(policy, || async { Err::<(), _>(Status(503)) })
        .context(&ctx)
        .await
    else {
        anyhow::bail!("a 503 every time cannot succeed");
    };
    println!("   {err}  (at {} ms)", start.elapsed().as_millis());
    assert!(matches!(
        err,
        RetryError::Failed {
            reason: GiveUpReason::Deadline,
            ..
        }
    ));
    assert!(start.elapsed() < Duration::from_millis(250));
    Ok(())
}

/// A backend that fails 5% of requests, and 50% from 10 s to 20 s.
struct Backend {
    start: Instant,
    noise: Mutex<u64>,
    /// Attempts received during the outage.
    attempts: AtomicU64,
}

impl Backend {
    async fn call(&self) -> Result<(), Status> {
        let t = self.start.elapsed();
        let outage = t >= Duration::from_secs(10) && t < Duration::from_secs(20);
        if outage {
            self.attempts.fetch_add(1, Ordering::Relaxed);
        }
        let roll = {
            // xorshift64: the same run every time.
            let mut x = self.noise.lock().await;
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            *x % 100
        };
        sleep(Duration::from_millis(10)).await;
        let fail_below = if outage { 50 } else { 5 };
        if roll < fail_below {
            Err(Status(503))
        } else {
            Ok(())
        }
    }
}

/// 100 requests a second for 30 s; returns attempts per request during the
/// outage and the share of those requests that succeeded.
async fn outage(policy: RetryPolicy<Status>) -> anyhow::Result<(f64, f64)> {
    let start = Instant::now();
    let backend = Arc::new(Backend {
        start,
        noise: Mutex::new(0x2545_F491_4F6C_DD1D),
        attempts: AtomicU64::new(0),
    });
    let (mut requests, succeeded) = (0u64, Arc::new(AtomicU64::new(0)));
    let mut calls = Vec::new();
    for i in 0..3000u32 {
        let at = start + Duration::from_millis(10) * i;
        sleep_until(at).await;
        let during = (1000..2000).contains(&i);
        requests += u64::from(during);
        let (policy, backend, succeeded) = (policy.clone(), backend.clone(), succeeded.clone());
        calls.push(tokio::spawn(async move {
            let ok = retry(&policy, || backend.call()).await.is_ok();
            if ok && during {
                succeeded.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for c in calls {
        c.await?;
    }
    let load = backend.attempts.load(Ordering::Relaxed) as f64 / requests as f64;
    let success = succeeded.load(Ordering::Relaxed) as f64 / requests as f64;
    Ok((load, success))
}

async fn budget() -> anyhow::Result<()> {
    println!("\n== 4. ten seconds of 50% failures, 100 requests a second");
    let policy = || {
        RetryPolicy::builder()
            .base(Duration::from_millis(50))
            .max_attempts(4)
            .retry_if(Status::is_transient)
            .seed(3)
    };
    let unbudgeted = outage(policy().build()?).await?;
    let budget = RetryBudget::builder()
        .ratio(0.1)
        .min_per_second(1)
        .window(Duration::from_secs(10))
        .build()?;
    let budgeted = outage(policy().budget(budget).build()?).await?;
    println!("   retries             load on the failing backend   requests that succeeded");
    for (name, (load, success)) in [("no budget", unbudgeted), ("budget 10%", budgeted)] {
        println!("   {name:<19} {load:>15.2}× {:>28.1}%", success * 100.0);
    }
    assert!(unbudgeted.0 > 1.7 && budgeted.0 <= 1.12);
    println!(
        "\ndone: the budget kept the extra load within its 10% ({:.2}× instead of {:.2}×)",
        budgeted.0, unbudgeted.0
    );
    Ok(())
}
