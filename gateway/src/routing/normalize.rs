//! Path normalisation before routing.
//!
//! Percent-encoded unreserved characters are decoded (`%2e` → `.`, `%41` → `A`), empty
//! segments (`//`) are collapsed, and `.` / `..` segments are resolved without ever
//! going above the root. An encoded slash (`%2F`) stays encoded: it is data, not a
//! separator. So `..`, `%2e%2e` and `//` cannot reach a route the plain path would not.

use std::borrow::Cow;

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Normalises a request path; returns it borrowed when it is already normal.
/// Returns `None` for a path that is not absolute or has a malformed `%` escape.
pub fn normalize(path: &str) -> Option<Cow<'_, str>> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return None;
    }
    if is_normal(bytes) {
        return Some(Cow::Borrowed(path));
    }
    // Decode unreserved escapes; keep every other escape, upper-cased.
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (h, l) = (
                bytes.get(i + 1).copied().and_then(hex)?,
                bytes.get(i + 2).copied().and_then(hex)?,
            );
            let c = h * 16 + l;
            if is_unreserved(c) {
                decoded.push(c as char);
            } else {
                decoded.push('%');
                decoded.push(bytes[i + 1].to_ascii_uppercase() as char);
                decoded.push(bytes[i + 2].to_ascii_uppercase() as char);
            }
            i += 3;
        } else {
            decoded.push(b as char);
            i += 1;
        }
    }
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut result = String::with_capacity(decoded.len());
    for seg in &out {
        result.push('/');
        result.push_str(seg);
    }
    if result.is_empty() || (trailing && !result.ends_with('/')) {
        result.push('/');
    }
    Some(Cow::Owned(result))
}

/// Fast check: no `%`, no `//`, no `.`/`..` segments. Non-ASCII bytes cannot occur in
/// an `http::Uri` path.
fn is_normal(bytes: &[u8]) -> bool {
    let mut prev = b'/';
    let mut i = 1;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' || (b == b'/' && prev == b'/') {
            return false;
        }
        if b == b'.' && prev == b'/' {
            let next = bytes.get(i + 1).copied();
            let dot_dot =
                next == Some(b'.') && matches!(bytes.get(i + 2).copied(), None | Some(b'/'));
            if matches!(next, None | Some(b'/')) || dot_dot {
                return false;
            }
        }
        prev = b;
        i += 1;
    }
    true
}
