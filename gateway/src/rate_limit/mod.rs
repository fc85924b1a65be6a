//! Rate limiting (GCRA, governor): per-route lists of limits, all of which apply.
//!
//! Sits in the route pipeline, after routing and before the handler. Each limit has a
//! key (`ip`, `header:NAME`, `route` — checked before authentication — or `subject`,
//! `api_key`, `claim:NAME` — checked after it); a request over any of its limits gets 429
//! RATE_LIMITED with `Retry-After`. Every response of a limited route carries the IETF
//! `RateLimit-Policy` and `RateLimit` headers (structured fields). Idle keys are evicted
//! in the background, so a flood of distinct keys cannot grow memory without bound.

mod limiter;

pub use limiter::{Key, Limit, Limits, LocalStore, Report, Store, Subject, Verdict};
