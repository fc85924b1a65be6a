//! The resolved, immutable configuration that the running gateway uses.
//!
//! Built once per load by `resolve`; names are already checked and turned into handles
//! (`BackendId`, `TeamId`), units are plain `Duration`s and byte counts, header names and
//! values are parsed. Nothing here is looked up by string on the request path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use ipnet::IpNet;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::raw::{GatewayFile, LogFormat, RoutesFile};
use crate::routing::Pattern;

/// The whole resolved configuration.
#[derive(Debug)]
pub struct Config {
    /// Public listener settings.
    pub server: Server,
    /// Admin listener; `None` = no admin listener.
    pub admin: Option<Admin>,
    /// Backends; a [`BackendId`] indexes this list.
    pub backends: Vec<Backend>,
    /// Logging settings.
    pub telemetry: Telemetry,
    /// Teams (one per route file); a [`TeamId`] indexes this list.
    pub teams: Vec<Team>,
    /// Every route of every file, in file order.
    pub routes: Vec<Route>,
    /// Authentication providers; a [`ProviderId`] indexes this list.
    pub auth: Vec<AuthProvider>,
    /// The response cache's bounds.
    pub cache: CacheSettings,
    /// Things that are valid but probably not meant (`portico validate` prints them).
    pub warnings: Vec<super::error::Diagnostic>,
    /// The raw files as loaded (for `GET /config` and `portico routes`).
    pub raw: Arc<RawFiles>,
    /// SHA-256 (hex) of the files' texts as read: which configuration is live.
    pub hash: String,
}

/// The typed files behind a [`Config`].
#[derive(Debug)]
pub struct RawFiles {
    /// `gateway.yaml`.
    pub gateway: GatewayFile,
    /// `routes/*.yaml` with their names.
    pub routes: Vec<(String, RoutesFile)>,
}

/// Public listener settings (`server:`).
#[derive(Debug)]
pub struct Server {
    /// Listen address.
    pub listen: SocketAddr,
    /// Worker threads (`None`: one per core).
    pub workers: Option<usize>,
    /// TLS material, already parsed.
    pub tls: Option<Tls>,
    /// Largest request body in bytes.
    pub max_body: u64,
    /// Largest request head in bytes.
    pub max_header_bytes: usize,
    /// Edge deadline up to the response head.
    pub request_timeout: Duration,
    /// Drain time on shutdown.
    pub shutdown_grace: Duration,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
}

/// Parsed TLS certificate chain and key.
#[derive(Debug)]
pub struct Tls {
    /// Certificate chain, leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
}

/// Admin listener settings.
#[derive(Debug, Clone)]
pub struct Admin {
    /// Listen address.
    pub listen: SocketAddr,
    /// Bearer token wanted on every endpoint, if set.
    pub token: Option<String>,
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// JSON or human-readable logs.
    pub log_format: LogFormat,
    /// One line per request.
    pub access_log: bool,
    /// Share of new traces sampled (0.0–1.0).
    pub trace_sampling: f64,
    /// Where spans are exported; `None`: no spans are recorded.
    pub otlp: Option<Otlp>,
}

/// The OTLP/HTTP trace exporter's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Otlp {
    /// `POST` target of the exports (`…/v1/traces`).
    pub endpoint: http::Uri,
    /// `service.name` of the spans.
    pub service_name: String,
}

/// Index of a backend in [`Config::backends`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendId(pub usize);

/// Index of a team in [`Config::teams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TeamId(pub usize);

/// One backend and its resilience settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    /// Its name in `gateway.yaml`.
    pub name: String,
    /// Its instances (at least one).
    pub instances: Vec<Instance>,
    /// Connect timeout per attempt.
    pub connect_timeout: Duration,
    /// Timeout per attempt up to the response head.
    pub timeout: Duration,
    /// Bulkhead: most requests in flight (`None`: unbounded).
    pub max_concurrency: Option<u32>,
    /// How an instance is chosen.
    pub balance: Balance,
    /// Circuit breaker per instance (`None`: no breaker).
    pub breaker: Option<BreakerSettings>,
    /// Retries (`None`: only the first try).
    pub retry: Option<RetrySettings>,
    /// Passive ejection of failing instances.
    pub outlier: Option<OutlierSettings>,
    /// Hedge delay for idempotent requests.
    pub hedge: Option<Duration>,
    /// Active health checks.
    pub health: Option<HealthSettings>,
    /// Fault injection.
    pub fault: Option<FaultSettings>,
}

