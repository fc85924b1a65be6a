//! The [`Bff`] trait: what a BFF module is, and the adapter that makes one a gateway
//! [`Module`].
//!
//! A module has a name (`bff: NAME` in a route file selects it), a typed options block
//! (read with serde, described with schemars), and hooks around every route of the
//! file: on the request, on the response head, and — when it asks for it — on the
//! handler's JSON answer and on the final body. Register it in [`crate::modules`].

use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use gateway::body::{ClientBody, Read, ResponseBody};
use gateway::error::{Code, Problem};
use gateway::extend::{Exchange, Finding, Layer, Module, Next, Reply, Reshaped};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::response::Parts;
use http::{Request, Response};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The largest answer a module reads in full (larger ones pass through untouched).
pub const MAX_SHAPED_BODY: u64 = 8 * 1024 * 1024;

/// The JSON Schema of a block spliced into the route file's schema: self-contained
/// (nested types inlined, no `$defs` to point at) and without `$schema`.
pub fn block_schema<T: JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let mut schema =
        serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or_default();
    if let Some(o) = schema.as_object_mut() {
        o.remove("$schema");
    }
    schema
}

/// Reads a typed block; an error names the key below the block where serde was (an
/// unknown field's path ends with its name).
pub(crate) fn read<T: DeserializeOwned>(block: &Value) -> Result<T, Finding> {
    serde_path_to_error::deserialize(block.clone()).map_err(|e| {
        let path = e.path().to_string();
        let below = if path == "." { String::new() } else { path };
        (below, e.inner().to_string())
    })
}

/// Reads a client's request body in full: at most `cap` bytes (else 413), before
/// `deadline` (else 504).
pub(crate) async fn read_request(
    body: ClientBody,
    cap: usize,
    deadline: tokio::time::Instant,
) -> Result<Bytes, Problem> {
    use http_body_util::BodyExt;
    let read = http_body_util::Limited::new(body, cap).collect();
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(Problem::payload_too_large(cap as u64))
        }
        Ok(Err(_)) => Err(Problem::bad_request("malformed request body")),
        Err(_) => Err(Problem::gateway_timeout()),
    }
}

/// A BFF module.
pub trait Bff: Send + Sync + 'static {
    /// Its options (`Default` when the file gives none).
    type Options: DeserializeOwned + JsonSchema + Default + Debug + Send + Sync + 'static;

    /// The name route files select it with.
    const NAME: &'static str;

    /// A file without `auth` authenticates with the gateway's API-key provider.
    const API_KEYS_BY_DEFAULT: bool = false;

    /// Checks the options beyond their types: `(key below the block, message)` each.
    fn check(_options: &Self::Options) -> Vec<Finding> {
        Vec::new()
    }

    /// Rust handlers routes may name as `handler: NAME.FN` (`FN` here, without the
    /// module's name).
    fn handlers() -> Vec<(&'static str, crate::handlers::NamedHandler)> {
        Vec::new()
    }

    /// After `check`: builds what the file's layer keeps at run time (stores, caches)
    /// into the options.
    fn prepare(_options: &mut Self::Options) {}

    /// Before the handler; an error answers the request instead.
    fn on_request(_options: &Self::Options, _request: &Exchange) -> Result<(), Problem> {
        Ok(())
    }

    /// Around the handler: may answer without it, or read the request body first
    /// (`partner` idempotency). By default, runs it.
    fn around<'a>(
        _options: &'a Self::Options,
        _request: &'a Exchange,
        body: Request<ClientBody>,
        next: Next<'a>,
    ) -> Reply<'a> {
        next(body)
    }

    /// Every answer's head (the body streams on untouched unless [`Bff::reads_body`]).
    fn on_head(_options: &Self::Options, _request: &Exchange, _head: &mut Parts) {}

    /// Whether the module needs successful JSON answers in full ([`Bff::on_json`],
    /// [`Bff::on_body`]).
    fn reads_body(_options: &Self::Options) -> bool {
        false
    }

    /// A successful JSON answer, parsed, to reshape.
    fn on_json(_options: &Self::Options, _request: &Exchange, _json: &mut Value) {}

    /// The final body of a successful JSON answer (after `on_json`): may set headers,
    /// replace the body (compression) or answer 304 instead.
    fn on_body(
        _options: &Self::Options,
        _request: &Exchange,
        _head: &mut Parts,
        body: Bytes,
    ) -> Bytes {
        body
    }
}

