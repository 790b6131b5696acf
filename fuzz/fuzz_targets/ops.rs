//! Drives a random sequence of operations on a `Pool`, a `Group` and a
//! `RateLimiter` on a paused current-thread runtime, checking their
//! invariants after every step and at the end:
//!
//! - pool: `submitted = queued + running + finished`; `submitted` and
//!   `rejected` match what the calls returned; once shut down every ticket has
//!   resolved, each outcome matches the counters, no worker is left;
//! - group: never more tasks at once than its limit; every spawned task is
//!   joined exactly once (value, error, panic or abort);
//! - rate limiter: requests above the burst are refused at once; between two
//!   quota changes, the tokens granted for any time window `[a, b]` never
//!   exceed `burst + (b - a) / period + 1`;
//! - no task of the runtime outlives the end; no step hangs (30 days of
//!   virtual time bound each run);
//! - extreme values (`Extreme` ops: sizes 0, `MAX_WORKERS + 1`, `usize::MAX`;
//!   durations `ZERO`, `MAX`; rates from a token a nanosecond to one in 73
//!   years, `u32::MAX` tokens, more than the burst) give a value or a clear
//!   error, never a panic or a hang, also for constructs built mid-run
//!   (pipeline, fan-in, bounded, semaphore, shedder).
//!
//! Run with `cargo +nightly fuzz run ops` from the repository root (see
//! docs/reliability.md).
#![no_main]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tokio::time::{Instant, sleep};
use weir_core::pool::{JobError, Pool, Ticket};
use weir_group::{ErrorPolicy, Group, GroupError};
use weir_rate::{Rate, RateLimiter, Reservation};

const INJECTED: &str = "fuzz: injected panic";

#[derive(Arbitrary, Debug)]
enum Op {
    Submit(u8),
    TrySubmit(u8),
    SubmitTimeout(u8, u8),
    Resize(u8),
    PoolCancel,
    PoolClose,
    Spawn(u8),
    TrySpawn(u8),
    JoinNext,
    GroupCancel,
    Acquire(u8),
    TryAcquire(u8),
    Reserve(u8),
    CancelReservation(u8),
    SetRate(u16, u16, u8),
    SetBurst(u8),
    Advance(u8),
    Yield,
    Extreme(Extreme),
}

/// Operations with extreme values; each byte picks from a small table.
#[derive(Arbitrary, Debug)]
enum Extreme {
    /// `submit_timeout` with `ZERO`, 1 ns or `MAX`.
    SubmitTimeout(u8, u8),
    /// `resize` to 0, `MAX_WORKERS + 1` or `usize::MAX`: always refused.
    Resize(u8),
    /// `try_acquire_n` / `acquire_n` of 0, `burst + 1` or `u32::MAX`.
    Tokens(u8),
    /// `reserve_n_within(1, ..)` with `ZERO`, 1 ns or `MAX`.
    ReserveWithin(u8),
    /// A limiter built with an extreme rate: a value or a `ConfigError`.
    Rate(u8),
    /// A pipeline, a merge, a bounded run, a semaphore and a shedder built
    /// with an extreme size, each run on a few items.
    Build(u8),
}

fn extreme_size(tag: u8) -> usize {
    [0, 1, weir_core::MAX_WORKERS + 1, usize::MAX][usize::from(tag % 4)]
}

fn extreme_duration(tag: u8) -> Duration {
    [Duration::ZERO, Duration::from_nanos(1), Duration::MAX][usize::from(tag % 3)]
}

fn extreme_rate(tag: u8) -> Rate {
    match tag % 7 {
        0 => Rate::new(1, Duration::from_nanos(1)),
        1 => Rate::new(u32::MAX, Duration::from_nanos(1)),
        2 => Rate::every(Duration::MAX),
        3 => Rate::per_hour(1).burst(u32::MAX),
        4 => Rate::unlimited(),
        5 => Rate::zero().burst(u32::MAX),
        _ => Rate::per_second(u32::MAX).burst(u32::MAX),
    }
}

