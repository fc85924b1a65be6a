//! HTTP/1 framing guard: refuses request heads whose message framing is ambiguous
//! (request smuggling shapes) before hyper parses them.
//!
//! hyper resolves `Content-Length` + `Transfer-Encoding` the way RFC 9112 §6.1 allows
//! (chunked wins, the connection closes afterwards) but does not let the service see
//! that the request was ambiguous, and a front proxy that frames by `Content-Length`
//! would disagree with it. This wrapper sits between the socket and hyper on HTTP/1
//! connections: it holds each request head back until `httparse` (the parser hyper
//! uses, with the same settings) finds it complete, checks it, and then either releases
//! it unchanged or replaces it with an internal request (`GET
//! /__portico/framing-error/<secret>/<reason>`, `Connection: close`) that the pipeline
//! answers with a problem+json error. The secret is random per process, so no client
//! can send that request itself. Nothing of a refused request reaches a backend.
//!
//! Bodies are tracked (fixed length, or chunked with hyper's line rules) so the next
//! head is found where hyper will look for it. The guard never steps aside because of
//! size: a head or chunk line past the limits is refused, or the stream is ended. After
//! a request that asks for an upgrade it waits for the pipeline's decision
//! ([`UpgradeSignal`]): a 101 turns it into a plain pipe, anything else resumes
//! watching. Only an HTTP/2 preface at the start of a connection makes it step aside.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// hyper's own cap on chunk extensions is 16 KiB; a size line longer than this ends
/// the stream.
const MAX_CHUNK_LINE: usize = 17 * 1024;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Both `Content-Length` and `Transfer-Encoding`.
    LengthAndChunked,
    /// Several `Content-Length` values that differ, or one that is not a number.
    BadLength,
    /// A `Transfer-Encoding` that does not end in `chunked`, or one on HTTP/1.0.
    BadTransferEncoding,
    /// A head that is not valid HTTP/1.
    Malformed,
    /// A head larger than the server takes.
    TooLarge,
}

const REASONS: [Reason; 5] = [
    Reason::LengthAndChunked,
    Reason::BadLength,
    Reason::BadTransferEncoding,
    Reason::Malformed,
    Reason::TooLarge,
];

impl Reason {
    fn slug(self) -> &'static str {
        match self {
            Reason::LengthAndChunked => "length-and-chunked",
            Reason::BadLength => "bad-length",
            Reason::BadTransferEncoding => "bad-transfer-encoding",
            Reason::Malformed => "malformed",
            Reason::TooLarge => "too-large",
        }
    }

    /// The detail text for the error.
    pub(crate) fn detail(self) -> &'static str {
        match self {
            Reason::LengthAndChunked => {
                "a request may not have both Content-Length and Transfer-Encoding"
            }
            Reason::BadLength => "conflicting or invalid Content-Length",
            Reason::BadTransferEncoding => "unsupported Transfer-Encoding",
            Reason::Malformed => "malformed request head",
            Reason::TooLarge => "the request head is too large",
        }
    }

    /// Whether the answer is 431 rather than 400.
    pub(crate) fn too_large(self) -> bool {
        self == Reason::TooLarge
    }
}

fn secret() -> &'static str {
    static SECRET: OnceLock<String> = OnceLock::new();
    SECRET.get_or_init(|| format!("{:032x}", fastrand::u128(..)))
}

/// The path prefix of the internal request that stands for a refused head.
pub(crate) fn marker_prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| format!("/__portico/framing-error/{}/", secret()))
}

/// If `path` is the internal marker, the reason it carries.
pub(crate) fn refused(path: &str) -> Option<Reason> {
    let slug = path.strip_prefix(marker_prefix())?;
    REASONS.into_iter().find(|r| r.slug() == slug)
}

/// The pipeline's answer to "was this connection upgraded?", for the guard of the
/// connection that asked.
#[derive(Debug, Default)]
pub struct UpgradeSignal {
    inner: Mutex<(Option<bool>, Option<Waker>)>,
}

