//! `routes/<team>.yaml`: one client team's prefix, defaults and routes.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::super::units::{Duration, Percent, Rate, Size};

/// `routes/<team>.yaml`: owned by one client team.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutesFile {
    /// The owning team; shown in errors, logs and `portico routes`.
    pub team: String,
    /// The BFF module applied to these routes.
    #[serde(default)]
    pub bff: Option<String>,
    /// Every route of this file lives under this prefix; two files may not share one.
    pub prefix: String,
    /// Default auth provider for this file, or `none`.
    #[serde(default)]
    pub auth: Option<String>,
    /// Default authorization requirements.
    #[serde(default)]
    pub require: Option<Require>,
    /// Default rate limits (all apply).
    #[serde(default)]
    pub rate_limit: Option<Vec<RateLimit>>,
    /// CORS for this file's routes.
    #[serde(default)]
    pub cors: Option<Cors>,
    /// GraphQL endpoint of this file.
    #[serde(default)]
    pub graphql: Option<serde_json::Value>,
    /// Serve this file's OpenAPI 3.1 document at `<prefix>/openapi.json` (a GET route of
    /// the file, id `TEAM-openapi`, with the file's auth).
    #[serde(default)]
    pub openapi: bool,
    /// Options of the `mobile` BFF module.
    #[serde(default)]
    pub mobile: Option<serde_json::Value>,
    /// Options of the `partner` BFF module.
    #[serde(default)]
    pub partner: Option<serde_json::Value>,
    /// Options of a custom BFF module (`bff: NAME` other than mobile and partner).
    #[serde(default)]
    pub options: Option<serde_json::Value>,
    /// The routes.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// Authorization requirements.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Require {
    /// Scopes that must all be present.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Roles of which one must be present.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Claims that must have these values.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
}

/// One rate limit.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// `ip`, `subject`, `api_key`, `claim:NAME`, `header:NAME` or `route`.
    pub key: String,
    /// The sustained rate.
    pub rate: Rate,
    /// Burst size.
    #[serde(default)]
    pub burst: Option<u32>,
}

/// CORS settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cors {
    /// Allowed origins (`scheme://host[:port]`), or `["*"]` for any (not with credentials).
    pub origins: Vec<String>,
    /// Allow credentials (cookies, `Authorization`).
    #[serde(default)]
    pub credentials: bool,
    /// Methods allowed in preflights; default: the route's methods.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Request headers allowed in preflights; default: whatever the preflight asks for.
    #[serde(default)]
    pub headers: Option<Vec<String>>,
    /// Response headers the browser may read.
    #[serde(default)]
    pub expose: Vec<String>,
    /// How long browsers may cache a preflight answer.
    #[serde(default)]
    pub max_age: Option<Duration>,
}

/// One route.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Unique across all files.
    pub id: String,
    /// Below the file's prefix; `{name}` is one segment, `{*name}` the rest.
    pub path: String,
    /// Allowed methods; default: every method.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Deadline for this route (response head) → 504 GATEWAY_TIMEOUT.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Response caching (GET and HEAD).
    #[serde(default)]
    pub cache: Option<RouteCache>,
    /// Auth provider for this route, or `none`.
    #[serde(default)]
    pub auth: Option<String>,
    /// Authorization requirements for this route.
    #[serde(default)]
    pub require: Option<Require>,
    /// Rate limits for this route.
    #[serde(default)]
    pub rate_limit: Option<Vec<RateLimit>>,
    /// Handler: reverse proxy to a backend.
    #[serde(default)]
    pub proxy: Option<Proxy>,
    /// Handler: scatter-gather over several backends.
    #[serde(default)]
    pub aggregate: Option<serde_json::Value>,
    /// Handler: weighted split between backends (Strangler Fig migration).
    #[serde(default)]
    pub split: Option<Split>,
    /// A copy of the traffic to a shadow backend, beside `proxy` or `split`.
    #[serde(default)]
    pub shadow: Option<Shadow>,
    /// Handler: a fixed response.
    #[serde(default, rename = "static")]
    pub static_: Option<Static>,
    /// Handler: a Rust handler exported by a BFF module (`module.fn`).
    #[serde(default)]
    pub handler: Option<String>,
    /// Handler: the file's GraphQL endpoint (set from the file's `graphql` block, never
    /// written in a route).
    #[serde(skip)]
    #[schemars(skip)]
    pub graphql: Option<serde_json::Value>,
}

