//! A pipeline stage with several workers: the edge into it is read by all
//! of them, so this measures the hand-off that a `map(name, 4, f)` stage
//! reads from, beside the same shape hand-written with tokio (async-channel
//! shared by four tasks, an mpsc out), in the same run.
//!
//! Cases, 1M items on a 2-thread runtime, capacity 1024:
//!
//! * `map4_trivial`: the job is `x * x`: the edge's cost per item;
//! * `map4_uneven`: one item in 64 spins for 20 µs without awaiting, the
//!   rest are trivial: whether quick items wait behind a slow one (200k
//!   items).
//!
//! Prints `weir <case> <ns/item>` and `hand <case> <ns/item>`, the median
//! of 5 runs; `STAGE_ONLY=weir.map4_trivial` keeps the cases whose
//! "side.case" contains one of the comma-separated words.
//! `cargo bench --bench stage_workers`.

mod common;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use weir::Pipeline;

const N: u64 = 1_000_000;
const UNEVEN_N: u64 = 200_000;
const WORKERS: usize = 4;

fn work(x: u64, uneven: bool) -> u64 {
    if uneven && x.is_multiple_of(64) {
        let until = Instant::now() + Duration::from_micros(20);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }
    x.wrapping_mul(x)
}

async fn weir_stage(n: u64, uneven: bool) -> u64 {
    let (mut out, handle) = Pipeline::<u64, Infallible>::from_iter(0..n)
        .capacity(1024)
        .map("work", WORKERS, move |x: u64| async move {
            Ok::<_, Infallible>(work(x, uneven))
        })
        .into_stream()
        .expect("pipeline");
    let mut sum = 0u64;
    while let Some(x) = out.recv().await {
        sum = sum.wrapping_add(x);
    }
    handle.join().await.expect("join");
    sum
}

async fn hand_stage(n: u64, uneven: bool) -> u64 {
    let (in_tx, in_rx) = async_channel::bounded::<u64>(1024);
    let (out_tx, mut out_rx) = mpsc::channel::<u64>(1024);
    let source = tokio::spawn(async move {
        for i in 0..n {
            if in_tx.send(i).await.is_err() {
                break;
            }
        }
    });
    for _ in 0..WORKERS {
        let in_rx = in_rx.clone();
        let out_tx = out_tx.clone();
        tokio::spawn(async move {
            while let Ok(x) = in_rx.recv().await {
                if out_tx.send(work(x, uneven)).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(out_tx);
    let mut sum = 0u64;
    while let Some(x) = out_rx.recv().await {
        sum = sum.wrapping_add(x);
    }
    source.await.expect("source");
    sum
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    assert_eq!(
        rt.block_on(weir_stage(1000, true)),
        rt.block_on(hand_stage(1000, true))
    );
    common::measure(&rt, "STAGE", "weir", "map4_trivial", N, || {
        weir_stage(N, false)
    });
    common::measure(&rt, "STAGE", "hand", "map4_trivial", N, || {
        hand_stage(N, false)
    });
    common::measure(&rt, "STAGE", "weir", "map4_uneven", UNEVEN_N, || {
        weir_stage(UNEVEN_N, true)
    });
    common::measure(&rt, "STAGE", "hand", "map4_uneven", UNEVEN_N, || {
        hand_stage(UNEVEN_N, true)
    });
}
