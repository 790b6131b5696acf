//! weir's `Group` against the same work hand-written on tokio's `JoinSet`.
//!
//! - `spawn_wait_100k`: spawn 100 000 trivial tasks, then wait for all of
//!   them and collect their values (`Group::join` vs a `JoinSet::join_next`
//!   loop, and vs `tokio::spawn` into a `Vec` of `JoinHandle`s awaited in
//!   order, the cheapest way to run them that tokio offers).
//! - `limited_64_100k`: the same through a limit of 64 tasks at once
//!   (`Group::builder().limit(64)` vs a `Semaphore` permit taken before
//!   `JoinSet::spawn` and moved into the task).
//!
//! Run: `cargo bench --bench group -- --warm-up-time 1 --measurement-time 3`
//!
//! On a shared, busy machine criterion's one-after-the-other timings drift
//! with the load. `WEIR_BENCH_ROUNDS=21 cargo bench --bench group` instead
//! runs the weir case and its baseline alternately, 21 rounds, and prints the
//! median time per task and the median of the per-round ratios.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use weir::group::Group;

const TASKS: u64 = 100_000;
const LIMIT: usize = 64;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

async fn joinset(n: u64) -> Vec<u64> {
    let mut set = JoinSet::new();
    for i in 0..n {
        set.spawn(async move { Ok::<u64, Infallible>(black_box(i)) });
    }
    let mut values = Vec::with_capacity(set.len());
    while let Some(joined) = set.join_next().await {
        match joined.expect("task panicked") {
            Ok(value) => values.push(value),
            Err(never) => match never {},
        }
    }
    values
}

async fn handles(n: u64) -> Vec<u64> {
    let handles: Vec<_> = (0..n)
        .map(|i| tokio::spawn(async move { Ok::<u64, Infallible>(black_box(i)) }))
        .collect();
    let mut values = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.await.expect("task panicked") {
            Ok(value) => values.push(value),
            Err(never) => match never {},
        }
    }
    values
}

async fn group(n: u64) -> Vec<u64> {
    let mut group: Group<u64, Infallible> = Group::new();
    for i in 0..n {
        group.spawn(async move { Ok(black_box(i)) }).await;
    }
    group.join().await.expect("no task fails").into_values()
}

async fn joinset_limited(n: u64, limit: usize) -> Vec<u64> {
    let slots = Arc::new(Semaphore::new(limit));
    let mut set = JoinSet::new();
    for i in 0..n {
        let permit = Arc::clone(&slots)
            .acquire_owned()
            .await
            .expect("semaphore open");
        set.spawn(async move {
            let _permit = permit;
            Ok::<u64, Infallible>(black_box(i))
        });
    }
    let mut values = Vec::with_capacity(set.len());
    while let Some(joined) = set.join_next().await {
        match joined.expect("task panicked") {
            Ok(value) => values.push(value),
            Err(never) => match never {},
        }
    }
    values
}

async fn group_limited(n: u64, limit: usize) -> Vec<u64> {
    let mut group: Group<u64, Infallible> =
        Group::builder().limit(limit).build().expect("limit > 0");
    for i in 0..n {
        group.spawn(async move { Ok(black_box(i)) }).await;
    }
    group.join().await.expect("no task fails").into_values()
}

fn bench(c: &mut Criterion) {
    let rt = runtime();

    let mut unlimited = c.benchmark_group("spawn_wait_100k");
    unlimited.sample_size(10);
    unlimited.throughput(Throughput::Elements(TASKS));
    unlimited.bench_function(BenchmarkId::new("joinset", TASKS), |b| {
        b.to_async(&rt).iter(|| joinset(TASKS));
    });
    unlimited.bench_function(BenchmarkId::new("handles", TASKS), |b| {
        b.to_async(&rt).iter(|| handles(TASKS));
    });
    unlimited.bench_function(BenchmarkId::new("group", TASKS), |b| {
        b.to_async(&rt).iter(|| group(TASKS));
    });
    unlimited.finish();

    let mut limited = c.benchmark_group("limited_64_100k");
    limited.sample_size(10);
    limited.throughput(Throughput::Elements(TASKS));
    limited.bench_function(BenchmarkId::new("joinset_semaphore", TASKS), |b| {
        b.to_async(&rt).iter(|| joinset_limited(TASKS, LIMIT));
    });
    limited.bench_function(BenchmarkId::new("group", TASKS), |b| {
        b.to_async(&rt).iter(|| group_limited(TASKS, LIMIT));
    });
    limited.finish();
}

criterion_group!(benches, bench);

/// Times `baseline` and `weir` alternately; prints medians per task and the
/// median per-round ratio.
fn interleaved<A, B, FA, FB>(
    rt: &tokio::runtime::Runtime,
    name: &str,
    rounds: usize,
    baseline: A,
    weir: B,
) where
    A: Fn() -> FA,
    B: Fn() -> FB,
    FA: Future<Output = Vec<u64>>,
    FB: Future<Output = Vec<u64>>,
{
    let time = |f: &dyn Fn() -> usize| {
        let start = std::time::Instant::now();
        black_box(f());
        start.elapsed().as_secs_f64()
    };
    let (mut base, mut ours, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let b = time(&|| rt.block_on(baseline()).len());
        let w = time(&|| rt.block_on(weir()).len());
        base.push(b);
        ours.push(w);
        ratios.push(w / b);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let per_task = 1e9 / TASKS as f64;
    println!(
        "{name}: baseline {:.0} ns/task, weir {:.0} ns/task, median ratio {:.3} ({rounds} rounds)",
        median(&mut base) * per_task,
        median(&mut ours) * per_task,
        median(&mut ratios),
    );
}

fn main() {
    if let Some(rounds) = std::env::var("WEIR_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse::<usize>().ok())
        .filter(|r| *r > 0)
    {
        let rt = runtime();
        interleaved(
            &rt,
            "spawn_wait_100k",
            rounds,
            || joinset(TASKS),
            || group(TASKS),
        );
        interleaved(
            &rt,
            "spawn_wait_100k vs handles",
            rounds,
            || handles(TASKS),
            || group(TASKS),
        );
        interleaved(
            &rt,
            "limited_64_100k",
            rounds,
            || joinset_limited(TASKS, LIMIT),
            || group_limited(TASKS, LIMIT),
        );
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
