//! Where a request's key comes from: [`RequestKey`], with [`KeyFromHeader`],
//! [`KeyFromPeer`] and closures.

use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderName, HeaderValue, StatusCode};
use weir_context::ConfigError;

use super::CONSTRUCT;

/// Takes the rate-limit key (the client, the API key, the route) from a
/// request's head, for [`HttpRateLimitLayer::keyed`](super::HttpRateLimitLayer::keyed).
///
/// Implemented by [`KeyFromHeader`], [`KeyFromPeer`], and every closure
/// `Fn(&http::request::Parts) -> Option<K> + Clone + Send + Sync + 'static`.
/// `None` means the request has no key: it is answered with
/// [`missing_status`](Self::missing_status), unless the builder gives a key
/// for such requests
/// ([`key_when_missing`](super::HttpRateLimitBuilder::key_when_missing)).
///
/// # Examples
///
/// ```
/// # mod weir { pub use weir_rate as rate; }
/// use http::request::Parts;
/// use weir::rate::http::RequestKey;
///
/// // One bucket per route and method.
/// let by_route = |req: &Parts| Some((req.method.clone(), req.uri.path().to_owned()));
/// let (parts, ()) = http::Request::get("/items/7").body(()).unwrap().into_parts();
/// assert_eq!(by_route.key(&parts), Some((http::Method::GET, "/items/7".to_owned())));
/// ```
pub trait RequestKey: Clone + Send + Sync + 'static {
    /// The key: a bucket per distinct value.
    type Key: Hash + Eq + Clone + Send + Sync + 'static;

    /// The request's key, or `None` if it has none.
    fn key(&self, req: &Parts) -> Option<Self::Key>;

    /// The status of the answer to a request without a key: by default
    /// `400 Bad Request` (the client left something out).
    fn missing_status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }

    /// Checks the source's own settings when the layer is built.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a setting that cannot work; by default none.
    fn check(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

impl<F, K> RequestKey for F
where
    F: Fn(&Parts) -> Option<K> + Clone + Send + Sync + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Key = K;

    fn key(&self, req: &Parts) -> Option<K> {
        self(req)
    }
}

/// The key is the value of a request header (an API key, a tenant id); a
/// request without the header, or with an empty one, has no key. With the
/// header sent more than once, the first value counts.
///
/// The header is the client's word: use it for clients that authenticate
/// with it (and check the credential in the service), not to tell
/// anonymous clients apart — any client can send any value. For those,
/// [`KeyFromPeer`].
#[derive(Clone)]
pub struct KeyFromHeader {
    /// Checked when the layer is built.
    name: Result<HeaderName, Arc<str>>,
}

impl KeyFromHeader {
    /// Keys by the header `name` (case-insensitive). A name that is not a
    /// valid header name is a [`ConfigError`] when the layer is built.
    pub fn new(name: impl AsRef<str>) -> Self {
        let name = name.as_ref();
        KeyFromHeader {
            name: HeaderName::try_from(name).map_err(|_| Arc::from(name)),
        }
    }
}

impl fmt::Debug for KeyFromHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Ok(name) => f.debug_tuple("KeyFromHeader").field(name).finish(),
            Err(bad) => f.debug_tuple("KeyFromHeader").field(bad).finish(),
        }
    }
}

impl RequestKey for KeyFromHeader {
    type Key = HeaderValue;

    #[inline]
    fn key(&self, req: &Parts) -> Option<HeaderValue> {
        let name = self.name.as_ref().ok()?;
        req.headers.get(name).filter(|v| !v.is_empty()).cloned()
    }

    fn check(&self) -> Result<(), ConfigError> {
        match &self.name {
            Ok(_) => Ok(()),
            Err(bad) => Err(ConfigError::invalid(
                CONSTRUCT,
                "key header",
                format!("`{bad}` is not a valid header name"),
            )),
        }
    }
}