impl Backend {
    /// A backend with default settings and no resilience features.
    pub fn new(name: &str, instances: Vec<Instance>) -> Self {
        Self {
            name: name.to_string(),
            instances,
            connect_timeout: super::raw::default_connect_timeout().0,
            timeout: super::raw::default_backend_timeout().0,
            max_concurrency: None,
            balance: Balance::RoundRobin,
            breaker: None,
            retry: None,
            outlier: None,
            hedge: None,
            health: None,
            fault: None,
        }
    }
}

/// The share of requests that may be retried (or hedged) when `retry.budget` is not set.
pub const DEFAULT_RETRY_BUDGET: f64 = 0.2;

/// How a backend with several instances chooses one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// In turn.
    #[default]
    RoundRobin,
    /// The less busy of two picked at random (power of two choices).
    LeastRequest,
}

/// Outcomes of an attempt that a rule (`retry.on`, `breaker.on`) applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conditions {
    /// The connection could not be made (nothing was sent).
    pub connect: bool,
    /// The connection broke after the request was sent, or the answer was not HTTP.
    pub reset: bool,
    /// No response head within the attempt's time.
    pub timeout: bool,
    /// Statuses 0–639 as a bit set.
    statuses: [u64; 10],
}

impl Conditions {
    /// No conditions.
    pub fn none() -> Self {
        Self {
            connect: false,
            reset: false,
            timeout: false,
            statuses: [0; 10],
        }
    }

    /// Adds a status.
    pub fn add_status(&mut self, status: u16) {
        if let Some(word) = self.statuses.get_mut(usize::from(status / 64)) {
            *word |= 1 << (status % 64);
        }
    }

    /// Whether `status` is one of the conditions.
    pub fn status(&self, status: u16) -> bool {
        self.statuses
            .get(usize::from(status / 64))
            .is_some_and(|word| word & (1 << (status % 64)) != 0)
    }
}

/// Circuit breaker settings (`breaker`).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    /// Open after this many failures in a row.
    pub consecutive_failures: Option<u32>,
    /// Open when this fraction (0–1) of the requests in `window` failed.
    pub failure_rate: Option<f64>,
    /// The window of `failure_rate`.
    pub window: Duration,
    /// Requests in the window before `failure_rate` applies.
    pub min_requests: u32,
    /// How long the breaker stays open before probing.
    pub open_for: Duration,
    /// Probes let through while half-open; all must succeed to close.
    pub half_open_probes: u32,
    /// What counts as a failure.
    pub on: Conditions,
}

/// Retry settings (`retry`).
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySettings {
    /// Retries after the first try.
    pub attempts: u32,
    /// First backoff (doubling per retry, full jitter).
    pub backoff: Duration,
    /// Largest backoff.
    pub max_backoff: Duration,
    /// Fraction (0–1) of requests that may be retried over 10 s.
    pub budget: f64,
    /// What is retried.
    pub on: Conditions,
}

/// Passive outlier ejection (`outlier`).
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierSettings {
    /// Failures (5xx, connect, reset, timeout) in a row that eject an instance.
    pub consecutive_5xx: u32,
    /// How long an instance stays out.
    pub eject_for: Duration,
    /// Largest fraction (0–1) of instances out at once (always at least one stays).
    pub max_ejected: f64,
}

/// Active health checks (`health`).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSettings {
    /// Path probed with GET (after the instance's base path).
    pub path: String,
    /// Time between probes.
    pub interval: Duration,
    /// Time a probe may take.
    pub timeout: Duration,
    /// Failed probes in a row before an instance is unhealthy.
    pub unhealthy_after: u32,
    /// Good probes in a row before it is healthy again.
    pub healthy_after: u32,
}

/// Fault injection (`fault`).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSettings {
    /// A delay added to this fraction (0–1) of requests.
    pub delay: Option<(Duration, f64)>,
    /// A status answered instead of calling the backend, for this fraction of requests.
    pub abort: Option<(StatusCode, f64)>,
}

/// One instance of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `http` (the only scheme supported so far).
    pub scheme: http::uri::Scheme,
    /// `host:port`.
    pub authority: http::uri::Authority,
    /// Path prefix of the URL without a trailing slash (`""` for none).
    pub base_path: String,
}

