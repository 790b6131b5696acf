//! The weir cookbook package: the runnable examples (`examples/`), the
//! benches (`benches/`) and the tests that keep the README and `docs/`
//! honest (`tests/docs_snippets.rs` builds and runs every ```rust block of
//! them as written; `tests/examples.rs` runs every example). Nothing here is
//! public API; use the `weir` crate.
#![forbid(unsafe_code)]
