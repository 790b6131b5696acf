//! [`RedisFailure`]: a Redis call that gave no answer in time.

use std::sync::Arc;
use std::time::Duration;

/// A Redis call that did not give an answer: it ran past its timeout, or
/// the client or the server reported an error (connection refused, reset,
/// `LOADING` while the server replays its append-only file, ...).
///
/// Every call weir-redis makes to Redis is bounded by a per-call timeout,
/// so a slow or unreachable server shows up as this value, never as a hang.
/// It is cheap to clone (the client's error is shared).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RedisFailure {
    /// No answer within the per-call timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The client or the server reported an error.
    #[error("redis: {0}")]
    Redis(Arc<redis::RedisError>),
}

impl RedisFailure {
    /// Whether the call ran past its timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }

    /// The client's error, when there was one (not for a timeout).
    pub fn redis_error(&self) -> Option<&redis::RedisError> {
        match self {
            Self::Redis(e) => Some(e),
            Self::Timeout(_) => None,
        }
    }

    /// The server's error code (`NOGROUP`, `LOADING`, `WRONGTYPE`, ...), if
    /// the server answered with an error.
    pub(crate) fn code(&self) -> Option<&str> {
        self.redis_error().and_then(redis::RedisError::code)
    }
}

impl From<redis::RedisError> for RedisFailure {
    fn from(e: redis::RedisError) -> Self {
        Self::Redis(Arc::new(e))
    }
}

/// Runs one Redis call under `timeout`.
pub(crate) async fn bounded<T, F>(timeout: Duration, call: F) -> Result<T, RedisFailure>
where
    F: Future<Output = redis::RedisResult<T>>,
{
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(RedisFailure::Timeout(timeout)),
    }
}
