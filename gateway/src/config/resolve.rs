//! Checking the typed files and resolving them into one immutable [`Config`].
//!
//! Every rule of the contract's §2 is checked here: units and addresses, the ownership
//! rules between route files (prefixes, ids, overlapping routes, references), and keys
//! whose feature this version does not have yet (rejected, never silently ignored).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use ipnet::IpNet;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::error::{Diagnostic, Error};
use super::load::{Parsed, Sources, parse_file};
use super::model::*;
use super::raw::{self, GatewayFile, RoutesFile};
use crate::routing::{Pattern, Table};

/// Loads, checks and resolves a configuration. Every error found is returned at once.
pub fn load(sources: &Sources, vars: &dyn Fn(&str) -> Option<String>) -> Result<Config, Error> {
    let mut errors = Vec::new();
    let gateway: Parsed<GatewayFile> = parse_file(&sources.gateway, vars, &mut errors);
    let files: Vec<Parsed<RoutesFile>> = sources
        .routes
        .iter()
        .map(|s| parse_file(s, vars, &mut errors))
        .collect();
    let mut r = Resolver { errors, sources };
    let config = r.resolve(&gateway, &files);
    if r.errors.is_empty()
        && let Some(config) = config
    {
        return Ok(config);
    }
    Err(Error {
        diagnostics: r.errors,
    })
}

/// Loads the environment's variables for `${NAME}`.
pub fn env_vars(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

struct Resolver<'a> {
    errors: Vec<Diagnostic>,
    sources: &'a Sources,
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
        if raw_gw.cache.is_some() {
            self.errors.push(gw.diag("cache", not_yet("cache")));
        }
        if raw_gw.telemetry.otlp_endpoint.is_some() {
            self.errors
                .push(gw.diag("telemetry.otlp_endpoint", not_yet("otlp_endpoint")));
        }
        for name in raw_gw.auth.keys() {
            self.errors
                .push(gw.diag(format!("auth.{name}"), not_yet("auth")));
        }
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
        let known = Known {
            gateway: gw,
            backend_ids: &backend_ids,
            broken_backends: &broken,
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
            },
            teams,
            routes,
            raw: Arc::new(raw),
        })
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
            token: a.token.clone(),
        })
    }

    fn backend(
        &mut self,
        gw: &Parsed<GatewayFile>,
        name: &str,
        b: &raw::Backend,
    ) -> Option<Backend> {
        let key = format!("backends.{name}");
        let unsupported = [
            ("max_concurrency", b.max_concurrency.is_some()),
            ("breaker", b.breaker.is_some()),
            ("retry", b.retry.is_some()),
            ("outlier", b.outlier.is_some()),
            ("hedge", b.hedge.is_some()),
            ("health", b.health.is_some()),
            ("fault", b.fault.is_some()),
        ];
        for (what, present) in unsupported {
            if present {
                self.errors
                    .push(gw.diag(format!("{key}.{what}"), not_yet(what)));
            }
        }
        let urls: Vec<(String, &String)> = match (&b.url, &b.urls) {
            (Some(u), None) => vec![(format!("{key}.url"), u)],
            (None, Some(us)) if !us.is_empty() => us
                .iter()
                .enumerate()
                .map(|(i, u)| (format!("{key}.urls[{i}]"), u))
                .collect(),
            (Some(_), Some(_)) => {
                self.errors
                    .push(gw.diag(&key, "give either `url` or `urls`, not both"));
                return None;
            }
            _ => {
                self.errors
                    .push(gw.diag(&key, "a backend needs `url` (or `urls`)"));
                return None;
            }
        };
        let mut instances = Vec::new();
        for (k, u) in urls {
            match parse_instance(u) {
                Ok(i) => instances.push(i),
                Err(msg) => self.errors.push(gw.diag(k, msg)),
            }
        }
        if b.timeout.0.is_zero() || b.connect_timeout.0.is_zero() {
            self.errors
                .push(gw.diag(&key, "timeouts must be more than 0"));
        }
        Some(Backend {
            name: name.to_string(),
            instances,
            connect_timeout: b.connect_timeout.0,
            timeout: b.timeout.0,
        })
    }
}

