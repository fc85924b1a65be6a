//! The two file kinds as written: `gateway.yaml` ([`GatewayFile`]) and
//! `routes/<team>.yaml` ([`RoutesFile`]).
//!
//! These types mirror the contract (§2) one to one, reject unknown keys, and generate the
//! JSON Schema that `portico schema` prints. They are checked and resolved into
//! [`super::Config`] by `super::resolve`; nothing on the request path reads them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::units::{Duration, Percent, Size};

mod routes;

pub use routes::*;

/// `gateway.yaml`: owned by the platform team.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    /// The public listener.
    #[serde(default)]
    pub server: Server,
    /// The admin listener (health, readiness, route table). Off when absent.
    #[serde(default)]
    pub admin: Option<Admin>,
    /// Backends by name; route files refer to them by that name.
    #[serde(default)]
    pub backends: BTreeMap<String, Backend>,
    /// Authentication providers by name; route files refer to them by that name.
    #[serde(default)]
    pub auth: BTreeMap<String, AuthProvider>,
    /// The response cache.
    #[serde(default)]
    pub cache: Option<Cache>,
    /// Logs, access log and traces.
    #[serde(default)]
    pub telemetry: Telemetry,
}

/// The public listener (`server:`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Address to listen on: HTTP/1.1 and HTTP/2 (h2c prior knowledge; h2 by ALPN under TLS).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Worker threads; default: one per CPU core.
    #[serde(default)]
    pub workers: Option<usize>,
    /// TLS certificate and key (PEM files, relative to the config directory).
    #[serde(default)]
    pub tls: Option<Tls>,
    /// Largest request body, counted while streaming → 413.
    #[serde(default = "default_max_body")]
    pub max_body: Size,
    /// Largest request head (request line and headers) → 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: Size,
    /// Edge deadline for any request, up to the response head → 504.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Duration,
    /// On SIGTERM/SIGINT: how long in-flight requests may take to finish.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: Duration,
    /// Peers (CIDR or address) whose `X-Forwarded-For` is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_max_body() -> Size {
    Size(10 << 20)
}
fn default_max_header_bytes() -> Size {
    Size(16 << 10)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(20)
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            workers: None,
            tls: None,
            max_body: default_max_body(),
            max_header_bytes: default_max_header_bytes(),
            request_timeout: default_request_timeout(),
            shutdown_grace: default_shutdown_grace(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// TLS files for the public listener.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key.
    pub key: String,
}

/// The admin listener (`admin:`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Address of the admin listener; never reachable through `server.listen`.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// Bearer token required on every admin endpoint when set.
    #[serde(default)]
    pub token: Option<String>,
}

fn default_admin_listen() -> String {
    "127.0.0.1:9901".into()
}

/// One backend (`backends.NAME`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// The backend's base URL (`http://host:port[/base]`).
    #[serde(default)]
    pub url: Option<String>,
    /// Several instances of one backend (instead of `url`).
    #[serde(default)]
    pub urls: Option<Vec<String>>,
    /// Connect timeout per attempt.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Timeout per attempt, up to the response head.
    #[serde(default = "default_backend_timeout")]
    pub timeout: Duration,
    /// Bulkhead: most requests in flight to this backend.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// How an instance of `urls` is chosen.
    #[serde(default)]
    pub balance: Option<Balance>,
    /// Circuit breaker.
    #[serde(default)]
    pub breaker: Option<Breaker>,
    /// Retries.
    #[serde(default)]
    pub retry: Option<Retry>,
    /// Passive ejection of one instance of `urls`.
    #[serde(default)]
    pub outlier: Option<Outlier>,
    /// Hedged requests (idempotent requests only).
    #[serde(default)]
    pub hedge: Option<Hedge>,
    /// Active health checks.
    #[serde(default)]
    pub health: Option<Health>,
    /// Fault injection (chaos); absent = off.
    #[serde(default)]
    pub fault: Option<Fault>,
}

pub(crate) fn default_connect_timeout() -> Duration {
    Duration::from_secs(1)
}
pub(crate) fn default_backend_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Circuit breaker settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Breaker {
    /// Open after this many failures in a row.
    #[serde(default)]
    pub consecutive_failures: Option<u32>,
    /// Open when this share of requests in `window` failed.
    #[serde(default)]
    pub failure_rate: Option<Percent>,
    /// The window for `failure_rate`.
    #[serde(default)]
    pub window: Option<Duration>,
    /// Requests needed in the window before `failure_rate` applies.
    #[serde(default)]
    pub min_requests: Option<u32>,
    /// How long the breaker stays open.
    #[serde(default)]
    pub open_for: Option<Duration>,
    /// Requests let through while half-open.
    #[serde(default)]
    pub half_open_probes: Option<u32>,
    /// What counts as a failure: `connect`, `reset`, `timeout`, a status, or `5xx`.
    #[serde(default)]
    pub on: Option<Vec<serde_json::Value>>,
}

/// How an instance of `urls` is chosen.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// In turn.
    RoundRobin,
    /// The less busy of two picked at random.
    LeastRequest,
}

