//! Black-box: hot reload (contract § 3.6 `POST /reload`, issue #9) of the real binary —
//! on file change, on SIGHUP and by the admin API; refused configs keep the old one
//! serving; reloads under load lose no request; `GET /config` and `GET /topology`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use support::*;
use tokio::time::sleep;

const HS_SECRET: &str = "reload-test-hmac-secret-not-for-production-0123";
const API_KEY_SHA: &str = "6606a26385279a38a09132e8313c55135a5ad1ae88b7db173c76132db0b5dbab";

fn gateway_file(url: &str) -> String {
    gateway_yaml(
        url,
        "    breaker: { consecutive_failures: 5 }\n  other:\n    url: http://127.0.0.1:9\n",
        &format!(
            "auth:\n  users:\n    jwt:\n      algorithms: [HS256]\n      keys: [{{ kid: k1, secret: {HS_SECRET} }}]\n  partners:\n    api_keys:\n      keys: [{{ id: acme, sha256: {API_KEY_SHA} }}]\n"
        ),
    )
}

/// Team a's file: `/a/v` answers `version` from the gateway itself, `/a/p` proxies.
fn team_a(version: &str) -> String {
    format!(
        "team: a\nprefix: /a\nauth: none\nroutes:\n  - id: a-version\n    path: /v\n    static: {{ status: 200, body: {{ version: {version} }} }}\n  - id: a-proxy\n    path: /p/{{*rest}}\n    proxy: {{ backend: b }}\n"
    )
}

fn team_b(extra: &str) -> String {
    format!(
        "team: b\nprefix: /b\nauth: none\nroutes:\n  - id: b-one\n    path: /one\n    static: {{ status: 200, body: {{ one: 1 }} }}\n{extra}"
    )
}

struct Setup {
    gw: Gateway,
    dir: std::path::PathBuf,
    backend: Recorder,
}

async fn setup() -> Setup {
    let backend = Recorder::start(|r| match r.last() {
        "slow" => Canned::After(
            Duration::from_millis(800),
            Box::new(Canned::Json(json!({"slow": true}))),
        ),
        _ => Canned::Json(json!({"ok": true})),
    })
    .await;
    let config = ConfigDir::new(
        &gateway_file(&backend.url()),
        &[("a.yaml", &team_a("1")), ("b.yaml", &team_b(""))],
    );
    let dir = config.path().to_path_buf();
    let gw = Gateway::serve(config);
    Setup { gw, dir, backend }
}

