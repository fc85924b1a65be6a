//! `GET /topology` and `GET /config`: what the live configuration is, as data.
//!
//! The topology is a graph of teams → routes → backends. Each route → backend edge is one
//! call the route may make (a proxy, a split target with its weight, a shadow copy, an
//! aggregate call, a GraphQL field), with what protects it (its effective timeout, the
//! backend's breaker, retries, bulkhead) and the backend's live state (breaker, health,
//! recent error rate and latency). `unprotected` lists the edges without a breaker: the
//! question a platform team audits first.

use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{Config, Handler, Route};
use crate::server::Snapshot;

/// The graph of the snapshot's configuration with live backend state.
pub(super) fn topology(snapshot: &Snapshot) -> Value {
    let config = &snapshot.config;
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    let mut unprotected = Vec::new();
    for team in &config.teams {
        nodes.push(json!({
            "id": format!("team:{}", team.name), "kind": "team", "name": team.name,
            "file": team.file, "prefix": team.prefix,
        }));
    }
    for b in &config.backends {
        let live = snapshot.upstreams.get(&b.name).map(|u| u.status());
        let (breaker, health, error_rate, p99, in_flight) = match &live {
            Some(s) => live_numbers(s),
            None => ("closed", "healthy", 0.0, 0.0, 0),
        };
        nodes.push(json!({
            "id": format!("backend:{}", b.name), "kind": "backend", "name": b.name,
            "instances": b.instances.len(),
            "timeout_ms": ms(b.timeout),
            "breaker": breaker, "health": health, "in_flight": in_flight,
            "error_rate": error_rate, "latency_p99_ms": p99,
            "protection": {
                "breaker": b.breaker.is_some(), "retry": b.retry.is_some(),
                "bulkhead": b.max_concurrency, "health_checks": b.health.is_some(),
                "outlier_ejection": b.outlier.is_some(), "hedge": b.hedge.is_some(),
            },
        }));
    }
    for r in &config.routes {
        let team = &config.teams[r.team.0].name;
        let route_id = format!("route:{}", r.id);
        nodes.push(json!({
            "id": route_id, "kind": "route", "name": r.id, "team": team,
            "path": r.pattern.as_str(), "handler": r.handler.kind(),
            "methods": r.methods.as_ref().map(|ms| ms.iter().map(ToString::to_string).collect::<Vec<_>>()),
            "timeout_ms": r.timeout.map(ms), "cache": r.cache.is_some(),
        }));
        edges.push(json!({"from": format!("team:{team}"), "to": route_id, "kind": "owns"}));
        for call in calls(r) {
            let b = &config.backends[call.backend];
            let deadline = [
                Some(b.timeout),
                call.timeout,
                r.timeout,
                Some(config.server.request_timeout),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(b.timeout);
            let live = snapshot.upstreams.get(&b.name).map(|u| u.status());
            let (breaker, health, error_rate, p99, _) = match &live {
                Some(s) => live_numbers(s),
                None => ("closed", "healthy", 0.0, 0.0, 0),
            };
            let mut edge = json!({
                "from": route_id, "to": format!("backend:{}", b.name), "kind": call.kind,
                "timeout_ms": ms(deadline),
                "protection": {"breaker": b.breaker.is_some(), "retry": b.retry.is_some(), "bulkhead": b.max_concurrency.is_some()},
                "breaker": breaker, "health": health, "error_rate": error_rate, "latency_p99_ms": p99,
            });
            if !call.label.is_empty() {
                edge["label"] = json!(call.label);
            }
            if let Some(w) = call.weight {
                edge["weight"] = json!(w);
            }
            if b.breaker.is_none() {
                unprotected.push(json!({
                    "route": r.id, "backend": b.name, "kind": call.kind,
                    "label": (!call.label.is_empty()).then_some(&call.label),
                    "missing": ["breaker"],
                }));
            }
            edges.push(edge);
        }
    }
    json!({
        "config_hash": config.hash,
        "nodes": nodes,
        "edges": edges,
        "unprotected": unprotected,
    })
}

/// One call a route may make.
struct Call {
    kind: &'static str,
    backend: usize,
    label: String,
    weight: Option<u32>,
    timeout: Option<Duration>,
}

fn calls(r: &Route) -> Vec<Call> {
    let mut out = Vec::new();
    match &r.handler {
        Handler::Proxy(p) => out.push(Call {
            kind: "proxy",
            backend: p.backend.0,
            label: String::new(),
            weight: None,
            timeout: None,
        }),
        Handler::Static(_) => {}
        Handler::Split(s) => out.extend(s.targets.iter().map(|t| Call {
            kind: "split",
            backend: t.backend.0,
            label: String::new(),
            weight: Some(t.weight),
            timeout: None,
        })),
        Handler::Extension(plan) => out.extend(plan.calls().into_iter().map(|c| Call {
            kind: plan.kind(),
            backend: c.backend.0,
            label: c.label,
            weight: None,
            timeout: c.timeout,
        })),
    }
    if let Some(s) = &r.shadow {
        out.push(Call {
            kind: "shadow",
            backend: s.backend.0,
            label: String::new(),
            weight: None,
            timeout: None,
        });
    }
    out
}

/// Breaker (closed unless no instance takes requests), health (healthy while one
/// instance is), error rate (weighted by requests), worst p99, in flight.
fn live_numbers(
    s: &crate::upstream::BackendStatus,
) -> (&'static str, &'static str, f64, f64, usize) {
    let breaker = s.breaker();
    let health = if s.instances.iter().any(|i| i.health == "healthy") {
        "healthy"
    } else {
        "unhealthy"
    };
    let requests: u64 = s.instances.iter().map(|i| i.recent.requests).sum();
    let errors: f64 = s
        .instances
        .iter()
        .map(|i| i.recent.error_rate * i.recent.requests as f64)
        .sum();
    let rate = if requests == 0 {
        0.0
    } else {
        (errors / requests as f64 * 1000.0).round() / 1000.0
    };
    let p99 = s
        .instances
        .iter()
        .map(|i| i.recent.p99_ms)
        .fold(0.0, f64::max);
    (breaker.as_str(), health, rate, p99, s.in_flight)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Parts of key names whose values are secrets wherever they appear in the files
/// (`secret`, `client_secret`, `token`, `sha256`, `password`, `pem`, `api_key`, ...).
const SECRET_KEYS: [&str; 7] = [
    "secret",
    "token",
    "sha256",
    "password",
    "passwd",
    "pem",
    "credential",
];

/// Whether a key names a secret: one of [`SECRET_KEYS`] inside it, or an API key
/// (`api_key`, `x_api_key`, `apikey`; not the `api_keys` provider block).
fn secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|s| key.contains(s))
        || key.ends_with("api_key")
        || key.contains("apikey")
}

