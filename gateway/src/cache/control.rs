//! What a backend's answer allows a shared cache to do (RFC 9111): `Cache-Control`,
//! `Expires`, `Age`, `Vary`, `Set-Cookie`, and the route's own rules.

use std::time::{Duration, SystemTime};

use http::header::{AGE, CACHE_CONTROL, DATE, EXPIRES, HeaderName, SET_COOKIE, VARY};
use http::{HeaderMap, StatusCode};

use crate::config::RouteCache;

/// The response directives of `Cache-Control` that a shared cache obeys.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (with or without field names: treated as "revalidate every time").
    pub no_cache: bool,
    /// `private` (with or without field names).
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate`.
    pub proxy_revalidate: bool,
    /// `max-age=N`.
    pub max_age: Option<u64>,
    /// `s-maxage=N`.
    pub s_maxage: Option<u64>,
}

impl Directives {
    /// Parses every `Cache-Control` line; unknown directives are ignored, and a malformed
    /// `max-age` makes the answer stale (RFC 9111 §4.2.1).
    pub fn parse(headers: &HeaderMap) -> Directives {
        let mut d = Directives::default();
        for line in headers.get_all(CACHE_CONTROL) {
            let Ok(text) = line.to_str() else {
                d.no_store = true;
                continue;
            };
            for item in text.split(',') {
                let (name, value) = match item.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                    None => (item.trim(), None),
                };
                let seconds = || Some(value.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0));
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => d.no_store = true,
                    "no-cache" => d.no_cache = true,
                    "private" => d.private = true,
                    "public" => d.public = true,
                    "must-revalidate" => d.must_revalidate = true,
                    "proxy-revalidate" => d.proxy_revalidate = true,
                    "max-age" => d.max_age = d.max_age.min(seconds()).or(seconds()),
                    "s-maxage" => d.s_maxage = d.s_maxage.min(seconds()).or(seconds()),
                    _ => {}
                }
            }
        }
        d
    }

    /// Whether a stale copy may be served at all (RFC 9111 §4.2.4): not after
    /// `must-revalidate`, `proxy-revalidate`, `s-maxage` or `no-cache`.
    pub fn allows_stale(&self) -> bool {
        !(self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some() || self.no_cache)
    }
}

/// What the request brought that decides whether its answer may be stored.
#[derive(Debug, Clone, Copy)]
pub struct Asked {
    /// The request carried credentials (`Authorization`, a session cookie, an API key).
    pub credentials: bool,
}

/// How a storable answer is kept.
#[derive(Debug, Clone)]
pub struct Keep {
    /// Fresh for this long from now.
    pub fresh_for: Duration,
    /// The age the answer already had (`Age`).
    pub age: Duration,
    /// Served stale while one refresh runs.
    pub stale_while_revalidate: Duration,
    /// Served stale when the backend fails.
    pub stale_if_error: Duration,
    /// May be served to requests with credentials (`public` or `s-maxage`).
    pub with_credentials: bool,
    /// The backend's `Vary` names, lowercase, sorted, distinct.
    pub vary: Vec<HeaderName>,
}

/// Decides whether an answer (its status and headers) may be stored, and how; or the
/// reason it may not, for `Cache-Status`'s `detail`.
pub fn storable(
    policy: &RouteCache,
    asked: Asked,
    status: StatusCode,
    headers: &HeaderMap,
) -> Result<Keep, &'static str> {
    if !policy.statuses.contains(&status) {
        return Err("status");
    }
    if headers.contains_key(SET_COOKIE) {
        return Err("set-cookie");
    }
    if headers.contains_key(&super::PARTIAL) {
        return Err("partial");
    }
    let d = Directives::parse(headers);
    if d.no_store {
        return Err("no-store");
    }
    if d.no_cache {
        return Err("no-cache");
    }
    if d.private && !policy.private {
        return Err("private");
    }
    let shared_ok = d.public || d.s_maxage.is_some();
    if asked.credentials && !policy.private && !shared_ok {
        return Err("authorization");
    }
    let vary = match vary_names(headers) {
        Some(v) => v,
        None => return Err("vary"),
    };
    // The backend's lifetime caps the route's `ttl`.
    let lifetime = match (d.s_maxage, d.max_age) {
        (Some(s), _) => Some(Duration::from_secs(s)),
        (None, Some(m)) => Some(Duration::from_secs(m)),
        (None, None) => expires_lifetime(headers),
    };
    let lifetime = lifetime.map_or(policy.ttl, |l| l.min(policy.ttl));
    let age = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    let fresh_for = lifetime.saturating_sub(age);
    if fresh_for.is_zero() {
        return Err("stale");
    }
    let (swr, sie) = if d.allows_stale() {
        (policy.stale_while_revalidate, policy.stale_if_error)
    } else {
        (Duration::ZERO, Duration::ZERO)
    };
    Ok(Keep {
        fresh_for,
        age,
        stale_while_revalidate: swr,
        stale_if_error: sie,
        with_credentials: policy.private || shared_ok,
        vary,
    })
}

/// The backend's `Vary` names (lowercase, sorted, distinct); `None` for `Vary: *` or a
/// name that is not a header name.
pub fn vary_names(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names: Vec<HeaderName> = Vec::new();
    for line in headers.get_all(VARY) {
        let text = line.to_str().ok()?;
        for item in text.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            if item == "*" {
                return None;
            }
            let name = HeaderName::from_bytes(item.as_bytes()).ok()?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Some(names)
}

/// `Expires` − `Date` (or now); an unparsable `Expires` means "already stale".
fn expires_lifetime(headers: &HeaderMap) -> Option<Duration> {
    let expires = headers.get(EXPIRES)?;
    let Some(at) = expires
        .to_str()
        .ok()
        .and_then(|t| httpdate::parse_http_date(t).ok())
    else {
        return Some(Duration::ZERO);
    };
    let date = headers
        .get(DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| httpdate::parse_http_date(t).ok())
        .unwrap_or_else(SystemTime::now);
    Some(at.duration_since(date).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn policy(private: bool) -> RouteCache {
        RouteCache {
            ttl: Duration::from_secs(60),
            vary: Vec::new(),
            stale_while_revalidate: Duration::from_secs(10),
            stale_if_error: Duration::from_secs(300),
            private,
            statuses: vec![StatusCode::OK, StatusCode::NOT_FOUND],
        }
    }

    const ANON: Asked = Asked { credentials: false };
    const CREDS: Asked = Asked { credentials: true };

    fn reason(p: &RouteCache, a: Asked, h: &[(&str, &str)]) -> &'static str {
        storable(p, a, StatusCode::OK, &headers(h)).expect_err("not storable")
    }

    #[test]
    fn directives_parse_case_insensitively_with_quotes_and_several_lines() {
        let d = Directives::parse(&headers(&[
            ("cache-control", "Public, MAX-AGE=\"30\""),
            ("cache-control", "s-maxage=10, private=\"set-cookie\""),
        ]));
        assert!(d.public && d.private);
        assert_eq!((d.max_age, d.s_maxage), (Some(30), Some(10)));
        assert!(!d.allows_stale(), "s-maxage forbids stale answers");
        assert_eq!(
            Directives::parse(&headers(&[("cache-control", "max-age=abc")])).max_age,
            Some(0)
        );
    }

    #[test]
    fn what_is_never_stored() {
        let p = policy(false);
        assert_eq!(
            reason(&p, ANON, &[("cache-control", "no-store")]),
            "no-store"
        );
        assert_eq!(
            reason(&p, ANON, &[("cache-control", "no-cache")]),
            "no-cache"
        );
        assert_eq!(reason(&p, ANON, &[("cache-control", "private")]), "private");
        assert_eq!(reason(&p, ANON, &[("set-cookie", "a=b")]), "set-cookie");
        assert_eq!(reason(&p, ANON, &[("vary", "Accept, *")]), "vary");
        assert_eq!(reason(&p, ANON, &[("portico-partial", "x")]), "partial");
        assert_eq!(reason(&p, ANON, &[("cache-control", "max-age=0")]), "stale");
        assert_eq!(
            reason(&p, ANON, &[("cache-control", "max-age=10"), ("age", "10")]),
            "stale"
        );
        assert_eq!(reason(&p, ANON, &[("expires", "not a date")]), "stale");
        assert_eq!(
            storable(&p, ANON, StatusCode::CREATED, &HeaderMap::new()).unwrap_err(),
            "status"
        );
    }

    #[test]
    fn credentials_need_public_or_s_maxage_unless_keyed_by_caller() {
        let shared = policy(false);
        assert_eq!(reason(&shared, CREDS, &[]), "authorization");
        assert_eq!(
            reason(&shared, CREDS, &[("cache-control", "max-age=5")]),
            "authorization"
        );
        let public = storable(
            &shared,
            CREDS,
            StatusCode::OK,
            &headers(&[("cache-control", "public, max-age=5")]),
        )
        .unwrap();
        assert!(public.with_credentials);
        assert!(
            storable(
                &shared,
                CREDS,
                StatusCode::OK,
                &headers(&[("cache-control", "s-maxage=5")])
            )
            .is_ok()
        );
        // Per caller: `private` answers and credentials are fine.
        let own = storable(
            &policy(true),
            CREDS,
            StatusCode::OK,
            &headers(&[("cache-control", "private, max-age=5")]),
        )
        .unwrap();
        assert!(own.with_credentials);
        // Without credentials, a plain answer is storable but not for credentialed requests.
        assert!(
            !storable(&shared, ANON, StatusCode::OK, &HeaderMap::new())
                .unwrap()
                .with_credentials
        );
    }

    #[test]
    fn lifetime_is_the_smallest_of_ttl_and_the_backends_less_age() {
        let p = policy(false);
        let keep = |h: &[(&str, &str)]| storable(&p, ANON, StatusCode::OK, &headers(h)).unwrap();
        assert_eq!(keep(&[]).fresh_for, Duration::from_secs(60));
        assert_eq!(
            keep(&[("cache-control", "max-age=600")]).fresh_for,
            Duration::from_secs(60)
        );
        assert_eq!(
            keep(&[("cache-control", "max-age=20, s-maxage=30")]).fresh_for,
            Duration::from_secs(30)
        );
        let aged = keep(&[("cache-control", "max-age=20"), ("age", "5")]);
        assert_eq!(
            (aged.fresh_for, aged.age),
            (Duration::from_secs(15), Duration::from_secs(5))
        );
        let now = SystemTime::now();
        let expires = keep(&[
            ("date", &httpdate::fmt_http_date(now)),
            (
                "expires",
                &httpdate::fmt_http_date(now + Duration::from_secs(30)),
            ),
        ]);
        assert_eq!(expires.fresh_for, Duration::from_secs(30));
        // must-revalidate: never stale.
        let strict = keep(&[("cache-control", "max-age=20, must-revalidate")]);
        assert_eq!(
            (strict.stale_while_revalidate, strict.stale_if_error),
            (Duration::ZERO, Duration::ZERO)
        );
        assert_eq!(
            keep(&[("vary", "accept-language, Accept, accept")]).vary,
            vec![
                HeaderName::from_static("accept"),
                HeaderName::from_static("accept-language")
            ]
        );
    }
}
