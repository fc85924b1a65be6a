//! The admin listener: `/health`, `/ready`, `/metrics`, `/routes`, `/backends`, `/topology`, `/config`,
//! `/cache`, `POST /cache/purge`, `POST /reload`.
//!
//! A separate listener (never reachable through `server.listen`). With `admin.token`
//! set, every endpoint wants `Authorization: Bearer <token>` (compared in constant time).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::error::{Code, Problem};

mod metrics;
mod topology;
use crate::server::Gateway;

#[derive(Clone)]
struct AdminState {
    gateway: Arc<Gateway>,
    token: Option<Arc<str>>,
}

/// The admin router.
pub fn router(gateway: Arc<Gateway>, token: Option<String>) -> Router {
    let state = AdminState {
        gateway,
        token: token.map(Arc::from),
    };
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/routes", get(routes))
        .route("/routes/{id}/shadow", get(route_shadow))
        .route("/backends", get(backends))
        .route("/metrics", get(prometheus))
        .route("/topology", get(topology_graph))
        .route("/config", get(active_config))
        .route("/cache", get(cache_stats))
        .route("/cache/purge", post(cache_purge))
        .route("/reload", post(reload))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// A problem+json answer, made by the gateway's one error type, with the request id.
fn problem(problem: Problem, headers: &HeaderMap) -> Response {
    let request_id = crate::server::request_id(headers);
    let mut res = problem
        .into_response(request_id.to_str().unwrap_or_default())
        .map(axum::body::Body::new);
    res.headers_mut().insert("x-request-id", request_id);
    res
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Length is not secret-dependent enough to matter; compare every byte regardless.
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

async fn require_token(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    // The live config's token (a reload may rotate it); a config without an `admin`
    // block keeps the token the listener started with, so it never opens up.
    let live = state
        .gateway
        .snapshot()
        .config
        .admin
        .as_ref()
        .map(|a| a.token.clone().map(Arc::<str>::from));
    let token = live.unwrap_or_else(|| state.token.clone());
    if let Some(token) = &token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
            let mut res = problem(
                Problem::new(Code::Unauthenticated, "a valid admin token is required"),
                req.headers(),
            );
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return res;
        }
    }
    next.run(req).await
}

async fn health() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn ready(State(state): State<AdminState>) -> Response {
    if state.gateway.is_draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "draining"})),
        )
            .into_response()
    } else {
        axum::Json(json!({"status": "ready"})).into_response()
    }
}

async fn routes(State(state): State<AdminState>) -> impl IntoResponse {
    let snapshot = state.gateway.snapshot();
    let mut doc = routes_json(&snapshot.config);
    // Live migration progress: the shadow's match rate per route.
    if let Some(list) = doc["routes"].as_array_mut() {
        for route in list {
            let id = route["id"].as_str().unwrap_or_default().to_string();
            let entry = snapshot.table.values().iter().find(|e| *e.id == *id);
            if let (Some(shadow), Some(entry)) = (route.get_mut("shadow"), entry)
                && let Some(s) = &entry.shadow
            {
                shadow["match_rate"] = json!(s.stats.match_rate());
            }
        }
    }
    axum::Json(doc)
}

async fn route_shadow(
    State(state): State<AdminState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let snapshot = state.gateway.snapshot();
    match snapshot.table.values().iter().find(|e| *e.id == *id) {
        None => problem(
            Problem::new(Code::RouteNotFound, "no route has this id"),
            &headers,
        ),
        Some(entry) => match &entry.shadow {
            None => problem(
                Problem::new(Code::RouteNotFound, "this route has no shadow"),
                &headers,
            ),
            Some(s) => axum::Json(s.stats.json()).into_response(),
        },
    }
}

async fn prometheus(State(state): State<AdminState>) -> Response {
    let text = metrics::render(&state.gateway);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn topology_graph(State(state): State<AdminState>) -> impl IntoResponse {
    axum::Json(topology::topology(&state.gateway.snapshot()))
}

async fn active_config(State(state): State<AdminState>) -> impl IntoResponse {
    let snapshot = state.gateway.snapshot();
    axum::Json(topology::config(&snapshot.config, &state.gateway.reloads))
}

/// Reads the configuration directory again: 200 when the new config is live, 422 with
/// every error when it was refused (the running one keeps serving).
async fn reload(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    match state.gateway.reload().await {
        Ok(Some((snapshot, restart))) => {
            tracing::info!(target: "portico::admin", routes = snapshot.config.routes.len(), "configuration reloaded");
            axum::Json(json!({
                "status": "reloaded",
                "routes": snapshot.config.routes.len(),
                "backends": snapshot.config.backends.len(),
                "restart_required": restart,
            }))
            .into_response()
        }
        Ok(None) => problem(
            Problem::new(
                Code::RouteNotFound,
                "this gateway was not started from a config directory it can read again",
            ),
            &headers,
        ),
        Err(e) => {
            let errors: Vec<String> = e.diagnostics.iter().map(ToString::to_string).collect();
            tracing::warn!(target: "portico::admin", errors = errors.len(), "reload refused; the running configuration stays");
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(json!({ "status": "refused", "errors": errors })),
            )
                .into_response()
        }
    }
}

/// The cache's use and counters.
async fn cache_stats(State(state): State<AdminState>) -> impl IntoResponse {
    let store = state.gateway.snapshot().cache.clone();
    let (entries, bytes) = store.usage();
    let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let s = &store.stats;
    axum::Json(json!({
        "entries": entries,
        "bytes": bytes,
        "max_size": store.settings().max_size,
        "max_entry_size": store.settings().max_entry_size,
        "hits": n(&s.hits),
        "misses": n(&s.misses),
        "stored": n(&s.stored),
        "stale": n(&s.stale),
    }))
}

