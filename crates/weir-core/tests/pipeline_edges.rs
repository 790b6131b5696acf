//! Pipelines at the edges: sources that panic, settings at their extremes,
//! `shutdown(grace)`, and the report that every ending carries.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::StreamExt;
use tokio::time::{sleep, timeout};
use weir_core::{
    Cause, Context, ErrorPolicy, GraceExpired, MAX_WORKERS, Pipeline, PipelineError,
    PipelineReport, Problem,
};

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[derive(Debug, Clone, PartialEq)]
struct Boom(u32);

/// An iterator that yields 0, 1, 2, 3 and panics at the fifth item, with a
/// non-string payload.
fn panicking_iter() -> impl Iterator<Item = u32> + Send {
    (0..10u32).inspect(|&i| {
        if i == 4 {
            std::panic::panic_any(Boom(i));
        }
    })
}

fn quiet_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<Boom>().is_none() {
            default(info);
        }
    }));
}

/// Checks what every panicking-source run must show: the error names the
/// source and keeps the payload, the source counts the failed item, and the
/// report balances.
fn check_source_panic(err: &PipelineError, report: &PipelineReport) {
    match err {
        PipelineError::Panicked { stage, panic } => {
            assert_eq!(&**stage, "source");
            assert_eq!(panic.downcast_payload::<Boom>(), Some(Boom(4)));
        }
        other => panic!("expected the source's panic, got {other}"),
    }
    let source = report.stage("source").unwrap();
    assert_eq!(source.input, 5, "4 items and the failed fifth");
    assert_eq!((source.failed, source.panicked), (1, 1));
    assert!(report.is_balanced(), "{report:#?}");
}

#[tokio::test]
async fn a_panicking_iterator_fails_the_pipeline_and_nothing_is_lost() {
    quiet_panics();
    let before = alive();
    let err = Pipeline::from_iter(panicking_iter())
        .map("double", 2, |x| async move { anyhow::Ok(x * 2) })
        .collect()
        .await
        .unwrap_err();
    check_source_panic(err.error(), err.report());
    // Items 0..3 were produced before the panic: each was delivered or
    // counted as cancelled when the fail-fast stop cut them short.
    let r = err.report();
    let double = r.stage("double").unwrap();
    assert_eq!(double.input, 4 - r.stage("source").unwrap().cancelled);
    assert_eq!(
        r.delivered + r.cancelled() - r.stage("source").unwrap().cancelled,
        4
    );
    tokio::task::yield_now().await;
    assert_eq!(alive(), before);
}

#[tokio::test]
async fn a_panicking_stream_fails_the_pipeline_and_nothing_is_lost() {
    quiet_panics();
    let stream = futures::stream::iter(panicking_iter());
    let err = Pipeline::from_stream(stream)
        .map("double", 1, |x| async move { anyhow::Ok(x * 2) })
        .run()
        .await
        .unwrap_err();
    check_source_panic(err.error(), err.report());
}

#[tokio::test]
async fn under_continue_a_panicking_source_ends_and_its_items_are_delivered() {
    quiet_panics();
    for from_stream in [false, true] {
        let pipeline = if from_stream {
            Pipeline::from_stream(futures::stream::iter(panicking_iter()))
        } else {
            Pipeline::from_iter(panicking_iter())
        };
        let (out, mut handle) = pipeline
            .error_policy(ErrorPolicy::Continue)
            .map("double", 2, |x| async move { anyhow::Ok(x * 2) })
            .into_stream()
            .unwrap();
        let mut errors = handle.errors().unwrap();
        let mut got: Vec<u32> = out.collect().await;
        got.sort_unstable();
        assert_eq!(got, [0, 2, 4, 6], "every item before the panic arrives");
        let report = handle.join().await.unwrap();
        let err = errors.recv().await.unwrap();
        check_source_panic(&err, &report);
        assert_eq!(report.delivered, 4);
    }
}

