//! Torture test of `Pipeline`: seeded random workloads with injected errors
//! (~1%), panics (~0.1%), per-item timeouts, cancellations mid-stream and
//! consumers that walk away, checking after every run that the counts add up
//! exactly, that `map_ordered` kept its order, that nothing hung and that no
//! task outlived `join`.
//!
//! Every run prints its seed; `WEIR_SEED=<n> cargo test -p weir-core --test
//! torture_pipeline` replays it. See docs/reliability.md.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Once};
use std::time::Duration;

use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use weir_core::{ErrorPolicy, Pipeline, PipelineError, PipelineHandle, PipelineReport as Report};

/// Items pushed into pipelines by the paused-time test, at least.
const PAUSED_TARGET: u64 = 200_000;
/// Items pushed into pipelines by the multi-thread test, at least.
const THREADED_TARGET: u64 = 60_000;
/// Per-item timeout of the two parallel stages (paused time).
const ITEM_TIMEOUT: Duration = Duration::from_millis(20);
/// The same on real time: long enough never to trip, even on a loaded
/// machine (slow items are a paused-time fault).
const REAL_TIME_ITEM_TIMEOUT: Duration = Duration::from_secs(60);
/// Marks the panics this file injects, so the panic hook can keep quiet about
/// them and only them.
const INJECTED: &str = "torture: injected panic";

// ---------------------------------------------------------------------------
// Seeded randomness (a tiny xorshift; no shared module across crates).

/// The seed from `WEIR_SEED`, or a fresh one; printed either way.
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

/// SplitMix64's finaliser: a good hash of one `u64`.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xorshift64* for the shape of each run.
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
    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
    /// True with probability `pct` percent.
    fn pct(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

// ---------------------------------------------------------------------------
// Faults, decided per (run, stage, item) so that the expected counts of a run
// can be computed without running it.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Passes at once.
    None,
    /// Passes after this many milliseconds (reorders items).
    Delay(u64),
    /// Returns `Err` (1%).
    Error,
    /// Panics (0.1%).
    Panic,
    /// Takes longer than the per-item timeout (0.5%).
    Slow,
}

fn fault(key: u64, stage: u64, item: u64) -> Fault {
    let h = mix(key ^ mix(stage) ^ item.wrapping_mul(0xA24B_AED4_963E_E407));
    match h % 10_000 {
        0..100 => Fault::Error,
        100..110 => Fault::Panic,
        110..160 => Fault::Slow,
        160..1160 => Fault::Delay(1 + (h >> 40) % 5),
        _ => Fault::None,
    }
}

/// Runs an item through its fault: what a stage function does.
async fn apply(f: Fault, item: u64, real_time: bool) -> anyhow::Result<u64> {
    match f {
        Fault::None => {}
        Fault::Delay(ms) if real_time => {
            for _ in 0..ms {
                tokio::task::yield_now().await;
            }
        }
        Fault::Delay(ms) => sleep(Duration::from_millis(ms)).await,
        Fault::Error => anyhow::bail!("torture: injected error on item {item}"),
        Fault::Panic => panic!("{INJECTED} on item {item}"),
        // On real time a slow item would cost real time: it only yields, and
        // the (long) timeout must not trip.
        Fault::Slow if real_time => tokio::task::yield_now().await,
        Fault::Slow => sleep(ITEM_TIMEOUT * 5).await,
    }
    Ok(item)
}

/// Silences the panics this file injects (and only those): every other panic,
/// a failing assert included, still goes to the default hook.
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

// ---------------------------------------------------------------------------
// One run.

/// How the consumer ends a run.
#[derive(Debug, Clone, Copy)]
enum End {
    /// Reads the output to its end.
    Full,
    /// Drops the output after this many items.
    DropAfter(u64),
    /// Calls `handle.cancel()` after this many items, then reads on.
    CancelAfter(u64),
    /// A separate task cancels the handle's token after this long.
    CancelAt(Duration),
    /// A separate task cancels the outside token given to `.context()`.
    OuterCancelAt(Duration),
}

#[derive(Debug, Clone)]
struct Plan {
    key: u64,
    items: u64,
    workers: usize,
    capacity: usize,
    policy: ErrorPolicy,
    end: End,
    /// Under `Continue`: read the error stream (else give it a small capacity
    /// and never read it).
    read_errors: bool,
    real_time: bool,
}

