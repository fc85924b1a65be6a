//! OpenTelemetry traces through the real binary: a small OTLP/HTTP receiver on loopback
//! decodes what the gateway exports (protobuf `POST /v1/traces`), and recording
//! backends show the `traceparent` each attempt carried.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde_json::json;
use support::*;
use tokio::net::TcpListener;

/// One span as received, with what the tests look at.
#[derive(Clone, Debug)]
struct Got {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: i32,
    /// The OTLP span flags (W3C flags in the low byte, 0x100: parent remoteness known,
    /// 0x200: the parent is remote).
    flags: u32,
    start: u64,
    end: u64,
    error: bool,
    attributes: HashMap<String, String>,
    service: String,
}

impl Got {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// An OTLP/HTTP receiver: decodes every export; answers `status` (200 by default).
struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Got>>>,
    posts: Arc<AtomicUsize>,
    status: Arc<AtomicU16>,
    content_types: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans: Arc<Mutex<Vec<Got>>> = Arc::default();
        let posts: Arc<AtomicUsize> = Arc::default();
        let status = Arc::new(AtomicU16::new(200));
        let content_types: Arc<Mutex<Vec<String>>> = Arc::default();
        let (s, p, st, ct) = (
            spans.clone(),
            posts.clone(),
            status.clone(),
            content_types.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (s, p, st, ct) = (s.clone(), p.clone(), st.clone(), ct.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (s, p, st, ct) = (s.clone(), p.clone(), st.clone(), ct.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            if let Some(t) = req.headers().get("content-type") {
                                ct.lock().unwrap().push(t.to_str().unwrap().to_string());
                            }
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let status = st.load(Ordering::SeqCst);
                            if path == "/otlp/v1/traces" && status == 200 {
                                p.fetch_add(1, Ordering::SeqCst);
                                let export = ExportTraceServiceRequest::decode(body).unwrap();
                                s.lock().unwrap().extend(flatten(export));
                            }
                            let mut res = Response::new(Full::new(Bytes::new()));
                            *res.status_mut() =
                                http::StatusCode::from_u16(if path == "/otlp/v1/traces" {
                                    status
                                } else {
                                    404
                                })
                                .unwrap();
                            Ok::<_, Infallible>(res)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            spans,
            posts,
            status,
            content_types,
        }
    }

    /// The endpoint for `telemetry.otlp_endpoint` (a base path; the gateway appends
    /// `/v1/traces`).
    fn endpoint(&self) -> String {
        format!("http://{}/otlp", self.addr)
    }

    fn spans(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of `trace`, once at least `n` arrived (panics after 10 s).
    async fn wait(&self, trace: &str, n: usize) -> Vec<Got> {
        for _ in 0..200 {
            let got: Vec<Got> = self
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == trace)
                .collect();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "fewer than {n} spans of trace {trace} arrived: {:#?}",
            self.spans()
        );
    }
}

fn flatten(export: ExportTraceServiceRequest) -> Vec<Got> {
    let mut out = Vec::new();
    for rs in export.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| text(kv.value.as_ref()?.value.as_ref()?))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Got {
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent: hex(&s.parent_span_id),
                    name: s.name,
                    kind: s.kind,
                    flags: s.flags,
                    start: s.start_time_unix_nano,
                    end: s.end_time_unix_nano,
                    error: s.status.is_some_and(|st| st.code == 2),
                    attributes: s
                        .attributes
                        .into_iter()
                        .filter_map(|kv| Some((kv.key, text(kv.value?.value.as_ref()?)?)))
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
    out
}

fn text(v: &Any) -> Option<String> {
    Some(match v {
        Any::StringValue(s) => s.clone(),
        Any::IntValue(i) => i.to_string(),
        Any::BoolValue(b) => b.to_string(),
        _ => return None,
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `(trace id, parent id, flags)` of a `traceparent` value.
fn parts(traceparent: &str) -> (String, String, String) {
    let p: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(p.len(), 4, "{traceparent}");
    (p[1].to_string(), p[2].to_string(), p[3].to_string())
}

/// A route file with one proxy route, `/t/p` to backend `b`.
const ONE_ROUTE: &str = "team: t\nprefix: /t\nauth: none\nroutes:\n  - id: p\n    path: /p\n    proxy: { backend: b }\n";

/// The gateway on [`ONE_ROUTE`] with backend `b` at `backend`, exporting to `receiver`;
/// `telemetry` holds more `telemetry:` keys (each line indented by two spaces).
fn traced(receiver: &Receiver, backend: &str, telemetry: &str) -> Gateway {
    let config = ConfigDir::new(
        &gateway_yaml(
            backend,
            "",
            &format!(
                "telemetry:\n  otlp_endpoint: {}\n{telemetry}",
                receiver.endpoint()
            ),
        ),
        &[("t.yaml", ONE_ROUTE)],
    );
    Gateway::serve(config)
}

/// The request's span among `spans`.
fn server_span(spans: &[Got]) -> &Got {
    spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("a server span")
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn traced_get(url: &str, traceparent: &str) -> Request<Full<Bytes>> {
    Request::get(url)
        .header("traceparent", traceparent)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A backend answering 503 to its first request and `{"ok":true}` after.
async fn flaky() -> Recorder {
    let n = Arc::new(AtomicUsize::new(0));
    Recorder::start(move |_| {
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            Canned::Status(503)
        } else {
            Canned::Json(json!({"ok": true}))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_every_attempt_are_spans_with_the_callers_trace() {
    let receiver = Receiver::start().await;
    let backend = flaky().await;
    let config = ConfigDir::new(
        &gateway_yaml(
            &backend.url(),
            "    retry: { attempts: 2, backoff: 10ms, max_backoff: 20ms, on: [503] }\n",
            &format!(
                "telemetry:\n  otlp_endpoint: {}\n  service_name: edge-test\n",
                receiver.endpoint()
            ),
        ),
        &[(
            "t.yaml",
            "team: t\nprefix: /t\nauth: none\nroutes:\n  - id: items\n    path: /items/{id}\n    proxy: { backend: b, path: \"/items/{id}\" }\n",
        )],
    );
    let gw = Gateway::serve(config);
    let c = client();
    let got = send(
        &c,
        traced_get(
            &gw.url("/t/items/7?secret=no"),
            &format!("00-{TRACE}-{CLIENT_SPAN}-01"),
        ),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());

    // One server span and two client spans (the 503, then the retry).
    let spans = receiver.wait(TRACE, 3).await;
    let server: Vec<&Got> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(server.len(), 1, "{spans:#?}");
    let server = server[0];
    assert_eq!(
        server.parent, CLIENT_SPAN,
        "the caller's span is the parent"
    );
    assert_eq!(server.name, "GET /t/items/{id}");
    assert_eq!(server.attr("http.route"), Some("/t/items/{id}"));
    assert_eq!(server.attr("http.response.status_code"), Some("200"));
    assert_eq!(server.attr("url.path"), Some("/t/items/7"));
    assert_eq!(server.attr("portico.route"), Some("items"));
    assert_eq!(server.attr("portico.team"), Some("t"));
    assert_eq!(server.attr("portico.backend"), Some("b"));
    assert_eq!(server.service, "edge-test");
    assert!(!server.error);
    assert_eq!(server.flags, 0x301, "sampled, with a remote parent");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(server.start <= server.end && now - server.start < 60_000_000_000);
    assert!(
        spans
            .iter()
            .all(|s| s.attributes.values().all(|v| !v.contains("secret=no"))),
        "no query string in any span"
    );

    let mut attempts: Vec<&Got> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    attempts.sort_by_key(|s| {
        s.attr("http.request.resend_count")
            .unwrap_or("0")
            .to_string()
    });
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    for a in &attempts {
        assert_eq!(a.parent, server.span_id, "attempts hang under the request");
        assert_eq!(a.flags, 0x101, "sampled, a local parent");
        assert!(
            server.start <= a.start && a.end <= server.end,
            "inside the request"
        );
        assert_eq!(a.name, "GET b");
        assert_eq!(a.attr("portico.backend"), Some("b"));
        assert_eq!(a.attr("server.address"), Some("127.0.0.1"));
        assert_eq!(
            a.attr("url.full"),
            Some(format!("{}/items/7", backend.url()).as_str())
        );
    }
    assert_eq!(attempts[0].attr("http.response.status_code"), Some("503"));
    assert!(attempts[0].error, "a 5xx attempt is an error");
    assert_eq!(attempts[0].attr("http.request.resend_count"), None);
    assert_eq!(attempts[1].attr("http.response.status_code"), Some("200"));
    assert_eq!(attempts[1].attr("http.request.resend_count"), Some("1"));
    assert!(!attempts[1].error);

    // Each attempt carried its own span id as the backend's parent id.
    let seen = backend.seen();
    assert_eq!(seen.len(), 2);
    for (recorded, attempt) in seen.iter().zip(&attempts) {
        let (trace, parent, flags) = parts(recorded.header("traceparent").unwrap());
        assert_eq!(trace, TRACE);
        assert_eq!(parent, attempt.span_id);
        assert_eq!(flags, "01");
    }

    // The access log names the same trace and the request's span.
    let logs = gw.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("\"route\":\"items\""))
        .expect("an access log line");
    let entry: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(entry["trace_id"], TRACE);
    assert_eq!(entry["span_id"], server.span_id);

    // Sent as protobuf; counted as exported.
    assert!(
        receiver
            .content_types
            .lock()
            .unwrap()
            .iter()
            .all(|t| t == "application/x-protobuf")
    );
    let m = get(&gw.admin_url("/metrics")).await.text();
    let exported: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("portico_trace_spans_total{result=\"exported\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(exported >= 3, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedges_aggregate_calls_and_shadows_are_spans_of_their_own() {
    let receiver = Receiver::start().await;
    // Whichever instance gets the first request is slow; every later request is fast.
    let first = Arc::new(AtomicUsize::new(0));
    let script = {
        let first = first.clone();
        move |_: &Recorded| {
            if first.fetch_add(1, Ordering::SeqCst) == 0 {
                Canned::After(
                    Duration::from_millis(600),
                    Box::new(Canned::Json(json!({"n": "slow"}))),
                )
            } else {
                Canned::Json(json!({"n": "fast"}))
            }
        }
    };
    let one = Recorder::start(script.clone()).await;
    let two = Recorder::start(script).await;
    let users = Recorder::json(json!({"name": "ada"})).await;
    let shadow = Recorder::json(json!({"ok": true})).await;
    let backends = format!(
        "  hedged:\n    urls: [\"{}\", \"{}\"]\n    timeout: 2s\n    hedge: {{ after: 50ms }}\n  users:\n    url: {}\n    timeout: 1s\n  shadow:\n    url: {}\n    timeout: 1s\n",
        one.url(),
        two.url(),
        users.url(),
        shadow.url()
    );
    let config = ConfigDir::new(
        &gateway_yaml(
            &users.url(),
            &backends,
            &format!("telemetry:\n  otlp_endpoint: {}\n", receiver.endpoint()),
        ),
        &[(
            "t.yaml",
            "team: t\nprefix: /t\nauth: none\nroutes:\n  - id: hedged\n    path: /hedged\n    methods: [GET]\n    proxy: { backend: hedged }\n  - id: page\n    path: /page\n    aggregate:\n      calls:\n        user: { backend: users, path: /u, required: true }\n        more: { backend: b, path: /more }\n  - id: shadowed\n    path: /shadowed\n    proxy: { backend: b }\n    shadow: { backend: shadow }\n",
        )],
    );
    let gw = Gateway::serve(config);
    let c = client();

    // Hedge: the first attempt hangs, the hedge answers; both are spans.
    let trace = "11111111111111111111111111111111";
    let got = send(
        &c,
        traced_get(
            &gw.url("/t/hedged"),
            &format!("00-{trace}-{CLIENT_SPAN}-01"),
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["n"], "fast");
    let spans = receiver.wait(trace, 3).await;
    let server = server_span(&spans);
    let attempts: Vec<&Got> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    assert!(attempts.iter().all(|a| a.parent == server.span_id));
    let hedge = attempts
        .iter()
        .find(|a| a.attr("portico.hedge") == Some("true"))
        .expect("the hedge is a span");
    assert_eq!(hedge.attr("http.response.status_code"), Some("200"));
    let lost = attempts
        .iter()
        .find(|a| a.attr("portico.hedge").is_none())
        .unwrap();
    assert_eq!(
        lost.attr("portico.cancelled"),
        Some("true"),
        "the attempt the hedge beat: {lost:#?}"
    );
    assert_ne!(hedge.attr("url.full"), lost.attr("url.full"));

    // Aggregate: one span per call, each under the request.
    let trace = "22222222222222222222222222222222";
    let got = send(
        &c,
        traced_get(&gw.url("/t/page"), &format!("00-{trace}-{CLIENT_SPAN}-01")),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    let spans = receiver.wait(trace, 3).await;
    let server = server_span(&spans);
    let mut calls: Vec<&str> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32 && s.parent == server.span_id)
        .map(|s| s.name.as_str())
        .collect();
    calls.sort();
    assert_eq!(calls, ["GET b", "GET users"]);
    let parent_of = |r: &Recorder| parts(r.seen()[0].header("traceparent").unwrap()).1;
    assert!(
        spans.iter().any(|s| s.span_id == parent_of(&users)),
        "the users call carried its span's id"
    );

    // Shadow: the copy is a span of its own under the request.
    let trace = "33333333333333333333333333333333";
    let got = send(
        &c,
        traced_get(
            &gw.url("/t/shadowed"),
            &format!("00-{trace}-{CLIENT_SPAN}-01"),
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    shadow.wait_for_hits(1, Duration::from_secs(5)).await;
    let spans = receiver.wait(trace, 3).await;
    let server = server_span(&spans);
    let copy = spans
        .iter()
        .find(|s| s.name == "GET shadow")
        .expect("a shadow span");
    assert_eq!(copy.parent, server.span_id);
    assert_eq!(
        parts(shadow.seen()[0].header("traceparent").unwrap()).1,
        copy.span_id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_traces_are_propagated_and_not_recorded() {
    let receiver = Receiver::start().await;
    let backend = Recorder::json(json!({"ok": true})).await;
    let gw = traced(&receiver, &backend.url(), "  trace_sampling: 0%\n");
    let c = client();
    // The caller decided not to sample: kept, and passed on.
    let unsampled = "44444444444444444444444444444444";
    let got = send(
        &c,
        traced_get(&gw.url("/t/p"), &format!("00-{unsampled}-{CLIENT_SPAN}-00")),
    )
    .await;
    assert_eq!(got.status, 200);
    // A new trace at 0%: not sampled either.
    assert_eq!(get(&gw.url("/t/p")).await.status, 200);
    // The caller's decision wins over the ratio.
    let sampled = "55555555555555555555555555555555";
    let got = send(
        &c,
        traced_get(&gw.url("/t/p"), &format!("00-{sampled}-{CLIENT_SPAN}-01")),
    )
    .await;
    assert_eq!(got.status, 200);
    receiver.wait(sampled, 2).await;

    let seen = backend.seen();
    let (trace, parent, flags) = parts(seen[0].header("traceparent").unwrap());
    assert_eq!((trace.as_str(), flags.as_str()), (unsampled, "00"));
    assert_ne!(parent, CLIENT_SPAN);
    let (new_trace, _, flags) = parts(seen[1].header("traceparent").unwrap());
    assert_eq!(flags, "00", "0% samples no new trace");
    let traces: Vec<String> = receiver.spans().into_iter().map(|s| s.trace_id).collect();
    assert!(!traces.contains(&unsampled.to_string()));
    assert!(!traces.contains(&new_trace));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_flushed_on_shutdown_and_failed_exports_counted() {
    let receiver = Receiver::start().await;
    let backend = Recorder::json(json!({"ok": true})).await;
    let mut gw = traced(&receiver, &backend.url(), "");
    let c = client();

    // The collector refuses: the batch is counted as failed, the request is unharmed.
    receiver.status.store(503, Ordering::SeqCst);
    let got = send(
        &c,
        traced_get(
            &gw.url("/t/p"),
            "00-66666666666666666666666666666666-00f067aa0ba902b7-01",
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    let mut failed = 0;
    for _ in 0..100 {
        let m = get(&gw.admin_url("/metrics")).await.text();
        failed = m
            .lines()
            .find_map(|l| l.strip_prefix("portico_trace_spans_total{result=\"failed\"} "))
            .unwrap()
            .parse()
            .unwrap();
        if failed >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failed >= 2, "request and attempt spans counted as failed");
    assert!(gw.logs().contains("span export failed"));

    // Working again: a request right before SIGTERM still gets its spans out (the
    // exporter's batch interval has not passed yet).
    receiver.status.store(200, Ordering::SeqCst);
    let trace = "77777777777777777777777777777777";
    let got = send(
        &c,
        traced_get(&gw.url("/t/p"), &format!("00-{trace}-{CLIENT_SPAN}-01")),
    )
    .await;
    assert_eq!(got.status, 200);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    let spans: Vec<Got> = receiver
        .spans()
        .into_iter()
        .filter(|s| s.trace_id == trace)
        .collect();
    assert_eq!(spans.len(), 2, "flushed before exit: {spans:#?}");
    assert!(receiver.posts.load(Ordering::SeqCst) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_the_export_to_a_new_endpoint() {
    let old = Receiver::start().await;
    let new = Receiver::start().await;
    let backend = Recorder::json(json!({"ok": true})).await;
    let gateway = |endpoint: String| {
        gateway_yaml(
            &backend.url(),
            "",
            &format!("telemetry:\n  otlp_endpoint: {endpoint}\n"),
        )
    };
    let config = ConfigDir::new(&gateway(old.endpoint()), &[("t.yaml", ONE_ROUTE)]);
    let dir = config.path().to_path_buf();
    let gw = Gateway::serve(config);
    let c = client();
    let first = "88888888888888888888888888888888";
    let got = send(
        &c,
        traced_get(&gw.url("/t/p"), &format!("00-{first}-{CLIENT_SPAN}-01")),
    )
    .await;
    assert_eq!(got.status, 200);
    old.wait(first, 2).await;

    std::fs::write(dir.join("gateway.yaml"), gateway(new.endpoint())).unwrap();
    let reload = send(
        &c,
        Request::post(gw.admin_url("/reload"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    assert_eq!(reload.json()["restart_required"], json!([]));
    let second = "99999999999999999999999999999999";
    let got = send(
        &c,
        traced_get(&gw.url("/t/p"), &format!("00-{second}-{CLIENT_SPAN}-01")),
    )
    .await;
    assert_eq!(got.status, 200);
    new.wait(second, 2).await;
    assert!(old.spans().iter().all(|s| s.trace_id != second));
}

#[test]
fn bad_otlp_settings_are_refused_with_their_key() {
    for (telemetry, expected) in [
        (
            "otlp_endpoint: collector:4318",
            "must start with http:// or https://",
        ),
        (
            "otlp_endpoint: \"ftp://collector:4318\"",
            "must start with http:// or https://",
        ),
        (
            "otlp_endpoint: \"http://u:p@collector:4318\"",
            "credentials in the URL",
        ),
        (
            "otlp_endpoint: \"http://collector:4318/?x=1\"",
            "query or fragment",
        ),
        ("otlp_endpoint: \"http://\"", "telemetry.otlp_endpoint"),
        ("trace_sampling: 150%", "telemetry.trace_sampling"),
        ("service_name: \"\"", "telemetry.service_name"),
    ] {
        let dir = ConfigDir::new(
            &gateway_yaml(
                "http://127.0.0.1:9",
                "",
                &format!("telemetry:\n  {telemetry}\n"),
            ),
            &[],
        );
        let (code, out) = validate_dir(&dir);
        assert_ne!(code, 0, "{telemetry} was accepted");
        assert!(out.contains(expected), "{telemetry}: {out}");
        assert!(out.contains("gateway.yaml"), "{telemetry}: {out}");
    }
    let dir = ConfigDir::new(
        &gateway_yaml(
            "http://127.0.0.1:9",
            "",
            "telemetry:\n  otlp_endpoint: https://otel.example.com:4318/v1/traces\n  trace_sampling: 5%\n",
        ),
        &[],
    );
    let (code, out) = validate_dir(&dir);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_trace_context_starts_a_new_trace_without_the_old_tracestate() {
    let receiver = Receiver::start().await;
    let backend = Recorder::json(json!({"ok": true})).await;
    let gw = traced(&receiver, &backend.url(), "");
    let c = client();
    // Upper-case hex is not a valid traceparent: a new trace, and the vendor data of the
    // old one does not travel with it.
    let bad = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01";
    let req = Request::get(gw.url("/t/p"))
        .header("traceparent", bad)
        .header("tracestate", "vendor=old")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(&c, req).await.status, 200);
    // A valid one keeps its tracestate.
    let good = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let req = Request::get(gw.url("/t/p"))
        .header("traceparent", &good)
        .header("tracestate", "vendor=kept")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(&c, req).await.status, 200);

    let seen = backend.seen();
    let (trace, _, flags) = parts(seen[0].header("traceparent").unwrap());
    assert_ne!(trace, TRACE.to_string());
    assert_eq!(flags, "01", "a new trace, sampled at 100%");
    assert_eq!(seen[0].header("tracestate"), None);
    let spans = receiver.wait(&trace, 2).await;
    let server = server_span(&spans);
    assert_eq!(server.parent, "", "a root span");
    assert_eq!(server.flags, 0x101);
    assert_eq!(seen[1].header("tracestate"), Some("vendor=kept"));
    assert_eq!(parts(seen[1].header("traceparent").unwrap()).0, TRACE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_client_abandons_is_still_a_span() {
    let receiver = Receiver::start().await;
    let backend = Recorder::start(|_| Canned::Hang).await;
    let gw = traced(&receiver, &backend.url(), "");
    let trace = "abababababababababababababababab";
    let request =
        format!("GET /t/p HTTP/1.1\r\nhost: x\r\ntraceparent: 00-{trace}-{CLIENT_SPAN}-01\r\n\r\n");
    // The client sends its request and leaves while the backend is still thinking.
    let out = raw(gw.addr, request.as_bytes(), Duration::from_millis(300)).await;
    assert!(out.is_empty(), "no answer yet: {out}");
    backend.wait_for_hits(1, Duration::from_secs(5)).await;
    let spans = receiver.wait(trace, 2).await;
    let server = server_span(&spans);
    assert_eq!(server.attr("portico.cancelled"), Some("true"));
    let attempt = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .unwrap();
    assert_eq!(
        attempt.parent, server.span_id,
        "the attempt keeps its parent"
    );
    assert_eq!(attempt.attr("portico.cancelled"), Some("true"));
}