#[tokio::test]
async fn a_panicking_generator_is_a_source_panic() {
    quiet_panics();
    let err = Pipeline::<u32>::generate(|tx| async move {
        for i in 0..10 {
            if i == 4 {
                std::panic::panic_any(Boom(i));
            }
            tx.send(i).await?;
        }
        Ok(())
    })
    .run()
    .await
    .unwrap_err();
    match err.error() {
        PipelineError::Panicked { stage, panic } => {
            assert_eq!(&**stage, "source");
            assert_eq!(panic.downcast_payload::<Boom>(), Some(Boom(4)));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.report().is_balanced(), "{:#?}", err.report());
}

#[tokio::test]
async fn a_panicking_stream_feeding_an_ordered_stage_is_reported() {
    quiet_panics();
    let err = Pipeline::from_stream(futures::stream::iter(panicking_iter()))
        .map_ordered("double", 3, |x| async move { anyhow::Ok(x * 2) })
        .run()
        .await
        .unwrap_err();
    check_source_panic(err.error(), err.report());
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_the_end_then_cancels_with_grace_expired() {
    let before = alive();
    // Ends within the grace: Ok with the full report.
    let (out, handle) = Pipeline::from_iter(0..10u32)
        .map("slow", 1, |x| async move {
            sleep(Duration::from_millis(10)).await;
            anyhow::Ok(x)
        })
        .into_stream()
        .unwrap();
    let consumer = tokio::spawn(out.count());
    let report = handle.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!(report.delivered, 10);
    assert_eq!(consumer.await.unwrap(), 10);

    // Runs forever: cancelled at the end of the grace, cause GraceExpired.
    let (out, handle) = Pipeline::<u64>::generate(|tx| async move {
        for i in 0.. {
            tx.send(i).await?;
            sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    })
    .into_stream()
    .unwrap();
    let consumer = tokio::spawn(out.count());
    let start = tokio::time::Instant::now();
    let err = handle
        .shutdown(Duration::from_millis(105))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(105));
    let cause = err.error().cause().unwrap();
    assert_eq!(
        cause.downcast_ref::<GraceExpired>(),
        Some(&GraceExpired {
            grace: Duration::from_millis(105)
        })
    );
    assert!(err.report().is_balanced(), "{:#?}", err.report());
    assert_eq!(err.report().delivered, consumer.await.unwrap() as u64);
    assert_eq!(alive(), before);
}

#[tokio::test]
async fn extreme_settings_are_a_value_or_a_clear_error() {
    // A huge capacity is lowered, and the pipeline works.
    for capacity in [usize::MAX, 1 << 62] {
        let out = timeout(
            Duration::from_secs(10),
            Pipeline::from_iter(0..100u32)
                .capacity(capacity)
                .error_capacity(usize::MAX)
                .map("m", 4, |x| async move { anyhow::Ok(x) })
                .map_ordered("o", 2, |x| async move { anyhow::Ok(x) })
                .collect(),
        )
        .await
        .expect("no hang")
        .unwrap();
        assert_eq!(out, (0..100).collect::<Vec<_>>());
    }
    // Too many workers is an error, not a spawn loop.
    for workers in [MAX_WORKERS + 1, usize::MAX] {
        let err = Pipeline::from_iter(0..1u32)
            .map("wide", workers, |x| async move { anyhow::Ok(x) })
            .into_stream()
            .unwrap_err();
        assert_eq!(
            err.problem(),
            &Problem::TooLarge {
                max: MAX_WORKERS as u64
            }
        );
        assert_eq!(err.setting(), "workers of stage `wide`");
    }
    // A per-item timeout of Duration::MAX is no timeout.
    let out = Pipeline::from_iter(0..3u32)
        .map("m", 1, |x| async move { anyhow::Ok(x) })
        .timeout(Duration::MAX)
        .collect()
        .await
        .unwrap();
    assert_eq!(out, [0, 1, 2]);
    // A context whose deadline is beyond the clock's range has none.
    let ctx = Context::background().with_timeout(Duration::MAX);
    assert!(ctx.deadline().is_none());
    let out = Pipeline::<u32>::from_iter(0..3u32)
        .context(&ctx)
        .collect()
        .await
        .unwrap();
    assert_eq!(out, [0, 1, 2]);
}

#[tokio::test(start_paused = true)]
async fn the_error_of_every_ending_carries_the_report() {
    // A stage failure under fail-fast.
    let err = Pipeline::from_iter(0..100u32)
        .map("parse", 1, |x| async move {
            if x == 7 {
                anyhow::bail!("bad item {x}");
            }
            Ok(x)
        })
        .run()
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "stage `parse` failed: bad item 7");
    assert!(err.report().is_balanced());
    assert_eq!(err.report().stage("parse").unwrap().failed, 1);
    // The report prints as a table with a row per stage.
    let table = err.report().to_string();
    assert!(table.starts_with("stage "), "{table}");
    assert!(table.contains("\nsource "), "{table}");
    assert!(table.contains("\nparse "), "{table}");

    // A deadline.
    let ctx = Context::background().with_timeout(Duration::from_millis(50));
    let err = Pipeline::from_iter(0..u32::MAX)
        .context(ctx)
        .map("slow", 2, |x| async move {
            sleep(Duration::from_millis(20)).await;
            anyhow::Ok(x)
        })
        .run()
        .await
        .unwrap_err();
    assert_eq!(err.error().cause(), Some(&Cause::DeadlineExceeded));
    assert!(err.report().is_balanced());
    assert!(err.report().delivered >= 2, "{:#?}", err.report());
}
