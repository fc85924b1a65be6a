//! Black-box: the response cache (contract § 2.1 `cache`, § 2.2 route `cache`, § 3.5
//! `Cache-Status`, § 3.6 `POST /cache/purge`) of the real binary against recording
//! backends on loopback: what is stored and what never is, keys (query order, `vary`,
//! the backend's `Vary`, the caller, poisoning attempts), coalescing, stale answers,
//! size bounds, conditional requests, purges, aggregates.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::sleep;

/// `gateway.yaml` with backend `b` at `url`, optional `cache:` and an HS256 provider.
fn gateway(url: &str, cache: &str) -> String {
    gateway_yaml(
        url,
        "",
        &format!(
            "auth:\n  users:\n    jwt:\n      algorithms: [HS256]\n      keys: [{{ kid: k1, secret: {HS_SECRET} }}]\n      sources: [authorization, \"cookie:session\"]\n      forward_claims: {{ sub: X-User-Id }}\n{cache}"
        ),
    )
}

/// One route file (team t, prefix /t) with these routes.
fn routes(auth: &str, routes: &str) -> String {
    format!("team: t\nprefix: /t\nauth: {auth}\nroutes:\n{routes}")
}

/// A public route `/t/{*rest}` proxied to `b` with this cache block.
fn cached_route(cache: &str) -> String {
    routes(
        "none",
        &format!(
            "  - id: c\n    path: /{{*rest}}\n    proxy: {{ backend: b }}\n    cache: {cache}\n"
        ),
    )
}

fn start(backend: &Recorder, cache_block: &str, route_file: &str) -> Gateway {
    Gateway::serve(ConfigDir::new(
        &gateway(&backend.url(), cache_block),
        &[("t.yaml", route_file)],
    ))
}

