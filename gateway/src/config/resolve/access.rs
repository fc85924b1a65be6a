//! Who may call a route: a route file's `auth`, `require` and `cors`, with the route's
//! overrides, and the rate-limit keys that need an identity.

use std::sync::Arc;

use http::{HeaderName, Method};

use super::super::load::Parsed;
use super::super::model::*;
use super::super::raw::{self, RoutesFile};
use super::Resolver;
use super::routes::Known;
use crate::rate_limit::{Key as LimitKey, Limit};

/// A file's defaults for its routes.
#[derive(Debug, Default)]
pub(super) struct FileDefaults {
    pub(super) auth: Option<RouteAuth>,
    pub(super) require: Option<Require>,
    pub(super) cors: Option<Arc<Cors>>,
    pub(super) limits: Vec<Limit>,
    pub(super) layer: Option<Arc<dyn crate::extend::Layer>>,
}

impl Resolver<'_> {
    /// `auth: NAME | none` → the route's auth.
    pub(super) fn auth_ref(
        &mut self,
        file: &Parsed<RoutesFile>,
        key: &str,
        name: &str,
        known: &Known<'_>,
    ) -> Option<RouteAuth> {
        if name == "none" {
            return Some(RouteAuth::Public);
        }
        if let Some(id) = known.provider_ids.get(name) {
            return Some(RouteAuth::Provider(*id));
        }
        if !known.broken_providers.contains(&name) {
            self.errors.push(file.diag(
                key,
                format!(
                    "unknown auth provider `{name}` (write `none` for a public route); {}",
                    known.defined("auth", known.provider_ids.keys())
                ),
            ));
        }
        None
    }

    pub(super) fn require(&mut self, r: &raw::Require) -> Require {
        Require {
            scopes: r.scopes.clone(),
            roles: r.roles.clone(),
            claims: r
                .claims
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    pub(super) fn cors(&mut self, file: &Parsed<RoutesFile>, c: &raw::Cors) -> Option<Cors> {
        let before = self.errors.len();
        let any = c.origins.iter().any(|o| o == "*");
        if c.origins.is_empty() {
            self.errors
                .push(file.diag("cors.origins", "list at least one origin"));
        }
        if any && c.origins.len() > 1 {
            self.errors
                .push(file.diag("cors.origins", "`*` allows every origin; list it alone"));
        }
        if any && c.credentials {
            self.errors.push(file.diag(
                "cors",
                "browsers refuse credentials with origin `*`; list the origins",
            ));
        }
        let mut origins = Vec::new();
        for (i, o) in c.origins.iter().enumerate().filter(|(_, o)| *o != "*") {
            match o.parse::<http::Uri>() {
                Ok(u)
                    if matches!(u.scheme_str(), Some("http" | "https"))
                        && u.authority().is_some()
                        && u.path_and_query().is_none_or(|p| p.as_str() == "/") =>
                {
                    origins.push(o.trim_end_matches('/').to_ascii_lowercase())
                }
                _ => self.errors.push(file.diag(
                    format!("cors.origins[{i}]"),
                    format!("`{o}` is not an origin like https://shop.example.com"),
                )),
            }
        }
        let methods = c.methods.as_ref().map(|ms| {
            ms.iter()
                .enumerate()
                .filter_map(|(i, m)| match Method::from_bytes(m.as_bytes()) {
                    Ok(method) if m.to_ascii_uppercase() == *m => Some(method),
                    _ => {
                        self.errors.push(file.diag(
                            format!("cors.methods[{i}]"),
                            format!("`{m}` is not a method (write methods in capitals)"),
                        ));
                        None
                    }
                })
                .collect()
        });
        let mut names = |list: &[String], what: &str| -> Vec<HeaderName> {
            list.iter()
                .enumerate()
                .filter_map(|(i, h)| match HeaderName::from_bytes(h.as_bytes()) {
                    Ok(n) => Some(n),
                    Err(_) => {
                        self.errors.push(file.diag(
                            format!("cors.{what}[{i}]"),
                            format!("`{h}` is not a header name"),
                        ));
                        None
                    }
                })
                .collect()
        };
        let headers = c.headers.as_ref().map(|h| names(h, "headers"));
        let expose = names(&c.expose, "expose");
        if self.errors.len() != before {
            return None;
        }
        Some(Cors {
            origins,
            credentials: c.credentials,
            methods,
            headers,
            expose,
            max_age: c.max_age.map(|d| d.0),
        })
    }

    /// Checks the pieces that need an identity against the route's auth.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn check_identity_needs(
        &mut self,
        file: &Parsed<RoutesFile>,
        key: &str,
        auth: RouteAuth,
        require: Option<&Require>,
        limits: &[Limit],
        limits_from_file: bool,
        known: &Known<'_>,
    ) {
        let provider = match auth {
            RouteAuth::Provider(id) => known.providers.get(id.0),
            _ => None,
        };
        let whose = if limits_from_file {
            "the file's rate_limit"
        } else {
            "rate_limit"
        };
        // The place to point at: the route's own limit, or the route for inherited ones.
        let limit_key = |i: usize| {
            if limits_from_file {
                key.to_string()
            } else {
                format!("{key}.rate_limit[{i}].key")
            }
        };
        if provider.is_none() && !matches!(auth, RouteAuth::Provider(_)) {
            if require.is_some() {
                self.errors.push(file.diag(
                    format!("{key}.require"),
                    "`require` needs an authenticated route (set `auth` to a provider)",
                ));
            }
            for (i, l) in limits.iter().enumerate() {
                if matches!(
                    l.key,
                    LimitKey::Subject | LimitKey::ApiKey | LimitKey::Claim(_)
                ) {
                    self.errors.push(file.diag(
                        limit_key(i),
                        format!(
                            "{whose} key `{}` needs an authenticated route (set `auth` to a provider)",
                            l.key
                        ),
                    ));
                }
            }
            return;
        }
        let Some(provider) = provider else { return };
        let is_jwt = matches!(provider.kind, AuthKind::Jwt(_));
        for (i, l) in limits.iter().enumerate() {
            match &l.key {
                LimitKey::ApiKey if is_jwt => self.errors.push(file.diag(
                    limit_key(i),
                    format!(
                        "{whose} key `api_key` needs an api_keys provider; `{}` is a JWT provider",
                        provider.name
                    ),
                )),
                LimitKey::Claim(_) if !is_jwt => self.errors.push(file.diag(
                    limit_key(i),
                    format!(
                        "{whose} key `{}` needs a JWT provider; `{}` uses API keys",
                        l.key, provider.name
                    ),
                )),
                _ => {}
            }
        }
        if let Some(r) = require
            && !is_jwt
            && !r.claims.is_empty()
        {
            self.errors.push(file.diag(
                format!("{key}.require.claims"),
                format!(
                    "`require.claims` needs a JWT provider; `{}` uses API keys",
                    provider.name
                ),
            ));
        }
    }
}
