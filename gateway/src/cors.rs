//! CORS per route file: preflights answered at the gateway, and the
//! `Access-Control-Allow-*` headers on the answers to allowed origins. Off unless a
//! file configures `cors`.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::body::ResponseBody;
use crate::config::Cors;
use crate::error::Problem;

/// The method a CORS preflight asks about, if this request is one.
pub fn preflight_method(method: &Method, headers: &HeaderMap) -> Option<Method> {
    if method != Method::OPTIONS || !headers.contains_key(ORIGIN) {
        return None;
    }
    let asked = headers.get(ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(asked.as_bytes()).ok()
}

/// The request's `Origin` when `cors` allows it.
pub fn allowed_origin(cors: &Cors, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(ORIGIN)?;
    let text = origin.to_str().ok()?;
    let allowed = cors.origins.is_empty()
        || cors
            .origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(text.trim_end_matches('/')));
    allowed.then(|| origin.clone())
}

/// Answers a preflight for a route with these methods.
pub fn answer_preflight(
    cors: &Cors,
    route_methods: Option<&[Method]>,
    asked: &Method,
    headers: &HeaderMap,
) -> Result<Response<ResponseBody>, Problem> {
    let Some(origin) = allowed_origin(cors, headers) else {
        return Err(Problem::forbidden("this origin may not call this API"));
    };
    let methods: Vec<Method> = match (&cors.methods, route_methods) {
        (Some(m), _) => m.clone(),
        (None, Some(m)) => m.to_vec(),
        (None, None) => vec![asked.clone()],
    };
    if !methods.contains(asked) {
        return Err(Problem::forbidden(
            "this method may not be used cross-origin",
        ));
    }
    let allow_headers = match &cors.headers {
        Some(allowed) => {
            let asked_headers = headers
                .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|h| !h.is_empty());
            for h in asked_headers {
                if !allowed.iter().any(|a| a.as_str().eq_ignore_ascii_case(h)) {
                    return Err(Problem::forbidden(
                        "a requested header may not be sent cross-origin",
                    ));
                }
            }
            join(allowed.iter().map(|h| h.as_str()))
        }
        None => headers.get(ACCESS_CONTROL_REQUEST_HEADERS).cloned(),
    };
    let mut res = Response::new(ResponseBody::empty());
    *res.status_mut() = StatusCode::NO_CONTENT;
    let h = res.headers_mut();
    h.insert(
        ACCESS_CONTROL_ALLOW_ORIGIN,
        allow_origin_value(cors, origin),
    );
    if let Some(m) = join(methods.iter().map(Method::as_str)) {
        h.insert(ACCESS_CONTROL_ALLOW_METHODS, m);
    }
    if let Some(ah) = allow_headers {
        h.insert(ACCESS_CONTROL_ALLOW_HEADERS, ah);
    }
    if cors.credentials {
        h.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if let Some(age) = cors.max_age {
        h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age.as_secs()));
    }
    h.insert(
        VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    Ok(res)
}

/// Adds the CORS headers for an allowed origin to an answer.
pub fn decorate(cors: &Cors, origin: HeaderValue, headers: &mut HeaderMap) {
    headers.insert(
        ACCESS_CONTROL_ALLOW_ORIGIN,
        allow_origin_value(cors, origin),
    );
    if cors.credentials {
        headers.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if let Some(expose) = join(cors.expose.iter().map(|h| h.as_str())) {
        headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose);
    }
    headers.append(VARY, HeaderValue::from_static("Origin"));
}

fn allow_origin_value(cors: &Cors, origin: HeaderValue) -> HeaderValue {
    if cors.origins.is_empty() {
        HeaderValue::from_static("*")
    } else {
        origin
    }
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> Option<HeaderValue> {
    let text = items.collect::<Vec<_>>().join(", ");
    (!text.is_empty())
        .then(|| HeaderValue::from_str(&text).ok())
        .flatten()
}
