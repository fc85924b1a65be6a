//! Routing: path patterns, path normalisation and the route table.
//!
//! Sits right after the edge layers on the request path: the request's path is
//! normalised ([`normalize`]), then looked up in the [`Table`] for its method.
//! Static segments beat `{param}`, which beats `{*rest}`; a path that matches only
//! under other methods is a 405, anything else a 404.

mod normalize;
mod pattern;
mod table;
#[cfg(test)]
mod tests;

pub use normalize::normalize;
pub use pattern::{Pattern, Segment};
pub use table::{Conflict, Lookup, Table};
