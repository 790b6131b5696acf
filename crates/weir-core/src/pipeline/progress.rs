//! [`PipelineProgress`]: a running pipeline's counts and rates, a snapshot
//! every period, from [`PipelineHandle::progress`](super::PipelineHandle::progress).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;

use super::report::{PipelineReport, StageReport};
use super::run::Shared;
use crate::progress::{Tick, Ticks, per_sec};
use weir_context::ConfigError;

/// One look at a running pipeline: its counts ([`PipelineReport`]), and per
/// stage its queue and its rates since the previous snapshot. Made by
/// [`PipelineProgress`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PipelineSnapshot {
    /// The counts now, as [`PipelineHandle::report`](super::PipelineHandle::report)
    /// gives them.
    pub report: PipelineReport,
    /// Per stage, in the report's order: its queue, what it is working on,
    /// and its rates.
    pub stages: Vec<StageProgress>,
    /// Time since the previous snapshot (since the stream was made, for the
    /// first): what the rates are measured over.
    pub since_previous: Duration,
    /// Whether the pipeline has ended: this is the stream's last snapshot,
    /// and its report is the final one.
    pub is_final: bool,
}

/// One stage in a [`PipelineSnapshot`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StageProgress {
    /// The stage's name.
    pub name: String,
    /// Items waiting in the stage's input: passed on by the stage before
    /// it and not taken yet (the previous stage's `output` minus this
    /// stage's `input`; 0 for the first stage, whose input is the caller's).
    pub queued: u64,
    /// Items inside the stage: taken in and not ended yet
    /// ([`StageReport::in_flight`]).
    pub in_flight: u64,
    /// Items taken in per second since the previous snapshot.
    pub input_per_sec: f64,
    /// Items passed on per second since the previous snapshot.
    pub output_per_sec: f64,
}

impl PipelineSnapshot {
    /// The progress of the stage with this name, if there is one.
    pub fn stage(&self, name: &str) -> Option<&StageProgress> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// A [`Stream`] of [`PipelineSnapshot`]s: one every period while the
/// pipeline runs, then a last one (`is_final`) as soon as every stage has
/// ended, then the end of the stream. Made by
/// [`PipelineHandle::progress`](super::PipelineHandle::progress).
///
/// It only reads the pipeline's counters (the ones [`PipelineReport`] is
/// made of): it costs the pipeline nothing, and a stream that is not polled
/// holds nothing back. Periods missed while it was not polled are not made
/// up; each snapshot's rates cover the time since the one before.
/// Dropping it does not affect the pipeline.
#[must_use = "streams do nothing unless polled"]
pub struct PipelineProgress {
    report: Box<dyn Fn() -> PipelineReport + Send + Sync>,
    ticks: Ticks,
    previous: Vec<(u64, u64)>,
}

impl PipelineProgress {
    /// A stream over `shared`'s counters, a snapshot every `every`, ending
    /// with the stages' tasks.
    pub(crate) fn start<E: Send + 'static>(
        shared: Arc<Shared<E>>,
        every: Duration,
    ) -> Result<Self, ConfigError> {
        let work = shared.work.clone();
        let construct = format!("pipeline `{}`", shared.name);
        let ticks = Ticks::new(construct, every, async move { work.wait().await })?;
        Ok(Self {
            report: Box::new(move || shared.report()),
            ticks,
            previous: Vec::new(),
        })
    }

    fn snapshot(&mut self, since_previous: Duration, is_final: bool) -> PipelineSnapshot {
        let report = (self.report)();
        let mut stages = Vec::with_capacity(report.stages.len());
        let mut upstream: Option<&StageReport> = None;
        for (i, s) in report.stages.iter().enumerate() {
            let (input_before, output_before) = self.previous.get(i).copied().unwrap_or((0, 0));
            stages.push(StageProgress {
                name: s.name.clone(),
                queued: upstream.map_or(0, |u| u.output.saturating_sub(s.input)),
                in_flight: u64::try_from(s.in_flight()).unwrap_or(0),
                input_per_sec: per_sec(s.input.saturating_sub(input_before), since_previous),
                output_per_sec: per_sec(s.output.saturating_sub(output_before), since_previous),
            });
            upstream = Some(s);
        }
        self.previous = report.stages.iter().map(|s| (s.input, s.output)).collect();
        PipelineSnapshot {
            report,
            stages,
            since_previous,
            is_final,
        }
    }
}

impl Stream for PipelineProgress {
    type Item = PipelineSnapshot;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.ticks.poll_tick(cx) {
            Poll::Ready(Some((tick, since))) => {
                Poll::Ready(Some(this.snapshot(since, tick == Tick::End)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl fmt::Debug for PipelineProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineProgress")
            .field("ticks", &self.ticks)
            .finish_non_exhaustive()
    }
}
