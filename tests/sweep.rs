//! The bad-input sweep: every public constructor and setting of weir with
//! extreme values — 0, 1, `usize::MAX`, `Duration::ZERO`, `Duration::MAX`,
//! the slowest and fastest rates, more tokens than the burst — gets a value
//! or a clear error, never a panic and never a hang.
//!
//! Each case runs in its own task under a (paused-clock) time limit, so a
//! panic or a hang in one case is reported by name and the others still run.
//! `cargo test --test sweep -- --nocapture` prints what every case got
//! (the table in docs/reliability.md).
#![allow(clippy::unwrap_used)]

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use futures::stream;
use weir::group::Group;
use weir::rate::{KeyedRateLimiter, Rate, RateLimiter, Sometimes, Ticker};
use weir::{
    AdaptiveLimit, Bounded, Context, Fan, MAX_WORKERS, Pipeline, Pool, RetryPolicy, Semaphore,
    ShedPolicy, Shedder, Shutdown, WorkerBuilder,
};

/// How long one case may take on the paused clock before it counts as a
/// hang. Waits of `Duration::MAX` must not reach it: they must either not
/// wait (there is room) or be bounded by something else in the case.
const HANG: Duration = Duration::from_secs(3600);

#[derive(Default)]
struct Sweep {
    rows: Vec<(String, String)>,
    failures: Vec<String>,
}

/// "ok: …" or "error: <Display>".
fn outcome<T, E: Display>(r: Result<T, E>, ok: impl FnOnce(T) -> String) -> String {
    match r {
        Ok(v) => format!("ok: {}", ok(v)),
        Err(e) => format!("error: {e}"),
    }
}

impl Sweep {
    async fn case<F>(&mut self, name: &str, fut: F)
    where
        F: Future<Output = String> + Send + 'static,
    {
        let task = tokio::spawn(fut);
        match tokio::time::timeout(HANG, task).await {
            Ok(Ok(got)) => self.rows.push((name.to_owned(), got)),
            Ok(Err(e)) if e.is_panic() => {
                let p = weir::Panic::from_payload(e.into_panic());
                self.failures.push(format!("{name}: PANICKED: {p}"));
            }
            Ok(Err(e)) => self.failures.push(format!("{name}: task failed: {e}")),
            Err(_) => self.failures.push(format!("{name}: HUNG")),
        }
    }

    fn finish(self) {
        for (name, got) in &self.rows {
            println!("| {name} | {got} |");
        }
        assert!(self.failures.is_empty(), "{}", self.failures.join("\n"));
    }
}

fn sizes() -> [usize; 4] {
    [0, 1, MAX_WORKERS + 1, usize::MAX]
}

