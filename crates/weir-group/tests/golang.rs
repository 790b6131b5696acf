//! The behaviour checked by Go's `golang.org/x/sync/errgroup` tests
//! (`errgroup_test.go`: TestZeroGroup, TestWithContext, TestTryGo,
//! TestGoLimit, TestCancelCause), ported to weir's `Group`.
//!
//! Where weir differs on purpose, the test says so: `join` consumes the
//! group (Go's `Wait` may be called again), so "reuse after Wait" becomes
//! "join every task with `join_next`, then go on"; the limit is fixed when
//! the group is built (Go's `SetLimit` may change it between waits), so
//! "switch limit" builds a new group; `SetLimit(0)` is a `ConfigError`
//! instead of a hang.
#![allow(clippy::unwrap_used)]

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::poll;
use tokio::sync::Semaphore;
use weir_context::{Cause, Context, Problem};
use weir_group::{Group, GroupError};

const ERR1: &str = "errgroup_test: 1";
const ERR2: &str = "errgroup_test: 2";

/// Go's `errDoom := errors.New("group_test: doomed")`: an error value that
/// the group's context must give back as its cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Doom;

impl std::fmt::Display for Doom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("group_test: doomed")
    }
}

/// A task that returns `err` (or `Ok`) after `at` ms of paused time, so that
/// the order of completion is the order of spawning, as in Go's tests where
/// each `Go` is followed by a `Wait`.
async fn outcome<E>(err: Option<E>, at: u64) -> Result<(), E> {
    tokio::time::sleep(Duration::from_millis(at)).await;
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The first error `join` reports, or `None` when it returned `Ok`.
async fn join_first<E>(group: Group<(), E>) -> Option<E>
where
    E: Copy + std::fmt::Display + std::fmt::Debug + Send + Sync + 'static,
{
    match group.join().await {
        Ok(report) => {
            assert!(report.is_balanced(), "{report}");
            None
        }
        Err(err) => {
            assert!(err.report().is_balanced(), "{}", err.report());
            match err.error().first() {
                GroupError::Failed { error, .. } => Some(**error),
                other => panic!("unexpected error: {other}"),
            }
        }
    }
}

/// TestZeroGroup: a group needs no setup; `join` returns the first error.
#[tokio::test(start_paused = true)]
async fn zero_group_returns_first_error() {
    let cases: [&[Option<&'static str>]; 5] = [
        &[],
        &[None],
        &[Some(ERR1)],
        &[Some(ERR1), None],
        &[Some(ERR1), None, Some(ERR2)],
    ];
    for errs in cases {
        // Go waits after every Go; here every prefix gets its own group.
        for end in 0..=errs.len() {
            let prefix = &errs[..end];
            let mut group: Group<(), &'static str> = Group::default();
            for (i, err) in prefix.iter().enumerate() {
                group.spawn(outcome(*err, i as u64)).await;
            }
            let want = prefix.iter().flatten().next().copied();
            assert_eq!(join_first(group).await, want, "errs {prefix:?}");
        }
    }
}

/// TestWithContext: the first error is returned and the derived context is
/// cancelled once the group has been joined, error or not; the parent never
/// is.
#[tokio::test(start_paused = true)]
async fn with_context_cancels_on_error_and_after_join() {
    let cases: [(&[Option<Doom>], Option<Doom>); 4] = [
        (&[], None),
        (&[None], None),
        (&[Some(Doom)], Some(Doom)),
        (&[Some(Doom), None], Some(Doom)),
    ];
    for (errs, want) in cases {
        let parent = Context::background();
        let mut group: Group<(), Doom> = Group::builder().context(&parent).build().unwrap();
        let ctx = group.context().clone();
        for err in errs {
            group.spawn(outcome(*err, 0)).await;
        }
        assert_eq!(join_first(group).await, want, "errs {errs:?}");
        assert!(ctx.is_cancelled(), "context not cancelled for {errs:?}");
        assert!(!parent.is_cancelled(), "the parent must not be cancelled");
    }
}

/// TestCancelCause: the same cases spawned with `try_spawn`; the cause of
/// the group's context is the first error *itself* (Go's
/// `errors.Is(context.Cause(ctx), errDoom)`), or a plain cancellation once
/// the group is joined without an error.
#[tokio::test(start_paused = true)]
async fn cancel_cause_is_the_first_error_itself() {
    let cases: [(&[Option<Doom>], Option<Doom>); 4] = [
        (&[], None),
        (&[None], None),
        (&[Some(Doom)], Some(Doom)),
        (&[Some(Doom), None], Some(Doom)),
    ];
    for (errs, want) in cases {
        let mut group: Group<(), Doom> = Group::builder()
            .context(Context::background())
            .build()
            .unwrap();
        let ctx = group.context().clone();
        for err in errs {
            assert!(group.try_spawn(outcome(*err, 0)).is_ok());
        }
        assert_eq!(join_first(group).await, want, "errs {errs:?}");
        let cause = ctx.cause().unwrap();
        match want {
            Some(doom) => assert_eq!(cause.downcast_ref::<Doom>(), Some(&doom), "{cause:?}"),
            None => assert_eq!(cause, Cause::Cancelled),
        }
    }
}

/// A task that blocks until the test opens the gate (Go's `ch <- struct{}{}`).
fn blocked(gate: &Arc<Semaphore>) -> impl Future<Output = Result<(), &'static str>> + use<> {
    let gate = Arc::clone(gate);
    async move {
        gate.acquire().await.unwrap().forget();
        Ok(())
    }
}

async fn join_all(group: &mut Group<(), &'static str>) -> usize {
    let mut joined = 0;
    while let Some(result) = group.join_next().await {
        result.unwrap();
        joined += 1;
    }
    joined
}

/// TestTryGo: refuses at the limit, succeeds after slots free, and with a
/// limit of 1 refuses the second; `SetLimit(0)` is refused at build instead
/// of blocking every call.
#[tokio::test]
async fn try_spawn_refuses_at_limit_and_follows_the_limit() {
    let gate = Arc::new(Semaphore::new(0));
    let n = 42;
    let mut group: Group<(), &'static str> = Group::builder().limit(n).build().unwrap();
    for i in 0..n {
        assert!(
            group.try_spawn(blocked(&gate)).is_ok(),
            "try_spawn should succeed at call {i}"
        );
    }
    assert!(group.try_spawn(blocked(&gate)).is_err(), "at the limit");

    gate.add_permits(n);
    assert_eq!(join_all(&mut group).await, n);
    assert!(
        group.try_spawn(blocked(&gate)).is_ok(),
        "after all finished"
    );
    gate.add_permits(1);
    assert_eq!(join_all(&mut group).await, 1);
    assert!(group.join().await.is_ok());

    // Switch limit: weir fixes the limit when the group is built.
    let mut group: Group<(), &'static str> = Group::builder().limit(1).build().unwrap();
    assert_eq!(group.max_tasks(), Some(1));
    assert!(group.try_spawn(blocked(&gate)).is_ok());
    assert!(group.try_spawn(blocked(&gate)).is_err());
    gate.add_permits(1);
    assert_eq!(join_all(&mut group).await, 1);
    let report = group.join().await.unwrap();
    assert_eq!((report.spawned, report.succeeded), (1, 1));

    // Block all calls: Go's SetLimit(0) makes every TryGo fail forever;
    // weir refuses the limit.
    let refused = Group::<(), &'static str>::builder()
        .limit(0)
        .build()
        .unwrap_err();
    assert_eq!(refused.problem(), &Problem::Zero);
    assert_eq!((refused.construct(), refused.setting()), ("group", "limit"));
}

/// TestGoLimit: with a limit of 10, no more than 10 tasks are ever active,
/// on a multi-thread runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_never_exceeds_the_limit() {
    const LIMIT: usize = 10;
    let mut group: Group<(), String> = Group::builder().limit(LIMIT).build().unwrap();
    let active = Arc::new(AtomicUsize::new(0));
    for _ in 0..=1 << 10 {
        let active = Arc::clone(&active);
        group
            .spawn(async move {
                let n = active.fetch_add(1, Ordering::SeqCst) + 1;
                if n > LIMIT {
                    return Err(format!("saw {n} active tasks; want <= {LIMIT}"));
                }
                // Give other tasks a chance to increment `active`.
                tokio::task::yield_now().await;
                active.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            })
            .await;
    }
    let report = group.join().await.unwrap();
    assert_eq!(report.succeeded, (1 << 10) + 1);
}

/// Go's `Go` blocks while the group is at its limit, and returns once a
/// slot frees.
#[tokio::test]
async fn spawn_blocks_at_the_limit_until_a_slot_frees() {
    let gate = Arc::new(Semaphore::new(0));
    let mut group: Group<(), &'static str> = Group::builder().limit(1).build().unwrap();
    group.spawn(blocked(&gate)).await;
    {
        let mut second = pin!(group.spawn(async { Ok(()) }));
        for _ in 0..10 {
            assert!(poll!(second.as_mut()).is_pending(), "spawn must wait");
            tokio::task::yield_now().await;
        }
        gate.add_permits(1);
        second.await;
    }
    assert_eq!(group.join().await.unwrap().succeeded, 2);
}
