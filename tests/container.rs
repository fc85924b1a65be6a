//! The container image and the Kubernetes example (issue #9), without a container engine:
//! the Dockerfile's build steps run as written outside a container (its COPY lines
//! copied into a scratch /src, its RUN lines run there), the runtime stage is checked and
//! its HEALTHCHECK run against the built binary serving the example's own ConfigMaps, and
//! the manifests' structure is linted (probes, drain, security, references between
//! objects).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Dockerfile instruction: its keyword and the rest of its (joined) line.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if let Some(start) = line.strip_suffix('\\') {
            pending.push_str(start);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let (keyword, rest) = pending.split_once(' ').unwrap_or((&pending, ""));
        out.push((keyword.to_uppercase(), rest.trim().to_string()));
        pending.clear();
    }
    out
}

/// The instructions of each stage (`FROM` starts one).
fn stages(text: &str) -> Vec<Vec<(String, String)>> {
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for (k, rest) in instructions(text) {
        if k == "FROM" {
            stages.push(Vec::new());
        }
        if let Some(stage) = stages.last_mut() {
            stage.push((k, rest));
        }
    }
    stages
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
}

fn json_args(rest: &str) -> Vec<String> {
    serde_json::from_str(rest).unwrap_or_else(|_| panic!("not an exec-form array: {rest}"))
}

#[test]
fn dockerfile_stages_are_locked_non_root_and_health_checked() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let stages = stages(&text);
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (build, run) = (&stages[0], &stages[1]);
    assert!(build[0].1.starts_with("rust:") && build[0].1.ends_with(" AS build"));
    let runs: Vec<&String> = build
        .iter()
        .filter(|(k, _)| k == "RUN")
        .map(|(_, r)| r)
        .collect();
    assert!(
        runs.iter().any(|r| r.contains("cargo build")
            && r.contains("--locked")
            && r.contains("--release"))
    );
    for (k, rest) in build {
        if k == "COPY" {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            for src in &parts[..parts.len() - 1] {
                assert!(root().join(src).exists(), "COPY {src}: no such path");
            }
        }
    }
    assert!(
        run[0].1.contains("distroless") || run[0].1.contains("slim"),
        "a slim or distroless base: {}",
        run[0].1
    );
    let user = run
        .iter()
        .find(|(k, _)| k == "USER")
        .expect("USER")
        .1
        .clone();
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "USER {user}"
    );
    let health = run
        .iter()
        .find(|(k, _)| k == "HEALTHCHECK")
        .expect("HEALTHCHECK");
    assert!(health.1.contains("/health"));
    let entry = json_args(&run.iter().find(|(k, _)| k == "ENTRYPOINT").unwrap().1);
    assert_eq!(entry, vec!["/usr/local/bin/portico"]);
    let cmd = json_args(&run.iter().find(|(k, _)| k == "CMD").unwrap().1);
    assert_eq!(&cmd[..3], &["serve", "--config", "/etc/portico"]);
    let expose = &run.iter().find(|(k, _)| k == "EXPOSE").unwrap().1;
    assert!(expose.contains("8080") && expose.contains("9901"));
}

