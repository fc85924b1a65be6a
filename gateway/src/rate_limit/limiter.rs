//! The limiter of one route.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use http::header::HeaderValue;
use http::{HeaderMap, HeaderName};

type Keyed =
    RateLimiter<Box<str>, DashMapStateStore<Box<str>>, DefaultClock, StateInformationMiddleware>;

/// What identifies a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// The client's address (after `trusted_proxies`).
    Ip,
    /// A request header's value (one shared bucket for requests without it).
    Header(HeaderName),
    /// The whole route: one bucket.
    Route,
    /// The authenticated identity (JWT `sub`, or the API key's id).
    Subject,
    /// The API key's id.
    ApiKey,
    /// A claim of the verified token (one shared bucket for tokens without it).
    Claim(String),
}

impl Key {
    /// Whether the key is known only after authentication.
    pub fn needs_identity(&self) -> bool {
        matches!(self, Key::Subject | Key::ApiKey | Key::Claim(_))
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Ip => f.write_str("ip"),
            Key::Header(h) => write!(f, "header:{h}"),
            Key::Route => f.write_str("route"),
            Key::Subject => f.write_str("subject"),
            Key::ApiKey => f.write_str("api_key"),
            Key::Claim(c) => write!(f, "claim:{c}"),
        }
    }
}

/// One configured limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// The bucket key.
    pub key: Key,
    /// Requests allowed per `per`.
    pub count: u32,
    /// The period of `count`.
    pub per: Duration,
    /// Burst size (bucket capacity).
    pub burst: u32,
}

/// A store's answer for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Counted; this many more would pass right now.
    Allowed {
        /// Requests left in the bucket.
        remaining: u32,
    },
    /// Over the limit; the next request passes after this long.
    Denied {
        /// Until the bucket has room again.
        wait: Duration,
    },
}

/// Where the buckets of one limit live. In this process today ([`LocalStore`], GCRA by
/// governor); a store shared by replicas (Redis) implements the same three calls.
pub trait Store: Send + Sync {
    /// Counts one request for `key` if the bucket has room.
    fn check(&self, key: &str) -> Verdict;
    /// Keys currently held.
    fn keys(&self) -> usize;
    /// Forgets keys whose buckets are full again (they hold no information).
    fn evict_idle(&self);
}

/// GCRA buckets in this process.
pub struct LocalStore {
    limiter: Keyed,
}