/// Retry settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Retries after the first try.
    pub attempts: u32,
    /// First backoff.
    #[serde(default)]
    pub backoff: Option<Duration>,
    /// Largest backoff.
    #[serde(default)]
    pub max_backoff: Option<Duration>,
    /// Retries at most this share of requests.
    #[serde(default)]
    pub budget: Option<Percent>,
    /// What is retried: `connect`, `reset`, `timeout`, a status code, or `5xx`.
    #[serde(default)]
    pub on: Option<Vec<serde_json::Value>>,
}

/// Passive outlier ejection.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Outlier {
    /// Eject an instance after this many 5xx in a row.
    pub consecutive_5xx: u32,
    /// How long it stays ejected.
    pub eject_for: Duration,
    /// Never eject more than this share of instances.
    #[serde(default)]
    pub max_ejected: Option<Percent>,
}

/// Hedged requests.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hedge {
    /// Send a second attempt after this delay.
    pub after: Duration,
}

/// Active health checks.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Path probed with GET.
    pub path: String,
    /// Probe interval.
    pub interval: Duration,
    /// Failed probes before an instance is unhealthy.
    #[serde(default)]
    pub unhealthy_after: Option<u32>,
    /// Good probes before an instance is healthy again.
    #[serde(default)]
    pub healthy_after: Option<u32>,
    /// Time a probe may take (default: the backend's `timeout`, at most `interval`).
    #[serde(default)]
    pub timeout: Option<Duration>,
}

/// Fault injection.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Delay added to some requests.
    #[serde(default)]
    pub delay: Option<Duration>,
    /// Share of requests delayed.
    #[serde(default)]
    pub delay_percent: Option<Percent>,
    /// Status returned instead of calling the backend.
    #[serde(default)]
    pub abort: Option<u16>,
    /// Share of requests aborted.
    #[serde(default)]
    pub abort_percent: Option<Percent>,
}

/// An authentication provider (`auth.NAME`): exactly one of `jwt` or `api_keys`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthProvider {
    /// JSON Web Tokens.
    #[serde(default)]
    pub jwt: Option<Jwt>,
    /// API keys.
    #[serde(default)]
    pub api_keys: Option<ApiKeys>,
}

/// JWT provider settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Jwt {
    /// Required `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Accepted `aud` values.
    #[serde(default)]
    pub audience: Vec<String>,
    /// Allowed algorithms.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Inline keys.
    #[serde(default)]
    pub keys: Vec<JwtKey>,
    /// JWKS endpoint.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// JWKS refresh interval.
    #[serde(default)]
    pub jwks_refresh: Option<Duration>,
    /// Clock leeway.
    #[serde(default)]
    pub leeway: Option<Duration>,
    /// Where tokens are read: `authorization` or `cookie:NAME`.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Claims sent to backends as headers (`claim: Header-Name`).
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
    /// Pass the client's `Authorization` header on to backends (default: true).
    #[serde(default = "yes")]
    pub forward_token: bool,
}

/// One inline JWT key.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtKey {
    /// Key id.
    pub kid: String,
    /// PEM public key (asymmetric algorithms).
    #[serde(default)]
    pub pem: Option<String>,
    /// Shared secret (HS* algorithms).
    #[serde(default)]
    pub secret: Option<String>,
}

/// API-key provider settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeys {
    /// Header carrying the key.
    #[serde(default)]
    pub header: Option<String>,
    /// Query parameter also accepted (always stripped before forwarding).
    #[serde(default)]
    pub query: Option<String>,
    /// The keys, stored as SHA-256 hashes.
    #[serde(default)]
    pub keys: Vec<ApiKey>,
    /// Header that carries the key's id to backends.
    #[serde(default)]
    pub forward: Option<String>,
}

/// One API key.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// The key's identity.
    pub id: String,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    /// Scopes this key holds (for `require.scopes`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Roles this key holds (for `require.roles`).
    #[serde(default)]
    pub roles: Vec<String>,
}

/// The response cache.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cache {
    /// Memory bound of the cache (bodies, headers and keys), with eviction.
    pub max_size: Size,
    /// Largest body stored in one entry; larger answers stream through unstored.
    /// Default: 1MiB (or `max_size`, if smaller).
    #[serde(default)]
    pub max_entry_size: Option<Size>,
}

/// Logs, access log and traces (`telemetry:`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    /// `json` or `pretty`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// One line per request; `false` turns it off.
    #[serde(default = "yes")]
    pub access_log: bool,
    /// OTLP over HTTP endpoint for traces: spans are sent as protobuf to
    /// `{otlp_endpoint}/v1/traces` (a URL that already ends in `/v1/traces` is used as
    /// it is). Without it no spans are recorded; trace context is still propagated.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Share of new traces that are sampled (requests without a valid `traceparent`);
    /// a caller's own sampling decision is always kept. Default 100%.
    #[serde(default)]
    pub trace_sampling: Option<Percent>,
    /// `service.name` of the exported spans. Default `portico`.
    #[serde(default)]
    pub service_name: Option<String>,
}

fn yes() -> bool {
    true
}

impl Default for Telemetry {
    fn default() -> Self {
        Self {
            log_format: LogFormat::default(),
            access_log: true,
            otlp_endpoint: None,
            trace_sampling: None,
            service_name: None,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable lines.
    Pretty,
}
