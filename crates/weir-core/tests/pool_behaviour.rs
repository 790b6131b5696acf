//! Pool: timing, results per ticket, errors and panics, the drop pattern,
//! submit with a deadline, bad input, the results stream.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::{Instant, sleep};
use weir_core::GraceExpired;
use weir_core::pool::{
    JobError, Pool, PoolError, PoolReport, PoolResults, ResizeError, SubmitError,
    SubmitTimeoutError, Ticket, TrySubmitError, WeakPool,
};

const MS: Duration = Duration::from_millis(1);

/// A pool whose jobs sleep `n` ms and return `n`.
fn sleepy(workers: usize, queue: usize) -> Pool<u64, u64, Infallible> {
    Pool::builder()
        .workers(workers)
        .queue(queue)
        .name("sleepy")
        .build(|n: u64| async move {
            sleep(MS * n as u32).await;
            Ok(n)
        })
        .unwrap()
}

/// Waits (in paused time, 1ms steps after a few yields) until `f(report)` holds.
async fn until<J, O, E>(pool: &Pool<J, O, E>, f: impl Fn(&PoolReport) -> bool)
where
    J: Send + 'static,
    O: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    for i in 0..10_000 {
        if f(&pool.report()) {
            return;
        }
        if i < 10 {
            tokio::task::yield_now().await;
        } else {
            sleep(MS).await;
        }
    }
    panic!("condition never held: {:?}", pool.report());
}

#[tokio::test(start_paused = true)]
async fn two_workers_run_ten_jobs_of_100ms_in_500ms() {
    for queue in [10, 2, 0] {
        let pool = sleepy(2, queue);
        let start = Instant::now();
        let mut tickets = Vec::new();
        for _ in 0..10 {
            tickets.push(pool.submit(100).await.unwrap());
        }
        for t in tickets {
            assert_eq!(t.await.unwrap(), 100);
        }
        assert_eq!(start.elapsed(), 500 * MS, "queue({queue})");
        let report = pool.join().await.unwrap();
        assert_eq!(report.completed, 10);
        assert_eq!(report.submitted, 10);
        assert!(report.is_balanced());
    }
}

