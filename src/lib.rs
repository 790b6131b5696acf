//! The weir cookbook: the README and every page under `docs/`, compiled and
//! run as doctests by `cargo test --workspace`. Nothing here is public API;
//! use the `weir` crate.
#![forbid(unsafe_code)]
#![doc = include_str!("../README.md")]

/// docs/pipeline.md
#[doc = include_str!("../docs/pipeline.md")]
pub mod pipeline {}
