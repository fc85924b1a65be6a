//! Fault injection (`fault`): chaos experiments delay or fail a share of a backend's
//! requests before they are sent. Off unless configured; every injected fault is logged.

use http::StatusCode;
use tokio::time::Instant;

use crate::config::FaultSettings;

/// Applies `fault` to one request: waits the delay (never past `deadline`) when drawn,
/// and returns the status to fail with when an abort is drawn.
pub(super) async fn inject(
    fault: &FaultSettings,
    backend: &str,
    deadline: Instant,
) -> Option<StatusCode> {
    if let Some((delay, share)) = fault.delay
        && fastrand::f64() < share
    {
        tracing::info!(backend, fault = "delay", ?delay, "fault injected");
        tokio::time::sleep_until((Instant::now() + delay).min(deadline)).await;
    }
    if let Some((status, share)) = fault.abort
        && fastrand::f64() < share
    {
        tracing::info!(
            backend,
            fault = "abort",
            status = status.as_u16(),
            "fault injected"
        );
        return Some(status);
    }
    None
}