#[tokio::test(start_paused = true)]
async fn failures_and_a_panic_reach_their_tickets_and_the_counts_add_up() {
    let pool = Pool::builder()
        .workers(2)
        .queue(4)
        .build(|n: u32| async move {
            sleep(10 * MS).await;
            match n {
                2 | 5 | 8 => Err(format!("job {n} failed")),
                7 => panic!("boom {n}"),
                _ => Ok(n * 2),
            }
        })
        .unwrap();
    let mut tickets = Vec::new();
    for n in 0..10 {
        tickets.push((n, pool.submit(n).await.unwrap()));
    }
    for (n, t) in tickets {
        let result = t.await;
        match n {
            2 | 5 | 8 => assert_eq!(result, Err(JobError::Failed(format!("job {n} failed")))),
            7 => {
                let panic = result.unwrap_err().panic().cloned().unwrap();
                assert_eq!(panic.message(), "boom 7");
            }
            _ => assert_eq!(result, Ok(n * 2)),
        }
    }
    let r = pool.report();
    assert_eq!(
        [
            r.submitted,
            r.queued,
            r.running,
            r.completed,
            r.failed,
            r.panicked,
            r.cancelled,
            r.rejected
        ],
        [10, 0, 0, 6, 3, 1, 0, 0]
    );
    assert_eq!(r.workers, 2);
    assert!(r.is_balanced());
    // The panic did not cost a worker slot: both still take jobs.
    let a = pool.submit(1).await.unwrap();
    let b = pool.submit(3).await.unwrap();
    let start = Instant::now();
    assert_eq!((a.await, b.await), (Ok(2), Ok(6)));
    assert_eq!(start.elapsed(), 10 * MS, "ran side by side");
    assert_eq!(pool.report().workers, 2);
    pool.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_handler_call_itself_is_caught_too() {
    let pool = Pool::builder()
        .workers(1)
        .queue(1)
        .build(|n: u32| {
            assert!(n != 0, "refused before any future exists");
            async move { Ok::<_, Infallible>(n) }
        })
        .unwrap();
    let err = pool.submit(0).await.unwrap().await.unwrap_err();
    assert!(err.is_panicked());
    assert_eq!(
        err.to_string(),
        "job panicked: refused before any future exists"
    );
    assert_eq!(pool.submit(5).await.unwrap().await, Ok(5));
}

#[tokio::test(start_paused = true)]
async fn try_submit_on_a_full_queue_hands_the_job_back() {
    let pool = sleepy(1, 2);
    let running = pool.submit(100).await.unwrap();
    until(&pool, |s| s.running == 1).await;
    let q1 = pool.try_submit(1).unwrap();
    let q2 = pool.try_submit(2).unwrap();
    let err = pool.try_submit(3).unwrap_err();
    assert!(err.is_full());
    assert_eq!(err.to_string(), "the pool's queue is full");
    assert_eq!(err.into_inner(), 3, "the job comes back");
    let r = pool.report();
    assert_eq!((r.submitted, r.queued, r.running, r.rejected), (3, 2, 1, 1));

    assert_eq!(running.await, Ok(100));
    assert_eq!((q1.await, q2.await), (Ok(1), Ok(2)));
    let report = pool.clone().join().await.unwrap();
    assert_eq!(report.completed, 3, "nothing silently lost");
    assert_eq!(report.rejected, 1);

    let err = pool.try_submit(4).unwrap_err();
    assert!(err.is_closed());
    assert_eq!(err.into_inner(), 4);
    assert_eq!(pool.report().rejected, 2);
}

#[tokio::test(start_paused = true)]
async fn submit_timeout_waits_for_room_and_hands_the_job_back_on_timeout() {
    for queue in [1, 0] {
        let pool = sleepy(1, queue);
        let _busy = pool.submit(100).await.unwrap();
        until(&pool, |s| s.running == 1).await;
        let _queued = if queue == 1 {
            Some(pool.submit(100).await.unwrap())
        } else {
            None
        };
        // Full: no room comes within 50ms.
        let start = Instant::now();
        let err = pool.submit_timeout(7, 50 * MS).await.unwrap_err();
        assert!(err.is_timeout());
        assert!(matches!(err, SubmitTimeoutError::Timeout(7)));
        assert_eq!(start.elapsed(), 50 * MS);
        // Room comes at 100ms (the busy job ends), within the next 80ms.
        let t = pool.submit_timeout(8, 80 * MS).await.unwrap();
        assert_eq!(start.elapsed(), 100 * MS, "queue({queue})");
        assert_eq!(t.await, Ok(8));
        assert_eq!(pool.report().rejected, 1);
        pool.clone().join().await.unwrap();
        let err = pool.submit_timeout(9, MS).await.unwrap_err();
        assert!(matches!(err, SubmitTimeoutError::Closed(9)));
    }
}

#[tokio::test(start_paused = true)]
async fn submit_waits_for_room_and_fails_with_the_job_once_closed() {
    let pool = sleepy(1, 1);
    let _a = pool.submit(100).await.unwrap();
    until(&pool, |s| s.running == 1).await;
    let _b = pool.submit(100).await.unwrap();
    let start = Instant::now();
    let c = pool.submit(1).await.unwrap();
    assert_eq!(start.elapsed(), 100 * MS, "backpressure: waited for room");
    assert_eq!(c.await, Ok(1));

    // A submitter waiting for room when the pool closes gets its job back.
    let _d = pool.submit(100).await.unwrap();
    until(&pool, |s| s.running == 1).await;
    let _e = pool.submit(100).await.unwrap();
    let waiting = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.submit(5).await })
    };
    sleep(MS).await;
    pool.close();
    let err: SubmitError<u64> = waiting.await.unwrap().unwrap_err();
    assert!(err.is_closed());
    assert_eq!(err.into_inner(), 5);
    pool.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_default_builder_works() {
    let pool = Pool::builder()
        .build(|n: u32| async move { Ok::<_, Infallible>(n) })
        .unwrap();
    assert!(pool.report().workers >= 1);
    assert_eq!(pool.name(), "pool");
    assert_eq!(pool.submit(1).await.unwrap().await, Ok(1));
    pool.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn detached_jobs_deliver_on_the_results_stream_which_ends_after_shutdown() {
    let pool = Pool::builder()
        .workers(2)
        .queue(4)
        .results(2)
        .build(|n: u32| async move {
            sleep(MS * (10 - n)).await;
            if n == 3 { Err("three") } else { Ok(n) }
        })
        .unwrap();
    let mut results: PoolResults<u32, &str> = pool.results().unwrap();
    assert!(pool.results().is_none(), "taken once");
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some((id, r)) = results.next().await {
            got.push((id.get(), r));
        }
        got
    });
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(pool.submit_detached(n).await.unwrap().get());
    }
    assert_eq!(ids, vec![0, 1, 2, 3, 4, 5]);
    let report = pool.join().await.unwrap();
    assert_eq!((report.completed, report.failed), (5, 1));
    let mut got = reader.await.unwrap();
    got.sort_by_key(|(id, _)| *id);
    let expected: Vec<(u64, Result<u32, JobError<&str>>)> = (0..6)
        .map(|n| {
            (
                n as u64,
                if n == 3 {
                    Err(JobError::Failed("three"))
                } else {
                    Ok(n)
                },
            )
        })
        .collect();
    assert_eq!(
        got, expected,
        "every detached result exactly once, and the stream ended"
    );
}

