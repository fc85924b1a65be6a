//! Executing operations: the async-graphql schema built from the [`Model`], and the one
//! resolver every field has.
//!
//! A field reads its parent's JSON, or calls its backend (`@rest`) through the backend's
//! client stack — identical calls of one operation once, `batch` fields of one level in one
//! call (async-graphql's DataLoader). Its value is then completed against its type here:
//! scalars coerced, enums checked, objects passed on as [`Node`]s.
//!
//! Errors follow the GraphQL spec, which async-graphql alone does not (it drops a failed
//! field from its object): a failed field is `null` with an error carrying its `path` and
//! `extensions.code`; a failure at a non-null position makes the nearest nullable
//! ancestor `null`. Each [`Node`] knows which positions above it are nullable, so the
//! resolver that fails records where the `null` goes ([`Exec::nulls`]) and
//! [`Exec::finish`] applies it to the response.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use async_graphql::context::SelectionField;
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, FieldValue, InputObject, InputValue, Object,
    ResolverContext, Scalar, Schema, TypeRef,
};
use async_graphql::parser::types::{BaseType, Type};
use async_graphql::{ErrorExtensionValues, Name, PathSegment, ServerError, Value as ConstValue};
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use gateway::upstream::Upstream;
use http::{HeaderMap, Method};
use serde_json::{Map, Value};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::sdl::{ArgDef, FieldPlan, Model, Output, Rest, TypeDef};
use crate::call::{self, Failure, Outgoing};
use crate::template::{Scope, render_body, text_of, walk};

/// The error a resolver returns when it has reported its failure itself (dropped from
/// the response).
const REPORTED: &str = "\u{0}portico:reported";

/// What a field of object type passes to its children.
#[derive(Debug)]
pub(super) struct Node {
    json: Value,
    /// For each position from the root to this object: whether it is nullable.
    nullable: Vec<bool>,
    /// A placeholder for a `null` list element (its children answer placeholders; the
    /// element becomes `null` in [`Exec::finish`]).
    null: bool,
}

/// The limits the schema enforces itself.
#[derive(Debug, Clone)]
pub(super) struct SchemaLimits {
    pub(super) max_depth: usize,
    pub(super) max_complexity: usize,
    pub(super) introspection: bool,
}

/// Builds the executable schema.
pub(super) fn schema(model: Arc<Model>, limits: &SchemaLimits) -> Result<Schema, String> {
    let mut builder = Schema::build(&model.query, model.mutation.as_deref(), None)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .limit_recursive_depth(64)
        .limit_directives(8);
    if !limits.introspection {
        // "Did you mean …" would name the fields introspection hides.
        builder = builder.disable_introspection().disable_suggestions();
    }
    for def in &model.types {
        builder = match def {
            TypeDef::Object {
                name,
                description,
                fields,
            } => {
                let mut object = Object::new(name);
                if let Some(d) = description {
                    object = object.description(d);
                }
                for &index in fields {
                    object = object.field(field(model.clone(), index));
                }
                builder.register(object)
            }
            TypeDef::Enum {
                name,
                description,
                values,
            } => {
                let mut e = Enum::new(name);
                if let Some(d) = description {
                    e = e.description(d);
                }
                for v in values {
                    let mut item = EnumItem::new(&v.name);
                    // `deprecation(None)` would mark it deprecated too.
                    if let Some(reason) = &v.deprecation {
                        item = item.deprecation(Some(reason));
                    }
                    if let Some(d) = &v.description {
                        item = item.description(d);
                    }
                    e = e.item(item);
                }
                builder.register(e)
            }
            TypeDef::Input {
                name,
                description,
                fields,
            } => {
                let mut input = InputObject::new(name);
                if let Some(d) = description {
                    input = input.description(d);
                }
                for f in fields {
                    input = input.field(input_value(f));
                }
                builder.register(input)
            }
            TypeDef::Scalar { name, description } => {
                let mut s = Scalar::new(name);
                if let Some(d) = description {
                    s = s.description(d);
                }
                builder.register(s)
            }
        };
    }
    builder.finish().map_err(|e| e.to_string())
}

