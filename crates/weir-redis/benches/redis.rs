//! weir-redis beside the plain loops it replaces, on a loopback
//! redis-server of its own, in alternating rounds (A, B, C, A, B, C, ...):
//!
//! - **limiter**: decisions per second and latency per decision for the
//!   redis_rate approach (a plain `EVALSHA` loop of a GCRA script, one
//!   round trip per decision), `SharedRateLimiter` without a lease, and with
//!   a lease of 64 and of 256; at 1 and 16 concurrent callers;
//! - **queue**: jobs per second end to end (a producer and a consumer at
//!   once, until every job is acknowledged) for a hand-written `XADD` /
//!   `XREADGROUP` / `XACK` loop (with and without the `XDEL` that keeps the
//!   stream bounded) and for `QueueProducer` + `QueueConsumer` (its
//!   deliveries acknowledged by one task as they come, through a 64-worker
//!   pipeline stage, and fed to a pool); and the consumers alone on a
//!   filled queue.
//!
//! ```sh
//! cargo bench -p weir-redis --bench redis
//! WEIR_BENCH_ROUNDS=9 WEIR_BENCH_SECS=1 cargo bench -p weir-redis --bench redis
//! WEIR_BENCH_ONLY=queue cargo bench -p weir-redis --bench redis   # or =limiter
//! ```
//!
//! It needs `redis-server` on the PATH. Each figure is min / median / max
//! over the rounds; docs/benchmarks.md has a run.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use weir_core::{Pipeline, Pool};
use weir_rate::Rate;
use weir_redis::{Delivery, LocalRedisServer, QueueConsumer, QueueProducer, SharedRateLimiter};

/// The redis_rate approach, written plainly: GCRA in float seconds on the
/// server's clock, one key, `SET ... PX` until the bucket is full again.
const BASELINE_GCRA: &str = r"
local rate_period = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new = tat + rate_period
if new - burst * rate_period > now then
  return {0, math.ceil((new - burst * rate_period - now) * 1000000)}
end
redis.call('SET', KEYS[1], tostring(new), 'PX', math.ceil((new - now) * 1000))
return {1, 0}
";

/// Far above what any variant reaches: every decision is a grant, so the
/// rounds compare the cost of deciding, not the limit.
const RATE_PER_SEC: u32 = 1_000_000;
const BURST: u32 = 1_000_000;
const QUEUE_JOBS: u64 = 20_000;
const CHUNK: usize = 256;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    id: u64,
    body: String,
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let server = LocalRedisServer::start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let rounds = env_num("WEIR_BENCH_ROUNDS", 5);
    let secs = Duration::from_millis(env_num("WEIR_BENCH_SECS", 1) * 1000);
    let only = std::env::var("WEIR_BENCH_ONLY").unwrap_or_default();
    println!("redis-server on {url}; {rounds} alternating rounds");
    if only.is_empty() || only == "limiter" {
        for callers in [1usize, 16] {
            limiter_rounds(&url, callers, rounds, secs).await;
        }
    }
    if only.is_empty() || only == "queue" {
        queue_rounds(&url, rounds, true).await;
        queue_rounds(&url, rounds, false).await;
    }
}

