//! The cancellation pattern: walk away from a child after a deadline without
//! leaking it.
//!
//! A parent asks a child for an answer and will wait at most 1s. The child is
//! slow (3s). Two ways to give up:
//!
//! 1. naive: `tokio::time::timeout` on the child's `JoinHandle`. The parent
//!    gets its timeout, but dropping a `JoinHandle` detaches the task: the
//!    child keeps running, holding whatever it holds, and nobody will ever
//!    read its answer (Go's leaked goroutine blocked on a send).
//! 2. weir: the child is a worker whose context has a deadline
//!    (`Context::background().with_timeout(d)`), and the parent waits
//!    through the worker's handle. The child sees the cancellation — and
//!    why: the deadline — cleans up and ends; nothing is left running.
//!
//! The runtime's clock is paused, so the simulated time takes no time.
//! Run with `cargo run --example cancellation`.

use std::time::Duration;

use weir::{Context, WorkerBuilder, with_timeout};

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// The child's slow work: 3s to produce an answer.
async fn slow_answer() -> u64 {
    tokio::time::sleep(Duration::from_secs(3)).await;
    42
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> anyhow::Result<()> {
    let before = alive();

    println!("== naive: timeout on the JoinHandle");
    let child = tokio::spawn(slow_answer());
    match tokio::time::timeout(Duration::from_secs(1), child).await {
        Ok(answer) => println!("   answer: {}", answer?),
        Err(_) => println!("   parent: gave up after 1s"),
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "   tasks alive after walking away: {} (the child leaked)",
        alive() - before
    );
    tokio::time::sleep(Duration::from_secs(2)).await; // let it finish in vain
    println!("   ... 2s later the leaked child finished; its answer went nowhere");

    println!("== weir: a context with a deadline and the quit handshake");
    let before = alive();
    let start = tokio::time::Instant::now();
    // The child's context is cancelled after 1s (or when the parent stops it).
    let deadline = Context::background().with_timeout(Duration::from_secs(1));
    let child = WorkerBuilder::new("lookup")
        .context(&deadline)
        .spawn(|ctx| async move {
            match ctx.run(slow_answer()).await {
                Ok(answer) => anyhow::Ok(Some(answer)),
                Err(stopped) => {
                    println!(
                        "   child: {} after {:?}, cleaning up",
                        stopped.cause(),
                        start.elapsed()
                    );
                    Ok(None)
                }
            }
        });
    // The parent waits for the answer with its own limit, then walks away.
    let answer = with_timeout(child.join(), Duration::from_secs(2)).await;
    match answer {
        Ok(Ok(Some(answer))) => println!("   answer: {answer}"),
        Ok(Ok(None)) => println!("   parent: no answer within the deadline, moving on"),
        Ok(Err(err)) => println!("   child failed: {err}"),
        // Dropping `child.join()` on timeout aborts the child: no leak either.
        Err(elapsed) => println!("   parent: {elapsed}, child aborted"),
    }
    tokio::task::yield_now().await;
    let leaked = alive() - before;
    println!("   tasks alive after walking away: {leaked}");
    anyhow::ensure!(leaked == 0);
    Ok(())
}