fn type_ref(ty: &Type) -> TypeRef {
    let inner = match &ty.base {
        BaseType::Named(n) => TypeRef::Named(n.to_string().into()),
        BaseType::List(t) => TypeRef::List(Box::new(type_ref(t))),
    };
    if ty.nullable {
        inner
    } else {
        TypeRef::NonNull(Box::new(inner))
    }
}

fn input_value(a: &super::sdl::ArgDef) -> InputValue {
    let mut v = InputValue::new(&a.name, type_ref(&a.ty));
    if let Some(d) = &a.default {
        v = v.default_value(d.clone());
    }
    if let Some(d) = &a.description {
        v = v.description(d);
    }
    v
}

fn field(model: Arc<Model>, index: usize) -> Field {
    let plan = &model.fields[index];
    let mut f = Field::new(&plan.name, type_ref(&plan.ty), {
        let model = model.clone();
        move |ctx| {
            let model = model.clone();
            FieldFuture::new(async move { resolve(&model.fields[index], index, ctx).await })
        }
    });
    for a in &plan.args {
        f = f.argument(input_value(a));
    }
    if let Some(d) = &plan.description {
        f = f.description(d);
    }
    match &plan.deprecation {
        Some(reason) => f.deprecation(Some(reason)),
        None => f,
    }
}

/// One operation's state.
pub(super) struct Exec {
    pub(super) upstreams: Arc<Vec<Arc<Upstream>>>,
    pub(super) model: Arc<Model>,
    /// The headers and trace of every backend call.
    pub(super) outgoing: Outgoing,
    /// The client's headers (for `{header.x}`).
    pub(super) client: HeaderMap,
    pub(super) claims: Option<Map<String, Value>>,
    pub(super) deadline: Instant,
    /// Identical idempotent calls of this operation run once.
    calls: Mutex<HashMap<CallKey, Shared>>,
    /// `batch` fields' loads, each key once.
    loads: Mutex<HashMap<BatchKey, Load>>,
    /// Holds the operation only weakly (it lives in it).
    loader: Arc<DataLoader<Batches>>,
    /// A mutation: nothing is remembered between calls (an answer may change after
    /// each root field).
    mutation: bool,
    /// Where failures put a `null` above the field that failed.
    nulls: Mutex<Vec<Vec<PathSegment>>>,
}

type CallKey = (usize, Method, String, Option<Bytes>);

/// One call's answer, for every field that makes it.
type Shared = Arc<OnceCell<Result<Value, Failure>>>;

/// One batch key's answer, for every field that asks for it.
type Load = futures_util::future::Shared<BoxFuture<'static, Result<Value, Failure>>>;

