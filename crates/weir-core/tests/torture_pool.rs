//! Torture test of `Pool`: seeded random workloads of concurrent submitters
//! using every way in (`submit`, `try_submit`, `submit_timeout`,
//! `submit_detached`), with injected errors (~1%), panics (~0.1%), slow jobs,
//! resizes, cancellations mid-stream and every way to end (`join`,
//! `shutdown(grace)`, `cancel`, `close`); and a pool with 10,000 queued jobs
//! shut down with a grace period. After every run the tickets, the results
//! stream and the final report must agree exactly, `join`/`shutdown` must be
//! `Err` exactly when jobs were cancelled, and no task may outlive the end.
//!
//! Every run prints its seed; `WEIR_SEED=<n> cargo test -p weir-core --test
//! torture_pool` replays it. See docs/reliability.md.
#![allow(clippy::unwrap_used)]

use std::sync::Once;
use std::time::Duration;

use tokio::time::{sleep, timeout};
use weir_core::pool::{JobError, JobResult, Pool, PoolError, PoolReport, Ticket};
use weir_core::{GraceExpired, RunError};

/// Jobs submitted by the paused-time test, at least.
const PAUSED_TARGET: u64 = 200_000;
/// Jobs submitted by the multi-thread test, at least.
const THREADED_TARGET: u64 = 100_000;
/// Queued jobs in the shutdown-under-load test.
const LOADED: u64 = 10_000;
const INJECTED: &str = "torture: injected panic";

// ---------------------------------------------------------------------------
// Seeded randomness (a tiny xorshift, duplicated in each torture file).

