//! Black-box: the BFF modules (contract § 3.8) of the real binary against a real backend
//! on loopback — `mobile` (sparse fieldsets, compaction, strong ETags and 304, br/gzip
//! compression, the minimum app version), `partner` (deprecation headers), the example
//! `envelope` module, `web` (changes nothing), the hooks around every kind of route
//! (proxy, static, split, aggregate) and the configuration rules.

mod support;

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use support::*;
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------
// A backend with a fixed catalogue of answers.
// ---------------------------------------------------------------------------------------

/// One answer of the [`Catalog`] backend.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
}

fn json_reply(v: Value) -> Reply {
    Reply {
        status: 200,
        content_type: "application/json",
        body: v.to_string(),
    }
}

/// `GET …/item`.
fn item() -> Value {
    json!({
        "id": 1,
        "name": "lamp",
        "note": null,
        "price": { "amount": 5, "currency": "EUR" },
        "items": [{ "sku": 1, "x": 2 }, { "sku": 2, "x": 3 }],
        "meta": { "a": 1, "b": 2 }
    })
}

/// `GET …/list`: a top-level array.
fn list() -> Value {
    json!([{ "sku": 1, "x": 2 }, { "sku": 2, "x": 3 }])
}

/// `GET …/nulls`.
fn nulls() -> Value {
    json!({
        "a": null,
        "b": { "c": null, "d": 1, "e": { "f": null } },
        "arr": [null, { "g": null, "h": 2 }, [null, 1]],
        "k": 0,
        "f": false,
        "s": ""
    })
}

/// `GET …/big`: well over 256 bytes.
fn big() -> Value {
    let items: Vec<Value> = (0..40)
        .map(|i| json!({ "sku": format!("SKU-{i:04}"), "name": format!("Product number {i}"), "stock": i }))
        .collect();
    json!({ "id": "big", "items": items })
}

/// `GET …/small`: under 256 bytes.
fn small() -> Value {
    json!({ "ok": true, "n": 1 })
}

/// `GET …/order`.
fn order() -> Value {
    json!({ "id": 7, "sku": "A1", "total": 12.5, "note": null })
}

/// The body of `GET …/status/N`: JSON, over 256 bytes, with a null member.
fn status_body(code: u16) -> String {
    json!({ "status": code, "error": "x".repeat(300), "nothing": null, "items": [{ "sku": 1 }] })
        .to_string()
}

/// The body of `GET …/text`: text/plain, over 256 bytes.
fn text_body() -> String {
    "plain text line, not JSON at all\n".repeat(20)
}

/// Answers by the last path segment (`status/N` by the last two); `counter` answers
/// `{"n": request number}`, anything else `{"method", "uri"}`.
fn catalog(path: &str, n: usize, method: &str, uri: &str) -> Reply {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    if let [.., "status", code] = segs.as_slice() {
        let code: u16 = code.parse().unwrap_or(500);
        return Reply {
            status: code,
            content_type: "application/json",
            body: status_body(code),
        };
    }
    match segs.last().copied().unwrap_or("") {
        "item" => json_reply(item()),
        "list" => json_reply(list()),
        "nulls" => json_reply(nulls()),
        "big" => json_reply(big()),
        "small" => json_reply(small()),
        "order" => json_reply(order()),
        "counter" => json_reply(json!({ "n": n })),
        "text" => Reply {
            status: 200,
            content_type: "text/plain",
            body: text_body(),
        },
        "vnd" => Reply {
            status: 200,
            content_type: "application/vnd.api+json",
            body: json!({ "id": "v", "type": "thing", "extra": 1 }).to_string(),
        },
        "charset" => Reply {
            status: 200,
            content_type: "application/json; charset=utf-8",
            body: json!({ "id": "c", "extra": 1 }).to_string(),
        },
        _ => json_reply(json!({ "method": method, "uri": uri })),
    }
}

/// A backend on 127.0.0.1:0 answering from [`catalog`] and recording every request URI
/// (path and query, as received).
struct Catalog {
    addr: SocketAddr,
    uris: Arc<Mutex<Vec<String>>>,
}

