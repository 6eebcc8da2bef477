//! The rule index: which rules can possibly match, found with one hash probe
//! per indexed field instead of a scan of every rule.
//!
//! A rule whose top-level conjunction holds `F == "v"` or `F in ["v", ...]`
//! for a string or code field `F` can only match when the fact `F` is one of
//! those values, so it is filed under `(F, lower-case value)` for each value
//! (the conjunct with the fewest values is chosen). Every other rule is on the
//! `always` list. A decision probes each indexed field once, merges the posting
//! lists with `always` in rule order and evaluates only those rules; the first
//! that holds wins, exactly as a scan in file order would.

use std::collections::HashMap;

use super::expr::{CodeField, CodeTest, Expr, StrField, StrTest, Subject};

/// What an indexed field is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Str(StrField),
    Code(CodeField),
}

/// Rule numbers (indexes into the rule list), ascending.
type Postings = Box<[u32]>;

/// A field's index while it is built: value to rule numbers.
type Building = (Key, HashMap<Box<str>, Vec<u32>>);

/// String fields (9) plus code fields (2): the most posting lists a decision
/// merges, plus the `always` list.
const LISTS_MAX: usize = 12;

/// The compiled index.
#[derive(Debug, Default)]
pub(super) struct Index {
    fields: Vec<(Key, HashMap<Box<str>, Postings>)>,
    always: Postings,
}

/// The values of the most selective indexable conjunct of `cond`.
fn index_keys(cond: &Expr) -> Option<(Key, Vec<Box<str>>)> {
    let conjuncts = match cond {
        Expr::And(items) => &items[..],
        other => std::slice::from_ref(other),
    };
    conjuncts
        .iter()
        .filter_map(|c| match c {
            Expr::Str(f, StrTest::Eq(v)) => Some((Key::Str(*f), vec![v.clone()])),
            Expr::Str(f, StrTest::In(vs)) => Some((Key::Str(*f), vs.to_vec())),
            Expr::Code(f, CodeTest::Eq(c)) => {
                Some((Key::Code(*f), vec![c.as_str().to_ascii_lowercase().into()]))
            }
            Expr::Code(f, CodeTest::In(cs)) => Some((
                Key::Code(*f),
                cs.iter()
                    .map(|c| c.as_str().to_ascii_lowercase().into())
                    .collect(),
            )),
            _ => None,
        })
        .min_by_key(|(_, values)| values.len())
}

/// Looks `value` up folded to lower case, without allocating for values of
/// up to 256 bytes.
fn probe<'m>(map: &'m HashMap<Box<str>, Postings>, value: &str) -> Option<&'m Postings> {
    if !value.bytes().any(|b| b.is_ascii_uppercase()) {
        return map.get(value);
    }
    let mut buf = [0u8; 256];
    match buf.get_mut(..value.len()) {
        Some(lower) => {
            lower.copy_from_slice(value.as_bytes());
            lower.make_ascii_lowercase();
            // Folding ASCII letters keeps UTF-8 valid, so this never fails.
            std::str::from_utf8(lower).ok().and_then(|k| map.get(k))
        }
        None => map.get(value.to_ascii_lowercase().as_str()),
    }
}

impl Index {
    /// Builds the index over conditions in rule order.
    pub(super) fn build<'e>(conds: impl Iterator<Item = &'e Expr>) -> Self {
        let mut fields: Vec<Building> = Vec::new();
        let mut always = Vec::new();
        for (n, cond) in conds.enumerate() {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            let Some((key, values)) = index_keys(cond) else {
                always.push(n);
                continue;
            };
            let slot = match fields.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    fields.push((key, HashMap::new()));
                    fields.len() - 1
                }
            };
            for value in values {
                let postings = fields[slot].1.entry(value).or_default();
                if postings.last() != Some(&n) {
                    postings.push(n);
                }
            }
        }
        Self {
            fields: fields
                .into_iter()
                .map(|(k, map)| {
                    let map = map
                        .into_iter()
                        .map(|(v, p)| (v, p.into_boxed_slice()))
                        .collect();
                    (k, map)
                })
                .collect(),
            always: always.into_boxed_slice(),
        }
    }

    /// Calls `check` on each candidate rule number in ascending order until it
    /// returns true; returns that rule number.
    pub(super) fn first(&self, s: &Subject<'_>, mut check: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut lists: [&[u32]; LISTS_MAX] = [&[]; LISTS_MAX];
        lists[0] = &self.always;
        let mut count = 1;
        for (key, map) in &self.fields {
            let found = match key {
                Key::Str(f) => probe(map, s.str(*f)),
                Key::Code(f) => s.code(*f).and_then(|c| probe(map, c.as_str())),
            };
            if let (Some(postings), Some(slot)) = (found, lists.get_mut(count)) {
                *slot = postings;
                count += 1;
            }
        }
        let lists = &mut lists[..count];
        loop {
            // Few lists (at most 12): a linear pick of the smallest head.
            let mut best: Option<(usize, u32)> = None;
            for (i, list) in lists.iter().enumerate() {
                if let Some(&head) = list.first() {
                    if best.is_none_or(|(_, b)| head < b) {
                        best = Some((i, head));
                    }
                }
            }
            let (i, rule) = best?;
            lists[i] = &lists[i][1..];
            if check(rule) {
                return Some(rule);
            }
        }
    }

    /// Number of rules that every decision evaluates.
    pub(super) fn always_len(&self) -> usize {
        self.always.len()
    }
}
