//! `envelope`: the example module of the "write your own BFF" guide (docs/writing-a-bff.md).
//!
//! Wraps every successful JSON answer of the file as
//! `{"<key>": <answer>, "meta": {"request_id": "..."}}`, the shape some client teams want
//! for every endpoint. Options under `options:`: `key` (default `data`).

use gateway::extend::{Exchange, Finding};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

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

    fn on_json(options: &EnvelopeOptions, request: &Exchange, json: &mut Value) {
        let answer = json.take();
        *json = json!({
            options.key.as_str(): answer,
            "meta": { "request_id": request.request_id },
        });
    }
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
