//! weir's rate limiter decision beside governor's `check()`, in the same run.
//!
//! - `uncontended_allow`: one thread, every decision granted (a rate so high
//!   the bucket never empties), so each one is a clock read plus a
//!   compare-and-swap: `RateLimiter::try_acquire` vs governor's
//!   `RateLimiter::direct(..).check()`.
//! - `uncontended_deny`: one thread, an empty bucket: every decision is a
//!   clock read and a refusal (no write).
//! - `contended_allow_2`: two tasks on a 2-worker multi-thread runtime
//!   hammering one shared limiter (every decision granted, so every one
//!   races for the same cache line); time per decision, both tasks together.
//! - `acquire_granted`: `RateLimiter::acquire().await` when the token is
//!   there (the wait's fast path: no queue, no timer, no allocation), each
//!   awaited with criterion's `to_async` on the runtime the limiter was
//!   made on (a multi-thread one: the TSC clock; a current-thread one:
//!   tokio's clock). No governor line: its `until_ready` sleeps on its own
//!   clock, not tokio's.
//!
//! governor reads the clock with quanta (TSC) by default. weir's limiter
//! picks its clock when it is made: on a multi-thread runtime (whose clock
//! cannot be paused) the same TSC through quanta — `weir_try_acquire`, made
//! inside the bench's multi-thread runtime as a service makes it — and
//! anywhere else `tokio::time::Instant::now()` (std's monotonic clock, so
//! paused-clock tests work) — `weir_try_acquire_tokio_clock`, made outside
//! any runtime. Each group also runs governor on std's clock
//! (`governor_check_std_clock`): beside the tokio-clock case, the
//! algorithms alone differ. Run with
//! `cargo bench --bench rate -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use governor::Quota;
use weir::rate::{Rate, RateLimiter};

const FAST: u32 = 1_000_000_000;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

fn weir(rate: Rate) -> RateLimiter {
    RateLimiter::new(rate).unwrap_or_else(|e| panic!("rate: {e}"))
}

/// Made inside a multi-thread runtime: the timestamp-counter clock.
fn weir_on(rt: &tokio::runtime::Runtime, rate: Rate) -> RateLimiter {
    let _inside = rt.enter();
    weir(rate)
}

fn fast() -> Rate {
    Rate::per_second(FAST).burst(FAST)
}

fn governor_fast() -> governor::DefaultDirectRateLimiter {
    governor::RateLimiter::direct(Quota::per_second(nz(FAST)))
}

/// governor on the same clock source as weir (std's monotonic `Instant`),
/// to separate the cost of the algorithm from the cost of the clock.
fn governor_std_clock(quota: Quota) -> StdClockLimiter {
    governor::RateLimiter::direct_with_clock(quota, governor::clock::MonotonicClock)
}

type StdClockLimiter = governor::RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    governor::clock::MonotonicClock,
    governor::middleware::NoOpMiddleware<std::time::Instant>,
>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

fn uncontended(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("rate/uncontended_allow");
    g.throughput(Throughput::Elements(1));
    let lim = weir_on(&rt, fast());
    g.bench_function("weir_try_acquire", |b| {
        b.iter(|| black_box(lim.try_acquire().is_ok()))
    });
    let lim = weir(fast());
    g.bench_function("weir_try_acquire_tokio_clock", |b| {
        b.iter(|| black_box(lim.try_acquire().is_ok()))
    });
    let gov = governor_fast();
    g.bench_function("governor_check", |b| {
        b.iter(|| black_box(gov.check().is_ok()))
    });
    let gov = governor_std_clock(Quota::per_second(nz(FAST)));
    g.bench_function("governor_check_std_clock", |b| {
        b.iter(|| black_box(gov.check().is_ok()))
    });
    g.finish();

    let mut g = c.benchmark_group("rate/uncontended_deny");
    g.throughput(Throughput::Elements(1));
    let lim = weir_on(&rt, Rate::per_hour(1));
    let _ = lim.try_acquire();
    g.bench_function("weir_try_acquire", |b| {
        b.iter(|| black_box(lim.try_acquire().is_err()))
    });
    let lim = weir(Rate::per_hour(1));
    let _ = lim.try_acquire();
    g.bench_function("weir_try_acquire_tokio_clock", |b| {
        b.iter(|| black_box(lim.try_acquire().is_err()))
    });
    let gov = governor::RateLimiter::direct(Quota::per_hour(nz(1)));
    let _ = gov.check();
    g.bench_function("governor_check", |b| {
        b.iter(|| black_box(gov.check().is_err()))
    });
    let gov = governor_std_clock(Quota::per_hour(nz(1)));
    let _ = gov.check();
    g.bench_function("governor_check_std_clock", |b| {
        b.iter(|| black_box(gov.check().is_err()))
    });
    g.finish();
}

/// Runs `iters` decisions split over two tasks on the 2-worker runtime and
/// returns the wall time.
fn two_tasks<F>(rt: &tokio::runtime::Runtime, iters: u64, decide: Arc<F>) -> Duration
where
    F: Fn() -> bool + Send + Sync + 'static,
{
    rt.block_on(async move {
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let start = Instant::now();
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let (decide, barrier) = (decide.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let mut ok = 0u64;
                    for _ in 0..iters / 2 {
                        ok += u64::from(decide());
                    }
                    black_box(ok)
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
        start.elapsed()
    })
}

fn contended(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("rate/contended_allow_2");
    g.throughput(Throughput::Elements(1));
    let lim = weir_on(&rt, fast());
    let decide = Arc::new(move || lim.try_acquire().is_ok());
    g.bench_function("weir_try_acquire", |b| {
        b.iter_custom(|iters| two_tasks(&rt, iters, decide.clone()))
    });
    let lim = weir(fast());
    let decide = Arc::new(move || lim.try_acquire().is_ok());
    g.bench_function("weir_try_acquire_tokio_clock", |b| {
        b.iter_custom(|iters| two_tasks(&rt, iters, decide.clone()))
    });
    let gov = Arc::new(governor_fast());
    let decide = Arc::new(move || gov.check().is_ok());
    g.bench_function("governor_check", |b| {
        b.iter_custom(|iters| two_tasks(&rt, iters, decide.clone()))
    });
    let gov = Arc::new(governor_std_clock(Quota::per_second(nz(FAST))));
    let decide = Arc::new(move || gov.check().is_ok());
    g.bench_function("governor_check_std_clock", |b| {
        b.iter_custom(|iters| two_tasks(&rt, iters, decide.clone()))
    });
    g.finish();
}

fn acquire_granted(c: &mut Criterion) {
    let mut g = c.benchmark_group("rate/acquire_granted");
    g.throughput(Throughput::Elements(1));
    let rt = runtime();
    let lim = weir_on(&rt, fast());
    g.bench_function("weir_acquire", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(lim.acquire().await.is_ok()) })
    });
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let lim = weir_on(&current, fast());
    g.bench_function("weir_acquire_tokio_clock", |b| {
        b.to_async(&current)
            .iter(|| async { black_box(lim.acquire().await.is_ok()) })
    });
    g.finish();
}

criterion_group!(benches, uncontended, contended, acquire_granted);
criterion_main!(benches);
