//! The admin listener: `/health`, `/ready`, `/routes`.
//!
//! A separate listener (never reachable through `server.listen`). With `admin.token`
//! set, every endpoint wants `Authorization: Bearer <token>` (compared in constant time).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

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
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    let request_id = format!("{:032x}", fastrand::u128(..));
    let body = json!({
        "type": format!("urn:portico:problem:{}", code.to_ascii_lowercase().replace('_', "-")),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
        "request_id": request_id,
    });
    let mut res = (status, body.to_string()).into_response();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert("x-request-id", v);
    }
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
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
    if let Some(token) = &state.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
            let mut res = problem(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "a valid admin token is required",
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
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let snapshot = state.gateway.snapshot();
    match snapshot.table.values().iter().find(|e| *e.id == *id) {
        None => problem(
            StatusCode::NOT_FOUND,
            "ROUTE_NOT_FOUND",
            "no route has this id",
        ),
        Some(entry) => match &entry.shadow {
            None => problem(
                StatusCode::NOT_FOUND,
                "ROUTE_NOT_FOUND",
                "this route has no shadow",
            ),
            Some(s) => axum::Json(s.stats.json()).into_response(),
        },
    }
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
            });
            if let crate::config::Handler::Split(s) = &r.handler {
                route["split"] = s
                    .targets
                    .iter()
                    .map(|t| json!({"backend": config.backends[t.backend.0].name, "weight": t.weight}))
                    .collect();
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

async fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "ROUTE_NOT_FOUND",
        "no admin endpoint at this path",
    )
}
