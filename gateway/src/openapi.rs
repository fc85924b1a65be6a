//! OpenAPI 3.1 documents, one per team, generated from its route file as resolved:
//! paths (the gateway's, prefix included), methods, path parameters, the auth the route
//! wants, and the problem responses the gateway itself can give for it (401, 403, 413,
//! 429, 502, 503, 504), besides the handler's own answer.
//!
//! `portico openapi --config DIR` writes them; a file with `openapi: true` also serves
//! its document at `<prefix>/openapi.json`. The admin API's document is hand-written
//! (`openapi/admin.yaml`, embedded as [`ADMIN`]).

use serde_json::{Map, Value, json};

use crate::config::{AuthKind, Config, Handler, Route, RouteAuth, TeamId};

/// The admin API's document.
pub const ADMIN: &str = include_str!("../../openapi/admin.yaml");

/// The document of `team`'s routes.
pub fn team_document(config: &Config, team: TeamId) -> Value {
    let t = &config.teams[team.0];
    let mut paths = Map::new();
    let mut schemes = Map::new();
    let routes: Vec<&Route> = config.routes.iter().filter(|r| r.team == team).collect();
    for r in &routes {
        let (path, params) = openapi_path(r.pattern.as_str());
        let methods: Vec<String> = match &r.methods {
            Some(ms) => ms.iter().map(|m| m.as_str().to_ascii_lowercase()).collect(),
            None => ["get", "post", "put", "patch", "delete"]
                .iter()
                .map(|m| m.to_string())
                .collect(),
        };
        // Two routes may share a path with different methods.
        let mut entry = match paths.remove(&path) {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        for m in &methods {
            // HEAD is implied by GET; methods OpenAPI has no key for are left out.
            let implied = m == "head" && methods.iter().any(|g| g == "get");
            if implied || !OPERATIONS.contains(&m.as_str()) {
                continue;
            }
            let operation_id = if methods.len() == 1 {
                r.id.clone()
            } else {
                format!("{}-{m}", r.id)
            };
            entry.insert(
                m.clone(),
                operation(config, r, operation_id, &params, m, &mut schemes),
            );
        }
        paths.insert(path, Value::Object(entry));
    }
    let mut components = json!({
        "schemas": { "Problem": problem_schema() },
        "responses": problem_responses(),
    });
    if !schemes.is_empty() {
        components["securitySchemes"] = Value::Object(schemes);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": format!("{} API", t.name),
            "version": "1.0.0",
            "description": format!(
                "The routes of team `{}` (prefix `{}`), as served by Portico. Generated from the team's route file: do not edit.",
                t.name, t.prefix
            ),
        },
        "paths": paths,
        "components": components,
    })
}