impl Plan {
    fn random(rng: &mut Rng, real_time: bool) -> Self {
        let items = rng.range(200, 6_000);
        let end = match rng.range(0, 10) {
            0..5 => End::Full,
            5..7 => End::DropAfter(rng.range(0, items)),
            7 => End::CancelAfter(rng.range(0, items)),
            8 => End::CancelAt(Duration::from_millis(rng.range(0, items / 2 + 1))),
            _ => End::OuterCancelAt(Duration::from_millis(rng.range(0, items / 2 + 1))),
        };
        Self {
            key: rng.next(),
            items,
            workers: rng.range(1, 9) as usize,
            capacity: [1, 2, 7, 64, 200][rng.range(0, 5) as usize],
            policy: if rng.pct(80) {
                ErrorPolicy::Continue
            } else {
                ErrorPolicy::FailFast
            },
            end,
            read_errors: rng.pct(70),
            real_time,
        }
    }
}

/// What one run did, for the totals and the figures in docs/reliability.md.
#[derive(Debug, Default)]
struct Totals {
    runs: u64,
    pushed: u64,
    delivered: u64,
    failed: u64,
    panicked: u64,
    timed_out: u64,
    filtered: u64,
    cancelled: u64,
    undelivered: u64,
}

impl Totals {
    fn add(&mut self, r: &Report) {
        self.runs += 1;
        self.pushed += r.stages[0].output;
        self.delivered += r.delivered;
        self.failed += r.failed();
        self.panicked += r.stages.iter().map(|s| s.panicked).sum::<u64>();
        self.timed_out += r.stages.iter().map(|s| s.timed_out).sum::<u64>();
        self.filtered += r.filtered();
        self.cancelled += r.stages.iter().map(|s| s.cancelled).sum::<u64>();
        self.undelivered += r.undelivered;
    }
}

/// Stage ids for `fault`.
const ORDERED: u64 = 1;
const WORK: u64 = 2;

fn keep(item: u64) -> bool {
    !item.is_multiple_of(13)
}

/// What a run that reads everything under `Continue` must report:
/// (ordered-stage survivors in order, final output, per-stage failures).
struct Expected {
    ordered: Vec<u64>,
    output: BTreeSet<u64>,
    ordered_faults: [u64; 3],
    work_faults: [u64; 3],
    filtered: u64,
}

fn count(f: Fault, real_time: bool, faults: &mut [u64; 3]) -> bool {
    match f {
        Fault::Slow if real_time => return true,
        Fault::Error => faults[0] += 1,
        Fault::Panic => faults[1] += 1,
        Fault::Slow => faults[2] += 1,
        Fault::None | Fault::Delay(_) => return true,
    }
    false
}

fn expected(plan: &Plan) -> Expected {
    let mut e = Expected {
        ordered: Vec::new(),
        output: BTreeSet::new(),
        ordered_faults: [0; 3],
        work_faults: [0; 3],
        filtered: 0,
    };
    for i in 0..plan.items {
        if !count(
            fault(plan.key, ORDERED, i),
            plan.real_time,
            &mut e.ordered_faults,
        ) {
            continue;
        }
        e.ordered.push(i);
        if !count(fault(plan.key, WORK, i), plan.real_time, &mut e.work_faults) {
            continue;
        }
        if keep(i) {
            e.output.insert(i);
        } else {
            e.filtered += 1;
        }
    }
    e
}

/// The report without its timings, for comparing two snapshots.
fn counts(r: &Report) -> Report {
    let mut r = r.clone();
    r.elapsed = Duration::ZERO;
    for s in &mut r.stages {
        s.elapsed = Duration::ZERO;
    }
    r
}

/// No task outlives a run: exact on a current-thread runtime; on a
/// multi-thread runtime, polled for a bounded time while the worker threads
/// let go of tasks that have ended.
async fn assert_no_leak(before: usize, plan: &Plan, report: &Report) {
    use tokio::runtime::RuntimeFlavor;
    if tokio::runtime::Handle::current().runtime_flavor() == RuntimeFlavor::CurrentThread {
        assert_eq!(
            alive(),
            before,
            "tasks outlived join: {plan:?}\n{report:#?}"
        );
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
        "{} tasks alive 10 s after join, {before} before: {plan:?}\n{report:#?}",
        alive()
    );
}

