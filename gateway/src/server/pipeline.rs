//! The request path, written down once.
//!
//! ```text
//!  client
//!    │  listener: TCP (+ TLS, ALPN h2/http1.1), HTTP/1.1 or HTTP/2 (server::listener)
//!    ▼
//!  ┌─ edge ─────────────────────────────────────────────────────────────────────┐
//!  │ snapshot taken (one config generation for the whole request)               │
//!  │ request id (kept if sane, else new) · trace context (continued or new;     │
//!  │ with an OTLP endpoint the request is a span, each backend attempt another) │
//!  │ head size → 431 · Content-Length vs max_body → 413 · framing → 400          │
//!  │ (HTTP/1 heads with ambiguous framing were already swapped by framing.rs)   │
//!  │ ┌─ router ───────────────────────────────────────────────────────────────┐ │
//!  │ │ path normalised (.., %2e, //) → per-method table → 404 / 405             │ │
//!  │ │ ┌─ route pipeline ───────────────────────────────────────────────────┐ │ │
//!  │ │ │ CORS preflight (file with `cors`) → answered here, 204 / 403         │ │ │
//!  │ │ │ deadline = min(request_timeout, route timeout) → 504 GATEWAY_TIMEOUT │ │ │
//!  │ │ │ rate limits keyed by the request (ip, header, route) → 429           │ │ │
//!  │ │ │ auth: the route's provider → identity, or 401 + WWW-Authenticate     │ │ │
//!  │ │ │ require (scopes, roles, claims) → 403 FORBIDDEN                      │ │ │
//!  │ │ │ rate limits keyed by the identity (subject, api_key, claim) → 429    │ │ │
//!  │ │ │ cache (GET/HEAD of a cached route): fresh → answered here; stale →   │ │ │
//!  │ │ │   served while one refresh runs; miss → one call per key, stored when │ │ │
//!  │ │ │   RFC 9111 allows; failure → stale within stale_if_error (cache/)    │ │ │
//!  │ │ │ ┌─ handler ───────────────────────────────────────────────────────┐ │ │ │
//!  │ │ │ │ static: fixed response                                          │ │ │ │
//!  │ │ │ │ proxy:  headers rewritten (identity headers: client copies out, │ │ │ │
//!  │ │ │ │         the identity's in), body streamed, max_body counted     │ │ │ │
//!  │ │ │ │   └─ backend client: timeout → round-robin → keep-alive pool    │ │ │ │
//!  │ │ │ └─────────────────────────────────────────────────────────────────┘ │ │ │
//!  │ │ └─────────────────────────────────────────────────────────────────────┘ │ │
//!  │ └─────────────────────────────────────────────────────────────────────────┘ │
//!  │ response: X-Request-Id echoed · CORS for an allowed Origin · nosniff (+HSTS │
//!  │ under TLS) on gateway-made answers · access log line                         │
//!  └──────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Errors anywhere become a [`Problem`] and leave as problem+json with the request id.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{CONTENT_LENGTH, HeaderName, HeaderValue, TRANSFER_ENCODING};
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::state::{Edge, Gateway, RouteEntry, RouteHandler, Snapshot};
use super::{edge, framing};
use crate::auth::Identity;
use crate::body::{ClientBody, ResponseBody};
use crate::cache::{self, CACHE_STATUS};
use crate::error::Problem;
use crate::proxy::{self, client_ip, is_trusted};
use crate::rate_limit::{Report, Subject};
use crate::routing::{Lookup, normalize};
use crate::telemetry::metrics::{CacheResult, RouteMetrics};
use crate::telemetry::trace::{Kind, SpanData, Trace};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static X_CONTENT_TYPE_OPTIONS: HeaderName = HeaderName::from_static("x-content-type-options");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// What the listener knows about the connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Where to report whether a request that asked for an upgrade got one (HTTP/1
    /// connections behind the framing guard).
    pub upgrade: Option<std::sync::Arc<framing::UpgradeSignal>>,
}

