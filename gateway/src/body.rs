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
use tokio::sync::Notify;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::upstream::PooledBody;

/// Errors inside bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The gateway's response body.
#[derive(Debug)]
pub enum ResponseBody {
    /// A backend's body, streamed.
    Upstream(PooledBody),
    /// A body made by the gateway.
    Full(Full<Bytes>),
    /// A backend's body, streamed, with a copy kept for a shadow comparison.
    Teed(PooledBody, Tee),
    /// A body whose start was read (to look at it) before the rest streams on.
    Resumed(Option<Bytes>, Box<ResponseBody>),
}

/// What [`ResponseBody::read_up_to`] found.
#[derive(Debug)]
pub enum Read {
    /// The whole body, at most the cap.
    Whole(Bytes),
    /// Larger than the cap: the body as it was, to stream on untouched.
    TooLarge(ResponseBody),
    /// The body broke off.
    Broken,
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
    pub fn upstream(body: PooledBody) -> Self {
        ResponseBody::Upstream(body)
    }

    /// Reads the body in full if it is at most `cap` bytes; a larger one is handed back
    /// whole (what was read, then the rest), so it can still stream to the client.
    pub async fn read_up_to(mut self, cap: usize) -> Read {
        use http_body_util::BodyExt;
        let mut buf = bytes::BytesMut::new();
        loop {
            match self.frame().await {
                None => return Read::Whole(buf.freeze()),
                Some(Err(_)) => return Read::Broken,
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        buf.extend_from_slice(data);
                    }
                    if buf.len() > cap {
                        return Read::TooLarge(ResponseBody::Resumed(
                            Some(buf.freeze()),
                            Box::new(self),
                        ));
                    }
                }
            }
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // All bodies are `Unpin`.
        match self.get_mut() {
            ResponseBody::Upstream(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            ResponseBody::Teed(body, tee) => {
                let polled = Pin::new(&mut *body).poll_frame(cx).map_err(Into::into);
                tee.observe(&polled, body.is_end_stream());
                polled
            }
            ResponseBody::Full(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            ResponseBody::Resumed(start, rest) => match start.take() {
                Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                None => Pin::new(rest.as_mut()).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Upstream(body) | ResponseBody::Teed(body, _) => body.is_end_stream(),
            ResponseBody::Full(body) => body.is_end_stream(),
            ResponseBody::Resumed(start, rest) => start.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Upstream(body) | ResponseBody::Teed(body, _) => body.size_hint(),
            ResponseBody::Full(body) => body.size_hint(),
            ResponseBody::Resumed(..) => SizeHint::default(),
        }
    }
}

/// The request body was larger than allowed.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit")]
pub struct TooLarge;

/// Shared between a [`LimitedBody`] and the request that sends it: set (and notified)
/// when the body went past its limit, so the request can answer 413 at once instead of
/// waiting for the backend to notice the broken stream; and set when the client's body
/// stream broke, so the answer is the client's fault (400), not the backend's.
#[derive(Debug, Default)]
pub struct Overflow {
    exceeded: AtomicBool,
    client_error: AtomicBool,
    finished: AtomicBool,
    notify: Notify,
}

impl Overflow {
    /// Whether the limit was exceeded.
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Acquire)
    }

    /// Whether the whole body has been read (and so sent on).
    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Whether the client's body stream broke (bad chunk, reset) on its way through.
    pub fn client_error(&self) -> bool {
        self.client_error.load(Ordering::Acquire)
    }

    /// Resolves once the limit is exceeded.
    pub async fn wait(&self) {
        let notified = self.notify.notified();
        if self.exceeded() {
            return;
        }
        notified.await;
    }

