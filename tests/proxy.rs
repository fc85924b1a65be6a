//! Black-box: the real binary proxying to real backends on loopback.

mod support;

use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Full;
use support::*;

const API: &str = r#"
team: api
prefix: /api
auth: none
routes:
  - id: mapped
    path: /items/{id}
    methods: [GET, POST]
    proxy: { backend: b, path: "/echo/v2/{id}" }
  - id: slow-route
    path: /slow/{ms}
    timeout: 300ms
    proxy: { backend: b, path: "/delay/{ms}" }
  - id: hello
    path: /hello
    methods: [GET]
    static: { status: 201, headers: { x-static: "yes" }, body: { ok: true } }
  - id: dead
    path: /dead
    proxy: { backend: dead }
  - id: pass
    path: /{*rest}
    proxy: { backend: b }
"#;

const STRICT: &str = r#"
team: strict
prefix: /strict
auth: none
routes:
  - id: strict-get
    path: /thing
    methods: [GET]
    proxy: { backend: b, path: /echo }
"#;

async fn setup(extra: &str) -> (Backend, Gateway) {
    let backend = Backend::start().await;
    let gw = gateway_yaml(
        &backend.url(),
        "  dead:\n    url: http://127.0.0.1:1\n    connect_timeout: 500ms\n",
        extra,
    );
    let gateway = Gateway::serve(ConfigDir::new(
        &gw,
        &[("api.yaml", API), ("strict.yaml", STRICT)],
    ));
    (backend, gateway)
}

#[tokio::test]
async fn path_mapping_query_and_forwarding_headers() {
    let (_b, gw) = setup("").await;
    let got = send(
        &client(),
        Request::get(gw.url("/api/items/42?b=2&a=1&a=%20x"))
            .header("host", "shop.example")
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-forwarded-host", "evil.example")
            .header("forwarded", "for=6.6.6.6")
            .header("x-request-id", "client-chosen-id.1")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .header("tracestate", "vendor=1")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, 200);
    let echo = got.json();
    assert_eq!(
        echo["uri"], "/echo/v2/42?b=2&a=1&a=%20x",
        "params mapped, query unchanged"
    );
    let h = &echo["headers"];
    assert_eq!(
        h["x-forwarded-for"], "127.0.0.1",
        "an untrusted peer's XFF is replaced"
    );
    assert_eq!(h["x-forwarded-host"], "shop.example");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert!(h.get("forwarded").is_none());
    assert_eq!(h["host"], format!("{}", _b.addr), "Host is the backend's");
    assert_eq!(h["x-request-id"], "client-chosen-id.1");
    assert_eq!(
        got.header("x-request-id"),
        Some("client-chosen-id.1"),
        "echoed"
    );
    let tp = h["traceparent"].as_str().unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && !tp.contains("00f067aa0ba902b7"),
        "{tp}"
    );
    assert_eq!(h["tracestate"], "vendor=1");

    // Without a request id or trace context, both are generated.
    let got = get(&gw.url("/api/items/1")).await;
    let h = &got.json()["headers"];
    let rid = h["x-request-id"].as_str().unwrap();
    assert_eq!(rid.len(), 32);
    assert_eq!(got.header("x-request-id"), Some(rid));
    assert_eq!(h["traceparent"].as_str().unwrap().len(), 55);
    // An insane request id is replaced.
    let got = send(
        &client(),
        Request::get(gw.url("/api/items/1"))
            .header("x-request-id", "a b<script>")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_ne!(got.json()["headers"]["x-request-id"], "a b<script>");

    // Path omitted: the request path minus the prefix.
    let got = get(&gw.url("/api/echo/deep/path?x=1")).await;
    assert_eq!(got.json()["uri"], "/echo/deep/path?x=1");
}

