//! Go's `golang.org/x/sync/semaphore` tests (semaphore_test.go and the
//! worker-pool example), ported to `weir_core::Semaphore`, then what Go does
//! not test: strict order, guards, the errors, and a model-checked
//! accounting property.
//!
//! Go's tests sleep on the real clock; these run on tokio's paused clock and
//! bound every wait with a (paused) timeout, so a starving or lost waiter
//! fails the test instead of hanging it.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use proptest::prelude::*;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use weir_core::{
    Cause, Context, Problem, Semaphore, SemaphoreError, WeightedAcquire, WeightedPermit,
};

/// Long enough for anything in these tests on a paused clock; reaching it
/// means a waiter starved or a wake-up was lost.
const BOUND: Duration = Duration::from_secs(60);

/// A small deterministic generator for "random" sleeps (Go uses math/rand).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

// --- semaphore_test.go ---

/// TestWeighted / HammerWeighted: n tasks, task i takes i permits of n in a
/// loop with random sleeps. Also checks what Go leaves implicit: permits in
/// use never exceed the size, and all come back.
#[tokio::test(start_paused = true)]
async fn weighted_hammer() {
    const N: usize = 8;
    let loops = 10_000 / N;
    let sem = Semaphore::new(N).unwrap();
    let in_use = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for i in 0..N {
        let (sem, in_use) = (sem.clone(), Arc::clone(&in_use));
        tasks.spawn(async move {
            let mut rng = Lcg(i as u64 + 1);
            for _ in 0..loops {
                let permit = sem.acquire(i as u32).await.unwrap();
                let now = in_use.fetch_add(i, Ordering::SeqCst) + i;
                assert!(now <= N, "{now} permits in use of {N}");
                tokio::time::sleep(Duration::from_nanos(rng.below(1_000_000))).await;
                in_use.fetch_sub(i, Ordering::SeqCst);
                drop(permit);
            }
        });
    }
    timeout(BOUND, async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    })
    .await
    .unwrap();
    assert_eq!(sem.available(), N);
}

/// TestWeightedPanic: Go panics on releasing what was not acquired; weir
/// returns an error and changes nothing.
#[test]
fn weighted_release_unacquired_is_an_error() {
    let sem = Semaphore::new(1).unwrap();
    let err = sem.release(1).unwrap_err();
    assert_eq!(
        err,
        SemaphoreError::ReleaseExceedsHeld {
            released: 1,
            held: 0
        }
    );
    assert_eq!(
        err.to_string(),
        "semaphore: released 1 permit(s) but only 0 are held"
    );
    assert_eq!(sem.available(), 1);
}

/// TestWeightedTryAcquire, Go's style: forget the guards, release by count.
#[tokio::test]
async fn weighted_try_acquire() {
    let sem = Semaphore::new(2).unwrap();
    let mut tries = Vec::new();
    sem.acquire(1).await.unwrap().forget();
    tries.push(sem.try_acquire(1).map(WeightedPermit::forget).is_ok());
    tries.push(sem.try_acquire(1).map(WeightedPermit::forget).is_ok());

    sem.release(2).unwrap();

    tries.push(sem.try_acquire(1).map(WeightedPermit::forget).is_ok());
    sem.acquire(1).await.unwrap().forget();
    tries.push(sem.try_acquire(1).map(WeightedPermit::forget).is_ok());

    assert_eq!(tries, [true, false, true, false]);
    assert_eq!(sem.held(), 2);
}

/// TestWeightedAcquire: each try is an acquire bounded by a 10 ms deadline.
#[tokio::test(start_paused = true)]
async fn weighted_acquire() {
    let sem = Semaphore::new(2).unwrap();
    let try_acquire = |n: u32| {
        let sem = sem.clone();
        async move {
            let ctx = Context::background().with_timeout(Duration::from_millis(10));
            match sem.acquire(n).context(&ctx).await {
                Ok(permit) => {
                    permit.forget();
                    true
                }
                Err(err) => {
                    assert_eq!(err, SemaphoreError::Stopped(Cause::DeadlineExceeded));
                    false
                }
            }
        }
    };
    let mut tries = Vec::new();
    sem.acquire(1).await.unwrap().forget();
    tries.push(try_acquire(1).await);
    tries.push(try_acquire(1).await);

    sem.release(2).unwrap();

    tries.push(try_acquire(1).await);
    sem.acquire(1).await.unwrap().forget();
    tries.push(try_acquire(1).await);

    assert_eq!(tries, [true, false, true, false]);
}

