//! Templates of backend calls (aggregate calls, GraphQL `@rest` fields): `{id}`,
//! `{query.x}`, `{header.x}`, `{claims.x}` and `{root.a.b}` (a member of a named JSON value:
//! an earlier call's answer, or a field's `args` and `parent`; `*` fans out over an array),
//! in paths and in JSON bodies.

use std::collections::HashMap;

use http::HeaderMap;
use serde_json::Value;

/// One step into a call's JSON answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
    /// Every element of an array (fan-out).
    Each,
}

/// What a `{...}` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Var {
    Param(String),
    Query(String),
    Header(http::HeaderName),
    Claim(String),
    Call { call: String, path: Vec<Step> },
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Var(Var, String),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

/// What templates may name, checked at load.
pub(crate) struct Names<'a> {
    pub(crate) params: &'a [String],
    pub(crate) calls: &'a [String],
    pub(crate) authenticated: bool,
    /// Whether `{query.x}` may be used.
    pub(crate) query: bool,
}

impl Template {
    /// Parses `text`, checking every name against `names`.
    pub(crate) fn parse(text: &str, names: &Names<'_>) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("`{text}`: a `{{` is not closed"))?;
            let name = after[..close].trim();
            parts.push(Part::Var(parse_var(name, names)?, name.to_string()));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("`{text}`: a `}}` has no `{{`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        let each = parts
            .iter()
            .filter(
                |p| matches!(p, Part::Var(Var::Call { path, .. }, _) if path.contains(&Step::Each)),
            )
            .count();
        if each > 1 {
            return Err(format!("`{text}`: at most one `*` (fan-out) per template"));
        }
        Ok(Template { parts })
    }

    /// The calls this template waits for.
    pub(crate) fn calls(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(Var::Call { call, .. }, _) => Some(call.as_str()),
            _ => None,
        })
    }

    /// The variables, in order.
    pub(crate) fn vars(&self) -> impl Iterator<Item = &Var> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v, _) => Some(v),
            Part::Text(_) => None,
        })
    }

    /// Whether a `*` fans out.
    pub(crate) fn fans_out(&self) -> bool {
        self.parts.iter().any(
            |p| matches!(p, Part::Var(Var::Call { path, .. }, _) if path.contains(&Step::Each)),
        )
    }

    /// When the template is exactly one variable: it.
    pub(crate) fn single(&self) -> Option<&Var> {
        match self.parts.as_slice() {
            [Part::Var(v, _)] => Some(v),
            _ => None,
        }
    }

    /// Renders the template: one string per fan-out element (one string without a `*`;
    /// with `join`, the elements are joined by commas into one). Substituted values are
    /// percent-encoded when `encode` is set.
    pub(crate) fn render(
        &self,
        scope: &Scope<'_>,
        encode: bool,
        join: bool,
    ) -> Result<Vec<String>, String> {
        // The fan-out values (if any) first.
        let mut each: Option<Vec<String>> = None;
        for p in &self.parts {
            if let Part::Var(v @ Var::Call { path, .. }, name) = p
                && path.contains(&Step::Each)
            {
                let values = scope.many(v).ok_or_else(|| missing(name))?;
                let mut texts = Vec::with_capacity(values.len());
                for value in values {
                    let text = text_of(&value).ok_or_else(|| missing(name))?;
                    if encode && dot_segment(&text) {
                        return Err(dots(name));
                    }
                    texts.push(text);
                }
                each = Some(texts);
            }
        }
        let fill = |element: Option<&str>| -> Result<String, String> {
            let mut out = String::new();
            for p in &self.parts {
                match p {
                    Part::Text(t) => out.push_str(t),
                    Part::Var(Var::Call { path, .. }, name) if path.contains(&Step::Each) => {
                        let e = element.ok_or_else(|| missing(name))?;
                        out.push_str(e);
                    }
                    Part::Var(v, name) => {
                        let value = scope.one(v).ok_or_else(|| missing(name))?;
                        let text = text_of(&value).ok_or_else(|| missing(name))?;
                        if encode && dot_segment(&text) {
                            return Err(dots(name));
                        }
                        push(&mut out, &text, encode);
                    }
                }
            }
            Ok(out)
        };
        match each {
            None => Ok(vec![fill(None)?]),
            Some(values) if join => {
                let joined = values
                    .iter()
                    .map(|v| encoded(v, encode))
                    .collect::<Vec<_>>()
                    .join(",");
                // Already encoded: substituted as is.
                Ok(vec![fill(Some(&joined))?])
            }
            Some(values) => values
                .iter()
                .map(|v| fill(Some(&encoded(v, encode))))
                .collect(),
        }
    }

    /// The number of fan-out elements this template would produce.
    pub(crate) fn fan_out_len(&self, scope: &Scope<'_>) -> Option<usize> {
        self.parts.iter().find_map(|p| match p {
            Part::Var(v @ Var::Call { path, .. }, _) if path.contains(&Step::Each) => {
                scope.many(v).map(|m| m.len())
            }
            _ => None,
        })
    }
}

