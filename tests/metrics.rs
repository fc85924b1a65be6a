//! Black-box: admin `GET /metrics` (contract § 3.6, issue #9) of the real binary — every
//! family appears and moves when it should, label values are bounded (route ids, never
//! raw paths), and the text passes `promtool check metrics` (Debian's prometheus
//! package; fetched and unpacked into target/ when the machine has no promtool).

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;
use support::*;

/// `promtool`: on the PATH, or unpacked from Debian's package into target/tools.
fn promtool() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v promtool"])
        .output()
        && out.status.success()
    {
        return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    }
    let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools");
    let bin = tools.join("usr/bin/promtool");
    if bin.exists() {
        return bin;
    }
    std::fs::create_dir_all(&tools).unwrap();
    let script = format!(
        "set -e; cd {dir}; (apt-get download prometheus || (apt-get update -qq && apt-get download prometheus)) >/dev/null 2>&1; dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb",
        dir = tools.display()
    );
    let status = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success() && bin.exists(),
        "could not get promtool (apt-get download prometheus)"
    );
    bin
}

fn check_with_promtool(text: &str) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the sample `name{labels}` (labels as written, in order).
fn value(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
        .parse()
        .unwrap()
}

async fn metrics(gw: &Gateway) -> String {
    let got = get(&gw.admin_url("/metrics")).await;
    assert_eq!(got.status, 200);
    assert!(
        got.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    got.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_appears_and_moves() {
    let backend = Recorder::start(|r| match r.last() {
        "fail" => Canned::Status(503),
        "slow" => Canned::After(
            Duration::from_millis(300),
            Box::new(Canned::Json(json!({"slow": true}))),
        ),
        _ => Canned::Json(json!({"ok": true})),
    })
    .await;
    let twin = Recorder::start(|r| match r.last() {
        "slow" => Canned::After(
            Duration::from_millis(300),
            Box::new(Canned::Json(json!({"slow": true}))),
        ),
        _ => Canned::Json(json!({"ok": true})),
    })
    .await;
    let dead = closed_port();
    let extra = format!(
        "    retry: {{ attempts: 1, on: [503], budget: 0% }}\n  dead:\n    url: {dead}\n    breaker: {{ consecutive_failures: 1, open_for: 30s }}\n  narrow:\n    url: {b}\n    max_concurrency: 1\n  hedged:\n    urls: [{b}, {t}]\n    hedge: {{ after: 50ms }}\n",
        b = backend.url(),
        t = twin.url()
    );
    let file = "team: t\nprefix: /t\nauth: none\nroutes:\n  - id: p\n    path: /p/{*rest}\n    proxy: { backend: b }\n    shadow: { backend: hedged, compare: true }\n  - id: limited\n    path: /limited\n    rate_limit: [{ key: ip, rate: 1/m, burst: 1 }]\n    proxy: { backend: b }\n  - id: cached\n    path: /cached\n    cache: { ttl: 30s }\n    proxy: { backend: b }\n  - id: page\n    path: /page\n    aggregate:\n      calls:\n        main: { backend: b, path: /main, required: true }\n        extra: { backend: dead, path: /x }\n  - id: dead\n    path: /dead\n    proxy: { backend: dead }\n  - id: narrow\n    path: /narrow/{*rest}\n    proxy: { backend: narrow }\n  - id: hedged\n    path: /hedged/{*rest}\n    methods: [GET]\n    proxy: { backend: hedged }\n";
    let config = ConfigDir::new(
        &gateway_yaml(&backend.url(), &extra, ""),
        &[("t.yaml", file)],
    );
    let gw = Gateway::serve(config);

    let before = metrics(&gw).await;
    check_with_promtool(&before);
    for family in [
        "portico_requests_total",
        "portico_request_duration_seconds",
        "portico_rate_limited_total",
        "portico_cache_requests_total",
        "portico_partial_responses_total",
        "portico_backend_requests_total",
        "portico_backend_errors_total",
        "portico_backend_request_duration_seconds",
        "portico_breaker_state",
        "portico_breaker_transitions_total",
        "portico_retries_total",
        "portico_retry_budget_exhausted_total",
        "portico_hedges_total",
        "portico_bulkhead_rejections_total",
        "portico_backend_in_flight",
        "portico_shadow_comparisons_total",
        "portico_cache_entries",
        "portico_cache_bytes",
        "portico_cache_stored_total",
        "portico_config_reloads_total",
        "portico_config_info",
        "portico_trace_spans_total",
        "portico_draining",
    ] {
        assert!(
            before.contains(&format!("# TYPE {family} ")),
            "{family} missing"
        );
    }

    // Traffic that moves each family.
    get(&gw.url("/t/p/ok")).await;
    get(&gw.url("/t/p/some/raw/path/123")).await;
    for _ in 0..12 {
        assert_eq!(get(&gw.url("/t/p/fail")).await.status, 503);
    }
    assert_eq!(get(&gw.url("/t/limited")).await.status, 200);
    assert_eq!(get(&gw.url("/t/limited")).await.status, 429);
    get(&gw.url("/t/cached")).await;
    get(&gw.url("/t/cached")).await;
    let page = get(&gw.url("/t/page")).await;
    assert_eq!(page.header("portico-partial"), Some("extra"));
    get(&gw.url("/t/dead")).await;
    let slow = gw.url("/t/narrow/slow");
    let (a, b) = tokio::join!(get(&slow), get(&slow));
    assert!(
        a.status == 503 || b.status == 503,
        "one refused by the bulkhead"
    );
    get(&gw.url("/t/hedged/slow")).await;
    get(&gw.url("/t/nowhere")).await;
    let req = Request::post(gw.admin_url("/reload"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(&client(), req).await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let after = metrics(&gw).await;
    check_with_promtool(&after);
    let v = |s: &str| value(&after, s);
    assert_eq!(
        v(r#"portico_requests_total{route="p",team="t",method="GET",status_class="2xx"}"#),
        2.0
    );
    assert_eq!(
        v(r#"portico_requests_total{route="p",team="t",method="GET",status_class="5xx"}"#),
        12.0
    );
    assert!(
        !after.contains("some/raw/path"),
        "raw paths never become labels"
    );
    assert_eq!(
        v(r#"portico_requests_total{route="unmatched",team="",method="GET",status_class="4xx"}"#),
        1.0
    );
    assert!(v(r#"portico_request_duration_seconds_count{route="p",team="t"}"#) >= 14.0);
    assert_eq!(
        v(r#"portico_rate_limited_total{route="limited",team="t"}"#),
        1.0
    );
    assert_eq!(
        v(r#"portico_cache_requests_total{route="cached",team="t",result="hit"}"#),
        1.0
    );
    assert_eq!(
        v(r#"portico_cache_requests_total{route="cached",team="t",result="miss"}"#),
        1.0
    );
    assert_eq!(
        v(r#"portico_partial_responses_total{route="page",team="t",call="extra"}"#),
        1.0
    );
    let b = backend.url();
    assert!(
        v(&format!(
            r#"portico_backend_requests_total{{backend="b",instance="{b}",outcome="2xx"}}"#
        )) >= 2.0
    );
    assert!(
        v(&format!(
            r#"portico_backend_requests_total{{backend="b",instance="{b}",outcome="5xx"}}"#
        )) >= 12.0
    );
    assert!(
        v(&format!(
            r#"portico_backend_errors_total{{backend="b",instance="{b}"}}"#
        )) >= 12.0
    );
    assert!(
        v(&format!(
            r#"portico_backend_request_duration_seconds_count{{backend="b",instance="{b}"}}"#
        )) >= 14.0
    );
    assert!(
        v(&format!(
            r#"portico_backend_requests_total{{backend="dead",instance="{dead}",outcome="connect"}}"#
        )) >= 1.0
    );
    assert_eq!(
        v(&format!(
            r#"portico_breaker_state{{backend="dead",instance="{dead}"}}"#
        )),
        2.0
    );
    assert_eq!(
        v(&format!(
            r#"portico_breaker_transitions_total{{backend="dead",instance="{dead}",to="open"}}"#
        )),
        1.0
    );
    assert_eq!(
        v(r#"portico_retries_total{backend="b"}"#),
        10.0,
        "the budget's floor"
    );
    assert_eq!(
        v(r#"portico_retry_budget_exhausted_total{backend="b"}"#),
        2.0
    );
    assert!(v(r#"portico_hedges_total{backend="hedged"}"#) >= 1.0);
    assert_eq!(
        v(r#"portico_bulkhead_rejections_total{backend="narrow"}"#),
        1.0
    );
    let compared: f64 = ["match", "mismatch", "error"]
        .iter()
        .map(|r| {
            v(&format!(
                r#"portico_shadow_comparisons_total{{route="p",result="{r}"}}"#
            ))
        })
        .sum();
    assert!(
        compared >= 1.0,
        "{}",
        after
            .lines()
            .filter(|l| l.contains("shadow"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(v("portico_cache_entries"), 1.0);
    assert!(v("portico_cache_bytes") > 0.0);
    assert_eq!(v("portico_cache_stored_total"), 1.0);
    assert_eq!(v(r#"portico_config_reloads_total{result="success"}"#), 1.0);
    assert_eq!(v(r#"portico_config_reloads_total{result="failure"}"#), 0.0);
    assert!(after.contains("portico_config_info{hash=\""));
    assert_eq!(v("portico_draining"), 0.0);
}
