//! `partner.idempotency`: POST and PATCH with an `Idempotency-Key` are safe to repeat.
//!
//! Keys are scoped per caller (the API key's id or the token's subject). The request is
//! fingerprinted (method, path and query, body); then:
//!
//! - unknown key → the request runs; a final answer below 500 is kept for `ttl` and the
//!   key's later repeats get it back with `Idempotent-Replayed: true`, never reaching the
//!   backend again (a 5xx, a gateway problem or a cancelled request keeps nothing, so the
//!   client may try again),
//! - same key, same request, still running (or run, but its answer was too large to keep)
//!   → 409 IDEMPOTENCY_KEY_IN_USE,
//! - same key, another request → 422 IDEMPOTENCY_KEY_REUSED.
//!
//! The answers live in a [`Store`]: [`LocalStore`] (bounded, in memory) today, shared
//! between replicas (Redis) later.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway::body::{ClientBody, Read, ResponseBody};
use gateway::error::{Code, Problem};
use gateway::extend::{Exchange, Next, Reply};
use http::header::{CONTENT_LENGTH, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};

/// A request's fingerprint (SHA-256).
pub type Fingerprint = [u8; 32];

/// A kept answer.
#[derive(Debug, Clone)]
pub struct Stored {
    /// What it answered.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
    /// The request it answered.
    pub fingerprint: Fingerprint,
}

/// What a key's first sight decided.
#[derive(Debug)]
pub enum Begin {
    /// A new key: run the request, then `complete` or `abandon`.
    Started,
    /// The same request is still running.
    InFlight,
    /// The key was used for another request.
    Reused,
    /// The same request already answered: this answer.
    Replay(Arc<Stored>),
    /// The request already ran, but its answer could not be kept (too large, or it broke
    /// off): it is not run again.
    Unkept,
}

/// Where answers are kept.
pub trait Store: Send + Sync + Debug {
    /// Looks up `key` and claims it when new.
    fn begin(&self, key: &str, fingerprint: Fingerprint) -> Begin;
    /// Keeps the answer of a started key.
    fn complete(&self, key: &str, answer: Stored);
    /// Marks a started key as run, without an answer to replay.
    fn complete_unkept(&self, key: &str, fingerprint: Fingerprint);
    /// Forgets a started key (nothing kept; the client may try again).
    fn abandon(&self, key: &str);
}

#[derive(Debug)]
enum Entry {
    Running(Fingerprint),
    Done(Arc<Stored>),
    Unkept(Fingerprint),
}

/// The in-memory store: at most `max_keys` keys, each for `ttl`.
#[derive(Debug)]
pub struct LocalStore {
    cache: moka::sync::Cache<String, Arc<Entry>>,
}

impl LocalStore {
    /// A store keeping answers for `ttl`, at most `max_keys` of them.
    pub fn new(ttl: Duration, max_keys: u64) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .time_to_live(ttl)
                .max_capacity(max_keys)
                .build(),
        }
    }
}

impl Store for LocalStore {
    fn begin(&self, key: &str, fingerprint: Fingerprint) -> Begin {
        let entry = self
            .cache
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(Entry::Running(fingerprint)));
        if entry.is_fresh() {
            return Begin::Started;
        }
        match entry.value().as_ref() {
            Entry::Running(f) if *f == fingerprint => Begin::InFlight,
            Entry::Done(s) if s.fingerprint == fingerprint => Begin::Replay(s.clone()),
            Entry::Unkept(f) if *f == fingerprint => Begin::Unkept,
            _ => Begin::Reused,
        }
    }

    fn complete(&self, key: &str, answer: Stored) {
        self.cache
            .insert(key.to_string(), Arc::new(Entry::Done(Arc::new(answer))));
    }

    fn complete_unkept(&self, key: &str, fingerprint: Fingerprint) {
        self.cache
            .insert(key.to_string(), Arc::new(Entry::Unkept(fingerprint)));
    }

    fn abandon(&self, key: &str) {
        self.cache.invalidate(key);
    }
}

/// A started key: abandoned if nothing reached the backend, kept as run (without an
/// answer) if the backend acted but the answer was not kept — also when the client went
/// away in between.
struct Claim<'a> {
    store: &'a dyn Store,
    key: String,
    fingerprint: Fingerprint,
    /// The backend has answered (it acted).
    acted: bool,
    done: bool,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        match (self.done, self.acted) {
            (true, _) => {}
            (false, true) => self.store.complete_unkept(&self.key, self.fingerprint),
            (false, false) => self.store.abandon(&self.key),
        }
    }
}

/// The idempotency settings of a file, with their store.
#[derive(Debug)]
pub struct Idempotency {
    /// Where answers are kept.
    pub store: Arc<dyn Store>,
    /// The largest request and answer body kept.
    pub max_body: usize,
}