impl Exec {
    pub(super) fn new(
        mutation: bool,
        upstreams: Arc<Vec<Arc<Upstream>>>,
        model: Arc<Model>,
        outgoing: Outgoing,
        client: HeaderMap,
        claims: Option<Map<String, Value>>,
        deadline: Instant,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            upstreams,
            model,
            outgoing,
            client,
            claims,
            deadline,
            calls: Mutex::new(HashMap::new()),
            loads: Mutex::new(HashMap::new()),
            loader: Arc::new(DataLoader::new(Batches(me.clone()), tokio::spawn)),
            mutation,
            nulls: Mutex::new(Vec::new()),
        })
    }

    /// A `batch` field's value for one parent's key, loaded with the keys of every
    /// other parent asking in the same moment (the DataLoader's window): the key is
    /// registered as soon as the returned future is first polled.
    fn load(self: &Arc<Self>, key: BatchKey) -> Load {
        let mut loads = self.loads.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(load) = loads.get(&key) {
            return load.clone();
        }
        // The future lives in this operation's map: it holds the loader, never the
        // operation itself.
        let loader = self.loader.clone();
        let entry = key.clone();
        let load = async move {
            match loader.load_one(key).await {
                Ok(Some(result)) => result,
                Ok(None) => Ok(Value::Null),
                Err(f) => Err(f),
            }
        }
        .boxed()
        .shared();
        if !self.mutation {
            loads.insert(entry, load.clone());
        }
        load
    }

    fn scope<'a>(&'a self, answers: &'a HashMap<String, Value>) -> Scope<'a> {
        Scope {
            params: &[],
            query: &[],
            headers: &self.client,
            claims: self.claims.as_ref(),
            answers,
        }
    }

    /// One `@rest` call (shared with identical ones of this operation when idempotent).
    async fn fetch(
        &self,
        plan: &FieldPlan,
        rest: &Rest,
        args: Value,
        parent: Value,
    ) -> Result<Value, Failure> {
        let answers = HashMap::from([("args".to_string(), args), ("parent".to_string(), parent)]);
        let scope = self.scope(&answers);
        let target = rest
            .path
            .render(&scope, true, false)
            .map_err(|m| Failure::skipped(format!("needs {m}")))?
            .pop()
            .unwrap_or_default();
        let body = match &rest.body {
            None => None,
            Some(t) => Some(Bytes::from(
                render_body(t, &scope)
                    .map_err(|m| Failure::skipped(format!("needs {m}")))?
                    .to_string(),
            )),
        };
        if rest.method != Method::GET || self.mutation {
            return self.send(plan, rest, &target, body).await;
        }
        let cell = {
            let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            calls
                .entry((
                    rest.backend.0,
                    rest.method.clone(),
                    target.clone(),
                    body.clone(),
                ))
                .or_default()
                .clone()
        };
        cell.get_or_init(|| self.send(plan, rest, &target, body))
            .await
            .clone()
    }

    async fn send(
        &self,
        plan: &FieldPlan,
        rest: &Rest,
        target: &str,
        body: Option<Bytes>,
    ) -> Result<Value, Failure> {
        let (deadline, own_timeout) = match rest.timeout {
            Some(t) if Instant::now() + t < self.deadline => (Instant::now() + t, true),
            _ => (self.deadline, false),
        };
        let request = call::JsonRequest {
            method: &rest.method,
            target,
            body,
            outgoing: &self.outgoing,
            deadline,
            own_timeout,
            label: &plan.label,
        };
        call::json(&self.upstreams[rest.backend.0], request).await
    }

    /// Applies the recorded `null`s to the response and drops the placeholder errors.
    pub(super) fn finish(&self, data: &mut ConstValue, errors: &mut Vec<ServerError>) {
        errors.retain(|e| e.message != REPORTED);
        let mut nulls = std::mem::take(&mut *self.nulls.lock().unwrap_or_else(|e| e.into_inner()));
        nulls.sort_by_key(Vec::len);
        for path in nulls {
            let Some((last, above)) = path.split_last() else {
                *data = ConstValue::Null;
                return;
            };
            let mut node = Some(&mut *data);
            for seg in above {
                node = node.and_then(|n| match (seg, n) {
                    (PathSegment::Field(k), ConstValue::Object(m)) => m.get_mut(k.as_str()),
                    (PathSegment::Index(i), ConstValue::List(l)) => l.get_mut(*i),
                    _ => None,
                });
            }
            // Unreachable: already inside a null.
            let Some(node) = node else { continue };
            match (last, node) {
                (PathSegment::Field(k), ConstValue::Object(m)) => {
                    m.insert(Name::new(k), ConstValue::Null);
                }
                (PathSegment::Index(i), ConstValue::List(a)) if *i < a.len() => {
                    a[*i] = ConstValue::Null;
                }
                _ => {}
            }
        }
    }

    fn null_at(&self, path: Vec<PathSegment>) {
        self.nulls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(path);
    }
}

