//! Persisted queries: Automatic Persisted Queries (the sha256 hash protocol) with a
//! bounded store, and the allowlist mode where only listed operations run.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

/// The most query text the APQ store keeps, in bytes.
pub(super) const APQ_STORE_BYTES: u64 = 8 * 1024 * 1024;

/// How an endpoint treats persisted queries.
#[derive(Debug)]
pub(super) enum Persisted {
    /// Full query text only; a hash alone is refused.
    Off,
    /// APQ: a hash alone runs the query stored under it; a query with its hash is stored.
    Apq(moka::sync::Cache<String, Arc<str>>),
    /// Only these operations run, by id or by the sha256 of their text.
    Allowlist {
        by_id: HashMap<String, Arc<str>>,
        by_hash: HashMap<String, Arc<str>>,
    },
}

/// Why a request's document could not be found or may not run.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// APQ: the hash is not in the store (the client sends the query with it next).
    NotFound,
    /// A hash alone, but APQ is off.
    NotSupported,
    /// The hash does not match the query text.
    HashMismatch,
    /// Allowlist: not a listed operation.
    NotInList,
    /// No query at all.
    Missing,
}

impl Refusal {
    /// `(code, message)` for the GraphQL error.
    pub(super) fn describe(&self) -> (&'static str, &'static str) {
        match self {
            Refusal::NotFound => ("PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound"),
            Refusal::NotSupported => (
                "PERSISTED_QUERY_NOT_SUPPORTED",
                "PersistedQueryNotSupported",
            ),
            Refusal::HashMismatch => (
                "PERSISTED_QUERY_HASH_MISMATCH",
                "provided sha does not match query",
            ),
            Refusal::NotInList => (
                "PERSISTED_QUERY_NOT_IN_LIST",
                "this endpoint runs only listed operations",
            ),
            Refusal::Missing => ("BAD_REQUEST", "the request has no `query`"),
        }
    }
}

