//! Query strings: reading parameters (percent-decoded) and cutting one out.

/// Removes `name=…` pairs from a query string; `None` when nothing is left.
pub fn strip_query_param(query: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or("");
            !(key == name || percent_decodes_to(key, name))
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// Reads a query parameter (percent-decoded name and value).
pub fn query_param(query: &str, name: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name || percent_decodes_to(k, name)).then(|| percent_decode(v))
        })
        .collect()
}

fn percent_decodes_to(encoded: &str, name: &str) -> bool {
    encoded.contains('%') && percent_decode(encoded) == name
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%' && i + 2 < b.len())
            .then(|| std::str::from_utf8(&b[i + 1..i + 3]).ok())
            .flatten()
            .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', None) => out.push(b' '),
            (other, None) => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every `name=value` pair of a query string, both percent-decoded (`+` is a space).
pub fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_stripped_and_read() {
        assert_eq!(
            strip_query_param("api_key=s3cret&x=1", "api_key").as_deref(),
            Some("x=1")
        );
        assert_eq!(
            strip_query_param("x=1&api%5Fkey=s3cret", "api_key").as_deref(),
            Some("x=1")
        );
        assert_eq!(strip_query_param("api_key=a&api_key=b", "api_key"), None);
        assert_eq!(query_param("a=1&api_key=k%2By&z", "api_key"), vec!["k+y"]);
        assert_eq!(query_param("api%5fkey=q", "api_key"), vec!["q"]);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn pairs_are_decoded() {
        assert_eq!(
            pairs(Some("q=caf%C3%A9+au+lait&x&=1")),
            vec![
                ("q".to_string(), "café au lait".to_string()),
                ("x".to_string(), String::new()),
                (String::new(), "1".to_string())
            ]
        );
        assert!(pairs(None).is_empty());
    }
}
