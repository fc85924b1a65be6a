//! Backend clients: one per backend, built once per config load and kept across
//! reloads by name.
//!
//! Last stage of the request path. Today's stack per backend is
//! `timeout → balancer (round-robin over instances) → connection pool (keep-alive)`;
//! bulkhead, breaker and retries slot in before the timeout (issue #5).

mod client;
mod pool;

pub use client::{Error, Upstream};
pub use pool::{Instance, PooledBody};
