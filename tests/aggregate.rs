//! Black-box: the `aggregate` route handler (contract § 3.3) of the real binary against
//! real backends on loopback — parallel and dependent calls, the partial-result contract
//! (`Portico-Partial`, `_errors`, every error code), the route deadline, fallbacks,
//! shaping, fan-out and batching, required calls, templated bodies, percent-encoding and
//! the configuration rules.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use support::*;
use tokio::net::TcpListener;
use tokio::time::{sleep, timeout};

// ---------------------------------------------------------------------------------------
// A programmable backend.
// ---------------------------------------------------------------------------------------

/// A body text that must never reach a client.
const SECRET: &str = "backend-internal-detail";

/// One request a [`Fake`] received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    /// Path and query, as received.
    uri: String,
    headers: HeaderMap,
    body: Bytes,
    /// When the request head arrived.
    at: Instant,
}

impl Seen {
    fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }

    /// The last path segment.
    fn last(&self) -> &str {
        self.path().rsplit('/').next().unwrap_or("")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What a [`Fake`] answers.
#[derive(Debug)]
enum Reply {
    /// 200 `application/json`.
    Json(Value),
    /// This status, `application/json`, a body holding [`SECRET`].
    Status(u16),
    /// 200 with this content type and body text.
    Raw(&'static str, &'static str),
    /// The inner reply after this many milliseconds.
    After(u64, Box<Reply>),
    /// Never answers.
    Hang,
}

fn after(ms: u64, r: Reply) -> Reply {
    Reply::After(ms, Box::new(r))
}

type Script = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// A backend on 127.0.0.1:0 that records every request and answers what `script` says.
struct Fake {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    async fn start(script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Script = Arc::new(script);
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, script) = (log.clone(), script.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(log.clone(), script.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Fake { addr, seen }
    }

    /// Answers every request with this JSON at once.
    async fn json(v: Value) -> Fake {
        Fake::start(move |_| Reply::Json(v.clone())).await
    }

    /// Answers `{"uri": …, "method": …}` for every request.
    async fn echo() -> Fake {
        Fake::start(|s| Reply::Json(json!({ "uri": s.uri, "method": s.method }))).await
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn port(&self) -> String {
        self.addr.port().to_string()
    }

    fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn uris(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.uri).collect()
    }
}

async fn answer(
    log: Arc<Mutex<Vec<Seen>>>,
    script: Script,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body,
        at,
    };
    log.lock().unwrap().push(seen.clone());
    let mut reply = script(&seen);
    loop {
        let res = Response::builder();
        return Ok(match reply {
            Reply::After(ms, next) => {
                sleep(Duration::from_millis(ms)).await;
                reply = *next;
                continue;
            }
            Reply::Hang => {
                sleep(Duration::from_secs(3600)).await;
                res.body(Full::from("{}")).unwrap()
            }
            Reply::Json(v) => res
                .header("content-type", "application/json")
                .body(Full::from(v.to_string()))
                .unwrap(),
            Reply::Status(code) => res
                .status(code)
                .header("content-type", "application/json")
                .body(Full::from(
                    json!({ "status": code, "error": SECRET }).to_string(),
                ))
                .unwrap(),
            Reply::Raw(content_type, text) => res
                .header("content-type", content_type)
                .body(Full::from(text))
                .unwrap(),
        });
    }
}

// ---------------------------------------------------------------------------------------
// Configuration and requests.
// ---------------------------------------------------------------------------------------

/// One entry under `backends:` (timeout 5 s unless given) with extra keys, one per line.
fn backend(name: &str, url: &str, extra: &[&str]) -> String {
    let mut out = format!("  {name}:\n    url: {url}\n");
    if !extra.iter().any(|k| k.starts_with("timeout:")) {
        out.push_str("    timeout: 5s\n");
    }
    for k in extra {
        out.push_str(&format!("    {k}\n"));
    }
    out
}

/// One aggregate route; each call is one line below `calls:` (flow style).
fn route(id: &str, path: &str, timeout: &str, calls: &[&str]) -> String {
    let mut out = format!(
        "  - id: {id}\n    path: {path}\n    timeout: {timeout}\n    aggregate:\n      calls:\n"
    );
    for c in calls {
        out.push_str(&format!("        {c}\n"));
    }
    out
}

/// The gateway with these backends and one routes file (`/web`, auth none) of `routes`.
fn serve(backends: &[String], routes: &[String]) -> Gateway {
    let gw = format!(
        "server:\n  listen: 127.0.0.1:0\n  shutdown_grace: 1s\nadmin:\n  listen: 127.0.0.1:0\nbackends:\n{}",
        backends.concat()
    );
    let file = format!(
        "team: web\nprefix: /web\nauth: none\nroutes:\n{}",
        routes.concat()
    );
    Gateway::serve(ConfigDir::new(&gw, &[("web.yaml", &file)]))
}

async fn fetch(url: &str, headers: &[(&str, &str)]) -> (Got, Duration) {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let t = Instant::now();
    let got = send(&client(), req.body(Full::default()).unwrap()).await;
    (got, t.elapsed())
}

/// A whole answer: 200, JSON, no `Portico-Partial`, no `_errors`; the body.
fn assert_complete(got: &Got) -> Value {
    assert_eq!(got.status, 200, "body: {}", got.text());
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(
        got.header("portico-partial"),
        None,
        "complete answer: {}",
        got.text()
    );
    let body = got.json();
    assert!(body.is_object(), "one JSON object: {body}");
    assert!(body.get("_errors").is_none(), "no _errors: {body}");
    body
}

/// A partial answer: 200, JSON, `Portico-Partial` naming `failed` (given sorted by name),
/// `Cache-Control: no-store`, `_errors` with exactly these `(call, code)` in this order,
/// and details free of addresses, backend bodies and every string in `never`. The body.
fn assert_partial(got: &Got, failed: &[(&str, &str)], never: &[&str]) -> Value {
    assert_eq!(got.status, 200, "body: {}", got.text());
    assert_eq!(got.header("content-type"), Some("application/json"));
    let names: Vec<&str> = failed.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        got.header("portico-partial"),
        Some(names.join(",").as_str()),
        "body: {}",
        got.text()
    );
    assert_eq!(
        got.header("cache-control"),
        Some("no-store"),
        "partial answers are never cached"
    );
    let body = got.json();
    let errors = body["_errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no _errors array: {body}"));
    let listed: Vec<(String, String)> = errors
        .iter()
        .map(|e| {
            (
                e["call"].as_str().unwrap_or("?").to_string(),
                e["code"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = failed
        .iter()
        .map(|(n, c)| (n.to_string(), c.to_string()))
        .collect();
    assert_eq!(listed, want, "_errors: {body}");
    for e in errors {
        let detail = e["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("detail is a string: {e}"));
        assert!(!detail.is_empty(), "a detail: {e}");
        for bad in ["127.0.0.1", "localhost", SECRET].iter().chain(never) {
            assert!(!detail.contains(bad), "detail leaks {bad:?}: {e}");
        }
    }
    body
}

/// The body minus `_errors`.
fn members(body: &Value) -> Value {
    let mut b = body.clone();
    b.as_object_mut().unwrap().remove("_errors");
    b
}

/// `%xx` escapes upper-cased, so encodings compare regardless of hex case.
fn upper_escapes(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).unwrap_or(&rest[i..]);
        out.push_str(&esc.to_ascii_uppercase());
        rest = &rest[i + esc.len()..];
    }
    out.push_str(rest);
    out
}

async fn wait_for_hits(f: &Fake, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while f.hits() < n {
        assert!(
            Instant::now() < deadline,
            "{} requests, expected {n}",
            f.hits()
        );
        sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Parallel and dependent calls; the contract's example.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_calls_run_in_parallel() {
    let a = Fake::start(|_| after(200, Reply::Json(json!({ "n": "a" })))).await;
    let b = Fake::start(|_| after(200, Reply::Json(json!({ "n": "b" })))).await;
    let c = Fake::start(|_| after(200, Reply::Json(json!({ "n": "c" })))).await;
    let gw = serve(
        &[
            backend("a", &a.url(), &[]),
            backend("b", &b.url(), &[]),
            backend("c", &c.url(), &[]),
        ],
        &[route(
            "par",
            "/par",
            "3s",
            &[
                "a: { backend: a, path: /a }",
                "b: { backend: b, path: /b }",
                "c: { backend: c, path: /c }",
            ],
        )],
    );
    let (got, took) = fetch(&gw.url("/web/par"), &[]).await;
    let body = assert_complete(&got);
    assert_eq!(
        body,
        json!({ "a": { "n": "a" }, "b": { "n": "b" }, "c": { "n": "c" } })
    );
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_millis(450),
        "three 200 ms calls in parallel took {took:?} (serial would be 600 ms)"
    );
    let starts: Vec<Instant> = [&a, &b, &c].iter().map(|f| f.seen()[0].at).collect();
    let spread = starts
        .iter()
        .max()
        .unwrap()
        .duration_since(*starts.iter().min().unwrap());
    assert!(
        spread < Duration::from_millis(100),
        "the three calls started together: spread {spread:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_call_waits_and_gets_the_value() {
    let orders = Fake::start(|s| {
        after(
            150,
            Reply::Json(json!({ "id": s.last(), "customer_id": "c-7" })),
        )
    })
    .await;
    let users =
        Fake::start(|s| after(150, Reply::Json(json!({ "id": s.last(), "name": "Ada" })))).await;
    let gw = serve(
        &[
            backend("orders", &orders.url(), &[]),
            backend("users", &users.url(), &[]),
        ],
        &[route(
            "dep",
            "/dep/{id}",
            "3s",
            // Declared before the call it depends on.
            &[
                "customer: { backend: users, path: \"/users/{order.customer_id}\" }",
                "order: { backend: orders, path: \"/orders/{id}\" }",
            ],
        )],
    );
    let (got, took) = fetch(&gw.url("/web/dep/42"), &[]).await;
    let body = assert_complete(&got);
    assert_eq!(
        body,
        json!({
            "order": { "id": "42", "customer_id": "c-7" },
            "customer": { "id": "c-7", "name": "Ada" },
        })
    );
    assert_eq!(orders.uris(), ["/orders/42"]);
    assert_eq!(users.uris(), ["/users/c-7"], "the users backend got the id");
    let gap = users.seen()[0].at.duration_since(orders.seen()[0].at);
    assert!(
        gap >= Duration::from_millis(140),
        "customer started only after order answered: {gap:?}"
    );
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(600),
        "150 ms + 150 ms in sequence took {took:?}"
    );
}

/// The routes file of § 3.3, verbatim in its calls.
fn contract_route() -> String {
    route(
        "page",
        "/orders/{id}",
        "800ms",
        &[
            "order:    { backend: orders, path: \"/orders/{id}\", required: true }",
            "customer: { backend: users, path: \"/users/{order.customer_id}\", select: [id, name], rename: { name: full_name }, fallback: { name: unknown } }",
            "stock:    { backend: inventory, path: \"/inventory?sku={order.sku}\", timeout: 150ms }",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_example_end_to_end() {
    // Order 42 is all good; 500 has a failing customer; 7 has a slow stock answer.
    let orders = Fake::start(|s| {
        let id = s.last().to_string();
        let (customer, sku) = match id.as_str() {
            "500" => ("c-500", "sku-1"),
            "7" => ("c-7", "slow"),
            _ => ("c-7", "sku-1"),
        };
        Reply::Json(json!({ "id": id, "customer_id": customer, "sku": sku, "total": 12.5 }))
    })
    .await;
    let users = Fake::start(|s| match s.last() {
        "c-500" => Reply::Status(500),
        id => Reply::Json(json!({ "id": id, "name": "Ada Lovelace", "email": "ada@example.com" })),
    })
    .await;
    let inventory = Fake::start(|s| {
        let sku = s.uri.split("sku=").nth(1).unwrap_or("").to_string();
        let stock = Reply::Json(json!({ "sku": sku, "available": 3 }));
        if sku == "slow" {
            after(600, stock)
        } else {
            stock
        }
    })
    .await;
    let gw = serve(
        &[
            backend("orders", &orders.url(), &[]),
            backend("users", &users.url(), &[]),
            backend("inventory", &inventory.url(), &[]),
        ],
        &[contract_route()],
    );

    let (got, _) = fetch(&gw.url("/web/orders/42"), &[]).await;
    let body = assert_complete(&got);
    assert_eq!(
        body,
        json!({
            "order": { "id": "42", "customer_id": "c-7", "sku": "sku-1", "total": 12.5 },
            "customer": { "id": "c-7", "full_name": "Ada Lovelace" },
            "stock": { "sku": "sku-1", "available": 3 },
        })
    );
    assert_eq!(orders.uris(), ["/orders/42"]);
    assert_eq!(users.uris(), ["/users/c-7"]);
    assert_eq!(inventory.uris(), ["/inventory?sku=sku-1"]);
    let rid = got
        .header("x-request-id")
        .expect("X-Request-Id on the answer");
    for (name, f) in [
        ("orders", &orders),
        ("users", &users),
        ("inventory", &inventory),
    ] {
        let seen = f.seen();
        let s = &seen[0];
        assert_eq!(s.method, "GET", "{name}");
        assert_eq!(s.header("accept"), Some("application/json"), "{name}");
        assert_eq!(
            s.header("x-request-id"),
            Some(rid),
            "{name}: same request id"
        );
        let tp = s
            .header("traceparent")
            .unwrap_or_else(|| panic!("{name}: traceparent"));
        assert!(
            tp.starts_with("00-") && tp.len() == 55,
            "{name}: traceparent {tp}"
        );
        assert_eq!(s.header("x-forwarded-for"), Some("127.0.0.1"), "{name}");
    }

    // The customer fails: its fallback stands in, as given.
    let (got, _) = fetch(&gw.url("/web/orders/500"), &[]).await;
    let body = assert_partial(&got, &[("customer", "UPSTREAM_STATUS")], &[&users.port()]);
    assert_eq!(
        members(&body),
        json!({
            "order": { "id": "500", "customer_id": "c-500", "sku": "sku-1", "total": 12.5 },
            "customer": { "name": "unknown" },
            "stock": { "sku": "sku-1", "available": 3 },
        })
    );

    // The stock answer is later than its 150 ms: left out, TIMEOUT.
    let (got, took) = fetch(&gw.url("/web/orders/7"), &[]).await;
    let body = assert_partial(&got, &[("stock", "TIMEOUT")], &[&inventory.port()]);
    assert_eq!(
        members(&body),
        json!({
            "order": { "id": "7", "customer_id": "c-7", "sku": "slow", "total": 12.5 },
            "customer": { "id": "c-7", "full_name": "Ada Lovelace" },
        })
    );
    assert!(
        took < Duration::from_millis(500),
        "the stock call was cut at 150 ms: {took:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The partial-result contract.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_of_an_optional_call_has_its_code() {
    let status = Fake::start(|_| Reply::Status(500)).await;
    let plain = Fake::start(|_| Reply::Raw("text/plain", "hello")).await;
    let trunc = Fake::start(|_| Reply::Raw("application/json", "{\"order\": [1, 2")).await;
    let slow = Fake::start(|_| after(1000, Reply::Json(json!({ "late": true })))).await;
    let good = Fake::json(json!({ "fine": true })).await;
    let closed = closed_port();
    let closed_port_no = closed.rsplit(':').next().unwrap().to_string();
    let gw = serve(
        &[
            backend("status", &status.url(), &[]),
            backend("plain", &plain.url(), &[]),
            backend("trunc", &trunc.url(), &[]),
            backend("slow", &slow.url(), &[]),
            backend("good", &good.url(), &[]),
            backend("closed", &closed, &[]),
        ],
        &[route(
            "codes",
            "/codes",
            "3s",
            &[
                "status: { backend: status, path: /s }",
                "plain: { backend: plain, path: /p }",
                "trunc: { backend: trunc, path: /t }",
                "slow: { backend: slow, path: /slow, timeout: 100ms }",
                "good: { backend: good, path: /g }",
                "closed: { backend: closed, path: /c }",
            ],
        )],
    );
    let (got, took) = fetch(&gw.url("/web/codes"), &[]).await;
    let ports = [
        status.port(),
        plain.port(),
        trunc.port(),
        slow.port(),
        closed_port_no,
    ];
    let never: Vec<&str> = ports
        .iter()
        .map(String::as_str)
        .chain(["hello", "{\"order\""])
        .collect();
    let body = assert_partial(
        &got,
        &[
            ("closed", "UPSTREAM_UNAVAILABLE"),
            ("plain", "INVALID_BODY"),
            ("slow", "TIMEOUT"),
            ("status", "UPSTREAM_STATUS"),
            ("trunc", "INVALID_BODY"),
        ],
        &never,
    );
    assert_eq!(
        members(&body),
        json!({ "good": { "fine": true } }),
        "failed calls without fallback are left out"
    );
    assert!(
        !got.text().contains(SECRET) && !got.text().contains("hello"),
        "no backend body anywhere: {}",
        got.text()
    );
    assert!(
        took >= Duration::from_millis(90) && took < Duration::from_millis(700),
        "the 100 ms call timeout cut the 1 s backend: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_is_circuit_open() {
    let flaky = Fake::start(|_| Reply::Status(500)).await;
    let good = Fake::json(json!({ "fine": true })).await;
    let gw = serve(
        &[
            backend(
                "flaky",
                &flaky.url(),
                &["breaker: { consecutive_failures: 1, open_for: 30s }"],
            ),
            backend("good", &good.url(), &[]),
        ],
        &[route(
            "brk",
            "/brk",
            "3s",
            &[
                "x: { backend: flaky, path: /x }",
                "good: { backend: good, path: /g }",
            ],
        )],
    );
    let (got, _) = fetch(&gw.url("/web/brk"), &[]).await;
    assert_partial(&got, &[("x", "UPSTREAM_STATUS")], &[&flaky.port()]);
    assert_eq!(flaky.hits(), 1);

    let (got, took) = fetch(&gw.url("/web/brk"), &[]).await;
    let body = assert_partial(&got, &[("x", "CIRCUIT_OPEN")], &[&flaky.port()]);
    assert_eq!(members(&body), json!({ "good": { "fine": true } }));
    assert_eq!(flaky.hits(), 1, "an open breaker never calls the backend");
    assert!(took < Duration::from_millis(300), "fails fast: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_bulkhead_is_bulkhead_full() {
    let narrow = Fake::start(|s| {
        if s.path() == "/hold" {
            Reply::Hang
        } else {
            Reply::Json(json!({ "n": true }))
        }
    })
    .await;
    let good = Fake::json(json!({ "fine": true })).await;
    let gw = serve(
        &[
            backend("narrow", &narrow.url(), &["max_concurrency: 1"]),
            backend("good", &good.url(), &[]),
        ],
        &[
            route(
                "hold",
                "/hold",
                "10s",
                &["h: { backend: narrow, path: /hold }"],
            ),
            route(
                "bulk",
                "/bulk",
                "3s",
                &[
                    "n: { backend: narrow, path: /n }",
                    "good: { backend: good, path: /g }",
                ],
            ),
        ],
    );
    let url = gw.url("/web/hold");
    let holder = tokio::spawn(async move { fetch(&url, &[]).await });
    wait_for_hits(&narrow, 1, Duration::from_secs(5)).await;

    let (got, took) = fetch(&gw.url("/web/bulk"), &[]).await;
    let body = assert_partial(&got, &[("n", "BULKHEAD_FULL")], &[&narrow.port()]);
    assert_eq!(members(&body), json!({ "good": { "fine": true } }));
    assert!(
        took < Duration::from_millis(300),
        "refused at once: {took:?}"
    );
    assert_eq!(
        narrow.hits(),
        1,
        "the refused call never reached the backend"
    );
    holder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_after_a_failure_are_skipped_in_a_chain() {
    let fail = Fake::start(|_| Reply::Status(500)).await;
    let rec = Fake::start(|s| match s.path() {
        "/d" => Reply::Json(json!({ "y": 1 })),
        _ => Reply::Json(json!({ "x": 1, "y": 2 })),
    })
    .await;
    let gw = serve(
        &[
            backend("fail", &fail.url(), &[]),
            backend("rec", &rec.url(), &[]),
        ],
        &[
            route(
                "chain",
                "/chain",
                "3s",
                &[
                    "c: { backend: rec, path: \"/c/{b.y}\" }",
                    "b: { backend: rec, path: \"/b/{a.x}\" }",
                    "a: { backend: fail, path: /a }",
                    "d: { backend: rec, path: /d }",
                ],
            ),
            route(
                "missing",
                "/missing",
                "3s",
                &[
                    "d: { backend: rec, path: /d }",
                    "e: { backend: rec, path: \"/e/{d.nope}\" }",
                ],
            ),
        ],
    );
    let (got, _) = fetch(&gw.url("/web/chain"), &[]).await;
    let body = assert_partial(
        &got,
        &[("a", "UPSTREAM_STATUS"), ("b", "SKIPPED"), ("c", "SKIPPED")],
        &[&fail.port()],
    );
    assert_eq!(members(&body), json!({ "d": { "y": 1 } }));
    assert_eq!(rec.uris(), ["/d"], "skipped calls are never made");

    // A value the template needs is missing from a successful answer: SKIPPED too.
    let (got, _) = fetch(&gw.url("/web/missing"), &[]).await;
    let body = assert_partial(&got, &[("e", "SKIPPED")], &[]);
    assert_eq!(members(&body), json!({ "d": { "y": 1 } }));
    assert_eq!(rec.uris(), ["/d", "/d"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_deadline_cuts_calls_in_flight() {
    let (silent, mut events) = silent_backend().await;
    let quick = Fake::json(json!({ "q": 1 })).await;
    let slowish = Fake::start(|_| after(100, Reply::Json(json!({ "s": 1 })))).await;
    let gw = serve(
        &[
            backend("hang", &format!("http://{silent}"), &["timeout: 10s"]),
            backend("quick", &quick.url(), &[]),
            backend("slowish", &slowish.url(), &[]),
        ],
        &[route(
            "cut",
            "/cut",
            "300ms",
            &[
                "hang: { backend: hang, path: /hang }",
                "quick: { backend: quick, path: /q }",
                "slowish: { backend: slowish, path: /s }",
            ],
        )],
    );
    let (got, took) = fetch(&gw.url("/web/cut"), &[]).await;
    let answered = Instant::now();
    let body = assert_partial(&got, &[("hang", "TIMEOUT")], &[&silent.port().to_string()]);
    assert_eq!(
        members(&body),
        json!({ "quick": { "q": 1 }, "slowish": { "s": 1 } })
    );
    assert!(
        took >= Duration::from_millis(280) && took < Duration::from_millis(600),
        "answered at the 300 ms deadline: {took:?}"
    );
    match timeout(Duration::from_secs(1), events.recv()).await {
        Ok(Some(SilentEvent::Request(_))) => {}
        other => panic!("the hanging call reached its backend: {other:?}"),
    }
    let closed = timeout(Duration::from_secs(1), async {
        loop {
            match events.recv().await {
                Some(SilentEvent::Closed(_, at)) => return at,
                Some(_) => {}
                None => panic!("backend stopped"),
            }
        }
    })
    .await
    .expect("the call still running at the deadline was cancelled (connection closed)");
    assert!(
        closed.saturating_duration_since(answered) < Duration::from_millis(500),
        "cancelled by the deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallbacks_replace_failed_optional_calls() {
    let fail = Fake::start(|_| Reply::Status(503)).await;
    let ok = Fake::json(json!({ "ok": true })).await;
    let closed = closed_port();
    let gw = serve(
        &[
            backend("fail", &fail.url(), &[]),
            backend("ok", &ok.url(), &[]),
            backend("closed", &closed, &[]),
        ],
        &[route(
            "fb",
            "/fb",
            "3s",
            &[
                "customer: { backend: fail, path: /users/1, select: [id, name], rename: { name: full_name }, fallback: { name: unknown } }",
                "recs: { backend: fail, path: /recs, fallback: [] }",
                "count: { backend: closed, path: /count, fallback: 0 }",
                "label: { backend: closed, path: /label, fallback: none yet }",
                "ok: { backend: ok, path: /ok }",
            ],
        )],
    );
    let (got, _) = fetch(&gw.url("/web/fb"), &[]).await;
    let body = assert_partial(
        &got,
        &[
            ("count", "UPSTREAM_UNAVAILABLE"),
            ("customer", "UPSTREAM_STATUS"),
            ("label", "UPSTREAM_UNAVAILABLE"),
            ("recs", "UPSTREAM_STATUS"),
        ],
        &[&fail.port()],
    );
    assert_eq!(
        members(&body),
        json!({
            "customer": { "name": "unknown" },
            "recs": [],
            "count": 0,
            "label": "none yet",
            "ok": { "ok": true },
        }),
        "each fallback as given"
    );
}

// ---------------------------------------------------------------------------------------
// Shaping, fan-out, batching.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_omit_rename_extract_on_objects_and_arrays() {
    let cat = Fake::start(|s| match s.path() {
        "/catalog" => Reply::Json(json!({
            "data": {
                "items": [
                    { "id": 1, "name": "a", "secret": "s1", "price": 3 },
                    { "id": 2, "name": "b", "secret": "s2", "price": 4 },
                ],
                "total": 2,
            },
            "meta": { "page": 1 },
        })),
        "/user" => Reply::Json(json!({
            "id": 7, "name": "Ada", "email": "ada@example.com", "password_hash": "x",
        })),
        _ => Reply::Json(json!({ "uri": s.uri })),
    })
    .await;
    let gw = serve(
        &[backend("cat", &cat.url(), &[])],
        &[route(
            "shape",
            "/shape",
            "3s",
            &[
                "items: { backend: cat, path: /catalog, extract: /data/items, select: [id, name, price], omit: [price], rename: { name: title } }",
                "user_sel: { backend: cat, path: /user, select: [id, name, nickname] }",
                "user_omit: { backend: cat, path: /user, omit: [password_hash, email], rename: { id: user_id } }",
                "total: { backend: cat, path: /catalog, extract: /data/total }",
                "first: { backend: cat, path: /catalog, extract: /data/items/0/name }",
                "page: { backend: cat, path: /catalog, omit: [data] }",
                // Templates read the raw answer, before its shaping.
                "raw: { backend: cat, path: \"/echo/{items.data.total}/{items.meta.page}/{items.data.items.1.secret}\" }",
            ],
        )],
    );
    let (got, _) = fetch(&gw.url("/web/shape"), &[]).await;
    let body = assert_complete(&got);
    assert_eq!(
        body,
        json!({
            "items": [{ "id": 1, "title": "a" }, { "id": 2, "title": "b" }],
            "user_sel": { "id": 7, "name": "Ada" },
            "user_omit": { "user_id": 7, "name": "Ada" },
            "total": 2,
            "first": "a",
            "page": { "meta": { "page": 1 } },
            "raw": { "uri": "/echo/2/1/s2" },
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_per_element_with_a_cap_or_one_batch_call() {
    let orders = Fake::start(|s| {
        let items: Vec<Value> = if s.last() == "many" {
            (0..25).map(|i| json!({ "sku": format!("s{i}") })).collect()
        } else {
            ["a", "b", "c"]
                .iter()
                .map(|k| json!({ "sku": k }))
                .collect()
        };
        Reply::Json(json!({ "id": s.last(), "items": items }))
    })
    .await;
    let items = Fake::start(|s| {
        if s.path() == "/items" {
            return Reply::Json(json!({ "uri": s.uri }));
        }
        let sku = s.last().to_string();
        // The first element answers last.
        let delay = match sku.as_str() {
            "a" => 150,
            "c" => 60,
            _ => 0,
        };
        after(delay, Reply::Json(json!({ "sku": sku })))
    })
    .await;
    let order = "order: { backend: orders, path: \"/orders/{id}\", required: true, select: [id] }";
    let gw = serve(
        &[
            backend("orders", &orders.url(), &[]),
            backend("items", &items.url(), &[]),
        ],
        &[
            route(
                "fan",
                "/fan/{id}",
                "3s",
                &[
                    order,
                    "lines: { backend: items, path: \"/items/{order.items.*.sku}\" }",
                ],
            ),
            route(
                "capped",
                "/capped/{id}",
                "3s",
                &[
                    order,
                    "lines: { backend: items, path: \"/items/{order.items.*.sku}\", fan_out: 2 }",
                ],
            ),
            route(
                "batch",
                "/batch/{id}",
                "3s",
                &[
                    order,
                    "lines: { backend: items, path: \"/items?skus={order.items.*.sku}\", batch: true }",
                ],
            ),
        ],
    );

    let (got, _) = fetch(&gw.url("/web/fan/three"), &[]).await;
    let body = assert_complete(&got);
    assert_eq!(
        body,
        json!({
            "order": { "id": "three" },
            "lines": [{ "sku": "a" }, { "sku": "b" }, { "sku": "c" }],
        }),
        "one call per element, results in element order"
    );
    let mut uris = items.uris();
    uris.sort();
    assert_eq!(uris, ["/items/a", "/items/b", "/items/c"]);

    // 25 elements over the default cap of 20: the call fails, nothing is sent.
    let (got, _) = fetch(&gw.url("/web/fan/many"), &[]).await;
    let body = assert_partial(&got, &[("lines", "INVALID_BODY")], &[]);
    assert_eq!(members(&body), json!({ "order": { "id": "many" } }));
    assert_eq!(items.hits(), 3, "no call over the cap");

    // An explicit cap of 2 with 3 elements.
    let (got, _) = fetch(&gw.url("/web/capped/three"), &[]).await;
    assert_partial(&got, &[("lines", "INVALID_BODY")], &[]);
    assert_eq!(items.hits(), 3, "no call over the cap");

    // Batch: one call, values joined by commas.
    let (got, _) = fetch(&gw.url("/web/batch/three"), &[]).await;
    let body = assert_complete(&got);
    assert_eq!(
        body["lines"],
        json!({ "uri": "/items?skus=a,b,c" }),
        "{body}"
    );
    assert_eq!(items.hits(), 4, "one batch call");
}

// ---------------------------------------------------------------------------------------
// Required calls.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_required_call_fails_the_request() {
    let fail = Fake::start(|_| Reply::Status(500)).await;
    let slow = Fake::start(|_| after(1000, Reply::Json(json!({ "late": true })))).await;
    let hang = Fake::start(|_| Reply::Hang).await;
    let brk = Fake::start(|_| Reply::Status(500)).await;
    let good = Fake::json(json!({ "fine": true })).await;
    let closed = closed_port();
    let req = |b: &str, extra: &str| {
        format!("pricing: {{ backend: {b}, path: /p, required: true{extra} }}")
    };
    let extra = "extra: { backend: good, path: /g }";
    let gw = serve(
        &[
            backend("fail", &fail.url(), &[]),
            backend("slow", &slow.url(), &[]),
            backend("hang", &hang.url(), &["timeout: 10s"]),
            backend(
                "brk",
                &brk.url(),
                &["breaker: { consecutive_failures: 1, open_for: 30s }"],
            ),
            backend("good", &good.url(), &[]),
            backend("closed", &closed, &[]),
        ],
        &[
            route("r-status", "/req/status", "3s", &[&req("fail", ""), extra]),
            route(
                "r-closed",
                "/req/closed",
                "3s",
                &[&req("closed", ""), extra],
            ),
            route(
                "r-slow",
                "/req/slow",
                "3s",
                &[&req("slow", ", timeout: 100ms"), extra],
            ),
            route(
                "r-deadline",
                "/req/deadline",
                "300ms",
                &[&req("hang", ""), extra],
            ),
            route("r-breaker", "/req/breaker", "3s", &[&req("brk", ""), extra]),
        ],
    );
    // Every case is checked before reporting which details do not name the call.
    let unnamed = Mutex::new(Vec::new());
    let names_the_call = |got: &Got| {
        let detail = got.json()["detail"].as_str().unwrap_or("").to_string();
        if !detail.contains("pricing") {
            unnamed.lock().unwrap().push(detail);
        }
    };

    let (got, _) = fetch(&gw.url("/web/req/status"), &[]).await;
    assert_problem(&got, 502, "UPSTREAM_UNAVAILABLE");
    names_the_call(&got);

    let (got, _) = fetch(&gw.url("/web/req/closed"), &[]).await;
    assert_problem(&got, 502, "UPSTREAM_UNAVAILABLE");
    names_the_call(&got);

    let (got, took) = fetch(&gw.url("/web/req/slow"), &[]).await;
    assert_problem(&got, 504, "UPSTREAM_TIMEOUT");
    names_the_call(&got);
    assert!(took < Duration::from_millis(700), "cut at 100 ms: {took:?}");

    let (got, took) = fetch(&gw.url("/web/req/deadline"), &[]).await;
    assert_problem(&got, 504, "GATEWAY_TIMEOUT");
    names_the_call(&got);
    assert!(
        took >= Duration::from_millis(280) && took < Duration::from_millis(600),
        "cut at the 300 ms route deadline: {took:?}"
    );

    let (got, _) = fetch(&gw.url("/web/req/breaker"), &[]).await;
    assert_problem(&got, 502, "UPSTREAM_UNAVAILABLE");
    let (got, _) = fetch(&gw.url("/web/req/breaker"), &[]).await;
    assert_problem(&got, 503, "CIRCUIT_OPEN");
    names_the_call(&got);
    assert_eq!(brk.hits(), 1, "an open breaker never calls the backend");
    for port in [fail.port(), slow.port(), hang.port(), brk.port()] {
        assert!(!got.text().contains(&port));
    }
    let unnamed = unnamed.into_inner().unwrap();
    assert!(
        unnamed.is_empty(),
        "the detail names the call (`pricing`); these do not: {unnamed:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Methods, bodies, templates and their encoding.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_with_a_templated_json_body() {
    let orders = Fake::json(json!({ "id": "42", "qty": 3, "price": 9.5 })).await;
    let stock = Fake::start(|s| Reply::Json(json!({ "done": s.method }))).await;
    let gw = serve(
        &[
            backend("orders", &orders.url(), &[]),
            backend("stock", &stock.url(), &[]),
        ],
        &[route(
            "post",
            "/post/{id}",
            "3s",
            &[
                "order: { backend: orders, path: \"/orders/{id}\", required: true }",
                "reserve: { backend: stock, method: POST, path: /reservations, body: { order_id: \"{order.id}\", qty: \"{order.qty}\", price: \"{order.price}\", note: \"order {order.id} x{order.qty}\", route_id: \"{id}\", meta: { from: \"{header.x-client}\", fixed: true } } }",
                "release: { backend: stock, method: DELETE, path: \"/reservations/{order.id}\" }",
            ],
        )],
    );
    let (got, _) = fetch(&gw.url("/web/post/42"), &[("x-client", "web-app")]).await;
    let body = assert_complete(&got);
    assert_eq!(body["reserve"], json!({ "done": "POST" }), "{body}");
    assert_eq!(body["release"], json!({ "done": "DELETE" }), "{body}");
    let seen = stock.seen();
    let post = seen
        .iter()
        .find(|s| s.method == "POST")
        .expect("a POST reached the backend");
    assert_eq!(post.uri, "/reservations");
    assert!(
        post.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "sent as JSON: {:?}",
        post.headers
    );
    let sent: Value = serde_json::from_slice(&post.body)
        .unwrap_or_else(|e| panic!("the body is JSON ({e}): {:?}", post.body));
    assert_eq!(
        sent,
        json!({
            "order_id": "42",
            "qty": 3,
            "price": 9.5,
            "note": "order 42 x3",
            "route_id": "42",
            "meta": { "from": "web-app", "fixed": true },
        }),
        "whole-string templates keep the JSON type; others are interpolated"
    );
    let delete = seen
        .iter()
        .find(|s| s.method == "DELETE")
        .expect("a DELETE reached the backend");
    assert_eq!(delete.uri, "/reservations/42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn substituted_values_are_percent_encoded() {
    let echo = Fake::echo().await;
    let gw = serve(
        &[backend("echo", &echo.url(), &[])],
        &[route(
            "search",
            "/search",
            "3s",
            &[
                "p: { backend: echo, path: \"/find/{query.q}\" }",
                "q: { backend: echo, path: \"/find?q={query.q}&lang=en\" }",
            ],
        )],
    );
    let (got, _) = fetch(&gw.url("/web/search?q=..%2F..%2Fadmin%3Fx%3D1"), &[]).await;
    let body = assert_complete(&got);
    assert_eq!(
        upper_escapes(body["p"]["uri"].as_str().unwrap_or("")),
        "/find/..%2F..%2Fadmin%3Fx%3D1",
        "one path segment: {body}"
    );
    assert_eq!(
        upper_escapes(body["q"]["uri"].as_str().unwrap_or("")),
        "/find?q=..%2F..%2Fadmin%3Fx%3D1&lang=en",
        "one query value: {body}"
    );
    assert!(
        echo.seen()
            .iter()
            .all(|s| !s.uri.contains("admin?") && !s.path().ends_with("/admin")),
        "{:?}",
        echo.uris()
    );

    let (got, _) = fetch(&gw.url("/web/search?q=a%20b%26c%3Dd%23e"), &[]).await;
    let body = assert_complete(&got);
    assert_eq!(
        upper_escapes(body["p"]["uri"].as_str().unwrap_or("")),
        "/find/a%20b%26c%3Dd%23e",
        "{body}"
    );
    assert_eq!(
        upper_escapes(body["q"]["uri"].as_str().unwrap_or("")),
        "/find?q=a%20b%26c%3Dd%23e&lang=en",
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_query_and_path_param_templates() {
    let echo = Fake::echo().await;
    let gw = serve(
        &[backend("echo", &echo.url(), &[])],
        &[route(
            "h",
            "/h/{id}",
            "3s",
            &[
                "who: { backend: echo, path: \"/who/{id}?u={header.X-User}&t={query.tab}\" }",
                "gone: { backend: echo, path: \"/gone/{header.x-missing}\" }",
                "gone_q: { backend: echo, path: \"/gone?q={query.nope}\" }",
            ],
        )],
    );
    let (got, _) = fetch(&gw.url("/web/h/42?tab=info"), &[("x-user", "ada lovelace")]).await;
    let body = assert_partial(&got, &[("gone", "SKIPPED"), ("gone_q", "SKIPPED")], &[]);
    assert_eq!(
        upper_escapes(body["who"]["uri"].as_str().unwrap_or("")),
        "/who/42?u=ada%20lovelace&t=info",
        "header names match case-insensitively: {body}"
    );
    assert_eq!(echo.hits(), 1, "calls missing a value are never made");
}

// ---------------------------------------------------------------------------------------
// Configuration rules.
// ---------------------------------------------------------------------------------------

/// `portico validate` on a routes file with the route `page` (`/orders/{id}`) whose first
/// call `order` takes lines 9-11; `calls` are the lines after them.
fn validate(calls: &str) -> (i32, String) {
    validate_file(&format!(
        "team: web\nprefix: /web\nauth: none\nroutes:\n  - id: page\n    path: /orders/{{id}}\n    aggregate:\n      calls:\n        order:\n          backend: orders\n          path: /orders/{{id}}\n{calls}"
    ))
}

fn validate_file(routes: &str) -> (i32, String) {
    let gw = "backends:\n  orders:\n    url: http://127.0.0.1:1\n  users:\n    url: http://127.0.0.1:1\n";
    let dir = ConfigDir::new(gw, &[("web.yaml", routes)]);
    validate_dir(&dir)
}

/// The line number of the first `routes/web.yaml:N:` message that names `key`.
fn line_of(out: &str, key: &str) -> Option<usize> {
    out.lines().filter(|l| l.contains(key)).find_map(|l| {
        let rest = &l[l.find("routes/web.yaml:")? + "routes/web.yaml:".len()..];
        rest.split(':').next()?.parse().ok()
    })
}

#[test]
fn every_documented_call_key_is_accepted() {
    let (code, out) = validate(concat!(
        "        x:\n",
        "          backend: users\n",
        "          method: POST\n",
        "          path: \"/x/{order.customer_id}?q={query.q}&h={header.x-h}\"\n",
        "          body: { a: \"{order.id}\", b: [1, 2], c: \"text {id}\" }\n",
        "          timeout: 100ms\n",
        "          select: [id, name]\n",
        "          omit: [secret]\n",
        "          rename: { name: full_name }\n",
        "          extract: /data\n",
        "          fallback: { name: unknown }\n",
        "          fan_out: 5\n",
        "          batch: false\n",
        "          required: false\n",
        "        y:\n",
        "          backend: users\n",
        "          path: \"/y/{order.items.*.sku}\"\n",
        "          fan_out: 50\n",
        "        z:\n",
        "          backend: users\n",
        "          method: PUT\n",
        "          path: \"/z?sku={order.items.0.sku}\"\n",
        "        w:\n",
        "          backend: users\n",
        "          path: \"/w?skus={order.items.*.sku}\"\n",
        "          batch: true\n",
        "        v: { backend: users, method: PATCH, path: /v }\n",
        "        u: { backend: users, method: DELETE, path: /u }\n",
    ));
    assert_eq!(code, 0, "every documented key is accepted: {out}");

    let example = format!(
        "team: web\nprefix: /web\nauth: none\nroutes:\n{}",
        contract_route().replace("backend: inventory", "backend: orders")
    );
    let (code, out) = validate_file(&example);
    assert_eq!(code, 0, "the contract's example is valid: {out}");
}

#[test]
fn aggregate_config_errors_name_file_line_and_key() {
    // (what, lines of call x (from line 12), key, text in the message)
    // Every case runs; the problems are reported together at the end.
    let mut wrong: Vec<String> = Vec::new();
    let cases: &[(&str, &[&str], &str, &str)] = &[
        (
            "unknown backend",
            &["backend: nope", "path: /x"],
            "routes[0].aggregate.calls.x.backend",
            "nope",
        ),
        (
            "unknown call",
            &["backend: users", "path: \"/x/{ghost.id}\""],
            "routes[0].aggregate.calls.x",
            "ghost",
        ),
        (
            "unknown call in the body",
            &[
                "backend: users",
                "method: POST",
                "path: /x",
                "body: { a: \"{ghost.id}\" }",
            ],
            "routes[0].aggregate.calls.x",
            "ghost",
        ),
        (
            "unknown path param",
            &["backend: users", "path: \"/x/{nope}\""],
            "routes[0].aggregate.calls.x",
            "nope",
        ),
        (
            "claims without auth",
            &["backend: users", "path: \"/x/{claims.sub}\""],
            "routes[0].aggregate.calls.x",
            "claims",
        ),
        (
            "required with fallback",
            &[
                "backend: users",
                "path: /x",
                "required: true",
                "fallback: { name: unknown }",
            ],
            "routes[0].aggregate.calls.x",
            "fallback",
        ),
        (
            "extract not a pointer",
            &["backend: users", "path: /x", "extract: data/items"],
            "routes[0].aggregate.calls.x.extract",
            "data/items",
        ),
        (
            "unknown key",
            &["backend: users", "path: /x", "pth: /y"],
            "routes[0].aggregate.calls.x",
            "pth",
        ),
    ];
    for (what, lines, key, text) in cases {
        let mut calls = String::from("        x:\n");
        for l in lines.iter() {
            calls.push_str(&format!("          {l}\n"));
        }
        let (code, out) = validate(&calls);
        let last = 12 + lines.len();
        if code != 1 {
            wrong.push(format!("{what}: exit {code}, not 1: {out}"));
        } else if !out.contains(key) || !out.contains(text) {
            wrong.push(format!("{what}: no error naming {key} and {text:?}: {out}"));
        } else {
            match line_of(&out, key) {
                Some(line) if (12..=last).contains(&line) => {}
                other => wrong.push(format!(
                    "{what}: line {other:?} is not within call x (12-{last}): {out}"
                )),
            }
        }
    }

    // A cycle.
    let (code, out) = validate(concat!(
        "        x:\n",
        "          backend: users\n",
        "          path: \"/x/{y.a}\"\n",
        "        y:\n",
        "          backend: users\n",
        "          path: \"/y/{x.b}\"\n",
    ));
    match line_of(&out, "routes[0].aggregate.calls.") {
        Some(line) if code == 1 && out.contains("cycle") && (12..=17).contains(&line) => {}
        _ => wrong.push(format!(
            "cycle: exit 1 and a `cycle` error under routes[0].aggregate.calls. on lines 12-17: exit {code}: {out}"
        )),
    }

    // No calls.
    let (code, out) = validate_file(
        "team: web\nprefix: /web\nauth: none\nroutes:\n  - id: page\n    path: /orders/{id}\n    aggregate:\n      calls: {}\n",
    );
    match line_of(&out, "routes[0].aggregate") {
        Some(line) if code == 1 && (7..=8).contains(&line) => {}
        _ => wrong.push(format!(
            "empty calls: exit 1 and an error under routes[0].aggregate on lines 7-8: exit {code}: {out}"
        )),
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
