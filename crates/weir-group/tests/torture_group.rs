//! Torture test of `Group`: seeded random workloads of tasks with injected
//! errors (~1%), panics (~0.1%) and slow tasks, spawned with `spawn` and
//! `try_spawn` under random limits and either error policy, and ended every
//! way a group ends (`join`, `shutdown` with a grace period, `cancel`, drop).
//! After every run each task is accounted for exactly once — by the
//! report's counts, its values and the errors of `join` alike — the limit
//! held, and no task outlived the group. A last test runs the three together: a group of
//! producers, each pushing items through a pipeline whose parallel stage
//! sends them to a shared pool.
//!
//! Every run prints its seed; `WEIR_SEED=<n> cargo test -p weir-group --test
//! torture_group` replays it. See docs/reliability.md.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Once};
use std::time::Duration;

use tokio::time::{sleep, timeout};
use weir_core::pool::{JobError, Pool};
use weir_core::{Pipeline, PipelineError};
use weir_group::{ErrorPolicy, Group, GroupError, GroupReport};

/// Tasks spawned by the paused-time test, at least.
const PAUSED_TARGET: u64 = 200_000;
/// Items pushed by the combined test, at least.
const COMBINED_TARGET: u64 = 50_000;
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
    /// Sleeps long; stops early when the group's context is cancelled.
    SlowWatching,
    /// Sleeps long and ignores the context: only an abort stops it.
    SlowDeaf,
}

fn fault(key: u64, task: u64) -> Fault {
    let h = mix(key ^ task.wrapping_mul(0xA24B_AED4_963E_E407));
    match h % 10_000 {
        0..100 => Fault::Error,
        100..110 => Fault::Panic,
        110..135 => Fault::SlowWatching,
        135..160 => Fault::SlowDeaf,
        160..3160 => Fault::Delay(1 + (h >> 40) % 10),
        _ => Fault::None,
    }
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

/// Counts running tasks and remembers the most at once; the guard lowers
/// the count however the task ends (value, error, panic, abort).
#[derive(Debug, Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

struct Running(Arc<Gauge>);

impl Running {
    fn enter(g: &Arc<Gauge>) -> Self {
        let now = g.now.fetch_add(1, SeqCst) + 1;
        g.max.fetch_max(now, SeqCst);
        Self(Arc::clone(g))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, SeqCst);
    }
}

/// Value of a task that saw the context cancelled and stopped early.
const STOPPED: u64 = u64::MAX;

/// The task for index `i`.
async fn task(
    key: u64,
    i: u64,
    ctx: weir_context::Context,
    gauge: Arc<Gauge>,
) -> Result<u64, String> {
    let _running = Running::enter(&gauge);
    match fault(key, i) {
        Fault::None => {}
        Fault::Delay(ms) => sleep(Duration::from_millis(ms)).await,
        Fault::Error => return Err(format!("torture: injected error in task {i}")),
        Fault::Panic => panic!("{INJECTED} in task {i}"),
        Fault::SlowWatching => {
            tokio::select! {
                _ = ctx.cancelled() => return Ok(STOPPED),
                _ = sleep(Duration::from_secs(10)) => {}
            }
        }
        Fault::SlowDeaf => sleep(Duration::from_secs(10)).await,
    }
    Ok(i)
}

// ---------------------------------------------------------------------------
// Random runs.

#[derive(Debug, Clone, Copy)]
enum End {
    Join,
    Shutdown(Duration),
    /// `cancel()` after this many spawns, keep spawning, then `join`.
    CancelAfter(u64),
    /// Drop the group after this many spawns.
    DropAfter(u64),
}

#[derive(Debug, Clone)]
struct Plan {
    key: u64,
    tasks: u64,
    limit: Option<usize>,
    policy: ErrorPolicy,
    /// Percent of spawns done with `try_spawn` (joining one task to make
    /// room when it is refused).
    try_pct: u64,
    end: End,
}

impl Plan {
    fn random(rng: &mut Rng) -> Self {
        let tasks = rng.range(100, 3_000);
        let end = match rng.range(0, 10) {
            0..6 => End::Join,
            6..8 => End::Shutdown(Duration::from_millis(rng.range(0, 3_000))),
            8 => End::CancelAfter(rng.range(0, tasks)),
            _ => End::DropAfter(rng.range(0, tasks)),
        };
        Self {
            key: rng.next(),
            tasks,
            limit: rng.pct(70).then(|| rng.range(1, 65) as usize),
            policy: if rng.pct(30) {
                ErrorPolicy::FailFast
            } else {
                ErrorPolicy::Continue
            },
            try_pct: rng.range(0, 100),
            end,
        }
    }
}

