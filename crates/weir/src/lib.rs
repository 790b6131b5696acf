//! weir: the classic concurrency patterns for tokio as small, typed,
//! cancellation-aware, leak-free building blocks.
//!
//! This crate is the facade. It re-exports [`weir_core`] at its root, and the
//! task group ([`group`], feature `group`) and rate limiters ([`rate`],
//! feature `rate`) as modules. Both features are on by default. The same
//! shapes across processes — a rate limit shared by every replica, a
//! durable job queue — are `weir::redis` (feature `redis`, off by default).
//! Tower layers over the limiters are `weir::rate::tower` (feature `tower`)
//! and, for HTTP services, `weir::rate::http` (feature `http`: answers a
//! refusal with `429`, `Retry-After` and the RateLimit fields).
//!
//! For your tests, `weir::testing` (feature `testing`, for
//! `[dev-dependencies]`) has a leak check in the spirit of Go's `goleak`:
//! `LeakCheck::start()` at the top of a test, `verify_none().await` at its
//! end, and it names every weir task still alive.
//!
//! Start with [`Pipeline`] for a chain of concurrent stages, [`Pool`] for a
//! long-lived worker pool, [`group::Group`] for an errgroup, and
//! [`rate::RateLimiter`] for rate limits; [`Context`] carries cancellation
//! with a cause and a deadline through all of them. The cookbook (`docs/` in
//! the repository) has a page per pattern.
//!
//! ```
//! use weir::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let squares = Pipeline::from_iter(1..=4u64)
//!     .map_ordered("square", 2, |x| async move { anyhow::Ok(x * x) })
//!     .collect()
//!     .await?;
//! assert_eq!(squares, [1, 4, 9, 16]);
//!
//! let mut group: Group<u64> = Group::new();
//! for x in squares {
//!     group.spawn(async move { anyhow::Ok(x + 1) }).await;
//! }
//! let plus_one = group.join().await?.into_values_ordered();
//! assert_eq!(plus_one, [2, 5, 10, 17]);
//! # Ok(())
//! # }
//! ```
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

/// A rate limiter shared by every replica and a durable job queue, on Redis
/// (the `weir-redis` crate; feature `redis`, off by default).
#[cfg(feature = "redis")]
pub mod redis {
    pub use weir_redis::*;
}

/// The names most programs need, in one `use weir::prelude::*;`.
pub mod prelude {
    pub use weir_core::prelude::*;
    #[cfg(feature = "group")]
    pub use weir_group::Group;
    #[cfg(feature = "rate")]
    pub use weir_rate::{Rate, RateLimiter, ThrottleExt};
}
