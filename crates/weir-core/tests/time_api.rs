//! Timeouts: `recv_timeout`, `next_timeout`, `with_timeout`, `deadline`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_core::time::{
    Elapsed, RecvTimeoutError, deadline, next_timeout, recv_timeout, with_timeout,
};

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn recv_timeout_distinguishes_item_timeout_and_closed() {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    tx.send(1).await.unwrap();
    assert_eq!(recv_timeout(&mut rx, SEC).await, Ok(1));

    let start = Instant::now();
    let err = recv_timeout(&mut rx, SEC).await.unwrap_err();
    assert_eq!(err, RecvTimeoutError::Timeout(Elapsed::new(SEC)));
    assert_eq!(err.to_string(), "no message within 1s");
    assert_eq!(start.elapsed(), SEC);

    drop(tx);
    assert_eq!(
        recv_timeout(&mut rx, SEC).await,
        Err(RecvTimeoutError::Closed)
    );
}

#[tokio::test(start_paused = true)]
async fn a_message_after_a_timeout_is_not_lost() {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tx.send("late").await.unwrap();
    });
    assert!(matches!(
        recv_timeout(&mut rx, SEC).await,
        Err(RecvTimeoutError::Timeout(_))
    ));
    assert_eq!(recv_timeout(&mut rx, SEC).await, Ok("late"));
}

#[tokio::test(start_paused = true)]
async fn next_timeout_works_on_any_stream() {
    let mut stream = futures::stream::iter([1, 2]);
    assert_eq!(next_timeout(&mut stream, SEC).await, Ok(1));
    assert_eq!(next_timeout(&mut stream, SEC).await, Ok(2));
    assert_eq!(
        next_timeout(&mut stream, SEC).await,
        Err(RecvTimeoutError::Closed)
    );

    let mut never = futures::stream::pending::<u8>();
    let start = Instant::now();
    assert!(
        matches!(next_timeout(&mut never, SEC).await, Err(RecvTimeoutError::Timeout(e)) if e.after() == SEC)
    );
    assert_eq!(start.elapsed(), SEC);
}

#[tokio::test(start_paused = true)]
async fn with_timeout_returns_the_output_or_a_typed_elapsed() {
    assert_eq!(with_timeout(async { "fast" }, SEC).await, Ok("fast"));

    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = SetOnDrop(Arc::clone(&dropped));
    let slow = async move {
        let _guard = guard;
        tokio::time::sleep(Duration::from_secs(60)).await;
        "slow"
    };
    let start = Instant::now();
    let err = with_timeout(slow, Duration::from_millis(250))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    assert_eq!(err.after(), Duration::from_millis(250));
    assert_eq!(err.to_string(), "timed out after 250ms");
    // The timed-out future was dropped, not left running.
    assert!(dropped.load(Ordering::SeqCst));

    // It converts into anyhow::Error with `?`.
    let res: anyhow::Result<()> = async {
        with_timeout(std::future::pending::<()>(), SEC).await?;
        Ok(())
    }
    .await;
    assert_eq!(res.unwrap_err().to_string(), "timed out after 1s");
}

#[tokio::test(start_paused = true)]
async fn deadline_cancels_the_child_at_d_and_leaves_the_parent_alone() {
    let before = alive();
    let root = CancellationToken::new();
    let child = deadline(&root, Duration::from_secs(5));
    assert_eq!(alive(), before + 1, "one timer task");
    let start = Instant::now();
    child.cancelled().await;
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert!(!root.is_cancelled());
    tokio::task::yield_now().await;
    assert_eq!(alive(), before, "the timer task ended");
}

#[tokio::test(start_paused = true)]
async fn deadline_follows_the_parent_and_ends_its_timer_at_once() {
    let before = alive();
    let root = CancellationToken::new();
    let child = deadline(&root, Duration::from_secs(3600));
    tokio::time::sleep(SEC).await;
    root.cancel();
    assert!(child.is_cancelled());
    tokio::task::yield_now().await;
    assert_eq!(alive(), before, "no timer left sleeping for an hour");
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_child_early_ends_the_timer_and_not_the_parent() {
    let before = alive();
    let root = CancellationToken::new();
    let child = deadline(&root, Duration::from_secs(3600));
    child.cancel();
    tokio::task::yield_now().await;
    assert_eq!(alive(), before);
    assert!(!root.is_cancelled());
    // A dropped guard cancels too (Go's `defer cancel()`).
    {
        let _guard = deadline(&root, Duration::from_secs(3600)).drop_guard();
    }
    tokio::task::yield_now().await;
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn a_zero_deadline_is_already_cancelled_and_spawns_nothing() {
    let before = alive();
    let root = CancellationToken::new();
    let child = deadline(&root, Duration::ZERO);
    assert!(child.is_cancelled());
    assert_eq!(alive(), before);
}

#[tokio::test(start_paused = true)]
async fn a_whole_conversation_stops_at_its_deadline() {
    // A conversation of messages every 300ms: each one within its own 1s
    // limit, but the whole conversation is cut at 1s.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if tx.send(i).await.is_err() {
                break;
            }
        }
    });
    let conversation = deadline(&CancellationToken::new(), SEC);
    let mut got = Vec::new();
    loop {
        tokio::select! {
            () = conversation.cancelled() => break,
            msg = recv_timeout(&mut rx, SEC) => got.push(msg.unwrap()),
        }
    }
    assert_eq!(got, [0, 1, 2]);
}
