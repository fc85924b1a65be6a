//! Comparing a primary and a shadow answer: status, then body — JSON as values (member
//! order never matters) with ignored JSON pointers removed, anything else byte for byte.

use http::StatusCode;
use serde_json::Value;

/// The result of one comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Same status and body.
    Match,
    /// They differ; a compact description of how (at most a few differences).
    Mismatch(String),
}

const MAX_DIFFS: usize = 8;

/// Compares two answers.
pub fn compare(
    primary: (StatusCode, &[u8]),
    shadow: (StatusCode, &[u8]),
    ignore: &[String],
) -> Outcome {
    let mut diffs = Vec::new();
    if primary.0 != shadow.0 {
        diffs.push(format!(
            "status: {} != {}",
            primary.0.as_u16(),
            shadow.0.as_u16()
        ));
    }
    match (
        serde_json::from_slice::<Value>(primary.1),
        serde_json::from_slice::<Value>(shadow.1),
    ) {
        (Ok(mut a), Ok(mut b)) => {
            for pointer in ignore {
                remove(&mut a, pointer);
                remove(&mut b, pointer);
            }
            diff("", &a, &b, &mut diffs);
        }
        _ if primary.1 != shadow.1 => diffs.push(format!(
            "body: {} bytes != {} bytes (not both JSON)",
            primary.1.len(),
            shadow.1.len()
        )),
        _ => {}
    }
    if diffs.is_empty() {
        Outcome::Match
    } else {
        let more = diffs.len().saturating_sub(MAX_DIFFS);
        diffs.truncate(MAX_DIFFS);
        if more > 0 {
            diffs.push(format!("... and {more} more"));
        }
        Outcome::Mismatch(diffs.join("; "))
    }
}

fn remove(v: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    match v.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.remove(&last);
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < a.len()
            {
                a.remove(i);
            }
        }
        _ => {}
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}…")
    } else {
        s
    }
}

fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if out.len() > MAX_DIFFS * 4 || a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                match y.get(k) {
                    Some(vb) => diff(&p, va, vb, out),
                    None => out.push(format!("{p}: only in primary")),
                }
            }
            for k in y.keys().filter(|k| !x.contains_key(*k)) {
                out.push(format!("{path}/{k}: only in shadow"));
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}/{i}"), va, vb, out);
            }
        }
        _ => out.push(format!(
            "{}: {} != {}",
            if path.is_empty() { "/" } else { path },
            short(a),
            short(b)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_compared_as_values() {
        let ok = StatusCode::OK;
        assert_eq!(
            compare(
                (ok, br#"{"a":1,"b":[1,2]}"#),
                (ok, br#"{"b":[1,2],"a":1}"#),
                &[]
            ),
            Outcome::Match
        );
        let Outcome::Mismatch(d) = compare(
            (ok, br#"{"a":1,"t":5}"#),
            (ok, br#"{"a":2,"t":6}"#),
            &["/t".into()],
        ) else {
            panic!()
        };
        assert_eq!(d, "/a: 1 != 2");
        let Outcome::Mismatch(d) = compare(
            (ok, br#"{"a":1}"#),
            (StatusCode::NOT_FOUND, br#"{"a":1,"x":true}"#),
            &[],
        ) else {
            panic!()
        };
        assert_eq!(d, "status: 200 != 404; /x: only in shadow");
        assert_eq!(compare((ok, b"plain"), (ok, b"plain"), &[]), Outcome::Match);
        assert!(matches!(
            compare((ok, b"plain"), (ok, b"other"), &[]),
            Outcome::Mismatch(_)
        ));
        assert_eq!(
            compare(
                (ok, br#"{"m":{"id":1,"x":2}}"#),
                (ok, br#"{"m":{"id":9,"x":2}}"#),
                &["/m/id".into()]
            ),
            Outcome::Match
        );
    }
}
