//! The response fields: `Retry-After` (RFC 9110 §10.2.3) and the
//! `RateLimit-Policy` / `RateLimit` fields of
//! draft-ietf-httpapi-ratelimit-headers-11 (Structured Field Lists of
//! Items whose value is a String naming the policy).

use std::fmt::Write as _;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use weir_context::ConfigError;

use super::CONSTRUCT;
use crate::gcra::Standing;

/// `RateLimit-Policy`.
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The largest Integer a Structured Field carries (RFC 9651 §3.3.1).
const SF_INTEGER_MAX: u64 = 999_999_999_999_999;

const NS_PER_SEC: u64 = 1_000_000_000;

/// Whole seconds, rounded up: a client that waits that long finds what it
/// was told (delay-seconds have no fraction).
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

fn ceil_secs_ns(ns: u64) -> u64 {
    ns.div_ceil(NS_PER_SEC)
}

/// The policy name as a Structured Field String (quoted, `"` and `\`
/// escaped); printable ASCII only.
pub(crate) fn sf_string(name: &str) -> Result<String, ConfigError> {
    if name.is_empty() || !name.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(ConfigError::invalid(
            CONSTRUCT,
            "policy name",
            format!("{name:?} must be non-empty printable ASCII (a Structured Field String)"),
        ));
    }
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

/// The policy's quota `q` and window `w` in seconds for a bucket of
/// `period` ns per token and `tau = burst × period`.
///
/// The window is the time to refill a full bucket, at least one second
/// (the field has no fractions), rounded up; the quota is what the rate
/// grants over that window. A bucket that never refills has a quota of its
/// burst and no window.
pub(crate) fn quota_window(s: &Standing) -> (u64, Option<u64>) {
    if s.frozen {
        return ((s.tau / s.period).min(SF_INTEGER_MAX), None);
    }
    let w = ceil_secs_ns(s.tau).max(1);
    let q = u128::from(w) * u128::from(NS_PER_SEC) / u128::from(s.period);
    let q = u64::try_from(q).unwrap_or(u64::MAX).min(SF_INTEGER_MAX);
    (q, Some(w.min(SF_INTEGER_MAX)))
}

/// `"name";q=Q;w=W`.
pub(crate) fn policy_value(policy: &str, s: &Standing) -> HeaderValue {
    let (q, w) = quota_window(s);
    let mut v = String::with_capacity(policy.len() + 24);
    let _ = write!(v, "{policy};q={q}");
    if let Some(w) = w {
        let _ = write!(v, ";w={w}");
    }
    header_value(v)
}

/// `"name";r=R;t=T`: `r` tokens left, `t` seconds until one more (the
/// effective window: until then the client can use no more than `r`);
/// `t` is left out when the bucket is full or never refills.
pub(crate) fn limit_value(policy: &str, remaining: u32, next: Option<u64>) -> HeaderValue {
    let mut v = String::with_capacity(policy.len() + 24);
    let _ = write!(v, "{policy};r={remaining}");
    if let Some(t) = next {
        let _ = write!(v, ";t={}", t.min(SF_INTEGER_MAX));
    }
    header_value(v)
}

fn header_value(v: String) -> HeaderValue {
    // Printable ASCII by construction (the policy name was checked at
    // build), so this does not fail; an empty value would be a bug.
    HeaderValue::try_from(v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The fields of an admitted request's response (`RateLimitHeaders::Always`).
#[derive(Debug, Clone)]
pub(crate) struct Admitted {
    policy: HeaderValue,
    limit: HeaderValue,
}

impl Admitted {
    pub(crate) fn new(policy: &str, s: &Standing) -> Self {
        Admitted {
            policy: policy_value(policy, s),
            limit: limit_value(policy, s.available, s.next_token_ns.map(ceil_secs_ns)),
        }
    }

    pub(crate) fn write(self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_POLICY, self.policy);
        headers.insert(RATELIMIT, self.limit);
    }
}

/// Writes a refusal's fields: `Retry-After` (when a token will come) and,
/// when asked, the policy and `r=0` with `t` equal to `Retry-After` (the
/// draft wants `Retry-After` no earlier than the effective window's end).
pub(crate) fn write_refusal(
    headers: &mut HeaderMap,
    wait: Option<Duration>,
    fields: Option<(&str, &Standing)>,
) {
    let secs = wait.map(ceil_secs);
    if let Some(secs) = secs {
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some((policy, s)) = fields {
        headers.insert(RATELIMIT_POLICY, policy_value(policy, s));
        headers.insert(RATELIMIT, limit_value(policy, 0, secs));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn standing(period: u64, burst: u64, frozen: bool) -> Standing {
        Standing {
            available: 0,
            next_token_ns: None,
            period,
            tau: period * burst,
            frozen,
        }
    }

    #[test]
    fn windows_and_quotas() {
        // 200/s, burst 20: refills in 100 ms; over one second, 200.
        assert_eq!(
            quota_window(&standing(5_000_000, 20, false)),
            (200, Some(1))
        );
        // 1/s, burst 10: refills in 10 s, 10 over that window.
        assert_eq!(
            quota_window(&standing(NS_PER_SEC, 10, false)),
            (10, Some(10))
        );
        // 2/s, burst 5: 2.5 s rounds up to 3 s, 6 tokens in it.
        assert_eq!(
            quota_window(&standing(NS_PER_SEC / 2, 5, false)),
            (6, Some(3))
        );
        // Never refills: the burst, no window.
        assert_eq!(quota_window(&standing(1_000_000, 7, true)), (7, None));
        // One token per nanosecond: clamped to what a field carries.
        assert_eq!(
            quota_window(&standing(1, u64::from(u32::MAX), false)),
            (1_000_000_000 * 5, Some(5))
        );
    }

    #[test]
    fn values() {
        let p = sf_string("default").unwrap();
        let s = standing(5_000_000, 20, false);
        assert_eq!(policy_value(&p, &s), "\"default\";q=200;w=1");
        assert_eq!(limit_value(&p, 3, Some(1)), "\"default\";r=3;t=1");
        assert_eq!(limit_value(&p, 20, None), "\"default\";r=20");
        assert_eq!(sf_string(r#"a "b" \c"#).unwrap(), r#""a \"b\" \\c""#);
        assert!(sf_string("").is_err());
        assert!(sf_string("naïve").is_err());
        assert!(sf_string("tab\t").is_err());
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_nanos(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1000)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
        assert_eq!(ceil_secs(Duration::MAX), u64::MAX);
    }
}
