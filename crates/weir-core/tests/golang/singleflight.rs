//! Go's `golang.org/x/sync/singleflight` tests (singleflight_test.go and
//! ExampleGroup), ported to `weir_core::Singleflight`, then what Go does not
//! test: a caller that leaves (the first one, or all of them), contexts, the
//! errors' text, and a model-checked property over random interleavings.
//!
//! Where Go's test is timing-dependent (TestDoDupSuppress allows anywhere
//! between 1 and n-1 calls), the port makes the interleaving deterministic
//! and asserts the exact outcome. Every wait is bounded by a timeout on the
//! paused clock, so a hang fails the test.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use proptest::prelude::*;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::timeout;
use weir_core::{Cause, Context, Flight, Singleflight, SingleflightCall, SingleflightError};

const BOUND: Duration = Duration::from_secs(60);

/// Lets every spawned task run until it waits (current-thread runtime).
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ErrValue;
impl std::fmt::Display for ErrValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("error value")
    }
}
impl std::error::Error for ErrValue {}

// --- singleflight_test.go ---

/// TestPanicErrorUnwrap: Go wraps the panic value in an error that unwraps
/// to it; here the payload is kept and downcasts to itself.
#[tokio::test]
async fn panic_payload_is_kept() {
    let group: Singleflight<&str, ()> = Singleflight::new();
    let err = group
        .call("error payload", || async {
            std::panic::panic_any(ErrValue)
        })
        .await
        .unwrap_err();
    let panic = err.panic().unwrap();
    assert_eq!(panic.downcast_payload::<ErrValue>(), Some(ErrValue));
    assert_eq!(panic.message(), "<non-string panic payload>");

    let err = group
        .call("string payload", || async { panic!("string value") })
        .await
        .unwrap_err();
    assert!(err.panic().unwrap().payload_is::<&str>());
    assert_eq!(err.to_string(), "singleflight call panicked: string value");
}

/// TestDo
#[tokio::test]
async fn do_returns_the_value() {
    let group: Singleflight<&str, String> = Singleflight::new();
    let flight = group
        .call("key", || async { anyhow::Ok("bar".to_owned()) })
        .await
        .unwrap();
    assert_eq!(
        flight,
        group
            .call("key", || async { anyhow::Ok("bar".to_owned()) })
            .await
            .unwrap()
    );
    assert_eq!(flight.value, "bar");
    assert!(!flight.shared);
}

/// TestDoErr: the caller gets the very error value the call returned.
#[tokio::test]
async fn do_returns_the_error_value() {
    let group: Singleflight<&str, String, ErrValue> = Singleflight::new();
    let err = group
        .call("key", || async { Err(ErrValue) })
        .await
        .unwrap_err();
    assert_eq!(err.error(), Some(&ErrValue));
    assert_eq!(err.to_string(), "error value");
    assert!(!err.is_shared());
}

/// TestDoDupSuppress: ten callers of one key while the call is in flight;
/// the call runs once and all ten get its value.
#[tokio::test(start_paused = true)]
async fn do_dup_suppress() {
    const N: usize = 10;
    let group: Singleflight<&str, String> = Singleflight::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = watch::channel(None::<String>);
    let mut tasks = JoinSet::new();
    for _ in 0..N {
        let (group, calls, mut rx) = (group.clone(), Arc::clone(&calls), rx.clone());
        tasks.spawn(async move {
            group
                .call("key", move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let v = rx.wait_for(Option::is_some).await?.clone().unwrap();
                    tokio::time::sleep(Duration::from_millis(10)).await; // let more callers in
                    anyhow::Ok(v)
                })
                .await
        });
    }
    settle().await; // every caller has joined
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    tx.send(Some("bar".to_owned())).unwrap();
    let results = timeout(BOUND, tasks.join_all()).await.unwrap();
    for flight in results {
        let flight = flight.unwrap();
        assert_eq!(flight.value, "bar");
        assert!(flight.shared);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(group.in_flight(), 0);
}

