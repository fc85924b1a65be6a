use std::path::PathBuf;

use super::*;

const GATEWAY: &str = "\
server:
  listen: 127.0.0.1:8080
backends:
  orders:
    url: http://127.0.0.1:9101
  users:
    url: http://127.0.0.1:9102/api/
";

fn sources(gateway: &str, routes: &[(&str, &str)]) -> Sources {
    Sources {
        dir: PathBuf::from("."),
        gateway: Source {
            name: "gateway.yaml".into(),
            text: gateway.into(),
        },
        routes: routes
            .iter()
            .map(|(n, t)| Source {
                name: format!("routes/{n}"),
                text: t.to_string(),
            })
            .collect(),
        files: Vec::new(),
    }
}

fn no_vars(_: &str) -> Option<String> {
    None
}

fn load_ok(gateway: &str, routes: &[(&str, &str)]) -> Config {
    match load(&sources(gateway, routes), &no_vars) {
        Ok(config) => config,
        Err(e) => panic!("{e}"),
    }
}

fn errors(gateway: &str, routes: &[(&str, &str)]) -> Vec<String> {
    match load(&sources(gateway, routes), &no_vars) {
        Ok(_) => Vec::new(),
        Err(e) => e.diagnostics.iter().map(|d| d.to_string()).collect(),
    }
}

