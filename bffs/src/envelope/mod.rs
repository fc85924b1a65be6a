//! `envelope`: the example module of the "write your own BFF" guide (docs/writing-a-bff.md).
//!
//! Wraps every successful JSON answer of the file as
//! `{"<key>": <answer>, "meta": {"request_id": "..."}}`, the shape some client teams want
//! for every endpoint. Options under `options:`: `key` (default `data`). It also exports
//! a Rust handler, `handler: envelope.hello`.

use gateway::body::ResponseBody;
use gateway::extend::{Exchange, Finding, HandlerRequest, Reply};
use http::header::{CONTENT_TYPE, HeaderValue};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::handlers::{Backends, NamedHandler};
use crate::module::Bff;

/// The `envelope` module.
pub struct Envelope;

/// Options under `options:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeOptions {
    /// The member the answer goes under.
    #[serde(default = "default_key")]
    pub key: String,
}

fn default_key() -> String {
    "data".into()
}

impl Default for EnvelopeOptions {
    fn default() -> Self {
        Self { key: default_key() }
    }
}

impl Bff for Envelope {
    type Options = EnvelopeOptions;
    const NAME: &'static str = "envelope";

    fn check(options: &EnvelopeOptions) -> Vec<Finding> {
        if options.key.is_empty() || options.key == "meta" {
            return vec![(
                "key".into(),
                "must be a non-empty name other than `meta`".into(),
            )];
        }
        Vec::new()
    }

    fn reads_body(_: &EnvelopeOptions) -> bool {
        true
    }

    fn handlers() -> Vec<(&'static str, NamedHandler)> {
        vec![("hello", hello)]
    }

    fn on_json(options: &EnvelopeOptions, request: &Exchange, json: &mut Value) {
        let answer = json.take();
        *json = json!({
            options.key.as_str(): answer,
            "meta": { "request_id": request.request_id },
        });
    }
}

/// `handler: envelope.hello`: greets the path parameter `name` (or the world) and lists
/// the backends a handler could call.
fn hello(req: HandlerRequest, backends: &Backends) -> Reply<'_> {
    Box::pin(async move {
        let name = req
            .params
            .iter()
            .find(|(k, _)| k == "name")
            .map_or("world", |(_, v)| v.as_str());
        let mut names: Vec<&str> = backends.keys().map(String::as_str).collect();
        names.sort_unstable();
        let body = json!({ "hello": name, "backends": names });
        let mut res = http::Response::new(ResponseBody::full(body.to_string()));
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(res)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange() -> Exchange {
        Exchange {
            method: http::Method::GET,
            headers: http::HeaderMap::new(),
            query: None,
            request_id: "req-1".into(),
            caller: None,
            deadline: tokio::time::Instant::now(),
        }
    }

    #[test]
    fn wraps_the_answer_under_the_key_with_the_request_id() {
        let options = EnvelopeOptions {
            key: "result".into(),
        };
        let mut json = json!({"id": 7});
        Envelope::on_json(&options, &exchange(), &mut json);
        assert_eq!(
            json,
            json!({"result": {"id": 7}, "meta": {"request_id": "req-1"}})
        );
    }

    #[test]
    fn meta_cannot_be_the_key() {
        assert_eq!(
            Envelope::check(&EnvelopeOptions { key: "meta".into() }).len(),
            1
        );
        assert!(Envelope::check(&EnvelopeOptions::default()).is_empty());
    }
}
