//! The `partner` module (contract §3.8): for partner companies' integrations.
//!
//! A partner file without `auth` authenticates with the gateway's API-key provider.
//!
//! `deprecated: { sunset: DATE, link: URL, since: DATE }` adds to every answer of the file
//! `Deprecation` (RFC 9745: `@<unix time>` of `since`, or `true` without it), `Sunset`
//! (RFC 8594, an HTTP date) and `Link: <URL>; rel="deprecation"` (and `rel="sunset"`).
//! `idempotency: { ttl: 24h }` makes POST and PATCH with an `Idempotency-Key` safe to
//! repeat ([`idempotency`]).

pub mod idempotency;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use gateway::body::ClientBody;
use gateway::config::units;
use gateway::extend::{Exchange, Finding, Next, Reply};
use http::Request;
use http::header::{HeaderValue, LINK};
use http::response::Parts;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::module::Bff;

/// The `partner` module.
pub struct Partner;

/// Options under `partner:`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerOptions {
    /// This version of the API is deprecated.
    #[serde(default)]
    pub deprecated: Option<Deprecated>,
    /// Safe repeats of POST and PATCH with an `Idempotency-Key`.
    #[serde(default)]
    pub idempotency: Option<IdempotencyOptions>,
    /// The running idempotency store (built from `idempotency`).
    #[serde(skip)]
    pub runtime: Option<Arc<idempotency::Idempotency>>,
}

/// `idempotency:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdempotencyOptions {
    /// How long an answer is kept for its key.
    #[serde(default = "default_ttl")]
    pub ttl: units::Duration,
    /// The most keys kept (the oldest go first).
    #[serde(default = "default_max_keys")]
    pub max_keys: u64,
    /// The largest request or answer body of a keyed request.
    #[serde(default = "default_max_body")]
    pub max_body: units::Size,
}

fn default_ttl() -> units::Duration {
    units::Duration(Duration::from_secs(24 * 3600))
}
fn default_max_keys() -> u64 {
    100_000
}
fn default_max_body() -> units::Size {
    units::Size(1024 * 1024)
}

/// `deprecated:`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deprecated {
    /// When the API goes away: `2027-06-30` or an HTTP date.
    pub sunset: String,
    /// Where the deprecation is explained.
    #[serde(default)]
    pub link: Option<String>,
    /// Since when it is deprecated: `2026-11-01` or an HTTP date.
    #[serde(default)]
    pub since: Option<String>,
}

/// A date as `2027-06-30` (midnight UTC) or an HTTP date.
fn parse_date(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if let Ok(t) = httpdate::parse_http_date(text) {
        return Some(t);
    }
    let mut parts = text.split('-');
    let (y, m, d): (i64, i64, i64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(days).ok()? * 86_400))
}

impl Bff for Partner {
    type Options = PartnerOptions;
    const NAME: &'static str = "partner";
    const API_KEYS_BY_DEFAULT: bool = true;

    fn check(options: &PartnerOptions) -> Vec<Finding> {
        let mut findings = Vec::new();
        if let Some(i) = &options.idempotency {
            if i.ttl.0.is_zero() {
                findings.push(("idempotency.ttl".into(), "must be more than 0".into()));
            }
            if i.max_keys == 0 {
                findings.push(("idempotency.max_keys".into(), "must be at least 1".into()));
            }
            if i.max_body.0 == 0 || i.max_body.0 > 64 * 1024 * 1024 {
                findings.push((
                    "idempotency.max_body".into(),
                    "must be between 1 byte and 64MiB".into(),
                ));
            }
        }
        if let Some(d) = &options.deprecated {
            if parse_date(&d.sunset).is_none() {
                findings.push((
                    "deprecated.sunset".into(),
                    format!("`{}` is not a date like 2027-06-30", d.sunset),
                ));
            }
            if let Some(since) = &d.since
                && parse_date(since).is_none()
            {
                findings.push((
                    "deprecated.since".into(),
                    format!("`{since}` is not a date like 2026-11-01"),
                ));
            }
            if let Some(link) = &d.link
                && (link
                    .parse::<http::Uri>()
                    .map_or(true, |u| u.scheme().is_none())
                    || link.contains(['<', '>', '"', ' ']))
            {
                findings.push((
                    "deprecated.link".into(),
                    format!("`{link}` is not an absolute URL"),
                ));
            }
        }
        findings
    }

    fn prepare(options: &mut PartnerOptions) {
        options.runtime = options.idempotency.as_ref().map(|i| {
            Arc::new(idempotency::Idempotency {
                store: Arc::new(idempotency::LocalStore::new(i.ttl.0, i.max_keys)),
                max_body: i.max_body.0 as usize,
            })
        });
    }

    fn around<'a>(
        options: &'a PartnerOptions,
        request: &'a Exchange,
        body: Request<ClientBody>,
        next: Next<'a>,
    ) -> Reply<'a> {
        match &options.runtime {
            Some(idempotency) => idempotency.around(request, body, next),
            None => next(body),
        }
    }

    fn on_head(options: &PartnerOptions, _request: &Exchange, head: &mut Parts) {
        let Some(d) = &options.deprecated else {
            return;
        };
        let deprecation = match d.since.as_deref().and_then(parse_date) {
            Some(t) => format!(
                "@{}",
                t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
            ),
            None => "true".to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&deprecation) {
            head.headers.insert("deprecation", v);
        }
        if let Some(sunset) = parse_date(&d.sunset)
            && let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(sunset))
        {
            head.headers.insert("sunset", v);
        }
        if let Some(link) = &d.link {
            for rel in ["deprecation", "sunset"] {
                if let Ok(v) = HeaderValue::from_str(&format!("<{link}>; rel=\"{rel}\"")) {
                    head.headers.append(LINK, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_either_form() {
        let t = parse_date("2027-06-30").unwrap();
        assert_eq!(httpdate::fmt_http_date(t), "Wed, 30 Jun 2027 00:00:00 GMT");
        assert_eq!(parse_date("Wed, 30 Jun 2027 00:00:00 GMT"), Some(t));
        assert_eq!(parse_date("1970-01-01"), Some(UNIX_EPOCH));
        for bad in ["2027-13-01", "2027-06", "tomorrow", "2027-06-30-1"] {
            assert!(parse_date(bad).is_none(), "{bad}");
        }
    }
}
