//! A YAML document as a tree that remembers the line of every key and value.
//!
//! The loader parses each file into a [`Node`] tree, expands `${NAME}` in scalar values,
//! and turns the tree into a `serde_json::Value` for typed deserialization. Errors found
//! later (by serde or by validation) carry a key path like `routes[2].proxy.backend`,
//! which [`Node::line_of`] turns back into a line number.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One YAML node with the line (1-based) where it starts.
#[derive(Clone, Debug)]
pub struct Node {
    /// 1-based line of the node.
    pub line: usize,
    /// What the node holds.
    pub kind: Kind,
}

/// The shapes a YAML node can take.
#[derive(Clone, Debug)]
pub enum Kind {
    /// A scalar; `plain` is false when it was quoted or a block scalar (always a string).
    Scalar {
        /// The scalar's text.
        value: String,
        /// Unquoted: subject to typing (numbers, booleans, null).
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order: (key, line of the key, value).
    Map(Vec<(String, usize, Node)>),
}

/// An error found while reading YAML, with its line.
#[derive(Debug, Clone)]
pub struct YamlError {
    /// 1-based line.
    pub line: usize,
    /// Key path where it happened (may be empty).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Parses one YAML document. An empty document is an empty mapping.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| {
        let line = e.marker().line();
        let mut message = format!("invalid YAML: {}", e.info());
        // `{ path: /orders/{id} }` is the commonest slip: YAML ends a plain scalar at `{`
        // inside a flow mapping.
        let text_line = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
        if e.info().contains("flow") && text_line.matches('{').count() > 1 {
            message.push_str(
                " (inside `{ ... }`, quote values that contain braces: path: \"/orders/{id}\")",
            );
        }
        YamlError {
            line,
            key: String::new(),
            message,
        }
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.root.unwrap_or(Node {
        line: 1,
        kind: Kind::Map(Vec::new()),
    }))
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    error: Option<YamlError>,
}

enum Frame {
    Seq {
        line: usize,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        line: usize,
        anchor: usize,
        entries: Vec<(String, usize, Node)>,
        key: Option<(String, usize)>,
    },
}

impl Builder {
    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => match node.kind {
                    Kind::Scalar { value, .. } => {
                        if entries.iter().any(|(k, _, _)| *k == value) && self.error.is_none() {
                            self.error = Some(YamlError {
                                line: node.line,
                                key: value.clone(),
                                message: format!("duplicate key `{value}`"),
                            });
                        }
                        *key = Some((value, node.line));
                    }
                    _ => {
                        if self.error.is_none() {
                            self.error = Some(YamlError {
                                line: node.line,
                                key: String::new(),
                                message: "mapping keys must be plain strings".into(),
                            });
                        }
                        *key = Some((String::new(), node.line));
                    }
                },
                Some((k, kline)) => entries.push((k, kline, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line().max(1);
        match ev {
            Event::Scalar(value, style, anchor, _tag) => {
                let plain = matches!(style, TScalarStyle::Plain);
                self.push_value(
                    Node {
                        line,
                        kind: Kind::Scalar { value, plain },
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                line,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                line,
                anchor,
                entries: Vec::new(),
                key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq {
                        line,
                        anchor,
                        items,
                    }) => (
                        Node {
                            line,
                            kind: Kind::Seq(items),
                        },
                        anchor,
                    ),
                    Some(Frame::Map {
                        line,
                        anchor,
                        entries,
                        ..
                    }) => (
                        Node {
                            line,
                            kind: Kind::Map(entries),
                        },
                        anchor,
                    ),
                    None => return,
                };
                self.push_value(node, anchor);
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().unwrap_or(Node {
                    line,
                    kind: Kind::Scalar {
                        value: String::new(),
                        plain: true,
                    },
                });
                self.push_value(node, 0);
            }
            _ => {}
        }
    }
}

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Splits `routes[2].proxy.backend` into segments.
pub fn split_path(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(Seg::Key(rest[..i].to_string()));
            }
            rest = &rest[i..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let end = stripped.find(']').unwrap_or(stripped.len());
                match stripped[..end].parse() {
                    Ok(n) => out.push(Seg::Index(n)),
                    Err(_) => out.push(Seg::Key(stripped[..end].to_string())),
                }
                rest = stripped.get(end + 1..).unwrap_or("");
            }
        } else {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

impl Node {
    /// The line of the deepest node that exists along `path` (a key's own line for map
    /// entries). A path into something missing gives the line of its nearest parent.
    pub fn line_of(&self, path: &str) -> usize {
        let mut node = self;
        let mut line = self.line;
        for seg in split_path(path) {
            match (&node.kind, seg) {
                (Kind::Map(entries), Seg::Key(k)) => {
                    match entries.iter().find(|(key, _, _)| *key == k) {
                        Some((_, kline, child)) => {
                            line = *kline;
                            node = child;
                        }
                        None => return line,
                    }
                }
                (Kind::Seq(items), Seg::Index(i)) => match items.get(i) {
                    Some(child) => {
                        line = child.line;
                        node = child;
                    }
                    None => return line,
                },
                _ => return line,
            }
        }
        line
    }

    /// Expands `${NAME}` (and `${NAME:-default}`) in every scalar value, using `lookup`.
    /// Every unset variable is reported.
    pub fn expand_vars(
        &mut self,
        lookup: &dyn Fn(&str) -> Option<String>,
        path: &mut String,
        errors: &mut Vec<YamlError>,
    ) {
        let line = self.line;
        match &mut self.kind {
            Kind::Scalar { value, .. } => {
                if value.contains("${") {
                    match expand(value, lookup) {
                        Ok(v) => *value = v,
                        Err(msg) => errors.push(YamlError {
                            line,
                            key: path.clone(),
                            message: msg,
                        }),
                    }
                }
            }
            Kind::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    item.expand_vars(lookup, path, errors);
                    path.truncate(len);
                }
            }
            Kind::Map(entries) => {
                for (k, _, v) in entries.iter_mut() {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    v.expand_vars(lookup, path, errors);
                    path.truncate(len);
                }
            }
        }
    }

    /// The tree as JSON. Plain scalars are typed as in YAML 1.2's core schema (null,
    /// booleans, integers, floats); quoted scalars are always strings.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Scalar {
                value,
                plain: false,
            } => Value::String(value.clone()),
            Kind::Scalar { value, plain: true } => type_plain(value),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, _, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

