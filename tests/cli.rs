//! Black-box: the command line (validate, routes, schema, demo) and the repository's own
//! configuration files.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD_ROUTES: &str = "team: web\nprefix: /web\nauth: none\nroutes:\n  - id: a\n    path: /a/{id}\n    methods: [GET]\n    proxy: { backend: b, path: \"/x/{id}\" }\n";

#[test]
fn validate_reports_every_error_with_file_line_and_key() {
    let gw = "server:\n  listen: 127.0.0.1:0\n  request_timeout: soon\nbackends:\n  b:\n    url: http://127.0.0.1:1\n";
    let web = "team: web\nprefix: /web\nroutes:\n  - id: a\n    path: /a\n    proxy: { backend: nope }\n  - id: a\n    path: /b\n    static: {}\n    colour: red\n";
    let mobile = "team: mobile\nprefix: /web\nroutes: []\n";
    let dir = ConfigDir::new(gw, &[("web.yaml", web), ("mobile.yaml", mobile)]);
    let (code, stdout, stderr) = run(&["validate", "--config", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    for expect in [
        "gateway.yaml:3: server.request_timeout: invalid duration `soon`",
        "routes/web.yaml:10: routes[1].colour: unknown field `colour`",
        "routes/web.yaml:6: routes[0].proxy.backend: unknown backend `nope`; gateway.yaml:4 defines: b",
        "routes/web.yaml:2: prefix: prefix `/web` is already owned by routes/mobile.yaml (team mobile)",
    ] {
        assert!(stderr.contains(expect), "missing {expect:?} in:\n{stderr}");
    }
    assert!(stderr.starts_with("4 configuration errors:"), "{stderr}");
}

#[test]
fn validate_and_routes_on_a_good_config() {
    let dir = ConfigDir::new(
        "backends:\n  b:\n    url: http://127.0.0.1:1\n",
        &[("web.yaml", GOOD_ROUTES)],
    );
    let (code, stdout, stderr) = run(&["validate", "--config", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("valid: 1 route file (web), 1 route, 1 backend"),
        "{stdout}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    // A file that says nothing about auth: valid, with a warning naming the public routes.
    let silent = GOOD_ROUTES.replace("auth: none\n", "");
    let quiet_dir = ConfigDir::new(
        "backends:\n  b:\n    url: http://127.0.0.1:1\n",
        &[("web.yaml", &silent)],
    );
    let (code, _, stderr) = run(&["validate", "--config", quiet_dir.path().to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        stderr.contains("routes/web.yaml:1: auth: warning: no `auth` for this file, so these routes are public: a"),
        "{stderr}"
    );
    let (code, stdout, _) = run(&["routes", "--config", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "METHODS", "PATH", "ID", "TEAM", "AUTH", "HANDLER", "BACKENDS"
        ]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["GET", "/web/a/{id}", "a", "web", "none", "proxy", "b"]
    );
}

#[test]
fn usage_errors_exit_2_and_bad_config_never_serves() {
    assert_eq!(run(&["serve"]).0, 2);
    assert_eq!(run(&["frobnicate"]).0, 2);
    let dir = ConfigDir::new("backends: {}\nbogus: 1\n", &[]);
    let (code, _, stderr) = run(&[
        "serve",
        "--config",
        dir.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("gateway.yaml:2: bogus: unknown field `bogus`"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["validate", "--config", "/definitely/not/here"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("gateway.yaml: cannot read"), "{stderr}");
}

#[test]
fn schema_is_stable() {
    let (code, stdout, _) = run(&["schema"]);
    assert_eq!(code, 0);
    let schema: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(schema["gateway.yaml"]["properties"]["server"].is_object());
    assert!(
        schema["routes/<team>.yaml"]["required"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "prefix")
    );
    insta::assert_snapshot!("schema", stdout);
}

/// Every YAML file of the repository validates: the demo config and the benchmark's.
#[test]
fn the_repository_configs_validate() {
    let root = env!("CARGO_MANIFEST_DIR");
    for dir in [root.to_string(), format!("{root}/bench/config")] {
        let (code, stdout, stderr) = run(&["validate", "--config", &dir]);
        assert_eq!(code, 0, "{dir}: {stdout}{stderr}");
    }
}

/// YAML blocks in README and docs that are complete files (they start with a comment
/// naming `gateway.yaml` or `routes/...`) validate together as one configuration.
#[test]
fn documented_examples_validate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "md") {
            docs.push(entry.path());
        }
    }
    let mut checked = 0;
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        let mut gateway = None;
        let mut routes = Vec::new();
        for block in text.split("```yaml\n").skip(1) {
            let block = block.split("```").next().unwrap();
            let first = block.lines().next().unwrap_or("");
            if first.starts_with("# gateway.yaml") {
                gateway = Some(block.to_string());
            } else if let Some(name) = first.strip_prefix("# routes/") {
                let name = name.split_whitespace().next().unwrap().to_string();
                routes.push((name, block.to_string()));
            }
        }
        let Some(gateway) = gateway else { continue };
        let route_refs: Vec<(&str, &str)> = routes
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let dir = ConfigDir::new(&gateway, &route_refs);
        let (code, stdout, stderr) = run(&["validate", "--config", dir.path().to_str().unwrap()]);
        assert_eq!(code, 0, "examples in {}: {stdout}{stderr}", doc.display());
        checked += 1;
    }
    assert!(checked >= 1, "no documented example was found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_the_demo_prints_works() {
    let gw = Gateway::spawn(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    // The instructions are printed to stdout once the backends are up.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let commands: Vec<String> = loop {
        let logs = gw.logs();
        if logs.contains("admin: the route table") {
            break logs
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("curl "))
                .map(str::to_string)
                .collect();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "demo printed no commands:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(commands.len() >= 6, "{commands:?}");
    for cmd in commands {
        let out = tokio::task::spawn_blocking(move || {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("{cmd} --fail -o /dev/null -w '%{{http_code}}'"))
                .output()
                .unwrap();
            (cmd, out)
        })
        .await
        .unwrap();
        let (cmd, out) = out;
        assert!(
            out.status.success(),
            "{cmd} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
