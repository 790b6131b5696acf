//! A durable job queue on Redis: a producer fills a bounded queue, two
//! consumers run the jobs on weir pools, and a third consumer dies in the
//! middle of its jobs — the others reclaim them after the visibility
//! timeout, so every job is done.
//!
//! Uses `REDIS_URL` when it is set; otherwise it starts a redis-server of
//! its own on a free loopback port (`apt-get install -y redis-server`).
//! Run with `cargo run --example distributed_queue`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use weir::Pool;
use weir::redis::{LocalRedisServer, QueueConsumer, QueueProducer};

const JOBS: u64 = 1000;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Resize {
    image: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (url, _server) = match std::env::var("REDIS_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let server = LocalRedisServer::start().await?;
            (server.url(), Some(server))
        }
    };
    let queue = format!("images-{}", std::process::id());
    let consumer = |name: &str| {
        QueueConsumer::<Resize>::builder(queue.clone())
            .consumer(name)
            .batch(16)
            .visibility_timeout(Duration::from_secs(1))
            .start_url(&url)
    };

    // The consumer that will die: it takes a few jobs and never finishes.
    let doomed = consumer("doomed")?;
    let mut doomed_jobs = doomed.deliveries().expect("taken once");

    // At most 200 jobs not yet done: the producer waits for room.
    let producer = QueueProducer::<Resize>::builder(queue.clone())
        .max_len(200)
        .build_url(&url)?;
    let filling = tokio::spawn({
        let producer = producer.clone();
        async move {
            let jobs: Vec<Resize> = (0..JOBS).map(|image| Resize { image }).collect();
            producer.enqueue_all(&jobs).await
        }
    });

    let mut in_hand = Vec::new();
    for _ in 0..5 {
        in_hand.push(doomed_jobs.next().await.expect("a job"));
    }
    println!(
        "doomed: started {} jobs, then the process dies",
        in_hand.len()
    );
    doomed.cancel(); // a crash: nothing acknowledged, nothing given back
    drop(in_hand);
    // Cancelled: `join` says so, with the report.
    let died = match doomed.join().await {
        Ok(report) => report,
        Err(stopped) => stopped.into_report(),
    };

    // Two healthy consumers run the jobs on pools and acknowledge each one
    // after it succeeded.
    let done = Arc::new(Mutex::new(HashSet::new()));
    let mut steady = Vec::new();
    for name in ["steady-1", "steady-2"] {
        let c = consumer(name)?;
        let done = Arc::clone(&done);
        let pool = Pool::builder().workers(4).build(move |job: Resize| {
            let done = Arc::clone(&done);
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await; // the work
                done.lock().expect("not poisoned").insert(job.image);
                anyhow::Ok(())
            }
        })?;
        c.feed(pool)?;
        steady.push(c);
    }

    let enqueued = filling.await??;
    while producer.backlog().await? > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("{died}");
    let mut reclaimed = 0;
    for c in steady {
        let report = c.shutdown(Duration::from_secs(5)).await?;
        assert!(report.is_balanced());
        reclaimed += report.reclaimed;
        println!("{report}");
    }
    let distinct = done.lock().expect("not poisoned").len();
    // What it read, and what a read in flight at the crash left pending
    // for it, the others reclaimed after the visibility timeout.
    println!(
        "the others reclaimed {reclaimed} jobs left pending by the consumer that died (it had read {})",
        died.read
    );
    assert_eq!(enqueued.len() as u64, JOBS);
    assert_eq!(distinct as u64, JOBS);
    println!(
        "all {JOBS} jobs done, {} dead letters",
        producer.dead_letters(10).await?.len()
    );
    if _server.is_none() {
        // A shared Redis: leave nothing behind.
        let (jobs, dead) = producer.keys();
        let mut conn = weir::redis::redis::Client::open(url.as_str())?
            .get_multiplexed_async_connection()
            .await?;
        let _: () = weir::redis::redis::cmd("DEL")
            .arg(jobs)
            .arg(dead)
            .query_async(&mut conn)
            .await?;
    }
    Ok(())
}