/// What the access log records about one request.
#[derive(Default)]
struct Outcome {
    route: Option<std::sync::Arc<str>>,
    team: Option<std::sync::Arc<str>>,
    backend: Option<std::sync::Arc<crate::upstream::Upstream>>,
    code: Option<&'static str>,
    /// `RateLimit-Policy` and `RateLimit` for a limited route.
    rate: Option<(HeaderValue, Option<HeaderValue>)>,
    /// CORS headers to add for an allowed origin.
    cors: Option<(std::sync::Arc<crate::config::Cors>, HeaderValue)>,
    /// The answer was made by the gateway (problem, static, preflight), not a backend.
    made_here: bool,
    /// `Cache-Status` of a cached route's answer.
    cache_status: Option<HeaderValue>,
    /// The route's counters.
    metrics: Option<Arc<RouteMetrics>>,
    /// The route's handler is the gateway's (aggregate, GraphQL, modules): its
    /// `Portico-Partial` is its own, not a backend's.
    extension: bool,
    /// The route's path template.
    path: Option<Arc<str>>,
}

/// The request's span while the request runs: recorded by [`RequestSpan::finish`], or,
/// when the request is dropped before it ends (the client went away, the drain's grace
/// ran out), recorded then with `portico.cancelled` — its attempts' spans never lose
/// their parent.
struct RequestSpan(Option<OpenSpan>);

struct OpenSpan {
    trace: Trace,
    start: Instant,
    method: http::Method,
    path: String,
    version: http::Version,
    tls: bool,
    remote_parent: Option<u64>,
}

impl OpenSpan {
    /// The span with what is known before the request is answered (OpenTelemetry
    /// HTTP server conventions, plus `portico.*`).
    fn span(&mut self, name: String) -> SpanData {
        let mut span = SpanData::new(name, Kind::Server, self.remote_parent);
        span.str("http.request.method", self.method.as_str());
        span.str("url.path", std::mem::take(&mut self.path));
        span.str("url.scheme", if self.tls { "https" } else { "http" });
        span.str(
            "network.protocol.version",
            match self.version {
                http::Version::HTTP_2 => "2",
                http::Version::HTTP_10 => "1.0",
                _ => "1.1",
            },
        );
        span
    }
}

impl RequestSpan {
    /// Records the answered request's span.
    fn finish(
        mut self,
        outcome: &Outcome,
        status: u16,
        client: std::net::IpAddr,
        request_id: &HeaderValue,
    ) {
        let Some(mut open) = self.0.take() else {
            return;
        };
        let name = match &outcome.path {
            Some(template) => format!("{} {template}", open.method),
            None => open.method.to_string(),
        };
        let mut span = open.span(name);
        span.str("client.address", client.to_string());
        span.int("http.response.status_code", i64::from(status));
        if let Some(template) = &outcome.path {
            span.str("http.route", template.as_ref());
        }
        if let Some(route) = &outcome.route {
            span.str("portico.route", route.as_ref());
        }
        if let Some(team) = &outcome.team {
            span.str("portico.team", team.as_ref());
        }
        if let Some(backend) = &outcome.backend {
            span.str("portico.backend", backend.name());
        }
        if let Ok(id) = request_id.to_str() {
            span.str("portico.request_id", id);
        }
        // A 4xx is the caller's doing, not a failure of this server (HTTP conventions).
        if status >= 500 {
            span.str(
                "error.type",
                outcome
                    .code
                    .map_or_else(|| status.to_string(), str::to_string),
            );
            span.error = Some(outcome.code.unwrap_or("server error").to_string());
        }
        open.trace.finish(span, open.start.elapsed());
    }
}

impl Drop for RequestSpan {
    fn drop(&mut self) {
        if let Some(mut open) = self.0.take() {
            let mut span = open.span(open.method.to_string());
            span.flag("portico.cancelled", true);
            span.error = Some("the request ended before its answer".into());
            open.trace.finish(span, open.start.elapsed());
        }
    }
}

