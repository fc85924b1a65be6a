//! The client stack of one backend, and the one way any backend call is made:
//! [`Upstream::call`].
//!
//! ```text
//! call ─► fault injection ─► bulkhead ─► ┌ attempt loop (until the deadline) ────────┐
//!                                        │ pick instance (health, ejection, breaker) │
//!                                        │ send, bounded by min(timeout, deadline)   │
//!                                        │   └ hedge to another instance after delay │
//!                                        │ record: breaker, outlier, recent numbers  │
//!                                        │ retry? (conditions, idempotency, budget,  │
//!                                        │   backoff with jitter, Retry-After)       │
//!                                        └───────────────────────────────────────────┘
//! ```
//!
//! The response body holds the bulkhead place and the instance's in-flight count until
//! it ends. Dropping the call (the client went away) drops the attempt and with it the
//! backend connection; a dropped attempt is nobody's failure.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::Full;
use tokio::time::Instant;

use super::balance::{Balancer, Busy, Endpoint, Recent};
use super::breaker::{State, Ticket};
use super::bulkhead::{Bulkhead, Permit};
use super::pool::PooledBody;
use super::retry::{self, Budget};
use super::{fault, health};
use crate::body::UpstreamBody;
use crate::config::{self, Balance, Conditions, FaultSettings, RetrySettings};
use crate::telemetry::metrics::{AttemptResult, BackendMetrics};
use crate::telemetry::trace::{Kind, Recording, Trace};

static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// Why a backend call failed. Sources are kept for the log, never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection could not be made (refused, unreachable, connect timeout).
    #[error("connect failed: {0}")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The connection broke or the backend sent an invalid response.
    #[error("request failed: {0}")]
    Failed(#[source] hyper::Error),
    /// No response head in time: the attempt's `timeout`, or the caller's deadline.
    #[error("no response in time")]
    Timeout {
        /// The caller's deadline ran out (rather than the backend's own timeout).
        deadline: bool,
    },
    /// Every instance's breaker is open.
    #[error("circuit open")]
    CircuitOpen {
        /// Until a breaker lets a request through.
        retry_after: Duration,
    },
    /// The bulkhead is full.
    #[error("bulkhead full")]
    BulkheadFull,
    /// Fault injection failed the call with this status.
    #[error("fault injected: {0}")]
    Fault(StatusCode),
}

/// What the caller knows about a call.
#[derive(Debug, Clone)]
pub struct Call {
    /// No attempt, backoff or hedge runs past this.
    pub deadline: Instant,
    /// The request may be sent twice (idempotent method or `Idempotency-Key`).
    pub idempotent: bool,
    /// A second attempt may run alongside the first (not for upgrades).
    pub hedge: bool,
    /// The request's recorded span: each attempt is a span under it, and the backend
    /// gets the attempt's span id as its parent id.
    pub trace: Option<Trace>,
}

/// Which attempt of a call this is, for its span.
#[derive(Clone, Copy)]
struct Try<'t> {
    trace: Option<&'t Trace>,
    /// Attempts before this one (retries).
    resend: u32,
    /// A hedge beside a running attempt.
    hedge: bool,
}

/// A bulkhead place and an instance's in-flight count, held by a response body.
#[derive(Debug)]
pub struct InFlight {
    _permit: Permit,
    _busy: Busy,
}

/// One backend's client stack; built once per backend and kept across reloads while its
/// settings stay the same.
#[derive(Debug)]
pub struct Upstream {
    name: String,
    balancer: Balancer,
    bulkhead: Arc<Bulkhead>,
    timeout: Duration,
    retry: Option<RetrySettings>,
    budget: Option<Budget>,
    hedge: Option<Duration>,
    fault: Option<FaultSettings>,
    metrics: BackendMetrics,
}

