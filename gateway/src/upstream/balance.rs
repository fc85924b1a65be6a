//! The instances of one backend ([`Endpoint`]s) and how one is chosen for an attempt.
//!
//! An instance is *usable* when its health check passes and it is not ejected. The
//! choice is among usable instances (all of them when none is usable: better to try
//! than to refuse everything), round-robin or least-request (the less busy of two
//! picked at random), and the instance's breaker must admit the attempt. Passive
//! outlier ejection takes an instance out for `eject_for` after `consecutive_5xx`
//! failures in a row, never more than `max_ejected` of them and never all.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::breaker::{Breaker, Ticket};
use super::pool::Pool;
use super::window::{Bucket, Window};
use crate::config::{self, Balance, OutlierSettings};

/// Latency histogram bounds in milliseconds (the last bucket is everything above).
const LATENCY_BOUNDS_MS: [u64; 13] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];

/// One attempt's numbers for the admin API.
#[derive(Debug, Default, Clone)]
pub(crate) struct Sample {
    requests: u64,
    errors: u64,
    latency_us: u64,
    histogram: [u64; LATENCY_BOUNDS_MS.len() + 1],
}

impl Bucket for Sample {
    fn merge(&mut self, other: &Self) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latency_us += other.latency_us;
        for (a, b) in self.histogram.iter_mut().zip(other.histogram.iter()) {
            *a += b;
        }
    }
}

/// Recent numbers of an instance (last 10 s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recent {
    /// Attempts.
    pub requests: u64,
    /// Share of attempts that failed (connect, reset, timeout, 5xx).
    pub error_rate: f64,
    /// Mean time to the response head, in ms.
    pub mean_ms: f64,
    /// 99th percentile (upper bound of its histogram bucket), in ms.
    pub p99_ms: f64,
}

#[derive(Debug, Default)]
struct Outlier {
    consecutive: u32,
    ejected_until: Option<Instant>,
}

/// One instance of a backend.
#[derive(Debug)]
pub struct Endpoint {
    pool: Arc<Pool>,
    url: String,
    breaker: Option<Arc<Breaker>>,
    in_flight: AtomicUsize,
    healthy: AtomicBool,
    /// Set while ejected, so picking needs no lock in the common case.
    ejected: AtomicBool,
    outlier: Mutex<Outlier>,
    stats: Mutex<Window<Sample>>,
    metrics: crate::telemetry::metrics::InstanceMetrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters only: a panic elsewhere cannot leave them inconsistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An attempt's place in its instance's in-flight count.
#[derive(Debug)]
pub struct Busy(Arc<Endpoint>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Busy {
    /// The instance.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.0
    }
}

impl Endpoint {
    fn new(backend: &config::Backend, instance: &config::Instance, now: Instant) -> Self {
        let url = format!(
            "{}://{}{}",
            instance.scheme, instance.authority, instance.base_path
        );
        Self {
            pool: Arc::new(Pool::new(
                instance.authority.clone(),
                instance.base_path.clone(),
                backend.connect_timeout,
            )),
            breaker: backend
                .breaker
                .as_ref()
                .map(|b| Breaker::new(b.clone(), format!("{} {url}", backend.name), now)),
            url,
            in_flight: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            ejected: AtomicBool::new(false),
            outlier: Mutex::new(Outlier::default()),
            stats: Mutex::new(Window::new(Duration::from_secs(10), 10, now)),
            metrics: Default::default(),
        }
    }

    /// The instance's counters.
    pub fn metrics(&self) -> &crate::telemetry::metrics::InstanceMetrics {
        &self.metrics
    }

    /// The connection pool.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// `http://host:port/base`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The breaker, if the backend has one.
    pub fn breaker(&self) -> Option<&Arc<Breaker>> {
        self.breaker.as_ref()
    }

    /// Attempts in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Counts an attempt in flight until the returned guard drops.
    pub fn enter(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Whether the last health checks passed.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Release);
    }

    /// Whether the instance is ejected at `now`.
    pub fn ejected(&self, now: Instant) -> bool {
        if !self.ejected.load(Ordering::Acquire) {
            return false;
        }
        let mut o = lock(&self.outlier);
        match o.ejected_until {
            Some(until) if now < until => true,
            _ => {
                o.ejected_until = None;
                o.consecutive = 0;
                self.ejected.store(false, Ordering::Release);
                tracing::info!(instance = %self.url, "instance back from ejection");
                false
            }
        }
    }

    fn usable(&self, now: Instant) -> bool {
        self.healthy() && !self.ejected(now)
    }