impl UpgradeSignal {
    /// Records the decision for the request that asked for an upgrade.
    pub(crate) fn decide(&self, upgraded: bool) {
        let waker = {
            let mut g = self
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            g.0 = Some(upgraded);
            g.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn poll(&self, cx: &Context<'_>) -> Option<bool> {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match g.0.take() {
            Some(d) => Some(d),
            None => {
                g.1 = Some(cx.waker().clone());
                None
            }
        }
    }
}

/// Whether the pipeline must report an upgrade decision for this request: the guard
/// waits for one exactly when this is true.
pub(crate) fn asks_upgrade(
    method: &http::Method,
    version: http::Version,
    headers: &http::HeaderMap,
) -> bool {
    *method == http::Method::CONNECT
        || (version == http::Version::HTTP_11 && headers.contains_key(http::header::UPGRADE))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// Inside chunk data: bytes left, then CRLF.
    Data(u64),
    /// The CRLF after chunk data: bytes left.
    DataEnd(u8),
    /// Reading trailer lines after the last chunk.
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Fixed(u64),
    Chunked(Chunk),
    /// An upgrade request is complete; waiting for the pipeline's decision.
    AwaitUpgrade,
    /// Not watching any more: everything passes (an accepted upgrade, or HTTP/2).
    Passthrough,
    /// A refused head was replaced; what the client sends next is thrown away.
    Stalled,
    /// A body broke hyper's framing rules: the stream ends here.
    Poisoned,
}

/// What a complete head means for the bytes after it.
enum Verdict {
    /// Its body's framing, and whether an upgrade decision follows it.
    Body(State, bool),
    Refuse(Reason),
}

fn judge(req: &httparse::Request<'_, '_>) -> Verdict {
    let mut length: Option<u64> = None;
    let mut te: Option<&[u8]> = None;
    let mut upgrade = req.method == Some("CONNECT");
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let Some(n) = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
            else {
                return Verdict::Refuse(Reason::BadLength);
            };
            if length.is_some_and(|l| l != n) {
                return Verdict::Refuse(Reason::BadLength);
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if te.is_some() {
                return Verdict::Refuse(Reason::BadTransferEncoding);
            }
            te = Some(h.value);
        } else if h.name.eq_ignore_ascii_case("upgrade") && req.version == Some(1) {
            upgrade = true;
        }
    }
    if let Some(te) = te {
        if length.is_some() {
            return Verdict::Refuse(Reason::LengthAndChunked);
        }
        let last = te.rsplit(|b| *b == b',').next().unwrap_or(b"");
        let chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
        if !chunked || req.version == Some(0) {
            return Verdict::Refuse(Reason::BadTransferEncoding);
        }
    }
    let body = match (te, length) {
        (Some(_), _) => State::Chunked(Chunk::Size),
        (None, Some(n)) if n > 0 => State::Fixed(n),
        _ => State::Head,
    };
    Verdict::Body(body, upgrade)
}

/// An HTTP/1 connection's byte stream, watched for ambiguous framing.
#[derive(Debug)]
pub(crate) struct FramingGuard<T> {
    inner: T,
    /// Bytes read from the client but not yet given to hyper.
    held: BytesMut,
    /// Bytes at the front of `held` that hyper may read.
    released: usize,
    state: State,
    /// Bytes of the pending region already searched for a line or head end.
    scanned: usize,
    /// Largest head accepted (hyper's buffer limit).
    max_head: usize,
    /// An upgrade decision is due once the current body ends.
    upgrade_after_body: bool,
    /// No request has been seen yet (an HTTP/2 preface may come).
    first: bool,
    signal: Arc<UpgradeSignal>,
}

/// The result of scanning bytes: how many may go to hyper now, and whether the head
/// that starts right after them is refused.
struct Step {
    release: usize,
    refuse: Option<Reason>,
}

impl<T> FramingGuard<T> {
    pub(crate) fn new(inner: T, max_head: usize, signal: Arc<UpgradeSignal>) -> Self {
        Self {
            inner,
            held: BytesMut::new(),
            released: 0,
            state: State::Head,
            scanned: 0,
            max_head,
            upgrade_after_body: false,
            first: true,
            signal,
        }
    }

    fn body_done(&mut self) -> State {
        if std::mem::take(&mut self.upgrade_after_body) {
            State::AwaitUpgrade
        } else {
            State::Head
        }
    }