    fn trip(&self) {
        self.exceeded.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// A client's request body: as it arrives, or already read in full by a layer that
/// needed to see it (idempotency).
#[derive(Debug)]
pub enum ClientBody {
    /// Streaming from the client.
    Incoming(Incoming),
    /// Read in full (`None` once sent).
    Read(Option<Bytes>),
}

impl ClientBody {
    /// A body read in full.
    pub fn read(bytes: Bytes) -> Self {
        ClientBody::Read((!bytes.is_empty()).then_some(bytes))
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        // Both variants are `Unpin`.
        match self.get_mut() {
            ClientBody::Incoming(body) => Pin::new(body).poll_frame(cx),
            ClientBody::Read(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Incoming(body) => body.is_end_stream(),
            ClientBody::Read(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Incoming(body) => body.size_hint(),
            ClientBody::Read(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A client's request body, counted while it streams to the backend.
    pub struct LimitedBody {
        #[pin]
        inner: ClientBody,
        first: Option<Frame<Bytes>>,
        remaining: u64,
        overflow: Option<Arc<Overflow>>,
        tee: Option<Tee>,
    }
}

impl LimitedBody {
    /// Wraps `inner`, allowing at most `limit` bytes; `overflow` trips when it overflows.
    /// `first` is a frame already read from `inner` (see [`peek`]); it is sent first.
    /// Without `overflow` (a bodiless request) nothing is counted.
    pub fn new(
        inner: ClientBody,
        first: Option<Frame<Bytes>>,
        limit: u64,
        overflow: Option<Arc<Overflow>>,
    ) -> Self {
        Self {
            inner,
            first,
            remaining: limit,
            overflow,
            tee: None,
        }
    }
}

impl std::fmt::Debug for LimitedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitedBody")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl LimitedBody {
    /// Keeps a copy of the body (up to the tee's cap) for a shadow request.
    pub fn set_tee(&mut self, tee: Tee) {
        self.tee = Some(tee);
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let frame = match this.first.take() {
            Some(frame) => frame,
            None => match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(Some(Err(e))) => {
                    if let Some(o) = this.overflow {
                        o.client_error.store(true, Ordering::Release);
                    }
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Poll::Ready(None) => {
                    if let Some(tee) = this.tee {
                        tee.finish();
                    }
                    if let Some(o) = this.overflow {
                        o.finished.store(true, Ordering::Release);
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            },
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if len > *this.remaining {
                if let Some(o) = this.overflow {
                    o.trip();
                }
                return Poll::Ready(Some(Err(Box::new(TooLarge))));
            }
            *this.remaining -= len;
            if let Some(tee) = this.tee {
                tee.push(data);
            }
        }
        // hyper may not poll again once the body says it is complete.
        if frame.is_trailers() || (this.first.is_none() && this.inner.is_end_stream()) {
            if let Some(tee) = this.tee {
                tee.finish();
            }
            if let Some(o) = this.overflow {
                o.finished.store(true, Ordering::Release);
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.first {
            None => self.inner.size_hint(),
            Some(_) => SizeHint::default(),
        }
    }
}

/// Reads the first frame of a request body before anything is sent to a backend, so a
/// body that is malformed from its first byte (a bad chunk size) is refused with a 400
/// and never reaches a backend. `Ok(None)`: the body is empty.
pub async fn peek(body: &mut ClientBody) -> Result<Option<Frame<Bytes>>, hyper::Error> {
    use http_body_util::BodyExt;
    if body.is_end_stream() {
        return Ok(None);
    }
    body.frame().await.transpose()
}

/// Keeps a copy of a body as it streams past, up to a cap, and hands it over at its end
/// (`None` when it was larger than the cap). Never waits: a dropped receiver is fine,
/// and a body that ends early drops the sender, which the receiver sees as an error.
#[derive(Debug)]
pub struct Tee {
    buf: bytes::BytesMut,
    cap: usize,
    over: bool,
    done: Option<tokio::sync::oneshot::Sender<Option<Bytes>>>,
}

impl Tee {
    /// A tee keeping at most `cap` bytes, and the receiver of the copy.
    pub fn new(cap: usize) -> (Tee, tokio::sync::oneshot::Receiver<Option<Bytes>>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (
            Tee {
                buf: bytes::BytesMut::new(),
                cap,
                over: false,
                done: Some(tx),
            },
            rx,
        )
    }

    fn push(&mut self, data: &Bytes) {
        if self.over || self.done.is_none() {
            return;
        }
        if self.buf.len() + data.len() > self.cap {
            self.over = true;
            self.buf = bytes::BytesMut::new();
        } else {
            self.buf.extend_from_slice(data);
        }
    }

    /// Hands the copy over now (for a body that is already complete).
    pub fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            let copy = (!self.over).then(|| std::mem::take(&mut self.buf).freeze());
            let _ = done.send(copy);
        }
    }

    fn observe<E>(&mut self, polled: &Poll<Option<Result<Frame<Bytes>, E>>>, end: bool) {
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.push(data);
                }
                // hyper stops polling after trailers.
                if end || frame.is_trailers() {
                    self.finish();
                }
            }
            Poll::Ready(None) => self.finish(),
            // A broken body: drop the sender so the receiver knows.
            Poll::Ready(Some(Err(_))) => self.done = None,
            Poll::Pending => {}
        }
    }
}

/// A request body on its way to a backend: the client's (streamed, counted) or bytes
/// the gateway holds (a shadow copy).
#[derive(Debug)]
pub enum UpstreamBody {
    /// The client's body.
    Client(LimitedBody),
    /// Bytes held by the gateway.
    Full(Full<Bytes>),
}

impl UpstreamBody {
    /// The client body's progress, if this is a client body with content.
    pub fn progress(&self) -> Option<Arc<Overflow>> {
        match self {
            UpstreamBody::Client(b) => b.overflow.clone(),
            UpstreamBody::Full(_) => None,
        }
    }

    /// A body of bytes the gateway holds.
    pub fn full(bytes: Bytes) -> Self {
        UpstreamBody::Full(Full::new(bytes))
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // `LimitedBody` and `Full` are `Unpin`.
        match self.get_mut() {
            UpstreamBody::Client(b) => Pin::new(b).poll_frame(cx),
            UpstreamBody::Full(b) => Pin::new(b).poll_frame(cx).map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Client(b) => b.is_end_stream(),
            UpstreamBody::Full(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Client(b) => b.size_hint(),
            UpstreamBody::Full(b) => b.size_hint(),
        }
    }
}
