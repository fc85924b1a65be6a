//! Resolving the route files: teams and prefixes, routes and their handlers, and the
//! ownership rules between files.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};

use super::super::load::Parsed;
use super::super::model::*;
use super::super::raw::{self, GatewayFile, RoutesFile};
use super::Resolver;
use super::access::FileDefaults;
use super::source::{self, Source};
use crate::rate_limit::{Key as LimitKey, Limit};
use crate::routing::{Pattern, Table};

pub(super) struct Known<'a> {
    pub(super) gateway: &'a Parsed<GatewayFile>,
    pub(super) backend_ids: &'a HashMap<String, BackendId>,
    pub(super) broken_backends: &'a [&'a str],
    pub(super) providers: &'a [AuthProvider],
    pub(super) provider_ids: &'a HashMap<String, ProviderId>,
    pub(super) broken_providers: &'a [&'a str],
}

impl Known<'_> {
    /// `gateway.yaml:LINE defines: a, b` for the names under `section` (for "unknown …"
    /// messages that name both places).
    pub(super) fn defined<'n>(
        &self,
        section: &str,
        names: impl Iterator<Item = &'n String>,
    ) -> String {
        let mut names: Vec<&str> = names.map(String::as_str).collect();
        names.sort_unstable();
        let list = if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        };
        format!(
            "{}:{} defines: {list}",
            self.gateway.name,
            self.gateway.tree.line_of(section)
        )
    }
}

/// Where a route was declared, for messages naming both places.
fn place(file: &Parsed<RoutesFile>, key: &str) -> String {
    format!("{}:{}", file.name, file.tree.line_of(key))
}