/// Answers one request. Never fails: every error becomes a problem+json response.
pub async fn handle(
    gateway: &Gateway,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let start = Instant::now();
    let request_id = edge::request_id(req.headers());
    let asks_upgrade = framing::asks_upgrade(req.method(), req.version(), req.headers());
    let res = handle_inner(gateway, &conn, req, request_id, start).await;
    if asks_upgrade && let Some(signal) = &conn.upgrade {
        let upgraded = res.status() == http::StatusCode::SWITCHING_PROTOCOLS;
        signal.decide(upgraded);
    }
    res
}

async fn handle_inner(
    gateway: &Gateway,
    conn: &ConnInfo,
    req: Request<Incoming>,
    request_id: HeaderValue,
    start: Instant,
) -> Response<ResponseBody> {
    if let Some(reason) = framing::refused(req.uri().path()) {
        let problem = if reason.too_large() {
            Problem::new(crate::error::Code::HeadersTooLarge, reason.detail())
        } else {
            Problem::bad_request(reason.detail())
        };
        tracing::info!(target: "portico::access", code = problem.code().as_str(), reason = reason.detail(), peer = %conn.peer, "refused request head");
        let mut res = problem.into_response(request_id.to_str().unwrap_or_default());
        res.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        return res;
    }
    let snapshot = gateway.snapshot();
    // The gateway's own span: recorded when exported, else only the parent id its
    // backends see.
    let (span, remote_parent) = edge::trace_context(req.headers(), snapshot.edge.trace_sampling);
    let traceparent = span.traceparent();
    let mut req = req;
    if remote_parent.is_none() {
        // Another trace's vendor data: it goes only beside its own `traceparent`.
        req.headers_mut().remove(&TRACESTATE);
    }
    let trace = Trace::new(span, snapshot.tracer.as_ref());
    let request_span = RequestSpan(trace.clone().map(|trace| OpenSpan {
        trace,
        start,
        method: req.method().clone(),
        path: req.uri().path().to_string(),
        version: req.version(),
        tls: conn.tls,
        remote_parent,
    }));
    let method = req.method().clone();
    let log_path = snapshot
        .edge
        .access_log
        .then(|| req.uri().path().to_string());
    let client = client_ip(
        req.headers(),
        conn.peer.ip(),
        &snapshot.edge.trusted_proxies,
    );
    let mut outcome = Outcome::default();

    let result = route(
        &snapshot,
        conn,
        client,
        req,
        &request_id,
        traceparent,
        trace.clone(),
        start,
        &mut outcome,
    )
    .await;
    let mut res = match result {
        Ok(res) => res,
        Err(problem) => {
            outcome.code = Some(problem.code().as_str());
            outcome.made_here = true;
            problem.into_response(request_id.to_str().unwrap_or_default())
        }
    };
    if outcome.made_here {
        let h = res.headers_mut();
        h.insert(
            X_CONTENT_TYPE_OPTIONS.clone(),
            HeaderValue::from_static("nosniff"),
        );
        if conn.tls {
            h.insert(
                http::header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000"),
            );
        }
    }
    if let Some((cors, origin)) = outcome.cors.take() {
        crate::cors::decorate(&cors, origin, res.headers_mut());
    }
    if let Some(path) = log_path {
        tracing::info!(
            target: "portico::access",
            method = %method,
            path = %path,
            route = outcome.route.as_deref().unwrap_or("-"),
            team = outcome.team.as_deref().unwrap_or("-"),
            backend = outcome.backend.as_ref().map_or("-", |u| u.name()),
            status = res.status().as_u16(),
            code = outcome.code.unwrap_or("-"),
            duration_ms = start.elapsed().as_secs_f64() * 1000.0,
            request_id = request_id.to_str().unwrap_or_default(),
            trace_id = std::str::from_utf8(&span.trace_hex()).unwrap_or_default(),
            span_id = std::str::from_utf8(&span.span_hex()).unwrap_or_default(),
            client_ip = %client,
            "request"
        );
    }
    request_span.finish(&outcome, res.status().as_u16(), client, &request_id);
    let counters = outcome.metrics.as_deref().unwrap_or(&snapshot.unmatched);
    counters.answered(&method, res.status().as_u16(), start.elapsed());
    if outcome.extension
        && let Some(failed) = res.headers().get(&cache::PARTIAL)
        && let Ok(calls) = failed.to_str()
    {
        counters.partial(calls);
    }
    if let Some(status) = outcome.cache_status {
        counters.cache(cache_result(status.as_bytes()));
        res.headers_mut().append(CACHE_STATUS.clone(), status);
    }
    if let Some((policy, remaining)) = outcome.rate {
        res.headers_mut().insert(RATELIMIT_POLICY.clone(), policy);
        if let Some(r) = remaining {
            res.headers_mut().insert(RATELIMIT.clone(), r);
        }
    }
    res.headers_mut().insert(X_REQUEST_ID.clone(), request_id);
    res
}