impl Catalog {
    async fn start() -> Catalog {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let uris: Arc<Mutex<Vec<String>>> = Arc::default();
        let count = Arc::new(AtomicUsize::new(0));
        let log = uris.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, count) = (log.clone(), count.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (log, count) = (log.clone(), count.clone());
                        async move {
                            let uri = req.uri().to_string();
                            let path = req.uri().path().to_string();
                            let method = req.method().to_string();
                            let _ = req.into_body().collect().await;
                            log.lock().unwrap().push(uri.clone());
                            let n = count.fetch_add(1, Ordering::SeqCst);
                            let r = catalog(&path, n, &method, &uri);
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(r.status)
                                    .header("content-type", r.content_type)
                                    .body(Full::new(Bytes::from(r.body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Catalog { addr, uris }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn uris(&self) -> Vec<String> {
        self.uris.lock().unwrap().clone()
    }

    /// Requests whose path contains `needle`.
    fn hits_on(&self, needle: &str) -> usize {
        self.uris().iter().filter(|u| u.contains(needle)).count()
    }
}

// ---------------------------------------------------------------------------------------
// Configuration and requests.
// ---------------------------------------------------------------------------------------

/// A route file: `team`, `prefix`, `auth: none`, then `head` (the BFF lines), then the
/// routes: `/{*rest}` proxied to `b`, `/static`, `/split/{*rest}`, `/agg` (an aggregate
/// of `order` (required) and `stock` (on a dead backend)) and `/dead` (proxied to it).
fn file(team: &str, prefix: &str, head: &str) -> String {
    format!(
        concat!(
            "team: {team}\nprefix: {prefix}\nauth: none\n{head}routes:\n",
            "  - id: {team}-proxy\n    path: /{{*rest}}\n    proxy: {{ backend: b }}\n",
            "  - id: {team}-static\n    path: /static\n",
            "    static: {{ status: 200, body: {{ a: 1, b: null, c: {{ d: 2, e: 3 }} }} }}\n",
            "  - id: {team}-split\n    path: /split/{{*rest}}\n",
            "    split: {{ targets: [{{ backend: b, weight: 1 }}] }}\n",
            "  - id: {team}-agg\n    path: /agg\n    timeout: 3s\n    aggregate:\n      calls:\n",
            "        order: {{ backend: b, path: /order, required: true }}\n",
            "        stock: {{ backend: dead, path: /stock }}\n",
            "  - id: {team}-dead\n    path: /dead\n    proxy: {{ backend: dead, path: /x }}\n",
        ),
        team = team,
        prefix = prefix,
        head = head,
    )
}

/// The gateway with backends `b` (the catalogue) and `dead` and these route files.
fn serve(cat: &Catalog, files: &[(&str, String)]) -> Gateway {
    let gw = format!(
        "server:\n  listen: 127.0.0.1:0\n  shutdown_grace: 1s\nadmin:\n  listen: 127.0.0.1:0\nbackends:\n  b:\n    url: {}\n    timeout: 2s\n  dead:\n    url: {}\n    timeout: 1s\n",
        cat.url(),
        closed_port()
    );
    let files: Vec<(String, &str)> = files
        .iter()
        .map(|(team, text)| (format!("{team}.yaml"), text.as_str()))
        .collect();
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    Gateway::serve(ConfigDir::new(&gw, &refs))
}

/// The gateway with the three mobile files: `/m` (`bff: mobile`, no options), `/c`
/// (`compact: true`) and `/v` (`min_app_version: 4.2.0`).
fn mobile_gateway(cat: &Catalog) -> Gateway {
    serve(
        cat,
        &[
            ("m", file("m", "/m", "bff: mobile\n")),
            (
                "c",
                file("c", "/c", "bff: mobile\nmobile: { compact: true }\n"),
            ),
            (
                "v",
                file(
                    "v",
                    "/v",
                    "bff: mobile\nmobile: { min_app_version: 4.2.0 }\n",
                ),
            ),
        ],
    )
}

async fn fetch(url: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(&client(), req.body(Full::default()).unwrap()).await
}

/// 200 with a JSON body (not compressed); the body.
fn ok_json(got: &Got) -> Value {
    assert_eq!(got.status, 200, "body: {}", got.text());
    assert_eq!(
        got.header("content-encoding"),
        None,
        "not compressed: {:?}",
        got.headers
    );
    got.json()
}

/// Every value of header `name`, split at commas, trimmed.
fn list_values(got: &Got, name: &str) -> Vec<String> {
    got.headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// `Vary` names `accept-encoding` (in any case, among any others).
fn varies_on_encoding(got: &Got) -> bool {
    list_values(got, "vary")
        .iter()
        .any(|v| v.eq_ignore_ascii_case("accept-encoding"))
}

/// The strong ETag of `got`: a quoted hex string with `suffix` (`""`, `"-gzip"`, `"-br"`)
/// inside the quotes.
fn strong_etag(got: &Got, suffix: &str) -> String {
    let tag = got
        .header("etag")
        .unwrap_or_else(|| panic!("an ETag: {:?} {}", got.headers, got.text()))
        .to_string();
    let inner = tag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or_else(|| panic!("a strong, quoted ETag: {tag}"));
    let hex = inner
        .strip_suffix(suffix)
        .unwrap_or_else(|| panic!("ETag {tag} ends with {suffix:?} inside the quotes"));
    assert!(
        !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "ETag {tag}: hex{suffix} inside the quotes"
    );
    tag
}

/// `gzip -dc` of `data`, or `None` when no `gzip` command is there.
fn gunzip(data: &[u8]) -> Option<Vec<u8>> {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "gzip -dc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out.stdout)
}

// ---------------------------------------------------------------------------------------
// mobile: sparse fieldsets and compaction.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobile_fields_keep_only_the_named_members() {
    let cat = Catalog::start().await;
    let gw = mobile_gateway(&cat);

    // No `fields`: the whole answer, nulls included (no compaction without `compact`).
    let got = fetch(&gw.url("/m/item"), &[]).await;
    assert_eq!(ok_json(&got), item());

    let cases: &[(&str, Value)] = &[
        ("id,name", json!({ "id": 1, "name": "lamp" })),
        ("name", json!({ "name": "lamp" })),
        // A path naming an object keeps it whole.
        ("meta", json!({ "meta": { "a": 1, "b": 2 } })),
        // Dot paths.
        ("price.amount", json!({ "price": { "amount": 5 } })),
        (
            "id,price.currency,meta.b",
            json!({ "id": 1, "price": { "currency": "EUR" }, "meta": { "b": 2 } }),
        ),
        // Through arrays.
        (
            "items.sku",
            json!({ "items": [{ "sku": 1 }, { "sku": 2 }] }),
        ),
        (
            "price.amount,items.sku",
            json!({ "price": { "amount": 5 }, "items": [{ "sku": 1 }, { "sku": 2 }] }),
        ),
        // A path naming an array keeps it whole.
        (
            "items",
            json!({ "items": [{ "sku": 1, "x": 2 }, { "sku": 2, "x": 3 }] }),
        ),
        // A kept null stays a null without `compact`.
        ("id,note", json!({ "id": 1, "note": null })),
    ];
    let mut wrong = Vec::new();
    for (fields, want) in cases {
        let got = fetch(&gw.url(&format!("/m/item?fields={fields}")), &[]).await;
        if got.status != 200 || got.json() != *want {
            wrong.push(format!(
                "fields={fields}: {} {} (want {want})",
                got.status,
                got.text()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // A top-level array: fields apply to each element.
    let got = fetch(&gw.url("/m/list?fields=sku"), &[]).await;
    assert_eq!(ok_json(&got), json!([{ "sku": 1 }, { "sku": 2 }]));

    // The query string reaches the backend unchanged.
    let got = fetch(&gw.url("/m/item?fields=price.amount,items.sku&x=1"), &[]).await;
    assert_eq!(got.status, 200);
    assert!(
        cat.uris()
            .contains(&"/item?fields=price.amount,items.sku&x=1".to_string()),
        "backend saw {:?}",
        cat.uris()
    );

    // `+json` and `application/json; charset=…` are JSON too.
    let got = fetch(&gw.url("/m/vnd?fields=id"), &[]).await;
    assert_eq!(ok_json(&got), json!({ "id": "v" }));
    strong_etag(&got, "");
    let got = fetch(&gw.url("/m/charset?fields=id"), &[]).await;
    assert_eq!(ok_json(&got), json!({ "id": "c" }));
    strong_etag(&got, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobile_hooks_run_on_static_and_split_routes() {
    let cat = Catalog::start().await;
    let gw = mobile_gateway(&cat);

    let got = fetch(&gw.url("/m/static?fields=a,c.d"), &[]).await;
    assert_eq!(ok_json(&got), json!({ "a": 1, "c": { "d": 2 } }));
    strong_etag(&got, "");
    let got = fetch(&gw.url("/c/static"), &[]).await;
    assert_eq!(
        ok_json(&got),
        json!({ "a": 1, "c": { "d": 2, "e": 3 } }),
        "compact on a static route"
    );

    let got = fetch(&gw.url("/m/split/item?fields=items.sku"), &[]).await;
    assert_eq!(
        ok_json(&got),
        json!({ "items": [{ "sku": 1 }, { "sku": 2 }] })
    );
    strong_etag(&got, "");
    assert!(
        cat.uris()
            .iter()
            .any(|u| u.ends_with("/item?fields=items.sku")),
        "the split route's query reaches the backend unchanged: {:?}",
        cat.uris()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobile_compact_drops_null_members_at_every_depth() {
    let cat = Catalog::start().await;
    let gw = mobile_gateway(&cat);

    let got = fetch(&gw.url("/c/nulls"), &[]).await;
    assert_eq!(
        ok_json(&got),
        json!({
            "b": { "d": 1, "e": {} },
            "arr": [null, { "h": 2 }, [null, 1]],
            "k": 0,
            "f": false,
            "s": ""
        }),
        "null members go, null array elements, 0, false and \"\" stay"
    );

    // Together with fields.
    let got = fetch(&gw.url("/c/item?fields=id,note,price.amount"), &[]).await;
    assert_eq!(ok_json(&got), json!({ "id": 1, "price": { "amount": 5 } }));

    // Without `compact`, nulls stay.
    let got = fetch(&gw.url("/m/nulls"), &[]).await;
    assert_eq!(ok_json(&got), nulls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobile_fields_over_an_aggregate_keep_errors() {
    let cat = Catalog::start().await;
    let gw = mobile_gateway(&cat);

    let got = fetch(&gw.url("/m/agg?fields=order.id"), &[]).await;
    assert_eq!(got.status, 200, "body: {}", got.text());
    assert_eq!(got.header("portico-partial"), Some("stock"));
    let body = got.json();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 2, "order and _errors only: {body}");
    assert_eq!(body["order"], json!({ "id": 7 }), "{body}");
    let errors = body["_errors"]
        .as_array()
        .unwrap_or_else(|| panic!("_errors kept whole: {body}"));
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["call"], "stock", "{body}");
    assert_eq!(errors[0]["code"], "UPSTREAM_UNAVAILABLE", "{body}");
    assert!(
        errors[0]["detail"].is_string(),
        "_errors entries whole: {body}"
    );

    // Compact over an aggregate.
    let got = fetch(&gw.url("/c/agg"), &[]).await;
    assert_eq!(got.status, 200, "body: {}", got.text());
    let body = got.json();
    assert_eq!(
        body["order"],
        json!({ "id": 7, "sku": "A1", "total": 12.5 }),
        "{body}"
    );
    assert_eq!(body["_errors"][0]["call"], "stock", "{body}");
}

// ---------------------------------------------------------------------------------------
// mobile: ETag and 304.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobile_etag_is_strong_and_stable_and_if_none_match_gives_304() {
    let cat = Catalog::start().await;
    let gw = mobile_gateway(&cat);

    let first = fetch(&gw.url("/m/item"), &[]).await;
    let tag = strong_etag(&first, "");
    assert!(varies_on_encoding(&first), "Vary: {:?}", first.headers);
    let again = fetch(&gw.url("/m/item"), &[]).await;
    assert_eq!(strong_etag(&again, ""), tag, "same content, same ETag");
    assert_eq!(again.body, first.body);

    // Different content, different ETag.
    let sparse = fetch(&gw.url("/m/item?fields=id"), &[]).await;
    assert_ne!(strong_etag(&sparse, ""), tag);
    let c1 = fetch(&gw.url("/m/counter"), &[]).await;
    let c2 = fetch(&gw.url("/m/counter"), &[]).await;
    assert_ne!(c1.body, c2.body);
    assert_ne!(strong_etag(&c1, ""), strong_etag(&c2, ""));

    // 304: the exact tag, `*`, W/ + the tag, a list holding it.
    let weak = format!("W/{tag}");
    let listed = format!("\"0000\", {tag}");
    for inm in [tag.as_str(), "*", weak.as_str(), listed.as_str()] {
        let got = fetch(&gw.url("/m/item"), &[("if-none-match", inm)]).await;
        assert_eq!(got.status, 304, "If-None-Match: {inm}: {}", got.text());
        assert!(got.body.is_empty(), "304 has no body: {}", got.text());
        assert_eq!(
            got.header("etag"),
            Some(tag.as_str()),
            "If-None-Match: {inm}"
        );
    }

    // Another tag: the whole answer.
    let got = fetch(&gw.url("/m/item"), &[("if-none-match", "\"0123abcd\"")]).await;
    assert_eq!(ok_json(&got), item());
    assert_eq!(strong_etag(&got, ""), tag);
    // The tag of the whole answer does not match the sparse one.
    let got = fetch(
        &gw.url("/m/item?fields=id"),
        &[("if-none-match", tag.as_str())],
    )
    .await;
    assert_eq!(ok_json(&got), json!({ "id": 1 }));

    // Static routes too.
    let s = fetch(&gw.url("/m/static"), &[]).await;
    let stag = strong_etag(&s, "");
    let got = fetch(&gw.url("/m/static"), &[("if-none-match", stag.as_str())]).await;
    assert_eq!(got.status, 304);
    assert!(got.body.is_empty());
}

// ---------------------------------------------------------------------------------------
// mobile: compression.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobile_compresses_when_accepted() {
    let cat = Catalog::start().await;
    let gw = mobile_gateway(&cat);
    let url = gw.url("/m/big");

    let identity = fetch(&url, &[]).await;
    assert_eq!(ok_json(&identity), big());
    let identity_tag = strong_etag(&identity, "");
    assert!(identity.body.len() > 256);

    // gzip.
    let gz = fetch(&url, &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert!(varies_on_encoding(&gz), "Vary: {:?}", gz.headers);
    let gz_tag = strong_etag(&gz, "-gzip");
    assert_ne!(gz_tag, identity_tag);
    assert_ne!(gz.body, identity.body);
    match gunzip(&gz.body) {
        Some(plain) => {
            let v: Value = serde_json::from_slice(&plain).expect("gunzipped body is JSON");
            assert_eq!(v, identity.json(), "gzip decodes to the identity JSON");
        }
        None => eprintln!("no gzip command: gzip body not decoded"),
    }
    // 304 with the gzip tag.
    let got = fetch(
        &url,
        &[
            ("accept-encoding", "gzip"),
            ("if-none-match", gz_tag.as_str()),
        ],
    )
    .await;
    assert_eq!(got.status, 304, "{}", got.text());
    assert!(got.body.is_empty());
    assert_eq!(got.header("etag"), Some(gz_tag.as_str()));

    // br, preferred whenever accepted.
    for ae in ["br", "gzip, deflate, br", "br, gzip"] {
        let br = fetch(&url, &[("accept-encoding", ae)]).await;
        assert_eq!(br.status, 200);
        assert_eq!(
            br.header("content-encoding"),
            Some("br"),
            "Accept-Encoding: {ae}"
        );
        assert!(varies_on_encoding(&br), "Vary: {:?}", br.headers);
        let br_tag = strong_etag(&br, "-br");
        assert_ne!(br_tag, identity_tag);
        assert_ne!(br.body, identity.body, "br body differs from identity");
        assert!(
            br.body.len() < identity.body.len(),
            "br body shorter: {} vs {}",
            br.body.len(),
            identity.body.len()
        );
    }

    // q=0 means not accepted.
    let got = fetch(&url, &[("accept-encoding", "br;q=0, gzip")]).await;
    assert_eq!(got.header("content-encoding"), Some("gzip"), "br;q=0, gzip");
    strong_etag(&got, "-gzip");
    for ae in ["gzip;q=0", "br;q=0, gzip;q=0", "identity", "deflate"] {
        let got = fetch(&url, &[("accept-encoding", ae)]).await;
        assert_eq!(got.status, 200);
        assert_eq!(
            got.header("content-encoding"),
            None,
            "Accept-Encoding: {ae}"
        );
        assert_eq!(got.body, identity.body, "Accept-Encoding: {ae}");
        assert_eq!(strong_etag(&got, ""), identity_tag, "Accept-Encoding: {ae}");
    }

    // Under 256 bytes: never compressed.
    let got = fetch(&gw.url("/m/small"), &[("accept-encoding", "gzip, br")]).await;
    assert!(got.body.len() < 256);
    assert_eq!(ok_json(&got), small());
    strong_etag(&got, "");
}

// ---------------------------------------------------------------------------------------
// mobile: minimum app version.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobile_min_app_version() {
    let cat = Catalog::start().await;
    let gw = mobile_gateway(&cat);
    let url = gw.url("/v/versioned");

    // Too old: 426, the backend never called.
    for v in ["4.1.9", "4.2.0-beta", "3.99.99", "0.0.1", "4.1.99"] {
        let got = fetch(&url, &[("x-app-version", v)]).await;
        assert_problem(&got, 426, "UPGRADE_REQUIRED");
        assert_eq!(got.header("etag"), None, "no ETag on a problem");
    }
    // Missing: 400 BAD_REQUEST.
    let got = fetch(&url, &[]).await;
    assert_problem(&got, 400, "BAD_REQUEST");
    // Malformed: 400.
    let mut wrong = Vec::new();
    for v in ["abc", "4.2.x", "", "4..2", "v4.2.0x"] {
        let got = fetch(&url, &[("x-app-version", v)]).await;
        if got.status != 400 || got.header("content-type") != Some("application/problem+json") {
            wrong.push(format!(
                "X-App-Version {v:?}: {} {:?} {}",
                got.status,
                got.header("content-type"),
                got.text()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(
        cat.hits_on("versioned"),
        0,
        "refused requests never reach the backend"
    );

    // New enough.
    for v in ["4.2.0", "4.10.0", "4.2.1", "5.0.0"] {
        let got = fetch(&url, &[("x-app-version", v)]).await;
        assert_eq!(got.status, 200, "X-App-Version {v}: {}", got.text());
        assert_eq!(got.json()["uri"], "/versioned");
    }
    assert_eq!(cat.hits_on("versioned"), 4);

    // Files without `min_app_version` do not look at the header.
    let got = fetch(&gw.url("/m/item"), &[("x-app-version", "1.0.0")]).await;
    assert_eq!(got.status, 200);
    let got = fetch(&gw.url("/m/item"), &[]).await;
    assert_eq!(got.status, 200);
}

// ---------------------------------------------------------------------------------------
// mobile: what passes through untouched.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobile_leaves_non_json_and_error_answers_alone() {
    let cat = Catalog::start().await;
    let gw = mobile_gateway(&cat);
    let accept = ("accept-encoding", "gzip, br");

    // text/plain: untouched, no ETag, not compressed.
    let got = fetch(&gw.url("/c/text?fields=a"), &[accept]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("text/plain"));
    assert_eq!(got.header("content-encoding"), None);
    assert_eq!(got.header("etag"), None);
    assert_eq!(got.text(), text_body());

    // Backend 4xx and 5xx JSON: untouched (no fields, no compaction, no ETag, no
    // compression, no 304).
    for code in [404u16, 500, 503] {
        let got = fetch(
            &gw.url(&format!("/c/status/{code}?fields=status")),
            &[accept, ("if-none-match", "*")],
        )
        .await;
        assert_eq!(got.status.as_u16(), code, "{}", got.text());
        assert_eq!(got.header("content-encoding"), None, "{code}");
        assert_eq!(got.header("etag"), None, "{code}");
        assert_eq!(got.text(), status_body(code), "{code} untouched");
    }

    // A gateway-made problem: untouched too.
    let got = fetch(&gw.url("/c/dead?fields=code"), &[accept]).await;
    assert_problem(&got, 502, "UPSTREAM_UNAVAILABLE");
    assert_eq!(got.header("etag"), None);
}

// ---------------------------------------------------------------------------------------
// partner.
// ---------------------------------------------------------------------------------------

const LINK: &str = "https://partner.example/deprecations/v1";

fn assert_deprecated(got: &Got, deprecation: &str, what: &str) {
    assert_eq!(
        got.header("deprecation"),
        Some(deprecation),
        "{what}: {:?}",
        got.headers
    );
    assert_eq!(
        got.header("sunset"),
        Some("Wed, 30 Jun 2027 00:00:00 GMT"),
        "{what}"
    );
    let mut links = list_values(got, "link");
    links.sort();
    assert_eq!(
        links,
        [
            format!("<{LINK}>; rel=\"deprecation\""),
            format!("<{LINK}>; rel=\"sunset\""),
        ],
        "{what}: {:?}",
        got.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_deprecation_headers_on_every_answer() {
    let cat = Catalog::start().await;
    let gw = serve(
        &cat,
        &[
            (
                "p",
                file(
                    "p",
                    "/p",
                    &format!(
                        "bff: partner\npartner: {{ deprecated: {{ sunset: 2027-06-30, link: \"{LINK}\", since: 2025-11-01 }} }}\n"
                    ),
                ),
            ),
            (
                "q",
                file(
                    "q",
                    "/q",
                    &format!(
                        "bff: partner\npartner:\n  deprecated:\n    sunset: 2027-06-30\n    link: \"{LINK}\"\n"
                    ),
                ),
            ),
            ("n", file("n", "/n", "")),
        ],
    );
    // 2025-11-01T00:00:00Z.
    let since = "@1761955200";

    let got = fetch(&gw.url("/p/item"), &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), item(), "the body is untouched");
    assert_eq!(got.header("etag"), None, "no ETag outside mobile");
    assert_deprecated(&got, since, "proxy 200");

    let got = fetch(&gw.url("/p/status/404"), &[]).await;
    assert_eq!(got.status, 404);
    assert_eq!(got.text(), status_body(404));
    assert_deprecated(&got, since, "backend 404");

    let got = fetch(&gw.url("/p/status/500"), &[]).await;
    assert_eq!(got.status, 500);
    assert_deprecated(&got, since, "backend 500");

    let got = fetch(&gw.url("/p/static"), &[]).await;
    assert_eq!(got.status, 200);
    assert_deprecated(&got, since, "static");

    let got = fetch(&gw.url("/p/split/item"), &[]).await;
    assert_eq!(got.status, 200);
    assert_deprecated(&got, since, "split");

    let got = fetch(&gw.url("/p/agg"), &[]).await;
    assert_eq!(got.status, 200);
    assert_deprecated(&got, since, "aggregate");

    // Without `since`.
    let got = fetch(&gw.url("/q/item"), &[]).await;
    assert_eq!(got.status, 200);
    assert_deprecated(&got, "true", "without since");
    let got = fetch(&gw.url("/q/status/404"), &[]).await;
    assert_eq!(got.status, 404);
    assert_deprecated(&got, "true", "without since, backend 404");

    // Another file of the same gateway: nothing.
    let got = fetch(&gw.url("/n/item"), &[]).await;
    assert_eq!(got.status, 200);
    for h in ["deprecation", "sunset", "link"] {
        assert_eq!(got.header(h), None, "{h} outside the partner file");
    }
}

// ---------------------------------------------------------------------------------------
// envelope and web.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_wraps_successful_json_answers() {
    let cat = Catalog::start().await;
    let gw = serve(
        &cat,
        &[
            (
                "e",
                file("e", "/e", "bff: envelope\noptions: { key: data }\n"),
            ),
            ("d", file("d", "/d", "bff: envelope\n")),
            (
                "k",
                file("k", "/k", "bff: envelope\noptions: { key: payload }\n"),
            ),
        ],
    );
    // Every case runs; the problems are reported together at the end.
    let mut wrong: Vec<String> = Vec::new();

    // (path, request id sent, key, wrapped value)
    let static_body = json!({ "a": 1, "b": null, "c": { "d": 2, "e": 3 } });
    let cases: Vec<(&str, Option<&str>, &str, Value)> = vec![
        ("/e/item", None, "data", item()),
        // The client's request id is the one echoed and enveloped.
        ("/e/item", Some("req-abc-123"), "data", item()),
        // Arrays and static routes.
        ("/e/list", None, "data", list()),
        ("/e/static", None, "data", static_body),
        // Default key, and another key.
        ("/d/item", None, "data", item()),
        ("/k/item", None, "payload", item()),
    ];
    for (path, sent, key, inner) in cases {
        let headers: Vec<(&str, &str)> = sent.iter().map(|id| ("x-request-id", *id)).collect();
        let got = fetch(&gw.url(path), &headers).await;
        let rid = got.header("x-request-id").unwrap_or("?").to_string();
        if let Some(id) = sent
            && rid != id
        {
            wrong.push(format!("{path}: x-request-id {rid}, sent {id}"));
        }
        let want = json!({ key: inner, "meta": { "request_id": rid } });
        if got.status != 200 || got.json() != want {
            wrong.push(format!(
                "{path} (x-request-id {rid}): {} {} (want {want})",
                got.status,
                got.text()
            ));
        }
    }

    // Errors and non-JSON pass through.
    let got = fetch(&gw.url("/e/status/404"), &[]).await;
    if got.status != 404 || got.text() != status_body(404) {
        wrong.push(format!("/e/status/404: {} {}", got.status, got.text()));
    }
    let got = fetch(&gw.url("/e/text"), &[]).await;
    if got.status != 200 || got.text() != text_body() {
        wrong.push(format!("/e/text: {} {}", got.status, got.text()));
    }
    let got = fetch(&gw.url("/e/dead"), &[]).await;
    assert_problem(&got, 502, "UPSTREAM_UNAVAILABLE");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_changes_nothing() {
    let cat = Catalog::start().await;
    let gw = serve(
        &cat,
        &[
            ("w", file("w", "/w", "bff: web\n")),
            ("n", file("n", "/n", "")),
        ],
    );
    let headers = [("accept-encoding", "gzip, br"), ("x-app-version", "1.0.0")];
    for path in [
        "/item?fields=id",
        "/nulls",
        "/big",
        "/text",
        "/status/404",
        "/static?fields=a",
        "/agg?fields=order.id",
    ] {
        let web = fetch(&gw.url(&format!("/w{path}")), &headers).await;
        let none = fetch(&gw.url(&format!("/n{path}")), &headers).await;
        assert_eq!(web.status, none.status, "{path}");
        assert_eq!(web.body, none.body, "{path}: same body");
        assert_eq!(
            web.header("content-type"),
            none.header("content-type"),
            "{path}"
        );
        for h in ["etag", "content-encoding", "deprecation", "sunset", "link"] {
            assert_eq!(web.header(h), None, "{path}: no {h}");
        }
        let names = |g: &Got| {
            let mut n: Vec<String> = g.headers.keys().map(|k| k.to_string()).collect();
            n.sort();
            n
        };
        assert_eq!(names(&web), names(&none), "{path}: same header names");
    }
    assert_eq!(
        cat.hits_on("/item?fields=id"),
        2,
        "the query reaches the backend unchanged: {:?}",
        cat.uris()
    );
}

// ---------------------------------------------------------------------------------------
// Configuration rules.
// ---------------------------------------------------------------------------------------

/// `portico validate` on `routes/web.yaml` = team, prefix, auth (lines 1-3), then `head`
/// (from line 4), then one static route.
fn validate(head: &str) -> (i32, String) {
    let routes = format!(
        "team: web\nprefix: /web\nauth: none\n{head}routes:\n  - id: a\n    path: /a\n    static: {{}}\n"
    );
    let gw = "backends:\n  b:\n    url: http://127.0.0.1:1\n";
    let dir = ConfigDir::new(gw, &[("web.yaml", &routes)]);
    validate_dir(&dir)
}

/// The message of the error at `routes/web.yaml:LINE: KEY:`, if there is one.
fn error_at<'a>(out: &'a str, line: usize, key: &str) -> Option<&'a str> {
    let at = format!("routes/web.yaml:{line}: {key}: ");
    out.lines()
        .find_map(|l| l.find(&at).map(|i| &l[i + at.len()..]))
}

#[test]
fn every_documented_bff_option_is_accepted() {
    let mut wrong = Vec::new();
    for head in [
        "bff: web\n",
        "bff: mobile\n",
        "bff: mobile\nmobile: {}\n",
        "bff: mobile\nmobile: { compact: true, min_app_version: 4.2.0 }\n",
        "bff: mobile\nmobile:\n  compact: false\n",
        "bff: partner\n",
        "bff: partner\npartner: { deprecated: { sunset: 2027-06-30, link: \"https://partner.example/deprecations/v1\", since: 2026-11-01 } }\n",
        "bff: partner\npartner: { deprecated: { sunset: 2027-06-30, link: \"https://partner.example/deprecations/v1\" } }\n",
        "bff: envelope\n",
        "bff: envelope\noptions: { key: data }\n",
        "bff: envelope\noptions: { key: payload }\n",
    ] {
        let (code, out) = validate(head);
        if code != 0 {
            wrong.push(format!("{head:?}: exit {code}: {out}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn bff_config_errors_name_file_line_and_key() {
    // (what, head, line, key, texts in the message). Every case runs; the problems are
    // reported together at the end.
    let cases: &[(&str, &str, usize, &str, &[&str])] = &[
        (
            "unknown module",
            "bff: nope\n",
            4,
            "bff",
            &["unknown BFF module `nope`; this build has: envelope, mobile, partner, web"],
        ),
        (
            "mobile block without bff",
            "mobile: { compact: true }\n",
            4,
            "mobile",
            &["bff: mobile"],
        ),
        (
            "mobile block for web",
            "bff: web\nmobile: { compact: true }\n",
            5,
            "mobile",
            &[],
        ),
        (
            "partner block without bff",
            "partner: { deprecated: { sunset: 2027-06-30, link: \"https://x.example/d\" } }\n",
            4,
            "partner",
            &["bff: partner"],
        ),
        (
            "bad min_app_version",
            "bff: mobile\nmobile: { min_app_version: four }\n",
            5,
            "mobile.min_app_version",
            &[],
        ),
        (
            "bad min_app_version, block style",
            "bff: mobile\nmobile:\n  compact: true\n  min_app_version: four\n",
            7,
            "mobile.min_app_version",
            &[],
        ),
        (
            "unknown mobile option",
            "bff: mobile\nmobile: { compactt: true }\n",
            5,
            "mobile.compactt",
            &["compactt"],
        ),
        (
            "bad sunset",
            "bff: partner\npartner: { deprecated: { sunset: someday, link: \"https://x.example/d\" } }\n",
            5,
            "partner.deprecated.sunset",
            &[],
        ),
        (
            "bad sunset, block style",
            "bff: partner\npartner:\n  deprecated:\n    link: \"https://x.example/d\"\n    sunset: someday\n",
            8,
            "partner.deprecated.sunset",
            &[],
        ),
    ];
    let mut wrong: Vec<String> = Vec::new();
    for (what, head, line, key, texts) in cases {
        let (code, out) = validate(head);
        if code != 1 {
            wrong.push(format!("{what}: exit {code}, not 1: {out}"));
            continue;
        }
        match error_at(&out, *line, key) {
            None => wrong.push(format!(
                "{what}: no error at routes/web.yaml:{line}: {key}: in:\n{out}"
            )),
            Some(msg) => {
                for t in texts.iter() {
                    if !msg.contains(t) {
                        wrong.push(format!("{what}: {t:?} not in {msg:?}"));
                    }
                }
            }
        }
    }

    // Idempotency settings are checked (tests/idempotency.rs runs them).
    let (code, out) = validate("bff: partner\npartner: { idempotency: { ttl: 0s } }\n");
    let found = out
        .lines()
        .any(|l| l.contains("routes/web.yaml:5: partner.idempotency.ttl: must be more than 0"));
    if code != 1 || !found {
        wrong.push(format!(
            "idempotency: exit {code}, want 1 and an error at routes/web.yaml:5: partner.idempotency.ttl: {out}"
        ));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `handler: MODULE.FN` answers with a module's Rust function; unknown names are config
/// errors that list what the build has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_can_be_answered_by_a_modules_rust_handler() {
    let gw_yaml = "server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nbackends:\n  orders:\n    url: http://127.0.0.1:1\n  users:\n    url: http://127.0.0.1:1\n";
    let routes = "team: web\nprefix: /web\nauth: none\nroutes:\n  - id: hi\n    path: /hello/{name}\n    handler: envelope.hello\n  - id: hi-world\n    path: /hello\n    handler: envelope.hello\n";
    let gw = Gateway::serve(ConfigDir::new(gw_yaml, &[("web.yaml", routes)]));
    let got = get(&gw.url("/web/hello/ada")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(
        got.json(),
        json!({"hello": "ada", "backends": ["orders", "users"]})
    );
    assert_eq!(get(&gw.url("/web/hello")).await.json()["hello"], "world");

    let bad = routes.replace(
        "envelope.hello\n  - id: hi-world",
        "envelope.nope\n  - id: hi-world",
    );
    let (code, out) = validate_dir(&ConfigDir::new(gw_yaml, &[("web.yaml", &bad)]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("routes/web.yaml:7: routes[0].handler: unknown handler `envelope.nope` (write MODULE.FN); this build has: envelope.hello"),
        "{out}"
    );
}
