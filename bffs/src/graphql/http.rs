//! GraphQL over HTTP: reading the request (GET parameters or a POST JSON body, one
//! operation or — when enabled — an array of them), choosing the response media type,
//! checking the persisted-query mode and the limits, executing, and the status codes of
//! the GraphQL-over-HTTP spec: with `application/graphql-response+json` a request error
//! (nothing executed) is 400; with `application/json` every GraphQL response is 200.

use std::sync::Arc;

use async_graphql::{ServerError, Variables};
use gateway::body::ResponseBody;
use gateway::error::Problem;
use gateway::extend::HandlerRequest;
use gateway::upstream::Upstream;
use http::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue};
use http::{Method, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::exec::Exec;
use super::persisted::Refusal;
use super::{Endpoint, limits};

/// Largest request body read (documents are capped separately, by `max_document_size`).
const MAX_BODY: usize = 1024 * 1024;

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// The media type of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    GraphqlResponse,
    Json,
}

/// Reads `Accept`: the media type to answer with, and whether a browser asks for a page.
fn negotiate(headers: &http::HeaderMap) -> (Media, bool) {
    let mut graphql = false;
    let mut json = false;
    let mut html = false;
    for value in headers.get_all(ACCEPT) {
        for range in value.to_str().unwrap_or_default().split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            if refused {
                continue;
            }
            match media.as_str() {
                GRAPHQL_RESPONSE => graphql = true,
                "application/json" => json = true,
                "text/html" => html = true,
                _ => {}
            }
        }
    }
    let media = if graphql {
        Media::GraphqlResponse
    } else {
        Media::Json
    };
    (media, html && !graphql && !json)
}

/// One operation as the client sent it.
#[derive(Debug, Default)]
struct Operation {
    query: Option<String>,
    name: Option<String>,
    variables: Option<Value>,
    extensions: Option<Value>,
    document_id: Option<String>,
}

/// What executing one operation gave.
struct Outcome {
    /// The GraphQL response, as JSON text (members in the order of the selection).
    body: String,
    /// A request error (nothing executed; no `data`).
    request_error: bool,
    /// A status that overrides the media type's (405 for a mutation over GET, 200 for an
    /// APQ miss the client answers by sending the query).
    status: Option<StatusCode>,
}

impl Outcome {
    fn refused(code: &str, message: impl Into<String>, status: Option<StatusCode>) -> Self {
        Outcome {
            body:
                json!({ "errors": [{ "message": message.into(), "extensions": { "code": code } }] })
                    .to_string(),
            request_error: true,
            status,
        }
    }
}

fn bad(code: &str, message: impl Into<String>) -> Outcome {
    Outcome::refused(code, message, None)
}

fn string_member(o: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("`{key}` must be a string")),
    }
}

fn object_member(o: &Map<String, Value>, key: &str) -> Result<Option<Value>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
        Some(_) => Err(format!("`{key}` must be an object")),
    }
}

impl Operation {
    fn from_json(v: &Value) -> Result<Operation, String> {
        let Value::Object(o) = v else {
            return Err("an operation is a JSON object with `query`".into());
        };
        Ok(Operation {
            query: string_member(o, "query")?,
            name: string_member(o, "operationName")?,
            variables: object_member(o, "variables")?,
            extensions: object_member(o, "extensions")?,
            document_id: string_member(o, "documentId")?.or(string_member(o, "id")?),
        })
    }

    fn from_params(pairs: &[(String, String)]) -> Result<Operation, String> {
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let parse = |k: &str| -> Result<Option<Value>, String> {
            match get(k) {
                None => Ok(None),
                Some(text) if text.is_empty() => Ok(None),
                Some(text) => match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Null) => Ok(None),
                    Ok(v @ Value::Object(_)) => Ok(Some(v)),
                    _ => Err(format!("`{k}` must be a JSON object")),
                },
            }
        };
        Ok(Operation {
            query: get("query").filter(|q| !q.is_empty()),
            name: get("operationName").filter(|n| !n.is_empty()),
            variables: parse("variables")?,
            extensions: parse("extensions")?,
            document_id: get("documentId"),
        })
    }

    /// The APQ hash, from `extensions.persistedQuery`.
    fn hash(&self) -> Result<Option<String>, String> {
        let Some(pq) = self
            .extensions
            .as_ref()
            .and_then(|e| e.get("persistedQuery"))
        else {
            return Ok(None);
        };
        if pq.get("version").and_then(Value::as_u64) != Some(1) {
            return Err("persistedQuery: only version 1 is supported".into());
        }
        match pq.get("sha256Hash").and_then(Value::as_str) {
            Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(Some(h.to_string()))
            }
            _ => Err("persistedQuery.sha256Hash must be 64 hex digits".into()),
        }
    }
}

