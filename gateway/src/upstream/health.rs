//! Active health checks: every `interval`, a `GET` of the health path on each instance;
//! `unhealthy_after` failures in a row take it out of the choice, `healthy_after` good
//! answers in a row bring it back. A check is good when a 2xx arrives within `timeout`.
//!
//! One task per instance, holding only a weak reference: it ends once the backend's
//! client is gone (after a reload dropped or changed the backend).

use std::sync::{Arc, Weak};

use http::{Request, header};
use http_body_util::BodyExt;
use tokio::time::{Instant, MissedTickBehavior};

use super::balance::Endpoint;
use crate::body::UpstreamBody;
use crate::config::HealthSettings;

/// Starts the checks of `endpoint`.
pub(super) fn spawn(endpoint: &Arc<Endpoint>, settings: HealthSettings, backend: String) {
    let endpoint = Arc::downgrade(endpoint);
    tokio::spawn(run(endpoint, settings, backend));
}

async fn run(endpoint: Weak<Endpoint>, settings: HealthSettings, backend: String) {
    let mut ticks = tokio::time::interval_at(Instant::now() + settings.interval, settings.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut good, mut bad) = (0u32, 0u32);
    loop {
        ticks.tick().await;
        let Some(endpoint) = endpoint.upgrade() else {
            return;
        };
        let ok = tokio::time::timeout(settings.timeout, probe(&endpoint, &settings.path))
            .await
            .unwrap_or(false);
        if ok {
            good += 1;
            bad = 0;
        } else {
            bad += 1;
            good = 0;
        }
        let healthy = endpoint.healthy();
        if healthy && bad >= settings.unhealthy_after {
            endpoint.set_healthy(false);
            tracing::warn!(%backend, instance = endpoint.url(), failed_checks = bad, "instance unhealthy");
        } else if !healthy && good >= settings.healthy_after {
            endpoint.set_healthy(true);
            tracing::info!(%backend, instance = endpoint.url(), "instance healthy again");
        }
    }
}

async fn probe(endpoint: &Endpoint, path: &str) -> bool {
    let Ok(uri) = endpoint.pool().uri(path) else {
        return false;
    };
    let mut req = Request::new(UpstreamBody::full(bytes::Bytes::new()));
    *req.uri_mut() = uri;
    req.headers_mut().insert(
        header::USER_AGENT,
        header::HeaderValue::from_static("portico-health-check"),
    );
    match endpoint.pool().send(req).await {
        Ok(res) => {
            let ok = res.status().is_success();
            // Read the (small) body so the connection goes back to the pool.
            let _ = http_body_util::Limited::new(res.into_body(), 64 * 1024)
                .collect()
                .await;
            ok
        }
        Err(_) => false,
    }
}
