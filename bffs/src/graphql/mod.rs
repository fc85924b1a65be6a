//! A route file's GraphQL endpoint over REST backends (contract §3.7).
//!
//! The `graphql` block of a route file names an SDL file next to it. At load, the SDL
//! is checked ([`sdl`]): types exist, `@rest` fields name known backends and valid
//! templates (`{args.x}`, `{parent.x}`, `{claims.x}`, `{header.x}`, `{keys}`), and an
//! async-graphql dynamic schema is built ([`exec`]). At run time, [`http`] reads the
//! GraphQL-over-HTTP request, applies the persisted-query mode ([`persisted`]) and the
//! limits ([`limits`]) before anything runs, and executes the operation: every backend
//! call goes through the backend's client stack (breaker, retries, bulkhead…), `batch`
//! fields load all parents of a level in one call, identical calls run once, and a failed
//! field is `null` with an error carrying its path and `extensions.code`.

mod exec;
mod http;
mod limits;
mod persisted;
mod sdl;

use std::sync::Arc;

use gateway::config::BackendId;
use gateway::config::units;
use gateway::extend::{Extension, Finding, Handler, HandlerRequest, Plan, Reply, RouteInfo};
use gateway::upstream::Upstream;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use persisted::Persisted;

/// The `graphql` block of a route file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The endpoint's path below the file's prefix (GET and POST).
    pub path: String,
    /// The endpoint's route id (default `TEAM-graphql`).
    #[serde(default)]
    pub id: Option<String>,
    /// Deadline for one request (default: the server's `request_timeout`).
    #[serde(default)]
    pub timeout: Option<units::Duration>,
    /// The SDL file, next to the route file.
    pub schema: String,
    /// Deepest selection nesting (default 12).
    #[serde(default)]
    pub max_depth: Option<usize>,
    /// Most fields selected in one operation, nested ones included (default 2000).
    #[serde(default)]
    pub max_complexity: Option<usize>,
    /// Most aliases in one document (default 30).
    #[serde(default)]
    pub max_aliases: Option<usize>,
    /// Most root fields in one operation (default 20).
    #[serde(default)]
    pub max_root_fields: Option<usize>,
    /// Largest document (default 32KiB).
    #[serde(default)]
    pub max_document_size: Option<units::Size>,
    /// Most lexical tokens in one document (default 2000).
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// Whether `__schema` and `__type` are answered (default false).
    #[serde(default)]
    pub introspection: bool,
    /// Serve the GraphiQL page to browsers (GET with `Accept: text/html`; default false).
    #[serde(default)]
    pub graphiql: bool,
    /// Allow a JSON array of operations in one POST, at most this many (default: off).
    #[serde(default)]
    pub batch_operations: Option<usize>,
    /// `apq`, or `{ allowlist: FILE }` (only the listed operations run).
    #[serde(default)]
    pub persisted_queries: Option<PersistedQueries>,
}

/// The persisted-query mode.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PersistedQueries {
    /// `apq`: Automatic Persisted Queries.
    Mode(String),
    /// `{ allowlist: FILE }`: a JSON file next to the route file.
    Allowlist {
        /// The file: `{"ID": "query …"}` or an Apollo persisted query manifest.
        allowlist: String,
    },
}

const DEFAULT_MAX_DEPTH: usize = 12;
const DEFAULT_MAX_COMPLEXITY: usize = 2000;
const DEFAULT_MAX_ALIASES: usize = 30;
const DEFAULT_MAX_ROOT_FIELDS: usize = 20;
const DEFAULT_MAX_DOCUMENT: u64 = 32 * 1024;
const DEFAULT_MAX_TOKENS: usize = 2000;

/// The request-level limits (see [`limits`]).
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    aliases: usize,
    root_fields: usize,
    document: usize,
    tokens: usize,
    /// Fields selected with fragments expanded (the complexity limit, checked before
    /// async-graphql walks the document).
    complexity: usize,
    batch: Option<usize>,
}

/// The extension claiming a route file's `graphql` block.
#[derive(Debug, Default)]
pub struct Graphql;

