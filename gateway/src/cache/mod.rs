//! The response cache: one bounded store (moka, weighed in bytes) shared by every cached
//! route, kept across reloads.
//!
//! A request to a cached route goes through, in order ([`Cached::prepare`], then the
//! route pipeline's `serve`):
//!
//! ```text
//! GET/HEAD without body, Range or Upgrade? else → handler (fwd=method / fwd=request)
//! key: route · method class · host · scheme · path · sorted query · route `vary` values
//!      · the caller (scope private); then the backend's `Vary` values
//! fresh entry            → answered from memory (304 for a matching If-None-Match /
//!                          If-Modified-Since), Age, Cache-Status: hit
//! stale, within SWR      → answered stale at once; one refresh in the background
//! otherwise              → one call per key (the others wait and take its entry); the
//!                          answer is stored when RFC 9111 and the route allow it;
//!                          on failure, a stale entry within stale_if_error is served
//! ```
//!
//! What makes an answer storable is in [`control`]. Client headers that some frameworks
//! read as "the real URL, host or method" are cut from requests to cached routes, so an
//! entry can only hold what its key describes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use http::header::{
    AGE, CONTENT_LENGTH, ETAG, HOST, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, RANGE,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};

use crate::auth::Identity;
use crate::body::{ClientBody, Read, ResponseBody};
use crate::config::RouteCache;
use crate::error::Problem;
use crate::proxy::strip_hop_by_hop;

pub mod control;
mod store;

pub use store::{Entry, Flight, Purge, Stats, Store};
use store::{Freshness, Lookup};

use control::{Asked, Directives};

/// The header a partial aggregate answer carries; such answers are never stored.
pub static PARTIAL: HeaderName = HeaderName::from_static("portico-partial");
/// RFC 9211.
pub static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Client headers that some frameworks believe over the request line and `Host`: cut from
/// requests to cached routes, so that no client can make an entry hold another URL's answer.
const OVERRIDES: [&str; 8] = [
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-host",
];

/// Where a slot lives: its route and path (for purges), and the rest of the key. A key
/// names either what the store knows of a request (`entry: false`: the backend's `Vary`,
/// or "not storable") or one stored answer (`entry: true`: the same bytes followed by the
/// values of the headers the answer varies on).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    route: Arc<str>,
    path: Arc<str>,
    rest: Arc<[u8]>,
    entry: bool,
}

impl Key {
    fn weight(&self) -> usize {
        self.route.len() + self.path.len() + self.rest.len() + 64
    }

    /// The key of the answer that varies on `names`, for this request.
    fn entry(&self, names: &[HeaderName], keyed: &Keyed, headers: &HeaderMap) -> Key {
        let rest = if names.is_empty() {
            self.rest.clone()
        } else {
            let mut rest = self.rest.to_vec();
            push_values(&mut rest, names, headers, keyed);
            rest.into()
        };
        Key {
            route: self.route.clone(),
            path: self.path.clone(),
            rest,
            entry: true,
        }
    }
}

/// Appends each name's values (all lines, in order) to a key, length-prefixed. The
/// headers the gateway sets from the identity (`forward_claims`, `forward`) count with
/// the identity's values: those are what the backend sees.
fn push_values(out: &mut Vec<u8>, names: &[HeaderName], headers: &HeaderMap, keyed: &Keyed) {
    for name in names {
        push(out, name.as_str().as_bytes());
        let values: Vec<&HeaderValue> = if keyed.protected.contains(name) {
            keyed
                .identity
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v)
                .collect()
        } else {
            headers.get_all(name).iter().collect()
        };
        push_lines(out, &values);
    }
}

/// One field of all `values` joined by commas; "absent" differs from "empty".
fn push_lines(out: &mut Vec<u8>, values: &[&HeaderValue]) {
    if values.is_empty() {
        push(out, b"\xff");
        return;
    }
    let mut joined: Vec<u8> = Vec::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            joined.push(b',');
        }
        joined.extend_from_slice(v.as_bytes());
    }
    push(out, &joined);
}

fn push(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(field);
}

/// Who may send credentials: the headers, cookies and query parameters of every
/// provider (a request carrying one is "with credentials" on any cached route).
#[derive(Debug, Default)]
pub struct Carriers {
    /// `Authorization` and API-key headers.
    pub headers: Vec<HeaderName>,
    /// Session cookies (JWT `cookie:NAME` sources).
    pub cookies: Vec<String>,
    /// API-key query parameters.
    pub query: Vec<String>,
}