impl Route {
    /// A route the gateway makes for a file (its GraphQL endpoint, its OpenAPI document):
    /// only id, path and methods; the caller sets its handler.
    pub fn generated(id: String, path: String, methods: &[&str]) -> Route {
        Route {
            id,
            path,
            methods: Some(methods.iter().map(|m| m.to_string()).collect()),
            timeout: None,
            cache: None,
            auth: None,
            require: None,
            rate_limit: None,
            proxy: None,
            aggregate: None,
            split: None,
            shadow: None,
            static_: None,
            handler: None,
            graphql: None,
        }
    }
}

/// The `proxy` handler.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Proxy {
    /// The backend's name.
    pub backend: String,
    /// Path at the backend, with the route's `{params}`; omitted = request path minus prefix.
    #[serde(default)]
    pub path: Option<String>,
}

/// The `static` handler.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Static {
    /// Response status.
    #[serde(default = "default_status")]
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Response body: a string is sent as text/plain, anything else as JSON.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
}

fn default_status() -> u16 {
    200
}

/// The `split` handler: weighted targets, optionally sticky.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// The targets; a weight of 0 sends nothing; the weights must not all be 0.
    pub targets: Vec<SplitTarget>,
    /// What keeps one client on one target: `cookie:NAME`, `header:NAME`, `claim:NAME`
    /// or `ip`. Without it every request is drawn by weight.
    #[serde(default)]
    pub sticky: Option<String>,
    /// `header:NAME`: a request naming one of the targets' backends in this header goes
    /// to that target.
    #[serde(default, rename = "override")]
    pub override_: Option<String>,
}

/// One target of a `split`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitTarget {
    /// The backend's name.
    pub backend: String,
    /// Its relative weight.
    pub weight: u32,
}

/// `shadow`: copies of requests sent to another backend; they never change the client's
/// answer or its latency.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Shadow {
    /// The backend receiving the copies.
    pub backend: String,
    /// Share of requests copied.
    #[serde(default = "full_share")]
    pub percent: Percent,
    /// Methods copied; default GET, HEAD, OPTIONS. Name others explicitly.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Compare status and body of both answers: `true`, or `{ ignore: [JSON pointers] }`.
    #[serde(default)]
    pub compare: Option<Compare>,
    /// Most shadow requests in flight for this route; more are skipped (counted).
    #[serde(default = "default_shadow_in_flight")]
    pub max_in_flight: u32,
    /// Largest body (request or response) kept for shadowing and comparing; larger
    /// exchanges are not shadowed or not compared.
    #[serde(default = "default_shadow_body")]
    pub max_body: Size,
}

fn full_share() -> Percent {
    Percent(100.0)
}
fn default_shadow_in_flight() -> u32 {
    64
}
fn default_shadow_body() -> Size {
    Size(1 << 20)
}

/// `compare: true` or `compare: { ignore: [...] }`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Compare {
    /// On or off.
    Enabled(bool),
    /// On, ignoring these JSON pointers (`/updated_at`).
    Ignoring(CompareIgnore),
}

/// Members left out of the comparison.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompareIgnore {
    /// JSON pointers, e.g. `/meta/request_id`.
    #[serde(default)]
    pub ignore: Vec<String>,
}

/// A route's response cache (`cache:`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteCache {
    /// How long an answer is fresh; a backend's `max-age` / `s-maxage` may shorten it.
    pub ttl: Duration,
    /// Request headers whose values select different entries (besides the backend's `Vary`).
    #[serde(default)]
    pub vary: Vec<String>,
    /// After `ttl`, a stale answer is served at once while one refresh runs in the background.
    #[serde(default)]
    pub stale_while_revalidate: Option<Duration>,
    /// After `ttl`, a stale answer is served when the backend fails (5xx, timeout, refused,
    /// open breaker, partial aggregate).
    #[serde(default)]
    pub stale_if_error: Option<Duration>,
    /// `public`: one entry for everybody; `private`: one per authenticated caller. Default:
    /// `private` on routes that authenticate, `public` otherwise.
    #[serde(default)]
    pub scope: Option<CacheScope>,
    /// Statuses that are stored; default 200, 203, 204, 301, 404.
    #[serde(default)]
    pub statuses: Option<Vec<u16>>,
}

/// Who shares a cached entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CacheScope {
    /// Every caller.
    Public,
    /// Only the authenticated caller it was stored for.
    Private,
}
