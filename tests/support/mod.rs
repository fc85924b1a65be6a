//! Test support: a backend we control, the real `portico` binary, and small clients.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A backend on 127.0.0.1:0 whose behaviour is chosen by path:
/// `/echo…` (what it received, as JSON), `/status/N`, `/delay/MS`, `/bytes/N` (streamed),
/// `/sink` (counts a streamed upload), `/sse` (3 events 100 ms apart), `/ws` (upgrade +
/// echo), `/hop` (answers with hop-by-hop headers), `/reset` (drops the connection
/// without answering), `/cut` (sends half a body, then drops the connection).
pub struct Backend {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    /// Connections accepted so far.
    pub conns: Arc<AtomicUsize>,
}

impl Backend {
    pub async fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let c = conns.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let hits = h.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        hits.fetch_add(1, Ordering::SeqCst);
                        handle(req)
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend { addr, hits, conns }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn full(b: impl Into<Bytes>) -> BoxBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// Streams `remaining` bytes in 64 KiB chunks without holding them.
struct Zeros {
    remaining: u64,
}

impl Body for Zeros {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(64 * 1024);
        self.remaining -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'z'; n as usize])))))
    }
}

/// A body fed from a channel (for SSE with gaps).
struct Channel(tokio::sync::mpsc::Receiver<Bytes>);

impl Body for Channel {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

async fn handle(
    mut req: Request<Incoming>,
) -> Result<Response<BoxBody>, Box<dyn std::error::Error + Send + Sync>> {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let res = match segs.as_slice() {
        ["status", code, ..] => {
            let code = code.parse().unwrap_or(500);
            Response::builder()
                .status(code)
                .body(full(format!(
                    "{{\"status\":{code},\"secret\":\"backend-internal-detail\"}}"
                )))
                .unwrap()
        }
        ["delay", ms, ..] => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            Response::new(full("{\"slow\":true}"))
        }
        // An error from the service makes hyper drop the connection unanswered.
        ["reset"] => return Err("reset by test backend".into()),
        ["cut"] => {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"{\"partial\": ")).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                // Dropping the sender ends the body short of its declared length.
            });
            Response::builder()
                .header("content-length", "1000")
                .body(Channel(rx).boxed())
                .unwrap()
        }
        ["bytes", n] => Response::new(
            Zeros {
                remaining: n.parse().unwrap_or(0),
            }
            .boxed(),
        ),
        ["sink"] => {
            let mut body = req.into_body();
            let mut total: u64 = 0;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => total += f.data_ref().map_or(0, |d| d.len() as u64),
                    Err(_) => {
                        return Ok(Response::builder()
                            .status(499)
                            .body(full("aborted"))
                            .unwrap());
                    }
                }
            }
            Response::new(full(json!({ "received": total }).to_string()))
        }
        ["sse"] => {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tokio::spawn(async move {
                for i in 0..3 {
                    if tx
                        .send(Bytes::from(format!("data: event {i}\n\n")))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Channel(rx).boxed())
                .unwrap()
        }
        ["ws"] => {
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = upgrade.await {
                    let mut io = TokioIo::new(up);
                    let mut buf = [0u8; 1024];
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .body(full(""))
                .unwrap()
        }
        ["hop"] => Response::builder()
            .header("connection", "x-hop-secret")
            .header("x-hop-secret", "1")
            .header("keep-alive", "timeout=5")
            .header("x-end-to-end", "kept")
            .body(full("{}"))
            .unwrap(),
        _ => {
            let method = req.method().to_string();
            let uri = req.uri().to_string();
            let headers: serde_json::Map<String, Value> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        Value::String(v.to_str().unwrap_or("?").to_string()),
                    )
                })
                .collect();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let echo = json!({
                "method": method,
                "uri": uri,
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
            });
            Response::builder()
                .header("content-type", "application/json")
                .body(full(echo.to_string()))
                .unwrap()
        }
    };
    Ok(res)
}

/// A config directory in a temp folder.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
}

impl ConfigDir {
    pub fn new(gateway: &str, routes: &[(&str, &str)]) -> ConfigDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gateway.yaml"), gateway).unwrap();
        std::fs::create_dir(dir.path().join("routes")).unwrap();
        for (name, text) in routes {
            std::fs::write(dir.path().join("routes").join(name), text).unwrap();
        }
        ConfigDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portico"))
}

