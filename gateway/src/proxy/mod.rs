//! The `proxy` handler: streams a request to a backend and its answer back.
//!
//! Sits at the end of the route pipeline. Bodies stream both ways (never buffered);
//! hop-by-hop headers are removed both ways; `X-Forwarded-*`, `X-Request-Id` and
//! `traceparent` are set; WebSocket upgrades are tunnelled once both sides agreed.

mod headers;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HOST, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

pub use headers::{
    client_ip, is_trusted, is_websocket_upgrade, set_forwarded, strip_hop_by_hop, strip_protected,
};

use crate::auth::{Identity, Provider};
use crate::body::{ClientBody, LimitedBody, Overflow, ResponseBody, Tee, UpstreamBody};
use crate::error::Problem;
use crate::routing::Pattern;
use crate::strangler::{Exchange, ShadowPlan};
use crate::upstream::{self, Upstream, retry};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// A resolved `proxy` route: its backend client and how paths map.
#[derive(Debug)]
pub struct ProxyRoute {
    /// The backend.
    pub upstream: Arc<Upstream>,
    /// Backend path template; `None` = request path minus the file's prefix.
    pub path: Option<Pattern>,
    /// Bytes of prefix to strip when `path` is `None`.
    pub strip_prefix: usize,
}

impl ProxyRoute {
    /// The backend's path and query for a request.
    pub fn target(
        &self,
        normalized_path: &str,
        params: &matchit::Params<'_, '_>,
        query: Option<&str>,
    ) -> String {
        let mut out =
            String::with_capacity(normalized_path.len() + query.map_or(0, |q| q.len() + 1));
        match &self.path {
            Some(tpl) => {
                let pairs: Vec<(&str, &str)> = params.iter().collect();
                tpl.render(&pairs, &mut out);
            }
            None => {
                let rest = normalized_path.get(self.strip_prefix..).unwrap_or("");
                if !rest.starts_with('/') {
                    out.push('/');
                }
                out.push_str(rest);
            }
        }
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

/// What the proxy needs to know about the request besides the request itself.
#[derive(Debug)]
pub struct Context {
    /// `X-Request-Id` to send and echo.
    pub request_id: HeaderValue,
    /// The `traceparent` to send (each attempt's own when spans are recorded).
    pub traceparent: HeaderValue,
    /// The request's recorded span, parent of every backend attempt (when traces are
    /// exported and the trace is sampled).
    pub trace: Option<crate::telemetry::trace::Trace>,
    /// The TCP peer.
    pub peer: IpAddr,
    /// Whether the peer is a trusted proxy.
    pub trusted_peer: bool,
    /// `http` or `https`.
    pub proto: &'static str,
    /// Body limit in bytes.
    pub max_body: u64,
    /// When the route's deadline passes.
    pub deadline: Instant,
    /// A copy of this request goes to a shadow backend.
    pub shadow: Option<ShadowPlan>,
    /// Identity headers no client may set (in any spelling).
    pub protected: Arc<[HeaderName]>,
    /// The authenticated caller, whose headers the backend gets.
    pub identity: Option<Arc<Identity>>,
    /// The provider that authenticated the request (what it wants scrubbed).
    pub provider: Option<Arc<Provider>>,
}

/// Request bodies up to this size are held in full when the call may be sent again.
const REPLAY_MAX_BODY: u64 = 64 * 1024;

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The answer for a failed backend call (logged here; the client never sees the cause).
pub fn problem_of(backend: &str, err: upstream::Error) -> Problem {
    match err {
        upstream::Error::CircuitOpen { retry_after } => {
            tracing::debug!(backend, "circuit open: request not sent");
            Problem::circuit_open(retry_after)
        }
        upstream::Error::BulkheadFull => {
            tracing::debug!(backend, "bulkhead full: request not sent");
            Problem::bulkhead_full()
        }
        upstream::Error::Fault(status) => Problem::fault(status),
        err => {
            tracing::warn!(backend, error = %err, "backend call failed");
            match err {
                upstream::Error::Timeout { deadline: true } => Problem::gateway_timeout(),
                upstream::Error::Timeout { deadline: false } => Problem::upstream_timeout(),
                _ => Problem::upstream_unavailable(),
            }
        }
    }
}

/// Forwards `req` to the route's backend at `target` (path and query).
pub async fn forward(
    route: &ProxyRoute,
    mut req: Request<ClientBody>,
    target: &str,
    mut ctx: Context,
) -> Result<Response<ResponseBody>, Problem> {
    let websocket = is_websocket_upgrade(req.headers());
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let uri = http::uri::PathAndQuery::try_from(target)
        .map(Uri::from)
        .map_err(|_| Problem::bad_request("the request path cannot be forwarded"))?;
    let (mut parts, mut body) = req.into_parts();
    // A body's first frame is read before the backend is called (bounded by the deadline).
    let first = if body.is_end_stream() {
        None
    } else {
        match tokio::time::timeout_at(ctx.deadline, crate::body::peek(&mut body)).await {
            Ok(Ok(first)) => first,
            Ok(Err(_)) => return Err(Problem::bad_request("malformed request body")),
            Err(_) => return Err(Problem::gateway_timeout()),
        }
    };
    // Held in full when it may be sent again: small and idempotent, on a backend that
    // retries or hedges. Anything else streams and is sent once.
    let idempotent = retry::idempotent(&parts.method, &parts.headers);
    let bodiless = first.is_none() && body.is_end_stream();
    let replayable = !bodiless
        && idempotent
        && route.upstream.replays()
        && (content_length(&parts.headers).is_some_and(|n| n <= REPLAY_MAX_BODY)
            || (first
                .as_ref()
                .and_then(|f| f.data_ref())
                .is_some_and(|d| d.len() as u64 <= REPLAY_MAX_BODY)
                && body.is_end_stream()));
    let host = parts.headers.remove(HOST).or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    strip_hop_by_hop(&mut parts.headers, websocket);
    strip_protected(&mut parts.headers, &ctx.protected);
    if let Some(provider) = &ctx.provider {
        for name in provider.scrub().0 {
            parts.headers.remove(name);
        }
    }
    if let Some(identity) = &ctx.identity {
        for (name, value) in identity.headers() {
            parts.headers.insert(name.clone(), value.clone());
        }
    }
    set_forwarded(
        &mut parts.headers,
        ctx.peer,
        ctx.trusted_peer,
        ctx.proto,
        host,
    );
    parts
        .headers
        .insert(X_REQUEST_ID.clone(), ctx.request_id.clone());
    if parts
        .headers
        .insert(TRACEPARENT.clone(), ctx.traceparent.clone())
        .is_none()
    {
        // A tracestate without its traceparent is meaningless.
        parts.headers.remove(&TRACESTATE);
    }
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    // Bodiless requests (most GETs) need no overflow watch at all.
    let overflow =
        (first.is_some() || !body.is_end_stream()).then(|| Arc::new(Overflow::default()));
    let mut body = LimitedBody::new(body, first, ctx.max_body, overflow.clone());

    // Shadow: the copy leaves from its own task; tees hand it the request body and the
    // primary's answer as they stream past, never holding up the client.
    let mut compare_tx = None;
    if let Some(plan) = ctx.shadow.take() {
        let body_rx = overflow.is_some().then(|| {
            let (tee, rx) = Tee::new(plan.max_body());
            body.set_tee(tee);
            rx
        });
        let primary = plan.compares().then(|| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            compare_tx = Some((tx, plan.max_body()));
            rx
        });
        plan.spawn(Exchange {
            method: parts.method.clone(),
            target: target.to_string(),
            path: target.split('?').next().unwrap_or_default().to_string(),
            headers: parts.headers.clone(),
            body: body_rx,
            primary,
            trace: ctx.trace.clone(),
        });
    }
    let (body, overflow) = if bodiless {
        (UpstreamBody::full(Bytes::new()), None)
    } else if replayable {
        match tokio::time::timeout_at(ctx.deadline, body.collect()).await {
            Ok(Ok(collected)) => (UpstreamBody::full(collected.to_bytes()), None),
            Ok(Err(_)) if overflow.as_ref().is_some_and(|o| o.exceeded()) => {
                return Err(Problem::payload_too_large(ctx.max_body));
            }
            Ok(Err(_)) => return Err(Problem::bad_request("malformed request body")),
            Err(_) => return Err(Problem::gateway_timeout()),
        }
    } else {
        (UpstreamBody::Client(body), overflow)
    };
    let upstream_req = Request::from_parts(parts, body);
    let call = upstream::Call {
        deadline: ctx.deadline,
        idempotent,
        hedge: !websocket,
        trace: ctx.trace.take(),
    };
    // Pinned in place: held once in this future, whichever way it is awaited.
    let mut send = std::pin::pin!(route.upstream.call(upstream_req, call));
    let result = match &overflow {
        None => send.as_mut().await,
        Some(overflow) => tokio::select! {
            result = send.as_mut() => result,
            () = overflow.wait() => return Err(Problem::payload_too_large(ctx.max_body)),
        },
    };
    let mut res = match result {
        Ok(res) => res,
        Err(err) => {
            if let Some(overflow) = &overflow {
                if overflow.exceeded() {
                    return Err(Problem::payload_too_large(ctx.max_body));
                }
                if overflow.client_error() {
                    return Err(Problem::bad_request(
                        "the request body broke off or was malformed",
                    ));
                }
            }
            return Err(problem_of(route.upstream.name(), err));
        }
    };
    let upgraded = websocket && res.status() == StatusCode::SWITCHING_PROTOCOLS;
    strip_hop_by_hop(res.headers_mut(), upgraded);
    if upgraded && let Some(client_upgrade) = client_upgrade {
        let backend_upgrade = hyper::upgrade::on(&mut res);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, backend_upgrade) {
                Ok((client, backend)) => {
                    let _ = tokio::io::copy_bidirectional(
                        &mut TokioIo::new(client),
                        &mut TokioIo::new(backend),
                    )
                    .await;
                }
                Err(e) => tracing::debug!(error = %e, "upgrade failed"),
            }
        });
    }
    if let Some((tx, cap)) = compare_tx
        && !upgraded
    {
        let (mut tee, rx) = Tee::new(cap);
        // hyper never polls a body that is already complete (204, 304, HEAD, empty).
        if res.body().is_end_stream() {
            tee.finish();
        }
        let _ = tx.send((res.status(), rx));
        return Ok(res.map(|body| ResponseBody::Teed(body, tee)));
    }
    Ok(res.map(ResponseBody::upstream))
}