/// Constructs built mid-run with an extreme size: each gives its result or
/// a `ConfigError`, and nothing it spawned outlives it.
async fn build_extreme(tag: u8) {
    let n = extreme_size(tag);
    let _ = weir_core::Pipeline::from_iter(0..4u8)
        .capacity(n)
        .map("m", n.min(4).max(usize::from(tag % 2)), |x| async move { Ok::<_, String>(x) })
        .collect()
        .await;
    if let Ok(out) = weir_core::Fan::new()
        .capacity(n)
        .merge(vec![futures::stream::iter(0..4u8)])
    {
        assert_eq!(out.collect_all().await.len(), 4);
    }
    let _ = weir_core::Bounded::new(n)
        .run(0..4u8, |x| async move { Ok::<_, String>(x) })
        .await;
    if let Ok(sem) = weir_core::Semaphore::new(n) {
        let _ = sem.try_acquire(u32::MAX);
        let _ = sem.try_acquire(1).map(drop);
    }
    if let Ok((tx, mut rx)) = weir_core::Shedder::new(n, weir_core::ShedPolicy::DropOldest) {
        let _ = tx.offer(1u8);
        drop(tx);
        while rx.recv().await.is_some() {}
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    workers: u8,
    queue: u8,
    group_limit: u8,
    rate_count: u16,
    rate_per_ms: u16,
    burst: u8,
    grace_ms: u8,
    ops: Vec<Op>,
}

/// A pool job or group task described by one byte: `Err` for 0, a panic for
/// 1, otherwise a sleep of `b % 8` milliseconds.
async fn work(b: u8) -> Result<u8, String> {
    match b {
        0 => Err(format!("fuzz: error {b}")),
        1 => panic!("{INJECTED}"),
        _ => {
            sleep(Duration::from_millis(u64::from(b % 8))).await;
            Ok(b)
        }
    }
}

fn quiet_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // libfuzzer-sys's hook aborts on every panic, caught or not; keep it
        // for every panic but the ones injected here.
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let p = info.payload();
            let msg = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("");
            if msg != INJECTED {
                fuzzer_hook(info);
            }
        }));
    });
}

/// The limiter's quota as the model knows it, for the current segment (the
/// time since the last quota change).
#[derive(Debug, Clone, Copy)]
struct Quota {
    /// Nanoseconds per token; `None`: never refills.
    period_ns: Option<u64>,
    /// Most tokens the bucket can hold in this segment: the larger of the
    /// bursts before and after the change (the token count is carried over).
    burst: u64,
}

/// A quota change: checks the segment that ends, starts a new one. Tokens
/// granted before the change stay taken and only lower what the new segment
/// may grant, so the new segment counts its own grants only.
fn new_segment(
    grants: &mut Grants,
    reservations: &mut Vec<(usize, Reservation)>,
    quota: &mut Quota,
    period_ns: Option<u64>,
    old_burst: u64,
    new_burst: u64,
) {
    grants.check(quota);
    grants.0.clear();
    reservations.clear();
    *quota = Quota {
        period_ns,
        burst: old_burst.max(new_burst),
    };
}

/// Tokens granted in the current quota segment: (earliest, latest) time
/// they may have been taken, and how many. `try_acquire_n` takes them now; a
/// reservation at its ready time; `acquire_n` somewhere between its call and
/// its return (the paused clock wakes sleepers at millisecond ticks, so the
/// return can be later than the moment the tokens were due).
#[derive(Debug, Default)]
struct Grants(Vec<(Instant, Instant, u64)>);

impl Grants {
    /// For every window `[a, b]` (a grant's earliest time to another's
    /// latest), the grants wholly inside it took at most
    /// `burst + (b - a) / period + 1` tokens.
    fn check(&self, q: &Quota) {
        let mut starts: Vec<Instant> = self.0.iter().map(|g| g.0).collect();
        starts.sort();
        starts.dedup();
        for a in starts {
            let mut inside: Vec<(Instant, u64)> = self
                .0
                .iter()
                .filter(|g| g.0 >= a)
                .map(|g| (g.1, g.2))
                .collect();
            inside.sort();
            let mut sum = 0;
            for (b, n) in inside {
                sum += n;
                let span = b.duration_since(a).as_nanos() as u64;
                let refill = q.period_ns.map_or(0, |p| span / p);
                assert!(
                    sum <= q.burst + refill + 1,
                    "{sum} tokens granted within {span} ns: {q:?}, {:?}",
                    self.0
                );
            }
        }
    }
}

