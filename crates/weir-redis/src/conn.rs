//! The client's reconnecting connection, set up the same way for every
//! weir-redis construct.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// A lazily connecting [`ConnectionManager`]: it connects on first use,
/// reconnects after the connection breaks, and gives up a reconnection
/// after two quick retries (the next call starts another), so a restarted
/// server is found again within about a second. Response times are bounded
/// by the callers (every call runs under its own timeout), not here.
///
/// Must be called inside a tokio runtime.
pub(crate) fn manager(
    client: redis::Client,
    timeout: Duration,
) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        // The client's default (500 ms) would cut blocking reads and
        // callers' longer timeouts short; every call has its own bound.
        .set_response_timeout(None)
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, config)
}