/// A `batch` field's key: the field, its arguments (JSON) and one parent's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct BatchKey {
    field: usize,
    args: String,
    key: String,
}

/// Loads `batch` fields: one call per field and arguments for all the keys of one level.
pub(super) struct Batches(Weak<Exec>);

impl Loader<BatchKey> for Batches {
    type Value = Result<Value, Failure>;
    type Error = Failure;

    async fn load(&self, keys: &[BatchKey]) -> Result<HashMap<BatchKey, Self::Value>, Failure> {
        let Some(exec) = self.0.upgrade() else {
            return Ok(HashMap::new()); // the operation is over
        };
        let exec = &exec;
        let mut groups: HashMap<(usize, &str), Vec<&BatchKey>> = HashMap::new();
        for k in keys {
            groups
                .entry((k.field, k.args.as_str()))
                .or_default()
                .push(k);
        }
        // Keys in a stable order, so equal batches are equal URLs (caches).
        for keys in groups.values_mut() {
            keys.sort_by(|a, b| a.key.cmp(&b.key));
        }
        let mut jobs = Vec::new();
        for ((field, args), keys) in &groups {
            let (field, args) = (*field, *args);
            let plan = &exec.model.fields[field];
            let Some(rest) = &plan.rest else { continue };
            let Some(batch) = &rest.batch else { continue };
            for chunk in keys.chunks(batch.max) {
                jobs.push(async move {
                    let mut answers = HashMap::new();
                    answers.insert(
                        "args".to_string(),
                        serde_json::from_str(args).unwrap_or_default(),
                    );
                    answers.insert(
                        "keys".to_string(),
                        Value::Array(chunk.iter().map(|k| Value::String(k.key.clone())).collect()),
                    );
                    let scope = exec.scope(&answers);
                    let result = match batch.path.render(&scope, true, true) {
                        Ok(mut t) => {
                            let target = t.pop().unwrap_or_default();
                            exec.send(plan, rest, &target, None).await
                        }
                        Err(m) => Err(Failure::skipped(format!("needs {m}"))),
                    };
                    let list = plan_is_list(&plan.ty);
                    let mut out: Vec<(BatchKey, Result<Value, Failure>)> = Vec::new();
                    match result {
                        Ok(Value::Array(items)) => {
                            for k in chunk {
                                let mut matches = items
                                    .iter()
                                    .filter(|item| {
                                        item.get(&batch.key).and_then(text_of)
                                            == Some(k.key.clone())
                                    })
                                    .cloned();
                                let value = if list {
                                    Value::Array(matches.collect())
                                } else {
                                    matches.next().unwrap_or(Value::Null)
                                };
                                out.push(((*k).clone(), Ok(value)));
                            }
                        }
                        Ok(_) => {
                            let f = Failure::unavailable(
                                "INVALID_BODY",
                                "the batch answer is not a JSON array",
                            );
                            out.extend(chunk.iter().map(|k| ((*k).clone(), Err(f.clone()))));
                        }
                        Err(f) => out.extend(chunk.iter().map(|k| ((*k).clone(), Err(f.clone())))),
                    }
                    out
                });
            }
        }
        Ok(futures_util::future::join_all(jobs)
            .await
            .into_iter()
            .flatten()
            .collect())
    }
}

fn plan_is_list(ty: &Type) -> bool {
    matches!(ty.base, BaseType::List(_))
}

fn lookup<'v>(mut v: &'v Value, path: &[String]) -> &'v Value {
    for step in path {
        v = match v {
            Value::Object(m) => m.get(step).unwrap_or(&Value::Null),
            Value::Array(a) => step
                .parse::<usize>()
                .ok()
                .and_then(|i| a.get(i))
                .unwrap_or(&Value::Null),
            _ => &Value::Null,
        };
    }
    v
}