impl LocalStore {
    /// Buckets for `limit`.
    pub fn new(limit: &Limit) -> LocalStore {
        let burst = NonZeroU32::new(limit.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let cell = limit.per / limit.count.max(1);
        let quota = Quota::with_period(cell.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        LocalStore {
            limiter: RateLimiter::dashmap(quota).with_middleware::<StateInformationMiddleware>(),
        }
    }
}

impl Store for LocalStore {
    fn check(&self, key: &str) -> Verdict {
        // governor keys by owned strings; a lookup needs one.
        match self.limiter.check_key(&Box::from(key)) {
            Ok(state) => Verdict::Allowed {
                remaining: state.remaining_burst_capacity(),
            },
            Err(not_until) => Verdict::Denied {
                wait: not_until.wait_time_from(DefaultClock::default().now()),
            },
        }
    }

    fn keys(&self) -> usize {
        self.limiter.len()
    }

    fn evict_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

struct Live {
    limit: Limit,
    name: String,
    store: Box<dyn Store>,
}

/// The limits of one route, with their state.
pub struct Limits {
    live: Vec<Live>,
    policy: HeaderValue,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// What a request brings for the keys.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The client's address.
    pub client: IpAddr,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The authenticated identity, once known.
    pub identity: Option<&'a crate::auth::Identity>,
}

/// The checks of one request so far, across both phases (before and after auth).
#[derive(Debug, Default)]
pub struct Report {
    /// `(limit index, remaining, seconds until reset)`.
    seen: Vec<(usize, u32, u64)>,
    deny: Option<Duration>,
}

impl Report {
    /// Refused: wait this long.
    pub fn denied(&self) -> Option<Duration> {
        self.deny
    }
}

impl Limits {
    /// Builds the limiters of a route (in-process stores) and starts the eviction of
    /// idle keys.
    pub fn new(limits: Vec<Limit>) -> Arc<Limits> {
        Self::with_stores(limits, |l| Box::new(LocalStore::new(l)))
    }

    /// Builds the limiters of a route with stores from `store`.
    pub fn with_stores(
        limits: Vec<Limit>,
        store: impl Fn(&Limit) -> Box<dyn Store>,
    ) -> Arc<Limits> {
        let live: Vec<Live> = limits
            .into_iter()
            .enumerate()
            .map(|(i, limit)| Live {
                name: format!("l{i}"),
                store: store(&limit),
                limit,
            })
            .collect();
        let policy = live
            .iter()
            .map(|l| {
                format!(
                    "\"{}\";q={};w={}",
                    l.name,
                    l.limit.count,
                    l.limit.per.as_secs().max(1)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let limits = Arc::new(Limits {
            policy: HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("")),
            live,
        });
        spawn_eviction(Arc::downgrade(&limits));
        limits
    }

    /// Whether these are exactly `limits` (so a reload can keep their state).
    pub fn same_as(&self, limits: &[Limit]) -> bool {
        self.live.len() == limits.len() && self.live.iter().zip(limits).all(|(l, x)| l.limit == *x)
    }

    /// Whether any limit is keyed by the identity (checked after authentication).
    pub fn needs_identity(&self) -> bool {
        self.live.iter().any(|l| l.limit.key.needs_identity())
    }

    /// The `RateLimit-Policy` header value.
    pub fn policy(&self) -> &HeaderValue {
        &self.policy
    }

    /// Checks the limits whose keys are known: without an identity, those that need
    /// none; with one, those that need it. A request must pass all of them.
    pub fn check(&self, who: Subject<'_>, report: &mut Report) {
        let after_auth = who.identity.is_some();
        for (i, l) in self.live.iter().enumerate() {
            if l.limit.key.needs_identity() != after_auth {
                continue;
            }
            let key: std::borrow::Cow<'_, str> = match &l.limit.key {
                Key::Ip => who.client.to_string().into(),
                Key::Header(h) => who
                    .headers
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .into(),
                Key::Route => "".into(),
                Key::Subject => who
                    .identity
                    .and_then(|id| id.subject())
                    .unwrap_or("")
                    .into(),
                Key::ApiKey => who
                    .identity
                    .and_then(|id| id.api_key())
                    .unwrap_or("")
                    .into(),
                Key::Claim(c) => who
                    .identity
                    .and_then(|id| id.claim_text(c))
                    .unwrap_or_default()
                    .into(),
            };
            match l.store.check(&key) {
                Verdict::Allowed { remaining } => report.seen.push((i, remaining, 0)),
                Verdict::Denied { wait } => {
                    report.deny = Some(report.deny.map_or(wait, |d| d.max(wait)));
                    report
                        .seen
                        .push((i, 0, wait.as_secs() + u64::from(wait.subsec_nanos() > 0)));
                }
            }
        }
    }

    /// The `RateLimit` header value for what was checked.
    pub fn remaining(&self, report: &Report) -> Option<HeaderValue> {
        if report.seen.is_empty() {
            return None;
        }
        let mut seen = report.seen.clone();
        seen.sort_unstable_by_key(|(i, _, _)| *i);
        let header = seen
            .iter()
            .map(|(i, r, t)| format!("\"{}\";r={r};t={t}", self.live[*i].name))
            .collect::<Vec<_>>()
            .join(", ");
        HeaderValue::from_str(&header).ok()
    }

    /// Keys currently held (for tests and metrics).
    pub fn keys(&self) -> usize {
        self.live.iter().map(|l| l.store.keys()).sum()
    }
}

/// Drops keys whose buckets are full again, every second, for as long as the limits live.
fn spawn_eviction(limits: Weak<Limits>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let Some(limits) = limits.upgrade() else {
                return;
            };
            for l in &limits.live {
                l.store.evict_idle();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_keys_are_evicted() {
        let limits = Limits::new(vec![Limit {
            key: Key::Ip,
            count: 1000,
            per: Duration::from_secs(1),
            burst: 1,
        }]);
        let headers = HeaderMap::new();
        for i in 0..10_000u32 {
            let mut report = Report::default();
            let who = Subject {
                client: IpAddr::from(i.to_be_bytes()),
                headers: &headers,
                identity: None,
            };
            limits.check(who, &mut report);
            assert_eq!(report.denied(), None);
        }
        assert_eq!(limits.keys(), 10_000);
        // A bucket of 1 at 1000/s is full again after 1 ms.
        tokio::time::sleep(Duration::from_millis(20)).await;
        for l in &limits.live {
            l.store.evict_idle();
        }
        assert_eq!(limits.keys(), 0);
    }

    #[test]
    fn policy_names_every_limit() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _g = rt.enter();
        let limits = Limits::new(vec![
            Limit {
                key: Key::Ip,
                count: 50,
                per: Duration::from_secs(1),
                burst: 100,
            },
            Limit {
                key: Key::Route,
                count: 6000,
                per: Duration::from_secs(60),
                burst: 6000,
            },
        ]);
        assert_eq!(limits.policy(), "\"l0\";q=50;w=1, \"l1\";q=6000;w=60");
    }
}
