//! The `aggregate` handler: one client request, many backend calls, one JSON answer
//! (contract §3.3).
//!
//! At load, the block is checked — backends exist, every template names a path
//! parameter, a query/header/claim or an earlier call, the calls form no cycle — and
//! turned into a [`Plan`]. At run time ([`run`]) every call starts as soon as the calls it
//! names have answered, through its backend's client stack (breaker, retries, bulkhead…);
//! an optional call that fails gives way to its `fallback` or is left out and reported in
//! `Portico-Partial` and `_errors`; a required one fails the request. Nothing runs past
//! the route's deadline.

mod run;
mod shape;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gateway::config::BackendId;
use gateway::config::units;
use gateway::extend::{Extension, Finding, Handler, Plan, RouteInfo};
use gateway::upstream::Upstream;
use http::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::template::{BodyTemplate, Names, Template, body_template};
use shape::Shape;

/// Default cap on fan-out calls per call.
const DEFAULT_FAN_OUT: usize = 20;

/// The `aggregate` block (each call is read on its own, so errors point into it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    calls: BTreeMap<String, Value>,
}

/// One call of the block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallSpec {
    backend: String,
    path: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    timeout: Option<units::Duration>,
    #[serde(default)]
    select: Option<Vec<String>>,
    #[serde(default)]
    omit: Vec<String>,
    #[serde(default)]
    rename: BTreeMap<String, String>,
    #[serde(default)]
    extract: Option<String>,
    #[serde(default)]
    fallback: Option<Value>,
    #[serde(default)]
    fan_out: Option<usize>,
    #[serde(default)]
    batch: bool,
}

/// One checked call.
#[derive(Debug, Clone)]
struct CallPlan {
    name: String,
    backend: BackendId,
    method: Method,
    path: Template,
    body: Option<BodyTemplate>,
    required: bool,
    timeout: Option<Duration>,
    shape: Shape,
    fallback: Option<Value>,
    fan_out: usize,
    batch: bool,
    /// Indexes of the calls it waits for.
    deps: Vec<usize>,
}

/// A checked `aggregate` block.
#[derive(Debug)]
pub struct AggregatePlan {
    calls: Vec<CallPlan>,
}

/// The extension claiming `aggregate`.
#[derive(Debug, Default)]
pub struct Aggregate;

