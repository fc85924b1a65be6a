//! Backend clients: one client stack per backend, built once per config load and kept
//! across reloads while the backend's settings stay the same.
//!
//! Last stage of the request path, and the only way to a backend (proxy, split, shadow;
//! aggregate and GraphQL calls later): [`Upstream::call`] runs fault injection, the
//! bulkhead, then attempts — each on an instance chosen by [`balance`] (health checks,
//! outlier ejection, the instance's [`breaker`]) over a keep-alive [`pool`], bounded by
//! the attempt timeout and the caller's deadline, hedged after a delay when configured —
//! and retries by the rules of [`retry`] within its budget.

pub mod balance;
pub mod breaker;
mod bulkhead;
mod client;
mod fault;
mod health;
mod pool;
pub mod retry;
mod window;

pub use balance::Endpoint;
pub use breaker::State as BreakerState;
pub use client::{BackendStatus, Call, Error, InFlight, InstanceStatus, Upstream};
pub use pool::{Pool, PooledBody};