/// The active configuration as loaded, secrets redacted, with its hash.
pub(super) fn config(config: &Config, reloads: &crate::server::ReloadStats) -> Value {
    use std::sync::atomic::Ordering;
    let mut gateway = serde_json::to_value(&config.raw.gateway).unwrap_or(Value::Null);
    redact(&mut gateway);
    let mut routes = serde_json::Map::new();
    for (name, file) in &config.raw.routes {
        let mut v = serde_json::to_value(file).unwrap_or(Value::Null);
        redact(&mut v);
        routes.insert(name.clone(), v);
    }
    let last_errors = reloads
        .last_errors
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    json!({
        "hash": config.hash,
        "reloads": {
            "succeeded": reloads.succeeded.load(Ordering::Relaxed),
            "failed": reloads.failed.load(Ordering::Relaxed),
            "last_errors": last_errors,
        },
        "gateway": gateway,
        "routes": routes,
    })
}

fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if secret_key(k) && !child.is_null() {
                    *child = json!("<redacted>");
                } else {
                    redact(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(s) => {
            if let Some(clean) = redact_url(s) {
                *s = clean;
            }
        }
        _ => {}
    }
}

/// A URL with credentials (`user:pass@`) or a query keeps neither.
fn redact_url(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    if !scheme
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '+')
    {
        return None;
    }
    let (before_query, query) = match rest.split_once('?') {
        Some((b, _)) => (b, true),
        None => (rest, false),
    };
    let (authority, path) =
        before_query.split_at(before_query.find('/').unwrap_or(before_query.len()));
    let userinfo = authority.rsplit_once('@');
    if userinfo.is_none() && !query {
        return None;
    }
    let host = userinfo.map_or(authority, |(_, h)| h);
    let mut out = format!("{scheme}://");
    if userinfo.is_some() {
        out.push_str("<redacted>@");
    }
    out.push_str(host);
    out.push_str(path);
    if query {
        out.push_str("?<redacted>");
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let mut v = json!({
            "admin": {"token": "t0p"},
            "options": {"client_secret": "cs1", "Upstream_API_Key": "ak1"},
            "jwks": "https://user:pw1@id.example/keys?sig=qs1",
            "auth": {"a": {"jwt": {"keys": [{"kid": "k", "secret": "s3cret"}]}},
                     "b": {"api_keys": {"keys": [{"id": "acme", "sha256": "abcd"}]}}},
            "other": {"url": "http://x"},
        });
        redact(&mut v);
        let text = v.to_string();
        for secret in ["t0p", "s3cret", "abcd", "cs1", "ak1", "pw1", "qs1"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("acme") && text.contains("http://x"));
        assert!(
            text.contains("https://<redacted>@id.example/keys?<redacted>"),
            "{text}"
        );
    }
}
