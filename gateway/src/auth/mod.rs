//! Authentication and authorization at the edge: JWT providers (inline keys and JWKS),
//! API-key providers, `require` checks, and the identity headers sent to backends.
//!
//! Sits in the route pipeline after the edge rate limits and before the identity-keyed
//! ones. A route names one provider (or `auth: none`); the provider turns the request's
//! credentials into an [`Identity`] or a [`Failure`] (401). `require` then decides 403.
//! Tokens and keys are never logged or echoed; failures say only what kind of problem
//! the credentials had.

mod api_key;
mod jwks;
mod jwt;

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::config::{AuthKind, AuthProvider, Require};
use crate::error::Problem;

pub use api_key::ApiKeyProvider;
pub use jwt::JwtProvider;

/// Who the caller is, once authenticated.
#[derive(Debug, Default)]
pub struct Identity {
    subject: Option<String>,
    api_key: Option<String>,
    claims: Map<String, Value>,
    scopes: Vec<String>,
    roles: Vec<String>,
    /// Headers for the backend (`forward_claims` / `forward`).
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Unix time after which a cached copy must not be used (`exp` + leeway).
    valid_until: Option<u64>,
}

impl Identity {
    /// JWT `sub`, or the API key's id.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// The API key's id.
    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    /// The token's claims (empty for API keys).
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// A claim as text: strings as they are, numbers and booleans as JSON.
    pub fn claim_text(&self, name: &str) -> Option<String> {
        self.claims.get(name).and_then(scalar_text)
    }

    /// Headers the backend gets for this identity.
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// Whether the identity meets `require` (all scopes, one of the roles, each claim).
    pub fn meets(&self, require: &Require) -> bool {
        let scopes = require.scopes.iter().all(|s| self.scopes.contains(s));
        let roles =
            require.roles.is_empty() || require.roles.iter().any(|r| self.roles.contains(r));
        let claims = require
            .claims
            .iter()
            .all(|(name, want)| match self.claims.get(name) {
                Some(Value::Array(items)) => items
                    .iter()
                    .any(|v| scalar_text(v).as_deref() == Some(want)),
                Some(v) => scalar_text(v).as_deref() == Some(want),
                None => false,
            });
        scopes && roles && claims
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No credentials at all.
    Missing,
    /// Credentials that do not verify; the text is safe to show.
    Invalid(&'static str),
}

/// A provider, running: its verification state (keys, caches) lives here and is kept
/// across reloads while the provider's settings do not change.
#[derive(Debug)]
pub enum Provider {
    /// JWT.
    Jwt(Arc<JwtProvider>),
    /// API keys.
    ApiKeys(ApiKeyProvider),
}

impl Provider {
    /// Starts a provider (a JWKS provider begins fetching its keys in the background).
    pub fn start(config: &AuthProvider) -> Provider {
        match &config.kind {
            AuthKind::Jwt(j) => Provider::Jwt(JwtProvider::start(&config.name, j)),
            AuthKind::ApiKeys(a) => Provider::ApiKeys(ApiKeyProvider::new(a)),
        }
    }

    /// Authenticates a request.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Arc<Identity>, Failure> {
        match self {
            Provider::Jwt(j) => j.authenticate(headers).await,
            Provider::ApiKeys(a) => a.authenticate(headers, query),
        }
    }

    /// The 401 for a failure.
    pub fn problem(&self, failure: Failure) -> Problem {
        let (challenge, detail) = match (self, failure) {
            (Provider::Jwt(_), Failure::Missing) => ("Bearer", "a bearer token is required"),
            (Provider::Jwt(_), Failure::Invalid(why)) => ("Bearer error=\"invalid_token\"", why),
            (Provider::ApiKeys(a), Failure::Missing) => (a.challenge(), "an API key is required"),
            (Provider::ApiKeys(a), Failure::Invalid(why)) => (a.challenge(), why),
        };
        Problem::unauthenticated(challenge, detail)
    }

    /// What the backend must not receive from the client's own request once this
    /// provider authenticated it (`Authorization` when `forward_token: false`, the API
    /// key header), and the query parameter that may carry a key.
    pub fn scrub(&self) -> (&[HeaderName], Option<&str>) {
        match self {
            Provider::Jwt(j) => (j.scrub(), None),
            Provider::ApiKeys(a) => (a.scrub(), a.query()),
        }
    }
}

/// SHA-256 of some bytes.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_checks_scopes_roles_and_claims() {
        let id = Identity {
            scopes: vec!["orders:read".into(), "orders:write".into()],
            roles: vec!["admin".into()],
            claims: serde_json::json!({"tenant": "acme", "groups": ["a", "b"], "level": 3})
                .as_object()
                .cloned()
                .unwrap(),
            ..Identity::default()
        };
        let req = |scopes: &[&str], roles: &[&str], claims: &[(&str, &str)]| Require {
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
            claims: claims
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        };
        assert!(id.meets(&req(&["orders:read"], &[], &[])));
        assert!(!id.meets(&req(&["orders:read", "admin:all"], &[], &[])));
        assert!(id.meets(&req(&[], &["viewer", "admin"], &[])));
        assert!(!id.meets(&req(&[], &["viewer"], &[])));
        assert!(id.meets(&req(
            &[],
            &[],
            &[("tenant", "acme"), ("groups", "b"), ("level", "3")]
        )));
        assert!(!id.meets(&req(&[], &[], &[("tenant", "other")])));
        assert!(!id.meets(&req(&[], &[], &[("missing", "x")])));
    }
}
