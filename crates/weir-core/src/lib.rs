//! weir-core: the classic concurrency patterns on tokio, as small, typed,
//! cancellation-aware, leak-free building blocks.
//!
//! | pattern | item |
//! |---|---|
//! | generator, pipeline | [`Pipeline`] |
//!
//! Most programs use this crate through the `weir` facade.
#![forbid(unsafe_code)]

mod channel;
pub mod context;
mod panic;
pub mod pipeline;

// --- pool (issue 3) ---
pub mod pool;
pub use pool::{
    JobError, Pool, PoolBuilder, PoolError, PoolReport, PoolStats, PoolWorker, SubmitError,
    SubmitTimeoutError, Ticket, TrySubmitError,
};
// --- drop pattern, time, quit handshake, shutdown (issue 3) ---
pub mod shed;
pub mod shutdown;
pub mod time;
pub mod worker;
pub use shed::{Offer, ShedPolicy, ShedReceiver, Shedder};
pub use shutdown::{Shutdown, ShutdownReport};
pub use time::{Elapsed, RecvTimeoutError, deadline, recv_timeout, with_timeout};
pub use worker::{StopError, Worker, WorkerHandle, spawn_worker};
// --- fan-in, fan-out, bounded fan-out (issue 4) ---
pub mod bounded;
pub mod fan_out;
pub mod merge;
pub use bounded::{Bounded, BoundedError, for_each_bounded, for_each_in_batches};
pub use fan_out::{broadcast, distribute};
pub use merge::{Fan, FanError, FanHandle, FanReceiver, merge, merge_in_turn};

pub use context::{Cause, Context};
pub use panic::panic_message;
pub use pipeline::{
    BuildError, Emitter, ErrorPolicy, ErrorStream, ItemStream, Pipeline, PipelineError,
    PipelineHandle, Report, Stage, StageReport,
};

/// The names most programs need: `use weir::prelude::*;`.
pub mod prelude {
    pub use crate::pipeline::{ErrorPolicy, Pipeline, PipelineError, Stage};
}
