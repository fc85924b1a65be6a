//! Reading the configuration: a directory (or in-memory sources) → typed raw files.
//!
//! Every file is parsed on its own, `${NAME}` is expanded, and typed deserialization is
//! repeated after each error with the offending entry removed, so one run reports every
//! error it can find instead of stopping at the first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::Diagnostic;
use super::yaml::{self, Node, Seg};

/// One configuration file's text and its display name (`routes/web.yaml`).
#[derive(Debug, Clone)]
pub struct Source {
    /// Path relative to the config directory.
    pub name: String,
    /// The file's contents.
    pub text: String,
}

/// The files of one configuration.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Directory that relative paths in the config (TLS files) are resolved against.
    pub dir: PathBuf,
    /// `gateway.yaml`.
    pub gateway: Source,
    /// `routes/*.yaml`, sorted by name.
    pub routes: Vec<Source>,
    /// Other files the config names (a GraphQL schema beside its route file), given in
    /// memory (the demo's embedded files); files not given here are read from `dir`.
    pub files: Vec<Source>,
}

impl Sources {
    /// Reads `name`, a file beside the config file `beside` (`routes/web.yaml`): from
    /// [`Sources::files`], else from the directory. Only plain relative names are
    /// allowed (no absolute paths, no `..`).
    pub fn read_beside(&self, beside: &str, name: &str) -> Result<String, String> {
        let p = Path::new(name);
        if name.is_empty()
            || p.is_absolute()
            || p.components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(format!(
                "`{name}`: name a file beside {beside} (no absolute paths, no `..`)"
            ));
        }
        let rel = Path::new(beside).parent().unwrap_or(Path::new("")).join(p);
        let shown = rel.to_string_lossy().replace('\\', "/");
        if let Some(f) = self.files.iter().find(|f| f.name == shown) {
            return Ok(f.text.clone());
        }
        let path = self.dir.join(&rel);
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    }

    /// Reads `DIR/gateway.yaml` and every `DIR/routes/*.yaml` (and `*.yml`).
    pub fn read_dir(dir: &Path) -> Result<Sources, Vec<Diagnostic>> {
        let whole = |name: &str, message: String| Diagnostic {
            file: name.to_string(),
            line: 0,
            key: String::new(),
            message,
        };
        let gateway = match std::fs::read_to_string(dir.join("gateway.yaml")) {
            Ok(text) => Source {
                name: "gateway.yaml".into(),
                text,
            },
            Err(e) => {
                return Err(vec![whole(
                    "gateway.yaml",
                    format!("cannot read {}: {e}", dir.join("gateway.yaml").display()),
                )]);
            }
        };
        let mut routes = Vec::new();
        let mut errors = Vec::new();
        let routes_dir = dir.join("routes");
        if routes_dir.is_dir() {
            let entries = std::fs::read_dir(&routes_dir)
                .map_err(|e| vec![whole("routes/", format!("cannot list routes/: {e}"))])?;
            for entry in entries.flatten() {
                let path = entry.path();
                let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
                if !is_yaml || !path.is_file() {
                    continue;
                }
                let name = format!("routes/{}", entry.file_name().to_string_lossy());
                match std::fs::read_to_string(&path) {
                    Ok(text) => routes.push(Source { name, text }),
                    Err(e) => errors.push(whole(&name, format!("cannot read: {e}"))),
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        routes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Sources {
            dir: dir.to_path_buf(),
            gateway,
            routes,
            files: Vec::new(),
        })
    }
}

/// A parsed file: its typed contents (if they could be read at all) and its YAML tree for
/// line lookups.
#[derive(Debug)]
pub(super) struct Parsed<T> {
    /// Display name of the file.
    pub name: String,
    /// The YAML tree (for line numbers).
    pub tree: Node,
    /// The typed contents; entries that failed to deserialize were dropped and reported.
    pub value: Option<T>,
    /// Top-level entries dropped because they were invalid (`backends.orders`, `routes[2]`).
    pub dropped: Vec<String>,
    /// For top-level lists that lost entries: the original index of each kept entry.
    pub kept: HashMap<String, Vec<usize>>,
}

impl<T> Parsed<T> {
    /// The index an entry of the top-level list `key` had in the file.
    pub(super) fn original_index(&self, key: &str, i: usize) -> usize {
        self.kept
            .get(key)
            .and_then(|k| k.get(i).copied())
            .unwrap_or(i)
    }

    /// A diagnostic for `key` in this file, with the key's line.
    pub(super) fn diag(&self, key: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        let key = key.into();
        Diagnostic {
            file: self.name.clone(),
            line: self.tree.line_of(&key),
            message: message.into(),
            key,
        }
    }
}

/// Parses and types one file, collecting every error into `errors`.
pub(super) fn parse_file<T: DeserializeOwned>(
    source: &Source,
    vars: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<Diagnostic>,
) -> Parsed<T> {
    let mut tree = match yaml::parse(&source.text) {
        Ok(tree) => tree,
        Err(e) => {
            errors.push(Diagnostic {
                file: source.name.clone(),
                line: e.line,
                key: e.key,
                message: e.message,
            });
            return Parsed {
                name: source.name.clone(),
                tree: Node {
                    line: 1,
                    kind: yaml::Kind::Map(Vec::new()),
                },
                value: None,
                dropped: Vec::new(),
                kept: HashMap::new(),
            };
        }
    };
    let mut var_errors = Vec::new();
    tree.expand_vars(vars, &mut String::new(), &mut var_errors);
    let mut parsed = Parsed {
        name: source.name.clone(),
        tree,
        value: None,
        dropped: Vec::new(),
        kept: HashMap::new(),
    };
    for e in var_errors {
        errors.push(Diagnostic {
            file: source.name.clone(),
            line: e.line,
            key: e.key,
            message: e.message,
        });
    }
    if !matches!(parsed.tree.kind, yaml::Kind::Map(_)) {
        errors.push(parsed.diag("", "the file must be a YAML mapping"));
        return parsed;
    }
    let mut json = parsed.tree.to_json();
    // Deserialize; after each error drop the entry that holds it and try again, so that
    // every independent error of the file is reported in one run.
    for _ in 0..64 {
        match serde_path_to_error::deserialize::<_, T>(&json) {
            Ok(v) => {
                parsed.value = Some(v);
                return parsed;
            }
            Err(err) => {
                let path = err.path().to_string();
                let path = if path == "." { String::new() } else { path };
                let mut segs = yaml::split_path(&path);
                if let [Seg::Key(list), Seg::Index(i), ..] = segs.as_mut_slice()
                    && let Some(kept) = parsed.kept.get(list.as_str())
                {
                    *i = kept.get(*i).copied().unwrap_or(*i);
                }
                let cut_len = segs.len().min(2);
                let path = join(&segs);
                let message = err.into_inner().to_string();
                let key = unknown_field_key(&path, &message);
                let spurious = message.starts_with("missing field")
                    && parsed
                        .dropped
                        .iter()
                        .any(|d| missing_field_of(&path, &message) == *d);
                if !spurious {
                    errors.push(parsed.diag(key, message));
                }
                if segs.is_empty() {
                    return parsed;
                }
                let cut = &segs[..cut_len];
                if !remove(&mut json, cut, &mut parsed.kept) {
                    return parsed;
                }
                parsed.dropped.push(join(cut));
            }
        }
    }
    parsed
}

/// serde reports an unknown field at its parent; point at the field itself.
fn unknown_field_key(path: &str, message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some(field) = rest.split('`').next()
        && !path.ends_with(field)
    {
        return if path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
    }
    path.to_string()
}

fn missing_field_of(path: &str, message: &str) -> String {
    let field = message
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
        .unwrap_or_default();
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn join(segs: &[Seg]) -> String {
    let mut out = String::new();
    for s in segs {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Removes the entry at `path` (already in original indexes) from `value`.
fn remove(value: &mut Value, path: &[Seg], kept: &mut HashMap<String, Vec<usize>>) -> bool {
    if let [Seg::Key(list), Seg::Index(orig)] = path {
        let Some(Value::Array(items)) = value.get_mut(list.as_str()) else {
            return false;
        };
        let entry = kept
            .entry(list.clone())
            .or_insert_with(|| (0..items.len()).collect());
        let Some(pos) = entry.iter().position(|i| i == orig) else {
            return false;
        };
        entry.remove(pos);
        items.remove(pos);
        return true;
    }
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = value;
    for seg in parents {
        cur = match (cur, seg) {
            (Value::Object(m), Seg::Key(k)) => match m.get_mut(k) {
                Some(v) => v,
                None => return false,
            },
            (Value::Array(a), Seg::Index(i)) => match a.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (cur, last) {
        (Value::Object(m), Seg::Key(k)) => m.remove(k).is_some(),
        _ => false,
    }
}