/// One route file's team.
#[derive(Debug, Clone)]
pub struct Team {
    /// Team name.
    pub name: String,
    /// The file it owns (`routes/web.yaml`).
    pub file: String,
    /// The prefix it owns (`/web`; `/` for the catch-all file).
    pub prefix: String,
}

/// One route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Unique id.
    pub id: String,
    /// Owning team.
    pub team: TeamId,
    /// Where it was declared (`routes/web.yaml:12`).
    pub origin: String,
    /// Full path pattern (prefix + path).
    pub pattern: Pattern,
    /// Allowed methods; `None` = every method.
    pub methods: Option<Vec<Method>>,
    /// Deadline for the response head.
    pub timeout: Option<Duration>,
    /// What answers the request.
    pub handler: Handler,
    /// Copies of requests to a shadow backend.
    pub shadow: Option<Shadow>,
    /// Rate limits; all apply.
    pub rate_limits: Vec<crate::rate_limit::Limit>,
    /// Who may call it.
    pub auth: RouteAuth,
    /// What the caller must hold (scopes, roles, claims).
    pub require: Option<Require>,
    /// CORS of the route's file.
    pub cors: Option<Arc<Cors>>,
    /// The hooks of the file's BFF module (`bff:`).
    pub layer: Option<Arc<dyn crate::extend::Layer>>,
    /// Response caching.
    pub cache: Option<Arc<RouteCache>>,
}

/// The response cache's bounds (`cache:` in `gateway.yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Bytes of keys, headers and bodies kept at most.
    pub max_size: u64,
    /// Largest body stored in one entry.
    pub max_entry_size: usize,
}

/// A route's response cache, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteCache {
    /// Freshness, unless the backend says less.
    pub ttl: Duration,
    /// Request headers that select entries, lowercase, sorted, distinct.
    pub vary: Vec<http::HeaderName>,
    /// Stale answers served at once while one refresh runs.
    pub stale_while_revalidate: Duration,
    /// Stale answers served when the backend fails.
    pub stale_if_error: Duration,
    /// One entry per authenticated caller (`private`) or for all (`public`).
    pub private: bool,
    /// Statuses that are stored.
    pub statuses: Vec<StatusCode>,
}

/// Index of an auth provider in [`Config::auth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProviderId(pub usize);

/// How a route authenticates its callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAuth {
    /// Nothing was said (public, with a validation warning).
    Unset,
    /// `auth: none`: public on purpose.
    Public,
    /// Callers must authenticate with this provider.
    Provider(ProviderId),
}

/// An authentication provider (`auth.NAME` in `gateway.yaml`).
#[derive(Debug, Clone)]
pub struct AuthProvider {
    /// Its name.
    pub name: String,
    /// JWT or API keys.
    pub kind: AuthKind,
    /// The provider's settings as written, to tell whether a reload changed them.
    pub fingerprint: String,
}

/// The two kinds of provider.
#[derive(Debug, Clone)]
pub enum AuthKind {
    /// JSON Web Tokens.
    Jwt(Jwt),
    /// API keys.
    ApiKeys(ApiKeys),
}

/// A JWT provider, resolved.
#[derive(Debug, Clone)]
pub struct Jwt {
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Accepted `aud` values (one must be present when not empty).
    pub audience: Vec<String>,
    /// Allowed algorithms.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Inline keys.
    pub keys: Vec<JwtKey>,
    /// JWKS endpoint.
    pub jwks_url: Option<http::Uri>,
    /// JWKS refresh interval.
    pub jwks_refresh: Duration,
    /// Clock leeway for `exp` and `nbf`.
    pub leeway: Duration,
    /// Where tokens are read, in order.
    pub sources: Vec<TokenSource>,
    /// `(claim, header)`: claims sent to backends.
    pub forward_claims: Vec<(String, http::HeaderName)>,
    /// Pass `Authorization` on to backends.
    pub forward_token: bool,
}

/// One verification key.
#[derive(Debug, Clone)]
pub struct JwtKey {
    /// Key id (`kid`).
    pub kid: Option<String>,
    /// The only algorithm this key may verify, when its JWK said so.
    pub alg: Option<jsonwebtoken::Algorithm>,
    /// The key.
    pub key: jsonwebtoken::DecodingKey,
}

/// Where a token is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`.
    Authorization,
    /// A cookie.
    Cookie(String),
}

/// An API-key provider, resolved.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    /// Header carrying the key.
    pub header: http::HeaderName,
    /// Query parameter also accepted.
    pub query: Option<String>,
    /// The keys.
    pub keys: Vec<ApiKey>,
    /// Header that carries the key's id to backends.
    pub forward: Option<http::HeaderName>,
}

