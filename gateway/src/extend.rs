//! Route handlers built outside the gateway crate (aggregation, BFF modules, GraphQL).
//!
//! The gateway never depends on the BFF crate; the binary hands it an [`Extensions`]
//! list instead. At config load, a route key the gateway does not handle itself (such as
//! `aggregate`) goes to the extension that claims it, which checks the block and returns
//! a [`Plan`] (errors come back with keys relative to the block, so they carry file and
//! line like every other error). When a config snapshot is built, each plan gets the
//! client stacks of its backends and becomes a running [`Handler`].

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::body::ResponseBody;
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

    /// The running handler; `upstreams` is indexed by [`BackendId`].
    fn build(&self, upstreams: &[Arc<Upstream>]) -> Arc<dyn Handler>;
}

/// A boxed handler future.
pub type Reply<'a> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Problem>> + Send + 'a>>;

/// One request as a handler gets it.
#[derive(Debug)]
pub struct HandlerRequest {
    /// The request (identity headers still to be set by whoever calls a backend).
    pub request: Request<Incoming>,
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

/// The extensions a gateway build knows.
#[derive(Clone, Default)]
pub struct Extensions {
    list: Vec<Arc<dyn Extension>>,
}

impl Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|e| e.key()))
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
}
