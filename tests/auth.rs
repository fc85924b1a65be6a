//! Black-box: authentication (JWT with inline keys and JWKS, API keys), authorization
//! (`require`), identity-keyed rate limits, CORS, and the attacks a gateway must shrug off.
//!
//! Keys are test-only fixtures in `tests/fixtures/jwt/` (see its README).

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::*;

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

const RSA_KEY: &str = include_str!("fixtures/jwt/rsa.key");
const RSA_PUB: &str = include_str!("fixtures/jwt/rsa.pub");
const RSA_JWK: &str = include_str!("fixtures/jwt/rsa.jwk.json");
const RSA2_KEY: &str = include_str!("fixtures/jwt/rsa2.key");
const RSA2_JWK: &str = include_str!("fixtures/jwt/rsa2.jwk.json");
const ATTACKER_KEY: &str = include_str!("fixtures/jwt/attacker.key");
const ATTACKER_JWK: &str = include_str!("fixtures/jwt/attacker.jwk.json");
const EC256_KEY: &str = include_str!("fixtures/jwt/ec256.key");
const EC256_PUB: &str = include_str!("fixtures/jwt/ec256.pub");
const EC384_KEY: &str = include_str!("fixtures/jwt/ec384.key");
const EC384_PUB: &str = include_str!("fixtures/jwt/ec384.pub");
const ED_KEY: &str = include_str!("fixtures/jwt/ed25519.key");
const ED_PUB: &str = include_str!("fixtures/jwt/ed25519.pub");
/// 40 bytes: long enough for HS256 (32), deliberately too short for HS384/HS512 configs.
const HS_SECRET: &str = "portico-test-only-hmac-secret-0123456789";

const ISS: &str = "https://id.test/";
const AUD: &str = "portico";

const ACME_KEY: &str = "acme-live-9f8e7d6c5b4a39281706f5e4d3c2b1a0";
const GLOBEX_KEY: &str = "globex-live-00112233445566778899aabbccddeeff";

/// The signing keys the tests hold.
#[derive(Clone, Copy, Debug)]
enum Key {
    Rsa,
    Rsa2,
    Attacker,
    Ec256,
    Ec384,
    Ed,
    Hs,
}

fn encoding_key(key: Key) -> EncodingKey {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    match key {
        Key::Rsa => EncodingKey::from_rsa_pem(RSA_KEY.as_bytes()).unwrap(),
        Key::Rsa2 => EncodingKey::from_rsa_pem(RSA2_KEY.as_bytes()).unwrap(),
        Key::Attacker => EncodingKey::from_rsa_pem(ATTACKER_KEY.as_bytes()).unwrap(),
        Key::Ec256 => EncodingKey::from_ec_pem(EC256_KEY.as_bytes()).unwrap(),
        Key::Ec384 => EncodingKey::from_ec_pem(EC384_KEY.as_bytes()).unwrap(),
        Key::Ed => EncodingKey::from_ed_pem(ED_KEY.as_bytes()).unwrap(),
        Key::Hs => EncodingKey::from_secret(HS_SECRET.as_bytes()),
    }
}

// ---------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// base64url without padding (RFC 7515 §2), for handcrafted tokens.
fn b64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let n = (u32::from(chunk[0]) << 16) | (u32::from(b1) << 8) | u32::from(b2);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Claims a valid customer token carries: sub, iss, aud, iat, exp (+10 min).
fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "iss": ISS, "aud": AUD, "iat": now(), "exp": now() + 600 })
}

/// `base` with the members of `extra` set (a `null` member removes it).
fn with(mut base: Value, extra: Value) -> Value {
    let obj = base.as_object_mut().unwrap();
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            obj.remove(k);
        } else {
            obj.insert(k.clone(), v.clone());
        }
    }
    base
}

/// A token made by jsonwebtoken with `alg`, `kid` and `claims`, signed with `key`.
fn token(alg: Algorithm, kid: Option<&str>, key: Key, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &encoding_key(key)).unwrap()
}

/// The usual customer token: RS256, kid k1, the configured RSA key.
fn rs(claims: &Value) -> String {
    token(Algorithm::RS256, Some("k1"), Key::Rsa, claims)
}

/// A token with a handcrafted header; signed with `sign` or with an empty signature.
fn crafted(header: &Value, claims: &Value, sign: Option<(Algorithm, &EncodingKey)>) -> String {
    let message = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = match sign {
        Some((alg, key)) => jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap(),
        None => String::new(),
    };
    format!("{message}.{signature}")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// A YAML double-quoted scalar (JSON strings are valid YAML).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// gateway.yaml with backend `b` at `backend`, extra `server:` lines, and an `auth:` block
/// whose providers are given indented by two spaces.
fn gateway_config(backend: &str, server_extra: &str, providers: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:0\n  shutdown_grace: 5s\n{server_extra}admin:\n  listen: 127.0.0.1:0\nbackends:\n  b:\n    url: {backend}\n    timeout: 2s\nauth:\n{providers}"
    )
}

/// A JWT provider `name` allowing `algorithms`, with `body` lines indented by six spaces
/// (keys, issuer, …).
fn jwt_provider(name: &str, algorithms: &str, body: &str) -> String {
    format!("  {name}:\n    jwt:\n      algorithms: [{algorithms}]\n{body}")
}

/// `keys:` lines for inline PEM public keys.
fn pem_keys(keys: &[(&str, &str)]) -> String {
    let mut s = String::from("      keys:\n");
    for (kid, pem) in keys {
        s.push_str(&format!("        - {{ kid: {kid}, pem: {} }}\n", q(pem)));
    }
    s
}

/// The usual customer provider: RS256 with k1, issuer and audience, claims forwarded as
/// X-User-Id and X-Tenant-Id; `extra` lines are appended (six spaces).
fn customers(extra: &str) -> String {
    jwt_provider(
        "customers",
        "RS256",
        &format!(
            "{}      issuer: {}\n      audience: [{AUD}]\n      forward_claims: {{ sub: X-User-Id, tenant: X-Tenant-Id }}\n{extra}",
            pem_keys(&[("k1", RSA_PUB)]),
            q(ISS)
        ),
    )
}

/// The usual partner provider: acme (scopes orders:read, role admin) and globex (nothing),
/// in X-API-Key or `?api_key=`, forwarded as X-Partner-Id.
fn partners() -> String {
    format!(
        "  partners:\n    api_keys:\n      header: X-API-Key\n      query: api_key\n      forward: X-Partner-Id\n      keys:\n        - {{ id: acme, sha256: {}, scopes: [\"orders:read\"], roles: [admin] }}\n        - {{ id: globex, sha256: {} }}\n",
        sha256_hex(ACME_KEY),
        sha256_hex(GLOBEX_KEY)
    )
}

/// A route file: `head` holds file-level lines (auth, require, cors, rate_limit).
fn routes_file(team: &str, prefix: &str, head: &str, routes: &str) -> String {
    format!("team: {team}\nprefix: {prefix}\n{head}routes:\n{routes}")
}

/// A proxy route to `b`; `extra` holds route-level lines indented by four spaces.
fn route(id: &str, path: &str, extra: &str) -> String {
    format!("  - id: {id}\n    path: {path}\n{extra}    proxy: {{ backend: b }}\n")
}