/// The request of a call, sent once or copied per attempt.
enum Replay {
    /// Sent once; comes back only when nothing of it was sent.
    Once(Option<Request<UpstreamBody>>),
    /// Held in full (a bodiless or small buffered request): one copy per attempt.
    Copies {
        method: Method,
        uri: Uri,
        version: Version,
        headers: HeaderMap,
        body: Full<bytes::Bytes>,
    },
}

impl Replay {
    fn new(req: Request<UpstreamBody>, copies: bool) -> Self {
        if !copies {
            return Replay::Once(Some(req));
        }
        let (parts, body) = req.into_parts();
        match body {
            UpstreamBody::Full(body) => Replay::Copies {
                method: parts.method,
                uri: parts.uri,
                version: parts.version,
                headers: parts.headers,
                body,
            },
            body => Replay::Once(Some(Request::from_parts(parts, body))),
        }
    }

    fn next(&mut self) -> Option<Request<UpstreamBody>> {
        match self {
            Replay::Once(req) => req.take(),
            Replay::Copies {
                method,
                uri,
                version,
                headers,
                body,
            } => {
                let mut req = Request::new(UpstreamBody::Full(body.clone()));
                *req.method_mut() = method.clone();
                *req.uri_mut() = uri.clone();
                *req.version_mut() = *version;
                *req.headers_mut() = headers.clone();
                Some(req)
            }
        }
    }

    fn put_back(&mut self, req: Request<UpstreamBody>) {
        if let Replay::Once(slot) = self {
            *slot = Some(req);
        }
    }

    fn copies(&self) -> bool {
        matches!(self, Replay::Copies { .. })
    }
}

/// How one attempt ended.
// The answer is the common case and moves only a few times: not worth a box.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    /// A response head.
    Answer(Response<PooledBody>, Busy),
    /// No response.
    Failed {
        error: Error,
        endpoint: Arc<Endpoint>,
        /// The request, when none of it was sent.
        unsent: Option<Request<UpstreamBody>>,
    },
}

impl Attempt {
    fn endpoint(&self) -> &Arc<Endpoint> {
        match self {
            Attempt::Answer(_, busy) => busy.endpoint(),
            Attempt::Failed { endpoint, .. } => endpoint,
        }
    }
}

/// What an attempt's outcome was, for the rules that judge it.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Connect,
    Reset,
    Timeout,
    Status(u16),
}

impl Outcome {
    fn of(error: &Error) -> Outcome {
        match error {
            Error::Connect(_) => Outcome::Connect,
            Error::Timeout { .. } => Outcome::Timeout,
            _ => Outcome::Reset,
        }
    }

    fn matches(self, on: &Conditions) -> bool {
        match self {
            Outcome::Connect => on.connect,
            Outcome::Reset => on.reset,
            Outcome::Timeout => on.timeout,
            Outcome::Status(s) => on.status(s),
        }
    }

    /// A fault of the backend: counts for outlier ejection and the recent error rate.
    fn server_fault(self) -> bool {
        !matches!(self, Outcome::Status(s) if s < 500)
    }
}

/// One backend's numbers for the admin API.
#[derive(Debug, Clone)]
pub struct BackendStatus {
    /// Backend name.
    pub name: String,
    /// How instances are chosen.
    pub balance: Balance,
    /// Requests in flight.
    pub in_flight: usize,
    /// The bulkhead's cap.
    pub max_concurrency: Option<usize>,
    /// Requests and retries over the budget's window (`None`: no retries configured).
    pub retry_budget: Option<(u64, u64)>,
    /// Each instance.
    pub instances: Vec<InstanceStatus>,
}

impl BackendStatus {
    /// The backend's breaker as a whole: closed while any instance takes requests,
    /// half-open while one probes, open only when none does.
    pub fn breaker(&self) -> State {
        let states = || self.instances.iter().map(|i| i.breaker);
        if states().any(|s| s == State::Closed) {
            State::Closed
        } else if states().any(|s| s == State::HalfOpen) {
            State::HalfOpen
        } else {
            State::Open
        }
    }
}

