//! The keep-alive connection pool of one backend instance, over hyper's HTTP/1 client
//! connection.
//!
//! Idle connections are kept last-in-first-out (the warmest first), checked for
//! closure and age on checkout, and returned when the response body has been read to
//! its end. A response body dropped early closes its connection instead. A request that
//! a reused connection refused before writing any of it (the backend closed the idle
//! connection just then) is sent once more on a new connection.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::Error;
use super::client::InFlight;
use crate::body::{Overflow, UpstreamBody};

type Sender = SendRequest<UpstreamBody>;

struct Idle {
    sender: Sender,
    since: Instant,
}

/// The connections of one backend instance: where it is, and its idle connections.
pub struct Pool {
    authority: Authority,
    host: HeaderValue,
    base_path: String,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool for the instance at `authority` whose paths start with `base_path`.
    pub(crate) fn new(authority: Authority, base_path: String, connect_timeout: Duration) -> Self {
        let host = HeaderValue::from_str(authority.as_str())
            .unwrap_or(HeaderValue::from_static("localhost"));
        Self {
            authority,
            host,
            base_path,
            connect_timeout,
            idle_timeout: Duration::from_secs(60),
            max_idle: 1024,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// `host:port`.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The origin-form request target for `path_and_query` on this instance.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        let path = if self.base_path.is_empty() {
            PathAndQuery::try_from(path_and_query)?
        } else {
            PathAndQuery::try_from(format!("{}{path_and_query}", self.base_path))?
        };
        Ok(Uri::from(path))
    }

    /// The instance's base path (`""` for none).
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // A panic while holding this lock cannot leave the list inconsistent.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A ready connection: an idle one if there is one, else a new one. The flag says
    /// whether it was reused.
    async fn checkout_sender(&self) -> Result<(Sender, bool), Error> {
        loop {
            let idle = self.lock().pop();
            let Some(Idle { mut sender, since }) = idle else {
                // Boxed: the connect future is large and rare; the common path stays small.
                return Ok((Box::pin(self.connect()).await?, false));
            };
            if sender.is_closed() || since.elapsed() > self.idle_timeout {
                continue;
            }
            // Just released: its connection task is finishing the last exchange (a
            // connection still sending a request body is never pooled, see `Lease`).
            if sender.is_ready() || sender.ready().await.is_ok() {
                return Ok((sender, true));
            }
        }
    }

    async fn connect(&self) -> Result<Sender, Error> {
        let connect = tokio::net::TcpStream::connect(self.authority.as_str());
        let stream = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(Error::Connect(e.into())),
            Err(_) => return Err(Error::Connect("connect timed out".into())),
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Error::Connect(e.into()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "backend connection ended with an error");
            }
        });
        Ok(sender)
    }

    fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// A connection ready to send on: an idle one, or a new one. Nothing has been sent
    /// when this fails, so the request may go elsewhere.
    pub(crate) async fn checkout(self: &Arc<Self>) -> Result<Conn, Error> {
        let (sender, reused) = self.checkout_sender().await?;
        Ok(Conn {
            pool: self.clone(),
            sender,
            reused,
        })
    }

    /// Sends `req` (origin-form URI) on a pooled connection.
    pub(crate) async fn send(
        self: &Arc<Self>,
        req: Request<UpstreamBody>,
    ) -> Result<Response<PooledBody>, Error> {
        self.checkout().await?.send(req).await
    }
}

/// A connection checked out of a [`Pool`], ready for one request.
pub(crate) struct Conn {
    pool: Arc<Pool>,
    sender: Sender,
    reused: bool,
}

impl Conn {
    /// Sends `req` (origin-form URI) on this connection.
    pub(crate) async fn send(
        self,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<PooledBody>, Error> {
        let Conn {
            pool,
            mut sender,
            reused,
        } = self;
        req.headers_mut().insert(HOST, pool.host.clone());
        let request_body = req.body().progress();
        let res = match sender.try_send_request(req).await {
            Ok(res) => res,
            Err(mut e) => match e.take_message() {
                // Refused before a byte was written (a stale idle connection): safe to
                // send on a fresh connection, whatever the method.
                Some(req) if reused => {
                    sender = Box::pin(pool.connect()).await?;
                    sender
                        .try_send_request(req)
                        .await
                        .map_err(|e| Error::Failed(e.into_error()))?
                }
                _ => return Err(Error::Failed(e.into_error())),
            },
        };
        Ok(pool.finish(res, sender, request_body))
    }
}

impl Pool {
    fn finish(
        self: &Arc<Self>,
        res: Response<Incoming>,
        sender: Sender,
        request_body: Option<Arc<Overflow>>,
    ) -> Response<PooledBody> {
        if res.status() == StatusCode::SWITCHING_PROTOCOLS {
            // The connection now belongs to the upgrade.
            return res.map(|body| PooledBody {
                body,
                lease: None,
                held: None,
            });
        }
        let (parts, body) = res.into_parts();
        let lease = Lease {
            sender,
            pool: self.clone(),
            request_body,
        };
        let lease = if body.is_end_stream() {
            lease.release();
            None
        } else {
            Some(lease)
        };
        Response::from_parts(
            parts,
            PooledBody {
                body,
                lease,
                held: None,
            },
        )
    }
}

/// A connection lent to one exchange.
struct Lease {
    sender: Sender,
    pool: Arc<Pool>,
    /// The request body's progress, when it had one.
    request_body: Option<Arc<Overflow>>,
}

impl Lease {
    /// Back to the pool, unless the request body is still being sent (a backend that
    /// answered early): that connection is busy, so it is closed instead.
    fn release(self) {
        if self.request_body.as_ref().is_none_or(|b| b.finished()) {
            self.pool.put(self.sender);
        }
    }
}

/// A backend's response body; its connection goes back to the pool once the body has
/// been read to the end (its last data frame or its trailers). Until then it also holds
/// the exchange's place in the backend's and the instance's in-flight counts.
pub struct PooledBody {
    body: Incoming,
    lease: Option<Lease>,
    held: Option<InFlight>,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody").finish_non_exhaustive()
    }
}

impl PooledBody {
    fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
        self.held = None;
    }

    /// Keeps `held` until the body ends or is dropped.
    pub(crate) fn hold(&mut self, held: InFlight) {
        if !self.body.is_end_stream() {
            self.held = Some(held);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        // `Incoming` is `Unpin`.
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() || self.body.is_end_stream() => {
                self.release()
            }
            Poll::Ready(Some(Err(_))) => {
                self.lease = None;
                self.held = None;
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
