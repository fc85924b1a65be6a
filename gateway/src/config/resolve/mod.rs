//! Checking the typed files and resolving them into one immutable [`Config`].
//!
//! Every rule of the contract's §2 is checked here: units and addresses, the ownership
//! rules between route files (prefixes, ids, overlapping routes, references), and keys
//! whose feature this version does not have yet (rejected, never silently ignored).
//! `gateway.yaml` is resolved here, the route files in `routes.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use ipnet::IpNet;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::error::{Diagnostic, Error};
use super::load::{Parsed, Sources, parse_file};
use super::model::*;
use super::raw::{self, GatewayFile, RoutesFile};
use crate::extend::Extensions;

mod access;
mod auth;
mod backends;
mod routes;
mod source;
mod strangler;

use routes::Known;

/// Loads, checks and resolves a configuration. Every error found is returned at once.
/// Route keys of extensions (`aggregate`, ...) are refused as not supported.
pub fn load(sources: &Sources, vars: &dyn Fn(&str) -> Option<String>) -> Result<Config, Error> {
    load_with(sources, vars, &Extensions::none())
}

/// [`load`] with the handlers of `extensions`.
pub fn load_with(
    sources: &Sources,
    vars: &dyn Fn(&str) -> Option<String>,
    extensions: &Extensions,
) -> Result<Config, Error> {
    let mut errors = Vec::new();
    let gateway: Parsed<GatewayFile> = parse_file(&sources.gateway, vars, &mut errors);
    let files: Vec<Parsed<RoutesFile>> = sources
        .routes
        .iter()
        .map(|s| parse_file(s, vars, &mut errors))
        .collect();
    let mut r = Resolver {
        errors,
        warnings: Vec::new(),
        sources,
        extensions,
    };
    let config = r.resolve(&gateway, &files);
    if r.errors.is_empty()
        && let Some(mut config) = config
    {
        config.warnings = r.warnings;
        config.hash = sources_hash(sources);
        let documents: Vec<(usize, Vec<u8>)> = config
            .routes
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(&r.handler, Handler::Static(s) if s.openapi))
            .map(|(i, r)| {
                let doc = crate::openapi::team_document(&config, r.team);
                (i, serde_json::to_vec_pretty(&doc).unwrap_or_default())
            })
            .collect();
        for (i, body) in documents {
            if let Handler::Static(s) = &mut config.routes[i].handler {
                s.body = body.into();
            }
        }
        return Ok(config);
    }
    Err(Error {
        diagnostics: r.errors,
    })
}

/// SHA-256 (hex) over every file's name and text, in order.
fn sources_hash(sources: &Sources) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for s in std::iter::once(&sources.gateway)
        .chain(&sources.routes)
        .chain(&sources.files)
    {
        for part in [s.name.as_bytes(), s.text.as_bytes()] {
            ctx.update(&(part.len() as u64).to_le_bytes());
            ctx.update(part);
        }
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Loads the environment's variables for `${NAME}`.
pub fn env_vars(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

struct Resolver<'a> {
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    sources: &'a Sources,
    extensions: &'a Extensions,
}

impl Resolver<'_> {
    /// Reports every present key of `keys` (under `parent`) as not supported yet.
    fn reject_unsupported<T>(&mut self, file: &Parsed<T>, parent: &str, keys: &[(&str, bool)]) {
        for (what, present) in keys {
            if *present {
                let key = if parent.is_empty() {
                    what.to_string()
                } else {
                    format!("{parent}.{what}")
                };
                self.errors.push(file.diag(key, not_yet(what)));
            }
        }
    }
}

fn not_yet(what: &str) -> String {
    format!(
        "`{what}` is not supported yet by this version of Portico; remove it (it would otherwise be ignored)"
    )
}

