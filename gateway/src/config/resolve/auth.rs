//! Resolving `gateway.yaml`'s `auth:` providers: algorithms, keys, token sources and the
//! headers they forward. Anything that would weaken verification is a config error here,
//! never a runtime surprise.

use std::collections::HashMap;

use http::HeaderName;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::super::load::Parsed;
use super::super::model::*;
use super::super::raw::{self, GatewayFile};
use super::Resolver;
use super::source::{self, Source};

/// Refresh interval of a JWKS when none is given.
const DEFAULT_JWKS_REFRESH: std::time::Duration = std::time::Duration::from_secs(300);
/// Clock leeway when none is given.
const DEFAULT_LEEWAY: std::time::Duration = std::time::Duration::from_secs(30);

impl Resolver<'_> {
    /// Resolves every provider; returns them with their ids by name.
    pub(super) fn providers(
        &mut self,
        gw: &Parsed<GatewayFile>,
        raw: &GatewayFile,
    ) -> (Vec<AuthProvider>, HashMap<String, ProviderId>) {
        let mut out = Vec::new();
        let mut ids = HashMap::new();
        for (name, p) in &raw.auth {
            let key = format!("auth.{name}");
            let kind = match (&p.jwt, &p.api_keys) {
                (Some(j), None) => self.jwt(gw, &format!("{key}.jwt"), j).map(AuthKind::Jwt),
                (None, Some(a)) => self
                    .api_keys(gw, &format!("{key}.api_keys"), a)
                    .map(AuthKind::ApiKeys),
                _ => {
                    self.errors
                        .push(gw.diag(&key, "a provider needs exactly one of `jwt` or `api_keys`"));
                    None
                }
            };
            if name == "none" {
                self.errors.push(gw.diag(
                    &key,
                    "`none` is reserved (a route file's `auth: none` means public)",
                ));
                continue;
            }
            if let Some(kind) = kind {
                ids.insert(name.clone(), ProviderId(out.len()));
                out.push(AuthProvider {
                    name: name.clone(),
                    kind,
                    fingerprint: serde_json::to_string(p).unwrap_or_default(),
                });
            }
        }
        (out, ids)
    }

    fn jwt(&mut self, gw: &Parsed<GatewayFile>, key: &str, j: &raw::Jwt) -> Option<Jwt> {
        let before = self.errors.len();
        let mut algorithms = Vec::new();
        if j.algorithms.is_empty() {
            self.errors.push(gw.diag(
                format!("{key}.algorithms"),
                "list the algorithms tokens may use (an allow-list, e.g. [RS256])",
            ));
        }
        for (i, a) in j.algorithms.iter().enumerate() {
            let k = format!("{key}.algorithms[{i}]");
            if a.eq_ignore_ascii_case("none") {
                self.errors
                    .push(gw.diag(k, "`none` means unsigned tokens and is never allowed"));
                continue;
            }
            match a.parse::<Algorithm>() {
                Ok(alg) if !algorithms.contains(&alg) => algorithms.push(alg),
                Ok(_) => self.errors.push(gw.diag(k, format!("`{a}` is listed twice"))),
                Err(_) => self.errors.push(gw.diag(
                    k,
                    format!("`{a}` is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512"),
                )),
            }
        }
        let families: Vec<AlgorithmFamily> = algorithms.iter().map(|a| a.family()).collect();
        let hmac = families.contains(&AlgorithmFamily::Hmac);
        let asymmetric = families.iter().any(|f| *f != AlgorithmFamily::Hmac);
        if hmac && (asymmetric || j.jwks_url.is_some() || j.keys.iter().any(|k| k.pem.is_some())) {
            self.errors.push(gw.diag(
                format!("{key}.algorithms"),
                "HS* algorithms cannot share a provider with public keys or a JWKS (a token could be signed with the public key as the HMAC secret); use a separate provider",
            ));
        }

        let mut keys = Vec::new();
        let mut kids = std::collections::HashSet::new();
        for (i, k) in j.keys.iter().enumerate() {
            let kk = format!("{key}.keys[{i}]");
            if !kids.insert(k.kid.as_str()) {
                self.errors
                    .push(gw.diag(&kk, format!("kid `{}` is listed twice", k.kid)));
            }
            let decoding = match (&k.pem, &k.secret) {
                (Some(pem), None) => self.pem_key(gw, &kk, pem, &families),
                (None, Some(secret)) => self.secret_key(gw, &kk, secret, &algorithms),
                _ => {
                    self.errors
                        .push(gw.diag(&kk, "a key needs exactly one of `pem` or `secret`"));
                    None
                }
            };
            if let Some(decoding) = decoding {
                keys.push(JwtKey {
                    kid: Some(k.kid.clone()),
                    alg: None,
                    key: decoding,
                });
            }
        }
        let jwks_url = j
            .jwks_url
            .as_ref()
            .and_then(|u| match u.parse::<http::Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.authority().is_some() =>
                {
                    Some(uri)
                }
                _ => {
                    self.errors.push(gw.diag(
                        format!("{key}.jwks_url"),
                        format!("`{u}` is not an http(s) URL"),
                    ));
                    None
                }
            });
        if j.keys.is_empty() && j.jwks_url.is_none() {
            self.errors
                .push(gw.diag(key, "a JWT provider needs `keys`, `jwks_url`, or both"));
        }
        if j.jwks_refresh
            .is_some_and(|d| d.0 < std::time::Duration::from_secs(1))
        {
            self.errors
                .push(gw.diag(format!("{key}.jwks_refresh"), "must be at least 1s"));
        }
        let mut sources = Vec::new();
        let written = if j.sources.is_empty() {
            vec!["authorization".to_string()]
        } else {
            j.sources.clone()
        };
        for (i, s) in written.iter().enumerate() {
            match (s.as_str(), source::parse(s)) {
                ("authorization", _) => sources.push(TokenSource::Authorization),
                (_, Ok(Some(Source::Cookie(name)))) => sources.push(TokenSource::Cookie(name)),
                (_, Err(m)) => self.errors.push(gw.diag(format!("{key}.sources[{i}]"), m)),
                _ => self.errors.push(gw.diag(
                    format!("{key}.sources[{i}]"),
                    format!("`{s}`: expected `authorization` or `cookie:NAME`"),
                )),
            }
        }
        let forward_claims = j
            .forward_claims
            .iter()
            .filter_map(|(claim, header)| {
                self.forward_header(gw, &format!("{key}.forward_claims.{claim}"), header)
                    .map(|h| (claim.clone(), h))
            })
            .collect();
        if self.errors.len() != before {
            return None;
        }
        Some(Jwt {
            issuer: j.issuer.clone(),
            audience: j.audience.clone(),
            algorithms,
            keys,
            jwks_url,
            jwks_refresh: j.jwks_refresh.map_or(DEFAULT_JWKS_REFRESH, |d| d.0),
            leeway: j.leeway.map_or(DEFAULT_LEEWAY, |d| d.0),
            sources,
            forward_claims,
            forward_token: j.forward_token,
        })
    }

    fn pem_key(
        &mut self,
        gw: &Parsed<GatewayFile>,
        key: &str,
        pem: &str,
        families: &[AlgorithmFamily],
    ) -> Option<DecodingKey> {
        let bytes = pem.as_bytes();
        let parsed = DecodingKey::from_rsa_pem(bytes)
            .or_else(|_| DecodingKey::from_ec_pem(bytes))
            .or_else(|_| DecodingKey::from_ed_pem(bytes));
        match parsed {
            Ok(k) if families.contains(&k.family()) => Some(k),
            Ok(k) => {
                self.errors.push(gw.diag(
                    format!("{key}.pem"),
                    format!(
                        "this is {} key, but no algorithm in `algorithms` uses one",
                        family_name(k.family())
                    ),
                ));
                None
            }
            Err(_) => {
                self.errors.push(gw.diag(
                    format!("{key}.pem"),
                    "not a PEM public key (RSA, EC P-256/P-384 or Ed25519, `-----BEGIN PUBLIC KEY-----`)",
                ));
                None
            }
        }
    }

    fn secret_key(
        &mut self,
        gw: &Parsed<GatewayFile>,
        key: &str,
        secret: &str,
        algorithms: &[Algorithm],
    ) -> Option<DecodingKey> {
        let longest = algorithms
            .iter()
            .filter_map(|a| match a {
                Algorithm::HS256 => Some(32),
                Algorithm::HS384 => Some(48),
                Algorithm::HS512 => Some(64),
                _ => None,
            })
            .max();
        let Some(need) = longest else {
            self.errors.push(gw.diag(
                format!("{key}.secret"),
                "a secret is only used by HS256/HS384/HS512, and `algorithms` lists none",
            ));
            return None;
        };
        if secret.len() < need {
            self.errors.push(gw.diag(
                format!("{key}.secret"),
                format!(
                    "the secret has {} bytes; HMAC secrets must be at least as long as the hash ({need} bytes)",
                    secret.len()
                ),
            ));
            return None;
        }
        Some(DecodingKey::from_secret(secret.as_bytes()))
    }

    fn api_keys(
        &mut self,
        gw: &Parsed<GatewayFile>,
        key: &str,
        a: &raw::ApiKeys,
    ) -> Option<ApiKeys> {
        let before = self.errors.len();
        let header =
            match HeaderName::from_bytes(a.header.as_deref().unwrap_or("x-api-key").as_bytes()) {
                Ok(h) => Some(h),
                Err(_) => {
                    self.errors
                        .push(gw.diag(format!("{key}.header"), "not a header name"));
                    None
                }
            };
        if a.query.as_deref().is_some_and(|q| {
            q.is_empty()
                || !q
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        }) {
            self.errors.push(gw.diag(
                format!("{key}.query"),
                "a query parameter name of letters, digits, `-`, `_` or `.`",
            ));
        }
        if a.keys.is_empty() {
            self.errors
                .push(gw.diag(format!("{key}.keys"), "list at least one key"));
        }
        let mut keys = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for (i, k) in a.keys.iter().enumerate() {
            let kk = format!("{key}.keys[{i}]");
            if k.id.trim().is_empty() {
                self.errors
                    .push(gw.diag(format!("{kk}.id"), "must not be empty"));
            }
            if !ids.insert(k.id.as_str()) {
                self.errors
                    .push(gw.diag(format!("{kk}.id"), format!("id `{}` is listed twice", k.id)));
            }
            match parse_sha256(&k.sha256) {
                Some(sha256) => keys.push(ApiKey {
                    id: k.id.clone(),
                    sha256,
                    scopes: k.scopes.clone(),
                    roles: k.roles.clone(),
                }),
                None => self.errors.push(gw.diag(
                    format!("{kk}.sha256"),
                    "the key's SHA-256 as 64 hex digits (e.g. `printf %s KEY | sha256sum`)",
                )),
            }
        }
        let forward = a
            .forward
            .as_ref()
            .and_then(|h| self.forward_header(gw, &format!("{key}.forward"), h));
        if self.errors.len() != before {
            return None;
        }
        Some(ApiKeys {
            header: header?,
            query: a.query.clone(),
            keys,
            forward,
        })
    }

    /// A header the gateway sets for backends: a valid name that is not one the
    /// gateway or HTTP itself owns.
    fn forward_header(
        &mut self,
        gw: &Parsed<GatewayFile>,
        key: &str,
        name: &str,
    ) -> Option<HeaderName> {
        let Ok(h) = HeaderName::from_bytes(name.as_bytes()) else {
            self.errors
                .push(gw.diag(key, format!("`{name}` is not a header name")));
            return None;
        };
        const RESERVED: [&str; 8] = [
            "host",
            "authorization",
            "cookie",
            "content-length",
            "transfer-encoding",
            "connection",
            "x-request-id",
            "x-forwarded-for",
        ];
        if RESERVED.contains(&h.as_str()) || name.contains('_') {
            self.errors.push(gw.diag(
                key,
                format!("`{name}` cannot carry identity (pick a header like X-User-Id)"),
            ));
            return None;
        }
        Some(h)
    }
}

fn family_name(f: AlgorithmFamily) -> &'static str {
    match f {
        AlgorithmFamily::Hmac => "an HMAC",
        AlgorithmFamily::Rsa => "an RSA",
        AlgorithmFamily::Ec => "an EC",
        AlgorithmFamily::Ed => "an Ed25519",
    }
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}
