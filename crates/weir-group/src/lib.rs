//! An errgroup for tokio: a set of tasks that is bounded, cancels on the first
//! error and never leaks. (Filled in by the weir-group issue.)
#![forbid(unsafe_code)]