/// TestWeightedDoesntBlockIfTooBig: a request for more than the size waits
/// for its context only; it does not hold back the queue.
#[tokio::test(start_paused = true)]
async fn weighted_doesnt_block_if_too_big() {
    const N: usize = 2;
    let sem = Semaphore::new(N).unwrap();
    let ctx = Context::background();
    let too_big = tokio::spawn({
        let (sem, ctx) = (sem.clone(), ctx.clone());
        async move { sem.acquire(N as u32 + 1).context(&ctx).await.map(|_| ()) }
    });
    tokio::task::yield_now().await; // let it start waiting

    let mut tasks = JoinSet::new();
    for _ in 0..N * 3 {
        let sem = sem.clone();
        tasks.spawn(async move {
            let permit = sem.acquire(1).await?;
            tokio::time::sleep(Duration::from_millis(1)).await;
            drop(permit);
            Ok::<_, SemaphoreError>(())
        });
    }
    timeout(BOUND, async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
    })
    .await
    .expect("acquire(1) blocked behind a request larger than the size");

    assert!(!too_big.is_finished());
    ctx.cancel();
    let err = too_big.await.unwrap().unwrap_err();
    assert_eq!(err, SemaphoreError::Stopped(Cause::Cancelled));
    assert_eq!(sem.available(), N);
}

/// TestLargeAcquireDoesntStarve: n tasks each keep releasing and retaking
/// one permit; an acquire of all n still gets through (it is queued ahead
/// of their retakes).
#[tokio::test(start_paused = true)]
async fn large_acquire_doesnt_starve() {
    const N: usize = 8;
    let sem = Semaphore::new(N).unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let mut tasks = JoinSet::new();
    for _ in 0..N {
        let mut permit = sem.acquire(1).await.unwrap();
        let (sem, running) = (sem.clone(), Arc::clone(&running));
        tasks.spawn(async move {
            while running.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(1)).await;
                drop(permit);
                permit = sem.acquire(1).await.unwrap();
            }
        });
    }

    let all = timeout(BOUND, sem.acquire(N as u32))
        .await
        .expect("the large acquire starved")
        .unwrap();
    running.store(false, Ordering::SeqCst);
    drop(all);
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    assert_eq!(sem.available(), N);
}

/// TestAllocCancelDoesntStarve: the waiter at the head of the queue (for
/// 10, holding the 9 it collected) is cancelled; the acquire(1) behind it
/// must get through.
#[tokio::test(start_paused = true)]
async fn alloc_cancel_doesnt_starve() {
    let sem = Semaphore::new(10).unwrap();
    let _one = sem.acquire(1).await.unwrap();

    let ctx = Context::background();
    let big = tokio::spawn({
        let (sem, ctx) = (sem.clone(), ctx.clone());
        async move { sem.acquire(10).context(&ctx).await.map(|_| ()) }
    });
    // Wait until the acquire(10) call blocks.
    while let Ok(p) = sem.try_acquire(1) {
        drop(p);
        tokio::task::yield_now().await;
    }

    // Grab a read lock and, at the same time, cancel the acquire(10).
    tokio::spawn(async move { ctx.cancel() });
    let small = timeout(BOUND, sem.acquire(1))
        .await
        .expect("acquire(1) starved behind a cancelled waiter")
        .unwrap();
    drop(small);
    assert_eq!(
        big.await.unwrap().unwrap_err(),
        SemaphoreError::Stopped(Cause::Cancelled)
    );
    assert_eq!(sem.available(), 9);
}

