//! Black-box: rate limits per route (GCRA), their headers, and their keys.

mod support;

use http::Request;
use http_body_util::Full;
use support::*;

fn gateway(backend: &Backend, routes: &str) -> Gateway {
    let gw = gateway_yaml(&backend.url(), "", "");
    Gateway::serve(ConfigDir::new(
        &gw,
        &[(
            "api.yaml",
            &format!("team: api\nprefix: /api\nauth: none\n{routes}"),
        )],
    ))
}

#[tokio::test]
async fn over_the_limit_is_429_with_retry_after_and_headers() {
    let b = Backend::start().await;
    let gw = gateway(
        &b,
        "rate_limit: [{ key: ip, rate: 5/min, burst: 5 }]\nroutes:\n  - id: limited\n    path: /{*rest}\n    proxy: { backend: b }\n",
    );
    let client = client();
    for i in 0..5 {
        let got = send(
            &client,
            Request::get(gw.url("/api/echo"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
        assert_eq!(got.status, 200, "request {i}");
        assert_eq!(got.header("ratelimit-policy"), Some("\"l0\";q=5;w=60"));
        assert_eq!(
            got.header("ratelimit"),
            Some(format!("\"l0\";r={};t=0", 4 - i).as_str())
        );
    }
    let got = send(
        &client,
        Request::get(gw.url("/api/echo"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_problem(&got, 429, "RATE_LIMITED");
    let retry: u64 = got.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=12).contains(&retry),
        "one request every 12 s: retry after {retry}"
    );
    assert_eq!(got.header("ratelimit-policy"), Some("\"l0\";q=5;w=60"));
    assert!(
        got.header("ratelimit")
            .unwrap()
            .starts_with("\"l0\";r=0;t=")
    );
    assert_eq!(b.hits(), 5, "the refused request never reached the backend");
}

#[tokio::test]
async fn spoofed_forwarded_for_does_not_make_new_buckets() {
    let b = Backend::start().await;
    let gw = gateway(
        &b,
        "routes:\n  - id: limited\n    path: /{*rest}\n    rate_limit: [{ key: ip, rate: 3/min }]\n    proxy: { backend: b }\n",
    );
    let client = client();
    let mut codes = Vec::new();
    for i in 0..6 {
        let got = send(
            &client,
            Request::get(gw.url("/api/echo"))
                .header("x-forwarded-for", format!("203.0.113.{i}"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
        codes.push(got.status.as_u16());
    }
    assert_eq!(codes, [200, 200, 200, 429, 429, 429]);
}

#[tokio::test]
async fn header_keys_have_their_own_buckets_and_all_limits_apply() {
    let b = Backend::start().await;
    let gw = gateway(
        &b,
        "routes:\n  - id: limited\n    path: /{*rest}\n    rate_limit: [{ key: \"header:X-Tenant\", rate: 2/min }, { key: route, rate: 5/min }]\n    proxy: { backend: b }\n",
    );
    let client = client();
    let status = |tenant: &'static str| {
        let client = client.clone();
        let url = gw.url("/api/echo");
        async move {
            send(
                &client,
                Request::get(url)
                    .header("x-tenant", tenant)
                    .body(Full::default())
                    .unwrap(),
            )
            .await
            .status
            .as_u16()
        }
    };
    assert_eq!(
        [status("a").await, status("a").await, status("a").await],
        [200, 200, 429]
    );
    assert_eq!([status("b").await, status("b").await], [200, 200]);
    // Every request counts against every limit (as Envoy's descriptors do): the five
    // above used up the route-wide limit of 5, so a new tenant is refused too.
    assert_eq!(status("c").await, 429, "the route-wide limit applies too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_burst_gets_exactly_the_burst() {
    let b = Backend::start().await;
    let gw = gateway(
        &b,
        "routes:\n  - id: limited\n    path: /{*rest}\n    rate_limit: [{ key: route, rate: 1/hour, burst: 10 }]\n    proxy: { backend: b }\n",
    );
    let client = client();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let client = client.clone();
        let url = gw.url("/api/echo");
        tasks.push(tokio::spawn(async move {
            send(&client, Request::get(url).body(Full::default()).unwrap())
                .await
                .status
                .as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 10);
    assert_eq!(b.hits(), 10);
}

#[test]
fn keys_that_need_an_identity_need_an_authenticated_route() {
    let dir = ConfigDir::new(
        "backends:\n  b:\n    url: http://127.0.0.1:1\n",
        &[(
            "api.yaml",
            "team: api\nprefix: /api\nauth: none\nrate_limit: [{ key: subject, rate: 5/s }, { key: \"claim:tenant\", rate: 5/s }, { key: bogus, rate: 5/s }]\nroutes:\n  - id: open\n    path: /open\n    static: {}\n",
        )],
    );
    let out = std::process::Command::new(bin())
        .args(["validate", "--config", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("routes[0]: the file's rate_limit key `subject` needs an authenticated route"),
        "{err}"
    );
    assert!(
        err.contains(
            "routes[0]: the file's rate_limit key `claim:tenant` needs an authenticated route"
        ),
        "{err}"
    );
    assert!(
        err.contains("rate_limit[2].key: `bogus`: expected ip, subject"),
        "{err}"
    );
}
