//! The team's SDL, checked and turned into the model the schema is built from: object
//! types whose fields read their parent's JSON or call a backend (`@rest`), enums, input
//! types and scalars. Every problem is reported with the SDL file's line and column.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_graphql::parser::types::{
    BaseType, ConstDirective, FieldDefinition, InputValueDefinition, Type, TypeKind,
    TypeSystemDefinition,
};
use async_graphql::parser::{Pos, Positioned};
use async_graphql::{Name, Value as ConstValue};
use gateway::config::BackendId;
use gateway::config::units;
use http::Method;

use crate::template::{BodyTemplate, Names, Step, Template, Var, body_template};

/// The built-in scalars.
pub(super) const BUILT_IN: [&str; 5] = ["ID", "String", "Int", "Float", "Boolean"];

/// A checked schema.
#[derive(Debug)]
pub(super) struct Model {
    pub(super) query: String,
    pub(super) mutation: Option<String>,
    pub(super) types: Vec<TypeDef>,
    /// Every field of every object type; [`TypeDef::Object`] lists its indexes.
    pub(super) fields: Vec<FieldPlan>,
    /// Field indexes by type, then field name.
    index: HashMap<String, HashMap<String, usize>>,
}

impl Model {
    /// The field `name` of the object type `owner`.
    pub(super) fn field_index(&self, owner: &str, name: &str) -> Option<usize> {
        self.index.get(owner)?.get(name).copied()
    }

    /// The fields of the input type `name`.
    pub(super) fn input(&self, name: &str) -> Option<&[ArgDef]> {
        self.types.iter().find_map(|t| match t {
            TypeDef::Input {
                name: n, fields, ..
            } if n == name => Some(fields.as_slice()),
            _ => None,
        })
    }
}

#[derive(Debug)]
pub(super) enum TypeDef {
    Object {
        name: String,
        description: Option<String>,
        fields: Vec<usize>,
    },
    Enum {
        name: String,
        description: Option<String>,
        values: Vec<EnumValue>,
    },
    Input {
        name: String,
        description: Option<String>,
        fields: Vec<ArgDef>,
    },
    Scalar {
        name: String,
        description: Option<String>,
    },
}

#[derive(Debug)]
pub(super) struct EnumValue {
    pub(super) name: String,
    pub(super) description: Option<String>,
    pub(super) deprecation: Option<String>,
}

/// An argument or input field.
#[derive(Debug)]
pub(super) struct ArgDef {
    pub(super) name: String,
    pub(super) ty: Type,
    pub(super) default: Option<ConstValue>,
    pub(super) description: Option<String>,
}