/// TestForget (go.dev/issue/31420): after `forget`, a new call runs while
/// the old one is in flight, and the old one's end does not remove the new
/// one, so a third caller joins the second call.
#[tokio::test(start_paused = true)]
async fn forget() {
    let group: Singleflight<&str, u32> = Singleflight::new();

    let (first_started, started) = oneshot::channel();
    let (unblock_first, unblock) = oneshot::channel::<()>();
    let first = tokio::spawn({
        let group = group.clone();
        async move {
            group
                .call("key", move || async move {
                    first_started.send(()).unwrap();
                    unblock.await.unwrap();
                    anyhow::Ok(1)
                })
                .await
        }
    });
    started.await.unwrap();
    assert!(group.forget("key"));
    assert_eq!(group.in_flight(), 0);

    let (unblock_second, unblock) = oneshot::channel::<()>();
    let second = tokio::spawn({
        let group = group.clone();
        async move {
            group
                .call("key", move || async move {
                    unblock.await.unwrap();
                    anyhow::Ok(2)
                })
                .await
        }
    });
    settle().await;
    assert_eq!(group.in_flight(), 1);

    unblock_first.send(()).unwrap();
    // The first call has ended completely (Go can only wait for `fn`).
    assert_eq!(first.await.unwrap().unwrap().value, 1);
    assert_eq!(
        group.in_flight(),
        1,
        "the first call's end removed the second"
    );

    let third = tokio::spawn({
        let group = group.clone();
        async move { group.call("key", || async { anyhow::Ok(3) }).await }
    });
    settle().await;
    unblock_second.send(()).unwrap();
    let second = second.await.unwrap().unwrap();
    let third = third.await.unwrap().unwrap();
    assert_eq!(
        third.value, 2,
        "the third caller must get the second call's result"
    );
    assert!(second.shared && third.shared);
    assert!(!group.forget("key"));
}

/// TestDoChan: Go's `DoChan` is a call on a task of its own.
#[tokio::test]
async fn do_chan() {
    let group: Singleflight<&str, String> = Singleflight::new();
    let ch = tokio::spawn({
        let group = group.clone();
        async move {
            group
                .call("key", || async { anyhow::Ok("bar".to_owned()) })
                .await
        }
    });
    assert_eq!(ch.await.unwrap().unwrap().value, "bar");
}

/// TestPanicDo (go.dev/issue/41133): every caller of a panicking call gets
/// the panic, within bounded time.
#[tokio::test(start_paused = true)]
async fn panic_do() {
    const N: usize = 5;
    let group: Singleflight<&str, ()> = Singleflight::new();
    let mut tasks = JoinSet::new();
    for _ in 0..N {
        let group = group.clone();
        tasks.spawn(async move {
            group
                .call("key", || async {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    panic!("invalid memory address or nil pointer dereference")
                })
                .await
        });
    }
    let results = timeout(Duration::from_secs(1), tasks.join_all())
        .await
        .expect("Do hangs");
    assert_eq!(results.len(), N);
    for r in results {
        let err = r.unwrap_err();
        assert!(err.is_panic() && err.is_shared());
        assert_eq!(
            err.panic().unwrap().message(),
            "invalid memory address or nil pointer dereference"
        );
    }
    assert_eq!(group.in_flight(), 0);
}

/// TestGoexitDo has no Rust equivalent: a future cannot end its task the way
/// `runtime.Goexit` ends a goroutine. Its nearest case is the caller that
/// runs the call going away mid-call (dropped, aborted): the other callers
/// must neither hang nor get an error; they carry the call on.
#[tokio::test(start_paused = true)]
async fn goexit_do_maps_to_the_leader_going_away() {
    const N: usize = 5;
    let group: Singleflight<&str, u32> = Singleflight::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let call = |runs: Arc<AtomicUsize>| {
        move || async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            anyhow::Ok(7)
        }
    };
    let leader = tokio::spawn({
        let (group, f) = (group.clone(), call(Arc::clone(&runs)));
        async move { group.call("key", f).await }
    });
    settle().await;
    let mut others = JoinSet::new();
    for _ in 1..N {
        let (group, f) = (group.clone(), call(Arc::clone(&runs)));
        others.spawn(async move { group.call("key", f).await });
    }
    settle().await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    let results = timeout(BOUND, others.join_all()).await.expect("Do hangs");
    for r in results {
        assert_eq!(flight(r.unwrap()), (7, true));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the call was restarted");
}

