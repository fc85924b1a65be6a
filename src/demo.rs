//! `portico demo`: small in-process backends (orders, users, inventory, payments and a
//! legacy monolith) on loopback ports, and the repository's own `gateway.yaml` and
//! `routes/` (compiled into the binary) served against them.
//!
//! The config names its backends as `${PORTICO_DEMO_ORDERS:-http://127.0.0.1:9101}` and
//! so on; the demo binds each backend on a free port and passes its address in those
//! variables, so it never collides with anything already listening.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, Request};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use gateway::config::{self, Source, Sources};
use serde_json::{Value, json};

/// The repository's configuration, embedded so the demo runs from anywhere.
pub(crate) const GATEWAY_YAML: &str = include_str!("../gateway.yaml");
/// The repository's route files, embedded (a test checks this list against `routes/`).
pub(crate) const ROUTE_FILES: &[(&str, &str)] = &[
    ("routes/legacy.yaml", include_str!("../routes/legacy.yaml")),
    ("routes/mobile.yaml", include_str!("../routes/mobile.yaml")),
    (
        "routes/partner.yaml",
        include_str!("../routes/partner.yaml"),
    ),
    ("routes/web.graphql", include_str!("../routes/web.graphql")),
    ("routes/web.yaml", include_str!("../routes/web.yaml")),
];

const BACKENDS: [&str; 8] = [
    "orders",
    "users",
    "inventory",
    "inventory-b",
    "payments",
    "monolith",
    "checkout-v2",
    "idp",
];

/// The partner API key of the demo; `gateway.yaml` holds only its SHA-256.
const DEMO_API_KEY: &str = "demo-partner-key-7f3a9c2e51b84d06";

/// The demo's identity provider: a fresh P-256 key each run, its JWKS, and one token.
struct Idp {
    jwks: Value,
    token: String,
}

impl Idp {
    fn new() -> Result<Idp, String> {
        use base64::Engine;
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "cannot generate the demo signing key".to_string())?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| "cannot load the demo signing key".to_string())?;
        // An uncompressed point: 0x04 ‖ x ‖ y.
        let point = pair.public_key().as_ref();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwks = json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "kid": "demo-1", "alg": "ES256", "use": "sig",
            "x": b64.encode(&point[1..33]), "y": b64.encode(&point[33..65]),
        }]});
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = json!({
            "iss": "https://id.portico.demo/", "aud": "portico-demo", "sub": "user-7",
            "tenant": "acme", "scope": "orders:read profile:read",
            "iat": now, "exp": now + 24 * 3600,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("demo-1".into());
        let key = jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref());
        let token = jsonwebtoken::encode(&header, &claims, &key)
            .map_err(|e| format!("cannot sign the demo token: {e}"))?;
        Ok(Idp { jwks, token })
    }
}

fn app(name: &str, jwks: &Value) -> Router {
    match name {
        "idp" => {
            let jwks = jwks.clone();
            Router::new().route(
                "/.well-known/jwks.json",
                get(move || async move { Json(jwks) }),
            )
        }
        "orders" => Router::new()
            .route(
                "/orders",
                get(|| async {
                    Json(json!({ "orders": (1..=20).map(order).collect::<Vec<_>>() }))
                }),
            )
            .route(
                "/orders/{id}",
                get(|Path(id): Path<String>| async move { Json(order_for(&id)) }),
            ),
        "users" => Router::new()
            // Many at once: `?ids=a,b` (the GraphQL batch call).
            .route(
                "/users",
                get(|Query(q): Query<HashMap<String, String>>| async move {
                    let ids = q.get("ids").cloned().unwrap_or_default();
                    Json(Value::Array(ids.split(',').filter(|i| !i.is_empty()).map(user).collect()))
                }),
            )
            .route(
                "/users/{id}",
                get(|Path(id): Path<String>| async move { Json(user(&id)) }),
            )
            // Slow on purpose: the order page's call gives up after 150 ms.
            .route(
                "/users/{id}/recommendations",
                get(|Path(id): Path<String>| async move {
                    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
                    Json(json!({ "for": id, "skus": ["sku-3", "sku-9"] }))
                }),
            ),
        // Two instances of one backend (`urls`), told apart by `instance`.
        "inventory" | "inventory-b" => {
            let instance = if name == "inventory" { "a" } else { "b" };
            Router::new().route(
                "/inventory",
                get(move |Query(q): Query<HashMap<String, String>>| async move {
                    let stock = |sku: &str| json!({ "sku": sku, "in_stock": true, "quantity": 7, "instance": instance });
                    // Many at once: `?skus=a,b` (the GraphQL batch call).
                    if let Some(skus) = q.get("skus") {
                        return Json(Value::Array(skus.split(',').filter(|s| !s.is_empty()).map(stock).collect()));
                    }
                    Json(stock(q.get("sku").map_or("unknown", String::as_str)))
                }),
            )
        }
        "payments" => Router::new().route(
            "/payments",
            post(|Json(body): Json<Value>| async move {
                let id = format!("pay-{:08x}", fastrand_u32());
                (
                    StatusCode::CREATED,
                    Json(json!({ "id": id, "status": "authorized", "request": body })),
                )
            }),
        ),
        // The new checkout service the monolith's checkout is migrating to.
        "checkout-v2" => Router::new()
            .route("/checkout/cart", get(|| async { Json(cart("checkout-v2")) }))
            .route(
                "/checkout/shipping",
                get(|| async { Json(json!({ "served_by": "checkout-v2", "carrier": "parcel-express", "days": 2 })) }),
            ),
        _ => Router::new()
            .route("/checkout/cart", get(|| async { Json(cart("monolith")) }))
            .route(
                "/checkout/shipping",
                get(|| async { Json(json!({ "served_by": "monolith", "carrier": "postal", "days": 2 })) }),
            )
            .fallback(|req: Request| async move {
            Json(json!({
                "served_by": "monolith",
                "method": req.method().as_str(),
                "path": req.uri().path(),
                "query": req.uri().query(),
            }))
            .into_response()
        }),
    }
}

