//! A TOML document as a plain tree whose tables keep their keys in file order.
//!
//! `toml::Table` sorts its keys (a `BTreeMap` without the `preserve_order`
//! feature), which would report diagnostics alphabetically. The `toml` parser
//! itself hands keys to a deserializer in document order, so this module builds
//! its own small tree with a hand-written visitor (no serde derive) and the
//! checker walks that tree by hand.
//!
//! Datetimes reach a visitor as a one-entry map with a private marker key; they
//! become [`Node::Datetime`] so that a type error can name them.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// The key under which `toml` passes a datetime to `visit_map`.
const DATETIME_MARKER: &str = "$__toml_private_datetime";

/// One TOML value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// `"text"`.
    String(String),
    /// `42`.
    Integer(i64),
    /// `4.2`.
    Float(f64),
    /// `true`.
    Boolean(bool),
    /// `1979-05-27T07:32:00Z`, as written.
    Datetime(String),
    /// `[1, 2]` or the elements of an array of tables.
    Array(Vec<Node>),
    /// A table, keys in file order (TOML forbids duplicates).
    Table(Vec<(String, Node)>),
}

impl Node {
    /// The TOML type name with an article, for "found ..." messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::String(_) => "a string",
            Node::Integer(_) => "an integer",
            Node::Float(_) => "a float",
            Node::Boolean(_) => "a boolean",
            Node::Datetime(_) => "a datetime",
            Node::Array(_) => "an array",
            Node::Table(_) => "a table",
        }
    }
}

/// Parses `text` into a tree; the error is the parser's (a syntax error or a
/// duplicate key), with its span.
pub(crate) fn parse_document(text: &str) -> Result<Vec<(String, Node)>, toml::de::Error> {
    match toml::from_str::<Node>(text)? {
        Node::Table(entries) => Ok(entries),
        // The document root is always a table.
        other => unreachable!("TOML root parsed as {}", other.kind()),
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Boolean(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Integer(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        // TOML integers are i64; a larger value cannot come from the parser,
        // but keep it visible rather than wrapping.
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Integer))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        if let [(key, Node::String(when))] = entries.as_slice() {
            if key == DATETIME_MARKER {
                return Ok(Node::Datetime(when.clone()));
            }
        }
        Ok(Node::Table(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_file_order() {
        let doc = parse_document("[b]\nz = 1\na = 2\n[a]\nk = 'v'\n").unwrap();
        let keys: Vec<&str> = doc.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a"]);
        let Node::Table(b) = &doc[0].1 else {
            panic!("not a table")
        };
        assert_eq!(b[0], ("z".to_owned(), Node::Integer(1)));
        assert_eq!(b[1], ("a".to_owned(), Node::Integer(2)));
    }

    #[test]
    fn every_type() {
        let doc = parse_document(
            "s = 's'\ni = -3\nf = 1.5\nb = true\nd = 1979-05-27\na = [1]\nt = { x = 1 }\n",
        )
        .unwrap();
        let kinds: Vec<&str> = doc.iter().map(|(_, v)| v.kind()).collect();
        assert_eq!(
            kinds,
            [
                "a string",
                "an integer",
                "a float",
                "a boolean",
                "a datetime",
                "an array",
                "a table"
            ]
        );
        assert_eq!(doc[4].1, Node::Datetime("1979-05-27".into()));
    }

    #[test]
    fn arrays_of_tables() {
        let doc = parse_document("[[p.r]]\nm = 1\n[[p.r]]\nm = 2\n").unwrap();
        let Node::Table(p) = &doc[0].1 else {
            panic!("not a table")
        };
        let Node::Array(r) = &p[0].1 else {
            panic!("not an array")
        };
        assert_eq!(r.len(), 2);
        assert_eq!(r[1], Node::Table(vec![("m".into(), Node::Integer(2))]));
    }

    #[test]
    fn syntax_error_has_span() {
        let err = parse_document("a = 1\nb = \n").unwrap_err();
        assert!(err.span().is_some());
    }
}
