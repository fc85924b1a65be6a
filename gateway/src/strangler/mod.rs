//! Strangler Fig: moving routes off a monolith.
//!
//! Part of the handler stage of the request path. `split` chooses a target per request
//! (weighted, sticky by cookie, header or client address, overridable by a header);
//! `shadow` copies requests to another backend after the client's own request is on its
//! way, and with `compare` checks both answers against each other. The catch-all to the
//! monolith itself is an ordinary `/{*rest}` route in a `prefix: /` file.

mod compare;
mod shadow;
mod split;

pub use compare::{Outcome, compare};
pub use shadow::{Exchange, ShadowPlan, ShadowRoute, ShadowStats};
pub use split::{Choice, SplitRoute, SplitTarget};
