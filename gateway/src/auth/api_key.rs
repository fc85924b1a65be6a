//! API-key providers: keys stored as SHA-256 hashes, compared in constant time.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use subtle::ConstantTimeEq;

use super::{Failure, Identity, sha256};
use crate::config::ApiKeys;
use crate::query::query_param;

/// A running API-key provider.
#[derive(Debug)]
pub struct ApiKeyProvider {
    header: HeaderName,
    query: Option<String>,
    /// `(sha256, identity)` for every key.
    keys: Vec<([u8; 32], Arc<Identity>)>,
    /// Removed from the request before it is forwarded: the key's own header.
    scrub: Vec<HeaderName>,
    challenge: &'static str,
}

impl ApiKeyProvider {
    /// A provider for `config`.
    pub fn new(config: &ApiKeys) -> ApiKeyProvider {
        let keys = config
            .keys
            .iter()
            .map(|k| {
                let headers = config
                    .forward
                    .iter()
                    .filter_map(|h| Some((h.clone(), HeaderValue::from_str(&k.id).ok()?)))
                    .collect();
                let identity = Identity {
                    subject: Some(k.id.clone()),
                    api_key: Some(k.id.clone()),
                    scopes: k.scopes.clone(),
                    roles: k.roles.clone(),
                    headers,
                    ..Identity::default()
                };
                (k.sha256, Arc::new(identity))
            })
            .collect();
        ApiKeyProvider {
            header: config.header.clone(),
            query: config.query.clone(),
            keys,
            scrub: vec![config.header.clone()],
            challenge: "ApiKey",
        }
    }

    /// Finds the caller's key in the header (or the query parameter).
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Arc<Identity>, Failure> {
        let mut presented: Vec<Vec<u8>> = headers
            .get_all(&self.header)
            .iter()
            .map(|v| v.as_bytes().trim_ascii().to_vec())
            .collect();
        if let (Some(param), Some(q)) = (&self.query, query) {
            presented.extend(query_param(q, param).into_iter().map(String::into_bytes));
        }
        presented.dedup();
        match presented.as_slice() {
            [] => Err(Failure::Missing),
            [key] if !key.is_empty() => self
                .find(key)
                .ok_or(Failure::Invalid("the API key is not valid")),
            [_] => Err(Failure::Invalid("the API key is empty")),
            _ => Err(Failure::Invalid(
                "the request carries more than one API key",
            )),
        }
    }

    /// Hashes the key and compares it with every stored hash, all of them, in constant
    /// time: neither timing nor position tells anything about the stored keys.
    fn find(&self, key: &[u8]) -> Option<Arc<Identity>> {
        let hash = sha256(key);
        let mut found = None;
        for (stored, identity) in &self.keys {
            if bool::from(stored.ct_eq(&hash)) {
                found = Some(identity.clone());
            }
        }
        found
    }

    /// Headers removed before forwarding.
    pub fn scrub(&self) -> &[HeaderName] {
        &self.scrub
    }

    /// The query parameter that may carry a key.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The `WWW-Authenticate` challenge.
    pub fn challenge(&self) -> &'static str {
        self.challenge
    }
}
