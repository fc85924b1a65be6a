//! Limits checked before a document is executed (and so before any backend is called):
//! its size, its token count (before parsing), its aliases and root fields (after).
//! Depth and complexity are async-graphql's own checks.

use std::collections::HashSet;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection,
    SelectionSet,
};

/// The number of lexical tokens in `text`, counting up to `max + 1`.
pub(super) fn tokens(text: &str, max: usize) -> usize {
    let b = text.as_bytes();
    let mut i = 0;
    let mut n = 0;
    while i < b.len() && n <= max {
        let c = b[i];
        match c {
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
            c if c == b'_' || c.is_ascii_alphanumeric() || c == b'-' || c == b'+' => {
                i += 1;
                while i < b.len() && (b[i] == b'_' || b[i] == b'.' || b[i].is_ascii_alphanumeric())
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
        let doc = async_graphql::parser::parse_query(q).unwrap();
        assert_eq!(aliases(&doc), 3);
        assert_eq!(root_fields(&doc, None), 3);
        assert!(!is_mutation(&doc, None));
        let m = async_graphql::parser::parse_query("query A { a } mutation B { b }").unwrap();
        assert!(is_mutation(&m, Some("B")));
        assert!(!is_mutation(&m, Some("A")));
        assert!(is_mutation(&m, None));
    }
}
