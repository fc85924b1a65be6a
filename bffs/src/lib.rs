//! Portico's Backend-for-Frontend side: scatter-gather aggregation, the [`Bff`] trait
//! and the built-in `web`, `mobile` and `partner` modules.
//!
//! The gateway crate never depends on this one: the binary hands the gateway
//! [`extensions`], and route files reach this crate through them (`aggregate:` routes,
//! `bff: NAME` files).

use std::sync::Arc;

use gateway::extend::{Extensions, Module};

pub mod aggregate;
pub mod envelope;
pub mod mobile;
pub mod module;
pub mod partner;
pub mod web;

pub use module::{Bff, Registered};

/// The built-in BFF modules: the one list a module is registered in.
pub fn modules() -> Vec<Arc<dyn Module>> {
    vec![
        Registered::<web::Web>::module(),
        Registered::<mobile::Mobile>::module(),
        Registered::<partner::Partner>::module(),
        Registered::<envelope::Envelope>::module(),
    ]
}

/// Everything this crate adds to the gateway, for `config::load_with`.
pub fn extensions() -> Extensions {
    modules().into_iter().fold(
        Extensions::none().with(Arc::new(aggregate::Aggregate)),
        Extensions::with_module,
    )
}