/// Outcomes, one per task.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    spawned: u64,
    ok: u64,
    stopped: u64,
    failed: u64,
    panicked: u64,
    aborted: u64,
}

impl Tally {
    fn result(&mut self, r: Result<u64, GroupError<String>>) {
        match r {
            Ok(STOPPED) => self.stopped += 1,
            Ok(_) => self.ok += 1,
            Err(e) => self.error(&e),
        }
    }
    fn error(&mut self, e: &GroupError<String>) {
        match e {
            GroupError::Failed { error, .. } => {
                assert!(error.starts_with("torture: injected error"), "{e}");
                self.failed += 1;
            }
            GroupError::Panicked { panic, .. } => {
                assert!(panic.message().starts_with(INJECTED), "{e}");
                self.panicked += 1;
            }
            GroupError::Aborted { .. } => self.aborted += 1,
            other => panic!("unknown group error {other}"),
        }
    }
    fn accounted(&self) -> u64 {
        self.ok + self.stopped + self.failed + self.panicked + self.aborted
    }
    fn add(&mut self, o: &Tally) {
        self.spawned += o.spawned;
        self.ok += o.ok;
        self.stopped += o.stopped;
        self.failed += o.failed;
        self.panicked += o.panicked;
        self.aborted += o.aborted;
    }
}

/// The report of `join`/`shutdown` agrees with the errors it came with and
/// with what `join_next` took early.
fn check_report(
    report: &GroupReport<u64>,
    errors: &[GroupError<String>],
    early: &Tally,
    plan: &Plan,
) {
    assert!(report.is_balanced(), "{plan:?}\n{report}");
    let count = |f: fn(&GroupError<String>) -> bool| errors.iter().filter(|e| f(e)).count() as u64;
    let late = (
        count(GroupError::is_failed),
        count(GroupError::is_panic),
        count(GroupError::is_aborted),
    );
    assert_eq!(
        (report.failed, report.panicked, report.aborted),
        (
            late.0 + early.failed,
            late.1 + early.panicked,
            late.2 + early.aborted
        ),
        "{plan:?}\n{report}"
    );
    assert_eq!(
        report.succeeded,
        report.values().count() as u64 + early.ok + early.stopped,
        "{plan:?}\n{report}"
    );
}