/// Answers one request to the endpoint.
pub(super) async fn serve(
    ep: &Endpoint,
    upstreams: &Arc<Vec<Arc<Upstream>>>,
    req: HandlerRequest,
) -> Result<Response<ResponseBody>, Problem> {
    let HandlerRequest {
        request,
        query,
        context,
        ..
    } = req;
    let (parts, body) = request.into_parts();
    let (media, wants_page) = negotiate(&parts.headers);
    let get = parts.method == Method::GET;
    let (ops, batch) = if get {
        let pairs = gateway::query::pairs(query.as_deref());
        let empty = !pairs
            .iter()
            .any(|(k, _)| matches!(k.as_str(), "query" | "extensions" | "documentId"));
        if empty && wants_page && ep.graphiql {
            return Ok(graphiql());
        }
        match Operation::from_params(&pairs) {
            Ok(op) => (vec![op], false),
            Err(m) => return Ok(answer(media, bad("BAD_REQUEST", m))),
        }
    } else {
        let json_body = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim)
            .is_some_and(|m| m.eq_ignore_ascii_case("application/json"));
        if !json_body {
            let refused = Outcome::refused(
                "BAD_REQUEST",
                "send the operation as JSON (Content-Type: application/json)",
                Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
            );
            return Ok(answer(media, refused));
        }
        let bytes = crate::module::read_request(body, MAX_BODY, context.deadline).await?;
        let parsed: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(_) => {
                return Ok(answer(
                    media,
                    bad("BAD_REQUEST", "the body is not valid JSON"),
                ));
            }
        };
        match parsed {
            Value::Array(list) => {
                let Some(max) = ep.limits.batch else {
                    let m = "batched operations are not enabled on this endpoint";
                    return Ok(answer(media, bad("BATCHING_NOT_ENABLED", m)));
                };
                if list.is_empty() || list.len() > max {
                    let m = format!("send 1 to {max} operations in one batch");
                    return Ok(answer(media, bad("BATCH_TOO_LARGE", m)));
                }
                match list.iter().map(Operation::from_json).collect() {
                    Ok(ops) => (ops, true),
                    Err(m) => return Ok(answer(media, bad("BAD_REQUEST", m))),
                }
            }
            one => match Operation::from_json(&one) {
                Ok(op) => (vec![op], false),
                Err(m) => return Ok(answer(media, bad("BAD_REQUEST", m))),
            },
        }
    };
    let run = Run {
        ep,
        upstreams,
        outgoing: crate::call::Outgoing::of(&parts.headers, &context),
        client: &parts.headers,
        claims: context.identity.as_ref().map(|i| i.claims().clone()),
        deadline: context.deadline,
        get,
    };
    if batch {
        let outcomes = futures_util::future::join_all(ops.into_iter().map(|op| run.one(op))).await;
        let bodies: Vec<String> = outcomes.into_iter().map(|o| o.body).collect();
        let body = format!("[{}]", bodies.join(","));
        return Ok(respond(media, StatusCode::OK, body));
    }
    let op = ops.into_iter().next().unwrap_or_default();
    Ok(answer(media, run.one(op).await))
}

/// What executing needs from the request.
struct Run<'r> {
    ep: &'r Endpoint,
    upstreams: &'r Arc<Vec<Arc<Upstream>>>,
    outgoing: crate::call::Outgoing,
    client: &'r http::HeaderMap,
    claims: Option<Map<String, Value>>,
    deadline: tokio::time::Instant,
    get: bool,
}

