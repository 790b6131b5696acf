//! A short tour of weir: a generator feeding a pipeline with a parallel
//! stage, errors handled two ways, and cancellation — printing what happened.
//!
//! Run it with `cargo run --example tour`.

use std::time::Duration;

use futures::StreamExt;
use tokio::time::{Instant, sleep};
use weir::{ErrorPolicy, Pipeline, PipelineError};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Panics below are on purpose; print them on one line, without a backtrace.
    std::panic::set_hook(Box::new(|info| eprintln!("   (panic hook: {info})")));
    println!("weir tour\n=========\n");
    generator_and_parallel_stage().await?;
    errors_continue().await?;
    errors_fail_fast().await;
    cancellation().await?;
    println!("\ndone: every pipeline above ended with no task left running.");
    Ok(())
}

/// 1. A generator feeds a stage with 4 workers; the output keeps order.
async fn generator_and_parallel_stage() -> anyhow::Result<()> {
    println!("1. generator -> map_ordered(4 workers) -> sum");
    let start = Instant::now();
    let (mut out, handle) = Pipeline::generate(|tx| async move {
        for n in 1..=12u64 {
            tx.send(n).await?;
        }
        Ok(())
    })
    .map_ordered("slow-square", 4, |n| async move {
        sleep(Duration::from_millis(50)).await; // pretend I/O
        anyhow::Ok(n * n)
    })
    .into_stream()?;
    let mut squares = Vec::new();
    while let Some(sq) = out.next().await {
        squares.push(sq);
    }
    let report = handle.join().await?;
    println!("   squares in input order: {squares:?}");
    println!(
        "   12 items x 50ms each took {:?} with 4 workers (sequential would be 600ms)",
        round(start.elapsed())
    );
    print_report(&report);
    Ok(())
}

/// 2. Errors as values: under Continue, bad items go to the error stream.
async fn errors_continue() -> anyhow::Result<()> {
    println!("\n2. error policy Continue: failures go to the error stream");
    let input = ["10", "20", "oops", "40", "", "60"];
    let (out, mut handle) = Pipeline::from_iter(input)
        .error_policy(ErrorPolicy::Continue)
        .map("parse", 2, |s: &str| async move {
            s.parse::<u32>()
                .map_err(|e| anyhow::anyhow!("{s:?} is not a number: {e}"))
        })
        .into_stream()?;
    let errors = handle.errors().expect("the error stream is taken once");
    let (mut numbers, errors) = tokio::join!(out.collect::<Vec<_>>(), errors.collect::<Vec<_>>());
    numbers.sort_unstable();
    let report = handle.join().await?;
    println!("   parsed: {numbers:?}");
    for e in &errors {
        println!("   error:  {e}");
    }
    print_report(&report);
    Ok(())
}

/// 3. Fail-fast: the first failure (here a panic) stops everything.
async fn errors_fail_fast() {
    println!("\n3. error policy FailFast (the default): first failure stops the pipeline");
    let result = Pipeline::from_iter(0..1_000u32)
        .map("check", 4, |n| async move {
            sleep(Duration::from_millis(1)).await;
            if n == 7 {
                panic!("item {n} is cursed");
            }
            anyhow::Ok(n)
        })
        .run()
        .await;
    match result {
        Err(e @ PipelineError::Panicked { .. }) => {
            println!("   join() returned: {e}");
            println!("   (the panic was caught in its worker and became an error value)");
        }
        other => println!("   unexpected: {other:?}"),
    }
}

/// 4. Cancellation: an endless generator, cancelled from another task.
async fn cancellation() -> anyhow::Result<()> {
    println!("\n4. cancellation: an endless generator, cancelled after 100ms");
    let (out, handle) = Pipeline::generate(|tx| async move {
        let mut n = 0u64;
        loop {
            tx.send(n).await?;
            n += 1;
            sleep(Duration::from_millis(5)).await;
        }
    })
    .map("work", 3, |n| async move {
        sleep(Duration::from_millis(20)).await;
        anyhow::Ok(n)
    })
    .into_stream()?;
    let token = handle.token();
    tokio::spawn(async move {
        sleep(Duration::from_millis(100)).await;
        token.cancel();
    });
    let received = out.count().await;
    let before_join = handle.report();
    match handle.join().await {
        Err(e) if e.is_cancelled() => println!("   join() returned: {e}"),
        other => println!("   unexpected: {other:?}"),
    }
    println!("   received {received} items before the cancel");
    print_stage_lines(&before_join);
    Ok(())
}

fn print_report(report: &weir::Report) {
    print_stage_lines(report);
    println!(
        "   delivered {}, balanced: {}",
        report.delivered,
        report.is_balanced()
    );
}

fn print_stage_lines(report: &weir::Report) {
    for s in &report.stages {
        println!(
            "   stage {:<12} workers {}  in {:>3}  out {:>3}  failed {:>2}  filtered {:>2}  cancelled {:>2}",
            s.name, s.workers, s.input, s.output, s.failed, s.filtered, s.cancelled
        );
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64 / 10 * 10)
}
