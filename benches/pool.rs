//! A worker pool running 200k trivial jobs: weir's `Pool` beside the same
//! shape hand-written with tokio, in the same run. The ratio weir /
//! hand-written is what counts.
//!
//! Every case: a runtime with 2 worker threads, a pool of 2 workers, a queue
//! of 1024 jobs, the job is `x * 2`. Pool creation and `join` are inside
//! the measured time for both sides.
//!
//! * results stream: a producer task submits every job, the caller reads
//!   every result from a results channel (Go's jobs/results channels).
//!   Baselines: async-channel (the MPMC channel a hand-written pool uses) and tokio mpsc with the
//!   receiver behind a `Mutex` (what people write with tokio alone).
//! * ticket: the caller submits every job with its own oneshot reply and
//!   then awaits all replies in order.
//!
//! `cargo bench --bench pool`

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use tokio::sync::{Mutex, mpsc, oneshot};
use weir::pool::Pool;

const N: u64 = 200_000;
const WORKERS: usize = 2;
const QUEUE: usize = 1024;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn job(x: u64) -> Result<u64, Infallible> {
    Ok(x.wrapping_mul(2))
}

/// Baseline, results stream: async-channel jobs queue shared by the workers,
/// async-channel results channel, the Go shape.
async fn handwritten_async_channel() -> u64 {
    let (jobs_tx, jobs_rx) = async_channel::bounded::<u64>(QUEUE);
    let (res_tx, res_rx) = async_channel::bounded::<u64>(QUEUE);
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let jobs = jobs_rx.clone();
        let results = res_tx.clone();
        workers.push(tokio::spawn(async move {
            while let Ok(x) = jobs.recv().await {
                let Ok(y) = job(x).await;
                if results.send(y).await.is_err() {
                    break;
                }
            }
        }));
    }
    drop((jobs_rx, res_tx));
    let producer = tokio::spawn(async move {
        for i in 0..N {
            if jobs_tx.send(i).await.is_err() {
                break;
            }
        }
    });
    let mut sum = 0_u64;
    while let Ok(y) = res_rx.recv().await {
        sum = sum.wrapping_add(y);
    }
    producer.await.expect("producer");
    for w in workers {
        w.await.expect("worker");
    }
    sum
}

/// Baseline, results stream: tokio mpsc jobs queue with the receiver behind
/// a Mutex, tokio mpsc results channel.
async fn handwritten_mpsc() -> u64 {
    let (jobs_tx, jobs_rx) = mpsc::channel::<u64>(QUEUE);
    let (res_tx, mut res_rx) = mpsc::channel::<u64>(QUEUE);
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let jobs = jobs_rx.clone();
        let results = res_tx.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let next = jobs.lock().await.recv().await;
                let Some(x) = next else { break };
                let Ok(y) = job(x).await;
                if results.send(y).await.is_err() {
                    break;
                }
            }
        }));
    }
    drop(res_tx);
    let producer = tokio::spawn(async move {
        for i in 0..N {
            if jobs_tx.send(i).await.is_err() {
                break;
            }
        }
    });
    let mut sum = 0_u64;
    while let Some(y) = res_rx.recv().await {
        sum = sum.wrapping_add(y);
    }
    producer.await.expect("producer");
    for w in workers {
        w.await.expect("worker");
    }
    sum
}

/// weir, results stream: `submit_detached` + `Pool::results`.
async fn weir_results() -> u64 {
    let pool = Pool::builder()
        .workers(WORKERS)
        .queue(QUEUE)
        .results(QUEUE)
        .build(job)
        .expect("pool");
    let mut results = pool.results().expect("results stream");
    let producer = tokio::spawn(async move {
        for i in 0..N {
            if pool.submit_detached(i).await.is_err() {
                break;
            }
        }
        pool.join().await.expect("no job cancelled");
    });
    let mut sum = 0_u64;
    while let Some((_, y)) = results.next().await {
        sum = sum.wrapping_add(y.expect("job"));
    }
    producer.await.expect("producer");
    sum
}

/// Baseline, ticket: async-channel jobs queue, a oneshot reply per job.
async fn handwritten_oneshot() -> u64 {
    type Job = (u64, oneshot::Sender<u64>);
    let (jobs_tx, jobs_rx) = async_channel::bounded::<Job>(QUEUE);
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let jobs = jobs_rx.clone();
        workers.push(tokio::spawn(async move {
            while let Ok((x, reply)) = jobs.recv().await {
                let Ok(y) = job(x).await;
                let _ = reply.send(y);
            }
        }));
    }
    drop(jobs_rx);
    let mut replies = Vec::with_capacity(N as usize);
    for i in 0..N {
        let (tx, rx) = oneshot::channel();
        jobs_tx.send((i, tx)).await.expect("open");
        replies.push(rx);
    }
    drop(jobs_tx);
    let mut sum = 0_u64;
    for rx in replies {
        sum = sum.wrapping_add(rx.await.expect("reply"));
    }
    for w in workers {
        w.await.expect("worker");
    }
    sum
}

