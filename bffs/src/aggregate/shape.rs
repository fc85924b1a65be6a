//! Shaping a call's answer: `extract` (a JSON pointer) → `select` → `omit` → `rename`.
//! On an array, select, omit and rename apply to each object element.

use std::collections::BTreeMap;

use serde_json::Value;

/// How a call's answer is shaped.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shape {
    pub(crate) extract: Option<String>,
    pub(crate) select: Option<Vec<String>>,
    pub(crate) omit: Vec<String>,
    pub(crate) rename: BTreeMap<String, String>,
}

impl Shape {
    /// The shaped value; `None` when `extract` points at nothing.
    pub(crate) fn apply(&self, value: Value) -> Option<Value> {
        let value = match &self.extract {
            Some(pointer) => value.pointer(pointer)?.clone(),
            None => value,
        };
        Some(match value {
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.members(v)).collect())
            }
            other => self.members(other),
        })
    }

    fn members(&self, value: Value) -> Value {
        let Value::Object(mut map) = value else {
            return value;
        };
        if let Some(keep) = &self.select {
            map.retain(|k, _| keep.contains(k));
        }
        for k in &self.omit {
            map.remove(k);
        }
        for (from, to) in &self.rename {
            if let Some(v) = map.remove(from) {
                map.insert(to.clone(), v);
            }
        }
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extract_select_omit_rename() {
        let shape = Shape {
            extract: Some("/data".into()),
            select: Some(vec!["id".into(), "name".into(), "secret".into()]),
            omit: vec!["secret".into()],
            rename: [("name".to_string(), "full_name".to_string())].into(),
        };
        let answer = json!({"data": [{"id": 1, "name": "a", "secret": "s", "x": 1}, {"id": 2}, 3]});
        assert_eq!(
            shape.apply(answer).unwrap(),
            json!([{"id": 1, "full_name": "a"}, {"id": 2}, 3])
        );
        assert_eq!(shape.apply(json!({"other": 1})), None);
    }
}
