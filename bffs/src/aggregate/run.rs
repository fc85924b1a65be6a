//! Running an aggregate: calls start as soon as what they wait for has answered, all
//! under the route's deadline; the answers are shaped and put together.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use gateway::body::ResponseBody;
use gateway::error::Problem;
use gateway::extend::{Handler, HandlerRequest, Reply};
use gateway::upstream::Upstream;
use http::Response;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::CallPlan;
use crate::call::{self, Failure, Outgoing};
use crate::template::{Scope, render_body};

/// A running `aggregate` route.
#[derive(Debug)]
pub(super) struct Aggregator {
    /// Each call's backend stack, by call index.
    pub(super) upstreams: Vec<Arc<Upstream>>,
    pub(super) calls: Vec<CallPlan>,
}

/// How a call ended.
#[derive(Debug, Clone)]
enum Done {
    Answer {
        /// The backend's JSON, for the templates of later calls.
        raw: Value,
        /// What the client gets.
        shaped: Value,
    },
    Failed(Failure),
}

impl Handler for Aggregator {
    fn handle(&self, req: HandlerRequest) -> Reply<'_> {
        Box::pin(self.run(req))
    }
}

impl Aggregator {
    async fn run(&self, req: HandlerRequest) -> Result<Response<ResponseBody>, Problem> {
        let HandlerRequest {
            request,
            params,
            query,
            context,
        } = req;
        let (parts, _) = request.into_parts();
        let query = gateway::query::pairs(query.as_deref());
        let claims = context.identity.as_ref().map(|i| i.claims());
        let outgoing = Outgoing::of(&parts.headers, &context);
        let deadline = context.deadline;
        let n = self.calls.len();
        let mut done: Vec<Option<Done>> = vec![None; n];
        let mut started = vec![false; n];
        let mut answers: HashMap<String, Value> = HashMap::new();
        let mut running = FuturesUnordered::new();
        let mut timed_out = false;
        loop {
            // Start every call whose dependencies have all ended.
            let mut progress = true;
            while progress {
                progress = false;
                for i in 0..n {
                    let deps = &self.calls[i].deps;
                    if started[i] || deps.iter().any(|&d| done[d].is_none()) {
                        continue;
                    }
                    started[i] = true;
                    progress = true;
                    if let Some(&d) = deps
                        .iter()
                        .find(|&&d| matches!(done[d], Some(Done::Failed(_))))
                    {
                        done[i] = Some(Done::Failed(Failure::skipped(format!(
                            "`{}` failed",
                            self.calls[d].name
                        ))));
                        continue;
                    }
                    let scope = Scope {
                        params: &params,
                        query: &query,
                        headers: &parts.headers,
                        claims,
                        answers: &answers,
                    };
                    match self.prepare(i, &scope) {
                        Ok(requests) => {
                            running.push(self.call(i, requests, outgoing.clone(), deadline))
                        }
                        Err(failure) => done[i] = Some(Done::Failed(failure)),
                    }
                }
            }
            if let Some(problem) = self.required_failure(&done) {
                return Err(problem);
            }
            if running.is_empty() {
                break;
            }
            tokio::select! {
                Some((i, result)) = running.next() => {
                    if let Done::Answer { raw, .. } = &result {
                        answers.insert(self.calls[i].name.clone(), raw.clone());
                    }
                    done[i] = Some(result);
                }
                () = tokio::time::sleep_until(deadline) => {
                    timed_out = true;
                    break;
                }
            }
        }
        drop(running); // cancels the calls still in flight, closing their connections
        if timed_out {
            for i in 0..n {
                if done[i].is_none() {
                    done[i] = Some(Done::Failed(if started[i] {
                        Failure::deadline()
                    } else {
                        Failure::skipped("a call it waits for ran out of time".into())
                    }));
                }
            }
            if let Some(problem) = self.required_failure(&done) {
                return Err(problem);
            }
        }
        Ok(self.answer(done))
    }

    /// The problem of the first required call that failed.
    fn required_failure(&self, done: &[Option<Done>]) -> Option<Problem> {
        self.calls.iter().zip(done).find_map(|(c, d)| match d {
            Some(Done::Failed(f)) if c.required => {
                tracing::debug!(call = %c.name, code = f.code, "required call failed");
                Some(
                    Problem::clone(&f.problem)
                        .with_detail(format!("required call `{}` failed: {}", c.name, f.detail)),
                )
            }
            _ => None,
        })
    }

