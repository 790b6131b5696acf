//! A group under a `Context`: the first failure is the cause of the group's
//! context — the error value itself, downcastable — a parent's deadline
//! stops the group, and the parent is never cancelled by the group.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use weir_context::{Cause, Context};
use weir_group::{ErrorPolicy, Group, GroupError};

/// An error type of the user's, not `Clone`, to downcast the cause to.
#[derive(Debug, PartialEq, Eq)]
struct ReplicaDown {
    replica: u32,
}

impl std::fmt::Display for ReplicaDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "replica {} is down", self.replica)
    }
}

impl std::error::Error for ReplicaDown {}

#[tokio::test(start_paused = true)]
async fn the_first_failure_is_the_cause_as_the_original_value() {
    let parent = Context::background();
    let mut group: Group<u32, ReplicaDown> = Group::builder().context(&parent).build().unwrap();
    let ctx = group.context().clone();
    for i in 0..4u32 {
        group
            .spawn(async move {
                sleep(Duration::from_millis(10 * u64::from(i + 1))).await;
                if i == 1 || i == 2 {
                    return Err(ReplicaDown { replica: i });
                }
                Ok(i)
            })
            .await;
    }
    let err = group.join().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "task #1 failed: replica 1 is down\ntask #2 failed: replica 2 is down"
    );
    let cause = ctx.cause().unwrap();
    assert_eq!(cause.to_string(), "replica 1 is down");
    assert_eq!(
        cause.downcast_ref::<ReplicaDown>(),
        Some(&ReplicaDown { replica: 1 })
    );
    // Not a copy: the very value the error of `join` holds.
    let first = err.error().first().error().unwrap();
    assert!(std::ptr::eq(
        first,
        cause.downcast_ref::<ReplicaDown>().unwrap()
    ));
    assert!(
        !parent.is_cancelled(),
        "a group's failure never cancels its parent"
    );
}

#[tokio::test(start_paused = true)]
async fn an_anyhow_error_is_the_cause_and_downcasts() {
    let mut group: Group<(), anyhow::Error> = Group::new();
    let ctx = group.context().clone();
    group
        .spawn_named("fetch", async {
            let inner = anyhow::Error::new(ReplicaDown { replica: 7 });
            Err(inner.context("fetching the index"))
        })
        .await;
    let err = group.join().await.unwrap_err();
    assert_eq!(
        err.error().first().to_string(),
        "task fetch failed: fetching the index"
    );
    let cause = ctx.cause().unwrap();
    // The cause prints the whole chain; it is the anyhow::Error itself, and
    // reaches the error inside it.
    assert_eq!(cause.to_string(), "fetching the index: replica 7 is down");
    let error = cause.downcast_ref::<anyhow::Error>().unwrap();
    assert_eq!(
        error.downcast_ref::<ReplicaDown>(),
        Some(&ReplicaDown { replica: 7 })
    );
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_the_cause_with_the_task_named() {
    let mut group: Group<(), anyhow::Error> = Group::new();
    let ctx = group.context().clone();
    group.spawn(async { Ok(()) }).await;
    group
        .spawn_named("parser", async { panic!("bad state") })
        .await;
    let err = group.join().await.unwrap_err();
    assert!(err.error().first().is_panic());
    let cause = ctx.cause().unwrap();
    assert_eq!(cause.to_string(), "task parser panicked: bad state");
    let as_error = cause.downcast_ref::<GroupError<anyhow::Error>>().unwrap();
    assert_eq!(as_error.panic().unwrap().message(), "bad state");

    // An unnamed task does not know its spawn index (the group keeps it):
    // the cause names it by its tokio task id; `join` by its index.
    let mut group: Group<(), anyhow::Error> = Group::new();
    let ctx = group.context().clone();
    group.spawn(async { Ok(()) }).await;
    group.spawn(async { panic!("second") }).await;
    let err = group.join().await.unwrap_err();
    assert_eq!(err.to_string(), "task #1 panicked: second");
    let cause = ctx.cause().unwrap().to_string();
    assert!(
        cause.starts_with("task #? (tokio task ") && cause.ends_with(") panicked: second"),
        "{cause}"
    );
}

#[tokio::test(start_paused = true)]
async fn under_continue_a_failure_is_no_cause() {
    let mut group: Group<(), ReplicaDown> = Group::builder()
        .error_policy(ErrorPolicy::Continue)
        .build()
        .unwrap();
    let ctx = group.context().clone();
    group.spawn(async { Err(ReplicaDown { replica: 0 }) }).await;
    group.spawn(async { panic!("also no cause") }).await;
    while group.join_next().await.is_some() {}
    assert!(!ctx.is_cancelled());
    assert!(group.join().await.is_ok(), "nothing left to join");
    assert_eq!(ctx.cause(), Some(Cause::Cancelled), "cancelled when gone");
}

#[tokio::test(start_paused = true)]
async fn a_parents_deadline_stops_cooperative_tasks_and_says_why() {
    let start = Instant::now();
    let parent = Context::background().with_timeout(Duration::from_millis(300));
    let mut group: Group<u32> = Group::builder().context(&parent).build().unwrap();
    for i in 0..3u32 {
        let ctx = group.context().clone();
        group
            .spawn(async move {
                match ctx.run(sleep(Duration::from_secs(10))).await {
                    Ok(()) => Ok(i),
                    Err(stopped) => Err(anyhow::anyhow!(stopped)),
                }
            })
            .await;
    }
    let ctx = group.context().clone();
    let err = group.join().await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert!(matches!(ctx.cause(), Some(Cause::DeadlineExceeded)));
    assert_eq!(err.error().len(), 3);
    assert_eq!(
        err.error().first().to_string(),
        "task #0 failed: stopped: context deadline exceeded"
    );
    assert_eq!(err.report().failed, 3);
}

#[tokio::test(start_paused = true)]
async fn a_token_converts_and_the_group_never_cancels_it() {
    let parent = CancellationToken::new();
    let group: Group<(), &'static str> = Group::builder().context(&parent).build().unwrap();
    parent.cancel();
    assert!(group.is_cancelled());
    assert_eq!(group.context().cause(), Some(Cause::Cancelled));

    let parent = CancellationToken::new();
    let mut group: Group<(), &'static str> =
        Group::builder().context(parent.clone()).build().unwrap();
    group.spawn(async { Err("x") }).await;
    assert!(group.join_next().await.unwrap().is_err());
    assert!(group.is_cancelled());
    assert!(!parent.is_cancelled());
    group.cancel();
    assert!(!parent.is_cancelled());
    drop(group);
    assert!(
        !parent.is_cancelled(),
        "dropping the group spares the parent"
    );
}

#[tokio::test]
async fn cancel_gives_the_plain_cancelled_cause() {
    let group: Group = Group::new();
    group.cancel();
    assert_eq!(group.context().cause(), Some(Cause::Cancelled));
    assert!(group.context().token().is_cancelled());
}
