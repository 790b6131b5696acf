//! weir's one hand-off: every queue between two of weir's tasks is built
//! here, so how items move, wait, close and are counted is decided in one
//! place.
//!
//! | module | shape | used by |
//! |---|---|---|
//! | [`lane`] | bounded, many senders, one reader; room counted in *weight* (items, not packets); evicting push; batch take | the pieces below, the drop pattern (`Shedder`), the task group's completion queue |
//! | [`chunk`] | a [`lane`] of [`Packet`](chunk::Packet)s with a chunk per sender, flushed when full or before the sender waits | pipeline edges read by one task, fan-in's output, a pool's results stream |
//! | [`queue`] | bounded, many senders, many readers; each reader takes a *share* under load, gives back what it has not started before it waits, and idle readers steal from busy ones; a hand-off mode (capacity 0) | a pool's job queue |
//!
//! [`BATCH`] is the one batch size: the largest chunk and the largest
//! share.
//!
//! This crate is internal to weir: its API follows what weir's crates need
//! and may change in any release. Use weir's constructs instead.
//!
//! Everything shared sits behind one `std::sync::Mutex` per channel (plus
//! tokio's `Notify` for senders waiting for room, and crossbeam's deque for
//! a reader's share), held for a few instructions and never across an
//! `.await`; wakers are woken after the lock is released. So there is no
//! hand-written atomic protocol here to model with loom.
#![forbid(unsafe_code)]

pub mod chunk;
pub mod lane;
pub mod queue;

/// Most items in one chunk ([`chunk`]) and in one share of a reader of a
/// [`queue`]: under load the lock (and the cache line it lives on) is paid
/// once per batch; a small batch still lets one slow item hold up only a
/// few others.
pub const BATCH: usize = 64;

#[cfg(test)]
mod tests {
    /// The receivers end up inside public streams (a pipeline's output, a
    /// fan-out's outputs), which are `Send + Sync`.
    #[test]
    fn every_end_is_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<crate::lane::LaneTx<String>>();
        send_sync::<crate::lane::LaneRx<String>>();
        send_sync::<crate::chunk::ChunkTx<String>>();
        send_sync::<crate::chunk::ChunkRx<String>>();
        send_sync::<crate::queue::QueueTx<String>>();
        send_sync::<crate::queue::QueueRx<String>>();
    }
}