impl Run<'_> {
    /// Checks and executes one operation.
    async fn one(&self, op: Operation) -> Outcome {
        let ep = self.ep;
        let hash = match op.hash() {
            Ok(h) => h,
            Err(m) => return bad("BAD_REQUEST", m),
        };
        let text = match ep.persisted.document(
            op.query.as_deref(),
            hash.as_deref(),
            op.document_id.as_deref(),
        ) {
            Ok(t) => t,
            Err(refusal) => {
                let (code, message) = refusal.describe();
                let status = (refusal == Refusal::NotFound).then_some(StatusCode::OK);
                return Outcome::refused(code, message, status);
            }
        };
        let limits = &ep.limits;
        if text.len() > limits.document {
            let m = format!("the document is larger than {} bytes", limits.document);
            return bad("DOCUMENT_TOO_LARGE", m);
        }
        if limits::tokens(&text, limits.tokens) > limits.tokens {
            let m = format!("the document has more than {} tokens", limits.tokens);
            return bad("TOO_MANY_TOKENS", m);
        }
        let mut request = async_graphql::Request::new(text.to_string());
        if let Some(name) = &op.name {
            request = request.operation_name(name);
        }
        if let Some(v) = op.variables {
            request = request.variables(Variables::from_json(v));
        }
        let doc = match request.parsed_query() {
            Ok(doc) => doc,
            Err(e) => return request_errors(vec![e], "GRAPHQL_PARSE_FAILED"),
        };
        let name = op.name.as_deref();
        if self.get && limits::is_mutation(doc, name) {
            let m = "mutations are sent with POST";
            return Outcome::refused("BAD_REQUEST", m, Some(StatusCode::METHOD_NOT_ALLOWED));
        }
        let aliases = limits::aliases(doc);
        if aliases > limits.aliases {
            let m = format!("{aliases} aliases; at most {} are allowed", limits.aliases);
            return bad("TOO_MANY_ALIASES", m);
        }
        // async-graphql's own checks walk every fragment at every spread: a short
        // document of nested spreads must be refused before they run.
        let fields = limits::expanded_fields(doc, name);
        if fields > ep.limits.complexity {
            let m = format!(
                "the operation selects {} fields; at most {} are allowed",
                if fields == usize::MAX {
                    "unboundedly many".to_string()
                } else {
                    fields.to_string()
                },
                ep.limits.complexity
            );
            return bad("GRAPHQL_VALIDATION_FAILED", m);
        }
        let roots = limits::root_fields(doc, name);
        if roots > limits.root_fields {
            let m = format!(
                "{roots} root fields; at most {} are allowed",
                limits.root_fields
            );
            return bad("TOO_MANY_ROOT_FIELDS", m);
        }
        let mutation = limits::is_mutation(doc, name);
        let exec = Exec::new(
            mutation,
            self.upstreams.clone(),
            ep.model.clone(),
            self.outgoing.clone(),
            self.client.clone(),
            self.claims.clone(),
            self.deadline,
        );
        let request = request
            .data(exec.clone())
            .data(super::exec::Prefetch::default());
        let response = ep.schema.execute(request).await;
        let mut data = response.data;
        let mut errors = response.errors;
        exec.finish(&mut data, &mut errors);
        // Nothing executed: every error is about the document (validation, depth,
        // complexity, variables).
        let nothing = matches!(data, async_graphql::Value::Null);
        if nothing && !errors.is_empty() && errors.iter().all(|e| e.path.is_empty()) {
            return request_errors(errors, "GRAPHQL_VALIDATION_FAILED");
        }
        if op.query.is_some() {
            ep.persisted.remember(&text, hash.as_deref());
        }
        #[derive(serde::Serialize)]
        struct Body<'b> {
            #[serde(skip_serializing_if = "<[ServerError]>::is_empty")]
            errors: &'b [ServerError],
            data: &'b async_graphql::Value,
        }
        let body = Body {
            errors: &errors,
            data: &data,
        };
        Outcome {
            body: serde_json::to_string(&body).unwrap_or_default(),
            request_error: false,
            status: None,
        }
    }
}

/// Errors found before execution, each with `extensions.code` (`code` unless it has one).
fn request_errors(mut errors: Vec<ServerError>, code: &str) -> Outcome {
    for e in &mut errors {
        let ext = e.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            ext.set("code", code);
        }
    }
    Outcome {
        body: json!({ "errors": serde_json::to_value(&errors).unwrap_or_default() }).to_string(),
        request_error: true,
        status: None,
    }
}

/// The HTTP answer for one operation's outcome.
fn answer(media: Media, outcome: Outcome) -> Response<ResponseBody> {
    let status = outcome
        .status
        .unwrap_or(match (media, outcome.request_error) {
            (Media::GraphqlResponse, true) => StatusCode::BAD_REQUEST,
            _ => StatusCode::OK,
        });
    let mut res = respond(media, status, outcome.body);
    if status == StatusCode::METHOD_NOT_ALLOWED {
        res.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
    }
    res
}

fn respond(media: Media, status: StatusCode, body: String) -> Response<ResponseBody> {
    let mut res = Response::new(ResponseBody::full(body));
    *res.status_mut() = status;
    let ct = match media {
        Media::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
        Media::Json => "application/json",
    };
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    res
}

/// The GraphiQL page (scripts from a CDN; it posts to the page's own URL).
fn graphiql() -> Response<ResponseBody> {
    let mut res = Response::new(ResponseBody::full(GRAPHIQL));
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    res
}

const GRAPHIQL: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>GraphiQL · Portico</title>
<style>body { margin: 0; height: 100vh; } #graphiql { height: 100vh; }</style>
<link rel="stylesheet" href="https://unpkg.com/graphiql@3/graphiql.min.css">
</head>
<body>
<div id="graphiql">Loading…</div>
<script crossorigin src="https://unpkg.com/react@18/umd/react.production.min.js"></script>
<script crossorigin src="https://unpkg.com/react-dom@18/umd/react-dom.production.min.js"></script>
<script crossorigin src="https://unpkg.com/graphiql@3/graphiql.min.js"></script>
<script>
  const fetcher = GraphiQL.createFetcher({ url: window.location.pathname });
  ReactDOM.createRoot(document.getElementById("graphiql"))
    .render(React.createElement(GraphiQL, { fetcher }));
</script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_the_media_type() {
        let mut h = http::HeaderMap::new();
        assert_eq!(negotiate(&h), (Media::Json, false));
        h.insert(
            ACCEPT,
            HeaderValue::from_static("application/graphql-response+json, application/json;q=0.9"),
        );
        assert_eq!(negotiate(&h), (Media::GraphqlResponse, false));
        h.insert(
            ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        assert_eq!(negotiate(&h), (Media::Json, true));
        h.insert(
            ACCEPT,
            HeaderValue::from_static("application/graphql-response+json;q=0, application/json"),
        );
        assert_eq!(negotiate(&h), (Media::Json, false));
    }
}
