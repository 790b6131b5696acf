//! `Sometimes` beyond Go's tests: what differs from Go on purpose (the
//! action runs outside the lock), concurrency, panics, extreme filters.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use support::within_bound;
use weir_rate::Sometimes;

#[test]
fn an_action_may_call_run_on_the_same_value() {
    // In Go this deadlocks; here the nested call counts like any other.
    within_bound("reentrant", || async {
        let s = Sometimes::new().every(2);
        let mut ran = Vec::new();
        s.run(|| {
            ran.push("outer"); // call 0
            s.run(|| ran.push("inner")); // call 1: not a multiple of 2
            s.run(|| ran.push("inner again")); // call 2
        });
        s.run(|| ran.push("after")); // call 3
        assert_eq!(ran, ["outer", "inner again"]);
    });
}

#[test]
fn concurrent_calls_count_every_call_once() {
    within_bound("concurrent", || async {
        const THREADS: u64 = 8;
        const EACH: u64 = 1_000;
        let s = Arc::new(Sometimes::new().first(5).every(10));
        let ran = Arc::new(AtomicU64::new(0));
        let start = Arc::new(Barrier::new(THREADS as usize));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (s, ran, start) = (s.clone(), ran.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..EACH {
                        s.run(|| ran.fetch_add(1, Ordering::Relaxed));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Calls 0..8000: the first 5 (0..4) and every 10th (0, 10, ...,
        // 7990): 800 multiples of 10, plus 1, 2, 3, 4.
        assert_eq!(ran.load(Ordering::Relaxed), 804);
    });
}

#[test]
fn a_panicking_action_counts_as_run_and_poisons_nothing() {
    within_bound("panic", || async {
        let s = Sometimes::new().first(2);
        let caught = std::panic::catch_unwind(|| s.run(|| panic!("in the action")));
        assert!(caught.is_err());
        assert_eq!(s.run(|| "second"), Some("second"));
        assert_eq!(s.run(|| "third"), None);
    });
}

#[test]
fn the_interval_counts_from_the_last_run_by_any_filter() {
    within_bound("interval", || async {
        let s = Sometimes::new()
            .every(3)
            .interval(Duration::from_millis(100));
        let mut ran = Vec::new();
        let tick = Duration::from_millis(60);
        for call in 0..8 {
            s.run(|| ran.push(call));
            tokio::time::advance(tick).await;
        }
        // Calls every 60 ms: 0 (the first), 2 (120 ms after 0), 3 (every
        // 3rd), 5 (120 ms after 3, which reset the interval), 6 (every 3rd).
        assert_eq!(ran, [0, 2, 3, 5, 6]);
    });
}

#[test]
fn extreme_filters() {
    within_bound("extremes", || async {
        let always = Sometimes::new().every(1);
        assert!((0..100).all(|_| always.run(|| ()).is_some()));
        let first_all = Sometimes::new().first(u64::MAX);
        assert!((0..100).all(|_| first_all.run(|| ()).is_some()));
        let rarely = Sometimes::new().every(u64::MAX);
        assert_eq!((0..100).filter(|_| rarely.run(|| ()).is_some()).count(), 1);
        let never_again = Sometimes::new().interval(Duration::MAX);
        assert_eq!(never_again.run(|| ()), Some(()));
        tokio::time::advance(Duration::from_secs(u64::from(u32::MAX))).await;
        assert_eq!(never_again.run(|| ()), None);
        let tiny = Sometimes::new().interval(Duration::from_nanos(1));
        tiny.run(|| ());
        assert_eq!(tiny.run(|| ()), None, "no time passed on the paused clock");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(tiny.run(|| ()), Some(()));
    });
}

#[test]
fn it_can_be_a_static() {
    static ONCE_IN_A_WHILE: Sometimes = Sometimes::new().first(1).every(4);
    let ran: Vec<u32> = (0..9).filter_map(|i| ONCE_IN_A_WHILE.run(|| i)).collect();
    assert_eq!(ran, [0, 4, 8]);
    assert!(format!("{ONCE_IN_A_WHILE:?}").contains("every: 4"));
}
