//! Route path patterns: `/orders/{id}`, `/static/{*rest}`.

use std::fmt;

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Literal text (already validated; never contains `/`).
    Literal(String),
    /// `{name}`: exactly one segment.
    Param(String),
    /// `{*name}`: the rest of the path, possibly empty; always last.
    Rest(String),
}

/// A parsed path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    segments: Vec<Segment>,
    trailing_slash: bool,
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@%".contains(c)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

impl Pattern {
    /// Parses a pattern. It must start with `/`, have no empty, `.` or `..` segments
    /// (a trailing `/` is allowed), and use `{name}` / `{*name}` only as whole segments.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if !text.starts_with('/') {
            return Err(format!("path `{text}` must start with `/`"));
        }
        let body = &text[1..];
        let trailing_slash = body.ends_with('/') && !body.is_empty();
        let body = body.strip_suffix('/').unwrap_or(body);
        let mut segments = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        if !body.is_empty() {
            let parts: Vec<&str> = body.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                let last = i + 1 == parts.len();
                let seg = if let Some(inner) =
                    part.strip_prefix('{').and_then(|p| p.strip_suffix('}'))
                {
                    let (rest, name) = match inner.strip_prefix('*') {
                        Some(n) => (true, n),
                        None => (false, inner),
                    };
                    if !valid_name(name) {
                        return Err(format!("invalid parameter name `{name}` in path `{text}`"));
                    }
                    if names.contains(&name) {
                        return Err(format!("parameter `{name}` appears twice in path `{text}`"));
                    }
                    names.push(name);
                    if rest {
                        if !last || trailing_slash {
                            return Err(format!(
                                "`{{*{name}}}` must be the last segment of `{text}`"
                            ));
                        }
                        Segment::Rest(name.to_string())
                    } else {
                        Segment::Param(name.to_string())
                    }
                } else {
                    if part.is_empty() {
                        return Err(format!("path `{text}` has an empty segment (`//`)"));
                    }
                    if *part == "." || *part == ".." {
                        return Err(format!(
                            "path `{text}` may not contain `.` or `..` segments"
                        ));
                    }
                    if part.contains(['{', '}']) {
                        return Err(format!(
                            "in `{text}`, a parameter must be a whole segment: `{{name}}` or `{{*name}}`"
                        ));
                    }
                    if let Some(c) = part.chars().find(|c| !is_path_char(*c)) {
                        return Err(format!(
                            "path `{text}` contains `{c}`, which is not allowed in a path"
                        ));
                    }
                    Segment::Literal(part.to_string())
                };
                segments.push(seg);
            }
        }
        Ok(Pattern {
            text: text.to_string(),
            segments,
            trailing_slash,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Names of `{param}` and `{*rest}` segments.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) | Segment::Rest(n) => Some(n.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Ends with `{*rest}`.
    pub fn has_rest(&self) -> bool {
        matches!(self.segments.last(), Some(Segment::Rest(_)))
    }

    /// The literal part before the first parameter, e.g. `/web/orders` for
    /// `/web/orders/{id}` (the whole path when there is no parameter).
    pub fn static_prefix(&self) -> String {
        let mut out = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => {
                    out.push('/');
                    out.push_str(l);
                }
                _ => break,
            }
        }
        if out.is_empty() { "/".into() } else { out }
    }

    /// `prefix` + this pattern (`/web` + `/orders/{id}`); a `/` prefix adds nothing.
    pub fn under(&self, prefix: &str) -> Result<Pattern, String> {
        let prefix = prefix.trim_end_matches('/');
        Pattern::parse(&format!("{prefix}{}", self.text))
    }

    /// Fills in the parameters from `params` (values are copied as matched: still
    /// percent-encoded) and writes the path to `out`.
    pub fn render(&self, params: &[(&str, &str)], out: &mut String) {
        let value = |name: &str| {
            params
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .unwrap_or("")
        };
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => {
                    out.push('/');
                    out.push_str(l);
                }
                Segment::Param(n) => {
                    out.push('/');
                    out.push_str(value(n));
                }
                Segment::Rest(n) => {
                    let v = value(n);
                    out.push('/');
                    out.push_str(v);
                }
            }
        }
        if self.trailing_slash || out.is_empty() {
            out.push('/');
        }
    }

    /// The forms to register in the router: the pattern itself, plus for a trailing
    /// `{*rest}` the forms where the rest is empty (`/web/` and `/web`).
    pub(crate) fn router_forms(&self) -> (String, Vec<String>) {
        let main = self.text.clone();
        let mut implied = Vec::new();
        if self.has_rest() {
            let base = self.text.rsplit_once('/').map(|(b, _)| b).unwrap_or("");
            implied.push(format!("{base}/"));
            if !base.is_empty() {
                implied.push(base.to_string());
            }
        }
        (main, implied)
    }
}
