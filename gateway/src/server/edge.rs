//! Edge helpers: request ids, W3C trace context, and request-head size.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use crate::telemetry::trace::{SpanContext, hex};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The client's `X-Request-Id` if it is sane (1–128 of `A-Za-z0-9._:-`), else a new one.
pub(crate) fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        let sane = !b.is_empty()
            && b.len() <= 128
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'));
        if sane {
            return v.clone();
        }
    }
    let mut buf = [0u8; 32];
    hex(fastrand::u128(..), &mut buf);
    // Only hex digits: always a valid header value.
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
}

/// The gateway's span for a request: the client's trace continued with a new span id
/// (and the client's span as its parent), or a new trace, sampled at `sampling`, when the
/// client sent no valid `traceparent` (two of them are not valid either).
pub(super) fn trace_context(headers: &HeaderMap, sampling: f64) -> (SpanContext, Option<u64>) {
    let mut all = headers.get_all(&TRACEPARENT).iter();
    let first = all.next();
    let one = first.filter(|_| all.next().is_none());
    match one.and_then(|v| SpanContext::parse(v.as_bytes())) {
        Some(remote) => (remote.child(), Some(remote.span_id)),
        None => (SpanContext::root(sampling), None),
    }
}

/// Bytes of the request head as it would be written in HTTP/1.1.
pub(super) fn head_size(uri_len: usize, headers: &HeaderMap) -> usize {
    let mut size = uri_len + 16;
    for (name, value) in headers {
        size += name.as_str().len() + value.len() + 4;
    }
    size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        let mut h = HeaderMap::new();
        assert_eq!(request_id(&h).len(), 32);
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(
            "x-request-id",
            HeaderValue::from_static("bad id with spaces"),
        );
        assert_ne!(request_id(&h), "bad id with spaces");
    }

    #[test]
    fn trace_context_continued_or_new() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let (ours, parent) = trace_context(&h, 0.0);
        let tp = ours.traceparent();
        let tp = tp.to_str().unwrap();
        assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(tp.ends_with("-01"), "the caller's decision is kept");
        assert!(!tp.contains("00f067aa0ba902b7"), "a new span id");
        assert_eq!(parent, Some(0x00f067aa0ba902b7));
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        );
        let (ours, parent) = trace_context(&h, 1.0);
        assert_eq!(parent, None);
        assert_ne!(ours.trace_id, 0);
        assert!(ours.sampled());
        assert_eq!(ours.traceparent().len(), 55);
        let (ours, _) = trace_context(&HeaderMap::new(), 0.0);
        assert!(!ours.sampled());
        let mut two = HeaderMap::new();
        for _ in 0..2 {
            two.append(
                "traceparent",
                HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            );
        }
        let (ours, parent) = trace_context(&two, 1.0);
        assert_eq!(parent, None, "two traceparents are not one trace");
        assert_ne!(ours.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
    }
}