async fn limiter_rounds(url: &str, callers: usize, rounds: u64, secs: Duration) {
    let mut rows: Vec<(&str, Vec<Round>)> = vec![
        ("plain EVALSHA loop (redis_rate)", Vec::new()),
        ("SharedRateLimiter", Vec::new()),
        ("SharedRateLimiter, lease 64", Vec::new()),
        ("SharedRateLimiter, lease 256", Vec::new()),
    ];
    for round in 0..rounds {
        let key = format!("bench-{callers}-{round}");
        rows[0]
            .1
            .push(baseline_limiter(url, &key, callers, secs).await);
        rows[1]
            .1
            .push(weir_limiter(url, &key, callers, secs, None).await);
        rows[2]
            .1
            .push(weir_limiter(url, &key, callers, secs, Some(64)).await);
        rows[3]
            .1
            .push(weir_limiter(url, &key, callers, secs, Some(256)).await);
    }
    println!("\nlimiter, {callers} concurrent caller(s), {secs:?} per round");
    println!(
        "{:<34} {:>32} {:>24} {:>24}",
        "", "decisions/s min/median/max", "p50 µs min/med/max", "p99 µs min/med/max"
    );
    for (name, r) in &rows {
        println!(
            "{name:<34} {:>32} {:>24} {:>24}",
            spread(r.iter().map(|x| x.per_sec), 0),
            spread(r.iter().map(|x| x.p50_us), 1),
            spread(r.iter().map(|x| x.p99_us), 1),
        );
    }
    let median = |i: usize| median(rows[i].1.iter().map(|x| x.per_sec).collect());
    println!(
        "ratios of medians: weir / plain {:.3}, lease 64 / plain {:.1}, lease 256 / plain {:.1}",
        median(1) / median(0),
        median(2) / median(0),
        median(3) / median(0)
    );
}

/// `end_to_end`: a producer and a consumer at once; otherwise the consumer
/// alone on a filled queue.
async fn queue_rounds(url: &str, rounds: u64, end_to_end: bool) {
    let variants = [
        (
            Variant::Hand { delete: false },
            "hand-written XREADGROUP + XACK",
        ),
        (
            Variant::Hand { delete: true },
            "hand-written, + XDEL (bounded)",
        ),
        (Variant::Stream, "weir deliveries, acked at once"),
        (Variant::Pipeline, "weir deliveries, pipeline stage"),
        (Variant::Pool, "weir deliveries fed to a pool"),
    ];
    let mut rows: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for (i, (variant, _)) in variants.iter().enumerate() {
            let name = format!("q{}-{i}-{round}", u8::from(end_to_end));
            rows[i].push(queue_round(url, &name, *variant, end_to_end).await);
        }
    }
    if end_to_end {
        println!("\nqueue, {QUEUE_JOBS} jobs end to end (producer and consumer at once)");
    } else {
        println!("\nqueue, {QUEUE_JOBS} jobs already enqueued: the consumer alone");
    }
    println!("{:<34} {:>32}", "", "jobs/s min/median/max");
    for ((_, name), r) in variants.iter().zip(&rows) {
        println!("{name:<34} {:>32}", spread(r.iter().copied(), 0));
    }
    let m: Vec<f64> = rows.iter().map(|r| median(r.clone())).collect();
    println!(
        "ratios of medians to hand + XDEL: stream {:.2}, pipeline {:.2}, pool {:.2} (to hand without XDEL: {:.2}, {:.2}, {:.2})",
        m[2] / m[1],
        m[3] / m[1],
        m[4] / m[1],
        m[2] / m[0],
        m[3] / m[0],
        m[4] / m[0]
    );
}

