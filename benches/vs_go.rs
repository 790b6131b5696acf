//! weir beside hand-written tokio on the four patterns of Go's comparison
//! (benches/go/run.sh runs Go's side in the same invocation): a worker pool
//! of 2, 4 and 8 workers, a 3-stage pipeline, fan-in of 4 producers, spawning 200k tasks and
//! waiting for all. Trivial per-item work, a 2-thread runtime, 1M items.
//!
//! Prints `weir <pattern> <ns/item>` and `hand <pattern> <ns/item>`, the
//! median of 5 runs (`VS_GO_ALL=1` also prints every run on stderr;
//! `VS_GO_ONLY=weir.pool` keeps the cases whose "side.name" contains one of
//! the comma-separated words). Each case runs as a task spawned on the 2-worker
//! runtime, so that everything (the consumer included) shares two threads,
//! as everything shares Go's two Ps under `GOMAXPROCS=2`. `cargo bench --bench vs_go` (or benches/go/run.sh).

mod common;

use std::convert::Infallible;
use std::time::Instant;

use tokio::sync::mpsc;
use weir::group::Group;
use weir::{Pipeline, Pool};

const N: u64 = 1_000_000;
const SPAWN_N: u64 = 200_000;

async fn weir_pool(workers: usize) -> u64 {
    let pool = Pool::builder()
        .workers(workers)
        .queue(1024)
        .results(1024)
        .name("bench")
        .build(|x: u64| async move { Ok::<_, Infallible>(x.wrapping_mul(x)) })
        .expect("pool");
    let mut results = pool.results().expect("results stream");
    let submitter = pool.clone();
    let feed = tokio::spawn(async move {
        for i in 0..N {
            if submitter.submit_detached(i).await.is_err() {
                break;
            }
        }
    });
    let mut sum = 0u64;
    for _ in 0..N {
        match results.recv().await {
            Some((_, Ok(x))) => sum = sum.wrapping_add(x),
            _ => break,
        }
    }
    feed.await.expect("feeder");
    pool.join().await.expect("no job cancelled");
    sum
}

async fn hand_pool(n_workers: usize) -> u64 {
    let (jobs_tx, jobs_rx) = async_channel::bounded::<u64>(1024);
    let (res_tx, mut res_rx) = mpsc::channel::<u64>(1024);
    let mut workers = Vec::new();
    for _ in 0..n_workers {
        let jobs = jobs_rx.clone();
        let res = res_tx.clone();
        workers.push(tokio::spawn(async move {
            while let Ok(j) = jobs.recv().await {
                if res.send(j.wrapping_mul(j)).await.is_err() {
                    break;
                }
            }
        }));
    }
    drop(res_tx);
    let feed = tokio::spawn(async move {
        for i in 0..N {
            if jobs_tx.send(i).await.is_err() {
                break;
            }
        }
    });
    let mut sum = 0u64;
    while let Some(x) = res_rx.recv().await {
        sum = sum.wrapping_add(x);
    }
    feed.await.expect("feeder");
    for w in workers {
        w.await.expect("worker");
    }
    sum
}

