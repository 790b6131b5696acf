//! No job waits behind a busy worker while another worker is idle.
//!
//! A worker takes a share of the queue at a time. A job that computes
//! without awaiting keeps its worker from giving the rest of that share
//! back, so an idle worker must be able to take it (steal it). The busy
//! job here blocks its thread until every other job is done, so a held
//! job shows as a timeout, not as a slow run.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use weir_core::pool::Pool;

/// What the busy job found when it stopped blocking.
#[derive(Debug, PartialEq)]
enum Busy {
    /// Every other job finished while it blocked.
    OthersDone,
    /// It gave up: some job was held behind it.
    Held { done: usize },
}

/// Runs `jobs` jobs on a pool of `workers`; job 0 blocks its thread until
/// the others are done (or 10 s pass); `len(i)` is how long job `i` sleeps.
async fn run(workers: usize, queue: usize, jobs: usize, len: fn(usize) -> u64) -> Busy {
    let done = Arc::new(AtomicUsize::new(0));
    let (all_done_tx, all_done_rx) = mpsc::channel::<()>();
    let all_done_rx = Arc::new(std::sync::Mutex::new(Some(all_done_rx)));
    let pool: Pool<usize, Option<Busy>, Infallible> = {
        let done = done.clone();
        Pool::builder()
            .workers(workers)
            .queue(queue)
            .build(move |i: usize| {
                let done = done.clone();
                let all_done_tx = all_done_tx.clone();
                let all_done_rx = all_done_rx.clone();
                async move {
                    if i == 0 {
                        // A job that computes without awaiting: it blocks
                        // this worker's thread.
                        let rx = all_done_rx.lock().unwrap().take().unwrap();
                        return Ok(Some(match rx.recv_timeout(Duration::from_secs(10)) {
                            Ok(()) => Busy::OthersDone,
                            Err(_) => Busy::Held {
                                done: done.load(Ordering::SeqCst),
                            },
                        }));
                    }
                    tokio::time::sleep(Duration::from_micros(len(i))).await;
                    if done.fetch_add(1, Ordering::SeqCst) + 1 == jobs - 1 {
                        let _ = all_done_tx.send(());
                    }
                    Ok(None)
                }
            })
            .unwrap()
    };
    let mut tickets = Vec::new();
    for i in 0..jobs {
        tickets.push(pool.submit(i).await.unwrap());
    }
    let busy = tickets.remove(0).await.unwrap().unwrap();
    for t in tickets {
        t.await.unwrap();
    }
    pool.join().await.unwrap();
    busy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_takes_the_jobs_a_busy_one_holds() {
    assert_eq!(run(2, 64, 40, |_| 0).await, Busy::OthersDone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_mixed_lengths_are_not_held_either() {
    // Lengths 0-500 µs; four workers on two threads, one of them blocked.
    assert_eq!(
        run(4, 256, 200, |i| (i as u64 * 37) % 500).await,
        Busy::OthersDone
    );
}