fn durations() -> [(&'static str, Duration); 3] {
    [
        ("ZERO", Duration::ZERO),
        ("1ms", Duration::from_millis(1)),
        ("MAX", Duration::MAX),
    ]
}

async fn pipeline_cases(s: &mut Sweep) {
    for n in sizes() {
        s.case(&format!("Pipeline::capacity({n})"), async move {
            let r = Pipeline::from_iter(0..10u32)
                .capacity(n)
                .map("m", 2, |x| async move { anyhow::Ok(x) })
                .collect()
                .await;
            outcome(r, |v| format!("{} items", v.len()))
        })
        .await;
        s.case(&format!("Pipeline::error_capacity({n})"), async move {
            let r = Pipeline::from_iter(0..10u32)
                .error_capacity(n)
                .error_policy(weir::ErrorPolicy::Continue)
                .map("m", 1, |x| async move {
                    anyhow::ensure!(x % 2 == 0, "odd");
                    Ok(x)
                })
                .run()
                .await;
            outcome(r, |r| {
                format!("{} failed, {} errors dropped", r.failed(), r.errors_dropped)
            })
        })
        .await;
        s.case(&format!("Pipeline::map(workers = {n})"), async move {
            let r = Pipeline::from_iter(0..10u32)
                .map("m", n, |x| async move { anyhow::Ok(x) })
                .collect()
                .await;
            outcome(r, |v| format!("{} items", v.len()))
        })
        .await;
        s.case(
            &format!("Pipeline::map_ordered(workers = {n})"),
            async move {
                let r = Pipeline::from_iter(0..10u32)
                    .map_ordered("m", n, |x| async move { anyhow::Ok(x) })
                    .collect()
                    .await;
                outcome(r, |v| format!("{} items", v.len()))
            },
        )
        .await;
    }
    for (label, d) in durations() {
        s.case(&format!("Pipeline::timeout({label})"), async move {
            let r = Pipeline::from_iter(0..3u32)
                .map("m", 1, |x| async move { anyhow::Ok(x) })
                .timeout(d)
                .collect()
                .await;
            outcome(r, |v| format!("{} items", v.len()))
        })
        .await;
        s.case(
            &format!("Pipeline::context(with_timeout({label}))"),
            async move {
                let ctx = Context::background().with_timeout(d);
                let r = Pipeline::<u32>::from_iter(0..3u32)
                    .context(ctx)
                    .collect()
                    .await;
                outcome(r, |v| format!("{} items", v.len()))
            },
        )
        .await;
        s.case(&format!("PipelineHandle::shutdown({label})"), async move {
            let (out, handle) = Pipeline::<u32>::from_iter(0..3u32).into_stream().unwrap();
            drop(out);
            outcome(handle.shutdown(d).await, |r| {
                format!("delivered {}", r.delivered)
            })
        })
        .await;
    }
}

async fn pool_cases(s: &mut Sweep) {
    async fn job(x: u32) -> anyhow::Result<u32> {
        Ok(x)
    }
    for n in sizes() {
        s.case(&format!("PoolBuilder::workers({n})"), async move {
            let r = Pool::builder().workers(n).build(job);
            match r {
                Ok(pool) => {
                    let t = pool.submit(1).await.unwrap();
                    let got = t.await.unwrap();
                    outcome(pool.join().await, |r| {
                        format!("job -> {got}, {} completed", r.completed)
                    })
                }
                Err(e) => format!("error: {e}"),
            }
        })
        .await;
        s.case(&format!("PoolBuilder::queue({n})"), async move {
            let r = Pool::builder().workers(1).queue(n).build(job);
            match r {
                Ok(pool) => {
                    let t = pool.submit(1).await.unwrap();
                    t.await.unwrap();
                    outcome(pool.join().await, |r| format!("{} completed", r.completed))
                }
                Err(e) => format!("error: {e}"),
            }
        })
        .await;
        s.case(&format!("PoolBuilder::results({n})"), async move {
            let r = Pool::builder().workers(1).results(n).build(job);
            outcome(r, |pool| {
                format!("built, {} workers", pool.report().workers)
            })
        })
        .await;
        s.case(
            &format!("PoolBuilder::max_waiting_submits({n})"),
            async move {
                let r = Pool::builder().workers(1).max_waiting_submits(n).build(job);
                outcome(r, |_| "built".to_owned())
            },
        )
        .await;
        s.case(&format!("Pool::resize({n})"), async move {
            let pool = Pool::builder().workers(1).build(job).unwrap();
            let r = pool.resize(n);
            let got = outcome(r, |()| "resized".to_owned());
            pool.cancel();
            let _ = pool.join().await;
            got
        })
        .await;
    }
    for (label, d) in durations() {
        s.case(
            &format!("Pool::submit_timeout({label}) with room"),
            async move {
                let pool = Pool::builder().workers(1).queue(4).build(job).unwrap();
                let r = pool.submit_timeout(7, d).await;
                let got = match r {
                    Ok(t) => format!("ok: job -> {}", t.await.unwrap()),
                    Err(e) => format!("error: {e}"),
                };
                let _ = pool.join().await;
                got
            },
        )
        .await;
        s.case(
            &format!("Pool::submit_timeout({label}) on a full pool"),
            async move {
                let pool = Pool::builder()
                    .workers(1)
                    .queue(1)
                    .build(|_: u32| async {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        anyhow::Ok(())
                    })
                    .unwrap();
                let _a = pool.submit(1).await.unwrap();
                let _b = pool.submit(2).await.unwrap();
                // Duration::MAX waits for room: the first job ends after 10 s.
                let r = pool.submit_timeout(3, d).await;
                let got = outcome(r, |_| "submitted".to_owned());
                pool.cancel();
                let _ = pool.join().await;
                got
            },
        )
        .await;
        s.case(&format!("Pool::shutdown({label})"), async move {
            let pool = Pool::builder()
                .workers(1)
                .build(|_: u32| async {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    anyhow::Ok(())
                })
                .unwrap();
            let _t = pool.submit(1).await.unwrap();
            outcome(pool.shutdown(d).await, |r| {
                format!("{} completed", r.completed)
            })
        })
        .await;
    }
}

async fn fan_cases(s: &mut Sweep) {
    for n in sizes() {
        s.case(&format!("Fan::capacity({n}).merge"), async move {
            let r = Fan::new().capacity(n).merge(vec![stream::iter(0..3u8)]);
            match r {
                Ok(out) => format!("ok: {} items", out.collect_all().await.len()),
                Err(e) => format!("error: {e}"),
            }
        })
        .await;
        s.case(&format!("Fan::capacity({n}).merge_in_turn"), async move {
            let r = Fan::new()
                .capacity(n)
                .merge_in_turn(vec![stream::iter(0..3u8)]);
            match r {
                Ok(out) => format!("ok: {} items", out.collect_all().await.len()),
                Err(e) => format!("error: {e}"),
            }
        })
        .await;
        s.case(&format!("distribute(n = {n})"), async move {
            outcome(weir::distribute(stream::iter(0..3u8), n), |o| {
                format!("{} outputs", o.len())
            })
        })
        .await;
        s.case(&format!("broadcast(n = {n})"), async move {
            outcome(weir::broadcast(stream::iter(0..3u8), n), |o| {
                format!("{} outputs", o.len())
            })
        })
        .await;
    }
}

async fn bounded_cases(s: &mut Sweep) {
    for n in sizes() {
        s.case(&format!("Bounded::new({n}).run"), async move {
            let r = Bounded::new(n)
                .run(0..5u32, |x| async move { anyhow::Ok(x) })
                .await;
            outcome(r, |v| format!("{} results", v.len()))
        })
        .await;
        s.case(&format!("Bounded::new({n}).run_all"), async move {
            let r = Bounded::new(n)
                .run_all(0..5u32, |x| async move { anyhow::Ok(x) })
                .await;
            outcome(r, |v| format!("{} results", v.len()))
        })
        .await;
        s.case(&format!("for_each_bounded(limit = {n})"), async move {
            let r = weir::for_each_bounded(0..5u32, n, |x| async move { anyhow::Ok(x) }).await;
            outcome(r, |v| format!("{} results", v.len()))
        })
        .await;
        s.case(&format!("for_each_in_batches(batch = {n})"), async move {
            let r = weir::for_each_in_batches(0..5u32, n, |x| async move { anyhow::Ok(x) }).await;
            outcome(r, |v| format!("{} results", v.len()))
        })
        .await;
    }
}

async fn group_cases(s: &mut Sweep) {
    for n in sizes() {
        s.case(&format!("GroupBuilder::limit({n})"), async move {
            let r = Group::<u32>::builder().limit(n).build();
            match r {
                Ok(mut g) => {
                    g.spawn(async { anyhow::Ok(1) }).await;
                    outcome(g.join().await, |r| format!("{} succeeded", r.succeeded))
                }
                Err(e) => format!("error: {e}"),
            }
        })
        .await;
    }
    for (label, d) in durations() {
        s.case(&format!("Group::shutdown({label})"), async move {
            let mut g: Group = Group::new();
            g.spawn(async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                anyhow::Ok(())
            })
            .await;
            outcome(g.shutdown(d).await, |r| {
                format!("{} succeeded", r.succeeded)
            })
        })
        .await;
    }
}