#[tokio::test(start_paused = true)]
async fn detached_results_with_no_stream_are_counted_and_discarded() {
    let pool = sleepy(1, 2);
    pool.submit_detached(5).await.unwrap();
    until(&pool, |s| s.completed == 1).await;
    let mut results = pool.results().unwrap();
    let id = pool.try_submit_detached(6).unwrap();
    let (got, r) = results.recv().await.unwrap();
    assert_eq!((got, r), (id, Ok(6)));
    drop(results);
    // The stream is gone: results are discarded, workers never block.
    for _ in 0..5 {
        pool.submit_detached(1).await.unwrap();
    }
    let report = pool.join().await.unwrap();
    assert_eq!(report.completed, 7);
}

#[tokio::test(start_paused = true)]
async fn an_unread_results_stream_is_backpressure_that_cancellation_ends() {
    let pool = Pool::builder()
        .workers(1)
        .queue(4)
        .results(1)
        .build(|n: u64| async move {
            sleep(MS * n as u32).await;
            Ok::<_, Infallible>(n)
        })
        .unwrap();
    let results = pool.results().unwrap();
    for n in [1, 2, 3] {
        pool.submit_detached(n).await.unwrap();
    }
    // Job 1's result fills the stream; job 2's worker waits for room; job 3 queues.
    until(&pool, |s| s.completed == 2 && s.queued == 1).await;
    sleep(Duration::from_secs(10)).await;
    assert_eq!(pool.report().completed, 2, "the worker is held, not lost");
    let err = pool.shutdown(100 * MS).await.unwrap_err();
    assert!(err.error().cause().downcast_ref::<GraceExpired>().is_some());
    assert_eq!(err.report().cancelled, 1, "job 3");
    let rest: Vec<_> = results.collect().await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].1, Ok(1));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_ticket_does_not_cancel_its_job() {
    let pool = sleepy(1, 2);
    drop(pool.submit(100).await.unwrap());
    let mut t = pool.submit(1).await.unwrap();
    assert_eq!(t.try_result(), None);
    sleep(200 * MS).await;
    assert_eq!(t.try_result(), Some(Ok(1)));
    assert_eq!(pool.report().completed, 2);
    pool.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_weak_pool_does_not_keep_the_pool_open() {
    let pool = sleepy(1, 2);
    let weak: WeakPool<u64, u64, Infallible> = pool.downgrade();
    let strong = weak.upgrade().unwrap();
    assert_eq!(strong.submit(1).await.unwrap().await, Ok(1));
    drop(strong);
    drop(pool);
    assert!(weak.upgrade().is_none());
}

#[test]
fn public_types_are_send_sync_unpin() {
    fn send_sync<T: Send + Sync>() {}
    fn send_unpin<T: Send + Unpin>() {}
    type P = Pool<String, u64, std::io::Error>;
    send_sync::<P>();
    send_sync::<WeakPool<String, u64, std::io::Error>>();
    send_sync::<PoolError>();
    send_sync::<ResizeError>();
    send_sync::<PoolReport>();
    send_sync::<SubmitError<String>>();
    send_sync::<JobError<std::io::Error>>();
    send_sync::<TrySubmitError<String>>();
    send_unpin::<Ticket<u64, std::io::Error>>();
    send_unpin::<PoolResults<u64, std::io::Error>>();
    fn submit_future_is_send(p: &P) -> impl Send + '_ {
        p.submit(String::new())
    }
    let _ = submit_future_is_send;
}

