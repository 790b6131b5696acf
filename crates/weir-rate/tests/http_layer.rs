//! The HTTP layer (feature `http`, turned on for tests by the crate's self
//! dev-dependency): status codes and fields, Retry-After against the
//! limiter's own answer, keys from each source, waiting within bounds.
//! Paused time, no network: the services are called directly.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};
use weir_context::Problem;
use weir_rate::http::{
    HttpRateLimitLayer, KeyFromHeader, KeyFromPeer, RateLimitHeaders, RequestKey, WhenLimited,
};
use weir_rate::{KeyedRateLimiter, Rate, RateLimiter};

const MS: Duration = Duration::from_millis(1);

type Req = Request<()>;
type Res = Response<String>;

/// Answers 200 with the path, and counts its calls.
fn app(
    calls: &Arc<AtomicUsize>,
) -> impl Service<Req, Response = Res, Error = Infallible, Future: Send> + Clone + Send + use<> {
    let calls = Arc::clone(calls);
    service_fn(move |req: Req| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, Infallible>(Response::new(req.uri().path().to_owned())) }
    })
}

fn get(path: &str) -> Req {
    Request::get(path).body(()).unwrap()
}

fn with_key(key: &str) -> Req {
    Request::get("/").header("x-api-key", key).body(()).unwrap()
}

fn from_peer(peer: &str, forwarded: Option<&str>) -> Req {
    let mut b = Request::get("/");
    if let Some(f) = forwarded {
        b = b.header("x-forwarded-for", f);
    }
    let mut req = b.body(()).unwrap();
    req.extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    req
}

fn header<'a>(res: &'a Res, name: &str) -> Option<&'a str> {
    res.headers().get(name).map(|v| v.to_str().unwrap())
}

/// `Retry-After` as the limiter itself answers: its wait, in whole
/// seconds rounded up.
fn limiter_retry_after(lim: &RateLimiter) -> String {
    let wait = lim.peek().unwrap_err().wait_time().unwrap();
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.to_string()
}

