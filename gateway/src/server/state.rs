//! The gateway's live state: the current snapshot behind an `ArcSwap`, and the drain flag.
//!
//! A snapshot is everything a request needs, resolved once per config load: the route
//! table with handlers that hold their backend clients directly. A request takes the
//! snapshot once and keeps it to the end, so a later swap never changes it mid-flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::auth::Provider;
use crate::config::{self, Config, Handler};
use crate::proxy::ProxyRoute;
use crate::rate_limit::Limits;
use crate::routing::Table;
use crate::strangler::{ShadowRoute, SplitRoute, SplitTarget};
use crate::telemetry::metrics::RouteMetrics;
use crate::telemetry::trace::{TraceStats, Tracer};
use crate::upstream::Upstream;

/// A route as the request path sees it.
#[derive(Debug)]
pub struct RouteEntry {
    /// Route id.
    pub id: Arc<str>,
    /// Owning team.
    pub team: Arc<str>,
    /// The path template (`/web/orders/{id}`), the span's `http.route`.
    pub path: Arc<str>,
    /// Route deadline.
    pub timeout: Option<Duration>,
    /// The handler.
    pub handler: RouteHandler,
    /// Shadow traffic, if configured.
    pub shadow: Option<Arc<ShadowRoute>>,
    /// Rate limits, if configured.
    pub limits: Option<Arc<Limits>>,
    /// The provider callers must authenticate with; `None` = public.
    pub auth: Option<Arc<Provider>>,
    /// What an authenticated caller must hold.
    pub require: Option<config::Require>,
    /// CORS of the route's file.
    pub cors: Option<Arc<config::Cors>>,
    /// The route's methods (`None` = all), for CORS preflights.
    pub methods: Option<Vec<http::Method>>,
    /// The hooks of the file's BFF module.
    pub layer: Option<Arc<dyn crate::extend::Layer>>,
    /// The route's response cache.
    pub cache: Option<crate::cache::Cached>,
    /// The route's counters (kept across reloads while the route id and team stay).
    pub metrics: Arc<RouteMetrics>,
}

/// A route's resolved handler.
#[derive(Debug)]
pub enum RouteHandler {
    /// Reverse proxy.
    Proxy(ProxyRoute),
    /// Fixed response.
    Static(config::Static),
    /// Weighted, sticky split.
    Split(SplitRoute),
    /// A handler of an extension (aggregate, BFF modules).
    Extension(Arc<dyn crate::extend::Handler>),
}

/// Edge settings copied out of the config for the hot path.
#[derive(Debug, Clone)]
pub struct Edge {
    /// Body limit.
    pub max_body: u64,
    /// Head limit.
    pub max_header_bytes: usize,
    /// Edge deadline.
    pub request_timeout: Duration,
    /// Trusted proxies.
    pub trusted_proxies: Vec<IpNet>,
    /// Access log on/off.
    pub access_log: bool,
    /// Share of new traces sampled (0.0–1.0).
    pub trace_sampling: f64,
    /// Headers the gateway sets from identities (`forward_claims`, `forward`): never
    /// taken from a client, in any spelling.
    pub protected: Arc<[http::HeaderName]>,
}

/// One immutable, fully resolved generation of the configuration.
#[derive(Debug)]
pub struct Snapshot {
    /// The config it was built from.
    pub config: Arc<Config>,
    /// Route table.
    pub table: Table<RouteEntry>,
    /// Edge settings.
    pub edge: Edge,
    /// Backend clients by name (kept across reloads for unchanged backends).
    pub upstreams: HashMap<String, Arc<Upstream>>,
    /// Running auth providers by name, with the settings they run (kept across reloads
    /// for unchanged providers: JWKS keys and verified-token caches survive).
    pub providers: HashMap<String, (String, Arc<Provider>)>,
    /// The response cache (kept across reloads while its bounds stay the same; a route
    /// whose definition changed loses its entries).
    pub cache: Arc<crate::cache::Store>,
    /// Counters of requests no route matched.
    pub unmatched: Arc<RouteMetrics>,
    /// The span exporter, when `telemetry.otlp_endpoint` is set (kept across reloads
    /// while its settings stay the same).
    pub tracer: Option<Arc<Tracer>>,
    /// Span counts (kept across reloads).
    pub trace_stats: Arc<TraceStats>,
}

