//! JWT providers: token extraction, verification with jsonwebtoken, keys from the config
//! and from a JWKS URL, and a cache of verified tokens.
//!
//! Verification order: token found (Bearer header or cookie; two different tokens → 401)
//! → size and shape → cache (keyed by SHA-256 of the token, never past `exp`) → header:
//! `alg` in the allow-list, no unknown `crit` → key by `kid` (an unknown kid may refetch
//! the JWKS, at most once per cooldown) → signature, `exp` (required), `nbf`, `iss`,
//! `aud` with leeway. `jku`, `x5u` and embedded `jwk` headers are never followed: only
//! configured keys verify.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::jwks::Fetcher;
use super::{Failure, Identity, sha256};
use crate::config::{Jwt, JwtKey, TokenSource};

/// Longest token looked at.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest `kid` looked up.
const MAX_KID_BYTES: usize = 256;
/// Unknown kids refetch the JWKS at most this often.
const KID_REFETCH_COOLDOWN: Duration = Duration::from_secs(10);
/// A failed JWKS fetch is retried after this (or the refresh interval, if shorter).
const JWKS_RETRY: Duration = Duration::from_secs(5);
/// How long one JWKS fetch may take.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// Verified tokens kept.
const CACHE_ENTRIES: u64 = 100_000;
/// A verified token is re-verified at least this often (key rotation, revocation of keys).
const CACHE_MAX_AGE: Duration = Duration::from_secs(300);

/// The keys a provider verifies with.
#[derive(Debug, Default)]
struct KeySet {
    by_kid: HashMap<String, JwtKey>,
    unnamed: Vec<JwtKey>,
}

impl KeySet {
    fn new(inline: &[JwtKey], fetched: &[JwtKey]) -> KeySet {
        let mut set = KeySet::default();
        // Inline keys win over fetched keys with the same kid.
        for k in fetched.iter().chain(inline) {
            match &k.kid {
                Some(kid) => {
                    set.by_kid.insert(kid.clone(), k.clone());
                }
                None => set.unnamed.push(k.clone()),
            }
        }
        set
    }

    fn is_empty(&self) -> bool {
        self.by_kid.is_empty() && self.unnamed.is_empty()
    }
}

/// A running JWT provider.
pub struct JwtProvider {
    name: String,
    settings: Jwt,
    keys: ArcSwap<KeySet>,
    /// One `Validation` per allowed algorithm (jsonwebtoken wants one family per check).
    validations: HashMap<Algorithm, Validation>,
    jwks: Option<Jwks>,
    cache: moka::sync::Cache<[u8; 32], Arc<Identity>>,
    scrub: Vec<HeaderName>,
}

impl std::fmt::Debug for JwtProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtProvider")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Jwks {
    fetcher: Fetcher,
    /// Single flight: one fetch at a time; waiters then see its result.
    fetching: tokio::sync::Mutex<()>,
    /// When an unknown kid last caused a fetch.
    last_kid_fetch: Mutex<Option<Instant>>,
    /// Completed fetches (successful or not), for the single-flight check.
    generation: std::sync::atomic::AtomicU64,
}

/// Expires cached identities at `exp` + leeway, or after [`CACHE_MAX_AGE`].
struct UntilExpiry;

