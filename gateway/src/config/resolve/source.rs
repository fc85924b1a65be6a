//! The request-derived keys that route files name in several places (`split.sticky`,
//! `rate_limit[].key`, and token sources later): `ip`, `route`, `subject`, `api_key`,
//! `header:NAME`, `cookie:NAME`, `claim:NAME`. Parsed here once; each place then says
//! which forms it takes.

use http::HeaderName;

/// One parsed key form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    Ip,
    Route,
    Subject,
    ApiKey,
    Header(HeaderName),
    Cookie(String),
    Claim(String),
}

/// Parses a key form. `Ok(None)`: not a form at all; `Err`: a form with a bad name.
pub(super) fn parse(text: &str) -> Result<Option<Source>, String> {
    Ok(Some(match text {
        "ip" => Source::Ip,
        "route" => Source::Route,
        "subject" => Source::Subject,
        "api_key" => Source::ApiKey,
        _ => match text.split_once(':') {
            Some(("header", name)) => match HeaderName::from_bytes(name.as_bytes()) {
                Ok(h) => Source::Header(h),
                Err(_) => return Err(format!("`{name}` is not a header name")),
            },
            Some(("cookie", name)) if valid_cookie_name(name) => Source::Cookie(name.to_string()),
            Some(("cookie", name)) => return Err(format!("`{name}` is not a cookie name")),
            Some(("claim", name)) if !name.is_empty() => Source::Claim(name.to_string()),
            _ => return Ok(None),
        },
    }))
}

fn valid_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