    /// Runs the state machine over `data` (the pending region starts at its start).
    fn advance(&mut self, data: &[u8]) -> Step {
        let mut pos = 0;
        loop {
            let rest = &data[pos..];
            if rest.is_empty() {
                return Step {
                    release: pos,
                    refuse: None,
                };
            }
            match self.state {
                State::Passthrough => {
                    return Step {
                        release: data.len(),
                        refuse: None,
                    };
                }
                State::Stalled | State::Poisoned | State::AwaitUpgrade => {
                    return self.hold(pos, rest.len());
                }
                State::Head => {
                    if self.first {
                        let n = rest.len().min(H2_PREFACE.len());
                        if rest[..n] == H2_PREFACE[..n] {
                            if n < H2_PREFACE.len() {
                                return self.hold(pos, rest.len());
                            }
                            self.state = State::Passthrough;
                            continue;
                        }
                    }
                    // Parse only when a blank line has arrived since the last look.
                    let from = self.scanned.saturating_sub(2).min(rest.len());
                    let blank = rest[from..]
                        .windows(2)
                        .any(|w| w == b"\n\n" || w == b"\n\r");
                    if !blank {
                        if rest.len() > self.max_head {
                            return Step {
                                release: pos,
                                refuse: Some(Reason::TooLarge),
                            };
                        }
                        return self.hold(pos, rest.len());
                    }
                    let mut headers = [httparse::EMPTY_HEADER; 100];
                    let mut req = httparse::Request::new(&mut headers);
                    match req.parse(rest) {
                        Ok(httparse::Status::Complete(n)) => {
                            if n > self.max_head {
                                return Step {
                                    release: pos,
                                    refuse: Some(Reason::TooLarge),
                                };
                            }
                            match judge(&req) {
                                Verdict::Refuse(reason) => {
                                    return Step {
                                        release: pos,
                                        refuse: Some(reason),
                                    };
                                }
                                Verdict::Body(body, upgrade) => {
                                    pos += n;
                                    self.first = false;
                                    self.scanned = 0;
                                    self.upgrade_after_body = upgrade;
                                    self.state = if body == State::Head {
                                        self.body_done()
                                    } else {
                                        body
                                    };
                                }
                            }
                        }
                        Ok(httparse::Status::Partial) if rest.len() > self.max_head => {
                            return Step {
                                release: pos,
                                refuse: Some(Reason::TooLarge),
                            };
                        }
                        Ok(httparse::Status::Partial) => return self.hold(pos, rest.len()),
                        Err(httparse::Error::TooManyHeaders) => {
                            return Step {
                                release: pos,
                                refuse: Some(Reason::TooLarge),
                            };
                        }
                        Err(_) => {
                            return Step {
                                release: pos,
                                refuse: Some(Reason::Malformed),
                            };
                        }
                    }
                }
                State::Fixed(left) => {
                    let n = left.min(rest.len() as u64);
                    pos += n as usize;
                    self.scanned = 0;
                    self.state = if n == left {
                        self.body_done()
                    } else {
                        State::Fixed(left - n)
                    };
                }
                State::Chunked(chunk) => match self.chunk_step(chunk, rest) {
                    Some(used) => {
                        pos += used;
                        self.scanned = 0;
                    }
                    None => return self.hold(pos, rest.len()),
                },
            }
        }
    }

    /// Holds everything from `pos` on: `len` bytes were searched and need no second look.
    fn hold(&mut self, pos: usize, len: usize) -> Step {
        self.scanned = len;
        Step {
            release: pos,
            refuse: None,
        }
    }

    /// One step through a chunked body: the bytes used, or `None` when a line is not
    /// complete yet. Lines follow hyper's rules: each ends in CRLF, the trailer section
    /// ends at a bare CRLF.
    fn chunk_step(&mut self, chunk: Chunk, rest: &[u8]) -> Option<usize> {
        let from = self.scanned.saturating_sub(1).min(rest.len());
        let line_end = rest[from..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|i| from + i);
        match chunk {
            Chunk::Size | Chunk::Trailers => {
                let limit = if chunk == Chunk::Size {
                    MAX_CHUNK_LINE
                } else {
                    self.max_head
                };
                let Some(nl) = line_end else {
                    if rest.len() > limit {
                        self.state = State::Poisoned;
                    }
                    return None;
                };
                if nl == 0 || rest[nl - 1] != b'\r' {
                    // A bare LF: hyper refuses it; so do we, by ending the stream.
                    self.state = State::Poisoned;
                    return None;
                }
                let line = &rest[..nl - 1];
                if chunk == Chunk::Trailers {
                    if line.is_empty() {
                        self.state = self.body_done();
                    }
                    return Some(nl + 1);
                }
                let digits = line
                    .split(|b| *b == b';')
                    .next()
                    .unwrap_or(b"")
                    .trim_ascii_end();
                let size = std::str::from_utf8(digits)
                    .ok()
                    .filter(|d| !d.is_empty())
                    .and_then(|d| u64::from_str_radix(d, 16).ok());
                self.state = match size {
                    Some(0) => State::Chunked(Chunk::Trailers),
                    Some(n) => State::Chunked(Chunk::Data(n)),
                    None => State::Poisoned,
                };
                Some(nl + 1)
            }
            Chunk::Data(left) => {
                let n = left.min(rest.len() as u64);
                self.state = State::Chunked(if n == left {
                    Chunk::DataEnd(2)
                } else {
                    Chunk::Data(left - n)
                });
                Some(n as usize)
            }
            Chunk::DataEnd(left) => {
                let n = usize::from(left).min(rest.len());
                let left = left.saturating_sub(n as u8);
                self.state = State::Chunked(if left == 0 {
                    Chunk::Size
                } else {
                    Chunk::DataEnd(left)
                });
                Some(n)
            }
        }
    }

