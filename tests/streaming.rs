//! Black-box: bodies stream both ways with flat memory; WebSocket and SSE pass through.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::*;

const ROUTES: &str = r#"
team: api
prefix: /
auth: none
routes:
  - id: all
    path: /{*rest}
    proxy: { backend: b }
"#;

fn start(backend: &Backend) -> Gateway {
    let yaml = gateway_yaml(&backend.url(), "", "")
        .replace("    timeout: 1s\n", "    timeout: 60s\n")
        .replace(
            "  shutdown_grace: 5s\n",
            "  shutdown_grace: 5s\n  max_body: 200MiB\n",
        );
    Gateway::serve(ConfigDir::new(&yaml, &[("all.yaml", ROUTES)]))
}

/// 100 MB each way through the gateway, read and written in small pieces, while the
/// gateway's resident memory stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_each_way_with_flat_memory() {
    let backend = Backend::start().await;
    let gw = start(&backend);
    let size: u64 = 100 * 1000 * 1000;
    let addr = gw.addr;
    let before = gw.rss_kib();

    // Download: read slowly-ish in 64 KiB pieces.
    let download = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /bytes/{size} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    });
    // Upload: chunked, written in 64 KiB pieces.
    let upload = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "POST /sink HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n").unwrap();
        let piece = vec![b'u'; 64 * 1024];
        let mut sent = 0u64;
        while sent < size {
            let n = (size - sent).min(piece.len() as u64) as usize;
            write!(s, "{n:x}\r\n").unwrap();
            s.write_all(&piece[..n]).unwrap();
            s.write_all(b"\r\n").unwrap();
            sent += n as u64;
        }
        s.write_all(b"0\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    });
    let mut peak = before;
    while !(download.is_finished() && upload.is_finished()) {
        peak = peak.max(gw.rss_kib());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = download.join().unwrap();
    assert!(
        received > size,
        "the whole body arrived ({received} bytes incl. head)"
    );
    let upload_answer = upload.join().unwrap();
    assert!(
        upload_answer.contains(&format!("\"received\":{size}")),
        "{upload_answer}"
    );
    let growth_mib = (peak.saturating_sub(before)) / 1024;
    assert!(
        growth_mib < 40,
        "gateway memory grew by {growth_mib} MiB while streaming 200 MB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_arrive_as_they_are_sent() {
    let backend = Backend::start().await;
    let gw = start(&backend);
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    write!(
        s,
        "GET /sse HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    while !seen.contains("event 0") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let first = started.elapsed();
    assert!(seen.contains("text/event-stream"));
    assert!(
        !seen.contains("event 2"),
        "the first event came before the stream ended"
    );
    assert!(
        first < Duration::from_millis(500),
        "first event after {first:?}"
    );
    while !seen.contains("event 2") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(started.elapsed() >= Duration::from_millis(550));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_tunnelled() {
    let backend = Backend::start().await;
    let gw = start(&backend);
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"));
    for msg in ["hello", "through the tunnel"] {
        s.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
}