/// TestPanicDoChan: Go must crash the program (a `DoChan` receiver cannot
/// recover a panic); here a caller on a task of its own gets the panic as
/// an error, and the program goes on.
#[tokio::test]
async fn panic_do_chan() {
    let group: Singleflight<&str, ()> = Singleflight::new();
    let ch = tokio::spawn({
        let group = group.clone();
        async move {
            group
                .call("", || async { panic!("Panicking in DoChan") })
                .await
        }
    });
    let err = ch.await.unwrap().unwrap_err();
    assert_eq!(err.panic().unwrap().message(), "Panicking in DoChan");
}

/// TestPanicDoSharedByDoChan: a panic in a call started by `Do` reaches the
/// `DoChan` caller that joined it, whose own function never runs.
#[tokio::test(start_paused = true)]
async fn panic_do_shared_by_do_chan() {
    let group: Singleflight<&str, ()> = Singleflight::new();
    let (blocked, is_blocked) = oneshot::channel();
    let (unblock, wait) = oneshot::channel::<()>();
    let doer = tokio::spawn({
        let group = group.clone();
        async move {
            group
                .call("", move || async move {
                    blocked.send(()).unwrap();
                    wait.await.unwrap();
                    panic!("Panicking in Do")
                })
                .await
        }
    });
    is_blocked.await.unwrap();
    let ch = tokio::spawn({
        let group = group.clone();
        async move {
            group
                .call("", || async {
                    panic!("DoChan unexpectedly executed callback")
                })
                .await
        }
    });
    settle().await;
    unblock.send(()).unwrap();
    let err = timeout(BOUND, ch).await.unwrap().unwrap().unwrap_err();
    assert_eq!(err.panic().unwrap().message(), "Panicking in Do");
    assert!(err.is_shared());
    assert!(doer.await.unwrap().unwrap_err().is_panic());
}

/// ExampleGroup
#[tokio::test(start_paused = true)]
async fn example_group() {
    let group: Singleflight<&str, &str> = Singleflight::new();
    let (block, _) = watch::channel(false);
    let spawn_call = |result: &'static str| {
        let (group, mut open) = (group.clone(), block.subscribe());
        tokio::spawn(async move {
            group
                .call("key", move || async move {
                    open.wait_for(|open| *open).await?;
                    anyhow::Ok(result)
                })
                .await
        })
    };
    let res1c = spawn_call("func 1");
    settle().await;
    let res2c = spawn_call("func 2");
    settle().await;
    block.send(true).unwrap();
    let (res1, res2) = (res1c.await.unwrap().unwrap(), res2c.await.unwrap().unwrap());
    // Results are shared by functions executed with duplicate keys.
    assert!(res2.shared);
    // Only the first function is executed.
    assert_eq!(res1.value, res2.value);
    assert_eq!(res1.value, "func 1");
}

// --- beyond Go's tests ---

fn flight<V: std::fmt::Debug>(got: Flight<V>) -> (V, bool) {
    (got.value, got.shared)
}

/// Counts drops of the call's future: a call nobody waits for is dropped.
struct DropCount(Arc<AtomicUsize>);
impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn when_every_caller_leaves_the_call_is_dropped_and_the_key_freed() {
    let group: Singleflight<&str, u32> = Singleflight::new();
    let dropped = Arc::new(AtomicUsize::new(0));
    let slow = |dropped: Arc<AtomicUsize>| {
        move || async move {
            let _count = DropCount(dropped);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            anyhow::Ok(1)
        }
    };
    let mut a = Box::pin(group.call("key", slow(Arc::clone(&dropped))));
    let mut b = Box::pin(group.call("key", slow(Arc::clone(&dropped))));
    assert!(futures::poll!(a.as_mut()).is_pending());
    assert!(futures::poll!(b.as_mut()).is_pending());
    assert_eq!(group.in_flight(), 1);
    drop(a);
    assert_eq!(dropped.load(Ordering::SeqCst), 0, "b still waits");
    drop(b);
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert_eq!(group.in_flight(), 0);
    // A new caller starts a new call.
    let fresh = group.call("key", || async { anyhow::Ok(2) }).await.unwrap();
    assert_eq!(fresh.value, 2);
}

#[tokio::test(start_paused = true)]
async fn a_forgotten_call_nobody_waits_for_leaves_nothing_behind() {
    let group: Singleflight<&str, u32> = Singleflight::new();
    let mut a = Box::pin(group.call("key", || async {
        std::future::pending::<()>().await;
        anyhow::Ok(1)
    }));
    assert!(futures::poll!(a.as_mut()).is_pending());
    assert!(group.forget("key"));
    drop(a);
    assert_eq!(
        format!("{group:?}"),
        "Singleflight { in_flight: 0, forgotten: 0 }"
    );
}

