//! Behaviour of `Context`: deadlines that children inherit, causes where the
//! first one wins, `run`, and no growth when many children come and go.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use tokio::time::{Instant, sleep};
use weir_context::{Cause, Context};

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(start_paused = true)]
async fn a_child_never_outlives_its_parents_deadline() {
    let start = Instant::now();
    let parent = Context::background().with_timeout(Duration::from_secs(1));
    let long = parent.with_timeout(Duration::from_secs(5));
    let short = parent.with_timeout(Duration::from_millis(200));
    assert_eq!(long.deadline(), parent.deadline());
    assert_eq!(short.deadline(), Some(start + Duration::from_millis(200)));

    short.cancelled().await;
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert!(short.cause().unwrap().is_deadline_exceeded());
    assert!(!parent.is_cancelled(), "the parent lives on");
    assert_eq!(parent.remaining(), Some(Duration::from_millis(800)));

    long.cancelled().await;
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert!(long.cause().unwrap().is_deadline_exceeded());
    assert!(parent.cause().unwrap().is_deadline_exceeded());
    assert_eq!(long.remaining(), Some(Duration::ZERO));
}

#[tokio::test]
async fn the_first_cause_wins_and_children_see_the_parents() {
    let ctx = Context::background();
    let child = ctx.child();
    let grandchild = child.child();
    assert!(ctx.cause().is_none());
    ctx.cancel_with("first");
    ctx.cancel_with("second");
    ctx.cancel();
    assert_eq!(ctx.cause().unwrap().to_string(), "first");
    assert_eq!(child.cause().unwrap().to_string(), "first");
    assert_eq!(grandchild.cause().unwrap().to_string(), "first");
    // A child cancelled after its parent keeps the parent's cause.
    child.cancel_with("too late");
    assert_eq!(child.cause().unwrap().to_string(), "first");

    // A child cancelled first keeps its own cause; the parent is untouched.
    let ctx = Context::background();
    let child = ctx.child();
    child.cancel_with(std::io::Error::other("disk full"));
    assert!(!ctx.is_cancelled());
    ctx.cancel();
    assert_eq!(child.cause().unwrap().to_string(), "disk full");
    assert!(matches!(ctx.cause(), Some(Cause::Cancelled)));
    assert!(child.cause().unwrap().value().is_some());
}

#[tokio::test]
async fn tokens_and_contexts_convert_both_ways() {
    let token = tokio_util::sync::CancellationToken::new();
    let ctx = Context::from(token.clone());
    token.cancel();
    assert!(ctx.is_cancelled());
    assert!(matches!(ctx.cause(), Some(Cause::Cancelled)));

    let ctx = Context::background();
    let child = ctx.child();
    child.token().cancel();
    assert!(matches!(child.cause(), Some(Cause::Cancelled)));
    assert!(!ctx.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn run_returns_the_work_or_the_cause_and_drops_the_work() {
    let ctx = Context::background().with_timeout(Duration::from_millis(300));
    assert_eq!(ctx.run(async { 7 }).await.unwrap(), 7);

    let dropped = Arc::new(AtomicBool::new(false));
    struct Guard(Arc<AtomicBool>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.store(true, SeqCst);
        }
    }
    let d = dropped.clone();
    let work = async move {
        let _g = Guard(d);
        sleep(Duration::from_secs(10)).await;
        1
    };
    let start = Instant::now();
    let stopped = ctx.run(work).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert!(stopped.cause().is_deadline_exceeded());
    assert_eq!(stopped.to_string(), "stopped: context deadline exceeded");
    assert!(
        dropped.load(SeqCst),
        "the work was dropped, not left running"
    );

    // Already cancelled: the work does not even start.
    let ctx = Context::background();
    ctx.cancel_with("no");
    let err = ctx.run(async { unreachable!() }).await.unwrap_err();
    assert_eq!(err.cause().to_string(), "no");
}

#[tokio::test(start_paused = true)]
async fn deadline_timers_end_with_their_context() {
    let before = alive();
    let root = Context::background();
    // Contexts without a deadline of their own run no task.
    let _c = root.child();
    let _d = root.with_timeout(Duration::from_secs(1)).child();
    let inherited = root.with_timeout(Duration::from_secs(1));
    assert_eq!(alive(), before + 2);
    let _e = inherited.with_timeout(Duration::from_secs(9)); // later than the parent's: no timer
    assert_eq!(alive(), before + 2);
    drop(_d);
    tokio::task::yield_now().await;
    assert_eq!(alive(), before + 1, "dropping a context stops its timer");
    root.cancel();
    tokio::task::yield_now().await;
    assert_eq!(alive(), before, "cancelling stops every timer");
}

/// Resident memory in bytes, from /proc (Linux); `None` elsewhere.
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[tokio::test]
async fn many_nested_children_created_and_dropped_do_not_grow() {
    let root = Context::background();
    let mut after = Vec::new();
    for _ in 0..6 {
        // A 100,000-deep chain of children, then dropped (which must not
        // overflow the stack either).
        let mut ctx = root.child();
        for _ in 0..100_000 {
            ctx = ctx.child();
        }
        assert!(!ctx.is_cancelled());
        drop(ctx);
        after.push(rss());
    }
    // One chain holds ~100,000 contexts and token nodes (tens of MB); if a
    // round leaked it, five more rounds would add far more than 16 MiB.
    if let (Some(first), Some(last)) = (after[0], after[5]) {
        assert!(
            last < first + 16 * 1024 * 1024,
            "memory grew from {first} to {last} bytes"
        );
    }
    // The root still works and its children still hear it.
    let probe = root.child().child();
    root.cancel();
    assert!(probe.is_cancelled());
}