/// What a field's named type is, for completing its values.
#[derive(Debug, Clone)]
pub(super) enum Output {
    /// `ID`, `String`, `Int`, `Float`, `Boolean`.
    BuiltIn(&'static str),
    /// A custom scalar: any JSON.
    Custom,
    Enum(HashSet<String>),
    Object,
}

/// One field of an object type.
#[derive(Debug)]
pub(super) struct FieldPlan {
    /// `Type.field`, for messages and logs.
    pub(super) label: String,
    pub(super) name: String,
    pub(super) ty: Type,
    pub(super) output: Output,
    pub(super) args: Vec<ArgDef>,
    pub(super) description: Option<String>,
    pub(super) deprecation: Option<String>,
    /// Where the value is, in the parent's JSON or in the backend's answer (`@map`).
    pub(super) from: Vec<String>,
    pub(super) rest: Option<Rest>,
}

/// A field's `@rest` call.
#[derive(Debug)]
pub(super) struct Rest {
    pub(super) backend: BackendId,
    pub(super) method: Method,
    pub(super) path: Template,
    pub(super) body: Option<BodyTemplate>,
    pub(super) timeout: Option<Duration>,
    pub(super) batch: Option<Batch>,
}

/// `batch: { path, key }`: one call for the field of every parent at one level.
#[derive(Debug)]
pub(super) struct Batch {
    /// The batch call's path, with `{keys}`.
    pub(super) path: Template,
    /// The member of each answer element that is matched against the parents' keys.
    pub(super) key: String,
    /// Where a parent's key is in the parent (the `{parent.…}` of `path`).
    pub(super) parent_key: Vec<Step>,
    /// Most keys per call (more are split over several calls).
    pub(super) max: usize,
}

/// Default `batch.max`.
const DEFAULT_BATCH_MAX: usize = 100;

/// Names a directive may use.
const REST_ARGS: [&str; 6] = ["backend", "path", "method", "body", "batch", "timeout"];

/// Checks `sdl` (read from `file`); `backend` resolves backend names like the route
/// resolver does; `authenticated` says whether `{claims.x}` may be used.
pub(super) fn check(
    file: &str,
    sdl: &str,
    backend: &dyn Fn(&str) -> Result<BackendId, Option<String>>,
    authenticated: bool,
) -> Result<Model, Vec<String>> {
    let doc = async_graphql::parser::parse_schema(sdl).map_err(|e| {
        let at = e
            .positions()
            .next()
            .map(|p| format!("{}:{}", p.line, p.column))
            .unwrap_or_else(|| "1:1".into());
        vec![format!("{file}:{at}: {e}")]
    })?;
    let mut errors = Vec::new();
    let mut err = |pos: Pos, message: String| {
        errors.push(format!("{file}:{}:{}: {message}", pos.line, pos.column));
    };
    let mut query = None;
    let mut mutation = None;
    let mut defs = Vec::new();
    let mut kinds: HashMap<String, Kind> = HashMap::new();
    for name in BUILT_IN {
        kinds.insert(name.to_string(), Kind::BuiltIn(name));
    }
    for def in &doc.definitions {
        match def {
            TypeSystemDefinition::Schema(s) => {
                query = s.node.query.as_ref().map(|n| n.node.to_string());
                mutation = s.node.mutation.as_ref().map(|n| n.node.to_string());
                if let Some(sub) = &s.node.subscription {
                    err(sub.pos, "subscriptions are not supported".into());
                }
            }
            TypeSystemDefinition::Directive(_) => {} // `@rest` and `@map` need no declaration
            TypeSystemDefinition::Type(t) => {
                let name = t.node.name.node.to_string();
                if t.node.extend {
                    err(
                        t.pos,
                        format!("`extend type {name}`: write the whole type once"),
                    );
                    continue;
                }
                if kinds.contains_key(&name) {
                    err(t.node.name.pos, format!("type `{name}` is defined twice"));
                    continue;
                }
                let kind = match &t.node.kind {
                    TypeKind::Object(_) => Kind::Object,
                    TypeKind::Scalar => Kind::Scalar,
                    TypeKind::Enum(e) => Kind::Enum(
                        e.values
                            .iter()
                            .map(|v| v.node.value.node.to_string())
                            .collect(),
                    ),
                    TypeKind::InputObject(_) => Kind::Input,
                    TypeKind::Interface(_) | TypeKind::Union(_) => {
                        err(
                            t.pos,
                            format!(
                                "`{name}`: interfaces and unions are not supported; use object types"
                            ),
                        );
                        continue;
                    }
                };
                kinds.insert(name, kind);
                defs.push(t);
            }
        }
    }
    let is_object = |n: &str| {
        defs.iter()
            .any(|d| d.node.name.node == n && matches!(d.node.kind, TypeKind::Object(_)))
    };
    let query = query.unwrap_or_else(|| "Query".into());
    if !is_object(&query) {
        err(
            Pos { line: 1, column: 1 },
            format!("no object type `{query}` for queries"),
        );
    }
    if let Some(m) = &mutation
        && !is_object(m)
    {
        err(
            Pos { line: 1, column: 1 },
            format!("no object type `{m}` for mutations"),
        );
    } else if mutation.is_none() && is_object("Mutation") {
        mutation = Some("Mutation".into());
    }
    let roots: Vec<&str> = std::iter::once(query.as_str())
        .chain(mutation.as_deref())
        .collect();

    let mut types = Vec::new();
    let mut fields = Vec::new();
    for t in &defs {
        let name = t.node.name.node.to_string();
        let description = t.node.description.as_ref().map(|d| d.node.clone());
        for d in &t.node.directives {
            err(
                d.pos,
                format!("unknown directive `@{}` on a type", d.node.name.node),
            );
        }
        match &t.node.kind {
            TypeKind::Object(o) => {
                if let Some(i) = o.implements.first() {
                    err(i.pos, "interfaces are not supported".into());
                }
                let mut ids = Vec::new();
                for f in &o.fields {
                    let root = roots.contains(&name.as_str());
                    match field(&name, f, root, &kinds, backend, authenticated) {
                        Ok(plan) => {
                            ids.push(fields.len());
                            fields.push(plan);
                        }
                        Err(found) => {
                            for (pos, message) in found {
                                err(pos, message);
                            }
                        }
                    }
                }
                types.push(TypeDef::Object {
                    name,
                    description,
                    fields: ids,
                });
            }
            TypeKind::Enum(e) => types.push(TypeDef::Enum {
                name,
                description,
                values: e
                    .values
                    .iter()
                    .map(|v| EnumValue {
                        name: v.node.value.node.to_string(),
                        description: v.node.description.as_ref().map(|d| d.node.clone()),
                        deprecation: deprecation(&v.node.directives),
                    })
                    .collect(),
            }),
            TypeKind::InputObject(i) => {
                let mut list = Vec::new();
                for f in &i.fields {
                    match arg(f, &kinds) {
                        Ok(a) => list.push(a),
                        Err((pos, message)) => err(pos, message),
                    }
                }
                types.push(TypeDef::Input {
                    name,
                    description,
                    fields: list,
                });
            }
            TypeKind::Scalar => types.push(TypeDef::Scalar { name, description }),
            TypeKind::Interface(_) | TypeKind::Union(_) => {}
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut index: HashMap<String, HashMap<String, usize>> = HashMap::new();
    for t in &types {
        if let TypeDef::Object {
            name, fields: ids, ..
        } = t
        {
            let by_name = ids.iter().map(|&i| (fields[i].name.clone(), i)).collect();
            index.insert(name.clone(), by_name);
        }
    }
    Ok(Model {
        query,
        mutation,
        types,
        fields,
        index,
    })
}

/// The named type under any lists.
pub(super) fn named(ty: &Type) -> &Name {
    match &ty.base {
        BaseType::Named(n) => n,
        BaseType::List(inner) => named(inner),
    }
}

fn deprecation(directives: &[Positioned<ConstDirective>]) -> Option<String> {
    directives
        .iter()
        .find(|d| d.node.name.node == "deprecated")
        .map(|d| {
            d.node
                .get_argument("reason")
                .and_then(|r| match &r.node {
                    ConstValue::String(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| "No longer supported".into())
        })
}

/// What a type name stands for.
#[derive(Debug)]
enum Kind {
    BuiltIn(&'static str),
    Scalar,
    Enum(HashSet<String>),
    Object,
    Input,
}

fn arg(
    a: &Positioned<InputValueDefinition>,
    kinds: &HashMap<String, Kind>,
) -> Result<ArgDef, (Pos, String)> {
    let type_name = named(&a.node.ty.node);
    if matches!(kinds.get(type_name.as_str()), None | Some(Kind::Object)) {
        return Err((
            a.node.ty.pos,
            format!(
                "`{}`: `{type_name}` is not an input type, enum or scalar defined here",
                a.node.name.node
            ),
        ));
    }
    Ok(ArgDef {
        name: a.node.name.node.to_string(),
        ty: a.node.ty.node.clone(),
        default: a.node.default_value.as_ref().map(|d| d.node.clone()),
        description: a.node.description.as_ref().map(|d| d.node.clone()),
    })
}

type Found = Vec<(Pos, String)>;

#[allow(clippy::too_many_arguments)]
fn field(
    owner: &str,
    f: &Positioned<FieldDefinition>,
    root: bool,
    kinds: &HashMap<String, Kind>,
    backend: &dyn Fn(&str) -> Result<BackendId, Option<String>>,
    authenticated: bool,
) -> Result<FieldPlan, Found> {
    let mut found: Found = Vec::new();
    let name = f.node.name.node.to_string();
    let label = format!("{owner}.{name}");
    let type_name = named(&f.node.ty.node);
    let output = match kinds.get(type_name.as_str()) {
        Some(Kind::BuiltIn(n)) => Output::BuiltIn(n),
        Some(Kind::Scalar) => Output::Custom,
        Some(Kind::Enum(values)) => Output::Enum(values.clone()),
        Some(Kind::Object) => Output::Object,
        Some(Kind::Input) | None => {
            found.push((
                f.node.ty.pos,
                format!(
                    "`{label}`: `{type_name}` is not an object type, enum or scalar defined here"
                ),
            ));
            Output::Custom
        }
    };
    let mut args = Vec::new();
    for a in &f.node.arguments {
        match arg(a, kinds) {
            Ok(a) => args.push(a),
            Err(e) => found.push(e),
        }
    }
    let mut from = vec![name.clone()];
    let mut rest = None;
    let mut rest_pos = None;
    for d in &f.node.directives {
        match d.node.name.node.as_str() {
            "deprecated" => {}
            "map" => match d.node.get_argument("from").map(|v| &v.node) {
                Some(ConstValue::String(path)) if !path.is_empty() => {
                    from = path.split('.').map(str::to_string).collect();
                    if from.iter().any(String::is_empty) {
                        found.push((d.pos, format!("`{label}`: `@map(from:)` has an empty step")));
                    }
                }
                _ => found.push((
                    d.pos,
                    format!("`{label}`: write @map(from: \"member.path\")"),
                )),
            },
            "rest" => {
                rest_pos = Some(d.pos);
                match rest_of(&label, d, root, &args, backend, authenticated) {
                    Ok(r) => rest = Some(r),
                    Err(e) => found.extend(e.into_iter().map(|m| (d.pos, m))),
                }
            }
            other => found.push((d.pos, format!("`{label}`: unknown directive `@{other}`"))),
        }
    }
    let has_map = f.node.directives.iter().any(|d| d.node.name.node == "map");
    if rest_pos.is_none() {
        if root {
            found.push((
                f.pos,
                format!("`{label}`: a root field needs `@rest` (it has no parent to read from)"),
            ));
        }
        if !args.is_empty() {
            found.push((
                f.pos,
                format!("`{label}`: arguments are only used by `@rest` fields"),
            ));
        }
    } else if !has_map {
        from.clear(); // the whole answer
    }
    if !found.is_empty() {
        return Err(found);
    }
    Ok(FieldPlan {
        label,
        name,
        ty: f.node.ty.node.clone(),
        output,
        args,
        description: f.node.description.as_ref().map(|d| d.node.clone()),
        deprecation: deprecation(&f.node.directives),
        from,
        rest,
    })
}

fn string_arg(d: &ConstDirective, name: &str) -> Result<Option<String>, String> {
    match d.get_argument(name).map(|v| &v.node) {
        None | Some(ConstValue::Null) => Ok(None),
        Some(ConstValue::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("`{name}` must be a string")),
    }
}

/// `@rest(backend:, path:, method:, body:, batch: { path:, key:, max: }, timeout:)`.
fn rest_of(
    label: &str,
    d: &Positioned<ConstDirective>,
    root: bool,
    args: &[ArgDef],
    backend: &dyn Fn(&str) -> Result<BackendId, Option<String>>,
    authenticated: bool,
) -> Result<Rest, Vec<String>> {
    let mut errors = Vec::new();
    let mut e = |m: String| errors.push(format!("`{label}` @rest: {m}"));
    for (n, _) in &d.node.arguments {
        if !REST_ARGS.contains(&n.node.as_str()) {
            e(format!(
                "unknown argument `{}` (expected {})",
                n.node,
                REST_ARGS.join(", ")
            ));
        }
    }
    let text = |name: &str, e: &mut dyn FnMut(String)| match string_arg(&d.node, name) {
        Ok(v) => v,
        Err(m) => {
            e(m);
            None
        }
    };
    let backend_name = text("backend", &mut e);
    let path_text = text("path", &mut e);
    let method_text = text("method", &mut e);
    let timeout_text = text("timeout", &mut e);
    let backend = match backend_name.as_deref() {
        None => {
            e("`backend` is required".into());
            None
        }
        Some(n) => match backend(n) {
            Ok(id) => Some(id),
            Err(Some(m)) => {
                e(m);
                None
            }
            Err(None) => None,
        },
    };
    let roots: Vec<String> = if root {
        vec!["args".into()]
    } else {
        vec!["args".into(), "parent".into()]
    };
    let names = Names {
        params: &[],
        calls: &roots,
        authenticated,
        query: false,
    };
    let check_args = |t: &Template, e: &mut dyn FnMut(String)| {
        for v in t.vars() {
            if let Var::Call { call, path } = v
                && call == "args"
            {
                match path.first() {
                    Some(Step::Key(a)) if args.iter().any(|x| &x.name == a) => {}
                    Some(Step::Key(a)) => {
                        e(format!("`{{args.{a}}}`: the field has no argument `{a}`"))
                    }
                    _ => e("write `{args.NAME}`".into()),
                }
            }
        }
    };
    let path = match path_text.as_deref() {
        None => {
            e("`path` is required".into());
            None
        }
        Some(p) if !p.starts_with('/') => {
            e(format!("path `{p}` must start with /"));
            None
        }
        Some(p) => match Template::parse(p, &names) {
            Ok(t) if t.fans_out() => {
                e(format!(
                    "path `{p}`: `*` is not used in @rest (use `batch`)"
                ));
                None
            }
            Ok(t) => {
                check_args(&t, &mut e);
                Some(t)
            }
            Err(m) => {
                e(m);
                None
            }
        },
    };
    let method = match method_text.as_deref().unwrap_or("GET") {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE") => Method::from_bytes(m.as_bytes()).ok(),
        other => {
            e(format!(
                "method `{other}`: expected GET, POST, PUT, PATCH or DELETE"
            ));
            None
        }
    };
    let body = match d.node.get_argument("body") {
        None => None,
        Some(_) if matches!(method, Some(Method::GET)) => {
            e("a GET call has no body; set `method`".into());
            None
        }
        Some(v) => match body_template(&v.node.clone().into_json().unwrap_or_default(), &names) {
            Ok(b) => {
                for t in b.templates() {
                    check_args(t, &mut e);
                }
                Some(b)
            }
            Err(m) => {
                e(format!("body: {m}"));
                None
            }
        },
    };
    let timeout = match timeout_text {
        None => None,
        Some(t) => match serde_json::from_value::<units::Duration>(serde_json::Value::String(t)) {
            Ok(d) if !d.0.is_zero() => Some(d.0),
            Ok(_) => {
                e("`timeout` must be more than 0".into());
                None
            }
            Err(m) => {
                e(format!("timeout: {m}"));
                None
            }
        },
    };
    let batch = match d.node.get_argument("batch").map(|v| &v.node) {
        None => None,
        Some(ConstValue::Object(b)) => batch_of(b, path.as_ref(), args, authenticated, &mut e),
        Some(_) => {
            e("write batch: { path: \"/users?ids={keys}\", key: \"id\" }".into());
            None
        }
    };
    if batch.is_some() && root {
        e("`batch` is for fields of listed objects, not root fields".into());
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    match (backend, path, method) {
        (Some(backend), Some(path), Some(method)) => Ok(Rest {
            backend,
            method,
            path,
            body,
            timeout,
            batch,
        }),
        _ => Err(vec![format!("`{label}` @rest is incomplete")]),
    }
}

fn batch_of(
    b: &async_graphql::indexmap::IndexMap<Name, ConstValue>,
    path: Option<&Template>,
    args: &[ArgDef],
    authenticated: bool,
    e: &mut dyn FnMut(String),
) -> Option<Batch> {
    for k in b.keys() {
        if !["path", "key", "max"].contains(&k.as_str()) {
            e(format!(
                "batch: unknown member `{k}` (expected path, key, max)"
            ));
        }
    }
    let text = |k: &str| match b.get(k) {
        Some(ConstValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let (Some(batch_path), Some(key)) = (text("path"), text("key")) else {
        e("batch needs `path` (with {keys}) and `key` (the member matched in the answer)".into());
        return None;
    };
    let max = match b.get("max") {
        None => DEFAULT_BATCH_MAX,
        Some(ConstValue::Number(n)) if n.as_u64().is_some_and(|n| n >= 1) => {
            usize::try_from(n.as_u64().unwrap_or(1)).unwrap_or(DEFAULT_BATCH_MAX)
        }
        Some(_) => {
            e("batch.max must be a whole number of at least 1".into());
            return None;
        }
    };
    if !batch_path.contains("{keys}") {
        e(format!("batch path `{batch_path}` must contain {{keys}}"));
        return None;
    }
    if !batch_path.starts_with('/') {
        e(format!("batch path `{batch_path}` must start with /"));
        return None;
    }
    let roots = vec!["args".to_string(), "keys".to_string()];
    let names = Names {
        params: &[],
        calls: &roots,
        authenticated,
        query: false,
    };
    let template = match Template::parse(&batch_path.replace("{keys}", "{keys.*}"), &names) {
        Ok(t) => t,
        Err(m) => {
            e(format!("batch path: {}", m.replace("keys.*", "keys")));
            return None;
        }
    };
    for v in template.vars() {
        if let Var::Call { call, path } = v
            && call == "args"
            && !matches!(path.first(), Some(Step::Key(a)) if args.iter().any(|x| &x.name == a))
        {
            e("batch path: `{args.…}` names no argument of the field".into());
        }
    }
    let parents: Vec<&Vec<Step>> = path
        .into_iter()
        .flat_map(Template::vars)
        .filter_map(|v| match v {
            Var::Call { call, path } if call == "parent" => Some(path),
            _ => None,
        })
        .collect();
    let parent_key = match parents.as_slice() {
        [one] => (*one).clone(),
        _ => {
            e("with `batch`, `path` names exactly one `{parent.…}`: the parent's key".into());
            return None;
        }
    };
    Some(Batch {
        path: template,
        key,
        parent_key,
        max,
    })
}
