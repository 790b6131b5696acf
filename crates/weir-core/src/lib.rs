//! weir-core: the classic concurrency patterns on tokio.
#![forbid(unsafe_code)]

/// The names most programs need.
pub mod prelude {}