async fn weir_pipeline() -> u64 {
    let (mut out, handle) = Pipeline::<u64, Infallible>::from_iter(0..N)
        .capacity(1024)
        .map("square", 1, |x: u64| async move {
            Ok::<_, Infallible>(x.wrapping_mul(x))
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

async fn hand_pipeline() -> u64 {
    let (tx1, mut rx1) = mpsc::channel::<u64>(1024);
    let (tx2, mut rx2) = mpsc::channel::<u64>(1024);
    let g = tokio::spawn(async move {
        for i in 0..N {
            if tx1.send(i).await.is_err() {
                break;
            }
        }
    });
    let m = tokio::spawn(async move {
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
    g.await.expect("gen");
    m.await.expect("map");
    sum
}

async fn weir_fan_in() -> u64 {
    let inputs = (0..4).map(|_| futures::stream::iter(0..N / 4));
    // The same capacity as the baseline's channel (and Go's).
    let mut out = weir::Fan::new()
        .capacity(1024)
        .merge(inputs)
        .expect("inside a runtime");
    let mut sum = 0u64;
    while let Some(x) = out.recv().await {
        sum = sum.wrapping_add(x);
    }
    sum
}

async fn hand_fan_in() -> u64 {
    let (tx, mut rx) = mpsc::channel::<u64>(1024);
    for _ in 0..4 {
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0..N / 4 {
                if tx.send(i).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut sum = 0u64;
    while let Some(x) = rx.recv().await {
        sum = sum.wrapping_add(x);
    }
    sum
}

async fn weir_spawn() -> u64 {
    let mut group: Group<u64, Infallible> = Group::new();
    for i in 0..SPAWN_N {
        group.spawn(async move { Ok(i) }).await;
    }
    group
        .join()
        .await
        .expect("group")
        .into_values()
        .into_iter()
        .fold(0u64, u64::wrapping_add)
}

async fn hand_spawn() -> u64 {
    let handles: Vec<_> = (0..SPAWN_N)
        .map(|i| tokio::spawn(async move { i }))
        .collect();
    let mut sum = 0u64;
    for h in handles {
        sum = sum.wrapping_add(h.await.expect("task"));
    }
    sum
}

async fn joinset_spawn() -> u64 {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..SPAWN_N {
        set.spawn(async move { i });
    }
    let mut sum = 0u64;
    while let Some(r) = set.join_next().await {
        sum = sum.wrapping_add(r.expect("task"));
    }
    sum
}

/// Time for one item to cross an idle 3-stage pipeline (source fed from a
/// channel -> map -> output), weir's and the hand-written one, `n` items
/// each. The two alternate in rounds of 500 items, so that a change in the
/// machine's load lands on both sides; returns (weir, hand-written), each as
/// [`percentiles`].
async fn latency(n: usize) -> ((u64, u64, f64), (u64, u64, f64)) {
    let (weir_tx, rx) = mpsc::channel::<Instant>(16);
    let (mut weir_out, handle) = Pipeline::<Instant, Infallible>::from_receiver(rx)
        .map("hop", 1, |t: Instant| async move { Ok::<_, Infallible>(t) })
        .into_stream()
        .expect("pipeline");

    let (hand_tx, mut rx) = mpsc::channel::<Instant>(16);
    let (tx2, mut hand_out) = mpsc::channel::<Instant>(16);
    let hop = tokio::spawn(async move {
        while let Some(t) = rx.recv().await {
            if tx2.send(t).await.is_err() {
                break;
            }
        }
    });

    let (mut weir, mut hand) = (Vec::with_capacity(n), Vec::with_capacity(n));
    const ROUND: usize = 500;
    for _ in 0..n.div_ceil(ROUND) {
        for _ in 0..ROUND {
            weir_tx.send(Instant::now()).await.expect("send");
            let sent = weir_out.recv().await.expect("item");
            weir.push(sent.elapsed().as_nanos() as u64);
        }
        for _ in 0..ROUND {
            hand_tx.send(Instant::now()).await.expect("send");
            let sent = hand_out.recv().await.expect("item");
            hand.push(sent.elapsed().as_nanos() as u64);
        }
    }
    drop(weir_tx);
    while weir_out.recv().await.is_some() {}
    handle.join().await.expect("join");
    drop(hand_tx);
    hop.await.expect("hop");
    (percentiles(weir), percentiles(hand))
}

/// (p50, p99, the mean of p10..p90) in ns. The clock reads in 10 ns steps
/// here, so the trimmed mean is the finer figure for comparing two builds.
fn percentiles(mut lat: Vec<u64>) -> (u64, u64, f64) {
    lat.sort_unstable();
    let middle = &lat[lat.len() / 10..lat.len() * 9 / 10];
    let mean = middle.iter().sum::<u64>() as f64 / middle.len() as f64;
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    (at(0.50), at(0.99), mean)
}

fn main() {
    // `VS_GO_CURRENT_THREAD=1`: everything on one thread, which measures
    // the CPU cost of an item without the scheduler's noise (the figures
    // are then not comparable with Go's two Ps; compare two builds).
    let rt = if std::env::var_os("VS_GO_CURRENT_THREAD").is_some() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    };
    // The same answers on both sides (skipped when profiling one case).
    if std::env::var_os("VS_GO_ONLY").is_none() {
        assert_eq!(rt.block_on(weir_pool(4)), rt.block_on(hand_pool(4)));
        assert_eq!(rt.block_on(weir_pipeline()), rt.block_on(hand_pipeline()));
        assert_eq!(rt.block_on(weir_fan_in()), rt.block_on(hand_fan_in()));
        assert_eq!(rt.block_on(weir_spawn()), rt.block_on(hand_spawn()));
    }

    common::measure(&rt, "VS_GO", "weir", "pool_w2", N, || weir_pool(2));
    common::measure(&rt, "VS_GO", "hand", "pool_w2", N, || hand_pool(2));
    common::measure(&rt, "VS_GO", "weir", "pool_w4", N, || weir_pool(4));
    common::measure(&rt, "VS_GO", "hand", "pool_w4", N, || hand_pool(4));
    common::measure(&rt, "VS_GO", "weir", "pool_w8", N, || weir_pool(8));
    common::measure(&rt, "VS_GO", "hand", "pool_w8", N, || hand_pool(8));
    common::measure(&rt, "VS_GO", "weir", "pipeline_3_stage", N, weir_pipeline);
    common::measure(&rt, "VS_GO", "hand", "pipeline_3_stage", N, hand_pipeline);
    common::measure(&rt, "VS_GO", "weir", "fan_in_4", N, weir_fan_in);
    common::measure(&rt, "VS_GO", "hand", "fan_in_4", N, hand_fan_in);
    common::measure(&rt, "VS_GO", "weir", "spawn_wait_200k", SPAWN_N, weir_spawn);
    common::measure(&rt, "VS_GO", "hand", "spawn_wait_200k", SPAWN_N, hand_spawn);
    common::measure(
        &rt,
        "VS_GO",
        "joinset",
        "spawn_wait_200k",
        SPAWN_N,
        joinset_spawn,
    );

    // Latency of one item through an idle pipeline: batching must not hurt.
    if std::env::var_os("VS_GO_ONLY").is_some_and(|o| !o.to_string_lossy().contains("latency")) {
        return;
    }
    let ((wp50, wp99, wmean), (hp50, hp99, hmean)) =
        rt.block_on(async { tokio::spawn(latency(20_000)).await.expect("latency") });
    println!("weir idle_latency_p50 {wp50}");
    println!("hand idle_latency_p50 {hp50}");
    println!("weir idle_latency_p99 {wp99}");
    println!("hand idle_latency_p99 {hp99}");
    println!("weir idle_latency_mid80_mean {wmean:.1}");
    println!("hand idle_latency_mid80_mean {hmean:.1}");
}