/// Runs the build stage as written (its COPY into a scratch /src, then its RUN lines),
/// then the runtime stage's HEALTHCHECK against the built binary serving the Kubernetes
/// example's configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_build_steps_run_and_the_image_serves_the_example_config() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let stages = stages(&text);
    let scratch = tempfile::tempdir().unwrap();
    let src = scratch.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for (k, rest) in &stages[0] {
        match k.as_str() {
            "COPY" => {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                let dest = parts[parts.len() - 1];
                for from in &parts[..parts.len() - 1] {
                    let to = if dest.ends_with('/') || dest == "./" || parts.len() > 2 {
                        src.join(dest).join(Path::new(from).file_name().unwrap())
                    } else {
                        src.join(dest)
                    };
                    copy_tree(&root().join(from), &to);
                }
            }
            "RUN" => {
                // The release build shares the repository's target directory (its own
                // profile lock), so a machine that built once does not build again.
                let status = Command::new("sh")
                    .args(["-c", rest])
                    .current_dir(&src)
                    .env("CARGO_TARGET_DIR", root().join("target"))
                    .status()
                    .unwrap();
                assert!(status.success(), "RUN {rest} failed");
            }
            _ => {}
        }
    }
    let copy = stages[1]
        .iter()
        .find(|(k, r)| k == "COPY" && r.starts_with("--from=build"))
        .expect("the binary copied from the build stage");
    let built = copy.1.split_whitespace().nth(1).unwrap();
    let built = built
        .strip_prefix("/src/target/")
        .map(|p| root().join("target").join(p))
        .expect("from the build's target directory");
    assert!(built.exists(), "{} was not built", built.display());

    // /etc/portico as the Deployment mounts it: the ConfigMaps' items at their paths.
    let etc = scratch.path().join("etc/portico");
    for (path, text) in mounted_files() {
        let to = etc.join(path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, text).unwrap();
    }
    let out = Command::new(&built)
        .args(["validate", "--config", etc.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut gw = Gateway::spawn(&[
        "serve",
        "--config",
        etc.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    // The HEALTHCHECK, with the admin address the test got.
    let health = stages[1].iter().find(|(k, _)| k == "HEALTHCHECK").unwrap();
    let cmd = json_args(health.1.split("CMD").nth(1).unwrap().trim());
    let url = cmd[2].replace("127.0.0.1:9901", &gw.admin.unwrap().to_string());
    let probe = Command::new(&built).args([&cmd[1], &url]).status().unwrap();
    assert!(probe.success(), "HEALTHCHECK failed");
    let down = Command::new(&built)
        .args(["probe", &format!("http://{}/nope", gw.admin.unwrap())])
        .status()
        .unwrap();
    assert!(!down.success(), "a 404 is not healthy");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
}

fn documents() -> Vec<Yaml> {
    let text = std::fs::read_to_string(root().join("deploy/kubernetes.yaml")).unwrap();
    YamlLoader::load_from_str(&text).unwrap()
}

fn find<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Every file the Deployment mounts at /etc/portico: its path there and its text.
fn mounted_files() -> Vec<(String, String)> {
    let docs = documents();
    let deployment = find(&docs, "Deployment", "portico");
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_vec()
        .unwrap();
    let mut out = Vec::new();
    for v in volumes {
        for source in v["projected"]["sources"].as_vec().unwrap() {
            let map = source["configMap"]["name"].as_str().unwrap();
            let cm = find(&docs, "ConfigMap", map);
            for item in source["configMap"]["items"].as_vec().unwrap() {
                let key = item["key"].as_str().unwrap();
                let text = cm["data"][key]
                    .as_str()
                    .unwrap_or_else(|| panic!("ConfigMap {map} has no key {key}"));
                out.push((item["path"].as_str().unwrap().to_string(), text.to_string()));
            }
        }
    }
    out
}

#[test]
fn the_kubernetes_example_is_consistent() {
    let docs = documents();
    for d in &docs {
        for key in ["apiVersion", "kind"] {
            assert!(d[key].as_str().is_some(), "a document without {key}");
        }
        assert!(d["metadata"]["name"].as_str().is_some());
    }
    let deployment = find(&docs, "Deployment", "portico");
    let spec = &deployment["spec"];
    let pod = &spec["template"]["spec"];
    let labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(spec["selector"]["matchLabels"], *labels);
    let container = &pod["containers"][0];
    let ports: Vec<(&str, i64)> = container["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(ports.contains(&("http", 8080)) && ports.contains(&("admin", 9901)));
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/ready")
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["port"].as_str(),
        Some("admin")
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/health")
    );
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_i64()
        .expect("a preStop pause before the drain");
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"].as_bool(),
        Some(false)
    );
    assert_eq!(
        container["volumeMounts"][0]["mountPath"].as_str(),
        Some("/etc/portico")
    );
    // The drain fits: preStop pause + the gateway's shutdown_grace < the pod's grace.
    let files = mounted_files();
    let gateway = &files.iter().find(|(p, _)| p == "gateway.yaml").unwrap().1;
    let gw = &YamlLoader::load_from_str(gateway).unwrap()[0];
    let shutdown: i64 = gw["server"]["shutdown_grace"]
        .as_str()
        .and_then(|s| s.strip_suffix('s'))
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(
        pre_stop + shutdown < grace,
        "{pre_stop}s + {shutdown}s vs {grace}s"
    );
    assert!(
        files
            .iter()
            .filter(|(p, _)| p.starts_with("routes/"))
            .count()
            >= 2
    );
    // The Service and the autoscaler point at the Deployment.
    let service = find(&docs, "Service", "portico");
    for (k, v) in service["spec"]["selector"].as_hash().unwrap() {
        assert_eq!(labels[k.as_str().unwrap()], *v);
    }
    let hpa = find(&docs, "HorizontalPodAutoscaler", "portico");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["kind"].as_str(),
        Some("Deployment")
    );
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"].as_str(),
        Some("portico")
    );
    assert!(hpa["spec"]["minReplicas"].as_i64().unwrap() >= 2);
}
