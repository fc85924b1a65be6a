//! Black-box: per-backend resilience of the real binary against misbehaving real backends
//! on loopback — circuit breaker, retries and their budget, deadlines, bulkhead, balancing,
//! outlier ejection, active health checks, hedging, fault injection, client cancellation,
//! the admin `GET /backends` view and the configuration rules.

mod support;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, sleep_until, timeout};

// ---------------------------------------------------------------------------------------
// A programmable backend.
// ---------------------------------------------------------------------------------------

/// What the programmable backend does with the next request (`/healthz` aside).
#[derive(Clone, Debug)]
enum Mode {
    /// 200 `{"instance": NAME}` at once.
    Fine,
    /// This status with these extra headers; body `{"status": N, "from": NAME}`.
    Status(u16, Vec<(&'static str, String)>),
    /// 200 `{"instance": NAME}` after this many milliseconds.
    Slow(u64),
    /// Never answers.
    Hang,
    /// Reads the whole request (body included), then drops the connection unanswered.
    Reset,
}

fn status(code: u16) -> Mode {
    Mode::Status(code, Vec::new())
}

fn status_retry_after(code: u16, secs: u64) -> Mode {
    Mode::Status(code, vec![("retry-after", secs.to_string())])
}

struct State {
    /// Modes used once each, in order, before falling back to `mode`.
    script: VecDeque<Mode>,
    mode: Mode,
    /// Status of `GET /healthz`.
    health: u16,
}

/// A backend on 127.0.0.1:0 whose answers the test changes while it runs.
struct Prog {
    name: &'static str,
    addr: SocketAddr,
    /// Requests received, `/healthz` excluded (counted on arrival).
    hits: Arc<AtomicUsize>,
    /// `/healthz` probes received.
    health_hits: Arc<AtomicUsize>,
    state: Arc<Mutex<State>>,
}

type Answer = Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>>;

impl Prog {
    async fn start(name: &'static str, mode: Mode) -> Prog {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let prog = Prog {
            name,
            addr: listener.local_addr().unwrap(),
            hits: Arc::default(),
            health_hits: Arc::default(),
            state: Arc::new(Mutex::new(State {
                script: VecDeque::new(),
                mode,
                health: 200,
            })),
        };
        let (hits, health_hits, state) = (
            prog.hits.clone(),
            prog.health_hits.clone(),
            prog.state.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (hits, health_hits, state) = (hits.clone(), health_hits.clone(), state.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        answer(name, hits.clone(), health_hits.clone(), state.clone(), req)
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        prog
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn health_hits(&self) -> usize {
        self.health_hits.load(Ordering::SeqCst)
    }

    /// From now on, every request gets `mode` (any script left is dropped).
    fn set(&self, mode: Mode) {
        let mut s = self.state.lock().unwrap();
        s.script.clear();
        s.mode = mode;
    }

    /// The next requests get these modes, one each; then the standing mode again.
    fn script(&self, modes: impl IntoIterator<Item = Mode>) {
        self.state.lock().unwrap().script.extend(modes);
    }

    fn set_health(&self, code: u16) {
        self.state.lock().unwrap().health = code;
    }
}

async fn answer(
    name: &'static str,
    hits: Arc<AtomicUsize>,
    health_hits: Arc<AtomicUsize>,
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Answer {
    if req.uri().path() == "/healthz" {
        health_hits.fetch_add(1, Ordering::SeqCst);
        let code = state.lock().unwrap().health;
        return Ok(Response::builder()
            .status(code)
            .body(Full::from("{}"))
            .unwrap());
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let mode = {
        let mut s = state.lock().unwrap();
        let next = s.script.pop_front();
        next.unwrap_or_else(|| s.mode.clone())
    };
    let fine = || {
        Response::builder()
            .header("content-type", "application/json")
            .header("x-instance", name)
            .body(Full::from(json!({ "instance": name }).to_string()))
            .unwrap()
    };
    match mode {
        Mode::Fine => Ok(fine()),
        Mode::Slow(ms) => {
            sleep(Duration::from_millis(ms)).await;
            Ok(fine())
        }
        Mode::Status(code, headers) => {
            let mut res = Response::builder()
                .status(code)
                .header("content-type", "application/json");
            for (k, v) in headers {
                res = res.header(k, v);
            }
            Ok(res
                .body(Full::from(
                    json!({ "status": code, "from": name }).to_string(),
                ))
                .unwrap())
        }
        Mode::Hang => {
            sleep(Duration::from_secs(3600)).await;
            Ok(fine())
        }
        Mode::Reset => {
            let _ = req.into_body().collect().await;
            // An error from the service makes hyper drop the connection unanswered.
            Err("reset by test backend".into())
        }
    }
}

// ---------------------------------------------------------------------------------------
// Configuration and requests.
// ---------------------------------------------------------------------------------------

/// One backend entry under `backends:`, its keys one per line.
fn be(name: &str, keys: &[&str]) -> String {
    let mut out = format!("  {name}:\n");
    for k in keys {
        out.push_str(&format!("    {k}\n"));
    }
    out
}

fn url_of(p: &Prog) -> String {
    format!("url: {}", p.url())
}

fn urls_of(list: &[&str]) -> String {
    let quoted: Vec<String> = list.iter().map(|u| format!("\"{u}\"")).collect();
    format!("urls: [{}]", quoted.join(", "))
}

/// A routes file sending everything under `/PREFIX` to `backend` (path minus prefix);
/// `route_keys` are extra keys of that route (`timeout: 300ms`).
fn routes(prefix: &str, backend: &str, route_keys: &str) -> String {
    format!(
        "team: {prefix}\nprefix: /{prefix}\nauth: none\nroutes:\n  - id: {prefix}-all\n    path: /{{*rest}}\n{route_keys}    proxy: {{ backend: {backend} }}\n"
    )
}

fn gateway_file(backends: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:0\n  shutdown_grace: 1s\nadmin:\n  listen: 127.0.0.1:0\nbackends:\n{backends}"
    )
}

/// The gateway with these backends and one routes file per `(prefix, backend)`.
fn serve(backends: &str, prefixes: &[(&str, &str)]) -> Gateway {
    let files: Vec<(String, String)> = prefixes
        .iter()
        .map(|(p, b)| (format!("{p}.yaml"), routes(p, b, "")))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    Gateway::serve(ConfigDir::new(&gateway_file(backends), &refs))
}

/// The gateway with one backend `b` (these keys) behind `/api/…`.
fn one(keys: &[&str]) -> Gateway {
    serve(&be("b", keys), &[("api", "b")])
}

/// [`one`] with a route `timeout` (the request's deadline).
fn one_with_deadline(keys: &[&str], timeout: &str) -> Gateway {
    let route = routes("api", "b", &format!("    timeout: {timeout}\n"));
    Gateway::serve(ConfigDir::new(
        &gateway_file(&be("b", keys)),
        &[("api.yaml", &route)],
    ))
}

async fn get_on(c: &HttpClient, url: &str) -> Got {
    send(c, Request::get(url).body(Full::default()).unwrap()).await
}

async fn timed_get(c: &HttpClient, url: &str) -> (Got, Duration) {
    let t = Instant::now();
    let got = get_on(c, url).await;
    (got, t.elapsed())
}

async fn post_on(c: &HttpClient, url: &str, idempotency_key: Option<&str>) -> Got {
    let mut req = Request::post(url).header("content-type", "application/json");
    if let Some(k) = idempotency_key {
        req = req.header("idempotency-key", k);
    }
    send(c, req.body(Full::from("{\"order\":1}")).unwrap()).await
}

/// `n` concurrent GETs; each answer with its latency.
async fn burst(c: &HttpClient, url: &str, n: usize) -> Vec<(Got, Duration)> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (c, url) = (c.clone(), url.to_string());
            tokio::spawn(async move { timed_get(&c, &url).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Nearest-rank percentile.
fn percentile(mut v: Vec<Duration>, p: usize) -> Duration {
    v.sort();
    v[(v.len() * p).div_ceil(100).max(1) - 1]
}

/// The problem `code` of a gateway-made error, or "" for anything else.
fn code(got: &Got) -> String {
    if got.header("content-type") != Some("application/problem+json") {
        return String::new();
    }
    got.json()["code"].as_str().unwrap_or("").to_string()
}

async fn admin_backends(gw: &Gateway) -> Value {
    let got = get(&gw.admin_url("/backends")).await;
    assert_eq!(got.status, 200, "GET /backends: {}", got.text());
    got.json()
}

fn backend_in<'a>(all: &'a Value, name: &str) -> &'a Value {
    all["backends"]
        .as_array()
        .unwrap_or_else(|| panic!("no `backends` array: {all}"))
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no backend {name}: {all}"))
}

fn instance_in<'a>(backend: &'a Value, url: &str) -> &'a Value {
    backend["instances"]
        .as_array()
        .unwrap_or_else(|| panic!("no `instances` array: {backend}"))
        .iter()
        .find(|i| i["url"] == url)
        .unwrap_or_else(|| panic!("no instance {url}: {backend}"))
}

/// Polls `GET /backends` until instance `url` of `name` has health `want`.
async fn wait_for_health(gw: &Gateway, name: &str, url: &str, want: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let all = admin_backends(gw).await;
        if instance_in(backend_in(&all, name), url)["health"] == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} was not {want} within {within:?}: {all}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_hits(p: &Prog, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while p.hits() < n {
        assert!(
            Instant::now() < deadline,
            "{} got {} requests, expected {n}",
            p.name,
            p.hits()
        );
        sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Circuit breaker.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_after_consecutive_5xx_and_fails_fast() {
    let b = Prog::start("b", status(500)).await;
    let gw = one(&[
        &url_of(&b),
        "timeout: 2s",
        "breaker: { consecutive_failures: 3, open_for: 60s }",
    ]);
    let c = client();
    let url = gw.url("/api/thing");
    for i in 0..3 {
        let got = get_on(&c, &url).await;
        assert_eq!(
            got.status,
            500,
            "failure {i} passes through: {}",
            got.text()
        );
    }
    assert_eq!(b.hits(), 3);

    let got = get_on(&c, &url).await;
    assert_problem(&got, 503, "CIRCUIT_OPEN");
    let retry: u64 = got
        .header("retry-after")
        .expect("Retry-After on CIRCUIT_OPEN")
        .parse()
        .expect("whole seconds");
    assert!(
        (50..=60).contains(&retry),
        "open for 60 s, just opened: Retry-After {retry}"
    );

    let mut latencies = Vec::new();
    for _ in 0..20 {
        let (got, took) = timed_get(&c, &url).await;
        assert_eq!(code(&got), "CIRCUIT_OPEN", "{}", got.text());
        latencies.push(took);
    }
    assert_eq!(b.hits(), 3, "an open breaker never calls the backend");
    let median = percentile(latencies.clone(), 50);
    assert!(
        median < Duration::from_millis(10),
        "fast-fail median {median:?}: {latencies:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_admits_exactly_one_probe_under_concurrency() {
    let b = Prog::start("b", status(500)).await;
    let gw = one(&[
        &url_of(&b),
        "timeout: 5s",
        "breaker: { consecutive_failures: 2, open_for: 1s, half_open_probes: 1 }",
    ]);
    let c = client();
    let url = gw.url("/api/thing");
    for _ in 0..2 {
        assert_eq!(get_on(&c, &url).await.status, 500);
    }
    let opened = tokio::time::Instant::now();
    b.set(Mode::Slow(800));

    // While open: 50 concurrent are all refused (this also warms 50 client connections).
    for (got, _) in burst(&c, &url, 50).await {
        assert_problem(&got, 503, "CIRCUIT_OPEN");
    }
    assert_eq!(
        b.hits(),
        2,
        "no request reached the backend while open (was the warm-up slower than open_for?)"
    );

    sleep_until(opened + Duration::from_millis(1300)).await;
    let answers = burst(&c, &url, 50).await;
    let passed: Vec<&(Got, Duration)> = answers.iter().filter(|(g, _)| g.status == 200).collect();
    let refused: Vec<&(Got, Duration)> = answers
        .iter()
        .filter(|(g, _)| code(g) == "CIRCUIT_OPEN")
        .collect();
    assert_eq!(b.hits(), 3, "exactly one probe reached the backend");
    assert_eq!(passed.len(), 1, "one probe answered 200");
    assert_eq!(refused.len(), 49, "the rest got CIRCUIT_OPEN");
    assert!(
        passed[0].1 >= Duration::from_millis(800),
        "the probe waited for the slow backend"
    );
    for (got, took) in &refused {
        assert_problem(got, 503, "CIRCUIT_OPEN");
        assert!(
            *took < Duration::from_millis(500),
            "refused at once, not queued behind the probe: {took:?}"
        );
    }

    // The probe succeeded: the breaker is closed again.
    b.set(Mode::Fine);
    for _ in 0..5 {
        assert_eq!(get_on(&c, &url).await.status, 200);
    }
    assert_eq!(b.hits(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_probe_is_cut_by_the_timeout_and_reopens() {
    let b = Prog::start("b", status(500)).await;
    let gw = one(&[
        &url_of(&b),
        "timeout: 300ms",
        "breaker: { consecutive_failures: 2, open_for: 500ms }",
    ]);
    let c = client();
    let url = gw.url("/api/thing");
    for _ in 0..2 {
        assert_eq!(get_on(&c, &url).await.status, 500);
    }
    assert_eq!(code(&get_on(&c, &url).await), "CIRCUIT_OPEN");
    b.set(Mode::Hang);
    sleep(Duration::from_millis(700)).await;

    let (got, took) = timed_get(&c, &url).await;
    assert_problem(&got, 504, "UPSTREAM_TIMEOUT");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
        "the probe was cut by the 300 ms timeout: {took:?}"
    );
    assert_eq!(b.hits(), 3, "the probe reached the backend");

    let (got, took) = timed_get(&c, &url).await;
    assert_problem(&got, 503, "CIRCUIT_OPEN");
    assert!(took < Duration::from_millis(100), "re-opened: {took:?}");
    assert_eq!(b.hits(), 3);

    // Not stuck: after another open_for, a good probe closes it.
    b.set(Mode::Fine);
    sleep(Duration::from_millis(700)).await;
    assert_eq!(get_on(&c, &url).await.status, 200);
    assert_eq!(get_on(&c, &url).await.status, 200);
    assert_eq!(b.hits(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_never_open_the_breaker() {
    let b = Prog::start("b", status(404)).await;
    let gw = one(&[
        &url_of(&b),
        "timeout: 2s",
        "breaker: { consecutive_failures: 3, open_for: 60s }",
    ]);
    let c = client();
    let url = gw.url("/api/thing");
    for _ in 0..10 {
        assert_eq!(get_on(&c, &url).await.status, 404);
    }
    b.set(status(429));
    for _ in 0..5 {
        assert_eq!(get_on(&c, &url).await.status, 429);
    }
    b.set(status(400));
    for _ in 0..5 {
        assert_eq!(post_on(&c, &url, None).await.status, 400);
    }
    assert_eq!(
        b.hits(),
        20,
        "twenty 4xx in a row: every request reached the backend"
    );

    // The breaker itself works: three 5xx open it.
    b.set(status(500));
    for _ in 0..3 {
        assert_eq!(get_on(&c, &url).await.status, 500);
    }
    assert_problem(&get_on(&c, &url).await, 503, "CIRCUIT_OPEN");
    assert_eq!(b.hits(), 23);
}

// ---------------------------------------------------------------------------------------
// Retries.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_requests_are_retried_and_posts_only_with_an_idempotency_key() {
    let b = Prog::start("b", Mode::Fine).await;
    let gw = one(&[
        &url_of(&b),
        "timeout: 2s",
        "retry: { attempts: 2, backoff: 10ms, max_backoff: 50ms }",
    ]);
    let c = client();
    let url = gw.url("/api/thing");

    b.script([status(503), status(503)]);
    let got = get_on(&c, &url).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(b.hits(), 3, "two retries, then success");

    b.set(status(503));
    let got = post_on(&c, &url, None).await;
    assert_eq!(got.status, 503);
    assert_eq!(
        got.json()["from"],
        "b",
        "the backend's own 503 passes through"
    );
    assert_eq!(b.hits(), 4, "a POST without Idempotency-Key is not retried");

    b.set(Mode::Fine);
    b.script([status(503)]);
    let got = post_on(&c, &url, Some("order-1")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(b.hits(), 6, "a POST with Idempotency-Key is retried");

    // Exhausted: the last answer passes through.
    b.set(status(503));
    let got = get_on(&c, &url).await;
    assert_eq!(got.status, 503);
    assert_eq!(got.json()["from"], "b");
    assert_eq!(b.hits(), 9, "one try and two retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_body_was_sent_then_reset_is_never_retried() {
    let b = Prog::start("b", Mode::Reset).await;
    let gw = one(&[
        &url_of(&b),
        "timeout: 2s",
        "retry: { attempts: 3, backoff: 10ms, max_backoff: 50ms }",
    ]);
    let c = client();
    let url = gw.url("/api/orders");
    let got = post_on(&c, &url, None).await;
    assert_problem(&got, 502, "UPSTREAM_UNAVAILABLE");
    assert_eq!(
        b.hits(),
        1,
        "the POST reached the backend once and was not replayed"
    );

    // Control: a reset is retryable for a GET.
    let got = get_on(&c, &url).await;
    assert_problem(&got, 502, "UPSTREAM_UNAVAILABLE");
    assert_eq!(b.hits(), 5, "a GET is tried once and retried three times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_are_retried_even_for_post() {
    let live = Prog::start("live", Mode::Fine).await;
    let other = Prog::start("other", Mode::Fine).await;
    let dead = closed_port();
    let backends = be(
        "b",
        &[
            &urls_of(&[&dead, &live.url()]),
            "balance: round_robin",
            "connect_timeout: 500ms",
            "timeout: 2s",
            "retry: { attempts: 2, backoff: 10ms, max_backoff: 50ms }",
        ],
    ) + &be(
        "plain",
        &[
            &urls_of(&[&dead, &other.url()]),
            "balance: round_robin",
            "connect_timeout: 500ms",
            "timeout: 2s",
        ],
    );
    let gw = serve(&backends, &[("api", "b"), ("plain", "plain")]);
    let c = client();
    for i in 0..4 {
        let got = post_on(&c, &gw.url("/api/orders"), None).await;
        assert_eq!(got.status, 200, "POST {i}: {}", got.text());
        assert_eq!(got.json()["instance"], "live");
    }
    assert_eq!(live.hits(), 4, "each POST delivered exactly once");

    // Control: without retries, round robin sends some POSTs to the dead instance.
    let mut refused = 0;
    for _ in 0..4 {
        let got = post_on(&c, &gw.url("/plain/orders"), None).await;
        if got.status != 200 {
            assert_problem(&got, 502, "UPSTREAM_UNAVAILABLE");
            refused += 1;
        }
    }
    assert!(refused >= 1, "the dead instance was never tried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_caps_retries_under_total_failure() {
    let b = Prog::start("b", status(503)).await;
    let gw = one(&[
        &url_of(&b),
        "timeout: 2s",
        "retry: { attempts: 3, backoff: 1ms, max_backoff: 5ms, budget: 20% }",
    ]);
    let c = client();
    let url = gw.url("/api/thing");
    for _ in 0..100 {
        assert_eq!(get_on(&c, &url).await.status, 503);
    }
    let hits = b.hits();
    // Unbudgeted: 400. Budgeted: 100 + 20% of 100 + a floor of 10.
    assert!(
        (110..=140).contains(&hits),
        "100 requests, attempts 3, budget 20% + floor 10: backend hits {hits}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_or_passed_through() {
    let b = Prog::start("b", Mode::Fine).await;
    let gw = one_with_deadline(
        &[
            &url_of(&b),
            "timeout: 2s",
            "retry: { attempts: 2, backoff: 10ms, max_backoff: 50ms }",
        ],
        "5s",
    );
    let c = client();
    let url = gw.url("/api/thing");

    b.script([status_retry_after(503, 1)]);
    let (got, took) = timed_get(&c, &url).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(b.hits(), 2);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "the retry waited Retry-After: 1: {took:?}"
    );

    // Waiting 30 s would pass the 5 s route deadline: the 503 passes through at once.
    b.script([status_retry_after(503, 30)]);
    let (got, took) = timed_get(&c, &url).await;
    assert_eq!(got.status, 503, "{}", got.text());
    assert_eq!(got.json()["from"], "b");
    assert_eq!(got.header("retry-after"), Some("30"));
    assert_eq!(b.hits(), 3, "not retried");
    assert!(
        took < Duration::from_secs(1),
        "passed through at once: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_deadline_caps_retries() {
    let b = Prog::start("b", Mode::Hang).await;
    let gw = one_with_deadline(
        &[
            &url_of(&b),
            "timeout: 100ms",
            "retry: { attempts: 5, backoff: 10ms, max_backoff: 20ms, on: [timeout] }",
        ],
        "300ms",
    );
    let c = client();
    let (got, took) = timed_get(&c, &gw.url("/api/thing")).await;
    assert_problem(&got, 504, "GATEWAY_TIMEOUT");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(1),
        "cut at the 300 ms route deadline, not after 6 × 100 ms: {took:?}"
    );
    let hits = b.hits();
    assert!((2..=3).contains(&hits), "attempts within 300 ms: {hits}");
    sleep(Duration::from_millis(800)).await;
    assert_eq!(b.hits(), hits, "no attempt after the deadline");
}

// ---------------------------------------------------------------------------------------
// Bulkhead, balancing, ejection, health, hedging.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bulkhead_refuses_at_once_and_isolates_other_backends() {
    let hang = Prog::start("hang", Mode::Hang).await;
    let fine = Prog::start("fine", Mode::Fine).await;
    let backends = be("b", &[&url_of(&hang), "timeout: 30s", "max_concurrency: 3"])
        + &be("c", &[&url_of(&fine), "timeout: 5s"])
        + &be("h", &[&url_of(&hang), "timeout: 30s"]);
    let gw = serve(&backends, &[("b", "b"), ("c", "c"), ("h", "h")]);
    let holders = client();
    let mut held = Vec::new();
    for _ in 0..3 {
        let (c, url) = (holders.clone(), gw.url("/b/hold"));
        held.push(tokio::spawn(async move { get_on(&c, &url).await }));
    }
    wait_for_hits(&hang, 3, Duration::from_secs(5)).await;

    let (got, took) = timed_get(&client(), &gw.url("/b/more")).await;
    assert_problem(&got, 503, "BULKHEAD_FULL");
    assert!(
        took < Duration::from_millis(250),
        "refused at once: {took:?}"
    );
    assert_eq!(hang.hits(), 3, "the fourth never reached the backend");
    let all = admin_backends(&gw).await;
    assert_eq!(backend_in(&all, "b")["in_flight"], 3, "{all}");
    assert_eq!(backend_in(&all, "b")["max_concurrency"], 3, "{all}");

    // Twenty more hang on another backend; a third backend stays fast.
    for _ in 0..20 {
        let (c, url) = (holders.clone(), gw.url("/h/hold"));
        held.push(tokio::spawn(async move { get_on(&c, &url).await }));
    }
    wait_for_hits(&hang, 23, Duration::from_secs(5)).await;
    let c = client();
    let mut latencies = Vec::new();
    for _ in 0..100 {
        let (got, took) = timed_get(&c, &gw.url("/c/thing")).await;
        assert_eq!(got.status, 200);
        latencies.push(took);
    }
    let p99 = percentile(latencies, 99);
    assert!(
        p99 < Duration::from_millis(100),
        "p99 to a healthy backend while 23 requests hang elsewhere: {p99:?}"
    );
    for h in held {
        h.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedging_answers_from_the_fast_instance() {
    let slow = Prog::start("slow", Mode::Slow(400)).await;
    let fast = Prog::start("fast", Mode::Fine).await;
    let instances = urls_of(&[&slow.url(), &fast.url()]);
    let keys = [instances.as_str(), "balance: round_robin", "timeout: 2s"];
    let hedged = one(&[&keys[..], &["hedge: { after: 50ms }"][..]].concat());
    let plain = one(&keys);

    let c = client();
    for i in 0..10 {
        let (got, took) = timed_get(&c, &hedged.url("/api/thing")).await;
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(got.json()["instance"], "fast", "request {i}: the hedge won");
        assert!(
            took < Duration::from_millis(300),
            "request {i}: about 50 ms + the fast instance, not 400 ms: {took:?}"
        );
    }
    assert!(
        slow.hits() >= 4,
        "round robin tried the slow instance first sometimes"
    );

    // Control: without a hedge, the requests sent to the slow instance wait for it.
    let mut slow_ones = 0;
    for _ in 0..10 {
        let (got, took) = timed_get(&c, &plain.url("/api/thing")).await;
        assert_eq!(got.status, 200);
        if took >= Duration::from_millis(400) {
            slow_ones += 1;
        }
    }
    assert!(
        slow_ones >= 3,
        "without a hedge only {slow_ones} of 10 were slow"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outlier_is_ejected_then_returns() {
    let bad = Prog::start("bad", status(500)).await;
    let good = Prog::start("good", Mode::Fine).await;
    let gw = one(&[
        &urls_of(&[&bad.url(), &good.url()]),
        "balance: round_robin",
        "timeout: 2s",
        "outlier: { consecutive_5xx: 2, eject_for: 2s }",
    ]);
    let c = client();
    let url = gw.url("/api/thing");
    for _ in 0..10 {
        if bad.hits() >= 2 {
            break;
        }
        get_on(&c, &url).await;
    }
    assert_eq!(bad.hits(), 2);
    let ejected = tokio::time::Instant::now();
    let all = admin_backends(&gw).await;
    let b = backend_in(&all, "b");
    assert_eq!(instance_in(b, &bad.url())["health"], "ejected", "{all}");
    assert_eq!(instance_in(b, &good.url())["health"], "healthy", "{all}");

    for _ in 0..20 {
        let got = get_on(&c, &url).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.json()["instance"], "good");
    }
    assert_eq!(bad.hits(), 2, "no traffic to the ejected instance");

    sleep_until(ejected + Duration::from_millis(2500)).await;
    for _ in 0..10 {
        get_on(&c, &url).await;
    }
    assert!(
        bad.hits() > 2,
        "the instance got traffic again after eject_for"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_instances_get_no_traffic_until_healthy_again() {
    let a = Prog::start("a", Mode::Fine).await;
    let b = Prog::start("b", Mode::Fine).await;
    b.set_health(503);
    let gw = one(&[
        &urls_of(&[&a.url(), &b.url()]),
        "balance: round_robin",
        "timeout: 2s",
        "health: { path: /healthz, interval: 100ms, unhealthy_after: 2, healthy_after: 2 }",
    ]);
    wait_for_health(&gw, "b", &b.url(), "unhealthy", Duration::from_secs(5)).await;
    assert!(b.health_hits() >= 2, "probed GET /healthz");
    assert!(a.health_hits() >= 2, "every instance is probed");
    assert_eq!(a.hits() + b.hits(), 0, "probes are not traffic");

    let c = client();
    for _ in 0..20 {
        let got = get_on(&c, &gw.url("/api/thing")).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.json()["instance"], "a");
    }
    assert_eq!(b.hits(), 0, "no traffic to the unhealthy instance");

    b.set_health(200);
    wait_for_health(&gw, "b", &b.url(), "healthy", Duration::from_secs(5)).await;
    for _ in 0..10 {
        assert_eq!(get_on(&c, &gw.url("/api/thing")).await.status, 200);
    }
    assert!(b.hits() >= 3, "healthy again, b got traffic: {}", b.hits());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_prefers_the_instance_with_fewer_in_flight() {
    let slow = Prog::start("slow", Mode::Slow(300)).await;
    let fast = Prog::start("fast", Mode::Fine).await;
    let gw = one(&[
        &urls_of(&[&slow.url(), &fast.url()]),
        "balance: least_request",
        "timeout: 2s",
    ]);
    let c = client();
    let mut tasks = Vec::new();
    // Twenty overlapping requests (10 ms apart; a slow one lasts 300 ms).
    for _ in 0..20 {
        let (c, url) = (c.clone(), gw.url("/api/thing"));
        tasks.push(tokio::spawn(async move { get_on(&c, &url).await.status }));
        sleep(Duration::from_millis(10)).await;
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(slow.hits() + fast.hits(), 20);
    assert!(
        fast.hits() >= 15,
        "more than 70% to the fast instance: fast {}, slow {}",
        fast.hits(),
        slow.hits()
    );
}

// ---------------------------------------------------------------------------------------
// Fault injection, cancellation, admin, configuration.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_injected_and_logged() {
    let b = Prog::start("b", Mode::Fine).await;
    let backends = be(
        "chaos",
        &[&url_of(&b), "timeout: 2s", "fault: { abort: 503 }"],
    ) + &be(
        "slowed",
        &[&url_of(&b), "timeout: 2s", "fault: { delay: 200ms }"],
    );
    let gw = serve(&backends, &[("chaos", "chaos"), ("slowed", "slowed")]);
    let c = client();
    for _ in 0..3 {
        assert_problem(
            &get_on(&c, &gw.url("/chaos/thing")).await,
            503,
            "FAULT_INJECTED",
        );
    }
    assert_eq!(b.hits(), 0, "an aborted request never reaches the backend");

    let (got, took) = timed_get(&c, &gw.url("/slowed/thing")).await;
    assert_eq!(got.status, 200);
    assert!(took >= Duration::from_millis(200), "delayed: {took:?}");
    assert_eq!(b.hits(), 1);

    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let logs = gw.logs();
        let logged = |name: &str| {
            logs.lines()
                .any(|l| l.contains("fault injected") && l.contains(name))
        };
        if logged("chaos") && logged("slowed") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no `fault injected` line naming each backend:\n{logs}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_client_request_drops_the_backend_connection() {
    let (addr, mut seen) = silent_backend().await;
    let gw = one(&[
        &format!("url: http://{addr}"),
        "timeout: 10s",
        "breaker: { consecutive_failures: 1, open_for: 60s }",
    ]);
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /api/hold HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let conn = match timeout(Duration::from_secs(3), seen.recv()).await {
        Ok(Some(SilentEvent::Request(conn))) => conn,
        other => panic!("the request did not reach the backend: {other:?}"),
    };
    sleep(Duration::from_millis(200)).await;
    assert!(
        seen.try_recv().is_err(),
        "nothing happens while the client waits"
    );
    let dropped = Instant::now();
    drop(s);
    let closed = timeout(Duration::from_secs(2), async {
        loop {
            match seen.recv().await {
                Some(SilentEvent::Closed(c, at)) if c == conn => return at,
                Some(_) => {}
                None => panic!("backend stopped"),
            }
        }
    })
    .await
    .expect("the backend connection was closed within 2 s of the client going away");
    assert!(closed >= dropped, "closed only once the client went away");

    // A client cancellation is not a backend failure: the breaker (1 failure) stays closed.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /api/again HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let next = timeout(Duration::from_secs(3), async {
        loop {
            match seen.recv().await {
                Some(SilentEvent::Request(_)) => return,
                Some(_) => {}
                None => panic!("backend stopped"),
            }
        }
    })
    .await;
    assert!(
        next.is_ok(),
        "after a client cancellation the next request did not reach the backend (breaker opened?)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_backends_shows_each_backend_and_instance() {
    let b = Prog::start("b", Mode::Fine).await;
    let backends = be(
        "zeta",
        &[
            &url_of(&b),
            "timeout: 2s",
            "balance: round_robin",
            "max_concurrency: 5",
            "breaker: { consecutive_failures: 5, open_for: 10s }",
            "retry: { attempts: 2 }",
        ],
    ) + &be(
        "alpha",
        &[&url_of(&b), "timeout: 2s", "balance: least_request"],
    );
    let gw = serve(&backends, &[("z", "zeta"), ("a", "alpha")]);
    let c = client();
    b.script([status(500)]);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get_on(&c, &gw.url("/z/thing")).await.status.as_u16());
    }
    // The 500 is not retryable by default, so it passes through.
    assert_eq!(statuses, [500, 200, 200, 200]);

    let all = admin_backends(&gw).await;
    let names: Vec<&str> = all["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "zeta"], "sorted by name");

    let zeta = backend_in(&all, "zeta");
    assert_eq!(zeta["balance"], "round_robin", "{zeta}");
    assert_eq!(zeta["in_flight"], 0, "{zeta}");
    assert_eq!(zeta["max_concurrency"], 5, "{zeta}");
    assert_eq!(zeta["breaker"], "closed", "{zeta}");
    assert_eq!(zeta["retry_budget"]["requests"], 4, "{zeta}");
    assert_eq!(zeta["retry_budget"]["retries"], 0, "{zeta}");
    assert_eq!(zeta["instances"].as_array().unwrap().len(), 1);
    let inst = instance_in(zeta, &b.url());
    assert_eq!(inst["health"], "healthy", "{inst}");
    assert_eq!(inst["breaker"], "closed", "{inst}");
    assert_eq!(inst["in_flight"], 0, "{inst}");
    assert_eq!(inst["requests"], 4, "{inst}");
    let rate = inst["error_rate"].as_f64().expect("error_rate is a number");
    assert!(
        (rate - 0.25).abs() < 0.01,
        "1 of 4 failed: error_rate {rate}"
    );
    let mean = inst["latency_ms"]["mean"].as_f64().expect("latency mean");
    let p99 = inst["latency_ms"]["p99"].as_f64().expect("latency p99");
    assert!(
        (0.0..1000.0).contains(&mean) && (0.0..1000.0).contains(&p99),
        "{inst}"
    );

    let alpha = backend_in(&all, "alpha");
    assert_eq!(alpha["balance"], "least_request", "{alpha}");
    assert!(alpha["max_concurrency"].is_null(), "{alpha}");
    assert_eq!(instance_in(alpha, &b.url())["requests"], 0, "{alpha}");
}

fn validate(backend_keys: &[&str]) -> (i32, String) {
    let mut keys = vec!["url: http://127.0.0.1:1"];
    keys.extend_from_slice(backend_keys);
    let dir = ConfigDir::new(
        &gateway_file(&be("b", &keys)),
        &[("api.yaml", &routes("api", "b", ""))],
    );
    validate_dir(&dir)
}

#[test]
fn resilience_settings_are_validated() {
    let (code, out) = validate(&[
        "connect_timeout: 1s",
        "timeout: 5s",
        "max_concurrency: 5",
        "balance: least_request",
        "breaker: { consecutive_failures: 5, failure_rate: 50%, window: 10s, min_requests: 20, open_for: 10s, half_open_probes: 1, on: [connect, reset, timeout, 5xx] }",
        "retry: { attempts: 2, backoff: 25ms, max_backoff: 250ms, budget: 20%, on: [connect, reset, timeout, 429, 502, 503, 504] }",
        "outlier: { consecutive_5xx: 3, eject_for: 2s, max_ejected: 50% }",
        "hedge: { after: 50ms }",
        "health: { path: /healthz, interval: 200ms, unhealthy_after: 2, healthy_after: 2 }",
        "fault: { delay: 200ms, delay_percent: 10%, abort: 503, abort_percent: 1% }",
    ]);
    assert_eq!(code, 0, "every documented key is accepted: {out}");

    for (keys, key, value) in [
        (
            &["breaker: { open_for: 1s }"][..],
            "backends.b.breaker",
            "consecutive_failures",
        ),
        (
            &["fault: { abort: 200 }"][..],
            "backends.b.fault.abort",
            "200",
        ),
        (&["balance: random"][..], "backends.b.balance", "random"),
        (
            &["retry: { attempts: 1, on: [teapot] }"][..],
            "backends.b.retry.on",
            "teapot",
        ),
        (&["hedge: { after: 0s }"][..], "backends.b.hedge.after", ""),
    ] {
        let (code, out) = validate(keys);
        assert_eq!(code, 1, "{keys:?} is invalid: {out}");
        assert!(out.contains(key), "{keys:?}: the error names {key}: {out}");
        assert!(
            out.contains(value),
            "{keys:?}: the error mentions {value}: {out}"
        );
        assert!(
            out.contains("gateway.yaml:"),
            "{keys:?}: file and line: {out}"
        );
    }
}

/// A retry that finds every breaker open gives the client the backend's own last answer,
/// not CIRCUIT_OPEN; the next request is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_blocked_by_the_breaker_returns_the_last_answer() {
    let b = Prog::start("b", status_retry_after(503, 0)).await;
    let gw = one(&[
        &url_of(&b),
        "timeout: 1s",
        "breaker: { consecutive_failures: 1, open_for: 30s }",
        "retry: { attempts: 2, backoff: 1ms, max_backoff: 2ms }",
    ]);
    let c = client();
    let url = gw.url("/api/thing");
    let got = get_on(&c, &url).await;
    assert_eq!(got.status, 503);
    assert_eq!(
        got.json()["from"],
        "b",
        "the backend's answer: {}",
        got.text()
    );
    assert_eq!(b.hits(), 1);
    assert_problem(&get_on(&c, &url).await, 503, "CIRCUIT_OPEN");
    assert_eq!(b.hits(), 1);
}