impl Snapshot {
    /// Builds a snapshot. Backend clients of `previous` are reused for backends whose
    /// settings did not change, so their pools survive a reload.
    pub fn build(config: Config, previous: Option<&Snapshot>) -> Snapshot {
        let config = Arc::new(config);
        let mut upstreams = HashMap::new();
        let mut by_id = Vec::new();
        for b in &config.backends {
            let reuse = previous.and_then(|p| {
                let old = p.config.backends.iter().find(|o| o.name == b.name)?;
                (old == b)
                    .then(|| p.upstreams.get(&b.name).cloned())
                    .flatten()
            });
            let u = reuse.unwrap_or_else(|| Arc::new(Upstream::new(b)));
            upstreams.insert(b.name.clone(), u.clone());
            by_id.push(u);
        }
        let mut providers = HashMap::new();
        let mut provider_by_id = Vec::new();
        for p in &config.auth {
            let reuse = previous
                .and_then(|prev| prev.providers.get(&p.name))
                .filter(|(fingerprint, _)| *fingerprint == p.fingerprint)
                .map(|(_, running)| running.clone());
            let running = reuse.unwrap_or_else(|| Arc::new(Provider::start(p)));
            providers.insert(p.name.clone(), (p.fingerprint.clone(), running.clone()));
            provider_by_id.push(running);
        }
        let mut protected_names: Vec<http::HeaderName> = Vec::new();
        for p in &config.auth {
            let names: Vec<&http::HeaderName> = match &p.kind {
                config::AuthKind::Jwt(j) => j.forward_claims.iter().map(|(_, h)| h).collect(),
                config::AuthKind::ApiKeys(a) => a.forward.iter().collect(),
            };
            for n in names {
                if !protected_names.contains(n) {
                    protected_names.push(n.clone());
                }
            }
        }
        let protected: Arc<[http::HeaderName]> = protected_names.into();
        let trace_stats = previous.map_or_else(Arc::default, |p| p.trace_stats.clone());
        let tracer = config.telemetry.otlp.as_ref().and_then(|settings| {
            let same = previous
                .and_then(|p| p.tracer.clone())
                .filter(|t| t.settings() == settings);
            // The exporter is a task: without a runtime (offline commands) there is none.
            same.or_else(|| {
                tokio::runtime::Handle::try_current()
                    .is_ok()
                    .then(|| Tracer::start(settings, trace_stats.clone()))
            })
        });
        let generations = cache_generations(&config);
        let cache = cache_store(&config, &generations, previous);
        let carriers = Arc::new(carriers(&config));
        let teams: Vec<Arc<str>> = config
            .teams
            .iter()
            .map(|t| Arc::from(t.name.as_str()))
            .collect();
        let entries = config.routes.iter().map(|r| {
            let handler = match &r.handler {
                Handler::Proxy(p) => RouteHandler::Proxy(ProxyRoute {
                    upstream: by_id[p.backend.0].clone(),
                    path: p.path.clone(),
                    strip_prefix: p.strip_prefix,
                }),
                Handler::Static(s) => RouteHandler::Static(s.clone()),
                Handler::Extension(plan) => RouteHandler::Extension(plan.build(&by_id)),
                Handler::Split(s) => RouteHandler::Split(SplitRoute {
                    targets: s
                        .targets
                        .iter()
                        .map(|t| SplitTarget {
                            name: config.backends[t.backend.0].name.clone(),
                            route: ProxyRoute {
                                upstream: by_id[t.backend.0].clone(),
                                path: None,
                                strip_prefix: s.strip_prefix,
                            },
                            weight: t.weight,
                        })
                        .collect(),
                    sticky: s.sticky.clone(),
                    override_header: s.override_header.clone(),
                }),
            };
            let old_entry = previous.and_then(|p| {
                p.table
                    .values()
                    .iter()
                    .find(|e| *e.id == *r.id && e.team == teams[r.team.0])
            });
            let shadow = r.shadow.as_ref().map(|s| {
                // Match counts survive a reload while the route shadows the same backend.
                let stats = old_entry
                    .and_then(|e| e.shadow.as_ref())
                    .filter(|old| old.upstream.name() == config.backends[s.backend.0].name)
                    .map_or_else(Arc::default, |old| old.stats.clone());
                Arc::new(ShadowRoute {
                    upstream: by_id[s.backend.0].clone(),
                    share: s.share,
                    methods: s.methods.clone(),
                    compare: s.compare.clone(),
                    max_body: s.max_body,
                    slots: Arc::new(tokio::sync::Semaphore::new(s.max_in_flight)),
                    stats,
                })
            });
            // A route whose limits did not change keeps their buckets across a reload.
            let limits = (!r.rate_limits.is_empty()).then(|| {
                previous
                    .and_then(|p| p.route_limits(&r.id))
                    .filter(|old| old.same_as(&r.rate_limits))
                    .unwrap_or_else(|| Limits::new(r.rate_limits.clone()))
            });
            let entry = RouteEntry {
                id: Arc::from(r.id.as_str()),
                path: Arc::from(r.pattern.as_str()),
                team: teams[r.team.0].clone(),
                timeout: r.timeout,
                handler,
                shadow,
                limits,
                auth: match r.auth {
                    config::RouteAuth::Provider(id) => Some(provider_by_id[id.0].clone()),
                    config::RouteAuth::Public | config::RouteAuth::Unset => None,
                },
                require: r.require.clone(),
                cors: r.cors.clone(),
                methods: r.methods.clone(),
                layer: r.layer.clone(),
                metrics: old_entry.map_or_else(Arc::default, |e| e.metrics.clone()),
                cache: r.cache.as_ref().map(|policy| crate::cache::Cached {
                    policy: policy.clone(),
                    store: cache.clone(),
                    route: Arc::from(r.id.as_str()),
                    carriers: carriers.clone(),
                    protected: protected.clone(),
                    generation: generations.get(&r.id).copied().unwrap_or_default(),
                }),
            };
            (r.pattern.clone(), r.methods.clone(), entry)
        });
        // The config was validated, which builds this same table: it cannot conflict.
        let table = match Table::build(entries) {
            Ok(t) => t,
            Err(c) => panic!("validated config has conflicting routes: {c:?}"),
        };
        let s = &config.server;
        let edge = Edge {
            max_body: s.max_body,
            max_header_bytes: s.max_header_bytes,
            request_timeout: s.request_timeout,
            trusted_proxies: s.trusted_proxies.clone(),
            access_log: config.telemetry.access_log,
            trace_sampling: config.telemetry.trace_sampling,
            protected,
        };
        Snapshot {
            config,
            table,
            edge,
            upstreams,
            providers,
            cache,
            unmatched: previous.map_or_else(Arc::default, |p| p.unmatched.clone()),
            tracer,
            trace_stats,
        }
    }

