//! The queue against a real redis-server that each test starts itself.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use weir_context::Context;
use weir_core::{Pipeline, Pool};
use weir_redis::{
    EnqueueError, FailOutcome, LocalServerOptions, QueueConsumer, QueueError, QueueProducer,
    QueueReport,
};

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
    let producer = QueueProducer::<Job>::builder("smoke")
        .build_url(&server.url())
        .unwrap();
    let jobs: Vec<Job> = (0..100)
        .map(|id| Job {
            id,
            poison: id % 10 == 0,
        })
        .collect();
    producer.enqueue_all(&jobs).await.unwrap();
    assert_eq!(producer.backlog().await.unwrap(), 100);
    let consumer = QueueConsumer::<Job>::builder("smoke")
        .max_deliveries(2)
        .start_url(&server.url())
        .unwrap();
    let mut stream = consumer.deliveries().unwrap();
    let mut done = HashSet::new();
    let mut dead = 0;
    while done.len() + dead < 100 {
        let d = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap();
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
    assert!(
        letters
            .iter()
            .all(|l| l.error == format!("poison job {}", l.job::<Job>().unwrap().id))
    );
}

#[test]
fn auto_traits() {
    fn send_sync<T: Send + Sync>() {}
    fn send_unpin<T: Send + Unpin>() {}
    send_sync::<QueueConsumer<Job>>();
    send_sync::<QueueProducer<Job>>();
    send_sync::<weir_redis::Delivery<Job>>();
    send_sync::<weir_redis::AckHandle>();
    send_sync::<QueueReport>();
    send_sync::<QueueError>();
    send_unpin::<weir_redis::DeliveryStream<Job>>();
}

fn producer(url: &str, queue: &str, max_len: u64) -> QueueProducer<Job> {
    QueueProducer::<Job>::builder(queue)
        .max_len(max_len)
        .build_url(url)
        .unwrap()
}

fn jobs(range: std::ops::Range<u64>) -> Vec<Job> {
    range.map(|id| Job { id, poison: false }).collect()
}

