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

use crate::config::Handler;
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
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    let body = json!({
        "type": format!("urn:portico:problem:{}", code.to_ascii_lowercase().replace('_', "-")),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
        "request_id": "",
    });
    let mut res = (status, body.to_string()).into_response();
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
    axum::Json(routes_json(&snapshot.config))
}

/// The route table as JSON: id, team, methods, path, handler kind, backends.
pub fn routes_json(config: &crate::config::Config) -> serde_json::Value {
    let list: Vec<_> = config
        .routes
        .iter()
        .map(|r| {
            let backends: Vec<&str> = match &r.handler {
                Handler::Proxy(p) => vec![config.backends[p.backend.0].name.as_str()],
                Handler::Static(_) => vec![],
            };
            let methods: Vec<String> = match &r.methods {
                Some(ms) => ms.iter().map(ToString::to_string).collect(),
                None => vec!["*".into()],
            };
            json!({
                "id": r.id,
                "team": config.teams[r.team.0].name,
                "methods": methods,
                "path": r.pattern.as_str(),
                "handler": r.handler.kind(),
                "backends": backends,
                "origin": r.origin,
            })
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
