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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{
    AGE, CONTENT_LENGTH, ETAG, HOST, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, RANGE,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use tokio::sync::watch;

use crate::auth::Identity;
use crate::body::{ClientBody, Read, ResponseBody};
use crate::config::{CacheSettings, RouteCache};
use crate::error::Problem;

pub mod control;

use control::{Asked, Keep};

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

/// Where an entry lives: its route and path (for purges), and the rest of the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    route: Arc<str>,
    path: Arc<str>,
    rest: Arc<[u8]>,
}

impl Key {
    fn weight(&self) -> usize {
        self.route.len() + self.path.len() + self.rest.len() + 64
    }

    /// This key followed by the values of `names` in `headers`.
    fn with_values(&self, names: &[HeaderName], headers: &HeaderMap) -> Key {
        let mut rest = self.rest.to_vec();
        push_values(&mut rest, names, headers);
        Key {
            route: self.route.clone(),
            path: self.path.clone(),
            rest: rest.into(),
        }
    }
}

/// Appends each name's values (all lines, in order) to a key, length-prefixed.
fn push_values(out: &mut Vec<u8>, names: &[HeaderName], headers: &HeaderMap) {
    for name in names {
        let mut value: Vec<u8> = Vec::new();
        for (i, v) in headers.get_all(name).iter().enumerate() {
            if i > 0 {
                value.push(b',');
            }
            value.extend_from_slice(v.as_bytes());
        }
        push(out, name.as_str().as_bytes());
        // "absent" and "empty" are different requests.
        push(
            out,
            if headers.contains_key(name) {
                &value
            } else {
                b"\xff"
            },
        );
    }
}

fn push(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(field);
}

/// One stored answer.
#[derive(Debug)]
pub struct Entry {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    stored: Instant,
    keep: Keep,
    etag: Option<HeaderValue>,
    last_modified: Option<SystemTime>,
}

/// How usable an entry is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Fresh, for this many more seconds.
    Fresh,
    /// Stale, but within `stale_while_revalidate`.
    Revalidate,
    /// Stale, but within `stale_if_error`.
    IfError,
    /// Only good for nothing.
    Expired,
}

impl Entry {
    fn since_stored(&self) -> Duration {
        self.stored.elapsed()
    }

    /// Current age: the backend's `Age` plus the time since it was stored.
    fn age(&self) -> Duration {
        self.keep.age + self.since_stored()
    }

    /// Seconds of freshness left (negative once stale), for `Cache-Status: ttl`.
    fn ttl(&self) -> i64 {
        let fresh = self.keep.fresh_for.as_secs_f64();
        let spent = self.since_stored().as_secs_f64();
        (fresh - spent).floor() as i64
    }

    fn freshness(&self) -> Freshness {
        let since = self.since_stored();
        let fresh = self.keep.fresh_for;
        if since < fresh {
            Freshness::Fresh
        } else if since < fresh + self.keep.stale_while_revalidate {
            Freshness::Revalidate
        } else if since < fresh + self.keep.stale_if_error {
            Freshness::IfError
        } else {
            Freshness::Expired
        }
    }

    /// How long the store keeps it: fresh time plus the longer stale window.
    fn lifetime(&self) -> Duration {
        self.keep.fresh_for
            + self
                .keep
                .stale_while_revalidate
                .max(self.keep.stale_if_error)
    }

    fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        self.body.len() + headers + 256
    }
}

/// The backend's `Vary` for a key, remembered as long as its entries.
#[derive(Debug)]
struct Variants {
    names: Vec<HeaderName>,
    lifetime: Duration,
}

struct Lifetimes;

impl moka::Expiry<Key, Arc<Entry>> for Lifetimes {
    fn expire_after_create(&self, _: &Key, entry: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(entry.lifetime())
    }
    fn expire_after_update(
        &self,
        _: &Key,
        entry: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.lifetime())
    }
}

impl moka::Expiry<Key, Arc<Variants>> for Lifetimes {
    fn expire_after_create(&self, _: &Key, v: &Arc<Variants>, _: Instant) -> Option<Duration> {
        Some(v.lifetime)
    }
    fn expire_after_update(
        &self,
        _: &Key,
        v: &Arc<Variants>,
        _: Instant,
        current: Option<Duration>,
    ) -> Option<Duration> {
        // The longest-lived entry under it decides.
        Some(current.map_or(v.lifetime, |c| c.max(v.lifetime)))
    }
}

