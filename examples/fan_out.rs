//! Fan-out with `weir::distribute` (work sharing) and `weir::broadcast`
//! (every item to everyone).
//!
//! `distribute`: 40 jobs, four workers, one of them slow. Each job goes to
//! whichever worker asks first, so the slow one takes few jobs and the fast
//! ones are never held back. `broadcast`: three subscribers each see every
//! event in order; one leaves early and the others go on.
//!
//! Run with `cargo run --example fan_out`.

use std::time::Duration;

use futures::stream;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("== distribute: 40 jobs over 4 workers, worker 0 is slow");
    let outputs = weir::distribute(stream::iter(0..40u32), 4)?;
    let handle = outputs[0].handle();
    let mut workers = Vec::new();
    for (id, mut jobs) in outputs.into_iter().enumerate() {
        let per_job = Duration::from_millis(if id == 0 { 300 } else { 10 });
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            while let Some(job) = jobs.recv().await {
                tokio::time::sleep(per_job).await;
                done.push(job);
            }
            (id, done)
        }));
    }
    let mut total = 0;
    for w in workers {
        let (id, done) = w.await?;
        total += done.len();
        println!("worker {id} did {:>2} jobs: {done:?}", done.len());
    }
    handle.join().await?;
    println!("{total} jobs done, each exactly once\n");

    println!("== broadcast: 3 subscribers, subscriber 2 leaves after 3 events");
    let events = stream::iter(["start", "tick", "tick", "config", "tick", "stop"]);
    let subscribers = weir::broadcast(events, 3)?;
    let handle = subscribers[0].handle();
    let mut tasks = Vec::new();
    for (id, mut sub) in subscribers.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(event) = sub.recv().await {
                seen.push(event);
                if id == 2 && seen.len() == 3 {
                    break; // dropping `sub` leaves the broadcast
                }
            }
            (id, seen)
        }));
    }
    for t in tasks {
        let (id, seen) = t.await?;
        println!("subscriber {id} saw {seen:?}");
    }
    handle.join().await?;
    println!("the others saw every event, in order, after subscriber 2 left");
    Ok(())
}
