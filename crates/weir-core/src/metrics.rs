//! weir-core's metrics (feature `metrics`): the pools' and pipelines'
//! counters and gauges, published through the `metrics` facade by a task
//! of each construct that reads the counters the reports are made of
//! (nothing on the items' path), and the latency histograms, recorded by
//! the workers. Names, labels and units: docs/observability.md.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use metrics::{Counter, Gauge, SharedString, counter, gauge};
use tracing::Instrument;

use crate::pipeline::{PipelineSnapshot, run::Shared as PipelineShared};
use crate::pool::PoolSnapshot;

/// How often a construct's counters and gauges are published; a last
/// publication follows its end at once, so a finished run's figures are
/// exact.
pub(crate) const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Adds to `counter` what `now` has beyond what was published before. The
/// counters read are monotonic, so this only adds; constructs that share
/// a name add up in one series.
fn advance(counter: &Counter, published: &mut u64, now: u64) {
    if now > *published {
        counter.increment(now - *published);
        *published = now;
    }
}

/// One stage's series and what was published on them.
struct StageSeries {
    input: Counter,
    output: Counter,
    filtered: Counter,
    failed: Counter,
    cancelled: Counter,
    queued: Gauge,
    in_flight: Gauge,
    published: [u64; 5],
}

impl StageSeries {
    fn new(pipeline: &SharedString, stage: &str) -> Self {
        let labels = [
            ("pipeline", pipeline.clone()),
            ("stage", SharedString::from(stage.to_owned())),
        ];
        Self {
            input: counter!("weir_stage_items_in_total", &labels),
            output: counter!("weir_stage_items_out_total", &labels),
            filtered: counter!("weir_stage_items_filtered_total", &labels),
            failed: counter!("weir_stage_items_failed_total", &labels),
            cancelled: counter!("weir_stage_items_cancelled_total", &labels),
            queued: gauge!("weir_stage_queue_depth", &labels),
            in_flight: gauge!("weir_stage_items_in_flight", &labels),
            published: [0; 5],
        }
    }
}

/// The histogram of a stage's item durations.
pub(crate) fn stage_item_duration(pipeline: &str, stage: &str) -> metrics::Histogram {
    metrics::histogram!(
        "weir_stage_item_duration_seconds",
        "pipeline" => pipeline.to_owned(),
        "stage" => stage.to_owned(),
    )
}

/// The histogram of a pool's job durations.
pub(crate) fn pool_job_duration(pool: &str) -> metrics::Histogram {
    metrics::histogram!("weir_pool_job_duration_seconds", "pool" => pool.to_owned())
}

/// Spawns the task that publishes a pipeline's stage counters until its
/// stages have ended. Call it inside the runtime, before the tracker
/// closes.
pub(crate) fn publish_pipeline<E: Send + 'static>(shared: &Arc<PipelineShared<E>>) {
    let Ok(mut progress) = crate::PipelineProgress::start(Arc::clone(shared), PUBLISH_EVERY) else {
        return;
    };
    let name = SharedString::from(shared.name.to_string());
    let span = tracing::debug_span!("metrics", pipeline = %shared.name);
    let task = async move {
        let mut stages: Vec<StageSeries> = Vec::new();
        while let Some(snapshot) = progress.next().await {
            publish_stages(&name, &mut stages, &snapshot);
        }
    };
    crate::spawn::tracked_on(
        &shared.tracker,
        &tokio::runtime::Handle::current(),
        &weir_context::__private::Label {
            construct: weir_context::__private::Construct::Pipeline,
            name: &shared.name,
            task: "metrics",
            stage: None,
            index: None,
            origin: shared.origin,
        },
        task.instrument(span),
    );
}

fn publish_stages(pipeline: &SharedString, stages: &mut Vec<StageSeries>, s: &PipelineSnapshot) {
    for (i, (report, progress)) in s.report.stages.iter().zip(&s.stages).enumerate() {
        if stages.len() <= i {
            stages.push(StageSeries::new(pipeline, &report.name));
        }
        let series = &mut stages[i];
        let [input, output, filtered, failed, cancelled] = &mut series.published;
        advance(&series.input, input, report.input);
        advance(&series.output, output, report.output);
        advance(&series.filtered, filtered, report.filtered);
        advance(&series.failed, failed, report.failed);
        advance(&series.cancelled, cancelled, report.cancelled);
        series.queued.set(progress.queued as f64);
        series.in_flight.set(progress.in_flight as f64);
    }
}

/// A pool's series and what was published on them.
struct PoolSeries {
    /// completed, failed, panicked, cancelled, rejected
    jobs: [Counter; 5],
    published: [u64; 5],
    queued: Gauge,
    running: Gauge,
    workers: Gauge,
}

impl PoolSeries {
    fn new(pool: &str) -> Self {
        let job = |outcome: &'static str| counter!("weir_pool_jobs_total", "pool" => pool.to_owned(), "outcome" => outcome);
        Self {
            jobs: [
                job("completed"),
                job("failed"),
                job("panicked"),
                job("cancelled"),
                job("rejected"),
            ],
            published: [0; 5],
            queued: gauge!("weir_pool_jobs_queued", "pool" => pool.to_owned()),
            running: gauge!("weir_pool_jobs_running", "pool" => pool.to_owned()),
            workers: gauge!("weir_pool_workers", "pool" => pool.to_owned()),
        }
    }

    fn publish(&mut self, s: &PoolSnapshot) {
        let r = &s.report;
        let now = [r.completed, r.failed, r.panicked, r.cancelled, r.rejected];
        for ((counter, published), now) in self.jobs.iter().zip(&mut self.published).zip(now) {
            advance(counter, published, now);
        }
        self.queued.set(r.queued as f64);
        self.running.set(r.running as f64);
        self.workers.set(r.workers as f64);
    }
}

/// Publishes a pool's counters until its last worker has ended (run by the
/// pool's watcher task).
pub(crate) async fn publish_pool(
    name: Arc<str>,
    progress: Result<crate::PoolProgress, weir_context::ConfigError>,
) {
    let Ok(mut progress) = progress else { return };
    let mut series = PoolSeries::new(&name);
    while let Some(snapshot) = progress.next().await {
        series.publish(&snapshot);
    }
}
