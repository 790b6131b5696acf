//! weir in an HTTP service: an axum server with a rate limit per client,
//! a worker pool for a heavy handler step, graceful shutdown and tracing.
//!
//! - `HttpRateLimitLayer::keyed` gives each client (the `x-client` header;
//!   requests without one share the `anonymous` bucket) 5 requests a
//!   second, 3 at once. Over that, the layer itself answers
//!   `429 Too Many Requests` with `Retry-After` and the RateLimit fields.
//! - `GET /report/{n}` hands its heavy step to a `Pool` of 2 workers with
//!   a queue of 16: the pool bounds how much of it runs at once, whatever
//!   the number of connections.
//! - `Shutdown` runs the server: on ctrl-c / SIGTERM (or here, at the end of
//!   the demo) axum stops accepting, drains the requests in flight within a
//!   grace of 5 s, and what is left after it is cancelled. Then the pool
//!   drains.
//!
//! Without arguments it serves on 127.0.0.1 (a free port), makes a few
//! requests to itself (admitted, refused, a heavy one, one in flight
//! during the shutdown), shuts down and prints the reports.
//! `--serve` (or `WEIR_HTTP_SERVE=1`) serves on `--addr` (127.0.0.1:3000)
//! until ctrl-c; the load bench (benches/http/run.sh) runs it so, with
//! `--limiter none|weir|weir-keyed|governor --rate N --burst B` to compare
//! the layers (`governor` is tower_governor on the same quota and key).
//!
//! Run with `cargo run --example http_service` (`RUST_LOG=debug` shows each
//! request and each refusal).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;
use weir::rate::http::{HttpRateLimitLayer, KeyFromHeader};
use weir::rate::{KeyedRateLimiter, Rate, RateLimiter};
use weir::{Pool, Shutdown};

/// The heavy step's pool: a number in, a checksum out.
type Reports = Pool<u64, u64, anyhow::Error>;

/// What `Shutdown::shutdown` returns.
type Ended =
    Result<weir::ShutdownReport, weir::RunError<weir::ShutdownError, weir::ShutdownReport>>;

const GRACE: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = Options::parse()?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| opts.default_log.into()),
        )
        .init();

    let reports: Reports = Pool::builder()
        .workers(2)
        .queue(16)
        .name("reports")
        .build(|n: u64| async move { Ok(checksum(n)) })?;

    let app = Router::new()
        .route("/hello", get(hello))
        .route("/report/{n}", get(report))
        .route("/slow", get(slow))
        .with_state(reports.clone());
    let app = opts.limiter.apply(app, opts.rate, opts.burst)?;
    let app = app.layer(middleware::from_fn(trace));

    let listener = TcpListener::bind(opts.addr).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, limiter = ?opts.limiter, "listening");

    // The server is a Shutdown task: cancelling its context starts axum's
    // graceful shutdown (stop accepting, let the requests in flight end).
    let shutdown = Shutdown::new();
    shutdown.spawn("http", move |ctx| async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { ctx.cancelled().await })
            .await
    })?;

    let ended = if opts.serve {
        println!("serving on http://{addr} (ctrl-c to stop)");
        let trigger = shutdown.on_signal().await;
        tracing::info!(%trigger, "shutting down");
        // Stop accepting, wait up to GRACE for the requests in flight,
        // then cancel the rest.
        shutdown.shutdown(GRACE).await
    } else {
        demo(addr, &shutdown).await?
    };
    let report = match ended {
        Ok(report) => report,
        Err(err) => {
            tracing::warn!(%err, "the server did not stop cleanly");
            err.into_report()
        }
    };
    println!("server:\n{report}");
    // Nothing submits any more: drain the pool (what was queued still runs).
    let pool = match reports.join().await {
        Ok(report) => report,
        Err(err) => {
            tracing::warn!(%err, "the pool did not drain");
            err.into_report()
        }
    };
    println!(
        "pool: {} jobs submitted, {} completed, {} failed, {} cancelled",
        pool.submitted, pool.completed, pool.failed, pool.cancelled
    );
    Ok(())
}