async fn lifecycle_cases(s: &mut Sweep) {
    for n in sizes() {
        s.case(&format!("Shedder::new({n})"), async move {
            let r = Shedder::<u32>::new(n, ShedPolicy::DropNewest);
            outcome(r, |(tx, _rx)| format!("capacity {}", tx.capacity()))
        })
        .await;
        s.case(&format!("Semaphore::new({n})"), async move {
            outcome(Semaphore::new(n), |s| format!("size {}", s.size()))
        })
        .await;
    }
    for (label, d) in durations() {
        s.case(&format!("Shutdown::shutdown({label})"), async move {
            let sd = Shutdown::new();
            sd.spawn("t", |ctx| async move { ctx.cancelled().await })
                .unwrap();
            outcome(sd.shutdown(d).await, |r| format!("{} finished", r.finished))
        })
        .await;
        s.case(&format!("WorkerHandle::shutdown({label})"), async move {
            let w = WorkerBuilder::new("w").spawn(|ctx| async move {
                ctx.cancelled().await;
                anyhow::Ok("bye")
            });
            outcome(w.shutdown(d).await, |g| g.to_owned())
        })
        .await;
        s.case(&format!("with_timeout({label})"), async move {
            outcome(weir::with_timeout(async { 1 }, d).await, |v| v.to_string())
        })
        .await;
        s.case(
            &format!("recv_timeout({label}) on an empty channel"),
            async move {
                let (_tx, mut rx) = tokio::sync::mpsc::channel::<u8>(1);
                // Duration::MAX waits forever for a message: bound it here.
                let waited =
                    tokio::time::timeout(Duration::from_secs(60), weir::recv_timeout(&mut rx, d))
                        .await;
                match waited {
                    Ok(r) => outcome(r, |v| v.to_string()),
                    Err(_) => "waits (no limit), as asked".to_owned(),
                }
            },
        )
        .await;
        s.case(&format!("Context::with_timeout({label})"), async move {
            let ctx = Context::background().with_timeout(d);
            format!(
                "ok: deadline {}",
                if ctx.deadline().is_some() {
                    "set"
                } else {
                    "none"
                }
            )
        })
        .await;
        s.case(
            &format!("Semaphore::acquire(u32::MAX).context(with_timeout({label}))"),
            async move {
                let sem = Semaphore::new(4).unwrap();
                let ctx = Context::background().with_timeout(d);
                let r = tokio::time::timeout(
                    Duration::from_secs(60),
                    sem.acquire(u32::MAX).context(ctx),
                )
                .await;
                match r {
                    Ok(r) => outcome(r, |p| format!("{} permits", p.num_permits())),
                    Err(_) => "waits on its context (no deadline), as asked".to_owned(),
                }
            },
        )
        .await;
    }
    s.case("Semaphore::release(1) with nothing held", async {
        outcome(Semaphore::new(2).unwrap().release(1), |()| {
            "released".to_owned()
        })
    })
    .await;
    s.case("Semaphore::acquire(0)", async {
        outcome(Semaphore::new(2).unwrap().acquire(0).await, |p| {
            format!("{} permits", p.num_permits())
        })
    })
    .await;
}

