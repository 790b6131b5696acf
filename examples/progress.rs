//! A progress bar per pipeline stage, from `PipelineHandle::progress`.
//!
//! A long pipeline (decode → resize → encode, a few milliseconds an item,
//! several workers in the slow stage) runs while a snapshot every 100 ms
//! moves one `indicatif` bar per stage: items done, items per second, and
//! the queue in front of the stage. The snapshots only read the pipeline's
//! counters, so watching costs the pipeline nothing.
//!
//! It ends cleanly either way: when the pipeline is done (the last
//! snapshot, with the final counts, finishes the bars), or on ctrl-c,
//! which cancels the pipeline's context — every stage stops, the bars show
//! where each stopped, and the report still balances.
//!
//! On a terminal it runs 6000 items (about ten seconds); without one (the
//! bars are not drawn then, as when tests/examples.rs runs it) 400, well
//! under a second. `--items N` sets the number.
//!
//! Run with `cargo run --example progress`.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use weir::{Context, Pipeline, PipelineSnapshot};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let items = items()?;
    let ctx = Context::background();
    let (out, handle) = Pipeline::from_iter(0..items)
        .name("images")
        .context(&ctx)
        .map("decode", 2, |n| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            anyhow::Ok(n)
        })
        .map("resize", 4, |n| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            anyhow::Ok(n)
        })
        .map("encode", 1, |n| async move {
            tokio::time::sleep(Duration::from_micros(500)).await;
            anyhow::Ok(n)
        })
        .into_stream()?;
    // The consumer: what leaves the last stage.
    let consumer = tokio::spawn(out.count());

    let bars = Bars::new(items, &["decode", "resize", "encode"])?;
    let mut progress = handle.progress(Duration::from_millis(100))?;
    let mut stop = std::pin::pin!(ctrl_c()?);
    println!("running {items} items through decode, resize, encode (ctrl-c stops them)");
    let mut last = None;
    let mut interrupted = false;
    loop {
        tokio::select! {
            snapshot = progress.next() => {
                let Some(snapshot) = snapshot else { break };
                bars.show(&snapshot);
                last = Some(snapshot);
            }
            () = &mut stop, if !interrupted => {
                // Stop every stage; the stream then gives the final
                // snapshot and ends.
                interrupted = true;
                ctx.cancel_with("ctrl-c");
            }
        }
    }
    bars.finish(interrupted);

    let delivered = consumer.await?;
    let last = last.context("the final snapshot")?;
    let report = match handle.join().await {
        Ok(report) => report,
        Err(stopped) if interrupted => stopped.into_report(),
        Err(other) => return Err(other.into()),
    };
    println!("{report}");
    anyhow::ensure!(last.is_final && last.report.stages.len() == 4);
    if interrupted {
        println!(
            "stopped by ctrl-c: {delivered} of {items} items delivered, every item accounted for: {}",
            report.is_balanced()
        );
    } else {
        println!(
            "done: {delivered} items through 3 stages, every item accounted for: {}",
            report.is_balanced()
        );
    }
    Ok(())
}

/// Resolves on the first ctrl-c (SIGINT). The handler is in place once
/// this returns, not only once the future is first polled, so a ctrl-c
/// right after the `running` line is not missed (tests/examples.rs sends
/// one then).
fn ctrl_c() -> anyhow::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        Ok(async move {
            sigint.recv().await;
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// `--items N`, or 6000 on a terminal and 400 without one.
fn items() -> anyhow::Result<u64> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--items") {
        return args
            .get(i + 1)
            .context("--items needs a number")?
            .parse()
            .context("--items needs a number");
    }
    Ok(if std::io::stderr().is_terminal() {
        6_000
    } else {
        400
    })
}

/// A bar per stage, in pipeline order.
struct Bars {
    _all: MultiProgress,
    stages: Vec<(String, ProgressBar)>,
}

impl Bars {
    fn new(items: u64, stages: &[&str]) -> anyhow::Result<Self> {
        let all = MultiProgress::new();
        let style = ProgressStyle::with_template("{prefix:>7} [{bar:40}] {pos:>5}/{len:5} {msg}")?
            .progress_chars("=> ");
        let stages = stages
            .iter()
            .map(|name| {
                let bar = all.add(ProgressBar::new(items));
                bar.set_style(style.clone());
                bar.set_prefix(name.to_string());
                ((*name).to_owned(), bar)
            })
            .collect();
        Ok(Self { _all: all, stages })
    }

    fn show(&self, snapshot: &PipelineSnapshot) {
        for (name, bar) in &self.stages {
            let (Some(stage), Some(report)) = (snapshot.stage(name), snapshot.report.stage(name))
            else {
                continue;
            };
            bar.set_position(report.output + report.filtered + report.failed);
            bar.set_message(format!(
                "{:>6.0}/s, {:>3} queued",
                stage.output_per_sec, stage.queued
            ));
        }
    }

    fn finish(&self, interrupted: bool) {
        for (_, bar) in &self.stages {
            if interrupted {
                bar.abandon_with_message("stopped");
            } else {
                bar.finish_with_message("done");
            }
        }
    }
}