/// Starts the gateway off the async workers, so servers in this runtime (JWKS) can answer
/// while it starts.
async fn start(gateway: String, routes: Vec<(&'static str, String)>) -> Gateway {
    tokio::task::spawn_blocking(move || {
        let routes: Vec<(&str, &str)> = routes.iter().map(|(n, t)| (*n, t.as_str())).collect();
        Gateway::serve(ConfigDir::new(&gateway, &routes))
    })
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

async fn call(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = Request::builder().method(method).uri(gw.url(path));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    send(&client(), req.body(Full::default()).unwrap()).await
}

async fn get_with_token(gw: &Gateway, path: &str, token: &str) -> Got {
    call(gw, "GET", path, &[("authorization", &bearer(token))]).await
}

/// Sends `n` requests at once (each with `headers`) and returns their statuses.
async fn concurrently(gw: &Gateway, n: usize, path: &str, headers: &[(&str, &str)]) -> Vec<u16> {
    let client = client();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let mut req = Request::get(gw.url(path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::default()).unwrap();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            send(&client, req).await.status.as_u16()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Why `got` is not the 401 a bad token deserves (empty when it is). `secret` must not be
/// echoed in the body.
fn not_invalid_token(got: &Got, secret: &str) -> Vec<String> {
    let mut why = Vec::new();
    if got.status != 401 {
        why.push(format!("status {} (body {})", got.status, got.text()));
    }
    if got.header("content-type") != Some("application/problem+json") {
        why.push(format!("content-type {:?}", got.header("content-type")));
    } else {
        match serde_json::from_slice::<Value>(&got.body) {
            Ok(body) if body["code"] == "UNAUTHENTICATED" => {}
            Ok(body) => why.push(format!("code {}", body["code"])),
            Err(e) => why.push(format!("body not JSON: {e}")),
        }
    }
    match got.header("www-authenticate") {
        Some(v) if v.starts_with("Bearer") && v.contains("error=\"invalid_token\"") => {}
        other => why.push(format!("www-authenticate {other:?}")),
    }
    if secret.len() >= 16 && got.text().contains(secret) {
        why.push("the body echoes the credential".to_string());
    }
    why
}

// ---------------------------------------------------------------------------------------
// A small programmable HTTP server (JWKS endpoint, header-capturing backend, jku trap)
// ---------------------------------------------------------------------------------------

type Reply = Arc<dyn Fn(&http::request::Parts) -> (u16, String) + Send + Sync>;

struct Mini {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    conns: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Mini {
    async fn start(reply: Reply) -> Mini {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(AtomicUsize::new(0));
        let (h, c) = (hits.clone(), conns.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let hits = h.clone();
                let reply = reply.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            hits.fetch_add(1, Ordering::SeqCst);
                            let (parts, _) = req.into_parts();
                            let (status, body) = reply(&parts);
                            async move {
                                Ok::<_, Infallible>(
                                    http::Response::builder()
                                        .status(status)
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(body)))
                                        .unwrap(),
                                )
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Mini {
            addr,
            hits,
            conns,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }
}

impl Drop for Mini {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A backend answering every request with `{"method", "uri", "headers": [[name, value], …]}`:
/// unlike the support backend it keeps repeated headers.
async fn capture_backend() -> Mini {
    Mini::start(Arc::new(|parts: &http::request::Parts| {
        let headers: Vec<Value> = parts
            .headers
            .iter()
            .map(|(k, v)| json!([k.as_str(), v.to_str().unwrap_or("?")]))
            .collect();
        let body = json!({
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "headers": headers,
        });
        (200, body.to_string())
    }))
    .await
}

/// Every value of header `name` (lowercase) in a capture-backend answer.
fn captured(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| pair[0] == name)
        .map(|pair| pair[1].as_str().unwrap().to_string())
        .collect()
}

/// A JWKS endpoint whose status and key set the test changes as it goes.
struct Jwks {
    server: Mini,
    state: Arc<Mutex<(u16, String)>>,
}

impl Jwks {
    async fn start(jwks: &[&str]) -> Jwks {
        let state = Arc::new(Mutex::new((200, jwk_set(jwks))));
        let s = state.clone();
        let server = Mini::start(Arc::new(move |_: &http::request::Parts| {
            s.lock().unwrap().clone()
        }))
        .await;
        Jwks { server, state }
    }

    fn serve(&self, status: u16, body: String) {
        *self.state.lock().unwrap() = (status, body);
    }

    fn url(&self) -> String {
        self.server.url("/jwks.json")
    }

    fn fetches(&self) -> usize {
        self.server.hits()
    }
}

fn jwk_set(jwks: &[&str]) -> String {
    let keys: Vec<Value> = jwks
        .iter()
        .map(|j| serde_json::from_str(j).unwrap())
        .collect();
    json!({ "keys": keys }).to_string()
}

/// A route file `/api` with one catch-all route under `auth`, limits etc. in `head`.
fn api_file(head: &str) -> String {
    routes_file("api", "/api", head, &route("api", "/{*rest}", ""))
}

// ---------------------------------------------------------------------------------------
// Authentication: JWT basics
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_are_401_with_a_bearer_challenge() {
    let b = Backend::start().await;
    let gw = start(
        gateway_config(&b.url(), "", &customers("")),
        vec![("api.yaml", api_file("auth: customers\n"))],
    )
    .await;

    let got = call(&gw, "GET", "/api/echo", &[]).await;
    assert_problem(&got, 401, "UNAUTHENTICATED");
    let challenge = got.header("www-authenticate").expect("WWW-Authenticate");
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));

    for auth in ["Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer ", "Token abc"] {
        let got = call(&gw, "GET", "/api/echo", &[("authorization", auth)]).await;
        assert_problem(&got, 401, "UNAUTHENTICATED");
        assert!(
            got.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{auth:?}: {:?}",
            got.header("www-authenticate")
        );
    }
    // A POST with a body is refused just the same.
    let got = send(
        &client(),
        Request::post(gw.url("/api/echo"))
            .body(Full::new(Bytes::from_static(b"{\"a\":1}")))
            .unwrap(),
    )
    .await;
    assert_problem(&got, 401, "UNAUTHENTICATED");
    assert_eq!(
        b.hits(),
        0,
        "the backend is never called without credentials"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_is_proxied_with_its_claims_forwarded_and_spoofs_removed() {
    let cap = capture_backend().await;
    let gw = start(
        gateway_config(&cap.url(""), "", &customers("")),
        vec![("api.yaml", api_file("auth: customers\n"))],
    )
    .await;
    let tok = rs(&with(claims("alice"), json!({ "tenant": "acme" })));
    let got = call(
        &gw,
        "GET",
        "/api/echo?x=1",
        &[
            ("authorization", &bearer(&tok)),
            ("x-user-id", "mallory"),
            ("x_user_id", "mallory"),
            ("x-tenant-id", "evil-corp"),
            ("x_tenant_id", "evil-corp"),
        ],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    let echo = got.json();
    assert_eq!(echo["uri"], "/echo?x=1");
    assert_eq!(captured(&echo, "x-user-id"), ["alice"], "{echo}");
    assert_eq!(captured(&echo, "x-tenant-id"), ["acme"], "{echo}");
    assert!(captured(&echo, "x_user_id").is_empty(), "{echo}");
    assert!(captured(&echo, "x_tenant_id").is_empty(), "{echo}");
    assert_eq!(
        captured(&echo, "authorization"),
        [bearer(&tok)],
        "Authorization is forwarded by default"
    );

    // A token without `tenant`: the spoofed X-Tenant-Id is still removed, none is set.
    let tok = rs(&claims("bob"));
    let got = call(
        &gw,
        "GET",
        "/api/echo",
        &[
            ("authorization", &bearer(&tok)),
            ("x-tenant-id", "evil-corp"),
        ],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    let echo = got.json();
    assert_eq!(captured(&echo, "x-user-id"), ["bob"]);
    assert!(captured(&echo, "x-tenant-id").is_empty(), "{echo}");
    assert_eq!(cap.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_are_stripped_in_any_spelling_even_on_open_routes() {
    let cap = capture_backend().await;
    let gw = start(
        gateway_config(
            &cap.url(""),
            "",
            &format!("{}{}", customers(""), partners()),
        ),
        vec![
            (
                "open.yaml",
                routes_file(
                    "open",
                    "/open",
                    "auth: none\n",
                    &route("open", "/{*rest}", ""),
                ),
            ),
            ("api.yaml", api_file("auth: customers\n")),
        ],
    )
    .await;
    let spoofs = "X-USER-ID: evil1\r\nX_User_Id: evil2\r\nx_user_id: evil3\r\nx-Tenant-Id: evil4\r\nX_TENANT_ID: evil5\r\nX-Partner-Id: evil6\r\nx_partner_id: evil7\r\nX_PARTNER_ID: evil8\r\n";
    let body_of = |raw: &str| -> Value {
        assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
        let open = raw.find('{').unwrap_or_else(|| panic!("{raw}"));
        let end = raw.rfind('}').unwrap();
        serde_json::from_str(&raw[open..=end]).unwrap()
    };
    let raw_req =
        format!("GET /open/echo HTTP/1.1\r\nHost: gw.test\r\n{spoofs}Connection: close\r\n\r\n");
    let echo = body_of(&raw(gw.addr, raw_req.as_bytes(), Duration::from_secs(3)).await);
    for pair in echo["headers"].as_array().unwrap() {
        assert!(
            !pair[1].as_str().unwrap().contains("evil"),
            "a spoofed identity header reached the backend on an `auth: none` route: {pair}"
        );
    }

    let tok = rs(&with(claims("alice"), json!({ "tenant": "acme" })));
    let raw_req = format!(
        "GET /api/echo HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {tok}\r\n{spoofs}Connection: close\r\n\r\n"
    );
    let echo = body_of(&raw(gw.addr, raw_req.as_bytes(), Duration::from_secs(3)).await);
    for pair in echo["headers"].as_array().unwrap() {
        assert!(
            !pair[1].as_str().unwrap().contains("evil"),
            "a spoofed identity header reached the backend: {pair}"
        );
    }
    assert_eq!(captured(&echo, "x-user-id"), ["alice"]);
    assert_eq!(captured(&echo, "x-tenant-id"), ["acme"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_token_false_keeps_authorization_from_the_backend() {
    let b = Backend::start().await;
    let gw = start(
        gateway_config(&b.url(), "", &customers("      forward_token: false\n")),
        vec![("api.yaml", api_file("auth: customers\n"))],
    )
    .await;
    let got = get_with_token(&gw, "/api/echo", &rs(&claims("alice"))).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let echo = got.json();
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    assert_eq!(echo["headers"]["x-user-id"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_the_session_cookie_and_conflicting_tokens() {
    let b = Backend::start().await;
    let providers = format!(
        "{}{}",
        customers("      sources: [authorization, \"cookie:session\"]\n"),
        jwt_provider(
            "headeronly",
            "RS256",
            &format!(
                "{}      issuer: {}\n      audience: [{AUD}]\n",
                pem_keys(&[("k1", RSA_PUB)]),
                q(ISS)
            ),
        )
    );
    let gw = start(
        gateway_config(&b.url(), "", &providers),
        vec![
            ("api.yaml", api_file("auth: customers\n")),
            (
                "hdr.yaml",
                routes_file(
                    "hdr",
                    "/hdr",
                    "auth: headeronly\n",
                    &route("hdr", "/{*rest}", ""),
                ),
            ),
        ],
    )
    .await;
    let alice = rs(&claims("alice"));
    let bob = rs(&claims("bob"));

    let got = call(
        &gw,
        "GET",
        "/api/echo",
        &[("cookie", &format!("theme=dark; session={alice}; lang=en"))],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["headers"]["x-user-id"], "alice");

    let before = b.hits();
    let got = call(
        &gw,
        "GET",
        "/api/echo",
        &[
            ("authorization", &bearer(&alice)),
            ("cookie", &format!("session={bob}")),
        ],
    )
    .await;
    assert_problem(&got, 401, "UNAUTHENTICATED");
    assert_eq!(
        b.hits(),
        before,
        "two different tokens never reach the backend"
    );

    // Without `cookie:session` among the sources, the cookie is no credential.
    let got = call(
        &gw,
        "GET",
        "/hdr/echo",
        &[("cookie", &format!("session={alice}"))],
    )
    .await;
    assert_problem(&got, 401, "UNAUTHENTICATED");
    assert_eq!(b.hits(), before);
    let got = get_with_token(&gw, "/hdr/echo", &alice).await;
    assert_eq!(got.status, 200, "{}", got.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_not_before_and_leeway() {
    let b = Backend::start().await;
    let gw = start(
        gateway_config(&b.url(), "", &customers("      leeway: 30s\n")),
        vec![("api.yaml", api_file("auth: customers\n"))],
    )
    .await;
    let t = now();
    let cases: Vec<(&str, Value, u16)> = vec![
        (
            "expired 10 s ago, within leeway",
            json!({ "exp": t - 10 }),
            200,
        ),
        ("expired 5 min ago", json!({ "exp": t - 300 }), 401),
        ("no exp", json!({ "exp": null }), 401),
        (
            "nbf 10 s ahead, within leeway",
            json!({ "nbf": t + 10 }),
            200,
        ),
        ("nbf in the past", json!({ "nbf": t - 60 }), 200),
        ("nbf 5 min ahead", json!({ "nbf": t + 300 }), 401),
        (
            "exp as a string",
            json!({ "exp": (t + 600).to_string() }),
            401,
        ),
        ("nbf as a string", json!({ "nbf": "99999999999" }), 401),
    ];
    let mut failures = Vec::new();
    let mut passed = 0;
    for (what, extra, want) in cases {
        let tok = rs(&with(claims("alice"), extra));
        let got = get_with_token(&gw, "/api/echo", &tok).await;
        if want == 200 {
            passed += 1;
            if got.status != 200 {
                failures.push(format!(
                    "{what}: want 200, got {} {}",
                    got.status,
                    got.text()
                ));
            }
        } else {
            let why = not_invalid_token(&got, &tok);
            if !why.is_empty() {
                failures.push(format!("{what}: {}", why.join("; ")));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(
        b.hits(),
        passed,
        "only the accepted tokens reached the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_and_audience_are_checked_when_configured() {
    let b = Backend::start().await;
    let gw = start(
        gateway_config(&b.url(), "", &customers("")),
        vec![("api.yaml", api_file("auth: customers\n"))],
    )
    .await;
    let cases: Vec<(&str, Value, u16)> = vec![
        (
            "aud as an array containing portico",
            json!({ "aud": ["other", AUD] }),
            200,
        ),
        ("wrong iss", json!({ "iss": "https://evil.test/" }), 401),
        (
            "iss without trailing slash",
            json!({ "iss": "https://id.test" }),
            401,
        ),
        ("no iss", json!({ "iss": null }), 401),
        ("wrong aud", json!({ "aud": "someone-else" }), 401),
        (
            "aud array without portico",
            json!({ "aud": ["a", "b"] }),
            401,
        ),
        ("no aud", json!({ "aud": null }), 401),
    ];
    let mut failures = Vec::new();
    for (what, extra, want) in cases {
        let tok = rs(&with(claims("alice"), extra));
        let got = get_with_token(&gw, "/api/echo", &tok).await;
        if want == 200 {
            if got.status != 200 {
                failures.push(format!(
                    "{what}: want 200, got {} {}",
                    got.status,
                    got.text()
                ));
            }
        } else {
            let why = not_invalid_token(&got, &tok);
            if !why.is_empty() {
                failures.push(format!("{what}: {}", why.join("; ")));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(b.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_are_401_and_never_reach_the_backend() {
    let b = Backend::start().await;
    // A server the `jku` / `x5u` headers point at; it would hand out the attacker's key.
    let trap = Jwks::start(&[ATTACKER_JWK]).await;
    let gw = start(
        gateway_config(&b.url(), "  max_header_bytes: 256KiB\n", &customers("")),
        vec![("api.yaml", api_file("auth: customers\n"))],
    )
    .await;
    let good = claims("alice");
    let rsa = encoding_key(Key::Rsa);
    let attacker = encoding_key(Key::Attacker);
    let attacker_jwk: Value = serde_json::from_str(ATTACKER_JWK).unwrap();
    let rs256 =
        |kid: Value, extra: Value| with(json!({ "alg": "RS256", "typ": "JWT", "kid": kid }), extra);
    let valid = rs(&good);
    let parts: Vec<&str> = valid.split('.').collect();

    let mut cases: Vec<(&str, String)> = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        cases.push((
            "alg none",
            crafted(&json!({ "alg": alg, "typ": "JWT" }), &good, None),
        ));
    }
    cases.push((
        "alg none with a kid and the real signature",
        format!(
            "{}.{}.{}",
            b64url(json!({ "alg": "none", "kid": "k1" }).to_string().as_bytes()),
            parts[1],
            parts[2]
        ),
    ));
    for secret in [RSA_PUB, RSA_PUB.trim()] {
        cases.push((
            "HS256 signed with the RSA public key PEM",
            crafted(
                &json!({ "alg": "HS256", "typ": "JWT", "kid": "k1" }),
                &good,
                Some((
                    Algorithm::HS256,
                    &EncodingKey::from_secret(secret.as_bytes()),
                )),
            ),
        ));
    }
    cases.push((
        "embedded jwk, signed by the attacker",
        crafted(
            &json!({ "alg": "RS256", "typ": "JWT", "jwk": attacker_jwk }),
            &good,
            Some((Algorithm::RS256, &attacker)),
        ),
    ));
    cases.push((
        "embedded jwk with kid k1, signed by the attacker",
        crafted(
            &rs256(json!("k1"), json!({ "jwk": attacker_jwk })),
            &good,
            Some((Algorithm::RS256, &attacker)),
        ),
    ));
    cases.push((
        "jku to the attacker's JWKS",
        crafted(
            &rs256(json!("evil"), json!({ "jku": trap.url() })),
            &good,
            Some((Algorithm::RS256, &attacker)),
        ),
    ));
    cases.push((
        "jku with kid k1",
        crafted(
            &rs256(json!("k1"), json!({ "jku": trap.url() })),
            &good,
            Some((Algorithm::RS256, &attacker)),
        ),
    ));
    cases.push((
        "x5u to the attacker's server",
        crafted(
            &rs256(
                json!("evil"),
                json!({ "x5u": trap.server.url("/cert.pem") }),
            ),
            &good,
            Some((Algorithm::RS256, &attacker)),
        ),
    ));
    cases.push((
        "signed by the attacker with kid k1",
        crafted(
            &rs256(json!("k1"), json!({})),
            &good,
            Some((Algorithm::RS256, &attacker)),
        ),
    ));
    cases.push((
        "kid ../../x",
        crafted(
            &rs256(json!("../../x"), json!({})),
            &good,
            Some((Algorithm::RS256, &attacker)),
        ),
    ));
    cases.push((
        "kid of 10 KB",
        crafted(
            &rs256(json!("k".repeat(10 * 1024)), json!({})),
            &good,
            Some((Algorithm::RS256, &attacker)),
        ),
    ));
    cases.push((
        "kid not a string",
        crafted(
            &rs256(json!(["k1"]), json!({})),
            &good,
            Some((Algorithm::RS256, &rsa)),
        ),
    ));
    cases.push((
        "expired past leeway",
        rs(&with(good.clone(), json!({ "exp": now() - 300 }))),
    ));
    cases.push(("no exp", rs(&with(good.clone(), json!({ "exp": null })))));
    cases.push((
        "nbf in the future",
        rs(&with(good.clone(), json!({ "nbf": now() + 3600 }))),
    ));
    cases.push((
        "nbf as a string",
        rs(&with(good.clone(), json!({ "nbf": "99999999999" }))),
    ));
    cases.push((
        "wrong iss",
        rs(&with(good.clone(), json!({ "iss": "https://evil.test/" }))),
    ));
    cases.push((
        "wrong aud",
        rs(&with(good.clone(), json!({ "aud": "other" }))),
    ));
    cases.push((
        "crit [exp]",
        crafted(
            &rs256(json!("k1"), json!({ "crit": ["exp"] })),
            &good,
            Some((Algorithm::RS256, &rsa)),
        ),
    ));
    cases.push((
        "crit [b64]",
        crafted(
            &rs256(json!("k1"), json!({ "crit": ["b64"], "b64": false })),
            &good,
            Some((Algorithm::RS256, &rsa)),
        ),
    ));
    cases.push((
        "tampered payload",
        format!(
            "{}.{}.{}",
            parts[0],
            b64url(
                with(good.clone(), json!({ "sub": "admin" }))
                    .to_string()
                    .as_bytes()
            ),
            parts[2]
        ),
    ));
    cases.push(("empty signature", format!("{}.{}.", parts[0], parts[1])));
    cases.push(("two segments", format!("{}.{}", parts[0], parts[1])));
    cases.push(("four segments", format!("{valid}.{}", parts[2])));
    cases.push(("bad base64", "!!!.@@@.###".to_string()));
    cases.push((
        "base64 that is not JSON",
        format!("{}.{}.{}", b64url(b"not json"), parts[1], parts[2]),
    ));
    cases.push(("a lone dot", ".".to_string()));
    cases.push((
        "a 100 KB token",
        format!("{}.{}.{}", parts[0], "A".repeat(100 * 1024), parts[2]),
    ));

    let mut failures = Vec::new();
    for (what, tok) in &cases {
        let before = b.hits();
        let got = get_with_token(&gw, "/api/echo", tok).await;
        let mut why = not_invalid_token(&got, tok);
        if b.hits() != before {
            why.push("the backend was called".to_string());
        }
        if !why.is_empty() {
            failures.push(format!("{what}: {}", why.join("; ")));
        }
    }
    // The real token still works (the gateway survived all of the above).
    let got = get_with_token(&gw, "/api/echo", &valid).await;
    assert_eq!(got.status, 200, "{}", got.text());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(
        (trap.server.conns(), trap.fetches()),
        (0, 0),
        "the gateway connected to a URL from a token header"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_supported_algorithm_verifies_and_others_are_refused() {
    let b = Backend::start().await;
    let providers = [
        jwt_provider("rs", "RS256", &pem_keys(&[("k1", RSA_PUB)])),
        jwt_provider("ps", "PS256", &pem_keys(&[("k1", RSA_PUB)])),
        jwt_provider("es256", "ES256", &pem_keys(&[("k1", EC256_PUB)])),
        jwt_provider("es384", "ES384", &pem_keys(&[("k1", EC384_PUB)])),
        jwt_provider("ed", "EdDSA", &pem_keys(&[("k1", ED_PUB)])),
        jwt_provider(
            "hs",
            "HS256",
            &format!(
                "      keys:\n        - {{ kid: k1, secret: {} }}\n",
                q(HS_SECRET)
            ),
        ),
    ]
    .concat();
    let names = [
        ("rs", "rs.yaml"),
        ("ps", "ps.yaml"),
        ("es256", "es256.yaml"),
        ("es384", "es384.yaml"),
        ("ed", "ed.yaml"),
        ("hs", "hs.yaml"),
    ];
    let files: Vec<(&'static str, String)> = names
        .iter()
        .map(|(n, file)| {
            (
                *file,
                routes_file(
                    n,
                    &format!("/{n}"),
                    &format!("auth: {n}\n"),
                    &route(n, "/{*rest}", ""),
                ),
            )
        })
        .collect();
    let gw = start(gateway_config(&b.url(), "", &providers), files).await;
    let c = json!({ "sub": "alice", "exp": now() + 600 });

    let good = [
        ("/rs", Algorithm::RS256, Key::Rsa),
        ("/ps", Algorithm::PS256, Key::Rsa),
        ("/es256", Algorithm::ES256, Key::Ec256),
        ("/es384", Algorithm::ES384, Key::Ec384),
        ("/ed", Algorithm::EdDSA, Key::Ed),
        ("/hs", Algorithm::HS256, Key::Hs),
    ];
    let bad = [
        ("/rs", Algorithm::RS384, Key::Rsa),
        ("/rs", Algorithm::RS512, Key::Rsa),
        ("/rs", Algorithm::PS256, Key::Rsa),
        ("/ps", Algorithm::RS256, Key::Rsa),
        ("/ps", Algorithm::PS384, Key::Rsa),
        ("/es256", Algorithm::ES384, Key::Ec384),
        ("/es384", Algorithm::ES256, Key::Ec256),
        ("/ed", Algorithm::ES256, Key::Ec256),
        ("/hs", Algorithm::HS384, Key::Hs),
        ("/hs", Algorithm::HS512, Key::Hs),
        ("/hs", Algorithm::RS256, Key::Rsa),
    ];
    let mut failures = Vec::new();
    for (prefix, alg, key) in good {
        let tok = token(alg, Some("k1"), key, &c);
        let got = get_with_token(&gw, &format!("{prefix}/echo"), &tok).await;
        if got.status != 200 {
            failures.push(format!(
                "{alg:?} on {prefix}: want 200, got {} {}",
                got.status,
                got.text()
            ));
        }
    }
    // iss and aud are not checked where the provider configures neither.
    let tok = token(
        Algorithm::RS256,
        Some("k1"),
        Key::Rsa,
        &with(
            c.clone(),
            json!({ "iss": "https://anyone.test/", "aud": "anything" }),
        ),
    );
    let got = get_with_token(&gw, "/rs/echo", &tok).await;
    if got.status != 200 {
        failures.push(format!(
            "iss/aud present but not configured: want 200, got {} {}",
            got.status,
            got.text()
        ));
    }
    let accepted = b.hits();
    for (prefix, alg, key) in bad {
        let tok = token(alg, Some("k1"), key, &c);
        let got = get_with_token(&gw, &format!("{prefix}/echo"), &tok).await;
        let why = not_invalid_token(&got, &tok);
        if !why.is_empty() {
            failures.push(format!(
                "{alg:?} on {prefix} (not allowed): {}",
                why.join("; ")
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(b.hits(), accepted);
}

// ---------------------------------------------------------------------------------------
// JWKS
// ---------------------------------------------------------------------------------------

fn jwks_provider(url: &str) -> String {
    jwt_provider(
        "customers",
        "RS256",
        &format!(
            "      jwks_url: {url}\n      jwks_refresh: 1h\n      issuer: {}\n      audience: [{AUD}]\n      forward_claims: {{ sub: X-User-Id }}\n",
            q(ISS)
        ),
    )
}

async fn jwks_gateway(backend: &Backend, url: &str) -> Gateway {
    start(
        gateway_config(&backend.url(), "", &jwks_provider(url)),
        vec![("api.yaml", api_file("auth: customers\n"))],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_from_the_jwks_url_verifies_tokens() {
    let b = Backend::start().await;
    let jwks = Jwks::start(&[RSA_JWK]).await;
    let gw = jwks_gateway(&b, &jwks.url()).await;
    let got = get_with_token(&gw, "/api/echo", &rs(&claims("alice"))).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["headers"]["x-user-id"], "alice");
    assert!(jwks.fetches() >= 1);
    // A key that is not in the set does not verify.
    let tok = token(Algorithm::RS256, Some("k1"), Key::Rsa2, &claims("alice"));
    let got = get_with_token(&gw, "/api/echo", &tok).await;
    assert!(not_invalid_token(&got, &tok).is_empty(), "{}", got.text());
    assert_eq!(b.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_rotation_an_unknown_kid_refetches_the_set() {
    let b = Backend::start().await;
    let jwks = Jwks::start(&[RSA_JWK]).await;
    let gw = jwks_gateway(&b, &jwks.url()).await;
    let got = get_with_token(&gw, "/api/echo", &rs(&claims("alice"))).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let fetched = jwks.fetches();

    jwks.serve(200, jwk_set(&[RSA2_JWK]));
    let tok = token(Algorithm::RS256, Some("k2"), Key::Rsa2, &claims("alice"));
    let got = get_with_token(&gw, "/api/echo", &tok).await;
    assert_eq!(
        got.status,
        200,
        "a token with the new kid k2 right after rotation: {}",
        got.text()
    );
    assert!(
        jwks.fetches() > fetched,
        "the unknown kid made the gateway refetch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_does_not_flood_the_jwks_endpoint() {
    let b = Backend::start().await;
    let jwks = Jwks::start(&[RSA_JWK]).await;
    let gw = jwks_gateway(&b, &jwks.url()).await;
    let got = get_with_token(&gw, "/api/echo", &rs(&claims("alice"))).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let fetched = jwks.fetches();

    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let client = client();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let tok = token(
            Algorithm::RS256,
            Some(&format!("unknown-{nanos}-{i}")),
            Key::Attacker,
            &claims("alice"),
        );
        let req = Request::get(gw.url("/api/echo"))
            .header("authorization", bearer(&tok))
            .body(Full::default())
            .unwrap();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            send(&client, req).await.status.as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    let refetches = jwks.fetches() - fetched;
    assert!(
        refetches <= 3,
        "50 unknown kids caused {refetches} JWKS fetches"
    );
    // The cached key still works.
    let got = get_with_token(&gw, "/api/echo", &rs(&claims("alice"))).await;
    assert_eq!(got.status, 200, "{}", got.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_outage_keeps_the_cached_keys() {
    let b = Backend::start().await;
    let jwks = Jwks::start(&[RSA_JWK]).await;
    let gw = jwks_gateway(&b, &jwks.url()).await;
    let alice = rs(&claims("alice"));
    let got = get_with_token(&gw, "/api/echo", &alice).await;
    assert_eq!(got.status, 200, "{}", got.text());

    jwks.serve(500, "{\"error\":\"down\"}".to_string());
    let got = get_with_token(&gw, "/api/echo", &alice).await;
    assert_eq!(
        got.status,
        200,
        "cached kid during the outage: {}",
        got.text()
    );
    // An unknown kid during the outage: refused, and the failed refetch keeps the cache.
    let tok = token(Algorithm::RS256, Some("k9"), Key::Rsa2, &claims("alice"));
    let got = get_with_token(&gw, "/api/echo", &tok).await;
    assert!(not_invalid_token(&got, &tok).is_empty(), "{}", got.text());
    let got = get_with_token(&gw, "/api/echo", &rs(&claims("bob"))).await;
    assert_eq!(
        got.status,
        200,
        "cached kid after a failed refetch: {}",
        got.text()
    );

    // Garbage instead of a key set does not wipe the cache either.
    jwks.serve(200, "{\"keys\": \"nope\"".to_string());
    let tok = token(Algorithm::RS256, Some("k8"), Key::Rsa2, &claims("alice"));
    let got = get_with_token(&gw, "/api/echo", &tok).await;
    assert!(not_invalid_token(&got, &tok).is_empty(), "{}", got.text());
    let got = get_with_token(&gw, "/api/echo", &rs(&claims("carol"))).await;
    assert_eq!(
        got.status,
        200,
        "cached kid after a garbage refetch: {}",
        got.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_jwks_down_from_the_start_the_gateway_starts_and_fails_closed() {
    let b = Backend::start().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let gw = jwks_gateway(&b, &format!("http://127.0.0.1:{port}/jwks.json")).await;
    for sub in ["alice", "bob"] {
        let tok = rs(&claims(sub));
        let got = get_with_token(&gw, "/api/echo", &tok).await;
        assert_problem(&got, 401, "UNAUTHENTICATED");
        assert!(!got.text().contains(&tok));
    }
    let got = call(&gw, "GET", "/api/echo", &[]).await;
    assert_problem(&got, 401, "UNAUTHENTICATED");
    assert_eq!(b.hits(), 0);
}

// ---------------------------------------------------------------------------------------
// API keys
// ---------------------------------------------------------------------------------------

fn partner_file() -> String {
    routes_file(
        "partner",
        "/partner",
        "auth: partners\n",
        &[
            route("p-open", "/open/{*rest}", ""),
            route(
                "p-by-key",
                "/by-key/{*rest}",
                "    rate_limit: [{ key: api_key, rate: 2/min, burst: 2 }]\n",
            ),
            route(
                "p-by-subject",
                "/by-subject/{*rest}",
                "    rate_limit: [{ key: subject, rate: 2/min, burst: 2 }]\n",
            ),
            route(
                "p-scoped",
                "/scoped/{*rest}",
                "    require: { scopes: [\"orders:read\"] }\n",
            ),
            route(
                "p-admin",
                "/admin/{*rest}",
                "    require: { roles: [admin] }\n",
            ),
        ]
        .concat(),
    )
}

async fn partner_gateway(backend: &Backend) -> Gateway {
    start(
        gateway_config(&backend.url(), "", &partners()),
        vec![("partner.yaml", partner_file())],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_in_the_header_or_the_query_identifies_the_partner() {
    let b = Backend::start().await;
    let gw = partner_gateway(&b).await;

    let got = call(
        &gw,
        "GET",
        "/partner/open/echo",
        &[("x-api-key", ACME_KEY), ("x-partner-id", "globex")],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    let echo = got.json();
    assert_eq!(echo["headers"]["x-partner-id"], "acme", "{echo}");
    assert!(echo["headers"].get("x-api-key").is_none(), "{echo}");
    assert!(!echo.to_string().contains(ACME_KEY), "{echo}");

    let got = call(
        &gw,
        "GET",
        &format!("/partner/open/echo?api_key={GLOBEX_KEY}&x=1"),
        &[],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    let echo = got.json();
    assert_eq!(echo["headers"]["x-partner-id"], "globex", "{echo}");
    assert_eq!(echo["uri"], "/open/echo?x=1");

    let got = call(
        &gw,
        "GET",
        &format!("/partner/open/echo?a=1&api_key={ACME_KEY}&b=2"),
        &[],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    let uri = got.json()["uri"].as_str().unwrap().to_string();
    assert!(
        !uri.contains("api_key") && !uri.contains(ACME_KEY),
        "the key reached the backend: {uri}"
    );
    assert!(uri.contains("a=1") && uri.contains("b=2"), "{uri}");
    assert_eq!(b.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_api_key_is_401() {
    let b = Backend::start().await;
    let gw = partner_gateway(&b).await;
    let wrong = "acme-live-0000000000000000000000000000000";
    for headers in [
        vec![],
        vec![("x-api-key", wrong)],
        vec![("x-api-key", "")],
        vec![("x-api-key", &ACME_KEY[..ACME_KEY.len() - 1])],
        vec![(
            "authorization",
            "Bearer acme-live-9f8e7d6c5b4a39281706f5e4d3c2b1a0",
        )],
    ] {
        let got = call(&gw, "GET", "/partner/open/echo", &headers).await;
        assert_problem(&got, 401, "UNAUTHENTICATED");
        assert!(!got.text().contains(wrong), "{}", got.text());
    }
    let got = call(
        &gw,
        "GET",
        &format!("/partner/open/echo?api_key={wrong}"),
        &[],
    )
    .await;
    assert_problem(&got, 401, "UNAUTHENTICATED");
    assert!(!got.text().contains(wrong), "{}", got.text());
    assert_eq!(b.hits(), 0);
}

async fn key_status(gw: &Gateway, path: &str, key: &str) -> u16 {
    call(gw, "GET", path, &[("x-api-key", key)])
        .await
        .status
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_and_subject_limits_count_per_key() {
    let b = Backend::start().await;
    let gw = partner_gateway(&b).await;
    for path in ["/partner/by-key/echo", "/partner/by-subject/echo"] {
        assert_eq!(
            [
                key_status(&gw, path, ACME_KEY).await,
                key_status(&gw, path, ACME_KEY).await,
                key_status(&gw, path, ACME_KEY).await
            ],
            [200, 200, 429],
            "{path}"
        );
        assert_eq!(
            key_status(&gw, path, GLOBEX_KEY).await,
            200,
            "{path}: another key, another bucket"
        );
        let got = call(&gw, "GET", path, &[("x-api-key", ACME_KEY)]).await;
        assert_problem(&got, 429, "RATE_LIMITED");
        assert!(got.header("retry-after").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_applies_to_api_keys() {
    let b = Backend::start().await;
    let gw = partner_gateway(&b).await;
    for path in ["/partner/scoped/echo", "/partner/admin/echo"] {
        let got = call(&gw, "GET", path, &[("x-api-key", ACME_KEY)]).await;
        assert_eq!(got.status, 200, "{path}: {}", got.text());
        let before = b.hits();
        let got = call(&gw, "GET", path, &[("x-api-key", GLOBEX_KEY)]).await;
        assert_problem(&got, 403, "FORBIDDEN");
        assert_eq!(b.hits(), before, "{path}");
    }
}

// ---------------------------------------------------------------------------------------
// Authorization: require
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_scopes_roles_and_claims() {
    let b = Backend::start().await;
    let file = routes_file(
        "req",
        "/req",
        "auth: customers\nrequire: { scopes: [base] }\n",
        &[
            route(
                "scoped",
                "/scoped/{*rest}",
                "    require: { scopes: [\"orders:read\", \"orders:write\"] }\n",
            ),
            route("roles", "/roles/{*rest}", "    require: { roles: [admin, ops] }\n"),
            route(
                "claims",
                "/claims/{*rest}",
                "    require: { claims: { tenant: acme, level: \"3\", beta: \"true\", groups: eng } }\n",
            ),
            route("base", "/base/{*rest}", ""),
        ]
        .concat(),
    );
    let gw = start(
        gateway_config(&b.url(), "", &customers("")),
        vec![("req.yaml", file)],
    )
    .await;
    let c = |extra: Value| rs(&with(claims("alice"), extra));
    let claims_ok = json!({ "tenant": "acme", "level": 3, "beta": true, "groups": ["ops", "eng"] });
    let cases: Vec<(&str, &str, Value, u16)> = vec![
        (
            "scope string",
            "/req/scoped/x",
            json!({ "scope": "orders:read orders:write" }),
            200,
        ),
        (
            "scope string, other order + extra",
            "/req/scoped/x",
            json!({ "scope": "profile orders:write orders:read" }),
            200,
        ),
        (
            "scp array",
            "/req/scoped/x",
            json!({ "scp": ["orders:write", "orders:read"] }),
            200,
        ),
        (
            "one scope missing",
            "/req/scoped/x",
            json!({ "scope": "orders:read" }),
            403,
        ),
        (
            "one scp missing",
            "/req/scoped/x",
            json!({ "scp": ["orders:read"] }),
            403,
        ),
        (
            "no substring match",
            "/req/scoped/x",
            json!({ "scope": "orders:readx orders:write" }),
            403,
        ),
        ("no scopes", "/req/scoped/x", json!({}), 403),
        (
            "route require replaces the file's",
            "/req/scoped/x",
            json!({ "scope": "base" }),
            403,
        ),
        ("role ops", "/req/roles/x", json!({ "roles": ["ops"] }), 200),
        (
            "role admin among others",
            "/req/roles/x",
            json!({ "roles": ["viewer", "admin"] }),
            200,
        ),
        (
            "other role",
            "/req/roles/x",
            json!({ "roles": ["viewer"] }),
            403,
        ),
        ("no roles", "/req/roles/x", json!({}), 403),
        (
            "roles without file scope",
            "/req/roles/x",
            json!({ "roles": ["admin"], "scope": "" }),
            200,
        ),
        ("claims all equal", "/req/claims/x", claims_ok.clone(), 200),
        (
            "level as a string",
            "/req/claims/x",
            with(claims_ok.clone(), json!({ "level": "3" })),
            200,
        ),
        (
            "other tenant",
            "/req/claims/x",
            with(claims_ok.clone(), json!({ "tenant": "globex" })),
            403,
        ),
        (
            "no tenant",
            "/req/claims/x",
            with(claims_ok.clone(), json!({ "tenant": null })),
            403,
        ),
        (
            "other level",
            "/req/claims/x",
            with(claims_ok.clone(), json!({ "level": 4 })),
            403,
        ),
        (
            "beta false",
            "/req/claims/x",
            with(claims_ok.clone(), json!({ "beta": false })),
            403,
        ),
        (
            "groups without eng",
            "/req/claims/x",
            with(claims_ok.clone(), json!({ "groups": ["ops"] })),
            403,
        ),
        (
            "groups as the string",
            "/req/claims/x",
            with(claims_ok.clone(), json!({ "groups": "eng" })),
            200,
        ),
        (
            "file require: scope base",
            "/req/base/x",
            json!({ "scope": "base other" }),
            200,
        ),
        ("file require: no scope", "/req/base/x", json!({}), 403),
    ];
    let mut failures = Vec::new();
    for (what, path, extra, want) in cases {
        let before = b.hits();
        let got = get_with_token(&gw, path, &c(extra)).await;
        if got.status != want {
            failures.push(format!(
                "{what} ({path}): want {want}, got {} {}",
                got.status,
                got.text()
            ));
            continue;
        }
        if want == 403 {
            let body = got.json();
            if body["code"] != "FORBIDDEN"
                || got.header("content-type") != Some("application/problem+json")
            {
                failures.push(format!("{what}: 403 but {body}"));
            }
            if b.hits() != before {
                failures.push(format!("{what}: the backend was called"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Without a token it is 401, not 403.
    let got = call(&gw, "GET", "/req/scoped/x", &[]).await;
    assert_problem(&got, 401, "UNAUTHENTICATED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_auth_overrides_the_file_default() {
    let b = Backend::start().await;
    let gw = start(
        gateway_config(&b.url(), "", &customers("")),
        vec![
            (
                "mixed.yaml",
                routes_file(
                    "mixed",
                    "/mixed",
                    "auth: customers\n",
                    &[
                        route("m-open", "/open/{*rest}", "    auth: none\n"),
                        route("m-closed", "/closed/{*rest}", ""),
                    ]
                    .concat(),
                ),
            ),
            (
                "flip.yaml",
                routes_file(
                    "flip",
                    "/flip",
                    "auth: none\n",
                    &[
                        route("f-open", "/open/{*rest}", ""),
                        route("f-closed", "/closed/{*rest}", "    auth: customers\n"),
                    ]
                    .concat(),
                ),
            ),
        ],
    )
    .await;
    for path in ["/mixed/open/x", "/flip/open/x"] {
        let got = call(&gw, "GET", path, &[]).await;
        assert_eq!(got.status, 200, "{path}: {}", got.text());
    }
    for path in ["/mixed/closed/x", "/flip/closed/x"] {
        let got = call(&gw, "GET", path, &[]).await;
        assert_problem(&got, 401, "UNAUTHENTICATED");
        let got = get_with_token(&gw, path, &rs(&claims("alice"))).await;
        assert_eq!(got.status, 200, "{path}: {}", got.text());
        assert_eq!(got.json()["headers"]["x-user-id"], "alice");
    }
}

// ---------------------------------------------------------------------------------------
// Rate limits keyed by identity
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_limits_count_per_user_and_send_ratelimit_headers() {
    let b = Backend::start().await;
    let gw = start(
        gateway_config(&b.url(), "", &customers("")),
        vec![(
            "api.yaml",
            api_file("auth: customers\nrate_limit: [{ key: subject, rate: 2/min, burst: 2 }]\n"),
        )],
    )
    .await;
    // Unauthenticated requests are 401 and use up nobody's bucket.
    for _ in 0..3 {
        let got = call(&gw, "GET", "/api/echo", &[]).await;
        assert_problem(&got, 401, "UNAUTHENTICATED");
    }
    let alice = rs(&claims("alice"));
    let bob = rs(&claims("bob"));
    for i in 0..2 {
        let got = get_with_token(&gw, "/api/echo", &alice).await;
        assert_eq!(got.status, 200, "alice #{i}: {}", got.text());
        assert!(
            got.header("ratelimit-policy").is_some(),
            "{:?}",
            got.headers
        );
        assert!(got.header("ratelimit").is_some(), "{:?}", got.headers);
    }
    let got = get_with_token(&gw, "/api/echo", &alice).await;
    assert_problem(&got, 429, "RATE_LIMITED");
    assert!(got.header("retry-after").is_some());
    // A new token for the same subject shares the bucket.
    let got = get_with_token(&gw, "/api/echo", &rs(&claims("alice"))).await;
    assert_eq!(got.status, 429);
    let got = get_with_token(&gw, "/api/echo", &bob).await;
    assert_eq!(got.status, 200, "bob has his own bucket: {}", got.text());
    assert_eq!(b.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_limits_count_per_claim_value() {
    let b = Backend::start().await;
    let gw = start(
        gateway_config(&b.url(), "", &customers("")),
        vec![(
            "api.yaml",
            api_file(
                "auth: customers\nrate_limit: [{ key: \"claim:tenant\", rate: 2/min, burst: 2 }]\n",
            ),
        )],
    )
    .await;
    let t = |sub: &str, tenant: &str| rs(&with(claims(sub), json!({ "tenant": tenant })));
    let mut codes = Vec::new();
    for tok in [t("alice", "acme"), t("bob", "acme"), t("carol", "acme")] {
        codes.push(get_with_token(&gw, "/api/echo", &tok).await.status.as_u16());
    }
    assert_eq!(codes, [200, 200, 429], "one bucket for tenant acme");
    let got = get_with_token(&gw, "/api/echo", &t("alice", "globex")).await;
    assert_eq!(
        got.status,
        200,
        "tenant globex has its own bucket: {}",
        got.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_forwarded_for_makes_no_new_buckets_on_an_authenticated_route() {
    let b = Backend::start().await;
    let gw = start(
        gateway_config(&b.url(), "", &customers("")),
        vec![(
            "api.yaml",
            api_file("auth: customers\nrate_limit: [{ key: ip, rate: 3/min, burst: 3 }]\n"),
        )],
    )
    .await;
    let tok = rs(&claims("alice"));
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let mut codes = Vec::new();
    for i in 0..10u32 {
        let x = seed.wrapping_mul(2_654_435_761).wrapping_add(i * 7919);
        let xff = format!(
            "{}.{}.{}.{}",
            1 + (x >> 24) % 223,
            (x >> 16) & 255,
            (x >> 8) & 255,
            1 + (x & 127)
        );
        let got = call(
            &gw,
            "GET",
            "/api/echo",
            &[("authorization", &bearer(&tok)), ("x-forwarded-for", &xff)],
        )
        .await;
        codes.push(got.status.as_u16());
    }
    assert_eq!(codes, [200, 200, 200, 429, 429, 429, 429, 429, 429, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_limit_is_exact_under_concurrency_with_auth() {
    let b = Backend::start().await;
    let gw = start(
        gateway_config(&b.url(), "", &customers("")),
        vec![(
            "api.yaml",
            api_file("auth: customers\nrate_limit: [{ key: route, rate: 10/min, burst: 10 }]\n"),
        )],
    )
    .await;
    let auth = bearer(&rs(&claims("alice")));
    let statuses = concurrently(&gw, 50, "/api/echo", &[("authorization", &auth)]).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, limited), (10, 40), "{statuses:?}");
    assert_eq!(b.hits(), 10);
}

// ---------------------------------------------------------------------------------------
// CORS and security headers
// ---------------------------------------------------------------------------------------

const SHOP: &str = "https://shop.test";

async fn cors_gateway(backend: &Backend) -> Gateway {
    let shop = routes_file(
        "shop",
        "/shop",
        "auth: customers\ncors: { origins: [\"https://shop.test\"], credentials: true, methods: [GET, POST], headers: [Content-Type, Authorization], expose: [X-Request-Id], max_age: 10m }\n",
        &[
            route("shop-any", "/any/{*rest}", ""),
            route("shop-gp", "/gp/{*rest}", "    methods: [GET, POST]\n"),
        ]
        .concat(),
    );
    let plain = routes_file(
        "plain",
        "/plain",
        "auth: customers\n",
        &route("plain", "/{*rest}", ""),
    );
    let public = routes_file(
        "public",
        "/public",
        "auth: none\ncors: { origins: [\"*\"] }\n",
        &route("public", "/{*rest}", ""),
    );
    start(
        gateway_config(&backend.url(), "", &customers("")),
        vec![
            ("shop.yaml", shop),
            ("plain.yaml", plain),
            ("public.yaml", public),
        ],
    )
    .await
}

fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_is_answered_at_the_edge_without_auth() {
    let b = Backend::start().await;
    let gw = cors_gateway(&b).await;
    for path in ["/shop/gp/orders", "/shop/any/orders"] {
        let got = call(
            &gw,
            "OPTIONS",
            path,
            &[
                ("origin", SHOP),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization, content-type",
                ),
            ],
        )
        .await;
        assert_eq!(got.status, 204, "{path}: {} {:?}", got.text(), got.headers);
        assert_eq!(
            got.header("access-control-allow-origin"),
            Some(SHOP),
            "{path}"
        );
        assert_eq!(
            got.header("access-control-allow-credentials"),
            Some("true"),
            "{path}"
        );
        assert!(
            has_token(got.header("access-control-allow-methods"), "POST"),
            "{path}: {:?}",
            got.header("access-control-allow-methods")
        );
        assert!(
            has_token(got.header("access-control-allow-headers"), "authorization"),
            "{path}: {:?}",
            got.header("access-control-allow-headers")
        );
        assert!(
            has_token(got.header("vary"), "origin"),
            "{path}: {:?}",
            got.header("vary")
        );
        assert_eq!(got.header("access-control-max-age"), Some("600"), "{path}");
    }
    assert_eq!(b.hits(), 0, "a preflight never reaches the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_from_another_origin_is_403() {
    let b = Backend::start().await;
    let gw = cors_gateway(&b).await;
    for origin in ["https://evil.test", "https://shop.test.evil.test", "null"] {
        let got = call(
            &gw,
            "OPTIONS",
            "/shop/gp/orders",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
            ],
        )
        .await;
        assert_problem(&got, 403, "FORBIDDEN");
        assert!(
            got.header("access-control-allow-origin").is_none(),
            "{origin}"
        );
        assert!(
            got.header("access-control-allow-credentials").is_none(),
            "{origin}"
        );
    }
    assert_eq!(b.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_headers_on_actual_requests_including_401() {
    let b = Backend::start().await;
    let gw = cors_gateway(&b).await;
    let tok = rs(&claims("alice"));

    let got = call(
        &gw,
        "GET",
        "/shop/any/orders",
        &[("origin", SHOP), ("authorization", &bearer(&tok))],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.header("access-control-allow-origin"), Some(SHOP));
    assert_eq!(got.header("access-control-allow-credentials"), Some("true"));
    assert!(
        has_token(got.header("access-control-expose-headers"), "x-request-id"),
        "{:?}",
        got.header("access-control-expose-headers")
    );
    assert!(
        has_token(got.header("vary"), "origin"),
        "{:?}",
        got.header("vary")
    );

    let got = call(&gw, "GET", "/shop/any/orders", &[("origin", SHOP)]).await;
    assert_problem(&got, 401, "UNAUTHENTICATED");
    assert_eq!(
        got.header("access-control-allow-origin"),
        Some(SHOP),
        "the browser must be able to read the 401"
    );

    let got = call(
        &gw,
        "GET",
        "/shop/any/orders",
        &[
            ("origin", "https://evil.test"),
            ("authorization", &bearer(&tok)),
        ],
    )
    .await;
    assert!(got.status != 500, "{}", got.text());
    assert!(got.header("access-control-allow-origin").is_none());
    assert!(got.header("access-control-allow-credentials").is_none());

    // A file without `cors`: no CORS headers at all.
    let got = call(
        &gw,
        "GET",
        "/plain/orders",
        &[("origin", SHOP), ("authorization", &bearer(&tok))],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert!(got.header("access-control-allow-origin").is_none());
    assert!(got.header("access-control-allow-credentials").is_none());
    let got = call(
        &gw,
        "OPTIONS",
        "/plain/orders",
        &[("origin", SHOP), ("access-control-request-method", "POST")],
    )
    .await;
    assert!(
        got.header("access-control-allow-origin").is_none(),
        "{:?}",
        got.headers
    );
    assert!(
        got.header("access-control-allow-methods").is_none(),
        "{:?}",
        got.headers
    );

    // `origins: ["*"]` without credentials: any origin may read.
    let got = call(
        &gw,
        "GET",
        "/public/x",
        &[("origin", "https://anyone.test")],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    let acao = got.header("access-control-allow-origin");
    assert!(
        acao == Some("*") || acao == Some("https://anyone.test"),
        "{acao:?}"
    );
    assert!(got.header("access-control-allow-credentials").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_made_answers_carry_nosniff() {
    let b = Backend::start().await;
    let gw = start(
        gateway_config(&b.url(), "", &customers("")),
        vec![
            (
                "api.yaml",
                api_file(
                    "auth: customers\nrate_limit: [{ key: subject, rate: 1/min, burst: 1 }]\n",
                ),
            ),
            (
                "req.yaml",
                routes_file(
                    "req",
                    "/req",
                    "auth: customers\nrequire: { roles: [admin] }\n",
                    &route("req", "/{*rest}", ""),
                ),
            ),
        ],
    )
    .await;
    let tok = rs(&claims("alice"));
    let unauth = call(&gw, "GET", "/api/echo", &[]).await;
    let forbidden = get_with_token(&gw, "/req/echo", &tok).await;
    let _ = get_with_token(&gw, "/api/echo", &tok).await;
    let limited = get_with_token(&gw, "/api/echo", &tok).await;
    let not_found = get_with_token(&gw, "/nowhere", &tok).await;
    for (got, status) in [
        (unauth, 401),
        (forbidden, 403),
        (limited, 429),
        (not_found, 404),
    ] {
        assert_eq!(got.status, status, "{}", got.text());
        assert_eq!(
            got.header("x-content-type-options"),
            Some("nosniff"),
            "{status}: {:?}",
            got.headers
        );
    }
}

// ---------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_tokens_or_api_keys() {
    let b = Backend::start().await;
    let gw = start(
        gateway_config(&b.url(), "", &format!("{}{}", customers(""), partners())),
        vec![
            ("api.yaml", api_file("auth: customers\n")),
            ("partner.yaml", partner_file()),
        ],
    )
    .await;
    let good = rs(&claims("alice"));
    let expired = rs(&with(claims("alice"), json!({ "exp": now() - 3600 })));
    let forged = token(
        Algorithm::RS256,
        Some("k1"),
        Key::Attacker,
        &claims("alice"),
    );
    assert_eq!(get_with_token(&gw, "/api/echo", &good).await.status, 200);
    assert_eq!(get_with_token(&gw, "/api/echo", &expired).await.status, 401);
    assert_eq!(get_with_token(&gw, "/api/echo", &forged).await.status, 401);
    let got = call(
        &gw,
        "GET",
        "/api/echo",
        &[("cookie", &format!("session={good}"))],
    )
    .await;
    assert_eq!(got.status, 401);
    let got = call(&gw, "GET", "/partner/open/x", &[("x-api-key", ACME_KEY)]).await;
    assert_eq!(got.status, 200);
    let got = call(
        &gw,
        "GET",
        &format!("/partner/open/x?api_key={GLOBEX_KEY}&y=2"),
        &[],
    )
    .await;
    assert_eq!(got.status, 200);
    let wrong = "wrong-key-5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
    let got = call(&gw, "GET", "/partner/open/x", &[("x-api-key", wrong)]).await;
    assert_eq!(got.status, 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = gw.logs();
    assert!(logs.contains("/api/echo"), "the access log is on: {logs}");
    for (what, secret) in [
        ("token", good.as_str()),
        ("token signature", good.rsplit('.').next().unwrap()),
        ("expired token", expired.as_str()),
        ("forged token", forged.as_str()),
        ("API key", ACME_KEY),
        ("API key from the query", GLOBEX_KEY),
        ("wrong API key", wrong),
    ] {
        assert!(
            !logs.contains(secret),
            "the logs contain the {what}:\n{logs}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

fn validate(gateway: &str, routes: &[(&str, &str)]) -> (i32, String, String) {
    let dir = ConfigDir::new(gateway, routes);
    let out = std::process::Command::new(bin())
        .args(["validate", "--config", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// gateway.yaml for validation: `auth:` starts on line 6, its providers follow.
fn validation_gateway(providers: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:0\nbackends:\n  b:\n    url: http://127.0.0.1:1\nauth:\n{providers}"
    )
}

const API_ROUTES: &str = "team: api\nprefix: /api\nauth: customers\nroutes:\n  - id: a\n    path: /a\n    proxy: { backend: b }\n";

/// (what, gateway.yaml, routes/api.yaml, the file named, its acceptable lines, key
/// fragments separated by `|`).
type ConfigCase = (
    &'static str,
    String,
    String,
    &'static str,
    std::ops::RangeInclusive<usize>,
    &'static str,
);

#[test]
fn auth_config_errors_name_file_line_and_key() {
    let pem = q(RSA_PUB);
    let secret64 = q(&"s".repeat(64));
    // line 7: provider name, 8: kind, 9: algorithms, 10: keys (one line), 11: more
    let jwt = |algorithms: &str, rest: &str| {
        validation_gateway(&format!(
            "  customers:\n    jwt:\n      algorithms: {algorithms}\n{rest}"
        ))
    };
    let pem_line = format!("      keys: [{{ kid: k1, pem: {pem} }}]\n");
    let good_gw = jwt("[RS256]", &pem_line);
    let partners_gw = |sha: &str| {
        format!(
            "{good_gw}  partners:\n    api_keys:\n      keys: [{{ id: acme, sha256: {} }}]\n",
            q(sha)
        )
    };
    let api = |head: &str, route_extra: &str| {
        format!(
            "team: api\nprefix: /api\n{head}routes:\n  - id: a\n    path: /a\n{route_extra}    proxy: {{ backend: b }}\n"
        )
    };

    // For a conflict between a route and its auth, the line may be the key's or the
    // route's.
    let cases: Vec<ConfigCase> = vec![
        (
            "alg none",
            jwt("[RS256, none]", &pem_line),
            API_ROUTES.to_string(),
            "gateway.yaml",
            7..=9,
            "algorithms",
        ),
        (
            "alg None",
            jwt("[None]", &pem_line),
            API_ROUTES.to_string(),
            "gateway.yaml",
            7..=9,
            "algorithms",
        ),
        (
            "alg NONE",
            jwt("[RS256, NONE]", &pem_line),
            API_ROUTES.to_string(),
            "gateway.yaml",
            7..=9,
            "algorithms",
        ),
        (
            "empty algorithms",
            jwt("[]", &pem_line),
            API_ROUTES.to_string(),
            "gateway.yaml",
            7..=9,
            "algorithms",
        ),
        (
            "unknown algorithm",
            jwt("[RS257]", &pem_line),
            API_ROUTES.to_string(),
            "gateway.yaml",
            7..=9,
            "algorithms",
        ),
        (
            "neither keys nor jwks_url",
            jwt("[RS256]", "      leeway: 30s\n"),
            API_ROUTES.to_string(),
            "gateway.yaml",
            6..=10,
            "keys|jwks_url|jwt",
        ),
        (
            "invalid PEM",
            jwt(
                "[RS256]",
                &format!(
                    "      keys: [{{ kid: k1, pem: {} }}]\n",
                    q("-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n")
                ),
            ),
            API_ROUTES.to_string(),
            "gateway.yaml",
            7..=10,
            "pem|keys",
        ),
        (
            "not PEM at all",
            jwt("[RS256]", "      keys: [{ kid: k1, pem: hello }]\n"),
            API_ROUTES.to_string(),
            "gateway.yaml",
            7..=10,
            "pem|keys",
        ),
        (
            "HS256 next to PEM keys",
            jwt("[RS256, HS256]", &pem_line),
            API_ROUTES.to_string(),
            "gateway.yaml",
            7..=10,
            "algorithms|keys|pem|HS256",
        ),
        (
            "HS256 with a jwks_url",
            jwt(
                "[HS256]",
                &format!(
                    "      keys: [{{ kid: h1, secret: {secret64} }}]\n      jwks_url: http://127.0.0.1:1/jwks.json\n"
                ),
            ),
            API_ROUTES.to_string(),
            "gateway.yaml",
            7..=11,
            "algorithms|jwks_url|HS256",
        ),
        (
            "HS256 secret of 31 bytes",
            jwt(
                "[HS256]",
                &format!(
                    "      keys: [{{ kid: h1, secret: {} }}]\n",
                    q(&"s".repeat(31))
                ),
            ),
            API_ROUTES.to_string(),
            "gateway.yaml",
            7..=10,
            "secret|keys",
        ),
        (
            "HS384 secret of 47 bytes",
            jwt(
                "[HS384]",
                &format!(
                    "      keys: [{{ kid: h1, secret: {} }}]\n",
                    q(&"s".repeat(47))
                ),
            ),
            API_ROUTES.to_string(),
            "gateway.yaml",
            7..=10,
            "secret|keys",
        ),
        (
            "HS512 secret of 63 bytes",
            jwt(
                "[HS512]",
                &format!(
                    "      keys: [{{ kid: h1, secret: {} }}]\n",
                    q(&"s".repeat(63))
                ),
            ),
            API_ROUTES.to_string(),
            "gateway.yaml",
            7..=10,
            "secret|keys",
        ),
        (
            "sha256 of 63 hex chars",
            partners_gw(&"a".repeat(63)),
            API_ROUTES.to_string(),
            "gateway.yaml",
            11..=14,
            "sha256",
        ),
        (
            "sha256 not hex",
            partners_gw(&"g".repeat(64)),
            API_ROUTES.to_string(),
            "gateway.yaml",
            11..=14,
            "sha256",
        ),
        (
            "unknown provider for the file",
            good_gw.clone(),
            api("auth: nobody\n", ""),
            "routes/api.yaml",
            3..=3,
            "auth",
        ),
        (
            "unknown provider for a route",
            good_gw.clone(),
            api("auth: customers\n", "    auth: nobody\n"),
            "routes/api.yaml",
            7..=7,
            "auth",
        ),
        (
            "require on an auth: none route",
            good_gw.clone(),
            api(
                "auth: customers\n",
                "    auth: none\n    require: { roles: [admin] }\n",
            ),
            "routes/api.yaml",
            5..=8,
            "require",
        ),
        (
            "subject limit without auth",
            good_gw.clone(),
            api(
                "auth: none\nrate_limit: [{ key: subject, rate: 5/s }]\n",
                "",
            ),
            "routes/api.yaml",
            4..=6,
            "rate_limit",
        ),
        (
            "api_key limit without auth",
            good_gw.clone(),
            api(
                "auth: none\n",
                "    rate_limit: [{ key: api_key, rate: 5/s }]\n",
            ),
            "routes/api.yaml",
            5..=7,
            "rate_limit",
        ),
        (
            "claim limit without auth",
            good_gw.clone(),
            api(
                "auth: none\nrate_limit: [{ key: \"claim:tenant\", rate: 5/s }]\n",
                "",
            ),
            "routes/api.yaml",
            4..=6,
            "rate_limit",
        ),
        (
            "api_key limit on a JWT route",
            good_gw.clone(),
            api(
                "auth: customers\n",
                "    rate_limit: [{ key: api_key, rate: 5/s }]\n",
            ),
            "routes/api.yaml",
            5..=7,
            "rate_limit",
        ),
        (
            "cors * with credentials",
            good_gw.clone(),
            api(
                "auth: customers\ncors: { origins: [\"*\"], credentials: true }\n",
                "",
            ),
            "routes/api.yaml",
            4..=4,
            "cors",
        ),
    ];
    let mut failures = Vec::new();
    for (what, gw, routes, file, lines, keys) in &cases {
        let (code, stdout, stderr) = validate(gw, &[("api.yaml", routes)]);
        if code != 1 {
            failures.push(format!("{what}: exit {code}, want 1\n{stdout}{stderr}"));
            continue;
        }
        let named = stderr.lines().any(|line| {
            let Some(at) = line.find(&format!("{file}:")) else {
                return false;
            };
            let rest = &line[at + file.len() + 1..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().is_ok_and(|n: usize| lines.contains(&n))
                && keys.split('|').any(|k| line.contains(k))
        });
        if !named {
            failures.push(format!(
                "{what}: no line naming {file}:{lines:?} and one of `{keys}` in:\n{stderr}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_file_level_require_in_a_public_file_is_an_error() {
    let gw = validation_gateway(&jwt_provider(
        "customers",
        "RS256",
        &pem_keys(&[("k1", RSA_PUB)]),
    ));
    let routes = "team: api\nprefix: /api\nauth: none\nrequire: { scopes: [a] }\nroutes:\n  - id: a\n    path: /a\n    proxy: { backend: b }\n";
    let (code, stdout, stderr) = validate(&gw, &[("api.yaml", routes)]);
    assert_eq!(
        code, 1,
        "`require` on a file whose routes are all `auth: none` protects nothing:\n{stdout}{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("routes/api.yaml:") && l.contains("require")),
        "{stderr}"
    );
}

#[test]
fn a_complete_auth_config_is_valid() {
    let gw = validation_gateway(&format!(
        "{}{}{}{}",
        customers(
            "      jwks_url: http://127.0.0.1:1/jwks.json\n      jwks_refresh: 5m\n      leeway: 30s\n      sources: [authorization, \"cookie:session\"]\n      forward_token: false\n",
        ),
        jwt_provider(
            "mixed",
            "RS256, PS256, ES256, ES384, EdDSA",
            &pem_keys(&[
                ("r", RSA_PUB),
                ("e2", EC256_PUB),
                ("e3", EC384_PUB),
                ("ed", ED_PUB)
            ]),
        ),
        jwt_provider(
            "internal",
            "HS256",
            &format!(
                "      keys: [{{ kid: h1, secret: {} }}]\n",
                q(&"s".repeat(32))
            ),
        ),
        partners(),
    ));
    let web = routes_file(
        "web",
        "/web",
        "auth: customers\nrequire: { scopes: [\"orders:read\"], roles: [admin, ops], claims: { tenant: acme } }\nrate_limit: [{ key: subject, rate: 50/s, burst: 100 }, { key: \"claim:tenant\", rate: 100/s }]\ncors: { origins: [\"https://shop.test\"], credentials: true, methods: [GET, POST], headers: [Content-Type, Authorization], expose: [X-Request-Id], max_age: 10m }\n",
        &[
            route("w1", "/a", ""),
            route("w2", "/b", "    auth: mixed\n    require: { roles: [x] }\n"),
            route("w3", "/c", "    auth: internal\n"),
        ]
        .concat(),
    );
    let partner = routes_file(
        "partner",
        "/partner",
        "auth: partners\nrate_limit: [{ key: api_key, rate: 10/s }, { key: subject, rate: 10/s }]\n",
        &[
            route("p1", "/a", "    require: { scopes: [\"orders:read\"] }\n"),
            route(
                "p2",
                "/b",
                "    auth: none\n    rate_limit: [{ key: ip, rate: 10/s }]\n",
            ),
        ]
        .concat(),
    );
    let open = routes_file(
        "open",
        "/open",
        "auth: none\ncors: { origins: [\"*\"] }\n",
        &route("o1", "/a", ""),
    );
    let (code, stdout, stderr) = validate(
        &gw,
        &[
            ("web.yaml", &web),
            ("partner.yaml", &partner),
            ("open.yaml", &open),
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        !stderr.to_lowercase().contains("warning"),
        "every file sets auth: {stderr}"
    );
}

#[test]
fn a_route_file_without_any_auth_setting_is_valid_with_a_warning() {
    let gw = validation_gateway(&customers(""));
    let silent = "team: quiet\nprefix: /quiet\nroutes:\n  - id: q\n    path: /q\n    proxy: { backend: b }\n";
    let (code, stdout, stderr) = validate(&gw, &[("quiet.yaml", silent)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stderr.lines().any(|l| l.to_lowercase().contains("warning")),
        "no warning on stderr:\n{stderr}"
    );
    let (code, _, stderr) = validate(&gw, &[("api.yaml", API_ROUTES)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.to_lowercase().contains("warning"), "{stderr}");
}

/// `sticky: claim:tenant`: every user of one tenant lands on the same split target, and
/// tenants spread over both targets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_sticky_by_claim_keeps_a_tenant_on_one_target() {
    let b = Backend::start().await;
    let c = Backend::start().await;
    let gateway = gateway_config(&b.url(), "", &customers("")).replacen(
        "auth:\n",
        &format!("  c:\n    url: {}\n    timeout: 2s\nauth:\n", c.url()),
        1,
    );
    let routes = routes_file(
        "web",
        "/web",
        "auth: customers\n",
        "  - id: s\n    path: /{*rest}\n    split: { targets: [{ backend: b, weight: 1 }, { backend: c, weight: 1 }], sticky: \"claim:tenant\" }\n",
    );
    let gw = start(gateway, vec![("web.yaml", routes)]).await;
    let mut spread = (0, 0);
    for tenant in 0..16 {
        let (b0, c0) = (b.hits(), c.hits());
        for user in 0..6 {
            let token = rs(&with(
                claims(&format!("user-{tenant}-{user}")),
                json!({ "tenant": format!("tenant-{tenant}") }),
            ));
            let got = get_with_token(&gw, "/web/x", &token).await;
            assert_eq!(got.status, 200);
        }
        let (to_b, to_c) = (b.hits() - b0, c.hits() - c0);
        assert!(
            (to_b, to_c) == (6, 0) || (to_b, to_c) == (0, 6),
            "tenant-{tenant}: {to_b} to b, {to_c} to c"
        );
        if to_b > 0 {
            spread.0 += 1
        } else {
            spread.1 += 1
        }
    }
    assert!(
        spread.0 >= 2 && spread.1 >= 2,
        "16 tenants over two targets: {spread:?}"
    );
}

/// An aggregate call may use the caller's claims; every call carries the identity
/// headers and, with `forward_token`, the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_calls_use_claims_and_carry_the_identity() {
    let b = Backend::start().await;
    let routes = routes_file(
        "web",
        "/web",
        "auth: customers\n",
        "  - id: me\n    path: /me\n    aggregate:\n      calls:\n        me: { backend: b, path: \"/echo/{claims.tenant}/{claims.sub}\" }\n",
    );
    let gw = start(
        gateway_config(&b.url(), "", &customers("")),
        vec![("web.yaml", routes)],
    )
    .await;
    let token = rs(&with(claims("user-7"), json!({ "tenant": "acme corp" })));
    let got = get_with_token(&gw, "/web/me", &token).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let me = &got.json()["me"];
    assert_eq!(me["uri"], "/echo/acme%20corp/user-7");
    assert_eq!(me["headers"]["x-user-id"], "user-7");
    assert_eq!(me["headers"]["x-tenant-id"], "acme corp");
    assert_eq!(me["headers"]["authorization"], bearer(&token));
    assert_problem(
        &call(&gw, "GET", "/web/me", &[]).await,
        401,
        "UNAUTHENTICATED",
    );
    assert_eq!(b.hits(), 1);
}
