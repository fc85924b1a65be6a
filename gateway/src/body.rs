//! Body types on the request path.
//!
//! [`ResponseBody`] is what the gateway answers with: a backend's streaming body passed
//! through untouched, or a small body the gateway made. [`LimitedBody`] wraps a client's
//! request body on its way to a backend and counts bytes while streaming, failing the
//! stream (and flagging it) past `server.max_body`. Neither buffers.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;

/// Errors inside bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The gateway's response body.
#[derive(Debug)]
pub enum ResponseBody {
    /// A backend's body, streamed.
    Upstream(Incoming),
    /// A body made by the gateway.
    Full(Full<Bytes>),
}

impl ResponseBody {
    /// A body made by the gateway.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ResponseBody::Full(Full::new(bytes.into()))
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::full(Bytes::new())
    }

    /// A backend's streamed body.
    pub fn upstream(body: Incoming) -> Self {
        ResponseBody::Upstream(body)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Both bodies are `Unpin`.
        match self.get_mut() {
            ResponseBody::Upstream(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            ResponseBody::Full(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Upstream(body) => body.is_end_stream(),
            ResponseBody::Full(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Upstream(body) => body.size_hint(),
            ResponseBody::Full(body) => body.size_hint(),
        }
    }
}

/// The request body was larger than allowed.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit")]
pub struct TooLarge;

pin_project_lite::pin_project! {
    /// A client's request body, counted while it streams to the backend.
    pub struct LimitedBody {
        #[pin]
        inner: Incoming,
        remaining: u64,
        exceeded: Arc<AtomicBool>,
    }
}

impl LimitedBody {
    /// Wraps `inner`, allowing at most `limit` bytes; `exceeded` is set when it overflows.
    pub fn new(inner: Incoming, limit: u64, exceeded: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            remaining: limit,
            exceeded,
        }
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > *this.remaining {
                        this.exceeded.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(Box::new(TooLarge))));
                    }
                    *this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
