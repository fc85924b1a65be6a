//! When a failed attempt may be tried again, how long to wait, and the budget that keeps
//! a failing backend from a retry storm.

use std::sync::Mutex;
use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{HeaderMap, Method};
use tokio::time::Instant;

use super::window::{Counts, Window};
use crate::config::RetrySettings;

/// Retries (and hedges) always allowed per second, whatever the share: a backend with
/// little traffic can still be retried.
const FLOOR_PER_SECOND: u64 = 1;
/// The budget's window.
const BUDGET_WINDOW: Duration = Duration::from_secs(10);

/// Whether a request may be sent twice: an idempotent method (RFC 9110 §9.2.2) or an
/// `Idempotency-Key` header.
pub fn idempotent(method: &Method, headers: &HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    ) || headers.contains_key("idempotency-key")
}

/// The wait before retry number `n` (0 for the first retry): exponential, capped at
/// `max_backoff`, with full jitter (a uniform pick between zero and the cap).
pub fn backoff(settings: &RetrySettings, n: u32) -> Duration {
    let cap = settings
        .backoff
        .saturating_mul(1u32 << n.min(20))
        .min(settings.max_backoff);
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// A backend's `Retry-After` (seconds or an HTTP date), as a wait from now.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Retries allowed over the last 10 s: `share` of the requests, plus a floor.
#[derive(Debug)]
pub struct Budget {
    share: f64,
    window: Mutex<Window<Counts>>,
}

impl Budget {
    /// A budget allowing `share` (0–1) of requests to be retried.
    pub fn new(share: f64, now: Instant) -> Self {
        Self {
            share,
            window: Mutex::new(Window::new(BUDGET_WINDOW, 10, now)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window<Counts>> {
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a request (its first attempt).
    pub fn request(&self, now: Instant) {
        self.lock().current(now).total += 1;
    }

    /// Takes one retry from the budget, if there is one left.
    pub fn try_retry(&self, now: Instant) -> bool {
        let mut window = self.lock();
        let used = window.total(now);
        let allowed =
            FLOOR_PER_SECOND * BUDGET_WINDOW.as_secs() + (self.share * used.total as f64) as u64;
        if used.marked >= allowed {
            return false;
        }
        window.current(now).marked += 1;
        true
    }

    /// Requests and retries in the window.
    pub fn usage(&self, now: Instant) -> (u64, u64) {
        let total = self.lock().total(now);
        (total.total, total.marked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Conditions;

    fn settings() -> RetrySettings {
        RetrySettings {
            attempts: 5,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            budget: 0.2,
            on: Conditions::none(),
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let s = settings();
        let mean = |n: u32| {
            let draws: Vec<Duration> = (0..2000).map(|_| backoff(&s, n)).collect();
            let cap = Duration::from_millis(10 * (1 << n)).min(Duration::from_millis(100));
            assert!(draws.iter().all(|d| *d <= cap), "retry {n} within {cap:?}");
            let distinct: std::collections::HashSet<_> = draws.iter().collect();
            assert!(distinct.len() > 1000, "jittered");
            draws.iter().sum::<Duration>() / 2000
        };
        let means: Vec<Duration> = (0..6).map(mean).collect();
        // Full jitter: the mean is about half the cap (5, 10, 20, 40, 50, 50 ms).
        for (n, expected) in [5u64, 10, 20, 40, 50, 50].iter().enumerate() {
            let m = means[n].as_secs_f64() * 1000.0;
            assert!(
                (m - *expected as f64).abs() < *expected as f64 * 0.15,
                "retry {n}: mean {m:.1} ms, expected about {expected}"
            );
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        h.insert(RETRY_AFTER, httpdate::fmt_http_date(later).parse().unwrap());
        let wait = retry_after(&h).unwrap();
        assert!(wait > Duration::from_secs(115) && wait <= Duration::from_secs(120));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn idempotent_methods_or_a_key() {
        let none = HeaderMap::new();
        assert!(idempotent(&Method::GET, &none));
        assert!(idempotent(&Method::PUT, &none));
        assert!(!idempotent(&Method::POST, &none));
        assert!(!idempotent(&Method::PATCH, &none));
        let mut keyed = HeaderMap::new();
        keyed.insert("idempotency-key", "k1".parse().unwrap());
        assert!(idempotent(&Method::POST, &keyed));
    }

    #[tokio::test(start_paused = true)]
    async fn budget_allows_a_share_plus_a_floor_over_ten_seconds() {
        let b = Budget::new(0.2, Instant::now());
        for _ in 0..100 {
            b.request(Instant::now());
        }
        let granted = (0..100).filter(|_| b.try_retry(Instant::now())).count();
        assert_eq!(granted, 30, "20% of 100 plus a floor of 10");
        assert_eq!(b.usage(Instant::now()), (100, 30));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.usage(Instant::now()), (0, 0), "the window moved on");
        let granted = (0..100).filter(|_| b.try_retry(Instant::now())).count();
        assert_eq!(granted, 10, "the floor alone");
    }
}