    /// Records an attempt for the admin API's recent numbers.
    pub(crate) fn sample(&self, failed: bool, latency: Duration, now: Instant) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let ms = us / 1000;
        let slot = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| ms < *b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        let mut stats = lock(&self.stats);
        let s = stats.current(now);
        s.requests += 1;
        s.errors += u64::from(failed);
        s.latency_us = s.latency_us.saturating_add(us);
        s.histogram[slot] += 1;
    }

    /// The last 10 s.
    pub fn recent(&self, now: Instant) -> Recent {
        let s = lock(&self.stats).total(now);
        let n = s.requests.max(1) as f64;
        let p99_rank = (s.requests as f64 * 0.99).ceil() as u64;
        let mut seen = 0;
        let mut p99_ms = 0.0;
        for (i, count) in s.histogram.iter().enumerate() {
            seen += count;
            if s.requests > 0 && seen >= p99_rank {
                p99_ms = LATENCY_BOUNDS_MS
                    .get(i)
                    .copied()
                    .unwrap_or(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1] * 2)
                    as f64;
                break;
            }
        }
        Recent {
            requests: s.requests,
            error_rate: s.errors as f64 / n,
            mean_ms: s.latency_us as f64 / n / 1000.0,
            p99_ms,
        }
    }
}

/// The instances of one backend and the way one is chosen.
#[derive(Debug)]
pub struct Balancer {
    endpoints: Vec<Arc<Endpoint>>,
    mode: Balance,
    next: AtomicUsize,
    outlier: Option<OutlierSettings>,
}

impl Balancer {
    /// The instances of `backend`.
    pub fn new(backend: &config::Backend, now: Instant) -> Self {
        Self {
            endpoints: backend
                .instances
                .iter()
                .map(|i| Arc::new(Endpoint::new(backend, i, now)))
                .collect(),
            mode: backend.balance,
            next: AtomicUsize::new(0),
            outlier: backend.outlier.clone(),
        }
    }

    /// The instances.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// The way instances are chosen.
    pub fn mode(&self) -> Balance {
        self.mode
    }

    /// An instance for an attempt, preferably not `avoid` (the one just tried), with its
    /// breaker ticket; or, when every breaker refuses, how long until one admits.
    pub fn pick(
        &self,
        avoid: Option<&Arc<Endpoint>>,
        now: Instant,
    ) -> Result<(Arc<Endpoint>, Option<Ticket>), Duration> {
        if let [only] = self.endpoints.as_slice() {
            return admit(only, now).map(|t| (only.clone(), t));
        }
        let any_usable = self.endpoints.iter().any(|e| e.usable(now));
        let eligible = |e: &Arc<Endpoint>| !any_usable || e.usable(now);
        let mut wait = Duration::MAX;
        // First without the instance just tried, then with it.
        for allow_avoided in [false, true] {
            let ok = |e: &Arc<Endpoint>| {
                eligible(e) && (allow_avoided || avoid.is_none_or(|a| !Arc::ptr_eq(a, e)))
            };
            if self.mode == Balance::LeastRequest
                && let Some(e) = self.two_choices(&ok)
            {
                match admit(e, now) {
                    Ok(t) => return Ok((e.clone(), t)),
                    Err(w) => wait = wait.min(w),
                }
            }
            let n = self.endpoints.len();
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            for i in 0..n {
                let e = &self.endpoints[(start + i) % n];
                if !ok(e) {
                    continue;
                }
                match admit(e, now) {
                    Ok(t) => return Ok((e.clone(), t)),
                    Err(w) => wait = wait.min(w),
                }
            }
            if avoid.is_none() {
                break;
            }
        }
        Err(wait)
    }

