//! Logs: structured (JSON) or human-readable, filtered by `RUST_LOG` (default `info`).
//!
//! The access log is one `portico::access` event per request, written by the pipeline.
//! It records method, path (never the query, which may hold keys), route, team,
//! backend, status, duration, request id, trace id, the gateway's span id (the parent id
//! its backends see) and client address, and never any
//! header value: no tokens, cookies or API keys.

use tracing_subscriber::EnvFilter;

pub mod metrics;
pub mod trace;

use crate::config::raw::LogFormat;

/// Installs the global log subscriber (once; later calls are ignored).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
