//! Fetching a JSON Web Key Set: one GET with a timeout and a size cap, then every usable
//! signing key in it. Symmetric (`oct`) keys and keys marked for encryption are never
//! taken from a URL.

use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::config::JwtKey;

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// An HTTP(S) client for one JWKS URL.
#[derive(Debug)]
pub(super) struct Fetcher {
    url: Uri,
    client: Client<crate::outbound::Https, Empty<Bytes>>,
}

impl Fetcher {
    pub(super) fn new(url: Uri) -> Fetcher {
        Fetcher {
            url,
            client: crate::outbound::client(),
        }
    }

    /// Fetches the set and returns its signing keys.
    pub(super) async fn fetch(&self, timeout: Duration) -> Result<Vec<JwtKey>, String> {
        let get = async {
            let res = self
                .client
                .get(self.url.clone())
                .await
                .map_err(|e| format!("request failed: {e}"))?;
            if !res.status().is_success() {
                return Err(format!("status {}", res.status()));
            }
            let body = Limited::new(res.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            parse(&body)
        };
        tokio::time::timeout(timeout, get)
            .await
            .map_err(|_| "timed out".to_string())?
    }
}

/// The usable signing keys of a JWKS document. Keys this gateway cannot use are skipped
/// (a set may hold encryption keys or newer key types beside the signing keys).
pub(super) fn parse(body: &[u8]) -> Result<Vec<JwtKey>, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Some(entries) = doc.get("keys").and_then(|k| k.as_array()) else {
        return Err("no `keys` array".into());
    };
    let mut keys = Vec::new();
    for entry in entries {
        let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
            continue;
        };
        if matches!(
            jwk.algorithm,
            AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_)
        ) || matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption))
        {
            continue;
        }
        let alg = match &jwk.common.key_algorithm {
            None => None,
            Some(a) => match a.to_string().parse::<Algorithm>() {
                Ok(alg) => Some(alg),
                // An encryption algorithm: not a signing key.
                Err(_) => continue,
            },
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        keys.push(JwtKey {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_and_encryption_keys_are_skipped() {
        let doc = br#"{"keys":[
            {"kty":"oct","kid":"s","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"sXch","e":"AQAB"},
            {"kty":"RSA","kid":"oaep","alg":"RSA-OAEP","n":"sXch","e":"AQAB"},
            {"kty":"weird","kid":"w"},
            {"kty":"RSA","kid":"sig","alg":"RS256","use":"sig","n":"sXch","e":"AQAB"},
            {"kty":"OKP","kid":"ed","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]}"#;
        let keys = parse(doc).unwrap();
        let kids: Vec<_> = keys.iter().map(|k| k.kid.as_deref().unwrap()).collect();
        assert_eq!(kids, ["sig", "ed"]);
        assert_eq!(keys[0].alg, Some(Algorithm::RS256));
        assert!(parse(b"{}").is_err());
        assert!(parse(b"<html>").is_err());
    }
}
