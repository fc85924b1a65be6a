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
}

/// One configured limit.
#[derive(Debug, Clone)]
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

struct Live {
    limit: Limit,
    name: String,
    limiter: Keyed,
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

/// The outcome for one request.
#[derive(Debug)]
pub enum Decision {
    /// Let through; the `RateLimit` header value to send.
    Allow(Option<HeaderValue>),
    /// Refused; wait this long.
    Deny {
        /// Until the next request would be allowed.
        retry_after: Duration,
        /// The `RateLimit` header value to send.
        remaining: Option<HeaderValue>,
    },
}

impl Limits {
    /// Builds the limiters of a route and starts the eviction of idle keys.
    pub fn new(limits: Vec<Limit>) -> Arc<Limits> {
        let live: Vec<Live> = limits
            .into_iter()
            .enumerate()
            .map(|(i, limit)| {
                let burst = NonZeroU32::new(limit.burst.max(1)).unwrap_or(NonZeroU32::MIN);
                let cell = limit.per / limit.count.max(1);
                let quota = Quota::with_period(cell.max(Duration::from_nanos(1)))
                    .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                    .allow_burst(burst);
                let limiter =
                    RateLimiter::dashmap(quota).with_middleware::<StateInformationMiddleware>();
                Live {
                    name: format!("l{i}"),
                    limit,
                    limiter,
                }
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

    /// The `RateLimit-Policy` header value.
    pub fn policy(&self) -> &HeaderValue {
        &self.policy
    }

    /// Checks every limit for a request; all must allow it.
    pub fn check(&self, client: IpAddr, headers: &HeaderMap) -> Decision {
        let mut remaining = Vec::with_capacity(self.live.len());
        let mut deny: Option<Duration> = None;
        let clock = DefaultClock::default();
        for l in &self.live {
            let key: Box<str> = match &l.limit.key {
                Key::Ip => client.to_string().into(),
                Key::Header(h) => headers
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .into(),
                Key::Route => "".into(),
            };
            match l.limiter.check_key(&key) {
                Ok(state) => remaining.push((l, state.remaining_burst_capacity(), 0)),
                Err(not_until) => {
                    let wait = not_until.wait_time_from(clock.now());
                    deny = Some(deny.map_or(wait, |d| d.max(wait)));
                    remaining.push((l, 0, wait.as_secs() + u64::from(wait.subsec_nanos() > 0)));
                }
            }
        }
        let header = remaining
            .iter()
            .map(|(l, r, t)| format!("\"{}\";r={r};t={t}", l.name))
            .collect::<Vec<_>>()
            .join(", ");
        let header = HeaderValue::from_str(&header).ok();
        match deny {
            None => Decision::Allow(header),
            Some(retry_after) => Decision::Deny {
                retry_after,
                remaining: header,
            },
        }
    }

    /// Keys currently held (for tests and metrics).
    pub fn keys(&self) -> usize {
        self.live.iter().map(|l| l.limiter.len()).sum()
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
                l.limiter.retain_recent();
                l.limiter.shrink_to_fit();
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
            let ip = IpAddr::from(i.to_be_bytes());
            assert!(matches!(limits.check(ip, &headers), Decision::Allow(_)));
        }
        assert_eq!(limits.keys(), 10_000);
        // A bucket of 1 at 1000/s is full again after 1 ms.
        tokio::time::sleep(Duration::from_millis(20)).await;
        for l in &limits.live {
            l.limiter.retain_recent();
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
