//! `GET /metrics`: the Prometheus text of the live state.

use std::sync::atomic::Ordering;

use crate::server::Gateway;
use crate::telemetry::metrics::{Exposition, instance_labels, label};
use crate::upstream::BreakerState;

/// The whole exposition.
pub(super) fn render(gateway: &Gateway) -> String {
    let snapshot = gateway.snapshot();
    let mut x = Exposition::new();

    let mut routes: Vec<(&str, &str, &crate::telemetry::metrics::RouteMetrics)> = snapshot
        .table
        .values()
        .iter()
        .map(|e| (&*e.id, &*e.team, &*e.metrics))
        .collect();
    routes.sort_by(|a, b| a.0.cmp(b.0));
    routes.push(("unmatched", "", &snapshot.unmatched));
    x.routes(&routes);

    let mut names: Vec<&String> = snapshot.upstreams.keys().collect();
    names.sort();
    let instances: Vec<(String, std::sync::Arc<crate::upstream::Endpoint>)> = names
        .iter()
        .flat_map(|n| {
            snapshot.upstreams[*n]
                .instances()
                .into_iter()
                .map(move |e| (n.to_string(), e))
        })
        .collect();
    let rows: Vec<(&str, &str, &crate::telemetry::metrics::InstanceMetrics)> = instances
        .iter()
        .map(|(n, e)| (n.as_str(), e.url(), e.metrics()))
        .collect();
    x.instances(&rows);

    let now = tokio::time::Instant::now();
    x.family(
        "portico_breaker_state",
        "gauge",
        "Circuit breaker state per instance: 0 closed, 1 half-open, 2 open (instances without a breaker are not listed).",
    );
    for (n, e) in &instances {
        if let Some(b) = e.breaker() {
            let v = match b.state(now) {
                BreakerState::Closed => 0,
                BreakerState::HalfOpen => 1,
                BreakerState::Open => 2,
            };
            x.sample("portico_breaker_state", &instance_labels(n, e.url()), v);
        }
    }
    x.family(
        "portico_breaker_transitions_total",
        "counter",
        "Circuit breaker transitions per instance, by the state entered.",
    );
    for (n, e) in &instances {
        if let Some(b) = e.breaker() {
            for (to, count) in ["closed", "open", "half_open"].iter().zip(b.transitions()) {
                x.sample(
                    "portico_breaker_transitions_total",
                    &format!("{},to=\"{to}\"", instance_labels(n, e.url())),
                    count,
                );
            }
        }
    }
    let backend_counter =
        |x: &mut Exposition,
         name: &str,
         help: &str,
         pick: &dyn Fn(&crate::telemetry::metrics::BackendMetrics) -> u64| {
            x.family(name, "counter", help);
            for n in &names {
                let m = snapshot.upstreams[*n].metrics();
                x.sample(name, &format!("backend=\"{}\"", label(n)), pick(m));
            }
        };
    backend_counter(
        &mut x,
        "portico_retries_total",
        "Retries made, by backend.",
        &|m| m.retries.load(Ordering::Relaxed),
    );
    backend_counter(
        &mut x,
        "portico_retry_budget_exhausted_total",
        "Retries and hedges the retry budget refused, by backend.",
        &|m| m.budget_exhausted.load(Ordering::Relaxed),
    );
    backend_counter(
        &mut x,
        "portico_hedges_total",
        "Hedged attempts sent, by backend.",
        &|m| m.hedges.load(Ordering::Relaxed),
    );
    backend_counter(
        &mut x,
        "portico_bulkhead_rejections_total",
        "Calls refused by a full bulkhead (503 BULKHEAD_FULL), by backend.",
        &|m| m.bulkhead_rejected.load(Ordering::Relaxed),
    );
    x.family(
        "portico_backend_in_flight",
        "gauge",
        "Calls in flight, by backend.",
    );
    for n in &names {
        x.sample(
            "portico_backend_in_flight",
            &format!("backend=\"{}\"", label(n)),
            snapshot.upstreams[*n].status().in_flight,
        );
    }

    x.family(
        "portico_shadow_comparisons_total",
        "counter",
        "Shadow answers compared with the primary's, by route and result.",
    );
    for e in snapshot.table.values() {
        if let Some(s) = &e.shadow {
            let (matched, mismatched, errors) = s.stats.counts();
            for (result, n) in [
                ("match", matched),
                ("mismatch", mismatched),
                ("error", errors),
            ] {
                x.sample(
                    "portico_shadow_comparisons_total",
                    &format!("route=\"{}\",result=\"{result}\"", label(&e.id)),
                    n,
                );
            }
        }
    }

    let stats = &snapshot.cache.stats;
    let (entries, bytes) = snapshot.cache.usage();
    x.family(
        "portico_cache_entries",
        "gauge",
        "Answers held by the response cache.",
    );
    x.sample("portico_cache_entries", "", entries);
    x.family(
        "portico_cache_bytes",
        "gauge",
        "Bytes the response cache holds (weighed).",
    );
    x.sample("portico_cache_bytes", "", bytes);
    x.family(
        "portico_cache_stored_total",
        "counter",
        "Answers stored by the response cache.",
    );
    x.sample(
        "portico_cache_stored_total",
        "",
        stats.stored.load(Ordering::Relaxed),
    );

    let reloads = &gateway.reloads;
    x.family(
        "portico_config_reloads_total",
        "counter",
        "Configuration reloads, by result (a failed one keeps the running configuration).",
    );
    x.sample(
        "portico_config_reloads_total",
        "result=\"success\"",
        reloads.succeeded.load(Ordering::Relaxed),
    );
    x.sample(
        "portico_config_reloads_total",
        "result=\"failure\"",
        reloads.failed.load(Ordering::Relaxed),
    );
    x.family(
        "portico_config_info",
        "gauge",
        "The live configuration: its hash (SHA-256 of the files) as a label; always 1.",
    );
    x.sample(
        "portico_config_info",
        &format!("hash=\"{}\"", label(&snapshot.config.hash)),
        1,
    );
    x.family(
        "portico_trace_spans_total",
        "counter",
        "Spans by what became of them: exported to the OTLP endpoint, dropped (export queue full) or failed (the export was refused or broke).",
    );
    let spans = &snapshot.trace_stats;
    for (result, n) in [
        ("exported", &spans.exported),
        ("dropped", &spans.dropped),
        ("failed", &spans.failed),
    ] {
        x.sample(
            "portico_trace_spans_total",
            &format!("result=\"{result}\""),
            n.load(Ordering::Relaxed),
        );
    }
    x.family(
        "portico_draining",
        "gauge",
        "1 while the gateway drains on shutdown.",
    );
    x.sample("portico_draining", "", u8::from(gateway.is_draining()));
    x.finish()
}