#[allow(clippy::too_many_arguments)]
async fn route(
    snapshot: &Arc<Snapshot>,
    conn: &ConnInfo,
    client: std::net::IpAddr,
    req: Request<Incoming>,
    request_id: &HeaderValue,
    traceparent: HeaderValue,
    trace: Option<Trace>,
    start: Instant,
    outcome: &mut Outcome,
) -> Result<Response<ResponseBody>, Problem> {
    let edge = &snapshot.edge;
    // Edge limits.
    let uri_len = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    if edge::head_size(uri_len, req.headers()) > edge.max_header_bytes {
        return Err(Problem::headers_too_large(edge.max_header_bytes));
    }
    let headers = req.headers();
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next() {
        if lengths.any(|other| other != first) {
            return Err(Problem::bad_request("conflicting Content-Length headers"));
        }
        if headers.contains_key(TRANSFER_ENCODING) {
            return Err(Problem::bad_request(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        match first
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            Some(n) if n > edge.max_body => return Err(Problem::payload_too_large(edge.max_body)),
            Some(_) => {}
            None => return Err(Problem::bad_request("invalid Content-Length")),
        }
    }

    // Router. A CORS preflight is routed by the method it asks about.
    // The path is kept apart from the request, which moves on to the handler (a clone of
    // the URI shares its bytes).
    let uri = req.uri().clone();
    let path =
        normalize(uri.path()).ok_or_else(|| Problem::bad_request("malformed request path"))?;
    if let Some(asked) = crate::cors::preflight_method(req.method(), req.headers())
        && let Lookup::Found { value, .. } = snapshot.table.lookup(&asked, &path)
        && let Some(cors) = &value.cors
    {
        outcome.route = Some(value.id.clone());
        outcome.team = Some(value.team.clone());
        outcome.made_here = true;
        return crate::cors::answer_preflight(
            cors,
            value.methods.as_deref(),
            &asked,
            req.headers(),
        );
    }
    let (entry, params) = match snapshot.table.lookup(req.method(), &path) {
        Lookup::Found { value, params } => (value, params),
        Lookup::MethodNotAllowed { allow } => return Err(Problem::method_not_allowed(allow)),
        Lookup::NotFound => return Err(Problem::route_not_found()),
    };
    outcome.route = Some(entry.id.clone());
    outcome.team = Some(entry.team.clone());
    if trace.is_some() {
        outcome.path = Some(entry.path.clone());
    }
    outcome.metrics = Some(entry.metrics.clone());
    outcome.extension = matches!(entry.handler, RouteHandler::Extension(_));
    if entry.cache.is_some() {
        // Until the cache stage decides otherwise (a refusal before it stays "bypass").
        outcome.cache_status = Some(HeaderValue::from_static("portico; fwd=bypass"));
    }
    if let Some(cors) = &entry.cors
        && let Some(origin) = crate::cors::allowed_origin(cors, req.headers())
    {
        outcome.cors = Some((cors.clone(), origin));
    }

    // Route pipeline: the deadline covers auth too (a JWKS refetch may wait).
    let budget = entry
        .timeout
        .map_or(edge.request_timeout, |t| t.min(edge.request_timeout));
    let deadline = start + budget;

    // Rate limits keyed by the request (ip, header, route), then auth, then the limits
    // keyed by the identity. A request must pass all of its route's limits.
    let mut report = Report::default();
    let limited = |report: &Report, outcome: &mut Outcome| {
        if let Some(limits) = &entry.limits {
            outcome.rate = Some((limits.policy().clone(), limits.remaining(report)));
        }
        report.denied().map(|wait| {
            entry.metrics.rate_limited();
            Problem::rate_limited(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
        })
    };
    if let Some(limits) = &entry.limits {
        let who = Subject {
            client,
            headers: req.headers(),
            identity: None,
        };
        limits.check(who, &mut report);
        if let Some(problem) = limited(&report, outcome) {
            return Err(problem);
        }
    }
    let identity = match &entry.auth {
        None => None,
        Some(provider) => {
            let id = tokio::time::timeout_at(
                deadline,
                // Boxed, like every large branch not every request takes: the request
                // future stays small, and so do its moves (a JWKS fetch is a big future).
                Box::pin(provider.authenticate(req.headers(), req.uri().query())),
            )
            .await
            .map_err(|_| Problem::gateway_timeout())?
            .map_err(|failure| provider.problem(failure))?;
            if let Some(require) = &entry.require
                && !id.meets(require)
            {
                return Err(Problem::forbidden(
                    "the credentials do not grant access to this route",
                ));
            }
            if let Some(limits) = &entry.limits
                && limits.needs_identity()
            {
                let who = Subject {
                    client,
                    headers: req.headers(),
                    identity: Some(&id),
                };
                limits.check(who, &mut report);
                if let Some(problem) = limited(&report, outcome) {
                    return Err(problem);
                }
            }
            Some(id)
        }
    };
    let req = req.map(ClientBody::Incoming);
    let mut dispatch = Dispatch {
        snapshot,
        entry,
        conn,
        client,
        path: &path,
        params: &params,
        request_id,
        traceparent,
        trace,
        edge,
        deadline,
        identity,
        outcome,
        chosen: None,
    };
    // A BFF module's layer sees the request first, may wrap the handler, and sees the
    // handler's answer last.
    let Some(layer) = &entry.layer else {
        return dispatch.serve(req).await;
    };
    let exchange = crate::extend::Exchange {
        method: req.method().clone(),
        headers: req.headers().clone(),
        query: query_of(entry, &req).map(|q| q.into_owned()),
        request_id: request_id.to_str().unwrap_or_default().to_string(),
        deadline,
        caller: dispatch
            .identity
            .as_deref()
            .and_then(|i| i.api_key().or(i.subject()).map(str::to_string)),
    };
    layer.on_request(&exchange)?;
    let next: crate::extend::Next<'_> =
        Box::new(move |req| Box::pin(async move { dispatch.serve(req).await }));
    match layer.around(&exchange, req, next).await {
        Ok(res) => Ok(layer.on_response(exchange.clone(), res).await),
        Err(problem) => Err(problem),
    }
}

/// What a `Cache-Status` value says the cache did, for the counters.
fn cache_result(status: &[u8]) -> CacheResult {
    let has = |needle: &[u8]| status.windows(needle.len()).any(|w| w == needle);
    if has(b"stale-") {
        CacheResult::Stale
    } else if status.starts_with(b"portico; hit") || has(b"collapsed; ttl") {
        CacheResult::Hit
    } else if has(b"fwd=miss") || has(b"fwd=stale") {
        CacheResult::Miss
    } else {
        CacheResult::Bypass
    }
}

/// Methods that may change the resource (RFC 9110 §9.2.1).
fn is_unsafe(method: &http::Method) -> bool {
    !matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS | http::Method::TRACE
    )
}

/// The query string the handler gets: an API key carried in it is cut.
fn query_of<'r>(entry: &RouteEntry, req: &'r Request<ClientBody>) -> Option<Cow<'r, str>> {
    match entry.auth.as_deref().and_then(|p| p.scrub().1) {
        Some(param) => req
            .uri()
            .query()
            .and_then(|q| crate::query::strip_query_param(q, param).map(Cow::Owned)),
        None => req.uri().query().map(Cow::Borrowed),
    }
}