struct Round {
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn spread(v: impl Iterator<Item = f64>, decimals: usize) -> String {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(f64::total_cmp);
    let (lo, mid, hi) = (v[0], v[v.len() / 2], v[v.len() - 1]);
    format!("{lo:.decimals$} / {mid:.decimals$} / {hi:.decimals$}")
}

/// `callers` tasks deciding in a loop for `secs`; every decision timed.
async fn decide_loop<F, Fut>(callers: usize, secs: Duration, decide: F) -> Round
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let decide = decide.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            while start.elapsed() < secs {
                let t = Instant::now();
                assert!(decide().await, "the bench rate must grant everything");
                lat.push(t.elapsed().as_nanos() as u64);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1000.0;
    Round {
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

async fn manager(url: &str) -> ConnectionManager {
    let config = ConnectionManagerConfig::new().set_response_timeout(None);
    ConnectionManager::new_with_config(redis::Client::open(url).unwrap(), config)
        .await
        .unwrap()
}

async fn baseline_limiter(url: &str, key: &str, callers: usize, secs: Duration) -> Round {
    let conn = manager(url).await;
    let hash = redis::Script::new(BASELINE_GCRA).get_hash().to_owned();
    let _: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(BASELINE_GCRA)
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    let key = format!("plain:{key}");
    let period = 1.0 / f64::from(RATE_PER_SEC);
    decide_loop(callers, secs, move || {
        let (mut conn, hash, key) = (conn.clone(), hash.clone(), key.clone());
        async move {
            let r: Vec<i64> = redis::cmd("EVALSHA")
                .arg(&hash)
                .arg(1)
                .arg(&key)
                .arg(period)
                .arg(BURST)
                .query_async(&mut conn)
                .await
                .unwrap();
            r[0] == 1
        }
    })
    .await
}

async fn weir_limiter(
    url: &str,
    key: &str,
    callers: usize,
    secs: Duration,
    lease: Option<u32>,
) -> Round {
    let mut b = SharedRateLimiter::builder(Rate::per_second(RATE_PER_SEC).burst(BURST))
        .prefix(format!("weir{}", lease.unwrap_or(0)))
        .timeout(Duration::from_secs(1));
    if let Some(k) = lease {
        b = b.lease(k);
    }
    let limiter = b.build_url(url).unwrap();
    limiter.available(key).await.unwrap(); // connect and load the script
    let key: Arc<str> = Arc::from(key);
    decide_loop(callers, secs, move || {
        let (limiter, key) = (limiter.clone(), Arc::clone(&key));
        async move { limiter.try_acquire(&key).await.is_ok() }
    })
    .await
}

fn jobs() -> Vec<Job> {
    (0..QUEUE_JOBS)
        .map(|id| Job {
            id,
            body: "x".repeat(64),
        })
        .collect()
}

fn parse_read(v: &Value) -> Vec<(String, Job)> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    let mut out = Vec::new();
    if let Value::Array(streams) = v {
        for s in streams {
            if let Value::Array(parts) = s
                && let Some(Value::Array(entries)) = parts.get(1)
            {
                for e in entries {
                    if let Value::Array(idf) = e
                        && let [id, Value::Array(fields)] = idf.as_slice()
                    {
                        let job = serde_json::from_str(&text(&fields[1])).unwrap();
                        out.push((text(id), job));
                    }
                }
            }
        }
    }
    out
}

#[derive(Debug, Clone, Copy)]
enum Variant {
    Hand { delete: bool },
    Stream,
    Pipeline,
    Pool,
}

/// One round: enqueue `QUEUE_JOBS` (timed only `end_to_end`) and consume
/// them all; returns jobs per second.
async fn queue_round(url: &str, name: &str, variant: Variant, end_to_end: bool) -> f64 {
    let jobs = jobs();
    let payloads: Vec<String> = jobs
        .iter()
        .map(|j| serde_json::to_string(j).unwrap())
        .collect();
    let (stream, group) = (format!("weir:queue:{{{name}}}"), "weir");
    let conn = manager(url).await;
    let _: Value = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    let hand = matches!(variant, Variant::Hand { .. });
    // The producers: the hand-written one pipelines plain XADDs, weir's
    // checks the bound and adds in one script per 256 jobs.
    let produce = {
        let (mut conn, stream, url) = (conn.clone(), stream.clone(), url.to_owned());
        let name = name.to_owned();
        async move {
            if hand {
                for chunk in payloads.chunks(CHUNK) {
                    let mut pipe = redis::pipe();
                    for p in chunk {
                        pipe.cmd("XADD")
                            .arg(&stream)
                            .arg("*")
                            .arg("job")
                            .arg(p)
                            .ignore();
                    }
                    let () = pipe.query_async(&mut conn).await.unwrap();
                }
            } else {
                let producer = QueueProducer::<Job>::builder(name)
                    .max_len(QUEUE_JOBS)
                    .build_url(&url)
                    .unwrap();
                producer.enqueue_all(&jobs).await.unwrap();
            }
        }
    };
    let mut producing = None;
    if end_to_end {
        producing = Some(tokio::spawn(produce));
    } else {
        produce.await;
    }
    let start = Instant::now();
    let done = match variant {
        Variant::Hand { delete } => hand_consumer(url, &conn, &stream, group, delete).await,
        _ => weir_consumer(url, name, variant).await,
    };
    if let Some(p) = producing {
        p.await.unwrap();
    }
    // Every job is acknowledged only after it was enqueued: `done` is the
    // end of both.
    QUEUE_JOBS as f64 / done.duration_since(start).as_secs_f64()
}

/// The hand-written loop: read 256 at a time, acknowledge each batch in
/// one pipeline (`XACK`, and `XDEL` when `delete`).
async fn hand_consumer(
    url: &str,
    conn: &ConnectionManager,
    stream: &str,
    group: &str,
    delete: bool,
) -> Instant {
    let mut reader = manager(url).await;
    let mut done = 0u64;
    while done < QUEUE_JOBS {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg("c")
            .arg("COUNT")
            .arg(CHUNK)
            .arg("BLOCK")
            .arg(100)
            .arg("STREAMS")
            .arg(stream)
            .arg(">")
            .query_async(&mut reader)
            .await
            .unwrap();
        let entries: Vec<(String, Job)> = parse_read(&reply);
        if entries.is_empty() {
            continue;
        }
        let ids: Vec<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
        let mut pipe = redis::pipe();
        pipe.cmd("XACK").arg(stream).arg(group).arg(&ids).ignore();
        if delete {
            pipe.cmd("XDEL").arg(stream).arg(&ids).ignore();
        }
        let () = pipe.query_async(&mut conn.clone()).await.unwrap();
        done += entries.len() as u64;
    }
    Instant::now()
}

/// `QueueConsumer` (batch 256): its deliveries acknowledged as they come
/// by one task, by a 64-worker pipeline stage, or run on a 4-worker pool.
/// Done when Redis confirmed every acknowledgement (the consumer's own
/// count: no extra calls to Redis while it runs).
async fn weir_consumer(url: &str, name: &str, variant: Variant) -> Instant {
    let consumer = QueueConsumer::<Job>::builder(name)
        .batch(CHUNK)
        .start_url(url)
        .unwrap();
    let draining = match variant {
        Variant::Pool => {
            let pool = Pool::builder()
                .workers(4)
                .queue(1024)
                .build(|_job: Job| async { anyhow::Ok(()) })
                .unwrap();
            consumer.feed(pool).unwrap();
            None
        }
        Variant::Pipeline => {
            let stream = consumer.deliveries().unwrap();
            Some(tokio::spawn(async move {
                let (mut out, handle) = Pipeline::from_stream(stream)
                    .map("ack", 64, |d: Delivery<Job>| async move { d.ack().await })
                    .into_stream()
                    .unwrap();
                while out.next().await.is_some() {}
                handle.join().await.unwrap();
            }))
        }
        _ => {
            let mut stream = consumer.deliveries().unwrap();
            Some(tokio::spawn(async move {
                let mut acks = FuturesUnordered::new();
                loop {
                    tokio::select! {
                        d = stream.next() => match d {
                            Some(d) => acks.push(d.ack()),
                            None => break,
                        },
                        Some(acked) = acks.next(), if !acks.is_empty() => acked.unwrap(),
                    }
                }
                while acks.next().await.is_some() {}
            }))
        }
    };
    while consumer.report().acknowledged < QUEUE_JOBS {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let done = Instant::now();
    consumer.close();
    if let Some(d) = draining {
        d.await.unwrap();
    }
    let report = consumer.join().await.unwrap();
    assert_eq!(report.acknowledged, QUEUE_JOBS);
    done
}