/// The key is the client's IP address: the peer of the connection, or,
/// when that peer is a trusted proxy, the client that proxy names in
/// `X-Forwarded-For`.
///
/// The peer address comes from a request extension of type `T` that the
/// server inserts for each connection: [`KeyFromPeer::new`] reads a
/// [`SocketAddr`]; [`KeyFromPeer::from_extension`] reads another type,
/// such as axum's `ConnectInfo<SocketAddr>` (served with
/// `into_make_service_with_connect_info::<SocketAddr>()`):
///
/// ```text
/// KeyFromPeer::from_extension(|c: &axum::extract::ConnectInfo<SocketAddr>| c.0)
/// ```
///
/// A request without that extension has no key, and is answered
/// `500 Internal Server Error`: the server is not set up to say who its
/// peers are.
///
/// # The trusted-proxy rule
///
/// `X-Forwarded-For` is written by whoever sends the request, so it is
/// believed only as far as it was written by proxies you run:
///
/// - With no trusted proxies (the default), the key is the peer's address
///   and forwarded headers are ignored.
/// - When the peer is a trusted proxy, the `X-Forwarded-For` addresses are
///   read **from the right** (the last one was added by the nearest proxy):
///   the key is the first address that is not a trusted proxy. If every
///   address is a trusted proxy, the key is the leftmost one; an entry that
///   is not an IP address stops the walk, and the key is the trusted proxy
///   that passed it on. Several `X-Forwarded-For` lines count as one list,
///   in order.
/// - A client can put anything left of the real entries, and it is never
///   read: a trusted proxy appends the address it saw.
///
/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) count as their IPv4
/// address. Each IPv6 address is its own key.
///
/// # Examples
///
/// ```
/// # mod weir { pub use weir_rate as rate; }
/// use std::net::{IpAddr, SocketAddr};
/// use weir::rate::http::{KeyFromPeer, RequestKey};
///
/// let behind_lb = KeyFromPeer::new().trust_proxies(["10.0.0.0/8"]);
/// let mut req = http::Request::get("/")
///     .header("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.2.3")
///     .body(())
///     .unwrap();
/// req.extensions_mut().insert("10.0.0.1:40000".parse::<SocketAddr>().unwrap());
/// let (parts, ()) = req.into_parts();
/// // 10.0.0.1 and 10.1.2.3 are trusted; 203.0.113.9 is the client;
/// // 6.6.6.6 is whatever the client wrote.
/// assert_eq!(behind_lb.key(&parts), Some("203.0.113.9".parse::<IpAddr>().unwrap()));
/// assert_eq!(KeyFromPeer::new().key(&parts), Some("10.0.0.1".parse::<IpAddr>().unwrap()));
/// ```
pub struct KeyFromPeer<T = SocketAddr> {
    addr_of: fn(&T) -> SocketAddr,
    trusted: Arc<[Net]>,
    /// The first `trust_proxies` entry that did not parse, for `check`.
    invalid: Option<Arc<str>>,
}

impl<T> Clone for KeyFromPeer<T> {
    fn clone(&self) -> Self {
        KeyFromPeer {
            addr_of: self.addr_of,
            trusted: Arc::clone(&self.trusted),
            invalid: self.invalid.clone(),
        }
    }
}

impl<T> fmt::Debug for KeyFromPeer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFromPeer")
            .field("extension", &std::any::type_name::<T>())
            .field("trusted", &self.trusted)
            .finish()
    }
}

impl KeyFromPeer<SocketAddr> {
    /// Reads the peer from a [`SocketAddr`] request extension.
    pub fn new() -> Self {
        Self::from_extension(|addr: &SocketAddr| *addr)
    }
}