impl Extension for Graphql {
    fn key(&self) -> &'static str {
        "graphql"
    }

    fn resolve(&self, block: &Value, route: &RouteInfo<'_>) -> Result<Arc<dyn Plan>, Vec<Finding>> {
        let spec: Spec = crate::module::read(block).map_err(|finding| vec![finding])?;
        let mut findings: Vec<Finding> = Vec::new();
        for (key, value) in [
            ("max_depth", spec.max_depth),
            ("max_complexity", spec.max_complexity),
            ("max_aliases", spec.max_aliases),
            ("max_root_fields", spec.max_root_fields),
            ("max_tokens", spec.max_tokens),
            ("batch_operations", spec.batch_operations),
        ] {
            if value == Some(0) {
                findings.push((key.into(), "must be at least 1".into()));
            }
        }
        let persisted = match &spec.persisted_queries {
            None => Some(Persisted::Off),
            Some(PersistedQueries::Mode(m)) if m == "apq" => Some(Persisted::apq()),
            Some(PersistedQueries::Mode(m)) => {
                findings.push((
                    "persisted_queries".into(),
                    format!("`{m}`: expected apq or {{ allowlist: FILE }}"),
                ));
                None
            }
            Some(PersistedQueries::Allowlist { allowlist }) => {
                let read = (route.read)(allowlist).and_then(|text| {
                    let json: Value = serde_json::from_str(&text)
                        .map_err(|e| format!("{allowlist}: not JSON: {e}"))?;
                    Persisted::allowlist(&json).map_err(|e| format!("{allowlist}: {e}"))
                });
                read.map_err(|m| findings.push(("persisted_queries.allowlist".into(), m)))
                    .ok()
            }
        };
        let sdl_text = (route.read)(&spec.schema);
        let model = match sdl_text {
            Err(m) => {
                findings.push(("schema".into(), m));
                None
            }
            Ok(text) => match sdl::check(&spec.schema, &text, route.backend, route.authenticated) {
                Ok(model) => Some(Arc::new(model)),
                Err(errors) => {
                    findings.extend(errors.into_iter().map(|m| ("schema".to_string(), m)));
                    None
                }
            },
        };
        let (Some(model), Some(persisted)) = (model, persisted) else {
            return Err(findings);
        };
        if !findings.is_empty() {
            return Err(findings);
        }
        let schema_limits = exec::SchemaLimits {
            max_depth: spec.max_depth.unwrap_or(DEFAULT_MAX_DEPTH),
            max_complexity: spec.max_complexity.unwrap_or(DEFAULT_MAX_COMPLEXITY),
            introspection: spec.introspection,
        };
        let schema = exec::schema(model.clone(), &schema_limits)
            .map_err(|m| vec![("schema".to_string(), format!("{}: {m}", spec.schema))])?;
        let limits = Limits {
            aliases: spec.max_aliases.unwrap_or(DEFAULT_MAX_ALIASES),
            root_fields: spec.max_root_fields.unwrap_or(DEFAULT_MAX_ROOT_FIELDS),
            document: usize::try_from(spec.max_document_size.map_or(DEFAULT_MAX_DOCUMENT, |s| s.0))
                .unwrap_or(usize::MAX),
            tokens: spec.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            complexity: spec.max_complexity.unwrap_or(DEFAULT_MAX_COMPLEXITY),
            batch: spec.batch_operations,
        };
        Ok(Arc::new(GraphqlPlan(Arc::new(Endpoint {
            schema,
            model,
            limits,
            persisted,
            graphiql: spec.graphiql,
        }))))
    }
}

/// What one endpoint runs on: the schema and its settings.
#[derive(Debug)]
pub(crate) struct Endpoint {
    schema: async_graphql::dynamic::Schema,
    model: Arc<sdl::Model>,
    limits: Limits,
    persisted: Persisted,
    graphiql: bool,
}

/// A checked `graphql` block.
#[derive(Debug)]
struct GraphqlPlan(Arc<Endpoint>);

impl Plan for GraphqlPlan {
    fn kind(&self) -> &'static str {
        "graphql"
    }

    fn backends(&self) -> Vec<BackendId> {
        let mut ids: Vec<BackendId> = self
            .0
            .model
            .fields
            .iter()
            .filter_map(|f| f.rest.as_ref().map(|r| r.backend))
            .collect();
        ids.sort_by_key(|b| b.0);
        ids.dedup();
        ids
    }

    fn calls(&self) -> Vec<gateway::extend::PlannedCall> {
        self.0
            .model
            .fields
            .iter()
            .filter_map(|f| {
                f.rest.as_ref().map(|r| gateway::extend::PlannedCall {
                    label: f.label.clone(),
                    backend: r.backend,
                    timeout: r.timeout,
                })
            })
            .collect()
    }

    fn build(&self, upstreams: &[Arc<Upstream>]) -> Arc<dyn Handler> {
        Arc::new(Running {
            endpoint: self.0.clone(),
            upstreams: Arc::new(upstreams.to_vec()),
        })
    }
}

/// A running GraphQL endpoint.
#[derive(Debug)]
struct Running {
    endpoint: Arc<Endpoint>,
    upstreams: Arc<Vec<Arc<Upstream>>>,
}

impl Handler for Running {
    fn handle(&self, req: HandlerRequest) -> Reply<'_> {
        Box::pin(http::serve(&self.endpoint, &self.upstreams, req))
    }
}