fn fingerprint(method: &Method, target: &str, body: &[u8]) -> Fingerprint {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(method.as_str().as_bytes());
    ctx.update(b"\0");
    ctx.update(target.as_bytes());
    ctx.update(b"\0");
    ctx.update(body);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl Idempotency {
    /// Runs the request through the store (POST and PATCH with a key), or just runs it.
    pub fn around<'a>(
        &'a self,
        request: &'a Exchange,
        body: Request<ClientBody>,
        next: Next<'a>,
    ) -> Reply<'a> {
        // Keys are scoped per caller: an anonymous request has no scope to keep them in.
        let keyed = matches!(request.method, Method::POST | Method::PATCH)
            && request.headers.contains_key("idempotency-key")
            && request.caller.is_some();
        if !keyed {
            return next(body);
        }
        Box::pin(self.run(request, body, next))
    }

    async fn run(
        &self,
        request: &Exchange,
        req: Request<ClientBody>,
        next: Next<'_>,
    ) -> Result<Response<ResponseBody>, Problem> {
        let key = request
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 255)
            .ok_or_else(|| {
                Problem::bad_request("Idempotency-Key must be 1 to 255 visible characters")
            })?;
        let (parts, body) = req.into_parts();
        let bytes = crate::module::read_request(body, self.max_body, request.deadline).await?;
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let fp = fingerprint(&parts.method, target, &bytes);
        // Keys are the caller's own: two partners may use the same key.
        let scoped = format!("{}\0{key}", request.caller.as_deref().unwrap_or_default());
        match self.store.begin(&scoped, fp) {
            Begin::Replay(stored) => {
                let mut res = Response::new(ResponseBody::full(stored.body.clone()));
                *res.status_mut() = stored.status;
                *res.headers_mut() = stored.headers.clone();
                res.headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
                Ok(res)
            }
            Begin::InFlight => Err(Problem::new(
                Code::IdempotencyKeyInUse,
                "a request with this Idempotency-Key is still in progress",
            )),
            Begin::Unkept => Err(Problem::new(
                Code::IdempotencyKeyInUse,
                "a request with this Idempotency-Key already ran; its answer could not be kept to replay",
            )),
            Begin::Reused => Err(Problem::new(
                Code::IdempotencyKeyReused,
                "this Idempotency-Key was already used for another request",
            )),
            Begin::Started => {
                let mut claim = Claim {
                    store: self.store.as_ref(),
                    key: scoped,
                    fingerprint: fp,
                    acted: false,
                    done: false,
                };
                let res = next(Request::from_parts(parts, ClientBody::read(bytes))).await?;
                if res.status().is_server_error() || res.status() == StatusCode::SWITCHING_PROTOCOLS
                {
                    return Ok(res); // the claim is dropped: nothing kept
                }
                claim.acted = true;
                let (mut head, body) = res.into_parts();
                let bytes = match body.read_up_to(self.max_body).await {
                    Read::Whole(bytes) => bytes,
                    // Kept as run by the claim's drop.
                    Read::TooLarge(body) => return Ok(Response::from_parts(head, body)),
                    Read::Broken => {
                        return Err(Problem::new(
                            Code::UpstreamUnavailable,
                            "the answer broke off",
                        ));
                    }
                };
                head.headers.remove(CONTENT_LENGTH);
                claim.store.complete(
                    &claim.key,
                    Stored {
                        status: head.status,
                        headers: head.headers.clone(),
                        body: bytes.clone(),
                        fingerprint: fp,
                    },
                );
                claim.done = true;
                Ok(Response::from_parts(head, ResponseBody::full(bytes)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(fp: Fingerprint) -> Stored {
        Stored {
            status: StatusCode::CREATED,
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"{}"),
            fingerprint: fp,
        }
    }

    #[test]
    fn a_key_runs_once_then_replays_and_refuses_other_requests() {
        let store = LocalStore::new(Duration::from_secs(60), 100);
        let a = fingerprint(&Method::POST, "/p", b"{\"x\":1}");
        let b = fingerprint(&Method::POST, "/p", b"{\"x\":2}");
        assert!(matches!(store.begin("k", a), Begin::Started));
        assert!(matches!(store.begin("k", a), Begin::InFlight));
        assert!(matches!(store.begin("k", b), Begin::Reused));
        store.complete("k", stored(a));
        assert!(matches!(store.begin("k", a), Begin::Replay(s) if s.status == StatusCode::CREATED));
        assert!(matches!(store.begin("k", b), Begin::Reused));
        store.abandon("other");
        assert!(matches!(store.begin("k2", a), Begin::Started));
        store.abandon("k2");
        assert!(
            matches!(store.begin("k2", a), Begin::Started),
            "abandoned keys start over"
        );
    }
}
