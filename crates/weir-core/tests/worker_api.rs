//! The quit handshake: `spawn_worker`, `stop`, `stop_timeout`, drop.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_core::worker::{StopError, Worker, WorkerHandle, spawn_worker};

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// A worker that ticks every 100ms until cancelled, then says goodbye.
fn ticker(ticks: Arc<AtomicU32>) -> WorkerHandle<String> {
    spawn_worker(move |token| async move {
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    ticks.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        Ok(format!("bye after {} ticks", ticks.load(Ordering::SeqCst)))
    })
}

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
    let worker = spawn_worker(|token| async move {
        token.cancelled().await;
        tokio::time::sleep(Duration::from_millis(200)).await; // flush
        anyhow::Ok(42)
    });
    let start = Instant::now();
    assert_eq!(
        worker.stop_timeout(Duration::from_secs(1)).await.unwrap(),
        42
    );
    assert_eq!(start.elapsed(), Duration::from_millis(200));
}

#[tokio::test(start_paused = true)]
async fn stop_timeout_aborts_a_stubborn_worker_and_says_so() {
    let before = alive();
    let cleaned_up = Arc::new(AtomicBool::new(false));
    struct Cleanup(Arc<AtomicBool>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let guard = Cleanup(Arc::clone(&cleaned_up));
    let worker = Worker::new("stubborn").spawn(move |_token| async move {
        let _guard = guard;
        // Ignores its token.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        anyhow::Ok("never")
    });
    let start = Instant::now();
    let err = worker
        .stop_timeout(Duration::from_millis(500))
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
async fn a_worker_error_comes_back_from_stop() {
    let worker: WorkerHandle<(), std::io::Error> = Worker::new("db").spawn(|token| async move {
        token.cancelled().await;
        Err(std::io::Error::other("flush failed"))
    });
    match worker.stop().await.unwrap_err() {
        StopError::Failed { name, error } => {
            assert_eq!(&*name, "db");
            assert_eq!(error.to_string(), "flush failed");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_worker_panic_becomes_an_error_with_its_message() {
    let before = alive();
    let worker = spawn_worker(|token| async move {
        token.cancelled().await;
        if token.is_cancelled() {
            panic!("cleanup exploded");
        }
        anyhow::Ok(())
    });
    let err = worker.stop().await.unwrap_err();
    assert!(matches!(&err, StopError::Panicked { message, .. } if message == "cleanup exploded"));
    assert_eq!(
        err.to_string(),
        "worker `worker` panicked: cleanup exploded"
    );
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_cancels_and_aborts_the_worker() {
    let before = alive();
    let ticks = Arc::new(AtomicU32::new(0));
    let worker = ticker(Arc::clone(&ticks));
    let token = worker.token();
    tokio::time::sleep(Duration::from_millis(250)).await;
    drop(worker);
    assert!(token.is_cancelled());
    tokio::task::yield_now().await;
    assert_eq!(alive(), before);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ticks.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_stop_future_aborts_the_worker() {
    let before = alive();
    let worker = spawn_worker(|_token| async move {
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
async fn a_child_worker_stops_with_its_parent_and_join_waits() {
    let root = CancellationToken::new();
    let worker = Worker::new("child")
        .child_of(&root)
        .spawn(|token| async move {
            token.cancelled().await;
            Ok::<_, std::io::Error>("done")
        });
    assert_eq!(worker.name(), "child");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!worker.is_finished());
    root.cancel();
    tokio::task::yield_now().await;
    assert!(worker.is_finished());
    assert_eq!(worker.join().await.unwrap(), "done");

    // Stopping a child does not cancel its parent.
    let root = CancellationToken::new();
    let worker = Worker::new("child")
        .child_of(&root)
        .spawn(|token| async move {
            token.cancelled().await;
            Ok::<_, std::io::Error>(())
        });
    worker.stop().await.unwrap();
    assert!(!root.is_cancelled());
}

#[test]
fn auto_traits() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<WorkerHandle<String>>();
    send_sync::<StopError>();
    send_sync::<Worker>();
}
