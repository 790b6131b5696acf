//! The behaviour checked by Go's `golang.org/x/sync/errgroup` tests
//! (`errgroup_test.go`: TestZeroGroup, TestWithContext, TestTryGo,
//! TestGoLimit, TestCancelCause), ported to weir's `Group`.
//!
//! Where weir differs on purpose, the test says so: waiting consumes the
//! group (Go's `Wait` may be called again), so "reuse after Wait" becomes
//! "join every task with `join_next`, then go on"; `SetLimit(0)` and changing
//! the limit of a busy group are errors instead of a hang and a panic.
#![allow(clippy::unwrap_used)]

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::poll;
use tokio::sync::Semaphore;
use weir_group::{Group, GroupError, LimitError};

const ERR1: &str = "errgroup_test: 1";
const ERR2: &str = "errgroup_test: 2";
const DOOM: &str = "group_test: doomed";

/// A task that returns `err` (or `Ok`) after `at` ms of paused time, so that
/// the order of completion is the order of spawning, as in Go's tests where
/// each `Go` is followed by a `Wait`.
async fn outcome(err: Option<&'static str>, at: u64) -> Result<(), &'static str> {
    tokio::time::sleep(Duration::from_millis(at)).await;
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn failed_with(result: Result<Vec<()>, GroupError<&'static str>>) -> Option<&'static str> {
    match result {
        Ok(_) => None,
        Err(GroupError::Failed { error, .. }) => Some(error),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

/// TestZeroGroup: a group needs no setup; `wait` returns the first error.
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
            assert_eq!(failed_with(group.wait().await), want, "errs {prefix:?}");
        }
    }
}

/// TestWithContext: the first error is returned and the derived token is
/// cancelled once the group has been waited for, error or not.
#[tokio::test(start_paused = true)]
async fn with_token_cancels_on_error_and_after_wait() {
    let cases: [(&[Option<&'static str>], Option<&'static str>); 4] = [
        (&[], None),
        (&[None], None),
        (&[Some(DOOM)], Some(DOOM)),
        (&[Some(DOOM), None], Some(DOOM)),
    ];
    for (errs, want) in cases {
        let parent = tokio_util::sync::CancellationToken::new();
        let mut group: Group<(), &'static str> = Group::with_token(parent.clone());
        let token = group.token().clone();
        for err in errs {
            group.spawn(outcome(*err, 0)).await;
        }
        assert_eq!(failed_with(group.wait().await), want, "errs {errs:?}");
        assert!(token.is_cancelled(), "token not cancelled for {errs:?}");
        assert!(!parent.is_cancelled(), "the parent must not be cancelled");
    }
}

/// TestCancelCause, without the cause: the same cases spawned with
/// `try_spawn` on an unlimited group.
#[tokio::test(start_paused = true)]
async fn try_spawn_cases_return_the_error_and_cancel() {
    let cases: [(&[Option<&'static str>], Option<&'static str>); 4] = [
        (&[], None),
        (&[None], None),
        (&[Some(DOOM)], Some(DOOM)),
        (&[Some(DOOM), None], Some(DOOM)),
    ];
    for (errs, want) in cases {
        let mut group: Group<(), &'static str> = Group::new();
        let token = group.token().clone();
        for err in errs {
            assert!(group.try_spawn(outcome(*err, 0)).is_ok());
        }
        assert_eq!(failed_with(group.wait().await), want, "errs {errs:?}");
        assert!(token.is_cancelled());
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

/// TestTryGo: refuses at the limit, succeeds after slots free, follows limit
/// changes; `SetLimit(0)` is refused instead of blocking every call.
#[tokio::test]
async fn try_spawn_refuses_at_limit_and_follows_limit_changes() {
    let gate = Arc::new(Semaphore::new(0));
    let n = 42;
    let mut group: Group<(), &'static str> = Group::new().limit(n).unwrap();
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

    // Switch limit.
    group.set_limit(1).unwrap();
    assert_eq!(group.max_tasks(), Some(1));
    assert!(group.try_spawn(blocked(&gate)).is_ok());
    assert!(group.try_spawn(blocked(&gate)).is_err());
    gate.add_permits(1);
    assert_eq!(join_all(&mut group).await, 1);

    // Go blocks all calls with SetLimit(0); weir refuses the limit.
    assert_eq!(group.set_limit(0), Err(LimitError::Zero));
    assert_eq!(
        group.max_tasks(),
        Some(1),
        "a refused limit changes nothing"
    );
    assert!(group.try_spawn(blocked(&gate)).is_ok());
    gate.add_permits(1);
    assert!(group.wait().await.is_ok());
}

/// TestGoLimit: with a limit of 10, no more than 10 tasks are ever active,
/// on a multi-thread runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_never_exceeds_the_limit() {
    const LIMIT: usize = 10;
    let mut group: Group<(), String> = Group::new().limit(LIMIT).unwrap();
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
    let done = group.wait().await.unwrap();
    assert_eq!(done.len(), (1 << 10) + 1);
}

/// Go's `Go` blocks while the group is at its limit, and returns once a
/// slot frees.
#[tokio::test]
async fn spawn_blocks_at_the_limit_until_a_slot_frees() {
    let gate = Arc::new(Semaphore::new(0));
    let mut group: Group<(), &'static str> = Group::new().limit(1).unwrap();
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
    assert_eq!(group.wait().await.unwrap().len(), 2);
}

/// Go panics when SetLimit is called with goroutines active; weir returns
/// `LimitError::Busy` and keeps the old limit, and accepts the change once
/// the tasks are joined.
#[tokio::test]
async fn changing_the_limit_of_a_busy_group_is_an_error() {
    let gate = Arc::new(Semaphore::new(0));
    let mut group: Group<(), &'static str> = Group::new().limit(2).unwrap();
    group.spawn(blocked(&gate)).await;
    group.spawn(blocked(&gate)).await;
    assert_eq!(group.set_limit(5), Err(LimitError::Busy { running: 2 }));
    assert_eq!(group.clear_limit(), Err(LimitError::Busy { running: 2 }));
    assert_eq!(group.max_tasks(), Some(2));
    assert!(
        group.try_spawn(blocked(&gate)).is_err(),
        "still limited to 2"
    );

    gate.add_permits(2);
    assert_eq!(join_all(&mut group).await, 2);
    group.set_limit(3).unwrap();
    for _ in 0..3 {
        assert!(group.try_spawn(blocked(&gate)).is_ok());
    }
    assert!(group.try_spawn(blocked(&gate)).is_err());
    gate.add_permits(3);
    assert_eq!(join_all(&mut group).await, 3);

    group.clear_limit().unwrap();
    assert_eq!(group.max_tasks(), None);
    for _ in 0..100 {
        assert!(group.try_spawn(blocked(&gate)).is_ok(), "unlimited");
    }
    gate.add_permits(100);
    assert_eq!(group.wait().await.unwrap().len(), 100);
}
