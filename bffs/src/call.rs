//! One JSON call to a backend through its client stack, as aggregate calls and GraphQL
//! fields make it: the request's identity and forwarding headers, the deadline, and
//! every failure turned into a code of contract §3.3 with a short detail of the
//! gateway's own (never a backend body or address).

use bytes::Bytes;
use gateway::body::UpstreamBody;
use gateway::error::{Code, Problem};
use gateway::proxy::{Context, set_forwarded};
use gateway::upstream::{self, Call, Upstream, retry};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use http::{HeaderMap, Method, Request};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::time::Instant;

/// Largest backend answer read for one call.
pub(crate) const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// A failed call: its code and detail for `_errors`, and the problem the request fails
/// with if the call was required.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) code: &'static str,
    pub(crate) detail: String,
    pub(crate) problem: Box<Problem>,
}

impl Failure {
    pub(crate) fn new(code: &'static str, detail: impl Into<String>, problem: Problem) -> Self {
        Self {
            code,
            detail: detail.into(),
            problem: Box::new(problem),
        }
    }

    pub(crate) fn unavailable(code: &'static str, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        let problem = Problem::new(Code::UpstreamUnavailable, detail.clone());
        Self::new(code, detail, problem)
    }

    pub(crate) fn skipped(detail: String) -> Self {
        Self::unavailable("SKIPPED", detail)
    }

    pub(crate) fn deadline() -> Self {
        Self::new(
            "TIMEOUT",
            "the route's deadline passed",
            Problem::gateway_timeout(),
        )
    }

    pub(crate) fn call_timeout() -> Self {
        Self::new(
            "TIMEOUT",
            "no answer within the call's timeout",
            Problem::upstream_timeout(),
        )
    }
}

/// One JSON request to a backend.
pub(crate) struct JsonRequest<'a> {
    pub(crate) method: &'a Method,
    /// Path and query.
    pub(crate) target: &'a str,
    /// A JSON body.
    pub(crate) body: Option<Bytes>,
    /// Headers and trace of the request's backend calls.
    pub(crate) outgoing: &'a Outgoing,
    pub(crate) deadline: Instant,
    /// Whether `deadline` is the call's own timeout (else the route's deadline).
    pub(crate) own_timeout: bool,
    /// What the log calls it (a call or field name).
    pub(crate) label: &'a str,
}

/// Sends `req` through the backend's stack and reads its JSON answer (an empty body is
/// `null`).
pub(crate) async fn json(upstream: &Upstream, req: JsonRequest<'_>) -> Result<Value, Failure> {
    let JsonRequest {
        method,
        target,
        body,
        outgoing,
        deadline,
        own_timeout,
        label,
    } = req;
    let timeout = || {
        if own_timeout {
            Failure::call_timeout()
        } else {
            Failure::deadline()
        }
    };
    let uri = http::uri::PathAndQuery::try_from(target)
        .map(http::Uri::from)
        .map_err(|_| {
            Failure::unavailable(
                "UPSTREAM_UNAVAILABLE",
                "the call's path is not a valid URL path",
            )
        })?;
    let has_body = body.is_some();
    let mut req = Request::new(UpstreamBody::full(body.unwrap_or_default()));
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = outgoing.headers.clone();
    if has_body {
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let call = Call {
        deadline,
        idempotent: retry::idempotent(method, req.headers()),
        hedge: true,
        trace: outgoing.trace.clone(),
    };
    let res = match upstream.call(req, call).await {
        Ok(res) => res,
        Err(e) => {
            return Err(match e {
                // The backend's own `timeout` fired first.
                upstream::Error::Timeout { deadline: false } => Failure::new(
                    "TIMEOUT",
                    "the backend did not answer within its timeout",
                    Problem::upstream_timeout(),
                ),
                upstream::Error::Timeout { deadline: true } => timeout(),
                upstream::Error::CircuitOpen { retry_after } => Failure::new(
                    "CIRCUIT_OPEN",
                    "the backend's circuit breaker is open",
                    Problem::circuit_open(retry_after),
                ),
                upstream::Error::BulkheadFull => Failure::new(
                    "BULKHEAD_FULL",
                    "the backend has too many requests in flight",
                    Problem::bulkhead_full(),
                ),
                upstream::Error::Fault(status) => Failure::unavailable(
                    "UPSTREAM_STATUS",
                    format!("the backend answered {}", status.as_u16()),
                ),
                other => {
                    tracing::warn!(backend = upstream.name(), call = label, error = %other, "aggregate call failed");
                    Failure::unavailable(
                        "UPSTREAM_UNAVAILABLE",
                        "the backend could not be reached or gave an invalid response",
                    )
                }
            });
        }
    };
    let status = res.status();
    if !status.is_success() {
        return Err(Failure::unavailable(
            "UPSTREAM_STATUS",
            format!("the backend answered {}", status.as_u16()),
        ));
    }
    let read = http_body_util::Limited::new(res.into_body(), MAX_ANSWER).collect();
    let bytes = match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(Failure::unavailable(
                "INVALID_BODY",
                format!("the answer is larger than {MAX_ANSWER} bytes"),
            ));
        }
        Ok(Err(_)) => {
            return Err(Failure::unavailable(
                "UPSTREAM_UNAVAILABLE",
                "the answer broke off",
            ));
        }
        Err(_) => return Err(timeout()),
    };
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes)
        .map_err(|_| Failure::unavailable("INVALID_BODY", "the answer is not valid JSON"))
}

/// What every backend call of one request carries.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// From [`backend_headers`].
    pub(crate) headers: HeaderMap,
    /// The request's recorded span: each call's attempts are spans under it.
    pub(crate) trace: Option<gateway::telemetry::trace::Trace>,
}

impl Outgoing {
    /// The headers and trace of the backend calls made for a request.
    pub(crate) fn of(client: &HeaderMap, ctx: &Context) -> Outgoing {
        Outgoing {
            headers: backend_headers(client, ctx),
            trace: ctx.trace.clone(),
        }
    }
}

/// The headers every backend call of this request carries: `Accept`, the request id,
/// trace context, forwarding headers, the identity's headers, and the client's
/// `Authorization` when the provider forwards it.
pub(crate) fn backend_headers(client: &HeaderMap, ctx: &Context) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(ACCEPT, HeaderValue::from_static("application/json"));
    h.insert("x-request-id", ctx.request_id.clone());
    h.insert("traceparent", ctx.traceparent.clone());
    // The edge kept it only beside a valid `traceparent` of the same trace.
    if let Some(state) = client.get("tracestate") {
        h.insert("tracestate", state.clone());
    }
    if ctx.trusted_peer
        && let Some(xff) = client.get("x-forwarded-for")
    {
        h.insert("x-forwarded-for", xff.clone());
    }
    set_forwarded(
        &mut h,
        ctx.peer,
        ctx.trusted_peer,
        ctx.proto,
        client.get(HOST).cloned(),
    );
    if let Some(auth) = client.get(AUTHORIZATION)
        && !ctx
            .provider
            .as_ref()
            .is_some_and(|p| p.scrub().0.contains(&AUTHORIZATION))
    {
        h.insert(AUTHORIZATION, auth.clone());
    }
    if let Some(identity) = &ctx.identity {
        for (name, value) in identity.headers() {
            h.insert(name.clone(), value.clone());
        }
    }
    h
}
