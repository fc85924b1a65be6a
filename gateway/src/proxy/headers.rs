//! Header rules for proxying: hop-by-hop removal and the `X-Forwarded-*` family.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};
use ipnet::IpNet;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Is this a WebSocket upgrade request (`Connection: upgrade` + `Upgrade: websocket`)?
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    upgrade && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Removes hop-by-hop headers: `Connection` and every header it names, `Keep-Alive`,
/// `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, `Proxy-Authorization`,
/// `Proxy-Connection`. With `websocket`, `Upgrade` and `Connection: upgrade` stay.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, websocket: bool) {
    // One pass over the names finds what must go; most requests carry none of them,
    // and then nothing is hashed or removed at all.
    let mut doomed: Vec<HeaderName> = Vec::new();
    let mut connection = false;
    for name in headers.keys() {
        match name.as_str() {
            "connection" => connection = true,
            "keep-alive"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "proxy-authorization"
            | "proxy-connection" => doomed.push(name.clone()),
            "upgrade" if !websocket => doomed.push(name.clone()),
            _ => {}
        }
    }
    if connection {
        for v in headers.get_all(header::CONNECTION) {
            let named = v
                .to_str()
                .unwrap_or("")
                .split(',')
                .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok());
            doomed.extend(named.filter(|n| !(websocket && *n == header::UPGRADE)));
        }
        doomed.push(header::CONNECTION);
    }
    for name in &doomed {
        headers.remove(name);
    }
    if websocket {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Removes client-sent copies of headers the gateway sets itself: the identity headers
/// in `protected` (`forward_claims`, `forward`), and any header with an underscore that
/// some servers would read as a protected or forwarding header (`X_User_Id`,
/// `X_Forwarded_For`). Most requests have none of them: one pass, nothing removed.
pub fn strip_protected(headers: &mut HeaderMap, protected: &[HeaderName]) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        let text = name.as_str();
        if protected.contains(name) {
            doomed.push(name.clone());
        } else if text.contains('_') {
            let dashed = text.replace('_', "-");
            let aliases = protected.iter().any(|p| p.as_str() == dashed)
                || ALIASABLE.contains(&dashed.as_str())
                || SPOOFABLE.contains(&dashed.as_str());
            if aliases {
                doomed.push(name.clone());
            }
        }
    }
    for name in &doomed {
        headers.remove(name);
    }
}

/// Headers whose underscore spelling must not pass (besides [`SPOOFABLE`]).
const ALIASABLE: [&str; 8] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-request-id",
    "authorization",
    "traceparent",
    "content-length",
];

/// Is `ip` one of the trusted proxies?
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client's address: the peer, or for a trusted peer the rightmost address in
/// `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    if trusted.is_empty() || !is_trusted(peer, trusted) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for v in headers.get_all(&X_FORWARDED_FOR) {
        let Ok(s) = v.to_str() else { return peer };
        for part in s.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip),
                // A malformed chain cannot be trusted past this point.
                Err(_) => hops.clear(),
            }
        }
    }
    hops.into_iter()
        .rev()
        .find(|ip| !is_trusted(*ip, trusted))
        .unwrap_or(peer)
}

/// Sets `X-Forwarded-For`, `-Proto` and `-Host` for the backend. From a trusted peer the
/// peer is appended to its chain and its `-Proto`/`-Host` are kept; from anyone else
/// they are replaced, and `Forwarded` is dropped.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    trusted_peer: bool,
    proto: &'static str,
    host: Option<HeaderValue>,
) {
    let peer_text = peer.to_string();
    let xff = if trusted_peer && headers.contains_key(&X_FORWARDED_FOR) {
        let mut chain = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        chain.push_str(", ");
        chain.push_str(&peer_text);
        chain
    } else {
        peer_text
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    if !(trusted_peer && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    if !(trusted_peer && headers.contains_key(&X_FORWARDED_HOST)) {
        match host {
            Some(h) => {
                headers.insert(X_FORWARDED_HOST.clone(), h);
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }
    if !trusted_peer {
        // `Forwarded` and the other spellings of "the client's address" that frameworks
        // believe; found in one pass, removed only when present.
        let spoofed: Vec<HeaderName> = headers
            .keys()
            .filter(|n| n.as_str() == "forwarded" || SPOOFABLE.contains(&n.as_str()))
            .cloned()
            .collect();
        for name in &spoofed {
            headers.remove(name);
        }
    }
}

/// Client-address and forwarding headers an untrusted client must not set.
const SPOOFABLE: [&str; 8] = [
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-original-forwarded-for",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "5"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic x"),
            ("upgrade", "h2c"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn protected_headers_go_in_every_spelling() {
        let protected = [HeaderName::from_static("x-user-id")];
        let mut h = map(&[
            ("X-User-Id", "mallory"),
            ("x_user_id", "mallory"),
            ("X_USER_ID", "mallory"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x_real_ip", "6.6.6.6"),
            ("x_custom_thing", "kept"),
            ("x-kept", "1"),
        ]);
        strip_protected(&mut h, &protected);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-kept", "x_custom_thing"]);
    }

    #[test]
    fn websocket_upgrade_survives() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_websocket_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn client_ip_is_rightmost_untrusted() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = map(&[("x-forwarded-for", "1.1.1.1, 2.2.2.2, 10.0.0.5")]);
        assert_eq!(
            client_ip(&h, "10.0.0.1".parse().unwrap(), &trusted),
            "2.2.2.2".parse::<IpAddr>().unwrap()
        );
        // An untrusted peer's header is not believed.
        assert_eq!(
            client_ip(&h, "3.3.3.3".parse().unwrap(), &trusted),
            "3.3.3.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn forwarded_headers_from_untrusted_peers_are_replaced() {
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-host", "evil"),
            ("forwarded", "for=6.6.6.6"),
        ]);
        set_forwarded(
            &mut h,
            "9.9.9.9".parse().unwrap(),
            false,
            "http",
            Some(HeaderValue::from_static("shop")),
        );
        assert_eq!(h["x-forwarded-for"], "9.9.9.9");
        assert_eq!(h["x-forwarded-host"], "shop");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(!h.contains_key("forwarded"));
        let mut h = map(&[
            ("x-real-ip", "6.6.6.6"),
            ("true-client-ip", "6.6.6.6"),
            ("x-forwarded-port", "1"),
        ]);
        set_forwarded(&mut h, "9.9.9.9".parse().unwrap(), false, "http", None);
        assert!(
            !h.contains_key("x-real-ip")
                && !h.contains_key("true-client-ip")
                && !h.contains_key("x-forwarded-port")
        );
        let mut h = map(&[("x-forwarded-for", "1.1.1.1")]);
        set_forwarded(&mut h, "10.0.0.1".parse().unwrap(), true, "https", None);
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 10.0.0.1");
    }
}