/// TestWeightedAcquireCanceled (go.dev/issue/63615): a context cancelled
/// before enough permits came must fail the acquire, and must not lose the
/// permits; a cancelled context fails even when permits are free.
#[tokio::test(start_paused = true)]
async fn weighted_acquire_canceled() {
    let sem = Semaphore::new(2).unwrap();
    let ctx = Context::background();
    sem.acquire(1).await.unwrap().forget();
    let other = tokio::spawn({
        let (sem, ctx) = (sem.clone(), ctx.clone());
        async move {
            // Synchronise with the acquire(2) below.
            while let Ok(p) = sem.try_acquire(1) {
                drop(p);
                tokio::task::yield_now().await;
            }
            // Cancel, then release the permit.
            ctx.cancel();
            sem.release(1).unwrap();
        }
    });
    let err = sem.acquire(2).context(&ctx).await.unwrap_err();
    assert_eq!(err, SemaphoreError::Stopped(Cause::Cancelled));

    other.await.unwrap();
    let both = sem
        .try_acquire(2)
        .expect("try_acquire(2) after a cancelled acquire failed");
    drop(both);
    let err = sem.acquire(1).context(&ctx).await.unwrap_err();
    assert_eq!(err, SemaphoreError::Stopped(Cause::Cancelled));
    assert_eq!(sem.available(), 2);
}

/// semaphore_example_test.go's Example_workerPool: a semaphore as a worker
/// pool without workers; taking every permit at the end waits for the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn example_worker_pool() {
    fn collatz_steps(mut n: u64) -> u64 {
        let mut steps = 0;
        while n > 1 {
            n = if n.is_multiple_of(2) {
                n / 2
            } else {
                3 * n + 1
            };
            steps += 1;
        }
        steps
    }
    const MAX_WORKERS: usize = 4;
    let sem = Semaphore::new(MAX_WORKERS).unwrap();
    let out = Arc::new(std::sync::Mutex::new(vec![0u64; 32]));
    for i in 0..32 {
        let permit = sem.acquire(1).await.unwrap();
        let out = Arc::clone(&out);
        tokio::spawn(async move {
            let _permit = permit; // released when this task ends
            out.lock().unwrap()[i] = collatz_steps(i as u64 + 1);
        });
    }
    let _all = sem.acquire(MAX_WORKERS as u32).await.unwrap();
    assert_eq!(
        *out.lock().unwrap(),
        [
            0, 1, 7, 2, 5, 8, 16, 3, 19, 6, 14, 9, 9, 17, 17, 4, 12, 20, 20, 7, 7, 15, 15, 10, 23,
            10, 111, 18, 18, 18, 106, 5
        ]
    );
}

// --- beyond Go's tests ---

#[test]
fn sizes_are_checked_at_new() {
    let err = Semaphore::new(0).unwrap_err();
    assert_eq!(err.problem(), &Problem::Zero);
    assert_eq!(
        err.to_string(),
        "semaphore: size must be at least 1 (got 0)"
    );
    let err = Semaphore::new(usize::MAX).unwrap_err();
    assert_eq!(
        err.problem(),
        &Problem::TooLarge {
            max: Semaphore::MAX_SIZE as u64
        }
    );
}

/// A waiting large request holds back a later small one that would fit,
/// and try_acquire does not barge past it.
#[tokio::test(start_paused = true)]
async fn strict_fifo_no_barging() {
    let sem = Semaphore::new(10).unwrap();
    let five = sem.acquire(5).await.unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut waiters = JoinSet::new();
    for (name, n) in [("large", 10), ("small", 1)] {
        let (sem, order) = (sem.clone(), Arc::clone(&order));
        waiters.spawn(async move {
            let permit = sem.acquire(n).await.unwrap();
            order.lock().unwrap().push(name);
            tokio::time::sleep(Duration::from_millis(1)).await;
            drop(permit);
        });
        tokio::task::yield_now().await; // queue them in this order
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Five permits are unused, but the large request is first in line.
    assert!(order.lock().unwrap().is_empty());
    assert_eq!(
        sem.try_acquire(1).unwrap_err(),
        SemaphoreError::WouldWait { requested: 1 }
    );
    drop(five);
    while let Some(r) = waiters.join_next().await {
        r.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), ["large", "small"]);
    assert_eq!(sem.available(), 10);
}