    /// Replaces everything held after the first `keep` bytes with the internal request
    /// that stands for a refused head.
    fn refuse(&mut self, keep: usize, reason: Reason) {
        self.held.truncate(keep);
        let marker = format!(
            "GET {}{} HTTP/1.1\r\nhost: portico\r\nconnection: close\r\n\r\n",
            marker_prefix(),
            reason.slug()
        );
        self.held.extend_from_slice(marker.as_bytes());
        self.released = self.held.len();
        self.state = State::Stalled;
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FramingGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.released > 0 {
                let n = this.released.min(out.remaining());
                out.put_slice(&this.held[..n]);
                this.held.advance(n);
                this.released -= n;
                return Poll::Ready(Ok(()));
            }
            match this.state {
                // Ends the stream: hyper sees a body cut short and fails that request.
                State::Poisoned => return Poll::Ready(Ok(())),
                State::Stalled => {
                    // Keep reading (and dropping) so the client's close is noticed.
                    let mut scratch = [0u8; 1024];
                    let mut rb = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                        Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                            return Poll::Ready(Ok(()));
                        }
                        Poll::Ready(Ok(())) => continue,
                        other => return other,
                    }
                }
                State::AwaitUpgrade => match this.signal.poll(cx) {
                    None => return Poll::Pending,
                    Some(true) => {
                        this.state = State::Passthrough;
                        this.released = this.held.len();
                        continue;
                    }
                    Some(false) => {
                        this.state = State::Head;
                        this.scanned = 0;
                        if !this.held.is_empty() {
                            this.process_held();
                            continue;
                        }
                    }
                },
                _ => {}
            }
            // Read straight into hyper's buffer; what must wait is moved to `held`.
            let before = out.filled().len();
            match Pin::new(&mut this.inner).poll_read(cx, out) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            let n = out.filled().len() - before;
            if n == 0 {
                // End of input: what is held is an incomplete head or line; drop it.
                this.held.clear();
                return Poll::Ready(Ok(()));
            }
            if this.held.is_empty() {
                let step = this.advance(&out.filled()[before..]);
                if step.release < n {
                    this.held
                        .extend_from_slice(&out.filled()[before + step.release..]);
                    out.set_filled(before + step.release);
                    if let Some(reason) = step.refuse {
                        this.refuse(0, reason);
                    }
                }
                if step.release > 0 {
                    return Poll::Ready(Ok(()));
                }
            } else {
                this.held.extend_from_slice(&out.filled()[before..]);
                out.set_filled(before);
                this.process_held();
            }
        }
    }
}