async fn rate_cases(s: &mut Sweep) {
    let rates: [(&str, Rate); 10] = [
        ("Rate::per_second(0)", Rate::per_second(0)),
        ("Rate::per_second(u32::MAX)", Rate::per_second(u32::MAX)),
        (
            "Rate::new(u32::MAX, 1ns)",
            Rate::new(u32::MAX, Duration::from_nanos(1)),
        ),
        ("Rate::new(1, 1ns)", Rate::new(1, Duration::from_nanos(1))),
        ("Rate::every(ZERO)", Rate::every(Duration::ZERO)),
        ("Rate::every(MAX)", Rate::every(Duration::MAX)),
        (
            "Rate::per_hour(1).burst(u32::MAX)",
            Rate::per_hour(1).burst(u32::MAX),
        ),
        ("Rate::per_second(1).burst(0)", Rate::per_second(1).burst(0)),
        ("Rate::unlimited()", Rate::unlimited()),
        ("Rate::zero()", Rate::zero()),
    ];
    for (label, rate) in rates {
        s.case(&format!("RateLimiter::new({label})"), async move {
            match RateLimiter::new(rate) {
                Ok(l) => {
                    let one = l.try_acquire().is_ok();
                    let huge = l.try_acquire_n(u32::MAX).is_ok();
                    let zero = l.acquire_n(0).await.is_ok();
                    let over = match l.acquire_n(l.burst().saturating_add(1)).await {
                        Ok(()) => "granted".to_owned(),
                        Err(e) => format!("error: {e}"),
                    };
                    format!("ok: try 1 -> {one}, try u32::MAX -> {huge}, acquire 0 -> {zero}, burst+1 -> {over}")
                }
                Err(e) => format!("error: {e}"),
            }
        })
        .await;
        s.case(&format!("KeyedRateLimiter::new({label})"), async move {
            outcome(KeyedRateLimiter::<u8>::new(rate), |k| {
                format!("{} keys", k.len())
            })
        })
        .await;
    }
    for (label, d) in durations() {
        s.case(&format!("Ticker::new({label})"), async move {
            outcome(Ticker::new(d), |t| format!("period {:?}", t.period()))
        })
        .await;
        s.case(
            &format!("reserve_n_within(1, {label}) on an empty bucket"),
            async move {
                let l = RateLimiter::new(Rate::per_second(1)).unwrap();
                l.try_acquire().unwrap();
                let r = l.reserve_n_within(1, d);
                format!("ok: granted {}, delay {:?}", r.ok(), r.delay())
            },
        )
        .await;
        s.case(
            &format!("acquire().context(with_timeout({label})) on an empty bucket"),
            async move {
                let l = RateLimiter::new(Rate::per_second(1)).unwrap();
                l.try_acquire().unwrap();
                let ctx = Context::background().with_timeout(d);
                outcome(l.acquire().context(ctx).await, |()| "granted".to_owned())
            },
        )
        .await;
        s.case(&format!("Sometimes::interval({label})"), async move {
            let every = Sometimes::new().interval(d);
            let ran = (0..3).filter(|_| every.run(|| ()).is_some()).count();
            format!("ok: ran {ran} of 3")
        })
        .await;
    }
    for n in [0u64, 1, u64::MAX] {
        s.case(&format!("Sometimes::first({n}).every({n})"), async move {
            let some = Sometimes::new().first(n).every(n);
            let ran = (0..5).filter(|_| some.run(|| ()).is_some()).count();
            format!("ok: ran {ran} of 5")
        })
        .await;
    }
}

