//! Pool: the Go pool libraries' knobs — ants' `MaxBlockingTasks`
//! (`max_waiting_submits`) and pond's/ants' panic handler (`on_panic`) —
//! and the panic payload reaching the ticket.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use tokio::time::{Instant, sleep};
use weir_core::Panic;
use weir_core::pool::{JobError, Pool, SubmitError, SubmitTimeoutError, Ticket};

const MS: Duration = Duration::from_millis(1);

/// A non-string panic payload.
#[derive(Debug, Clone, PartialEq)]
struct Code(u32);

/// Silences the panics these tests raise on purpose.
fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let p = info.payload();
            let deliberate = p.is::<Code>()
                || p.downcast_ref::<&str>()
                    .is_some_and(|m| m.starts_with("deliberate"))
                || p.downcast_ref::<String>()
                    .is_some_and(|m| m.starts_with("deliberate"));
            if !deliberate {
                default(info);
            }
        }));
    });
}

fn sleepy(max_waiting: usize) -> Pool<u64, u64, Infallible> {
    Pool::builder()
        .workers(1)
        .queue(1)
        .max_waiting_submits(max_waiting)
        .build(|n: u64| async move {
            sleep(MS * n as u32).await;
            Ok(n)
        })
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn max_waiting_submits_refuses_the_next_caller_at_once_and_hands_its_job_back() {
    let pool = sleepy(2);
    let running = pool.submit(100).await.unwrap();
    sleep(MS).await;
    let queued = pool.submit(100).await.unwrap();
    // The queue is full: two callers may wait for room...
    let waiters: Vec<_> = (0..2)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.submit(10 + i).await.map(|t| t.id()) })
        })
        .collect();
    sleep(MS).await;
    assert!(waiters.iter().all(|w| !w.is_finished()), "both wait");
    // ...the third is refused at once, with its job.
    let start = Instant::now();
    let err = pool.submit(99).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO, "refused without waiting");
    assert!(err.is_overloaded());
    assert_eq!(
        err.to_string(),
        "too many submits already wait for room in the pool's queue"
    );
    assert!(matches!(err, SubmitError::Overloaded(99)));
    // Every way that waits counts against the same limit.
    assert!(matches!(
        pool.submit_detached(98).await,
        Err(SubmitError::Overloaded(98))
    ));
    assert!(matches!(
        pool.submit_timeout(97, Duration::from_secs(1)).await,
        Err(SubmitTimeoutError::Overloaded(97))
    ));
    assert!(
        pool.submit_detached_timeout(96, Duration::from_secs(1))
            .await
            .unwrap_err()
            .is_overloaded()
    );
    // A submit that would not wait is not refused by the limit.
    assert!(pool.try_submit(95).unwrap_err().is_full());
    let r = pool.report();
    assert_eq!(
        (r.submitted, r.rejected),
        (2, 5),
        "refusals count as rejected"
    );
    assert!(r.is_balanced());

    // Once the waiters got in, there is room to wait again.
    for w in waiters {
        w.await.unwrap().unwrap();
    }
    assert_eq!((running.await, queued.await), (Ok(100), Ok(100)));
    let t = pool.submit(1).await.unwrap();
    assert_eq!(t.await, Ok(1));
    let report = pool.join().await.unwrap();
    assert_eq!((report.completed, report.rejected), (5, 5));
    assert!(report.is_balanced());
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_gives_up_frees_its_place() {
    let pool = sleepy(1);
    drop(pool.submit(100).await.unwrap());
    sleep(MS).await;
    drop(pool.submit(100).await.unwrap());
    // The one waiter allowed gives up after 10ms (its future is dropped).
    let gave_up = tokio::time::timeout(10 * MS, pool.submit(1)).await;
    assert!(gave_up.is_err());
    // Its place is free again: this caller may wait, and gets in.
    let t = pool.submit_timeout(2, Duration::MAX).await.unwrap();
    assert_eq!(t.await, Ok(2));
    let report = pool.join().await.unwrap();
    assert_eq!((report.submitted, report.rejected), (3, 0));
}