/// A backend answering 200 JSON `{"n": <hit number>, "path": ...}` with these headers.
async fn counting(headers: Vec<(&'static str, String)>) -> Recorder {
    let n = Arc::new(AtomicUsize::new(0));
    Recorder::start(move |r| {
        let i = n.fetch_add(1, Ordering::SeqCst) + 1;
        let mut h = headers.clone();
        h.push(("content-type", "application/json".into()));
        Canned::Full(200, h, json!({"n": i, "uri": r.uri}).to_string())
    })
    .await
}

async fn get_with(url: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(&client(), req.body(Full::new(Bytes::new())).unwrap()).await
}

fn status(got: &Got) -> &str {
    got.header("cache-status").unwrap_or("")
}

const HS_SECRET: &str = "portico-cache-test-only-hmac-secret-0123456789";

/// An HS256 token for `sub`, valid for ten minutes.
fn token(sub: &str) -> String {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k1".into());
    jsonwebtoken::encode(
        &header,
        &json!({"sub": sub, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

fn bearer(sub: &str) -> String {
    format!("Bearer {}", token(sub))
}

async fn admin_post(gw: &Gateway, path: &str, body: &str) -> Got {
    let req = Request::post(gw.admin_url(path))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    send(&client(), req).await
}

// ---------------------------------------------------------------------------------------
// Hits and misses
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_second_get_is_answered_from_memory_with_age_and_cache_status() {
    let backend = counting(vec![("etag", "\"v1\"".into())]).await;
    let gw = start(&backend, "", &cached_route("{ ttl: 30s }"));
    let first = get(&gw.url("/t/items?x=1")).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        status(&first),
        "portico; fwd=miss; fwd-status=200; stored; ttl=30"
    );
    sleep(Duration::from_millis(1100)).await;
    let second = get(&gw.url("/t/items?x=1")).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body, first.body, "the stored body");
    assert!(
        status(&second).starts_with("portico; hit; ttl=2"),
        "{}",
        status(&second)
    );
    assert_eq!(second.header("age"), Some("1"));
    assert_eq!(second.header("etag"), Some("\"v1\""));
    assert!(second.header("x-request-id").is_some());
    assert_ne!(second.header("x-request-id"), first.header("x-request-id"));
    assert_eq!(backend.hits(), 1);

    // HEAD is answered from GET's entry: headers, no body.
    let req = Request::head(gw.url("/t/items?x=1"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let head = send(&client(), req).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length").map(str::to_string),
        Some(first.body.len().to_string())
    );
    assert!(status(&head).contains("hit"));
    // A different path or query is a different entry.
    let other = get(&gw.url("/t/items?x=2")).await;
    assert!(status(&other).contains("fwd=miss"));
    assert_eq!(backend.hits(), 2);
}

#[tokio::test]
async fn query_order_does_not_split_entries_but_repeated_names_keep_their_order() {
    let backend = counting(vec![]).await;
    let gw = start(&backend, "", &cached_route("{ ttl: 30s }"));
    get(&gw.url("/t/q?b=2&a=1")).await;
    let same = get(&gw.url("/t/q?a=1&b=2")).await;
    assert!(status(&same).contains("hit"), "{}", status(&same));
    get(&gw.url("/t/q?a=1&a=2")).await;
    let reordered = get(&gw.url("/t/q?a=2&a=1")).await;
    assert!(status(&reordered).contains("fwd=miss"));
    assert_eq!(backend.hits(), 3);
    // The backend got the query as the client sent it.
    assert_eq!(backend.uris()[0], "/q?b=2&a=1");
}

#[tokio::test]
async fn other_methods_bypass_and_problems_of_earlier_stages_say_bypass() {
    let backend = counting(vec![]).await;
    let file = routes(
        "users",
        "  - id: c\n    path: /{*rest}\n    proxy: { backend: b }\n    cache: { ttl: 30s, scope: public }\n",
    );
    let gw = start(&backend, "", &file);
    let req = Request::post(gw.url("/t/x"))
        .header("authorization", bearer("ann"))
        .body(Full::new(Bytes::from("{}")))
        .unwrap();
    let post = send(&client(), req).await;
    assert_eq!(post.status, 200);
    assert_eq!(status(&post), "portico; fwd=method");
    let denied = get(&gw.url("/t/x")).await;
    assert_problem(&denied, 401, "UNAUTHENTICATED");
    assert_eq!(status(&denied), "portico; fwd=bypass");
}

#[tokio::test]
async fn statuses_outside_the_list_and_backend_failures_are_not_stored() {
    let n = Arc::new(AtomicUsize::new(0));
    let hits = n.clone();
    let backend = Recorder::start(move |r| {
        hits.fetch_add(1, Ordering::SeqCst);
        match r.path() {
            "/missing" => Canned::Status(404),
            "/created" => Canned::Full(201, vec![], "made".into()),
            _ => Canned::Status(500),
        }
    })
    .await;
    let gw = start(&backend, "", &cached_route("{ ttl: 30s }"));
    for _ in 0..2 {
        get(&gw.url("/t/missing")).await;
    }
    assert_eq!(n.load(Ordering::SeqCst), 1, "404 is stored by default");
    for _ in 0..2 {
        let got = get(&gw.url("/t/broken")).await;
        assert_eq!(got.status, 500);
        assert_eq!(
            status(&got),
            "portico; fwd=miss; fwd-status=500; detail=status"
        );
    }
    for _ in 0..2 {
        get(&gw.url("/t/created")).await;
    }
    assert_eq!(n.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn the_backends_max_age_shortens_the_ttl() {
    let backend = counting(vec![("cache-control", "max-age=1".into())]).await;
    let gw = start(&backend, "", &cached_route("{ ttl: 60s }"));
    let first = get(&gw.url("/t/short")).await;
    assert!(
        status(&first).ends_with("stored; ttl=1"),
        "{}",
        status(&first)
    );
    sleep(Duration::from_millis(1200)).await;
    let again = get(&gw.url("/t/short")).await;
    assert!(status(&again).contains("fwd=miss"), "{}", status(&again));
    assert_eq!(backend.hits(), 2);
}

// ---------------------------------------------------------------------------------------
// Never stored
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn no_store_private_no_cache_set_cookie_and_vary_star_are_never_stored() {
    for (header, value, detail) in [
        ("cache-control", "no-store", "no-store"),
        ("cache-control", "private, max-age=60", "private"),
        ("cache-control", "no-cache", "no-cache"),
        ("set-cookie", "session=abc; HttpOnly", "set-cookie"),
        ("vary", "*", "vary"),
    ] {
        let backend = counting(vec![(header, value.into())]).await;
        let gw = start(&backend, "", &cached_route("{ ttl: 30s }"));
        for _ in 0..3 {
            let got = get(&gw.url("/t/never")).await;
            assert_eq!(got.status, 200);
            assert_eq!(
                status(&got),
                format!("portico; fwd=miss; fwd-status=200; detail={detail}"),
                "{header}: {value}"
            );
        }
        assert_eq!(backend.hits(), 3, "{header}: {value}");
    }
}

#[tokio::test]
async fn partial_aggregate_answers_are_never_stored() {
    let backend = Recorder::start(|r| match r.path() {
        "/fails" => Canned::Status(503),
        _ => Canned::Json(json!({"ok": true})),
    })
    .await;
    let file = routes(
        "none",
        "  - id: page\n    path: /page\n    cache: { ttl: 30s }\n    aggregate:\n      calls:\n        main: { backend: b, path: /main, required: true }\n        extra: { backend: b, path: /fails }\n",
    );
    let gw = start(&backend, "", &file);
    for _ in 0..2 {
        let got = get(&gw.url("/t/page")).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("portico-partial"), Some("extra"));
        assert_eq!(
            status(&got),
            "portico; fwd=miss; fwd-status=200; detail=partial"
        );
    }
    assert_eq!(backend.hits(), 4);
}

// ---------------------------------------------------------------------------------------
// Credentials and scope
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn credentials_on_a_public_route_need_a_public_answer() {
    let plain = counting(vec![]).await;
    let gw = start(&plain, "", &cached_route("{ ttl: 30s }"));
    // Stored from an anonymous request...
    get(&gw.url("/t/doc")).await;
    // ...but not served to a request with credentials, nor stored from one.
    for creds in [
        ("authorization", "Bearer abc"),
        ("cookie", "theme=dark; session=abc"),
    ] {
        let got = get_with(&gw.url("/t/doc"), &[creds]).await;
        assert_eq!(
            status(&got),
            "portico; fwd=miss; fwd-status=200; detail=authorization"
        );
    }
    // Other cookies are not credentials.
    let got = get_with(&gw.url("/t/doc"), &[("cookie", "theme=dark")]).await;
    assert!(status(&got).contains("hit"), "{}", status(&got));
    assert_eq!(plain.hits(), 3);

    let public = counting(vec![("cache-control", "public, max-age=30".into())]).await;
    let gw = start(&public, "", &cached_route("{ ttl: 30s }"));
    get_with(&gw.url("/t/doc"), &[("authorization", "Bearer abc")]).await;
    let shared = get_with(&gw.url("/t/doc"), &[("authorization", "Bearer xyz")]).await;
    assert!(status(&shared).contains("hit"), "{}", status(&shared));
    let anonymous = get(&gw.url("/t/doc")).await;
    assert!(status(&anonymous).contains("hit"));
    assert_eq!(public.hits(), 1);
}

/// A backend that answers with the caller it was told about (`X-User-Id`).
async fn per_user(headers: Vec<(&'static str, String)>) -> Recorder {
    Recorder::start(move |r| {
        let mut h = headers.clone();
        h.push(("content-type", "application/json".into()));
        let user = r.header("x-user-id").unwrap_or("nobody").to_string();
        Canned::Full(200, h, json!({ "user": user }).to_string())
    })
    .await
}

#[tokio::test]
async fn private_scope_keeps_one_entry_per_caller() {
    let backend = per_user(vec![("cache-control", "private, max-age=30".into())]).await;
    let file = routes(
        "users",
        "  - id: me\n    path: /me\n    proxy: { backend: b }\n    cache: { ttl: 30s }\n",
    );
    let gw = start(&backend, "", &file);
    let ann = bearer("ann");
    let bob = bearer("bob");
    let a1 = get_with(&gw.url("/t/me"), &[("authorization", &ann)]).await;
    let b1 = get_with(&gw.url("/t/me"), &[("authorization", &bob)]).await;
    assert_eq!(a1.json()["user"], "ann");
    assert_eq!(b1.json()["user"], "bob");
    // A new token of the same caller finds its entry; the other caller never sees it.
    let a2 = get_with(&gw.url("/t/me"), &[("authorization", &bearer("ann"))]).await;
    let b2 = get_with(&gw.url("/t/me"), &[("authorization", &bob)]).await;
    assert_eq!(a2.json()["user"], "ann");
    assert_eq!(b2.json()["user"], "bob");
    assert!(status(&a2).contains("hit") && status(&b2).contains("hit"));
    assert_eq!(backend.hits(), 2);
}

#[tokio::test]
async fn public_scope_on_an_authenticated_route_needs_the_backends_consent() {
    let plain = per_user(vec![("cache-control", "max-age=30".into())]).await;
    let file = routes(
        "users",
        "  - id: shared\n    path: /shared\n    proxy: { backend: b }\n    cache: { ttl: 30s, scope: public }\n",
    );
    let gw = start(&plain, "", &file);
    let a = get_with(&gw.url("/t/shared"), &[("authorization", &bearer("ann"))]).await;
    let b = get_with(&gw.url("/t/shared"), &[("authorization", &bearer("bob"))]).await;
    assert_eq!(a.json()["user"], "ann");
    assert_eq!(b.json()["user"], "bob", "never another caller's answer");
    assert_eq!(plain.hits(), 2);

    let consenting = per_user(vec![("cache-control", "public, s-maxage=30".into())]).await;
    let gw = start(&consenting, "", &file);
    get_with(&gw.url("/t/shared"), &[("authorization", &bearer("ann"))]).await;
    let b = get_with(&gw.url("/t/shared"), &[("authorization", &bearer("bob"))]).await;
    assert!(status(&b).contains("hit"));
    assert_eq!(consenting.hits(), 1);
}

// ---------------------------------------------------------------------------------------
// Vary and poisoning
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn route_vary_and_backend_vary_separate_entries() {
    let backend = Recorder::start(|r| {
        let lang = r.header("accept-language").unwrap_or("-").to_string();
        let accept = r.header("accept").unwrap_or("-").to_string();
        Canned::Full(
            200,
            vec![("vary", "Accept".into())],
            format!("{lang}|{accept}"),
        )
    })
    .await;
    let gw = start(
        &backend,
        "",
        &cached_route("{ ttl: 30s, vary: [Accept-Language] }"),
    );
    let url = gw.url("/t/v");
    let ask = |lang: &'static str, accept: &'static str| {
        let url = url.clone();
        async move {
            get_with(&url, &[("accept-language", lang), ("accept", accept)])
                .await
                .text()
        }
    };
    assert_eq!(ask("en", "a/json").await, "en|a/json");
    assert_eq!(ask("de", "a/json").await, "de|a/json");
    assert_eq!(ask("en", "text/x").await, "en|text/x");
    assert_eq!(ask("en", "a/json").await, "en|a/json");
    assert_eq!(ask("de", "a/json").await, "de|a/json");
    assert_eq!(ask("en", "text/x").await, "en|text/x");
    assert_eq!(backend.hits(), 3);
}

#[tokio::test]
async fn client_headers_cannot_poison_an_entry() {
    let backend = Recorder::start(|r| {
        let seen = json!({
            "xfh": r.header("x-forwarded-host"),
            "original": r.header("x-original-url"),
            "rewrite": r.header("x-rewrite-url"),
            "override": r.header("x-http-method-override"),
            "path": r.path(),
        });
        Canned::Json(seen)
    })
    .await;
    let gw = start(&backend, "", &cached_route("{ ttl: 30s }"));
    let url = gw.url("/t/page");
    let attack = get_with(
        &url,
        &[
            ("x-forwarded-host", "evil.example"),
            ("x-original-url", "/admin"),
            ("x-rewrite-url", "/admin"),
            ("x-http-method-override", "DELETE"),
        ],
    )
    .await;
    let seen = attack.json();
    assert_ne!(seen["xfh"], "evil.example");
    assert_eq!(seen["original"], Value::Null);
    assert_eq!(seen["rewrite"], Value::Null);
    assert_eq!(seen["override"], Value::Null);
    // A request with another Host is another entry.
    let other_host = get_with(&url, &[("host", "evil.example")]).await;
    assert!(status(&other_host).contains("fwd=miss"));
    assert_eq!(other_host.json()["xfh"], "evil.example");
    let normal = get(&url).await;
    assert!(status(&normal).contains("hit"));
    assert!(!normal.text().contains("evil"), "{}", normal.text());
    assert_eq!(backend.hits(), 2);
}

#[tokio::test]
async fn requests_with_a_body_or_range_bypass() {
    let backend = counting(vec![]).await;
    let gw = start(&backend, "", &cached_route("{ ttl: 30s }"));
    get(&gw.url("/t/r")).await;
    let ranged = get_with(&gw.url("/t/r"), &[("range", "bytes=0-3")]).await;
    assert_eq!(status(&ranged), "portico; fwd=request; detail=range");
    let req = Request::get(gw.url("/t/r"))
        .body(Full::new(Bytes::from("fat")))
        .unwrap();
    let fat = send(&client(), req).await;
    assert_eq!(status(&fat), "portico; fwd=request; detail=body");
    let plain = get(&gw.url("/t/r")).await;
    assert!(status(&plain).contains("hit"));
    assert_eq!(plain.json()["n"], 1, "the fat GET's answer was not stored");
    assert_eq!(backend.hits(), 3);
}

// ---------------------------------------------------------------------------------------
// Coalescing and stale answers
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_hundred_concurrent_misses_make_one_backend_call() {
    let backend = Recorder::start(|_| {
        Canned::After(
            Duration::from_millis(300),
            Box::new(Canned::Json(json!({"once": true}))),
        )
    })
    .await;
    let gw = start(&backend, "", &cached_route("{ ttl: 30s }"));
    let url = gw.url("/t/hot");
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    let mut collapsed = 0;
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(got.json(), json!({"once": true}));
        collapsed += usize::from(status(&got).contains("collapsed"));
    }
    assert_eq!(backend.hits(), 1);
    assert!(collapsed >= 90, "{collapsed} collapsed");
}

#[tokio::test]
async fn stale_while_revalidate_answers_at_once_and_refreshes_once() {
    let n = Arc::new(AtomicUsize::new(0));
    let count = n.clone();
    let backend = Recorder::start(move |_| {
        let i = count.fetch_add(1, Ordering::SeqCst) + 1;
        let body = Canned::Json(json!({ "version": i }));
        if i == 1 {
            body
        } else {
            Canned::After(Duration::from_millis(400), Box::new(body))
        }
    })
    .await;
    let gw = start(
        &backend,
        "",
        &cached_route("{ ttl: 1s, stale_while_revalidate: 30s }"),
    );
    let url = gw.url("/t/swr");
    assert_eq!(get(&url).await.json()["version"], 1);
    sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!(got.json()["version"], 1, "stale, at once");
        assert!(
            status(&got).contains("hit; ttl=-") && status(&got).ends_with("stale-while-revalidate"),
            "{}",
            status(&got)
        );
    }
    assert!(
        started.elapsed() < Duration::from_millis(350),
        "{:?}",
        started.elapsed()
    );
    backend.wait_for_hits(2, Duration::from_secs(3)).await;
    sleep(Duration::from_millis(600)).await;
    assert_eq!(backend.hits(), 2, "one refresh");
    let fresh = get(&url).await;
    assert_eq!(fresh.json()["version"], 2);
    assert!(status(&fresh).starts_with("portico; hit; ttl=0"));
}

#[tokio::test]
async fn stale_if_error_serves_the_old_answer_within_its_window_only() {
    let failing = Arc::new(AtomicUsize::new(0));
    let mode = failing.clone();
    let backend = Recorder::start(move |_| match mode.load(Ordering::SeqCst) {
        0 => Canned::Json(json!({"good": true})),
        1 => Canned::Status(503),
        _ => Canned::Hang,
    })
    .await;
    let gw = start(
        &backend,
        "",
        &cached_route("{ ttl: 1s, stale_if_error: 3s }"),
    );
    let url = gw.url("/t/sie");
    assert_eq!(get(&url).await.json()["good"], true);
    failing.store(1, Ordering::SeqCst);
    sleep(Duration::from_millis(1100)).await;
    let stale = get(&url).await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.json()["good"], true);
    assert!(
        status(&stale).starts_with("portico; fwd=stale; fwd-status=503; ttl=-")
            && status(&stale).ends_with("detail=stale-if-error"),
        "{}",
        status(&stale)
    );
    assert!(stale.header("age").is_some());
    // A backend that times out is a failure too (backend timeout 1s).
    failing.store(2, Ordering::SeqCst);
    let timed_out = get(&url).await;
    assert_eq!(timed_out.status, 200);
    assert!(
        status(&timed_out).contains("fwd-status=504"),
        "{}",
        status(&timed_out)
    );
    // Past the window, the failure goes to the client.
    failing.store(1, Ordering::SeqCst);
    sleep(Duration::from_millis(2200)).await;
    let failed = get(&url).await;
    assert_eq!(failed.status, 503);
    assert!(!failed.text().contains("good"));
}

#[tokio::test]
async fn stale_if_error_stands_in_for_a_partial_aggregate() {
    let failing = Arc::new(AtomicUsize::new(0));
    let mode = failing.clone();
    let backend = Recorder::start(move |r| match (r.path(), mode.load(Ordering::SeqCst)) {
        ("/extra", 1) => Canned::Status(503),
        (path, _) => Canned::Json(json!({ "from": path })),
    })
    .await;
    let file = routes(
        "none",
        "  - id: page\n    path: /page\n    cache: { ttl: 1s, stale_if_error: 1m }\n    aggregate:\n      calls:\n        main: { backend: b, path: /main, required: true }\n        extra: { backend: b, path: /extra }\n",
    );
    let gw = start(&backend, "", &file);
    let whole = get(&gw.url("/t/page")).await;
    assert_eq!(whole.json()["extra"]["from"], "/extra");
    failing.store(1, Ordering::SeqCst);
    sleep(Duration::from_millis(1100)).await;
    let got = get(&gw.url("/t/page")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("portico-partial"), None);
    assert_eq!(got.json(), whole.json(), "the last whole answer");
    assert!(status(&got).contains("fwd=stale"), "{}", status(&got));
}

// ---------------------------------------------------------------------------------------
// Conditional requests
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn conditional_requests_get_304_from_the_cache() {
    let backend = counting(vec![
        ("etag", "\"v7\"".into()),
        ("last-modified", "Tue, 10 Nov 2026 10:00:00 GMT".into()),
        ("cache-control", "max-age=60".into()),
    ])
    .await;
    let gw = start(&backend, "", &cached_route("{ ttl: 30s }"));
    let url = gw.url("/t/doc");
    // Even the request that fills the entry is answered 304.
    let first = get_with(&url, &[("if-none-match", "\"v7\"")]).await;
    assert_eq!(first.status, 304);
    assert!(first.body.is_empty());
    assert_eq!(first.header("etag"), Some("\"v7\""));
    assert_eq!(backend.seen()[0].header("if-none-match"), None);
    for (name, value, expect) in [
        ("if-none-match", "W/\"v7\"", 304),
        ("if-none-match", "\"v6\", \"v7\"", 304),
        ("if-none-match", "*", 304),
        ("if-none-match", "\"v6\"", 200),
        ("if-modified-since", "Wed, 11 Nov 2026 10:00:00 GMT", 304),
        ("if-modified-since", "Mon, 09 Nov 2026 10:00:00 GMT", 200),
    ] {
        let got = get_with(&url, &[(name, value)]).await;
        assert_eq!(got.status, expect, "{name}: {value}");
        assert!(status(&got).contains("hit"));
    }
    assert_eq!(backend.hits(), 1);
}

// ---------------------------------------------------------------------------------------
// Size
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn max_size_bounds_the_bytes_kept() {
    let body = "x".repeat(10 * 1024);
    let backend = Recorder::start(move |_| Canned::Text("text/plain", body.clone())).await;
    let gw = start(
        &backend,
        "cache: { max_size: 64KiB, max_entry_size: 16KiB }\n",
        &cached_route("{ ttl: 60s }"),
    );
    for i in 0..30 {
        let got = get(&gw.url(&format!("/t/big/{i}"))).await;
        assert_eq!(got.body.len(), 10 * 1024);
    }
    sleep(Duration::from_millis(200)).await;
    let stats = get(&gw.admin_url("/cache")).await.json();
    assert!(stats["bytes"].as_u64().unwrap() <= 64 * 1024, "{stats}");
    let entries = stats["entries"].as_u64().unwrap();
    assert!((1..30).contains(&entries), "{stats}");
    assert_eq!(stats["stored"], 30);
}

#[tokio::test]
async fn bodies_over_the_entry_cap_stream_through_unstored() {
    let big = "y".repeat(100 * 1024);
    let backend = Recorder::start(move |_| Canned::Text("text/plain", big.clone())).await;
    let gw = start(
        &backend,
        "cache: { max_size: 1MiB, max_entry_size: 16KiB }\n",
        &cached_route("{ ttl: 60s }"),
    );
    for _ in 0..2 {
        let got = get(&gw.url("/t/large")).await;
        assert_eq!(got.body.len(), 100 * 1024);
        assert_eq!(
            status(&got),
            "portico; fwd=miss; fwd-status=200; detail=size"
        );
    }
    assert_eq!(backend.hits(), 2);
}

/// A raw backend answering every request with a chunked body of `len` bytes (no
/// Content-Length), counting requests.
async fn chunked_backend(len: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
                let chunk = vec![b'z'; 4096];
                let mut left = len;
                while left > 0 {
                    let n = left.min(chunk.len());
                    out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                    out.extend_from_slice(&chunk[..n]);
                    out.extend_from_slice(b"\r\n");
                    left -= n;
                }
                out.extend_from_slice(b"0\r\n\r\n");
                let _ = stream.write_all(&out).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, hits)
}

#[tokio::test]
async fn chunked_bodies_over_the_cap_stream_through_and_small_ones_are_stored() {
    let (url, hits) = chunked_backend(40 * 1024).await;
    let gw = Gateway::serve(ConfigDir::new(
        &gateway(&url, "cache: { max_size: 1MiB, max_entry_size: 16KiB }\n"),
        &[("t.yaml", &cached_route("{ ttl: 60s }"))],
    ));
    for _ in 0..2 {
        let got = get(&gw.url("/t/chunked")).await;
        assert_eq!(got.body.len(), 40 * 1024);
        assert!(got.body.iter().all(|b| *b == b'z'));
        assert_eq!(
            status(&got),
            "portico; fwd=miss; fwd-status=200; detail=size"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    let (url, hits) = chunked_backend(8 * 1024).await;
    let gw = Gateway::serve(ConfigDir::new(
        &gateway(&url, "cache: { max_size: 1MiB, max_entry_size: 16KiB }\n"),
        &[("t.yaml", &cached_route("{ ttl: 60s }"))],
    ));
    for _ in 0..2 {
        let got = get(&gw.url("/t/chunked")).await;
        assert_eq!(got.body.len(), 8 * 1024);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------
// Purge
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn purge_by_route_by_prefix_and_everything() {
    let backend = counting(vec![]).await;
    let file = routes(
        "none",
        "  - id: a\n    path: /a/{*rest}\n    proxy: { backend: b }\n    cache: { ttl: 60s }\n  - id: z\n    path: /z/{*rest}\n    proxy: { backend: b }\n    cache: { ttl: 60s }\n",
    );
    let gw = start(&backend, "", &file);
    let fill = || async {
        for p in ["/t/a/1", "/t/a/2", "/t/z/1", "/t/z/10"] {
            get(&gw.url(p)).await;
        }
    };
    let cached = |p: &'static str| {
        let url = gw.url(p);
        async move { status(&get(&url).await).contains("hit") }
    };
    fill().await;
    assert_eq!(backend.hits(), 4);

    let purged = admin_post(&gw, "/cache/purge", r#"{"route": "a"}"#).await;
    assert_eq!(purged.status, 200);
    assert_eq!(purged.json(), json!({"purged": 2}));
    assert!(!cached("/t/a/1").await);
    assert!(cached("/t/z/1").await);

    let purged = admin_post(&gw, "/cache/purge", r#"{"prefix": "/t/z/1"}"#).await;
    assert_eq!(
        purged.json(),
        json!({"purged": 1}),
        "/t/z/10 is not below /t/z/1"
    );
    assert!(!cached("/t/z/1").await);
    assert!(cached("/t/z/10").await);

    let purged = admin_post(&gw, "/cache/purge", "{}").await;
    assert!(purged.json()["purged"].as_u64().unwrap() >= 3);
    assert!(!cached("/t/z/10").await);

    for (body, status_code) in [
        (r#"{"route": "nope"}"#, 404),
        (r#"{"prefix": "t/a"}"#, 400),
        (r#"{"route": "a", "prefix": "/t"}"#, 400),
        (r#"{"routes": "a"}"#, 400),
        ("not json", 400),
    ] {
        let got = admin_post(&gw, "/cache/purge", body).await;
        assert_eq!(got.status, status_code, "{body}");
        assert_eq!(
            got.header("content-type"),
            Some("application/problem+json"),
            "{body}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn cache_blocks_are_validated_with_file_and_line() {
    let dir = ConfigDir::new(
        &gateway("http://127.0.0.1:9", "cache: { max_size: 1KiB }\n"),
        &[(
            "t.yaml",
            &cached_route("{ ttl: 5s, scope: private, statuses: [206] }"),
        )],
    );
    let (code, out) = validate_dir(&dir);
    assert_eq!(code, 1, "{out}");
    for expect in [
        "cache.max_size: must be at least 64KiB",
        "routes/t.yaml:8: routes[0].cache.scope: `private` keeps one entry per authenticated caller",
        "routes[0].cache.statuses[0]: 206 cannot be cached",
    ] {
        assert!(out.contains(expect), "missing {expect:?} in {out}");
    }
}

// ---------------------------------------------------------------------------------------
// Splits
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_splits_targets_keep_their_own_entries_and_new_clients_still_get_their_cookie() {
    let a = Recorder::start(|_| Canned::Text("text/plain", "from a".into())).await;
    let v2 = Recorder::start(|_| Canned::Text("text/plain", "from v2".into())).await;
    let gw_yaml = gateway_yaml(&a.url(), &format!("  v2:\n    url: {}\n", v2.url()), "");
    let file = routes(
        "none",
        "  - id: s\n    path: /s\n    cache: { ttl: 30s }\n    split:\n      targets: [{ backend: b, weight: 100 }, { backend: v2, weight: 0 }]\n      sticky: \"cookie:portico_split\"\n      override: \"header:X-Target\"\n",
    );
    let gw = Gateway::serve(ConfigDir::new(&gw_yaml, &[("t.yaml", &file)]));
    let url = gw.url("/s");
    let url = url.replace("/s", "/t/s");
    let first = get(&url).await;
    assert_eq!(first.text(), "from a");
    assert!(status(&first).contains("stored"), "{}", status(&first));
    assert!(first.header("set-cookie").is_some());
    let second = get(&url).await;
    assert!(status(&second).contains("hit"));
    assert!(
        second.header("set-cookie").is_some(),
        "a new client gets its sticky cookie from a hit too"
    );
    let forced = get_with(&url, &[("x-target", "v2")]).await;
    assert_eq!(forced.text(), "from v2", "never the other target's entry");
    let forced_again = get_with(&url, &[("x-target", "v2")]).await;
    assert_eq!(forced_again.text(), "from v2");
    assert!(status(&forced_again).contains("hit"));
    assert_eq!((a.hits(), v2.hits()), (1, 1));
}

// ---------------------------------------------------------------------------------------
// What the backend sees is what the key holds
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn headers_named_by_connection_are_cut_before_the_key_is_made() {
    let backend = Recorder::start(|r| {
        let lang = r.header("accept-language").unwrap_or("default").to_string();
        Canned::Full(200, vec![("vary", "Accept-Language".into())], lang)
    })
    .await;
    let gw = start(&backend, "", &cached_route("{ ttl: 30s }"));
    let url = gw.url("/t/hello");
    let attack = get_with(
        &url,
        &[("accept-language", "fr"), ("connection", "accept-language")],
    )
    .await;
    assert_eq!(
        attack.text(),
        "default",
        "the backend never saw the language"
    );
    let french = get_with(&url, &[("accept-language", "fr")]).await;
    assert_eq!(french.text(), "fr");
    let plain = get(&url).await;
    assert_eq!(plain.text(), "default");
    assert!(status(&plain).contains("hit"));
}

#[tokio::test]
async fn vary_on_an_identity_header_uses_the_identitys_value() {
    let backend = per_user(vec![
        ("cache-control", "public, max-age=30".into()),
        ("vary", "X-User-Id".into()),
    ])
    .await;
    let file = routes(
        "users",
        "  - id: shared\n    path: /shared\n    proxy: { backend: b }\n    cache: { ttl: 30s, scope: public }\n",
    );
    let gw = start(&backend, "", &file);
    let url = gw.url("/t/shared");
    for _ in 0..2 {
        for user in ["ann", "bob"] {
            let got = get_with(
                &url,
                &[("authorization", &bearer(user)), ("x-user-id", "mallory")],
            )
            .await;
            assert_eq!(got.json()["user"], user);
        }
    }
    assert_eq!(backend.hits(), 2, "one entry per user, each reused");
}

#[tokio::test]
async fn api_keys_are_credentials_even_in_the_query() {
    let backend = counting(vec![("cache-control", "max-age=30".into())]).await;
    let key = "cache-test-key-0123456789";
    let yaml = gateway_yaml(
        &backend.url(),
        "",
        &format!(
            "auth:\n  partners:\n    api_keys:\n      header: X-API-Key\n      query: api_key\n      keys: [{{ id: acme, sha256: {} }}]\n",
            sha256_hex(key)
        ),
    );
    let file = routes(
        "partners",
        "  - id: p\n    path: /p\n    proxy: { backend: b }\n    cache: { ttl: 30s, scope: public }\n",
    );
    let gw = Gateway::serve(ConfigDir::new(&yaml, &[("t.yaml", &file)]));
    for _ in 0..2 {
        let got = get(&gw.url(&format!("/t/p?api_key={key}"))).await;
        assert_eq!(got.status, 200);
        assert_eq!(
            status(&got),
            "portico; fwd=miss; fwd-status=200; detail=authorization"
        );
    }
    assert_eq!(backend.hits(), 2);
}

// ---------------------------------------------------------------------------------------
// Answers that cannot be stored, unsafe requests, request no-store
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_key_known_to_be_unstorable_does_not_make_requests_wait_for_each_other() {
    let backend = Recorder::start(|_| {
        Canned::After(
            Duration::from_millis(300),
            Box::new(Canned::Full(
                200,
                vec![
                    ("cache-control", "no-store".into()),
                    ("etag", "\"e1\"".into()),
                ],
                "fresh every time".into(),
            )),
        )
    })
    .await;
    let gw = start(&backend, "", &cached_route("{ ttl: 30s }"));
    let url = gw.url("/t/live");
    get(&url).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_millis(550),
        "in parallel, not one after another: {:?}",
        started.elapsed()
    );
    assert_eq!(backend.hits(), 11);
    // Conditions go to the backend untouched, or are answered on its answer.
    let got = get_with(&url, &[("if-none-match", "\"e1\"")]).await;
    assert_eq!(got.status, 304);
    assert_eq!(backend.seen()[11].header("if-none-match"), Some("\"e1\""));
}

#[tokio::test]
async fn a_successful_unsafe_request_makes_the_paths_entries_unusable() {
    let backend = counting(vec![]).await;
    let file = routes(
        "none",
        "  - id: read\n    path: /doc/{id}\n    methods: [GET]\n    proxy: { backend: b }\n    cache: { ttl: 60s }\n  - id: write\n    path: /doc/{id}\n    methods: [PUT]\n    proxy: { backend: b }\n",
    );
    let gw = start(&backend, "", &file);
    let url = gw.url("/t/doc/1");
    get(&url).await;
    get(&gw.url("/t/doc/2")).await;
    assert!(status(&get(&url).await).contains("hit"));
    let req = Request::put(&url)
        .body(Full::new(Bytes::from("{}")))
        .unwrap();
    assert_eq!(send(&client(), req).await.status, 200);
    let after = get(&url).await;
    assert!(status(&after).contains("fwd=miss"), "{}", status(&after));
    assert!(status(&get(&gw.url("/t/doc/2")).await).contains("hit"));
    assert!(status(&get(&url).await).contains("hit"), "stored again");
}

#[tokio::test]
async fn a_request_with_no_store_is_answered_but_not_stored() {
    let backend = counting(vec![]).await;
    let gw = start(&backend, "", &cached_route("{ ttl: 30s }"));
    let url = gw.url("/t/ns");
    let got = get_with(&url, &[("cache-control", "no-store")]).await;
    assert_eq!(
        status(&got),
        "portico; fwd=miss; fwd-status=200; detail=request-no-store"
    );
    assert!(status(&get(&url).await).contains("stored"));
    assert!(status(&get(&url).await).contains("hit"));
}

#[tokio::test]
async fn requests_waiting_on_a_hanging_backend_get_the_stale_answer() {
    let hang = Arc::new(AtomicUsize::new(0));
    let mode = hang.clone();
    let backend = Recorder::start(move |_| match mode.load(Ordering::SeqCst) {
        0 => Canned::Json(json!({"good": true})),
        _ => Canned::Hang,
    })
    .await;
    let file = routes(
        "none",
        "  - id: c\n    path: /{*rest}\n    timeout: 600ms\n    proxy: { backend: b }\n    cache: { ttl: 1s, stale_if_error: 1m }\n",
    );
    let gw = start(&backend, "", &file);
    let url = gw.url("/t/h");
    get(&url).await;
    hang.store(1, Ordering::SeqCst);
    sleep(Duration::from_millis(1100)).await;
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(got.json()["good"], true);
        assert!(status(&got).contains("stale-if-error"), "{}", status(&got));
    }
    assert_eq!(backend.hits(), 2, "one call, the others waited for it");
}

// ---------------------------------------------------------------------------------------
// Reload
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_reload_drops_the_entries_of_changed_routes_only() {
    let backend = counting(vec![]).await;
    let file = |ttl_a: &str| {
        routes(
            "none",
            &format!(
                "  - id: a\n    path: /a\n    proxy: {{ backend: b }}\n    cache: {{ ttl: {ttl_a} }}\n  - id: z\n    path: /z\n    proxy: {{ backend: b }}\n    cache: {{ ttl: 60s }}\n"
            ),
        )
    };
    let dir = ConfigDir::new(&gateway(&backend.url(), ""), &[("t.yaml", &file("60s"))]);
    let route_file = dir.path().join("routes/t.yaml");
    let gw = Gateway::serve(dir);
    for p in ["/t/a", "/t/z"] {
        get(&gw.url(p)).await;
    }
    // Unchanged config: everything stays.
    let same = admin_post(&gw, "/reload", "").await;
    assert_eq!(same.status, 200, "{}", same.text());
    assert_eq!(same.json()["status"], "reloaded");
    assert!(status(&get(&gw.url("/t/a")).await).contains("hit"));
    // A broken file is refused with its errors; the running config (and cache) stays.
    std::fs::write(&route_file, file("0s")).unwrap();
    let refused = admin_post(&gw, "/reload", "").await;
    assert_eq!(refused.status, 422);
    assert!(
        refused
            .text()
            .contains("routes[0].cache.ttl: must be more than 0"),
        "{}",
        refused.text()
    );
    assert!(status(&get(&gw.url("/t/a")).await).contains("hit"));
    // Route a's cache settings change: its entries go, z's stay.
    std::fs::write(&route_file, file("30s")).unwrap();
    assert_eq!(admin_post(&gw, "/reload", "").await.status, 200);
    let a = get(&gw.url("/t/a")).await;
    assert!(
        status(&a).contains("fwd=miss; fwd-status=200; stored; ttl=30"),
        "{}",
        status(&a)
    );
    assert!(status(&get(&gw.url("/t/z")).await).contains("hit"));
    assert_eq!(backend.hits(), 3);
}
