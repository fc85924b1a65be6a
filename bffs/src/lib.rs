//! Portico's Backend-for-Frontend side: scatter-gather aggregation, the [`Bff`] trait
//! and the built-in `web`, `mobile` and `partner` modules.
//!
//! The gateway crate never depends on this one: the binary hands the gateway
//! [`extensions`], and route files reach this crate through them (`aggregate:` routes,
//! `bff: NAME` files).

use std::sync::Arc;

use gateway::extend::{Extensions, Module};

pub mod aggregate;
mod call;
pub mod envelope;
pub mod graphql;
pub mod handlers;
pub mod mobile;
pub mod module;
pub mod partner;
mod template;
pub mod web;

pub use module::{Bff, Registered};

/// A module and its handlers as `module.fn`.
type Entry = (Arc<dyn Module>, Vec<(String, handlers::NamedHandler)>);

/// The built-in BFF modules and their exported handlers: the one list a module is
/// registered in.
fn registry() -> Vec<Entry> {
    fn entry<B: Bff>() -> Entry {
        (Registered::<B>::module(), Registered::<B>::handlers())
    }
    vec![
        entry::<web::Web>(),
        entry::<mobile::Mobile>(),
        entry::<partner::Partner>(),
        entry::<envelope::Envelope>(),
    ]
}

/// The JSON Schemas of the route-file blocks this crate reads (`graphql`, and each
/// module's options under its name), for `portico schema`.
pub fn block_schemas() -> Vec<(&'static str, serde_json::Value)> {
    let mut out = vec![("graphql", module::block_schema::<graphql::Spec>())];
    out.extend(modules().iter().map(|m| (m.name(), m.options_schema())));
    out
}

/// The built-in BFF modules.
pub fn modules() -> Vec<Arc<dyn Module>> {
    registry().into_iter().map(|(m, _)| m).collect()
}

/// Everything this crate adds to the gateway, for `config::load_with`: the `aggregate`
/// handler, a file's `graphql` endpoint, `handler: MODULE.FN`, and the modules.
pub fn extensions() -> Extensions {
    let mut table = Vec::new();
    let mut extensions = Extensions::none()
        .with(Arc::new(aggregate::Aggregate))
        .with(Arc::new(graphql::Graphql));
    for (module, handlers) in registry() {
        extensions = extensions.with_module(module);
        table.extend(handlers);
    }
    extensions.with(Arc::new(handlers::Handlers(Arc::new(table))))
}