#[tokio::test(start_paused = true)]
async fn a_submit_dropped_while_waiting_is_not_counted() {
    let pool = sleepy(1, 1);
    let a = pool.submit(100).await.unwrap();
    until(&pool, |s| s.running == 1).await;
    let b = pool.submit(100).await.unwrap();
    // The queue is full: this submit waits, and is given up after 10ms.
    let gave_up = tokio::time::timeout(10 * MS, pool.submit(7)).await;
    assert!(gave_up.is_err());
    let s = pool.report();
    assert_eq!((s.submitted, s.queued, s.running, s.rejected), (2, 1, 1, 0));
    assert_eq!((a.await, b.await), (Ok(100), Ok(100)));
    let report = pool.join().await.unwrap();
    assert_eq!(report.submitted, 2);
    assert_eq!(report.submitted, report.finished());
}

/// A pool whose job `0` sleeps 1 s and every other job is done at once.
fn one_slow(workers: usize) -> Pool<u64, u64, Infallible> {
    Pool::builder()
        .workers(workers)
        .queue(64)
        .results(64)
        .build(|n: u64| async move {
            if n == 0 {
                sleep(Duration::from_secs(1)).await;
            }
            Ok(n)
        })
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_idle_pool_delivers_each_detached_result_at_once() {
    // Results travel in chunks under load; a lone result must not wait in a
    // worker's chunk for company.
    let pool = one_slow(2);
    let mut results = pool.results().unwrap();
    for n in 1..=3 {
        let id = pool.submit_detached(n).await.unwrap();
        let got = tokio::time::timeout(MS, results.recv()).await;
        assert_eq!(got, Ok(Some((id, Ok(n)))), "job {n} delivered alone");
    }
    assert!(results.is_empty());
    pool.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn finished_results_do_not_wait_behind_a_slow_job_on_the_same_worker() {
    let pool = one_slow(1);
    let mut results = pool.results().unwrap();
    // Jobs 1..=5 are queued before the worker starts, so it runs them back
    // to back (a chunk), then job 0, which sleeps a second.
    for n in [1, 2, 3, 4, 5, 0] {
        pool.try_submit_detached(n).unwrap();
    }
    let start = Instant::now();
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(results.recv().await.unwrap().1.unwrap());
    }
    assert_eq!(got, vec![1, 2, 3, 4, 5]);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "the five results were sent before the worker waited on the slow job"
    );
    assert_eq!(results.recv().await.unwrap().1, Ok(0));
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    pool.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_results_stream_counts_what_waits_in_it() {
    let pool = one_slow(1);
    let mut results = pool.results().unwrap();
    for n in 1..=40 {
        pool.try_submit_detached(n).unwrap();
    }
    until(&pool, |s| s.completed == 40).await;
    tokio::task::yield_now().await;
    assert_eq!(results.len(), 40, "two chunks: 32 + 8");
    assert_eq!(futures::Stream::size_hint(&results).0, 40);
    let mut sum = 0;
    for left in (0..40).rev() {
        sum += results.next().await.unwrap().1.unwrap();
        assert_eq!(results.len(), left);
    }
    assert_eq!(sum, (1..=40).sum::<u64>());
    pool.join().await.unwrap();
    assert_eq!(results.next().await, None);
}

#[tokio::test(start_paused = true)]
async fn submitters_waiting_on_busy_synchronous_workers_are_always_woken() {
    // Workers ring waiting submitters only at half a queue or before they
    // wait themselves; with jobs that never wait, the half-queue ring must
    // be enough for every submitter to get through.
    for (workers, queue) in [(1, 1), (1, 2), (2, 3), (3, 8)] {
        let pool = Pool::builder()
            .workers(workers)
            .queue(queue)
            .build(|n: u64| async move { Ok::<_, Infallible>(n) })
            .unwrap();
        let submitters: Vec<_> = (0..3)
            .map(|s| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let mut tickets = Vec::new();
                    for n in 0..500 {
                        tickets.push(pool.submit(s * 1000 + n).await.unwrap());
                    }
                    let mut sum = 0;
                    for t in tickets {
                        sum += t.await.unwrap();
                    }
                    sum
                })
            })
            .collect();
        let mut total = 0;
        for s in submitters {
            total += tokio::time::timeout(Duration::from_secs(60), s)
                .await
                .expect("no submitter is left waiting")
                .unwrap();
        }
        let expected: u64 = (0..3)
            .map(|s| (0..500).map(|n| s * 1000 + n).sum::<u64>())
            .sum();
        assert_eq!(total, expected, "workers {workers}, queue {queue}");
        let report = pool.join().await.unwrap();
        assert_eq!(report.completed, 1500);
    }
}

