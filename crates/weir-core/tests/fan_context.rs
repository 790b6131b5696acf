//! Fan-in/out under a `Context`: a deadline stops them. (Bounded fan-out
//! under a deadline: `bounded_behaviour.rs`.)
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::StreamExt;
use tokio::time::sleep;
use weir_core::{Cause, Context, Fan, FanError};

#[tokio::test(start_paused = true)]
async fn a_deadline_closes_a_merge() {
    // 105ms: no tick coincides with the deadline.
    let ctx = Context::background().with_timeout(Duration::from_millis(105));
    let ticks = |ms: u64| {
        futures::stream::unfold(0u64, move |i| async move {
            sleep(Duration::from_millis(ms)).await;
            Some((i, i + 1))
        })
        .boxed()
    };
    let out = Fan::new()
        .context(&ctx)
        .merge([ticks(10), ticks(30)])
        .unwrap();
    let handle = out.handle();
    let got = out.collect_all().await;
    // 10 ticks of the fast input and 3 of the slow one before the deadline.
    assert_eq!(got.len(), 13);
    assert!(matches!(ctx.cause(), Some(Cause::DeadlineExceeded)));
    // The fan reports the deadline as its stop, with what it delivered.
    let err = handle.join().await.unwrap_err();
    assert!(matches!(
        err.error(),
        FanError::Stopped(Cause::DeadlineExceeded)
    ));
    assert_eq!(err.report().delivered, 13);
}
