//! A pipeline stage's `adaptive(limit)` and `retry(policy)` options: the
//! stage's concurrency follows the limit, a transiently failing stage
//! delivers every item and counts its attempts, retry respects the
//! pipeline's deadline and cancellation, panics are not retried, misplaced
//! options are a `ConfigError`, nothing outlives `join`. Paused time.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use futures::StreamExt;
use tokio::time::{Instant, sleep};
use weir_core::{
    AdaptiveLimit, Aimd, Context, ErrorPolicy, Jitter, Pipeline, PipelineError, Problem,
    RetryPolicy, Stage,
};

const MS: Duration = Duration::from_millis(1);

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// 10 ms, doubling, no jitter: attempts at 0, 10, 30, 70 ms; "busy" is
/// retried, anything else is not.
fn policy(max_attempts: u32) -> RetryPolicy<String> {
    RetryPolicy::builder()
        .base(10 * MS)
        .jitter(Jitter::None)
        .max_attempts(max_attempts)
        .retry_if(|e: &String| e.starts_with("busy"))
        .build()
        .unwrap()
}

/// Counts calls per item (items are small indexes).
fn calls() -> Arc<[AtomicU32; 64]> {
    Arc::new(std::array::from_fn(|_| AtomicU32::new(0)))
}

/// AIMD between 2 and 8, from 4: +1 after each fully used window without a
/// drop, ×0.75 after a window with one.
fn limit() -> AdaptiveLimit {
    AdaptiveLimit::builder()
        .name("backend")
        .aimd(Aimd::new())
        .min(2)
        .max(8)
        .initial(4)
        .window(10 * MS)
        .window_samples(4)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_stage_s_concurrency_follows_the_limit_up_and_down() {
    let before = alive();
    let limit = limit();
    let overloaded = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (o, r, p) = (overloaded.clone(), running.clone(), peak.clone());
    let (out, mut handle) = Pipeline::from_iter(0..u64::MAX)
        .error_policy(ErrorPolicy::Continue)
        // As many workers as the limit's max.
        .map("backend", 8, move |x| {
            let (o, r, p) = (o.clone(), r.clone(), p.clone());
            async move {
                let now = r.fetch_add(1, SeqCst) + 1;
                p.fetch_max(now, SeqCst);
                // Decrements even when the timeout drops this future.
                let _guard = Running(r);
                // Overloaded, the backend answers after the stage's timeout.
                let took = if o.load(SeqCst) { 50 * MS } else { 10 * MS };
                sleep(took).await;
                anyhow::Ok(x)
            }
        })
        .timeout(20 * MS)
        .adaptive(limit.clone())
        .into_stream()
        .unwrap();
    let consumer = tokio::spawn(out.count());
    let errors = tokio::spawn(handle.errors().unwrap().count());

    // Full windows without drops: up to the max, and all 8 workers busy.
    sleep(300 * MS).await;
    assert_eq!(limit.limit(), 8);
    assert_eq!(peak.load(SeqCst), 8);
    assert_eq!(handle.report().stage("backend").unwrap().limit, Some(8));

    // Overload: every attempt times out (a drop), the limit falls to its
    // min, and then at most 2 items are in the backend at once.
    overloaded.store(true, SeqCst);
    sleep(500 * MS).await;
    assert_eq!(limit.limit(), 2);
    for _ in 0..100 {
        assert!(
            running.load(SeqCst) <= 2,
            "{} running",
            running.load(SeqCst)
        );
        sleep(MS).await;
    }
    assert_eq!(handle.report().stage("backend").unwrap().limit, Some(2));

    // Recovery: up again.
    overloaded.store(false, SeqCst);
    sleep(500 * MS).await;
    assert_eq!(limit.limit(), 8);
    let stats = limit.stats();
    assert_eq!((stats.min_seen, stats.max_seen), (2, 8));
    assert!(stats.dropped > 0);

    handle.cancel();
    let err = handle.join().await.unwrap_err();
    assert!(err.error().is_stopped(), "{err}");
    let s = err.report().stage("backend").unwrap();
    assert!(s.is_balanced(), "{s:?}");
    assert!(s.timed_out > 0 && s.output > 0, "{s:?}");
    assert_eq!(s.attempts, 0, "no retry policy");
    assert!(consumer.await.unwrap() > 0);
    assert_eq!(errors.await.unwrap() as u64, s.failed);
    assert_eq!(limit.in_flight(), 0, "every slot was given back");
    let stats = limit.stats();
    assert!(stats.is_balanced(), "{stats}");
    // The items in the backend when the pipeline was cancelled.
    assert!(stats.abandoned > 0, "{stats}");
    assert_eq!(alive(), before, "a pipeline task outlived join()");
}

/// Decrements a counter when dropped.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn a_transiently_failing_stage_with_retry_delivers_every_item() {
    let before = alive();
    let policy = policy(4);
    let calls = calls();
    let c = calls.clone();
    let start = Instant::now();
    let report = Pipeline::<usize, String>::from_iter(0..10usize)
        .map("flaky", 10, move |i| {
            let c = c.clone();
            async move {
                // Each item is busy twice, then answers.
                if c[i].fetch_add(1, SeqCst) < 2 {
                    return Err(format!("busy {i}"));
                }
                Ok(i * 2)
            }
        })
        .retry(policy.clone())
        .run()
        .await
        .unwrap();
    assert_eq!(start.elapsed(), 30 * MS, "attempts at 0, 10 and 30 ms");
    let s = report.stage("flaky").unwrap();
    assert_eq!((s.input, s.output, s.failed), (10, 10, 0));
    assert_eq!((s.attempts, s.retries, s.budget_refusals), (30, 20, 0));
    assert!(s.is_balanced() && report.is_balanced());
    for c in &calls[..10] {
        assert_eq!(c.load(SeqCst), 3);
    }
    let stats = policy.stats();
    assert_eq!((stats.calls, stats.succeeded, stats.retries), (10, 10, 20));
    assert!(stats.is_balanced());
    // The report's table shows the retry columns.
    let table = report.to_string();
    assert!(
        table.contains("attempts") && table.contains("retries"),
        "{table}"
    );
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn an_item_the_policy_gives_up_on_fails_with_its_last_error() {
    let calls = calls();
    let c = calls.clone();
    let mut errors = Vec::new();
    let (out, mut handle) = Pipeline::<usize, String>::from_iter(0..3usize)
        .error_policy(ErrorPolicy::Continue)
        .map("flaky", 3, move |i| {
            let c = c.clone();
            async move {
                let n = c[i].fetch_add(1, SeqCst);
                match i {
                    0 => Ok(i),
                    1 => Err(format!("not found: {i}")),
                    _ => Err(format!("busy {i} #{n}")),
                }
            }
        })
        .retry(policy(3))
        .into_stream()
        .unwrap();
    let mut errs = handle.errors().unwrap();
    assert_eq!(out.collect::<Vec<_>>().await, vec![0]);
    while let Some(e) = errs.next().await {
        errors.push(e.to_string());
    }
    errors.sort();
    let report = handle.join().await.unwrap();
    // Not retryable: one call. Always busy: the three attempts allowed, the
    // error of the last one kept.
    assert_eq!(calls[1].load(SeqCst), 1);
    assert_eq!(calls[2].load(SeqCst), 3);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("busy 2 #2"), "{errors:?}");
    assert!(errors[1].contains("not found: 1"), "{errors:?}");
    let s = report.stage("flaky").unwrap();
    assert_eq!((s.output, s.failed), (1, 2));
    assert_eq!((s.attempts, s.retries), (5, 2));
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_times_out_is_retried() {
    let calls = calls();
    let c = calls.clone();
    let report = Pipeline::<usize, String>::from_iter(0..4usize)
        .map_ordered("slow once", 2, move |i| {
            let c = c.clone();
            async move {
                if c[i].fetch_add(1, SeqCst) == 0 {
                    sleep(Duration::from_secs(10)).await;
                }
                Ok(i)
            }
        })
        .timeout(5 * MS)
        .retry(policy(2))
        .run()
        .await
        .unwrap();
    let s = report.stage("slow once").unwrap();
    assert_eq!((s.output, s.failed, s.timed_out), (4, 0, 0));
    assert_eq!((s.attempts, s.retries), (8, 4));

    // Ordered output stays ordered through retries.
    let c = calls.clone();
    let out = Pipeline::<usize, String>::from_iter(10..20usize)
        .map_ordered("ordered", 4, move |i| {
            let c = c.clone();
            async move {
                // Early items fail more often, so they finish last.
                if c[i].fetch_add(1, SeqCst) < u32::try_from(20 - i).unwrap() / 4 {
                    return Err(format!("busy {i}"));
                }
                Ok(i)
            }
        })
        .retry(policy(4))
        .collect()
        .await
        .unwrap();
    assert_eq!(out, (10..20).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn retry_never_sleeps_past_the_pipeline_s_deadline() {
    let before = alive();
    // Attempts at 0 and 10 ms; the next would be at 30 ms, after the 25 ms
    // deadline: the item fails at 10 ms with its error instead.
    let ctx = Context::background().with_timeout(25 * MS);
    let start = Instant::now();
    let err = Pipeline::<usize, String>::from_iter(0..1usize)
        .context(ctx)
        .map("busy", 1, |i| async move {
            Err::<usize, _>(format!("busy {i}"))
        })
        .retry(policy(10))
        .run()
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), 10 * MS);
    assert!(
        matches!(err.error(), PipelineError::Failed { stage, error } if &**stage == "busy" && error == "busy 0"),
        "{err}"
    );
    let s = err.report().stage("busy").unwrap();
    assert_eq!((s.attempts, s.retries, s.failed), (2, 1, 1));
    // The context's deadline timer ends with the context.
    tokio::task::yield_now().await;
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_a_stage_in_the_middle_of_a_backoff() {
    let before = alive();
    let policy = RetryPolicy::builder()
        .base(Duration::from_secs(60))
        .max_delay(Duration::from_secs(60))
        .jitter(Jitter::None)
        .max_attempts(5)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let (out, handle) = Pipeline::<u32, anyhow::Error>::from_iter(0..1u32)
        .map("busy", 1, move |_| {
            c.fetch_add(1, SeqCst);
            async { Err::<u32, _>(anyhow::anyhow!("busy")) }
        })
        .retry(policy.clone())
        .into_stream()
        .unwrap();
    let consumer = tokio::spawn(out.count());
    sleep(100 * MS).await;
    let start = Instant::now();
    handle.cancel();
    let err = handle.join().await.unwrap_err();
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "the backoff was not waited out"
    );
    assert!(err.error().is_stopped(), "{err}");
    assert_eq!(calls.load(SeqCst), 1);
    let s = err.report().stage("busy").unwrap();
    assert_eq!((s.attempts, s.retries, s.cancelled), (1, 0, 1));
    assert!(s.is_balanced());
    let stats = policy.stats();
    assert_eq!((stats.abandoned, stats.in_progress), (1, 0));
    assert_eq!(consumer.await.unwrap(), 0);
    assert_eq!(alive(), before, "a pipeline task outlived join()");
}

/// A stage written as a type: its per-worker state is borrowed by every
/// attempt.
struct Panicky(Arc<AtomicU32>);

impl Stage<u32> for Panicky {
    type Out = u32;
    type Error = anyhow::Error;
    type State = u32;

    async fn setup(&self, _worker: usize) -> anyhow::Result<u32> {
        Ok(0)
    }

    async fn process(&self, seen: &mut u32, item: u32) -> anyhow::Result<u32> {
        *seen += 1;
        self.0.fetch_add(1, SeqCst);
        if item == 3 {
            panic!("item {item} is poison");
        }
        Ok(item)
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_not_retried_and_is_the_stage_s_panic_error() {
    let before = alive();
    let calls = Arc::new(AtomicU32::new(0));
    let limit = limit();
    let policy = RetryPolicy::builder().max_attempts(5).build().unwrap();
    let err = Pipeline::from_iter(3..4u32)
        .stage("poison", 1, Panicky(calls.clone()))
        .adaptive(limit.clone())
        .retry(policy)
        .run()
        .await
        .unwrap_err();
    match err.error() {
        PipelineError::Panicked { stage, panic } => {
            assert_eq!(&**stage, "poison");
            assert_eq!(panic.message(), "item 3 is poison");
        }
        other => panic!("expected a panic error, got {other}"),
    }
    assert_eq!(calls.load(SeqCst), 1, "a panic is not retried");
    let s = err.report().stage("poison").unwrap();
    assert_eq!((s.attempts, s.retries, s.failed, s.panicked), (1, 0, 1, 1));
    assert_eq!(limit.in_flight(), 0, "the panicking attempt's slot is free");
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn misplaced_options_are_a_config_error_at_start() {
    let policy = || RetryPolicy::builder().build().unwrap();
    let invalid = |e: &PipelineError<anyhow::Error>, setting: &str| {
        matches!(e, PipelineError::Config(c)
            if matches!(c.problem(), Problem::Invalid(_)) && c.setting() == setting)
    };

    let e = Pipeline::<u8>::from_iter(0..3u8)
        .adaptive(limit())
        .run()
        .await
        .unwrap_err();
    assert!(invalid(e.error(), "adaptive"), "{e}");
    assert!(e.report().stages.is_empty(), "nothing started");

    let e = Pipeline::<u8>::from_iter(0..3u8)
        .retry(policy())
        .run()
        .await
        .unwrap_err();
    assert!(invalid(e.error(), "retry"), "{e}");

    let e = Pipeline::<u8>::from_iter(0..3u8)
        .map("m", 1, |x| async move { anyhow::Ok(x) })
        .filter("f", |_| true)
        .retry(policy())
        .run()
        .await
        .unwrap_err();
    assert!(invalid(e.error(), "retry"), "{e}");

    let e = Pipeline::<u8>::from_iter(0..3u8)
        .inspect("i", |_| {})
        .adaptive(limit())
        .collect()
        .await
        .unwrap_err();
    assert!(invalid(e.error(), "adaptive"), "{e}");

    // A policy of zero attempts never reaches a pipeline: its builder says no.
    let e = RetryPolicy::<anyhow::Error>::builder()
        .max_attempts(0)
        .build()
        .unwrap_err();
    assert!(e.is_zero(), "{e}");
}

#[tokio::test(start_paused = true)]
async fn each_attempt_takes_its_own_slot_and_a_backoff_holds_none() {
    let limit = AdaptiveLimit::builder()
        .min(1)
        .max(1)
        .initial(1)
        .build()
        .unwrap();
    let calls = calls();
    let c = calls.clone();
    let start = Instant::now();
    // One slot for two workers: item 0 fails at 0 ms and backs off 10 ms;
    // meanwhile item 1 takes the slot (20 ms); item 0's retry waits for it.
    let report = Pipeline::<usize, String>::from_iter(0..2usize)
        .map("one slot", 2, move |i| {
            let c = c.clone();
            async move {
                let n = c[i].fetch_add(1, SeqCst);
                if i == 0 && n == 0 {
                    return Err("busy".to_owned());
                }
                sleep(20 * MS).await;
                Ok(i)
            }
        })
        .adaptive(limit.clone())
        .retry(policy(3))
        .run()
        .await
        .unwrap();
    assert_eq!(start.elapsed(), 40 * MS);
    let s = report.stage("one slot").unwrap();
    assert_eq!((s.output, s.attempts, s.retries), (2, 3, 1));
    assert_eq!(s.limit, Some(1));
    let stats = limit.stats();
    // Two successes; the "busy" error taught the limit nothing.
    assert_eq!((stats.succeeded, stats.ignored), (2, 1));
}

/// Options go to the stage added just before them and stay with it when
/// more stages follow: a slow stage before a timed one is not timed, a
/// slow stage after it is not either, and a retry or a limit set on an
/// earlier stage is that stage's alone.
#[tokio::test(start_paused = true)]
async fn each_stage_keeps_its_own_options() {
    let before = alive();
    // "slow" takes 200 ms and has no timeout; "quick" has 100 ms and takes
    // none; "slow again" takes 200 ms and has no timeout.
    let report = Pipeline::from_iter(0..4u32)
        .map("slow", 4, |x| async move {
            sleep(200 * MS).await;
            anyhow::Ok(x)
        })
        .map_ordered("quick", 2, |x| async move { anyhow::Ok(x) })
        .timeout(100 * MS)
        .map("slow again", 4, |x| async move {
            sleep(200 * MS).await;
            anyhow::Ok(x)
        })
        .run()
        .await
        .unwrap();
    for stage in ["slow", "quick", "slow again"] {
        let s = report.stage(stage).unwrap();
        assert_eq!((s.output, s.timed_out), (4, 0), "{stage}");
    }

    // The timeout is the last stage's: "slow" fails its items.
    let err = Pipeline::from_iter(0..4u32)
        .map("quick", 1, |x| async move { anyhow::Ok(x) })
        .map_ordered("slow", 2, |x| async move {
            sleep(200 * MS).await;
            anyhow::Ok(x)
        })
        .timeout(100 * MS)
        .run()
        .await
        .unwrap_err();
    assert!(
        matches!(err.error(), PipelineError::TimedOut { stage, .. } if &**stage == "slow"),
        "{err}"
    );

    // Retry and a limit on the first stage; the second has neither.
    let tries = calls();
    let seen = Arc::clone(&tries);
    let limit = limit();
    let report = Pipeline::from_iter(0..8usize)
        .map("flaky", 4, move |i| {
            let first = seen[i].fetch_add(1, SeqCst) == 0;
            async move {
                if first {
                    return Err(format!("busy {i}"));
                }
                Ok(i)
            }
        })
        .retry(policy(3))
        .adaptive(limit.clone())
        .map("plain", 2, |i| async move { Ok::<_, String>(i) })
        .run()
        .await
        .unwrap();
    let flaky = report.stage("flaky").unwrap();
    assert_eq!((flaky.output, flaky.retries), (8, 8));
    assert_eq!(flaky.limit, Some(limit.limit()));
    let plain = report.stage("plain").unwrap();
    assert_eq!((plain.output, plain.retries, plain.attempts), (8, 0, 0));
    assert_eq!(plain.limit, None);
    assert_eq!(limit.stats().succeeded, 8);
    assert_eq!(alive(), before);
}