/// A [`Bff`] as a gateway [`Module`], with its exported handlers.
pub struct Registered<B>(PhantomData<fn() -> B>);

impl<B: Bff> Registered<B> {
    /// The module, for the registry.
    pub fn module() -> Arc<dyn Module> {
        Arc::new(Registered::<B>(PhantomData))
    }

    /// Its handlers as `module.fn`.
    pub fn handlers() -> Vec<(String, crate::handlers::NamedHandler)> {
        B::handlers()
            .into_iter()
            .map(|(name, f)| (format!("{}.{name}", B::NAME), f))
            .collect()
    }
}

impl<B: Bff> Module for Registered<B> {
    fn name(&self) -> &'static str {
        B::NAME
    }

    fn api_keys_by_default(&self) -> bool {
        B::API_KEYS_BY_DEFAULT
    }

    fn options_schema(&self) -> Value {
        block_schema::<B::Options>()
    }

    fn layer(&self, options: Option<&Value>) -> Result<Arc<dyn Layer>, Vec<Finding>> {
        let options: B::Options = match options {
            None => B::Options::default(),
            Some(v) => read(v).map_err(|finding| vec![finding])?,
        };
        let findings = B::check(&options);
        if !findings.is_empty() {
            return Err(findings);
        }
        let mut options = options;
        B::prepare(&mut options);
        Ok(Arc::new(BffLayer::<B> { options }))
    }
}

/// The layer of one file: the module's options and its hooks.
struct BffLayer<B: Bff> {
    options: B::Options,
}

impl<B: Bff> Debug for BffLayer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BffLayer")
            .field("module", &B::NAME)
            .field("options", &self.options)
            .finish()
    }
}

fn is_json(head: &Parts) -> bool {
    head.headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .is_some_and(|m| m.eq_ignore_ascii_case("application/json") || m.ends_with("+json"))
}

impl<B: Bff> Layer for BffLayer<B> {
    fn on_request(&self, request: &Exchange) -> Result<(), Problem> {
        B::on_request(&self.options, request)
    }

    fn around<'a>(
        &'a self,
        request: &'a Exchange,
        body: Request<ClientBody>,
        next: Next<'a>,
    ) -> Reply<'a> {
        B::around(&self.options, request, body, next)
    }

    fn on_response(&self, request: Exchange, response: Response<ResponseBody>) -> Reshaped<'_> {
        Box::pin(async move {
            let (mut head, body) = response.into_parts();
            B::on_head(&self.options, &request, &mut head);
            // Shaped: successful, uncompressed JSON answers to GET and other methods
            // (a HEAD answer has no body to shape).
            let encoded = head
                .headers
                .get(CONTENT_ENCODING)
                .is_some_and(|v| v.as_bytes() != b"identity");
            if !B::reads_body(&self.options)
                || request.method == http::Method::HEAD
                || !head.status.is_success()
                || !is_json(&head)
                || encoded
            {
                return Response::from_parts(head, body);
            }
            let bytes = match body.read_up_to(MAX_SHAPED_BODY as usize).await {
                Read::Whole(bytes) => bytes,
                // Too large to shape: it streams on as it is.
                Read::TooLarge(body) => return Response::from_parts(head, body),
                Read::Broken => {
                    return Problem::new(Code::UpstreamUnavailable, "the answer broke off")
                        .into_response(&request.request_id);
                }
            };
            let bytes = match serde_json::from_slice::<Value>(&bytes) {
                Ok(mut json) => {
                    B::on_json(&self.options, &request, &mut json);
                    Bytes::from(json.to_string())
                }
                Err(_) => bytes,
            };
            head.headers.remove(CONTENT_LENGTH);
            let bytes = B::on_body(&self.options, &request, &mut head, bytes);
            Response::from_parts(head, ResponseBody::full(bytes))
        })
    }
}