fn path_of(ctx: &ResolverContext<'_>) -> Vec<PathSegment> {
    let mut path = Vec::new();
    let mut node = ctx.path_node.as_ref();
    while let Some(n) = node {
        path.push(match n.segment {
            async_graphql::QueryPathSegment::Name(name) => PathSegment::Field(name.to_string()),
            async_graphql::QueryPathSegment::Index(i) => PathSegment::Index(i),
        });
        node = n.parent;
    }
    path.reverse();
    path
}

/// Resolves one field.
async fn resolve<'a>(
    plan: &FieldPlan,
    index: usize,
    ctx: ResolverContext<'a>,
) -> async_graphql::Result<Option<FieldValue<'a>>> {
    let exec = ctx.data_unchecked::<Arc<Exec>>();
    let parent = ctx.parent_value.downcast_ref::<Node>();
    if parent.is_some_and(|p| p.null) {
        return Ok(placeholder(&plan.ty, &plan.output));
    }
    let given = ctx
        .args
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_value().clone()));
    let args = match &plan.rest {
        Some(_) => arguments(&exec.model, &plan.args, given),
        None => Ok(Value::Null), // read from the parent: arguments unused
    };
    let raw = match (&plan.rest, args) {
        (None, _) => Ok(lookup(parent.map_or(&Value::Null, |p| &p.json), &plan.from).clone()),
        (Some(_), Err(m)) => Err(Failure::new(
            "BAD_USER_INPUT",
            m.clone(),
            gateway::error::Problem::bad_request(m),
        )),
        (Some(rest), Ok(args)) => {
            let parent_json = parent.map_or(&Value::Null, |p| &p.json);
            match &rest.batch {
                Some(batch) => match walk(parent_json, &batch.parent_key).and_then(text_of) {
                    // A parent without a key has nothing to load.
                    None => Ok(Value::Null),
                    Some(key) => {
                        let k = BatchKey {
                            field: index,
                            args: args.to_string(),
                            key,
                        };
                        exec.load(k).await.map(|v| lookup(&v, &plan.from).clone())
                    }
                },
                None => exec
                    .fetch(plan, rest, args, parent_json.clone())
                    .await
                    .map(|v| lookup(&v, &plan.from).clone()),
            }
        }
    };
    // async-graphql resolves an object's fields one after another: start the backend
    // calls of the fields selected below this one now, so they run side by side.
    if let (Ok(value), Output::Object, Some(prefetch)) =
        (&raw, &plan.output, ctx.data_opt::<Prefetch>())
    {
        prefetch.start(exec, &plan.ty, value, &ctx.field());
    }
    // The field's path, built only where an error or a null needs it.
    let full = |below: &[PathSegment]| {
        let mut p = path_of(&ctx);
        p.extend_from_slice(below);
        p
    };
    let mut nullable = parent.map(|p| p.nullable.clone()).unwrap_or_default();
    nullable.push(plan.ty.nullable);
    let mut report = |at: &[PathSegment], code: &str, message: String| {
        let mut extensions = ErrorExtensionValues::default();
        extensions.set("code", code);
        let mut e = ServerError::new(message, Some(ctx.item.pos));
        e.path = at.to_vec();
        e.extensions = Some(extensions);
        ctx.add_error(e);
    };
    let completed = match raw {
        Ok(value) => {
            let mut c = Completion {
                exec,
                nullable: &mut nullable,
                below: Vec::new(),
                full: &full,
                report: &mut report,
                label: &plan.label,
            };
            c.complete(&plan.ty, &plan.output, value)
        }
        Err(f) => {
            tracing::debug!(field = %plan.label, code = f.code, "graphql field failed");
            report(&full(&[]), f.code, f.detail.clone());
            if plan.ty.nullable {
                Ok(None)
            } else {
                Err(Bubble)
            }
        }
    };
    match completed {
        Ok(v) => Ok(v),
        Err(Bubble) => {
            // The nearest nullable position above this field takes the null.
            let path = full(&[]);
            let at = nullable[..nullable.len() - 1]
                .iter()
                .rposition(|n| *n)
                .map_or(Vec::new(), |i| path[..=i].to_vec());
            exec.null_at(at);
            Err(async_graphql::Error::new(REPORTED))
        }
    }
}