async fn adaptive_cases(s: &mut Sweep) {
    for n in sizes() {
        s.case(
            &format!("AdaptiveLimit min/max/initial = {n}"),
            async move {
                let r = AdaptiveLimit::builder().min(n).max(n).initial(n).build();
                outcome(r, |l| format!("limit {}", l.limit()))
            },
        )
        .await;
    }
    for (label, d) in durations() {
        s.case(&format!("AdaptiveLimit::window({label})"), async move {
            outcome(AdaptiveLimit::builder().window(d).build(), |l| {
                format!("limit {}", l.limit())
            })
        })
        .await;
        s.case(
            &format!("RetryPolicy base/max_delay/max_elapsed = {label}"),
            async move {
                let r = RetryPolicy::<anyhow::Error>::builder()
                    .base(d)
                    .max_delay(d)
                    .max_elapsed(d)
                    .build();
                match r {
                    Ok(p) => {
                        let got =
                            weir::retry(&p, || async { Err::<(), _>(anyhow::anyhow!("no")) }).await;
                        outcome(got, |()| "ok".to_owned())
                    }
                    Err(e) => format!("error: {e}"),
                }
            },
        )
        .await;
    }
    for n in [0u32, 1, u32::MAX] {
        s.case(&format!("RetryPolicy::max_attempts({n})"), async move {
            let r = RetryPolicy::<anyhow::Error>::builder()
                .max_attempts(n)
                .base(Duration::from_millis(1))
                .build();
            match r {
                Ok(p) => {
                    let mut calls = 0u32;
                    let got = weir::retry(&p, || {
                        calls += 1;
                        let fail = calls < 3;
                        async move {
                            anyhow::ensure!(!fail, "transient");
                            Ok(())
                        }
                    })
                    .await;
                    outcome(got, |()| format!("ok after {calls} calls"))
                }
                Err(e) => format!("error: {e}"),
            }
        })
        .await;
    }
}

#[tokio::test(start_paused = true)]
async fn every_extreme_input_gets_a_value_or_a_clear_error() {
    let mut s = Sweep::default();
    pipeline_cases(&mut s).await;
    pool_cases(&mut s).await;
    fan_cases(&mut s).await;
    bounded_cases(&mut s).await;
    group_cases(&mut s).await;
    lifecycle_cases(&mut s).await;
    rate_cases(&mut s).await;
    adaptive_cases(&mut s).await;
    assert!(s.rows.len() + s.failures.len() > 150, "the sweep shrank");
    s.finish();
}