    /// The less busy of two instances picked at random among those `ok` allows.
    fn two_choices(&self, ok: &dyn Fn(&Arc<Endpoint>) -> bool) -> Option<&Arc<Endpoint>> {
        // No list is built on the request path: count, then walk to the two picks.
        let nth = |k: usize| self.endpoints.iter().filter(|e| ok(e)).nth(k);
        match self.endpoints.iter().filter(|e| ok(e)).count() {
            0 => None,
            1 => nth(0),
            n => {
                let a = fastrand::usize(0..n);
                let b = (a + 1 + fastrand::usize(0..n - 1)) % n;
                match (nth(a), nth(b)) {
                    (Some(a), Some(b)) => Some(if b.in_flight() < a.in_flight() { b } else { a }),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    /// Feeds an attempt's result to outlier ejection.
    pub fn observe(&self, endpoint: &Endpoint, server_fault: bool, now: Instant) {
        let Some(settings) = &self.outlier else {
            return;
        };
        if self.endpoints.len() < 2 {
            return;
        }
        let eject = {
            let mut o = lock(&endpoint.outlier);
            if !server_fault {
                o.consecutive = 0;
                return;
            }
            o.consecutive += 1;
            o.consecutive >= settings.consecutive_5xx && o.ejected_until.is_none()
        };
        if !eject {
            return;
        }
        let n = self.endpoints.len();
        let allowed = ((settings.max_ejected * n as f64).floor() as usize)
            .max(1)
            .min(n - 1);
        let out = self.endpoints.iter().filter(|e| e.ejected(now)).count();
        if out >= allowed {
            return;
        }
        let mut o = lock(&endpoint.outlier);
        o.ejected_until = Some(now + settings.eject_for);
        endpoint.ejected.store(true, Ordering::Release);
        tracing::warn!(
            instance = %endpoint.url,
            failures = o.consecutive,
            eject_for = ?settings.eject_for,
            "instance ejected"
        );
    }
}

fn admit(e: &Arc<Endpoint>, now: Instant) -> Result<Option<Ticket>, Duration> {
    match &e.breaker {
        None => Ok(None),
        Some(b) => b.admit(now).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(n: usize, mode: Balance, outlier: Option<OutlierSettings>) -> config::Backend {
        let mut b = config::Backend::new(
            "b",
            (0..n)
                .map(|i| config::Instance {
                    scheme: http::uri::Scheme::HTTP,
                    authority: format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                    base_path: String::new(),
                })
                .collect(),
        );
        b.balance = mode;
        b.outlier = outlier;
        b
    }

    fn port(e: &Endpoint) -> &str {
        &e.url()[17..]
    }

    #[tokio::test(start_paused = true)]
    async fn round_robin_skips_unhealthy_unless_all_are() {
        let bal = Balancer::new(&backend(3, Balance::RoundRobin, None), Instant::now());
        let picks: Vec<String> = (0..6)
            .map(|_| port(&bal.pick(None, Instant::now()).unwrap().0).to_string())
            .collect();
        assert_eq!(picks, ["1000", "1001", "1002", "1000", "1001", "1002"]);
        bal.endpoints()[1].set_healthy(false);
        for _ in 0..6 {
            let (e, _) = bal.pick(None, Instant::now()).unwrap();
            assert_ne!(port(&e), "1001");
        }
        for e in bal.endpoints() {
            e.set_healthy(false);
        }
        let all: std::collections::HashSet<String> = (0..6)
            .map(|_| port(&bal.pick(None, Instant::now()).unwrap().0).to_string())
            .collect();
        assert_eq!(all.len(), 3, "none usable: all are tried");
    }

    #[tokio::test(start_paused = true)]
    async fn avoid_prefers_another_instance() {
        let bal = Balancer::new(&backend(2, Balance::RoundRobin, None), Instant::now());
        for _ in 0..4 {
            let (first, _) = bal.pick(None, Instant::now()).unwrap();
            let (second, _) = bal.pick(Some(&first), Instant::now()).unwrap();
            assert!(!Arc::ptr_eq(&first, &second));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn least_request_prefers_the_idle_instance() {
        let bal = Balancer::new(&backend(2, Balance::LeastRequest, None), Instant::now());
        let busy: Vec<Busy> = (0..5).map(|_| bal.endpoints()[0].enter()).collect();
        for _ in 0..20 {
            let (e, _) = bal.pick(None, Instant::now()).unwrap();
            assert_eq!(port(&e), "1001");
        }
        drop(busy);
        assert_eq!(bal.endpoints()[0].in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_takes_an_instance_out_for_a_while_but_never_all() {
        let settings = OutlierSettings {
            consecutive_5xx: 2,
            eject_for: Duration::from_secs(30),
            max_ejected: 1.0,
        };
        let bal = Balancer::new(
            &backend(2, Balance::RoundRobin, Some(settings)),
            Instant::now(),
        );
        let [a, b] = bal.endpoints() else { panic!() };
        bal.observe(a, true, Instant::now());
        bal.observe(a, false, Instant::now()); // a success resets the count
        bal.observe(a, true, Instant::now());
        assert!(!a.ejected(Instant::now()));
        bal.observe(a, true, Instant::now());
        assert!(a.ejected(Instant::now()));
        for _ in 0..4 {
            assert!(Arc::ptr_eq(&bal.pick(None, Instant::now()).unwrap().0, b));
        }
        // The last instance standing is never ejected.
        for _ in 0..5 {
            bal.observe(b, true, Instant::now());
        }
        assert!(!b.ejected(Instant::now()));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(!a.ejected(Instant::now()), "back after eject_for");
    }

    #[tokio::test(start_paused = true)]
    async fn recent_numbers() {
        let bal = Balancer::new(&backend(1, Balance::RoundRobin, None), Instant::now());
        let e = &bal.endpoints()[0];
        for i in 0..100 {
            e.sample(i % 10 == 0, Duration::from_millis(3), Instant::now());
        }
        let r = e.recent(Instant::now());
        assert_eq!(r.requests, 100);
        assert!((r.error_rate - 0.1).abs() < 1e-9);
        assert!((r.mean_ms - 3.0).abs() < 1e-9);
        assert_eq!(r.p99_ms, 5.0);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(e.recent(Instant::now()).requests, 0);
    }
}