    /// The limits (with their state) of the route with this id.
    pub fn route_limits(&self, id: &str) -> Option<Arc<Limits>> {
        self.table
            .values()
            .iter()
            .find(|e| &*e.id == id)
            .and_then(|e| e.limits.clone())
    }
}

/// Settings read once at start (the listeners are bound, the runtime built, the logger
/// installed): a reload that changes them says so instead of pretending.
fn restart_required(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.raw.gateway, &new.raw.gateway);
    let mut out = Vec::new();
    if o.server.listen != n.server.listen {
        out.push("server.listen");
    }
    if json_text(&o.server.tls) != json_text(&n.server.tls) {
        out.push("server.tls");
    }
    if o.server.workers != n.server.workers {
        out.push("server.workers");
    }
    if o.server.max_header_bytes != n.server.max_header_bytes {
        out.push("server.max_header_bytes");
    }
    if o.server.shutdown_grace != n.server.shutdown_grace {
        out.push("server.shutdown_grace");
    }
    if o.admin.as_ref().map(|a| &a.listen) != n.admin.as_ref().map(|a| &a.listen) {
        out.push("admin.listen");
    }
    if json_text(&o.telemetry.log_format) != json_text(&n.telemetry.log_format) {
        out.push("telemetry.log_format");
    }
    out
}

/// A fingerprint per route of everything that shapes its answers: its definition, its
/// file's settings (auth, prefix, module, ...), the backends it calls and its provider.
fn cache_generations(config: &Config) -> HashMap<String, u64> {
    use std::hash::{Hash, Hasher};
    let raw = &config.raw;
    let mut definitions: HashMap<&str, String> = HashMap::new();
    for (_, file) in &raw.routes {
        let mut settings = file.clone();
        settings.routes.clear();
        let settings = json_text(&settings);
        for r in &file.routes {
            definitions.insert(r.id.as_str(), format!("{settings}{}", json_text(r)));
        }
    }
    config
        .routes
        .iter()
        .filter(|r| r.cache.is_some())
        .map(|r| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            definitions.get(r.id.as_str()).hash(&mut h);
            for b in r.handler.backends() {
                let name = &config.backends[b.0].name;
                raw.gateway.backends.get(name).map(json_text).hash(&mut h);
            }
            if let config::RouteAuth::Provider(p) = r.auth {
                config.auth[p.0].fingerprint.hash(&mut h);
            }
            (r.id.clone(), h.finish())
        })
        .collect()
}

