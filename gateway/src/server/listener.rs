//! The public listener: accepts TCP (and TLS) connections and serves HTTP/1.1 and HTTP/2
//! on them, with graceful draining on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::framing::{FramingGuard, UpgradeSignal};
use super::pipeline::{self, ConnInfo};
use super::state::Gateway;
use crate::config;

/// Builds the TLS acceptor (ALPN: h2, http/1.1).
pub(super) fn tls_acceptor(tls: &config::Tls) -> Result<TlsAcceptor, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(tls.certs.clone(), tls.key.clone_key())?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// hyper's read-buffer cap: a backstop above `max_header_bytes`, which the pipeline
/// checks exactly. The framing guard holds heads up to the same size.
fn max_buf(max_header_bytes: usize) -> usize {
    (max_header_bytes * 2).max(16 * 1024) + 8 * 1024
}

fn builder(max_header_bytes: usize) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        // hyper's own cap is a backstop; the exact limit (with a problem+json 431) is
        // checked in the pipeline.
        .max_buf_size(max_buf(max_header_bytes))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(max_header_bytes * 2).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    b
}

/// Accepts connections until `shutdown` resolves, then stops accepting, marks the
/// gateway as draining and gives in-flight requests up to `grace` to finish.
pub(super) async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let max_header_bytes = gateway.snapshot().edge.max_header_bytes;
    let builder = Arc::new(builder(max_header_bytes));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let max_head = max_buf(max_header_bytes);
        let tls = tls.clone();
        tokio::spawn(async move {
            let signal = Arc::new(UpgradeSignal::default());
            let info = ConnInfo {
                peer,
                tls: tls.is_some(),
                upgrade: Some(signal.clone()),
            };
            let service = service_fn(move |req| {
                let gateway = gateway.clone();
                let info = info.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(pipeline::handle(&gateway, info, req).await)
                }
            });
            match tls {
                None => {
                    // Plain TCP may be HTTP/1: watch its framing (h2c steps the guard aside).
                    let io = TokioIo::new(FramingGuard::new(stream, max_head, signal));
                    let conn = builder.serve_connection_with_upgrades(io, service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await;
                    let Ok(Ok(stream)) = handshake else {
                        tracing::debug!(%peer, "TLS handshake failed or timed out");
                        return;
                    };
                    let result = if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                        let conn =
                            builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        watcher.watch(conn.into_owned()).await
                    } else {
                        let io = TokioIo::new(FramingGuard::new(stream, max_head, signal));
                        let conn = builder.serve_connection_with_upgrades(io, service);
                        watcher.watch(conn.into_owned()).await
                    };
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
            }
        });
    }
    drop(listener);
    gateway.set_draining();
    tracing::info!(grace = ?grace, "draining: no new connections, waiting for in-flight requests");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace elapsed with requests still in flight");
    }
}