fn cart(served_by: &str) -> Value {
    json!({ "served_by": served_by, "cart_id": "cart-1", "items": [{ "sku": "sku-1", "qty": 2 }, { "sku": "sku-7", "qty": 1 }], "total": 38.5 })
}

fn order(n: u32) -> Value {
    json!({
        "id": n.to_string(), "status": "shipped", "customer_id": format!("c-{}", n % 7),
        "sku": format!("sku-{n}"), "total": 10.5 * f64::from(n),
        "items": [{ "sku": format!("sku-{n}"), "quantity": 1 }, { "sku": format!("sku-{}", n % 5), "quantity": 2 }],
    })
}

fn user(id: &str) -> Value {
    json!({ "id": id, "name": format!("Customer {id}"), "tier": "gold" })
}

fn order_for(id: &str) -> Value {
    let mut o = order(id.parse().unwrap_or(1));
    o["id"] = json!(id);
    o
}

fn fastrand_u32() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// Runs the demo until SIGTERM/SIGINT.
pub(crate) fn run(listen: Option<SocketAddr>, admin_listen: Option<SocketAddr>) -> ExitCode {
    let idp = match Idp::new() {
        Ok(idp) => idp,
        Err(e) => {
            eprintln!("portico demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut listeners = Vec::new();
    let mut vars = HashMap::new();
    for name in BACKENDS {
        let l = match std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
        {
            Ok(l) => l,
            Err(e) => {
                eprintln!("portico demo: cannot start the {name} backend: {e}");
                return ExitCode::FAILURE;
            }
        };
        let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        vars.insert(
            format!(
                "PORTICO_DEMO_{}",
                name.to_ascii_uppercase().replace('-', "_")
            ),
            format!("http://{addr}"),
        );
        listeners.push((name, l));
    }
    let sources = Sources {
        dir: PathBuf::from("."),
        gateway: Source {
            name: "gateway.yaml".into(),
            text: GATEWAY_YAML.into(),
        },
        routes: ROUTE_FILES
            .iter()
            .filter(|(n, _)| n.ends_with(".yaml"))
            .map(|(n, t)| Source {
                name: (*n).into(),
                text: (*t).into(),
            })
            .collect(),
        files: ROUTE_FILES
            .iter()
            .filter(|(n, _)| !n.ends_with(".yaml"))
            .map(|(n, t)| Source {
                name: (*n).into(),
                text: (*t).into(),
            })
            .collect(),
    };
    let lookup = |name: &str| vars.get(name).cloned().or_else(|| config::env_vars(name));
    let cfg = match config::load_with(&sources, &lookup, &bffs::extensions()) {
        Ok(c) => c,
        Err(e) => {
            eprint!("the built-in demo configuration is invalid:\n{e}");
            return ExitCode::from(1);
        }
    };
    let start_backends = move |bound: &gateway::server::Bound| {
        for (name, l) in listeners {
            match tokio::net::TcpListener::from_std(l) {
                Ok(l) => {
                    // Every demo service answers its health check.
                    let app = app(name, &idp.jwks).route("/healthz", get(|| async { "ok" }));
                    tokio::spawn(async move {
                        let _ = axum::serve(l, app).await;
                    });
                }
                Err(e) => eprintln!("portico demo: {name} backend failed: {e}"),
            }
        }
        println!("{}", instructions(bound.addr, bound.admin_addr, &idp.token));
    };
    crate::serve(cfg, listen, admin_listen, Some(Box::new(start_backends)))
}

/// The ready-to-paste commands; every one of them is run by the demo test.
fn instructions(addr: SocketAddr, admin: Option<SocketAddr>, token: &str) -> String {
    let base = format!("http://{addr}");
    let mut out = format!(
        "\nPortico demo is up.\n\n\
         The web routes want a token from the demo's identity provider (ES256, JWKS served\n\
         by the demo, valid 24 h; without it they answer 401):\n\n  TOKEN={token}\n\n\
         Partner payments want the API key {DEMO_API_KEY} in X-API-Key.\n\n\
         Try:\n\n"
    );
    let auth = format!("-H 'authorization: Bearer {token}'");
    let cmds = [
        (
            "web: an order, proxied to the orders service (as user-7 of tenant acme)",
            format!("curl -s {auth} {base}/web/orders/42"),
        ),
        (
            "web: the order page, aggregated from four backend calls (one too slow: a partial answer)",
            format!("curl -s -i {auth} {base}/web/order-page/42"),
        ),
        (
            "web: GraphQL over the same backends: 20 orders with their customers cost 2 backend calls (a browser gets GraphiQL at this URL)",
            format!(
                "curl -s {auth} -H 'content-type: application/json' -d '{{\"query\":\"{{ orders {{ id status customer {{ name }} }} }}\"}}' {base}/web/graphql"
            ),
        ),
        (
            "web: a customer; the token may also come in the `session` cookie",
            format!("curl -s -b 'session={token}' {base}/web/users/7"),
        ),
        (
            "web: a static answer from the gateway itself",
            format!("curl -s {base}/web/config"),
        ),
        (
            "mobile: stock, cached at the edge for 5 s; run it twice: Cache-Status goes from `fwd=miss; stored` to `hit` (rate limited per client IP)",
            format!("curl -s -i '{base}/mobile/inventory?sku=sku-42'"),
        ),
        (
            "mobile: the order page for the app, only the members it shows, gzip if accepted",
            format!(
                "curl -s --compressed '{base}/mobile/order-page/42?fields=order.status,stock.quantity'"
            ),
        ),
        (
            "mobile: the team's OpenAPI 3.1 document, generated from routes/mobile.yaml",
            format!("curl -s {base}/mobile/openapi.json"),
        ),
        (
            "partner: create a payment with the partner's API key",
            format!(
                "curl -s -X POST -H 'x-api-key: {DEMO_API_KEY}' -H 'content-type: application/json' -d '{{\"amount\": 12.5}}' {base}/partner/payments"
            ),
        ),
        (
            "partner: a payment with an Idempotency-Key; run it twice: the second answer is the first one, replayed (Idempotent-Replayed: true), and nothing is charged twice",
            format!(
                "curl -s -i -X POST -H 'x-api-key: {DEMO_API_KEY}' -H 'idempotency-key: order-42-payment' -H 'content-type: application/json' -d '{{\"amount\": 12.5}}' {base}/partner/payments"
            ),
        ),
        (
            "partner: a public status page (auth: none)",
            format!("curl -s {base}/partner/status"),
        ),
        (
            "legacy: anything else goes to the monolith",
            format!("curl -s '{base}/account/settings?tab=privacy'"),
        ),
    ];
    for (what, cmd) in cmds {
        out.push_str(&format!("  # {what}\n  {cmd}\n\n"));
    }
    if let Some(a) = admin {
        out.push_str(&format!(
            "  # admin: the route table\n  curl -s http://{a}/routes\n\n  \
             # admin: backends with their instances, health, breakers and recent latency\n  curl -s http://{a}/backends\n\n  \
             # admin: the dependency map (teams, routes, backends, breakers, unprotected calls) and the Prometheus metrics\n  curl -s http://{a}/topology\n  curl -s http://{a}/metrics\n\n  \
             # admin: the cache's entries, bytes, hits and misses; then drop everything under /mobile\n  curl -s http://{a}/cache\n  curl -s -X POST -d '{{\"prefix\": \"/mobile\"}}' http://{a}/cache/purge\n\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    /// The embedded route files are exactly the files in `routes/`, byte for byte.
    #[test]
    fn embedded_config_matches_the_repository() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut on_disk: Vec<String> = std::fs::read_dir(root.join("routes"))
            .unwrap()
            .flatten()
            .map(|e| format!("routes/{}", e.file_name().to_string_lossy()))
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = super::ROUTE_FILES
            .iter()
            .map(|(n, _)| (*n).to_string())
            .collect();
        assert_eq!(embedded, on_disk, "update ROUTE_FILES in src/demo.rs");
        for (name, text) in super::ROUTE_FILES {
            assert_eq!(std::fs::read_to_string(root.join(name)).unwrap(), *text);
        }
        assert_eq!(
            std::fs::read_to_string(root.join("gateway.yaml")).unwrap(),
            super::GATEWAY_YAML
        );
    }
}
