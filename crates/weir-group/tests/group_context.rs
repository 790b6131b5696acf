//! A group under a `Context`: the first failure is the cause of the group's
//! context, a parent's deadline stops the group, and the parent is never
//! cancelled by the group.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::time::{Instant, sleep};
use weir_context::{Cause, Context};
use weir_group::Group;

#[tokio::test(start_paused = true)]
async fn the_first_failure_is_the_cause_of_the_groups_context() {
    let parent = Context::background();
    let mut group: Group<u32> = Group::with_context(&parent);
    let ctx = group.context().clone();
    for i in 0..4u32 {
        group
            .spawn(async move {
                sleep(Duration::from_millis(10 * u64::from(i + 1))).await;
                if i == 1 {
                    anyhow::bail!("replica {i} is down");
                }
                if i == 2 {
                    anyhow::bail!("second failure, later");
                }
                Ok(i)
            })
            .await;
    }
    let err = group.wait().await.unwrap_err();
    assert_eq!(err.to_string(), "task #1 failed: replica 1 is down");
    assert_eq!(
        ctx.cause().unwrap().to_string(),
        "task failed: replica 1 is down"
    );
    assert!(
        !parent.is_cancelled(),
        "a group's failure never cancels its parent"
    );

    // A panic is a cause too.
    let mut group: Group<(), anyhow::Error> = Group::new();
    let ctx = group.context().clone();
    group.spawn(async { panic!("bad state") }).await;
    let _ = group.wait().await;
    assert_eq!(ctx.cause().unwrap().to_string(), "task panicked: bad state");
}

#[tokio::test(start_paused = true)]
async fn a_parents_deadline_stops_cooperative_tasks_and_says_why() {
    let start = Instant::now();
    let parent = Context::background().with_timeout(Duration::from_millis(300));
    let mut group: Group<u32> = Group::with_context(&parent);
    for i in 0..3u32 {
        let ctx = group.context().clone();
        group
            .spawn(async move {
                match ctx.run(sleep(Duration::from_secs(10))).await {
                    Ok(()) => Ok(i),
                    Err(stopped) => Err(anyhow::anyhow!("stopped: {}", stopped.cause())),
                }
            })
            .await;
    }
    let ctx = group.context().clone();
    let results = group.wait_all().await;
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert_eq!(results.len(), 3);
    assert!(matches!(ctx.cause(), Some(Cause::DeadlineExceeded)));
    assert!(results.iter().all(|r| r.is_err()));
}

#[tokio::test]
async fn cancel_gives_the_plain_cancelled_cause() {
    let group: Group = Group::new();
    group.cancel();
    assert!(matches!(group.context().cause(), Some(Cause::Cancelled)));
    assert!(group.token().is_cancelled());
}
