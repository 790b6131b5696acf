//! Swaps std's atomics and mutex for loom's in `--cfg weir_loom` test builds, so the
//! lock-free decision path in `gcra.rs` can be model-checked (the same shim
//! tokio-util keeps in its `src/loom.rs`).

#[cfg(all(test, weir_loom))]
pub(crate) use loom::sync::Mutex;
#[cfg(all(test, weir_loom))]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};

#[cfg(not(all(test, weir_loom)))]
pub(crate) use std::sync::Mutex;
#[cfg(not(all(test, weir_loom)))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};

/// Waits a moment for a concurrent quota change to finish (it holds the
/// state word for a handful of arithmetic instructions, never across I/O or
/// an allocation).
#[inline]
pub(crate) fn backoff(spins: &mut u32) {
    #[cfg(all(test, weir_loom))]
    {
        let _ = spins;
        loom::thread::yield_now();
    }
    #[cfg(not(all(test, weir_loom)))]
    {
        if *spins < 64 {
            *spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Locks a mutex, ignoring poisoning: the data behind it is written with
/// plain stores that cannot be left half-done by a panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> impl std::ops::DerefMut<Target = T> + '_ {
    #[cfg(all(test, weir_loom))]
    {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }
    #[cfg(not(all(test, weir_loom)))]
    {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