impl Carriers {
    fn present(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        if self.headers.iter().any(|h| headers.contains_key(h)) {
            return true;
        }
        let cookie = headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.split_once('=').map(|(n, _)| n.trim()))
            .any(|n| self.cookies.iter().any(|c| c == n));
        cookie
            || query.is_some_and(|q| {
                q.split('&')
                    .filter_map(|p| p.split('=').next())
                    .any(|n| self.query.iter().any(|c| c == n))
            })
    }
}

/// A cached route at run time: its policy and the shared store.
#[derive(Debug)]
pub struct Cached {
    /// The route's settings.
    pub policy: Arc<RouteCache>,
    /// The gateway's store.
    pub store: Arc<Store>,
    /// The route's id.
    pub route: Arc<str>,
    /// What counts as credentials.
    pub carriers: Arc<Carriers>,
    /// The headers the gateway sets from identities.
    pub protected: Arc<[HeaderName]>,
    /// A fingerprint of everything that shapes the route's answers (its definition, its
    /// file's settings, its backends and provider): a reload that changes any of it
    /// makes new keys, so requests still running on the old config cannot fill them.
    pub generation: u64,
}

/// What the connection and the edge know, for the key.
pub struct Origin<'a> {
    /// A split route's chosen target (its entries are kept apart).
    pub target: Option<&'a str>,
    /// The normalised path.
    pub path: &'a str,
    /// The query as the handler gets it (an API key's parameter cut).
    pub query: Option<&'a str>,
    /// The caller, when authenticated.
    pub identity: Option<&'a Identity>,
    /// The peer is a trusted proxy (its `X-Forwarded-*` are believed).
    pub trusted_peer: bool,
    /// The connection is TLS.
    pub tls: bool,
}

/// A request the cache handles.
#[derive(Debug)]
pub struct Keyed {
    primary: Key,
    head: bool,
    asked: Asked,
    /// The request said `Cache-Control: no-store`.
    no_store: bool,
    if_none_match: Option<HeaderValue>,
    if_modified_since: Option<HeaderValue>,
    /// The identity's headers (what the backend sees under the protected names).
    identity: Vec<(HeaderName, HeaderValue)>,
    protected: Arc<[HeaderName]>,
}

impl Keyed {
    /// A HEAD request (answered from GET's entry; its own answer is not stored).
    pub fn is_head(&self) -> bool {
        self.head
    }

    /// The same key for a background refresh: a GET without conditions.
    pub fn refreshing(&self) -> Keyed {
        Keyed {
            primary: self.primary.clone(),
            head: false,
            asked: self.asked,
            no_store: false,
            if_none_match: None,
            if_modified_since: None,
            identity: self.identity.clone(),
            protected: self.protected.clone(),
        }
    }

    /// Puts the conditional headers back, for a request that goes on uncached (the
    /// backend may then answer 304 itself).
    pub fn restore_conditions(&self, headers: &mut HeaderMap) {
        if let Some(v) = &self.if_none_match {
            headers.insert(IF_NONE_MATCH, v.clone());
        }
        if let Some(v) = &self.if_modified_since {
            headers.insert(IF_MODIFIED_SINCE, v.clone());
        }
    }

    fn modified_since(&self) -> Option<SystemTime> {
        self.if_modified_since
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
    }
}

/// What [`Cached::prepare`] decided.
#[derive(Debug)]
pub enum Prepared {
    /// The cache stays out of it; the handler answers, with this `Cache-Status`.
    Bypass(HeaderValue),
    /// Looked up and maybe stored.
    Keyed(Keyed),
}

/// What the store holds for a request.
#[derive(Debug)]
pub enum Found {
    /// A fresh entry.
    Fresh(Arc<Entry>),
    /// A stale one to serve now, refreshing in the background.
    Revalidate(Arc<Entry>),
    /// The key's answers are not storable: straight on, no waiting for others.
    Pass,
    /// A stale one to serve if the backend fails; else nothing usable.
    Miss(Option<Arc<Entry>>),
}

