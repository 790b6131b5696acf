//! weir: the classic concurrency patterns for tokio as small, typed,
//! cancellation-aware, leak-free building blocks.
//!
//! This crate is the facade. It re-exports [`weir_core`] at its root, and the
//! task group ([`group`], feature `group`) and rate limiters ([`rate`],
//! feature `rate`) as modules. Both features are on by default.
//!
//! Start with [`Pipeline`] for a chain of concurrent stages.
#![forbid(unsafe_code)]

pub use weir_core::*;

/// Errgroup-style task groups (the `weir-group` crate).
#[cfg(feature = "group")]
pub mod group {
    pub use weir_group::*;
}

/// Rate limiters, ticker and stream throttle (the `weir-rate` crate).
#[cfg(feature = "rate")]
pub mod rate {
    pub use weir_rate::*;
}

/// The names most programs need, in one `use weir::prelude::*;`.
pub mod prelude {
    pub use weir_core::prelude::*;
}
