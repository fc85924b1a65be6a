//! The `mobile` module (contract §3.8): small answers for apps on slow networks.
//!
//! - `?fields=a,b.c` keeps only those members (dot paths; through arrays; `_errors` of a
//!   partial answer always stays),
//! - `compact: true` drops null members at every depth,
//! - every successful JSON answer has a strong `ETag`; `If-None-Match` with it → 304,
//! - br or gzip compression when the client accepts it (the ETag names the coding),
//! - `min_app_version`: `X-App-Version` lower → 426 UPGRADE_REQUIRED; missing or not a
//!   version → 400.

use std::io::Write;

use bytes::Bytes;
use gateway::error::{Code, Problem};
use gateway::extend::{Exchange, Finding};
use http::StatusCode;
use http::header::{
    ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH, VARY,
};
use http::response::Parts;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::module::Bff;

/// Bodies smaller than this are not worth compressing.
const MIN_COMPRESS: usize = 256;

/// The `mobile` module.
pub struct Mobile;

/// Options under `mobile:`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MobileOptions {
    /// Drop null members at every depth.
    #[serde(default)]
    pub compact: bool,
    /// Apps older than this (`X-App-Version`, semantic version) get 426.
    #[serde(default)]
    pub min_app_version: Option<String>,
}

/// A version `MAJOR[.MINOR[.PATCH]][-PRE]`: compared by numbers; a pre-release is below
/// its release.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    core: [u64; 3],
    /// `true` for a release (sorts above a pre-release of the same core).
    release: bool,
}

impl Version {
    /// Parses a version; `None` when it is not one.
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim();
        let (core, pre) = match text.split_once('-') {
            Some((c, p)) if !p.is_empty() => (c, true),
            Some(_) => return None,
            None => (text, false),
        };
        let mut parts = [0u64; 3];
        for (n, piece) in core.split('.').enumerate() {
            if n == 3 || piece.is_empty() || !piece.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            parts[n] = piece.parse().ok()?;
        }
        Some(Version {
            core: parts,
            release: !pre,
        })
    }
}

impl Bff for Mobile {
    type Options = MobileOptions;
    const NAME: &'static str = "mobile";

    fn check(options: &MobileOptions) -> Vec<Finding> {
        match &options.min_app_version {
            Some(v) if Version::parse(v).is_none() => vec![(
                "min_app_version".into(),
                format!("`{v}` is not a version like 4.2.0"),
            )],
            _ => Vec::new(),
        }
    }

    fn on_request(options: &MobileOptions, request: &Exchange) -> Result<(), Problem> {
        let Some(min) = options.min_app_version.as_deref().and_then(Version::parse) else {
            return Ok(());
        };
        let given = request
            .headers
            .get("x-app-version")
            .ok_or_else(|| Problem::bad_request("X-App-Version is required"))?;
        let version = given
            .to_str()
            .ok()
            .and_then(Version::parse)
            .ok_or_else(|| Problem::bad_request("X-App-Version is not a version like 4.2.0"))?;
        if version < min {
            return Err(Problem::new(
                Code::UpgradeRequired,
                format!(
                    "this app version is no longer supported; update to {} or later",
                    options.min_app_version.as_deref().unwrap_or_default()
                ),
            ));
        }
        Ok(())
    }

    fn reads_body(_: &MobileOptions) -> bool {
        true
    }

    fn on_json(options: &MobileOptions, request: &Exchange, json: &mut Value) {
        if let Some(fields) = fields(request.query.as_deref()) {
            keep(json, &fields);
        }
        if options.compact {
            compact(json);
        }
    }

    fn on_body(_: &MobileOptions, request: &Exchange, head: &mut Parts, body: Bytes) -> Bytes {
        let coding = coding(&request.headers).filter(|_| body.len() >= MIN_COMPRESS);
        let hash = ring::digest::digest(&ring::digest::SHA256, &body);
        let hex: String = hash.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let tag = match coding {
            Some(c) => format!("\"{hex}-{c}\""),
            None => format!("\"{hex}\""),
        };
        if let Ok(v) = HeaderValue::from_str(&tag) {
            head.headers.insert(ETAG, v);
        }
        head.headers
            .append(VARY, HeaderValue::from_static("accept-encoding"));
        // A 304 only answers reads: an unsafe method has acted already.
        let read = matches!(request.method, http::Method::GET | http::Method::HEAD);
        if read && none_match(&request.headers, &tag) {
            head.status = StatusCode::NOT_MODIFIED;
            head.headers.remove(CONTENT_TYPE);
            return Bytes::new();
        }
        match coding.and_then(|c| compress(c, &body).map(|b| (c, b))) {
            Some((c, compressed)) => {
                head.headers
                    .insert(CONTENT_ENCODING, HeaderValue::from_static(c));
                Bytes::from(compressed)
            }
            None => body,
        }
    }
}