fn parse_instance(url: &str) -> Result<Instance, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("`{url}` is not a valid URL"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| format!("`{url}` needs a scheme (http://)"))?;
    if scheme != http::uri::Scheme::HTTP {
        return Err(format!("`{url}`: only http:// backends are supported yet"));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("`{url}` needs a host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "`{url}`: credentials in backend URLs are not allowed"
        ));
    }
    if uri.query().is_some() {
        return Err(format!(
            "`{url}`: a backend URL may not have a query string"
        ));
    }
    let base_path = uri.path().trim_end_matches('/').to_string();
    Ok(Instance {
        scheme,
        authority,
        base_path,
    })
}

struct Known<'a> {
    gateway: &'a Parsed<GatewayFile>,
    backend_ids: &'a HashMap<String, BackendId>,
    broken_backends: &'a [&'a str],
}

/// Where a route was declared, for messages naming both places.
fn place(file: &Parsed<RoutesFile>, key: &str) -> String {
    format!("{}:{}", file.name, file.tree.line_of(key))
}

impl Resolver<'_> {
    fn routes(
        &mut self,
        files: &[Parsed<RoutesFile>],
        known: &Known<'_>,
    ) -> (Vec<Team>, Vec<Route>) {
        let mut teams: Vec<Team> = Vec::new();
        let mut team_place: HashMap<String, String> = HashMap::new();
        let mut prefixes: Vec<(String, usize)> = Vec::new(); // (prefix, team index)
        for file in files {
            let Some(f) = &file.value else { continue };
            self.file_level(file, f);
            if f.team.trim().is_empty() {
                self.errors.push(file.diag("team", "must not be empty"));
            }
            if let Some(other) = team_place.get(&f.team) {
                self.errors.push(file.diag(
                    "team",
                    format!("team `{}` already owns {other}; one file per team", f.team),
                ));
            }
            team_place.insert(f.team.clone(), place(file, "team"));
            let prefix = match check_prefix(&f.prefix) {
                Ok(p) => p,
                Err(msg) => {
                    self.errors.push(file.diag("prefix", msg));
                    continue;
                }
            };
            if let Some((_, other)) = prefixes.iter().find(|(p, _)| *p == prefix) {
                let other_team: &Team = &teams[*other];
                self.errors.push(file.diag(
                    "prefix",
                    format!("prefix `{prefix}` is already owned by {} (team {}); two files may not share a prefix", other_team.file, other_team.name),
                ));
            }
            prefixes.push((prefix.clone(), teams.len()));
            teams.push(Team {
                name: f.team.clone(),
                file: file.name.clone(),
                prefix,
            });
        }

        let mut routes = Vec::new();
        let mut origins: Vec<(String, &Parsed<RoutesFile>, String)> = Vec::new(); // (place, file, key)
        let mut ids: HashMap<String, String> = HashMap::new();
        for (team_index, team) in teams.iter().enumerate() {
            let Some(file) = files.iter().find(|f| f.name == team.file) else {
                continue;
            };
            let Some(f) = &file.value else { continue };
            for (i, r) in f.routes.iter().enumerate() {
                let key = format!("routes[{}]", file.original_index("routes", i));
                if let Some(route) = self.route(
                    file,
                    &key,
                    r,
                    team,
                    TeamId(team_index),
                    &prefixes,
                    &teams,
                    known,
                ) {
                    if let Some(other) = ids.get(&route.id) {
                        self.errors.push(file.diag(
                            format!("{key}.id"),
                            format!("route id `{}` is already used at {other}", route.id),
                        ));
                        continue;
                    }
                    ids.insert(route.id.clone(), place(file, &format!("{key}.id")));
                    origins.push((place(file, &key), file, key));
                    routes.push(route);
                }
            }
        }
        let entries = routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.pattern.clone(), r.methods.clone(), i));
        if let Err(conflicts) = Table::build(entries) {
            let mut seen = std::collections::HashSet::new();
            for c in conflicts {
                if !seen.insert((c.existing, c.new)) {
                    continue;
                }
                let (ref new_place, file, ref key) = origins[c.new];
                let existing = &routes[c.existing];
                let new = &routes[c.new];
                let method = c
                    .method
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "extension methods".into());
                let message = if c.existing == c.new {
                    format!(
                        "route `{}` has a path the router cannot take: {}",
                        new.id, new.pattern
                    )
                } else {
                    format!(
                        "route `{}` ({}) and route `{}` ({} at {}) match the same requests for {method}",
                        new.id, new.pattern, existing.id, existing.pattern, origins[c.existing].0
                    )
                };
                let _ = new_place;
                self.errors.push(file.diag(format!("{key}.path"), message));
            }
        }
        (teams, routes)
    }

    fn file_level(&mut self, file: &Parsed<RoutesFile>, f: &RoutesFile) {
        let unsupported = [
            ("bff", f.bff.is_some()),
            ("require", f.require.is_some()),
            ("rate_limit", f.rate_limit.is_some()),
            ("cors", f.cors.is_some()),
            ("graphql", f.graphql.is_some()),
            ("mobile", f.mobile.is_some()),
            ("partner", f.partner.is_some()),
            ("auth", f.auth.as_deref().is_some_and(|a| a != "none")),
        ];
        for (what, present) in unsupported {
            if present {
                self.errors.push(file.diag(what, not_yet(what)));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn route(
        &mut self,
        file: &Parsed<RoutesFile>,
        key: &str,
        r: &raw::Route,
        team: &Team,
        team_id: TeamId,
        prefixes: &[(String, usize)],
        teams: &[Team],
        known: &Known<'_>,
    ) -> Option<Route> {
        let before = self.errors.len();
        if r.id.trim().is_empty() || r.id.contains(char::is_whitespace) {
            self.errors
                .push(file.diag(format!("{key}.id"), "a route id must be a non-empty word"));
        }
        let unsupported = [
            ("cache", r.cache.is_some()),
            ("require", r.require.is_some()),
            ("rate_limit", r.rate_limit.is_some()),
            ("aggregate", r.aggregate.is_some()),
            ("split", r.split.is_some()),
            ("shadow", r.shadow.is_some()),
            ("handler", r.handler.is_some()),
            ("auth", r.auth.as_deref().is_some_and(|a| a != "none")),
        ];
        for (what, present) in unsupported {
            if present {
                self.errors
                    .push(file.diag(format!("{key}.{what}"), not_yet(what)));
            }
        }
        let own = Pattern::parse(&r.path)
            .map_err(|m| self.errors.push(file.diag(format!("{key}.path"), m)))
            .ok();
        let pattern = own.as_ref().and_then(|p| {
            p.under(&team.prefix)
                .map_err(|m| self.errors.push(file.diag(format!("{key}.path"), m)))
                .ok()
        });
        if let Some(full) = &pattern {
            // A route may not reach into a longer prefix that another file owns.
            let lit = full.static_prefix();
            for (p, t) in prefixes {
                let under = lit == *p || lit.starts_with(&format!("{p}/"));
                if p.len() > team.prefix.len() && under && teams[*t].file != team.file {
                    self.errors.push(file.diag(
                        format!("{key}.path"),
                        format!(
                            "path {full} lies under prefix `{p}`, which {} (team {}) owns",
                            teams[*t].file, teams[*t].name
                        ),
                    ));
                }
            }
        }
        let methods = r.methods.as_ref().and_then(|ms| {
            if ms.is_empty() {
                self.errors.push(file.diag(
                    format!("{key}.methods"),
                    "list at least one method, or leave `methods` out for all",
                ));
                return None;
            }
            let mut out = Vec::new();
            for (i, m) in ms.iter().enumerate() {
                let upper = m.to_ascii_uppercase();
                match Method::from_bytes(upper.as_bytes()) {
                    Ok(method) if upper == *m => out.push(method),
                    _ => self.errors.push(file.diag(
                        format!("{key}.methods[{i}]"),
                        format!("`{m}` is not a method (write methods in capitals, like GET)"),
                    )),
                }
            }
            Some(out)
        });
        let handlers = [
            r.proxy.is_some(),
            r.static_.is_some(),
            r.aggregate.is_some(),
            r.split.is_some(),
            r.handler.is_some(),
        ];
        let handler_count = handlers.iter().filter(|h| **h).count();
        if handler_count != 1 {
            self.errors.push(file.diag(
                key,
                format!("a route needs exactly one handler (proxy, static, aggregate, split or handler); found {handler_count}"),
            ));
        }
        let handler = if let Some(p) = &r.proxy {
            self.proxy(file, key, p, pattern.as_ref(), team, known)
        } else if let Some(s) = &r.static_ {
            self.static_handler(file, key, s)
        } else {
            None
        };
        if self.errors.len() != before {
            return None;
        }
        Some(Route {
            id: r.id.clone(),
            team: team_id,
            origin: place(file, key),
            pattern: pattern?,
            methods,
            timeout: r.timeout.map(|t| t.0),
            handler: handler?,
        })
    }

    fn proxy(
        &mut self,
        file: &Parsed<RoutesFile>,
        key: &str,
        p: &raw::Proxy,
        pattern: Option<&Pattern>,
        team: &Team,
        known: &Known<'_>,
    ) -> Option<Handler> {
        let backend = match known.backend_ids.get(&p.backend) {
            Some(id) => Some(*id),
            None => {
                if !known.broken_backends.contains(&p.backend.as_str()) {
                    let mut names: Vec<&str> =
                        known.backend_ids.keys().map(String::as_str).collect();
                    names.sort_unstable();
                    let defined = if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    };
                    self.errors.push(file.diag(
                        format!("{key}.proxy.backend"),
                        format!(
                            "unknown backend `{}`; {}:{} defines: {defined}",
                            p.backend,
                            known.gateway.name,
                            known.gateway.tree.line_of("backends")
                        ),
                    ));
                }
                None
            }
        };
        let path = match &p.path {
            None => None,
            Some(text) => match Pattern::parse(text) {
                Ok(tpl) => {
                    if let Some(route) = pattern {
                        let names: Vec<&str> = route.param_names().collect();
                        for n in tpl.param_names() {
                            if !names.contains(&n) {
                                self.errors.push(file.diag(
                                    format!("{key}.proxy.path"),
                                    format!(
                                        "`{{{n}}}` is not a parameter of the route path {route}"
                                    ),
                                ));
                            }
                        }
                    }
                    Some(tpl)
                }
                Err(m) => {
                    self.errors.push(file.diag(format!("{key}.proxy.path"), m));
                    None
                }
            },
        };
        let strip_prefix = if team.prefix == "/" {
            0
        } else {
            team.prefix.len()
        };
        Some(Handler::Proxy(Proxy {
            backend: backend?,
            path,
            strip_prefix,
        }))
    }

    fn static_handler(
        &mut self,
        file: &Parsed<RoutesFile>,
        key: &str,
        s: &raw::Static,
    ) -> Option<Handler> {
        let status = match StatusCode::from_u16(s.status) {
            Ok(st) if (200..600).contains(&s.status) => Some(st),
            _ => {
                self.errors.push(file.diag(
                    format!("{key}.static.status"),
                    format!("{} is not a status code (200-599)", s.status),
                ));
                None
            }
        };
        let mut headers = HeaderMap::new();
        let (body, content_type) = match &s.body {
            None => (Bytes::new(), None),
            Some(serde_json::Value::String(text)) => {
                (Bytes::from(text.clone()), Some("text/plain; charset=utf-8"))
            }
            Some(v) => (Bytes::from(v.to_string()), Some("application/json")),
        };
        if let Some(ct) = content_type {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        for (name, value) in &s.headers {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                (Ok(n), Ok(v)) => {
                    headers.insert(n, v);
                }
                _ => self.errors.push(file.diag(
                    format!("{key}.static.headers.{name}"),
                    "not a valid header name and value",
                )),
            }
        }
        Some(Handler::Static(Static {
            status: status?,
            headers,
            body,
        }))
    }
}

fn check_prefix(prefix: &str) -> Result<String, String> {
    if prefix == "/" {
        return Ok(prefix.into());
    }
    let p = Pattern::parse(prefix).map_err(|m| format!("invalid prefix: {m}"))?;
    if p.param_names().next().is_some() {
        return Err(format!("prefix `{prefix}` may not contain parameters"));
    }
    if prefix.ends_with('/') {
        return Err(format!("prefix `{prefix}` must not end with `/`"));
    }
    Ok(prefix.to_string())
}