/// The methods a path item may have operations for.
const OPERATIONS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `/web/orders/{id}` stays; `{*rest}` becomes `{rest}`. With the parameters.
fn openapi_path(pattern: &str) -> (String, Vec<(String, bool)>) {
    let mut params = Vec::new();
    let path = pattern
        .split('/')
        .map(|seg| {
            if let Some(name) = seg.strip_prefix("{*").and_then(|s| s.strip_suffix('}')) {
                params.push((name.to_string(), true));
                format!("{{{name}}}")
            } else if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                params.push((name.to_string(), false));
                seg.to_string()
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    (if path.is_empty() { "/".into() } else { path }, params)
}

fn operation(
    config: &Config,
    r: &Route,
    operation_id: String,
    params: &[(String, bool)],
    method: &str,
    schemes: &mut Map<String, Value>,
) -> Value {
    let backends: Vec<&str> = r
        .handler
        .backends()
        .iter()
        .map(|b| config.backends[b.0].name.as_str())
        .collect();
    // Backend names are the system's inside: not for a published document.
    let summary = match &r.handler {
        Handler::Static(_) => "a fixed answer from the gateway",
        Handler::Proxy(_) | Handler::Split(_) => "passed to a backend",
        Handler::Extension(plan) if plan.kind() == "aggregate" => {
            "several backend calls, one answer"
        }
        Handler::Extension(plan) if plan.kind() == "graphql" => "GraphQL over HTTP",
        Handler::Extension(_) => "answered by a BFF module",
    };
    let mut op = json!({
        "operationId": operation_id,
        "summary": summary,
        "responses": {},
    });
    if !params.is_empty() {
        op["parameters"] = params
            .iter()
            .map(|(name, rest)| {
                let mut p = json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}});
                if *rest {
                    p["description"] = json!("the rest of the path (may contain `/`, may be empty)");
                }
                p
            })
            .collect();
    }
    let responses = op["responses"].as_object_mut().expect("object");
    match &r.handler {
        Handler::Static(s) => {
            let body: Value = serde_json::from_slice(&s.body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&s.body).into()));
            let media = s
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("text/plain")
                .to_string();
            responses.insert(
                s.status.as_u16().to_string(),
                json!({"description": "the configured answer", "content": {media: {"example": body}}}),
            );
        }
        Handler::Extension(plan) if plan.kind() == "aggregate" => {
            responses.insert(
                "200".into(),
                json!({
                    "description": "one JSON object with a member per call; `Portico-Partial` and `_errors` when optional calls failed",
                    "headers": {"Portico-Partial": {"description": "the failed calls, comma-separated", "schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }),
            );
        }
        Handler::Extension(plan) if plan.kind() == "graphql" => {
            responses.insert(
                "200".into(),
                json!({"description": "a GraphQL response", "content": {"application/graphql-response+json": {"schema": {"type": "object"}}, "application/json": {"schema": {"type": "object"}}}}),
            );
        }
        _ => {
            responses.insert(
                "default".into(),
                json!({"description": "the backend's answer, passed through"}),
            );
        }
    }
    // The problem answers the gateway itself may give for this route.
    let mut problems: Vec<(&str, &str)> = Vec::new();
    if let RouteAuth::Provider(p) = r.auth {
        let provider = &config.auth[p.0];
        problems.push(("401", "Unauthenticated"));
        if r.require.is_some() {
            problems.push(("403", "Forbidden"));
        }
        let scheme = match &provider.kind {
            AuthKind::Jwt(_) => json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}),
            AuthKind::ApiKeys(a) => {
                json!({"type": "apiKey", "in": "header", "name": a.header.as_str()})
            }
        };
        schemes.insert(provider.name.clone(), scheme);
        let scopes: Vec<&String> = r.require.iter().flat_map(|q| &q.scopes).collect();
        op["security"] = json!([{ provider.name.clone(): scopes }]);
    }
    if matches!(method, "post" | "put" | "patch") {
        problems.push(("413", "PayloadTooLarge"));
    }
    if !r.rate_limits.is_empty() {
        problems.push(("429", "RateLimited"));
    }
    if !backends.is_empty() {
        problems.push(("502", "UpstreamUnavailable"));
        let guarded = r.handler.backends().iter().any(|b| {
            let b = &config.backends[b.0];
            b.breaker.is_some() || b.max_concurrency.is_some() || b.fault.is_some()
        });
        if guarded {
            problems.push(("503", "Unavailable"));
        }
        problems.push(("504", "Timeout"));
    }
    for (code, name) in problems {
        op["responses"][code] = json!({"$ref": format!("#/components/responses/{name}")});
    }
    op
}

fn problem_schema() -> Value {
    json!({
        "type": "object",
        "description": "RFC 9457 problem details, as every answer the gateway makes itself",
        "required": ["type", "title", "status", "detail", "code", "request_id"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string", "description": "stable error code (docs/errors.md)"},
            "request_id": {"type": "string"},
        },
    })
}

fn problem_responses() -> Value {
    let one = |description: &str, codes: &str| {
        json!({
            "description": format!("{description} (code {codes})"),
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        })
    };
    json!({
        "Unauthenticated": one("missing or invalid credentials", "UNAUTHENTICATED"),
        "Forbidden": one("the credentials do not grant access", "FORBIDDEN"),
        "PayloadTooLarge": one("the body is larger than allowed", "PAYLOAD_TOO_LARGE"),
        "RateLimited": one("a rate limit refused the request; see Retry-After", "RATE_LIMITED"),
        "UpstreamUnavailable": one("the backend could not be reached", "UPSTREAM_UNAVAILABLE"),
        "Unavailable": one("the backend's breaker is open or its bulkhead full; see Retry-After", "CIRCUIT_OPEN, BULKHEAD_FULL, FAULT_INJECTED"),
        "Timeout": one("no answer within the deadline", "GATEWAY_TIMEOUT, UPSTREAM_TIMEOUT"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_alls_become_parameters() {
        assert_eq!(
            openapi_path("/{*rest}"),
            ("/{rest}".into(), vec![("rest".into(), true)])
        );
        assert_eq!(
            openapi_path("/web/orders/{id}"),
            ("/web/orders/{id}".into(), vec![("id".into(), false)])
        );
    }
}
