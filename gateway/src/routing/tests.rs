use http::Method;

use super::*;

fn table(routes: &[(&str, Option<&[&str]>)]) -> Table<usize> {
    Table::build(routes.iter().enumerate().map(|(i, (p, m))| {
        let methods = m.map(|ms| ms.iter().map(|s| s.parse::<Method>().unwrap()).collect());
        (Pattern::parse(p).unwrap(), methods, i)
    }))
    .unwrap()
}

fn found(t: &Table<usize>, method: &str, path: &str) -> Option<usize> {
    match t.lookup(&method.parse().unwrap(), path) {
        Lookup::Found { value, .. } => Some(*value),
        _ => None,
    }
}

#[test]
fn static_beats_param_beats_rest() {
    let t = table(&[
        ("/{*rest}", None),
        ("/web/orders/{id}", None),
        ("/web/orders/recent", None),
    ]);
    assert_eq!(found(&t, "GET", "/web/orders/recent"), Some(2));
    assert_eq!(found(&t, "GET", "/web/orders/17"), Some(1));
    assert_eq!(found(&t, "GET", "/web/orders/17/items"), Some(0));
    assert_eq!(found(&t, "GET", "/anything"), Some(0));
    assert_eq!(
        found(&t, "GET", "/"),
        Some(0),
        "an empty {{*rest}} matches the root"
    );
}

#[test]
fn method_fallthrough_and_405() {
    let t = table(&[
        ("/web/orders/{id}", Some(&["GET"])),
        ("/partner/pay", Some(&["POST"])),
    ]);
    assert_eq!(
        found(&t, "HEAD", "/web/orders/1"),
        Some(0),
        "GET implies HEAD"
    );
    match t.lookup(&Method::DELETE, "/web/orders/1") {
        Lookup::MethodNotAllowed { allow } => assert_eq!(allow, vec![Method::GET, Method::HEAD]),
        other => panic!("{other:?}"),
    }
    assert!(matches!(t.lookup(&Method::GET, "/nope"), Lookup::NotFound));
    let with_catch_all = table(&[("/web/orders/{id}", Some(&["GET"])), ("/{*rest}", None)]);
    assert_eq!(
        found(&with_catch_all, "POST", "/web/orders/1"),
        Some(1),
        "falls through to the catch-all"
    );
}

#[test]
fn conflicts_are_reported() {
    let err = Table::build([
        (Pattern::parse("/a/{x}").unwrap(), None, 0),
        (
            Pattern::parse("/a/{y}").unwrap(),
            Some(vec![Method::GET]),
            1,
        ),
    ])
    .unwrap_err();
    assert_eq!(err[0].existing, 0);
    assert_eq!(err[0].new, 1);
    // Same path, different methods: no conflict.
    Table::build([
        (Pattern::parse("/a").unwrap(), Some(vec![Method::GET]), 0),
        (Pattern::parse("/a").unwrap(), Some(vec![Method::POST]), 1),
    ])
    .unwrap();
}

#[test]
fn params_are_extracted() {
    let t = table(&[("/orders/{id}/items/{*rest}", None)]);
    match t.lookup(&Method::GET, "/orders/7/items/a/b") {
        Lookup::Found { params, .. } => {
            assert_eq!(params.get("id"), Some("7"));
            assert_eq!(params.get("rest"), Some("a/b"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn patterns() {
    assert!(Pattern::parse("orders").is_err());
    assert!(Pattern::parse("/a//b").is_err());
    assert!(Pattern::parse("/a/../b").is_err());
    assert!(Pattern::parse("/a/{*r}/b").is_err());
    assert!(Pattern::parse("/a/x{id}").is_err());
    assert!(Pattern::parse("/a/{id}/{id}").is_err());
    let p = Pattern::parse("/v2/orders/{id}").unwrap();
    let mut out = String::new();
    p.render(&[("id", "42")], &mut out);
    assert_eq!(out, "/v2/orders/42");
    assert_eq!(
        Pattern::parse("/orders/{id}").unwrap().static_prefix(),
        "/orders"
    );
}

#[test]
fn normalisation() {
    let n = |p: &str| normalize(p).map(|c| c.into_owned());
    assert_eq!(n("/web/orders/1").as_deref(), Some("/web/orders/1"));
    assert_eq!(n("/web/../admin").as_deref(), Some("/admin"));
    assert_eq!(n("/web/%2e%2e/admin").as_deref(), Some("/admin"));
    assert_eq!(n("/web/%2E%2E/%2e%2E/../x").as_deref(), Some("/x"));
    assert_eq!(n("//web///orders").as_deref(), Some("/web/orders"));
    assert_eq!(n("/web/./orders/").as_deref(), Some("/web/orders/"));
    assert_eq!(
        n("/a/%2f/b").as_deref(),
        Some("/a/%2F/b"),
        "encoded slash stays data"
    );
    assert_eq!(n("/%41bc").as_deref(), Some("/Abc"));
    assert_eq!(n("/..").as_deref(), Some("/"));
    assert_eq!(n("/a/.."), Some("/".to_string()));
    assert_eq!(n("/bad%zz"), None);
    assert_eq!(n("/file.txt").as_deref(), Some("/file.txt"));
    assert_eq!(n("/.well-known/x").as_deref(), Some("/.well-known/x"));
}
