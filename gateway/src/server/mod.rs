//! The server: binds the listeners, runs the request pipeline, drains on shutdown.
//!
//! `pipeline` is the request path, written down in one place; `listener` accepts and
//! speaks HTTP; `state` holds the live snapshot; `edge` has the small edge helpers.

mod edge;
mod framing;
mod listener;
pub mod pipeline;
mod state;
pub mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub(crate) use edge::request_id;
pub use pipeline::ConnInfo;
pub use state::{Edge, Gateway, ReloadStats, Reloader, RouteEntry, RouteHandler, Snapshot};

use crate::config::Config;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS settings were refused.
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// Listeners bound and ready to serve.
pub struct Bound {
    gateway: Arc<Gateway>,
    listener: TcpListener,
    admin: Option<(TcpListener, Option<String>)>,
    tls: Option<TlsAcceptor>,
    /// The public address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// The admin address actually bound.
    pub admin_addr: Option<SocketAddr>,
}

/// Binds the public and admin listeners. `listen` / `admin_listen` override the config.
pub async fn bind(
    config: Config,
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
) -> Result<Bound, Error> {
    let addr = listen.unwrap_or(config.server.listen);
    let tls = config
        .server
        .tls
        .as_ref()
        .map(listener::tls_acceptor)
        .transpose()?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let admin = match (&config.admin, admin_listen) {
        (None, None) => None,
        (cfg, over) => {
            let a = over.or(cfg.as_ref().map(|c| c.listen)).unwrap_or(addr);
            let token = cfg.as_ref().and_then(|c| c.token.clone());
            let l = TcpListener::bind(a)
                .await
                .map_err(|source| Error::Bind { addr: a, source })?;
            Some((l, token))
        }
    };
    let gateway = Gateway::new(config);
    Ok(Bound {
        addr: listener.local_addr().unwrap_or(addr),
        admin_addr: admin.as_ref().and_then(|(l, _)| l.local_addr().ok()),
        gateway,
        listener,
        admin,
        tls,
    })
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("addr", &self.addr)
            .field("admin_addr", &self.admin_addr)
            .finish()
    }
}

impl Bound {
    /// The gateway behind the listeners.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.gateway.clone()
    }

    /// Whether the public listener speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` resolves, then drains: stops accepting, answers `/ready`
    /// with 503 and gives in-flight requests `server.shutdown_grace` to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let grace = self.gateway.snapshot().config.server.shutdown_grace;
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_task = self.admin.map(|(l, token)| {
            let router = crate::admin::router(self.gateway.clone(), token);
            tokio::spawn(async move {
                let stop = async {
                    let _ = admin_stopped.await;
                };
                if let Err(e) = axum::serve(l, router).with_graceful_shutdown(stop).await {
                    tracing::error!(error = %e, "admin listener failed");
                }
            })
        });
        let gateway = self.gateway.clone();
        listener::serve(self.gateway, self.listener, self.tls, grace, shutdown).await;
        let _ = stop_admin.send(());
        if let Some(t) = admin_task {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), t).await;
        }
        // The spans of the last requests leave before the process does.
        if let Some(tracer) = &gateway.snapshot().tracer {
            tracer.flush(std::time::Duration::from_secs(2)).await;
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}
