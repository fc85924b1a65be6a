//! Limits checked before a document is executed (and so before any backend is called):
//! its size, its token count (before parsing), its aliases and root fields (after).
//! Depth and complexity are async-graphql's own checks.

use std::collections::HashSet;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection,
    SelectionSet,
};

/// The deepest nesting of `{`, `[` and `(` a document may have (the parser recurses).
const MAX_NESTING: usize = 64;

/// The number of lexical tokens in `text`, counting up to `max + 1` (also `max + 1` when
/// brackets nest deeper than the parser should be asked to follow).
pub(super) fn tokens(text: &str, max: usize) -> usize {
    let b = text.as_bytes();
    let mut i = 0;
    let mut n = 0;
    let mut depth = 0usize;
    while i < b.len() && n <= max {
        let c = b[i];
        match c {
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return max + 1;
                }
                i += 1;
                n += 1;
            }
            b'}' | b']' | b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
                n += 1;
            }
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if b[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < b.len() && !b[i..].starts_with(b"\"\"\"") {
                    i += if b[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 3;
                n += 1;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                n += 1;
            }
            b'.' if b[i..].starts_with(b"...") => {
                i += 3;
                n += 1;
            }
            // A name: [_A-Za-z][_0-9A-Za-z]*.
            c if c == b'_' || c.is_ascii_alphabetic() => {
                i += 1;
                while i < b.len() && (b[i] == b'_' || b[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                n += 1;
            }
            // A number: -?digits, with fraction and exponent.
            c if c == b'-' || c.is_ascii_digit() => {
                i += 1;
                while i < b.len()
                    && (b[i].is_ascii_digit() || matches!(b[i], b'.' | b'e' | b'E' | b'+' | b'-'))
                {
                    i += 1;
                }
                n += 1;
            }
            _ => {
                // Punctuators (and anything else) are one token each.
                i += 1;
                n += 1;
            }
        }
    }
    n
}

/// The operation a request selects (`None`: absent or ambiguous; validation reports it).
pub(super) fn operation<'d>(
    doc: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<&'d OperationDefinition> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(n)) => ops
            .iter()
            .find(|(k, _)| k.as_str() == n)
            .map(|(_, op)| &op.node),
        // One named operation is the one.
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| &op.node)
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// Whether the request's operation is a mutation.
pub(super) fn is_mutation(doc: &ExecutableDocument, name: Option<&str>) -> bool {
    match operation(doc, name) {
        Some(op) => op.ty == OperationType::Mutation,
        // Ambiguous: any mutation in it counts.
        None => doc
            .operations
            .iter()
            .any(|(_, op)| op.node.ty == OperationType::Mutation),
    }
}

/// The aliases in the whole document.
pub(super) fn aliases(doc: &ExecutableDocument) -> usize {
    fn count(set: &SelectionSet) -> usize {
        set.items
            .iter()
            .map(|s| match &s.node {
                Selection::Field(f) => {
                    usize::from(f.node.alias.is_some()) + count(&f.node.selection_set.node)
                }
                Selection::InlineFragment(i) => count(&i.node.selection_set.node),
                Selection::FragmentSpread(_) => 0,
            })
            .sum()
    }
    doc.operations
        .iter()
        .map(|(_, op)| count(&op.node.selection_set.node))
        .chain(
            doc.fragments
                .values()
                .map(|f| count(&f.node.selection_set.node)),
        )
        .sum()
}