/// Waits (bounded) until every task of the pipeline has ended, failing with
/// the live counters if it does not.
async fn wait_finished(handle: &PipelineHandle, bound: Duration, plan: &Plan) {
    let waited = timeout(bound, async {
        while !handle.is_finished() {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "pipeline did not finish within {bound:?}: {plan:?}\n{:#?}",
        handle.report()
    );
}

/// Runs one random pipeline and checks it; returns its report.
async fn run_one(plan: Plan, bound: Duration) -> Report {
    let before = alive();
    let real_time = plan.real_time;
    let key = plan.key;
    let item_timeout = if real_time {
        REAL_TIME_ITEM_TIMEOUT
    } else {
        ITEM_TIMEOUT
    };
    let outer = CancellationToken::new();
    let order_seen = Arc::new(AtomicU64::new(0));
    let order_violations = Arc::new(AtomicU64::new(0));
    let ordered_log = Arc::new(std::sync::Mutex::new(Vec::new()));

    let (seen, violations, log) = (
        Arc::clone(&order_seen),
        Arc::clone(&order_violations),
        Arc::clone(&ordered_log),
    );
    let mut pipeline = Pipeline::from_iter(0..plan.items)
        .capacity(plan.capacity)
        .error_policy(plan.policy)
        .context(outer.clone())
        .map_ordered("ordered", plan.workers, move |i| {
            apply(fault(key, ORDERED, i), i, real_time)
        })
        .timeout(item_timeout)
        .inspect("order-check", move |&i| {
            // One task: sees the ordered stage's output in its order.
            let next = i + 1;
            if seen.swap(next, Relaxed) >= next {
                violations.fetch_add(1, Relaxed);
            }
            log.lock().unwrap().push(i);
        })
        .map("work", plan.workers, move |i| {
            apply(fault(key, WORK, i), i, real_time)
        })
        .timeout(item_timeout)
        .filter("thin", |&i| keep(i));
    if !plan.read_errors {
        pipeline = pipeline.error_capacity(3);
    }
    let (mut out, mut handle) = pipeline.into_stream().unwrap();

    // Readers of the error stream, and timed cancellers, run beside the
    // consumer; they are joined before the leak check.
    let error_reader = plan.read_errors.then(|| {
        let errors = handle.errors().unwrap();
        tokio::spawn(async move {
            let mut errors = errors;
            let mut n = 0u64;
            while let Some(e) = errors.recv().await {
                assert!(
                    matches!(
                        e,
                        PipelineError::Failed { .. }
                            | PipelineError::Panicked { .. }
                            | PipelineError::TimedOut { .. }
                    ),
                    "unexpected error on the error stream: {e}"
                );
                n += 1;
            }
            n
        })
    });
    let canceller = match plan.end {
        End::CancelAt(d) => {
            let t = handle.context().clone();
            Some(tokio::spawn(async move {
                sleep(d).await;
                t.cancel();
            }))
        }
        End::OuterCancelAt(d) => {
            let t = outer.clone();
            Some(tokio::spawn(async move {
                sleep(d).await;
                t.cancel();
            }))
        }
        _ => None,
    };

    // The consumer.
    let mut got = Vec::new();
    let consumed = timeout(bound, async {
        while let Some(i) = out.recv().await {
            got.push(i);
            match plan.end {
                End::DropAfter(k) if got.len() as u64 >= k => break,
                End::CancelAfter(k) if got.len() as u64 == k => handle.cancel(),
                _ => {}
            }
        }
    })
    .await;
    assert!(
        consumed.is_ok(),
        "consumer hung after {} items: {plan:?}\n{:#?}",
        got.len(),
        handle.report()
    );
    drop(out);
    wait_finished(&handle, bound, &plan).await;
    let report = handle.report();
    // The error carries the final report, which balances like any other.
    let result = handle.join().await.map_err(|e| {
        assert!(
            e.report().is_balanced(),
            "the error's report does not balance: {plan:?}\n{:#?}",
            e.report()
        );
        e.into_error()
    });

    // Helpers end too; then nothing may be left.
    if let Some(c) = canceller {
        c.abort();
        let _ = c.await;
    }
    let errors_read = match error_reader {
        Some(r) => Some(
            timeout(bound, r)
                .await
                .expect("error stream never ended")
                .unwrap(),
        ),
        None => None,
    };
    assert_no_leak(before, &plan, &report).await;

    // Accounting: every stage balances, edges agree, consumer agrees.
    for s in &report.stages {
        assert!(
            s.is_balanced(),
            "stage {} unbalanced: {plan:?}\n{report:#?}",
            s.name
        );
    }
    assert!(
        report.is_balanced(),
        "report unbalanced: {plan:?}\n{report:#?}"
    );
    assert_eq!(report.delivered, got.len() as u64, "{plan:?}\n{report:#?}");
    if let Ok(joined) = &result {
        assert_eq!(
            counts(joined),
            counts(&report),
            "join's report differs from the finished counters"
        );
    }

    // Order: whatever failed, map_ordered's output kept input order.
    assert_eq!(
        order_violations.load(Relaxed),
        0,
        "map_ordered reordered items: {plan:?}"
    );
    let logged = ordered_log.lock().unwrap().clone();
    let e = expected(&plan);
    let ord = report.stage("ordered").unwrap();
    let work = report.stage("work").unwrap();
    assert!(
        ord.failed <= e.ordered_faults.iter().sum(),
        "{plan:?}\n{report:#?}"
    );
    assert!(ord.panicked <= e.ordered_faults[1], "{plan:?}\n{report:#?}");
    assert!(
        ord.timed_out <= e.ordered_faults[2],
        "{plan:?}\n{report:#?}"
    );
    // Everything the ordered stage passed on is a prefix of what it must
    // pass on in a full run (it may have been cut short, never reordered).
    assert_eq!(
        logged.as_slice(),
        &e.ordered[..logged.len()],
        "map_ordered output is not the input order minus failures: {plan:?}"
    );
    for i in &got {
        assert!(
            e.output.contains(i),
            "item {i} should not have come out: {plan:?}"
        );
    }

    // Under Continue, the error stream carries every failure it had room for.
    match (plan.policy, errors_read) {
        (ErrorPolicy::Continue, Some(n)) => assert_eq!(
            n + report.errors_dropped,
            report.failed(),
            "errors on the stream + dropped != failed: {plan:?}\n{report:#?}"
        ),
        (ErrorPolicy::FailFast, Some(n)) => {
            assert_eq!(n, 0, "fail-fast put errors on the error stream: {plan:?}");
        }
        _ => {}
    }

    let full = matches!(plan.end, End::Full);
    match (&result, plan.policy) {
        (Ok(_), ErrorPolicy::Continue) if full => {
            // Nothing was cut short: every count is exactly the plan's.
            let mut got_sorted = got.clone();
            got_sorted.sort_unstable();
            assert!(
                got_sorted.iter().copied().eq(e.output.iter().copied()),
                "{plan:?}"
            );
            assert_eq!(logged, e.ordered, "{plan:?}");
            assert_eq!(ord.input, plan.items);
            assert_eq!(ord.failed, e.ordered_faults.iter().sum::<u64>());
            assert_eq!(ord.panicked, e.ordered_faults[1]);
            assert_eq!(ord.timed_out, e.ordered_faults[2]);
            assert_eq!(work.failed, e.work_faults.iter().sum::<u64>());
            assert_eq!(work.panicked, e.work_faults[1]);
            assert_eq!(work.timed_out, e.work_faults[2]);
            assert_eq!(report.filtered(), e.filtered);
            assert_eq!(report.cancelled(), 0, "{report:#?}");
        }
        (Err(err), ErrorPolicy::Continue) => {
            assert!(err.is_stopped(), "Continue failed with {err}: {plan:?}");
            assert!(!full, "a run nobody stopped was stopped: {err}");
        }
        (Err(err), ErrorPolicy::FailFast) => {
            // The first failure of a parallel stage, or a cancel.
            assert!(
                err.is_stopped() || matches!(err.stage(), Some("ordered" | "work")),
                "unexpected {err}: {plan:?}"
            );
            if full {
                assert!(!err.is_stopped(), "nobody cancelled: {err}");
            }
        }
        (Ok(_), ErrorPolicy::FailFast) if full => {
            // Ok under fail-fast: no item failed anywhere.
            assert_eq!(report.failed(), 0, "{report:#?}");
            assert_eq!(e.ordered_faults.iter().sum::<u64>(), 0, "{plan:?}");
            assert_eq!(e.work_faults.iter().sum::<u64>(), 0, "{plan:?}");
        }
        _ => {}
    }
    report
}

async fn torture(seed: u64, target: u64, real_time: bool, bound: Duration) -> Totals {
    quiet_injected_panics();
    let mut rng = Rng::new(seed);
    let mut totals = Totals::default();
    while totals.pushed < target {
        let plan = Plan::random(&mut rng, real_time);
        let report = run_one(plan, bound).await;
        totals.add(&report);
    }
    totals
}

fn print_totals(test: &str, seed: u64, t: &Totals) {
    println!(
        "{test}: seed {seed}: {} runs, {} items pushed, {} delivered, {} failed \
         ({} panics, {} timeouts), {} filtered, {} cancelled in stages, {} undelivered; \
         unaccounted 0, leaked tasks 0",
        t.runs,
        t.pushed,
        t.delivered,
        t.failed,
        t.panicked,
        t.timed_out,
        t.filtered,
        t.cancelled,
        t.undelivered
    );
}

/// Paused time: delays, timeouts and timed cancels cost no wall-clock time,
/// and the current-thread runtime makes the leak check exact.
#[tokio::test(start_paused = true)]
async fn pipeline_torture_paused() {
    let seed = seed("pipeline_torture_paused");
    let t = torture(seed, PAUSED_TARGET, false, Duration::from_secs(3600)).await;
    print_totals("pipeline_torture_paused", seed, &t);
    assert!(t.pushed >= PAUSED_TARGET);
    assert!(
        t.failed > 0 && t.panicked > 0 && t.timed_out > 0,
        "faults were injected: {t:?}"
    );
}

/// Real concurrency on two worker threads: the same checks, with delays as
/// yields (timeouts cannot trip here: slow items are a paused-time fault).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_torture_threaded() {
    let seed = seed("pipeline_torture_threaded");
    quiet_injected_panics();
    // Not the paused test's runs, for the same seed.
    let mut rng = Rng::new(seed.wrapping_add(1));
    let mut t = Totals::default();
    while t.pushed < THREADED_TARGET {
        let mut plan = Plan::random(&mut rng, true);
        // Timed cancels become cancels after a number of items here.
        plan.end = match plan.end {
            End::CancelAt(d) | End::OuterCancelAt(d) => End::CancelAfter(d.as_millis() as u64),
            other => other,
        };
        let report = run_one(plan, Duration::from_secs(60)).await;
        t.add(&report);
    }
    print_totals("pipeline_torture_threaded", seed, &t);
    assert!(
        t.failed > 0 && t.panicked > 0,
        "faults were injected: {t:?}"
    );
}

/// The smallest case the torture runs found: a consumer that leaves after 5
/// items of a one-worker `map_ordered`. `join` returns `Ok` (walking away is
/// not an error), and every item that entered the stage must be in its
/// report as output or cancelled.
#[tokio::test(start_paused = true)]
async fn map_ordered_accounts_for_every_item_when_the_consumer_leaves() {
    let before = alive();
    let (mut out, handle) = Pipeline::from_iter(0..1000u64)
        .capacity(8)
        .map_ordered("ordered", 1, |i| async move {
            if i % 7 == 0 {
                sleep(Duration::from_millis(3)).await;
            }
            anyhow::Ok(i)
        })
        .into_stream()
        .unwrap();
    for _ in 0..5 {
        out.recv().await.unwrap();
    }
    drop(out);
    let report = handle.join().await.unwrap();
    assert_eq!(alive(), before);
    let s = report.stage("ordered").unwrap();
    assert!(
        s.is_balanced(),
        "{} items entered map_ordered and are neither output nor cancelled: {s:?}",
        s.in_flight()
    );
}