impl<T> FramingGuard<T> {
    fn process_held(&mut self) {
        let held = std::mem::take(&mut self.held);
        let step = self.advance(&held);
        self.held = held;
        self.released = step.release;
        if let Some(reason) = step.refuse {
            self.refuse(step.release, reason);
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FramingGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Gives out its bytes `step` at a time.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self
                .step
                .min(self.data.len() - self.pos)
                .min(out.remaining());
            let pos = self.pos;
            out.put_slice(&self.data[pos..pos + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    async fn through(data: &[u8], step: usize) -> Vec<u8> {
        let mut guard = FramingGuard::new(
            Trickle {
                data: data.to_vec(),
                pos: 0,
                step,
            },
            64 * 1024,
            Arc::new(UpgradeSignal::default()),
        );
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            let read =
                tokio::time::timeout(std::time::Duration::from_millis(50), guard.read(&mut buf))
                    .await;
            match read {
                Ok(Ok(0)) | Err(_) => return out,
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Ok(Err(e)) => panic!("{e}"),
            }
        }
    }

    const GOOD: &[u8] = b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc\
POST /b HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\nt: 1\r\n\r\n\
GET /c HTTP/1.1\r\nhost: x\r\n\r\n";

    #[tokio::test]
    async fn good_traffic_passes_unchanged_however_it_is_split() {
        for step in [1, 2, 3, 5, 13, 64, 4096] {
            assert_eq!(through(GOOD, step).await, GOOD, "step {step}");
        }
    }

    #[tokio::test]
    async fn an_ambiguous_head_is_replaced_and_nothing_after_it_is_read() {
        let evil = b"POST /e HTTP/1.1\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n";
        let mut input = GOOD[..52].to_vec();
        input.extend_from_slice(evil);
        for step in [1, 4, 4096] {
            let out = String::from_utf8(through(&input, step).await).unwrap();
            assert!(out.starts_with("POST /a HTTP/1.1"), "{out}");
            assert!(
                out.contains(&format!(
                    "GET {}length-and-chunked HTTP/1.1",
                    marker_prefix()
                )),
                "{out}"
            );
            assert!(
                !out.contains("smuggled") && !out.contains("POST /e"),
                "{out}"
            );
        }
    }

    #[test]
    fn refused_reads_only_our_marker() {
        assert_eq!(
            refused(&format!("{}bad-length", marker_prefix())),
            Some(Reason::BadLength)
        );
        assert_eq!(refused("/__portico/framing-error/0000/bad-length"), None);
        assert_eq!(refused("/anything"), None);
    }

    #[tokio::test]
    async fn blank_lines_bare_lf_and_bad_lines_cannot_switch_the_guard_off() {
        let evil =
            "POST /e HTTP/1.1\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";
        for prefix in [
            "\r\n\r\n",
            "GET / HTTP/1.1\nhost: a\n\n",
            "POST /t HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx: 1\r\n\r\n",
        ] {
            let input = format!("{prefix}{evil}");
            for step in [1, 7, 4096] {
                let out = String::from_utf8(through(input.as_bytes(), step).await).unwrap();
                assert!(
                    out.contains("length-and-chunked"),
                    "prefix {prefix:?} step {step}: {out:?}"
                );
                assert!(!out.contains("POST /e"), "{out:?}");
            }
        }
        // A trailer section ended by a bare LF is not an end for hyper, nor for us: the
        // stream is ended instead of resyncing differently from hyper.
        let odd = format!("POST /t HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\n{evil}");
        let out = String::from_utf8(through(odd.as_bytes(), 5).await).unwrap();
        assert!(!out.contains("POST /e"), "{out:?}");
        // Garbage instead of a head is refused by us, not passed on.
        let out = String::from_utf8(through(b"\x16\x03\x01 junk\r\n\r\n", 3).await).unwrap();
        assert!(out.contains("/malformed HTTP/1.1"), "{out:?}");
    }

    #[tokio::test]
    async fn an_upgrade_request_waits_for_the_decision() {
        let input = b"GET /ws HTTP/1.1\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nPOST /e HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n";
        // Refused upgrade: the guard resumes and refuses the smuggled head.
        let signal = Arc::new(UpgradeSignal::default());
        let mut guard = FramingGuard::new(
            Trickle {
                data: input.to_vec(),
                pos: 0,
                step: 4096,
            },
            64 * 1024,
            signal.clone(),
        );
        let mut buf = vec![0u8; 4096];
        let n = guard.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /ws"));
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(30), guard.read(&mut buf)).await;
        assert!(
            pending.is_err(),
            "nothing after the upgrade request before the decision"
        );
        signal.decide(false);
        let n = guard.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("length-and-chunked"));
        // Accepted upgrade: everything after passes untouched.
        let signal = Arc::new(UpgradeSignal::default());
        let mut guard = FramingGuard::new(
            Trickle {
                data: input.to_vec(),
                pos: 0,
                step: 4096,
            },
            64 * 1024,
            signal.clone(),
        );
        let n = guard.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /ws"));
        signal.decide(true);
        let n = guard.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("POST /e"));
    }

    #[tokio::test]
    async fn h2_preface_steps_aside() {
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04";
        assert_eq!(through(h2, 3).await, h2);
    }
}