impl Resolver<'_> {
    fn resolve(
        &mut self,
        gw: &Parsed<GatewayFile>,
        files: &[Parsed<RoutesFile>],
    ) -> Option<Config> {
        let default_gw = GatewayFile::default();
        let raw_gw = gw.value.as_ref().unwrap_or(&default_gw);
        let server = self.server(gw, &raw_gw.server);
        let admin = raw_gw.admin.as_ref().and_then(|a| self.admin(gw, a));
        let cache = self.cache(gw, raw_gw.cache.as_ref());
        let otlp = self.otlp(gw, &raw_gw.telemetry);
        let (providers, provider_ids) = self.providers(gw, raw_gw);
        let mut backends = Vec::new();
        let mut backend_ids = HashMap::new();
        for (name, b) in &raw_gw.backends {
            if let Some(backend) = self.backend(gw, name, b) {
                backend_ids.insert(name.clone(), BackendId(backends.len()));
                backends.push(backend);
            }
        }
        // Backends that were dropped for their own errors must not also be reported as
        // unknown wherever they are used.
        let broken: Vec<&str> = gw
            .dropped
            .iter()
            .filter_map(|d| d.strip_prefix("backends."))
            .collect();
        // Likewise providers.
        let broken_providers: Vec<&str> = raw_gw
            .auth
            .keys()
            .filter(|n| !provider_ids.contains_key(*n))
            .map(String::as_str)
            .chain(gw.dropped.iter().filter_map(|d| d.strip_prefix("auth.")))
            .collect();
        let known = Known {
            gateway: gw,
            backend_ids: &backend_ids,
            broken_backends: &broken,
            providers: &providers,
            provider_ids: &provider_ids,
            broken_providers: &broken_providers,
        };
        let (teams, routes) = self.routes(files, &known);
        let server = server?;
        let gateway_ok = gw.value.is_some();
        if !gateway_ok {
            return None;
        }
        let raw = RawFiles {
            gateway: raw_gw.clone(),
            routes: files
                .iter()
                .filter_map(|f| f.value.clone().map(|v| (f.name.clone(), v)))
                .collect(),
        };
        Some(Config {
            server,
            admin,
            backends,
            telemetry: Telemetry {
                log_format: raw_gw.telemetry.log_format,
                access_log: raw_gw.telemetry.access_log,
                trace_sampling: raw_gw
                    .telemetry
                    .trace_sampling
                    .map_or(1.0, |p| p.fraction()),
                otlp,
            },
            teams,
            routes,
            auth: providers,
            cache,
            warnings: Vec::new(),
            raw: Arc::new(raw),
            hash: String::new(),
        })
    }

    /// The trace exporter: an http(s) URL without credentials, query or fragment;
    /// `/v1/traces` is appended unless the path already ends with it.
    fn otlp(&mut self, gw: &Parsed<GatewayFile>, t: &raw::Telemetry) -> Option<Otlp> {
        let service_name = t.service_name.clone().unwrap_or_else(|| "portico".into());
        if service_name.trim().is_empty() || service_name.chars().any(char::is_control) {
            self.errors.push(gw.diag(
                "telemetry.service_name",
                "must be a non-empty name without control characters",
            ));
        }
        let url = t.otlp_endpoint.as_ref()?;
        let bad = |why: &str| format!("`{url}` is not a usable OTLP endpoint: {why}");
        let uri = match url.parse::<http::Uri>() {
            Ok(uri) => uri,
            Err(_) => {
                self.errors
                    .push(gw.diag("telemetry.otlp_endpoint", bad("not a URL")));
                return None;
            }
        };
        let problem = if !matches!(uri.scheme_str(), Some("http" | "https")) {
            Some("it must start with http:// or https://")
        } else if uri.authority().is_none_or(|a| a.host().is_empty()) {
            Some("it has no host")
        } else if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            Some("credentials in the URL are not supported")
        } else if uri.query().is_some() || url.contains('#') {
            Some("it may not have a query or fragment")
        } else {
            None
        };
        if let Some(why) = problem {
            self.errors
                .push(gw.diag("telemetry.otlp_endpoint", bad(why)));
            return None;
        }
        let path = uri.path().trim_end_matches('/');
        let path = if path.ends_with("/v1/traces") {
            path.to_string()
        } else {
            format!("{path}/v1/traces")
        };
        let endpoint = http::Uri::builder()
            .scheme(uri.scheme_str().unwrap_or("http"))
            .authority(uri.authority().map_or("", |a| a.as_str()))
            .path_and_query(path)
            .build()
            .ok()?;
        Some(Otlp {
            endpoint,
            service_name,
        })
    }

    /// The cache's bounds; without a `cache:` block, 64MiB for routes that cache.
    fn cache(&mut self, gw: &Parsed<GatewayFile>, c: Option<&raw::Cache>) -> CacheSettings {
        const DEFAULT_SIZE: u64 = 64 << 20;
        const DEFAULT_ENTRY: u64 = 1 << 20;
        let Some(c) = c else {
            return CacheSettings {
                max_size: DEFAULT_SIZE,
                max_entry_size: DEFAULT_ENTRY as usize,
            };
        };
        if c.max_size.0 < 64 << 10 {
            self.errors
                .push(gw.diag("cache.max_size", "must be at least 64KiB"));
        }
        let entry = match c.max_entry_size {
            Some(e) => {
                if e.0 == 0 || e.0 > c.max_size.0 {
                    self.errors.push(gw.diag(
                        "cache.max_entry_size",
                        "must be more than 0 and at most `max_size`",
                    ));
                }
                e.0
            }
            None => DEFAULT_ENTRY.min(c.max_size.0),
        };
        CacheSettings {
            max_size: c.max_size.0,
            max_entry_size: usize::try_from(entry.min(u64::from(u32::MAX))).unwrap_or(usize::MAX),
        }
    }

    fn server(&mut self, gw: &Parsed<GatewayFile>, s: &raw::Server) -> Option<Server> {
        let listen = self.addr(gw, "server.listen", &s.listen);
        if s.workers == Some(0) {
            self.errors
                .push(gw.diag("server.workers", "must be at least 1"));
        }
        if s.max_header_bytes.0 < 1024 {
            self.errors
                .push(gw.diag("server.max_header_bytes", "must be at least 1KiB"));
        }
        if s.request_timeout.0.is_zero() {
            self.errors
                .push(gw.diag("server.request_timeout", "must be more than 0"));
        }
        let mut trusted = Vec::new();
        for (i, p) in s.trusted_proxies.iter().enumerate() {
            let parsed = p
                .parse::<IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(net) => trusted.push(net),
                Err(_) => self.errors.push(gw.diag(
                    format!("server.trusted_proxies[{i}]"),
                    format!("`{p}` is not an IP address or CIDR range"),
                )),
            }
        }
        let tls = s.tls.as_ref().and_then(|t| self.tls(gw, t));
        Some(Server {
            listen: listen?,
            workers: s.workers,
            tls,
            max_body: s.max_body.0,
            max_header_bytes: usize::try_from(s.max_header_bytes.0).unwrap_or(usize::MAX),
            request_timeout: s.request_timeout.0,
            shutdown_grace: s.shutdown_grace.0,
            trusted_proxies: trusted,
        })
    }

    fn addr(&mut self, gw: &Parsed<GatewayFile>, key: &str, text: &str) -> Option<SocketAddr> {
        match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.errors.push(gw.diag(
                    key,
                    format!("`{text}` is not an address like 127.0.0.1:8080"),
                ));
                None
            }
        }
    }

    fn tls(&mut self, gw: &Parsed<GatewayFile>, t: &raw::Tls) -> Option<Tls> {
        let cert_path = self.sources.dir.join(&t.cert);
        let key_path = self.sources.dir.join(&t.key);
        let certs: Result<Vec<CertificateDer<'static>>, _> =
            CertificateDer::pem_file_iter(&cert_path).and_then(|it| it.collect());
        let certs = match certs {
            Ok(c) if !c.is_empty() => Some(c),
            Ok(_) => {
                self.errors.push(gw.diag(
                    "server.tls.cert",
                    format!("{} holds no certificate", t.cert),
                ));
                None
            }
            Err(e) => {
                self.errors.push(gw.diag(
                    "server.tls.cert",
                    format!("cannot read certificate {}: {e}", t.cert),
                ));
                None
            }
        };
        let key = match PrivateKeyDer::from_pem_file(&key_path) {
            Ok(k) => Some(k),
            Err(e) => {
                self.errors.push(gw.diag(
                    "server.tls.key",
                    format!("cannot read private key {}: {e}", t.key),
                ));
                None
            }
        };
        let (certs, key) = (certs?, key?);
        let check = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .and_then(|b| {
            b.with_no_client_auth()
                .with_single_cert(certs.clone(), key.clone_key())
                .map_err(|e| e.to_string())
        });
        if let Err(e) = check {
            self.errors.push(gw.diag(
                "server.tls",
                format!("certificate and key do not form a usable pair: {e}"),
            ));
            return None;
        }
        Some(Tls { certs, key })
    }

    fn admin(&mut self, gw: &Parsed<GatewayFile>, a: &raw::Admin) -> Option<Admin> {
        let listen = self.addr(gw, "admin.listen", &a.listen)?;
        if a.token.as_deref().is_some_and(|t| t.trim().len() < 16) {
            self.errors
                .push(gw.diag("admin.token", "must be at least 16 characters"));
        }
        Some(Admin {
            listen,
            // A token read from a secret file often ends in a newline.
            token: a.token.as_deref().map(|t| t.trim().to_string()),
        })
    }
}