#[tokio::test(start_paused = true)]
async fn a_callers_context_bounds_only_its_own_wait() {
    let group: Singleflight<&str, u32> = Singleflight::new();
    let call = || async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        anyhow::Ok(5)
    };
    let impatient = Context::background().with_timeout(Duration::from_millis(10));
    let cancelled = Context::background();
    let (a, b, c) = tokio::join!(
        group.call("key", call).context(&impatient),
        group.call("key", call).context(&cancelled),
        async {
            cancelled.cancel_with("user left");
            group.call("key", call).await
        },
    );
    let a = a.unwrap_err();
    assert_eq!(a.cause(), Some(&Cause::DeadlineExceeded));
    assert_eq!(
        a.to_string(),
        "singleflight wait stopped: context deadline exceeded"
    );
    assert!(!a.is_shared());
    assert_eq!(
        b.unwrap_err().to_string(),
        "singleflight wait stopped: user left"
    );
    assert_eq!(flight(c.unwrap()), (5, true));
}

#[tokio::test]
async fn an_already_cancelled_context_never_starts_the_call() {
    let group: Singleflight<&str, u32> = Singleflight::new();
    let ctx = Context::background();
    ctx.cancel();
    let err = group
        .call("key", || -> std::future::Ready<anyhow::Result<u32>> {
            panic!("must not be called")
        })
        .context(&ctx)
        .await
        .unwrap_err();
    assert_eq!(err.cause(), Some(&Cause::Cancelled));
    assert!(err.is_stopped());
    assert_eq!(group.in_flight(), 0);
}

#[tokio::test]
async fn a_panic_in_the_closure_itself_is_caught() {
    let group: Singleflight<&str, u32> = Singleflight::new();
    let err = group
        .call("key", || -> std::future::Ready<anyhow::Result<u32>> {
            panic!("in the closure")
        })
        .await
        .unwrap_err();
    assert_eq!(err.panic().unwrap().message(), "in the closure");
    assert_eq!(group.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_shared_error_is_one_value() {
    let group: Singleflight<&str, u32, ErrValue> = Singleflight::new();
    let call = || async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Err(ErrValue)
    };
    let (a, b) = tokio::join!(group.call("key", call), group.call("key", call));
    let (a, b) = (a.unwrap_err(), b.unwrap_err());
    assert!(a.is_shared() && b.is_shared());
    let (a, b) = (a.into_error().unwrap(), b.into_error().unwrap());
    assert!(Arc::ptr_eq(&a, &b));
}

#[tokio::test(start_paused = true)]
async fn keys_are_independent() {
    let group: Singleflight<u32, u32> = Singleflight::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let call = |k: u32| {
        let runs = Arc::clone(&runs);
        move || async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(1)).await;
            anyhow::Ok(k * 10)
        }
    };
    let (a, b, c) = tokio::join!(
        group.call(1, call(1)),
        group.call(2, call(2)),
        group.call(1, call(1))
    );
    assert_eq!(
        (a.unwrap().value, b.unwrap().value, c.unwrap().value),
        (10, 20, 10)
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn auto_traits() {
    fn send_sync<T: Send + Sync>() {}
    fn send_unpin<T: Send + Unpin>() {}
    type F = fn() -> std::future::Ready<anyhow::Result<String>>;
    send_sync::<Singleflight<String, String>>();
    send_sync::<SingleflightError>();
    send_sync::<Flight<String>>();
    send_unpin::<SingleflightCall<'static, String, String, anyhow::Error, F>>();
}

// --- random interleavings, model-checked ---

#[derive(Debug, Clone)]
enum Op {
    /// A caller for key 0 or 1 arrives (and is polled once).
    Call(u8),
    /// One of the running executions finishes.
    Finish(usize),
    /// A waiting caller leaves.
    Leave(usize),
    Forget(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..2).prop_map(Op::Call),
        2 => any::<usize>().prop_map(Op::Finish),
        1 => any::<usize>().prop_map(Op::Leave),
        1 => (0u8..2).prop_map(Op::Forget),
    ]
}

