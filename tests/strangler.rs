//! Black-box: the Strangler Fig facade — split, stickiness, override, shadow, compare.

mod support;

use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Full;
use support::*;

fn gateway_with(old: &Backend, new: &Backend, shadow: &Backend, route: &str) -> Gateway {
    let gw = format!(
        "server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nbackends:\n  monolith:\n    url: {}\n    timeout: 2s\n  checkout-v2:\n    url: {}\n    timeout: 2s\n  shadow:\n    url: {}\n    timeout: 5s\n",
        old.url(),
        new.url(),
        shadow.url()
    );
    let legacy = format!("team: legacy\nprefix: /\nauth: none\nroutes:\n{route}");
    Gateway::serve(ConfigDir::new(&gw, &[("legacy.yaml", &legacy)]))
}

async fn three() -> (Backend, Backend, Backend) {
    (
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    )
}

#[tokio::test]
async fn split_shares_follow_the_weights() {
    let (old, new, sh) = three().await;
    let gw = gateway_with(
        &old,
        &new,
        &sh,
        "  - id: checkout\n    path: /{*rest}\n    split:\n      targets: [{ backend: checkout-v2, weight: 10 }, { backend: monolith, weight: 90 }]\n",
    );
    let client = client();
    for i in 0..2000 {
        let got = send(
            &client,
            Request::get(gw.url(&format!("/echo/{i}")))
                .body(Full::default())
                .unwrap(),
        )
        .await;
        assert_eq!(got.status, 200);
    }
    let (n, o) = (new.hits(), old.hits());
    assert_eq!(n + o, 2000);
    // 10% of 2000 = 200, sigma about 13.4: allow more than 3 sigma.
    assert!((150..=250).contains(&n), "checkout-v2 got {n} of 2000");
}

