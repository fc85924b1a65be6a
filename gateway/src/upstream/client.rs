//! The pooled HTTP client of one backend.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::LimitedBody;
use crate::config;

/// Why a backend call failed. The source is kept for the log, never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection could not be made (refused, unreachable, connect timeout).
    #[error("connect failed: {0}")]
    Connect(#[source] hyper_util::client::legacy::Error),
    /// The backend did not answer within the attempt timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The connection broke or the backend sent an invalid response.
    #[error("request failed: {0}")]
    Failed(#[source] hyper_util::client::legacy::Error),
}

/// One backend: its instances, its pool and its per-attempt timeout.
#[derive(Debug)]
pub struct Upstream {
    name: String,
    /// `http://host:port/base` of each instance.
    bases: Vec<String>,
    next: AtomicUsize,
    client: Client<HttpConnector, LimitedBody>,
    timeout: Duration,
}

impl Upstream {
    /// Builds the client of a backend.
    pub fn new(backend: &config::Backend) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(backend.connect_timeout));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .build(connector);
        let bases = backend
            .instances
            .iter()
            .map(|i| format!("{}://{}{}", i.scheme, i.authority, i.base_path))
            .collect();
        Self {
            name: backend.name.clone(),
            bases,
            next: AtomicUsize::new(0),
            client,
            timeout: backend.timeout,
        }
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The per-attempt timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The URI for `path_and_query` on the next instance (round-robin).
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        let i = if self.bases.len() == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % self.bases.len()
        };
        let base = &self.bases[i];
        let mut s = String::with_capacity(base.len() + path_and_query.len());
        s.push_str(base);
        s.push_str(path_and_query);
        Ok(Uri::try_from(s)?)
    }

    /// Sends one attempt, bounded by `min(timeout, budget)`.
    pub async fn send(
        &self,
        req: Request<LimitedBody>,
        budget: Duration,
    ) -> Result<Response<Incoming>, Error> {
        let limit = self.timeout.min(budget);
        match tokio::time::timeout(limit, self.client.request(req)).await {
            Ok(Ok(res)) => Ok(res),
            Ok(Err(e)) if e.is_connect() => Err(Error::Connect(e)),
            Ok(Err(e)) => Err(Error::Failed(e)),
            Err(_) => Err(Error::Timeout(limit)),
        }
    }
}