type Waiting<'a> = Pin<Box<dyn Future<Output = Result<Flight<usize>, SingleflightError>> + 'a>>;

/// An execution of the call, per the model.
struct Running {
    key: u8,
    finish: oneshot::Sender<()>,
    /// Callers waiting now.
    waiting: usize,
    /// Callers that ever joined (decides `shared`).
    joined: usize,
}

/// Each caller must get the value of the execution the model says it
/// joined: the one serving its key when it arrived, or a new one. An
/// execution runs once, ends when it finishes or when its last caller
/// leaves, and leaves nothing recorded behind.
fn run_model(ops: Vec<Op>) {
    let group: Singleflight<u8, usize> = Singleflight::new();
    let mut cx = TaskContext::from_waker(futures::task::noop_waker_ref());
    let started = Arc::new(AtomicUsize::new(0));
    let mut next_exec = 0;
    let mut serving: HashMap<u8, usize> = HashMap::new();
    let mut running: HashMap<usize, Running> = HashMap::new();
    let mut joined_total: HashMap<usize, usize> = HashMap::new();
    let mut waiting: Vec<(usize, Waiting<'_>)> = Vec::new();
    for op in ops {
        match op {
            Op::Call(key) => {
                let (tx, rx) = oneshot::channel::<()>();
                let exec = match serving.get(&key) {
                    Some(&exec) => exec,
                    None => {
                        let exec = next_exec;
                        next_exec += 1;
                        serving.insert(key, exec);
                        let run = Running {
                            key,
                            finish: tx,
                            waiting: 0,
                            joined: 0,
                        };
                        running.insert(exec, run);
                        exec
                    }
                };
                let run = running.get_mut(&exec).unwrap();
                run.waiting += 1;
                run.joined += 1;
                let started = Arc::clone(&started);
                let mut fut: Waiting<'_> = Box::pin(group.call(key, move || async move {
                    let id = started.fetch_add(1, Ordering::SeqCst);
                    let _ = rx.await;
                    anyhow::Ok(id)
                }));
                assert!(fut.as_mut().poll(&mut cx).is_pending());
                waiting.push((exec, fut));
            }
            Op::Finish(i) if !running.is_empty() => {
                let mut execs: Vec<usize> = running.keys().copied().collect();
                execs.sort_unstable();
                let exec = execs[i % execs.len()];
                let run = running.remove(&exec).unwrap();
                run.finish.send(()).unwrap();
                joined_total.insert(exec, run.joined);
                if serving.get(&run.key) == Some(&exec) {
                    serving.remove(&run.key);
                }
            }
            Op::Leave(i) if !waiting.is_empty() => {
                let (exec, fut) = waiting.remove(i % waiting.len());
                drop(fut);
                let run = running.get_mut(&exec).unwrap();
                run.waiting -= 1;
                if run.waiting == 0 {
                    // Nobody waits: the execution is dropped, its key freed.
                    let key = run.key;
                    running.remove(&exec);
                    if serving.get(&key) == Some(&exec) {
                        serving.remove(&key);
                    }
                }
            }
            Op::Forget(key) => {
                let was = serving.remove(&key).is_some();
                assert_eq!(group.forget(&key), was);
            }
            _ => {}
        }
        let mut still = Vec::new();
        for (exec, mut fut) in waiting.drain(..) {
            match fut.as_mut().poll(&mut cx) {
                Poll::Ready(Ok(flight)) => {
                    assert_eq!(flight.value, exec, "a caller got another execution's value");
                    assert_eq!(flight.shared, joined_total[&exec] > 1);
                }
                Poll::Ready(Err(e)) => panic!("caller failed: {e}"),
                Poll::Pending => {
                    assert!(
                        running.contains_key(&exec),
                        "a finished execution did not end"
                    );
                    still.push((exec, fut));
                }
            }
        }
        waiting = still;
        assert_eq!(group.in_flight(), serving.len());
        assert_eq!(
            started.load(Ordering::SeqCst),
            next_exec,
            "an execution ran twice or never"
        );
    }
    drop(waiting);
    assert_eq!(
        format!("{group:?}"),
        "Singleflight { in_flight: 0, forgotten: 0 }"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn callers_get_the_call_they_joined(ops in prop::collection::vec(op(), 1..60)) {
        run_model(ops);
    }
}