impl moka::Expiry<[u8; 32], Arc<Identity>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Identity>,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        let left = value.valid_until.map_or(Duration::ZERO, |t| {
            Duration::from_secs(t.saturating_sub(now_secs()))
        });
        Some(left.min(CACHE_MAX_AGE))
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl JwtProvider {
    /// Starts a provider; with a JWKS URL, its keys are fetched now and refreshed in the
    /// background for as long as the provider lives.
    pub fn start(name: &str, settings: &Jwt) -> Arc<JwtProvider> {
        let validations = settings
            .algorithms
            .iter()
            .map(|alg| {
                let mut v = Validation::new(*alg);
                v.leeway = settings.leeway.as_secs();
                v.validate_exp = true;
                v.validate_nbf = true;
                let mut required = vec!["exp"];
                if let Some(iss) = &settings.issuer {
                    v.set_issuer(&[iss]);
                    required.push("iss");
                }
                if settings.audience.is_empty() {
                    v.validate_aud = false;
                } else {
                    v.set_audience(&settings.audience);
                    required.push("aud");
                }
                v.set_required_spec_claims(&required);
                (*alg, v)
            })
            .collect();
        let scrub = if settings.forward_token {
            Vec::new()
        } else {
            vec![AUTHORIZATION]
        };
        let provider = Arc::new(JwtProvider {
            name: name.to_string(),
            keys: ArcSwap::from_pointee(KeySet::new(&settings.keys, &[])),
            validations,
            jwks: settings.jwks_url.clone().map(|url| Jwks {
                fetcher: Fetcher::new(url),
                fetching: tokio::sync::Mutex::new(()),
                last_kid_fetch: Mutex::new(None),
                generation: std::sync::atomic::AtomicU64::new(0),
            }),
            cache: moka::sync::Cache::builder()
                .max_capacity(CACHE_ENTRIES)
                .expire_after(UntilExpiry)
                .build(),
            scrub,
            settings: settings.clone(),
        });
        if provider.jwks.is_some() {
            spawn_refresh(Arc::downgrade(&provider), settings.jwks_refresh);
        }
        provider
    }

    /// Headers removed before forwarding (`Authorization` with `forward_token: false`).
    pub fn scrub(&self) -> &[HeaderName] {
        &self.scrub
    }

    /// Authenticates a request by its token.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Identity>, Failure> {
        let token = self.token(headers)?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Failure::Invalid("the token is too large"));
        }
        let digest = sha256(token.as_bytes());
        if let Some(id) = self.cache.get(&digest)
            && id.valid_until.is_some_and(|t| t > now_secs())
        {
            return Ok(id);
        }
        let identity = Arc::new(self.verify(token).await?);
        self.cache.insert(digest, identity.clone());
        Ok(identity)
    }

    /// The request's token from the configured sources. Two different tokens → refused.
    fn token<'h>(&self, headers: &'h HeaderMap) -> Result<&'h str, Failure> {
        let mut found: Option<&str> = None;
        for source in &self.settings.sources {
            let candidates: Vec<&str> = match source {
                TokenSource::Authorization => {
                    let mut out = Vec::new();
                    for v in headers.get_all(AUTHORIZATION) {
                        let text = v
                            .to_str()
                            .map_err(|_| Failure::Invalid("malformed Authorization header"))?;
                        match text.split_once(' ') {
                            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                                out.push(token.trim())
                            }
                            _ => return Err(Failure::Invalid("expected a Bearer token")),
                        }
                    }
                    out
                }
                TokenSource::Cookie(name) => headers
                    .get_all(COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(';'))
                    .filter_map(|pair| {
                        let (k, v) = pair.trim().split_once('=')?;
                        (k == name).then(|| v.trim().trim_matches('"'))
                    })
                    .collect(),
            };
            for t in candidates {
                match found {
                    Some(prev) if prev != t => {
                        return Err(Failure::Invalid("the request carries two different tokens"));
                    }
                    _ => found = Some(t),
                }
            }
        }
        match found {
            None => Err(Failure::Missing),
            Some("") => Err(Failure::Invalid("the token is empty")),
            Some(t) => Ok(t),
        }
    }

    async fn verify(&self, token: &str) -> Result<Identity, Failure> {
        const INVALID: Failure = Failure::Invalid("the token is not valid");
        if token.split('.').count() != 3 {
            return Err(Failure::Invalid("the token is malformed"));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Failure::Invalid("the token is malformed"))?;
        let Some(validation) = self.validations.get(&header.alg) else {
            tracing::debug!(provider = %self.name, alg = ?header.alg, "token algorithm not allowed");
            return Err(INVALID);
        };
        // RFC 7515 §4.1.11: a critical extension we do not implement must be refused.
        if header.crit.is_some() {
            tracing::debug!(provider = %self.name, "token has a crit header");
            return Err(INVALID);
        }
        let keys = self.keys_for(header.kid.as_deref(), header.alg).await;
        if keys.is_empty() {
            tracing::debug!(provider = %self.name, "no key for the token");
            return Err(INVALID);
        }
        let mut last = INVALID;
        for key in &keys {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation) {
                Ok(data) => return Ok(self.identity(data.claims)),
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature => Failure::Invalid("the token has expired"),
                        ErrorKind::ImmatureSignature => {
                            Failure::Invalid("the token is not valid yet")
                        }
                        _ => INVALID,
                    };
                    tracing::debug!(provider = %self.name, error = ?e.kind(), "token refused");
                }
            }
        }
        Err(last)
    }

    /// The keys that may verify a token with this kid and alg. An unknown kid may
    /// refetch the JWKS (at most once per cooldown; concurrent askers share one fetch).
    async fn keys_for(&self, kid: Option<&str>, alg: Algorithm) -> Vec<JwtKey> {
        let fits = |k: &JwtKey| k.key.family() == alg.family() && k.alg.is_none_or(|a| a == alg);
        let Some(kid) = kid else {
            return self
                .keys
                .load()
                .unnamed
                .iter()
                .filter(|k| fits(k))
                .cloned()
                .collect();
        };
        if kid.len() > MAX_KID_BYTES {
            return Vec::new();
        }
        if let Some(k) = self.keys.load().by_kid.get(kid) {
            return fits(k).then(|| k.clone()).into_iter().collect();
        }
        let Some(jwks) = &self.jwks else {
            return Vec::new();
        };
        let seen = jwks.generation.load(std::sync::atomic::Ordering::Acquire);
        let _flight = jwks.fetching.lock().await;
        let fetched_meanwhile = jwks.generation.load(std::sync::atomic::Ordering::Acquire) != seen;
        if !fetched_meanwhile {
            let allowed = {
                let mut last = jwks
                    .last_kid_fetch
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let allowed = last.is_none_or(|t| t.elapsed() >= KID_REFETCH_COOLDOWN);
                if allowed {
                    *last = Some(Instant::now());
                }
                allowed
            };
            if allowed {
                tracing::info!(provider = %self.name, "unknown key id: refetching the JWKS");
                self.refresh(jwks).await;
            }
        }
        self.keys
            .load()
            .by_kid
            .get(kid)
            .filter(|k| fits(k))
            .cloned()
            .into_iter()
            .collect()
    }

    /// Fetches the JWKS and installs its keys; on failure the current keys stay.
    async fn refresh(&self, jwks: &Jwks) -> bool {
        let result = jwks.fetcher.fetch(JWKS_TIMEOUT).await;
        jwks.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        match result {
            Ok(fetched) => {
                let set = KeySet::new(&self.settings.keys, &fetched);
                let old = self.keys.swap(Arc::new(set));
                // A key that left the set must stop verifying cached tokens at once.
                let gone = old
                    .by_kid
                    .keys()
                    .any(|k| !self.keys.load().by_kid.contains_key(k));
                if gone {
                    self.cache.invalidate_all();
                }
                tracing::debug!(provider = %self.name, keys = fetched.len(), "JWKS fetched");
                true
            }
            Err(e) => {
                let keys = self.keys.load();
                if keys.is_empty() {
                    tracing::warn!(provider = %self.name, error = %e, "JWKS fetch failed and no keys are known: tokens are refused until it succeeds");
                } else {
                    tracing::warn!(provider = %self.name, error = %e, "JWKS fetch failed; the keys fetched before stay in use");
                }
                false
            }
        }
    }

    fn identity(&self, claims: Map<String, Value>) -> Identity {
        let leeway = self.settings.leeway.as_secs();
        let valid_until = claims
            .get("exp")
            .and_then(Value::as_u64)
            .map(|exp| exp.saturating_add(leeway));
        let scopes = match (claims.get("scope"), claims.get("scp")) {
            (Some(Value::String(s)), _) => s.split_whitespace().map(str::to_string).collect(),
            (_, Some(Value::Array(items))) => strings(items),
            (_, Some(Value::String(s))) => s.split_whitespace().map(str::to_string).collect(),
            _ => Vec::new(),
        };
        let roles = match claims.get("roles") {
            Some(Value::Array(items)) => strings(items),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            _ => Vec::new(),
        };
        let headers = self
            .settings
            .forward_claims
            .iter()
            .filter_map(|(claim, header)| {
                let text = match claims.get(claim)? {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::Array(items) => strings(items).join(","),
                    _ => return None,
                };
                // A claim that cannot be a header value (control characters) is not sent.
                Some((header.clone(), HeaderValue::from_str(&text).ok()?))
            })
            .collect();
        Identity {
            subject: claims
                .get("sub")
                .and_then(Value::as_str)
                .map(str::to_string),
            api_key: None,
            scopes,
            roles,
            headers,
            valid_until,
            claims,
        }
    }
}

fn strings(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// Fetches the JWKS now, then every `every` (sooner after a failure), for as long as the
/// provider lives.
fn spawn_refresh(provider: Weak<JwtProvider>, every: Duration) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        loop {
            let ok = {
                let Some(p) = provider.upgrade() else { return };
                let Some(jwks) = &p.jwks else { return };
                let _flight = jwks.fetching.lock().await;
                p.refresh(jwks).await
            };
            let wait = if ok { every } else { every.min(JWKS_RETRY) };
            tokio::time::sleep(wait).await;
        }
    });
}