/// Dropping the waiting future at the head (not cancelling a context) hands
/// the permits it collected to the next waiter.
#[tokio::test(start_paused = true)]
async fn dropping_the_head_waiter_wakes_the_next() {
    let sem = Semaphore::new(4).unwrap();
    let three = sem.acquire(3).await.unwrap();
    let head = tokio::spawn({
        let sem = sem.clone();
        async move { sem.acquire(4).await.map(|_| ()) }
    });
    tokio::task::yield_now().await;
    let next = tokio::spawn({
        let sem = sem.clone();
        async move { sem.acquire(2).await.map(|p| p.num_permits()) }
    });
    tokio::task::yield_now().await;
    drop(three); // the head now has 4 of 4... but is aborted before it runs
    head.abort();
    assert!(head.await.unwrap_err().is_cancelled());
    assert_eq!(timeout(BOUND, next).await.unwrap().unwrap().unwrap(), 2);
    assert_eq!(sem.available(), 4);
}

#[tokio::test(start_paused = true)]
async fn too_large_without_a_context_fails_at_once() {
    let sem = Semaphore::new(3).unwrap();
    let err = timeout(BOUND, sem.acquire(4)).await.unwrap().unwrap_err();
    assert_eq!(
        err,
        SemaphoreError::TooLarge {
            requested: 4,
            size: 3
        }
    );
    assert_eq!(
        err.to_string(),
        "semaphore: 4 permit(s) asked for, more than its size of 3"
    );
    assert_eq!(
        sem.try_acquire(4).unwrap_err(),
        SemaphoreError::TooLarge {
            requested: 4,
            size: 3
        }
    );
}