/// One API key.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// Its identity.
    pub id: String,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
    /// Scopes it holds.
    pub scopes: Vec<String>,
    /// Roles it holds.
    pub roles: Vec<String>,
}

/// Authorization requirements of a route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Require {
    /// All of these scopes.
    pub scopes: Vec<String>,
    /// One of these roles.
    pub roles: Vec<String>,
    /// Each of these claims with this value.
    pub claims: Vec<(String, String)>,
}

/// CORS settings of a route file.
#[derive(Debug, Clone)]
pub struct Cors {
    /// Allowed origins; empty = any (`*`).
    pub origins: Vec<String>,
    /// Allow credentials.
    pub credentials: bool,
    /// Methods for preflights; `None` = the route's methods.
    pub methods: Option<Vec<Method>>,
    /// Request headers for preflights; `None` = what the preflight asks for.
    pub headers: Option<Vec<http::HeaderName>>,
    /// Response headers exposed to scripts.
    pub expose: Vec<http::HeaderName>,
    /// Preflight cache time.
    pub max_age: Option<Duration>,
}

/// The handler of a route.
#[derive(Debug, Clone)]
pub enum Handler {
    /// Reverse proxy to a backend.
    Proxy(Proxy),
    /// A fixed response.
    Static(Static),
    /// Weighted, sticky split between backends.
    Split(Split),
    /// A handler built by an extension (`aggregate`, BFF modules).
    Extension(Arc<dyn crate::extend::Plan>),
}

impl Handler {
    /// `proxy`, `static` or `split`, as shown by `portico routes`.
    pub fn kind(&self) -> &'static str {
        match self {
            Handler::Proxy(_) => "proxy",
            Handler::Static(_) => "static",
            Handler::Split(_) => "split",
            Handler::Extension(plan) => plan.kind(),
        }
    }

    /// The backends this handler sends to.
    pub fn backends(&self) -> Vec<BackendId> {
        match self {
            Handler::Proxy(p) => vec![p.backend],
            Handler::Static(_) => vec![],
            Handler::Split(s) => s.targets.iter().map(|t| t.backend).collect(),
            Handler::Extension(plan) => plan.backends(),
        }
    }
}

/// The `split` handler.
#[derive(Debug, Clone)]
pub struct Split {
    /// Targets with their weights (at least one weight is above 0).
    pub targets: Vec<SplitTarget>,
    /// What keeps a client on one target.
    pub sticky: Option<Sticky>,
    /// Header naming a target's backend to force it.
    pub override_header: Option<http::HeaderName>,
    /// Bytes of prefix to strip from the request path.
    pub strip_prefix: usize,
}

/// One target of a split.
#[derive(Debug, Clone, Copy)]
pub struct SplitTarget {
    /// The backend.
    pub backend: BackendId,
    /// Its weight.
    pub weight: u32,
}

/// The key that keeps a client on one split target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    /// A cookie, set by the gateway on the first response when the client has none.
    Cookie(String),
    /// A request header.
    Header(http::HeaderName),
    /// The client's address.
    Ip,
    /// A claim of the authenticated caller (`claim:NAME`; the route must authenticate).
    Claim(String),
}

/// Shadow traffic of a route.
#[derive(Debug, Clone)]
pub struct Shadow {
    /// The backend receiving the copies.
    pub backend: BackendId,
    /// Share of requests copied, 0.0–1.0.
    pub share: f64,
    /// Methods copied.
    pub methods: Vec<Method>,
    /// Compare answers, ignoring these JSON pointers; `None` = no comparison.
    pub compare: Option<Vec<String>>,
    /// Most shadow requests in flight.
    pub max_in_flight: usize,
    /// Largest request or response body kept for shadowing and comparing.
    pub max_body: usize,
}

/// The `proxy` handler.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// Target backend.
    pub backend: BackendId,
    /// Backend path template; `None` = request path minus the file's prefix.
    pub path: Option<Pattern>,
    /// Length of the file's prefix to strip when `path` is `None` (0 for `/`).
    pub strip_prefix: usize,
}

/// The `static` handler.
#[derive(Debug, Clone)]
pub struct Static {
    /// Status.
    pub status: StatusCode,
    /// Headers (including the content type).
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// The body is the file's OpenAPI document, filled in once the config is resolved.
    pub openapi: bool,
}
