//! tokio's `Semaphore` by hand, and how weir's bounded helpers use it.
//!
//! 1. The hand-written pattern: take a permit *before* spawning, move it into
//!    the task, so it is released exactly when the work ends (even on panic
//!    or abort, because dropping the task drops the permit).
//! 2. The mistake it avoids: taking the permit *inside* the task lets every
//!    task be spawned at once; they only queue on the semaphore, so a million
//!    items mean a million tasks in memory.
//! 3. `weir::for_each_bounded` is pattern 1 plus what you would add next:
//!    a JoinSet to collect results in input order, fail-fast on the first
//!    error, panics turned into errors, and a `Context` that stops it
//!    (`weir::Bounded::new(limit).context(ctx)`).
//!
//! Run with `cargo run --example semaphore`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

async fn work(id: u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(20)).await;
    id * 2
}

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    const LIMIT: usize = 3;

    println!("== 1. permit before spawn (the right way)");
    let permits = Arc::new(Semaphore::new(LIMIT));
    let mut set = JoinSet::new();
    let mut most_tasks = 0;
    for id in 0..12 {
        // Waits here, in the spawning loop, while LIMIT tasks are running.
        let permit = permits.clone().acquire_owned().await?;
        set.spawn(async move {
            let _permit = permit; // released when this task ends
            work(id).await
        });
        most_tasks = most_tasks.max(alive());
    }
    let mut sum = 0;
    while let Some(r) = set.join_next().await {
        sum += r?;
    }
    println!("sum {sum}; at most {most_tasks} tasks existed at once (the limit is {LIMIT})");

    println!("\n== 2. permit inside the task (the mistake)");
    let permits = Arc::new(Semaphore::new(LIMIT));
    let mut set = JoinSet::new();
    for id in 0..12 {
        let permits = permits.clone();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            anyhow::Ok(work(id).await)
        });
    }
    println!(
        "{} tasks exist right after the loop: still only {LIMIT} run at once, \
         but every item already has a task waiting in memory",
        alive()
    );
    while let Some(r) = set.join_next().await {
        r??;
    }

    println!("\n== 3. weir::for_each_bounded (pattern 1, plus results, errors, cancel)");
    let results = weir::for_each_bounded(0..12, LIMIT, |id| async move {
        Ok::<_, anyhow::Error>(work(id).await)
    })
    .await?;
    println!("results in input order: {results:?}");
    // Finished tasks are released by the worker threads a moment later.
    tokio::time::sleep(Duration::from_millis(10)).await;
    println!("{} tasks alive afterwards", alive());
    Ok(())
}
