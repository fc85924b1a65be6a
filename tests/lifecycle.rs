//! Black-box: graceful shutdown, the admin listener, TLS.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use support::*;

const ROUTES: &str = r#"
team: api
prefix: /api
auth: none
routes:
  - id: pass
    path: /{*rest}
    proxy: { backend: b }
"#;

#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let backend = Backend::start().await;
    let yaml =
        gateway_yaml(&backend.url(), "", "").replace("    timeout: 1s\n", "    timeout: 10s\n");
    let mut gw = Gateway::serve(ConfigDir::new(&yaml, &[("api.yaml", ROUTES)]));
    assert_eq!(get(&gw.admin_url("/ready")).await.status, 200);
    let url = gw.url("/api/delay/800");
    let in_flight = tokio::spawn(async move { get(&url).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.signal("TERM");
    // While draining: not ready, and no new connections.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let client = client();
        let r = client
            .request(
                Request::get(gw.admin_url("/ready"))
                    .body(Full::<Bytes>::default())
                    .unwrap(),
            )
            .await;
        if let Ok(r) = r
            && r.status() == 503
        {
            let body = r.into_body().collect().await.unwrap().to_bytes();
            assert!(String::from_utf8_lossy(&body).contains("draining"));
            break;
        }
        assert!(Instant::now() < deadline, "/ready never said draining");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        std::net::TcpStream::connect(gw.addr).is_err(),
        "still accepting while draining"
    );
    let got = in_flight.await.unwrap();
    assert_eq!(got.status, 200, "the in-flight request finished");
    assert_eq!(gw.wait_exit(Duration::from_secs(5)), Some(0));
}

#[tokio::test]
async fn shutdown_grace_bounds_the_drain() {
    let backend = Backend::start().await;
    let yaml = gateway_yaml(&backend.url(), "", "")
        .replace("    timeout: 1s\n", "    timeout: 30s\n")
        .replace("shutdown_grace: 5s", "shutdown_grace: 300ms");
    let mut gw = Gateway::serve(ConfigDir::new(&yaml, &[("api.yaml", ROUTES)]));
    let url = gw.url("/api/delay/20000");
    let _hung = tokio::spawn(async move {
        client()
            .request(Request::get(url).body(Full::<Bytes>::default()).unwrap())
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    gw.signal("INT");
    assert_eq!(gw.wait_exit(Duration::from_secs(5)), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "exited after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn admin_endpoints_and_token() {
    let backend = Backend::start().await;
    let yaml = gateway_yaml(&backend.url(), "", "").replace(
        "admin:\n  listen: 127.0.0.1:0\n",
        "admin:\n  listen: 127.0.0.1:0\n  token: ${TEST_ADMIN_TOKEN}\n",
    );
    let dir = ConfigDir::new(&yaml, &[("api.yaml", ROUTES)]);
    let gw = Gateway::spawn_with_env(
        &[
            "serve",
            "--config",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &[("TEST_ADMIN_TOKEN", "s3cret-admin-token-0123456789")],
    );
    let got = get(&gw.admin_url("/routes")).await;
    assert_problem_admin(&got, 401);
    let wrong = send(
        &client(),
        Request::get(gw.admin_url("/health"))
            .header("authorization", "Bearer nope")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_problem_admin(&wrong, 401);
    let auth = |path: &str| {
        Request::get(gw.admin_url(path))
            .header("authorization", "Bearer s3cret-admin-token-0123456789")
            .body(Full::default())
            .unwrap()
    };
    let got = send(&client(), auth("/health")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["status"], "ok");
    let got = send(&client(), auth("/ready")).await;
    assert_eq!(got.json()["status"], "ready");
    let got = send(&client(), auth("/routes")).await;
    let routes = got.json();
    assert_eq!(routes["routes"][0]["id"], "pass");
    assert_eq!(routes["routes"][0]["team"], "api");
    assert_eq!(routes["routes"][0]["path"], "/api/{*rest}");
    assert_eq!(routes["routes"][0]["handler"], "proxy");
    assert_eq!(routes["routes"][0]["backends"][0], "b");
    assert_eq!(routes["routes"][0]["methods"][0], "*");
    // Admin endpoints are not reachable through the public listener.
    for path in ["/health", "/ready", "/routes"] {
        assert_problem(&get(&gw.url(path)).await, 404, "ROUTE_NOT_FOUND");
    }
}

fn assert_problem_admin(got: &Got, status: u16) {
    assert_eq!(got.status.as_u16(), status);
    assert_eq!(got.header("content-type"), Some("application/problem+json"));
}

#[tokio::test]
async fn tls_with_alpn_h2_and_http11() {
    let backend = Backend::start().await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let yaml = gateway_yaml(&backend.url(), "", "").replace(
        "  shutdown_grace: 5s\n",
        "  shutdown_grace: 5s\n  tls: { cert: tls.crt, key: tls.key }\n",
    );
    let dir = ConfigDir::new(&yaml, &[("api.yaml", ROUTES)]);
    std::fs::write(dir.path().join("tls.crt"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), cert.signing_key.serialize_pem()).unwrap();
    let gw = Gateway::serve(dir);
    assert!(gw.tls);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    for (alpn, version) in [
        (&b"h2"[..], http::Version::HTTP_2),
        (&b"http/1.1"[..], http::Version::HTTP_11),
    ] {
        let mut cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        cfg.alpn_protocols = vec![alpn.to_vec()];
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let tls = connector
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        let req = Request::get(format!("https://localhost:{}/api/echo", gw.addr.port()))
            .body(Full::<Bytes>::default())
            .unwrap();
        let res = if version == http::Version::HTTP_2 {
            let (mut send, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                TokioIo::new(tls),
            )
            .await
            .unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut req = req;
            req.headers_mut()
                .insert("host", "localhost".parse().unwrap());
            send.send_request(req).await.unwrap()
        };
        assert_eq!(res.version(), version);
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
    }
}