impl Extension for Aggregate {
    fn key(&self) -> &'static str {
        "aggregate"
    }

    fn resolve(&self, block: &Value, route: &RouteInfo<'_>) -> Result<Arc<dyn Plan>, Vec<Finding>> {
        let spec: Spec = crate::module::read(block).map_err(|finding| vec![finding])?;
        let mut findings = Vec::new();
        if spec.calls.is_empty() {
            findings.push(("calls".into(), "list at least one call".into()));
        }
        let names: Vec<String> = spec.calls.keys().cloned().collect();
        let mut specs = BTreeMap::new();
        for (name, value) in &spec.calls {
            match crate::module::read::<CallSpec>(value) {
                Ok(c) => {
                    specs.insert(name.clone(), c);
                }
                Err((below, message)) => {
                    let key = if below.is_empty() {
                        format!("calls.{name}")
                    } else {
                        format!("calls.{name}.{below}")
                    };
                    findings.push((key, message));
                }
            }
        }
        let template_names = Names {
            params: &route.params,
            calls: &names,
            authenticated: route.authenticated,
            query: true,
        };
        let mut calls = Vec::new();
        for (name, c) in &specs {
            let key = format!("calls.{name}");
            if matches!(name.as_str(), "query" | "header" | "claims" | "_errors")
                || name.contains('.')
            {
                findings.push((key.clone(), format!("`{name}` cannot name a call")));
            }
            let mut note = |k: &str, m: String| findings.push((format!("{key}.{k}"), m));
            let backend = match (route.backend)(&c.backend) {
                Ok(id) => Some(id),
                Err(Some(message)) => {
                    note("backend", message);
                    None
                }
                Err(None) => None,
            };
            let path = Template::parse(&c.path, &template_names)
                .map_err(|m| note("path", m))
                .ok();
            if !c.path.starts_with('/') {
                note("path", format!("`{}` must start with /", c.path));
            }
            let method = match c.method.as_deref().unwrap_or("GET") {
                m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE") => {
                    Method::from_bytes(m.as_bytes()).ok()
                }
                other => {
                    note(
                        "method",
                        format!("`{other}`: expected GET, POST, PUT, PATCH or DELETE"),
                    );
                    None
                }
            };
            let body = c.body.as_ref().and_then(|b| {
                body_template(b, &template_names)
                    .map_err(|m| note("body", m))
                    .ok()
            });
            if c.body.is_some() && matches!(c.method.as_deref(), None | Some("GET")) {
                note("body", "a GET call has no body; set `method`".into());
            }
            if c.required && c.fallback.is_some() {
                note(
                    "fallback",
                    "a required call has no fallback: its failure fails the request".into(),
                );
            }
            if let Some(p) = &c.extract
                && !p.starts_with('/')
            {
                note(
                    "extract",
                    format!("`{p}` is not a JSON pointer (like /data/items)"),
                );
            }
            if c.fan_out == Some(0) {
                note("fan_out", "must be at least 1".into());
            }
            if c.timeout.is_some_and(|t| t.0.is_zero()) {
                note("timeout", "must be more than 0".into());
            }
            if c.batch && !path.as_ref().is_some_and(Template::fans_out) {
                note("batch", "needs a `*` in the path to join".into());
            }
            let (Some(backend), Some(path), Some(method)) = (backend, path, method) else {
                continue;
            };
            let mut deps: Vec<usize> = path
                .calls()
                .chain(body.iter().flat_map(BodyTemplate::calls))
                .filter_map(|d| names.iter().position(|n| n == d))
                .collect();
            deps.sort_unstable();
            deps.dedup();
            calls.push(CallPlan {
                name: name.clone(),
                backend,
                method,
                path,
                body,
                required: c.required,
                timeout: c.timeout.map(|t| t.0),
                shape: Shape {
                    extract: c.extract.clone(),
                    select: c.select.clone(),
                    omit: c.omit.clone(),
                    rename: c.rename.clone(),
                },
                fallback: c.fallback.clone(),
                fan_out: c.fan_out.unwrap_or(DEFAULT_FAN_OUT),
                batch: c.batch,
                deps,
            });
        }
        if !findings.is_empty() {
            return Err(findings);
        }
        if let Some(cycle) = find_cycle(&calls) {
            return Err(vec![(
                format!("calls.{}", cycle[0]),
                format!(
                    "the calls wait for each other in a cycle: {}",
                    cycle.join(" → ")
                ),
            )]);
        }
        Ok(Arc::new(AggregatePlan { calls }))
    }
}

/// The names of calls forming a cycle, if any.
fn find_cycle(calls: &[CallPlan]) -> Option<Vec<String>> {
    // 0 = not seen, 1 = on the current path, 2 = done.
    fn visit(
        i: usize,
        calls: &[CallPlan],
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        state[i] = 1;
        path.push(i);
        for &d in &calls[i].deps {
            if state[d] == 1 {
                let start = path.iter().position(|&p| p == d).unwrap_or(0);
                let mut names: Vec<String> = path[start..]
                    .iter()
                    .map(|&p| calls[p].name.clone())
                    .collect();
                names.push(calls[d].name.clone());
                return Some(names);
            }
            if state[d] == 0
                && let Some(c) = visit(d, calls, state, path)
            {
                return Some(c);
            }
        }
        path.pop();
        state[i] = 2;
        None
    }
    let mut state = vec![0u8; calls.len()];
    for i in 0..calls.len() {
        if state[i] == 0
            && let Some(c) = visit(i, calls, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

impl Plan for AggregatePlan {
    fn kind(&self) -> &'static str {
        "aggregate"
    }

    fn backends(&self) -> Vec<BackendId> {
        let mut ids: Vec<BackendId> = self.calls.iter().map(|c| c.backend).collect();
        ids.sort_by_key(|b| b.0);
        ids.dedup();
        ids
    }

    fn calls(&self) -> Vec<gateway::extend::PlannedCall> {
        self.calls
            .iter()
            .map(|c| gateway::extend::PlannedCall {
                label: c.name.clone(),
                backend: c.backend,
                timeout: c.timeout,
            })
            .collect()
    }

    fn build(&self, upstreams: &[Arc<Upstream>]) -> Arc<dyn Handler> {
        Arc::new(run::Aggregator {
            upstreams: self
                .calls
                .iter()
                .map(|c| upstreams[c.backend.0].clone())
                .collect(),
            calls: self.calls.clone(),
        })
    }
}