fn json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The cache of `previous` when its bounds did not change, without the entries of
/// routes that are gone or whose generation changed (their keys changed anyway; this
/// frees the memory at once); else a new one.
fn cache_store(
    config: &Config,
    generations: &HashMap<String, u64>,
    previous: Option<&Snapshot>,
) -> Arc<crate::cache::Store> {
    let Some(prev) = previous.filter(|p| p.cache.settings() == config.cache) else {
        return Arc::new(crate::cache::Store::new(config.cache));
    };
    // One pass over the store for every changed route.
    let changed: Vec<String> = prev
        .table
        .values()
        .iter()
        .filter(|old| {
            old.cache
                .as_ref()
                .is_some_and(|c| generations.get(&*old.id) != Some(&c.generation))
        })
        .map(|old| old.id.to_string())
        .collect();
    if !changed.is_empty() {
        prev.cache.purge(&crate::cache::Purge::Routes(changed));
    }
    prev.cache.clone()
}

/// Everything that carries credentials, across providers.
fn carriers(config: &Config) -> crate::cache::Carriers {
    let mut c = crate::cache::Carriers {
        headers: vec![http::header::AUTHORIZATION],
        ..Default::default()
    };
    for p in &config.auth {
        match &p.kind {
            config::AuthKind::Jwt(j) => {
                for s in &j.sources {
                    if let config::TokenSource::Cookie(name) = s {
                        c.cookies.push(name.clone());
                    }
                }
            }
            config::AuthKind::ApiKeys(a) => {
                c.headers.push(a.header.clone());
                c.query.extend(a.query.clone());
            }
        }
    }
    c
}

/// Reads and checks the configuration again (for `POST /reload`).
pub type Reloader = Box<dyn Fn() -> Result<Config, config::Error> + Send + Sync>;

/// The running gateway.
pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    draining: AtomicBool,
    reloader: std::sync::OnceLock<Reloader>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// What reloads did.
    pub reloads: ReloadStats,
}