/// weir, ticket: `submit` then await every ticket.
async fn weir_tickets() -> u64 {
    let pool = Pool::builder()
        .workers(WORKERS)
        .queue(QUEUE)
        .build(job)
        .expect("pool");
    let mut tickets = Vec::with_capacity(N as usize);
    for i in 0..N {
        tickets.push(pool.submit(i).await.expect("open"));
    }
    let mut sum = 0_u64;
    for t in tickets {
        sum = sum.wrapping_add(t.await.expect("job"));
    }
    pool.join().await.expect("no job cancelled");
    sum
}

/// CPU time of the whole process (every thread) in ns, from
/// `/proc/self/task/*/schedstat` (Linux); `None` elsewhere.
fn cpu_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// `POOL_BENCH_ROUNDS=n cargo bench --bench pool`: instead of criterion, run
/// every case once per round, interleaved, and print per job the best and
/// median wall time and the median CPU time (all threads), and the ratios.
/// On a busy machine interleaving keeps load drift from landing on one side
/// only, and CPU time is less sensitive to other processes than wall time.
fn interleaved(rt: &tokio::runtime::Runtime, rounds: usize) {
    type Case = (
        &'static str,
        fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = u64>>>,
    );
    let cases: [Case; 5] = [
        ("results/handwritten_async_channel", || {
            Box::pin(handwritten_async_channel())
        }),
        ("results/handwritten_mpsc_mutex", || {
            Box::pin(handwritten_mpsc())
        }),
        ("results/weir", || Box::pin(weir_results())),
        ("ticket/handwritten_oneshot", || {
            Box::pin(handwritten_oneshot())
        }),
        ("ticket/weir", || Box::pin(weir_tickets())),
    ];
    let mut wall = vec![Vec::new(); cases.len()];
    let mut cpu = vec![Vec::new(); cases.len()];
    // `POOL_BENCH_ONLY=ticket` runs only the cases whose name contains it.
    let only = std::env::var("POOL_BENCH_ONLY").unwrap_or_default();
    for _ in 0..rounds {
        for (i, (name, case)) in cases.iter().enumerate() {
            if !name.contains(only.as_str()) {
                wall[i].push(f64::NAN);
                continue;
            }
            let (start, cpu0) = (std::time::Instant::now(), cpu_ns());
            std::hint::black_box(rt.block_on(case()));
            wall[i].push(start.elapsed().as_nanos() as f64 / N as f64);
            if let (Some(a), Some(b)) = (cpu0, cpu_ns()) {
                cpu[i].push(b.saturating_sub(a) as f64 / N as f64);
            }
        }
    }
    let mut stats = Vec::new();
    for (((name, _), w), c) in cases.iter().zip(&mut wall).zip(&mut cpu) {
        w.sort_by(f64::total_cmp);
        c.sort_by(f64::total_cmp);
        let cpu_median = c.get(c.len() / 2).copied().unwrap_or(f64::NAN);
        let s = (w[0], w[w.len() / 2], cpu_median);
        stats.push(s);
        println!(
            "{name:<36} wall best {:>7.1}  median {:>7.1}   cpu median {:>7.1}  ns/job",
            s.0, s.1, s.2
        );
    }
    for (label, (a, b)) in [
        ("results: weir / async_channel", (2, 0)),
        ("results: weir / mpsc_mutex", (2, 1)),
        ("ticket:  weir / oneshot", (4, 3)),
    ] {
        let (x, y) = (stats[a], stats[b]);
        println!(
            "{label:<36} wall best {:.3}x  median {:.3}x   cpu median {:.3}x",
            x.0 / y.0,
            x.1 / y.1,
            x.2 / y.2
        );
    }
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    if let Some(rounds) = std::env::var("POOL_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
    {
        interleaved(&rt, rounds);
        return;
    }
    let expected = N * (N - 1);
    assert_eq!(rt.block_on(handwritten_async_channel()), expected);
    assert_eq!(rt.block_on(handwritten_mpsc()), expected);
    assert_eq!(rt.block_on(weir_results()), expected);
    assert_eq!(rt.block_on(handwritten_oneshot()), expected);
    assert_eq!(rt.block_on(weir_tickets()), expected);

    let mut g = c.benchmark_group("pool_200k_results");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("handwritten_async_channel", |b| {
        b.to_async(&rt).iter(handwritten_async_channel);
    });
    g.bench_function("handwritten_mpsc_mutex", |b| {
        b.to_async(&rt).iter(handwritten_mpsc);
    });
    g.bench_function("weir", |b| b.to_async(&rt).iter(weir_results));
    g.finish();

    let mut g = c.benchmark_group("pool_200k_ticket");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("handwritten_oneshot", |b| {
        b.to_async(&rt).iter(handwritten_oneshot);
    });
    g.bench_function("weir", |b| b.to_async(&rt).iter(weir_tickets));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