/// `?fields=a,b.c` as paths.
fn fields(query: Option<&str>) -> Option<Vec<Vec<String>>> {
    let value = gateway::query::query_param(query?, "fields")
        .into_iter()
        .next()?;
    let paths: Vec<Vec<String>> = value
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| f.split('.').map(str::to_string).collect())
        .collect();
    (!paths.is_empty()).then_some(paths)
}

/// Keeps only the members named by `paths` (through arrays; `_errors` stays at the top).
fn keep(json: &mut Value, paths: &[Vec<String>]) {
    fn walk(v: &mut Value, paths: &[&[String]], top: bool) {
        match v {
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, paths, top)),
            Value::Object(map) => {
                map.retain(|k, _| {
                    (top && k == "_errors") || paths.iter().any(|p| p.first() == Some(k))
                });
                for (k, child) in map.iter_mut() {
                    if top && k == "_errors" {
                        continue;
                    }
                    let below: Vec<&[String]> = paths
                        .iter()
                        .filter(|p| p.first() == Some(k))
                        .map(|p| &p[1..])
                        .collect();
                    // A path ending here keeps the member whole.
                    if below.iter().any(|p| p.is_empty()) {
                        continue;
                    }
                    walk(child, &below, false);
                }
            }
            _ => {}
        }
    }
    let refs: Vec<&[String]> = paths.iter().map(Vec::as_slice).collect();
    walk(json, &refs, true);
}

/// Drops null members at every depth.
fn compact(json: &mut Value) {
    match json {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(compact);
        }
        Value::Array(items) => items.iter_mut().for_each(compact),
        _ => {}
    }
}

/// The coding to use: `br` if accepted, else `gzip`, else none.
fn coding(headers: &http::HeaderMap) -> Option<&'static str> {
    let mut br = false;
    let mut gzip = false;
    for value in headers.get_all(ACCEPT_ENCODING) {
        for item in value.to_str().unwrap_or_default().split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q <= 0.0 {
                continue;
            }
            match name.as_str() {
                "br" => br = true,
                "gzip" | "x-gzip" => gzip = true,
                _ => {}
            }
        }
    }
    if br {
        Some("br")
    } else if gzip {
        Some("gzip")
    } else {
        None
    }
}

fn compress(coding: &str, body: &[u8]) -> Option<Vec<u8>> {
    match coding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(body).ok()?;
            e.finish().ok()
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                w.write_all(body).ok()?;
            }
            Some(out)
        }
        _ => None,
    }
}

/// Whether `If-None-Match` holds `tag` (weak comparison, as RFC 9110 asks) or `*`.
fn none_match(headers: &http::HeaderMap, tag: &str) -> bool {
    headers.get_all(IF_NONE_MATCH).iter().any(|v| {
        v.to_str().unwrap_or_default().split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_compare_by_number_and_pre_releases_sort_below() {
        let v = |s: &str| Version::parse(s).unwrap();
        assert!(v("4.10.0") > v("4.2.0"));
        assert!(v("4.2") == v("4.2.0"));
        assert!(v("4.2.0-beta.1") < v("4.2.0"));
        assert!(v("5") > v("4.99.99"));
        for bad in ["", "4.", "v4.2", "4.2.0.1", "4.x", "4.2-", "-1"] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn fields_keep_dot_paths_through_arrays_and_compact_drops_nulls() {
        let mut j = json!({
            "order": {"id": 1, "lines": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": null}], "note": null},
            "customer": {"id": 2, "name": "x"},
            "_errors": [{"call": "stock"}]
        });
        keep(
            &mut j,
            &fields(Some("fields=order.lines.sku,customer")).unwrap(),
        );
        assert_eq!(
            j,
            json!({"order": {"lines": [{"sku": "a"}, {"sku": "b"}]}, "customer": {"id": 2, "name": "x"}, "_errors": [{"call": "stock"}]})
        );
        let mut j = json!({"a": null, "b": {"c": null, "d": [1, null, {"e": null}]}});
        compact(&mut j);
        assert_eq!(j, json!({"b": {"d": [1, null, {}]}}));
    }

    #[test]
    fn codings_follow_accept_encoding() {
        let h = |v: &str| {
            let mut m = http::HeaderMap::new();
            m.insert(ACCEPT_ENCODING, v.parse().unwrap());
            m
        };
        assert_eq!(coding(&h("gzip, deflate, br")), Some("br"));
        assert_eq!(coding(&h("gzip")), Some("gzip"));
        assert_eq!(coding(&h("br;q=0, gzip;q=0.5")), Some("gzip"));
        assert_eq!(coding(&h("identity")), None);
        assert_eq!(coding(&http::HeaderMap::new()), None);
    }
}
