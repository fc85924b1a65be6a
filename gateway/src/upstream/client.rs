//! The client of one backend: its instances (each with a connection pool), round-robin
//! between them, and the per-attempt timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response};

use super::pool::{Instance, PooledBody};
use crate::body::UpstreamBody;
use crate::config;

/// Why a backend call failed. The source is kept for the log, never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection could not be made (refused, unreachable, connect timeout).
    #[error("connect failed: {0}")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend did not answer within the attempt timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The connection broke or the backend sent an invalid response.
    #[error("request failed: {0}")]
    Failed(#[source] hyper::Error),
}

/// One backend: its instances and its per-attempt timeout.
#[derive(Debug)]
pub struct Upstream {
    name: String,
    instances: Vec<Arc<Instance>>,
    next: AtomicUsize,
    timeout: Duration,
}

impl Upstream {
    /// Builds the client of a backend.
    pub fn new(backend: &config::Backend) -> Self {
        let instances = backend
            .instances
            .iter()
            .map(|i| {
                Arc::new(Instance::new(
                    i.authority.clone(),
                    i.base_path.clone(),
                    backend.connect_timeout,
                ))
            })
            .collect();
        Self {
            name: backend.name.clone(),
            instances,
            next: AtomicUsize::new(0),
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

    /// The instance for the next request (round-robin).
    pub fn pick(&self) -> &Arc<Instance> {
        if self.instances.len() == 1 {
            return &self.instances[0];
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.instances.len();
        &self.instances[i]
    }

    /// Sends one attempt to `instance`, bounded by `min(timeout, budget)`.
    pub async fn send(
        &self,
        instance: &Arc<Instance>,
        req: Request<UpstreamBody>,
        budget: Duration,
    ) -> Result<Response<PooledBody>, Error> {
        let limit = self.timeout.min(budget);
        match tokio::time::timeout(limit, instance.send(req)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(limit)),
        }
    }
}