#[tokio::test]
async fn zero_permits_are_granted_at_once_even_behind_waiters() {
    let sem = Semaphore::new(1).unwrap();
    let one = sem.acquire(1).await.unwrap();
    let mut waiter = Box::pin(sem.acquire(1));
    assert!(futures::poll!(waiter.as_mut()).is_pending());
    assert_eq!(sem.acquire(0).await.unwrap().num_permits(), 0);
    assert_eq!(sem.try_acquire(0).unwrap().num_permits(), 0);
    drop(one);
    assert_eq!(waiter.await.unwrap().num_permits(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_stops_the_wait_with_deadline_exceeded() {
    let sem = Semaphore::new(1).unwrap();
    let _one = sem.acquire(1).await.unwrap();
    let ctx = Context::background().with_timeout(Duration::from_millis(30));
    let start = tokio::time::Instant::now();
    let err = sem.acquire(1).context(&ctx).await.unwrap_err();
    assert_eq!(err.cause(), Some(&Cause::DeadlineExceeded));
    assert_eq!(start.elapsed(), Duration::from_millis(30));
    assert_eq!(
        err.to_string(),
        "semaphore wait stopped: context deadline exceeded"
    );
}

#[tokio::test]
async fn a_cancellation_token_is_a_context() {
    let sem = Semaphore::new(1).unwrap();
    let _one = sem.acquire(1).await.unwrap();
    let token = CancellationToken::new();
    let wait = sem.acquire(1).context(&token);
    token.cancel();
    assert_eq!(
        wait.await.unwrap_err(),
        SemaphoreError::Stopped(Cause::Cancelled)
    );
}

#[tokio::test]
async fn a_cause_given_to_the_context_is_the_error() {
    let sem = Semaphore::new(1).unwrap();
    let _one = sem.acquire(1).await.unwrap();
    let ctx = Context::background();
    let wait = tokio::spawn({
        let (sem, ctx) = (sem.clone(), ctx.clone());
        async move { sem.acquire(1).context(&ctx).await.map(|_| ()) }
    });
    tokio::task::yield_now().await;
    ctx.cancel_with("shutting down");
    let err = wait.await.unwrap().unwrap_err();
    assert_eq!(err.to_string(), "semaphore wait stopped: shutting down");
    assert!(err.cause().unwrap().downcast_ref::<&str>().is_some());
}

/// A permit moved into a task comes back when the task panics or is
/// aborted.
#[tokio::test]
async fn permits_come_back_from_panicking_and_aborted_tasks() {
    let sem = Semaphore::new(3).unwrap();
    let permit = sem.acquire(2).await.unwrap();
    let panicked = tokio::spawn(async move {
        let _permit = permit;
        panic!("boom");
    });
    assert!(panicked.await.unwrap_err().is_panic());
    let permit = sem.acquire(3).await.unwrap();
    let aborted = tokio::spawn(async move {
        let _permit = permit;
        std::future::pending::<()>().await;
    });
    aborted.abort();
    assert!(aborted.await.unwrap_err().is_cancelled());
    assert_eq!(sem.available(), 3);
}

#[test]
fn a_split_guard_releases_its_part() {
    let sem = Semaphore::new(4).unwrap();
    let mut all = sem.try_acquire(4).unwrap();
    let one = all.split(1).unwrap();
    drop(all);
    assert_eq!(sem.available(), 3);
    one.forget();
    assert_eq!((sem.available(), sem.held()), (3, 1));
    sem.release(1).unwrap();
    assert_eq!(sem.available(), 4);
}

#[test]
fn auto_traits() {
    fn send_sync<T: Send + Sync>() {}
    fn send_unpin<T: Send + Unpin>() {}
    send_sync::<Semaphore>();
    send_sync::<WeightedPermit>();
    send_sync::<SemaphoreError>();
    send_unpin::<WeightedAcquire<'static>>();
}

// --- accounting, model-checked ---

#[derive(Debug, Clone)]
enum Op {
    Acquire(u32),
    TryAcquire(u32),
    DropPermit(usize),
    ForgetPermit(usize),
    Release(usize),
    CancelWaiter(usize),
    DropWaiter(usize),
}

fn op(size: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..=size + 1).prop_map(Op::Acquire),
        1 => (0..=size + 1).prop_map(Op::TryAcquire),
        2 => any::<usize>().prop_map(Op::DropPermit),
        1 => any::<usize>().prop_map(Op::ForgetPermit),
        1 => (0..=size as usize).prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::CancelWaiter),
        1 => any::<usize>().prop_map(Op::DropWaiter),
    ]
}

struct Waiter<'a> {
    id: usize,
    ctx: Context,
    fut: WeightedAcquire<'a>,
}

/// A strict FIFO semaphore, the model the real one must match.
struct Model {
    free: usize,
    bank: usize,
    /// (waiter id, permits) in arrival order; requests above the size are
    /// not here (they never queue).
    queue: VecDeque<(usize, usize)>,
    granted: Vec<usize>,
}

impl Model {
    fn drain(&mut self) {
        while let Some(&(id, n)) = self.queue.front() {
            if n > self.free {
                break;
            }
            self.free -= n;
            self.queue.pop_front();
            self.granted.push(id);
        }
    }
    fn leave(&mut self, id: usize) {
        self.queue.retain(|&(w, _)| w != id);
        self.drain();
    }
}

fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    let mut cx = TaskContext::from_waker(futures::task::noop_waker_ref());
    Pin::new(fut).poll(&mut cx)
}

