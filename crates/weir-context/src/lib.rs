//! weir's shared vocabulary: what every weir construct takes and gives back.
//!
//! | item | what it is |
//! |---|---|
//! | [`Context`] | cancellation with a [`Cause`] and a deadline (Go's `context`); every construct takes one with `.context(..)` |
//! | [`Cause`], [`Stopped`] | why a context was cancelled; the error of work a cancellation ended |
//! | [`Panic`] | a caught panic: its message and its payload, as an error value |
//! | [`ConfigError`] | the one error for settings that cannot work, found when a construct is built |
//! | [`RunError`] | how a run ended when it did not end well, with its final report |
//! | [`GraceExpired`] | the cause a `shutdown(grace)` gives when it had to cancel what was left |
//! | [`ErrorPolicy`] | fail-fast or continue: what one failure does to the rest of a run |
//!
//! This crate is small on purpose: the task group and the rate limiters
//! need these and nothing else of weir's core. Use it through the `weir`
//! facade, which re-exports all of it at its root.
#![forbid(unsafe_code)]

mod cause;
mod config;
mod context;
mod grace;
mod panic;
mod policy;
mod run_error;
mod table;
#[cfg(feature = "testing")]
pub mod testing;
mod track;

pub use cause::{Cause, CauseValue, Stopped};
pub use config::{ConfigError, MAX_CAPACITY, MAX_WORKERS, Problem};
pub use context::Context;
pub use grace::GraceExpired;
pub use panic::Panic;
pub use policy::ErrorPolicy;
pub use run_error::RunError;

/// Helpers for weir's own crates; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::config::{check_capacity, check_workers};
    pub use crate::panic::{catch, catch_call, panic_message};
    pub use crate::table::write_table;
    pub use crate::track::{Construct, Label, Origin, Tracked, track};

    /// `now + d`, or `None` when that is beyond the clock's range (a
    /// deadline that far away is no deadline).
    pub fn deadline_after(d: std::time::Duration) -> Option<tokio::time::Instant> {
        tokio::time::Instant::now().checked_add(d)
    }
}