impl Setup {
    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join("routes").join(name), text).unwrap();
    }

    async fn version(&self) -> Value {
        get(&self.gw.url("/a/v")).await.json()["version"].clone()
    }

    async fn reload(&self) -> Got {
        let req = Request::post(self.gw.admin_url("/reload"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        send(&client(), req).await
    }

    async fn config(&self) -> Value {
        get(&self.gw.admin_url("/config")).await.json()
    }

    /// Waits until `/a/v` answers `want`; panics after `within`.
    async fn wait_for_version(&self, want: Value, within: Duration) {
        let until = Instant::now() + within;
        while self.version().await != want {
            assert!(
                Instant::now() < until,
                "still {} after {within:?}",
                self.version().await
            );
            sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn a_changed_file_is_picked_up_without_a_signal() {
    let s = setup().await;
    assert_eq!(s.version().await, 1);
    s.write("a.yaml", &team_a("2"));
    s.wait_for_version(json!(2), Duration::from_secs(5)).await;
    assert!(s.gw.logs().contains("configuration reloaded"));
}

#[tokio::test]
async fn sighup_and_the_admin_api_reload() {
    let s = setup().await;
    let before = s.config().await["reloads"]["succeeded"].as_u64().unwrap();
    s.gw.signal("HUP");
    let until = Instant::now() + Duration::from_secs(3);
    while s.config().await["reloads"]["succeeded"].as_u64().unwrap() == before {
        assert!(Instant::now() < until, "SIGHUP did not reload");
        sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(&s.gw.url("/b/one")).await.status, 200, "still serving");
    let got = s.reload().await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["status"], "reloaded");
    assert_eq!(got.json()["routes"], 3);
}

#[tokio::test]
async fn one_teams_broken_file_blocks_only_that_reload() {
    let s = setup().await;
    let hash = s.config().await["hash"].clone();
    // Team a's change is fine, team b's file is broken: neither goes live.
    s.write("a.yaml", &team_a("2"));
    s.write(
        "b.yaml",
        &team_b("  - id: b-two\n    path: /two\n    proxy: { backend: nope }\n"),
    );
    let refused = s.reload().await;
    assert_eq!(refused.status, 422);
    let body = refused.json();
    assert_eq!(body["status"], "refused");
    let errors = body["errors"].to_string();
    assert!(
        errors.contains("routes/b.yaml:10: routes[1].proxy.backend: unknown backend `nope`"),
        "{errors}"
    );
    assert_eq!(s.version().await, 1, "the running config stays");
    assert_eq!(get(&s.gw.url("/b/two")).await.status, 404);
    let config = s.config().await;
    assert_eq!(config["hash"], hash);
    assert!(config["reloads"]["failed"].as_u64().unwrap() >= 1);
    assert!(
        config["reloads"]["last_errors"]
            .to_string()
            .contains("unknown backend `nope`")
    );
    assert!(s.gw.logs().contains("reload refused"));
    // Fixed: both changes go live together.
    s.write(
        "b.yaml",
        &team_b("  - id: b-two\n    path: /two\n    proxy: { backend: b }\n"),
    );
    assert_eq!(s.reload().await.status, 200);
    assert_eq!(s.version().await, 2);
    assert_eq!(get(&s.gw.url("/b/two")).await.status, 200);
    let config = s.config().await;
    assert_ne!(config["hash"], hash);
    assert_eq!(config["reloads"]["last_errors"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_every_two_seconds_under_load_lose_no_request() {
    let s = Arc::new(setup().await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for i in 0..8 {
        let (s, stop, ok, failed) = (s.clone(), stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let client = client();
            while !stop.load(Ordering::Relaxed) {
                let path = if i % 2 == 0 { "/a/v" } else { "/a/p/x" };
                let req = Request::get(s.gw.url(path))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                match client.request(req).await {
                    Ok(res) if res.status() == 200 => {
                        let _ = http_body_util::BodyExt::collect(res.into_body()).await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let started = Instant::now();
    // A slow request (800 ms) in flight across the first reload finishes on the config
    // it started with.
    sleep(Duration::from_millis(1600)).await;
    let slow = {
        let url = s.gw.url("/a/p/slow");
        tokio::spawn(async move { get(&url).await })
    };
    sleep(Duration::from_millis(400)).await;
    let mut reloads = 0;
    while started.elapsed() < Duration::from_secs(20) {
        if reloads > 0 {
            sleep(Duration::from_secs(2)).await;
        }
        reloads += 1;
        s.write("a.yaml", &team_a(&reloads.to_string()));
        assert_eq!(s.reload().await.status, 200);
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, 200);
    assert_eq!(slow.json()["slow"], true);
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} failed of {}", ok + failed);
    assert!(ok >= 300 * 20, "only {ok} requests in 20 s");
    assert!(reloads >= 9);
    assert!(s.backend.hits() > 0);
}

#[tokio::test]
async fn config_shows_the_live_files_with_secrets_redacted() {
    let s = setup().await;
    let config = s.config().await;
    let text = config.to_string();
    for secret in [HS_SECRET, API_KEY_SHA] {
        assert!(!text.contains(secret), "a secret leaked: {text}");
    }
    assert!(text.contains("<redacted>"));
    assert_eq!(config["hash"].as_str().unwrap().len(), 64);
    assert_eq!(config["routes"]["routes/a.yaml"]["team"], "a");
    assert_eq!(
        config["gateway"]["backends"]["b"]["breaker"]["consecutive_failures"],
        5
    );
}

#[tokio::test]
async fn topology_maps_teams_routes_and_backends_with_live_state() {
    let backend = Recorder::json(json!({"ok": true})).await;
    let file = "team: t\nprefix: /t\nauth: none\nroutes:\n  - id: p\n    path: /p\n    proxy: { backend: b }\n    shadow: { backend: other, percent: 0% }\n  - id: s\n    path: /s\n    split:\n      targets: [{ backend: b, weight: 90 }, { backend: other, weight: 10 }]\n  - id: agg\n    path: /agg\n    timeout: 700ms\n    aggregate:\n      calls:\n        first: { backend: b, path: /x, timeout: 200ms }\n        second: { backend: other, path: /y }\n";
    let gw = Gateway::serve(ConfigDir::new(
        &gateway_file(&backend.url()),
        &[("t.yaml", file)],
    ));
    get(&gw.url("/t/p")).await;
    let topo = get(&gw.admin_url("/topology")).await.json();
    let edges = topo["edges"].as_array().unwrap();
    let edge = |from: &str, kind: &str, to: &str| -> Value {
        edges
            .iter()
            .find(|e| e["from"] == from && e["kind"] == kind && e["to"] == to)
            .cloned()
            .unwrap_or_else(|| panic!("no {from} -{kind}-> {to} in {topo}"))
    };
    assert_eq!(edge("team:t", "owns", "route:p")["kind"], "owns");
    let proxy = edge("route:p", "proxy", "backend:b");
    assert_eq!(proxy["protection"]["breaker"], true);
    assert_eq!(proxy["breaker"], "closed");
    assert_eq!(proxy["timeout_ms"], 1000, "the backend's timeout");
    edge("route:p", "shadow", "backend:other");
    assert_eq!(edge("route:s", "split", "backend:b")["weight"], 90);
    assert_eq!(edge("route:s", "split", "backend:other")["weight"], 10);
    let first = edge("route:agg", "aggregate", "backend:b");
    assert_eq!(first["label"], "first");
    assert_eq!(first["timeout_ms"], 200);
    assert_eq!(
        edge("route:agg", "aggregate", "backend:other")["timeout_ms"],
        700
    );
    // Every call to `other` lacks a breaker; none to `b` does.
    let unprotected = topo["unprotected"].as_array().unwrap();
    assert_eq!(unprotected.len(), 3, "{unprotected:?}");
    assert!(unprotected.iter().all(|u| u["backend"] == "other"));
    let b = topo["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "backend:b")
        .unwrap();
    assert_eq!(b["health"], "healthy");
    assert_eq!(b["protection"]["breaker"], true);
    assert_eq!(topo["config_hash"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn a_reload_rotates_the_admin_token_and_names_what_needs_a_restart() {
    let backend = Recorder::json(json!({"ok": true})).await;
    let gateway = |token: &str, grace: &str| {
        format!(
            "server:\n  listen: 127.0.0.1:0\n  shutdown_grace: {grace}\nadmin:\n  listen: 127.0.0.1:0\n  token: \"{token}\"\nbackends:\n  b:\n    url: {}\n",
            backend.url()
        )
    };
    let old = "old-admin-token-0123456789";
    let new = "new-admin-token-9876543210";
    // A token from a secret file with a trailing newline still works.
    let config = ConfigDir::new(
        &gateway(&format!("{old}\\n"), "5s"),
        &[("b.yaml", &team_b(""))],
    );
    let dir = config.path().to_path_buf();
    let gw = Gateway::serve(config);
    let admin = |token: &str, method: http::Method, path: &str| {
        Request::builder()
            .method(method)
            .uri(gw.admin_url(path))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    assert_eq!(
        send(&client(), admin(old, http::Method::GET, "/routes"))
            .await
            .status,
        200
    );
    std::fs::write(dir.join("gateway.yaml"), gateway(new, "7s")).unwrap();
    let reloaded = send(&client(), admin(old, http::Method::POST, "/reload")).await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    assert_eq!(
        reloaded.json()["restart_required"],
        json!(["server.shutdown_grace"])
    );
    assert_eq!(
        send(&client(), admin(new, http::Method::GET, "/routes"))
            .await
            .status,
        200
    );
    assert_eq!(
        send(&client(), admin(old, http::Method::GET, "/routes"))
            .await
            .status,
        401
    );
    assert!(gw.logs().contains("takes effect only after a restart"));
}