async fn next<T>(stream: &mut weir_redis::DeliveryStream<T>) -> weir_redis::Delivery<T>
where
    T: serde::de::DeserializeOwned + Send + 'static,
{
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("no delivery within 10 s")
        .expect("the stream ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_bounded() {
    let server = server().await;
    let p = producer(&server.url(), "bounded", 10);
    p.enqueue_all(&jobs(0..10)).await.unwrap();
    let full = p
        .try_enqueue(&Job {
            id: 10,
            poison: false,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            full,
            EnqueueError::Full {
                len: 10,
                max_len: 10
            }
        ),
        "{full}"
    );
    // A waiting producer gets in once a consumer finishes a job.
    let waiting = {
        let p = p.clone();
        tokio::spawn(async move {
            p.enqueue(&Job {
                id: 10,
                poison: false,
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished());
    assert_eq!(p.backlog().await.unwrap(), 10);
    let consumer = QueueConsumer::<Job>::builder("bounded")
        .start_url(&server.url())
        .unwrap();
    let mut stream = consumer.deliveries().unwrap();
    next(&mut stream).await.ack().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(p.backlog().await.unwrap(), 10, "never above the bound");
    assert!(p.stats().full >= 2);
    // A wait ends with the producer's context.
    let ctx = Context::background();
    let p2 = QueueProducer::<Job>::builder("bounded")
        .max_len(10)
        .context(&ctx)
        .build_url(&server.url())
        .unwrap();
    let stopped = tokio::spawn(async move {
        p2.enqueue(&Job {
            id: 99,
            poison: false,
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    ctx.cancel_with("deploy");
    let err = stopped.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, EnqueueError::Stopped(c) if c.to_string() == "deploy"),
        "{err}"
    );
    drop(stream);
    consumer.cancel();
    let _ = consumer.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_jobs_are_dead_lettered_with_their_error() {
    let server = server().await;
    let p = producer(&server.url(), "decode", 100);
    let mut raw = raw(&server.url()).await;
    let (stream_key, _) = p.keys();
    let _: String = redis::cmd("XADD")
        .arg(stream_key)
        .arg("*")
        .arg("job")
        .arg("not json")
        .query_async(&mut raw)
        .await
        .unwrap();
    p.enqueue(&Job {
        id: 1,
        poison: false,
    })
    .await
    .unwrap();
    let consumer = QueueConsumer::<Job>::builder("decode")
        .start_url(&server.url())
        .unwrap();
    let mut stream = consumer.deliveries().unwrap();
    let d = next(&mut stream).await;
    assert_eq!(d.job().id, 1);
    d.ack().await.unwrap();
    let report = consumer.join().await.unwrap();
    assert_eq!(
        (report.read, report.acknowledged, report.dead_lettered),
        (2, 1, 1),
        "{report}"
    );
    let letters = p.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].error.starts_with("cannot decode job: "),
        "{}",
        letters[0].error
    );
    assert_eq!(letters[0].payload, "not json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_finishes_what_was_started_and_releases_the_rest() {
    let server = server().await;
    let p = producer(&server.url(), "close", 1000);
    p.enqueue_all(&jobs(0..100)).await.unwrap();
    let consumer = QueueConsumer::<Job>::builder("close")
        .batch(20)
        .prefetch(40)
        .start_url(&server.url())
        .unwrap();
    let mut stream = consumer.deliveries().unwrap();
    let mut started = Vec::new();
    for _ in 0..5 {
        started.push(next(&mut stream).await);
    }
    consumer.close();
    assert!(
        stream.next().await.is_none(),
        "a closed consumer hands nothing more on"
    );
    // What was started finishes and is acknowledged after the close.
    for d in started {
        d.ack().await.unwrap();
    }
    let report = consumer.join().await.unwrap();
    println!("{report}");
    assert!(report.is_balanced(), "{report}");
    assert_eq!(report.acknowledged, 5);
    assert_eq!(report.released, report.read - 5);
    assert_eq!(report.in_flight, 0);
    assert_eq!(
        p.backlog().await.unwrap(),
        95,
        "the rest is there for the others"
    );
    // The finished consumer left the group; the released jobs are new
    // entries any consumer reads at once.
    let mut raw = raw(&server.url()).await;
    let consumers: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(p.keys().0)
        .arg("weir")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(consumers.is_empty());
    let next_consumer = QueueConsumer::<Job>::builder("close")
        .start_url(&server.url())
        .unwrap();
    let mut stream = next_consumer.deliveries().unwrap();
    let mut seen = HashSet::new();
    while seen.len() < 95 {
        let d = next(&mut stream).await;
        assert!(!d.is_reclaimed() && d.attempt() == 1);
        seen.insert(d.job().id);
        d.ack().await.unwrap();
    }
    assert!(next_consumer.join().await.unwrap().is_balanced());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_delivery_is_reclaimed_after_the_visibility_timeout() {
    let server = server().await;
    let p = producer(&server.url(), "reclaim", 100);
    p.enqueue(&Job {
        id: 7,
        poison: false,
    })
    .await
    .unwrap();
    let visibility = Duration::from_millis(300);
    let start = |name: &str| {
        QueueConsumer::<Job>::builder("reclaim")
            .consumer(name)
            .visibility_timeout(visibility)
            .start_url(&server.url())
            .unwrap()
    };
    let a = start("a");
    let mut a_stream = a.deliveries().unwrap();
    drop(next(&mut a_stream).await); // no outcome: abandoned
    let a_report = a.join().await.unwrap();
    assert_eq!((a_report.read, a_report.abandoned), (1, 1), "{a_report}");
    let b = start("b");
    let mut b_stream = b.deliveries().unwrap();
    let d = next(&mut b_stream).await;
    assert!(d.is_reclaimed());
    assert_eq!((d.job().id, d.attempt()), (7, 2));
    d.ack().await.unwrap();
    let report = b.join().await.unwrap();
    assert_eq!(
        (report.read, report.reclaimed, report.acknowledged),
        (1, 1, 1),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_consumers_slow_job_is_not_reclaimed() {
    let server = server().await;
    let p = producer(&server.url(), "slow", 100);
    p.enqueue(&Job {
        id: 1,
        poison: false,
    })
    .await
    .unwrap();
    let start = |name: &str| {
        QueueConsumer::<Job>::builder("slow")
            .consumer(name)
            .visibility_timeout(Duration::from_millis(150))
            .start_url(&server.url())
            .unwrap()
    };
    let (a, b) = (start("a"), start("b"));
    let mut a_stream = a.deliveries().unwrap();
    let mut b_stream = b.deliveries().unwrap();
    let d = tokio::select! {
        d = next(&mut a_stream) => d,
        d = next(&mut b_stream) => d,
    };
    // Held for six visibility timeouts: renewed, never handed to the other.
    tokio::time::sleep(Duration::from_millis(900)).await;
    d.ack().await.unwrap();
    drop((a_stream, b_stream));
    let (ra, rb) = (a.join().await.unwrap(), b.join().await.unwrap());
    assert_eq!(ra.read + rb.read, 1, "{ra}{rb}");
    assert_eq!(ra.reclaimed + rb.reclaimed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_now_and_says_why() {
    let server = server().await;
    let p = producer(&server.url(), "cancel", 100);
    p.enqueue_all(&jobs(0..10)).await.unwrap();
    let ctx = Context::background();
    let consumer = QueueConsumer::<Job>::builder("cancel")
        .context(&ctx)
        .start_url(&server.url())
        .unwrap();
    let mut stream = consumer.deliveries().unwrap();
    let held = next(&mut stream).await;
    ctx.cancel_with("maintenance window");
    let err = consumer.join().await.unwrap_err();
    assert!(matches!(err.error(), QueueError::Stopped(c) if c.to_string() == "maintenance window"));
    assert!(err.report().is_balanced(), "{}", err.report());
    let late = held.ack().await.unwrap_err();
    assert!(matches!(late, QueueError::Stopped(_)), "{late}");
    assert_eq!(
        p.backlog().await.unwrap(),
        10,
        "nothing acknowledged, nothing lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_after_its_grace() {
    let server = server().await;
    let p = producer(&server.url(), "grace", 100);
    p.enqueue(&Job {
        id: 1,
        poison: false,
    })
    .await
    .unwrap();
    let consumer = QueueConsumer::<Job>::builder("grace")
        .start_url(&server.url())
        .unwrap();
    let mut stream = consumer.deliveries().unwrap();
    let held = next(&mut stream).await;
    let err = consumer
        .shutdown(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(
        matches!(err.error(), QueueError::GraceExpired(_)),
        "{}",
        err.error()
    );
    assert_eq!(err.report().in_flight, 1);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_runs_the_jobs_and_its_results_decide_the_outcome() {
    let server = server().await;
    let p = producer(&server.url(), "pool", 1000);
    let mut all = jobs(0..300);
    all[13].poison = true;
    p.enqueue_all(&all).await.unwrap();
    let alive_before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let consumer = QueueConsumer::<Job>::builder("pool")
        .max_deliveries(2)
        .start_url(&server.url())
        .unwrap();
    let done = Arc::new(Mutex::new(HashSet::new()));
    let pool = {
        let done = Arc::clone(&done);
        Pool::builder().workers(4).build(move |job: Job| {
            let done = Arc::clone(&done);
            async move {
                if job.poison {
                    anyhow::bail!("poison job {}", job.id);
                }
                if job.id == 77 {
                    panic!("job 77 panics");
                }
                done.lock().unwrap().insert(job.id);
                Ok(job.id)
            }
        })
    }
    .unwrap();
    consumer.feed(pool.clone()).unwrap();
    assert!(consumer.deliveries().is_none(), "the pool took them");
    eventually(Duration::from_secs(30), "every job ends", || async {
        p.backlog().await.unwrap() == 0
    })
    .await;
    let report = consumer.shutdown(Duration::from_secs(10)).await.unwrap();
    println!("{report}");
    assert!(report.is_balanced(), "{report}");
    assert_eq!(done.lock().unwrap().len(), 298);
    assert_eq!(
        (report.acknowledged, report.dead_lettered, report.retried),
        (298, 2, 2)
    );
    let letters = p.dead_letters(10).await.unwrap();
    let errors: HashMap<u64, String> = letters
        .iter()
        .map(|l| (l.job::<Job>().unwrap().id, l.error.clone()))
        .collect();
    assert_eq!(
        errors[&13], "poison job 13",
        "the handler's error, as itself"
    );
    assert!(errors[&77].contains("job 77 panics"), "{}", errors[&77]);
    pool.join().await.unwrap();
    // No task of the consumer outlives it (the client's connection tasks
    // end right after their connections drop).
    eventually(Duration::from_secs(5), "no task left", || async {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
            <= alive_before
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_is_a_pipeline_source() {
    let server = server().await;
    let p = producer(&server.url(), "pipeline", 1000);
    p.enqueue_all(&jobs(0..200)).await.unwrap();
    let consumer = QueueConsumer::<Job>::builder("pipeline")
        .start_url(&server.url())
        .unwrap();
    let (out, handle) = Pipeline::from_stream(consumer.deliveries().unwrap())
        .map("work", 4, |d: weir_redis::Delivery<Job>| async move {
            let id = d.job().id * 2;
            d.ack().await?;
            anyhow::Ok(id)
        })
        .into_stream()
        .unwrap();
    let doubled: Vec<u64> = out.take(200).collect().await;
    consumer.close();
    handle.join().await.unwrap();
    let report = consumer.join().await.unwrap();
    assert_eq!(doubled.iter().copied().collect::<HashSet<_>>().len(), 200);
    assert_eq!(report.acknowledged, 200);
    assert!(report.is_balanced(), "{report}");
}

/// Appends `line` to the log at `path` with one `write` (a `SIGKILL` never
/// leaves half a line).
fn log_line(file: &Mutex<std::fs::File>, line: String) {
    file.lock().unwrap().write_all(line.as_bytes()).unwrap();
}

/// A job's log lines: `s <id>` started, `d <id>` done (succeeded), `a <id>`
/// its acknowledgement confirmed.
fn read_log(path: &Path) -> Vec<(char, u64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (kind, id) = l.split_once(' ')?;
            Some((kind.chars().next()?, id.parse().ok()?))
        })
        .collect()
}

/// 100,000 jobs (1 in 10,000 poison) through three consumer processes
/// while a producer fills the bounded queue; one consumer is killed with
/// SIGKILL in the middle of its jobs. Every job is processed and
/// acknowledged, the killed consumer's jobs are reclaimed and finished by
/// the others, a job runs twice only if it was in progress at the kill,
/// and the poison jobs end in the dead-letter stream with their error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_jobs_three_processes_one_killed() {
    let server = server().await;
    let url = server.url();
    let n = 100_000;
    let queue = "processes";
    let p = producer(&url, queue, 20_000);
    let dir = tempfile::tempdir().unwrap();
    let stop = dir.path().join("stop");
    let log = |i: usize| dir.path().join(format!("consumer-{i}.log"));
    let env = |i: usize, mode: &str| {
        vec![
            ("WEIR_URL", url.clone()),
            ("WEIR_QUEUE", queue.to_owned()),
            ("WEIR_MODE", mode.to_owned()),
            ("WEIR_LOG", log(i).display().to_string()),
            ("WEIR_STOP", stop.display().to_string()),
            ("WEIR_NAME", format!("consumer-{i}")),
        ]
    };
    // Consumer 0 is slow (every job sleeps), so it is always in the middle
    // of jobs when it is killed.
    let mut doomed = spawn_self("consumer_entry", "consumer", &env(0, "slow"));
    let survivors = [
        spawn_self("consumer_entry", "consumer", &env(1, "pool")),
        spawn_self("consumer_entry", "consumer", &env(2, "pipeline")),
    ];
    let all: Vec<Job> = (0..n)
        .map(|id| Job {
            id,
            poison: id % 10_000 == 4_321,
        })
        .collect();
    let poison: HashSet<u64> = all.iter().filter(|j| j.poison).map(|j| j.id).collect();
    let filling = {
        let p = p.clone();
        tokio::spawn(async move { p.enqueue_all(&all).await.map(|ids| ids.len()) })
    };
    eventually(
        Duration::from_secs(120),
        "consumer 0 starts jobs",
        || async { read_log(&log(0)).iter().filter(|(k, _)| *k == 's').count() >= 1_000 },
    )
    .await;
    doomed.start_kill().unwrap();
    let status = doomed.wait().await.unwrap();
    assert!(!status.success(), "killed");
    let enqueued = tokio::time::timeout(Duration::from_secs(300), filling)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(enqueued as u64, n);
    eventually(Duration::from_secs(300), "every job done", || async {
        p.backlog().await.unwrap() == 0
    })
    .await;
    std::fs::write(&stop, b"").unwrap();
    let mut reports = Vec::new();
    for child in survivors {
        let line = result_of(child, Duration::from_secs(60)).await;
        reports.push(serde_json::from_str::<Report>(&line).unwrap());
    }

    let logs: Vec<Vec<(char, u64)>> = (0..3).map(|i| read_log(&log(i))).collect();
    let killed_acked: HashSet<u64> = logs[0]
        .iter()
        .filter(|(k, _)| *k == 'a')
        .map(|(_, id)| *id)
        .collect();
    let mut starts: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut done = HashSet::new();
    for (i, lines) in logs.iter().enumerate() {
        for (kind, id) in lines {
            match kind {
                's' => starts.entry(*id).or_default().push(i),
                'd' => {
                    done.insert(*id);
                }
                _ => {}
            }
        }
    }
    let mut in_flight_at_kill = 0;
    for (id, who) in &starts {
        if poison.contains(id) {
            continue;
        }
        if who.len() > 1 {
            // Run twice: only a job the killed consumer had started and not
            // acknowledged, finished again by a survivor.
            assert!(
                who.contains(&0) && !killed_acked.contains(id),
                "job {id} redone: {who:?}"
            );
            assert_eq!(who.len(), 2, "job {id} ran {} times", who.len());
            in_flight_at_kill += 1;
        }
    }
    for id in &killed_acked {
        assert_eq!(
            starts[id],
            vec![0],
            "job {id} acknowledged by the killed consumer and redone"
        );
    }
    let missing: Vec<u64> = (0..n)
        .filter(|id| !poison.contains(id) && !done.contains(id))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "jobs never done: {missing:?}");
    let letters = p.dead_letters(100).await.unwrap();
    let dead: HashSet<u64> = letters.iter().map(|l| l.job::<Job>().unwrap().id).collect();
    assert_eq!(dead, poison);
    for l in &letters {
        assert_eq!(
            l.error,
            format!("poison job {}", l.job::<Job>().unwrap().id)
        );
        assert_eq!(l.attempts, 3);
    }
    let reclaimed: u64 = reports.iter().map(|r| r.reclaimed).sum();
    let acked: u64 = reports.iter().map(|r| r.acknowledged).sum();
    println!(
        "{n} jobs: killed consumer acknowledged {} before the kill, {in_flight_at_kill} of its jobs ran twice; \
         survivors acknowledged {acked}, reclaimed {reclaimed}",
        killed_acked.len()
    );
    assert!(reclaimed > 0, "the killed consumer's jobs were reclaimed");
    assert!(reports.iter().all(|r| r.balanced));
    // The killed consumer may have been killed between an acknowledgement
    // and its log line: at most what it had in progress.
    assert!(acked + killed_acked.len() as u64 <= n - poison.len() as u64);
    assert_eq!(
        reports.iter().map(|r| r.dead_lettered).sum::<u64>(),
        poison.len() as u64
    );
}

/// What a consumer process reports.
#[derive(Debug, Serialize, Deserialize)]
struct Report {
    read: u64,
    reclaimed: u64,
    acknowledged: u64,
    dead_lettered: u64,
    balanced: bool,
}

impl From<&QueueReport> for Report {
    fn from(r: &QueueReport) -> Self {
        Self {
            read: r.read,
            reclaimed: r.reclaimed,
            acknowledged: r.acknowledged,
            dead_lettered: r.dead_lettered,
            balanced: r.is_balanced() && r.in_flight == 0,
        }
    }
}

/// The consumer role of [`hundred_thousand_jobs_three_processes_one_killed`]:
/// run only as a child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of hundred_thousand_jobs_three_processes_one_killed"]
async fn consumer_entry() {
    if std::env::var(ROLE).as_deref() != Ok("consumer") {
        return;
    }
    let var = |k: &str| std::env::var(k).unwrap();
    let mode = var("WEIR_MODE");
    let file = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(var("WEIR_LOG"))
            .unwrap(),
    ));
    let consumer = QueueConsumer::<Job>::builder(var("WEIR_QUEUE"))
        .consumer(var("WEIR_NAME"))
        .batch(100)
        .visibility_timeout(Duration::from_secs(2))
        .max_deliveries(3)
        .start_url(&var("WEIR_URL"))
        .unwrap();
    let work = {
        let (file, slow) = (Arc::clone(&file), mode == "slow");
        move |job: Job| {
            let file = Arc::clone(&file);
            async move {
                log_line(&file, format!("s {}\n", job.id));
                if slow {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                if job.poison {
                    anyhow::bail!("poison job {}", job.id);
                }
                log_line(&file, format!("d {}\n", job.id));
                anyhow::Ok(job.id)
            }
        }
    };
    let pipeline = if mode == "pool" {
        let pool = Pool::builder().workers(8).queue(64).build(work).unwrap();
        consumer.feed(pool).unwrap();
        None
    } else {
        let (file, work) = (Arc::clone(&file), Arc::new(work));
        let stream = consumer.deliveries().unwrap();
        Some(tokio::spawn(
            Pipeline::from_stream(stream)
                .map("work", 8, move |d: weir_redis::Delivery<Job>| {
                    let (file, work) = (Arc::clone(&file), Arc::clone(&work));
                    async move {
                        let id = d.job().id;
                        match work(d.job().clone()).await {
                            Ok(_) => {
                                if d.ack().await.is_ok() {
                                    log_line(&file, format!("a {id}\n"));
                                }
                            }
                            Err(e) => {
                                d.fail(e).await?;
                            }
                        }
                        anyhow::Ok(())
                    }
                })
                .error_policy(weir_core::ErrorPolicy::Continue)
                .run(),
        ))
    };
    let stop = var("WEIR_STOP");
    while !Path::new(&stop).exists() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    consumer.close();
    if let Some(p) = pipeline {
        p.await.unwrap().unwrap();
    }
    let report = consumer.shutdown(Duration::from_secs(30)).await.unwrap();
    eprintln!("{report}");
    println!(
        "{RESULT}{}",
        serde_json::to_string(&Report::from(&report)).unwrap()
    );
}

/// Redis with `appendonly yes` and `appendfsync always`, killed and
/// restarted while two consumers work: no job whose acknowledgement was
/// confirmed runs again, and every enqueued job is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_with_append_only_loses_nothing() {
    trace_init();
    let mut server = server_with(LocalServerOptions::new().append_only(true)).await;
    let url = server.url();
    let n = 5_000u64;
    let p = producer(&url, "aof", 10_000);
    p.enqueue_all(&jobs(0..n)).await.unwrap();
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let redone = Arc::new(Mutex::new(Vec::new()));
    let mut consumers = Vec::new();
    let mut workers = Vec::new();
    for i in 0..2 {
        let consumer = QueueConsumer::<Job>::builder("aof")
            .consumer(format!("c{i}"))
            .visibility_timeout(Duration::from_secs(1))
            .start_url(&url)
            .unwrap();
        let mut stream = consumer.deliveries().unwrap();
        let (acked, redone) = (Arc::clone(&acked), Arc::clone(&redone));
        workers.push(tokio::spawn(async move {
            while let Some(d) = stream.next().await {
                let id = d.job().id;
                if acked.lock().unwrap().contains(&id) {
                    redone.lock().unwrap().push(id);
                }
                tokio::task::yield_now().await;
                if d.ack().await.is_ok() {
                    acked.lock().unwrap().insert(id);
                }
            }
        }));
        consumers.push(consumer);
    }
    eventually(
        Duration::from_secs(60),
        "a third of the jobs done",
        || async { acked.lock().unwrap().len() as u64 >= n / 3 },
    )
    .await;
    server.kill().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().await.unwrap();
    eventually(Duration::from_secs(120), "every job done", || async {
        acked.lock().unwrap().len() as u64 == n
    })
    .await;
    for c in &consumers {
        c.close();
    }
    for w in workers {
        w.await.unwrap();
    }
    for c in consumers {
        let report = c.join().await.unwrap();
        println!("{report}");
        assert!(report.is_balanced(), "{report}");
    }
    assert_eq!(
        redone.lock().unwrap().as_slice(),
        &[] as &[u64],
        "acknowledged jobs ran again"
    );
    // The producer's connection broke with the server: its first call
    // fails, the next one reconnects.
    eventually(
        Duration::from_secs(10),
        "nothing left in the queue",
        || async { matches!(p.backlog().await, Ok(0)) },
    )
    .await;
}
