//! The route table: one radix tree (matchit) per method.
//!
//! A route is registered under each of its methods (every method when it names none),
//! so `POST /web/orders/1` can fall through to a catch-all that allows POST even though a
//! more specific GET-only route has that path. A route that allows GET also answers HEAD
//! unless another route claims HEAD for the same path.

use std::collections::HashMap;

use http::Method;

use super::Pattern;

/// The methods with a tree of their own; everything else shares the last bucket.
const METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
    Method::TRACE,
    Method::CONNECT,
];
const OTHER: usize = METHODS.len();
const BUCKETS: usize = METHODS.len() + 1;

fn bucket(method: &Method) -> usize {
    // Compare the common ones directly: cheaper than a search.
    if *method == Method::GET {
        return 0;
    }
    METHODS.iter().position(|m| m == method).unwrap_or(OTHER)
}

/// Two routes that match the same method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Index of the route registered first.
    pub existing: usize,
    /// Index of the route that clashed with it.
    pub new: usize,
    /// The method they share (`None`: an extension method).
    pub method: Option<Method>,
}

/// The result of a lookup.
#[derive(Debug)]
pub enum Lookup<'t, 'p, T> {
    /// A route matched.
    Found {
        /// The route's value.
        value: &'t T,
        /// Path parameters, as matched (still percent-encoded).
        params: matchit::Params<'t, 'p>,
    },
    /// The path exists only for other methods.
    MethodNotAllowed {
        /// The methods that would match.
        allow: Vec<Method>,
    },
    /// No route has this path.
    NotFound,
}

/// A route table mapping (method, path) to a value.
#[derive(Debug)]
pub struct Table<T> {
    routers: Vec<matchit::Router<usize>>,
    values: Vec<T>,
    /// Whether a route exists that accepts extension methods.
    has_other: bool,
}

impl<T> Table<T> {
    /// Builds the table. Routes that would match the same method and path are reported
    /// as conflicts (all of them), and the table is not built.
    pub fn build(
        entries: impl IntoIterator<Item = (Pattern, Option<Vec<Method>>, T)>,
    ) -> Result<Table<T>, Vec<Conflict>> {
        let mut routers: Vec<matchit::Router<usize>> =
            (0..BUCKETS).map(|_| matchit::Router::new()).collect();
        let mut owners: Vec<HashMap<String, usize>> = vec![HashMap::new(); BUCKETS];
        let mut values = Vec::new();
        let mut conflicts = Vec::new();
        let mut implied: Vec<(usize, String, usize)> = Vec::new();
        let mut has_other = false;
        for (index, (pattern, methods, value)) in entries.into_iter().enumerate() {
            values.push(value);
            let buckets: Vec<usize> = match &methods {
                None => (0..BUCKETS).collect(),
                Some(ms) => {
                    let mut b: Vec<usize> = ms.iter().map(bucket).collect();
                    b.sort_unstable();
                    b.dedup();
                    b
                }
            };
            has_other |= buckets.contains(&OTHER);
            let (main, rest_forms) = pattern.router_forms();
            for &b in &buckets {
                match routers[b].insert(main.clone(), index) {
                    Ok(()) => {
                        owners[b].insert(main.clone(), index);
                    }
                    Err(matchit::InsertError::Conflict { with }) => conflicts.push(Conflict {
                        existing: owners[b].get(&with).copied().unwrap_or(index),
                        new: index,
                        method: METHODS.get(b).cloned(),
                    }),
                    Err(_) => conflicts.push(Conflict {
                        existing: index,
                        new: index,
                        method: METHODS.get(b).cloned(),
                    }),
                }
                for form in &rest_forms {
                    implied.push((b, form.clone(), index));
                }
            }
            if buckets.contains(&0) && !buckets.contains(&1) {
                implied.push((1, main.clone(), index));
                for form in &rest_forms {
                    implied.push((1, form.clone(), index));
                }
            }
        }
        if !conflicts.is_empty() {
            return Err(conflicts);
        }
        // Implied forms never displace an explicit route: insert them last, ignore clashes.
        for (b, form, index) in implied {
            let _ = routers[b].insert(form, index);
        }
        Ok(Table {
            routers,
            values,
            has_other,
        })
    }

    /// Looks up a (normalised) path for a method.
    pub fn lookup<'t, 'p>(&'t self, method: &Method, path: &'p str) -> Lookup<'t, 'p, T> {
        let b = bucket(method);
        if let Ok(m) = self.routers[b].at(path) {
            return Lookup::Found {
                value: &self.values[*m.value],
                params: m.params,
            };
        }
        let mut allow = Vec::new();
        for (i, m) in METHODS.iter().enumerate() {
            if i != b && self.routers[i].at(path).is_ok() {
                allow.push(m.clone());
            }
        }
        if allow.is_empty() && !(self.has_other && self.routers[OTHER].at(path).is_ok()) {
            Lookup::NotFound
        } else {
            Lookup::MethodNotAllowed { allow }
        }
    }

    /// Every value, in registration order.
    pub fn values(&self) -> &[T] {
        &self.values
    }
}