/// Reload counts and the last refusal, for the admin API and metrics.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// Reloads that swapped a new configuration in.
    pub succeeded: std::sync::atomic::AtomicU64,
    /// Reloads refused (the running configuration stayed).
    pub failed: std::sync::atomic::AtomicU64,
    /// The errors of the last refused reload (cleared by a successful one).
    pub last_errors: std::sync::Mutex<Vec<String>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("draining", &self.is_draining())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway serving `config`.
    pub fn new(config: Config) -> Arc<Gateway> {
        Arc::new(Gateway {
            snapshot: ArcSwap::from_pointee(Snapshot::build(config, None)),
            draining: AtomicBool::new(false),
            reloader: std::sync::OnceLock::new(),
            reloading: tokio::sync::Mutex::new(()),
            reloads: ReloadStats::default(),
        })
    }

    /// Sets how the configuration is read again (once; the first one stays).
    pub fn set_reloader(&self, reloader: Reloader) {
        let _ = self.reloader.set(reloader);
    }

    /// Reads, checks and swaps in the configuration again: `Ok(None)` when this gateway
    /// has no way to (the demo's built-in files), `Err` with every error when the new
    /// configuration is refused (the running one stays).
    /// On success: the new snapshot, and the settings that changed but only take effect
    /// after a restart (listeners, TLS, workers, log format, head-size cap, drain time).
    pub async fn reload(
        self: &Arc<Self>,
    ) -> Result<Option<(Arc<Snapshot>, Vec<&'static str>)>, config::Error> {
        let _one = self.reloading.lock().await;
        if self.reloader.get().is_none() {
            return Ok(None);
        }
        let this = self.clone();
        let loaded =
            match tokio::task::spawn_blocking(move || this.reloader.get().map(|r| r())).await {
                Ok(loaded) => loaded,
                Err(_) => Some(Err(config::Error {
                    diagnostics: vec![config::Diagnostic {
                        file: String::new(),
                        line: 0,
                        key: String::new(),
                        message: "reading the configuration failed unexpectedly".into(),
                    }],
                })),
            };
        let errors = |e: &config::Error| -> Vec<String> {
            e.diagnostics.iter().map(ToString::to_string).collect()
        };
        match loaded {
            Some(Ok(config)) => {
                let hash = config.hash.clone();
                let restart = restart_required(&self.snapshot().config, &config);
                for setting in &restart {
                    tracing::warn!(target: "portico::reload", setting, "changed, but takes effect only after a restart");
                }
                self.swap(config);
                self.reloads.succeeded.fetch_add(1, Ordering::Relaxed);
                self.reloads
                    .last_errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                tracing::info!(target: "portico::reload", hash = %hash, "configuration reloaded");
                Ok(Some((self.snapshot(), restart)))
            }
            Some(Err(e)) => {
                self.reloads.failed.fetch_add(1, Ordering::Relaxed);
                let list = errors(&e);
                for message in &list {
                    tracing::error!(target: "portico::reload", error = %message, "reload refused; the running configuration stays");
                }
                *self
                    .reloads
                    .last_errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = list;
                Err(e)
            }
            None => Ok(None),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Replaces the configuration atomically; requests in flight keep theirs.
    pub fn swap(&self, config: Config) {
        let old = self.snapshot.load_full();
        self.snapshot
            .store(Arc::new(Snapshot::build(config, Some(&old))));
    }

    /// Marks the gateway as draining (`/ready` answers 503).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the gateway is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{Source, Sources};

    fn config(limit: &str, secret: &str) -> Config {
        let gateway = format!(
            "backends:\n  b:\n    url: http://127.0.0.1:9\nauth:\n  users:\n    jwt:\n      algorithms: [HS256]\n      keys: [{{ kid: k, secret: {secret} }}]\n"
        );
        let routes = format!(
            "team: t\nprefix: /t\nauth: users\nroutes:\n  - id: limited\n    path: /a\n    rate_limit: [{limit}]\n    proxy: {{ backend: b }}\n  - id: other\n    path: /b\n    rate_limit: [{{ key: ip, rate: 1/s }}]\n    proxy: {{ backend: b }}\n"
        );
        load(gateway, routes)
    }

    /// A valid config of `gateway.yaml` and one route file.
    fn load(gateway: String, routes: String) -> Config {
        let sources = Sources {
            dir: PathBuf::from("."),
            gateway: Source {
                name: "gateway.yaml".into(),
                text: gateway,
            },
            routes: vec![Source {
                name: "routes/t.yaml".into(),
                text: routes,
            }],
            files: Vec::new(),
        };
        crate::config::load(&sources, &|_| None).expect("valid test config")
    }

    /// A reload keeps the buckets of unchanged limits and the running provider of an
    /// unchanged provider (its keys and token cache); changed ones start fresh.
    #[tokio::test]
    async fn reloads_keep_unchanged_limits_and_providers() {
        let secret = "0123456789abcdef0123456789abcdef";
        let first = Snapshot::build(config("{ key: subject, rate: 5/s }", secret), None);
        let same = Snapshot::build(config("{ key: subject, rate: 5/s }", secret), Some(&first));
        let limits = |s: &Snapshot, id: &str| s.route_limits(id).expect("limited route");
        assert!(Arc::ptr_eq(
            &limits(&first, "limited"),
            &limits(&same, "limited")
        ));
        assert!(Arc::ptr_eq(
            &limits(&first, "other"),
            &limits(&same, "other")
        ));
        assert!(Arc::ptr_eq(
            &first.providers["users"].1,
            &same.providers["users"].1
        ));

        let changed = Snapshot::build(
            config(
                "{ key: subject, rate: 6/s }",
                "another-secret-of-32-bytes-at-least",
            ),
            Some(&same),
        );
        assert!(!Arc::ptr_eq(
            &limits(&same, "limited"),
            &limits(&changed, "limited")
        ));
        assert!(Arc::ptr_eq(
            &limits(&same, "other"),
            &limits(&changed, "other")
        ));
        assert!(!Arc::ptr_eq(
            &same.providers["users"].1,
            &changed.providers["users"].1
        ));
    }

    fn cached(max_size: &str, ttl_a: &str) -> Config {
        let gateway = format!(
            "backends:\n  b:\n    url: http://127.0.0.1:9\ncache: {{ max_size: {max_size} }}\n"
        );
        let routes = format!(
            "team: t\nprefix: /t\nauth: none\nroutes:\n  - id: a\n    path: /a\n    proxy: {{ backend: b }}\n    cache: {{ ttl: {ttl_a} }}\n  - id: b\n    path: /b\n    proxy: {{ backend: b }}\n    cache: {{ ttl: 5s }}\n"
        );
        load(gateway, routes)
    }

    /// Stores an answer for GET `path` through the route's cache, as a request would.
    async fn fill(s: &Snapshot, path: &str) {
        use crate::body::{ClientBody, ResponseBody};
        use crate::cache::{Origin, Prepared};
        let crate::routing::Lookup::Found { value, .. } = s.table.lookup(&http::Method::GET, path)
        else {
            panic!("no route for {path}");
        };
        let cached = value.cache.as_ref().expect("a cached route");
        let mut req = http::Request::get(path)
            .body(ClientBody::read(bytes::Bytes::new()))
            .unwrap();
        let origin = Origin {
            target: None,
            path,
            query: None,
            identity: None,
            trusted_peer: false,
            tls: false,
        };
        let Prepared::Keyed(keyed) = cached.prepare(&mut req, &origin) else {
            panic!("bypassed");
        };
        let answer = http::Response::new(ResponseBody::full("stored"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let (res, status) = cached
            .settle(&keyed, req.headers(), Ok(answer), None, deadline)
            .await;
        assert!(res.is_ok());
        assert!(status.to_str().unwrap().contains("stored"), "{status:?}");
    }

    /// A reload keeps the cache and the entries of unchanged routes; a route whose
    /// definition changed loses its entries; new bounds make a new cache.
    #[tokio::test]
    async fn reloads_keep_the_cache_but_drop_changed_routes_entries() {
        let first = Snapshot::build(cached("1MiB", "5s"), None);
        fill(&first, "/t/a").await;
        fill(&first, "/t/b").await;
        assert_eq!(first.cache.usage().0, 2);
        let same = Snapshot::build(cached("1MiB", "5s"), Some(&first));
        assert!(Arc::ptr_eq(&first.cache, &same.cache));
        assert_eq!(same.cache.usage().0, 2);
        let changed = Snapshot::build(cached("1MiB", "9s"), Some(&same));
        assert!(Arc::ptr_eq(&same.cache, &changed.cache));
        assert_eq!(
            changed.cache.usage().0,
            1,
            "route a's entry is gone, b's stays"
        );
        let resized = Snapshot::build(cached("2MiB", "9s"), Some(&changed));
        assert!(!Arc::ptr_eq(&changed.cache, &resized.cache));
        assert_eq!(resized.cache.usage().0, 0);
    }

    fn with_backends(c_failures: u32) -> Config {
        let gateway = format!(
            "backends:\n  b:\n    url: http://127.0.0.1:9\n  c:\n    urls: [http://127.0.0.1:10, http://127.0.0.1:11]\n    breaker: {{ consecutive_failures: {c_failures} }}\n    retry: {{ attempts: 1 }}\n"
        );
        let routes = "team: t\nprefix: /t\nauth: none\nroutes:\n  - id: b\n    path: /b\n    proxy: { backend: b }\n  - id: c\n    path: /c\n    proxy: { backend: c }\n";
        load(gateway, routes.into())
    }

    /// A reload keeps the client stack (pools, breakers, budget, health) of a backend
    /// whose settings did not change; a changed backend gets a fresh one.
    #[tokio::test]
    async fn reloads_keep_unchanged_backend_stacks() {
        let first = Snapshot::build(with_backends(5), None);
        let same = Snapshot::build(with_backends(5), Some(&first));
        assert!(Arc::ptr_eq(&first.upstreams["b"], &same.upstreams["b"]));
        assert!(Arc::ptr_eq(&first.upstreams["c"], &same.upstreams["c"]));
        let changed = Snapshot::build(with_backends(6), Some(&same));
        assert!(Arc::ptr_eq(&same.upstreams["b"], &changed.upstreams["b"]));
        assert!(!Arc::ptr_eq(&same.upstreams["c"], &changed.upstreams["c"]));
    }
}