    /// The requests of call `i`: one, or one per fan-out element (targets and bodies).
    fn prepare(
        &self,
        i: usize,
        scope: &Scope<'_>,
    ) -> Result<Vec<(String, Option<Bytes>)>, Failure> {
        let c = &self.calls[i];
        if c.path.fans_out()
            && !c.batch
            && let Some(len) = c.path.fan_out_len(scope)
            && len > c.fan_out
        {
            return Err(Failure::unavailable(
                "INVALID_BODY",
                format!(
                    "{len} elements to fan out over, more than fan_out {}",
                    c.fan_out
                ),
            ));
        }
        let targets = c
            .path
            .render(scope, true, c.batch)
            .map_err(|m| Failure::skipped(format!("needs {m}")))?;
        let body = match &c.body {
            None => None,
            Some(t) => {
                let value =
                    render_body(t, scope).map_err(|m| Failure::skipped(format!("needs {m}")))?;
                Some(Bytes::from(value.to_string()))
            }
        };
        Ok(targets.into_iter().map(|t| (t, body.clone())).collect())
    }

    /// Runs call `i`'s requests (in parallel when it fans out) and shapes the answers.
    async fn call(
        &self,
        i: usize,
        requests: Vec<(String, Option<Bytes>)>,
        outgoing: Outgoing,
        deadline: Instant,
    ) -> (usize, Done) {
        let c = &self.calls[i];
        let (call_deadline, own_timeout) = match c.timeout {
            Some(t) if Instant::now() + t < deadline => (Instant::now() + t, true),
            _ => (deadline, false),
        };
        let fans_out = c.path.fans_out() && !c.batch;
        let results = futures_util::future::join_all(requests.into_iter().map(|(target, body)| {
            self.one(i, target, body, &outgoing, call_deadline, own_timeout)
        }))
        .await;
        let mut raws = Vec::with_capacity(results.len());
        for r in results {
            match r {
                Ok(raw) => raws.push(raw),
                Err(f) => return (i, Done::Failed(f)),
            }
        }
        let shape = |raw: &Value| {
            c.shape.apply(raw.clone()).ok_or_else(|| {
                Failure::unavailable(
                    "INVALID_BODY",
                    format!(
                        "`extract` {} points at nothing in the answer",
                        c.shape.extract.as_deref().unwrap_or_default()
                    ),
                )
            })
        };
        let done = if fans_out {
            match raws.iter().map(shape).collect::<Result<Vec<_>, _>>() {
                Ok(shaped) => Done::Answer {
                    raw: Value::Array(raws),
                    shaped: Value::Array(shaped),
                },
                Err(f) => Done::Failed(f),
            }
        } else {
            let raw = raws.pop().unwrap_or(Value::Null);
            match shape(&raw) {
                Ok(shaped) => Done::Answer { raw, shaped },
                Err(f) => Done::Failed(f),
            }
        };
        (i, done)
    }

    /// One backend request of call `i`, through the backend's stack.
    async fn one(
        &self,
        i: usize,
        target: String,
        body: Option<Bytes>,
        outgoing: &Outgoing,
        deadline: Instant,
        own_timeout: bool,
    ) -> Result<Value, Failure> {
        let c = &self.calls[i];
        let request = call::JsonRequest {
            method: &c.method,
            target: &target,
            body,
            outgoing,
            deadline,
            own_timeout,
            label: &c.name,
        };
        call::json(&self.upstreams[i], request).await
    }

    /// The client's answer: one member per call, `_errors` and `Portico-Partial` when
    /// some failed.
    fn answer(&self, done: Vec<Option<Done>>) -> Response<ResponseBody> {
        let mut body = Map::new();
        let mut errors = Vec::new();
        let mut failed = Vec::new();
        for (c, d) in self.calls.iter().zip(done) {
            match d {
                Some(Done::Answer { shaped, .. }) => {
                    body.insert(c.name.clone(), shaped);
                }
                Some(Done::Failed(f)) => {
                    failed.push(c.name.as_str());
                    errors.push(json!({ "call": c.name, "code": f.code, "detail": f.detail }));
                    if let Some(fallback) = &c.fallback {
                        body.insert(c.name.clone(), fallback.clone());
                    }
                }
                None => {}
            }
        }
        if !errors.is_empty() {
            body.insert("_errors".into(), Value::Array(errors));
        }
        let mut res = Response::new(ResponseBody::full(Value::Object(body).to_string()));
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if !failed.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&failed.join(",")) {
                h.insert("portico-partial", v);
            }
            // A partial answer is never stored by anyone.
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        res
    }
}
