//! Route handlers built outside the gateway crate (aggregation, BFF modules, GraphQL).
//!
//! The gateway never depends on the BFF crate; the binary hands it an [`Extensions`]
//! list instead. At config load, a route key the gateway does not handle itself (such as
//! `aggregate`) goes to the extension that claims it, which checks the block and returns
//! a [`Plan`] (errors come back with keys relative to the block, so they carry file and
//! line like every other error). When a config snapshot is built, each plan gets the
//! client stacks of its backends and becomes a running [`Handler`].
//!
//! A route file may also select a BFF [`Module`] (`bff: NAME`, options under `NAME:`):
//! the module checks its options once per file and returns a [`Layer`], whose hooks run
//! around every route of the file — before the handler (it may refuse the request) and
//! on the handler's response (it may reshape it).

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};

use crate::body::{ClientBody, ResponseBody};
use crate::config::BackendId;
use crate::error::Problem;
use crate::proxy::Context;
use crate::upstream::Upstream;

/// What an extension may know about the route it is resolving for.
pub struct RouteInfo<'a> {
    /// The route's path parameters.
    pub params: Vec<String>,
    /// Whether the route authenticates (so `claims` are available).
    pub authenticated: bool,
    /// Reads a file beside the route file (a plain relative name).
    pub read: &'a dyn Fn(&str) -> Result<String, String>,
    /// Looks up a backend by name: its id; or the message for an unknown name; or
    /// `Err(None)` for a backend that has errors of its own (already reported).
    pub backend: &'a dyn Fn(&str) -> Result<BackendId, Option<String>>,
}

/// A problem found in an extension's block: the key below the block, and the message.
pub type Finding = (String, String);

/// A provider of handlers for one route key.
pub trait Extension: Send + Sync {
    /// The route key it handles (`aggregate`).
    fn key(&self) -> &'static str;

    /// Checks the block and prepares the handler.
    fn resolve(
        &self,
        block: &serde_json::Value,
        route: &RouteInfo<'_>,
    ) -> Result<Arc<dyn Plan>, Vec<Finding>>;
}

/// A checked handler, waiting for its backends' client stacks.
pub trait Plan: Send + Sync + Debug {
    /// The handler's kind, as `portico routes` shows it.
    fn kind(&self) -> &'static str;

    /// The backends it calls.
    fn backends(&self) -> Vec<BackendId>;

    /// Each backend call it may make, for the topology: a label (the aggregate call's
    /// name, the GraphQL `Type.field`), the backend, and the call's own timeout.
    fn calls(&self) -> Vec<PlannedCall> {
        self.backends()
            .into_iter()
            .map(|backend| PlannedCall {
                label: String::new(),
                backend,
                timeout: None,
            })
            .collect()
    }

    /// The running handler; `upstreams` is indexed by [`BackendId`].
    fn build(&self, upstreams: &[Arc<Upstream>]) -> Arc<dyn Handler>;
}

/// One backend call a handler may make.
#[derive(Debug, Clone)]
pub struct PlannedCall {
    /// What makes the call (`order`, `Order.customer`).
    pub label: String,
    /// The backend.
    pub backend: BackendId,
    /// The call's own timeout, if it has one.
    pub timeout: Option<std::time::Duration>,
}

/// A boxed handler future.
pub type Reply<'a> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Problem>> + Send + 'a>>;

/// One request as a handler gets it.
#[derive(Debug)]
pub struct HandlerRequest {
    /// The request (identity headers still to be set by whoever calls a backend).
    pub request: Request<ClientBody>,
    /// The route's path parameters.
    pub params: Vec<(String, String)>,
    /// The query string (an API key's query parameter already cut).
    pub query: Option<String>,
    /// What the proxy would know: ids, forwarding, identity, deadline.
    pub context: Context,
}

/// A running handler.
pub trait Handler: Send + Sync + Debug {
    /// Answers one request.
    fn handle(&self, req: HandlerRequest) -> Reply<'_>;
}

/// What a layer knows of the request once the handler has it.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The method.
    pub method: http::Method,
    /// The client's headers.
    pub headers: http::HeaderMap,
    /// The query string.
    pub query: Option<String>,
    /// The request's id (the `X-Request-Id` the answer will carry).
    pub request_id: String,
    /// Who is calling: the API key's id or the token's subject (`None`: anonymous).
    pub caller: Option<String>,
    /// When the request's deadline passes.
    pub deadline: tokio::time::Instant,
}

/// The rest of a route's work (its handler), for [`Layer::around`].
pub type Next<'a> = Box<dyn FnOnce(Request<ClientBody>) -> Reply<'a> + Send + 'a>;

/// A boxed response hook future.
pub type Reshaped<'a> = Pin<Box<dyn Future<Output = Response<ResponseBody>> + Send + 'a>>;

/// The hooks of a BFF module around the routes of one file.
pub trait Layer: Send + Sync + Debug {
    /// Before the handler; an error answers the request instead.
    fn on_request(&self, _request: &Exchange) -> Result<(), Problem> {
        Ok(())
    }

    /// Around the handler: may answer without it, or look at (and read) the request
    /// body first. By default, runs it.
    fn around<'a>(
        &'a self,
        _request: &'a Exchange,
        body: Request<ClientBody>,
        next: Next<'a>,
    ) -> Reply<'a> {
        next(body)
    }

    /// On the handler's response (not on the gateway's problem answers).
    fn on_response(&self, request: Exchange, response: Response<ResponseBody>) -> Reshaped<'_>;
}

/// A BFF module: a name, a typed options block, and the layer it puts around a file.
pub trait Module: Send + Sync {
    /// `bff: NAME` selects it; its options sit under `NAME:` (`mobile:`, `partner:`) or
    /// `options:`.
    fn name(&self) -> &'static str;

    /// The JSON Schema of its options (for `portico schema` and editors).
    fn options_schema(&self) -> serde_json::Value;

    /// Checks the options (absent: `None`) and makes the file's layer.
    fn layer(&self, options: Option<&serde_json::Value>) -> Result<Arc<dyn Layer>, Vec<Finding>>;

    /// Whether a file of this module without `auth` authenticates with the gateway's
    /// API-key provider (`partner`).
    fn api_keys_by_default(&self) -> bool {
        false
    }
}

/// The extensions a gateway build knows.
#[derive(Clone, Default)]
pub struct Extensions {
    list: Vec<Arc<dyn Extension>>,
    modules: Vec<Arc<dyn Module>>,
}

impl Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|e| e.key()))
            .entries(self.modules.iter().map(|m| m.name()))
            .finish()
    }
}

impl Extensions {
    /// No extensions: such route keys are refused as not supported.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds an extension.
    pub fn with(mut self, extension: Arc<dyn Extension>) -> Self {
        self.list.push(extension);
        self
    }

    /// The extension for `key`.
    pub fn get(&self, key: &str) -> Option<&Arc<dyn Extension>> {
        self.list.iter().find(|e| e.key() == key)
    }

    /// Adds a BFF module.
    pub fn with_module(mut self, module: Arc<dyn Module>) -> Self {
        self.modules.push(module);
        self
    }

    /// The module named `name`.
    pub fn module(&self, name: &str) -> Option<&Arc<dyn Module>> {
        self.modules.iter().find(|m| m.name() == name)
    }

    /// The modules' names.
    pub fn module_names(&self) -> Vec<&'static str> {
        self.modules.iter().map(|m| m.name()).collect()
    }
}
