//! `backends:` of `gateway.yaml`: instances and the resilience settings of each backend.

use std::time::Duration;

use http::StatusCode;

use super::Resolver;
use crate::config::load::Parsed;
use crate::config::model::*;
use crate::config::raw::{self, GatewayFile};

/// What `retry.on` means when it is not given.
const DEFAULT_RETRY_ON: &[&str] = &["connect", "reset", "timeout", "502", "503", "504"];
/// What `breaker.on` means when it is not given.
const DEFAULT_BREAKER_ON: &[&str] = &["connect", "reset", "timeout", "5xx"];

impl Resolver<'_> {
    pub(super) fn backend(
        &mut self,
        gw: &Parsed<GatewayFile>,
        name: &str,
        b: &raw::Backend,
    ) -> Option<Backend> {
        let key = format!("backends.{name}");
        let urls: Vec<(String, &String)> = match (&b.url, &b.urls) {
            (Some(u), None) => vec![(format!("{key}.url"), u)],
            (None, Some(us)) if !us.is_empty() => us
                .iter()
                .enumerate()
                .map(|(i, u)| (format!("{key}.urls[{i}]"), u))
                .collect(),
            (Some(_), Some(_)) => {
                self.errors
                    .push(gw.diag(&key, "give either `url` or `urls`, not both"));
                return None;
            }
            _ => {
                self.errors
                    .push(gw.diag(&key, "a backend needs `url` (or `urls`)"));
                return None;
            }
        };
        let mut instances: Vec<Instance> = Vec::new();
        for (k, u) in urls {
            match parse_instance(u) {
                Ok(i) if instances.contains(&i) => {
                    self.errors
                        .push(gw.diag(k, format!("`{u}` is listed twice")));
                }
                Ok(i) => instances.push(i),
                Err(msg) => self.errors.push(gw.diag(k, msg)),
            }
        }
        if b.timeout.0.is_zero() || b.connect_timeout.0.is_zero() {
            self.errors
                .push(gw.diag(&key, "timeouts must be more than 0"));
        }
        if b.max_concurrency == Some(0) {
            self.errors.push(gw.diag(
                format!("{key}.max_concurrency"),
                "must be at least 1 (leave it out for no limit)",
            ));
        }
        let mut diag = |k: &str, msg: String| {
            self.errors.push(gw.diag(format!("{key}.{k}"), msg));
        };
        let breaker = b.breaker.as_ref().map(|r| breaker(r, &mut diag));
        let retry = b.retry.as_ref().map(|r| retry(r, &mut diag));
        let outlier = b.outlier.as_ref().map(|o| outlier(o, &mut diag));
        let hedge = b.hedge.as_ref().map(|h| {
            if h.after.0.is_zero() {
                diag("hedge.after", "must be more than 0".into());
            }
            h.after.0
        });
        let health = b.health.as_ref().map(|h| health(h, b.timeout.0, &mut diag));
        let fault = b.fault.as_ref().map(|f| fault(f, &mut diag));
        Some(Backend {
            name: name.to_string(),
            instances,
            connect_timeout: b.connect_timeout.0,
            timeout: b.timeout.0,
            max_concurrency: b.max_concurrency,
            balance: match b.balance {
                None | Some(raw::Balance::RoundRobin) => Balance::RoundRobin,
                Some(raw::Balance::LeastRequest) => Balance::LeastRequest,
            },
            breaker,
            retry,
            outlier,
            hedge,
            health,
            fault,
        })
    }
}

type Diag<'a> = dyn FnMut(&str, String) + 'a;

fn breaker(b: &raw::Breaker, diag: &mut Diag<'_>) -> BreakerSettings {
    if b.consecutive_failures.is_none() && b.failure_rate.is_none() {
        diag(
            "breaker",
            "give `consecutive_failures` and/or `failure_rate`: a breaker needs a reason to open"
                .into(),
        );
    }
    if b.consecutive_failures == Some(0) {
        diag("breaker.consecutive_failures", "must be at least 1".into());
    }
    if b.failure_rate.is_some_and(|r| r.0 <= 0.0) {
        diag("breaker.failure_rate", "must be more than 0%".into());
    }
    let window = b.window.map_or(Duration::from_secs(10), |d| d.0);
    if window < Duration::from_millis(100) {
        diag("breaker.window", "must be at least 100ms".into());
    }
    let open_for = b.open_for.map_or(Duration::from_secs(10), |d| d.0);
    if open_for.is_zero() {
        diag("breaker.open_for", "must be more than 0".into());
    }
    let half_open_probes = b.half_open_probes.unwrap_or(1);
    if half_open_probes == 0 {
        diag("breaker.half_open_probes", "must be at least 1".into());
    }
    BreakerSettings {
        consecutive_failures: b.consecutive_failures,
        failure_rate: b.failure_rate.map(|r| r.fraction()),
        window,
        min_requests: b.min_requests.unwrap_or(20).max(1),
        open_for,
        half_open_probes,
        on: conditions(b.on.as_deref(), DEFAULT_BREAKER_ON, "breaker.on", diag),
    }
}