/// One instance's numbers for the admin API.
#[derive(Debug, Clone)]
pub struct InstanceStatus {
    /// `http://host:port/base`.
    pub url: String,
    /// `healthy`, `unhealthy` or `ejected`.
    pub health: &'static str,
    /// The breaker's state (`closed` when there is no breaker).
    pub breaker: State,
    /// Attempts in flight.
    pub in_flight: usize,
    /// The last 10 s.
    pub recent: Recent,
}

impl Upstream {
    /// Builds the client stack of a backend and starts its health checks.
    pub fn new(backend: &config::Backend) -> Self {
        let now = Instant::now();
        let balancer = Balancer::new(backend, now);
        if let Some(h) = &backend.health {
            for e in balancer.endpoints() {
                health::spawn(e, h.clone(), backend.name.clone());
            }
        }
        let budget = (backend.retry.is_some() || backend.hedge.is_some()).then(|| {
            let share = backend
                .retry
                .as_ref()
                .map_or(config::DEFAULT_RETRY_BUDGET, |r| r.budget);
            Budget::new(share, now)
        });
        Self {
            name: backend.name.clone(),
            balancer,
            bulkhead: Bulkhead::new(backend.max_concurrency),
            timeout: backend.timeout,
            retry: backend.retry.clone(),
            budget,
            hedge: backend.hedge,
            fault: backend.fault.clone(),
            metrics: BackendMetrics::default(),
        }
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The per-attempt timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether a call may be tried more than once, so a small request body is worth
    /// holding in full.
    pub fn replays(&self) -> bool {
        self.retry.as_ref().is_some_and(|r| r.attempts > 0) || self.hedge.is_some()
    }

    /// Calls the backend with `req` (its URI the origin-form target, without the
    /// instance's base path).
    pub async fn call(
        &self,
        req: Request<UpstreamBody>,
        call: Call,
    ) -> Result<Response<PooledBody>, Error> {
        if let Some(f) = &self.fault
            && let Some(status) = fault::inject(f, &self.name, call.deadline).await
        {
            return Err(Error::Fault(status));
        }
        let Some(permit) = self.bulkhead.try_enter() else {
            BackendMetrics::inc(&self.metrics.bulkhead_rejected);
            return Err(Error::BulkheadFull);
        };
        if let Some(budget) = &self.budget {
            budget.request(Instant::now());
        }
        let mut replay = Replay::new(req, call.idempotent && self.replays());
        let mut tried: Option<Arc<Endpoint>> = None;
        let mut retries = 0u32;
        // The attempt being retried: its answer still goes back if no new attempt can
        // be made.
        let mut previous: Option<Attempt> = None;
        loop {
            let now = Instant::now();
            let picked = if now >= call.deadline {
                Err(Error::Timeout { deadline: true })
            } else {
                self.balancer
                    .pick(tried.as_ref(), now)
                    .map_err(|retry_after| Error::CircuitOpen { retry_after })
            };
            let (endpoint, ticket) = match (picked, previous.take()) {
                (Ok(pick), _) => pick,
                (Err(_), Some(attempt)) => return finish(attempt, permit),
                (Err(e), None) => return Err(e),
            };
            let Some(req) = replay.next() else {
                // Unreachable: a request that was sent is only retried when copied.
                return Err(Error::Timeout { deadline: true });
            };
            let this = Try {
                trace: call.trace.as_ref(),
                resend: retries,
                hedge: false,
            };
            let attempt = match self.hedge {
                Some(_) if call.hedge && call.idempotent && replay.copies() => {
                    // Boxed: two attempts side by side would double every call's future.
                    Box::pin(self.hedged(endpoint, ticket, req, &mut replay, call.deadline, this))
                        .await
                }
                _ => {
                    self.attempt(endpoint, ticket, req, call.deadline, this)
                        .await
                }
            };
            let Some(wait) = self.retry_wait(&attempt, retries, &call, &replay) else {
                return finish(attempt, permit);
            };
            if !self
                .budget
                .as_ref()
                .is_some_and(|b| b.try_retry(Instant::now()))
            {
                BackendMetrics::inc(&self.metrics.budget_exhausted);
                tracing::debug!(backend = %self.name, "retry budget exhausted");
                return finish(attempt, permit);
            }
            tried = Some(attempt.endpoint().clone());
            previous = Some(match attempt {
                Attempt::Failed {
                    error,
                    endpoint,
                    unsent: Some(req),
                } => {
                    replay.put_back(req);
                    Attempt::Failed {
                        error,
                        endpoint,
                        unsent: None,
                    }
                }
                other => other,
            });
            retries += 1;
            BackendMetrics::inc(&self.metrics.retries);
            tracing::debug!(backend = %self.name, retry = retries, ?wait, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// The wait before another attempt, when `attempt` should be retried: its outcome
    /// is one of `retry.on`, retries are left, the request can be sent again, and the
    /// backoff (at least the backend's `Retry-After`) ends before the deadline.
    fn retry_wait(
        &self,
        attempt: &Attempt,
        retries: u32,
        call: &Call,
        replay: &Replay,
    ) -> Option<Duration> {
        let policy = self.retry.as_ref()?;
        if retries >= policy.attempts {
            return None;
        }
        let (outcome, unsent, asked) = match attempt {
            Attempt::Answer(res, _) => {
                let status = res.status();
                let asked = (status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::SERVICE_UNAVAILABLE)
                    .then(|| retry::retry_after(res.headers()))
                    .flatten();
                (Outcome::Status(status.as_u16()), false, asked)
            }
            Attempt::Failed { error, unsent, .. } => (Outcome::of(error), unsent.is_some(), None),
        };
        if !outcome.matches(&policy.on) {
            return None;
        }
        // Nothing was sent: safe for any method. Else only an idempotent request that
        // is held in full can go again.
        if !(unsent || call.idempotent && replay.copies()) {
            return None;
        }
        let wait = retry::backoff(policy, retries).max(asked.unwrap_or_default());
        (Instant::now() + wait < call.deadline).then_some(wait)
    }

    /// One attempt on `endpoint`, bounded by the backend's timeout and the deadline; a
    /// span of its own when the call is traced.
    async fn attempt(
        &self,
        endpoint: Arc<Endpoint>,
        ticket: Option<Ticket>,
        mut req: Request<UpstreamBody>,
        deadline: Instant,
        this: Try<'_>,
    ) -> Attempt {
        let recording = this
            .trace
            .map(|trace| self.attempt_span(trace, &endpoint, &mut req, this));
        let attempt = self.exchange(endpoint, ticket, req, deadline).await;
        if let Some(mut recording) = recording {
            let span = recording.data();
            match &attempt {
                Attempt::Answer(res, _) => {
                    let status = res.status().as_u16();
                    span.int("http.response.status_code", i64::from(status));
                    if status >= 500 {
                        span.str("error.type", status.to_string());
                        span.error = Some(format!("the backend answered {status}"));
                    }
                }
                Attempt::Failed { error, .. } => {
                    span.str(
                        "error.type",
                        match Outcome::of(error) {
                            Outcome::Connect => "connect",
                            Outcome::Timeout => "timeout",
                            _ => "reset",
                        },
                    );
                    span.error = Some(error.to_string());
                }
            }
            recording.end();
        }
        attempt
    }

    /// Starts an attempt's span and names it as the parent in the request's
    /// `traceparent`.
    fn attempt_span(
        &self,
        trace: &Trace,
        endpoint: &Endpoint,
        req: &mut Request<UpstreamBody>,
        this: Try<'_>,
    ) -> Recording {
        let mut recording = trace.start(format!("{} {}", req.method(), self.name), Kind::Client);
        req.headers_mut()
            .insert(TRACEPARENT.clone(), recording.context().traceparent());
        let span = recording.data();
        span.str("http.request.method", req.method().as_str());
        let authority = endpoint.pool().authority();
        span.str("server.address", authority.host());
        if let Some(port) = authority.port_u16() {
            span.int("server.port", i64::from(port));
        }
        // Without the query, which may carry what no trace store should keep.
        span.str(
            "url.full",
            format!(
                "{}{}",
                endpoint.url().trim_end_matches('/'),
                req.uri().path()
            ),
        );
        span.str("portico.backend", self.name.as_str());
        if this.resend > 0 {
            span.int("http.request.resend_count", i64::from(this.resend));
        }
        if this.hedge {
            span.flag("portico.hedge", true);
        }
        recording
    }

    /// The exchange of one attempt.
    async fn exchange(
        &self,
        endpoint: Arc<Endpoint>,
        ticket: Option<Ticket>,
        mut req: Request<UpstreamBody>,
        deadline: Instant,
    ) -> Attempt {
        let busy = endpoint.enter();
        let start = Instant::now();
        let limit = (start + self.timeout).min(deadline);
        let timeout = Error::Timeout {
            deadline: deadline <= start + self.timeout,
        };
        let pool = endpoint.pool();
        // One timer for the whole attempt; a failed checkout hands the request back.
        let exchange = async {
            let conn = match pool.checkout().await {
                Ok(conn) => conn,
                Err(error) => return Err((error, Some(req))),
            };
            if !pool.base_path().is_empty()
                && let Some(target) = req.uri().path_and_query()
                && let Ok(uri) = pool.uri(target.as_str())
            {
                *req.uri_mut() = uri;
            }
            conn.send(req).await.map_err(|error| (error, None))
        };
        match tokio::time::timeout_at(limit, exchange).await {
            Ok(Ok(res)) => {
                let outcome = Outcome::Status(res.status().as_u16());
                self.settle(&endpoint, ticket, outcome, start);
                Attempt::Answer(res, busy)
            }
            Ok(Err((error, unsent))) => self.failed(busy, ticket, error, unsent, start),
            Err(_) => self.failed(busy, ticket, timeout, None, start),
        }
    }

    fn failed(
        &self,
        busy: Busy,
        ticket: Option<Ticket>,
        error: Error,
        unsent: Option<Request<UpstreamBody>>,
        start: Instant,
    ) -> Attempt {
        let endpoint = busy.endpoint().clone();
        drop(busy);
        // The caller's deadline cut it: not the backend's fault (the ticket is dropped
        // unsettled, like a cancellation); counted as a timeout all the same.
        if matches!(error, Error::Timeout { deadline: true }) {
            endpoint
                .metrics()
                .attempt(AttemptResult::Timeout, start.elapsed());
        } else {
            self.settle(&endpoint, ticket, Outcome::of(&error), start);
        }
        Attempt::Failed {
            error,
            endpoint,
            unsent,
        }
    }

    /// Feeds an attempt's outcome to the breaker, outlier ejection and recent numbers.
    fn settle(
        &self,
        endpoint: &Endpoint,
        ticket: Option<Ticket>,
        outcome: Outcome,
        start: Instant,
    ) {
        let now = Instant::now();
        if let (Some(ticket), Some(breaker)) = (ticket, endpoint.breaker()) {
            breaker.record(ticket, outcome.matches(&breaker.settings().on), now);
        }
        self.balancer.observe(endpoint, outcome.server_fault(), now);
        endpoint.sample(outcome.server_fault(), now - start, now);
        let counted = match outcome {
            Outcome::Status(s) => AttemptResult::Status(s),
            Outcome::Connect => AttemptResult::Connect,
            Outcome::Timeout => AttemptResult::Timeout,
            Outcome::Reset => AttemptResult::Reset,
        };
        endpoint.metrics().attempt(counted, now - start);
    }

    /// The backend's call counters.
    pub fn metrics(&self) -> &BackendMetrics {
        &self.metrics
    }

    /// Each instance: its URL, counters and breaker.
    pub fn instances(&self) -> Vec<Arc<Endpoint>> {
        self.balancer.endpoints().to_vec()
    }

    /// An attempt that, without an answer after the backend's `hedge` delay, gets a twin
    /// on another instance; the first answer that settles the call wins and the other is
    /// dropped.
    async fn hedged(
        &self,
        endpoint: Arc<Endpoint>,
        ticket: Option<Ticket>,
        req: Request<UpstreamBody>,
        replay: &mut Replay,
        deadline: Instant,
        this: Try<'_>,
    ) -> Attempt {
        let first = self.attempt(endpoint.clone(), ticket, req, deadline, this);
        tokio::pin!(first);
        let Some(after) = self.hedge else {
            return first.await;
        };
        let hedge_at = Instant::now() + after;
        if hedge_at >= deadline {
            return first.await;
        }
        tokio::select! {
            done = &mut first => return done,
            () = tokio::time::sleep_until(hedge_at) => {}
        }
        let now = Instant::now();
        if !self.budget.as_ref().is_some_and(|b| b.try_retry(now)) {
            BackendMetrics::inc(&self.metrics.budget_exhausted);
            return first.await;
        }
        let Ok((other, ticket)) = self.balancer.pick(Some(&endpoint), now) else {
            return first.await;
        };
        let Some(req) = replay.next() else {
            return first.await;
        };
        BackendMetrics::inc(&self.metrics.hedges);
        tracing::debug!(backend = %self.name, instance = other.url(), "hedging");
        let hedge = Try {
            hedge: true,
            ..this
        };
        let second = self.attempt(other, ticket, req, deadline, hedge);
        tokio::pin!(second);
        let (done, rest) = tokio::select! {
            a = &mut first => (a, Either::Second),
            b = &mut second => (b, Either::First),
        };
        if self.settles(&done) {
            return done;
        }
        let late = match rest {
            Either::First => first.await,
            Either::Second => second.await,
        };
        match (&done, &late) {
            (Attempt::Answer(..), Attempt::Failed { .. }) => done,
            _ => late,
        }
    }

    /// Whether an attempt's outcome ends the call (an answer not to be retried).
    fn settles(&self, attempt: &Attempt) -> bool {
        match attempt {
            Attempt::Answer(res, _) => !self
                .retry
                .as_ref()
                .is_some_and(|r| r.on.status(res.status().as_u16())),
            Attempt::Failed { .. } => false,
        }
    }

    /// Numbers for the admin API.
    pub fn status(&self) -> BackendStatus {
        let now = Instant::now();
        BackendStatus {
            name: self.name.clone(),
            balance: self.balancer.mode(),
            in_flight: self.bulkhead.in_flight(),
            max_concurrency: self.bulkhead.max(),
            retry_budget: self.budget.as_ref().map(|b| b.usage(now)),
            instances: self
                .balancer
                .endpoints()
                .iter()
                .map(|e| InstanceStatus {
                    url: e.url().to_string(),
                    health: if e.ejected(now) {
                        "ejected"
                    } else if e.healthy() {
                        "healthy"
                    } else {
                        "unhealthy"
                    },
                    breaker: e.breaker().map_or(State::Closed, |b| b.state(now)),
                    in_flight: e.in_flight(),
                    recent: e.recent(now),
                })
                .collect(),
        }
    }
}

/// Which of two racing attempts is still running.
enum Either {
    First,
    Second,
}

fn finish(attempt: Attempt, permit: Permit) -> Result<Response<PooledBody>, Error> {
    match attempt {
        Attempt::Answer(mut res, busy) => {
            res.body_mut().hold(InFlight {
                _permit: permit,
                _busy: busy,
            });
            Ok(res)
        }
        Attempt::Failed { error, .. } => Err(error),
    }
}
