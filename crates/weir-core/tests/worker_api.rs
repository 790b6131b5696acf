//! The quit handshake: `spawn_worker`, `stop`, `join`, `shutdown(grace)`,
//! drop.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_core::{Cause, Context, WorkerBuilder, WorkerError, WorkerHandle, spawn_worker};

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Every wait in these tests is bounded: a hang fails instead of blocking.
async fn bounded<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(24 * 3600), fut)
        .await
        .expect("the call hung")
}

/// A worker that ticks every 100ms until cancelled, then says goodbye.
fn ticker(ticks: Arc<AtomicU32>) -> WorkerHandle<String> {
    spawn_worker(move |ctx| async move {
        loop {
            tokio::select! {
                () = ctx.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    ticks.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        Ok(format!("bye after {} ticks", ticks.load(Ordering::SeqCst)))
    })
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Code(u32);

#[tokio::test(start_paused = true)]
async fn stop_cancels_and_receives_the_goodbye() {
    let before = alive();
    let ticks = Arc::new(AtomicU32::new(0));
    let worker = ticker(Arc::clone(&ticks));
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(!worker.is_finished());
    assert_eq!(worker.stop().await.unwrap(), "bye after 4 ticks");
    // It stopped ticking.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ticks.load(Ordering::SeqCst), 4);
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn the_goodbye_can_carry_cleanup_that_takes_time() {
    let worker = spawn_worker(|ctx| async move {
        ctx.cancelled().await;
        tokio::time::sleep(Duration::from_millis(200)).await; // flush
        anyhow::Ok(42)
    });
    let start = Instant::now();
    assert_eq!(worker.shutdown(Duration::from_secs(1)).await.unwrap(), 42);
    assert_eq!(start.elapsed(), Duration::from_millis(200));
}

#[tokio::test(start_paused = true)]
async fn shutdown_aborts_a_stubborn_worker_and_says_so() {
    let before = alive();
    let cleaned_up = Arc::new(AtomicBool::new(false));
    let guard = SetOnDrop(Arc::clone(&cleaned_up));
    let worker = WorkerBuilder::new("stubborn").spawn(move |_ctx| async move {
        let _guard = guard;
        // Ignores its context.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        anyhow::Ok("never")
    });
    let start = Instant::now();
    let err = worker
        .shutdown(Duration::from_millis(500))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    assert!(err.is_timed_out());
    assert_eq!(err.name(), "stubborn");
    assert_eq!(
        err.to_string(),
        "worker `stubborn` did not stop within 500ms and was aborted"
    );
    assert!(
        cleaned_up.load(Ordering::SeqCst),
        "the aborted future was dropped"
    );
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn a_zero_grace_takes_a_goodbye_already_there_and_aborts_the_rest() {
    let before = alive();
    // Ended on its own before the call: its goodbye is taken.
    let done = spawn_worker(|_ctx| async { anyhow::Ok("early") });
    tokio::task::yield_now().await;
    assert!(done.is_finished());
    assert_eq!(
        bounded(done.shutdown(Duration::ZERO)).await.unwrap(),
        "early"
    );
    // Needs a poll after the cancel: aborted at once, no hang.
    let waiting = spawn_worker(|ctx| async move {
        ctx.cancelled().await;
        anyhow::Ok(())
    });
    tokio::task::yield_now().await;
    let start = Instant::now();
    let err = bounded(waiting.shutdown(Duration::ZERO)).await.unwrap_err();
    assert!(err.is_timed_out());
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn a_max_grace_waits_as_long_as_the_worker_takes() {
    let worker = spawn_worker(|ctx| async move {
        ctx.cancelled().await;
        tokio::time::sleep(Duration::from_secs(3600)).await;
        anyhow::Ok("late but fine")
    });
    let start = Instant::now();
    assert_eq!(
        bounded(worker.shutdown(Duration::MAX)).await.unwrap(),
        "late but fine"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(3600));
}

#[tokio::test(start_paused = true)]
async fn a_worker_error_comes_back_as_its_value() {
    let worker: WorkerHandle<(), std::io::Error> =
        WorkerBuilder::new("db").spawn(|ctx| async move {
            ctx.cancelled().await;
            Err(std::io::Error::other("flush failed"))
        });
    let err = worker.stop().await.unwrap_err();
    assert_eq!(err.name(), "db");
    assert_eq!(err.error().unwrap().kind(), std::io::ErrorKind::Other);
    assert_eq!(err.to_string(), "worker `db` failed: flush failed");
    match err {
        WorkerError::Failed { name, error } => {
            assert_eq!(&*name, "db");
            assert_eq!(error.to_string(), "flush failed");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_worker_panic_keeps_its_message_and_payload() {
    let before = alive();
    let worker = spawn_worker(|ctx| async move {
        ctx.cancelled().await;
        if ctx.is_cancelled() {
            panic!("cleanup exploded");
        }
        anyhow::Ok(())
    });
    let err = worker.stop().await.unwrap_err();
    assert_eq!(err.panic().unwrap().message(), "cleanup exploded");
    assert_eq!(
        err.to_string(),
        "worker `worker` panicked: cleanup exploded"
    );
    assert_eq!(alive(), before);

    // A non-string payload comes back as itself.
    let worker = spawn_worker(|_ctx| async move {
        if true {
            std::panic::panic_any(Code(9));
        }
        anyhow::Ok(())
    });
    let err = worker.join().await.unwrap_err();
    assert_eq!(
        err.panic().unwrap().downcast_payload::<Code>(),
        Some(Code(9))
    );
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_closure_is_the_workers_panic() {
    let worker = WorkerBuilder::new("maker")
        .spawn(|_ctx| -> std::future::Ready<anyhow::Result<()>> { panic!("no future for you") });
    let err = worker.join().await.unwrap_err();
    assert!(matches!(&err, WorkerError::Panicked { name, .. } if &**name == "maker"));
    assert_eq!(
        err.to_string(),
        "worker `maker` panicked: no future for you"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_cancels_and_aborts_the_worker() {
    let before = alive();
    let ticks = Arc::new(AtomicU32::new(0));
    let worker = ticker(Arc::clone(&ticks));
    let ctx = worker.context().clone();
    tokio::time::sleep(Duration::from_millis(250)).await;
    drop(worker);
    assert!(ctx.is_cancelled());
    tokio::task::yield_now().await;
    assert_eq!(alive(), before);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ticks.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_stop_future_aborts_the_worker() {
    let before = alive();
    let worker = spawn_worker(|_ctx| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        anyhow::Ok(())
    });
    // Give up on stop() after 1s by dropping its future.
    assert!(
        tokio::time::timeout(Duration::from_secs(1), worker.stop())
            .await
            .is_err()
    );
    tokio::task::yield_now().await;
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn a_child_worker_stops_with_its_parent_context_and_join_waits() {
    let service = Context::background();
    let worker = WorkerBuilder::new("child")
        .context(&service)
        .spawn(|ctx| async move {
            ctx.cancelled().await;
            Ok::<_, std::io::Error>(ctx.cause())
        });
    assert_eq!(worker.name(), "child");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!worker.is_finished());
    service.cancel_with("reload");
    tokio::task::yield_now().await;
    assert!(worker.is_finished());
    let cause = worker.join().await.unwrap().unwrap();
    assert_eq!(
        cause.to_string(),
        "reload",
        "the worker sees its parent's cause"
    );

    // Stopping a child does not cancel its parent; a token converts.
    let root = CancellationToken::new();
    let worker = WorkerBuilder::new("child")
        .context(root.clone())
        .spawn(|ctx| async move {
            ctx.cancelled().await;
            Ok::<_, std::io::Error>(ctx.cause())
        });
    assert_eq!(worker.stop().await.unwrap(), Some(Cause::Cancelled));
    assert!(!root.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn a_deadline_on_the_parent_stops_the_worker() {
    let ctx = Context::background().with_timeout(Duration::from_secs(1));
    let worker = WorkerBuilder::new("lookup")
        .context(ctx)
        .spawn(|ctx| async move {
            ctx.cancelled().await;
            anyhow::Ok(ctx.cause())
        });
    let start = Instant::now();
    let cause = bounded(worker.join()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(cause, Some(Cause::DeadlineExceeded));
}

#[tokio::test(start_paused = true)]
async fn cancel_asks_without_waiting() {
    let worker = spawn_worker(|ctx| async move {
        ctx.cancelled().await;
        anyhow::Ok("bye")
    });
    worker.cancel();
    assert!(worker.context().is_cancelled());
    assert_eq!(worker.join().await.unwrap(), "bye");
}

#[test]
fn auto_traits() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<WorkerHandle<String>>();
    send_sync::<WorkerError>();
    send_sync::<WorkerBuilder>();
}
