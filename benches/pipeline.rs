//! generate -> map -> sum over 1M u64 items with trivial work: weir's
//! Pipeline beside the same three tasks hand-written with tokio mpsc, in the
//! same run. The ratio weir / hand-written is what counts.
//!
//! `cargo bench --bench pipeline`

use std::convert::Infallible;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::sync::mpsc;
use weir::Pipeline;

const N: u64 = 1_000_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The baseline: a generator task, a map task and the summing caller,
/// connected by bounded tokio mpsc channels of `cap` items.
async fn handwritten(cap: usize) -> u64 {
    let (tx1, mut rx1) = mpsc::channel::<u64>(cap);
    let (tx2, mut rx2) = mpsc::channel::<u64>(cap);
    let gen_task = tokio::spawn(async move {
        for i in 0..N {
            if tx1.send(i).await.is_err() {
                break;
            }
        }
    });
    let map_task = tokio::spawn(async move {
        while let Some(x) = rx1.recv().await {
            if tx2.send(x.wrapping_mul(x)).await.is_err() {
                break;
            }
        }
    });
    let mut sum = 0u64;
    while let Some(x) = rx2.recv().await {
        sum = sum.wrapping_add(x);
    }
    gen_task.await.expect("generator");
    map_task.await.expect("map");
    sum
}

async fn weir_pipeline(cap: usize) -> u64 {
    let (mut out, handle) = Pipeline::<u64, Infallible>::from_iter(0..N)
        .capacity(cap)
        .map("square", 1, |x: u64| async move {
            Ok::<_, Infallible>(x.wrapping_mul(x))
        })
        .into_stream()
        .expect("pipeline starts");
    let mut sum = 0u64;
    while let Some(x) = out.recv().await {
        sum = sum.wrapping_add(x);
    }
    handle.join().await.expect("pipeline ends");
    sum
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let expected = rt.block_on(handwritten(64));
    assert_eq!(rt.block_on(weir_pipeline(64)), expected);

    let mut g = c.benchmark_group("pipeline_3_stage_1M");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(8));
    for cap in [64usize, 1024] {
        g.bench_with_input(
            BenchmarkId::new("handwritten_mpsc", cap),
            &cap,
            |b, &cap| {
                b.to_async(&rt).iter(|| handwritten(cap));
            },
        );
        g.bench_with_input(BenchmarkId::new("weir", cap), &cap, |b, &cap| {
            b.to_async(&rt).iter(|| weir_pipeline(cap));
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