#[tokio::test]
async fn sticky_cookie_is_set_once_and_keeps_the_client_on_one_target() {
    let (old, new, sh) = three().await;
    let gw = gateway_with(
        &old,
        &new,
        &sh,
        "  - id: checkout\n    path: /{*rest}\n    split:\n      targets: [{ backend: checkout-v2, weight: 50 }, { backend: monolith, weight: 50 }]\n      sticky: \"cookie:portico_split\"\n",
    );
    let client = client();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10 {
        let first = send(
            &client,
            Request::get(gw.url("/echo")).body(Full::default()).unwrap(),
        )
        .await;
        let set = first
            .header("set-cookie")
            .expect("a new client gets the cookie")
            .to_string();
        assert!(
            set.starts_with("portico_split=")
                && set.contains("HttpOnly")
                && set.contains("SameSite=Lax")
                && set.contains("Path=/"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_string();
        let before = (old.hits(), new.hits());
        for _ in 0..200 {
            let got = send(
                &client,
                Request::get(gw.url("/echo"))
                    .header("cookie", format!("theme=dark; {cookie}"))
                    .body(Full::default())
                    .unwrap(),
            )
            .await;
            assert!(
                got.header("set-cookie").is_none(),
                "the cookie is not set again"
            );
        }
        let (d_old, d_new) = (old.hits() - before.0, new.hits() - before.1);
        assert!(
            d_old == 200 || d_new == 200,
            "one client, one target: {d_old} / {d_new}"
        );
        seen.insert(d_new == 200);
    }
    assert_eq!(seen.len(), 2, "different clients land on both targets");
}

#[tokio::test]
async fn sticky_header_ip_and_override() {
    let (old, new, sh) = three().await;
    let gw = gateway_with(
        &old,
        &new,
        &sh,
        "  - id: checkout\n    path: /{*rest}\n    split:\n      targets: [{ backend: checkout-v2, weight: 50 }, { backend: monolith, weight: 50 }]\n      sticky: \"header:X-User\"\n      override: \"header:X-Portico-Target\"\n",
    );
    let client = client();
    for user in 0..20 {
        let before = (old.hits(), new.hits());
        for _ in 0..10 {
            send(
                &client,
                Request::get(gw.url("/echo"))
                    .header("x-user", format!("u{user}"))
                    .body(Full::default())
                    .unwrap(),
            )
            .await;
        }
        let (d_old, d_new) = (old.hits() - before.0, new.hits() - before.1);
        assert!(d_old == 10 || d_new == 10, "user {user}: {d_old} / {d_new}");
    }
    let before = new.hits();
    for user in 0..30 {
        let got = send(
            &client,
            Request::get(gw.url("/echo"))
                .header("x-user", format!("u{user}"))
                .header("x-portico-target", "checkout-v2")
                .body(Full::default())
                .unwrap(),
        )
        .await;
        assert_eq!(got.status, 200);
    }
    assert_eq!(
        new.hits() - before,
        30,
        "the override forces the named target"
    );
    // Naming a backend that is not a target of this route changes nothing.
    let before = (old.hits() + new.hits(), sh.hits());
    send(
        &client,
        Request::get(gw.url("/echo"))
            .header("x-user", "u1")
            .header("x-portico-target", "shadow")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (old.hits() + new.hits(), sh.hits()),
        (before.0 + 1, before.1)
    );
}

/// Two gateways with the old and the new weights see the same users: only users that
/// must move to the grown target move, and none leave it.
#[tokio::test]
async fn raising_a_weight_moves_only_the_clients_that_must_move() {
    let (old, new, sh) = three().await;
    let route = |w_new: u32| {
        format!(
            "  - id: checkout\n    path: /{{*rest}}\n    split:\n      targets: [{{ backend: checkout-v2, weight: {w_new} }}, {{ backend: monolith, weight: {} }}]\n      sticky: \"header:X-User\"\n",
            100 - w_new
        )
    };
    let before_gw = gateway_with(&old, &new, &sh, &route(10));
    let after_gw = gateway_with(&old, &new, &sh, &route(30));
    let client = client();
    let mut moved = 0;
    for user in 0..300 {
        let on_new = |gw: &Gateway| {
            let url = gw.url("/echo");
            let client = client.clone();
            let new_hits = new.hits.clone();
            async move {
                let before = new_hits.load(std::sync::atomic::Ordering::SeqCst);
                send(
                    &client,
                    Request::get(url)
                        .header("x-user", format!("user-{user}"))
                        .body(Full::default())
                        .unwrap(),
                )
                .await;
                new_hits.load(std::sync::atomic::Ordering::SeqCst) > before
            }
        };
        let (b, a) = (on_new(&before_gw).await, on_new(&after_gw).await);
        assert!(!b || a, "user-{user} left the target whose weight grew");
        moved += usize::from(!b && a);
    }
    // About 20% of users must move; allow a wide margin on 300 users.
    assert!((25..=95).contains(&moved), "{moved} of 300 moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_gets_a_copy_and_never_affects_the_client() {
    let (old, new, _) = three().await;
    // The shadow hangs for 3 s on every request.
    let hang = Backend::start().await;
    let gw_yaml = format!(
        "server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nbackends:\n  monolith:\n    url: {}\n  checkout-v2:\n    url: {}\n  hang:\n    url: {}/delay/3000\n    timeout: 10s\n  dead:\n    url: http://127.0.0.1:1\n",
        old.url(),
        new.url(),
        hang.url()
    );
    let legacy = "team: legacy\nprefix: /\nauth: none\nroutes:\n  - id: slow-shadow\n    path: /a/{*rest}\n    proxy: { backend: monolith }\n    shadow: { backend: hang, max_in_flight: 4 }\n  - id: dead-shadow\n    path: /b/{*rest}\n    proxy: { backend: monolith }\n    shadow: { backend: dead }\n  - id: copy\n    path: /{*rest}\n    proxy: { backend: monolith }\n    shadow: { backend: checkout-v2 }\n";
    let gw = Gateway::serve(ConfigDir::new(&gw_yaml, &[("legacy.yaml", legacy)]));
    let client = client();

    let got = get(&gw.url("/echo/copied")).await;
    assert_eq!(got.status, 200);
    wait_for(|| new.hits() == 1).await;

    let mut worst = Duration::ZERO;
    for path in ["/a/echo", "/b/echo"] {
        for _ in 0..20 {
            let started = Instant::now();
            let got = send(
                &client,
                Request::get(gw.url(path)).body(Full::default()).unwrap(),
            )
            .await;
            worst = worst.max(started.elapsed());
            assert_eq!(
                got.status, 200,
                "the primary's answer, whatever the shadow does"
            );
            assert_eq!(got.json()["uri"], path);
        }
    }
    assert!(
        worst < Duration::from_millis(500),
        "a hung or dead shadow slowed the client: {worst:?}"
    );
    // The hung shadow holds at most `max_in_flight` requests; the rest were skipped.
    let stats = get(&gw.admin_url("/routes/slow-shadow/shadow"))
        .await
        .json();
    assert!(stats["skipped"].as_u64().unwrap() >= 16, "{stats}");
    wait_for_async(|| async {
        get(&gw.admin_url("/routes/dead-shadow/shadow"))
            .await
            .json()["error"]
            == 20
    })
    .await;
}

#[tokio::test]
async fn unsafe_methods_are_shadowed_only_when_named() {
    let (old, new, sh) = three().await;
    let gw = gateway_with(
        &old,
        &new,
        &sh,
        "  - id: default-methods\n    path: /d/{*rest}\n    proxy: { backend: monolith, path: \"/echo\" }\n    shadow: { backend: shadow }\n  - id: named\n    path: /{*rest}\n    proxy: { backend: monolith, path: \"/echo\" }\n    shadow:\n      backend: shadow\n      methods: [POST]\n      compare: { ignore: [/headers/host] }\n",
    );
    let client = client();
    let got = send(
        &client,
        Request::post(gw.url("/d/x"))
            .body(Full::new(bytes::Bytes::from_static(b"not shadowed")))
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, 200);
    let got = send(
        &client,
        Request::post(gw.url("/x"))
            .header("content-type", "text/plain")
            .body(Full::new(bytes::Bytes::from_static(b"the same body")))
            .unwrap(),
    )
    .await;
    assert_eq!(got.json()["body"], "the same body");
    // The shadow echoed the same method, path, headers and body: a match.
    wait_for_async(|| async {
        get(&gw.admin_url("/routes/named/shadow")).await.json()["match"] == 1
    })
    .await;
    assert_eq!(sh.hits(), 1, "the default route did not shadow a POST");
}

#[tokio::test]
async fn compare_counts_matches_and_mismatches_with_diffs() {
    let (old, new, sh) = three().await;
    let gw = gateway_with(
        &old,
        &new,
        &sh,
        "  - id: strict\n    path: /s/{*rest}\n    proxy: { backend: monolith, path: \"/echo\" }\n    shadow: { backend: shadow, compare: true }\n  - id: lenient\n    path: /{*rest}\n    proxy: { backend: monolith, path: \"/echo\" }\n    shadow: { backend: shadow, compare: { ignore: [/headers/host] } }\n",
    );
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/s/x")).await.status, 200);
        assert_eq!(get(&gw.url("/x")).await.status, 200);
    }
    wait_for_async(|| async {
        get(&gw.admin_url("/routes/strict/shadow")).await.json()["mismatch"] == 3
    })
    .await;
    wait_for_async(|| async {
        get(&gw.admin_url("/routes/lenient/shadow")).await.json()["match"] == 3
    })
    .await;
    let strict = get(&gw.admin_url("/routes/strict/shadow")).await.json();
    assert_eq!(strict["match"], 0);
    assert_eq!(strict["error"], 0);
    let recent = &strict["recent"][0];
    assert_eq!(recent["method"], "GET");
    assert_eq!(recent["path"], "/echo");
    assert_eq!(recent["primary_status"], 200);
    assert_eq!(recent["shadow_status"], 200);
    let diff = recent["diff"].as_str().unwrap();
    assert!(diff.starts_with("/headers/host: "), "{diff}");
    // The route table shows the migration state.
    let routes = get(&gw.admin_url("/routes")).await.json();
    let lenient = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "lenient")
        .unwrap()
        .clone();
    assert_eq!(lenient["shadow"]["backend"], "shadow");
    assert_eq!(lenient["shadow"]["match_rate"], 1.0);
    assert_problem(
        &get(&gw.admin_url("/routes/nope/shadow")).await,
        404,
        "ROUTE_NOT_FOUND",
    );
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "condition not met in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_for_async<F: std::future::Future<Output = bool>>(mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f().await {
        assert!(Instant::now() < deadline, "condition not met in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn catch_all_takes_the_root_and_keeps_path_and_query() {
    let (old, new, sh) = three().await;
    let gw = gateway_with(
        &old,
        &new,
        &sh,
        "  - id: moved\n    path: /echo/moved\n    proxy: { backend: checkout-v2 }\n  - id: monolith\n    path: /{*rest}\n    proxy: { backend: monolith }\n",
    );
    for (path, uri) in [
        ("/", "/"),
        ("/?q=1&q=2", "/?q=1&q=2"),
        ("/echo/a%20b/c?x=%2F", "/echo/a%20b/c?x=%2F"),
    ] {
        let got = get(&gw.url(path)).await;
        assert_eq!(got.status, 200, "{path}");
        if path.starts_with("/echo") {
            assert_eq!(got.json()["uri"], uri);
        }
    }
    assert_eq!(old.hits(), 3);
    // The more specific route wins.
    assert_eq!(
        get(&gw.url("/echo/moved")).await.json()["uri"],
        "/echo/moved"
    );
    assert_eq!(new.hits(), 1);
}

#[tokio::test]
async fn sticky_ip_keeps_one_address_on_one_target() {
    let (old, new, sh) = three().await;
    let gw = gateway_with(
        &old,
        &new,
        &sh,
        "  - id: checkout\n    path: /{*rest}\n    split:\n      targets: [{ backend: checkout-v2, weight: 50 }, { backend: monolith, weight: 50 }]\n      sticky: ip\n",
    );
    let client = client();
    for _ in 0..100 {
        send(
            &client,
            Request::get(gw.url("/echo")).body(Full::default()).unwrap(),
        )
        .await;
    }
    assert!(
        old.hits() == 100 || new.hits() == 100,
        "{} / {}",
        old.hits(),
        new.hits()
    );
}

#[tokio::test]
async fn shadow_percent_copies_that_share() {
    let (old, new, sh) = three().await;
    let gw = gateway_with(
        &old,
        &new,
        &sh,
        "  - id: half\n    path: /{*rest}\n    proxy: { backend: monolith }\n    shadow: { backend: shadow, percent: 25% }\n",
    );
    let client = client();
    for _ in 0..800 {
        send(
            &client,
            Request::get(gw.url("/echo")).body(Full::default()).unwrap(),
        )
        .await;
    }
    wait_for_async(|| async {
        get(&gw.admin_url("/routes/half/shadow")).await.json()["sent"].as_u64()
            == Some(sh.hits() as u64)
    })
    .await;
    // 25% of 800 = 200, sigma about 12.
    assert!((150..=250).contains(&sh.hits()), "{} copies", sh.hits());
}

#[tokio::test]
async fn empty_answers_are_compared_too() {
    let (old, new, sh) = three().await;
    let gw = gateway_with(
        &old,
        &new,
        &sh,
        "  - id: empty\n    path: /{*rest}\n    proxy: { backend: monolith }\n    shadow: { backend: shadow, compare: true }\n",
    );
    assert_eq!(get(&gw.url("/status/204")).await.status, 204);
    wait_for_async(|| async {
        get(&gw.admin_url("/routes/empty/shadow")).await.json()["match"] == 1
    })
    .await;
}
