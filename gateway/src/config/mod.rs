//! Configuration: `gateway.yaml` + `routes/*.yaml` → one immutable [`Config`].
//!
//! Not on the request path: a config is loaded (at start or on reload), fully checked,
//! and only then handed to the server, which builds its runtime snapshot from it.
//! `raw` holds the file types (and the JSON Schema), `load` reads files with line
//! numbers and `${NAME}` expansion, `resolve` applies the contract's rules.

mod error;
mod load;
mod model;
pub mod raw;
mod resolve;
#[cfg(test)]
mod tests;
pub mod units;
pub mod yaml;

pub use error::{Diagnostic, Error};
pub use load::{Source, Sources};
pub use model::*;
pub use resolve::{env_vars, load, load_with};

/// The JSON Schemas of both file kinds, as one JSON document:
/// `{"gateway.yaml": {...}, "routes/<team>.yaml": {...}}`.
pub fn json_schema() -> serde_json::Value {
    let gateway = schemars::schema_for!(raw::GatewayFile);
    let routes = schemars::schema_for!(raw::RoutesFile);
    serde_json::json!({
        "gateway.yaml": gateway,
        "routes/<team>.yaml": routes,
    })
}

/// Loads `DIR/gateway.yaml` and `DIR/routes/*.yaml` with the process environment.
pub fn load_dir(
    dir: &std::path::Path,
    extensions: &crate::extend::Extensions,
) -> Result<Config, Error> {
    let sources = Sources::read_dir(dir).map_err(|diagnostics| Error { diagnostics })?;
    load_with(&sources, &env_vars, extensions)
}
