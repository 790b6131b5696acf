//! ctrl-c and SIGTERM, for [`Shutdown::on_signal`](super::Shutdown::on_signal).

use std::fmt;

/// What ended the wait of [`Shutdown::on_signal`](super::Shutdown::on_signal).
///
/// A signal is also the cause the root context is cancelled with, so the
/// report says why the service stopped:
/// `report.cause.unwrap().downcast_ref::<ShutdownTrigger>()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ShutdownTrigger {
    /// ctrl-c (SIGINT on unix).
    CtrlC,
    /// SIGTERM (unix only), what `kill`, systemd and Kubernetes send.
    Terminate,
    /// The root context was cancelled by code (its `cancel()`, its parent,
    /// its deadline, or [`shutdown`](super::Shutdown::shutdown)).
    Cancelled,
}

impl fmt::Display for ShutdownTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CtrlC => "received ctrl-c",
            Self::Terminate => "received SIGTERM",
            Self::Cancelled => "the root context was cancelled",
        })
    }
}

impl std::error::Error for ShutdownTrigger {}

/// Waits for ctrl-c or (on unix) SIGTERM. A signal whose handler cannot be
/// installed is logged once and not waited for.
pub(super) async fn wait_for_signal() -> ShutdownTrigger {
    let ctrl_c = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => ShutdownTrigger::CtrlC,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for ctrl-c");
                std::future::pending().await
            }
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                if sigterm.recv().await.is_some() {
                    ShutdownTrigger::Terminate
                } else {
                    std::future::pending().await
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending().await
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<ShutdownTrigger>();
    tokio::select! {
        trigger = ctrl_c => trigger,
        trigger = terminate => trigger,
    }
}