/// The field's arguments as JSON: absent ones from their defaults (input objects' fields
/// too); an `Int` outside 32 bits is refused (async-graphql's dynamic `Int` takes 64).
pub(super) fn arguments(
    model: &Model,
    defs: &[ArgDef],
    given: impl Iterator<Item = (String, ConstValue)>,
) -> Result<Value, String> {
    let mut given: HashMap<String, ConstValue> = given.collect();
    let mut out = Map::new();
    for d in defs {
        if let Some(v) = given.remove(&d.name).or_else(|| d.default.clone()) {
            out.insert(d.name.clone(), coerce(model, &d.ty, v, &d.name)?);
        }
    }
    Ok(Value::Object(out))
}

fn coerce(model: &Model, ty: &Type, v: ConstValue, at: &str) -> Result<Value, String> {
    match (&ty.base, v) {
        (_, ConstValue::Null) => Ok(Value::Null),
        (BaseType::List(inner), ConstValue::List(items)) => items
            .into_iter()
            .map(|i| coerce(model, inner, i, at))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        // One value where a list is expected is a list of one.
        (BaseType::List(inner), v) => Ok(Value::Array(vec![coerce(model, inner, v, at)?])),
        (BaseType::Named(n), ConstValue::Number(num)) if n.as_str() == "Int" => {
            match num.as_i64().map(i32::try_from) {
                Some(Ok(i)) => Ok(Value::from(i)),
                _ => Err(format!("`{at}`: {num} is not a 32-bit Int")),
            }
        }
        (BaseType::Named(n), ConstValue::Object(mut fields)) => match model.input(n) {
            Some(defs) => {
                let mut out = Map::new();
                for d in defs {
                    let value = fields
                        .swap_remove(d.name.as_str())
                        .or_else(|| d.default.clone());
                    if let Some(v) = value {
                        let below = format!("{at}.{}", d.name);
                        out.insert(d.name.clone(), coerce(model, &d.ty, v, &below)?);
                    }
                }
                Ok(Value::Object(out))
            }
            None => ConstValue::Object(fields)
                .into_json()
                .map_err(|e| e.to_string()),
        },
        (_, v) => v.into_json().map_err(|e| e.to_string()),
    }
}

/// The backend calls started ahead of their fields, cancelled when the operation ends.
#[derive(Default)]
pub(super) struct Prefetch {
    tasks: Mutex<tokio::task::JoinSet<()>>,
}

impl Prefetch {
    /// Starts the GET calls of the `@rest` fields selected below a value of type `ty`
    /// (an object, or objects in lists), and below its plain object fields. Only what
    /// the type says is walked: a list where an object belongs starts nothing.
    fn start(&self, exec: &Arc<Exec>, ty: &Type, json: &Value, selection: &SelectionField<'_>) {
        match (&ty.base, json) {
            (BaseType::List(inner), Value::Array(items)) => {
                for item in items {
                    self.start(exec, inner, item, selection);
                }
            }
            (BaseType::Named(type_name), Value::Object(_)) => {
                for child in selection.selection_set() {
                    if skipped(&child) {
                        continue;
                    }
                    if let Some(i) = exec.model.field_index(type_name, child.name()) {
                        self.field(exec, i, json, &child);
                    }
                }
            }
            _ => {}
        }
    }

