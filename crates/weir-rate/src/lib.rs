//! Rate limiters on tokio time. (Filled in by the weir-rate issue.)
#![forbid(unsafe_code)]
