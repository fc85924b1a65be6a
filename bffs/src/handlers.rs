//! `handler: MODULE.FN`: a route answered by a Rust function a module exports.
//!
//! A module lists its handlers in [`crate::Bff::handlers`]; the function gets the
//! request (with its path parameters, query, identity and deadline) and the client stack
//! of every backend by name, so it can compose calls in Rust when `aggregate` is not
//! enough.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use gateway::config::BackendId;
use gateway::extend::{Extension, Finding, Handler, HandlerRequest, Plan, Reply, RouteInfo};
use gateway::upstream::Upstream;
use serde_json::Value;

/// The backends a named handler may call, by name.
pub type Backends = HashMap<String, Arc<Upstream>>;

/// A named handler: the request and the backends in, the answer out.
pub type NamedHandler = for<'a> fn(HandlerRequest, &'a Backends) -> Reply<'a>;

/// Every exported handler, as `module.fn`.
pub(crate) type Table = Vec<(String, NamedHandler)>;

/// The extension claiming the route key `handler`.
pub(crate) struct Handlers(pub(crate) Arc<Table>);

impl Extension for Handlers {
    fn key(&self) -> &'static str {
        "handler"
    }

    fn resolve(
        &self,
        block: &Value,
        _route: &RouteInfo<'_>,
    ) -> Result<Arc<dyn Plan>, Vec<Finding>> {
        let name = block.as_str().unwrap_or_default();
        match self.0.iter().find(|(n, _)| n == name) {
            Some((n, f)) => Ok(Arc::new(NamedPlan {
                name: n.clone(),
                function: *f,
            })),
            None => {
                let mut known: Vec<&str> = self.0.iter().map(|(n, _)| n.as_str()).collect();
                known.sort_unstable();
                Err(vec![(
                    String::new(),
                    format!(
                        "unknown handler `{name}` (write MODULE.FN); this build has: {}",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                )])
            }
        }
    }
}

#[derive(Debug)]
struct NamedPlan {
    name: String,
    function: NamedHandler,
}

impl Plan for NamedPlan {
    fn kind(&self) -> &'static str {
        "handler"
    }

    fn backends(&self) -> Vec<BackendId> {
        Vec::new()
    }

    fn build(&self, upstreams: &[Arc<Upstream>]) -> Arc<dyn Handler> {
        Arc::new(Named {
            name: self.name.clone(),
            function: self.function,
            backends: upstreams
                .iter()
                .map(|u| (u.name().to_string(), u.clone()))
                .collect(),
        })
    }
}

struct Named {
    name: String,
    function: NamedHandler,
    backends: Backends,
}

impl Debug for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Named").field("name", &self.name).finish()
    }
}

impl Handler for Named {
    fn handle(&self, req: HandlerRequest) -> Reply<'_> {
        (self.function)(req, &self.backends)
    }
}