const WEB: &str = "\
team: web
prefix: /web
routes:
  - id: order
    path: /orders/{id}
    methods: [GET]
    proxy: { backend: orders, path: \"/v2/orders/{id}\" }
  - id: hello
    path: /hello
    static: { body: { hi: there } }
";

#[test]
fn a_valid_config_resolves() {
    let config = load(&sources(GATEWAY, &[("web.yaml", WEB)]), &no_vars).unwrap();
    assert_eq!(config.routes.len(), 2);
    assert_eq!(config.routes[0].pattern.as_str(), "/web/orders/{id}");
    assert_eq!(config.backends[1].instances[0].base_path, "/api");
    assert_eq!(config.teams[0].prefix, "/web");
    assert_eq!(config.routes[0].origin, "routes/web.yaml:4");
}

#[test]
fn every_error_is_reported_at_once_with_file_line_and_key() {
    let bad_gateway = "\
server:
  listen: nowhere
  max_body: 10 parsecs
backends:
  orders:
    url: http://127.0.0.1:9101
    timeout: fast
  users:
    url: http://127.0.0.1:9102
    colour: blue
";
    let bad_web = "\
team: web
prefix: /web
routes:
  - id: a
    path: /a
    proxy: { backend: nope }
  - id: b
    path: /b
    prozy: { backend: users }
  - id: c
    path: /c
    proxy: { backend: users }
    static: { body: x }
";
    let errs = errors(bad_gateway, &[("web.yaml", bad_web)]);
    let all = errs.join("\n");
    assert!(
        all.contains("gateway.yaml:3: server.max_body: invalid size"),
        "{all}"
    );
    assert!(
        all.contains("gateway.yaml:7: backends.orders.timeout: invalid duration"),
        "{all}"
    );
    assert!(
        all.contains("gateway.yaml:10: backends.users.colour: unknown field `colour`"),
        "{all}"
    );
    assert!(
        all.contains("routes/web.yaml:9: routes[1].prozy: unknown field `prozy`"),
        "{all}"
    );
    assert!(
        all.contains("routes/web.yaml:10: routes[2]: a route needs exactly one handler"),
        "{all}"
    );
    // `orders` was dropped for its own error: `nope` is unknown, `orders` is not reported.
    assert!(
        all.contains("routes/web.yaml:6: routes[0].proxy.backend: unknown backend `nope`"),
        "{all}"
    );
}

#[test]
fn unset_variables_are_errors_and_set_ones_expand() {
    let gw =
        "backends:\n  orders:\n    url: ${ORDERS_URL}\n  users:\n    url: http://${USERS_HOST}:1\n";
    let errs = errors(gw, &[]);
    assert!(
        errs.iter().any(|e| e.contains(
            "gateway.yaml:3: backends.orders.url: environment variable `ORDERS_URL` not set"
        )),
        "{errs:?}"
    );
    let vars = |n: &str| match n {
        "ORDERS_URL" => Some("http://127.0.0.1:1".to_string()),
        "USERS_HOST" => Some("10.0.0.1".to_string()),
        _ => None,
    };
    let config = load(&sources(gw, &[]), &vars).unwrap();
    assert_eq!(
        config.backends[1].instances[0].authority.as_str(),
        "10.0.0.1:1"
    );
}

#[test]
fn two_files_with_one_prefix() {
    let other = "team: shop\nprefix: /web\nroutes: []\n";
    let errs = errors(GATEWAY, &[("web.yaml", WEB), ("shop.yaml", other)]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("routes/shop.yaml:2: prefix: prefix `/web` is already owned by routes/web.yaml (team web)"), "{errs:?}");
}

#[test]
fn duplicate_route_ids_name_both_places() {
    let mobile =
        "team: mobile\nprefix: /mobile\nroutes:\n  - id: order\n    path: /o\n    static: {}\n";
    let errs = errors(GATEWAY, &[("web.yaml", WEB), ("mobile.yaml", mobile)]);
    assert!(
        errs.iter()
            .any(|e| e.contains("route id `order` is already used at routes/web.yaml:4")),
        "{errs:?}"
    );
}

#[test]
fn overlapping_routes_name_both_places() {
    let web = "team: web\nprefix: /web\nroutes:\n  - id: a\n    path: /o/{id}\n    static: {}\n  - id: b\n    path: /o/{name}\n    methods: [GET]\n    static: {}\n";
    let errs = errors(GATEWAY, &[("web.yaml", web)]);
    assert!(
        errs.iter().any(
            |e| e.contains("routes/web.yaml:8: routes[1].path: route `b`")
                && e.contains("route `a` (/web/o/{id} at routes/web.yaml:4)")
        ),
        "{errs:?}"
    );
    // The same path under different methods is fine.
    let web = "team: web\nprefix: /web\nroutes:\n  - id: a\n    path: /o\n    methods: [GET]\n    static: {}\n  - id: b\n    path: /o\n    methods: [POST]\n    static: {}\n";
    assert!(errors(GATEWAY, &[("web.yaml", web)]).is_empty());
}

#[test]
fn routes_outside_their_prefix() {
    let legacy = "team: legacy\nprefix: /\nroutes:\n  - id: all\n    path: /{*rest}\n    proxy: { backend: orders }\n  - id: grab\n    path: /web/x\n    static: {}\n";
    let errs = errors(GATEWAY, &[("web.yaml", WEB), ("legacy.yaml", legacy)]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("routes/legacy.yaml:8: routes[1].path: path /web/x lies under prefix `/web`, which routes/web.yaml (team web) owns"), "{errs:?}");
    let escape =
        "team: web\nprefix: /web\nroutes:\n  - id: up\n    path: /../admin\n    static: {}\n";
    let errs = errors(GATEWAY, &[("web.yaml", escape)]);
    assert!(errs[0].contains("may not contain `.` or `..`"), "{errs:?}");
}

#[test]
fn unknown_backend_names_both_places() {
    let web = "team: web\nprefix: /web\nroutes:\n  - id: a\n    path: /a\n    proxy: { backend: ordrs }\n";
    let errs = errors(GATEWAY, &[("web.yaml", web)]);
    assert_eq!(errs, vec!["routes/web.yaml:6: routes[0].proxy.backend: unknown backend `ordrs`; gateway.yaml:3 defines: orders, users".to_string()]);
}

#[test]
fn otlp_endpoints_are_checked() {
    let gw = format!("{GATEWAY}telemetry: {{ otlp_endpoint: \"http://collector:4318/otlp/\" }}\n");
    let config = load_ok(&gw, &[]);
    let otlp = config.telemetry.otlp.unwrap();
    assert_eq!(otlp.endpoint, "http://collector:4318/otlp/v1/traces");
    assert_eq!(otlp.service_name, "portico");
    assert_eq!(config.telemetry.trace_sampling, 1.0);
    let gw = format!(
        "{GATEWAY}telemetry: {{ otlp_endpoint: \"https://c.example/v1/traces\", trace_sampling: 10% }}\n"
    );
    let config = load_ok(&gw, &[]);
    assert_eq!(
        config.telemetry.otlp.unwrap().endpoint,
        "https://c.example/v1/traces"
    );
    assert!((config.telemetry.trace_sampling - 0.1).abs() < 1e-9);
    let gw = format!("{GATEWAY}telemetry: {{ otlp_endpoint: \"udp://c:4318\" }}\n");
    let all = errors(&gw, &[]).join("\n");
    assert!(
        all.contains("gateway.yaml")
            && all
                .contains("telemetry.otlp_endpoint: `udp://c:4318` is not a usable OTLP endpoint"),
        "{all}"
    );
}

#[test]
fn cache_settings_are_checked() {
    let gw = format!("{GATEWAY}cache: {{ max_size: 1KiB, max_entry_size: 2MiB }}\n");
    let web = "team: web\nprefix: /web\nauth: none\nroutes:\n  - id: a\n    path: /a\n    proxy: { backend: orders }\n    cache: { ttl: 0s, vary: [\"bad header\"], scope: private, statuses: [200, 206, 304, 700] }\n  - id: b\n    path: /b\n    methods: [POST]\n    proxy: { backend: orders }\n    cache: { ttl: 5s, stale_if_error: 2d }\n";
    let all = errors(&gw, &[("web.yaml", web)]).join("\n");
    for expect in [
        "gateway.yaml:8: cache.max_size: must be at least 64KiB",
        "cache.max_entry_size: must be more than 0 and at most `max_size`",
        "routes[0].cache.ttl: must be more than 0",
        "routes[0].cache.vary[0]: `bad header` is not a header name",
        "routes[0].cache.scope: `private` keeps one entry per authenticated caller, but this route does not authenticate",
        "routes[0].cache.statuses[1]: 206 cannot be cached",
        "routes[0].cache.statuses[2]: 304 cannot be cached",
        "routes[0].cache.statuses[3]: 700 cannot be cached",
        "routes[1].cache: only GET and HEAD answers are cached, and this route allows neither",
        "routes[1].cache.stale_if_error: must be at most 1d",
    ] {
        assert!(all.contains(expect), "missing {expect:?} in\n{all}");
    }
    let gw = format!("{GATEWAY}cache: {{ max_size: 1MiB }}\n");
    let web = "team: web\nprefix: /web\nauth: none\nroutes:\n  - id: a\n    path: /a\n    proxy: { backend: orders }\n    cache: { ttl: 5s, vary: [Accept-Language, accept-language], stale_if_error: 1m }\n";
    let config = load(&sources(&gw, &[("web.yaml", web)]), &no_vars).expect("valid");
    let cache = config.routes[0].cache.as_ref().expect("cached");
    assert_eq!(
        cache.vary,
        vec![http::HeaderName::from_static("accept-language")]
    );
    assert!(!cache.private, "public by default on a route without auth");
    assert_eq!(config.cache.max_entry_size, 1 << 20);
}

#[test]
fn backend_resilience_settings_are_checked() {
    let gw = format!(
        "{GATEWAY}    breaker: {{ window: 10s }}\n    retry: {{ attempts: 2, on: [connect, teapot, 503], backoff: 1s, max_backoff: 10ms }}\n    hedge: {{ after: 0s }}\n    fault: {{ abort: 200, delay_percent: 5 }}\n    outlier: {{ consecutive_5xx: 0, eject_for: 1s }}\n    health: {{ path: healthz, interval: 1s, unhealthy_after: 0 }}\n    max_concurrency: 0\n"
    );
    let errs = errors(&gw, &[]);
    let all = errs.join("\n");
    for expect in [
        "backends.users.breaker: give `consecutive_failures` and/or `failure_rate`",
        "backends.users.retry.on[1]: `teapot` is not one of connect, reset, timeout",
        "backends.users.retry.max_backoff: must not be less than `backoff`",
        "backends.users.hedge.after: must be more than 0",
        "backends.users.fault.abort: `200` is not an error status (400–599)",
        "backends.users.fault.delay_percent: needs `delay`",
        "backends.users.outlier.consecutive_5xx: must be at least 1",
        "backends.users.health.path: `healthz` is not a path starting with /",
        "backends.users.health.unhealthy_after: must be at least 1",
        "backends.users.max_concurrency: must be at least 1",
    ] {
        assert!(all.contains(expect), "missing {expect:?} in\n{all}");
    }
    let gw = format!("{GATEWAY}    balance: random\n");
    let all = errors(&gw, &[]).join("\n");
    assert!(
        all.contains("backends.users.balance") && all.contains("round_robin"),
        "{all}"
    );
}

#[test]
fn backend_resilience_settings_resolve_with_defaults() {
    let gw = format!(
        "{GATEWAY}    breaker: {{ consecutive_failures: 5 }}\n    retry: {{ attempts: 2 }}\n    fault: {{ abort: 503 }}\n    balance: least_request\n"
    );
    let config = load(&sources(&gw, &[("web.yaml", WEB)]), &no_vars).expect("valid");
    let b = config.backends.iter().find(|b| b.name == "users").unwrap();
    let breaker = b.breaker.as_ref().unwrap();
    assert_eq!(breaker.consecutive_failures, Some(5));
    assert_eq!(breaker.open_for, std::time::Duration::from_secs(10));
    assert_eq!(breaker.half_open_probes, 1);
    assert!(
        breaker.on.connect
            && breaker.on.timeout
            && breaker.on.status(500)
            && breaker.on.status(599)
    );
    assert!(!breaker.on.status(404));
    let retry = b.retry.as_ref().unwrap();
    assert_eq!(retry.backoff, std::time::Duration::from_millis(25));
    assert_eq!(retry.max_backoff, std::time::Duration::from_millis(250));
    assert!((retry.budget - 0.2).abs() < 1e-9);
    assert!(retry.on.connect && retry.on.reset && retry.on.timeout);
    assert!(retry.on.status(502) && retry.on.status(503) && retry.on.status(504));
    assert!(!retry.on.status(500) && !retry.on.status(429));
    assert_eq!(
        b.fault.as_ref().unwrap().abort,
        Some((http::StatusCode::SERVICE_UNAVAILABLE, 1.0))
    );
    assert_eq!(b.balance, crate::config::Balance::LeastRequest);
}

#[test]
fn proxy_path_params_must_exist() {
    let web = "team: web\nprefix: /web\nroutes:\n  - id: a\n    path: /a/{id}\n    proxy: { backend: orders, path: \"/x/{idd}\" }\n";
    let errs = errors(GATEWAY, &[("web.yaml", web)]);
    assert!(
        errs[0].contains("`{idd}` is not a parameter of the route path /web/a/{id}"),
        "{errs:?}"
    );
}

#[test]
fn unquoted_params_in_flow_mappings_get_a_hint() {
    let web = "team: web\nprefix: /web\nroutes:\n  - id: a\n    path: /a/{id}\n    proxy: { backend: orders, path: /x/{id} }\n";
    let errs = errors(GATEWAY, &[("web.yaml", web)]);
    assert!(
        errs[0].contains("routes/web.yaml:6") && errs[0].contains("quote"),
        "{errs:?}"
    );
}

#[test]
fn split_and_shadow_are_checked() {
    let web = "team: web\nprefix: /web\nroutes:\n  - id: a\n    path: /a\n    split:\n      targets: [{ backend: orders, weight: 0 }, { backend: orders, weight: 0 }]\n      sticky: \"session:x\"\n      override: \"X-Target\"\n    shadow: { backend: nope, methods: [get], compare: { ignore: [updated_at] } }\n  - id: b\n    path: /b\n    static: {}\n    shadow: { backend: users }\n  - id: c\n    path: /c\n    split: { targets: [{ backend: users, weight: 1 }], sticky: \"claim:sub\" }\n";
    let all = errors(GATEWAY, &[("web.yaml", web)]).join("\n");
    for expect in [
        "routes[0].split.targets: the weights add up to 0",
        "routes[0].split.targets[1].backend: backend `orders` is a target twice",
        "routes[0].split.sticky: `session:x`: expected cookie:NAME, header:NAME, claim:NAME or ip",
        "routes[0].split.override: `X-Target`: expected header:NAME",
        "routes[0].shadow.backend: unknown backend `nope`",
        "routes[0].shadow.methods[0]: `get` is not a method",
        "routes[0].shadow.compare.ignore[0]: `updated_at` is not a JSON pointer",
        "routes[1].shadow: `shadow` goes beside `proxy` or `split`",
        "routes[2].split.sticky: `claim:` stickiness needs an authenticated route (set `auth` to a provider)",
    ] {
        assert!(all.contains(expect), "missing {expect:?} in\n{all}");
    }
}

#[test]
fn schema_covers_both_files() {
    let schema = json_schema();
    assert!(schema["gateway.yaml"]["properties"]["backends"].is_object());
    assert!(schema["routes/<team>.yaml"]["properties"]["routes"].is_object());
}
