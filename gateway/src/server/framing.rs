//! HTTP/1 framing guard: refuses request heads whose message framing is ambiguous
//! (request smuggling shapes) before hyper parses them.
//!
//! hyper resolves `Content-Length` + `Transfer-Encoding` the way RFC 9112 §6.1 allows
//! (chunked wins, the connection closes afterwards) but does not let the service see
//! that the request was ambiguous. This wrapper sits between the socket and hyper on
//! HTTP/1 connections: it holds each request head back until it is complete, checks it
//! with `httparse`, and then either releases it unchanged or replaces it with an
//! internal request (`GET /__portico/framing-error/<secret>/<reason>`, `Connection:
//! close`) that the pipeline answers with a 400 problem+json. The secret is random per
//! process, so no client can send that request itself. Nothing of a refused request
//! reaches a backend, and the connection closes after the answer.
//!
//! Bodies are tracked (fixed length or chunked) so that the next head is found; the
//! bytes themselves pass through untouched. After an upgrade request, an HTTP/2 preface
//! or anything the guard cannot parse, it steps aside and hyper's own checks apply.

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Requests heads larger than this are left to hyper (which answers 431).
const MAX_HEAD: usize = 64 * 1024;

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Both `Content-Length` and `Transfer-Encoding`.
    LengthAndChunked,
    /// Several `Content-Length` values that differ, or one that is not a number.
    BadLength,
    /// A `Transfer-Encoding` that does not end in `chunked`, or one on HTTP/1.0.
    BadTransferEncoding,
}

impl Reason {
    fn slug(self) -> &'static str {
        match self {
            Reason::LengthAndChunked => "length-and-chunked",
            Reason::BadLength => "bad-length",
            Reason::BadTransferEncoding => "bad-transfer-encoding",
        }
    }

    /// The detail text for the 400.
    pub(crate) fn detail(self) -> &'static str {
        match self {
            Reason::LengthAndChunked => {
                "a request may not have both Content-Length and Transfer-Encoding"
            }
            Reason::BadLength => "conflicting or invalid Content-Length",
            Reason::BadTransferEncoding => "unsupported Transfer-Encoding",
        }
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
    [
        Reason::LengthAndChunked,
        Reason::BadLength,
        Reason::BadTransferEncoding,
    ]
    .into_iter()
    .find(|r| r.slug() == slug)
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
    /// Not watching any more: everything passes.
    Passthrough,
    /// A refused head was replaced; nothing more is read from the client.
    Stalled,
}

/// What a complete head means for the bytes after it.
enum Verdict {
    Body(State),
    Refuse(Reason),
    StepAside,
}

fn judge(head: &[u8]) -> Verdict {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        // Not HTTP/1 (an h2 preface), too many headers, or garbage: hyper decides.
        _ => return Verdict::StepAside,
    }
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
            te = Some(h.value);
        } else if h.name.eq_ignore_ascii_case("upgrade") {
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
    if upgrade {
        // What follows may be another protocol once the upgrade is accepted.
        return Verdict::StepAside;
    }
    Verdict::Body(match (te, length) {
        (Some(_), _) => State::Chunked(Chunk::Size),
        (None, Some(n)) if n > 0 => State::Fixed(n),
        _ => State::Head,
    })
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
}

/// The result of scanning bytes: how many may go to hyper now, and whether the head
/// that starts right after them is refused.
struct Step {
    release: usize,
    refuse: Option<Reason>,
}

impl<T> FramingGuard<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self {
            inner,
            held: BytesMut::new(),
            released: 0,
            state: State::Head,
        }
    }

    /// Runs the state machine over `data`, from its start.
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
                State::Stalled => {
                    return Step {
                        release: pos,
                        refuse: None,
                    };
                }
                State::Head => match find_head_end(rest) {
                    None if rest.len() > MAX_HEAD => self.state = State::Passthrough,
                    None => {
                        return Step {
                            release: pos,
                            refuse: None,
                        };
                    }
                    Some(end) => match judge(&rest[..end]) {
                        Verdict::Body(next) => {
                            pos += end;
                            self.state = next;
                        }
                        Verdict::StepAside => self.state = State::Passthrough,
                        Verdict::Refuse(reason) => {
                            return Step {
                                release: pos,
                                refuse: Some(reason),
                            };
                        }
                    },
                },
                State::Fixed(left) => {
                    let n = left.min(rest.len() as u64);
                    pos += n as usize;
                    self.state = if n == left {
                        State::Head
                    } else {
                        State::Fixed(left - n)
                    };
                }
                State::Chunked(chunk) => match self.chunk_step(chunk, rest) {
                    Some(used) => pos += used,
                    None => {
                        return Step {
                            release: pos,
                            refuse: None,
                        };
                    }
                },
            }
        }
    }

    /// One step through a chunked body: the bytes used, or `None` when a line is incomplete.
    fn chunk_step(&mut self, chunk: Chunk, rest: &[u8]) -> Option<usize> {
        let line_end = |limit: usize, state: &mut State| match rest.iter().position(|b| *b == b'\n')
        {
            Some(nl) => Some(nl),
            None if rest.len() > limit => {
                *state = State::Passthrough;
                Some(0)
            }
            None => None,
        };
        match chunk {
            Chunk::Size => {
                let nl = line_end(4096, &mut self.state)?;
                if self.state == State::Passthrough {
                    return Some(0);
                }
                let digits = rest[..nl]
                    .split(|b| *b == b';')
                    .next()
                    .unwrap_or(b"")
                    .trim_ascii();
                let size = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| u64::from_str_radix(d, 16).ok());
                self.state = match size {
                    Some(0) => State::Chunked(Chunk::Trailers),
                    Some(n) => State::Chunked(Chunk::Data(n)),
                    // hyper refuses it (and the body peek answers 400): stop watching.
                    None => State::Passthrough,
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
                let left = left - n as u8;
                self.state = State::Chunked(if left == 0 {
                    Chunk::Size
                } else {
                    Chunk::DataEnd(left)
                });
                Some(n)
            }
            Chunk::Trailers => {
                let nl = line_end(MAX_HEAD, &mut self.state)?;
                if self.state == State::Passthrough {
                    return Some(0);
                }
                if rest[..nl].trim_ascii().is_empty() {
                    self.state = State::Head;
                }
                Some(nl + 1)
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

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
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
            if this.state == State::Stalled {
                // The refused request's answer closes the connection; read nothing more.
                return Poll::Pending;
            }
            // Read straight into hyper's buffer; what must wait is moved to `held`.
            let before = out.filled().len();
            match Pin::new(&mut this.inner).poll_read(cx, out) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            let n = out.filled().len() - before;
            if n == 0 {
                // End of input: hand over whatever is held and let hyper judge it.
                this.state = State::Passthrough;
                this.released = this.held.len();
                if this.released == 0 {
                    return Poll::Ready(Ok(()));
                }
                continue;
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
                let held = std::mem::take(&mut this.held);
                let step = this.advance(&held);
                this.held = held;
                this.released = step.release;
                if let Some(reason) = step.refuse {
                    this.refuse(step.release, reason);
                }
            }
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
        let mut guard = FramingGuard::new(Trickle {
            data: data.to_vec(),
            pos: 0,
            step,
        });
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
    async fn h2_preface_and_upgrades_step_aside() {
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04";
        assert_eq!(through(h2, 3).await, h2);
        let ws = b"GET /ws HTTP/1.1\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n\x81\x05hello content-length: 1\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(through(ws, 5).await, ws);
    }
}
