//! A worker pool for a service with `weir::Pool`: backpressure, the drop
//! pattern, errors and panics, resizing, and a shutdown with a grace period.
//!
//! A "thumbnail service" has 3 workers and a queue of 4. Each job takes
//! 100ms (image 7 is corrupt, image 13 crashes its decoder). The runtime's
//! clock is paused, so the simulated seconds take no time.
//!
//! Run with `cargo run --example worker_pool`.

use std::time::Duration;

use tokio::time::{Instant, sleep};
use weir::GraceExpired;
use weir::pool::{JobError, Pool, TrySubmitError};

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> anyhow::Result<()> {
    // Quiet the default panic printout for the one deliberate panic below;
    // the pool turns it into an error value (and calls `on_panic`).
    std::panic::set_hook(Box::new(|_| {}));
    tracing_subscriber::fmt()
        .with_env_filter("warn")
        .without_time()
        .with_ansi(false)
        .with_target(false)
        .init();

    let start = Instant::now();
    let pool = Pool::builder()
        .workers(3)
        .queue(4)
        .name("thumbnails")
        .on_panic(|panic| println!("   on_panic: a job panicked: {panic}"))
        .build(|image: u32| async move {
            sleep(Duration::from_millis(if image >= 100 {
                5_000
            } else {
                100
            }))
            .await;
            match image {
                7 => anyhow::bail!("image {image} is corrupt"),
                13 => panic!("decoder crashed on image {image}"),
                _ => Ok(format!("thumb-{image}.png")),
            }
        })?;

    println!("== 1. submit 15 jobs with backpressure (3 workers, queue of 4)");
    let mut tickets = Vec::new();
    for image in 1..=15 {
        tickets.push(pool.submit(image).await?); // waits while the queue is full
    }
    println!(
        "   all 15 accepted after {:?} (submit waited for room)",
        start.elapsed()
    );
    for ticket in tickets {
        let id = ticket.id();
        match ticket.await {
            Ok(file) => println!("   job {id}: {file}"),
            Err(JobError::Failed(e)) => println!("   job {id}: failed: {e}"),
            Err(JobError::Panicked(panic)) => println!("   job {id}: panicked: {panic}"),
            Err(e) => println!("   job {id}: {e}"),
        }
    }
    print!("   after {:?}:\n{}", start.elapsed(), pool.report());

    println!("== 2. the drop pattern: a burst of 10 with try_submit, which never waits");
    let mut accepted = Vec::new();
    let mut handed_back = Vec::new();
    for image in 20..30 {
        match pool.try_submit(image) {
            Ok(ticket) => accepted.push(ticket),
            Err(TrySubmitError::Full(image)) => handed_back.push(image), // e.g. answer 503
            Err(TrySubmitError::Closed(_)) => anyhow::bail!("pool closed"),
        }
    }
    println!(
        "   accepted {}, handed back {:?} (queue full)",
        accepted.len(),
        handed_back
    );
    for ticket in accepted {
        ticket.await?;
    }

    println!("== 3. resize: 3 -> 6 workers while running");
    pool.resize(6)?;
    let t0 = Instant::now();
    let mut tickets = Vec::new();
    for image in 30..36 {
        tickets.push(pool.submit(image).await?);
    }
    for ticket in tickets {
        ticket.await?;
    }
    println!(
        "   6 jobs of 100ms on 6 workers took {:?}; workers now {}",
        t0.elapsed(),
        pool.report().workers
    );
    pool.resize(2)?;

    println!("== 4. shutdown with a 1s grace period: 2 quick jobs, 3 stragglers of 5s");
    let mut quick = Vec::new();
    for image in [40, 41] {
        quick.push(pool.submit(image).await?);
    }
    let mut stragglers = Vec::new();
    for image in [100, 101, 102] {
        stragglers.push(pool.submit(image).await?);
    }
    let t0 = Instant::now();
    let s = match pool.shutdown(Duration::from_secs(1)).await {
        Ok(report) => report,
        Err(err) => {
            // Jobs were cancelled: the error says why, and keeps the report.
            let grace_ran_out = err.error().cause().downcast_ref::<GraceExpired>().is_some();
            println!(
                "   shutdown after {:?}: {err} (grace ran out: {grace_ran_out})",
                t0.elapsed()
            );
            err.into_report()
        }
    };
    for ticket in stragglers {
        match ticket.await {
            Ok(file) => println!("   straggler: {file}"),
            Err(e) => println!("   straggler: {e}"),
        }
    }
    print!("   final report:\n{s}");
    println!(
        "   submitted {} = completed {} + failed {} + panicked {} + cancelled {}; rejected {} were handed back",
        s.submitted, s.completed, s.failed, s.panicked, s.cancelled, s.rejected
    );
    assert!(s.is_balanced());
    assert_eq!(s.submitted, s.finished());
    match pool.try_submit(99) {
        Err(e) => {
            let reason = e.to_string();
            println!(
                "   after shutdown: try_submit -> {reason} (job {} handed back)",
                e.into_inner()
            );
        }
        Ok(_) => anyhow::bail!("a closed pool accepted a job"),
    }
    Ok(())
}