#[tokio::test(start_paused = true)]
async fn admits_then_refuses_with_429_and_the_fields() {
    let calls = Arc::new(AtomicUsize::new(0));
    let lim = RateLimiter::new(Rate::per_second(2).burst(3)).unwrap();
    let layer = HttpRateLimitLayer::builder(lim.clone()).build().unwrap();
    let svc = layer.layer(app(&calls));

    for _ in 0..3 {
        let res = svc.clone().oneshot(get("/a")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.body(), "/a");
        // By default admitted responses carry no fields.
        assert_eq!(header(&res, "ratelimit"), None);
        assert_eq!(header(&res, "retry-after"), None);
    }
    let res = svc.clone().oneshot(get("/a")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.body(), "", "an empty body: ResBody::default()");
    assert_eq!(header(&res, "retry-after"), Some("1")); // 500 ms away
    assert_eq!(
        header(&res, "retry-after").unwrap(),
        limiter_retry_after(&lim)
    );
    // Burst 3 at 2/s refills in 1.5 s: a 2 s window, 4 tokens in it.
    assert_eq!(
        header(&res, "ratelimit-policy"),
        Some(r#""default";q=4;w=2"#)
    );
    assert_eq!(header(&res, "ratelimit"), Some(r#""default";r=0;t=1"#));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "a refusal never reaches the service"
    );

    // Once the token has come, admitted again; the refusal took nothing.
    tokio::time::advance(MS * 500).await;
    let res = svc.clone().oneshot(get("/a")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_the_limiters_own_answer() {
    let rates = [
        Rate::per_second(3),
        Rate::per_second(200).burst(20),
        Rate::per_minute(1).burst(5),
        Rate::every(MS * 2500).burst(2),
        Rate::per_hour(7),
    ];
    for rate in rates {
        let lim = RateLimiter::new(rate).unwrap();
        let svc = HttpRateLimitLayer::builder(lim.clone())
            .build()
            .unwrap()
            .layer(app(&Arc::new(AtomicUsize::new(0))));
        let burst = lim.burst();
        for _ in 0..burst {
            assert_eq!(svc.clone().oneshot(get("/")).await.unwrap().status(), 200);
        }
        // Refused at several points of the wait, each time as the limiter says.
        for step in [0, 1, 2] {
            tokio::time::advance(MS * step).await;
            let res = svc.clone().oneshot(get("/")).await.unwrap();
            assert_eq!(res.status(), 429, "{rate}");
            let want = limiter_retry_after(&lim);
            assert_eq!(header(&res, "retry-after").unwrap(), want, "{rate}");
            let t = format!(r#""default";r=0;t={want}"#);
            assert_eq!(header(&res, "ratelimit").unwrap(), t, "{rate}");
        }
        // Waiting exactly Retry-After is enough.
        let secs: u64 = limiter_retry_after(&lim).parse().unwrap();
        tokio::time::advance(Duration::from_secs(secs)).await;
        assert_eq!(
            svc.clone().oneshot(get("/")).await.unwrap().status(),
            200,
            "{rate}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn always_puts_the_fields_on_admitted_responses() {
    let lim = RateLimiter::new(Rate::per_second(10).burst(5)).unwrap();
    let svc = HttpRateLimitLayer::builder(lim.clone())
        .headers(RateLimitHeaders::Always)
        .policy_name("per-client")
        .build()
        .unwrap()
        .layer(app(&Arc::new(AtomicUsize::new(0))));
    for left in (0..5).rev() {
        let res = svc.clone().oneshot(get("/")).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            header(&res, "ratelimit-policy"),
            Some(r#""per-client";q=10;w=1"#)
        );
        let want = format!(r#""per-client";r={left};t=1"#);
        assert_eq!(header(&res, "ratelimit").unwrap(), want);
        assert_eq!(lim.available(), left);
        assert_eq!(header(&res, "retry-after"), None);
    }
    assert_eq!(svc.clone().oneshot(get("/")).await.unwrap().status(), 429);
}

#[tokio::test(start_paused = true)]
async fn retry_after_only_leaves_the_ratelimit_fields_out() {
    let lim = RateLimiter::new(Rate::per_second(1)).unwrap();
    let svc = HttpRateLimitLayer::builder(lim)
        .headers(RateLimitHeaders::RetryAfterOnly)
        .build()
        .unwrap()
        .layer(app(&Arc::new(AtomicUsize::new(0))));
    svc.clone().oneshot(get("/")).await.unwrap();
    let res = svc.clone().oneshot(get("/")).await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after"), Some("1"));
    assert_eq!(header(&res, "ratelimit"), None);
    assert_eq!(header(&res, "ratelimit-policy"), None);
}

#[tokio::test(start_paused = true)]
async fn zero_and_unlimited_rates() {
    // A spent zero-rate bucket: 429 with no Retry-After (no token ever
    // comes), a policy with no window and no t.
    let lim = RateLimiter::new(Rate::zero().burst(2)).unwrap();
    let svc = HttpRateLimitLayer::builder(lim)
        .build()
        .unwrap()
        .layer(app(&Arc::new(AtomicUsize::new(0))));
    for _ in 0..2 {
        assert_eq!(svc.clone().oneshot(get("/")).await.unwrap().status(), 200);
    }
    let res = svc.clone().oneshot(get("/")).await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after"), None);
    assert_eq!(header(&res, "ratelimit-policy"), Some(r#""default";q=2"#));
    assert_eq!(header(&res, "ratelimit"), Some(r#""default";r=0"#));

    // Unlimited: always admitted, no fields to give.
    let lim = RateLimiter::new(Rate::unlimited()).unwrap();
    let svc = HttpRateLimitLayer::builder(lim)
        .headers(RateLimitHeaders::Always)
        .build()
        .unwrap()
        .layer(app(&Arc::new(AtomicUsize::new(0))));
    for _ in 0..100 {
        let res = svc.clone().oneshot(get("/")).await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers().is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn keys_from_a_header() {
    let calls = Arc::new(AtomicUsize::new(0));
    let per_key = KeyedRateLimiter::new(Rate::per_second(1).burst(2)).unwrap();
    per_key
        .set_override(
            HeaderValue::from_static("vip"),
            Rate::per_second(100).burst(10),
        )
        .unwrap();
    let svc = HttpRateLimitLayer::keyed(per_key.clone(), KeyFromHeader::new("X-Api-Key"))
        .build()
        .unwrap()
        .layer(app(&calls));

    for _ in 0..2 {
        assert_eq!(
            svc.clone().oneshot(with_key("ann")).await.unwrap().status(),
            200
        );
    }
    let res = svc.clone().oneshot(with_key("ann")).await.unwrap();
    assert_eq!(res.status(), 429);
    let ann = per_key.limiter(&HeaderValue::from_static("ann"));
    assert_eq!(
        header(&res, "retry-after").unwrap(),
        limiter_retry_after(&ann)
    );
    // Bob has his own bucket; the VIP has her own quota.
    assert_eq!(
        svc.clone().oneshot(with_key("bob")).await.unwrap().status(),
        200
    );
    for _ in 0..10 {
        assert_eq!(
            svc.clone().oneshot(with_key("vip")).await.unwrap().status(),
            200
        );
    }
    let res = svc.clone().oneshot(with_key("vip")).await.unwrap();
    assert_eq!(
        header(&res, "ratelimit-policy"),
        Some(r#""default";q=100;w=1"#)
    );

    // No header, or an empty one: 400, and the service is not called.
    let before = calls.load(Ordering::SeqCst);
    let res = svc.clone().oneshot(get("/")).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = svc.clone().oneshot(with_key("")).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(calls.load(Ordering::SeqCst), before);
}

#[tokio::test(start_paused = true)]
async fn requests_without_a_key_can_share_one_bucket() {
    let per_key = KeyedRateLimiter::new(Rate::per_second(1).burst(2)).unwrap();
    let svc = HttpRateLimitLayer::keyed(per_key.clone(), KeyFromHeader::new("x-api-key"))
        .key_when_missing(HeaderValue::from_static("anonymous"))
        .build()
        .unwrap()
        .layer(app(&Arc::new(AtomicUsize::new(0))));
    assert_eq!(svc.clone().oneshot(get("/")).await.unwrap().status(), 200);
    assert_eq!(svc.clone().oneshot(get("/")).await.unwrap().status(), 200);
    assert_eq!(svc.clone().oneshot(get("/")).await.unwrap().status(), 429);
    // ...which is the bucket of the key given for them.
    assert_eq!(
        svc.clone()
            .oneshot(with_key("anonymous"))
            .await
            .unwrap()
            .status(),
        429
    );
    assert_eq!(
        svc.clone().oneshot(with_key("ann")).await.unwrap().status(),
        200
    );
    assert_eq!(per_key.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn keys_from_the_peer_address() {
    let calls = Arc::new(AtomicUsize::new(0));
    let per_ip = KeyedRateLimiter::new(Rate::per_second(1)).unwrap();
    let svc = HttpRateLimitLayer::keyed(per_ip.clone(), KeyFromPeer::new())
        .build()
        .unwrap()
        .layer(app(&calls));
    // Ports differ per connection; the key is the address.
    let res = svc
        .clone()
        .oneshot(from_peer("203.0.113.7:4000", None))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = svc
        .clone()
        .oneshot(from_peer("203.0.113.7:4001", None))
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    // Without trusted proxies, X-Forwarded-For is ignored: no way out.
    let spoof = Some("198.51.100.1");
    let res = svc
        .clone()
        .oneshot(from_peer("203.0.113.7:4002", spoof))
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    // IPv4-mapped IPv6 is the same client.
    let res = svc
        .clone()
        .oneshot(from_peer("[::ffff:203.0.113.7]:9", None))
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let res = svc
        .clone()
        .oneshot(from_peer("[2001:db8::1]:9", None))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(per_ip.len(), 2);

    // A server that gives no peer address: 500, not a bucket for everyone.
    let before = calls.load(Ordering::SeqCst);
    let res = svc.clone().oneshot(get("/")).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(calls.load(Ordering::SeqCst), before);
}

#[tokio::test(start_paused = true)]
async fn forwarded_addresses_count_only_behind_trusted_proxies() {
    let per_ip = KeyedRateLimiter::new(Rate::per_second(1)).unwrap();
    let key = KeyFromPeer::new().trust_proxies(["10.0.0.0/8", "192.0.2.1"]);
    let svc = HttpRateLimitLayer::keyed(per_ip.clone(), key.clone())
        .build()
        .unwrap()
        .layer(app(&Arc::new(AtomicUsize::new(0))));

    let client = |req: Req| -> IpAddr {
        let (parts, ()) = req.into_parts();
        key.key(&parts).unwrap()
    };
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    // The peer is not trusted: its header is ignored.
    assert_eq!(
        client(from_peer("198.51.100.9:1", Some("1.1.1.1"))),
        ip("198.51.100.9")
    );
    // Behind one trusted proxy: the rightmost entry.
    assert_eq!(
        client(from_peer("10.0.0.1:1", Some("1.1.1.1, 2.2.2.2"))),
        ip("2.2.2.2")
    );
    // Behind two: skip the trusted ones from the right.
    assert_eq!(
        client(from_peer("10.0.0.1:1", Some("1.1.1.1, 2.2.2.2, 192.0.2.1"))),
        ip("2.2.2.2")
    );
    // Several lines are one list.
    let mut req = from_peer("10.0.0.1:1", Some("3.3.3.3"));
    req.headers_mut()
        .append("x-forwarded-for", HeaderValue::from_static("10.9.9.9"));
    assert_eq!(client(req), ip("3.3.3.3"));
    // All trusted: the leftmost.
    assert_eq!(
        client(from_peer("10.0.0.1:1", Some("10.0.0.3, 10.0.0.2"))),
        ip("10.0.0.3")
    );
    // A garbage entry stops the walk at the proxy that passed it on.
    assert_eq!(
        client(from_peer("10.0.0.1:1", Some("1.1.1.1, junk, 10.0.0.2"))),
        ip("10.0.0.2")
    );
    // No header: the proxy itself.
    assert_eq!(client(from_peer("10.0.0.1:1", None)), ip("10.0.0.1"));
    // Ports in entries are tolerated.
    assert_eq!(
        client(from_peer("10.0.0.1:1", Some("[2001:db8::5]:443"))),
        ip("2001:db8::5")
    );

    // Through the service: two clients behind one proxy get two buckets.
    let res = svc
        .clone()
        .oneshot(from_peer("10.0.0.1:1", Some("1.1.1.1")))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = svc
        .clone()
        .oneshot(from_peer("10.0.0.1:2", Some("2.2.2.2")))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = svc
        .clone()
        .oneshot(from_peer("10.0.0.1:3", Some("1.1.1.1")))
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(per_ip.len(), 2);
}

/// An extension type of the server's own, as axum's `ConnectInfo`.
#[derive(Clone)]
struct Conn(SocketAddr);

#[tokio::test(start_paused = true)]
async fn keys_from_another_extension_and_from_a_closure() {
    let per_ip = KeyedRateLimiter::new(Rate::per_second(1)).unwrap();
    let svc = HttpRateLimitLayer::keyed(per_ip, KeyFromPeer::from_extension(|c: &Conn| c.0))
        .build()
        .unwrap()
        .layer(app(&Arc::new(AtomicUsize::new(0))));
    let conn = |s: &str| {
        let mut req = get("/");
        req.extensions_mut().insert(Conn(s.parse().unwrap()));
        req
    };
    assert_eq!(
        svc.clone()
            .oneshot(conn("192.0.2.1:1"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        svc.clone()
            .oneshot(conn("192.0.2.1:2"))
            .await
            .unwrap()
            .status(),
        429
    );
    assert_eq!(
        svc.clone()
            .oneshot(conn("192.0.2.2:1"))
            .await
            .unwrap()
            .status(),
        200
    );

    // A closure: a bucket per path.
    let per_path = KeyedRateLimiter::new(Rate::per_second(1)).unwrap();
    let by_path = |req: &Parts| Some(req.uri.path().to_owned());
    let svc = HttpRateLimitLayer::keyed(per_path.clone(), by_path)
        .build()
        .unwrap()
        .layer(app(&Arc::new(AtomicUsize::new(0))));
    assert_eq!(svc.clone().oneshot(get("/a")).await.unwrap().status(), 200);
    assert_eq!(svc.clone().oneshot(get("/a")).await.unwrap().status(), 429);
    assert_eq!(svc.clone().oneshot(get("/b")).await.unwrap().status(), 200);
    assert_eq!(
        per_path.rate_for(&"/a".to_owned()),
        Rate::per_second(1).burst(1)
    );
    // A closure that finds no key: 400.
    let never = |_: &Parts| None::<u8>;
    let svc = HttpRateLimitLayer::keyed(KeyedRateLimiter::new(Rate::per_second(1)).unwrap(), never)
        .build()
        .unwrap()
        .layer(app(&Arc::new(AtomicUsize::new(0))));
    assert_eq!(svc.oneshot(get("/")).await.unwrap().status(), 400);
}

#[tokio::test(start_paused = true)]
async fn waiting_holds_requests_within_both_bounds() {
    let calls = Arc::new(AtomicUsize::new(0));
    let lim = RateLimiter::new(Rate::per_second(10)).unwrap(); // one per 100 ms
    let layer = HttpRateLimitLayer::builder(lim.clone())
        .when_limited(WhenLimited::Wait {
            max_wait: MS * 250,
            max_waiting: 2,
        })
        .build()
        .unwrap();
    let svc = layer.layer(app(&calls));
    let start = Instant::now();

    // The first goes at once; the next two are held (100 and 200 ms away).
    assert_eq!(svc.clone().oneshot(get("/")).await.unwrap().status(), 200);
    let held: Vec<_> = (0..2)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let res = svc.oneshot(get("/")).await.unwrap();
                (res.status(), start.elapsed())
            })
        })
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(layer.waiting(), 2);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "held requests are not called yet"
    );

    // A third would wait 300 ms: over max_wait. Refused with when it
    // could come, and it took nothing.
    let res = svc.clone().oneshot(get("/")).await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(
        header(&res, "retry-after").unwrap(),
        limiter_retry_after(&lim)
    );

    let mut ends = Vec::new();
    for h in held {
        ends.push(h.await.unwrap());
    }
    assert_eq!(
        ends,
        [(StatusCode::OK, MS * 100), (StatusCode::OK, MS * 200)]
    );
    assert_eq!(layer.waiting(), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn waiting_slots_are_bounded_and_freed_on_drop() {
    let lim = RateLimiter::new(Rate::per_second(1)).unwrap();
    let layer = HttpRateLimitLayer::builder(lim.clone())
        .when_limited(WhenLimited::Wait {
            max_wait: Duration::MAX, // no time bound: only the slots
            max_waiting: 1,
        })
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer(app(&calls));
    assert_eq!(svc.clone().oneshot(get("/")).await.unwrap().status(), 200);

    // One held (1 s away); the slot is full, so the next is refused,
    // with the wait it would have had, and its reservation given back.
    svc.ready().await.unwrap();
    let held = svc.call(get("/"));
    assert_eq!(layer.waiting(), 1);
    let res = svc.clone().oneshot(get("/")).await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after"), Some("2"));
    assert_eq!(layer.waiting(), 1);

    // Dropping the held request frees its slot and gives its token back.
    drop(held);
    assert_eq!(layer.waiting(), 0);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(lim.available(), 1);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the dropped request was never called"
    );
}

#[tokio::test(start_paused = true)]
async fn a_held_request_gets_the_fields_when_admitted() {
    let lim = RateLimiter::new(Rate::per_second(10).burst(2)).unwrap();
    let svc = HttpRateLimitLayer::builder(lim)
        .when_limited(WhenLimited::Wait {
            max_wait: Duration::from_secs(1),
            max_waiting: 8,
        })
        .headers(RateLimitHeaders::Always)
        .build()
        .unwrap()
        .layer(app(&Arc::new(AtomicUsize::new(0))));
    for _ in 0..2 {
        svc.clone().oneshot(get("/")).await.unwrap();
    }
    let start = Instant::now();
    let res = svc.clone().oneshot(get("/")).await.unwrap();
    assert_eq!(start.elapsed(), MS * 100);
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "ratelimit"), Some(r#""default";r=0;t=1"#));
}

#[tokio::test]
async fn the_inner_services_error_passes_through() {
    #[derive(Debug, PartialEq)]
    struct Boom;
    let lim = RateLimiter::new(Rate::per_second(1)).unwrap();
    let svc = HttpRateLimitLayer::builder(lim)
        .build()
        .unwrap()
        .layer(service_fn(|_: Req| async { Err::<Res, _>(Boom) }));
    assert_eq!(svc.clone().oneshot(get("/")).await.unwrap_err(), Boom);
    // A refusal is a response, not an error.
    assert_eq!(svc.oneshot(get("/")).await.unwrap().status(), 429);
}

#[test]
fn settings_are_checked_at_build() {
    let lim = || RateLimiter::new(Rate::per_second(1)).unwrap();
    let wait = |max_wait, max_waiting| WhenLimited::Wait {
        max_wait,
        max_waiting,
    };

    let err = HttpRateLimitLayer::builder(lim())
        .when_limited(wait(Duration::ZERO, 4))
        .build()
        .unwrap_err();
    assert_eq!(
        (err.construct(), err.setting()),
        ("http rate limit", "max_wait")
    );
    assert_eq!(err.problem(), &Problem::Zero);
    let err = HttpRateLimitLayer::builder(lim())
        .when_limited(wait(MS, 0))
        .build()
        .unwrap_err();
    assert_eq!(
        (err.setting(), err.problem()),
        ("max_waiting", &Problem::Zero)
    );
    // Huge is lowered, not an error.
    let layer = HttpRateLimitLayer::builder(lim())
        .when_limited(wait(Duration::MAX, usize::MAX))
        .build()
        .unwrap();
    assert_eq!(layer.waiting(), 0);

    for bad in ["", "naïve", "line\nbreak"] {
        let err = HttpRateLimitLayer::builder(lim())
            .policy_name(bad)
            .build()
            .unwrap_err();
        assert_eq!(err.setting(), "policy name", "{bad:?}");
    }
    let keyed = || KeyedRateLimiter::<HeaderValue>::new(Rate::per_second(1)).unwrap();
    let err = HttpRateLimitLayer::keyed(keyed(), KeyFromHeader::new("bad header"))
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "key header");
    assert!(err.to_string().contains("bad header"), "{err}");
    let per_ip = KeyedRateLimiter::<IpAddr>::new(Rate::per_second(1)).unwrap();
    let err = HttpRateLimitLayer::keyed(per_ip, KeyFromPeer::new().trust_proxies(["10.0.0.0/99"]))
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "trusted proxy");
    assert!(err.to_string().contains("10.0.0.0/99"), "{err}");
}

#[test]
fn auto_traits() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    type Inner = tower::util::BoxCloneSyncService<Req, Res, Infallible>;
    send_sync::<HttpRateLimitLayer>();
    send_sync::<HttpRateLimitLayer<weir_rate::http::BucketPerKey<KeyFromHeader>>>();
    send_sync::<weir_rate::http::HttpRateLimit<Inner, weir_rate::http::OneBucket>>();
    send::<weir_rate::http::HttpRateLimitFuture<Inner, ()>>();
    send_sync::<KeyFromPeer>();
}
