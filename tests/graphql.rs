//! Black-box: a route file's GraphQL endpoint over REST backends (contract § 3.7, error
//! codes of § 3.3), served by the real `portico` binary against real HTTP backends on
//! loopback.
//!
//! Covered, in this order: field resolution (`@rest`, `@map`, arguments, defaults, enums,
//! input types, custom scalars, template encoding, result coercion); `batch` fields (one
//! call for all parents, distinct keys, `max`, list fields); identical calls made once;
//! partial data and every field error code; null propagation per the GraphQL spec; the
//! document limits (each refused before any backend call); GraphQL over HTTP (GET and
//! POST, media types and status codes, 405, 415, malformed requests); persisted queries
//! (APQ and allowlists); batched operations; the file's auth, rate limits and CORS;
//! introspection; GraphiQL; configuration errors with file and line; snapshots of whole
//! responses; and the repository's own demo endpoint.
//!
//! Backends are [`Recorder`]s: they record every request, so tests count backend calls
//! and read exactly what the gateway sent.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use support::*;

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// The endpoint every test file mounts.
const ENDPOINT: &str = "/web/graphql";

/// The GraphQL-over-HTTP response media type.
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// A body text our backends put in error answers; it must never reach a client.
const SECRET: &str = "backend-internal-detail";

/// One entry under `backends:` (timeout 2 s unless given), extra keys one per line.
fn backend(name: &str, url: &str, extra: &[&str]) -> String {
    let mut out = format!("  {name}:\n    url: {url}\n");
    if !extra.iter().any(|k| k.starts_with("timeout:")) {
        out.push_str("    timeout: 2s\n");
    }
    for k in extra {
        out.push_str(&format!("    {k}\n"));
    }
    out
}

/// `routes/web.yaml`: team web, prefix /web, the file-level lines of `head` (auth, cors…;
/// one line keeps the block's line numbers below), and a `graphql` block at /graphql
/// with schema `web.graphql` (line 6) and `options` (from line 7), one per line.
fn web_file(head: &str, options: &[&str]) -> String {
    let mut out = format!(
        "team: web\nprefix: /web\n{head}graphql:\n  path: /graphql\n  schema: web.graphql\n"
    );
    for o in options {
        out.push_str(&format!("  {o}\n"));
    }
    out
}

/// A config dir: `backends` (and `gateway_extra` top-level YAML) in gateway.yaml, the
/// routes file `web`, the SDL as `routes/web.graphql`, and more files beside them.
fn config_dir(
    backends: &[String],
    gateway_extra: &str,
    web: &str,
    sdl: &str,
    files: &[(&str, &str)],
) -> ConfigDir {
    let gateway = format!(
        "server:\n  listen: 127.0.0.1:0\n  shutdown_grace: 1s\nadmin:\n  listen: 127.0.0.1:0\nbackends:\n{}{gateway_extra}",
        backends.concat()
    );
    let mut routes = vec![("web.yaml", web), ("web.graphql", sdl)];
    routes.extend_from_slice(files);
    ConfigDir::new(&gateway, &routes)
}

/// The gateway with `backends`, a public file with these `graphql` options, and `sdl`.
fn serve(backends: &[String], options: &[&str], sdl: &str) -> Gateway {
    Gateway::serve(config_dir(
        backends,
        "",
        &web_file("auth: none\n", options),
        sdl,
        &[],
    ))
}

// ---------------------------------------------------------------------------------------
// Requests and responses
// ---------------------------------------------------------------------------------------

/// Percent-encodes everything but unreserved characters (for query strings).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Decodes `%XX` escapes (what our backends do with the keys they get).
fn dec(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One request to the gateway; `body` is `(content type, text)`.
async fn call(
    gw: &Gateway,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, String)>,
) -> Got {
    let mut req = Request::builder().method(method).uri(gw.url(target));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = match body {
        Some((content_type, text)) => {
            req = req.header("content-type", content_type);
            Full::from(text)
        }
        None => Full::default(),
    };
    send(&client(), req.body(body).unwrap()).await
}

/// POST `body` as `application/json` to the endpoint.
async fn post(gw: &Gateway, body: &Value, headers: &[(&str, &str)]) -> Got {
    call(
        gw,
        "POST",
        ENDPOINT,
        headers,
        Some(("application/json", body.to_string())),
    )
    .await
}

/// POST one query.
async fn run(gw: &Gateway, query: &str) -> Got {
    post(gw, &json!({ "query": query }), &[]).await
}

/// GET the endpoint with these query parameters (encoded here).
async fn get_with(gw: &Gateway, params: &[(&str, &str)], headers: &[(&str, &str)]) -> Got {
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    call(
        gw,
        "GET",
        &format!("{ENDPOINT}?{}", query.join("&")),
        headers,
        None,
    )
    .await
}

/// No backend address, backend body or stack detail in what the client got.
fn assert_no_leak(got: &Got) {
    let text = got.text();
    for bad in ["127.0.0.1", "localhost", SECRET, "panicked"] {
        assert!(!text.contains(bad), "leaks {bad:?}: {text}");
    }
}

/// An executed GraphQL response over `application/json`: 200, a `data` member; the body.
fn response(got: &Got) -> Value {
    assert_eq!(got.status, 200, "body: {}", got.text());
    assert_eq!(
        got.header("content-type"),
        Some("application/json"),
        "{}",
        got.text()
    );
    assert_no_leak(got);
    let body = got.json();
    assert!(body.get("data").is_some(), "a `data` member: {body}");
    body
}

/// A response without errors: its `data`.
fn data(got: &Got) -> Value {
    let body = response(got);
    assert!(body.get("errors").is_none(), "no errors expected: {body}");
    body["data"].clone()
}