fn missing(name: &str) -> String {
    format!("`{name}` has no value")
}

fn dots(name: &str) -> String {
    format!("`{name}` as a path segment (`.` or `..`), which is never sent")
}

fn push(out: &mut String, text: &str, encode: bool) {
    out.push_str(&encoded(text, encode));
}

fn encoded(text: &str, encode: bool) -> String {
    if !encode {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A value that would be a dot segment in a path (`.`, `..`; also encoded, which many
/// servers decode before resolving) is refused rather than sent.
fn dot_segment(text: &str) -> bool {
    matches!(text, "." | "..")
}

/// The value `path` (without `*`) leads to from `node`.
pub(crate) fn walk<'v>(mut node: &'v Value, path: &[Step]) -> Option<&'v Value> {
    for step in path {
        node = match step {
            Step::Key(k) => node.get(k)?,
            Step::Index(i) => node.get(*i)?,
            Step::Each => return None,
        };
    }
    Some(node)
}

/// A scalar as text (strings as they are, numbers and booleans as JSON).
pub(crate) fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_var(name: &str, names: &Names<'_>) -> Result<Var, String> {
    let mut segs = name.split('.');
    let first = segs.next().unwrap_or_default();
    let rest: Vec<&str> = segs.collect();
    let one = |what: &str| -> Result<String, String> {
        match rest.as_slice() {
            [n] if !n.is_empty() => Ok((*n).to_string()),
            _ => Err(format!("`{{{name}}}`: write {what}.NAME")),
        }
    };
    match first {
        "query" if names.query => Ok(Var::Query(one("query")?)),
        "header" => {
            let n = one("header")?;
            http::HeaderName::from_bytes(n.as_bytes())
                .map(Var::Header)
                .map_err(|_| format!("`{{{name}}}`: `{n}` is not a header name"))
        }
        "claims" => {
            if !names.authenticated {
                return Err(format!(
                    "`{{{name}}}` needs an authenticated route (set `auth` to a provider)"
                ));
            }
            Ok(Var::Claim(one("claims")?))
        }
        call if names.calls.iter().any(|c| c == call) => {
            let path = rest
                .iter()
                .map(|s| match *s {
                    "*" => Ok(Step::Each),
                    "" => Err(format!("`{{{name}}}`: empty step")),
                    s => Ok(s
                        .parse::<usize>()
                        .map(Step::Index)
                        .unwrap_or_else(|_| Step::Key(s.to_string()))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Var::Call {
                call: call.to_string(),
                path,
            })
        }
        param if rest.is_empty() && names.params.iter().any(|p| p == param) => {
            Ok(Var::Param(param.to_string()))
        }
        _ if names.params.is_empty() && !names.query => Err(format!(
            "`{{{name}}}` names nothing: use {}, header.NAME or claims.NAME",
            names
                .calls
                .iter()
                .map(|c| format!("{c}.NAME"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => Err(format!(
            "`{{{name}}}` is neither a path parameter ({}), a call ({}), nor query./header./claims.",
            list(names.params),
            list(names.calls)
        )),
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// What templates read at run time.
pub(crate) struct Scope<'a> {
    pub(crate) params: &'a [(String, String)],
    pub(crate) query: &'a [(String, String)],
    pub(crate) headers: &'a HeaderMap,
    pub(crate) claims: Option<&'a serde_json::Map<String, Value>>,
    /// Raw answers of finished calls.
    pub(crate) answers: &'a HashMap<String, Value>,
}

impl Scope<'_> {
    /// The value of a variable without `*`.
    pub(crate) fn one(&self, var: &Var) -> Option<Value> {
        match var {
            Var::Param(p) => self
                .params
                .iter()
                .find(|(k, _)| k == p)
                .map(|(_, v)| Value::String(v.clone())),
            Var::Query(q) => self
                .query
                .iter()
                .find(|(k, _)| k == q)
                .map(|(_, v)| Value::String(v.clone())),
            Var::Header(h) => self
                .headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(|v| Value::String(v.to_string())),
            Var::Claim(c) => self.claims.and_then(|m| m.get(c)).cloned(),
            Var::Call { call, path } => walk(self.answers.get(call)?, path).cloned(),
        }
    }

    /// The values of a variable with one `*`, in order.
    pub(crate) fn many(&self, var: &Var) -> Option<Vec<Value>> {
        let Var::Call { call, path } = var else {
            return self.one(var).map(|v| vec![v]);
        };
        let mut nodes = vec![self.answers.get(call)?.clone()];
        for step in path {
            let mut next = Vec::new();
            for node in &nodes {
                match step {
                    Step::Key(k) => next.extend(node.get(k).cloned()),
                    Step::Index(i) => next.extend(node.get(*i).cloned()),
                    Step::Each => next.extend(node.as_array()?.iter().cloned()),
                }
            }
            nodes = next;
        }
        Some(nodes)
    }
}

/// A JSON body with templates in its strings.
#[derive(Debug, Clone)]
pub(crate) enum BodyTemplate {
    /// A string that is exactly one variable: replaced by the value, with its type.
    Value(Template),
    /// A string with text around variables.
    Text(Template),
    Array(Vec<BodyTemplate>),
    Object(Vec<(String, BodyTemplate)>),
    Literal(Value),
}

impl BodyTemplate {
    /// Its templates.
    pub(crate) fn templates(&self) -> Vec<&Template> {
        match self {
            BodyTemplate::Value(t) | BodyTemplate::Text(t) => vec![t],
            BodyTemplate::Array(items) => items.iter().flat_map(BodyTemplate::templates).collect(),
            BodyTemplate::Object(members) => {
                members.iter().flat_map(|(_, v)| v.templates()).collect()
            }
            BodyTemplate::Literal(_) => Vec::new(),
        }
    }

    /// The named values (calls) it reads.
    pub(crate) fn calls(&self) -> Vec<&str> {
        match self {
            BodyTemplate::Value(t) | BodyTemplate::Text(t) => t.calls().collect(),
            BodyTemplate::Array(items) => items.iter().flat_map(BodyTemplate::calls).collect(),
            BodyTemplate::Object(members) => members.iter().flat_map(|(_, v)| v.calls()).collect(),
            BodyTemplate::Literal(_) => Vec::new(),
        }
    }
}

/// A JSON body with templates in its strings.
pub(crate) fn body_template(value: &Value, names: &Names<'_>) -> Result<BodyTemplate, String> {
    Ok(match value {
        Value::String(s) if s.contains('{') => {
            let t = Template::parse(s, names)?;
            if t.fans_out() {
                return Err(format!("`{s}`: `*` (fan-out) is for paths, not bodies"));
            }
            if t.single().is_some() {
                BodyTemplate::Value(t)
            } else {
                BodyTemplate::Text(t)
            }
        }
        Value::Array(items) => BodyTemplate::Array(
            items
                .iter()
                .map(|v| body_template(v, names))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => BodyTemplate::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), body_template(v, names)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => BodyTemplate::Literal(other.clone()),
    })
}

/// Renders a body template into JSON (a lone variable keeps its type).
pub(crate) fn render_body(t: &BodyTemplate, scope: &Scope<'_>) -> Result<Value, String> {
    Ok(match t {
        BodyTemplate::Value(tpl) => {
            let var = tpl.single().ok_or_else(|| "a template".to_string())?;
            scope
                .one(var)
                .ok_or_else(|| "a value in the body".to_string())?
        }
        BodyTemplate::Text(tpl) => {
            Value::String(tpl.render(scope, false, false)?.pop().unwrap_or_default())
        }
        BodyTemplate::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| render_body(i, scope))
                .collect::<Result<_, _>>()?,
        ),
        BodyTemplate::Object(members) => Value::Object(
            members
                .iter()
                .map(|(k, v)| Ok((k.clone(), render_body(v, scope)?)))
                .collect::<Result<_, String>>()?,
        ),
        BodyTemplate::Literal(v) => v.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names<'a>(params: &'a [String], calls: &'a [String]) -> Names<'a> {
        Names {
            params,
            calls,
            authenticated: false,
            query: true,
        }
    }

    #[test]
    fn renders_params_calls_and_fan_out_with_encoding() {
        let params = vec!["id".to_string()];
        let calls = vec!["order".to_string()];
        let n = names(&params, &calls);
        let mut answers = HashMap::new();
        answers.insert(
            "order".to_string(),
            json!({"customer_id": 7, "items": [{"sku": "a/b"}, {"sku": "c"}]}),
        );
        let headers = HeaderMap::new();
        let p = vec![("id".to_string(), "../x".to_string())];
        let q = gateway::query::pairs(Some("q=caf%C3%A9&x"));
        let scope = Scope {
            params: &p,
            query: &q,
            headers: &headers,
            claims: None,
            answers: &answers,
        };
        let t = Template::parse("/o/{id}/c/{order.customer_id}?q={query.q}", &n).unwrap();
        assert_eq!(
            t.render(&scope, true, false).unwrap(),
            vec!["/o/..%2Fx/c/7?q=caf%C3%A9"]
        );
        let t = Template::parse("/items/{order.items.*.sku}", &n).unwrap();
        assert!(t.fans_out());
        assert_eq!(
            t.render(&scope, true, false).unwrap(),
            vec!["/items/a%2Fb", "/items/c"]
        );
        assert_eq!(
            t.render(&scope, true, true).unwrap(),
            vec!["/items/a%2Fb,c"]
        );
        let t = Template::parse("/{order.missing}", &n).unwrap();
        assert!(t.render(&scope, true, false).is_err());
        let t = Template::parse("/{id}", &n).unwrap();
        let dot_dot = vec![("id".to_string(), "..".to_string())];
        let scope = Scope {
            params: &dot_dot,
            ..scope
        };
        assert!(
            t.render(&scope, true, false)
                .unwrap_err()
                .contains("never sent")
        );
    }

    #[test]
    fn unknown_names_and_claims_without_auth_are_errors() {
        let params = vec!["id".to_string()];
        let calls = vec!["order".to_string()];
        let n = names(&params, &calls);
        assert!(
            Template::parse("/{nope}", &n)
                .unwrap_err()
                .contains("neither")
        );
        assert!(
            Template::parse("/{claims.sub}", &n)
                .unwrap_err()
                .contains("authenticated")
        );
        assert!(Template::parse("/{id", &n).is_err());
        assert!(Template::parse("/{order.a.*}/{order.b.*}", &n).is_err());
    }
}