fn type_plain(v: &str) -> serde_json::Value {
    use serde_json::Value;
    match v {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let looks_numeric = v
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        && v.bytes().any(|b| b.is_ascii_digit());
    if looks_numeric {
        if let Ok(i) = v.parse::<i64>() {
            return Value::from(i);
        }
        if let Ok(u) = v.parse::<u64>() {
            return Value::from(u);
        }
        if let Ok(f) = v.parse::<f64>()
            && let Some(n) = serde_json::Number::from_f64(f)
        {
            return Value::Number(n);
        }
    }
    Value::String(v.to_string())
}

/// Expands `${NAME}` and `${NAME:-default}` in one string.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut missing = Vec::new();
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unterminated `${{` in `{text}`"));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let valid = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !valid {
            return Err(format!("invalid variable name `{name}` in `${{{inner}}}`"));
        }
        match (lookup(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => missing.push(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "environment variable{} {} not set",
            if missing.len() > 1 { "s" } else { "" },
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_paths() {
        let doc = "team: web\nprefix: /web\nroutes:\n  - id: a\n    path: /x\n  - id: b\n    proxy:\n      backend: orders\n";
        let node = parse(doc).unwrap();
        assert_eq!(node.line_of("prefix"), 2);
        assert_eq!(node.line_of("routes[1]"), 6);
        assert_eq!(node.line_of("routes[1].proxy.backend"), 8);
        assert_eq!(node.line_of("routes[1].nope"), 6);
        let json = node.to_json();
        assert_eq!(json["routes"][1]["proxy"]["backend"], "orders");
    }

    #[test]
    fn typing_of_scalars() {
        let node = parse("a: 2\nb: '2'\nc: true\nd: 1.5\ne: 127.0.0.1:80\nf: ~\n").unwrap();
        let j = node.to_json();
        assert_eq!(j["a"], 2);
        assert_eq!(j["b"], "2");
        assert_eq!(j["c"], true);
        assert_eq!(j["d"], 1.5);
        assert_eq!(j["e"], "127.0.0.1:80");
        assert!(j["f"].is_null());
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.message.contains("duplicate key"));
    }

    #[test]
    fn expansion() {
        let lookup = |n: &str| (n == "HOST").then(|| "h".to_string());
        assert_eq!(expand("http://${HOST}:1", &lookup).unwrap(), "http://h:1");
        assert_eq!(expand("${NOPE:-d}", &lookup).unwrap(), "d");
        assert!(expand("${NOPE}", &lookup).unwrap_err().contains("`NOPE`"));
        assert!(expand("${1X}", &lookup).is_err());
    }
}
