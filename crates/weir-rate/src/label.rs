//! A limiter's name and, with the `metrics` feature, the series its
//! decisions are recorded on (docs/observability.md).

use std::sync::Arc;
#[cfg(feature = "metrics")]
use std::time::Duration;

/// The name a limiter handle records under. Shared by the handle's clones
/// and by the buckets of a keyed limiter.
#[derive(Debug)]
pub(crate) struct Label {
    pub(crate) name: Box<str>,
    #[cfg(feature = "metrics")]
    series: Series,
}

/// `weir_limiter_allowed_total`, `weir_limiter_denied_total` and
/// `weir_limiter_wait_seconds` of one name.
#[cfg(feature = "metrics")]
#[derive(Debug)]
struct Series {
    allowed: metrics::Counter,
    denied: metrics::Counter,
    wait: metrics::Histogram,
}

/// The name of a limiter nobody named.
pub(crate) const DEFAULT_NAME: &str = "limiter";

impl Label {
    pub(crate) fn new(name: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            #[cfg(feature = "metrics")]
            series: Series {
                allowed: metrics::counter!("weir_limiter_allowed_total", "limiter" => name.to_owned()),
                denied: metrics::counter!("weir_limiter_denied_total", "limiter" => name.to_owned()),
                wait: metrics::histogram!("weir_limiter_wait_seconds", "limiter" => name.to_owned()),
            },
        })
    }

    /// A decision: tokens granted (`true`) or refused.
    #[cfg(feature = "metrics")]
    #[inline]
    pub(crate) fn decided(&self, granted: bool) {
        if granted {
            self.series.allowed.increment(1);
        } else {
            self.series.denied.increment(1);
        }
    }

    /// A wait that had to wait was granted after `waited`.
    #[cfg(feature = "metrics")]
    pub(crate) fn waited(&self, waited: Duration) {
        self.series.wait.record(waited);
    }
}