async fn run_one(plan: Plan) -> Tally {
    let before = alive();
    let bound = Duration::from_secs(3600);
    let gauge = Arc::new(Gauge::default());
    let mut builder = Group::builder().error_policy(plan.policy);
    if let Some(n) = plan.limit {
        builder = builder.limit(n);
    }
    let mut group: Group<u64, String> = builder.build().unwrap();
    let mut rng = Rng::new(plan.key);
    let mut tally = Tally::default();
    // Results joined early (to make room for a refused try_spawn).
    let mut early = Tally::default();
    let ctx = group.context().clone();
    let spawning = timeout(bound, async {
        for i in 0..plan.tasks {
            match plan.end {
                End::CancelAfter(k) if k == i => group.cancel(),
                End::DropAfter(k) if k == i => return false,
                _ => {}
            }
            let fut = task(plan.key, i, ctx.clone(), Arc::clone(&gauge));
            if rng.pct(plan.try_pct) {
                let mut fut = fut;
                loop {
                    match group.try_spawn(fut) {
                        Ok(()) => break,
                        Err(rejected) => {
                            assert!(plan.limit.is_some(), "an unlimited group refused a task");
                            fut = rejected.into_inner();
                            let r = group.join_next().await.expect("a full group is not empty");
                            early.result(r);
                        }
                    }
                }
            } else {
                group.spawn(fut).await;
            }
            tally.spawned += 1;
        }
        true
    })
    .await;
    let Ok(spawned_all) = spawning else {
        panic!(
            "spawning hung: {plan:?}, {} tasks in the group",
            group.len()
        );
    };

    if !spawned_all {
        // The group is dropped with tasks still running: they are aborted.
        drop(group);
        let settled = timeout(bound, async {
            while alive() != before {
                sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        assert!(settled.is_ok(), "tasks outlived a dropped group: {plan:?}");
        assert_eq!(
            gauge.now.load(SeqCst),
            0,
            "a task is still running: {plan:?}"
        );
        return tally;
    }

    let mut rest = Tally::default();
    let ended = timeout(bound, async {
        let joined = match plan.end {
            End::Join | End::CancelAfter(_) => group.join().await,
            End::Shutdown(grace) => group.shutdown(grace).await,
            End::DropAfter(_) => unreachable!(),
        };
        let (errors, report) = match joined {
            Ok(report) => (Vec::new(), report),
            Err(err) => {
                let (errors, report) = err.into_parts();
                (errors.into_vec(), report)
            }
        };
        check_report(&report, &errors, &early, &plan);
        for v in report.values() {
            rest.result(Ok(*v));
        }
        for e in &errors {
            rest.error(e);
        }
    })
    .await;
    assert!(ended.is_ok(), "the group never ended: {plan:?}");
    assert_eq!(alive(), before, "tasks outlived the group: {plan:?}");
    assert_eq!(
        gauge.now.load(SeqCst),
        0,
        "a task is still running: {plan:?}"
    );
    if let Some(n) = plan.limit {
        assert!(
            gauge.max.load(SeqCst) <= n,
            "more than {n} tasks ran at once: {plan:?}"
        );
    }

    tally.add(&early);
    tally.add(&rest);
    assert_eq!(
        tally.accounted(),
        tally.spawned,
        "a task is missing or counted twice: {plan:?}\n{tally:?}"
    );
    // Count what the plan says, for the tasks that were spawned.
    let mut planned = [0u64; 2];
    for i in 0..tally.spawned {
        match fault(plan.key, i) {
            Fault::Error => planned[0] += 1,
            Fault::Panic => planned[1] += 1,
            _ => {}
        }
    }
    // An aborted task may have been one that would have failed.
    assert!(
        tally.failed <= planned[0] && tally.panicked <= planned[1],
        "{plan:?}\n{tally:?}"
    );
    if matches!(plan.end, End::Join) && plan.policy == ErrorPolicy::Continue {
        // Nothing cancelled: every task ran its course.
        assert_eq!(
            [tally.failed, tally.panicked],
            planned,
            "{plan:?}\n{tally:?}"
        );
        assert_eq!(
            (tally.stopped, tally.aborted),
            (0, 0),
            "{plan:?}\n{tally:?}"
        );
    }
    if !matches!(plan.end, End::Shutdown(_)) {
        assert_eq!(
            tally.aborted, 0,
            "only shutdown aborts: {plan:?}\n{tally:?}"
        );
    }
    tally
}

#[tokio::test(start_paused = true)]
async fn group_torture_paused() {
    let seed = seed("group_torture_paused");
    quiet_injected_panics();
    let mut rng = Rng::new(seed);
    let mut t = Tally::default();
    let mut runs = 0;
    while t.spawned < PAUSED_TARGET {
        t.add(&run_one(Plan::random(&mut rng)).await);
        runs += 1;
    }
    println!(
        "group_torture_paused: seed {seed}: {runs} runs, {} tasks spawned; {} ok, {} stopped by \
         the context, {} failed, {} panicked, {} aborted; unaccounted 0, leaked tasks 0",
        t.spawned, t.ok, t.stopped, t.failed, t.panicked, t.aborted
    );
    assert!(
        t.failed > 0 && t.panicked > 0,
        "faults were injected: {t:?}"
    );
}

// ---------------------------------------------------------------------------
// The three together.

/// A group of producers on two worker threads; each pushes a chunk of items
/// through a pipeline whose parallel stage submits every item to one shared
/// pool and awaits its ticket. Pool jobs fail (~1%) and panic (~0.1%); those
/// items fail in the pipeline (under `Continue`); a few producers cancel
/// their pipeline mid-stream or drop its output early. In the end the pool's
/// counters, the pipelines' reports and the group's results all agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_pipeline_pool_together() {
    let seed = seed("group_pipeline_pool_together");
    quiet_injected_panics();
    let before = alive();
    let key = mix(seed);
    let pool: Pool<u64, u64, anyhow::Error> = Pool::builder()
        .workers(4)
        .queue(64)
        .name("shared")
        .build(move |i: u64| async move {
            match mix(key ^ i) % 1000 {
                0..10 => anyhow::bail!("torture: injected error on {i}"),
                10 => panic!("{INJECTED} on {i}"),
                11..100 => tokio::task::yield_now().await,
                _ => {}
            }
            Ok(i)
        })
        .unwrap();

    #[derive(Debug, Default, Clone, Copy)]
    struct Produced {
        pushed: u64,
        delivered: u64,
        failed: u64,
        cancelled: u64,
        submitted: u64,
    }

    let mut rng = Rng::new(seed);
    let mut group: Group<Produced, String> = Group::builder().limit(4).build().unwrap();
    let mut start = 0u64;
    let mut producers = 0u64;
    while start < COMBINED_TARGET {
        let n = rng.range(100, 2_000);
        let (lo, hi) = (start, start + n);
        start = hi;
        producers += 1;
        let pool = pool.clone();
        let stop_after = rng.pct(20).then(|| rng.range(0, n));
        let drop_after = rng.pct(10).then(|| rng.range(0, n));
        let submitted = Arc::new(AtomicUsize::new(0));
        group
            .spawn(async move {
                let counter = Arc::clone(&submitted);
                let (mut out, handle) = Pipeline::from_iter(lo..hi)
                    .error_policy(ErrorPolicy::Continue)
                    .error_capacity(0)
                    .map("via-pool", 3, move |i| {
                        let pool = pool.clone();
                        let counter = Arc::clone(&counter);
                        async move {
                            let ticket = pool
                                .submit(i)
                                .await
                                .map_err(|_| anyhow::anyhow!("closed"))?;
                            counter.fetch_add(1, SeqCst);
                            match ticket.await {
                                Ok(v) => anyhow::Ok(v),
                                Err(JobError::Failed(e)) => Err(e),
                                Err(other) => Err(anyhow::anyhow!("{other}")),
                            }
                        }
                    })
                    .into_stream()
                    .map_err(|e| e.to_string())?;
                let mut got = 0u64;
                while let Some(v) = out.recv().await {
                    assert!((lo..hi).contains(&v), "item {v} from another producer");
                    got += 1;
                    if Some(got) == stop_after {
                        handle.cancel();
                    }
                    if Some(got) == drop_after {
                        break;
                    }
                }
                drop(out);
                while !handle.is_finished() {
                    sleep(Duration::from_millis(1)).await;
                }
                let report = handle.report();
                match handle.join().await {
                    Ok(_) => {}
                    Err(e) if matches!(e.error(), PipelineError::Stopped(_)) => {}
                    Err(e) => return Err(e.to_string()),
                }
                assert!(report.is_balanced(), "{report:#?}");
                assert_eq!(report.delivered, got);
                Ok(Produced {
                    pushed: report.stages[0].output,
                    delivered: got,
                    failed: report.failed(),
                    cancelled: report.cancelled(),
                    submitted: submitted.load(SeqCst) as u64,
                })
            })
            .await;
    }
    let report = timeout(Duration::from_secs(120), group.join())
        .await
        .unwrap_or_else(|_| panic!("the group never ended: {:?}", pool.report()))
        .unwrap();
    assert_eq!(report.spawned, producers);
    assert!(report.is_balanced());
    let mut total = Produced::default();
    for p in report.into_values() {
        total.pushed += p.pushed;
        total.delivered += p.delivered;
        total.failed += p.failed;
        total.cancelled += p.cancelled;
        total.submitted += p.submitted;
    }
    let stats = timeout(Duration::from_secs(60), pool.clone().join())
        .await
        .unwrap_or_else(|_| panic!("pool join hung: {:?}", pool.report()))
        .expect("no pool job was cancelled");
    // Every job the pipelines put in the pool was counted by the pool and
    // ended there; no pool job was cancelled (the pool was never cancelled,
    // and a dropped ticket does not cancel its job).
    assert_eq!(stats.submitted, total.submitted, "{stats:?} {total:?}");
    assert_eq!(stats.finished(), stats.submitted, "{stats:?}");
    assert_eq!(stats.cancelled, 0, "{stats:?}");
    assert_eq!(stats.rejected, 0, "{stats:?}");
    assert!(
        stats.failed > 0 && stats.panicked > 0,
        "faults were injected: {stats:?}"
    );
    // An item fails in its pipeline only through its pool job (a cancelled
    // pipeline may drop a ticket whose job then fails unseen).
    assert!(
        total.failed <= stats.failed + stats.panicked,
        "{stats:?} {total:?}"
    );
    drop(pool);
    let settled = timeout(Duration::from_secs(10), async {
        while alive() != before {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "{} tasks alive after the end, {before} before",
        alive()
    );
    println!(
        "group_pipeline_pool_together: seed {seed}: {producers} producers, {} items through \
         pipelines, {} delivered, {} failed, {} cancelled; pool: {} jobs, {} failed, {} \
         panicked; unaccounted 0, leaked tasks 0",
        total.pushed,
        total.delivered,
        total.failed,
        total.cancelled,
        stats.submitted,
        stats.failed,
        stats.panicked
    );
}
