//! Timeouts: `recv_timeout`, `next_timeout`, `with_timeout`, with every
//! duration from zero to `Duration::MAX`; a whole conversation's deadline is
//! a `Context`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use weir_core::{
    Cause, Context, Elapsed, RecvTimeoutError, next_timeout, recv_timeout, with_timeout,
};

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

/// Every call in these tests is bounded: a hang fails instead of blocking.
async fn bounded<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(24 * 3600), fut)
        .await
        .expect("the call hung")
}

#[tokio::test(start_paused = true)]
async fn a_zero_limit_tries_once() {
    // recv_timeout: a queued message is taken, an empty channel times out at once.
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    tx.send(1).await.unwrap();
    assert_eq!(bounded(recv_timeout(&mut rx, Duration::ZERO)).await, Ok(1));
    let start = Instant::now();
    assert_eq!(
        bounded(recv_timeout(&mut rx, Duration::ZERO)).await,
        Err(RecvTimeoutError::Timeout(Elapsed::new(Duration::ZERO)))
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    drop(tx);
    assert_eq!(
        bounded(recv_timeout(&mut rx, Duration::ZERO)).await,
        Err(RecvTimeoutError::Closed)
    );

    // next_timeout: a ready item is taken, a pending stream times out at once.
    let mut ready = futures::stream::iter([7]);
    assert_eq!(
        bounded(next_timeout(&mut ready, Duration::ZERO)).await,
        Ok(7)
    );
    let mut never = futures::stream::pending::<u8>();
    assert!(matches!(
        bounded(next_timeout(&mut never, Duration::ZERO)).await,
        Err(RecvTimeoutError::Timeout(_))
    ));

    // with_timeout: a future ready at its first poll wins over a zero limit.
    assert_eq!(
        bounded(with_timeout(async { 3 }, Duration::ZERO)).await,
        Ok(3)
    );
    let err = bounded(with_timeout(tokio::time::sleep(SEC), Duration::ZERO))
        .await
        .unwrap_err();
    assert_eq!(err.after(), Duration::ZERO);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_max_limit_means_no_limit_and_does_not_panic() {
    let start = Instant::now();
    let an_hour = Duration::from_secs(3600);

    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        tokio::time::sleep(an_hour).await;
        tx.send("late").await.unwrap();
    });
    assert_eq!(
        bounded(recv_timeout(&mut rx, Duration::MAX)).await,
        Ok("late")
    );
    assert_eq!(start.elapsed(), an_hour);

    let mut slow = Box::pin(futures::stream::once(async move {
        tokio::time::sleep(an_hour).await;
        1
    }));
    assert_eq!(bounded(next_timeout(&mut slow, Duration::MAX)).await, Ok(1));

    let out = bounded(with_timeout(
        async {
            tokio::time::sleep(an_hour).await;
            "done"
        },
        Duration::MAX,
    ))
    .await;
    assert_eq!(out, Ok("done"));
    assert_eq!(start.elapsed(), 3 * an_hour);
}

/// The whole conversation gets one deadline, through a `Context`: each
/// message comes within its own limit, but the conversation is cut at 1s,
/// and the cause says it was the deadline.
#[tokio::test(start_paused = true)]
async fn a_whole_conversation_stops_at_its_context_deadline() {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if tx.send(i).await.is_err() {
                break;
            }
        }
    });
    let conversation = Context::background().with_timeout(SEC);
    let mut got = Vec::new();
    loop {
        match conversation.run(recv_timeout(&mut rx, SEC)).await {
            Ok(msg) => got.push(msg.unwrap()),
            Err(stopped) => {
                assert_eq!(stopped.cause(), &Cause::DeadlineExceeded);
                break;
            }
        }
    }
    assert_eq!(got, [0, 1, 2]);
}
