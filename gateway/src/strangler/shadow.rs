//! Shadow traffic: a copy of a request to another backend, fire-and-forget, bounded by
//! its own in-flight cap; with `compare`, both answers are checked against each other.
//!
//! The copy is sent from its own task. A request body reaches it through a tee on the
//! client's body as that streams to the primary; the primary's answer reaches it through
//! a tee on the response body as that streams to the client. Neither tee ever waits, so
//! the client's answer and latency never depend on the shadow.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::compare::{Outcome, compare};
use crate::body::UpstreamBody;
use crate::upstream::{Call, Upstream};

/// How long a shadow waits for the primary's answer to compare with.
const PRIMARY_WAIT: Duration = Duration::from_secs(60);
/// Mismatches kept for the admin API.
const RECENT: usize = 20;

/// Counts and recent mismatches of one route's shadow.
#[derive(Debug, Default)]
pub struct ShadowStats {
    matched: AtomicU64,
    mismatched: AtomicU64,
    errors: AtomicU64,
    sent: AtomicU64,
    skipped: AtomicU64,
    recent: Mutex<VecDeque<Value>>,
}

impl ShadowStats {
    /// `{"match", "mismatch", "error", "sent", "skipped", "recent": [...]}`.
    pub fn json(&self) -> Value {
        let recent: Vec<Value> = self
            .recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default();
        json!({
            "match": self.matched.load(Ordering::Relaxed),
            "mismatch": self.mismatched.load(Ordering::Relaxed),
            "error": self.errors.load(Ordering::Relaxed),
            "sent": self.sent.load(Ordering::Relaxed),
            "skipped": self.skipped.load(Ordering::Relaxed),
            "recent": recent,
        })
    }

    /// `(match, mismatch, error)` counts.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.matched.load(Ordering::Relaxed),
            self.mismatched.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }

    /// Share of compared answers that matched, if any were compared.
    pub fn match_rate(&self) -> Option<f64> {
        let m = self.matched.load(Ordering::Relaxed) as f64;
        let n = m + self.mismatched.load(Ordering::Relaxed) as f64;
        (n > 0.0).then(|| m / n)
    }
}

/// A resolved `shadow` block.
#[derive(Debug)]
pub struct ShadowRoute {
    /// The shadow backend.
    pub upstream: Arc<Upstream>,
    /// Share of requests copied, 0.0–1.0.
    pub share: f64,
    /// Methods copied.
    pub methods: Vec<Method>,
    /// Ignored JSON pointers; `None` = no comparison.
    pub compare: Option<Vec<String>>,
    /// Largest body kept for shadowing and comparing.
    pub max_body: usize,
    /// The in-flight cap.
    pub slots: Arc<Semaphore>,
    /// Counts.
    pub stats: Arc<ShadowStats>,
}

/// A decision to shadow one request, holding its in-flight slot.
#[derive(Debug)]
pub struct ShadowPlan {
    route: Arc<ShadowRoute>,
    permit: OwnedSemaphorePermit,
}

/// What the shadow task needs from the primary exchange.
#[derive(Debug)]
pub struct Exchange {
    /// Method of the request.
    pub method: Method,
    /// Path and query sent to the primary (sent to the shadow too).
    pub target: String,
    /// The path as the client asked, for the report.
    pub path: String,
    /// Headers as sent to the primary.
    pub headers: HeaderMap,
    /// The client's request body once it has streamed to the primary; `None`: no body.
    pub body: Option<oneshot::Receiver<Option<Bytes>>>,
    /// The primary's status and (teed) body, for comparing.
    pub primary: Option<oneshot::Receiver<(StatusCode, oneshot::Receiver<Option<Bytes>>)>>,
    /// The request's recorded span: the shadow attempt is a span under it.
    pub trace: Option<crate::telemetry::trace::Trace>,
}

impl ShadowRoute {
    /// Whether to shadow a request with `method`: method allowed, drawn by share, and a
    /// free in-flight slot (else counted as skipped).
    pub fn plan(self: &Arc<Self>, method: &Method) -> Option<ShadowPlan> {
        if !self.methods.contains(method) {
            return None;
        }
        if self.share < 1.0 && fastrand::f64() >= self.share {
            return None;
        }
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Some(ShadowPlan {
                route: self.clone(),
                permit,
            }),
            Err(_) => {
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

impl ShadowPlan {
    /// Whether the primary's answer is wanted for a comparison.
    pub fn compares(&self) -> bool {
        self.route.compare.is_some()
    }

    /// Largest body kept for the shadow.
    pub fn max_body(&self) -> usize {
        self.route.max_body
    }

    /// Sends the copy from its own task.
    pub fn spawn(self, exchange: Exchange) {
        tokio::spawn(async move {
            let ShadowPlan { route, permit } = self;
            // Everything a shadow waits for is bounded, so its slot always comes back.
            let limit = route.upstream.timeout() + PRIMARY_WAIT;
            if tokio::time::timeout(limit, run(&route, exchange))
                .await
                .is_err()
            {
                route.stats.errors.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        });
    }
}

async fn run(route: &ShadowRoute, ex: Exchange) {
    let stats = &route.stats;
    let body = match ex.body {
        None => Bytes::new(),
        Some(rx) => match rx.await {
            Ok(Some(b)) => b,
            // The body was too large to keep, or the client's request broke off.
            _ => {
                stats.skipped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        },
    };
    let Ok(target) = http::uri::PathAndQuery::try_from(ex.target.as_str()) else {
        return;
    };
    let mut req = Request::new(UpstreamBody::full(body));
    *req.method_mut() = ex.method.clone();
    *req.uri_mut() = http::Uri::from(target);
    *req.headers_mut() = ex.headers;
    stats.sent.fetch_add(1, Ordering::Relaxed);
    // Through the shadow backend's own stack (its bulkhead and breaker protect it),
    // sent once: a shadow copy is never retried or hedged.
    let call = Call {
        deadline: tokio::time::Instant::now() + route.upstream.timeout(),
        idempotent: false,
        hedge: false,
        trace: ex.trace.clone(),
    };
    let res = match route.upstream.call(req, call).await {
        Ok(res) => res,
        Err(e) => {
            tracing::debug!(backend = route.upstream.name(), error = %e, "shadow request failed");
            stats.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let (Some(ignore), Some(primary)) = (&route.compare, ex.primary) else {
        return;
    };
    let status = res.status();
    let shadow_body = match http_body_util::Limited::new(res.into_body(), route.max_body)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let primary = async {
        let (p_status, p_body) = primary.await.ok()?;
        Some((p_status, p_body.await.ok()??))
    };
    let Ok(Some((p_status, p_body))) = tokio::time::timeout(PRIMARY_WAIT, primary).await else {
        // The primary failed, was too large to keep, or its client went away.
        stats.skipped.fetch_add(1, Ordering::Relaxed);
        return;
    };
    match compare((p_status, &p_body), (status, &shadow_body), ignore) {
        Outcome::Match => {
            stats.matched.fetch_add(1, Ordering::Relaxed);
        }
        Outcome::Mismatch(diff) => {
            stats.mismatched.fetch_add(1, Ordering::Relaxed);
            let entry = json!({
                "method": ex.method.as_str(),
                "path": ex.path,
                "primary_status": p_status.as_u16(),
                "shadow_status": status.as_u16(),
                "diff": diff,
            });
            if let Ok(mut recent) = stats.recent.lock() {
                if recent.len() == RECENT {
                    recent.pop_front();
                }
                recent.push_back(entry);
            }
        }
    }
}
