//! Backend clients: one per backend, built once per config load and keyed by name.
//!
//! Last stage of the request path. Today's stack per backend is
//! `timeout → balancer (round-robin over instances) → connection pool (keep-alive)`;
//! breaker, retries and bulkhead slot in before the timeout (issue #5).

mod client;

pub use client::{Error, Upstream};
