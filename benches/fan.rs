//! Fan-in and bounded fan-out against their hand-written baselines.
//!
//! - `merge_4_streams`: `weir::merge` of 4 producer streams vs 4 producer tasks
//!   sending into one `mpsc` (the same work: one task per producer, one
//!   bounded channel of the same capacity).
//! - `merge_4_receivers`: merging 4 existing `mpsc` receivers: `weir::merge`
//!   of `ReceiverStream`s vs the hand-written Go-style merge (one forwarding
//!   task per receiver into one `mpsc`).
//! - `bounded_cpu`: `weir::for_each_bounded` vs
//!   `futures::stream::iter(..).map(..).buffer_unordered(limit)` with
//!   CPU-heavy bodies (spawned tasks use both runtime threads; buffered
//!   futures are polled by the one task that drives the stream).
//! - `bounded_light`: the same with near-empty bodies, where spawning a task
//!   per job is pure overhead.
//!
//! Runtime: multi-thread, 2 workers; each iteration runs as a task on it.
//! Run with
//! `cargo bench --bench fan -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::{StreamExt, stream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const ITEMS: u64 = 100_000;
const PRODUCERS: u64 = 4;
const CAPACITY: usize = weir::DEFAULT_CAPACITY;

/// Runs `fut` as a task on the runtime, as application code would (criterion's
/// `to_async` polls the bench future from outside the worker threads).
async fn on_runtime<F>(fut: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(fut)
        .await
        .unwrap_or_else(|e| panic!("bench task: {e}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

async fn baseline_senders() -> u64 {
    let (tx, mut rx) = mpsc::channel(CAPACITY);
    for p in 0..PRODUCERS {
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0..ITEMS / PRODUCERS {
                if tx.send(p + i).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut sum = 0;
    while let Some(x) = rx.recv().await {
        sum += x;
    }
    sum
}

async fn weir_merge_streams() -> u64 {
    let inputs = (0..PRODUCERS).map(|p| stream::iter((0..ITEMS / PRODUCERS).map(move |i| p + i)));
    let mut out = weir::merge(inputs).expect("inside a runtime");
    let mut sum = 0;
    while let Some(x) = out.recv().await {
        sum += x;
    }
    sum
}

fn producer_channels() -> Vec<mpsc::Receiver<u64>> {
    (0..PRODUCERS)
        .map(|p| {
            let (tx, rx) = mpsc::channel(CAPACITY);
            tokio::spawn(async move {
                for i in 0..ITEMS / PRODUCERS {
                    if tx.send(p + i).await.is_err() {
                        return;
                    }
                }
            });
            rx
        })
        .collect()
}

async fn baseline_forwarders() -> u64 {
    let (tx, mut rx) = mpsc::channel(CAPACITY);
    for mut input in producer_channels() {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(x) = input.recv().await {
                if tx.send(x).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut sum = 0;
    while let Some(x) = rx.recv().await {
        sum += x;
    }
    sum
}

async fn weir_merge_receivers() -> u64 {
    let inputs = producer_channels().into_iter().map(ReceiverStream::new);
    let mut out = weir::merge(inputs).expect("inside a runtime");
    let mut sum = 0;
    while let Some(x) = out.recv().await {
        sum += x;
    }
    sum
}

fn bench_merge(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("merge_4_streams");
    group.throughput(Throughput::Elements(ITEMS));
    group.bench_function("baseline_4_senders_one_mpsc", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(on_runtime(baseline_senders()).await) })
    });
    group.bench_function("weir_merge", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(on_runtime(weir_merge_streams()).await) })
    });
    group.finish();

    let mut group = c.benchmark_group("merge_4_receivers");
    group.throughput(Throughput::Elements(ITEMS));
    group.bench_function("baseline_forwarding_tasks", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(on_runtime(baseline_forwarders()).await) })
    });
    group.bench_function("weir_merge", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(on_runtime(weir_merge_receivers()).await) })
    });
    group.finish();
}

/// About `rounds` × a few ns of CPU work that the optimizer cannot skip.
fn burn(seed: u64, rounds: u64) -> u64 {
    let mut x = seed;
    for i in 0..rounds {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(i) ^ (x >> 29);
    }
    black_box(x)
}

const JOBS: u64 = 64;
const LIMIT: usize = 4;

fn bench_bounded(c: &mut Criterion) {
    let rt = runtime();
    for (name, rounds) in [("bounded_cpu", 200_000u64), ("bounded_light", 10)] {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(JOBS));
        group.bench_function("baseline_buffer_unordered", |b| {
            b.to_async(&rt).iter(|| {
                on_runtime(async move {
                    let out: Vec<u64> = stream::iter(0..JOBS)
                        .map(|i| async move { burn(i, rounds) })
                        .buffer_unordered(LIMIT)
                        .collect()
                        .await;
                    black_box(out)
                })
            })
        });
        group.bench_function("weir_for_each_bounded", |b| {
            b.to_async(&rt).iter(|| {
                on_runtime(async move {
                    let out = weir::for_each_bounded(0..JOBS, LIMIT, |i| async move {
                        Ok::<_, std::convert::Infallible>(burn(i, rounds))
                    })
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                    black_box(out)
                })
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench_merge, bench_bounded
}
criterion_main!(benches);