    /// Starts field `i` of the object `json` (or what is below it).
    fn field(&self, exec: &Arc<Exec>, i: usize, json: &Value, child: &SelectionField<'_>) {
        let plan = &exec.model.fields[i];
        let Some(rest) = &plan.rest else {
            if matches!(plan.output, Output::Object) {
                self.start(exec, &plan.ty, lookup(json, &plan.from), child);
            }
            return;
        };
        if rest.method != Method::GET {
            return; // side effects run only when their field does
        }
        let Ok(given) = child.arguments() else { return };
        let given = given.into_iter().map(|(k, v)| (k.to_string(), v));
        let Ok(args) = arguments(&exec.model, &plan.args, given) else {
            return;
        };
        let exec = exec.clone();
        match &rest.batch {
            Some(b) => {
                let Some(key) = walk(json, &b.parent_key).and_then(text_of) else {
                    return;
                };
                let key = BatchKey {
                    field: i,
                    args: args.to_string(),
                    key,
                };
                // Polled once: the key joins the current batch now; the fields that
                // need it await the same load.
                let _ = exec.load(key).now_or_never();
            }
            None => {
                let parent = json.clone();
                self.spawn(async move {
                    let plan = &exec.model.fields[i];
                    let Some(rest) = &plan.rest else { return };
                    let _ = exec.fetch(plan, rest, args, parent).await;
                });
            }
        }
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .spawn(task);
    }
}

/// `@skip(if: true)` or `@include(if: false)` on the field itself.
fn skipped(field: &SelectionField<'_>) -> bool {
    let Ok(directives) = field.directives() else {
        return false;
    };
    directives.iter().any(|d| {
        let flag = d
            .get_argument("if")
            .map(|v| matches!(v.node, ConstValue::Boolean(true)));
        match d.name.node.as_str() {
            "skip" => flag == Some(true),
            "include" => flag == Some(false),
            _ => false,
        }
    })
}

/// A non-null position failed: the null goes further up.
struct Bubble;

struct Completion<'c, 'r> {
    exec: &'c Exec,
    /// Nullability of each position down to the current one.
    nullable: &'c mut Vec<bool>,
    /// The current position, below the field's own.
    below: Vec<PathSegment>,
    /// The whole path of a position below the field.
    full: &'c dyn Fn(&[PathSegment]) -> Vec<PathSegment>,
    report: &'r mut dyn FnMut(&[PathSegment], &str, String),
    label: &'c str,
}

impl Completion<'_, '_> {
    fn fail(&mut self, ty: &Type, message: String) -> Result<Option<FieldValue<'static>>, Bubble> {
        (self.report)(&(self.full)(&self.below), "INVALID_BODY", message);
        if ty.nullable { Ok(None) } else { Err(Bubble) }
    }

    /// `value` at the current position, as a value of `ty` (`None`: null).
    fn complete(
        &mut self,
        ty: &Type,
        output: &Output,
        value: Value,
    ) -> Result<Option<FieldValue<'static>>, Bubble> {
        if value.is_null() {
            if ty.nullable {
                return Ok(None);
            }
            let message = format!(
                "`{}`: the backend's answer has no value for a non-null field",
                self.label
            );
            return self.fail(ty, message);
        }
        match &ty.base {
            BaseType::List(inner) => {
                let Value::Array(items) = value else {
                    let message = format!("`{}`: the backend's answer is not a list", self.label);
                    return self.fail(ty, message);
                };
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    self.below.push(PathSegment::Index(i));
                    self.nullable.push(inner.nullable);
                    let done = self.complete(inner, output, item);
                    let v = match done {
                        Ok(Some(v)) => Ok(v),
                        Ok(None) => {
                            // Enums and objects cannot be null inside async-graphql's lists:
                            // a placeholder, nulled at the end.
                            if matches!(output, Output::Enum(_) | Output::Object)
                                || matches!(inner.base, BaseType::List(_))
                            {
                                self.exec.null_at((self.full)(&self.below));
                                let mut t = (**inner).clone();
                                t.nullable = false;
                                Ok(placeholder(&t, output).unwrap_or(FieldValue::NULL))
                            } else {
                                Ok(FieldValue::NULL)
                            }
                        }
                        Err(Bubble) => Err(Bubble),
                    };
                    self.below.pop();
                    self.nullable.pop();
                    match v {
                        Ok(v) => out.push(v),
                        // A non-null element failed: the list is null, or further up.
                        Err(Bubble) if ty.nullable => return Ok(None),
                        Err(Bubble) => return Err(Bubble),
                    }
                }
                Ok(Some(FieldValue::list(out)))
            }
            BaseType::Named(_) => match output {
                Output::Object => {
                    if !value.is_object() {
                        let message =
                            format!("`{}`: the backend's answer is not an object", self.label);
                        return self.fail(ty, message);
                    }
                    Ok(Some(FieldValue::owned_any(Node {
                        json: value,
                        nullable: self.nullable.clone(),
                        null: false,
                    })))
                }
                Output::Enum(values) => match value {
                    Value::String(s) if values.contains(&s) => {
                        Ok(Some(FieldValue::value(ConstValue::Enum(Name::new(s)))))
                    }
                    _ => {
                        let message = format!(
                            "`{}`: the backend's value is not one of the enum's",
                            self.label
                        );
                        self.fail(ty, message)
                    }
                },
                Output::Custom => match ConstValue::from_json(value) {
                    Ok(v) => Ok(Some(FieldValue::value(v))),
                    Err(_) => self.fail(ty, format!("`{}`: not a JSON value", self.label)),
                },
                Output::BuiltIn(kind) => match scalar(kind, value) {
                    Some(v) => Ok(Some(FieldValue::value(v))),
                    None => {
                        let message = format!(
                            "`{}`: the backend's value is not a valid {kind}",
                            self.label
                        );
                        self.fail(ty, message)
                    }
                },
            },
        }
    }
}

