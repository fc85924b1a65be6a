//! Black-box: the `partner` module's idempotency (contract §3.8): POST and PATCH with an
//! `Idempotency-Key` reach the backend once per key and request; repeats are replayed,
//! another request under the key is 422, a repeat while the first runs is 409.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;

const ACME: &str = "acme-test-key-0123456789abcdef";
const GLOBEX: &str = "globex-test-key-fedcba9876543210";

/// A partner file with idempotency, API keys acme and globex, everything to `b`.
fn gateway(b: &Backend, partner_extra: &str) -> Gateway {
    let gw = gateway_yaml(
        &b.url(),
        "",
        &format!(
            "auth:\n  partners:\n    api_keys:\n      keys:\n        - {{ id: acme, sha256: {} }}\n        - {{ id: globex, sha256: {} }}\n",
            sha256_hex(ACME),
            sha256_hex(GLOBEX)
        ),
    );
    let routes = format!(
        "team: partner\nprefix: /partner\nauth: partners\nbff: partner\npartner:\n  idempotency: {{ ttl: 1h{partner_extra} }}\nroutes:\n  - id: all\n    path: /{{*rest}}\n    proxy: {{ backend: b }}\n"
    );
    Gateway::serve(ConfigDir::new(&gw, &[("partner.yaml", &routes)]))
}

