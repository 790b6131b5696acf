//! Bounded fan-out: `for_each_bounded`, `for_each_in_batches`, `Bounded`.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use weir_core::{
    Bounded, BoundedError, BoundedReport, Cause, ConfigError, Context, ResultOrder,
    for_each_bounded, for_each_in_batches,
};

/// Every run in these tests is bounded: a hang fails instead of blocking.
async fn bounded<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(24 * 3600), fut)
        .await
        .expect("the run hung")
}

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

async fn settle() {
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}

/// Counts the tasks in flight and remembers the most seen at once.
#[derive(Clone, Default)]
struct InFlight {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
}

impl InFlight {
    fn enter(&self) -> Guard {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        Guard(self.now.clone())
    }
    fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

struct Guard(Arc<AtomicUsize>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn public_types_are_send_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Bounded>();
    send_sync::<BoundedError<std::io::Error>>();
    send_sync::<BoundedReport>();
}

#[tokio::test(start_paused = true)]
async fn limit_5_with_20_jobs_of_100ms() {
    let before = alive();
    let flight = InFlight::default();
    let start = Instant::now();
    let f = flight.clone();
    let results = for_each_bounded(0..20u64, 5, move |n| {
        let f = f.clone();
        async move {
            let _in = f.enter();
            sleep(Duration::from_millis(100)).await;
            Ok::<_, String>(n * 3 + 1)
        }
    })
    .await
    .unwrap();
    assert_eq!(flight.max(), 5, "exactly 5 in flight at most");
    assert_eq!(start.elapsed(), Duration::from_millis(400));
    let sequential: Vec<u64> = (0..20).map(|n| n * 3 + 1).collect();
    assert_eq!(
        results, sequential,
        "input order equals the sequential results"
    );
    settle().await;
    assert_eq!(alive(), before, "no task outlives the run");
}

#[tokio::test(start_paused = true)]
async fn the_window_refills_as_soon_as_one_finishes() {
    // Durations 10, 100, 100: with limit 2, job 2 starts at 10ms, not 100ms.
    let start = Instant::now();
    let started = for_each_bounded([10u64, 100, 100], 2, move |ms| async move {
        let at = start.elapsed();
        sleep(Duration::from_millis(ms)).await;
        Ok::<_, String>(at)
    })
    .await
    .unwrap();
    assert_eq!(started[2], Duration::from_millis(10));
    assert_eq!(start.elapsed(), Duration::from_millis(110));
}

#[tokio::test(start_paused = true)]
async fn completion_order_when_asked() {
    let results = Bounded::new(4)
        .order(ResultOrder::Completion)
        .run([40u64, 10, 30, 20], |ms| async move {
            sleep(Duration::from_millis(ms)).await;
            Ok::<_, String>(ms)
        })
        .await
        .unwrap();
    assert_eq!(results, [10, 20, 30, 40]);
}

#[tokio::test(start_paused = true)]
async fn batches_of_20_over_100_jobs_run_in_5_rounds() {
    let before = alive();
    let flight = InFlight::default();
    let start = Instant::now();
    let spans = Arc::new(Mutex::new(Vec::new()));
    let (f, s) = (flight.clone(), spans.clone());
    let results = for_each_in_batches(0..100u64, 20, move |i| {
        let (f, s) = (f.clone(), s.clone());
        async move {
            let _in = f.enter();
            let begin = start.elapsed();
            // Uneven durations: a sliding window would start the next job early.
            sleep(Duration::from_millis(10 + i % 7)).await;
            s.lock().unwrap().push((i, begin, start.elapsed()));
            Ok::<_, String>(i)
        }
    })
    .await
    .unwrap();
    assert_eq!(results, (0..100).collect::<Vec<_>>());
    assert_eq!(flight.max(), 20);
    let spans = spans.lock().unwrap().clone();
    let mut rounds: Vec<Duration> = spans.iter().map(|(_, begin, _)| *begin).collect();
    rounds.sort();
    rounds.dedup();
    assert_eq!(rounds.len(), 5, "exactly 5 rounds: {rounds:?}");
    // No job of a round starts before every job of the previous round ended.
    for round in 1..5u64 {
        let prev_end = spans
            .iter()
            .filter(|(i, _, _)| i / 20 == round - 1)
            .map(|(_, _, end)| *end)
            .max()
            .unwrap();
        let this_start = spans
            .iter()
            .filter(|(i, _, _)| i / 20 == round)
            .map(|(_, begin, _)| *begin)
            .min()
            .unwrap();
        assert!(this_start >= prev_end);
    }
    assert_eq!(start.elapsed(), Duration::from_millis(5 * 16));
    settle().await;
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn fail_fast_first_error_aborts_the_rest() {
    let before = alive();
    let started = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let (s, d) = (started.clone(), finished.clone());
    let start = Instant::now();
    let err = for_each_bounded(0..100u32, 4, move |i| {
        let (s, d) = (s.clone(), d.clone());
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            if i == 2 {
                sleep(Duration::from_millis(50)).await;
                return Err(format!("job {i} failed"));
            }
            sleep(Duration::from_secs(1)).await;
            d.fetch_add(1, Ordering::SeqCst);
            Ok(i)
        }
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err.error(), BoundedError::Failed { index: 2, error } if error == "job 2 failed")
    );
    assert_eq!(err.to_string(), "item 2 failed: job 2 failed");
    assert_eq!(err.error().index(), Some(2));
    let report = err.report();
    assert_eq!(
        (
            report.started,
            report.failed,
            report.cancelled,
            report.succeeded
        ),
        (4, 1, 3, 0)
    );
    assert!(report.is_balanced());
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(50),
        "returns at once"
    );
    assert_eq!(
        started.load(Ordering::SeqCst),
        4,
        "no item starts after the error"
    );
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "the others were aborted"
    );
    settle().await;
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn a_panic_becomes_an_error_with_its_message() {
    let before = alive();
    let err = for_each_bounded(0..10u32, 3, |i| async move {
        sleep(Duration::from_millis(10)).await;
        if i == 5 {
            panic!("job {i} exploded");
        }
        Ok::<_, String>(i)
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err.error(), BoundedError::Panicked { index: 5, panic } if panic.message() == "job 5 exploded")
    );
    assert_eq!(err.report().panicked, 1);
    assert!(err.report().is_balanced());
    settle().await;
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn the_token_cancels_the_run() {
    let before = alive();
    let token = CancellationToken::new();
    let stopper = token.clone();
    tokio::spawn(async move {
        sleep(Duration::from_millis(150)).await;
        stopper.cancel();
    });
    let start = Instant::now();
    let err = Bounded::new(5)
        .context(&token)
        .run(0..100u32, |i| async move {
            sleep(Duration::from_millis(100)).await;
            Ok::<_, String>(i)
        })
        .await
        .unwrap_err();
    assert!(matches!(
        err.error(),
        BoundedError::Stopped(Cause::Cancelled)
    ));
    assert_eq!(err.to_string(), "bounded run stopped: context cancelled");
    assert_eq!(start.elapsed(), Duration::from_millis(150));
    let report = err.report();
    assert_eq!(
        (report.started, report.succeeded, report.cancelled),
        (10, 5, 5)
    );
    assert!(report.is_balanced());
    settle().await;
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn run_all_keeps_every_result() {
    let results = Bounded::new(3)
        .run_all(0..8u32, |i| async move {
            sleep(Duration::from_millis(10)).await;
            match i {
                2 => Err(format!("bad {i}")),
                4 => panic!("worse {i}"),
                _ => Ok(i * 2),
            }
        })
        .await
        .unwrap();
    assert_eq!(results.len(), 8);
    for (i, r) in results.iter().enumerate() {
        match i {
            2 => assert!(matches!(r, Err(BoundedError::Failed { index: 2, .. }))),
            4 => assert!(
                matches!(r, Err(BoundedError::Panicked { index: 4, panic }) if panic.message() == "worse 4")
            ),
            _ => assert_eq!(r.as_ref().ok(), Some(&(i as u32 * 2))),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn run_all_cancelled_accounts_for_every_item() {
    let token = CancellationToken::new();
    let stopper = token.clone();
    tokio::spawn(async move {
        sleep(Duration::from_millis(250)).await;
        stopper.cancel();
    });
    let results = Bounded::new(2)
        .context(&token)
        .run_all(0..10u32, |i| async move {
            sleep(Duration::from_millis(100)).await;
            Ok::<_, String>(i)
        })
        .await
        .unwrap();
    assert_eq!(results.len(), 10, "one result per item");
    let ok: Vec<u32> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(ok, [0, 1, 2, 3], "two rounds of two finished");
    assert!(
        results[4..]
            .iter()
            .all(|r| matches!(r, Err(BoundedError::Stopped(_))))
    );
}

#[tokio::test]
async fn zero_limit_is_a_config_error_and_nothing_runs() {
    let called = Arc::new(AtomicUsize::new(0));
    let c = called.clone();
    let err = for_each_bounded(0..3, 0, move |i| {
        c.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, String>(i) }
    })
    .await
    .unwrap_err();
    let expected = ConfigError::zero("bounded", "limit");
    assert!(matches!(err.error(), BoundedError::Config(e) if *e == expected));
    assert_eq!(err.to_string(), "bounded: limit must be at least 1 (got 0)");
    assert_eq!(err.report().started, 0);
    let err = for_each_in_batches(0..3, 0, |i| async move { Ok::<_, String>(i) })
        .await
        .unwrap_err();
    assert!(matches!(err.error(), BoundedError::Config(e) if e.is_zero()));
    let err = Bounded::new(0)
        .run_all(0..3, |i| async move { Ok::<_, String>(i) })
        .await
        .unwrap_err();
    assert_eq!(err, expected);
    assert_eq!(called.load(Ordering::SeqCst), 0);
}

#[test]
fn outside_a_runtime_is_a_config_error() {
    let err =
        futures::executor::block_on(for_each_bounded(
            0..3,
            2,
            |i| async move { Ok::<_, String>(i) },
        ))
        .unwrap_err();
    assert!(
        matches!(err.error(), BoundedError::Config(e) if *e.problem() == weir_core::Problem::NoRuntime)
    );
}

/// Issue 17.4: `Bounded::new(usize::MAX)` panicked with tokio's
/// `MAX_PERMITS` message. A limit that large means "no limit".
#[tokio::test(start_paused = true)]
async fn a_huge_limit_is_lowered_and_runs_everything_at_once() {
    let before = alive();
    let flight = InFlight::default();
    let body = |flight: InFlight| {
        move |i: u64| {
            let f = flight.clone();
            async move {
                let _in = f.enter();
                sleep(Duration::from_millis(10)).await;
                Ok::<_, String>(i)
            }
        }
    };
    let start = Instant::now();
    let out = bounded(for_each_bounded(0..50, usize::MAX, body(flight.clone())))
        .await
        .unwrap();
    assert_eq!(out, (0..50).collect::<Vec<_>>());
    assert_eq!(flight.max(), 50, "no limit: all 50 at once");
    assert_eq!(start.elapsed(), Duration::from_millis(10));

    let out = bounded(for_each_in_batches(0..50, usize::MAX, body(flight.clone())))
        .await
        .unwrap();
    assert_eq!(out.len(), 50);

    let out = bounded(Bounded::new(usize::MAX).run(0..50, body(flight.clone())))
        .await
        .unwrap();
    assert_eq!(out.len(), 50);

    let all = bounded(Bounded::new(usize::MAX).run_all(0..50, body(flight.clone())))
        .await
        .unwrap();
    assert!(all.iter().all(Result::is_ok));

    // The report shows the limit the run used.
    let err = bounded(Bounded::new(usize::MAX).run(0..3u64, |i| async move {
        if i == 1 { Err("no") } else { Ok(i) }
    }))
    .await
    .unwrap_err();
    assert_eq!(err.report().limit, tokio::sync::Semaphore::MAX_PERMITS);
    settle().await;
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_stops_a_bounded_run_with_its_cause() {
    let before = alive();
    let start = Instant::now();
    let ctx = Context::background().with_timeout(Duration::from_millis(250));
    let err = Bounded::new(2)
        .context(&ctx)
        .run(0..10u64, |i| async move {
            sleep(Duration::from_millis(100)).await;
            anyhow::Ok(i)
        })
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    assert!(matches!(
        err.error(),
        BoundedError::Stopped(Cause::DeadlineExceeded)
    ));
    assert_eq!(
        err.to_string(),
        "bounded run stopped: context deadline exceeded"
    );
    let report = err.report();
    assert_eq!(
        (report.started, report.succeeded, report.cancelled),
        (6, 4, 2)
    );
    assert_eq!(report.elapsed, Duration::from_millis(250));
    assert_eq!(
        report.to_string(),
        "run      limit  started  succeeded  failed  panicked  cancelled\n\
         bounded      2        6          4       0         0          2\n\
         elapsed 250ms"
    );
    drop(ctx);
    settle().await;
    assert_eq!(alive(), before);
}

#[derive(Debug, Clone, PartialEq)]
struct Code(u32);

#[derive(Debug, PartialEq)]
struct Refused {
    status: u16,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused with {}", self.status)
    }
}

#[tokio::test(start_paused = true)]
async fn the_error_value_and_the_panic_payload_come_back() {
    let err = for_each_bounded(0..4u16, 2, |i| async move {
        if i == 3 {
            return Err(Refused { status: 429 });
        }
        Ok(i)
    })
    .await
    .unwrap_err();
    let (error, report) = err.into_parts();
    assert_eq!(error.into_error(), Some(Refused { status: 429 }));
    assert_eq!(report.succeeded, 3);

    let err = for_each_bounded(0..4u16, 2, |i| async move {
        if i == 1 {
            std::panic::panic_any(Code(i.into()));
        }
        Ok::<_, String>(i)
    })
    .await
    .unwrap_err();
    assert_eq!(
        err.error().panic().unwrap().downcast_payload::<Code>(),
        Some(Code(1))
    );
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_f_is_the_items_panic() {
    let before = alive();
    let err = for_each_bounded(0..10u32, 2, |i| {
        assert!(i != 3, "cannot make item {i}");
        async move {
            sleep(Duration::from_millis(10)).await;
            Ok::<_, String>(i)
        }
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err.error(), BoundedError::Panicked { index: 3, panic } if panic.message() == "cannot make item 3")
    );
    assert!(err.report().is_balanced());
    settle().await;
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn no_items_is_an_empty_result() {
    let out = for_each_bounded(Vec::<u8>::new(), 3, |i| async move { Ok::<_, String>(i) })
        .await
        .unwrap();
    assert!(out.is_empty());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_aborts_the_tasks_in_flight() {
    let before = alive();
    let finished = Arc::new(AtomicUsize::new(0));
    let d = finished.clone();
    let run = for_each_bounded(0..10u32, 4, move |i| {
        let d = d.clone();
        async move {
            sleep(Duration::from_secs(1)).await;
            d.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(i)
        }
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(100), run)
            .await
            .is_err()
    );
    settle().await;
    assert_eq!(alive(), before);
    sleep(Duration::from_secs(2)).await;
    assert_eq!(finished.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_holds_on_a_multi_thread_runtime() {
    // CPU-heavy bodies on 2 worker threads: never more than the limit at once.
    let flight = InFlight::default();
    let f = flight.clone();
    let ids = for_each_bounded(0..8u32, 2, move |_| {
        let f = f.clone();
        async move {
            let _in = f.enter();
            let mut x = 0u64;
            for i in 0..2_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
            Ok::<_, String>(std::thread::current().id())
        }
    })
    .await
    .unwrap();
    assert_eq!(ids.len(), 8);
    assert!(flight.max() <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_run_at_the_same_time_on_two_threads() {
    // Two bodies that each hold their thread (like CPU-bound work) until the
    // other has started. This only succeeds if they run at the same time on
    // different threads; polled inside one task (`buffer_unordered`), the
    // first would wait out its timeout alone.
    let (tx_a, rx_a) = std::sync::mpsc::channel::<()>();
    let (tx_b, rx_b) = std::sync::mpsc::channel::<()>();
    let ends = Arc::new(Mutex::new(vec![(tx_a, rx_b), (tx_b, rx_a)]));
    let met = for_each_bounded(0..2, 2, move |_| {
        let (tx, rx) = ends.lock().unwrap().pop().unwrap();
        async move {
            tx.send(()).unwrap();
            Ok::<_, String>(rx.recv_timeout(Duration::from_secs(5)).is_ok())
        }
    })
    .await
    .unwrap();
    assert_eq!(met, [true, true]);
}

/// What the body does for one item: sleep `ms`, then succeed, fail or panic.
#[derive(Debug, Clone, Copy)]
enum Plan {
    Ok(u64),
    Fail(u64),
    Panic(u64),
}

fn plan() -> impl proptest::strategy::Strategy<Value = Plan> {
    use proptest::prelude::*;
    prop_oneof![
        12 => (0u64..40).prop_map(Plan::Ok),
        2 => (0u64..40).prop_map(Plan::Fail),
        1 => (0u64..40).prop_map(Plan::Panic),
    ]
}

type Body = std::pin::Pin<Box<dyn Future<Output = Result<usize, String>> + Send>>;

fn body(flight: InFlight) -> impl FnMut((usize, Plan)) -> Body {
    move |(i, plan)| {
        let f = flight.clone();
        Box::pin(async move {
            let _in = f.enter();
            let (Plan::Ok(ms) | Plan::Fail(ms) | Plan::Panic(ms)) = plan;
            sleep(Duration::from_millis(ms)).await;
            match plan {
                Plan::Ok(_) => Ok(i),
                Plan::Fail(_) => Err(format!("item {i}")),
                Plan::Panic(_) => std::panic::panic_any(i),
            }
        })
    }
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Fail-fast: success returns every value in input order; a failure
    /// returns one of the planned failures; the report always balances, and
    /// the limit always holds.
    #[test]
    fn run_accounts_for_every_started_item(
        plans in proptest::collection::vec(plan(), 0..40),
        limit in 1usize..8,
        batches: bool,
    ) {
        let rt = paused_runtime();
        rt.block_on(async {
            let flight = InFlight::default();
            let mut options = Bounded::new(limit);
            if batches {
                options = options.in_batches();
            }
            let items: Vec<(usize, Plan)> = plans.iter().copied().enumerate().collect();
            let result = bounded(options.run(items, body(flight.clone()))).await;
            proptest::prop_assert!(flight.max() <= limit);
            match result {
                Ok(values) => {
                    proptest::prop_assert!(plans.iter().all(|p| matches!(p, Plan::Ok(_))));
                    proptest::prop_assert_eq!(values, (0..plans.len()).collect::<Vec<_>>());
                }
                Err(err) => {
                    let report = err.report();
                    proptest::prop_assert!(report.is_balanced(), "{report}");
                    proptest::prop_assert!(report.started <= plans.len() as u64);
                    proptest::prop_assert!(report.failed + report.panicked >= 1);
                    let index = err.error().index().unwrap();
                    match (err.error(), plans[index]) {
                        (BoundedError::Failed { error, .. }, Plan::Fail(_)) => {
                            proptest::prop_assert_eq!(error, &format!("item {index}"));
                        }
                        (BoundedError::Panicked { panic, .. }, Plan::Panic(_)) => {
                            proptest::prop_assert_eq!(panic.downcast_payload::<usize>(), Some(index));
                        }
                        (other, plan) => proptest::prop_assert!(false, "{other:?} for {plan:?}"),
                    }
                }
            }
            Ok(())
        })?;
    }

    /// Continue: one result per item, each the planned one, in input order.
    #[test]
    fn run_all_returns_each_planned_result(
        plans in proptest::collection::vec(plan(), 0..40),
        limit in 1usize..8,
        batches: bool,
    ) {
        let rt = paused_runtime();
        rt.block_on(async {
            let flight = InFlight::default();
            let mut options = Bounded::new(limit);
            if batches {
                options = options.in_batches();
            }
            let items: Vec<(usize, Plan)> = plans.iter().copied().enumerate().collect();
            let results = bounded(options.run_all(items, body(flight.clone()))).await.unwrap();
            proptest::prop_assert!(flight.max() <= limit);
            proptest::prop_assert_eq!(results.len(), plans.len());
            for (i, (result, plan)) in results.iter().zip(&plans).enumerate() {
                match (result, plan) {
                    (Ok(v), Plan::Ok(_)) => proptest::prop_assert_eq!(*v, i),
                    (Err(BoundedError::Failed { index, .. }), Plan::Fail(_))
                    | (Err(BoundedError::Panicked { index, .. }), Plan::Panic(_)) => {
                        proptest::prop_assert_eq!(*index, i);
                    }
                    (other, plan) => proptest::prop_assert!(false, "{other:?} for {plan:?}"),
                }
            }
            Ok(())
        })?;
    }
}