/// The real `portico serve` process on port 0.
pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub tls: bool,
    pub logs: Arc<Mutex<String>>,
    _config: Option<ConfigDir>,
}

impl Gateway {
    /// Starts `portico serve` on `config` and waits until it is listening.
    pub fn serve(config: ConfigDir) -> Gateway {
        let mut g = Self::spawn(&[
            "serve",
            "--config",
            config.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ]);
        g._config = Some(config);
        g
    }

    pub fn spawn(args: &[&str]) -> Gateway {
        Self::spawn_with_env(args, &[])
    }

    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Gateway {
        let mut child = Command::new(bin())
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("portico starts");
        let logs = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let l = logs.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                l.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let l = logs.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                let _ = tx.send(line.clone());
                l.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let mut addr = None;
        let mut admin = None;
        let mut tls = false;
        while addr.is_none() || admin.is_none() {
            let line = match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(l) => l,
                Err(_) => panic!("portico did not start; output:\n{}", logs.lock().unwrap()),
            };
            if let Some(rest) = line.trim().strip_prefix("portico: listening on ") {
                tls = rest.starts_with("https://");
                addr = Some(rest.split("://").nth(1).unwrap().parse().unwrap());
            }
            if let Some(rest) = line.trim().strip_prefix("portico: admin on http://") {
                admin = Some(rest.parse().unwrap());
            }
        }
        Gateway {
            child,
            addr: addr.unwrap(),
            admin,
            tls,
            logs,
            _config: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin.unwrap())
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the gateway process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2c_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A response read whole.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn send(client: &HttpClient, req: Request<Full<Bytes>>) -> Got {
    let res = client.request(req).await.expect("request sent");
    let (parts, body) = res.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(url: &str) -> Got {
    send(&client(), Request::get(url).body(Full::default()).unwrap()).await
}

/// Checks that a gateway-made error is problem+json with `code` and a request id, and
/// leaks nothing about backends.
pub fn assert_problem(got: &Got, status: u16, code: &str) {
    assert_eq!(got.status.as_u16(), status, "body: {}", got.text());
    assert_eq!(got.header("content-type"), Some("application/problem+json"));
    let body = got.json();
    assert_eq!(body["code"], code);
    assert_eq!(body["status"], status);
    for member in ["type", "title", "detail"] {
        assert!(body[member].is_string(), "{member} missing in {body}");
    }
    let rid = got.header("x-request-id").expect("x-request-id echoed");
    assert_eq!(body["request_id"], rid);
    let text = got.text();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("backend-internal-detail"),
        "leaks internals: {text}"
    );
}

/// Writes raw bytes to the gateway and reads what comes back until the server closes
/// or `wait` passes (on a blocking thread, so backends in this runtime keep running).
pub async fn raw(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    let request = request.to_vec();
    tokio::task::spawn_blocking(move || raw_blocking(addr, &request, wait))
        .await
        .unwrap()
}

fn raw_blocking(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.set_write_timeout(Some(wait)).unwrap();
    // The gateway may answer (and stop reading) before the whole request is written.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A gateway.yaml with one backend `b` at `url` and extra top-level YAML appended.
pub fn gateway_yaml(url: &str, extra_backend: &str, extra: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:0\n  shutdown_grace: 5s\nadmin:\n  listen: 127.0.0.1:0\nbackends:\n  b:\n    url: {url}\n    timeout: 1s\n{extra_backend}{extra}"
    )
}

/// `portico validate --config DIR`: the exit code and everything it printed.
pub fn validate_dir(dir: &ConfigDir) -> (i32, String) {
    let out = Command::new(bin())
        .args(["validate", "--config", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `http://127.0.0.1:PORT` where nothing listens (connection refused).
pub fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// Lower-case hex SHA-256 (API keys are configured by their hash).
pub fn sha256_hex(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a silent raw-TCP backend saw on connection N.
#[derive(Debug)]
pub enum SilentEvent {
    Request(usize),
    Closed(usize, std::time::Instant),
}

/// A raw TCP backend that reads request heads, never answers, and reports when the
/// gateway closes a connection (read returns 0 or fails).
pub async fn silent_backend() -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<SilentEvent>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut next = 0;
        while let Ok((mut stream, _)) = listener.accept().await {
            next += 1;
            let conn = next;
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                let mut requested = false;
                loop {
                    match tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await {
                        Ok(0) | Err(_) => {
                            let _ = tx.send(SilentEvent::Closed(conn, std::time::Instant::now()));
                            return;
                        }
                        Ok(n) if !requested => {
                            head.extend_from_slice(&buf[..n]);
                            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                                requested = true;
                                let _ = tx.send(SilentEvent::Request(conn));
                            }
                        }
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// One request a [`Recorder`] received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as received.
    pub uri: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }

    /// The raw query string (empty when there is none).
    pub fn query(&self) -> &str {
        self.uri.split_once('?').map_or("", |(_, q)| q)
    }

    /// The raw value of query parameter `name` (not decoded).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query()
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// The last path segment.
    pub fn last(&self) -> &str {
        self.path().rsplit('/').next().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON (`null` when empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What a [`Recorder`] answers to one request.
#[derive(Debug)]
pub enum Canned {
    /// 200 `application/json`.
    Json(Value),
    /// This status, `application/json`, a body holding `backend-internal-detail`.
    Status(u16),
    /// 200 with this content type and body text.
    Text(&'static str, String),
    /// The inner answer after this long.
    After(Duration, Box<Canned>),
    /// This status, these headers, this body.
    Full(u16, Vec<(&'static str, String)>, String),
    /// Never answers (the connection stays open).
    Hang,
}

type CannedScript = Arc<dyn Fn(&Recorded) -> Canned + Send + Sync>;

/// A backend on 127.0.0.1:0 that records every request (in arrival order, as soon as
/// its body is read) and answers what its script says.
pub struct Recorder {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Recorded>>>,
    count: tokio::sync::watch::Receiver<usize>,
}

impl Recorder {
    pub async fn start(script: impl Fn(&Recorded) -> Canned + Send + Sync + 'static) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let (tx, count) = tokio::sync::watch::channel(0);
        let tx = Arc::new(tx);
        let script: CannedScript = Arc::new(script);
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, script, tx) = (log.clone(), script.clone(), tx.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        recorder_answer(log.clone(), script.clone(), tx.clone(), req)
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Recorder { addr, seen, count }
    }

    /// Answers every request with this JSON.
    pub async fn json(v: Value) -> Recorder {
        Recorder::start(move |_| Canned::Json(v.clone())).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn seen(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    /// Forgets the requests seen so far (counting starts again at 0).
    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    /// Path and query of every request, in arrival order.
    pub fn uris(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.uri).collect()
    }

    /// Waits until at least `n` requests arrived; panics after `within`.
    pub async fn wait_for_hits(&self, n: usize, within: Duration) {
        let mut count = self.count.clone();
        let reached = tokio::time::timeout(within, count.wait_for(|c| *c >= n)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "{} requests within {within:?}, expected {n}",
            self.hits()
        );
    }
}

async fn recorder_answer(
    log: Arc<Mutex<Vec<Recorded>>>,
    script: CannedScript,
    count: Arc<tokio::sync::watch::Sender<usize>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let seen = Recorded {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body,
    };
    let n = {
        let mut log = log.lock().unwrap();
        log.push(seen.clone());
        log.len()
    };
    count.send_replace(n);
    let mut canned = script(&seen);
    loop {
        let res = Response::builder();
        return Ok(match canned {
            Canned::After(wait, next) => {
                tokio::time::sleep(wait).await;
                canned = *next;
                continue;
            }
            Canned::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                res.body(Full::from("{}")).unwrap()
            }
            Canned::Json(v) => res
                .header("content-type", "application/json")
                .body(Full::from(v.to_string()))
                .unwrap(),
            Canned::Status(code) => res
                .status(code)
                .header("content-type", "application/json")
                .body(Full::from(
                    json!({ "status": code, "error": "backend-internal-detail" }).to_string(),
                ))
                .unwrap(),
            Canned::Full(status, headers, body) => {
                let mut res = res.status(status);
                for (name, value) in headers {
                    res = res.header(name, value);
                }
                res.body(Full::from(body)).unwrap()
            }
            Canned::Text(content_type, text) => res
                .header("content-type", content_type)
                .body(Full::from(text))
                .unwrap(),
        });
    }
}
