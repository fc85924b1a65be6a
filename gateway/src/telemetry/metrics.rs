//! Prometheus metrics (admin `GET /metrics`, text format 0.0.4, names `portico_*`).
//!
//! The hot path only increments atomics that were resolved at config load: each route
//! holds its [`RouteMetrics`], each backend instance its [`InstanceMetrics`], so a request
//! never hashes a label set. Everything else (breaker states, cache and shadow counts,
//! reloads) is read from the live state when scraped. Label values are route ids, team
//! and backend names and instance URLs from the config: bounded, never raw paths.
//! Counters live as long as their route or backend stack, which reloads keep while their
//! settings stay the same.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::Method;

/// Upper bounds (seconds) of the duration histograms' buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A duration histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    /// Observations above the last bound.
    over: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Counts one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        match BUCKETS.iter().position(|b| secs <= *b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        // The count is the buckets' sum, read once: cumulative even while others observe.
        let count = cumulative + self.over.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Methods with their own label value; others count as `other`.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// What the cache did for a request, as counted.
#[derive(Debug, Clone, Copy)]
pub enum CacheResult {
    /// Answered from a fresh entry (or from another request's call).
    Hit,
    /// Answered stale (while revalidating, or instead of a failure).
    Stale,
    /// Went to the handler.
    Miss,
    /// The cache stayed out (method, Range, body, refused earlier).
    Bypass,
}

/// One route's counters.
#[derive(Debug, Default)]
pub struct RouteMetrics {
    requests: [[AtomicU64; CLASSES.len()]; METHODS.len()],
    duration: Histogram,
    rate_limited: AtomicU64,
    cache: [AtomicU64; 4],
    /// Partial answers by failed call (names from the config).
    partial: Mutex<Vec<(String, u64)>>,
}

impl RouteMetrics {
    /// Counts one answered request.
    pub fn answered(&self, method: &Method, status: u16, took: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[method_index(method)][class].fetch_add(1, Ordering::Relaxed);
        self.duration.observe(took);
    }

    /// Counts a request refused by a rate limit.
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts what the cache did.
    pub fn cache(&self, result: CacheResult) {
        self.cache[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a partial answer: each failed call of `Portico-Partial`.
    pub fn partial(&self, failed: &str) {
        let mut list = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        for call in failed.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if let Some((_, n)) = list.iter_mut().find(|(c, _)| c == call) {
                *n += 1;
            } else if list.len() < 64 {
                // Call names come from the config; the bound keeps a misbehaving
                // handler from growing the list without end.
                list.push((call.to_string(), 1));
            }
        }
    }
}

/// One backend instance's counters.
#[derive(Debug, Default)]
pub struct InstanceMetrics {
    /// By outcome: 1xx–5xx, connect, timeout, reset.
    outcomes: [AtomicU64; 8],
    duration: Histogram,
}

/// An attempt's outcome, as counted.
#[derive(Debug, Clone, Copy)]
pub enum AttemptResult {
    /// An answer with this status.
    Status(u16),
    /// No connection.
    Connect,
    /// No answer in time.
    Timeout,
    /// The connection broke.
    Reset,
}

const OUTCOMES: [&str; 8] = [
    "1xx", "2xx", "3xx", "4xx", "5xx", "connect", "timeout", "reset",
];

impl InstanceMetrics {
    /// Counts one attempt.
    pub fn attempt(&self, result: AttemptResult, took: Duration) {
        let i = match result {
            AttemptResult::Status(s) => usize::from(s / 100).clamp(1, 5) - 1,
            AttemptResult::Connect => 5,
            AttemptResult::Timeout => 6,
            AttemptResult::Reset => 7,
        };
        self.outcomes[i].fetch_add(1, Ordering::Relaxed);
        self.duration.observe(took);
    }
}

/// One backend's call-level counters.
#[derive(Debug, Default)]
pub struct BackendMetrics {
    /// Retries made.
    pub retries: AtomicU64,
    /// Retries (and hedges) the budget refused.
    pub budget_exhausted: AtomicU64,
    /// Hedged attempts sent.
    pub hedges: AtomicU64,
    /// Calls the bulkhead refused.
    pub bulkhead_rejected: AtomicU64,
}

impl BackendMetrics {
    /// Adds one to `counter`.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Escapes a label value (`\`, `"`, newline).
pub fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `route="…",team="…"`.
pub fn route_labels(route: &str, team: &str) -> String {
    format!("route=\"{}\",team=\"{}\"", label(route), label(team))
}

/// `backend="…",instance="…"`.
pub fn instance_labels(backend: &str, url: &str) -> String {
    format!("backend=\"{}\",instance=\"{}\"", label(backend), label(url))
}

/// Writes the metrics text. The caller passes the live parts.
pub struct Exposition {
    out: String,
}

impl Default for Exposition {
    fn default() -> Self {
        Self::new()
    }
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Exposition {
            out: String::with_capacity(16 << 10),
        }
    }

    /// `# HELP` and `# TYPE` of a family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample.
    pub fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
        }
    }

    /// The route families, for `(route, team, metrics)`.
    pub fn routes(&mut self, routes: &[(&str, &str, &RouteMetrics)]) {
        self.family(
            "portico_requests_total",
            "counter",
            "Requests answered, by route, team, method and status class.",
        );
        for (route, team, m) in routes {
            for (mi, method) in METHODS.iter().enumerate() {
                for (ci, class) in CLASSES.iter().enumerate() {
                    let n = m.requests[mi][ci].load(Ordering::Relaxed);
                    if n > 0 {
                        let labels = format!(
                            "{},method=\"{method}\",status_class=\"{class}\"",
                            route_labels(route, team)
                        );
                        self.sample("portico_requests_total", &labels, n);
                    }
                }
            }
        }
        self.family(
            "portico_request_duration_seconds",
            "histogram",
            "Time from the request's arrival to its response head, by route.",
        );
        for (route, team, m) in routes {
            let labels = route_labels(route, team);
            m.duration
                .render(&mut self.out, "portico_request_duration_seconds", &labels);
        }
        self.family(
            "portico_rate_limited_total",
            "counter",
            "Requests refused by a rate limit (429), by route.",
        );
        for (route, team, m) in routes {
            let labels = route_labels(route, team);
            self.sample(
                "portico_rate_limited_total",
                &labels,
                m.rate_limited.load(Ordering::Relaxed),
            );
        }
        self.family(
            "portico_cache_requests_total",
            "counter",
            "Requests to cached routes by what the cache did: hit, stale, miss, bypass.",
        );
        for (route, team, m) in routes {
            for (i, result) in ["hit", "stale", "miss", "bypass"].iter().enumerate() {
                let n = m.cache[i].load(Ordering::Relaxed);
                if n > 0 {
                    let labels = format!("{},result=\"{result}\"", route_labels(route, team));
                    self.sample("portico_cache_requests_total", &labels, n);
                }
            }
        }
        self.family(
            "portico_partial_responses_total",
            "counter",
            "Partial aggregate answers, by route and failed call.",
        );
        for (route, team, m) in routes {
            let list = m.partial.lock().map(|l| l.clone()).unwrap_or_default();
            for (call, n) in list {
                let labels = format!("{},call=\"{}\"", route_labels(route, team), label(&call));
                self.sample("portico_partial_responses_total", &labels, n);
            }
        }
    }

    /// The instance families, for `(backend, instance url, metrics)`.
    pub fn instances(&mut self, instances: &[(&str, &str, &InstanceMetrics)]) {
        self.family(
            "portico_backend_requests_total",
            "counter",
            "Attempts sent to backend instances, by outcome (status class, connect, timeout, reset).",
        );
        for (backend, url, m) in instances {
            for (i, outcome) in OUTCOMES.iter().enumerate() {
                let labels = format!("{},outcome=\"{outcome}\"", instance_labels(backend, url));
                self.sample(
                    "portico_backend_requests_total",
                    &labels,
                    m.outcomes[i].load(Ordering::Relaxed),
                );
            }
        }
        self.family(
            "portico_backend_errors_total",
            "counter",
            "Failed attempts (5xx, connect, timeout, reset), by backend and instance.",
        );
        for (backend, url, m) in instances {
            let errors: u64 = [4, 5, 6, 7]
                .iter()
                .map(|i| m.outcomes[*i].load(Ordering::Relaxed))
                .sum();
            let labels = instance_labels(backend, url);
            self.sample("portico_backend_errors_total", &labels, errors);
        }
        self.family(
            "portico_backend_request_duration_seconds",
            "histogram",
            "Time of attempts to backend instances, up to the response head.",
        );
        for (backend, url, m) in instances {
            let labels = instance_labels(backend, url);
            m.duration.render(
                &mut self.out,
                "portico_backend_request_duration_seconds",
                &labels,
            );
        }
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(20));
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.0005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3\n"), "{out}");
        assert!(out.contains("x_sum{a=\"b\"} 20.0033\n"), "{out}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn partial_calls_are_counted_one_by_one() {
        let m = RouteMetrics::default();
        m.partial("a, b");
        m.partial("b");
        let list = m.partial.lock().unwrap().clone();
        assert_eq!(list, vec![("a".to_string(), 1), ("b".to_string(), 2)]);
    }
}