async fn post(gw: &Gateway, path: &str, api_key: &str, key: Option<&str>, body: &str) -> Got {
    let mut req = Request::post(gw.url(path))
        .header("x-api-key", api_key)
        .header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    send(
        &client(),
        req.body(Full::new(Bytes::from(body.to_string()))).unwrap(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_is_replayed_and_never_reaches_the_backend_twice() {
    let b = Backend::start().await;
    let gw = gateway(&b, "");
    let first = post(
        &gw,
        "/partner/echo",
        ACME,
        Some("pay-1"),
        r#"{"amount":12}"#,
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("idempotent-replayed"), None);
    assert_eq!(
        first.json()["body"],
        r#"{"amount":12}"#,
        "the body reached the backend"
    );
    for _ in 0..3 {
        let again = post(
            &gw,
            "/partner/echo",
            ACME,
            Some("pay-1"),
            r#"{"amount":12}"#,
        )
        .await;
        assert_eq!(again.status, 200);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.body, first.body, "the stored answer, byte for byte");
    }
    assert_eq!(b.hits(), 1);
    // Without a key, or with GET, nothing is kept.
    post(&gw, "/partner/echo", ACME, None, r#"{"amount":12}"#).await;
    post(&gw, "/partner/echo", ACME, None, r#"{"amount":12}"#).await;
    assert_eq!(b.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_with_another_request_is_422() {
    let b = Backend::start().await;
    let gw = gateway(&b, "");
    post(
        &gw,
        "/partner/echo",
        ACME,
        Some("pay-2"),
        r#"{"amount":12}"#,
    )
    .await;
    let other_body = post(
        &gw,
        "/partner/echo",
        ACME,
        Some("pay-2"),
        r#"{"amount":13}"#,
    )
    .await;
    assert_problem(&other_body, 422, "IDEMPOTENCY_KEY_REUSED");
    let other_path = post(
        &gw,
        "/partner/echo/x",
        ACME,
        Some("pay-2"),
        r#"{"amount":12}"#,
    )
    .await;
    assert_problem(&other_path, 422, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(b.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_while_the_first_runs_is_409() {
    let b = Backend::start().await;
    let gw = gateway(&b, "");
    let url = gw.url("/partner/delay/400");
    let mut tasks = Vec::new();
    for i in 0..5 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            // The first goes out alone; the others arrive while it runs.
            tokio::time::sleep(Duration::from_millis(if i == 0 { 0 } else { 100 })).await;
            let req = Request::post(url)
                .header("x-api-key", ACME)
                .header("idempotency-key", "pay-3")
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap();
            send(&client(), req).await
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let got = t.await.unwrap();
        if got.status == 409 {
            assert_problem(&got, 409, "IDEMPOTENCY_KEY_IN_USE");
        }
        statuses.push(got.status.as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 409, 409, 409, 409]);
    assert_eq!(b.hits(), 1);
    // Once it answered, the key replays.
    let again = post(&gw, "/partner/delay/400", ACME, Some("pay-3"), "{}").await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(b.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_belong_to_their_partner_and_server_errors_are_not_kept() {
    let b = Backend::start().await;
    let gw = gateway(&b, "");
    post(&gw, "/partner/echo", ACME, Some("shared"), "{}").await;
    let globex = post(&gw, "/partner/echo", GLOBEX, Some("shared"), "{}").await;
    assert_eq!(globex.status, 200);
    assert_eq!(
        globex.header("idempotent-replayed"),
        None,
        "another partner's key"
    );
    assert_eq!(b.hits(), 2);

    // A 503 keeps nothing: the client may try again.
    let failed = post(&gw, "/partner/status/503", ACME, Some("pay-4"), "{}").await;
    assert_eq!(failed.status, 503);
    let retried = post(&gw, "/partner/status/503", ACME, Some("pay-4"), "{}").await;
    assert_eq!(retried.header("idempotent-replayed"), None);
    assert_eq!(b.hits(), 4);
    // A 4xx is a final answer and is kept.
    post(&gw, "/partner/status/404", ACME, Some("pay-5"), "{}").await;
    let again = post(&gw, "/partner/status/404", ACME, Some("pay-5"), "{}").await;
    assert_eq!(again.status, 404);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(b.hits(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_keyed_bodies_and_bad_keys_are_refused() {
    let b = Backend::start().await;
    let gw = gateway(&b, ", max_body: 1KiB");
    let big = "x".repeat(2000);
    let got = post(&gw, "/partner/echo", ACME, Some("pay-6"), &big).await;
    assert_problem(&got, 413, "PAYLOAD_TOO_LARGE");
    let long_key = "k".repeat(300);
    let got = post(&gw, "/partner/echo", ACME, Some(&long_key), "{}").await;
    assert_problem(&got, 400, "BAD_REQUEST");
    assert_eq!(b.hits(), 0);
}

#[test]
fn idempotency_settings_are_checked() {
    let gw = "backends:\n  b:\n    url: http://127.0.0.1:1\n";
    let routes = "team: p\nprefix: /p\nauth: none\nbff: partner\npartner:\n  idempotency: { ttl: 0s, max_keys: 0, colour: red }\nroutes:\n  - id: a\n    path: /a\n    static: {}\n";
    let (code, out) = validate_dir(&ConfigDir::new(gw, &[("p.yaml", routes)]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("partner.idempotency.colour: unknown field"),
        "{out}"
    );
    let routes = routes.replace(", colour: red", "");
    let (code, out) = validate_dir(&ConfigDir::new(gw, &[("p.yaml", &routes)]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("partner.idempotency.ttl: must be more than 0")
            && out.contains("partner.idempotency.max_keys: must be at least 1"),
        "{out}"
    );
}

/// A `partner` file without `auth` authenticates with the gateway's API-key provider; a
/// gateway without one is a config error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_files_use_api_keys_by_default() {
    let b = Backend::start().await;
    let gw_yaml = gateway_yaml(
        &b.url(),
        "",
        &format!(
            "auth:\n  partners:\n    api_keys:\n      keys:\n        - {{ id: acme, sha256: {} }}\n",
            sha256_hex(ACME)
        ),
    );
    let routes = "team: partner\nprefix: /partner\nbff: partner\nroutes:\n  - id: all\n    path: /{*rest}\n    proxy: { backend: b }\n";
    let gw = Gateway::serve(ConfigDir::new(&gw_yaml, &[("partner.yaml", routes)]));
    let anonymous = get(&gw.url("/partner/echo")).await;
    assert_problem(&anonymous, 401, "UNAUTHENTICATED");
    let keyed = send(
        &client(),
        Request::get(gw.url("/partner/echo"))
            .header("x-api-key", ACME)
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(keyed.status, 200);
    assert_eq!(b.hits(), 1);

    let no_keys = "backends:\n  b:\n    url: http://127.0.0.1:1\n";
    let (code, out) = validate_dir(&ConfigDir::new(no_keys, &[("partner.yaml", routes)]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("routes/partner.yaml:3: bff: `bff: partner` authenticates with API keys"),
        "{out}"
    );
}

/// An answer too large to keep still reaches the client whole; the key stays used, so a
/// repeat never runs the request again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_too_large_to_keep_streams_and_the_key_stays_used() {
    let b = Backend::start().await;
    let gw = gateway(&b, ", max_body: 1KiB");
    let got = post(&gw, "/partner/bytes/5000", ACME, Some("big-1"), "{}").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), 5000, "streamed whole");
    let again = post(&gw, "/partner/bytes/5000", ACME, Some("big-1"), "{}").await;
    assert_problem(&again, 409, "IDEMPOTENCY_KEY_IN_USE");
    assert_eq!(b.hits(), 1, "never run twice");
}
