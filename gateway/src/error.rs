//! Responses the gateway makes itself: RFC 9457 `application/problem+json` with a stable
//! `code` and the `request_id`.
//!
//! This is the one place where error causes become statuses. Bodies never carry internal
//! details (addresses, backend bodies, error chains): those go to the log.

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Method, Response, StatusCode};

use crate::body::ResponseBody;

/// The stable error codes of the contract (§3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// No route has this path.
    RouteNotFound,
    /// The path exists for other methods.
    MethodNotAllowed,
    /// The request itself is malformed.
    BadRequest,
    /// Credentials are missing or wrong.
    Unauthenticated,
    /// Authenticated, but not allowed (`require`), or a refused CORS preflight.
    Forbidden,
    /// The body is larger than `server.max_body`.
    PayloadTooLarge,
    /// A rate limit of the route was exceeded.
    RateLimited,
    /// The request head is larger than `server.max_header_bytes`.
    HeadersTooLarge,
    /// The backend could not be reached or answered badly.
    UpstreamUnavailable,
    /// The backend did not answer within its timeout.
    UpstreamTimeout,
    /// The route or edge deadline passed.
    GatewayTimeout,
    /// Every instance's circuit breaker is open.
    CircuitOpen,
    /// The backend's bulkhead is full.
    BulkheadFull,
    /// Fault injection failed the request (chaos experiments); the status is the
    /// configured one.
    FaultInjected,
    /// The client app is older than the route file's `min_app_version`.
    UpgradeRequired,
    /// A request with the same `Idempotency-Key` is still in progress.
    IdempotencyKeyInUse,
    /// The `Idempotency-Key` was used before with another request.
    IdempotencyKeyReused,
}

impl Code {
    /// The status that goes with the code.
    pub fn status(self) -> StatusCode {
        match self {
            Code::RouteNotFound => StatusCode::NOT_FOUND,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::BadRequest => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::Forbidden => StatusCode::FORBIDDEN,
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Code::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Code::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Code::UpstreamTimeout | Code::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Code::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
            Code::IdempotencyKeyInUse => StatusCode::CONFLICT,
            Code::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Code::CircuitOpen | Code::BulkheadFull | Code::FaultInjected => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The stable code string (`ROUTE_NOT_FOUND`).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::RouteNotFound => "ROUTE_NOT_FOUND",
            Code::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Code::BadRequest => "BAD_REQUEST",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Forbidden => "FORBIDDEN",
            Code::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Code::RateLimited => "RATE_LIMITED",
            Code::HeadersTooLarge => "HEADERS_TOO_LARGE",
            Code::UpstreamUnavailable => "UPSTREAM_UNAVAILABLE",
            Code::UpstreamTimeout => "UPSTREAM_TIMEOUT",
            Code::GatewayTimeout => "GATEWAY_TIMEOUT",
            Code::CircuitOpen => "CIRCUIT_OPEN",
            Code::BulkheadFull => "BULKHEAD_FULL",
            Code::FaultInjected => "FAULT_INJECTED",
            Code::UpgradeRequired => "UPGRADE_REQUIRED",
            Code::IdempotencyKeyInUse => "IDEMPOTENCY_KEY_IN_USE",
            Code::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Code::RouteNotFound => "Route not found",
            Code::MethodNotAllowed => "Method not allowed",
            Code::BadRequest => "Bad request",
            Code::Unauthenticated => "Unauthenticated",
            Code::Forbidden => "Forbidden",
            Code::PayloadTooLarge => "Payload too large",
            Code::RateLimited => "Too many requests",
            Code::HeadersTooLarge => "Request headers too large",
            Code::UpstreamUnavailable => "Upstream unavailable",
            Code::UpstreamTimeout => "Upstream timeout",
            Code::GatewayTimeout => "Gateway timeout",
            Code::CircuitOpen => "Circuit open",
            Code::BulkheadFull => "Backend at capacity",
            Code::FaultInjected => "Fault injected",
            Code::UpgradeRequired => "Upgrade required",
            Code::IdempotencyKeyInUse => "Idempotency key in use",
            Code::IdempotencyKeyReused => "Idempotency key reused",
        }
    }

    /// Who caused it: the client (4xx) or a backend / the gateway (5xx).
    pub fn is_client_fault(self) -> bool {
        self.status().is_client_error()
    }
}

/// A problem to answer with.
#[derive(Debug, Clone)]
pub struct Problem {
    code: Code,
    detail: String,
    allow: Vec<Method>,
    retry_after: Option<u64>,
    challenge: Option<&'static str>,
    /// A status other than the code's usual one (fault injection).
    status: Option<StatusCode>,
}

