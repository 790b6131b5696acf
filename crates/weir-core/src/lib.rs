//! weir-core: the classic concurrency patterns on tokio, as small, typed,
//! cancellation-aware, leak-free building blocks.
//!
//! | pattern | item |
//! |---|---|
//! | generator, pipeline | [`Pipeline`] ([`Pipeline::generate`], [`Pipeline::map`], [`Pipeline::map_ordered`], ...) |
//! | worker pool, pooling | [`Pool`] |
//! | fan-in | [`merge()`], [`merge_in_turn`] |
//! | fan-out | [`distribute`], [`broadcast`] |
//! | bounded fan-out, stop tap | [`for_each_bounded`], [`for_each_in_batches`], [`Bounded`] |
//! | drop pattern | [`Shedder`] |
//! | timeouts | [`recv_timeout`], [`next_timeout`], [`with_timeout`], [`Context::with_timeout`], [`Pipeline::timeout`] |
//! | quit handshake | [`spawn_worker`], [`WorkerBuilder`], [`WorkerHandle::stop`] |
//! | graceful shutdown | [`Shutdown`] |
//! | weighted semaphore (Go's `x/sync/semaphore`) | [`Semaphore`], [`WeightedPermit`] |
//! | duplicate call suppression (Go's `x/sync/singleflight`) | [`Singleflight`] |
//! | adaptive concurrency limit (Netflix's `concurrency-limits`) | [`AdaptiveLimit`], [`Aimd`], [`Gradient`]; in a pool, a bounded run, a stage: [`PoolBuilder::adaptive`](pool::PoolBuilder::adaptive), [`Bounded::adaptive`], [`Pipeline::adaptive`]; `AdaptiveLimitLayer` (feature `tower`) |
//! | retry with backoff, jitter and a budget | [`retry()`], [`RetryPolicy`], [`RetryBudget`]; in a pool, a stage: [`PoolBuilder::retry`](pool::PoolBuilder::retry), [`Pipeline::retry`] |
//! | cancellation with a cause and a deadline | [`Context`], [`Cause`] |
//!
//! Every construct is cancellable (a `CancellationToken` or a [`Context`]),
//! tracks every task it spawns, bounds every queue, and turns panics in user
//! code into error values. Most programs use this crate through the `weir`
//! facade, which adds task groups and rate limiters.
#![forbid(unsafe_code)]

mod channel;

#[cfg(feature = "metrics")]
mod metrics;
pub mod pipeline;
mod progress;
mod spawn;
#[cfg(feature = "testing")]
pub use weir_context::testing;

// --- pool (issue 3) ---
pub mod pool;
pub use pool::{
    JobError, JobHandler, JobId, JobResult, Pool, PoolBuilder, PoolError, PoolProgress, PoolReport,
    PoolResults, PoolSnapshot, ResizeError, SubmitError, SubmitTimeoutError, Ticket,
    TrySubmitError, WeakPool,
};
// --- drop pattern, time, quit handshake, shutdown (issue 3) ---
pub mod shed;
pub mod shutdown;
pub mod time;
pub mod worker;
pub use shed::{Offer, ShedPolicy, ShedReceiver, ShedTryRecvError, Shedder};
pub use shutdown::{
    MAX_KEPT_FAILURES, Shutdown, ShutdownBuilder, ShutdownError, ShutdownReport, ShutdownTrigger,
    SpawnRefused, TaskFailure, TaskOutput,
};
pub use time::{Elapsed, RecvTimeoutError, WithTimeout, next_timeout, recv_timeout, with_timeout};
pub use worker::{WorkerBuilder, WorkerError, WorkerHandle, spawn_worker};
// --- fan-in, fan-out, bounded fan-out (issue 4) ---
pub mod bounded;
pub mod fan_out;
pub mod merge;
pub use bounded::{
    Bounded, BoundedError, BoundedReport, ResultOrder, for_each_bounded, for_each_in_batches,
};
pub use fan_out::{broadcast, distribute};
pub use merge::{Fan, FanError, FanHandle, FanReceiver, FanReport, merge, merge_in_turn};
// --- weighted semaphore, singleflight (issue 20) ---
pub mod semaphore;
pub mod singleflight;
pub use semaphore::{Semaphore, SemaphoreError, WeightedAcquire, WeightedPermit};
pub use singleflight::{Flight, Singleflight, SingleflightCall, SingleflightError};
// --- adaptive concurrency limit, retry (issue 21) ---
pub mod adaptive;
pub mod retry;
#[cfg(feature = "tower")]
pub use adaptive::tower::{
    AdaptiveLimitFuture, AdaptiveLimitLayer, AdaptiveLimitNotReady, AdaptiveLimitService,
};
pub use adaptive::{
    AdaptiveAcquire, AdaptiveLimit, AdaptiveLimitBuilder, AdaptiveLimitError, AdaptiveLimitStats,
    AdaptivePermit, Aimd, ClassifyOutcome, DropOnError, Gradient, IgnoreOnError, LimitAlgorithm,
    LimitOutcome,
};
pub use retry::{
    GiveUpReason, Jitter, MAX_RETRY_DELAY, RetryBudget, RetryBudgetBuilder, RetryCall,
    RetryCallWithReport, RetryError, RetryPolicy, RetryPolicyBuilder, RetryReport, RetryStats,
    retry,
};

pub use pipeline::{
    EmitError, Emitter, ErrorStream, ItemStream, Pipeline, PipelineError, PipelineHandle,
    PipelineProgress, PipelineReport, PipelineSnapshot, Stage, StageProgress, StageReport,
};

/// The capacity of every channel weir makes (a pipeline's edges, fan-in and
/// fan-out buffers) unless a `capacity(..)` setting says otherwise.
pub const DEFAULT_CAPACITY: usize = 64;
pub use weir_context::{
    Cause, CauseValue, ConfigError, Context, ErrorPolicy, GraceExpired, MAX_CAPACITY, MAX_WORKERS,
    Panic, Problem, RunError, Stopped,
};

/// The names most programs need: `use weir_core::prelude::*;` (or
/// `use weir::prelude::*;`, which adds the task group and rate limiter).
pub mod prelude {
    pub use crate::pipeline::{Pipeline, PipelineError, Stage};
    pub use crate::pool::{JobError, Pool};
    pub use crate::shed::{Offer, ShedPolicy, Shedder};
    pub use crate::shutdown::Shutdown;
    pub use crate::worker::spawn_worker;
    pub use crate::{
        broadcast, distribute, for_each_bounded, for_each_in_batches, merge, merge_in_turn,
    };
    pub use weir_context::ErrorPolicy;
    pub use weir_context::{Cause, Context};
}