/// Everything the handler needs besides the request.
struct Dispatch<'a> {
    snapshot: &'a Arc<Snapshot>,
    entry: &'a RouteEntry,
    conn: &'a ConnInfo,
    client: std::net::IpAddr,
    path: &'a str,
    params: &'a matchit::Params<'a, 'a>,
    request_id: &'a HeaderValue,
    traceparent: HeaderValue,
    /// The request's recorded span (when traces are exported).
    trace: Option<Trace>,
    edge: &'a Edge,
    deadline: Instant,
    identity: Option<Arc<Identity>>,
    outcome: &'a mut Outcome,
    /// A split's target, when the cache stage chose it (it is part of the key).
    chosen: Option<&'a crate::strangler::SplitTarget>,
}

impl Dispatch<'_> {
    /// The cache, for a cached route, in front of the handler (see `crate::cache`).
    async fn serve(&mut self, req: Request<ClientBody>) -> Result<Response<ResponseBody>, Problem> {
        let entry = self.entry;
        if is_unsafe(req.method()) {
            // RFC 9111 §4.4: a successful unsafe request makes the path's entries (of any
            // route) unusable.
            if entry.cache.is_some() {
                self.outcome.cache_status = Some(HeaderValue::from_static("portico; fwd=method"));
            }
            let res = self.run(req).await;
            if res.as_ref().is_ok_and(|r| r.status().as_u16() < 400) {
                self.snapshot.cache.invalidate_path(self.path);
            }
            return res;
        }
        let Some(cached) = entry.cache.as_ref() else {
            return self.run(req).await;
        };
        // A split's target is chosen first: entries of different targets never mix.
        let choice = match &entry.handler {
            RouteHandler::Split(split) => Some(split.choose(
                req.headers(),
                self.client,
                self.conn.tls,
                self.identity.as_deref(),
            )),
            _ => None,
        };
        self.chosen = choice.as_ref().map(|c| c.target);
        let set_cookie = choice.and_then(|c| c.set_cookie);
        // Boxed: only cached routes carry the cache stage's large future.
        let mut res = Box::pin(self.cached(cached, req)).await;
        if let (Ok(res), Some(cookie)) = (&mut res, set_cookie) {
            res.headers_mut().append(http::header::SET_COOKIE, cookie);
        }
        res
    }

    async fn cached(
        &mut self,
        cached: &cache::Cached,
        mut req: Request<ClientBody>,
    ) -> Result<Response<ResponseBody>, Problem> {
        let entry = self.entry;
        let query = query_of(entry, &req).map(Cow::into_owned);
        let origin = cache::Origin {
            target: self.chosen.map(|t| t.name.as_str()),
            path: self.path,
            query: query.as_deref(),
            identity: self.identity.as_deref(),
            trusted_peer: is_trusted(self.conn.peer.ip(), &self.edge.trusted_proxies),
            tls: self.conn.tls,
        };
        let keyed = match cached.prepare(&mut req, &origin) {
            cache::Prepared::Bypass(status) => {
                self.outcome.cache_status = Some(status);
                return self.run(req).await;
            }
            cache::Prepared::Keyed(keyed) => keyed,
        };
        let stale = match cached.find(&keyed, req.headers()) {
            cache::Found::Fresh(found) => {
                self.outcome.cache_status = Some(cached.hit_status(&found, None));
                return Ok(cached.answer(&keyed, &found));
            }
            cache::Found::Revalidate(found) => {
                if let Some(flight) = cached.lead_now(&keyed) {
                    self.refresh(&req, keyed.refreshing(), flight);
                }
                let status = cached.hit_status(&found, Some("stale-while-revalidate"));
                self.outcome.cache_status = Some(status);
                return Ok(cached.answer(&keyed, &found));
            }
            cache::Found::Pass => {
                // Known not to be storable: straight on, as the client asked.
                keyed.restore_conditions(req.headers_mut());
                let headers = req.headers().clone();
                let result = self.run(req).await;
                let (result, status) = cached
                    .settle(&keyed, &headers, result, None, self.deadline)
                    .await;
                self.outcome.cache_status = Some(status);
                return result;
            }
            cache::Found::Miss(stale) => stale,
        };
        // One call per key: the others wait for it, then take its entry. (A HEAD miss
        // stores nothing, so it leads nothing.)
        let lead = if keyed.is_head() {
            Ok(None)
        } else {
            cached.lead(&keyed, self.deadline).await.map(Some)
        };
        let lead = match lead {
            Ok(lead) => lead,
            Err(problem) => {
                let (result, status) = cached.waited_too_long(&keyed, stale.as_deref(), problem);
                self.outcome.cache_status = Some(status);
                return result;
            }
        };
        let flight = match lead {
            None => None,
            Some(Some(flight)) => Some(flight),
            Some(None) => {
                if let cache::Found::Fresh(found) = cached.find(&keyed, req.headers()) {
                    self.outcome.cache_status = Some(cached.collapsed_status(&found));
                    return Ok(cached.answer(&keyed, &found));
                }
                None
            }
        };
        let headers = req.headers().clone();
        let result = self.run(req).await;
        let (result, status) = cached
            .settle(&keyed, &headers, result, stale, self.deadline)
            .await;
        drop(flight);
        self.outcome.cache_status = Some(status);
        result
    }

    /// Refreshes a cached route's entry from a task of its own (stale-while-revalidate),
    /// on the request's snapshot; `flight` keeps other refreshes of the key out.
    fn refresh(&self, req: &Request<ClientBody>, keyed: cache::Keyed, flight: cache::Flight) {
        let snapshot = self.snapshot.clone();
        let conn = self.conn.clone();
        let client = self.client;
        let path = self.path.to_string();
        let request_id = self.request_id.clone();
        let traceparent = self.traceparent.clone();
        let trace = self.trace.clone();
        let identity = self.identity.clone();
        let budget = self.entry.timeout.map_or(self.edge.request_timeout, |t| {
            t.min(self.edge.request_timeout)
        });
        let target = self.chosen.map(|t| t.name.clone());
        // The task finds this same route again (by address: the snapshot keeps it).
        let route = self.entry as *const RouteEntry as usize;
        let method = req.method().clone();
        let mut head = Request::new(ClientBody::read(bytes::Bytes::new()));
        *head.uri_mut() = req.uri().clone();
        *head.headers_mut() = req.headers().clone();
        tokio::spawn(async move {
            let Lookup::Found { value, params } = snapshot.table.lookup(&method, &path) else {
                return;
            };
            if value as *const RouteEntry as usize != route {
                return;
            }
            let Some(cached) = value.cache.as_ref() else {
                return;
            };
            let deadline = Instant::now() + budget;
            let headers = head.headers().clone();
            // The split target the entry's key names.
            let chosen = match (&value.handler, &target) {
                (RouteHandler::Split(split), Some(name)) => {
                    split.targets.iter().find(|t| t.name == *name)
                }
                _ => None,
            };
            let mut outcome = Outcome::default();
            let mut dispatch = Dispatch {
                snapshot: &snapshot,
                entry: value,
                conn: &conn,
                client,
                path: &path,
                params: &params,
                request_id: &request_id,
                traceparent,
                trace,
                edge: &snapshot.edge,
                deadline,
                identity,
                outcome: &mut outcome,
                chosen,
            };
            let result = dispatch.run(head).await;
            // The entry is what counts; the answer itself has nobody to go to.
            let _ = cached
                .settle(&keyed, &headers, result, None, deadline)
                .await;
            drop(flight);
        });
    }

    /// The handler. A split picks its target (and maybe a sticky cookie to set), then
    /// proxies.
    async fn run(&mut self, req: Request<ClientBody>) -> Result<Response<ResponseBody>, Problem> {
        enum Target<'a> {
            Extension(&'a Arc<dyn crate::extend::Handler>),
            Proxy(&'a proxy::ProxyRoute, Option<HeaderValue>),
        }
        let entry = self.entry;
        let target = match &entry.handler {
            RouteHandler::Static(s) => {
                self.outcome.made_here = true;
                let mut res = Response::new(ResponseBody::full(s.body.clone()));
                *res.status_mut() = s.status;
                *res.headers_mut() = s.headers.clone();
                return Ok(res);
            }
            RouteHandler::Extension(handler) => Target::Extension(handler),
            RouteHandler::Proxy(p) => Target::Proxy(p, None),
            RouteHandler::Split(split) => match self.chosen.take() {
                // Chosen by the cache stage, which sets the cookie itself.
                Some(target) => Target::Proxy(&target.route, None),
                None => {
                    let choice = split.choose(
                        req.headers(),
                        self.client,
                        self.conn.tls,
                        self.identity.as_deref(),
                    );
                    Target::Proxy(&choice.target.route, choice.set_cookie)
                }
            },
        };
        let ctx = proxy_context(
            entry,
            self.conn,
            &req,
            self.request_id,
            // The handler runs once per dispatch: what it needs moves on.
            std::mem::replace(&mut self.traceparent, HeaderValue::from_static("")),
            self.trace.take(),
            self.edge,
            self.deadline,
            self.identity.take(),
        );
        let (p, set_cookie) = match target {
            Target::Extension(handler) => {
                let params = self
                    .params
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let query = query_of(entry, &req).map(|q| q.into_owned());
                return handler
                    .handle(crate::extend::HandlerRequest {
                        request: req,
                        params,
                        query,
                        context: ctx,
                    })
                    .await;
            }
            Target::Proxy(p, set_cookie) => (p, set_cookie),
        };
        let target = p.target(self.path, self.params, query_of(entry, &req).as_deref());
        self.outcome.backend = Some(p.upstream.clone());
        // `forward` keeps to the deadline itself, with one timer per attempt.
        let mut res = proxy::forward(p, req, &target, ctx).await;
        if let (Ok(res), Some(cookie)) = (&mut res, set_cookie) {
            res.headers_mut().append(http::header::SET_COOKIE, cookie);
        }
        res
    }
}

#[allow(clippy::too_many_arguments)]
fn proxy_context(
    entry: &RouteEntry,
    conn: &ConnInfo,
    req: &Request<ClientBody>,
    request_id: &HeaderValue,
    traceparent: HeaderValue,
    trace: Option<Trace>,
    edge: &Edge,
    deadline: Instant,
    identity: Option<Arc<Identity>>,
) -> proxy::Context {
    proxy::Context {
        request_id: request_id.clone(),
        traceparent,
        trace,
        peer: conn.peer.ip(),
        trusted_peer: is_trusted(conn.peer.ip(), &edge.trusted_proxies),
        proto: if conn.tls { "https" } else { "http" },
        max_body: edge.max_body,
        deadline,
        shadow: entry.shadow.as_ref().and_then(|s| s.plan(req.method())),
        protected: edge.protected.clone(),
        identity,
        provider: entry.auth.clone(),
    }
}
