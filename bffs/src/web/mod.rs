//! The `web` module (contract §3.8): for browser apps. Tokens may come from a cookie
//! (the provider's `sources: [authorization, "cookie:NAME"]`) and CORS from the file's
//! `cors`, both checked by the gateway for every file; the module itself takes no
//! options and changes no answer. The GraphQL endpoint of a web file mounts here
//! (issue #7).

use schemars::JsonSchema;
use serde::Deserialize;

use crate::module::Bff;

/// The `web` module.
pub struct Web;

/// `web` has no options.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebOptions {}

impl Bff for Web {
    type Options = WebOptions;
    const NAME: &'static str = "web";
}