#[tokio::test]
async fn trusted_proxies_extend_the_chain() {
    let (_b, gw) = setup("").await;
    drop(gw);
    let backend = Backend::start().await;
    let yaml = gateway_yaml(&backend.url(), "", "").replace(
        "  shutdown_grace: 5s\n",
        "  shutdown_grace: 5s\n  trusted_proxies: [127.0.0.0/8]\n",
    );
    let gw = Gateway::serve(ConfigDir::new(
        &yaml,
        &[(
            "api.yaml",
            &API.replace("    proxy: { backend: dead }\n", "    static: {}\n"),
        )],
    ));
    let got = send(
        &client(),
        Request::get(gw.url("/api/echo"))
            .header("x-forwarded-for", "203.0.113.9")
            .header("x-forwarded-proto", "https")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    let h = &got.json()["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let (_b, gw) = setup("").await;
    let got = send(
        &client(),
        Request::get(gw.url("/api/echo"))
            .header("connection", "keep-alive, x-client-hop")
            .header("x-client-hop", "secret")
            .header("keep-alive", "timeout=5")
            .header("te", "trailers")
            .header("proxy-authorization", "Basic c2VjcmV0")
            .header("upgrade", "h2c")
            .header("x-end-to-end", "kept")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    let h = &got.json()["headers"];
    for gone in [
        "x-client-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(h.get(gone).is_none(), "{gone} reached the backend: {h}");
    }
    assert_eq!(h["x-end-to-end"], "kept");
    let got = get(&gw.url("/api/hop")).await;
    assert!(got.header("x-hop-secret").is_none());
    assert!(got.header("keep-alive").is_none());
    assert_eq!(got.header("x-end-to-end"), Some("kept"));
}

#[tokio::test]
async fn errors_are_problem_json() {
    let (_b, gw) = setup("").await;
    let got = get(&gw.url("/nowhere")).await;
    assert_problem(&got, 404, "ROUTE_NOT_FOUND");
    let got = send(
        &client(),
        Request::post(gw.url("/strict/thing"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_problem(&got, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(got.header("allow"), Some("GET, HEAD"));
    // A more specific route that does not take the method falls through to the catch-all.
    let got = send(
        &client(),
        Request::delete(gw.url("/api/items/1"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(got.json()["uri"], "/items/1");

    let got = get(&gw.url("/api/dead")).await;
    assert_problem(&got, 502, "UPSTREAM_UNAVAILABLE");
    let got = get(&gw.url("/api/delay/1500")).await;
    assert_problem(&got, 504, "UPSTREAM_TIMEOUT");
    let started = Instant::now();
    let got = get(&gw.url("/api/slow/2000")).await;
    assert_problem(&got, 504, "GATEWAY_TIMEOUT");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the route deadline cut it: {:?}",
        started.elapsed()
    );
    // A backend's own error status passes through untouched.
    let got = get(&gw.url("/api/status/503")).await;
    assert_eq!(got.status, 503);
}

#[tokio::test]
async fn edge_deadline() {
    let backend = Backend::start().await;
    let yaml = gateway_yaml(&backend.url(), "", "")
        .replace("    timeout: 1s\n", "    timeout: 10s\n")
        .replace(
            "  shutdown_grace: 5s\n",
            "  shutdown_grace: 5s\n  request_timeout: 400ms\n",
        );
    let gw = Gateway::serve(ConfigDir::new(
        &yaml,
        &[(
            "api.yaml",
            &API.replace("    proxy: { backend: dead }\n", "    static: {}\n"),
        )],
    ));
    let started = Instant::now();
    let got = get(&gw.url("/api/delay/3000")).await;
    assert_problem(&got, 504, "GATEWAY_TIMEOUT");
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn static_handler() {
    let (b, gw) = setup("").await;
    let got = get(&gw.url("/api/hello")).await;
    assert_eq!(got.status, 201);
    assert_eq!(got.header("x-static"), Some("yes"));
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.json(), serde_json::json!({"ok": true}));
    assert_eq!(b.hits(), 0);
}

#[tokio::test]
async fn normalised_paths_cannot_escape() {
    let (_b, gw) = setup("").await;
    // `/strict/../api/x` is `/api/x` (plain path reaches the catch-all there).
    let got = get(&gw.url("/strict/%2e%2e/api/echo")).await;
    assert_eq!(got.json()["uri"], "/echo");
    // `/api/../strict/thing` must not reach /api's catch-all: it is /strict/thing.
    let got = get(&gw.url("/api/../strict/thing")).await;
    assert_eq!(got.json()["uri"], "/echo");
    let got = get(&gw.url("/api/%2E%2E/nowhere")).await;
    assert_problem(&got, 404, "ROUTE_NOT_FOUND");
    let got = get(&gw.url("//api//items//7")).await;
    assert_eq!(got.json()["uri"], "/echo/v2/7");
}

#[tokio::test]
async fn body_limits_and_malformed_framing() {
    let (b, gw) = setup("").await;
    // Declared too large: 413 at once (before the body is sent), nothing reaches the backend.
    let out = raw(
        gw.addr,
        format!(
            "POST /api/sink HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\nxxxx",
            (10 << 20) + 1
        )
        .as_bytes(),
        Duration::from_secs(2),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(out.contains("application/problem+json") && out.contains("PAYLOAD_TOO_LARGE"));
    assert_eq!(b.hits(), 0);

    // Chunked, no length: counted while streaming.
    let chunk = format!("{:x}\r\n{}\r\n", 1 << 20, "y".repeat(1 << 20));
    let mut req = b"POST /api/sink HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
    for _ in 0..11 {
        req.extend_from_slice(chunk.as_bytes());
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let out = raw(gw.addr, &req, Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(out.contains("PAYLOAD_TOO_LARGE"));

    let hits = b.hits();
    let out = raw(gw.addr, b"POST /api/echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!", Duration::from_secs(2)).await;
    assert!(
        out.starts_with("HTTP/1.1 400"),
        "differing Content-Length: {out}"
    );
    let out = raw(gw.addr, b"POST /api/echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", Duration::from_secs(2)).await;
    assert!(out.starts_with("HTTP/1.1 400"), "bad chunk size: {out}");
    let out = raw(gw.addr, b"POST /api/echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: gzip\r\n\r\n", Duration::from_secs(2)).await;
    assert!(
        out.starts_with("HTTP/1.1 400"),
        "non-chunked Transfer-Encoding: {out}"
    );
    assert_eq!(b.hits(), hits, "no malformed request reached the backend");
}

#[tokio::test]
async fn oversized_headers_are_431() {
    let (b, gw) = setup("").await;
    let got = send(
        &client(),
        Request::get(gw.url("/api/echo"))
            .header("x-big", "a".repeat(17 * 1024))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_problem(&got, 431, "HEADERS_TOO_LARGE");
    assert_eq!(b.hits(), 0);
}

#[tokio::test]
async fn http2_prior_knowledge() {
    let (_b, gw) = setup("").await;
    let got = send(
        &h2c_client(),
        Request::get(gw.url("/api/items/9?q=1"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["uri"], "/echo/v2/9?q=1");
    let got = send(
        &h2c_client(),
        Request::get(gw.url("/nope")).body(Full::default()).unwrap(),
    )
    .await;
    assert_problem(&got, 404, "ROUTE_NOT_FOUND");
}

#[tokio::test]
async fn access_log_has_one_line_per_request_and_no_secrets() {
    let (_b, gw) = setup("").await;
    let got = send(
        &client(),
        Request::get(gw.url("/api/items/5?api_key=topsecretkey"))
            .header("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.secret-token")
            .header("cookie", "session=cookie-secret")
            .header("x-request-id", "log-me-1")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        if let Some(l) = gw
            .logs()
            .lines()
            .find(|l| l.contains("log-me-1"))
            .map(str::to_string)
        {
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "no access log line:\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["route"], "mapped");
    assert_eq!(entry["team"], "api");
    assert_eq!(entry["backend"], "b");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["method"], "GET");
    assert_eq!(entry["path"], "/api/items/5");
    assert!(entry["duration_ms"].is_number());
    // The trace continues; the gateway's own span id is logged (its backends' parent).
    assert_eq!(entry["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let span = entry["span_id"].as_str().unwrap();
    assert_eq!(span.len(), 16);
    assert!(span.bytes().all(|b| b.is_ascii_hexdigit()) && span != "00f067aa0ba902b7");
    let all = gw.logs();
    for secret in ["topsecretkey", "secret-token", "cookie-secret"] {
        assert!(!all.contains(secret), "{secret} was logged");
    }
}

#[tokio::test]
async fn ambiguous_framing_is_refused_before_any_backend() {
    let (b, gw) = setup("").await;
    for (what, req) in [
        ("CL then TE", &b"POST /api/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..]),
        ("TE then CL", b"POST /api/echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        ("differing CL", b"POST /api/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!"),
        ("TE not chunked", b"POST /api/echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n\r\n"),
        ("bad CL", b"POST /api/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5x\r\n\r\nhello"),
    ] {
        let out = raw(gw.addr, req, Duration::from_secs(3)).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{what}: {out}");
        assert!(out.contains("application/problem+json") && out.contains("BAD_REQUEST"), "{what}: {out}");
        assert!(!out.contains("__portico"), "{what}: the internal marker leaked: {out}");
    }
    // A smuggling attempt after a good request on the same connection: the first is
    // answered, the second refused, and only the first reaches the backend.
    let out = raw(
        gw.addr,
        b"GET /api/echo/first HTTP/1.1\r\nhost: x\r\n\r\nPOST /api/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /api/echo/smuggled HTTP/1.1\r\nhost: x\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("HTTP/1.1 400"), "{out}");
    assert!(!out.contains("smuggled"), "{out}");
    assert_eq!(b.hits(), 1);
    // The marker path itself, sent by a client, is an ordinary unknown path.
    let got = get(&gw.url("/__portico/framing-error/0123/length-and-chunked")).await;
    assert_problem(&got, 404, "ROUTE_NOT_FOUND");
}

#[tokio::test]
async fn keep_alive_bodies_and_pipelining_pass_the_guard() {
    let (b, gw) = setup("").await;
    // Two pipelined requests with bodies (fixed and chunked with a trailer), then a GET.
    let out = raw(
        gw.addr,
        b"POST /api/echo/a HTTP/1.1\r\nhost: x\r\ncontent-length: 11\r\n\r\nhello world\
POST /api/echo/b HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nx-trailer: 1\r\n\r\n\
GET /api/echo/c HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(out.matches("HTTP/1.1 200").count(), 3, "{out}");
    assert!(out.contains("\"body\":\"hello world\""), "{out}");
    assert!(out.contains("\"body\":\"abcde\""), "{out}");
    assert_eq!(b.hits(), 3);
}

#[tokio::test]
async fn backend_connections_are_pooled_and_reused() {
    let (b, gw) = setup("").await;
    let client = client();
    for i in 0..20 {
        let got = send(
            &client,
            Request::get(gw.url(&format!("/api/echo/{i}")))
                .body(Full::default())
                .unwrap(),
        )
        .await;
        assert_eq!(got.status, 200);
    }
    assert_eq!(b.hits(), 20);
    assert_eq!(
        b.conns.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one kept-alive connection served all 20"
    );
}

#[tokio::test]
async fn backend_resets_are_502_and_cut_bodies_stay_cut() {
    let (_b, gw) = setup("").await;
    let got = get(&gw.url("/api/reset")).await;
    assert_problem(&got, 502, "UPSTREAM_UNAVAILABLE");
    // The head was already on its way: the client must see a broken body, never a
    // complete-looking one and never a hang.
    let res = client()
        .request(
            Request::get(gw.url("/api/cut"))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = tokio::time::timeout(
        Duration::from_secs(5),
        http_body_util::BodyExt::collect(res.into_body()),
    )
    .await
    .expect("no hang");
    assert!(
        body.is_err(),
        "a body cut by the backend must not arrive as complete"
    );
    // The gateway is unaffected.
    assert_eq!(get(&gw.url("/api/echo")).await.status, 200);
}

#[tokio::test]
async fn an_unanswered_upgrade_does_not_switch_the_guard_off() {
    let (b, gw) = setup("").await;
    let out = raw(
        gw.addr,
        b"GET /api/echo/up HTTP/1.1\r\nhost: x\r\nupgrade: foo\r\nconnection: upgrade\r\n\r\nPOST /api/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /api/echo/smuggled HTTP/1.1\r\nhost: x\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains("HTTP/1.1 400"),
        "the smuggling head after it is still refused: {out}"
    );
    assert!(!out.contains("smuggled"));
    assert_eq!(b.hits(), 1);
    // Leading blank lines do not switch it off either.
    let out = raw(gw.addr, b"\r\n\r\nPOST /api/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", Duration::from_secs(3)).await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert_eq!(b.hits(), 1);
}

#[tokio::test]
async fn connections_are_reused_after_requests_with_bodies() {
    let (b, gw) = setup("").await;
    let client = client();
    for i in 0..20 {
        let got = send(
            &client,
            Request::post(gw.url(&format!("/api/echo/{i}")))
                .body(Full::new(bytes::Bytes::from(format!("body {i}"))))
                .unwrap(),
        )
        .await;
        assert_eq!(got.json()["body"], format!("body {i}"));
    }
    assert_eq!(b.conns.load(std::sync::atomic::Ordering::SeqCst), 1);
}
