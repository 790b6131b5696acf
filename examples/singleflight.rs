//! Duplicate call suppression with `weir::Singleflight` (Go's
//! `x/sync/singleflight`) in front of a slow user database.
//!
//! 1. A cold cache: 50 requests for user 7 arrive at once. One database
//!    query runs; all 50 get its result, marked `shared`.
//! 2. The caller that started the query gives up (its 10 ms deadline
//!    passes); the query is not tied to it: the other callers still get the
//!    value, and the query is not restarted.
//! 3. A panic in the query reaches every caller as an error value, with its
//!    message; nobody hangs, and the key is free again.
//! 4. `forget`: a token refresh is in flight when the token is revoked; the
//!    next caller starts a new refresh at once, and the old one's callers
//!    still get the old result.
//!
//! The runtime's clock is paused, so the simulated waits take no time.
//!
//! Run with `cargo run --example singleflight`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use weir::{Context, Singleflight};

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> anyhow::Result<()> {
    burst().await?;
    leader_leaves().await?;
    panics().await?;
    forget().await?;
    Ok(())
}

/// The database: 30 ms per query, counted.
async fn query(queries: Arc<AtomicUsize>, id: u64) -> anyhow::Result<String> {
    queries.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(30)).await;
    Ok(format!("user {id}: ada"))
}

/// What a request hands to `call`: the query, run only if it leads.
fn load(queries: &Arc<AtomicUsize>, id: u64) -> impl FnOnce() -> QueryFuture + Send + 'static {
    let queries = Arc::clone(queries);
    move || Box::pin(query(queries, id))
}

type QueryFuture = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<String>> + Send>>;

async fn burst() -> anyhow::Result<()> {
    println!("== 1. a burst of 50 requests for user 7, cache cold");
    let users: Singleflight<u64, String> = Singleflight::new();
    let queries = Arc::new(AtomicUsize::new(0));
    let mut requests = JoinSet::new();
    for _ in 0..50 {
        let (users, load) = (users.clone(), load(&queries, 7));
        requests.spawn(async move { users.call(7, load).await });
    }
    let mut shared = 0;
    while let Some(flight) = requests.join_next().await {
        let flight = flight??;
        assert_eq!(flight.value, "user 7: ada");
        shared += usize::from(flight.shared);
    }
    let queries = queries.load(Ordering::SeqCst);
    println!("   50 requests, {queries} database query; {shared} callers got the shared result");
    assert_eq!(queries, 1);
    Ok(())
}

async fn leader_leaves() -> anyhow::Result<()> {
    println!("\n== 2. the first caller gives up; the others still get the value");
    let users: Singleflight<u64, String> = Singleflight::new();
    let queries = Arc::new(AtomicUsize::new(0));
    let impatient = Context::background().with_timeout(Duration::from_millis(10));
    let (first, second, third) = tokio::join!(
        users.call(8, load(&queries, 8)).context(&impatient),
        users.call(8, load(&queries, 8)),
        users.call(8, load(&queries, 8)),
    );
    let Err(first) = first else {
        anyhow::bail!("the impatient caller should have given up");
    };
    println!("   first caller:  {first}");
    println!("   second caller: {}", second?.value);
    println!("   third caller:  {}", third?.value);
    println!(
        "   queries run: {} (carried on, not restarted)",
        queries.load(Ordering::SeqCst)
    );
    Ok(())
}

async fn panics() -> anyhow::Result<()> {
    println!("\n== 3. a panic in the query reaches every caller as an error");
    let users: Singleflight<u64, String> = Singleflight::new();
    let broken = || async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        panic!("row 9 is corrupt")
    };
    println!("   (the panic hook reports the panic on stderr as it happens)");
    let (a, b) = tokio::join!(users.call(9, broken), users.call(9, broken));
    let (Err(a), Err(b)) = (a, b) else {
        anyhow::bail!("a panicking call should fail every caller");
    };
    for err in [a, b] {
        println!("   caller got: {err} (shared: {})", err.is_shared());
    }
    println!("   keys in flight afterwards: {}", users.in_flight());
    Ok(())
}

async fn forget() -> anyhow::Result<()> {
    println!("\n== 4. forget: the token is revoked while a refresh is in flight");
    let tokens: Singleflight<&str, u32> = Singleflight::new();
    let old = tokio::spawn({
        let tokens = tokens.clone();
        async move {
            let refresh = || async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                anyhow::Ok(1)
            };
            tokens.call("api", refresh).await
        }
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    println!(
        "   forget(\"api\"): a call was in flight: {}",
        tokens.forget("api")
    );
    let fresh = tokens.call("api", || async { anyhow::Ok(2) }).await?;
    println!("   the next caller got token v{} at once", fresh.value);
    println!(
        "   the old refresh's caller got token v{}",
        old.await??.value
    );
    Ok(())
}