/// Counters, for the admin API and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Answered from the cache.
    pub hits: AtomicU64,
    /// Sent to the handler and stored.
    pub stored: AtomicU64,
    /// Sent to the handler (miss, or not storable).
    pub misses: AtomicU64,
    /// Stale answers served (while revalidating, or on error).
    pub stale: AtomicU64,
}

/// The one cache of a gateway.
pub struct Store {
    settings: CacheSettings,
    entries: moka::sync::Cache<Key, Arc<Entry>>,
    variants: moka::sync::Cache<Key, Arc<Variants>>,
    flights: Mutex<HashMap<Key, watch::Receiver<()>>>,
    /// Hit and miss counts.
    pub stats: Stats,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("settings", &self.settings)
            .field("entries", &self.entries.entry_count())
            .finish_non_exhaustive()
    }
}

/// Which entries a purge drops.
#[derive(Debug, Clone)]
pub enum Purge {
    /// Every entry.
    All,
    /// The entries of one route.
    Route(String),
    /// Entries whose path is this path or lies below it.
    Prefix(String),
}

impl Purge {
    fn matches(&self, key: &Key) -> bool {
        match self {
            Purge::All => true,
            Purge::Route(id) => *key.route == **id,
            Purge::Prefix(p) => {
                let path = &*key.path;
                path == p
                    || (path.starts_with(p.as_str())
                        && (p.ends_with('/') || path.as_bytes().get(p.len()) == Some(&b'/')))
            }
        }
    }
}

impl Store {
    /// An empty store within `settings`.
    pub fn new(settings: CacheSettings) -> Store {
        // Variant lists are small; they get a sixteenth of the budget.
        let entries = moka::sync::Cache::builder()
            .max_capacity(settings.max_size - settings.max_size / 16)
            .weigher(|k: &Key, e: &Arc<Entry>| {
                u32::try_from(k.weight() + e.weight()).unwrap_or(u32::MAX)
            })
            .expire_after(Lifetimes)
            .build();
        let variants = moka::sync::Cache::builder()
            .max_capacity(settings.max_size / 16)
            .weigher(|k: &Key, v: &Arc<Variants>| {
                let names: usize = v.names.iter().map(|n| n.as_str().len() + 16).sum();
                u32::try_from(k.weight() + names + 64).unwrap_or(u32::MAX)
            })
            .expire_after(Lifetimes)
            .build();
        Store {
            settings,
            entries,
            variants,
            flights: Mutex::new(HashMap::new()),
            stats: Stats::default(),
        }
    }

    /// The bounds it was made with.
    pub fn settings(&self) -> CacheSettings {
        self.settings
    }

    /// Drops the matching entries; returns how many answers were dropped.
    pub fn purge(&self, which: &Purge) -> u64 {
        let mut dropped = 0;
        let doomed: Vec<Arc<Key>> = self
            .entries
            .iter()
            .filter(|(k, _)| which.matches(k))
            .map(|(k, _)| k)
            .collect();
        for k in doomed {
            if self.entries.remove(&*k).is_some() {
                dropped += 1;
            }
        }
        let doomed: Vec<Arc<Key>> = self
            .variants
            .iter()
            .filter(|(k, _)| which.matches(k))
            .map(|(k, _)| k)
            .collect();
        for k in doomed {
            self.variants.invalidate(&*k);
        }
        dropped
    }

    /// Entries and their weighed bytes (after pending maintenance).
    pub fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.entry_count(), self.entries.weighted_size())
    }

    fn lookup(&self, primary: &Key, headers: &HeaderMap) -> Option<Arc<Entry>> {
        let variants = self.variants.get(primary)?;
        self.entries
            .get(&primary.with_values(&variants.names, headers))
    }

    /// Joins the call for `key`: the first caller leads (and holds the guard until its
    /// answer is stored or dropped); the others get a receiver that wakes when it ends.
    fn join(self: &Arc<Self>, key: &Key) -> Result<Flight, watch::Receiver<()>> {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = flights.get(key) {
            return Err(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        flights.insert(key.clone(), rx);
        Ok(Flight {
            store: self.clone(),
            key: key.clone(),
            _tx: tx,
        })
    }

    fn insert(&self, primary: &Key, request: &HeaderMap, entry: Entry) -> Arc<Entry> {
        let entry = Arc::new(entry);
        let full = primary.with_values(&entry.keep.vary, request);
        self.variants.insert(
            primary.clone(),
            Arc::new(Variants {
                names: entry.keep.vary.clone(),
                lifetime: entry.lifetime(),
            }),
        );
        self.entries.insert(full, entry.clone());
        self.stats.stored.fetch_add(1, Ordering::Relaxed);
        entry
    }
}

/// The lead of one call to the handler for a key; dropping it wakes the waiters.
pub struct Flight {
    store: Arc<Store>,
    key: Key,
    _tx: watch::Sender<()>,
}

impl Drop for Flight {
    fn drop(&mut self) {
        let mut flights = self.store.flights.lock().unwrap_or_else(|p| p.into_inner());
        flights.remove(&self.key);
    }
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
}

/// What the connection and the edge know, for the key.
pub struct Origin<'a> {
    /// The normalised path.
    pub path: &'a str,
    /// The query as the handler gets it (an API key's parameter cut).
    pub query: Option<&'a str>,
    /// The caller, when authenticated.
    pub identity: Option<&'a Identity>,
    /// The peer is a trusted proxy (its `X-Forwarded-Host`/`-Proto` are believed).
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
    if_none_match: Option<HeaderValue>,
    if_modified_since: Option<SystemTime>,
}

