//! Behaviour of `Pipeline`: order, parallelism, cancellation, drop, error
//! policies, panics, bad input, accounting. Timed tests run on paused time.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use futures::StreamExt;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use weir_core::{
    DEFAULT_CAPACITY, ErrorPolicy, Pipeline, PipelineError, PipelineReport as Report, Problem,
    Stage,
};

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

fn assert_balanced(report: &Report) {
    for s in &report.stages {
        assert!(s.is_balanced(), "stage {} does not balance: {s:?}", s.name);
    }
    assert!(report.is_balanced(), "report does not balance: {report:#?}");
}

#[tokio::test(start_paused = true)]
async fn four_workers_run_eight_slow_items_in_two_rounds() {
    let start = Instant::now();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (running.clone(), peak.clone());
    let out = Pipeline::from_iter(0..8u32)
        .map("slow", 4, move |x| {
            let (r, p) = (r.clone(), p.clone());
            async move {
                let now = r.fetch_add(1, SeqCst) + 1;
                p.fetch_max(now, SeqCst);
                sleep(Duration::from_millis(100)).await;
                r.fetch_sub(1, SeqCst);
                anyhow::Ok(x)
            }
        })
        .collect()
        .await
        .unwrap();
    assert_eq!(out.len(), 8);
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(peak.load(SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn stages_run_concurrently_with_each_other() {
    // Two sequential 100ms stages over 5 items: a pipeline overlaps them,
    // so the run takes 6 steps of 100ms, not 10.
    let start = Instant::now();
    let out = Pipeline::from_iter(0..5u32)
        .map("a", 1, |x| async move {
            sleep(Duration::from_millis(100)).await;
            anyhow::Ok(x)
        })
        .map("b", 1, |x| async move {
            sleep(Duration::from_millis(100)).await;
            anyhow::Ok(x)
        })
        .collect()
        .await
        .unwrap();
    assert_eq!(out, vec![0, 1, 2, 3, 4]);
    assert_eq!(start.elapsed(), Duration::from_millis(600));
}

#[tokio::test(start_paused = true)]
async fn cancel_mid_stream_stops_everything_and_leaks_nothing() {
    let before = alive();
    let generated = Arc::new(AtomicU64::new(0));
    let g = generated.clone();
    let (mut out, handle) = Pipeline::generate(move |tx| async move {
        for i in 0.. {
            g.fetch_add(1, SeqCst);
            tx.send(i).await?;
            sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    })
    .map("double", 3, |x: u64| async move {
        sleep(Duration::from_millis(25)).await;
        anyhow::Ok(x * 2)
    })
    .map_ordered("inc", 2, |x| async move { anyhow::Ok(x + 1) })
    .into_stream()
    .unwrap();
    assert!(alive() > before);

    let mut got = 0;
    while let Some(_x) = out.next().await {
        got += 1;
        if got == 20 {
            handle.cancel();
        }
    }
    let err = handle.join().await.unwrap_err();
    assert!(err.error().is_stopped(), "{err}");
    assert_eq!(alive(), before, "a pipeline task outlived join()");
    // The generator stopped: time passes, it does not produce any more.
    let n = generated.load(SeqCst);
    sleep(Duration::from_secs(1)).await;
    assert_eq!(generated.load(SeqCst), n);
}

#[tokio::test(start_paused = true)]
async fn external_token_cancels_and_is_not_cancelled_by_the_pipeline() {
    let before = alive();
    let parent = CancellationToken::new();
    let (out, handle) = Pipeline::from_iter(0..u64::MAX)
        .context(parent.clone())
        .map("slow", 2, |x| async move {
            sleep(Duration::from_millis(5)).await;
            anyhow::Ok(x)
        })
        .into_stream()
        .unwrap();
    let consumer = tokio::spawn(out.count());
    sleep(Duration::from_millis(50)).await;
    parent.cancel();
    let err = handle.join().await.unwrap_err();
    assert!(err.error().is_stopped());
    consumer.await.unwrap();
    assert_eq!(alive(), before);

    // A failing pipeline does not cancel the token it was given.
    let parent = CancellationToken::new();
    let err = Pipeline::from_iter(0..10u32)
        .context(parent.clone())
        .map("fail", 1, |_| async {
            Err::<u32, _>(anyhow::anyhow!("no"))
        })
        .run()
        .await
        .unwrap_err();
    assert_eq!(err.error().stage(), Some("fail"));
    assert!(!parent.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_output_ends_every_task() {
    let before = alive();
    let (mut out, handle) = Pipeline::from_iter(0..1_000_000u64)
        .map("slow", 4, |x| async move {
            sleep(Duration::from_secs(3600)).await; // stuck mid-item
            anyhow::Ok(x)
        })
        .map("fast", 2, |x| async move { anyhow::Ok(x) })
        .into_stream()
        .unwrap();
    let (mut out2, handle2) = Pipeline::from_iter(0..1_000_000u64)
        .map("fast", 2, |x| async move { anyhow::Ok(x) })
        .into_stream()
        .unwrap();
    assert_eq!(out2.recv().await, Some(0));
    drop(out2);
    let report = handle2.join().await.unwrap();
    assert_balanced(&report);
    assert!(report.cancelled() > 0);
    assert_eq!(report.delivered, 1);

    // The first pipeline is stuck in its slow stage: dropping the output must
    // still stop it at once, not after an hour.
    tokio::select! {
        _ = out.next() => panic!("nothing should come out yet"),
        _ = sleep(Duration::from_millis(10)) => {}
    }
    drop(out);
    let start = Instant::now();
    let report = handle.join().await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_balanced(&report);
    // Four items were mid-flight, the rest waited in the stage's input: all
    // of them are cancelled, none is lost.
    let slow = report.stage("slow").unwrap();
    assert_eq!(slow.output, 0);
    assert!(slow.input >= 4);
    assert_eq!(slow.cancelled, slow.input);
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn fail_fast_returns_the_first_error_with_its_stage() {
    let before = alive();
    let err = Pipeline::from_iter(0..100u32)
        .map("ok", 2, |x| async move { anyhow::Ok(x) })
        .map("parse", 4, |x| async move {
            // item 7 fails at t=70ms, item 30 would fail at t=300ms.
            sleep(Duration::from_millis(10 * u64::from(x))).await;
            if x == 7 || x == 30 {
                anyhow::bail!("bad item {x}");
            }
            Ok(x)
        })
        .run()
        .await
        .unwrap_err();
    assert_eq!(err.error().stage(), Some("parse"));
    assert_eq!(err.to_string(), "stage `parse` failed: bad item 7");
    assert_eq!(
        err.into_error().into_error().unwrap().to_string(),
        "bad item 7"
    );
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn fail_fast_stops_promptly_and_accounts_for_every_item() {
    let (out, handle) = Pipeline::from_iter(0..1000u32)
        .map("work", 3, |x| async move {
            sleep(Duration::from_millis(10)).await;
            if x == 50 {
                anyhow::bail!("boom");
            }
            Ok(x)
        })
        .map_ordered("ordered", 2, |x| async move { anyhow::Ok(x) })
        .into_stream()
        .unwrap();
    let start = Instant::now();
    let got = out.count().await;
    assert!(got < 1000);
    // Stopped right after the failure, not after the remaining 950 items.
    assert!(
        start.elapsed() < Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
    let mut h = handle;
    let report_now = h.report();
    let _ = h.errors();
    let err = h.join().await.unwrap_err();
    assert!(matches!(err.error(), PipelineError::Failed { .. }));
    assert!(report_now.stages.iter().all(|s| s.in_flight() >= 0));
}

#[tokio::test(start_paused = true)]
async fn continue_delivers_every_error_and_counts_add_up() {
    let before = alive();
    let (out, mut handle) = Pipeline::from_iter(0..200u32)
        .error_policy(ErrorPolicy::Continue)
        .map("mod7", 4, |x| async move {
            if x % 7 == 0 {
                anyhow::bail!("divisible: {x}");
            }
            Ok(x)
        })
        .filter("even", |x| x % 2 == 0)
        .filter_map("mod5", 2, |x| async move {
            if x % 5 == 0 {
                anyhow::bail!("five: {x}")
            }
            Ok((x % 3 != 0).then_some(x))
        })
        .into_stream()
        .unwrap();
    let errors = handle.errors().unwrap();
    assert!(
        handle.errors().is_none(),
        "the error stream is handed out once"
    );
    let (items, errors) = tokio::join!(out.collect::<Vec<_>>(), errors.collect::<Vec<_>>());
    let report = handle.join().await.unwrap();
    assert_balanced(&report);

    let expected: Vec<u32> = (0..200)
        .filter(|x| x % 7 != 0 && x % 2 == 0 && x % 5 != 0 && x % 3 != 0)
        .collect();
    let mut items = items;
    items.sort_unstable();
    assert_eq!(items, expected);

    let by7 = (0..200).filter(|x| x % 7 == 0).count() as u64;
    let by5 = (0..200)
        .filter(|x| x % 7 != 0 && x % 2 == 0 && x % 5 == 0)
        .count() as u64;
    assert_eq!(errors.len() as u64, by7 + by5);
    assert!(
        errors
            .iter()
            .all(|e| matches!(e.stage(), Some("mod7") | Some("mod5")))
    );
    assert_eq!(report.stage("mod7").unwrap().failed, by7);
    assert_eq!(report.stage("mod5").unwrap().failed, by5);
    let odd = (0..200).filter(|x| x % 7 != 0 && x % 2 == 1).count() as u64;
    assert_eq!(report.stage("even").unwrap().filtered, odd);
    assert_eq!(report.delivered, expected.len() as u64);
    assert_eq!(report.errors_dropped, 0);
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn an_unread_error_stream_never_blocks_the_pipeline() {
    let report = Pipeline::from_iter(0..100u32)
        .error_policy(ErrorPolicy::Continue)
        .error_capacity(4)
        .map("always", 2, |_| async {
            Err::<u32, _>(anyhow::anyhow!("x"))
        })
        .run()
        .await
        .unwrap();
    assert_eq!(report.stage("always").unwrap().failed, 100);
    assert_eq!(report.errors_dropped, 96);
    assert_balanced(&report);
}

#[tokio::test(start_paused = true)]
async fn panics_become_errors_under_both_policies() {
    let before = alive();
    let err = Pipeline::from_iter(0..10u32)
        .map("explode", 2, |x| async move {
            if x == 3 {
                panic!("item {x} exploded");
            }
            anyhow::Ok(x)
        })
        .run()
        .await
        .unwrap_err();
    assert!(err.error().is_panic());
    assert_eq!(err.error().stage(), Some("explode"));
    assert_eq!(err.to_string(), "stage `explode` panicked: item 3 exploded");

    // A closure that panics before returning its future is caught too, and
    // under Continue the worker keeps going.
    let (out, mut handle) = Pipeline::from_iter(0..10u32)
        .error_policy(ErrorPolicy::Continue)
        .map("sync-panic", 1, |x| {
            assert!(x % 4 != 1, "bad {x}");
            async move { anyhow::Ok(x) }
        })
        .into_stream()
        .unwrap();
    let errs = handle.errors().unwrap();
    let (items, errs) = tokio::join!(out.collect::<Vec<_>>(), errs.collect::<Vec<_>>());
    let report = handle.join().await.unwrap();
    assert_eq!(items, vec![0, 2, 3, 4, 6, 7, 8]);
    assert_eq!(errs.len(), 3);
    assert!(errs.iter().all(PipelineError::is_panic));
    assert_eq!(report.stage("sync-panic").unwrap().panicked, 3);
    assert_balanced(&report);
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn per_item_timeout_fails_slow_items() {
    let (out, mut handle) = Pipeline::from_iter([10u64, 500, 20, 900, 30])
        .error_policy(ErrorPolicy::Continue)
        .map("fetch", 2, |ms| async move {
            sleep(Duration::from_millis(ms)).await;
            anyhow::Ok(ms)
        })
        .timeout(Duration::from_millis(100))
        .into_stream()
        .unwrap();
    let errs = handle.errors().unwrap();
    let (mut items, errs) = tokio::join!(out.collect::<Vec<_>>(), errs.collect::<Vec<_>>());
    items.sort_unstable();
    assert_eq!(items, vec![10, 20, 30]);
    assert_eq!(errs.len(), 2);
    for e in &errs {
        assert!(
            matches!(e, PipelineError::TimedOut { after, .. } if *after == Duration::from_millis(100))
        );
    }
    let report = handle.join().await.unwrap();
    assert_eq!(report.stage("fetch").unwrap().timed_out, 2);
    assert_balanced(&report);

    // Under fail-fast the first timeout fails the pipeline.
    let err = Pipeline::from_iter([1u64, 2, 3])
        .map("slow", 1, |x| async move {
            sleep(Duration::from_secs(x)).await;
            anyhow::Ok(x)
        })
        .timeout(Duration::from_millis(1500))
        .run()
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "stage `slow` timed out on an item after 1.5s"
    );
}

#[tokio::test]
async fn bad_input_is_a_clear_error_not_a_panic() {
    let e = Pipeline::from_iter(0..3u8)
        .map("none", 0, |x| async move { anyhow::Ok(x) })
        .into_stream()
        .unwrap_err();
    assert!(e.is_zero());
    assert_eq!(
        e.to_string(),
        "pipeline: workers of stage `none` must be at least 1 (got 0)"
    );

    let e = Pipeline::<u8>::from_iter(0..3u8)
        .capacity(0)
        .collect()
        .await
        .unwrap_err();
    assert!(
        matches!(e.error(), PipelineError::Config(c) if c.is_zero() && c.setting() == "capacity")
    );
    assert!(e.report().stages.is_empty(), "nothing started");

    let e = Pipeline::<u8>::from_iter(0..3u8)
        .timeout(Duration::from_secs(1))
        .run()
        .await
        .unwrap_err();
    assert!(
        matches!(e.error(), PipelineError::Config(c) if matches!(c.problem(), Problem::Invalid(_)))
    );

    let e = Pipeline::from_iter(0..3u8)
        .map("m", 1, |x| async move { anyhow::Ok(x) })
        .timeout(Duration::ZERO)
        .run()
        .await
        .unwrap_err();
    assert!(matches!(e.error(), PipelineError::Config(c) if c.is_zero()));
}

#[test]
fn starting_outside_a_runtime_is_an_error() {
    let e = Pipeline::<u8>::from_iter(0..3u8).into_stream().unwrap_err();
    assert_eq!(e.problem(), &Problem::NoRuntime);
}

#[tokio::test]
async fn sources_from_stream_receiver_and_generator() {
    let s = Pipeline::<u32>::from_stream(futures::stream::iter(vec![3, 1, 2]))
        .collect()
        .await
        .unwrap();
    assert_eq!(s, vec![3, 1, 2]);

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let producer = tokio::spawn(async move {
        for i in 0..10u32 {
            tx.send(i).await.unwrap();
        }
    });
    let r = Pipeline::<u32>::from_receiver(rx)
        .map("inc", 2, |x| async move { anyhow::Ok(x + 1) })
        .collect()
        .await
        .unwrap();
    producer.await.unwrap();
    let mut r = r;
    r.sort_unstable();
    assert_eq!(r, (1..=10).collect::<Vec<_>>());

    // A generator's own error fails the "source" stage.
    let err = Pipeline::<u32>::generate(|tx| async move {
        tx.send(1).await?;
        anyhow::bail!("disk gone")
    })
    .run()
    .await
    .unwrap_err();
    assert_eq!(err.error().stage(), Some("source"));
    assert_eq!(err.to_string(), "stage `source` failed: disk gone");
}

#[tokio::test(start_paused = true)]
async fn generator_error_after_stop_is_not_a_failure() {
    // The generator propagates the Stopped error with `?` when the consumer
    // walks away; that is the stop, not a failure.
    let (mut out, handle) = Pipeline::<u64>::generate(|tx| async move {
        for i in 0.. {
            tx.send(i).await?;
        }
        Ok(())
    })
    .into_stream()
    .unwrap();
    assert_eq!(out.recv().await, Some(0));
    drop(out);
    let report = handle.join().await.unwrap();
    assert_eq!(report.stages[0].failed, 0);
    assert_balanced(&report);
}

struct Conn {
    setups: Arc<AtomicUsize>,
    teardowns: Arc<AtomicUsize>,
    fail_setup_of: Option<usize>,
}

impl Stage<u32> for Conn {
    type Out = (usize, u32);
    type Error = anyhow::Error;
    type State = usize;

    async fn setup(&self, worker: usize) -> anyhow::Result<usize> {
        self.setups.fetch_add(1, SeqCst);
        if self.fail_setup_of == Some(worker) {
            anyhow::bail!("cannot connect worker {worker}");
        }
        Ok(worker)
    }

    async fn process(&self, state: &mut usize, item: u32) -> anyhow::Result<(usize, u32)> {
        sleep(Duration::from_millis(10)).await;
        Ok((*state, item * 10))
    }

    async fn teardown(&self, _state: usize) -> anyhow::Result<()> {
        self.teardowns.fetch_add(1, SeqCst);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn stage_trait_sets_up_and_tears_down_each_worker() {
    let setups = Arc::new(AtomicUsize::new(0));
    let teardowns = Arc::new(AtomicUsize::new(0));
    let conn = Conn {
        setups: setups.clone(),
        teardowns: teardowns.clone(),
        fail_setup_of: None,
    };
    let out = Pipeline::from_iter(0..40u32)
        .stage("db", 4, conn)
        .collect()
        .await
        .unwrap();
    assert_eq!(out.len(), 40);
    let workers: std::collections::HashSet<usize> = out.iter().map(|(w, _)| *w).collect();
    assert_eq!(workers.len(), 4, "every worker took items");
    assert_eq!(setups.load(SeqCst), 4);
    assert_eq!(teardowns.load(SeqCst), 4);

    // A failing setup fails the pipeline even under Continue.
    let teardowns = Arc::new(AtomicUsize::new(0));
    let setups2 = Arc::new(AtomicUsize::new(0));
    let conn = Conn {
        setups: setups2.clone(),
        teardowns: teardowns.clone(),
        fail_setup_of: Some(2),
    };
    let err = Pipeline::from_iter(0..40u32)
        .error_policy(ErrorPolicy::Continue)
        .stage("db", 4, conn)
        .run()
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "stage `db` failed: cannot connect worker 2"
    );
    // Every worker that did set up still tore down (the ones after the
    // failure never start).
    assert_eq!(teardowns.load(SeqCst), setups2.load(SeqCst) - 1);
}

#[tokio::test(start_paused = true)]
async fn map_ordered_window_is_bounded() {
    // Item 0 is very slow; with capacity 4 and 2 workers at most
    // max(4, 2) = 4 items may enter the stage before item 0 leaves.
    let entered = Arc::new(AtomicUsize::new(0));
    let e = entered.clone();
    let (mut out, handle) = Pipeline::from_iter(0..100u32)
        .capacity(4)
        .map_ordered("ordered", 2, move |x| {
            e.fetch_add(1, SeqCst);
            async move {
                if x == 0 {
                    sleep(Duration::from_secs(10)).await;
                }
                anyhow::Ok(x)
            }
        })
        .into_stream()
        .unwrap();
    sleep(Duration::from_secs(5)).await;
    assert!(entered.load(SeqCst) <= 4, "{}", entered.load(SeqCst));
    let report = handle.report();
    assert!(report.stage("ordered").unwrap().input <= 4);
    let mut all = Vec::new();
    while let Some(x) = out.recv().await {
        all.push(x);
    }
    assert_eq!(all, (0..100).collect::<Vec<_>>());
    let report = handle.join().await.unwrap();
    assert_balanced(&report);
}

#[tokio::test]
async fn default_capacity_and_report_shape() {
    assert_eq!(DEFAULT_CAPACITY, 64);
    let (out, handle) = Pipeline::from_iter(0..10u32)
        .map("a", 2, |x| async move { anyhow::Ok(x) })
        .inspect("look", |_| {})
        .into_stream()
        .unwrap();
    assert_eq!(out.count().await, 10);
    let report = handle.join().await.unwrap();
    let names: Vec<_> = report.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["source", "a", "look"]);
    assert_eq!(report.stage("a").unwrap().workers, 2);
    assert_eq!(report.delivered, 10);
    assert_balanced(&report);
}

#[test]
fn public_types_are_send_sync_unpin_where_users_need_it() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    fn unpin<T: Unpin>() {}
    send::<Pipeline<u32>>();
    send::<weir_core::ItemStream<u32>>();
    unpin::<weir_core::ItemStream<u32>>();
    send::<weir_core::PipelineHandle>();
    sync::<weir_core::PipelineHandle>();
    send::<weir_core::ErrorStream<anyhow::Error>>();
    unpin::<weir_core::ErrorStream<anyhow::Error>>();
    send::<PipelineError<std::io::Error>>();
    sync::<PipelineError<std::io::Error>>();
    send::<Report>();
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// map_ordered gives exactly the sequential map, whatever the delays;
        /// map gives the same multiset.
        #[test]
        fn ordered_equals_sequential(
            delays in prop::collection::vec(0u64..50, 0..60),
            workers in 1usize..6,
            capacity in 1usize..8,
        ) {
            let rt = rt();
            let items: Vec<(u64, u64)> = delays.iter().copied().enumerate().map(|(i, d)| (i as u64, d)).collect();
            let expected: Vec<u64> = items.iter().map(|(i, _)| i * 3).collect();
            let f = |(i, d): (u64, u64)| async move {
                sleep(Duration::from_millis(d)).await;
                anyhow::Ok(i * 3)
            };
            let ordered = rt.block_on(
                Pipeline::from_iter(items.clone()).capacity(capacity).map_ordered("o", workers, f).collect(),
            ).unwrap();
            prop_assert_eq!(&ordered, &expected);
            let mut unordered = rt.block_on(
                Pipeline::from_iter(items).capacity(capacity).map("u", workers, f).collect(),
            ).unwrap();
            unordered.sort_unstable();
            prop_assert_eq!(unordered, expected);
        }

        /// Whatever fails, filters, times out or is cancelled, every stage
        /// balances after join and nothing outlives it.
        #[test]
        fn accounting_law_holds(
            spec in prop::collection::vec((0u8..100, 0u64..30), 1..80),
            workers in 1usize..4,
            continue_policy in any::<bool>(),
            cancel_after in prop::option::of(0u64..200),
            take in prop::option::of(0usize..40),
        ) {
            let rt = rt();
            rt.block_on(async move {
                let before = alive();
                let policy = if continue_policy { ErrorPolicy::Continue } else { ErrorPolicy::FailFast };
                let (mut out, handle) = Pipeline::from_iter(spec)
                    .error_policy(policy)
                    .capacity(3)
                    .map("work", workers, |(kind, d): (u8, u64)| async move {
                        sleep(Duration::from_millis(d)).await;
                        match kind {
                            0..=4 => anyhow::bail!("fail"),
                            5 => panic!("panic"),
                            _ => Ok((kind, d)),
                        }
                    })
                    .timeout(Duration::from_millis(25))
                    .filter("drop-some", |(k, _)| k % 3 != 0)
                    .map_ordered("ordered", workers, |(k, d)| async move {
                        sleep(Duration::from_millis(d / 2)).await;
                        anyhow::Ok(k)
                    })
                    .into_stream()
                    .unwrap();
                if let Some(ms) = cancel_after {
                    let t = handle.context().clone();
                    tokio::spawn(async move {
                        sleep(Duration::from_millis(ms)).await;
                        t.cancel();
                    });
                }
                let mut got = 0usize;
                while let Some(_k) = out.recv().await {
                    got += 1;
                    if Some(got) == take {
                        break;
                    }
                }
                drop(out);
                let report = match handle.join().await {
                    Ok(r) => r,
                    Err(_) => return Ok(()),
                };
                for s in &report.stages {
                    prop_assert!(s.is_balanced(), "{:?}", s);
                }
                prop_assert!(report.is_balanced(), "{:#?}", report);
                prop_assert_eq!(report.delivered, got as u64);
                // Let the cancel task (if any) finish before counting.
                sleep(Duration::from_millis(300)).await;
                prop_assert_eq!(alive(), before);
                Ok(())
            })?;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_context_deadline_stops_the_pipeline_with_its_cause() {
    let before = alive();
    let ctx = weir_core::Context::background().with_timeout(Duration::from_millis(300));
    let start = Instant::now();
    let err = Pipeline::from_iter(0..u64::MAX)
        .context(ctx.clone())
        .map("tick", 2, |x| async move {
            sleep(Duration::from_millis(50)).await;
            anyhow::Ok(x)
        })
        .run()
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert!(err.error().cause().unwrap().is_deadline_exceeded(), "{err}");
    assert_eq!(
        err.to_string(),
        "pipeline stopped: context deadline exceeded"
    );

    // A cause given to cancel_with comes back out of join; a plain cancel says
    // Cancelled.
    let (out, handle) = Pipeline::from_iter(0..u64::MAX)
        .map("spin", 1, |x| async move {
            sleep(Duration::from_millis(1)).await;
            anyhow::Ok(x)
        })
        .into_stream()
        .unwrap();
    let consumer = tokio::spawn(out.count());
    sleep(Duration::from_millis(10)).await;
    handle.context().cancel_with("operator pressed stop");
    let err = handle.join().await.unwrap_err();
    assert_eq!(
        err.error().cause().unwrap().to_string(),
        "operator pressed stop"
    );
    consumer.await.unwrap();
    drop(ctx);
    tokio::task::yield_now().await;
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn an_idle_pipeline_passes_each_item_on_at_once() {
    // Items move in chunks under load; an item must never wait in a chunk
    // while the pipeline is idle. Each item is produced a second apart and
    // must reach the consumer at the instant it was produced.
    let start = Instant::now();
    let gen_pipeline = Pipeline::<u64>::generate(|tx| async move {
        for i in 0..5 {
            tx.send(i).await?;
            sleep(Duration::from_secs(1)).await;
        }
        Ok(())
    });
    let stream_pipeline =
        Pipeline::<u64>::from_stream(futures::stream::unfold(0u64, |i| async move {
            if i > 0 {
                sleep(Duration::from_secs(1)).await;
            }
            (i < 5).then_some((i, i + 1))
        }));
    for pipeline in [gen_pipeline, stream_pipeline] {
        let start_run = Instant::now();
        let (mut out, handle) = pipeline
            .map("a", 1, |x| async move { anyhow::Ok(x) })
            .map_ordered("b", 2, |x| async move { anyhow::Ok(x) })
            .filter("c", |_| true)
            .map("d", 3, |x| async move { anyhow::Ok(x) })
            .into_stream()
            .unwrap();
        for i in 0..5u64 {
            assert_eq!(out.recv().await, Some(i));
            assert_eq!(
                start_run.elapsed(),
                Duration::from_secs(i),
                "item {i} was held back"
            );
        }
        assert_eq!(out.recv().await, None);
        handle.join().await.unwrap();
    }
    // Each run ends 1s after its last item (the producer sleeps once more).
    assert_eq!(start.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn a_slow_stage_does_not_hold_finished_items_back() {
    // Item 0 is quick, item 1 slow: item 0 must come out while item 1 is
    // still being worked on, not when the chunk would be full.
    let start = Instant::now();
    let (mut out, handle) = Pipeline::from_iter([0u64, 1, 2])
        .map("work", 1, |x| async move {
            sleep(Duration::from_secs(if x == 1 { 10 } else { 0 })).await;
            anyhow::Ok(x)
        })
        .into_stream()
        .unwrap();
    assert_eq!(out.recv().await, Some(0));
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(out.recv().await, Some(1));
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert_eq!(out.recv().await, Some(2));
    assert_eq!(out.recv().await, None);
    handle.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn from_receiver_feeds_a_one_worker_stage_directly_and_closes_the_channel_on_stop() {
    let before = alive();
    let (tx, rx) = tokio::sync::mpsc::channel::<u32>(8);
    let (mut out, handle) = Pipeline::from_receiver(rx)
        .map("double", 1, |x| async move { anyhow::Ok(x * 2) })
        .into_stream()
        .unwrap();
    // No forwarding task: the stage reads the caller's channel (with the
    // `metrics` feature the pipeline's metrics publisher runs beside it).
    let publisher = usize::from(cfg!(feature = "metrics"));
    assert_eq!(alive(), before + 1 + publisher);
    for i in 0..5 {
        tx.send(i).await.unwrap();
        assert_eq!(out.recv().await, Some(i * 2));
    }
    // Items still in the caller's channel when the consumer leaves are
    // counted, and the channel is closed so senders learn the pipeline is gone.
    tx.send(100).await.unwrap();
    tx.send(101).await.unwrap();
    drop(out);
    let report = handle.join().await.unwrap();
    assert!(report.is_balanced(), "{report:#?}");
    assert_eq!(report.stages.len(), 1);
    assert_eq!(
        report.stages[0].input,
        report.stages[0].output + report.stages[0].cancelled
    );
    assert!(
        tx.send(102).await.is_err(),
        "the pipeline closed the channel"
    );
    assert_eq!(alive(), before);

    // With a multi-worker first stage a source task forwards, as before.
    let (tx, rx) = tokio::sync::mpsc::channel::<u32>(8);
    let feeder = tokio::spawn(async move {
        for i in 0..20 {
            tx.send(i).await.unwrap();
        }
    });
    let mut got = Pipeline::from_receiver(rx)
        .map("spread", 3, |x| async move { anyhow::Ok(x) })
        .collect()
        .await
        .unwrap();
    feeder.await.unwrap();
    got.sort_unstable();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
}

/// Four workers feed a one-worker stage through an edge with room for one
/// chunk, and the consumer stops reading: the workers pile up waiting for
/// room. A cancel must reach every waiting sender, and every item must be
/// accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_waiting_on_a_full_edge_stop_on_cancel_and_lose_nothing_from_the_accounts() {
    let before = alive();
    let (mut out, handle) = Pipeline::<u64, anyhow::Error>::from_iter(0..100_000u64)
        .capacity(2)
        .map("wide", 4, |x| async move { anyhow::Ok(x) })
        .map("narrow", 1, |x| async move { anyhow::Ok(x + 1) })
        .into_stream()
        .unwrap();
    let mut got = 0;
    tokio::time::timeout(Duration::from_secs(30), async {
        while got < 10 {
            out.next().await.unwrap();
            got += 1;
        }
    })
    .await
    .expect("items flow through full edges");
    // Let the workers fill every edge and wait for room: the stage has
    // stalled once its input stops moving over 5 ms.
    let mut last = u64::MAX;
    let wide = loop {
        sleep(Duration::from_millis(5)).await;
        let wide = handle.report().stage("wide").unwrap().clone();
        if wide.input == last {
            break wide;
        }
        last = wide.input;
    };
    assert!(
        wide.input < 1_000,
        "the stage did not wait for room: {wide:?}"
    );
    handle.cancel();
    tokio::time::timeout(Duration::from_secs(30), async {
        while out.next().await.is_some() {
            got += 1;
        }
        while !handle.is_finished() {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("every waiting sender saw the cancel");
    let report = handle.report();
    let err = handle.join().await.unwrap_err();
    assert!(err.error().is_stopped(), "{err}");
    assert_balanced(&report);
    assert!(report.cancelled() > 0, "{report:#?}");
    assert_eq!(report.delivered, got);
    let settled = tokio::time::timeout(Duration::from_secs(10), async {
        while alive() != before {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "a pipeline task outlived join()");
}
