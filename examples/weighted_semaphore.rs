//! A weighted semaphore (`weir::Semaphore`, Go's `x/sync/semaphore`) as a
//! memory budget for an image decoder.
//!
//! 1. Eight images of different sizes share 100 MiB: each decode takes its
//!    size in permits *before* it is spawned, so memory in use never passes
//!    100 MiB and no more tasks exist than fit.
//! 2. Strict order: ten small jobs keep taking and returning 10 MiB; a job
//!    that needs all 100 MiB still gets its turn, because it queues ahead of
//!    their next requests (small requests cannot starve a large one).
//! 3. A wait bounded by a deadline ends with the cause; a request larger
//!    than the whole budget is refused at once instead of hanging.
//! 4. Go's style: forget the guard, release by count; releasing more than
//!    is held is an error, not a panic.
//!
//! The runtime's clock is paused, so the simulated seconds take no time.
//!
//! Run with `cargo run --example weighted_semaphore`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use weir::{Context, Semaphore, SemaphoreError};

const BUDGET_MIB: usize = 100;

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> anyhow::Result<()> {
    let memory = Semaphore::new(BUDGET_MIB)?;
    budget(&memory).await?;
    no_starvation(&memory).await?;
    deadlines(&memory).await?;
    go_style(&memory)?;
    println!(
        "\ndone: every permit is back: {} of {BUDGET_MIB} free",
        memory.available()
    );
    assert_eq!(memory.available(), BUDGET_MIB);
    Ok(())
}

async fn budget(memory: &Semaphore) -> anyhow::Result<()> {
    println!("== 1. eight decodes share a {BUDGET_MIB} MiB budget");
    let start = Instant::now();
    let in_use = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut decodes = JoinSet::new();
    for (name, mib) in [
        ("a.png", 60u32),
        ("b.png", 30),
        ("c.jpg", 50),
        ("d.jpg", 10),
        ("e.png", 80),
        ("f.gif", 20),
        ("g.png", 40),
        ("h.jpg", 90),
    ] {
        // Waits here, in the spawning loop, until the memory is free.
        let permit = memory.acquire(mib).await?;
        let now = in_use.fetch_add(mib as usize, Ordering::SeqCst) + mib as usize;
        peak.fetch_max(now, Ordering::SeqCst);
        println!(
            "   {:>4} ms  decode {name} ({mib:>2} MiB), {now:>3} MiB in use",
            start.elapsed().as_millis()
        );
        let in_use = Arc::clone(&in_use);
        decodes.spawn(async move {
            tokio::time::sleep(Duration::from_millis(u64::from(mib) * 2)).await;
            in_use.fetch_sub(mib as usize, Ordering::SeqCst);
            drop(permit); // the memory goes back as the decode ends
        });
    }
    while let Some(done) = decodes.join_next().await {
        done?;
    }
    let peak = peak.load(Ordering::SeqCst);
    println!("   peak memory in use: {peak} MiB of {BUDGET_MIB}");
    assert!(peak <= BUDGET_MIB);
    Ok(())
}

async fn no_starvation(memory: &Semaphore) -> anyhow::Result<()> {
    println!("\n== 2. a {BUDGET_MIB} MiB job among ten busy 10 MiB jobs");
    let running = Arc::new(AtomicBool::new(true));
    let mut small = JoinSet::new();
    for _ in 0..10 {
        let (memory, running) = (memory.clone(), Arc::clone(&running));
        small.spawn(async move {
            while running.load(Ordering::SeqCst) {
                let permit = memory.acquire(10).await?;
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(permit);
            }
            Ok::<_, SemaphoreError>(())
        });
    }
    // Mid-round: the small jobs hold all 100 MiB between them, and each
    // takes its 10 MiB back as soon as it returns them.
    tokio::time::sleep(Duration::from_millis(22)).await;
    println!(
        "   {} MiB free; the small jobs alone would keep it so forever",
        memory.available()
    );
    let start = Instant::now();
    let all = memory.acquire(BUDGET_MIB as u32).await?;
    println!(
        "   the big job got all {} MiB after {} ms: the small jobs' next requests queued behind it",
        all.num_permits(),
        start.elapsed().as_millis(),
    );
    running.store(false, Ordering::SeqCst);
    drop(all);
    while let Some(done) = small.join_next().await {
        done??;
    }
    Ok(())
}

async fn deadlines(memory: &Semaphore) -> anyhow::Result<()> {
    println!("\n== 3. deadlines and hopeless requests");
    let held = memory.acquire(BUDGET_MIB as u32).await?;
    let ctx = Context::background().with_timeout(Duration::from_millis(20));
    let Err(err) = memory.acquire(10).context(&ctx).await else {
        anyhow::bail!("the deadline should have passed");
    };
    println!("   acquire(10) within 20 ms: {err}");
    drop(held);
    let Err(err) = memory.acquire(150).await else {
        anyhow::bail!("150 of 100 should be refused");
    };
    println!("   acquire(150): {err}");
    assert!(matches!(err, SemaphoreError::TooLarge { .. }));
    Ok(())
}

fn go_style(memory: &Semaphore) -> anyhow::Result<()> {
    println!("\n== 4. Go's style: acquire, then release by count");
    memory.try_acquire(30)?.forget(); // Go: sem.TryAcquire(30)
    println!(
        "   forgot a 30 MiB guard: {} held, {} free",
        memory.held(),
        memory.available()
    );
    memory.release(30)?; // Go: sem.Release(30)
    // Go panics here.
    let Err(err) = memory.release(1) else {
        anyhow::bail!("nothing is held now");
    };
    println!("   release(1) again: {err}");
    Ok(())
}
