//! Portico's gateway core.
//!
//! The request path, in order (see `server::pipeline` for the one place it is written
//! down in code, and `docs/request-path.md`):
//!
//! ```text
//! listener (TCP/TLS, HTTP/1.1 + HTTP/2)
//!   → edge      request id, trace context, header and body limits, edge deadline, access log
//!   → router    normalised path → route (per method)
//!   → route     route deadline
//!   → handler   proxy | static
//!   → backend   per-backend client: timeout → balancer → connection pool
//! ```

pub mod config;
pub mod routing;