fn seed(test: &str) -> u64 {
    let seed = match std::env::var("WEIR_SEED") {
        Ok(s) => s.trim().parse().expect("WEIR_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x5eed, |d| d.as_nanos() as u64),
    };
    println!("{test}: seed {seed} (replay with WEIR_SEED={seed})");
    seed
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(mix(seed) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
    fn pct(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Delay(u64),
    Error,
    Panic,
    /// A long job (a shutdown's grace period is likely to cut it).
    Slow,
}

fn fault(key: u64, job: u64) -> Fault {
    let h = mix(key ^ job.wrapping_mul(0xA24B_AED4_963E_E407));
    match h % 10_000 {
        0..100 => Fault::Error,
        100..110 => Fault::Panic,
        110..160 => Fault::Slow,
        160..2160 => Fault::Delay(1 + (h >> 40) % 10),
        _ => Fault::None,
    }
}

/// The pool's handler: what each job does.
async fn job(key: u64, i: u64, real_time: bool) -> anyhow::Result<u64> {
    match fault(key, i) {
        Fault::None => {}
        Fault::Delay(n) if real_time => {
            for _ in 0..n {
                tokio::task::yield_now().await;
            }
        }
        Fault::Delay(ms) => sleep(Duration::from_millis(ms)).await,
        Fault::Error => anyhow::bail!("torture: injected error on job {i}"),
        Fault::Panic => panic!("{INJECTED} on job {i}"),
        Fault::Slow if real_time => {
            for _ in 0..200 {
                tokio::task::yield_now().await;
            }
        }
        Fault::Slow => sleep(Duration::from_millis(500)).await,
    }
    Ok(i)
}

/// Silences the panics this file injects, and only those.
fn quiet_injected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !msg.starts_with(INJECTED) {
                default(info);
            }
        }));
    });
}

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// No task outlives a run: exact on a current-thread runtime; on a
/// multi-thread runtime, polled for a bounded time.
async fn assert_no_leak(before: usize, what: &str) {
    use tokio::runtime::RuntimeFlavor;
    if tokio::runtime::Handle::current().runtime_flavor() == RuntimeFlavor::CurrentThread {
        assert_eq!(alive(), before, "tasks outlived the pool: {what}");
        return;
    }
    let settled = timeout(Duration::from_secs(10), async {
        while alive() != before {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "{} tasks alive 10 s after shutdown, {before} before: {what}",
        alive()
    );
}

// ---------------------------------------------------------------------------
// Random runs.

#[derive(Debug, Clone, Copy)]
enum End {
    /// `join()`: drain everything.
    Drain,
    /// `shutdown(grace)`.
    Grace(Duration),
    /// `cancel()` after this many jobs were offered, then `join()`.
    CancelAfter(u64),
    /// `close()`, then `join()`.
    Close,
}

#[derive(Debug, Clone)]
struct Plan {
    key: u64,
    jobs: u64,
    submitters: u64,
    workers: usize,
    queue: usize,
    results: usize,
    end: End,
    real_time: bool,
}

impl Plan {
    fn random(rng: &mut Rng, real_time: bool) -> Self {
        let jobs = rng.range(200, 5_000);
        let end = match rng.range(0, 8) {
            0..3 => End::Drain,
            3..5 => End::Grace(Duration::from_millis(rng.range(0, 300))),
            5..7 => End::CancelAfter(rng.range(0, jobs)),
            _ => End::Close,
        };
        // A worker waiting for room in a full results stream when the pool
        // is cancelled discards that result (documented); runs that cancel
        // get a stream with room for every job so that every result is seen.
        let results = match end {
            End::Drain | End::Close => rng.range(1, 32) as usize,
            End::Grace(_) | End::CancelAfter(_) => jobs as usize + 1,
        };
        Self {
            key: rng.next(),
            jobs,
            submitters: rng.range(1, 5),
            workers: rng.range(1, 9) as usize,
            queue: [0, 1, 4, 64, 512][rng.range(0, 5) as usize],
            results,
            end,
            real_time,
        }
    }
}

/// What the submitters and readers saw, to hold against the report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Seen {
    accepted: u64,
    rejected: u64,
    completed: u64,
    failed: u64,
    panicked: u64,
    cancelled: u64,
}

impl Seen {
    fn result(&mut self, id: u64, r: JobResult<u64, anyhow::Error>) {
        match r {
            Ok(v) => {
                assert_eq!(v, id, "a ticket got another job's result");
                self.completed += 1;
            }
            Err(JobError::Failed(e)) => {
                assert!(e.to_string().starts_with("torture: injected error"), "{e}");
                self.failed += 1;
            }
            Err(JobError::Panicked(panic)) => {
                assert!(panic.message().starts_with(INJECTED), "{panic}");
                self.panicked += 1;
            }
            Err(JobError::Cancelled(_)) => self.cancelled += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    fn add(&mut self, o: &Seen) {
        self.accepted += o.accepted;
        self.rejected += o.rejected;
        self.completed += o.completed;
        self.failed += o.failed;
        self.panicked += o.panicked;
        self.cancelled += o.cancelled;
    }
}

type P = Pool<u64, u64, anyhow::Error>;

/// One submitter: offers jobs `lo..hi` in random ways; returns its tickets,
/// what it saw, and the ids of its detached jobs.
async fn submitter(
    pool: P,
    mut rng: Rng,
    jobs: std::ops::Range<u64>,
    cancel_after: Option<u64>,
) -> (Vec<(u64, Ticket<u64, anyhow::Error>)>, Seen, Vec<u64>) {
    let mut tickets = Vec::new();
    let mut detached = Vec::new();
    let mut seen = Seen::default();
    for (n, i) in jobs.enumerate() {
        if cancel_after == Some(n as u64) {
            pool.cancel();
        }
        if rng.pct(1) {
            match pool.resize(rng.range(1, 9) as usize) {
                Ok(()) => {}
                Err(e) => assert!(pool.is_closed(), "resize failed on an open pool: {e}"),
            }
        }
        match rng.range(0, 10) {
            0..5 => match pool.submit(i).await {
                Ok(t) => tickets.push((i, t)),
                Err(e) => {
                    assert_eq!(e.into_inner(), i, "the job handed back is not ours");
                    seen.rejected += 1;
                }
            },
            5..7 => match pool.try_submit(i) {
                Ok(t) => tickets.push((i, t)),
                Err(e) => {
                    assert_eq!(e.into_inner(), i);
                    seen.rejected += 1;
                }
            },
            7 => match pool
                .submit_timeout(i, Duration::from_millis(rng.range(0, 5)))
                .await
            {
                Ok(t) => tickets.push((i, t)),
                Err(e) => {
                    assert_eq!(e.into_inner(), i);
                    seen.rejected += 1;
                }
            },
            _ => match pool.submit_detached(i).await {
                Ok(_) => detached.push(i),
                Err(e) => {
                    assert_eq!(e.into_inner(), i);
                    seen.rejected += 1;
                }
            },
        }
    }
    seen.accepted = (tickets.len() + detached.len()) as u64;
    (tickets, seen, detached)
}

/// Totals for the figures.
#[derive(Debug, Default)]
struct Totals {
    runs: u64,
    offered: u64,
    seen: Seen,
}

async fn run_one(plan: Plan, bound: Duration) -> Seen {
    let before = alive();
    let (key, real_time) = (plan.key, plan.real_time);
    let pool: P = Pool::builder()
        .workers(plan.workers)
        .queue(plan.queue)
        .results(plan.results)
        .name("torture")
        .build(move |i: u64| job(key, i, real_time))
        .unwrap();
    let results = pool.results().unwrap();
    let reader = tokio::spawn(async move {
        let mut results = results;
        let mut seen = Seen::default();
        let mut ids = Vec::new();
        while let Some((id, r)) = results.recv().await {
            ids.push(id);
            // A detached job's id is the pool's, not ours: count only.
            seen.result(0, r.map(|_| 0));
        }
        (seen, ids.len() as u64)
    });

    let mut rng = Rng::new(plan.key);
    let per = plan.jobs / plan.submitters + 1;
    let mut subs = Vec::new();
    for s in 0..plan.submitters {
        let lo = (s * per).min(plan.jobs);
        let hi = ((s + 1) * per).min(plan.jobs);
        let cancel_after = match plan.end {
            End::CancelAfter(k) if s == 0 => Some(k.min(hi - lo)),
            _ => None,
        };
        subs.push(tokio::spawn(submitter(
            pool.clone(),
            Rng::new(rng.next()),
            lo..hi,
            cancel_after,
        )));
    }
    let mut tickets = Vec::new();
    let mut seen = Seen::default();
    let mut detached = 0u64;
    for s in subs {
        let (t, s, d) = timeout(bound, s)
            .await
            .unwrap_or_else(|_| panic!("submitters hung: {plan:?}\n{:?}", pool.report()))
            .unwrap();
        tickets.extend(t);
        seen.add(&s);
        detached += d.len() as u64;
    }

    let ended = timeout(bound, async {
        match plan.end {
            End::Drain | End::CancelAfter(_) => pool.clone().join().await,
            End::Grace(g) => pool.shutdown(g).await,
            End::Close => {
                pool.close();
                pool.clone().join().await
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("shutdown hung: {plan:?}\n{:?}", pool.report()));

    for (i, t) in tickets {
        let r = timeout(bound, t)
            .await
            .unwrap_or_else(|_| panic!("ticket {i} never resolved: {plan:?}"));
        seen.result(i, r);
    }
    let (detached_seen, detached_n) = timeout(bound, reader)
        .await
        .unwrap_or_else(|_| panic!("results stream never ended: {plan:?}"))
        .unwrap();
    assert_eq!(
        detached_n, detached,
        "a detached result is missing: {plan:?}"
    );
    seen.completed += detached_seen.completed;
    seen.failed += detached_seen.failed;
    seen.panicked += detached_seen.panicked;
    seen.cancelled += detached_seen.cancelled;

    let stats = pool.report();
    drop(pool);
    assert_no_leak(before, &format!("{plan:?}")).await;
    check(&plan, &seen, &stats, &ended);
    seen
}

/// The pool's counters against what the tickets and the results stream said.
fn check(
    plan: &Plan,
    seen: &Seen,
    stats: &PoolReport,
    ended: &Result<PoolReport, RunError<PoolError, PoolReport>>,
) {
    let report = match ended {
        Ok(r) => r,
        Err(e) => e.report(),
    };
    let ctx = || format!("{plan:?}\nseen {seen:?}\nstats {stats:?}\nended {ended:?}");
    assert_eq!(stats, report, "the report moved after the end: {}", ctx());
    assert_eq!(
        ended.is_err(),
        stats.cancelled > 0,
        "Err exactly when jobs were cancelled: {}",
        ctx()
    );
    if let (End::Grace(_), Err(e)) = (plan.end, ended) {
        assert!(
            e.error().cause().downcast_ref::<GraceExpired>().is_some(),
            "{}",
            ctx()
        );
    }
    assert_eq!(stats.submitted, seen.accepted, "{}", ctx());
    assert_eq!(stats.rejected, seen.rejected, "{}", ctx());
    assert_eq!(stats.completed, seen.completed, "{}", ctx());
    assert_eq!(stats.failed, seen.failed, "{}", ctx());
    assert_eq!(stats.panicked, seen.panicked, "{}", ctx());
    assert_eq!(stats.cancelled, seen.cancelled, "{}", ctx());
    assert_eq!(
        (stats.queued, stats.running, stats.workers),
        (0, 0, 0),
        "{}",
        ctx()
    );
    assert_eq!(
        seen.accepted + seen.rejected,
        plan.jobs,
        "a job was neither accepted nor handed back: {}",
        ctx()
    );
    assert_eq!(stats.finished(), stats.submitted, "{}", ctx());
    assert!(stats.is_balanced(), "{}", ctx());
    if matches!(plan.end, End::Drain | End::Close) {
        assert_eq!(
            stats.cancelled,
            0,
            "a drained pool cancelled jobs: {}",
            ctx()
        );
        assert!(ended.is_ok(), "{}", ctx());
    }
}

async fn torture(seed: u64, target: u64, real_time: bool) -> Totals {
    quiet_injected_panics();
    let mut rng = Rng::new(seed);
    let mut t = Totals::default();
    while t.offered < target {
        let plan = Plan::random(&mut rng, real_time);
        t.offered += plan.jobs;
        t.runs += 1;
        let bound = Duration::from_secs(if real_time { 60 } else { 3600 });
        let seen = run_one(plan, bound).await;
        t.seen.add(&seen);
    }
    t
}

fn print_totals(test: &str, seed: u64, t: &Totals) {
    let s = &t.seen;
    println!(
        "{test}: seed {seed}: {} runs, {} jobs offered, {} accepted, {} handed back; \
         {} completed, {} failed, {} panicked, {} cancelled; unaccounted 0, leaked tasks 0",
        t.runs, t.offered, s.accepted, s.rejected, s.completed, s.failed, s.panicked, s.cancelled
    );
}

#[tokio::test(start_paused = true)]
async fn pool_torture_paused() {
    let seed = seed("pool_torture_paused");
    let t = torture(seed, PAUSED_TARGET, false).await;
    print_totals("pool_torture_paused", seed, &t);
    assert!(
        t.seen.failed > 0 && t.seen.panicked > 0,
        "faults were injected: {t:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_torture_threaded() {
    let seed = seed("pool_torture_threaded");
    // Not the paused test's runs, for the same seed.
    let t = torture(seed.wrapping_add(1), THREADED_TARGET, true).await;
    print_totals("pool_torture_threaded", seed, &t);
    assert!(
        t.seen.failed > 0 && t.seen.panicked > 0,
        "faults were injected: {t:?}"
    );
}

// ---------------------------------------------------------------------------
// Shutdown under load.

/// 10,000 queued jobs, shut down with a grace period: every job is either
/// drained (completed, failed or panicked) or cancelled; the report, the
/// counters and the tickets agree, and nothing is lost between the two.
async fn loaded_shutdown(seed: u64, grace: Duration, real_time: bool) -> (u64, u64, u64) {
    quiet_injected_panics();
    let before = alive();
    let key = mix(seed);
    let pool: P = Pool::builder()
        .workers(4)
        .queue(LOADED as usize)
        .name("loaded")
        .build(move |i: u64| job(key, i, real_time))
        .unwrap();
    let mut tickets = Vec::with_capacity(LOADED as usize);
    for i in 0..LOADED {
        // The queue holds them all: try_submit never finds it full.
        tickets.push((i, pool.try_submit(i).unwrap()));
    }
    // On a multi-thread runtime the workers started on the queue while it
    // filled; on the current-thread one nothing ran yet.
    let finished_before = pool.report().finished();
    let ended = timeout(Duration::from_secs(60), pool.shutdown(grace))
        .await
        .unwrap_or_else(|_| panic!("shutdown({grace:?}) hung: {:?}", pool.report()));
    let timed_out = ended.is_err();
    let report = match ended {
        Ok(r) => r,
        Err(e) => {
            assert!(e.error().cause().downcast_ref::<GraceExpired>().is_some());
            e.into_report()
        }
    };
    let mut seen = Seen::default();
    for (i, t) in tickets {
        seen.result(i, t.await);
    }
    let what = format!(
        "grace {grace:?}: {finished_before} finished before, report {report:?}, seen {seen:?}"
    );
    // Nothing lost: every ticket says completed, failed, panicked or
    // cancelled, and the counters say the same.
    let s = &report;
    assert_eq!(
        [s.completed, s.failed, s.panicked, s.cancelled],
        [seen.completed, seen.failed, seen.panicked, seen.cancelled],
        "{what}"
    );
    assert_eq!(
        seen.completed + seen.failed + seen.panicked + seen.cancelled,
        LOADED,
        "jobs lost: {what}"
    );
    if !real_time {
        assert_eq!(finished_before, 0, "{what}");
    }
    let drained = (report.finished() - report.cancelled).saturating_sub(finished_before);
    assert_eq!(seen.cancelled, report.cancelled, "{what}");
    assert_eq!(
        timed_out,
        report.cancelled > 0,
        "Err exactly when jobs were cancelled: {what}"
    );
    assert_eq!(report.submitted, LOADED, "{what}");
    assert_eq!(report.finished(), LOADED, "{what}");
    assert!(report.is_balanced(), "{what}");
    assert_eq!(report.workers, 0, "{what}");
    drop(pool);
    assert_no_leak(before, &what).await;
    (finished_before, drained, report.cancelled)
}

#[tokio::test(start_paused = true)]
async fn shutdown_under_load_paused() {
    let seed = seed("shutdown_under_load_paused");
    let mut rng = Rng::new(seed);
    // ~2,000 jobs delayed ~5 ms and ~50 of 500 ms on 4 workers: the queue
    // takes ~9 s of (paused) time to drain.
    let mut graces = vec![Duration::ZERO, Duration::from_secs(3600)];
    graces.extend((0..3).map(|_| Duration::from_millis(rng.range(1, 4_000))));
    for grace in graces {
        let (_, drained, cancelled) = loaded_shutdown(rng.next(), grace, false).await;
        println!(
            "shutdown_under_load_paused: grace {grace:?}: {drained} drained, {cancelled} cancelled, 0 lost"
        );
        if grace == Duration::from_secs(3600) {
            assert_eq!(cancelled, 0, "a long grace period drains everything");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_threaded() {
    let seed = seed("shutdown_under_load_threaded");
    let mut rng = Rng::new(seed);
    for grace in [0, 1, 5, 20] {
        let grace = Duration::from_millis(grace);
        let (before, drained, cancelled) = loaded_shutdown(rng.next(), grace, true).await;
        println!(
            "shutdown_under_load_threaded: grace {grace:?}: {before} done before the shutdown, \
             {drained} drained, {cancelled} cancelled, 0 lost"
        );
    }
}