fn run_model(size: usize, ops: Vec<Op>) {
    let sem = Semaphore::new(size).unwrap();
    let mut model = Model {
        free: size,
        bank: 0,
        queue: VecDeque::new(),
        granted: Vec::new(),
    };
    let mut waiters: Vec<Waiter<'_>> = Vec::new();
    let mut permits: Vec<WeightedPermit> = Vec::new();
    for (id, op) in ops.into_iter().enumerate() {
        match op {
            Op::Acquire(n) => {
                let ctx = Context::background();
                let fut = sem.acquire(n).context(&ctx);
                let n = n as usize;
                if n == 0 || (n <= size && model.queue.is_empty() && n <= model.free) {
                    model.free -= n;
                    model.granted.push(id);
                } else if n <= size {
                    model.queue.push_back((id, n));
                }
                waiters.push(Waiter { id, ctx, fut });
            }
            Op::TryAcquire(n) => {
                let got = sem.try_acquire(n);
                let n = n as usize;
                if n > size {
                    assert!(matches!(got, Err(SemaphoreError::TooLarge { .. })));
                } else if n == 0 || (model.queue.is_empty() && n <= model.free) {
                    model.free -= n;
                    permits.push(got.unwrap());
                } else {
                    assert!(matches!(got, Err(SemaphoreError::WouldWait { .. })));
                }
            }
            Op::DropPermit(i) if !permits.is_empty() => {
                let p = permits.swap_remove(i % permits.len());
                model.free += p.num_permits();
                drop(p);
                model.drain();
            }
            Op::ForgetPermit(i) if !permits.is_empty() => {
                let p = permits.swap_remove(i % permits.len());
                model.bank += p.num_permits();
                p.forget();
            }
            Op::Release(n) => {
                let released = sem.release(n);
                if n <= model.bank {
                    released.unwrap();
                    model.bank -= n;
                    model.free += n;
                    model.drain();
                } else {
                    assert!(matches!(
                        released,
                        Err(SemaphoreError::ReleaseExceedsHeld { .. })
                    ));
                }
            }
            Op::CancelWaiter(i) if !waiters.is_empty() => {
                let mut w = waiters.remove(i % waiters.len());
                w.ctx.cancel();
                match poll_once(&mut w.fut) {
                    Poll::Ready(Err(SemaphoreError::Stopped(Cause::Cancelled))) => {}
                    other => panic!("a cancelled waiter returned {other:?}"),
                }
                model.leave(w.id);
            }
            Op::DropWaiter(i) if !waiters.is_empty() => {
                let w = waiters.remove(i % waiters.len());
                let id = w.id;
                drop(w);
                model.leave(id);
            }
            _ => {}
        }
        // Every waiter the model granted completes now, no other.
        let mut still = Vec::new();
        for mut w in waiters.drain(..) {
            match poll_once(&mut w.fut) {
                Poll::Ready(Ok(p)) => {
                    let at = model.granted.iter().position(|&g| g == w.id);
                    assert!(at.is_some(), "waiter {} completed out of turn", w.id);
                    model.granted.retain(|&g| g != w.id);
                    permits.push(p);
                }
                Poll::Ready(Err(e)) => panic!("waiter {} failed: {e}", w.id),
                Poll::Pending => still.push(w),
            }
        }
        waiters = still;
        assert!(
            model.granted.is_empty(),
            "granted but still waiting: {:?}",
            model.granted
        );

        let in_guards: usize = permits.iter().map(WeightedPermit::num_permits).sum();
        assert!(
            in_guards + sem.held() <= size,
            "more permits out than the size"
        );
        assert_eq!(sem.held(), model.bank);
        assert_eq!(in_guards + model.bank + model.free, size);
        let expected = if model.queue.is_empty() {
            model.free
        } else {
            0
        };
        assert_eq!(sem.available(), expected);
    }
    // Nothing is lost: everything given back, every permit is free again.
    drop(waiters);
    drop(permits);
    sem.release(model.bank).unwrap();
    assert_eq!(sem.available(), size);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random acquires, tries, drops, forgets, releases and cancellations:
    /// the real semaphore serves exactly the waiters a strict FIFO model
    /// serves, never has more permits out than its size, and gets every
    /// permit back.
    #[test]
    fn accounting_matches_a_fifo_model(
        size in 1usize..6,
        ops in prop::collection::vec(op(6), 1..60),
    ) {
        run_model(size, ops);
    }
}