async fn run(input: Input) {
    let start_alive = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let workers = usize::from(input.workers % 8) + 1;
    let pool: Pool<u8, u8, String> = Pool::builder()
        .workers(workers)
        .queue(usize::from(input.queue % 16))
        .build(work)
        .expect("valid pool");
    let mut tickets: Vec<(u8, Ticket<u8, String>)> = Vec::new();
    let (mut accepted, mut rejected) = (0u64, 0u64);

    let limit = usize::from(input.group_limit % 8);
    let mut builder = Group::builder().error_policy(ErrorPolicy::Continue);
    if limit > 0 {
        builder = builder.limit(limit);
    }
    let mut group: Group<u8, String> = builder.build().expect("non-zero limit");
    let gauge = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let (mut spawned, mut joined) = (0u64, 0u64);
    let task = |b: u8, gauge: &Arc<(AtomicUsize, AtomicUsize)>| {
        let gauge = Arc::clone(gauge);
        async move {
            struct Guard(Arc<(AtomicUsize, AtomicUsize)>);
            impl Drop for Guard {
                fn drop(&mut self) {
                    self.0.0.fetch_sub(1, SeqCst);
                }
            }
            let now = gauge.0.fetch_add(1, SeqCst) + 1;
            gauge.1.fetch_max(now, SeqCst);
            let _g = Guard(gauge);
            work(b).await
        }
    };

    let count = u32::from(input.rate_count.max(1));
    let per = Duration::from_millis(u64::from(input.rate_per_ms.max(1)));
    let burst = u32::from(input.burst.max(1));
    let limiter = RateLimiter::new(Rate::new(count, per).burst(burst)).expect("valid rate");
    let mut quota = Quota {
        period_ns: Some((per.as_nanos() as u64).div_ceil(u64::from(count))),
        burst: u64::from(burst),
    };
    let mut real_burst = u64::from(burst);
    let mut grants = Grants::default();
    let mut reservations: Vec<(usize, Reservation)> = Vec::new();

    for op in input.ops.into_iter().take(256) {
        match op {
            Op::Submit(b) => match pool.submit(b).await {
                Ok(t) => {
                    accepted += 1;
                    tickets.push((b, t));
                }
                Err(e) => {
                    assert!(pool.is_closed(), "submit refused by an open pool");
                    assert_eq!(e.into_inner(), b);
                    rejected += 1;
                }
            },
            Op::TrySubmit(b) => match pool.try_submit(b) {
                Ok(t) => {
                    accepted += 1;
                    tickets.push((b, t));
                }
                Err(e) => {
                    assert_eq!(e.into_inner(), b);
                    rejected += 1;
                }
            },
            Op::SubmitTimeout(b, ms) => {
                match pool
                    .submit_timeout(b, Duration::from_millis(u64::from(ms)))
                    .await
                {
                    Ok(t) => {
                        accepted += 1;
                        tickets.push((b, t));
                    }
                    Err(e) => {
                        assert_eq!(e.into_inner(), b);
                        rejected += 1;
                    }
                }
            }
            Op::Resize(n) => {
                let r = pool.resize(usize::from(n % 8));
                match (n % 8, r) {
                    (0, r) => assert!(r.is_err(), "resize(0) accepted"),
                    (_, Ok(())) => {}
                    (_, Err(_)) => assert!(pool.is_closed(), "resize refused by an open pool"),
                }
            }
            Op::PoolCancel => pool.cancel(),
            Op::PoolClose => pool.close(),
            Op::Spawn(b) => {
                group.spawn(task(b, &gauge)).await;
                spawned += 1;
            }
            Op::TrySpawn(b) => match group.try_spawn(task(b, &gauge)) {
                Ok(()) => spawned += 1,
                Err(_) => assert!(limit > 0, "an unlimited group refused a task"),
            },
            Op::JoinNext => {
                if let Some(r) = group.join_next().await {
                    joined += 1;
                    if let Err(e) = r {
                        assert!(
                            !e.is_aborted(),
                            "a task was aborted without a shutdown: {e}"
                        );
                    }
                }
            }
            Op::GroupCancel => group.cancel(),
            Op::Acquire(n) => {
                let n = u32::from(n % 8);
                let called = Instant::now();
                match limiter.acquire_n(n).await {
                    Ok(()) => grants.0.push((called, Instant::now(), u64::from(n))),
                    Err(_) => assert!(u64::from(n) > real_burst || quota.period_ns.is_none()),
                }
            }
            Op::TryAcquire(n) => {
                let n = u32::from(n % 8);
                match limiter.try_acquire_n(n) {
                    Ok(()) => {
                        let now = Instant::now();
                        grants.0.push((now, now, u64::from(n)));
                    }
                    Err(e) => {
                        if u64::from(n) > real_burst {
                            assert!(e.earliest_possible().is_none(), "{n} > burst, yet later");
                        }
                    }
                }
            }
            Op::Reserve(n) => {
                let r = limiter.reserve_n(u32::from(n % 8));
                if r.ok() {
                    let at = r.ready_at().expect("an ok reservation has a time");
                    grants.0.push((at, at, u64::from(r.tokens())));
                    reservations.push((grants.0.len() - 1, r));
                } else {
                    assert!(u64::from(n % 8) > real_burst || quota.period_ns.is_none());
                }
            }
            Op::CancelReservation(i) => {
                if !reservations.is_empty() {
                    let (idx, r) = reservations.swap_remove(usize::from(i) % reservations.len());
                    let back = u64::from(r.cancel());
                    let g = &mut grants.0[idx].2;
                    assert!(back <= *g, "gave back {back} of {g} tokens");
                    *g -= back;
                }
            }
            Op::SetRate(c, per_ms, b) => {
                let rate = match c {
                    0 => Rate::zero(),
                    c => Rate::new(
                        u32::from(c),
                        Duration::from_millis(u64::from(per_ms.max(1))),
                    ),
                };
                let rate = if b > 0 {
                    rate.burst(u32::from(b))
                } else {
                    rate
                };
                limiter.set_rate(rate).expect("a valid rate is accepted");
                let new_burst = if b > 0 { u64::from(b) } else { real_burst };
                let period_ns =
                    (c > 0).then(|| (u64::from(per_ms.max(1)) * 1_000_000).div_ceil(u64::from(c)));
                new_segment(
                    &mut grants,
                    &mut reservations,
                    &mut quota,
                    period_ns,
                    real_burst,
                    new_burst,
                );
                real_burst = new_burst;
            }
            Op::SetBurst(b) => {
                let b = u64::from(b.max(1));
                limiter
                    .set_burst(b as u32)
                    .expect("a non-zero burst is accepted");
                let period_ns = quota.period_ns;
                new_segment(
                    &mut grants,
                    &mut reservations,
                    &mut quota,
                    period_ns,
                    real_burst,
                    b,
                );
                real_burst = b;
            }
            Op::Advance(ms) => tokio::time::advance(Duration::from_millis(u64::from(ms))).await,
            Op::Yield => tokio::task::yield_now().await,
            Op::Extreme(Extreme::SubmitTimeout(b, tag)) => {
                match pool.submit_timeout(b, extreme_duration(tag)).await {
                    Ok(t) => {
                        accepted += 1;
                        tickets.push((b, t));
                    }
                    Err(_) => rejected += 1,
                }
            }
            Op::Extreme(Extreme::Resize(tag)) => {
                let n = [0, weir_core::MAX_WORKERS + 1, usize::MAX][usize::from(tag % 3)];
                assert!(pool.resize(n).is_err(), "resize({n}) accepted");
            }
            Op::Extreme(Extreme::Tokens(tag)) => {
                let n = match tag % 3 {
                    0 => 0,
                    1 => u32::try_from(real_burst).unwrap_or(u32::MAX).saturating_add(1),
                    _ => u32::MAX,
                };
                if n == 0 {
                    // `try_acquire_n(0)` is refused while the bucket is in
                    // debt (Go's AllowN(0)); waiting for nothing never is.
                    let _ = limiter.try_acquire_n(0);
                    assert!(limiter.acquire_n(0).await.is_ok(), "waiting for zero tokens refused");
                } else if quota.period_ns.is_some() {
                    assert!(limiter.try_acquire_n(n).is_err(), "{n} > burst granted");
                    assert!(limiter.acquire_n(n).await.is_err(), "{n} > burst granted");
                }
            }
            Op::Extreme(Extreme::ReserveWithin(tag)) => {
                let r = limiter.reserve_n_within(1, extreme_duration(tag));
                if r.ok() {
                    let at = r.ready_at().expect("an ok reservation has a time");
                    grants.0.push((at, at, u64::from(r.tokens())));
                    reservations.push((grants.0.len() - 1, r));
                }
            }
            Op::Extreme(Extreme::Rate(tag)) => {
                // A separate limiter: the checked one keeps its quota.
                if let Ok(l) = RateLimiter::new(extreme_rate(tag)) {
                    let _ = l.try_acquire_n(u32::MAX);
                    let _ = l.reserve_n_within(1, Duration::MAX);
                    let _ = l.try_acquire();
                }
            }
            Op::Extreme(Extreme::Build(tag)) => build_extreme(tag).await,
        }
        let s = pool.report();
        assert!(s.is_balanced(), "{s:?}");
        assert_eq!(s.submitted, accepted, "{s:?}");
        assert_eq!(s.rejected, rejected, "{s:?}");
        if limit > 0 {
            assert!(
                gauge.1.load(SeqCst) <= limit,
                "group ran more than {limit} tasks at once"
            );
        }
    }
    grants.check(&quota);

    // The end: shut both down and hold every outcome against the counters.
    let grace = Duration::from_millis(u64::from(input.grace_ms));
    let ended = pool.shutdown(grace).await;
    assert_eq!(
        ended.is_err(),
        ended.as_ref().map_or_else(|e| e.report().cancelled, |r| r.cancelled) > 0,
        "shutdown is Err exactly when jobs were cancelled: {ended:?}"
    );
    let report = ended.unwrap_or_else(|e| e.into_report());
    let mut outcomes = [0u64; 4];
    for (b, t) in tickets {
        match t.await {
            Ok(v) => {
                assert_eq!(v, b);
                outcomes[0] += 1;
            }
            Err(JobError::Failed(_)) => outcomes[1] += 1,
            Err(JobError::Panicked(_)) => outcomes[2] += 1,
            Err(JobError::Cancelled(_)) => outcomes[3] += 1,
            Err(e) => panic!("unexpected job error {e}"),
        }
    }
    let s = &report;
    assert_eq!(
        [s.completed, s.failed, s.panicked, s.cancelled],
        outcomes,
        "{report:?}"
    );
    assert_eq!(s.finished(), s.submitted, "{report:?}");
    assert_eq!((s.queued, s.running, s.workers), (0, 0, 0), "{report:?}");

    let (errors, report) = match group.shutdown(grace).await {
        Ok(report) => (Vec::new(), report),
        Err(err) => {
            let (errors, report) = err.into_parts();
            (errors.into_vec(), report)
        }
    };
    let ended = report.values().count() + errors.len();
    assert_eq!(ended as u64 + joined, spawned, "a group task is missing");
    assert_eq!(report.spawned, spawned, "{report:?}");
    assert!(report.is_balanced(), "{report:?}");
    let aborted = errors
        .iter()
        .filter(|e| matches!(e, GroupError::Aborted { .. }))
        .count();
    assert_eq!(aborted as u64, report.aborted, "{report:?}");
    assert_eq!(gauge.0.load(SeqCst), 0, "a group task still runs");
    drop(pool);
    drop(reservations);
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    let alive = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    assert_eq!(alive, start_alive, "tasks outlived the pool and the group");
}

fuzz_target!(|input: Input| {
    quiet_injected_panics();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Legitimate waits add up to hours of virtual time (256 acquires at
        // one token a minute); a real hang makes the paused clock jump
        // straight to the bound.
        if tokio::time::timeout(Duration::from_secs(30 * 24 * 3600), run(input))
            .await
            .is_err()
        {
            panic!("a run did not end within 30 days of virtual time");
        }
    });
});