impl Default for KeyFromPeer<SocketAddr> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Send + Sync + 'static> KeyFromPeer<T> {
    /// Reads the peer from a request extension of type `T`, with
    /// `addr_of` (a function or a closure that captures nothing).
    pub fn from_extension(addr_of: fn(&T) -> SocketAddr) -> Self {
        KeyFromPeer {
            addr_of,
            trusted: Arc::from(Vec::new()),
            invalid: None,
        }
    }

    /// Trusts these proxies' `X-Forwarded-For` entries (see
    /// [the rule](Self#the-trusted-proxy-rule)): each an IP address
    /// (`"10.0.0.7"`, `"::1"`) or a network in CIDR notation
    /// (`"10.0.0.0/8"`, `"fd00::/8"`). Adds to the ones given before. An
    /// entry that is neither is a [`ConfigError`] when the layer is built.
    pub fn trust_proxies<I>(mut self, proxies: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut nets: Vec<Net> = self.trusted.to_vec();
        for p in proxies {
            match Net::parse(p.as_ref()) {
                Some(net) => nets.push(net),
                None => {
                    self.invalid.get_or_insert_with(|| Arc::from(p.as_ref()));
                }
            }
        }
        self.trusted = Arc::from(nets);
        self
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(ip))
    }

    /// The rule, applied to the peer's address and the forwarded entries.
    fn client(&self, peer: IpAddr, req: &Parts) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut client = peer;
        let lines = req.headers.get_all(X_FORWARDED_FOR).iter().rev();
        for line in lines {
            let Ok(line) = line.to_str() else {
                return client;
            };
            for hop in line.rsplit(',') {
                let Some(ip) = parse_hop(hop.trim()) else {
                    return client;
                };
                client = ip;
                if !self.is_trusted(ip) {
                    return ip;
                }
            }
        }
        client
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

impl<T: Send + Sync + 'static> RequestKey for KeyFromPeer<T> {
    type Key = IpAddr;

    #[inline]
    fn key(&self, req: &Parts) -> Option<IpAddr> {
        let peer = (self.addr_of)(req.extensions.get::<T>()?)
            .ip()
            .to_canonical();
        Some(self.client(peer, req))
    }

    fn missing_status(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    fn check(&self) -> Result<(), ConfigError> {
        match &self.invalid {
            None => Ok(()),
            Some(bad) => Err(ConfigError::invalid(
                CONSTRUCT,
                "trusted proxy",
                format!("`{bad}` is neither an IP address nor a CIDR network"),
            )),
        }
    }
}

/// An address in `X-Forwarded-For`: an IP address, or one with a port
/// (`1.2.3.4:5678`, `[::1]:5678`), which some proxies write.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
    Some(ip.to_canonical())
}

/// A trusted network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    fn parse(s: &str) -> Option<Net> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Net { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks() {
        let n = Net::parse("10.0.0.0/8").unwrap();
        assert!(n.contains(ip("10.255.0.1")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(!n.contains(ip("::1")));
        let all = Net::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let one = Net::parse("::1").unwrap();
        assert_eq!(one.prefix, 128);
        assert!(one.contains(ip("::1")));
        assert!(!one.contains(ip("::2")));
        assert!(
            Net::parse("::ffff:192.168.1.1")
                .unwrap()
                .contains(ip("192.168.1.1"))
        );
        assert_eq!(Net::parse("10.0.0.0/33"), None);
        assert_eq!(Net::parse("fd00::/129"), None);
        assert_eq!(Net::parse("nope"), None);
        assert_eq!(Net::parse("10.0.0.0/x"), None);
        assert!(Net::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
    }

    #[test]
    fn hops() {
        assert_eq!(parse_hop("1.2.3.4"), Some(ip("1.2.3.4")));
        assert_eq!(parse_hop("1.2.3.4:80"), Some(ip("1.2.3.4")));
        assert_eq!(parse_hop("[::1]:80"), Some(ip("::1")));
        assert_eq!(parse_hop("::ffff:1.2.3.4"), Some(ip("1.2.3.4")));
        assert_eq!(parse_hop("unknown"), None);
    }
}
