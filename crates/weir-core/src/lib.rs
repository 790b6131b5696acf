//! weir-core: the classic concurrency patterns on tokio, as small, typed,
//! cancellation-aware, leak-free building blocks.
//!
//! | pattern | item |
//! |---|---|
//! | generator, pipeline | [`Pipeline`] |
//!
//! Most programs use this crate through the `weir` facade.
#![forbid(unsafe_code)]

mod panic;
// pub mod pipeline; (being written)

// --- pool (issue 3) ---
pub mod pool;
// --- drop pattern, time, quit handshake, shutdown (issue 3) ---
pub mod shed;
pub mod shutdown;
pub mod time;
pub mod worker;
// --- fan-in, fan-out, bounded fan-out (issue 4) ---
pub mod bounded;
pub mod fan_out;
pub mod merge;
pub use bounded::{Bounded, BoundedError, for_each_bounded, for_each_in_batches};
pub use fan_out::{broadcast, distribute};
pub use merge::{Fan, FanError, FanHandle, FanReceiver, merge, merge_in_turn};

pub use panic::panic_message;


/// The names most programs need: `use weir::prelude::*;`.
pub mod prelude {
}