/// Result coercion of the built-in scalars (GraphQL spec §3.5).
fn scalar(kind: &str, value: Value) -> Option<ConstValue> {
    Some(match (kind, value) {
        ("ID", Value::String(s)) => ConstValue::String(s),
        ("ID", Value::Number(n)) if n.is_i64() || n.is_u64() => ConstValue::String(n.to_string()),
        ("String", Value::String(s)) => ConstValue::String(s),
        ("String", Value::Number(n)) => ConstValue::String(n.to_string()),
        ("String", Value::Bool(b)) => ConstValue::String(b.to_string()),
        ("Int", Value::Number(n)) => {
            let i = n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() <= f64::from(i32::MAX))
                    .map(|f| f as i64)
            })?;
            ConstValue::Number(i32::try_from(i).ok()?.into())
        }
        ("Float", Value::Number(n)) => {
            ConstValue::Number(serde_json::Number::from_f64(n.as_f64()?)?)
        }
        ("Boolean", Value::Bool(b)) => ConstValue::Boolean(b),
        _ => return None,
    })
}

/// A value that passes async-graphql's checks where a `null` will be put later.
fn placeholder(ty: &Type, output: &Output) -> Option<FieldValue<'static>> {
    if ty.nullable {
        return None;
    }
    Some(match (&ty.base, output) {
        (BaseType::List(_), _) => FieldValue::list(Vec::<FieldValue<'static>>::new()),
        (BaseType::Named(_), Output::Object) => FieldValue::owned_any(Node {
            json: Value::Null,
            nullable: Vec::new(),
            null: true,
        }),
        (BaseType::Named(_), Output::Enum(values)) => {
            FieldValue::value(ConstValue::Enum(Name::new(values.iter().next()?)))
        }
        (BaseType::Named(_), Output::BuiltIn("Int")) => {
            FieldValue::value(ConstValue::Number(0.into()))
        }
        (BaseType::Named(_), Output::BuiltIn("Float")) => {
            FieldValue::value(ConstValue::Number(0.into()))
        }
        (BaseType::Named(_), Output::BuiltIn("Boolean")) => {
            FieldValue::value(ConstValue::Boolean(false))
        }
        (BaseType::Named(_), Output::BuiltIn(_)) => {
            FieldValue::value(ConstValue::String(String::new()))
        }
        (BaseType::Named(_), Output::Custom) => FieldValue::NULL,
    })
}
