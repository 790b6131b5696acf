//! The queue against a real redis-server that each test starts itself.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use weir_redis::{FailOutcome, QueueConsumer, QueueProducer};

use support::*;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Job {
    id: u64,
    poison: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    trace_init();
    let server = server().await;
    let producer = QueueProducer::builder::<Job>("smoke").build_url(&server.url()).unwrap();
    let jobs: Vec<Job> = (0..100).map(|id| Job { id, poison: id % 10 == 0 }).collect();
    producer.enqueue_all(&jobs).await.unwrap();
    assert_eq!(producer.backlog().await.unwrap(), 100);
    let consumer = QueueConsumer::builder::<Job>("smoke")
        .max_deliveries(2)
        .start_url(&server.url())
        .unwrap();
    let mut stream = consumer.deliveries().unwrap();
    let mut done = HashSet::new();
    let mut dead = 0;
    while done.len() + dead < 100 {
        let d = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap();
        if d.job().poison {
            let id = d.job().id;
            match d.fail(format!("poison job {id}")).await.unwrap() {
                FailOutcome::DeadLettered => dead += 1,
                FailOutcome::Retried => {}
                other => panic!("{other:?}"),
            }
        } else {
            done.insert(d.job().id);
            d.ack().await.unwrap();
        }
    }
    let report = consumer.join().await.unwrap();
    println!("{report}");
    assert!(report.is_balanced());
    assert_eq!(report.acknowledged, 90);
    assert_eq!(report.dead_lettered, 10);
    assert_eq!(report.retried, 10);
    assert_eq!(producer.backlog().await.unwrap(), 0);
    let letters = producer.dead_letters(100).await.unwrap();
    assert_eq!(letters.len(), 10);
    assert!(letters.iter().all(|l| l.error == format!("poison job {}", l.job::<Job>().unwrap().id)));
}