impl Resolver<'_> {
    pub(super) fn routes(
        &mut self,
        files: &[Parsed<RoutesFile>],
        known: &Known<'_>,
    ) -> (Vec<Team>, Vec<Route>) {
        let mut teams: Vec<Team> = Vec::new();
        let mut team_place: HashMap<String, String> = HashMap::new();
        let mut prefixes: Vec<(String, usize)> = Vec::new(); // (prefix, team index)
        // Each file's defaults, resolved (and their errors reported) once.
        let mut defaults: HashMap<&str, FileDefaults> = HashMap::new();
        for file in files {
            let Some(f) = &file.value else { continue };
            defaults.insert(&file.name, self.file_level(file, f, known));
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
        let no_defaults = FileDefaults::default();
        for (team_index, team) in teams.iter().enumerate() {
            let Some(file) = files.iter().find(|f| f.name == team.file) else {
                continue;
            };
            let Some(f) = &file.value else { continue };
            // The file's routes, and its GraphQL endpoint as one more route of the file.
            let mut list: Vec<(String, std::borrow::Cow<'_, raw::Route>)> = f
                .routes
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let key = format!("routes[{}]", file.original_index("routes", i));
                    (key, std::borrow::Cow::Borrowed(r))
                })
                .collect();
            if let Some(block) = &f.graphql
                && self.extensions.get("graphql").is_some()
                && let Some(r) = self.graphql_route(file, f, block)
            {
                list.push(("graphql".to_string(), std::borrow::Cow::Owned(r)));
            }
            if f.openapi {
                list.push((
                    "openapi".to_string(),
                    std::borrow::Cow::Owned(openapi_route(f)),
                ));
            }
            for (key, r) in list {
                let Some(mut route) = self.route(
                    file,
                    &key,
                    &r,
                    team,
                    TeamId(team_index),
                    &prefixes,
                    &teams,
                    known,
                    defaults.get(file.name.as_str()).unwrap_or(&no_defaults),
                ) else {
                    continue;
                };
                if let Some(other) = ids.get(&route.id) {
                    self.errors.push(file.diag(
                        format!("{key}.id"),
                        format!("route id `{}` is already used at {other}", route.id),
                    ));
                    continue;
                }
                if key == "openapi"
                    && let Handler::Static(s) = &mut route.handler
                {
                    s.openapi = true;
                }
                ids.insert(route.id.clone(), place(file, &format!("{key}.id")));
                origins.push((place(file, &key), file, key));
                routes.push(route);
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

    fn rate_limits(
        &mut self,
        file: &Parsed<RoutesFile>,
        key: &str,
        list: &[raw::RateLimit],
    ) -> Vec<Limit> {
        let mut out = Vec::new();
        for (i, l) in list.iter().enumerate() {
            let k = format!("{key}[{i}]");
            let bucket = match source::parse(&l.key) {
                Ok(Some(Source::Ip)) => Ok(LimitKey::Ip),
                Ok(Some(Source::Route)) => Ok(LimitKey::Route),
                Ok(Some(Source::Header(h))) => Ok(LimitKey::Header(h)),
                Ok(Some(Source::Subject)) => Ok(LimitKey::Subject),
                Ok(Some(Source::ApiKey)) => Ok(LimitKey::ApiKey),
                Ok(Some(Source::Claim(name))) => Ok(LimitKey::Claim(name)),
                Ok(_) => Err(format!(
                    "`{}`: expected ip, subject, api_key, claim:NAME, header:NAME or route",
                    l.key
                )),
                Err(bad_name) => Err(bad_name),
            };
            let bucket = bucket
                .map_err(|problem| self.errors.push(file.diag(format!("{k}.key"), problem)))
                .ok();
            let Ok(count) = u32::try_from(l.rate.count) else {
                self.errors
                    .push(file.diag(format!("{k}.rate"), "the count is too large"));
                continue;
            };
            if l.burst == Some(0) {
                self.errors
                    .push(file.diag(format!("{k}.burst"), "must be at least 1"));
                continue;
            }
            if let Some(key) = bucket {
                out.push(Limit {
                    key,
                    count,
                    per: l.rate.per,
                    burst: l.burst.unwrap_or(count),
                });
            }
        }
        out
    }

    /// Checks the file-wide keys; returns the file's defaults for its routes.
    fn file_level(
        &mut self,
        file: &Parsed<RoutesFile>,
        f: &RoutesFile,
        known: &Known<'_>,
    ) -> FileDefaults {
        let graphql = f.graphql.is_some() && self.extensions.get("graphql").is_none();
        self.reject_unsupported(file, "", &[("graphql", graphql)]);
        let layer = self.module(file, f);
        let default_auth = self.module_default_auth(file, f, known);
        let unset: Vec<&str> = f
            .routes
            .iter()
            .filter(|r| r.auth.is_none())
            .map(|r| r.id.as_str())
            .collect();
        if f.auth.is_none() && default_auth.is_none() && !unset.is_empty() {
            self.warnings.push(file.diag(
                "auth",
                format!(
                    "warning: no `auth` for this file, so these routes are public: {}; write `auth: none` to make that explicit, or name a provider",
                    unset.join(", ")
                ),
            ));
        }
        let auth = f
            .auth
            .as_deref()
            .and_then(|a| self.auth_ref(file, "auth", a, known))
            .or(default_auth);
        // A file-wide `require` is for the file's authenticated routes; a file without a
        // provider has none.
        if f.require.is_some() && f.auth.as_deref().is_none_or(|a| a == "none") {
            self.errors.push(file.diag(
                "require",
                "`require` needs an authenticated file (set `auth` to a provider)",
            ));
        }
        FileDefaults {
            auth,
            require: f.require.as_ref().map(|r| self.require(r)),
            cors: f
                .cors
                .as_ref()
                .and_then(|c| self.cors(file, c))
                .map(Arc::new),
            limits: match &f.rate_limit {
                Some(list) => self.rate_limits(file, "rate_limit", list),
                None => Vec::new(),
            },
            layer,
        }
    }

    /// The file's BFF module (`bff: NAME`) with its options (under `NAME:` for the
    /// built-in `mobile` and `partner`, else under `options:`), as the layer of its routes.
    fn module(
        &mut self,
        file: &Parsed<RoutesFile>,
        f: &RoutesFile,
    ) -> Option<Arc<dyn crate::extend::Layer>> {
        let blocks = [
            ("mobile", f.mobile.as_ref()),
            ("partner", f.partner.as_ref()),
            ("options", f.options.as_ref()),
        ];
        let Some(name) = f.bff.as_deref() else {
            for (key, block) in blocks {
                if block.is_some() {
                    let what = if key == "options" { "NAME" } else { key };
                    self.errors.push(file.diag(
                        key,
                        format!("`{key}` holds the options of a BFF module: add `bff: {what}`"),
                    ));
                }
            }
            return None;
        };
        let Some(module) = self.extensions.module(name).cloned() else {
            let mut known = self.extensions.module_names();
            known.sort_unstable();
            self.errors.push(file.diag(
                "bff",
                format!(
                    "unknown BFF module `{name}`; this build has: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
            return None;
        };
        let own_key = if matches!(name, "mobile" | "partner") {
            name
        } else {
            "options"
        };
        for (key, block) in blocks {
            if key != own_key && block.is_some() {
                self.errors.push(file.diag(
                    key,
                    format!(
                        "`{key}` is not the options of `bff: {name}` (they go under `{own_key}:`)"
                    ),
                ));
            }
        }
        let options = blocks
            .iter()
            .find(|(k, _)| *k == own_key)
            .and_then(|(_, b)| *b);
        module
            .layer(options)
            .map_err(|findings| self.findings(file, own_key, findings))
            .ok()
    }

    /// The auth a module's file gets without `auth:` (`partner`: the API-key provider).
    fn module_default_auth(
        &mut self,
        file: &Parsed<RoutesFile>,
        f: &RoutesFile,
        known: &Known<'_>,
    ) -> Option<RouteAuth> {
        if f.auth.is_some() {
            return None;
        }
        let name = f.bff.as_deref()?;
        if !self.extensions.module(name)?.api_keys_by_default() {
            return None;
        }
        let keyed: Vec<&AuthProvider> = known
            .providers
            .iter()
            .filter(|p| matches!(p.kind, AuthKind::ApiKeys(_)))
            .collect();
        match keyed.as_slice() {
            [one] => known
                .provider_ids
                .get(&one.name)
                .map(|id| RouteAuth::Provider(*id)),
            [] => {
                self.errors.push(file.diag(
                    "bff",
                    format!("`bff: {name}` authenticates with API keys unless the file sets `auth`, but gateway.yaml has no `api_keys` provider: add one, or set `auth` (`none` for public routes)"),
                ));
                None
            }
            several => {
                let names: Vec<&str> = several.iter().map(|p| p.name.as_str()).collect();
                self.errors.push(file.diag(
                    "bff",
                    format!("`bff: {name}`: gateway.yaml has several `api_keys` providers ({}); name one with `auth`", names.join(", ")),
                ));
                None
            }
        }
    }

    /// An extension's or module's findings as errors under `key`.
    fn findings(
        &mut self,
        file: &Parsed<RoutesFile>,
        key: &str,
        findings: Vec<crate::extend::Finding>,
    ) {
        for (below, message) in findings {
            let k = if below.is_empty() {
                key.to_string()
            } else {
                format!("{key}.{below}")
            };
            self.errors.push(file.diag(k, message));
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
        defaults: &FileDefaults,
    ) -> Option<Route> {
        let before = self.errors.len();
        if r.id.trim().is_empty() || r.id.contains(char::is_whitespace) {
            self.errors
                .push(file.diag(format!("{key}.id"), "a route id must be a non-empty word"));
        }
        let unsupported = [
            (
                "aggregate",
                r.aggregate.is_some() && self.extensions.get("aggregate").is_none(),
            ),
            (
                "handler",
                r.handler.is_some() && self.extensions.get("handler").is_none(),
            ),
        ];
        self.reject_unsupported(file, key, &unsupported);
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
            r.graphql.is_some(),
        ];
        let handler_count = handlers.iter().filter(|h| **h).count();
        if handler_count != 1 {
            self.errors.push(file.diag(
                key,
                format!("a route needs exactly one handler (proxy, static, aggregate, split or handler); found {handler_count}"),
            ));
        }
        // A route's own auth, require and limits replace the file's.
        let auth = match &r.auth {
            Some(a) => self.auth_ref(file, &format!("{key}.auth"), a, known),
            None => Some(defaults.auth.unwrap_or(RouteAuth::Unset)),
        };
        let handler = if let Some(p) = &r.proxy {
            self.proxy(file, key, p, pattern.as_ref(), team, known)
        } else if let Some(s) = &r.static_ {
            self.static_handler(file, key, s)
        } else if let Some(s) = &r.split {
            self.split(file, key, s, team, known)
        } else if let Some(name) = &r.handler {
            let authenticated = matches!(auth, Some(RouteAuth::Provider(_)));
            self.extension(
                file,
                &format!("{key}.handler"),
                "handler",
                &serde_json::Value::String(name.clone()),
                own.as_ref(),
                authenticated,
                known,
            )
        } else if let Some(block) = &r.graphql {
            let authenticated = matches!(auth, Some(RouteAuth::Provider(_)));
            self.extension(
                file,
                key,
                "graphql",
                block,
                own.as_ref(),
                authenticated,
                known,
            )
        } else if let Some(block) = &r.aggregate {
            let authenticated = matches!(auth, Some(RouteAuth::Provider(_)));
            self.extension(
                file,
                &format!("{key}.aggregate"),
                "aggregate",
                block,
                own.as_ref(),
                authenticated,
                known,
            )
        } else {
            None
        };
        let shadow = r
            .shadow
            .as_ref()
            .and_then(|s| self.shadow(file, key, s, Some(r), known));
        // A public route has nobody to require anything of: the file's `require` is for
        // its authenticated routes.
        let require = match (&r.require, auth) {
            (Some(req), _) => Some(self.require(req)),
            (None, Some(RouteAuth::Provider(_))) => defaults.require.clone(),
            (None, _) => None,
        };
        let (rate_limits, limits_from_file) = match &r.rate_limit {
            Some(list) => (
                self.rate_limits(file, &format!("{key}.rate_limit"), list),
                false,
            ),
            None => (defaults.limits.clone(), true),
        };
        if let (Some(Handler::Split(split)), Some(auth)) = (&handler, auth)
            && matches!(split.sticky, Some(Sticky::Claim(_)))
            && !matches!(auth, RouteAuth::Provider(_))
        {
            self.errors.push(file.diag(
                format!("{key}.split.sticky"),
                "`claim:` stickiness needs an authenticated route (set `auth` to a provider)",
            ));
        }
        if let Some(auth) = auth {
            self.check_identity_needs(
                file,
                key,
                auth,
                require.as_ref(),
                &rate_limits,
                limits_from_file,
                known,
            );
        }
        let cache = r.cache.as_ref().and_then(|c| {
            self.route_cache(file, &format!("{key}.cache"), c, auth, methods.as_deref())
        });
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
            shadow,
            rate_limits,
            auth: auth?,
            require,
            cors: defaults.cors.clone(),
            layer: defaults.layer.clone(),
            cache,
        })
    }

    /// A route's `cache:` block.
    fn route_cache(
        &mut self,
        file: &Parsed<RoutesFile>,
        key: &str,
        c: &raw::RouteCache,
        auth: Option<RouteAuth>,
        methods: Option<&[Method]>,
    ) -> Option<Arc<RouteCache>> {
        let before = self.errors.len();
        if c.ttl.0.is_zero() {
            self.errors
                .push(file.diag(format!("{key}.ttl"), "must be more than 0"));
        }
        const DAY: Duration = Duration::from_secs(86_400);
        for (name, d) in [
            ("ttl", Some(c.ttl)),
            ("stale_while_revalidate", c.stale_while_revalidate),
            ("stale_if_error", c.stale_if_error),
        ] {
            if d.is_some_and(|d| d.0 > DAY) {
                self.errors
                    .push(file.diag(format!("{key}.{name}"), "must be at most 1d"));
            }
        }
        if let Some(ms) = methods
            && !ms.iter().any(|m| *m == Method::GET || *m == Method::HEAD)
        {
            self.errors.push(file.diag(
                key.to_string(),
                "only GET and HEAD answers are cached, and this route allows neither",
            ));
        }
        let mut vary = Vec::new();
        for (i, name) in c.vary.iter().enumerate() {
            match http::HeaderName::from_bytes(name.as_bytes()) {
                Ok(n) if !vary.contains(&n) => vary.push(n),
                Ok(_) => {}
                Err(_) => self.errors.push(file.diag(
                    format!("{key}.vary[{i}]"),
                    format!("`{name}` is not a header name"),
                )),
            }
        }
        vary.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        let authenticates = matches!(auth, Some(RouteAuth::Provider(_)));
        let private = match c.scope {
            Some(raw::CacheScope::Private) if !authenticates => {
                self.errors.push(file.diag(
                    format!("{key}.scope"),
                    "`private` keeps one entry per authenticated caller, but this route does not authenticate: use `public`, or set `auth`",
                ));
                false
            }
            Some(scope) => scope == raw::CacheScope::Private,
            None => authenticates,
        };
        let statuses = match &c.statuses {
            None => [200, 203, 204, 301, 404]
                .into_iter()
                .filter_map(|s| StatusCode::from_u16(s).ok())
                .collect(),
            Some(list) => {
                let mut out = Vec::new();
                for (i, s) in list.iter().enumerate() {
                    match StatusCode::from_u16(*s) {
                        Ok(code) if (200..600).contains(s) && *s != 206 && *s != 304 => {
                            out.push(code)
                        }
                        _ => self.errors.push(file.diag(
                            format!("{key}.statuses[{i}]"),
                            format!("{s} cannot be cached: use a final status from 200 to 599 other than 206 and 304"),
                        )),
                    }
                }
                out
            }
        };
        if self.errors.len() != before {
            return None;
        }
        Some(Arc::new(RouteCache {
            ttl: c.ttl.0,
            vary,
            stale_while_revalidate: c.stale_while_revalidate.map_or(Duration::ZERO, |d| d.0),
            stale_if_error: c.stale_if_error.map_or(Duration::ZERO, |d| d.0),
            private,
            statuses,
        }))
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
        let backend = self.backend_ref(file, &format!("{key}.proxy.backend"), &p.backend, known);
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

    /// A handler built by an extension (`aggregate`, ...): its findings become errors
    /// under `key`.
    #[allow(clippy::too_many_arguments)]
    fn extension(
        &mut self,
        file: &Parsed<RoutesFile>,
        key: &str,
        kind: &str,
        block: &serde_json::Value,
        pattern: Option<&crate::routing::Pattern>,
        authenticated: bool,
        known: &Known<'_>,
    ) -> Option<Handler> {
        let extension = self.extensions.get(kind)?.clone();
        let lookup = |name: &str| match known.backend_ids.get(name) {
            Some(id) => Ok(*id),
            None if known.broken_backends.contains(&name) => Err(None),
            None => Err(Some(format!(
                "unknown backend `{name}`; {}",
                known.defined("backends", known.backend_ids.keys())
            ))),
        };
        let sources = self.sources;
        let read = |name: &str| sources.read_beside(&file.name, name);
        let info = crate::extend::RouteInfo {
            params: pattern
                .map(|p| p.param_names().map(str::to_string).collect())
                .unwrap_or_default(),
            authenticated,
            read: &read,
            backend: &lookup,
        };
        extension
            .resolve(block, &info)
            .map(Handler::Extension)
            .map_err(|findings| self.findings(file, key, findings))
            .ok()
    }

    /// The route a file's `graphql` block makes: `path` below the prefix, GET and POST,
    /// id `id` (default `TEAM-graphql`), the route's `timeout`.
    fn graphql_route(
        &mut self,
        file: &Parsed<RoutesFile>,
        f: &RoutesFile,
        block: &serde_json::Value,
    ) -> Option<raw::Route> {
        let text = |key: &str| block.get(key).and_then(serde_json::Value::as_str);
        let Some(path) = text("path") else {
            self.errors.push(file.diag(
                "graphql.path",
                "missing: the endpoint's path below the file's prefix (like /graphql)",
            ));
            return None;
        };
        let timeout = match block.get("timeout") {
            None => None,
            Some(v) => match serde_json::from_value::<crate::config::units::Duration>(v.clone()) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.errors
                        .push(file.diag("graphql.timeout", e.to_string()));
                    return None;
                }
            },
        };
        let id = text("id").map_or_else(|| format!("{}-graphql", f.team), str::to_string);
        Some(raw::Route {
            timeout,
            graphql: Some(block.clone()),
            ..raw::Route::generated(id, path.to_string(), &["GET", "POST"])
        })
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
            openapi: false,
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

/// The route that serves a file's OpenAPI document (`openapi: true`): GET
/// `<prefix>/openapi.json`, a static answer whose body is filled in after resolution.
fn openapi_route(f: &RoutesFile) -> raw::Route {
    raw::Route {
        static_: Some(raw::Static {
            status: 200,
            headers: std::collections::BTreeMap::from([(
                "content-type".to_string(),
                "application/json".to_string(),
            )]),
            body: Some(serde_json::json!({})),
        }),
        ..raw::Route::generated(
            format!("{}-openapi", f.team),
            "/openapi.json".into(),
            &["GET"],
        )
    }
}
