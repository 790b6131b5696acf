//! weir's HTTP layer in a real axum server on 127.0.0.1 (no other
//! network): the answers through axum, keys from the peer address through
//! `ConnectInfo`, and `Shutdown` wired to axum's graceful shutdown —
//! in-flight requests drained, new connections refused.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use weir::Shutdown;
use weir::rate::http::{HttpRateLimitLayer, KeyFromPeer, RateLimitHeaders};
use weir::rate::{KeyedRateLimiter, Rate};

/// `GET path` on a connection of its own: the status and the raw head.
async fn get_raw(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut conn = TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw).await?;
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    let head = raw.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    Ok((status, head))
}

#[tokio::test]
async fn axum_answers_refusals_with_429_and_the_fields_keyed_by_peer() {
    let per_ip = KeyedRateLimiter::new(Rate::per_minute(1).burst(2)).unwrap();
    let layer = HttpRateLimitLayer::keyed(
        per_ip.clone(),
        KeyFromPeer::from_extension(|c: &ConnectInfo<SocketAddr>| c.0),
    )
    .headers(RateLimitHeaders::Always)
    .build()
    .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let (status, head) = get_raw(addr, "/").await.unwrap();
    assert_eq!(status, 200);
    assert!(head.contains("ratelimit: \"default\";r=1;t=60"), "{head}");
    assert!(
        head.contains("ratelimit-policy: \"default\";q=2;w=120"),
        "{head}"
    );
    assert_eq!(get_raw(addr, "/").await.unwrap().0, 200);
    // Every connection comes from 127.0.0.1: one client, its burst spent.
    let (status, head) = get_raw(addr, "/").await.unwrap();
    assert_eq!(status, 429);
    assert!(head.contains("retry-after: 60"), "{head}");
    assert!(head.contains("ratelimit: \"default\";r=0;t=60"), "{head}");
    assert_eq!(per_ip.len(), 1);
    server.abort();
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_requests_and_refuses_new_ones() {
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (s, r) = (started.clone(), release.clone());
    let app = Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route(
            "/held",
            get(move || {
                let (s, r) = (s.clone(), r.clone());
                async move {
                    s.notify_one();
                    r.notified().await;
                    "released"
                }
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    shutdown
        .spawn("http", move |ctx| async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { ctx.cancelled().await })
                .await
        })
        .unwrap();
    assert_eq!(get_raw(addr, "/fast").await.unwrap().0, 200);

    let in_flight = tokio::spawn(get_raw(addr, "/held"));
    started.notified().await;
    let ending = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { shutdown.shutdown(Duration::from_secs(10)).await }
    });

    // The server stops accepting: a new connection is refused (within a
    // bounded number of tries), while the held request is still running.
    let mut refused = false;
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(refused, "new connections are refused during the drain");
    assert!(!in_flight.is_finished() && !ending.is_finished());

    // Let the request end: it is answered, then the shutdown completes.
    release.notify_one();
    let (status, head) = in_flight.await.unwrap().unwrap();
    assert_eq!(status, 200, "{head}");
    let report = ending.await.unwrap().unwrap();
    assert_eq!((report.finished, report.aborted), (1, 0));
}

#[tokio::test]
async fn a_request_held_past_the_grace_is_cut_off() {
    let app = Router::new().route(
        "/forever",
        get(|| async {
            std::future::pending::<()>().await;
            "never"
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    shutdown
        .spawn("http", move |ctx| async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { ctx.cancelled().await })
                .await
        })
        .unwrap();
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /forever HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = shutdown
        .shutdown(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(
        err.report().aborted,
        1,
        "the server task did not drain in time"
    );
    assert_eq!(err.error().task(), "http");
}
