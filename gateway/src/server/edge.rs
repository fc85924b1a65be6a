//! Edge helpers: request ids, W3C trace context, and request-head size.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

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

fn hex(mut n: u128, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n & 0xf) as usize];
        n >>= 4;
    }
}

fn is_hex(s: &[u8]) -> bool {
    s.iter()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// The `traceparent` to send on: the client's trace continued with a new span id, or a
/// new sampled trace when the client sent none or an invalid one. Also returns the
/// trace id for logs.
pub(super) fn traceparent(headers: &HeaderMap) -> (HeaderValue, [u8; 32]) {
    let mut trace = [0u8; 32];
    let mut flags = *b"01";
    let incoming = headers.get(&TRACEPARENT).map(HeaderValue::as_bytes);
    let valid = incoming.filter(|b| {
        b.len() >= 55
            && b[2] == b'-'
            && b[35] == b'-'
            && b[52] == b'-'
            && is_hex(&b[..2])
            && &b[..2] != b"ff"
            && (b.len() == 55 || (&b[..2] != b"00" && b[55] == b'-'))
            && is_hex(&b[3..35])
            && b[3..35].iter().any(|c| *c != b'0')
            && is_hex(&b[36..52])
            && b[36..52].iter().any(|c| *c != b'0')
            && is_hex(&b[53..55])
    });
    match valid {
        Some(b) => {
            trace.copy_from_slice(&b[3..35]);
            flags.copy_from_slice(&b[53..55]);
        }
        None => hex(fastrand::u128(1..), &mut trace),
    }
    let mut out = [0u8; 55];
    out[..3].copy_from_slice(b"00-");
    out[3..35].copy_from_slice(&trace);
    out[35] = b'-';
    hex(u128::from(fastrand::u64(1..)), &mut out[36..52]);
    out[52] = b'-';
    out[53..55].copy_from_slice(&flags);
    let value = HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static(
        "00-00000000000000000000000000000001-0000000000000001-01",
    ));
    (value, trace)
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
    fn trace_context() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let (tp, trace) = traceparent(&h);
        let tp = tp.to_str().unwrap();
        assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(!tp.contains("00f067aa0ba902b7"), "a new span id");
        assert_eq!(&trace, b"4bf92f3577b34da6a3ce929d0e0e4736");
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        );
        let (tp, _) = traceparent(&h);
        assert!(
            !tp.to_str()
                .unwrap()
                .contains("-00000000000000000000000000000000-")
        );
        assert_eq!(tp.len(), 55);
    }
}
