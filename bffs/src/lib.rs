//! Portico's Backend-for-Frontend modules: the `Bff` trait, its registry, scatter-gather
//! aggregation and the web, mobile and partner modules.
//!
//! Empty for now: the modules arrive with issue #6, and route files that ask for them
//! (`bff:`, `aggregate:`, `handler:`) are refused as "not supported yet" until then.
