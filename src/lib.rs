//! The weir cookbook: the README and every page under `docs/`, compiled and
//! run as doctests by `cargo test --workspace`. Nothing here is public API;
//! use the `weir` crate.
#![forbid(unsafe_code)]
#![doc = include_str!("../README.md")]

/// `docs/pipeline.md`
#[doc = include_str!("../docs/pipeline.md")]
pub mod pipeline {}

/// `docs/pool.md`
#[doc = include_str!("../docs/pool.md")]
pub mod pool {}

/// `docs/drop.md`
#[doc = include_str!("../docs/drop.md")]
pub mod drop {}

/// `docs/timeouts.md`
#[doc = include_str!("../docs/timeouts.md")]
pub mod timeouts {}

/// `docs/shutdown.md`
#[doc = include_str!("../docs/shutdown.md")]
pub mod shutdown {}

/// `docs/fan-in.md`
#[doc = include_str!("../docs/fan-in.md")]
pub mod fan_in {}

/// `docs/fan-out.md`
#[doc = include_str!("../docs/fan-out.md")]
pub mod fan_out {}

/// `docs/errgroup.md`
#[doc = include_str!("../docs/errgroup.md")]
pub mod errgroup {}

/// `docs/rate-limit.md`
#[doc = include_str!("../docs/rate-limit.md")]
pub mod rate_limit {}

/// `docs/context.md`
#[doc = include_str!("../docs/context.md")]
pub mod context {}

/// `docs/error-handling.md`
#[doc = include_str!("../docs/error-handling.md")]
pub mod error_handling {}

/// `docs/distributed.md`
#[doc = include_str!("../docs/distributed.md")]
pub mod distributed {}
