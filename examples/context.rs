//! Context with timeout, with cancel, and with a cause — Go's `context`
//! programs done with weir, printing why each piece of work stopped.
//!
//! Run with `cargo run --example context`.

use std::time::Duration;

use tokio::time::{Instant, sleep};
use weir::{Bounded, Cause, Context, Pipeline, WorkerBuilder};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let start = Instant::now();
    let at = move || format!("{:>4}ms", start.elapsed().as_millis());

    // 1. Context with timeout: the work takes 200ms, the context allows 150ms.
    let ctx = Context::background().with_timeout(Duration::from_millis(150));
    let work = async {
        sleep(Duration::from_millis(200)).await;
        "paper"
    };
    match ctx.run(work).await {
        Ok(v) => println!("{} 1. work complete: {v}", at()),
        Err(stopped) => println!("{} 1. work cancelled: {}", at(), stopped.cause()),
    }

    // 2. Context with cancel: someone else cancels after 50ms, with a cause.
    let ctx = Context::background();
    let canceller = ctx.clone();
    tokio::spawn(async move {
        sleep(Duration::from_millis(50)).await;
        canceller.cancel_with("the user pressed stop");
    });
    match ctx.run(sleep(Duration::from_secs(10))).await {
        Ok(()) => println!("{} 2. slept 10s", at()),
        Err(stopped) => println!("{} 2. work cancelled: {}", at(), stopped.cause()),
    }

    // 3. A child never outlives its parent's deadline.
    let parent = Context::background().with_timeout(Duration::from_millis(100));
    let child = parent.with_timeout(Duration::from_secs(5));
    let t = Instant::now();
    child.cancelled().await;
    println!(
        "{} 3. child asked for 5s, ended after {}ms: {}",
        at(),
        t.elapsed().as_millis() / 10 * 10,
        child.cause().map_or("?".into(), |c| c.to_string())
    );

    // 4. A pipeline under a context: its error says why it stopped.
    let ctx = Context::background().with_timeout(Duration::from_millis(120));
    let result = Pipeline::from_iter(0..u64::MAX)
        .context(ctx)
        .map("tick", 2, |n| async move {
            sleep(Duration::from_millis(20)).await;
            anyhow::Ok(n)
        })
        .run()
        .await;
    match result {
        Err(e) if matches!(e.error().cause(), Some(Cause::DeadlineExceeded)) => {
            println!("{} 4. pipeline: {e}", at());
        }
        other => println!("{} 4. pipeline: unexpected {other:?}", at()),
    }

    // 5. The same deadline on a bounded fan-out and on a worker: one way to
    //    give anything a deadline, `.context(ctx)`.
    let ctx = Context::background().with_timeout(Duration::from_millis(100));
    let err = Bounded::new(3)
        .context(&ctx)
        .run(0..100u64, |n| async move {
            sleep(Duration::from_millis(30)).await;
            anyhow::Ok(n)
        })
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("the bounded run should hit the deadline"))?;
    println!(
        "{} 5. bounded: {err} ({} done)",
        at(),
        err.report().succeeded
    );
    let worker = WorkerBuilder::new("poller")
        .context(&ctx)
        .spawn(|ctx| async move {
            ctx.cancelled().await;
            anyhow::Ok(ctx.cause())
        });
    let why = worker.join().await?;
    println!(
        "{} 5. worker: stopped because {}",
        at(),
        why.map_or("?".into(), |c| c.to_string())
    );

    // 6. Tell the causes apart: deadline, plain cancel, your own error.
    for (name, ctx) in [
        (
            "deadline",
            Context::background().with_timeout(Duration::ZERO),
        ),
        ("cancel", {
            let c = Context::background();
            c.cancel();
            c
        }),
        ("own cause", {
            let c = Context::background();
            c.cancel_with(std::io::Error::other("disk full"));
            c
        }),
    ] {
        ctx.cancelled().await;
        let kind = match ctx.cause() {
            Some(Cause::DeadlineExceeded) => "DeadlineExceeded",
            Some(Cause::Cancelled) => "Cancelled",
            Some(Cause::Error(_)) => "Error",
            _ => "?",
        };
        println!(
            "{} 6. {name:<9} -> Cause::{kind}: {}",
            at(),
            ctx.cause().map_or("?".into(), |c| c.to_string())
        );
    }
    Ok(())
}