/// The hex sha256 of `text`.
pub(super) fn sha256_hex(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Persisted {
    /// A fresh APQ store.
    pub(super) fn apq() -> Self {
        Persisted::Apq(
            moka::sync::Cache::builder()
                .max_capacity(APQ_STORE_BYTES)
                .weigher(|k: &String, v: &Arc<str>| {
                    u32::try_from(k.len() + v.len()).unwrap_or(u32::MAX)
                })
                .build(),
        )
    }

    /// Reads an allowlist: `{"ID": "query …"}`, or an Apollo persisted query manifest
    /// (`{"operations": [{"id", "body"}]}`).
    pub(super) fn allowlist(json: &Value) -> Result<Self, String> {
        let mut list: Vec<(String, String)> = Vec::new();
        match json {
            Value::Object(m) if m.get("operations").is_some_and(Value::is_array) => {
                for (i, op) in m["operations"].as_array().into_iter().flatten().enumerate() {
                    let id = op.get("id").and_then(Value::as_str);
                    let body = op.get("body").and_then(Value::as_str);
                    match (id, body) {
                        (Some(id), Some(body)) => list.push((id.into(), body.into())),
                        _ => return Err(format!("operations[{i}] needs `id` and `body`")),
                    }
                }
            }
            Value::Object(m) => {
                for (id, body) in m {
                    let Some(body) = body.as_str() else {
                        return Err(format!("`{id}`: the operation's text must be a string"));
                    };
                    list.push((id.clone(), body.into()));
                }
            }
            _ => {
                return Err(
                    "expected an object of id → operation text, or an Apollo manifest".into(),
                );
            }
        }
        if list.is_empty() {
            return Err("the allowlist is empty".into());
        }
        let mut by_id = HashMap::new();
        let mut by_hash = HashMap::new();
        for (id, body) in list {
            let body: Arc<str> = body.into();
            by_hash.insert(sha256_hex(&body), body.clone());
            by_id.insert(id, body);
        }
        Ok(Persisted::Allowlist { by_id, by_hash })
    }

    /// The document to run: from the request's `query`, or by its hash (APQ
    /// `extensions.persistedQuery.sha256Hash`) or id (`documentId`).
    pub(super) fn document(
        &self,
        query: Option<&str>,
        hash: Option<&str>,
        id: Option<&str>,
    ) -> Result<Arc<str>, Refusal> {
        match self {
            Persisted::Off => match (query, hash.or(id)) {
                (Some(q), _) => Ok(q.into()),
                (None, Some(_)) => Err(Refusal::NotSupported),
                (None, None) => Err(Refusal::Missing),
            },
            Persisted::Apq(store) => match (query, hash) {
                (Some(q), Some(h)) => {
                    if !sha256_hex(q).eq_ignore_ascii_case(h) {
                        return Err(Refusal::HashMismatch);
                    }
                    Ok(q.into())
                }
                (Some(q), None) => Ok(q.into()),
                (None, Some(h)) => store.get(&h.to_ascii_lowercase()).ok_or(Refusal::NotFound),
                (None, None) if id.is_some() => Err(Refusal::NotSupported),
                (None, None) => Err(Refusal::Missing),
            },
            Persisted::Allowlist { by_id, by_hash } => {
                if let Some(q) = query {
                    let h = sha256_hex(q);
                    if hash.is_some_and(|given| !given.eq_ignore_ascii_case(&h)) {
                        return Err(Refusal::HashMismatch);
                    }
                    return by_hash.get(&h).cloned().ok_or(Refusal::NotInList);
                }
                let key = id.or(hash).ok_or(Refusal::Missing)?;
                by_id
                    .get(key)
                    .or_else(|| by_hash.get(&key.to_ascii_lowercase()))
                    .cloned()
                    .ok_or(Refusal::NotInList)
            }
        }
    }

    /// APQ: keeps a query that ran (it passed the limits and validation) under its hash.
    pub(super) fn remember(&self, query: &str, hash: Option<&str>) {
        if let (Persisted::Apq(store), Some(h)) = (self, hash) {
            store.insert(h.to_ascii_lowercase(), query.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn apq_stores_by_hash_and_checks_it() {
        let p = Persisted::apq();
        let q = "{ orders { id } }";
        let h = sha256_hex(q);
        assert_eq!(p.document(None, Some(&h), None), Err(Refusal::NotFound));
        assert_eq!(
            p.document(Some(q), Some("00"), None),
            Err(Refusal::HashMismatch)
        );
        assert_eq!(&*p.document(Some(q), Some(&h), None).unwrap(), q);
        p.remember(q, Some(&h));
        assert_eq!(
            &*p.document(None, Some(&h.to_uppercase()), None).unwrap(),
            q
        );
    }

    #[test]
    fn allowlist_runs_listed_operations_only() {
        let q = "query Orders { orders { id } }";
        let p = Persisted::allowlist(&json!({ "orders-v1": q })).unwrap();
        assert_eq!(&*p.document(None, None, Some("orders-v1")).unwrap(), q);
        assert_eq!(&*p.document(Some(q), None, None).unwrap(), q);
        assert_eq!(&*p.document(None, Some(&sha256_hex(q)), None).unwrap(), q);
        assert_eq!(
            p.document(Some("{ orders { id total } }"), None, None),
            Err(Refusal::NotInList)
        );
        assert_eq!(
            p.document(None, None, Some("nope")),
            Err(Refusal::NotInList)
        );
        let manifest = json!({"format": "apollo-persisted-query-manifest", "version": 1,
            "operations": [{"id": "abc", "name": "Orders", "type": "query", "body": q}]});
        let p = Persisted::allowlist(&manifest).unwrap();
        assert_eq!(&*p.document(None, None, Some("abc")).unwrap(), q);
        assert!(Persisted::allowlist(&json!([])).is_err());
        assert_eq!(
            Persisted::Off.document(None, Some("ab"), None),
            Err(Refusal::NotSupported)
        );
    }
}