/// A path as `a.0.b`.
fn path_text(path: &Value) -> String {
    path.as_array()
        .map(|segs| {
            segs.iter()
                .map(|s| match s {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(".")
        })
        .unwrap_or_default()
}

/// `(path, code)` of every error, sorted; each error has a non-empty message.
fn errors(body: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = body["errors"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| {
                    assert!(
                        e["message"].as_str().is_some_and(|m| !m.is_empty()),
                        "an error has a message: {e}"
                    );
                    (
                        path_text(&e["path"]),
                        e["extensions"]["code"].as_str().unwrap_or("?").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// `[(path, code)]` as owned pairs, for comparing with [`errors`].
fn expect(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(p, c)| (p.to_string(), c.to_string()))
        .collect()
}

/// The codes of a response's errors, in order.
fn codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A request error (nothing executed): `status`, content type starting with `media`, no
/// `data` member, and every error carrying `code`.
fn assert_request_error(got: &Got, status: u16, media: &str, code: &str) {
    assert_eq!(got.status.as_u16(), status, "body: {}", got.text());
    let content_type = got.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with(media),
        "content type {content_type:?}, expected {media}"
    );
    assert_no_leak(got);
    let body = got.json();
    assert!(body.get("data").is_none(), "no `data` member: {body}");
    let found = codes(&body);
    assert!(
        !found.is_empty() && found.iter().all(|c| c == code),
        "expected {code}: {body}"
    );
}

// ---------------------------------------------------------------------------------------
// The shop: an orders backend, a users backend and a schema over them
// ---------------------------------------------------------------------------------------

/// The schema most tests use.
const SHOP_SDL: &str = r#"
"Orders and their customers."
type Query {
  "One order by id."
  order(id: ID!): Order @rest(backend: "orders", path: "/orders/{args.id}")
  orders(status: OrderStatus = placed, first: Int = 3): [Order!]!
    @rest(backend: "orders", path: "/orders?status={args.status}&first={args.first}")
    @map(from: "data.orders")
  search(filter: OrderFilter!): [Order!]
    @rest(backend: "orders", method: "POST", path: "/search",
          body: { filter: "{args.filter}", label: "over {args.filter.min_total}", source: "graphql" })
  user(id: ID!): User @rest(backend: "users", path: "/users/{args.id}")
  userName(id: ID!): String @rest(backend: "users", path: "/users/{args.id}") @map(from: "name")
  tenantUser: User @rest(backend: "users", path: "/users/{header.x-tenant}")
}

type Mutation {
  placeOrder(input: NewOrder!): Order
    @rest(backend: "orders", method: "POST", path: "/orders", body: "{args.input}")
}

enum OrderStatus { placed shipped delivered }

input OrderFilter { status: OrderStatus = shipped, min_total: Float, tags: [String!] }

input NewOrder { sku: String!, quantity: Int = 1, note: String }

"Any JSON."
scalar JSON

type Order {
  id: ID!
  status: OrderStatus!
  total: Float
  legacy_total: Float @deprecated(reason: "use total") @map(from: "total")
  customer_id: ID
  customerName: String @map(from: "customer.name")
  meta: JSON
  "The customer, for all orders of a list in one call."
  customer: User @rest(backend: "users", path: "/users/{parent.customer_id}",
                       batch: { path: "/users?ids={keys}", key: "id" })
  "The customer again, one call per distinct customer."
  owner: User @rest(backend: "users", path: "/users/{parent.customer_id}")
}

type User { id: ID! name: String! tier: String }
"#;

fn order(n: u32) -> Value {
    json!({
        "id": n.to_string(),
        "status": "placed",
        "total": 10.5 * f64::from(n),
        "customer_id": format!("c-{}", n % 3),
        "customer": { "name": format!("Customer c-{}", n % 3) },
        "meta": { "channel": "web", "tags": ["gift"] },
    })
}

fn order_with_id(id: &str) -> Value {
    let mut o = order(id.parse().unwrap_or(1));
    o["id"] = json!(id);
    o
}

fn user(id: &str) -> Value {
    json!({ "id": id, "name": format!("Customer {id}"), "tier": "gold" })
}

/// `GET /orders?first=N` (`{"data": {"orders": [...]}}`), `GET /orders/ID`, `POST
/// /orders` (the body back with an id), `POST /search`.
async fn orders_backend() -> Recorder {
    Recorder::start(|r| match (r.method.as_str(), r.path()) {
        ("GET", "/orders") => {
            let first: u32 = r.param("first").and_then(|f| f.parse().ok()).unwrap_or(3);
            let first = first.min(50);
            Canned::Json(
                json!({ "data": { "orders": (1..=first).map(order).collect::<Vec<_>>() } }),
            )
        }
        ("GET", p) if p.starts_with("/orders/") => Canned::Json(order_with_id(&dec(r.last()))),
        ("POST", "/orders") => {
            let mut o = r.json();
            o["id"] = json!("new-1");
            o["status"] = json!("placed");
            Canned::Json(o)
        }
        ("POST", "/search") => Canned::Json(json!([order(7)])),
        _ => Canned::Status(404),
    })
    .await
}

/// `GET /users?ids=a,b` (an array, in key order) and `GET /users/ID`.
async fn users_backend() -> Recorder {
    Recorder::start(|r| match r.path() {
        "/users" => Canned::Json(Value::Array(
            r.param("ids")
                .unwrap_or_default()
                .split(',')
                .filter(|k| !k.is_empty())
                .map(|k| user(&dec(k)))
                .collect(),
        )),
        p if p.starts_with("/users/") => Canned::Json(user(&dec(r.last()))),
        _ => Canned::Status(404),
    })
    .await
}

/// The shop's gateway: `orders` and `users` at these URLs, these `graphql` options.
fn shop(orders: &str, users: &str, options: &[&str]) -> Gateway {
    serve(
        &[backend("orders", orders, &[]), backend("users", users, &[])],
        options,
        SHOP_SDL,
    )
}

// ---------------------------------------------------------------------------------------
// Field resolution
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_read_the_backend_answer_and_map_reaches_into_it() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &[]);
    let got = run(
        &gw,
        r#"{ order(id: "42") { id status total customer_id customerName meta __typename }
             userName(id: "u-1") }"#,
    )
    .await;
    assert_eq!(
        data(&got),
        json!({
            "order": {
                "id": "42",
                "status": "placed",
                "total": 441.0,
                "customer_id": "c-0",
                "customerName": "Customer c-0",
                "meta": { "channel": "web", "tags": ["gift"] },
                "__typename": "Order",
            },
            "userName": "Customer u-1",
        })
    );
    assert_eq!(orders.uris(), ["/orders/42"]);
    assert_eq!(users.uris(), ["/users/u-1"]);
    let seen = &orders.seen()[0];
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.header("accept"), Some("application/json"));
    assert!(seen.header("x-request-id").is_some(), "{:?}", seen.headers);
    assert_eq!(
        seen.header("x-request-id"),
        got.header("x-request-id"),
        "backend calls carry the request's id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_defaults_enums_and_variables_fill_the_path() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &[]);

    // Every argument left out: the SDL's defaults.
    let d = data(&run(&gw, "{ orders { id } }").await);
    assert_eq!(
        d,
        json!({ "orders": [{ "id": "1" }, { "id": "2" }, { "id": "3" }] })
    );
    // Given inline: an enum value and an Int.
    let d = data(&run(&gw, "{ orders(status: shipped, first: 1) { id status } }").await);
    assert_eq!(d, json!({ "orders": [{ "id": "1", "status": "placed" }] }));
    // Given as variables.
    let body = json!({
        "query": "query Q($s: OrderStatus!, $n: Int) { orders(status: $s, first: $n) { id } }",
        "variables": { "s": "delivered", "n": 2 },
        "operationName": "Q",
    });
    let d = data(&post(&gw, &body, &[]).await);
    assert_eq!(d["orders"].as_array().map(Vec::len), Some(2), "{d}");
    assert_eq!(
        orders.uris(),
        [
            "/orders?status=placed&first=3",
            "/orders?status=shipped&first=1",
            "/orders?status=delivered&first=2",
        ]
    );

    // An enum value that does not exist, or an Int that is no integer: refused, no call.
    for bad in [
        "{ orders(status: lost) { id } }",
        "{ orders(first: 2.5) { id } }",
        r#"{ orders(first: "2") { id } }"#,
    ] {
        let got = run(&gw, bad).await;
        assert_request_error(&got, 200, "application/json", "GRAPHQL_VALIDATION_FAILED");
    }
    assert_eq!(orders.hits(), 3);
}

/// A short document whose fragments double at every level (2^40 fields once expanded) is
/// measured without being walked and refused at once, before any backend call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_that_double_are_refused_at_once() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &[]);
    let mut q = String::from("query { ...F0 }");
    for i in 0..40 {
        q.push_str(&format!(
            " fragment F{i} on Query {{ ...F{n} ...F{n} }}",
            n = i + 1
        ));
    }
    q.push_str(" fragment F40 on Query { __typename }");
    let started = Instant::now();
    let got = run(&gw, &q).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_request_error(&got, 200, "application/json", "GRAPHQL_VALIDATION_FAILED");
    assert_eq!(orders.hits() + users.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int_arguments_outside_32_bits_are_refused() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &[]);
    // GraphQL's Int is a signed 32-bit integer (spec § 3.5.1). async-graphql's dynamic
    // schema takes 64 bits, so the gateway refuses larger values where it reads the
    // arguments: the field fails with BAD_USER_INPUT and its backend is never called.
    for body in [
        json!({ "query": "{ orders(first: 2147483648) { id } }" }),
        json!({ "query": "{ orders(first: -2147483649) { id } }" }),
        json!({ "query": "query($n: Int) { orders(first: $n) { id } }", "variables": { "n": 2_147_483_648_u64 } }),
    ] {
        let got = post(&gw, &body, &[]).await;
        let v = got.json();
        assert_eq!(
            v["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{v}"
        );
        assert_eq!(v["errors"][0]["path"], json!(["orders"]), "{v}");
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("32-bit"),
            "{v}"
        );
    }
    assert_eq!(orders.uris(), Vec::<String>::new(), "nothing may run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_objects_and_variables_become_the_json_body() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &[]);

    let got = run(
        &gw,
        r#"{ search(filter: { status: delivered, min_total: 5.5, tags: ["a b", "c"] }) { id } }"#,
    )
    .await;
    assert_eq!(data(&got), json!({ "search": [{ "id": "7" }] }));
    let seen = &orders.seen()[0];
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("POST", "/search")
    );
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(
        seen.json(),
        json!({
            // A lone variable keeps its type (here an object, its enum as a string).
            "filter": { "status": "delivered", "min_total": 5.5, "tags": ["a b", "c"] },
            // Text around a variable makes a string.
            "label": "over 5.5",
            "source": "graphql",
        })
    );

    let body = json!({
        "query": "mutation Place($in: NewOrder!) { placeOrder(input: $in) { id status } }",
        "variables": { "in": { "sku": "sku/1 x", "quantity": 1, "note": "ring twice" } },
    });
    let got = post(&gw, &body, &[]).await;
    assert_eq!(
        data(&got),
        json!({ "placeOrder": { "id": "new-1", "status": "placed" } })
    );
    let seen = &orders.seen()[1];
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("POST", "/orders")
    );
    assert_eq!(
        seen.json(),
        json!({ "sku": "sku/1 x", "quantity": 1, "note": "ring twice" })
    );

    // A required input member missing: refused before any call.
    let got = run(
        &gw,
        "mutation { placeOrder(input: { quantity: 2 }) { id } }",
    )
    .await;
    assert_request_error(&got, 200, "application/json", "GRAPHQL_VALIDATION_FAILED");
    assert_eq!(orders.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_object_field_defaults_are_applied() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &[]);
    // `input NewOrder { sku: String!, quantity: Int = 1, note: String }` and
    // `input OrderFilter { status: OrderStatus = shipped, … }`: a member left out takes
    // its default (GraphQL spec § 5.6 / input coercion), inline or in variables.
    for body in [
        json!({ "query": r#"mutation { placeOrder(input: { sku: "a" }) { id } }"# }),
        json!({
            "query": "mutation($in: NewOrder!) { placeOrder(input: $in) { id } }",
            "variables": { "in": { "sku": "a" } },
        }),
    ] {
        data(&post(&gw, &body, &[]).await);
    }
    data(&run(&gw, "{ search(filter: { min_total: 5 }) { id } }").await);
    let bodies: Vec<Value> = orders.seen().iter().map(Recorded::json).collect();
    assert_eq!(
        bodies,
        [
            json!({ "sku": "a", "quantity": 1 }),
            json!({ "sku": "a", "quantity": 1 }),
            json!({ "filter": { "status": "shipped", "min_total": 5 }, "label": "over 5", "source": "graphql" }),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_values_are_percent_encoded_and_headers_can_be_used() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &[]);

    let got = run(&gw, r#"{ order(id: "a/b c?d=1&e#f%") { id } }"#).await;
    assert_eq!(data(&got), json!({ "order": { "id": "a/b c?d=1&e#f%" } }));
    assert_eq!(orders.uris(), ["/orders/a%2Fb%20c%3Fd%3D1%26e%23f%25"]);

    // `..` as a whole path segment is never sent.
    let got = run(&gw, r#"{ order(id: "..") { id } }"#).await;
    let body = response(&got);
    assert_eq!(body["data"], json!({ "order": null }));
    assert_eq!(errors(&body), expect(&[("order", "SKIPPED")]));
    assert_eq!(orders.hits(), 1, "nothing sent for `..`");

    let got = post(
        &gw,
        &json!({ "query": "{ tenantUser { id } }" }),
        &[("x-tenant", "acme corp/eu")],
    )
    .await;
    assert_eq!(
        data(&got),
        json!({ "tenantUser": { "id": "acme corp/eu" } })
    );
    assert_eq!(users.uris(), ["/users/acme%20corp%2Feu"]);
}

const COERCE_SDL: &str = r#"
type Query { thing(id: ID!): Thing @rest(backend: "b", path: "/things/{args.id}") }
enum Kind { small large }
type Thing { id: ID count: Int ratio: Float ok: Boolean kind: Kind label: String }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_coerced_to_their_types_and_wrong_types_are_invalid_body() {
    let b = Recorder::start(|r| {
        Canned::Json(match r.last() {
            "good" => json!({
                "id": 42, "count": 2147483647, "ratio": 2, "ok": true, "kind": "large", "label": 7,
            }),
            "low" => json!({ "id": "x-1", "count": -2147483648, "ratio": 0.25, "ok": false, "kind": "small", "label": "L" }),
            _ => json!({
                "id": 1.5, "count": 2147483648_u64, "ratio": "x", "ok": "true", "kind": "medium",
                "label": { "text": "no" },
            }),
        })
    })
    .await;
    let gw = serve(&[backend("b", &b.url(), &[])], &[], COERCE_SDL);
    let fields = "{ id count ratio ok kind label }";

    let got = run(&gw, &format!(r#"{{ thing(id: "good") {fields} }}"#)).await;
    assert_eq!(
        data(&got),
        json!({ "thing": { "id": "42", "count": 2147483647, "ratio": 2.0, "ok": true, "kind": "large", "label": "7" } })
    );
    let got = run(&gw, &format!(r#"{{ thing(id: "low") {fields} }}"#)).await;
    assert_eq!(
        data(&got),
        json!({ "thing": { "id": "x-1", "count": -2147483648, "ratio": 0.25, "ok": false, "kind": "small", "label": "L" } })
    );

    let got = run(&gw, &format!(r#"{{ thing(id: "bad") {fields} }}"#)).await;
    let body = response(&got);
    assert_eq!(
        body["data"],
        json!({ "thing": { "id": null, "count": null, "ratio": null, "ok": null, "kind": null, "label": null } })
    );
    assert_eq!(
        errors(&body),
        expect(&[
            ("thing.count", "INVALID_BODY"),
            ("thing.id", "INVALID_BODY"),
            ("thing.kind", "INVALID_BODY"),
            ("thing.label", "INVALID_BODY"),
            ("thing.ok", "INVALID_BODY"),
            ("thing.ratio", "INVALID_BODY"),
        ])
    );
}

// ---------------------------------------------------------------------------------------
// Batching
// ---------------------------------------------------------------------------------------

/// Twenty orders: customers `c-1`, `c-2` and `c 3,x` in turn; the last has none.
async fn twenty_orders() -> Recorder {
    Recorder::start(|_| {
        let list: Vec<Value> = (1..=20_usize)
            .map(|n| {
                let mut o = json!({ "id": n.to_string(), "status": "placed" });
                if n != 20 {
                    o["customer_id"] = json!(["c-1", "c-2", "c 3,x"][n % 3]);
                }
                o
            })
            .collect();
        Canned::Json(json!({ "data": { "orders": list } }))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_parents_make_one_batch_call_with_each_distinct_key_once() {
    let (orders, users) = (twenty_orders().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &[]);
    let got = run(
        &gw,
        "{ orders(first: 20) { id customer_id customer { id name } } }",
    )
    .await;
    let d = data(&got);
    let list = d["orders"].as_array().unwrap();
    assert_eq!(list.len(), 20);
    for o in list {
        match o["customer_id"].as_str() {
            Some(key) => assert_eq!(
                o["customer"],
                json!({ "id": key, "name": format!("Customer {key}") }),
                "{o}"
            ),
            None => assert_eq!(o["customer"], Value::Null, "no key, nothing to load: {o}"),
        }
    }
    assert_eq!(orders.hits(), 1);
    assert_eq!(users.hits(), 1, "one batch call: {:?}", users.uris());
    let seen = &users.seen()[0];
    assert_eq!(seen.path(), "/users");
    let mut keys: Vec<&str> = seen.param("ids").unwrap().split(',').collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["c%203%2Cx", "c-1", "c-2"],
        "distinct keys, each encoded: {}",
        seen.uri
    );
}

const BATCH_SDL: &str = r#"
type Query { orders: [Order!]! @rest(backend: "orders", path: "/orders") }
type Order {
  id: ID!
  buyer: Buyer @rest(backend: "users", path: "/users/{parent.buyer}",
                     batch: { path: "/users?ids={keys}&v={args.v}", key: "id", max: 2 })
  reviews: [Review!]! @rest(backend: "reviews", path: "/reviews?order={parent.id}",
                            batch: { path: "/reviews?orders={keys}", key: "order_id" })
}
type Buyer { id: ID! name: String! }
type Review { order_id: ID! stars: Int! }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_max_splits_the_keys_and_list_fields_get_every_match() {
    let orders = Recorder::json(json!([
        { "id": 1, "buyer": "b1" }, { "id": 2, "buyer": "b2" }, { "id": 3, "buyer": "b3" },
        { "id": 4, "buyer": "b4" }, { "id": 5, "buyer": "b5" }, { "id": 6, "buyer": "b1" },
    ]))
    .await;
    let users = Recorder::start(|r| {
        Canned::Json(Value::Array(
            r.param("ids")
                .unwrap_or_default()
                .split(',')
                .map(|k| json!({ "id": k, "name": k.to_uppercase() }))
                .collect(),
        ))
    })
    .await;
    // Order ids as numbers on one side, strings on the other: matched as text.
    let reviews = Recorder::json(json!([
        { "order_id": "1", "stars": 5 }, { "order_id": 2, "stars": 3 }, { "order_id": 1, "stars": 4 },
        { "order_id": 99, "stars": 1 },
    ]))
    .await;
    let sdl = BATCH_SDL.replace("&v={args.v}", "");
    let gw = serve(
        &[
            backend("orders", &orders.url(), &[]),
            backend("users", &users.url(), &[]),
            backend("reviews", &reviews.url(), &[]),
        ],
        &[],
        &sdl,
    );
    let got = run(&gw, "{ orders { id buyer { name } reviews { stars } } }").await;
    let d = data(&got);
    let stars: Vec<Value> = d["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["reviews"].clone())
        .collect();
    assert_eq!(
        stars,
        [
            json!([{ "stars": 5 }, { "stars": 4 }]),
            json!([{ "stars": 3 }]),
            json!([]),
            json!([]),
            json!([]),
            json!([]),
        ]
    );
    let buyers: Vec<&Value> = d["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["buyer"]["name"])
        .collect();
    assert_eq!(buyers, ["B1", "B2", "B3", "B4", "B5", "B1"]);

    // Five distinct buyers, at most two per call: three calls, every key exactly once.
    assert_eq!(users.hits(), 3, "{:?}", users.uris());
    let mut keys: Vec<String> = Vec::new();
    for s in users.seen() {
        let these: Vec<String> = s
            .param("ids")
            .unwrap()
            .split(',')
            .map(str::to_string)
            .collect();
        assert!(these.len() <= 2, "{}", s.uri);
        keys.extend(these);
    }
    keys.sort();
    assert_eq!(keys, ["b1", "b2", "b3", "b4", "b5"]);
    assert_eq!(reviews.hits(), 1);
    let mut order_keys: Vec<&str> = Vec::new();
    let seen = reviews.seen();
    order_keys.extend(seen[0].param("orders").unwrap().split(','));
    order_keys.sort_unstable();
    assert_eq!(order_keys, ["1", "2", "3", "4", "5", "6"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answer_that_is_not_an_array_fails_each_parents_field() {
    let orders =
        Recorder::json(json!([{ "id": 1, "buyer": "b1" }, { "id": 2, "buyer": "b2" }])).await;
    let users = Recorder::json(json!({ "b1": { "name": "no" } })).await;
    let reviews = Recorder::start(|_| Canned::Status(503)).await;
    let sdl = BATCH_SDL.replace("&v={args.v}", "");
    let gw = serve(
        &[
            backend("orders", &orders.url(), &[]),
            backend("users", &users.url(), &[]),
            backend("reviews", &reviews.url(), &[]),
        ],
        &[],
        &sdl,
    );
    let got = run(&gw, "{ orders { id buyer { name } } }").await;
    let body = response(&got);
    assert_eq!(
        body["data"],
        json!({ "orders": [{ "id": "1", "buyer": null }, { "id": "2", "buyer": null }] })
    );
    assert_eq!(
        errors(&body),
        expect(&[
            ("orders.0.buyer", "INVALID_BODY"),
            ("orders.1.buyer", "INVALID_BODY")
        ])
    );
    assert_eq!(users.hits(), 1);

    // A failed batch call of a non-null list field: the null goes past the non-null
    // order and the non-null list, to `data`.
    let got = run(&gw, "{ orders { id reviews { stars } } }").await;
    let body = response(&got);
    assert_eq!(body["data"], Value::Null, "{body}");
    assert_eq!(
        errors(&body),
        expect(&[
            ("orders.0.reviews", "UPSTREAM_STATUS"),
            ("orders.1.reviews", "UPSTREAM_STATUS")
        ])
    );
    assert_eq!(reviews.hits(), 1, "still one batch call");
}

const LEVELS_SDL: &str = r#"
type Query { orders: [Order!]! @rest(backend: "orders", path: "/orders") }
type Order { id: ID! lines: [Line!]! }
type Line {
  sku: String!
  product: Product @rest(backend: "catalog", path: "/products/{parent.sku}",
                         batch: { path: "/products?skus={keys}", key: "sku" })
}
type Product {
  sku: String!
  maker: Maker @rest(backend: "makers", path: "/makers/{parent.maker_id}",
                     batch: { path: "/makers?ids={keys}", key: "id" })
}
type Maker { id: ID! name: String! }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_level_of_nested_lists_is_one_batch_call() {
    // Four orders of three lines over six products, made by two makers.
    let orders = Recorder::json(Value::Array(
        (0..4)
            .map(|o| {
                let lines: Vec<Value> = (0..3)
                    .map(|l| json!({ "sku": format!("s{}", (o + l) % 6) }))
                    .collect();
                json!({ "id": o, "lines": lines })
            })
            .collect(),
    ))
    .await;
    let catalog = Recorder::start(|r| {
        Canned::Json(Value::Array(
            r.param("skus")
                .unwrap_or_default()
                .split(',')
                .map(|sku| {
                    let n: u32 = sku[1..].parse().unwrap_or(0);
                    json!({ "sku": sku, "maker_id": format!("m{}", n % 2) })
                })
                .collect(),
        ))
    })
    .await;
    let makers = Recorder::start(|r| {
        Canned::Json(Value::Array(
            r.param("ids")
                .unwrap_or_default()
                .split(',')
                .map(|id| json!({ "id": id, "name": format!("Maker {id}") }))
                .collect(),
        ))
    })
    .await;
    let gw = serve(
        &[
            backend("orders", &orders.url(), &[]),
            backend("catalog", &catalog.url(), &[]),
            backend("makers", &makers.url(), &[]),
        ],
        &[],
        LEVELS_SDL,
    );
    let got = run(
        &gw,
        "{ orders { id lines { sku product { sku maker { name } } } } }",
    )
    .await;
    let d = data(&got);
    for o in d["orders"].as_array().unwrap() {
        for line in o["lines"].as_array().unwrap() {
            let n: u32 = line["sku"].as_str().unwrap()[1..].parse().unwrap();
            assert_eq!(line["product"]["sku"], line["sku"], "{line}");
            assert_eq!(
                line["product"]["maker"]["name"],
                format!("Maker m{}", n % 2),
                "{line}"
            );
        }
    }
    let keys = |r: &Recorder, name: &str| {
        let mut k: Vec<String> = r
            .seen()
            .iter()
            .flat_map(|s| {
                s.param(name)
                    .unwrap_or_default()
                    .split(',')
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        k.sort();
        k
    };
    assert_eq!(catalog.hits(), 1, "{:?}", catalog.uris());
    assert_eq!(keys(&catalog, "skus"), ["s0", "s1", "s2", "s3", "s4", "s5"]);
    assert_eq!(makers.hits(), 1, "{:?}", makers.uris());
    assert_eq!(keys(&makers, "ids"), ["m0", "m1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_field_selected_twice_makes_one_call() {
    let orders =
        Recorder::json(json!([{ "id": 1, "buyer": "b1" }, { "id": 2, "buyer": "b2" }])).await;
    let users = Recorder::start(|r| {
        Canned::Json(Value::Array(
            r.param("ids")
                .unwrap_or_default()
                .split(',')
                .map(|k| json!({ "id": k, "name": k.to_uppercase() }))
                .collect(),
        ))
    })
    .await;
    let gw = serve(
        &[
            backend("orders", &orders.url(), &[]),
            backend("users", &users.url(), &[]),
            backend("reviews", &closed_port(), &[]),
        ],
        &[],
        &BATCH_SDL.replace("&v={args.v}", ""),
    );
    let got = run(&gw, "{ orders { a: buyer { name } b: buyer { id } } }").await;
    assert_eq!(
        data(&got),
        json!({ "orders": [
            { "a": { "name": "B1" }, "b": { "id": "b1" } },
            { "a": { "name": "B2" }, "b": { "id": "b2" } },
        ] })
    );
    // Same field, same arguments, same parents: one identical GET, made once.
    assert_eq!(users.hits(), 1, "{:?}", users.uris());
}

/// async-graphql resolves an object's fields one after another; the gateway starts the
/// calls of the fields below an object as soon as the object is known, so sibling calls
/// (and the batches of nested lists) overlap instead of adding up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sibling_and_nested_calls_run_side_by_side() {
    let slow = |v: Value| Canned::After(Duration::from_millis(300), Box::new(Canned::Json(v)));
    let orders = Recorder::json(json!([
        { "id": 1, "buyer": "b1", "items": [{ "sku": "s1" }] },
        { "id": 2, "buyer": "b2", "items": [{ "sku": "s2" }] },
    ]))
    .await;
    let users = Recorder::start(move |r| {
        let ids = r.param("ids").unwrap_or_default();
        slow(Value::Array(
            ids.split(',')
                .map(|k| json!({ "id": k, "name": k }))
                .collect(),
        ))
    })
    .await;
    let stock = Recorder::start(move |r| {
        let skus = r.param("skus").unwrap_or_default();
        slow(Value::Array(
            skus.split(',')
                .map(|k| json!({ "sku": k, "quantity": 3 }))
                .collect(),
        ))
    })
    .await;
    let notes = Recorder::start(move |_| slow(json!({ "text": "fragile" }))).await;
    let sdl = r#"
type Query { orders: [Order!]! @rest(backend: "orders", path: "/orders") }
type Order {
  id: ID!
  buyer: Buyer @rest(backend: "users", path: "/users/{parent.buyer}",
                     batch: { path: "/users?ids={keys}", key: "id" })
  note: Note @rest(backend: "notes", path: "/notes/{parent.id}")
  items: [Item!]!
}
type Item {
  sku: String!
  stock: Stock @rest(backend: "stock", path: "/stock/{parent.sku}",
                     batch: { path: "/stock?skus={keys}", key: "sku" })
}
type Buyer { id: ID! name: String! }
type Note { text: String! }
type Stock { sku: String! quantity: Int! }
"#;
    let gw = serve(
        &[
            backend("orders", &orders.url(), &[]),
            backend("users", &users.url(), &[]),
            backend("stock", &stock.url(), &[]),
            backend("notes", &notes.url(), &[]),
        ],
        &[],
        sdl,
    );
    let started = Instant::now();
    let got = run(
        &gw,
        "{ orders { id buyer { name } note { text } items { sku stock { quantity } } } }",
    )
    .await;
    let took = started.elapsed();
    assert_eq!(
        data(&got)["orders"][1],
        json!({ "id": "2", "buyer": { "name": "b2" }, "note": { "text": "fragile" },
                "items": [{ "sku": "s2", "stock": { "quantity": 3 } }] })
    );
    // Four levels of 300 ms calls one after another would take 900 ms or more.
    assert!(took < Duration::from_millis(750), "took {took:?}");
    assert_eq!((users.hits(), stock.hits(), notes.hits()), (1, 1, 2));
}

// ---------------------------------------------------------------------------------------
// Identical calls
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_get_calls_of_one_operation_are_made_once() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &[]);
    let query = r#"{
      a: order(id: "1") { id }
      b: order(id: "1") { status }
      c: order(id: "2") { id }
      orders(first: 6) { id owner { id } }
    }"#;
    let d = data(&run(&gw, query).await);
    assert_eq!(d["a"], json!({ "id": "1" }));
    assert_eq!(d["b"], json!({ "status": "placed" }));
    assert_eq!(d["c"], json!({ "id": "2" }));
    let owners: Vec<&Value> = d["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["owner"]["id"])
        .collect();
    assert_eq!(owners, ["c-1", "c-2", "c-0", "c-1", "c-2", "c-0"]);

    let mut uris = orders.uris();
    uris.sort();
    assert_eq!(
        uris,
        ["/orders/1", "/orders/2", "/orders?status=placed&first=6"]
    );
    // Six orders, three distinct customers: three calls.
    let mut uris = users.uris();
    uris.sort();
    assert_eq!(uris, ["/users/c-0", "/users/c-1", "/users/c-2"]);

    // Only within one operation: the same request again calls again.
    data(&run(&gw, query).await);
    assert_eq!((orders.hits(), users.hits()), (6, 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_get_calls_are_never_deduplicated() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &[]);
    let got = run(
        &gw,
        r#"mutation {
          a: placeOrder(input: { sku: "s-1" }) { id }
          b: placeOrder(input: { sku: "s-1" }) { id }
        }"#,
    )
    .await;
    assert_eq!(
        data(&got),
        json!({ "a": { "id": "new-1" }, "b": { "id": "new-1" } })
    );
    assert_eq!(orders.hits(), 2, "two POSTs: {:?}", orders.uris());
    assert!(orders.seen().iter().all(|s| s.method == "POST"));

    let got = run(
        &gw,
        r#"{ a: search(filter: { min_total: 1 }) { id } b: search(filter: { min_total: 1 }) { id } }"#,
    )
    .await;
    data(&got);
    assert_eq!(orders.hits(), 4);
}

// ---------------------------------------------------------------------------------------
// Partial data and the error codes
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_backend_down_gives_partial_data_with_path_and_code() {
    let orders = orders_backend().await;
    let down = closed_port();
    let gw = shop(&orders.url(), &down, &[]);
    let got = run(
        &gw,
        r#"{ order(id: "1") { id status owner { name } } user(id: "u-1") { name } orders(first: 2) { id customer { name } } }"#,
    )
    .await;
    let body = response(&got);
    assert_eq!(
        body["data"],
        json!({
            "order": { "id": "1", "status": "placed", "owner": null },
            "user": null,
            "orders": [{ "id": "1", "customer": null }, { "id": "2", "customer": null }],
        })
    );
    assert_eq!(
        errors(&body),
        expect(&[
            ("order.owner", "UPSTREAM_UNAVAILABLE"),
            ("orders.0.customer", "UPSTREAM_UNAVAILABLE"),
            ("orders.1.customer", "UPSTREAM_UNAVAILABLE"),
            ("user", "UPSTREAM_UNAVAILABLE"),
        ])
    );
    let port = down.rsplit(':').next().unwrap();
    assert!(!got.text().contains(port), "leaks the port: {}", got.text());
    for e in body["errors"].as_array().unwrap() {
        assert!(e["locations"].is_array(), "{e}");
    }
}

const FLAKY_SDL: &str = r#"
type Query {
  ok: Thing @rest(backend: "flaky", path: "/ok")
  status: Thing @rest(backend: "flaky", path: "/status")
  slow: Thing @rest(backend: "flaky", path: "/slow", timeout: "100ms")
  garbage: Thing @rest(backend: "flaky", path: "/garbage")
  wrong: Int @rest(backend: "flaky", path: "/wrong") @map(from: "count")
  skipped: Thing @rest(backend: "flaky", path: "/h/{header.x-absent}")
  down: Thing @rest(backend: "down", path: "/x")
}
type Thing { name: String }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_becomes_a_null_field_with_its_code() {
    let flaky = Recorder::start(|r| match r.path() {
        "/ok" => Canned::Json(json!({ "name": "fine" })),
        "/status" => Canned::Status(500),
        "/slow" => Canned::After(
            Duration::from_secs(3),
            Box::new(Canned::Json(json!({ "name": "late" }))),
        ),
        "/garbage" => Canned::Text("application/json", format!("{{{SECRET}")),
        "/wrong" => Canned::Json(json!({ "count": "many" })),
        _ => Canned::Status(404),
    })
    .await;
    let gw = serve(
        &[
            backend("flaky", &flaky.url(), &[]),
            backend("down", &closed_port(), &[]),
        ],
        &[],
        FLAKY_SDL,
    );
    let t = Instant::now();
    let got = run(
        &gw,
        "{ ok { name } status { name } slow { name } garbage { name } wrong skipped { name } down { name } }",
    )
    .await;
    let took = t.elapsed();
    let body = response(&got);
    assert_eq!(
        body["data"],
        json!({
            "ok": { "name": "fine" }, "status": null, "slow": null, "garbage": null,
            "wrong": null, "skipped": null, "down": null,
        })
    );
    assert_eq!(
        errors(&body),
        expect(&[
            ("down", "UPSTREAM_UNAVAILABLE"),
            ("garbage", "INVALID_BODY"),
            ("skipped", "SKIPPED"),
            ("slow", "TIMEOUT"),
            ("status", "UPSTREAM_STATUS"),
            ("wrong", "INVALID_BODY"),
        ])
    );
    assert!(
        took < Duration::from_millis(1500),
        "the 100 ms call timeout bounds the answer: {took:?}"
    );
    let mut paths: Vec<String> = flaky.seen().iter().map(|s| s.path().to_string()).collect();
    paths.sort();
    assert_eq!(
        paths,
        ["/garbage", "/ok", "/slow", "/status", "/wrong"],
        "nothing sent for the skipped field"
    );
}

const ONE_CALL_SDL: &str = r#"
type Query { thing(id: ID!): Thing @rest(backend: "b", path: "/things/{args.id}") }
type Thing { name: String }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_and_a_full_bulkhead_are_field_errors() {
    let failing = Recorder::start(|_| Canned::Status(500)).await;
    let gw = serve(
        &[backend(
            "b",
            &failing.url(),
            &["breaker: { consecutive_failures: 1, open_for: 30s }"],
        )],
        &[],
        ONE_CALL_SDL,
    );
    let body = response(&run(&gw, r#"{ thing(id: "1") { name } }"#).await);
    assert_eq!(errors(&body), expect(&[("thing", "UPSTREAM_STATUS")]));
    let before = failing.hits();
    let body = response(&run(&gw, r#"{ thing(id: "2") { name } }"#).await);
    assert_eq!(body["data"], json!({ "thing": null }));
    assert_eq!(errors(&body), expect(&[("thing", "CIRCUIT_OPEN")]));
    assert_eq!(failing.hits(), before, "an open breaker calls nothing");

    let slow = Recorder::start(|r| {
        Canned::After(
            Duration::from_millis(400),
            Box::new(Canned::Json(json!({ "name": r.last() }))),
        )
    })
    .await;
    let gw = serve(
        &[backend("b", &slow.url(), &["max_concurrency: 1"])],
        &[],
        ONE_CALL_SDL,
    );
    let body = response(
        &run(
            &gw,
            r#"{ a: thing(id: "a") { name } b: thing(id: "b") { name } }"#,
        )
        .await,
    );
    let found = errors(&body);
    assert_eq!(found.len(), 1, "{body}");
    assert_eq!(found[0].1, "BULKHEAD_FULL", "{body}");
    let failed = found[0].0.clone();
    let other = if failed == "a" { "b" } else { "a" };
    assert_eq!(body["data"][&failed], Value::Null);
    assert_eq!(body["data"][other], json!({ "name": other }));
    assert_eq!(slow.hits(), 1, "the refused call never reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_timeout_bounds_the_operation() {
    let b = Recorder::start(|r| match r.last() {
        "hang" => Canned::Hang,
        id => Canned::Json(json!({ "name": id })),
    })
    .await;
    let gw = serve(
        &[backend("b", &b.url(), &["timeout: 10s"])],
        &["timeout: 300ms"],
        ONE_CALL_SDL,
    );
    let t = Instant::now();
    let got = run(
        &gw,
        r#"{ fast: thing(id: "fast") { name } stuck: thing(id: "hang") { name } }"#,
    )
    .await;
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1200),
        "answered at the route's 300 ms deadline: {took:?}"
    );
    let body = response(&got);
    assert_eq!(
        body["data"],
        json!({ "fast": { "name": "fast" }, "stuck": null })
    );
    assert_eq!(errors(&body), expect(&[("stuck", "TIMEOUT")]));
}

// ---------------------------------------------------------------------------------------
// Null propagation
// ---------------------------------------------------------------------------------------

const NULLS_SDL: &str = r#"
type Query {
  order(id: ID!): Order @rest(backend: "b", path: "/orders/{args.id}")
  strict(id: ID!): Order! @rest(backend: "b", path: "/orders/{args.id}")
  orders: [Order!] @rest(backend: "b", path: "/orders")
  loose: [Order] @rest(backend: "b", path: "/orders")
  customer(id: ID!): Customer @rest(backend: "b", path: "/customers/{args.id}")
  tags: [String!] @rest(backend: "b", path: "/tags")
  kinds: [Kind] @rest(backend: "b", path: "/kinds")
  strictKinds: [Kind!] @rest(backend: "b", path: "/kinds")
  matrix: [[String!]] @rest(backend: "b", path: "/matrix")
}
enum Kind { small large }
type Order {
  id: ID!
  status: String!
  note: String
  owner: Owner! @rest(backend: "b", path: "/owners/{parent.owner_id}")
}
type Owner { name: String! }
type Customer { name: String orders: [Order!]! }
"#;

/// `/orders/1` whole; `/orders/2` without `status`; `/orders/3` whose owner's backend
/// call fails; `/orders` = [1, 2, 4]; `/customers/c` with orders [1, 2]; `/tags` with a
/// null; `/kinds` with a value no enum has; `/matrix` with a null in an inner list.
async fn nulls_gateway() -> (Recorder, Gateway) {
    let o1 = json!({ "id": "1", "status": "ok", "owner_id": "good" });
    let o2 = json!({ "id": "2", "owner_id": "good" });
    let o3 = json!({ "id": "3", "status": "ok", "owner_id": "broken" });
    let o4 = json!({ "id": "4", "status": "ok", "owner_id": "good" });
    let b = Recorder::start(move |r| match r.path() {
        "/orders/1" => Canned::Json(o1.clone()),
        "/orders/2" => Canned::Json(o2.clone()),
        "/orders/3" => Canned::Json(o3.clone()),
        "/orders" => Canned::Json(json!([o1, o2, o4])),
        "/customers/c" => Canned::Json(json!({ "name": "Cy", "orders": [o1, o2] })),
        "/owners/good" => Canned::Json(json!({ "name": "Ada" })),
        "/tags" => Canned::Json(json!(["a", null, "b"])),
        "/kinds" => Canned::Json(json!(["small", "huge", "large"])),
        "/matrix" => Canned::Json(json!([["a"], ["b", null]])),
        _ => Canned::Status(500),
    })
    .await;
    let gw = serve(&[backend("b", &b.url(), &[])], &[], NULLS_SDL);
    (b, gw)
}

/// Runs `query`: exactly `want` as data and `errs` as errors.
async fn assert_nulls(gw: &Gateway, query: &str, want: Value, errs: &[(&str, &str)]) {
    let body = response(&run(gw, query).await);
    assert_eq!(body["data"], want, "{query}: {body}");
    assert_eq!(errors(&body), expect(errs), "{query}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_non_null_field_nulls_its_nullable_parent() {
    let (_b, gw) = nulls_gateway().await;
    // Nothing fails: a null in a nullable field is just null.
    assert_nulls(
        &gw,
        r#"{ order(id: "1") { id note owner { name } } }"#,
        json!({ "order": { "id": "1", "note": null, "owner": { "name": "Ada" } } }),
        &[],
    )
    .await;
    // A non-null member missing from the answer; the sibling root field is untouched.
    assert_nulls(
        &gw,
        r#"{ order(id: "2") { id status } fine: order(id: "1") { id status } }"#,
        json!({ "order": null, "fine": { "id": "1", "status": "ok" } }),
        &[("order.status", "INVALID_BODY")],
    )
    .await;
    // A non-null `@rest` field whose call fails.
    assert_nulls(
        &gw,
        r#"{ order(id: "3") { id owner { name } } }"#,
        json!({ "order": null }),
        &[("order.owner", "UPSTREAM_STATUS")],
    )
    .await;
    // Aliases: paths and nulls use the response names.
    assert_nulls(
        &gw,
        r#"{ o: order(id: "3") { id w: owner { name } } p: order(id: "1") { id } }"#,
        json!({ "o": null, "p": { "id": "1" } }),
        &[("o.w", "UPSTREAM_STATUS")],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_non_null_element_nulls_the_list_or_only_itself() {
    let (_b, gw) = nulls_gateway().await;
    // `[Order!]`: the list is the nearest nullable position.
    assert_nulls(
        &gw,
        "{ orders { id status } }",
        json!({ "orders": null }),
        &[("orders.1.status", "INVALID_BODY")],
    )
    .await;
    // `[Order]`: only the element.
    assert_nulls(
        &gw,
        "{ loose { id status } }",
        json!({ "loose": [{ "id": "1", "status": "ok" }, null, { "id": "4", "status": "ok" }] }),
        &[("loose.1.status", "INVALID_BODY")],
    )
    .await;
    // `[Order!]!` inside a nullable object: past the list to the object.
    assert_nulls(
        &gw,
        r#"{ customer(id: "c") { name orders { id status } } }"#,
        json!({ "customer": null }),
        &[("customer.orders.1.status", "INVALID_BODY")],
    )
    .await;
    // A null scalar element of `[String!]`.
    assert_nulls(
        &gw,
        "{ tags }",
        json!({ "tags": null }),
        &[("tags.1", "INVALID_BODY")],
    )
    .await;
    // An enum value the schema does not have, in `[Kind]` and in `[Kind!]`.
    assert_nulls(
        &gw,
        "{ kinds strictKinds }",
        json!({ "kinds": ["small", null, "large"], "strictKinds": null }),
        &[
            ("kinds.1", "INVALID_BODY"),
            ("strictKinds.1", "INVALID_BODY"),
        ],
    )
    .await;
    // `[[String!]]`: the inner list takes the null.
    assert_nulls(
        &gw,
        "{ matrix }",
        json!({ "matrix": [["a"], null] }),
        &[("matrix.1.1", "INVALID_BODY")],
    )
    .await;
    // Aliases: paths and nulls use the response names.
    assert_nulls(
        &gw,
        "{ x: loose { i: id s: status } }",
        json!({ "x": [{ "i": "1", "s": "ok" }, null, { "i": "4", "s": "ok" }] }),
        &[("x.1.s", "INVALID_BODY")],
    )
    .await;
    // Only the fields selected count: without `status`, nothing fails.
    assert_nulls(
        &gw,
        "{ orders { id } }",
        json!({ "orders": [{ "id": "1" }, { "id": "2" }, { "id": "4" }] }),
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_under_a_non_null_root_field_makes_data_null() {
    let (_b, gw) = nulls_gateway().await;
    assert_nulls(
        &gw,
        r#"{ strict(id: "2") { id status } fine: order(id: "1") { id } }"#,
        Value::Null,
        &[("strict.status", "INVALID_BODY")],
    )
    .await;
    // Also with graphql-response+json: a field error is no request error (200, `data`).
    let got = post(
        &gw,
        &json!({ "query": r#"{ strict(id: "3") { owner { name } } }"# }),
        &[("accept", GRAPHQL_RESPONSE)],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    let body = got.json();
    assert!(
        body.as_object().unwrap().contains_key("data") && body["data"].is_null(),
        "{body}"
    );
    assert_eq!(
        errors(&body),
        expect(&[("strict.owner", "UPSTREAM_STATUS")])
    );
}

// ---------------------------------------------------------------------------------------
// Limits: each refused before any backend call
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_refuses_the_document_before_any_backend_call() {
    let padded = |n: usize| {
        let doc = r#"{ order(id: "1") { id } }"#;
        format!("{doc}{}", " ".repeat(n - doc.len()))
    };
    let docs = |list: &[&str]| list.iter().map(|d| d.to_string()).collect::<Vec<_>>();
    // (option, code, refused documents, a document exactly at the limit)
    let cases: Vec<(&str, &str, Vec<String>, String)> = vec![
        (
            "max_depth: 2",
            "GRAPHQL_VALIDATION_FAILED",
            docs(&[r#"{ order(id: "1") { customer { id } } }"#]),
            r#"{ order(id: "1") { id } }"#.into(),
        ),
        (
            "max_complexity: 3",
            "GRAPHQL_VALIDATION_FAILED",
            docs(&[r#"{ order(id: "1") { id status total } }"#]),
            r#"{ order(id: "1") { id status } }"#.into(),
        ),
        (
            "max_aliases: 1",
            "TOO_MANY_ALIASES",
            docs(&[
                r#"{ order(id: "1") { a: id b: status } }"#,
                r#"{ o: order(id: "1") { ...F } } fragment F on Order { s: status }"#,
            ]),
            r#"{ order(id: "1") { a: id } }"#.into(),
        ),
        (
            "max_root_fields: 1",
            "TOO_MANY_ROOT_FIELDS",
            docs(&[
                r#"{ order(id: "1") { id } user(id: "u") { id } }"#,
                r#"{ ...R } fragment R on Query { order(id: "1") { id } user(id: "u") { id } }"#,
            ]),
            r#"{ order(id: "1") { id } }"#.into(),
        ),
        (
            "max_document_size: 40B",
            "DOCUMENT_TOO_LARGE",
            vec![padded(41)],
            padded(40),
        ),
        (
            "max_tokens: 11",
            "TOO_MANY_TOKENS",
            docs(&[
                r#"{ order(id: "1") { id status } }"#,
                // Not even parseable: counted first.
                "{ { { { { { { { { { { {",
            ]),
            // { order ( id : "1" ) { id } } is 11: commas and comments are no tokens.
            "# a comment\n{ order(id: \"1\",) { id } }".into(),
        ),
    ];
    let orders = orders_backend().await;
    let users = users_backend().await;
    for (option, code, refused, at_limit) in &cases {
        let gw = shop(&orders.url(), &users.url(), &[option]);
        for doc in refused {
            let got = post(
                &gw,
                &json!({ "query": doc }),
                &[("accept", GRAPHQL_RESPONSE)],
            )
            .await;
            assert_request_error(&got, 400, GRAPHQL_RESPONSE, code);
            let got = run(&gw, doc).await;
            assert_request_error(&got, 200, "application/json", code);
            let got = get_with(&gw, &[("query", doc)], &[]).await;
            assert_request_error(&got, 200, "application/json", code);
        }
        assert_eq!(
            orders.hits() + users.hits(),
            0,
            "{option}: a refused document calls no backend"
        );
        let got = run(&gw, at_limit).await;
        assert!(
            data(&got)["order"].is_object(),
            "{option}: at the limit runs"
        );
        assert_eq!(orders.hits(), 1, "{option}");
        orders.clear();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_limits_apply_when_none_are_set() {
    let orders = orders_backend().await;
    let users = users_backend().await;
    let gw = shop(&orders.url(), &users.url(), &[]);
    let with_aliases = |n: usize| {
        let fields: String = (0..n).map(|i| format!("a{i}: id ")).collect();
        format!(r#"{{ order(id: "1") {{ {fields}}} }}"#)
    };
    let with_roots = |n: usize| {
        let fields: String = (0..n)
            .map(|i| format!(r#"r{i}: userName(id: "u") "#))
            .collect();
        format!("{{ {fields}}}")
    };
    // { order ( id : "1" ) { … } } is 10 tokens around the fields.
    let with_tokens = |n: usize| format!(r#"{{ order(id: "1") {{ {}}} }}"#, "id ".repeat(n - 10));
    let with_size = |n: usize| {
        let doc = "{ order(id: \"1\") { id } }\n#";
        format!("{doc}{}", "x".repeat(n - doc.len()))
    };
    let cases: [(String, String, &str); 4] = [
        (with_aliases(30), with_aliases(31), "TOO_MANY_ALIASES"),
        (with_roots(20), with_roots(21), "TOO_MANY_ROOT_FIELDS"),
        (with_tokens(2000), with_tokens(2001), "TOO_MANY_TOKENS"),
        (
            with_size(32 * 1024),
            with_size(32 * 1024 + 1),
            "DOCUMENT_TOO_LARGE",
        ),
    ];
    for (at_limit, over, code) in &cases {
        let got = run(&gw, over).await;
        assert_request_error(&got, 200, "application/json", code);
        assert_eq!(orders.hits() + users.hits(), 0, "{code}");
        let got = run(&gw, at_limit).await;
        let body = response(&got);
        assert!(
            body.get("errors").is_none(),
            "{code}: at the limit runs: {body}"
        );
        orders.clear();
        users.clear();
    }
}

// ---------------------------------------------------------------------------------------
// GraphQL over HTTP
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_post_run_the_same_operation() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &[]);
    let query = "query One($id: ID!) { order(id: $id) { id status } }";
    let want = json!({ "order": { "id": "7", "status": "placed" } });

    let got = get_with(
        &gw,
        &[
            ("query", query),
            ("variables", r#"{"id":"7"}"#),
            ("operationName", "One"),
        ],
        &[],
    )
    .await;
    assert_eq!(data(&got), want);
    let body = json!({ "query": query, "variables": { "id": "7" }, "operationName": "One" });
    assert_eq!(data(&post(&gw, &body, &[]).await), want);
    // `application/json` with parameters, and `null` members, are fine.
    let got = call(
        &gw,
        "POST",
        ENDPOINT,
        &[],
        Some((
            "application/json; charset=utf-8",
            json!({ "query": query, "variables": { "id": "7" }, "operationName": null, "extensions": null })
                .to_string(),
        )),
    )
    .await;
    assert_eq!(data(&got), want);
    assert_eq!(orders.uris(), ["/orders/7", "/orders/7", "/orders/7"]);
    assert!(got.header("x-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_types_decide_the_status_of_request_errors() {
    let orders = orders_backend().await;
    let gw = shop(&orders.url(), &closed_port(), &[]);
    let good = r#"{ order(id: "1") { id } }"#;
    let parse_error = r#"{ order(id: "1") { id }"#;
    let unknown_field = r#"{ order(id: "1") { id colour } }"#;
    let missing_variable = "query($id: ID!) { order(id: $id) { id } }";

    // No Accept, `*/*` or application/json: application/json, and always 200.
    for accept in [None, Some("*/*"), Some("application/json")] {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("accept", *a)).collect();
        let got = post(&gw, &json!({ "query": good }), &headers).await;
        assert_eq!(data(&got), json!({ "order": { "id": "1" } }), "{accept:?}");
        for (doc, code) in [
            (parse_error, "GRAPHQL_PARSE_FAILED"),
            (unknown_field, "GRAPHQL_VALIDATION_FAILED"),
            (missing_variable, "GRAPHQL_VALIDATION_FAILED"),
        ] {
            let got = post(&gw, &json!({ "query": doc }), &headers).await;
            assert_request_error(&got, 200, "application/json", code);
        }
    }
    // application/graphql-response+json (also when preferred in a list): request errors 400.
    for accept in [
        GRAPHQL_RESPONSE,
        "application/graphql-response+json, application/json;q=0.9",
    ] {
        let headers = [("accept", accept)];
        let got = post(&gw, &json!({ "query": good }), &headers).await;
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(
            got.header("content-type"),
            Some("application/graphql-response+json; charset=utf-8")
        );
        assert_eq!(got.json(), json!({ "data": { "order": { "id": "1" } } }));
        for (doc, code) in [
            (parse_error, "GRAPHQL_PARSE_FAILED"),
            (unknown_field, "GRAPHQL_VALIDATION_FAILED"),
            (missing_variable, "GRAPHQL_VALIDATION_FAILED"),
        ] {
            let got = post(&gw, &json!({ "query": doc }), &headers).await;
            assert_request_error(&got, 400, GRAPHQL_RESPONSE, code);
        }
        // A field error is a partial result, not a request error: 200.
        let got = post(
            &gw,
            &json!({ "query": r#"{ order(id: "1") { id owner { name } } }"# }),
            &headers,
        )
        .await;
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(
            errors(&got.json()),
            expect(&[("order.owner", "UPSTREAM_UNAVAILABLE")])
        );
    }
    // 3 good documents, then 2 × (a good one and one with a field error).
    assert_eq!(orders.hits(), 7, "only the valid documents ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_is_not_json_is_415() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &[]);
    let query = r#"{ order(id: "1") { id } }"#;
    for content_type in [
        Some("text/plain"),
        Some("application/graphql"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let body = content_type.map(|ct| (ct, json!({ "query": query }).to_string()));
        let got = call(&gw, "POST", ENDPOINT, &[], body).await;
        assert_eq!(got.status, 415, "{content_type:?}: {}", got.text());
        assert_no_leak(&got);
    }
    assert_eq!(orders.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_over_get_is_405_with_allow_post() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &[]);
    let mutation = r#"mutation { placeOrder(input: { sku: "s" }) { id } }"#;
    for accept in ["application/json", GRAPHQL_RESPONSE] {
        let got = get_with(&gw, &[("query", mutation)], &[("accept", accept)]).await;
        assert_eq!(got.status, 405, "{}", got.text());
        assert_eq!(got.header("allow"), Some("POST"));
        assert!(got.json().get("data").is_none(), "{}", got.text());
    }
    // A document with both: the operation chosen decides.
    let both = r#"query Q { order(id: "1") { id } } mutation M { placeOrder(input: { sku: "s" }) { id } }"#;
    let got = get_with(&gw, &[("query", both), ("operationName", "M")], &[]).await;
    assert_eq!(got.status, 405, "{}", got.text());
    assert_eq!(orders.hits(), 0, "nothing ran");
    let got = get_with(&gw, &[("query", both), ("operationName", "Q")], &[]).await;
    assert_eq!(data(&got), json!({ "order": { "id": "1" } }));
    // The same mutation over POST runs.
    assert_eq!(
        data(&run(&gw, mutation).await),
        json!({ "placeOrder": { "id": "new-1" } })
    );
    assert_eq!(orders.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_other_than_get_and_post_are_refused_by_the_router() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &[]);
    for method in ["PUT", "DELETE", "PATCH"] {
        let got = call(
            &gw,
            method,
            ENDPOINT,
            &[],
            Some((
                "application/json",
                json!({ "query": "{ orders { id } }" }).to_string(),
            )),
        )
        .await;
        assert_problem(&got, 405, "METHOD_NOT_ALLOWED");
        let allow = got.header("allow").unwrap_or_default().to_string();
        assert!(
            allow.contains("GET") && allow.contains("POST"),
            "{method}: Allow {allow:?}"
        );
    }
    assert_eq!(orders.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_request_errors() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &[]);
    let query = r#"{ order(id: "1") { id } }"#;
    let bodies = [
        "{not json".to_string(),
        "\"just a string\"".to_string(),
        "{}".to_string(),
        json!({ "query": 5 }).to_string(),
        json!({ "query": query, "variables": "id=1" }).to_string(),
        json!({ "query": query, "extensions": [1] }).to_string(),
        json!({ "query": query, "operationName": 3 }).to_string(),
        json!({ "query": query, "extensions": { "persistedQuery": { "version": 2, "sha256Hash": "ab" } } })
            .to_string(),
    ];
    for body in &bodies {
        for (accept, status, media) in [
            ("application/json", 200, "application/json"),
            (GRAPHQL_RESPONSE, 400, GRAPHQL_RESPONSE),
        ] {
            let got = call(
                &gw,
                "POST",
                ENDPOINT,
                &[("accept", accept)],
                Some(("application/json", body.clone())),
            )
            .await;
            assert_request_error(&got, status, media, "BAD_REQUEST");
        }
    }
    for params in [
        vec![("query", query), ("variables", "not json")],
        vec![("query", query), ("variables", "[1]")],
        vec![("query", query), ("extensions", "{")],
        vec![],
    ] {
        let got = get_with(&gw, &params, &[]).await;
        assert_request_error(&got, 200, "application/json", "BAD_REQUEST");
    }
    // A body far larger than any document: refused before it is read whole.
    let huge = json!({ "query": query, "pad": "x".repeat(2 * 1024 * 1024) }).to_string();
    let got = call(&gw, "POST", ENDPOINT, &[], Some(("application/json", huge))).await;
    assert_problem(&got, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(orders.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_name_picks_the_operation_of_a_document() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &[]);
    let doc = r#"query A { order(id: "1") { id } } query B { user(id: "u") { name } }"#;
    let got = post(&gw, &json!({ "query": doc, "operationName": "B" }), &[]).await;
    assert_eq!(data(&got), json!({ "user": { "name": "Customer u" } }));
    assert_eq!((orders.hits(), users.hits()), (0, 1), "only B ran");
    for name in [None, Some("C")] {
        let got = post(&gw, &json!({ "query": doc, "operationName": name }), &[]).await;
        assert_request_error(&got, 200, "application/json", "GRAPHQL_VALIDATION_FAILED");
    }
    assert_eq!((orders.hits(), users.hits()), (0, 1));
}

// ---------------------------------------------------------------------------------------
// Persisted queries
// ---------------------------------------------------------------------------------------

/// `extensions` naming a persisted query by its hash.
fn persisted(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apq_registers_a_query_on_first_use_then_runs_it_by_hash() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &["persisted_queries: apq"]);
    let query = r#"query One { order(id: "1") { id status } }"#;
    let hash = sha256_hex(query);
    let want = json!({ "order": { "id": "1", "status": "placed" } });

    // Unknown hash: PERSISTED_QUERY_NOT_FOUND, 200 even with graphql-response+json (the
    // client answers by sending the query).
    for accept in ["application/json", GRAPHQL_RESPONSE] {
        let got = post(
            &gw,
            &json!({ "extensions": persisted(&hash) }),
            &[("accept", accept)],
        )
        .await;
        assert_request_error(&got, 200, accept, "PERSISTED_QUERY_NOT_FOUND");
    }
    assert_eq!(orders.hits(), 0);

    // The query with its hash runs and registers it.
    let got = post(
        &gw,
        &json!({ "query": query, "extensions": persisted(&hash) }),
        &[],
    )
    .await;
    assert_eq!(data(&got), want);
    // Now the hash alone, over POST and GET, in either case.
    let got = post(&gw, &json!({ "extensions": persisted(&hash) }), &[]).await;
    assert_eq!(data(&got), want);
    let ext = persisted(&hash.to_uppercase()).to_string();
    let got = get_with(&gw, &[("extensions", &ext)], &[]).await;
    assert_eq!(data(&got), want);
    assert_eq!(orders.hits(), 3);

    // A query that does not match its hash.
    let got = post(
        &gw,
        &json!({ "query": r#"{ order(id: "2") { id } }"#, "extensions": persisted(&hash) }),
        &[],
    )
    .await;
    assert_request_error(
        &got,
        200,
        "application/json",
        "PERSISTED_QUERY_HASH_MISMATCH",
    );
    // A query that does not validate is not registered.
    let bad = r#"{ order(id: "1") { colour } }"#;
    let bad_hash = sha256_hex(bad);
    let got = post(
        &gw,
        &json!({ "query": bad, "extensions": persisted(&bad_hash) }),
        &[],
    )
    .await;
    assert_request_error(&got, 200, "application/json", "GRAPHQL_VALIDATION_FAILED");
    let got = post(&gw, &json!({ "extensions": persisted(&bad_hash) }), &[]).await;
    assert_request_error(&got, 200, "application/json", "PERSISTED_QUERY_NOT_FOUND");
    // Plain queries still run.
    assert_eq!(data(&run(&gw, query).await), want);
    assert_eq!(orders.hits(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_persisted_queries_a_hash_alone_is_not_supported() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &[]);
    let query = r#"{ order(id: "1") { id } }"#;
    let hash = sha256_hex(query);
    for body in [
        json!({ "extensions": persisted(&hash) }),
        json!({ "documentId": "order-one" }),
    ] {
        let got = post(&gw, &body, &[]).await;
        assert_request_error(
            &got,
            200,
            "application/json",
            "PERSISTED_QUERY_NOT_SUPPORTED",
        );
    }
    assert_eq!(orders.hits(), 0);
    // With the query, the hash is not needed and the query runs.
    let got = post(
        &gw,
        &json!({ "query": query, "extensions": persisted(&hash) }),
        &[],
    )
    .await;
    assert_eq!(data(&got), json!({ "order": { "id": "1" } }));
}

const ORDER_ONE: &str = r#"query One { order(id: "1") { id status } }"#;
const USER_U: &str = r#"query U { user(id: "u") { name } }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowlist_runs_only_its_operations() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let list = json!({ "order-one": ORDER_ONE, "user-u": USER_U }).to_string();
    let gw = Gateway::serve(config_dir(
        &[
            backend("orders", &orders.url(), &[]),
            backend("users", &users.url(), &[]),
        ],
        "",
        &web_file(
            "auth: none\n",
            &["persisted_queries: { allowlist: ops.json }"],
        ),
        SHOP_SDL,
        &[("ops.json", &list)],
    ));
    let want = json!({ "order": { "id": "1", "status": "placed" } });
    // By documentId, by `id`, over GET, by hash, and by its exact text.
    assert_eq!(
        data(&post(&gw, &json!({ "documentId": "order-one" }), &[]).await),
        want
    );
    assert_eq!(
        data(&post(&gw, &json!({ "id": "order-one" }), &[]).await),
        want
    );
    assert_eq!(
        data(&get_with(&gw, &[("documentId", "order-one")], &[]).await),
        want
    );
    let got = post(
        &gw,
        &json!({ "extensions": persisted(&sha256_hex(ORDER_ONE)) }),
        &[],
    )
    .await;
    assert_eq!(data(&got), want);
    assert_eq!(data(&run(&gw, ORDER_ONE).await), want);
    let got = post(&gw, &json!({ "documentId": "user-u" }), &[]).await;
    assert_eq!(data(&got), json!({ "user": { "name": "Customer u" } }));
    assert_eq!((orders.hits(), users.hits()), (5, 1));

    // Anything else, including the same operation spelled differently.
    for body in [
        json!({ "query": ORDER_ONE.replace("{ id", "{  id") }),
        json!({ "query": r#"{ order(id: "2") { id } }"# }),
        json!({ "documentId": "nope" }),
        json!({ "extensions": persisted(&sha256_hex("{ orders { id } }")) }),
    ] {
        let got = post(&gw, &body, &[]).await;
        assert_request_error(&got, 200, "application/json", "PERSISTED_QUERY_NOT_IN_LIST");
    }
    let got = post(
        &gw,
        &json!({ "query": ORDER_ONE, "extensions": persisted(&sha256_hex(USER_U)) }),
        &[],
    )
    .await;
    assert_request_error(
        &got,
        200,
        "application/json",
        "PERSISTED_QUERY_HASH_MISMATCH",
    );
    assert_eq!(
        (orders.hits(), users.hits()),
        (5, 1),
        "refused ones called nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowlist_can_be_an_apollo_manifest() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let manifest = json!({
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [{ "id": "3f1a9c", "name": "One", "type": "query", "body": ORDER_ONE }],
    })
    .to_string();
    let gw = Gateway::serve(config_dir(
        &[
            backend("orders", &orders.url(), &[]),
            backend("users", &users.url(), &[]),
        ],
        "",
        &web_file(
            "auth: none\n",
            &["persisted_queries: { allowlist: manifest.json }"],
        ),
        SHOP_SDL,
        &[("manifest.json", &manifest)],
    ));
    let got = post(&gw, &json!({ "documentId": "3f1a9c" }), &[]).await;
    assert_eq!(
        data(&got),
        json!({ "order": { "id": "1", "status": "placed" } })
    );
    let got = run(&gw, USER_U).await;
    assert_request_error(&got, 200, "application/json", "PERSISTED_QUERY_NOT_IN_LIST");
    assert_eq!((orders.hits(), users.hits()), (1, 0));
}

// ---------------------------------------------------------------------------------------
// Batched operations
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_operations_are_refused_unless_enabled() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &[]);
    let batch = json!([{ "query": r#"{ order(id: "1") { id } }"# }]);
    let got = post(&gw, &batch, &[]).await;
    assert_request_error(&got, 200, "application/json", "BATCHING_NOT_ENABLED");
    let got = post(&gw, &batch, &[("accept", GRAPHQL_RESPONSE)]).await;
    assert_request_error(&got, 400, GRAPHQL_RESPONSE, "BATCHING_NOT_ENABLED");
    assert_eq!(orders.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_operations_answer_in_order_up_to_the_cap() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &["batch_operations: 3"]);
    let got = post(
        &gw,
        &json!([
            { "query": r#"{ order(id: "1") { id } }"# },
            { "query": "query U($id: ID!) { user(id: $id) { name } }", "variables": { "id": "u-9" } },
            { "query": r#"{ order(id: "1") { colour } }"# },
        ]),
        &[],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.header("content-type"), Some("application/json"));
    let list = got.json();
    let list = list.as_array().expect("an array of responses");
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(list[0], json!({ "data": { "order": { "id": "1" } } }));
    assert_eq!(
        list[1],
        json!({ "data": { "user": { "name": "Customer u-9" } } })
    );
    assert!(list[2].get("data").is_none(), "{}", list[2]);
    assert_eq!(codes(&list[2]), ["GRAPHQL_VALIDATION_FAILED"]);
    assert_eq!((orders.hits(), users.hits()), (1, 1));

    let op = json!({ "query": r#"{ order(id: "1") { id } }"# });
    for batch in [json!([op, op, op, op]), json!([])] {
        let got = post(&gw, &batch, &[]).await;
        assert_request_error(&got, 200, "application/json", "BATCH_TOO_LARGE");
    }
    assert_eq!(orders.hits(), 1, "a refused batch runs nothing");
}

// ---------------------------------------------------------------------------------------
// The file's auth, rate limits and CORS
// ---------------------------------------------------------------------------------------

const HS_SECRET: &str = "portico-graphql-test-only-hmac-secret-0123456789";

/// An HS256 token (kid k1) with these claims, valid for ten minutes.
fn token(claims: &Value) -> String {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = claims.clone();
    claims["exp"] = json!(now + 600);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k1".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

const USERS_SDL: &str = r#"
type Query { user(id: ID!): User @rest(backend: "users", path: "/users/{args.id}") }
type User { id: ID! name: String! }
"#;

const CLAIMS_SDL: &str = r#"
type Query {
  me: User @rest(backend: "users", path: "/users/{claims.sub}?tenant={claims.tenant}")
  user(id: ID!): User @rest(backend: "users", path: "/users/{args.id}")
}
type User { id: ID! name: String! }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_auth_applies_and_claims_reach_the_backend() {
    let users = users_backend().await;
    let providers = format!(
        "auth:\n  customers:\n    jwt:\n      algorithms: [HS256]\n      keys:\n        - {{ kid: k1, secret: \"{HS_SECRET}\" }}\n"
    );
    let gw = Gateway::serve(config_dir(
        &[backend("users", &users.url(), &[])],
        &providers,
        &web_file(
            "auth: customers\nrequire: { scopes: [\"profile:read\"] }\n",
            &[],
        ),
        CLAIMS_SDL,
        &[],
    ));
    let query = json!({ "query": "{ me { id name } }" });

    let got = post(&gw, &query, &[]).await;
    assert_problem(&got, 401, "UNAUTHENTICATED");
    let got = post(&gw, &query, &[("authorization", "Bearer not.a.token")]).await;
    assert_problem(&got, 401, "UNAUTHENTICATED");
    let got = get_with(&gw, &[("query", "{ me { id } }")], &[]).await;
    assert_problem(&got, 401, "UNAUTHENTICATED");
    // Authenticated, but without the file's required scope.
    let weak = token(&json!({ "sub": "alice", "tenant": "acme" }));
    let got = post(&gw, &query, &[("authorization", &format!("Bearer {weak}"))]).await;
    assert_problem(&got, 403, "FORBIDDEN");
    assert_eq!(users.hits(), 0, "nothing reached the backend");

    let good = token(&json!({ "sub": "alice/1 x", "tenant": "acme&co", "scope": "profile:read" }));
    let bearer = format!("Bearer {good}");
    let got = post(&gw, &query, &[("authorization", &bearer)]).await;
    assert_eq!(
        data(&got),
        json!({ "me": { "id": "alice/1 x", "name": "Customer alice/1 x" } })
    );
    assert_eq!(users.uris(), ["/users/alice%2F1%20x?tenant=acme%26co"]);
    let got = get_with(
        &gw,
        &[("query", "{ me { id } }")],
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(data(&got), json!({ "me": { "id": "alice/1 x" } }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_rate_limit_and_cors_apply() {
    let users = users_backend().await;
    let gw = Gateway::serve(config_dir(
        &[backend("users", &users.url(), &[])],
        "",
        &web_file(
            "auth: none\nrate_limit: [{ key: ip, rate: 1/min, burst: 2 }]\ncors: { origins: [\"https://app.test\"], methods: [GET, POST], headers: [Content-Type] }\n",
            &[],
        ),
        USERS_SDL,
        &[],
    ));
    // A browser's preflight for a JSON POST.
    let got = call(
        &gw,
        "OPTIONS",
        ENDPOINT,
        &[
            ("origin", "https://app.test"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ],
        None,
    )
    .await;
    assert_eq!(got.status, 204, "{} {:?}", got.text(), got.headers);
    assert_eq!(
        got.header("access-control-allow-origin"),
        Some("https://app.test")
    );

    let query = json!({ "query": r#"{ user(id: "u") { name } }"# });
    let origin = [("origin", "https://app.test")];
    for _ in 0..2 {
        let got = post(&gw, &query, &origin).await;
        assert_eq!(data(&got), json!({ "user": { "name": "Customer u" } }));
        assert_eq!(
            got.header("access-control-allow-origin"),
            Some("https://app.test")
        );
        assert!(got.header("ratelimit").is_some(), "{:?}", got.headers);
    }
    let got = post(&gw, &query, &origin).await;
    assert_problem(&got, 429, "RATE_LIMITED");
    assert!(got.header("retry-after").is_some());
    assert_eq!(users.hits(), 2, "the limited request reached no backend");
}

// ---------------------------------------------------------------------------------------
// Introspection and GraphiQL
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_is_off_by_default() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &[]);
    for doc in [
        "{ __schema { queryType { name } } }",
        r#"{ __type(name: "Order") { name } }"#,
    ] {
        let got = run(&gw, doc).await;
        let text = got.text();
        assert!(!text.contains("queryType\":{"), "{doc}: {text}");
        assert!(!text.contains("\"Order\""), "{doc}: {text}");
        let body = got.json();
        assert!(!codes(&body).is_empty(), "{doc}: refused: {body}");
        assert!(body["data"].is_null(), "{doc}: {body}");
    }
    // `__typename` is no introspection.
    assert_eq!(
        data(&run(&gw, "{ __typename }").await),
        json!({ "__typename": "Query" })
    );
    assert_eq!(orders.hits() + users.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_describes_the_schema_when_enabled() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &["introspection: true"]);
    // (`includeDeprecated: true` everywhere: see the ignored test below.)
    let got = run(
        &gw,
        r#"{
          __schema { queryType { name } mutationType { name } types { name } }
          __type(name: "Query") {
            description
            fields(includeDeprecated: true) { name description args { name defaultValue } }
          }
          order: __type(name: "Order") {
            fields(includeDeprecated: true) { name type { kind name ofType { name } } }
          }
          status: __type(name: "OrderStatus") { enumValues(includeDeprecated: true) { name } }
        }"#,
    )
    .await;
    let d = data(&got);
    assert_eq!(d["__schema"]["queryType"]["name"], "Query");
    assert_eq!(d["__schema"]["mutationType"]["name"], "Mutation");
    let types: Vec<&str> = d["__schema"]["types"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for t in [
        "Order",
        "User",
        "OrderStatus",
        "OrderFilter",
        "NewOrder",
        "JSON",
    ] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
    assert_eq!(d["__type"]["description"], "Orders and their customers.");
    let field = |ty: &Value, name: &str| {
        ty["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
    };
    assert_eq!(
        field(&d["__type"], "order"),
        Some(json!({
            "name": "order",
            "description": "One order by id.",
            "args": [{ "name": "id", "defaultValue": null }],
        }))
    );
    assert_eq!(
        field(&d["__type"], "orders").unwrap()["args"],
        json!([
            { "name": "status", "defaultValue": "placed" },
            { "name": "first", "defaultValue": "3" },
        ])
    );
    assert_eq!(
        field(&d["order"], "id"),
        Some(
            json!({ "name": "id", "type": { "kind": "NON_NULL", "name": null, "ofType": { "name": "ID" } } })
        )
    );
    assert_eq!(
        d["status"]["enumValues"],
        json!([{ "name": "placed" }, { "name": "shipped" }, { "name": "delivered" }])
    );
    assert_eq!(orders.hits() + users.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_marks_only_deprecated_fields_deprecated() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let gw = shop(&orders.url(), &users.url(), &["introspection: true"]);
    let got = run(
        &gw,
        r#"{
          order: __type(name: "Order") {
            fields { name }
            all: fields(includeDeprecated: true) { name isDeprecated deprecationReason }
          }
          status: __type(name: "OrderStatus") { enumValues { name isDeprecated } }
        }"#,
    )
    .await;
    let d = data(&got);
    // Without `includeDeprecated`, every field but `legacy_total`.
    let names: Vec<&str> = d["order"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(names.contains(&"id") && names.contains(&"customer"), "{d}");
    assert!(!names.contains(&"legacy_total"), "{d}");
    for f in d["order"]["all"].as_array().unwrap() {
        let deprecated = f["name"] == "legacy_total";
        assert_eq!(f["isDeprecated"], deprecated, "{f}");
        let reason = if deprecated {
            json!("use total")
        } else {
            Value::Null
        };
        assert_eq!(f["deprecationReason"], reason, "{f}");
    }
    assert_eq!(
        d["status"]["enumValues"],
        json!([
            { "name": "placed", "isDeprecated": false },
            { "name": "shipped", "isDeprecated": false },
            { "name": "delivered", "isDeprecated": false },
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_is_served_to_browsers_only_when_enabled() {
    let (orders, users) = (orders_backend().await, users_backend().await);
    let browser = [("accept", "text/html,application/xhtml+xml,*/*;q=0.8")];

    let gw = shop(&orders.url(), &users.url(), &["graphiql: true"]);
    let got = call(&gw, "GET", ENDPOINT, &browser, None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(
        got.text().to_lowercase().contains("graphiql"),
        "{}",
        got.text()
    );
    // A browser sending a query gets the result; a client asking for JSON never the page.
    let got = get_with(&gw, &[("query", r#"{ order(id: "1") { id } }"#)], &browser).await;
    assert_eq!(data(&got), json!({ "order": { "id": "1" } }));
    let got = call(
        &gw,
        "GET",
        ENDPOINT,
        &[("accept", "application/json")],
        None,
    )
    .await;
    assert_request_error(&got, 200, "application/json", "BAD_REQUEST");

    let gw = shop(&orders.url(), &users.url(), &[]);
    let got = call(&gw, "GET", ENDPOINT, &browser, None).await;
    assert_ne!(
        got.header("content-type"),
        Some("text/html; charset=utf-8"),
        "off by default"
    );
    assert_request_error(&got, 200, "application/json", "BAD_REQUEST");
    assert_eq!(orders.hits(), 1);
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// A config dir for checking: backends `orders` and `users`, this file and SDL.
fn check_dir(web: &str, sdl: &str, files: &[(&str, &str)]) -> ConfigDir {
    config_dir(
        &[
            backend("orders", "http://127.0.0.1:1", &[]),
            backend("users", "http://127.0.0.1:1", &[]),
        ],
        "",
        web,
        sdl,
        files,
    )
}

#[test]
fn configuration_errors_name_the_route_file_and_the_sdl_line() {
    let good_file = web_file("auth: none\n", &[]);
    let good_sdl = "type Query {\n  order(id: ID!): Order @rest(backend: \"orders\", path: \"/orders/{args.id}\")\n}\ntype Order { id: ID! }\n";
    let schema_key = "routes/web.yaml:6: graphql.schema: ";
    // (what, routes file, SDL, expected pieces of the message)
    let cases: Vec<(&str, String, String, Vec<&str>)> = vec![
        (
            "an SDL syntax error",
            good_file.clone(),
            "type Query {\n  order(id: ID!): Order @rest(backend: \"orders\" path:\n}\n".into(),
            vec![schema_key, "web.graphql:3:"],
        ),
        (
            "an unknown backend",
            good_file.clone(),
            good_sdl.replace("\"orders\"", "\"nope\""),
            vec![schema_key, "web.graphql:2:", "unknown backend `nope`"],
        ),
        (
            "an unknown type",
            good_file.clone(),
            format!("{good_sdl}type Extra {{\n  a: Int\n  b: Colour\n}}\n"),
            vec![schema_key, "web.graphql:7:", "`Colour`"],
        ),
        (
            "an argument the field does not have",
            good_file.clone(),
            good_sdl.replace("{args.id}", "{args.nope}"),
            vec![schema_key, "web.graphql:2:", "{args.nope}"],
        ),
        (
            "`{parent.x}` on a root field",
            good_file.clone(),
            good_sdl.replace("{args.id}", "{parent.id}"),
            vec![schema_key, "web.graphql:2:", "{parent.id}"],
        ),
        (
            "`{claims.x}` on a public route",
            good_file.clone(),
            good_sdl.replace("{args.id}", "{claims.sub}"),
            vec![schema_key, "web.graphql:2:", "claims"],
        ),
        (
            "a root field without @rest",
            good_file.clone(),
            good_sdl.replace("}\ntype Order", "  loose: Order\n}\ntype Order"),
            vec![schema_key, "web.graphql:3:", "`Query.loose`"],
        ),
        (
            "a batch whose path names no parent key",
            good_file.clone(),
            format!(
                "{good_sdl}type Extra {{\n  u: Order @rest(backend: \"users\", path: \"/u\", batch: {{ path: \"/u?ids={{keys}}\", key: \"id\" }})\n}}\n"
            ),
            vec![schema_key, "web.graphql:6:", "batch"],
        ),
        (
            "an unknown directive",
            good_file.clone(),
            good_sdl.replace("@rest(", "@cache(ttl: 5) @rest("),
            vec![schema_key, "web.graphql:2:", "@cache"],
        ),
        (
            "an interface",
            good_file.clone(),
            format!("{good_sdl}interface Node {{ id: ID! }}\n"),
            vec![schema_key, "web.graphql:5:", "interface"],
        ),
        (
            "a missing schema file",
            good_file.replace("schema: web.graphql", "schema: missing.graphql"),
            good_sdl.into(),
            vec![schema_key, "missing.graphql"],
        ),
        (
            "a schema outside the routes folder",
            good_file.replace("schema: web.graphql", "schema: ../gateway.yaml"),
            good_sdl.into(),
            vec![schema_key, "../gateway.yaml"],
        ),
        (
            "an absolute schema path",
            good_file.replace("schema: web.graphql", "schema: /etc/hostname"),
            good_sdl.into(),
            vec![schema_key, "/etc/hostname"],
        ),
        (
            "a limit of 0",
            web_file("auth: none\n", &["max_depth: 12", "max_aliases: 0"]),
            good_sdl.into(),
            vec!["routes/web.yaml:8: graphql.max_aliases:"],
        ),
        (
            "an unknown persisted_queries mode",
            web_file("auth: none\n", &["persisted_queries: sometimes"]),
            good_sdl.into(),
            vec!["routes/web.yaml:7: graphql.persisted_queries:", "sometimes"],
        ),
        (
            "a missing allowlist",
            web_file(
                "auth: none\n",
                &["persisted_queries: { allowlist: ops.json }"],
            ),
            good_sdl.into(),
            vec!["routes/web.yaml:7: graphql.persisted_queries", "ops.json"],
        ),
        (
            "an unknown option",
            web_file("auth: none\n", &["introspection: true", "colour: red"]),
            good_sdl.into(),
            vec!["routes/web.yaml:8: graphql.colour:", "colour"],
        ),
        (
            "no path",
            good_file.replace("  path: /graphql\n", ""),
            good_sdl.into(),
            vec!["routes/web.yaml:4: graphql.path:"],
        ),
    ];
    for (what, file, sdl, pieces) in &cases {
        let dir = check_dir(file, sdl, &[]);
        let (code, out) = validate_dir(&dir);
        assert_eq!(code, 1, "{what}: {out}");
        for p in pieces {
            assert!(out.contains(p), "{what}: {p:?} missing in:\n{out}");
        }
    }

    // The good pair validates, and a bad one is never served.
    let (code, out) = validate_dir(&check_dir(&good_file, good_sdl, &[]));
    assert_eq!(code, 0, "{out}");
    let dir = check_dir(&good_file, &good_sdl.replace("\"orders\"", "\"nope\""), &[]);
    let out = Command::new(bin())
        .args([
            "serve",
            "--config",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("web.graphql:2:"), "{stderr}");
}

#[test]
fn the_endpoint_is_a_route_of_its_file() {
    let sdl = "type Query {\n  order(id: ID!): Order @rest(backend: \"orders\", path: \"/orders/{args.id}\")\n  user(id: ID!): User @rest(backend: \"users\", path: \"/users/{args.id}\")\n}\ntype Order { id: ID! }\ntype User { id: ID! }\n";
    let routes = |dir: &ConfigDir| {
        let out = Command::new(bin())
            .args(["routes", "--config", dir.path().to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let row = |table: &str, path: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(path))
            .unwrap_or_else(|| panic!("no {path} in:\n{table}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };

    // A file with only a `graphql` block: one route, default id TEAM-graphql.
    let dir = check_dir(&web_file("auth: none\n", &[]), sdl, &[]);
    let (code, out) = validate_dir(&dir);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 route"), "{out}");
    assert_eq!(
        row(&routes(&dir), "/web/graphql"),
        [
            "GET,POST",
            "/web/graphql",
            "web-graphql",
            "web",
            "none",
            "graphql",
            "orders,users"
        ]
    );

    // `id:` overrides the id; the block lives beside ordinary routes.
    let file = format!(
        "{}routes:\n  - id: web-ping\n    path: /ping\n    static: {{ status: 200, body: {{ ok: true }} }}\n",
        web_file("auth: none\n", &["id: shop-api"])
    );
    let dir = check_dir(&file, sdl, &[]);
    let table = routes(&dir);
    assert_eq!(row(&table, "/web/graphql")[2], "shop-api");
    assert_eq!(row(&table, "/web/ping")[2], "web-ping");

    // An id used twice is an error naming both places.
    let file = format!(
        "{}routes:\n  - id: shop-api\n    path: /ping\n    static: {{ status: 200 }}\n",
        web_file("auth: none\n", &["id: shop-api"])
    );
    let (code, out) = validate_dir(&check_dir(&file, sdl, &[]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("shop-api") && out.contains("already used"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------
// Whole responses (snapshots)
// ---------------------------------------------------------------------------------------

/// Re-indents JSON text without reordering members: the order of a response's members
/// (errors first, fields in selection order) is part of what a snapshot pins.
fn pretty(raw: &str) -> String {
    fn newline(out: &mut String, depth: usize) {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    }
    let mut out = String::new();
    let (mut depth, mut in_string, mut escaped) = (0, false, false);
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                match chars.peek() {
                    Some(&end @ ('}' | ']')) => {
                        out.push(end);
                        chars.next();
                    }
                    _ => {
                        depth += 1;
                        newline(&mut out, depth);
                    }
                }
            }
            '}' | ']' => {
                depth -= 1;
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// Status, content type and the body (checked to be JSON), pretty, for a snapshot.
fn transcript(got: &Got) -> String {
    got.json();
    format!(
        "{}\ncontent-type: {}\n\n{}",
        got.status,
        got.header("content-type").unwrap_or("-"),
        pretty(&got.text())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_a_partial_response() {
    let orders = orders_backend().await;
    let gw = shop(&orders.url(), &closed_port(), &[]);
    let got = run(
        &gw,
        r#"query OrderPage {
          order(id: "4") {
            id
            status
            total
            customerName
            meta
            owner { name }
          }
        }"#,
    )
    .await;
    insta::assert_snapshot!("partial_response", transcript(&got));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_request_errors() {
    let orders = orders_backend().await;
    let gw = shop(&orders.url(), &closed_port(), &["max_aliases: 1"]);
    let mut out = String::new();
    for doc in [
        "{ order(id: \"1\") { id }",
        "{ order(id: \"1\") {\n  id\n  colour\n} }",
        "{ a: order(id: \"1\") { b: id } }",
    ] {
        let got = post(
            &gw,
            &json!({ "query": doc }),
            &[("accept", GRAPHQL_RESPONSE)],
        )
        .await;
        out.push_str(&format!("# {doc}\n{}\n\n", transcript(&got)));
    }
    insta::assert_snapshot!("request_errors", out);
    assert_eq!(orders.hits(), 0);
}

// ---------------------------------------------------------------------------------------
// The repository's own demo
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_its_graphql_endpoint() {
    let gw = Gateway::spawn(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    // The demo prints its token once its backends are up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let token = loop {
        let logs = gw.logs();
        if logs.contains("admin: the route table")
            && let Some(t) = logs.lines().find_map(|l| l.trim().strip_prefix("TOKEN="))
        {
            break t.to_string();
        }
        assert!(Instant::now() < deadline, "no token printed:\n{logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let query = json!({ "query": "{ orders { id customer_id customer { id name } items { sku stock { sku quantity } } } }" });
    let got = post(&gw, &query, &[]).await;
    assert_problem(&got, 401, "UNAUTHENTICATED");

    let got = post(
        &gw,
        &query,
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    let d = data(&got);
    let list = d["orders"].as_array().unwrap();
    assert_eq!(list.len(), 20);
    for o in list {
        let key = o["customer_id"].as_str().unwrap();
        assert_eq!(
            o["customer"],
            json!({ "id": key, "name": format!("Customer {key}") })
        );
        for item in o["items"].as_array().unwrap() {
            assert_eq!(item["stock"]["sku"], item["sku"], "{o}");
            assert_eq!(item["stock"]["quantity"], 7, "{o}");
        }
    }
}
