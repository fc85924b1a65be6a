//! OpenAPI 3.1 documents (issue #9): the checked-in `openapi/` matches what
//! `portico openapi` generates from the repository's config (drift fails the build), a
//! file with `openapi: true` serves its document, every `$ref` resolves, and every
//! endpoint `openapi/admin.yaml` describes is served by the admin listener.

mod support;

use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use support::*;
use yaml_rust2::YamlLoader;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn checked_in_documents_match_the_config() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(bin())
        .args(["openapi", "--config", root().to_str().unwrap(), "--out"])
        .arg(out.path())
        .env_clear()
        .status()
        .unwrap();
    assert!(status.success());
    let names = |dir: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let checked_in = root().join("openapi");
    assert_eq!(
        names(out.path()),
        names(&checked_in),
        "run `portico openapi --config .` and commit openapi/"
    );
    for name in names(out.path()) {
        let fresh = std::fs::read_to_string(out.path().join(&name)).unwrap();
        let kept = std::fs::read_to_string(checked_in.join(&name)).unwrap();
        assert!(
            fresh == kept,
            "openapi/{name} drifted from the config: run `portico openapi --config .`"
        );
        if name.ends_with(".json") {
            refs_resolve(&serde_json::from_str(&fresh).unwrap());
        }
    }
}

/// Every `$ref` in `doc` points at something in it.
fn refs_resolve(doc: &Value) {
    fn walk(v: &Value, doc: &Value) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    let pointer = r.strip_prefix('#').expect("a local $ref");
                    assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
                }
                m.values().for_each(|c| walk(c, doc));
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, doc)),
            _ => {}
        }
    }
    assert_eq!(doc["openapi"], "3.1.0");
    walk(doc, doc);
}

#[tokio::test]
async fn a_file_with_openapi_serves_its_document() {
    let backend = Recorder::json(json!({"ok": true})).await;
    let gw_yaml = gateway_yaml(
        &backend.url(),
        "    breaker: { consecutive_failures: 3 }\n",
        "auth:\n  users:\n    jwt:\n      algorithms: [HS256]\n      keys: [{ kid: k1, secret: openapi-test-secret-0123456789-abcdef }]\n",
    );
    let file = "team: t\nprefix: /t\nauth: none\nopenapi: true\nroutes:\n  - id: item\n    path: /items/{id}\n    methods: [GET, PUT]\n    rate_limit: [{ key: ip, rate: 10/s }]\n    proxy: { backend: b }\n  - id: me\n    path: /me\n    methods: [GET]\n    auth: users\n    require: { scopes: [me:read] }\n    proxy: { backend: b }\n  - id: files\n    path: /files/{*rest}\n    methods: [GET]\n    proxy: { backend: b }\n  - id: hello\n    path: /hello\n    static: { status: 200, body: { hello: world } }\n";
    let gw = Gateway::serve(ConfigDir::new(&gw_yaml, &[("t.yaml", file)]));
    let got = get(&gw.url("/t/openapi.json")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("application/json"));
    let doc = got.json();
    refs_resolve(&doc);
    let paths = &doc["paths"];
    let get_item = &paths["/t/items/{id}"]["get"];
    assert_eq!(get_item["operationId"], "item-get");
    assert_eq!(get_item["parameters"][0]["name"], "id");
    assert_eq!(
        get_item["responses"]["429"]["$ref"],
        "#/components/responses/RateLimited"
    );
    assert_eq!(
        get_item["responses"]["503"]["$ref"], "#/components/responses/Unavailable",
        "backend b has a breaker"
    );
    assert!(get_item["responses"]["504"].is_object());
    assert!(paths["/t/items/{id}"]["put"]["responses"]["413"].is_object());
    assert!(get_item["responses"].get("401").is_none(), "a public route");
    let me = &paths["/t/me"]["get"];
    assert!(me["responses"]["401"].is_object() && me["responses"]["403"].is_object());
    assert_eq!(me["security"], json!([{"users": ["me:read"]}]));
    assert_eq!(
        doc["components"]["securitySchemes"]["users"]["scheme"],
        "bearer"
    );
    assert_eq!(
        paths["/t/files/{rest}"]["get"]["parameters"][0]["name"],
        "rest"
    );
    assert_eq!(
        paths["/t/hello"]["get"]["responses"]["200"]["content"]["application/json"]["example"],
        json!({"hello": "world"})
    );
    assert!(
        paths["/t/openapi.json"]["get"].is_object(),
        "its own route too"
    );

    // A route already at /openapi.json conflicts, with file and line.
    let clash = "team: t\nprefix: /t\nauth: none\nopenapi: true\nroutes:\n  - id: mine\n    path: /openapi.json\n    static: { status: 200, body: {} }\n";
    let dir = ConfigDir::new(&gw_yaml, &[("t.yaml", clash)]);
    let (code, out) = validate_dir(&dir);
    assert_eq!(code, 1);
    assert!(
        out.contains("routes/t.yaml") && out.contains("t-openapi"),
        "{out}"
    );
}

#[tokio::test]
async fn every_admin_endpoint_the_document_names_is_served() {
    let backend = Recorder::json(json!({"ok": true})).await;
    let file = "team: t\nprefix: /t\nauth: none\nroutes:\n  - id: p\n    path: /p\n    proxy: { backend: b }\n    shadow: { backend: b }\n";
    let gw = Gateway::serve(ConfigDir::new(
        &gateway_yaml(&backend.url(), "", ""),
        &[("t.yaml", file)],
    ));
    let text = std::fs::read_to_string(root().join("openapi/admin.yaml")).unwrap();
    let doc = &YamlLoader::load_from_str(&text).unwrap()[0];
    let paths = doc["paths"].as_hash().unwrap();
    assert!(paths.len() >= 11);
    for (path, item) in paths {
        let path = path.as_str().unwrap().replace("{id}", "p");
        for (method, _) in item.as_hash().unwrap() {
            let method = method.as_str().unwrap().to_uppercase();
            let body = if path == "/cache/purge" { "{}" } else { "" };
            let req = Request::builder()
                .method(method.as_str())
                .uri(gw.admin_url(&path))
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let got = send(&client(), req).await;
            assert!(
                got.status.is_success(),
                "{method} {path}: {} {}",
                got.status,
                got.text()
            );
        }
    }
}