/// The demo: a few requests to ourselves, then a shutdown with one request
/// in flight; returns what the shutdown returned.
async fn demo(addr: SocketAddr, shutdown: &Shutdown) -> anyhow::Result<Ended> {
    for i in 1..=4 {
        let res = http_get(addr, "/hello", "ann").await?;
        println!("GET /hello #{i} as ann -> {}", res.status);
        if res.status == 429 {
            for name in ["retry-after", "ratelimit-policy", "ratelimit"] {
                println!("    {name}: {}", res.header(name).unwrap_or("-"));
            }
            anyhow::ensure!(i == 4, "refused before the burst of 3 was spent");
        }
    }
    let bob = http_get(addr, "/hello", "bob").await?;
    println!("GET /hello as bob -> {} {}", bob.status, bob.body.trim());

    let heavy = http_get(addr, "/report/200000", "carol").await?;
    println!(
        "GET /report/200000 -> {} {}",
        heavy.status,
        heavy.body.trim()
    );
    anyhow::ensure!(heavy.status == 200);

    // A slow request is in flight when the shutdown starts: it is drained,
    // and new connections are refused meanwhile.
    let in_flight = tokio::spawn(http_get(addr, "/slow", "dave"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (ended, refused, slow) = tokio::join!(
        shutdown.shutdown(GRACE),
        wait_until_refused(addr),
        in_flight
    );
    let slow = slow??;
    println!(
        "during the shutdown: in-flight GET /slow -> {} {}; new connections refused: {refused}",
        slow.status,
        slow.body.trim()
    );
    anyhow::ensure!(slow.status == 200 && refused);
    println!("done: drained the request in flight, refused new connections");
    Ok(ended)
}

async fn hello(req: Request) -> String {
    let client = req
        .headers()
        .get("x-client")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous");
    format!("hello, {client}\n")
}

/// The heavy step goes to the pool; the handler waits for its ticket.
async fn report(State(reports): State<Reports>, Path(n): Path<u64>) -> Result<String, StatusCode> {
    let ticket = reports
        .submit(n.min(10_000_000))
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?; // closed: shutting down
    match ticket.await {
        Ok(sum) => Ok(format!("report {n}: checksum {sum:016x}\n")),
        Err(err) => {
            tracing::warn!(%err, "report failed");
            Err(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(300)).await;
    "slow, but finished\n"
}

/// CPU work standing in for a real report.
fn checksum(n: u64) -> u64 {
    (0..n).fold(0xcbf2_9ce4_8422_2325, |h: u64, i| {
        (h ^ i).wrapping_mul(0x100_0000_01b3)
    })
}

/// A span per request, and one DEBUG event with its status.
async fn trace(req: Request, next: Next) -> Response {
    let span = tracing::debug_span!("request", method = %req.method(), path = %req.uri().path());
    async move {
        let res = next.run(req).await;
        tracing::debug!(status = res.status().as_u16(), "answered");
        res
    }
    .instrument(span)
    .await
}

/// Which limiter the server puts in front of its routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limiter {
    /// None: the bench's baseline.
    None,
    /// One bucket for every request.
    Weir,
    /// A bucket per `x-client` header (the default).
    WeirKeyed,
    /// tower_governor, a bucket per `x-client` header: the bench's peer.
    Governor,
}

impl Limiter {
    fn apply(self, app: Router, rate: u32, burst: u32) -> anyhow::Result<Router> {
        let quota = Rate::per_second(rate).burst(burst);
        Ok(match self {
            Limiter::None => app,
            Limiter::Weir => {
                app.layer(HttpRateLimitLayer::builder(RateLimiter::new(quota)?).build()?)
            }
            Limiter::WeirKeyed => {
                let per_client = KeyedRateLimiter::new(quota)?;
                let layer = HttpRateLimitLayer::keyed(per_client, KeyFromHeader::new("x-client"))
                    .key_when_missing(HeaderValue::from_static("anonymous"))
                    .build()?;
                app.layer(layer)
            }
            Limiter::Governor => {
                use tower_governor::GovernorLayer;
                use tower_governor::governor::GovernorConfigBuilder;
                let config = GovernorConfigBuilder::default()
                    .per_nanosecond(1_000_000_000 / u64::from(rate.max(1)))
                    .burst_size(burst)
                    .key_extractor(ClientHeader)
                    .finish()
                    .context("tower_governor refused the quota")?;
                app.layer(GovernorLayer::new(config))
            }
        })
    }
}

/// tower_governor's key: the `x-client` header, as weir's `KeyFromHeader`.
#[derive(Debug, Clone, Copy)]
struct ClientHeader;

impl tower_governor::key_extractor::KeyExtractor for ClientHeader {
    type Key = HeaderValue;

    fn extract<T>(
        &self,
        req: &axum::http::Request<T>,
    ) -> Result<HeaderValue, tower_governor::GovernorError> {
        Ok(req
            .headers()
            .get("x-client")
            .cloned()
            .unwrap_or(HeaderValue::from_static("anonymous")))
    }
}

struct Options {
    serve: bool,
    addr: SocketAddr,
    limiter: Limiter,
    rate: u32,
    burst: u32,
    default_log: &'static str,
}

impl Options {
    fn parse() -> anyhow::Result<Options> {
        let mut opts = Options {
            serve: std::env::var_os("WEIR_HTTP_SERVE").is_some(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            limiter: Limiter::WeirKeyed,
            rate: 5,
            burst: 3,
            default_log: "info",
        };
        let mut addr = None;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--serve" => opts.serve = true,
                "--addr" => addr = Some(value()?.parse()?),
                "--rate" => opts.rate = value()?.parse()?,
                "--burst" => opts.burst = value()?.parse()?,
                "--limiter" => {
                    opts.limiter = match value()?.as_str() {
                        "none" => Limiter::None,
                        "weir" => Limiter::Weir,
                        "weir-keyed" => Limiter::WeirKeyed,
                        "governor" => Limiter::Governor,
                        other => anyhow::bail!("unknown limiter {other:?}"),
                    }
                }
                other => anyhow::bail!("unknown argument {other:?}"),
            }
        }
        if opts.serve {
            opts.addr = addr.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 3000)));
            opts.default_log = "warn"; // under load, only what goes wrong
        }
        Ok(opts)
    }
}

/// A response, as the demo's tiny HTTP/1.1 client reads it.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` as `client`, on a connection of its own.
async fn http_get(addr: SocketAddr, path: &str, client: &str) -> anyhow::Result<Answer> {
    let mut conn = TcpStream::connect(addr).await?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nx-client: {client}\r\nconnection: close\r\n\r\n"
    );
    conn.write_all(req.as_bytes()).await?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw).await?;
    let (head, body) = raw.split_once("\r\n\r\n").context("no end of head")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .context("no status line")?
        .parse()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// Connects until the server refuses (it stopped accepting), for up to a
/// second.
async fn wait_until_refused(addr: SocketAddr) -> bool {
    for _ in 0..100 {
        match TcpStream::connect(addr).await {
            Err(_) => return true,
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    false
}