impl Cached {
    /// Whether the request can use the cache, and its key. Cuts hop-by-hop headers (and
    /// those `Connection` names), the URL-override headers and the conditional headers
    /// (the cache answers them itself) from the request.
    pub fn prepare(&self, req: &mut Request<ClientBody>, origin: &Origin<'_>) -> Prepared {
        let method = req.method();
        if method != Method::GET && method != Method::HEAD {
            return Prepared::Bypass(status("fwd=method", None));
        }
        let headers = req.headers();
        // HTTP/2 may send a body without announcing its length.
        let has_body = headers.contains_key(TRANSFER_ENCODING)
            || headers
                .get(CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0")
            || !http_body::Body::is_end_stream(req.body());
        if has_body {
            return Prepared::Bypass(status("fwd=request", Some("body")));
        }
        if headers.contains_key(RANGE) {
            return Prepared::Bypass(status("fwd=request", Some("range")));
        }
        if headers.contains_key(UPGRADE) {
            return Prepared::Bypass(status("fwd=request", Some("upgrade")));
        }
        let caller = origin.identity.and_then(|i| i.api_key().or(i.subject()));
        if self.policy.private && caller.is_none() {
            return Prepared::Bypass(status("fwd=request", Some("no-subject")));
        }
        // What the backend will not see must not be part of the key, and what it sees
        // must be: hop-by-hop headers go now (the proxy would cut them anyway).
        let head = req.method() == Method::HEAD;
        // (A URI clone shares its bytes.)
        let uri = req.uri().clone();
        let h = req.headers_mut();
        strip_hop_by_hop(h, false);
        let doomed: Vec<HeaderName> = h
            .keys()
            .filter(|n| {
                let name = n.as_str();
                OVERRIDES.contains(&name)
                    || (name.contains('_') && OVERRIDES.contains(&name.replace('_', "-").as_str()))
            })
            .cloned()
            .collect();
        for name in doomed {
            h.remove(name);
        }
        let if_none_match = h.remove(IF_NONE_MATCH);
        let if_modified_since = h.remove(IF_MODIFIED_SINCE);
        let headers = req.headers();
        let no_store = headers.contains_key(http::header::CACHE_CONTROL)
            && Directives::parse(headers).no_store;
        let asked = Asked {
            credentials: origin.identity.is_some() || self.carriers.present(headers, uri.query()),
        };
        let identity: Vec<(HeaderName, HeaderValue)> = origin
            .identity
            .map(|i| i.headers().to_vec())
            .unwrap_or_default();
        let mut keyed = Keyed {
            primary: Key {
                route: self.route.clone(),
                path: Arc::from(origin.path),
                rest: Arc::from(&b""[..]),
                entry: false,
            },
            head,
            asked,
            no_store,
            if_none_match,
            if_modified_since,
            identity,
            protected: self.protected.clone(),
        };
        let mut rest = Vec::with_capacity(128);
        rest.extend_from_slice(&self.generation.to_le_bytes());
        // HEAD is answered from GET's entry.
        push(&mut rest, b"GET");
        let forwarded = |name: &str| -> Option<Vec<&HeaderValue>> {
            let lines: Vec<&HeaderValue> = headers.get_all(name).iter().collect();
            (origin.trusted_peer && !lines.is_empty()).then_some(lines)
        };
        match forwarded("x-forwarded-host") {
            Some(lines) => push_lines(&mut rest, &lines),
            None => {
                let host = headers
                    .get(HOST)
                    .map(|v| v.as_bytes().to_vec())
                    .or_else(|| uri.authority().map(|a| a.as_str().as_bytes().to_vec()))
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                push(&mut rest, &host);
            }
        }
        match forwarded("x-forwarded-proto") {
            Some(lines) => push_lines(&mut rest, &lines),
            None => push(&mut rest, if origin.tls { b"https" } else { b"http" }),
        }
        // What a trusted proxy says about the URL the client used reaches the backend.
        for name in ["x-forwarded-prefix", "x-forwarded-port"] {
            if let Some(lines) = forwarded(name) {
                push(&mut rest, name.as_bytes());
                push_lines(&mut rest, &lines);
            }
        }
        push(
            &mut rest,
            sorted_query(origin.query.unwrap_or_default()).as_bytes(),
        );
        push_values(&mut rest, &self.policy.vary, headers, &keyed);
        if self.policy.private {
            // The caller, and everything of it the backend is told.
            push(&mut rest, caller.unwrap_or_default().as_bytes());
            for (name, value) in &keyed.identity {
                push(&mut rest, name.as_str().as_bytes());
                push(&mut rest, value.as_bytes());
            }
        }
        if let Some(target) = origin.target {
            push(&mut rest, target.as_bytes());
        }
        keyed.primary.rest = rest.into();
        Prepared::Keyed(keyed)
    }

    /// What the store has for the request.
    pub fn find(&self, keyed: &Keyed, headers: &HeaderMap) -> Found {
        let entry = match self.store.lookup(keyed, headers) {
            Lookup::Nothing => return Found::Miss(None),
            Lookup::Pass => return Found::Pass,
            Lookup::Entry(entry) => entry,
        };
        if keyed.asked.credentials && !entry.keep.with_credentials {
            return Found::Miss(None);
        }
        match entry.freshness() {
            Freshness::Fresh => Found::Fresh(entry),
            Freshness::Revalidate => Found::Revalidate(entry),
            Freshness::IfError => Found::Miss(Some(entry)),
            Freshness::Expired => Found::Miss(None),
        }
    }

    /// Leads the call for the request's key, or waits (until `deadline`) for the one in
    /// flight to end. `None`: somebody else led; look again.
    pub async fn lead(
        &self,
        keyed: &Keyed,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Flight>, Problem> {
        match self.store.join(&keyed.primary) {
            Ok(flight) => Ok(Some(flight)),
            Err(mut rx) => {
                // The sender is dropped when the lead ends, however it ends.
                tokio::time::timeout_at(deadline, rx.changed())
                    .await
                    .map_err(|_| Problem::gateway_timeout())
                    .map(|_| None)
            }
        }
    }

    /// Leads a background refresh, unless a call for the key is already running.
    pub fn lead_now(&self, keyed: &Keyed) -> Option<Flight> {
        self.store.join(&keyed.primary).ok()
    }

    /// An answer from a stored entry: 304 when the request's condition matches, no body
    /// for HEAD; `Age` set.
    pub fn answer(&self, keyed: &Keyed, entry: &Entry) -> Response<ResponseBody> {
        let etag = entry.headers.get(ETAG);
        if not_modified(keyed, entry.status, etag, last_modified(&entry.headers)) {
            let mut res = not_modified_answer(&entry.headers);
            res.headers_mut()
                .insert(AGE, HeaderValue::from(entry.age().as_secs()));
            return res;
        }
        let mut headers = entry.headers.clone();
        headers.insert(AGE, HeaderValue::from(entry.age().as_secs()));
        let body = if keyed.head {
            ResponseBody::empty()
        } else {
            ResponseBody::full(entry.body.clone())
        };
        let mut res = Response::new(body);
        *res.status_mut() = entry.status;
        *res.headers_mut() = headers;
        res
    }

    /// A stale entry standing in for a failure.
    fn stand_in(
        &self,
        keyed: &Keyed,
        entry: &Entry,
        fwd: &str,
        code: u16,
    ) -> (Response<ResponseBody>, HeaderValue) {
        self.store.stats.stale.fetch_add(1, Ordering::Relaxed);
        let value = format!(
            "portico; {fwd}; fwd-status={code}; ttl={}; detail=stale-if-error",
            entry.ttl()
        );
        (self.answer(keyed, entry), header(&value))
    }

    /// A request that waited for another one's call past its deadline: the stale entry
    /// if there is one, else the timeout.
    pub fn waited_too_long(
        &self,
        keyed: &Keyed,
        stale: Option<&Entry>,
        problem: Problem,
    ) -> (Result<Response<ResponseBody>, Problem>, HeaderValue) {
        match stale {
            Some(entry) => {
                let (res, status) = self.stand_in(keyed, entry, "fwd=stale", 504);
                (Ok(res), status)
            }
            None => (
                Err(problem),
                header("portico; fwd=miss; collapsed; fwd-status=504"),
            ),
        }
    }

    /// Takes the handler's answer: stores it when it may be, answering from the new entry;
    /// serves `stale` instead of a failure when the entry allows it; passes anything else
    /// on. Returns the answer and its `Cache-Status`.
    pub async fn settle(
        &self,
        keyed: &Keyed,
        request: &HeaderMap,
        result: Result<Response<ResponseBody>, Problem>,
        stale: Option<Arc<Entry>>,
        deadline: tokio::time::Instant,
    ) -> (Result<Response<ResponseBody>, Problem>, HeaderValue) {
        self.store.stats.misses.fetch_add(1, Ordering::Relaxed);
        let fwd = if stale.is_some() {
            "fwd=stale"
        } else {
            "fwd=miss"
        };
        let failed = match &result {
            Err(p) if p.code().status().is_server_error() => Some(p.code().status().as_u16()),
            Ok(res) if is_failure(res) => Some(res.status().as_u16()),
            _ => None,
        };
        if let (Some(code), Some(entry)) = (failed, &stale) {
            let (res, status) = self.stand_in(keyed, entry, fwd, code);
            return (Ok(res), status);
        }
        let res = match result {
            Ok(res) => res,
            Err(p) => {
                let value = format!("portico; {fwd}; fwd-status={}", p.code().status().as_u16());
                return (Err(p), header(&value));
            }
        };
        let code = res.status().as_u16();
        let keep = if keyed.head {
            Err("head")
        } else if keyed.no_store {
            Err("request-no-store")
        } else {
            control::storable(&self.policy, keyed.asked, res.status(), res.headers())
        };
        let keep = keep.and_then(|k| {
            let too_large = res
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|n| n > self.store.settings().max_entry_size as u64);
            if too_large { Err("size") } else { Ok(k) }
        });
        let keep = match keep {
            Ok(k) => k,
            Err(why) => {
                // What the resource says of itself holds for the next requests too.
                if matches!(
                    why,
                    "no-store" | "no-cache" | "private" | "set-cookie" | "vary" | "size"
                ) {
                    self.store.pass(keyed, self.policy.ttl);
                }
                let value = format!("portico; {fwd}; fwd-status={code}; detail={why}");
                let etag = res.headers().get(ETAG);
                if res.status() == StatusCode::OK
                    && not_modified(keyed, res.status(), etag, last_modified(res.headers()))
                {
                    return (Ok(not_modified_answer(res.headers())), header(&value));
                }
                return (Ok(res), header(&value));
            }
        };
        let (mut parts, body) = res.into_parts();
        let read = tokio::time::timeout_at(
            deadline,
            body.read_up_to(self.store.settings().max_entry_size),
        )
        .await;
        let bytes = match read {
            Ok(Read::Whole(bytes)) => bytes,
            Ok(Read::TooLarge(body)) => {
                self.store.pass(keyed, self.policy.ttl);
                let value = format!("portico; {fwd}; fwd-status={code}; detail=size");
                return (Ok(Response::from_parts(parts, body)), header(&value));
            }
            Ok(Read::Broken) | Err(_) => {
                let (problem, code) = if read.is_err() {
                    (Problem::gateway_timeout(), 504)
                } else {
                    (Problem::upstream_unavailable(), 502)
                };
                if let Some(entry) = &stale {
                    let (res, status) = self.stand_in(keyed, entry, fwd, code);
                    return (Ok(res), status);
                }
                let value = format!("portico; {fwd}; fwd-status={code}; detail=body");
                return (Err(problem), header(&value));
            }
        };
        for name in [AGE, PER_RESPONSE[0].clone(), PER_RESPONSE[1].clone()] {
            parts.headers.remove(name);
        }
        let entry = Entry {
            status: parts.status,
            headers: parts.headers,
            body: bytes,
            stored: Instant::now(),
            keep,
        };
        let entry = self.store.insert(keyed, request, entry);
        let value = format!(
            "portico; {fwd}; fwd-status={code}; stored; ttl={}",
            entry.keep.fresh_for.as_secs()
        );
        (Ok(self.answer(keyed, &entry)), header(&value))
    }

    /// `Cache-Status` of an answer from a stored entry.
    pub fn hit_status(&self, entry: &Entry, detail: Option<&str>) -> HeaderValue {
        self.store.stats.hits.fetch_add(1, Ordering::Relaxed);
        if detail.is_some() {
            self.store.stats.stale.fetch_add(1, Ordering::Relaxed);
        }
        let mut value = format!("portico; hit; ttl={}", entry.ttl());
        if let Some(d) = detail {
            value.push_str("; detail=");
            value.push_str(d);
        }
        header(&value)
    }

    /// `Cache-Status` of a request that waited for another one's call and took its entry.
    pub fn collapsed_status(&self, entry: &Entry) -> HeaderValue {
        self.store.stats.hits.fetch_add(1, Ordering::Relaxed);
        header(&format!(
            "portico; fwd=miss; collapsed; ttl={}",
            entry.ttl()
        ))
    }
}

/// Headers about one response's own making, never replayed from the cache.
static PER_RESPONSE: [HeaderName; 2] = [
    HeaderName::from_static("server-timing"),
    HeaderName::from_static("traceresponse"),
];

/// A failure that a stale entry may stand in for: 500, 502, 503, 504 (RFC 5861), or a
/// partial aggregate answer.
fn is_failure(res: &Response<ResponseBody>) -> bool {
    matches!(res.status().as_u16(), 500 | 502 | 503 | 504) || res.headers().contains_key(&PARTIAL)
}

fn last_modified(headers: &HeaderMap) -> Option<SystemTime> {
    headers
        .get(LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
}

/// Whether the request's condition holds for an answer (RFC 9110 §13.1.2, §13.1.3):
/// `If-None-Match` (weak comparison; `*` matches) wins over `If-Modified-Since`.
fn not_modified(
    keyed: &Keyed,
    status: StatusCode,
    etag: Option<&HeaderValue>,
    modified: Option<SystemTime>,
) -> bool {
    if !status.is_success() {
        return false;
    }
    if let Some(inm) = &keyed.if_none_match {
        let Some(etag) = etag else {
            return false;
        };
        let weak = |t: &[u8]| -> Vec<u8> { t.strip_prefix(b"W/").unwrap_or(t).to_vec() };
        let ours = weak(etag.as_bytes());
        return inm
            .as_bytes()
            .split(|b| *b == b',')
            .map(|t| t.trim_ascii())
            .any(|t| t == b"*" || weak(t) == ours);
    }
    match (keyed.modified_since(), modified) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// A 304 with the headers RFC 9110 §15.4.5 keeps.
fn not_modified_answer(headers: &HeaderMap) -> Response<ResponseBody> {
    let mut res = Response::new(ResponseBody::empty());
    *res.status_mut() = StatusCode::NOT_MODIFIED;
    let keep = [
        ETAG,
        http::header::CACHE_CONTROL,
        http::header::EXPIRES,
        http::header::VARY,
        http::header::CONTENT_LOCATION,
        http::header::DATE,
        LAST_MODIFIED,
    ];
    for name in keep {
        for v in headers.get_all(&name) {
            res.headers_mut().append(name.clone(), v.clone());
        }
    }
    res
}

/// The query's `&`-separated parameters ordered by name (same names keep their order).
fn sorted_query(query: &str) -> String {
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    fn name(p: &str) -> &str {
        p.split('=').next().unwrap_or_default()
    }
    params.sort_by(|a, b| name(a).cmp(name(b)));
    params.join("&")
}

fn status(fwd: &str, detail: Option<&str>) -> HeaderValue {
    match detail {
        Some(d) => header(&format!("portico; {fwd}; detail={d}")),
        None => header(&format!("portico; {fwd}")),
    }
}

fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("portico"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_sort_by_name_and_keep_repeated_names_in_order() {
        assert_eq!(sorted_query("b=2&a=1"), "a=1&b=2");
        assert_eq!(sorted_query("x=2&a=1&x=1&"), "a=1&x=2&x=1");
        assert_eq!(sorted_query(""), "");
    }

    #[test]
    fn absent_and_empty_headers_are_different_keys() {
        let mut empty = Vec::new();
        push_lines(&mut empty, &[&HeaderValue::from_static("")]);
        let mut absent = Vec::new();
        push_lines(&mut absent, &[]);
        assert_ne!(empty, absent);
        let mut two = Vec::new();
        push_lines(
            &mut two,
            &[
                &HeaderValue::from_static("a"),
                &HeaderValue::from_static("b"),
            ],
        );
        let mut joined = Vec::new();
        push_lines(&mut joined, &[&HeaderValue::from_static("a,b")]);
        assert_eq!(two, joined, "lines join like one comma-separated line");
    }
}