/// The fields the selected operation selects once its fragments are expanded (each
/// fragment counted once and reused, so a document that doubles through nested spreads
/// is measured without being walked), saturating; a fragment cycle counts as unbounded.
pub(super) fn expanded_fields(doc: &ExecutableDocument, name: Option<&str>) -> usize {
    fn count<'d>(
        doc: &'d ExecutableDocument,
        set: &'d SelectionSet,
        memo: &mut std::collections::HashMap<&'d str, usize>,
        open: &mut HashSet<&'d str>,
    ) -> usize {
        let mut total = 0usize;
        for s in &set.items {
            let n = match &s.node {
                Selection::Field(f) => {
                    1usize.saturating_add(count(doc, &f.node.selection_set.node, memo, open))
                }
                Selection::InlineFragment(i) => count(doc, &i.node.selection_set.node, memo, open),
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    if let Some(n) = memo.get(name) {
                        *n
                    } else if !open.insert(name) {
                        usize::MAX // a cycle
                    } else {
                        let n = match doc.fragments.iter().find(|(k, _)| k.as_str() == name) {
                            Some((_, f)) => count(doc, &f.node.selection_set.node, memo, open),
                            None => 0,
                        };
                        open.remove(name);
                        memo.insert(name, n);
                        n
                    }
                }
            };
            total = total.saturating_add(n);
        }
        total
    }
    let mut memo = std::collections::HashMap::new();
    match operation(doc, name) {
        Some(op) => count(doc, &op.selection_set.node, &mut memo, &mut HashSet::new()),
        None => doc
            .operations
            .iter()
            .map(|(_, op)| {
                count(
                    doc,
                    &op.node.selection_set.node,
                    &mut memo,
                    &mut HashSet::new(),
                )
            })
            .fold(0, usize::saturating_add),
    }
}

/// The root fields of the selected operation (through fragments).
pub(super) fn root_fields(doc: &ExecutableDocument, name: Option<&str>) -> usize {
    fn count<'d>(
        doc: &'d ExecutableDocument,
        set: &'d SelectionSet,
        seen: &mut HashSet<&'d str>,
    ) -> usize {
        set.items
            .iter()
            .map(|s| match &s.node {
                Selection::Field(_) => 1,
                Selection::InlineFragment(i) => count(doc, &i.node.selection_set.node, seen),
                Selection::FragmentSpread(s) => {
                    let name = s.node.fragment_name.node.as_str();
                    match doc.fragments.iter().find(|(k, _)| k.as_str() == name) {
                        Some((_, f)) if seen.insert(name) => {
                            count(doc, &f.node.selection_set.node, seen)
                        }
                        _ => 0,
                    }
                }
            })
            .sum()
    }
    match operation(doc, name) {
        Some(op) => count(doc, &op.selection_set.node, &mut HashSet::new()),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_tokens_aliases_and_root_fields() {
        let q = r#"# a comment
            query Q($id: ID!) { a: order(id: $id) { id } b: order(id: "x, y") { ...F } ... on Query { orders { id } } }
            fragment F on Order { id s: status }"#;
        // query Q ( $ id : ID ! ) { a : order ( id : $ id ) { id } b : order ( id : "…" ) {
        // ... F } ... on Query { orders { id } } } fragment F on Order { id s : status }
        assert_eq!(tokens(q, 1000), 54);
        assert_eq!(tokens(q, 10), 11);
        assert_eq!(tokens(r#"{ a(s: """x "" y""") }"#, 100), 8);
        // Spreads glued to names are still separate tokens.
        assert_eq!(tokens("{a...F...F}", 100), 7);
        assert_eq!(tokens("{ a(x: -1.5e3) }", 100), 8);
        let deep = format!("{{ a(x: {}1{}) }}", "[".repeat(70), "]".repeat(70));
        assert_eq!(tokens(&deep, 10_000), 10_001);
        // Fragments that double at every level are measured, not walked.
        let mut nested = String::from("query { ...F0 }");
        for i in 0..40 {
            nested.push_str(&format!(
                " fragment F{i} on Query {{ ...F{} ...F{} }}",
                i + 1,
                i + 1
            ));
        }
        nested.push_str(" fragment F40 on Query { a }");
        let doc = async_graphql::parser::parse_query(&nested).unwrap();
        assert_eq!(expanded_fields(&doc, None), 1 << 40);
        assert_eq!(
            expanded_fields(
                &async_graphql::parser::parse_query(q_small()).unwrap(),
                None
            ),
            2
        );
        let doc = async_graphql::parser::parse_query(q).unwrap();
        assert_eq!(aliases(&doc), 3);
        assert_eq!(root_fields(&doc, None), 3);
        assert!(!is_mutation(&doc, None));
        let m = async_graphql::parser::parse_query("query A { a } mutation B { b }").unwrap();
        assert!(is_mutation(&m, Some("B")));
        assert!(!is_mutation(&m, Some("A")));
        assert!(is_mutation(&m, None));
    }

    fn q_small() -> &'static str {
        "{ orders { id } }"
    }
}