impl Problem {
    /// A problem with a detail text written by the gateway (never a backend's words).
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            allow: Vec::new(),
            retry_after: None,
            challenge: None,
            status: None,
        }
    }

    /// 401 UNAUTHENTICATED with a `WWW-Authenticate` challenge.
    pub fn unauthenticated(challenge: &'static str, detail: &'static str) -> Self {
        Self {
            challenge: Some(challenge),
            ..Self::new(Code::Unauthenticated, detail)
        }
    }

    /// 403 FORBIDDEN.
    pub fn forbidden(detail: &'static str) -> Self {
        Self::new(Code::Forbidden, detail)
    }

    /// 404 ROUTE_NOT_FOUND.
    pub fn route_not_found() -> Self {
        Self::new(Code::RouteNotFound, "no route matches this path")
    }

    /// 405 METHOD_NOT_ALLOWED with `Allow`.
    pub fn method_not_allowed(allow: Vec<Method>) -> Self {
        Self {
            allow,
            ..Self::new(
                Code::MethodNotAllowed,
                "this path does not accept this method",
            )
        }
    }

    /// 400 for a malformed request.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(Code::BadRequest, detail)
    }

    /// 413 PAYLOAD_TOO_LARGE.
    pub fn payload_too_large(limit: u64) -> Self {
        Self::new(
            Code::PayloadTooLarge,
            format!("the request body exceeds {limit} bytes"),
        )
    }

    /// 429 RATE_LIMITED; `retry_after` in whole seconds goes into `Retry-After`.
    pub fn rate_limited(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(Code::RateLimited, "too many requests; retry later")
        }
    }

    /// 431 HEADERS_TOO_LARGE.
    pub fn headers_too_large(limit: usize) -> Self {
        Self::new(
            Code::HeadersTooLarge,
            format!("the request headers exceed {limit} bytes"),
        )
    }

    /// 502 UPSTREAM_UNAVAILABLE.
    pub fn upstream_unavailable() -> Self {
        Self::new(
            Code::UpstreamUnavailable,
            "the backend could not be reached or gave an invalid response",
        )
    }

    /// 504 UPSTREAM_TIMEOUT.
    pub fn upstream_timeout() -> Self {
        Self::new(Code::UpstreamTimeout, "the backend did not answer in time")
    }

    /// 504 GATEWAY_TIMEOUT.
    pub fn gateway_timeout() -> Self {
        Self::new(
            Code::GatewayTimeout,
            "the request did not complete within its deadline",
        )
    }

    /// 503 CIRCUIT_OPEN; `retry_after` (rounded up to whole seconds) into `Retry-After`.
    pub fn circuit_open(retry_after: std::time::Duration) -> Self {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        Self {
            retry_after: Some(secs),
            ..Self::new(
                Code::CircuitOpen,
                "the backend is failing; the request was not sent",
            )
        }
    }

    /// 503 BULKHEAD_FULL.
    pub fn bulkhead_full() -> Self {
        Self::new(
            Code::BulkheadFull,
            "the backend has too many requests in flight",
        )
    }

    /// FAULT_INJECTED with the configured status.
    pub fn fault(status: StatusCode) -> Self {
        Self {
            status: Some(status),
            ..Self::new(
                Code::FaultInjected,
                "fault injected by the gateway's chaos settings",
            )
        }
    }

    /// The same problem with another detail (the gateway's own words).
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// The status answered.
    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or(self.code.status())
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The problem+json response.
    pub fn into_response(self, request_id: &str) -> Response<ResponseBody> {
        let status = self.status();
        let body = serde_json::json!({
            "type": format!("urn:portico:problem:{}", self.code.as_str().to_ascii_lowercase().replace('_', "-")),
            "title": self.code.title(),
            "status": status.as_u16(),
            "detail": self.detail,
            "code": self.code.as_str(),
            "request_id": request_id,
        });
        let mut res = Response::new(ResponseBody::full(Bytes::from(body.to_string())));
        *res.status_mut() = status;
        let h = res.headers_mut();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        if !self.allow.is_empty() {
            let allow = self
                .allow
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            if let Ok(v) = HeaderValue::from_str(&allow) {
                h.insert(ALLOW, v);
            }
        }
        if let Some(challenge) = self.challenge {
            h.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if let Some(secs) = self.retry_after {
            h.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        } else if status == StatusCode::SERVICE_UNAVAILABLE
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            h.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        res
    }
}
