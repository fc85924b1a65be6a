//! Portico's Backend-for-Frontend modules: scatter-gather aggregation today; the `Bff`
//! trait and registry, and the web, mobile and partner modules next (issue #6).
//!
//! The gateway crate never depends on this one: the binary hands the gateway
//! [`extensions`], and route keys like `aggregate:` are resolved and run through them.

use std::sync::Arc;

use gateway::extend::Extensions;

pub mod aggregate;

/// Every route-handler extension this crate provides, for `config::load_with`.
pub fn extensions() -> Extensions {
    Extensions::none().with(Arc::new(aggregate::Aggregate))
}