#[tokio::test(start_paused = true)]
async fn jobs_taken_with_a_job_that_waits_go_to_an_idle_worker() {
    // A worker takes a share of a long queue at once (4 of 8 with 2
    // workers). When one of its jobs waits, it gives the rest back, so they
    // do not wait a second behind job 0 while the other worker is free.
    let pool = one_slow(2);
    let mut tickets = Vec::new();
    for n in [0, 1, 2, 3, 4, 5, 6, 7] {
        tickets.push(pool.try_submit(n).unwrap());
    }
    let slow = tickets.remove(0);
    for (t, n) in tickets.into_iter().zip(1..) {
        let got = tokio::time::timeout(MS, t).await;
        assert_eq!(got, Ok(Ok(n)), "job {n} ran while job 0 slept");
    }
    assert_eq!(slow.await, Ok(0));
    pool.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn one_worker_starts_jobs_in_submission_order_even_when_they_wait() {
    // Jobs taken in a batch and given back (each job here waits) keep
    // their place at the head of the queue.
    let started = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = started.clone();
    let pool = Pool::builder()
        .workers(1)
        .queue(64)
        .build(move |n: u64| {
            log.lock().unwrap().push(n);
            async move {
                sleep(MS * (n % 3) as u32).await;
                Ok::<_, Infallible>(n)
            }
        })
        .unwrap();
    let mut tickets = Vec::new();
    for n in 0..40 {
        tickets.push(pool.try_submit(n).unwrap());
    }
    for (t, n) in tickets.into_iter().zip(0..) {
        assert_eq!(t.await, Ok(n));
    }
    assert_eq!(*started.lock().unwrap(), (0..40).collect::<Vec<_>>());
    pool.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_results_stream_holds_its_capacity_in_results_even_one_at_a_time() {
    // An idle pool sends each detached result alone; `results(8)` must
    // still hold eight of them, not eight chunks' worth of room divided by
    // the chunk size.
    let pool = Pool::builder()
        .workers(1)
        .queue(4)
        .results(8)
        .build(|n: u64| async move {
            sleep(MS).await;
            Ok::<_, Infallible>(n)
        })
        .unwrap();
    let mut results = pool.results().unwrap();
    for n in 0..8 {
        pool.submit_detached(n).await.unwrap();
        let t = pool.submit(100 + n).await.unwrap();
        let done = tokio::time::timeout(Duration::from_secs(1), t).await;
        assert_eq!(done, Ok(Ok(100 + n)), "result {n} fits in the stream");
    }
    assert_eq!(results.len(), 8);
    // Full: the ninth detached result holds the worker (backpressure)...
    pool.submit_detached(8).await.unwrap();
    let mut held = pool.submit(108).await.unwrap();
    sleep(Duration::from_secs(1)).await;
    assert_eq!(held.try_result(), None, "the worker waits for room");
    // ...until the reader takes one.
    assert_eq!(results.recv().await.unwrap().1, Ok(0));
    assert_eq!(held.await, Ok(108));
    // Dropping the stream frees a waiting worker too: job 9's result holds
    // the worker again, 10..=12 wait in the queue.
    for n in 9..13 {
        pool.submit_detached(n).await.unwrap();
    }
    drop(results);
    let report = tokio::time::timeout(Duration::from_secs(1), pool.join())
        .await
        .expect("no worker waits for a dropped stream")
        .unwrap();
    assert_eq!(report.completed, 22);
}