/// `{"route": ID}`, `{"prefix": "/path"}` or `{}` → `{"purged": N}`.
async fn cache_purge(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        route: Option<String>,
        prefix: Option<String>,
    }
    let bad = |detail: &str| problem(Problem::bad_request(detail.to_string()), &headers);
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &body
    };
    let Ok(asked) = serde_json::from_slice::<Body>(text) else {
        return bad(r#"the body must be {"route": ID}, {"prefix": "/path"} or {}"#);
    };
    let snapshot = state.gateway.snapshot();
    let which = match (asked.route, asked.prefix) {
        (Some(_), Some(_)) => return bad("give `route` or `prefix`, not both"),
        (Some(id), None) => {
            if !snapshot.table.values().iter().any(|e| *e.id == *id) {
                return problem(
                    Problem::new(Code::RouteNotFound, "no route has this id"),
                    &headers,
                );
            }
            crate::cache::Purge::Route(id)
        }
        (None, Some(prefix)) => {
            if !prefix.starts_with('/') {
                return bad("`prefix` must be a path starting with /");
            }
            crate::cache::Purge::Prefix(prefix)
        }
        (None, None) => crate::cache::Purge::All,
    };
    let purged = snapshot.cache.purge(&which);
    tracing::info!(target: "portico::admin", purged, "cache purged");
    axum::Json(json!({ "purged": purged })).into_response()
}

async fn backends(State(state): State<AdminState>) -> impl IntoResponse {
    let snapshot = state.gateway.snapshot();
    let mut list: Vec<_> = snapshot.upstreams.values().map(|u| u.status()).collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    axum::Json(json!({ "backends": list.iter().map(backend_json).collect::<Vec<_>>() }))
}

/// One backend's live state: its instances with health, breaker, in-flight count and
/// the last 10 s of error rate and latency.
pub fn backend_json(b: &crate::upstream::BackendStatus) -> serde_json::Value {
    let breaker = b.breaker();
    json!({
        "name": b.name,
        "balance": match b.balance {
            crate::config::Balance::RoundRobin => "round_robin",
            crate::config::Balance::LeastRequest => "least_request",
        },
        "in_flight": b.in_flight,
        "max_concurrency": b.max_concurrency,
        "breaker": breaker.as_str(),
        "retry_budget": b.retry_budget.map(|(requests, retries)| json!({"requests": requests, "retries": retries})),
        "instances": b.instances.iter().map(|i| json!({
            "url": i.url,
            "health": i.health,
            "breaker": i.breaker.as_str(),
            "in_flight": i.in_flight,
            "requests": i.recent.requests,
            "error_rate": (i.recent.error_rate * 1000.0).round() / 1000.0,
            "latency_ms": {"mean": (i.recent.mean_ms * 100.0).round() / 100.0, "p99": i.recent.p99_ms},
        })).collect::<Vec<_>>(),
    })
}

/// The route table as JSON: id, team, methods, path, handler kind, backends.
pub fn routes_json(config: &crate::config::Config) -> serde_json::Value {
    let list: Vec<_> = config
        .routes
        .iter()
        .map(|r| {
            let backends: Vec<&str> =
                r.handler.backends().iter().map(|b| config.backends[b.0].name.as_str()).collect();
            let methods: Vec<String> = match &r.methods {
                Some(ms) => ms.iter().map(ToString::to_string).collect(),
                None => vec!["*".into()],
            };
            let mut route = json!({
                "id": r.id,
                "team": config.teams[r.team.0].name,
                "methods": methods,
                "path": r.pattern.as_str(),
                "handler": r.handler.kind(),
                "backends": backends,
                "origin": r.origin,
                "auth": match r.auth {
                    crate::config::RouteAuth::Provider(id) => config.auth[id.0].name.as_str(),
                    crate::config::RouteAuth::Public => "none",
                    crate::config::RouteAuth::Unset => "unset",
                },
                "rate_limits": r.rate_limits.iter().map(|l| json!({
                    "key": l.key.to_string(), "count": l.count, "per_seconds": l.per.as_secs_f64(), "burst": l.burst,
                })).collect::<Vec<_>>(),
            });
            if let Some(req) = &r.require {
                route["require"] = json!({
                    "scopes": req.scopes, "roles": req.roles,
                    "claims": req.claims.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                });
            }
            if let crate::config::Handler::Split(s) = &r.handler {
                route["split"] = s
                    .targets
                    .iter()
                    .map(|t| json!({"backend": config.backends[t.backend.0].name, "weight": t.weight}))
                    .collect();
            }
            if let Some(c) = &r.cache {
                route["cache"] = json!({
                    "ttl_seconds": c.ttl.as_secs_f64(),
                    "scope": if c.private { "private" } else { "public" },
                    "vary": c.vary.iter().map(|h| h.as_str()).collect::<Vec<_>>(),
                    "stale_while_revalidate_seconds": c.stale_while_revalidate.as_secs_f64(),
                    "stale_if_error_seconds": c.stale_if_error.as_secs_f64(),
                });
            }
            if let Some(s) = &r.shadow {
                route["shadow"] = json!({
                    "backend": config.backends[s.backend.0].name,
                    "percent": s.share * 100.0,
                    "compare": s.compare.is_some(),
                });
            }
            route
        })
        .collect();
    json!({ "routes": list })
}

async fn not_found(headers: HeaderMap) -> Response {
    problem(
        Problem::new(Code::RouteNotFound, "no admin endpoint at this path"),
        &headers,
    )
}
