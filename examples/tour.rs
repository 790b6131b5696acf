//! A short tour of weir: a generator feeding a pipeline with a parallel
//! stage, errors handled two ways, and cancellation by a deadline — printing
//! what happened, with the report every ending carries.
//!
//! Run it with `cargo run --example tour`.

use std::time::Duration;

use futures::StreamExt;
use tokio::time::{Instant, sleep};
use weir::{Cause, Context, ErrorPolicy, Pipeline, PipelineError};

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
        Err(e) if matches!(e.error(), PipelineError::Panicked { .. }) => {
            println!("   join() returned: {e}");
            println!("   (the panic was caught in its worker and became an error value)");
            println!("   and the error carries the report: every item is accounted for");
            print_report(e.report());
        }
        other => println!("   unexpected: {other:?}"),
    }
}

/// 4. Cancellation: an endless generator under a context with a deadline.
async fn cancellation() -> anyhow::Result<()> {
    println!("\n4. cancellation: an endless generator, stopped by a 100ms deadline");
    let ctx = Context::background().with_timeout(Duration::from_millis(100));
    let (out, handle) = Pipeline::generate(|tx| async move {
        let mut n = 0u64;
        loop {
            tx.send(n).await?;
            n += 1;
            sleep(Duration::from_millis(5)).await;
        }
    })
    .context(&ctx)
    .map("work", 3, |n| async move {
        sleep(Duration::from_millis(20)).await;
        anyhow::Ok(n)
    })
    .into_stream()?;
    let received = out.count().await;
    match handle.join().await {
        Err(e) if e.error().cause() == Some(&Cause::DeadlineExceeded) => {
            println!("   join() returned: {e}");
            println!("   received {received} items before the deadline");
            print_report(e.report());
        }
        other => println!("   unexpected: {other:?}"),
    }
    Ok(())
}

fn print_report(report: &weir::PipelineReport) {
    for line in report.to_string().lines() {
        println!("   {line}");
    }
    println!("   balanced: {}", report.is_balanced());
}

fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64 / 10 * 10)
}
