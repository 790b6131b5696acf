//! Rate limiters on tokio time: Go's `x/time/rate` and `time.Tick`, for
//! tokio.
//!
//! | item | for | Go |
//! |---|---|---|
//! | [`RateLimiter`] | a token bucket (GCRA) shared by clones: try, wait, reserve, change at runtime | `rate.Limiter` |
//! | [`AcquireTokens`] | a wait for tokens, bounded or cancelled with `.context(ctx)` | `Limiter.WaitN(ctx, n)` |
//! | [`KeyedRateLimiter`] | one bucket per key, with per-key quotas and eviction | a `map[key]*rate.Limiter` |
//! | [`Ticker`] | fixed-rate ticks with a missed-tick policy | `time.Tick` |
//! | [`throttle`] / [`ThrottleExt`] | pace a stream with a limiter | a `Wait` in the loop |
//! | [`Sometimes`] | run an action the first N times, every Nth time, or once per interval | `rate.Sometimes` |
//! | `tower` module (feature `tower`) | a shared or keyed limit for tower/axum services, with load shedding | — |
//! | `http` module (feature `http`) | the same for HTTP services: `429` with `Retry-After` and the RateLimit headers, keys from a header, the peer address or a closure | — |
//!
//! Every timing is tokio's time, so tests on a paused runtime run in no time
//! and deterministically. The decision is one compare-and-swap on an
//! `AtomicU64` (no lock) and a clock read; on a multi-thread runtime (whose
//! clock cannot be paused) that read is the CPU's timestamp counter, as in
//! governor, so a decision costs what governor's does (see the benches and
//! [`RateLimiter`]'s docs).
//!
//! # Examples
//!
//! ```
//! # mod weir { pub use weir_rate as rate; }
//! use std::time::Duration;
//! use weir::rate::{Rate, RateLimiter};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 10 requests a second, 5 at once after an idle spell.
//! let limiter = RateLimiter::new(Rate::per_second(10).burst(5))?;
//! let start = tokio::time::Instant::now();
//! for _ in 0..1000 {
//!     limiter.acquire().await?; // waits its turn; cancel safe
//! }
//! // 5 at once, then one every 100 ms: 99.5 s of (paused) time.
//! assert_eq!(start.elapsed(), Duration::from_millis(99_500));
//!
//! match limiter.try_acquire() {
//!     Ok(()) => unreachable!("the bucket is empty"),
//!     Err(not_until) => assert_eq!(not_until.wait_time(), Some(Duration::from_millis(100))),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Errors, cancellation, panics, drop
//!
//! - Invalid settings (a zero burst, count or period; a rate too fast or
//!   too slow to represent; a zero ticker period) are a
//!   [`ConfigError`](weir_context::ConfigError) from the constructor or
//!   setter, naming the construct (`"rate"`, `"ticker"`) and the setting;
//!   nothing panics, and extreme values (`u32::MAX` counts and bursts,
//!   `Duration::MAX` periods) are either a value or that error.
//! - A wait ([`RateLimiter::acquire_n`]) for more than the burst fails at
//!   once with [`WaitError::InsufficientCapacity`], never hangs; with
//!   `.context(ctx)` it fails at once when the tokens would come after the
//!   deadline, and stops with the context's cause when it is cancelled.
//! - Dropping a wait takes nothing; dropping a [`Reservation`] keeps its
//!   tokens taken (call [`Reservation::cancel`] to give them back).
//! - Nothing here spawns a task, so nothing outlives its handle.
#![forbid(unsafe_code)]

mod acquire;
mod clock;
mod error;
mod gcra;
mod keyed;
mod label;
mod limiter;
mod loom;
mod rate;
mod reservation;
mod sometimes;
mod throttle;
mod ticker;

#[cfg(feature = "tower")]
pub mod tower;

#[cfg(feature = "http")]
pub mod http;

pub use acquire::AcquireTokens;
pub use error::{InsufficientCapacity, NotUntil, WaitError};
pub use keyed::KeyedRateLimiter;
pub use limiter::RateLimiter;
pub use rate::Rate;
pub use reservation::Reservation;
pub use sometimes::Sometimes;
pub use throttle::{Throttle, ThrottleExt, throttle};
pub use ticker::{MissedTick, Ticker};

#[cfg(all(test, weir_loom))]
mod loom_tests;