impl Keyed {
    /// The same key for a background refresh: a GET without conditions.
    pub fn refreshing(&self) -> Keyed {
        Keyed {
            primary: self.primary.clone(),
            head: false,
            asked: self.asked,
            if_none_match: None,
            if_modified_since: None,
        }
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
    /// A stale one to serve if the backend fails; else nothing usable.
    Miss(Option<Arc<Entry>>),
}

impl Cached {
    /// Whether the request can use the cache, and its key. Cuts the conditional headers
    /// (the cache answers them itself) and the URL-override headers from the request.
    pub fn prepare(&self, req: &mut Request<ClientBody>, origin: &Origin<'_>) -> Prepared {
        let method = req.method();
        if method != Method::GET && method != Method::HEAD {
            return Prepared::Bypass(status("fwd=method", None));
        }
        let headers = req.headers();
        let has_body = headers.contains_key(TRANSFER_ENCODING)
            || headers
                .get(CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0");
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
        let asked = Asked {
            credentials: self.carriers.present(headers, origin.query),
        };
        let mut rest = Vec::with_capacity(128);
        // HEAD is answered from GET's entry.
        push(&mut rest, b"GET");
        let forwarded = |name: &str| {
            origin
                .trusted_peer
                .then(|| headers.get(name))
                .flatten()
                .map(HeaderValue::as_bytes)
        };
        let host = forwarded("x-forwarded-host")
            .or_else(|| headers.get(HOST).map(HeaderValue::as_bytes))
            .or_else(|| req.uri().authority().map(|a| a.as_str().as_bytes()))
            .unwrap_or_default()
            .to_ascii_lowercase();
        push(&mut rest, &host);
        let scheme =
            forwarded("x-forwarded-proto").unwrap_or(if origin.tls { b"https" } else { b"http" });
        push(&mut rest, scheme);
        push(
            &mut rest,
            sorted_query(origin.query.unwrap_or_default()).as_bytes(),
        );
        push_values(&mut rest, &self.policy.vary, headers);
        if self.policy.private {
            push(&mut rest, caller.unwrap_or_default().as_bytes());
        }
        let if_none_match = headers.get(IF_NONE_MATCH).cloned();
        let if_modified_since = headers
            .get(IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());
        let head = req.method() == Method::HEAD;
        let h = req.headers_mut();
        h.remove(IF_NONE_MATCH);
        h.remove(IF_MODIFIED_SINCE);
        for name in OVERRIDES {
            h.remove(name);
        }
        Prepared::Keyed(Keyed {
            primary: Key {
                route: self.route.clone(),
                path: Arc::from(origin.path),
                rest: rest.into(),
            },
            head,
            asked,
            if_none_match,
            if_modified_since,
        })
    }

    /// What the store has for the request.
    pub fn find(&self, keyed: &Keyed, headers: &HeaderMap) -> Found {
        let Some(entry) = self.store.lookup(&keyed.primary, headers) else {
            return Found::Miss(None);
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
        let mut headers = entry.headers.clone();
        let age = entry.age().as_secs();
        headers.insert(AGE, HeaderValue::from(age));
        if not_modified(keyed, entry) {
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
                AGE,
            ];
            for name in keep {
                for v in headers.get_all(&name) {
                    res.headers_mut().append(name.clone(), v.clone());
                }
            }
            return res;
        }
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
            Err(p) => Some(p.code().status().as_u16()),
            Ok(res) if is_failure(res) => Some(res.status().as_u16()),
            Ok(_) => None,
        };
        if let (Some(code), Some(entry)) = (failed, &stale) {
            self.store.stats.stale.fetch_add(1, Ordering::Relaxed);
            let value = format!(
                "portico; {fwd}; fwd-status={code}; ttl={}; detail=stale-if-error",
                entry.ttl()
            );
            return (Ok(self.answer(keyed, entry)), header(&value));
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
        } else {
            control::storable(&self.policy, keyed.asked, res.status(), res.headers())
        };
        let keep = keep.and_then(|k| {
            let too_large = res
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|n| n > self.store.settings.max_entry_size as u64);
            if too_large { Err("size") } else { Ok(k) }
        });
        let keep = match keep {
            Ok(k) => k,
            Err(why) => {
                let value = format!("portico; {fwd}; fwd-status={code}; detail={why}");
                return (Ok(res), header(&value));
            }
        };
        let (mut parts, body) = res.into_parts();
        let read = tokio::time::timeout_at(
            deadline,
            body.read_up_to(self.store.settings.max_entry_size),
        )
        .await;
        let bytes = match read {
            Ok(Read::Whole(bytes)) => bytes,
            Ok(Read::TooLarge(body)) => {
                let value = format!("portico; {fwd}; fwd-status={code}; detail=size");
                return (Ok(Response::from_parts(parts, body)), header(&value));
            }
            Ok(Read::Broken) | Err(_) => {
                let problem = if read.is_err() {
                    Problem::gateway_timeout()
                } else {
                    Problem::upstream_unavailable()
                };
                let value = format!("portico; {fwd}; fwd-status={code}; detail=body");
                return (Err(problem), header(&value));
            }
        };
        parts.headers.remove(AGE);
        let etag = parts.headers.get(ETAG).cloned();
        let last_modified = parts
            .headers
            .get(LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());
        let entry = Entry {
            status: parts.status,
            headers: parts.headers,
            body: bytes,
            stored: Instant::now(),
            keep,
            etag,
            last_modified,
        };
        let entry = self.store.insert(&keyed.primary, request, entry);
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

/// A failure that a stale entry may stand in for: 500, 502, 503, 504 (RFC 5861), or a
/// partial aggregate answer.
fn is_failure(res: &Response<ResponseBody>) -> bool {
    matches!(res.status().as_u16(), 500 | 502 | 503 | 504) || res.headers().contains_key(&PARTIAL)
}

/// Whether the request's condition holds for the entry (RFC 9110 §13.1.2, §13.1.3):
/// `If-None-Match` (weak comparison; `*` matches) wins over `If-Modified-Since`.
fn not_modified(keyed: &Keyed, entry: &Entry) -> bool {
    if !entry.status.is_success() {
        return false;
    }
    if let Some(inm) = &keyed.if_none_match {
        let Some(etag) = &entry.etag else {
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
    match (keyed.if_modified_since, entry.last_modified) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// The query's `&`-separated parameters ordered by name (same names keep their order).
fn sorted_query(query: &str) -> String {
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    params.sort_by(|a, b| {
        let name = |p: &&str| p.split('=').next().unwrap_or_default().to_string();
        name(a).cmp(&name(b))
    });
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
    fn prefixes_purge_at_segment_boundaries() {
        let key = |path: &str| Key {
            route: Arc::from("r"),
            path: Arc::from(path),
            rest: Arc::from(&b""[..]),
        };
        let p = Purge::Prefix("/web/orders".into());
        assert!(p.matches(&key("/web/orders")));
        assert!(p.matches(&key("/web/orders/7")));
        assert!(!p.matches(&key("/web/ordersx")));
        assert!(Purge::Prefix("/web/".into()).matches(&key("/web/a")));
        assert!(Purge::Route("r".into()).matches(&key("/x")));
        assert!(!Purge::Route("s".into()).matches(&key("/x")));
    }

    #[test]
    fn absent_and_empty_headers_are_different_keys() {
        let base = Key {
            route: Arc::from("r"),
            path: Arc::from("/"),
            rest: Arc::from(&b""[..]),
        };
        let names = [HeaderName::from_static("accept")];
        let mut empty = HeaderMap::new();
        empty.insert("accept", HeaderValue::from_static(""));
        assert_ne!(
            base.with_values(&names, &HeaderMap::new()),
            base.with_values(&names, &empty)
        );
    }
}
