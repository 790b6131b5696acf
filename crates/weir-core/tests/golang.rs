//! Go's `golang.org/x/sync` tests ported to weir-core, one module per
//! package: `semaphore` (semaphore_test.go) and `singleflight`
//! (singleflight_test.go). weir-rate's and weir-group's ports are in their
//! own `tests/golang.rs`.

#[path = "golang/semaphore.rs"]
mod semaphore;
#[path = "golang/singleflight.rs"]
mod singleflight;