#[tokio::test(start_paused = true)]
async fn on_panic_is_called_once_per_panic_after_the_ticket_got_it() {
    quiet_panics();
    type Seen = Arc<Mutex<Vec<(Option<Code>, String)>>>;
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let pool = Pool::builder()
        .workers(2)
        .queue(8)
        .on_panic(move |panic: &Panic| {
            log.lock()
                .unwrap()
                .push((panic.downcast_payload::<Code>(), panic.message().to_owned()));
        })
        .build(|n: u32| async move {
            sleep(MS).await;
            match n {
                1 => std::panic::panic_any(Code(7)),
                2 => panic!("deliberate {n}"),
                3 => Err("plain failure"),
                _ => Ok(n),
            }
        })
        .unwrap();
    let mut tickets = Vec::new();
    for n in [0, 1, 2, 3, 4] {
        tickets.push(pool.submit(n).await.unwrap());
    }
    let mut results = Vec::new();
    for t in tickets {
        results.push(t.await);
    }
    // The ticket holds the payload, downcastable.
    let p = results[1].as_ref().unwrap_err().panic().unwrap();
    assert_eq!(p.downcast_payload::<Code>(), Some(Code(7)));
    assert_eq!(p.message(), "<non-string panic payload>");
    assert_eq!(
        results[2].as_ref().unwrap_err().to_string(),
        "job panicked: deliberate 2"
    );
    // A failure is not a panic.
    assert_eq!(results[3], Err(JobError::Failed("plain failure")));
    let report = pool.join().await.unwrap();
    assert_eq!(
        (report.panicked, report.failed, report.completed),
        (2, 1, 2)
    );
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        seen,
        vec![
            (Some(Code(7)), "<non-string panic payload>".to_owned()),
            (None, "deliberate 2".to_owned()),
        ],
        "once per panic, with the payload"
    );
}

#[tokio::test(start_paused = true)]
async fn the_payload_can_be_taken_from_the_ticket_and_re_raised() {
    quiet_panics();
    let pool = Pool::builder()
        .workers(1)
        .build(|n: u32| async move {
            if n == 0 {
                std::panic::panic_any(Code(42));
            }
            Ok::<_, Infallible>(n)
        })
        .unwrap();
    let err = pool.submit(0).await.unwrap().await.unwrap_err();
    let JobError::Panicked(panic) = err else {
        panic!("not a panic: {err:?}")
    };
    assert!(panic.payload_is::<Code>());
    let payload = panic.take_payload().unwrap();
    assert_eq!(payload.downcast_ref::<Code>(), Some(&Code(42)));
    assert!(!panic.payload_is::<Code>(), "taken once");
    // The worker carried on.
    assert_eq!(pool.submit(5).await.unwrap().await, Ok(5));
    pool.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_panicking_on_panic_handler_does_not_cost_a_worker() {
    quiet_panics();
    let pool = Pool::builder()
        .workers(1)
        .on_panic(|_| panic!("deliberate, in the handler"))
        .build(|n: u32| async move {
            assert!(n != 0, "deliberate: job 0");
            Ok::<_, Infallible>(n)
        })
        .unwrap();
    assert!(
        pool.submit(0)
            .await
            .unwrap()
            .await
            .unwrap_err()
            .is_panicked()
    );
    assert_eq!(pool.submit(1).await.unwrap().await, Ok(1));
    let report = pool.join().await.unwrap();
    assert_eq!((report.panicked, report.completed), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn on_panic_runs_after_the_ticket_was_resolved() {
    quiet_panics();
    type Slot = Arc<Mutex<Option<Ticket<u32, Infallible>>>>;
    let slot: Slot = Arc::default();
    let resolved: Arc<Mutex<Option<bool>>> = Arc::default();
    let (hook_slot, hook_resolved) = (slot.clone(), resolved.clone());
    let pool = Pool::builder()
        .workers(1)
        .on_panic(move |_| {
            let mut ticket = hook_slot.lock().unwrap().take().unwrap();
            let got = ticket.try_result();
            *hook_resolved.lock().unwrap() = Some(got.is_some_and(|r| r.is_err()));
        })
        .build(|n: u32| async move {
            sleep(MS).await;
            assert!(n != 0, "deliberate");
            Ok::<_, Infallible>(n)
        })
        .unwrap();
    *slot.lock().unwrap() = Some(pool.submit(0).await.unwrap());
    let report = pool.join().await.unwrap();
    assert_eq!(report.panicked, 1);
    assert_eq!(*resolved.lock().unwrap(), Some(true));
}