fn retry(r: &raw::Retry, diag: &mut Diag<'_>) -> RetrySettings {
    if r.attempts > 10 {
        diag(
            "retry.attempts",
            format!("{} retries is too many (at most 10)", r.attempts),
        );
    }
    let backoff = r.backoff.map_or(Duration::from_millis(25), |d| d.0);
    let max_backoff = r.max_backoff.map_or(backoff * 10, |d| d.0);
    if max_backoff < backoff {
        diag(
            "retry.max_backoff",
            "must not be less than `backoff`".into(),
        );
    }
    RetrySettings {
        attempts: r.attempts,
        backoff,
        max_backoff,
        budget: r.budget.map_or(DEFAULT_RETRY_BUDGET, |b| b.fraction()),
        on: conditions(r.on.as_deref(), DEFAULT_RETRY_ON, "retry.on", diag),
    }
}

fn outlier(o: &raw::Outlier, diag: &mut Diag<'_>) -> OutlierSettings {
    if o.consecutive_5xx == 0 {
        diag("outlier.consecutive_5xx", "must be at least 1".into());
    }
    if o.eject_for.0.is_zero() {
        diag("outlier.eject_for", "must be more than 0".into());
    }
    OutlierSettings {
        consecutive_5xx: o.consecutive_5xx,
        eject_for: o.eject_for.0,
        max_ejected: o.max_ejected.map_or(0.5, |p| p.fraction()),
    }
}

fn health(h: &raw::Health, timeout: Duration, diag: &mut Diag<'_>) -> HealthSettings {
    if !h.path.starts_with('/') || h.path.parse::<http::uri::PathAndQuery>().is_err() {
        diag(
            "health.path",
            format!("`{}` is not a path starting with /", h.path),
        );
    }
    if h.interval.0 < Duration::from_millis(50) {
        diag("health.interval", "must be at least 50ms".into());
    }
    let probe_timeout = h.timeout.map_or(timeout.min(h.interval.0), |t| t.0);
    if probe_timeout.is_zero() {
        diag("health.timeout", "must be more than 0".into());
    }
    let unhealthy_after = h.unhealthy_after.unwrap_or(3);
    let healthy_after = h.healthy_after.unwrap_or(2);
    if unhealthy_after == 0 {
        diag("health.unhealthy_after", "must be at least 1".into());
    }
    if healthy_after == 0 {
        diag("health.healthy_after", "must be at least 1".into());
    }
    HealthSettings {
        path: h.path.clone(),
        interval: h.interval.0,
        timeout: probe_timeout,
        unhealthy_after,
        healthy_after,
    }
}

fn fault(f: &raw::Fault, diag: &mut Diag<'_>) -> FaultSettings {
    if f.delay.is_none() && f.abort.is_none() {
        diag("fault", "give `delay` and/or `abort`".into());
    }
    if f.delay.is_none() && f.delay_percent.is_some() {
        diag("fault.delay_percent", "needs `delay`".into());
    }
    if f.abort.is_none() && f.abort_percent.is_some() {
        diag("fault.abort_percent", "needs `abort`".into());
    }
    let delay = f
        .delay
        .map(|d| (d.0, f.delay_percent.map_or(1.0, |p| p.fraction())));
    let abort = f.abort.and_then(|code| {
        match StatusCode::from_u16(code) {
            Ok(s) if (400..600).contains(&code) => Some(s),
            _ => {
                diag(
                    "fault.abort",
                    format!("`{code}` is not an error status (400–599)"),
                );
                None
            }
        }
        .map(|s| (s, f.abort_percent.map_or(1.0, |p| p.fraction())))
    });
    FaultSettings { delay, abort }
}

/// Parses an `on:` list: `connect`, `reset`, `timeout`, a status (100–599), or `5xx`/`4xx`.
fn conditions(
    given: Option<&[serde_json::Value]>,
    default: &[&str],
    key: &str,
    diag: &mut Diag<'_>,
) -> Conditions {
    let mut c = Conditions::none();
    let words: Vec<String> = match given {
        Some(list) => list
            .iter()
            .map(|v| match v {
                serde_json::Value::String(s) => s.trim().to_ascii_lowercase(),
                other => other.to_string(),
            })
            .collect(),
        None => default.iter().map(|s| s.to_string()).collect(),
    };
    for (i, word) in words.iter().enumerate() {
        match word.as_str() {
            "connect" => c.connect = true,
            "reset" => c.reset = true,
            "timeout" => c.timeout = true,
            "5xx" => (500..600).for_each(|s| c.add_status(s)),
            "4xx" => (400..500).for_each(|s| c.add_status(s)),
            other => match other.parse::<u16>() {
                Ok(s) if (100..600).contains(&s) => c.add_status(s),
                _ => diag(
                    &format!("{key}[{i}]"),
                    format!(
                        "`{other}` is not one of connect, reset, timeout, a status code (like 503) or 5xx"
                    ),
                ),
            },
        }
    }
    c
}

pub(super) fn parse_instance(url: &str) -> Result<Instance, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("`{url}` is not a valid URL"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| format!("`{url}` needs a scheme (http://)"))?;
    if scheme != http::uri::Scheme::HTTP {
        return Err(format!("`{url}`: only http:// backends are supported yet"));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("`{url}` needs a host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "`{url}`: credentials in backend URLs are not allowed"
        ));
    }
    if uri.query().is_some() {
        return Err(format!(
            "`{url}`: a backend URL may not have a query string"
        ));
    }
    let base_path = uri.path().trim_end_matches('/').to_string();
    Ok(Instance {
        scheme,
        authority,
        base_path,
    })
}
