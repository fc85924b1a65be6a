//! Portico's gateway core.
//!
//! The request path, in order (written down once in [`server::pipeline`], and in
//! `docs/request-path.md`):
//!
//! ```text
//! listener (TCP/TLS, HTTP/1.1 + HTTP/2)
//!   → edge      request id, trace context, header and body limits, edge deadline, access log
//!   → router    normalised path → route (per method)
//!   → route     route deadline · edge rate limits · auth (401) · require (403)
//!               · identity rate limits · CORS · cache (fresh → answered here)
//!   → handler   proxy | static | split (+ shadow) | extension (aggregate, BFF modules)
//!   → backend   per-backend stack: fault → bulkhead → instance (health, ejection,
//!               breaker) → attempt (timeout, hedge) → retry (budget, backoff)
//! ```

pub mod admin;
pub mod auth;
pub mod body;
pub mod cache;
pub mod config;
pub mod cors;
pub mod error;
pub mod extend;
pub mod openapi;
mod outbound;
pub mod proxy;
pub mod query;
pub mod rate_limit;
pub mod routing;
pub mod server;
pub mod strangler;
pub mod telemetry;
pub mod upstream;
