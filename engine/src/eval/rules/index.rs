//! The rule index: which rules can possibly match, found with one hash probe
//! per indexed field instead of a scan of every rule.
//!
//! Each rule is filed under one conjunct of its top-level conjunction that it
//! needs to hold, the first kind found of:
//!
//! 1. `F == "v"` or `F in ["v", ...]` for a string or code field `F`: the rule
//!    can only match when the fact `F` is one of those values, so it is filed
//!    under `(F, lower-case value)` for each value (the conjunct with the fewest
//!    values is chosen).
//! 2. `client_ip in [NET, ...]` or `client_ip == ADDR`: filed under each
//!    network in a prefix table (per address family and prefix length present,
//!    a hash map from masked address to rules); a decision probes each length
//!    once with the client address masked to it.
//! 3. `F ~ "re"`: filed under that regex's slot; the field's regex sets (see
//!    `prefilter`) give the slots that match, and only their rules are
//!    candidates. The sets run lazily: only when the merge reaches the first
//!    rule gated on that field.
//!
//! A rule whose condition is an `or` is filed under a gate of each branch
//! (a `false` branch needs none), so `a == "x" or client_ip in [...]` is
//! indexed too. Every other rule is on the `always` list. A decision merges the posting
//! lists it found with `always` in rule order and evaluates only those rules;
//! the first that holds wins, exactly as a scan in file order would.

use std::collections::HashMap;
use std::net::IpAddr;

use super::expr::{CodeField, CodeTest, Expr, IpTest, Net, StrField, StrTest, Subject};
use super::prefilter::{Matches, RegexSets};

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

/// Posting lists a decision merges without allocating: `always`, string
/// fields (9), code fields (2), a few prefix lengths and matching regexes.
const LISTS_INLINE: usize = 24;

/// Rules gated on one prefix length of one address family.
#[derive(Debug)]
struct PrefixTable<A> {
    prefix: u8,
    rules: HashMap<A, Postings>,
}

/// Rules gated on `client_ip`, by network.
#[derive(Debug, Default)]
struct NetIndex {
    v4: Vec<PrefixTable<u32>>,
    v6: Vec<PrefixTable<u128>>,
}

/// Rules gated on a regex of one field.
#[derive(Debug)]
struct RegexGate {
    field: StrField,
    /// The lowest rule number gated here: the sets run only when the merge
    /// reaches it.
    first: u32,
    /// Rules by regex slot.
    by_slot: Box<[Postings]>,
}

/// The compiled index.
#[derive(Debug, Default)]
pub(super) struct Index {
    fields: Vec<(Key, HashMap<Box<str>, Postings>)>,
    nets: NetIndex,
    regex_gates: Vec<RegexGate>,
    regexes: RegexSets,
    always: Postings,
}

/// What a rule is filed under.
enum Gate {
    Values(Key, Vec<Box<str>>),
    Nets(Vec<Net>),
    Regex(StrField, u32),
}

/// The top-level conjuncts of `cond`.
fn conjuncts(cond: &Expr) -> &[Expr] {
    match cond {
        Expr::And(items) => items,
        other => std::slice::from_ref(other),
    }
}

/// Where a rule with condition `cond` is filed: `None` if it cannot be
/// (every decision evaluates it); else every gate it is filed under, one of
/// which holds whenever `cond` does (none at all: `cond` never holds).
///
/// An `or` is filed under a gate of each branch, so it is indexed when every
/// branch is (`false` branches need none); recursion follows the nesting,
/// which the parser bounds.
fn gates_of(cond: &Expr) -> Option<Vec<Gate>> {
    match cond {
        Expr::Const(false) => return Some(Vec::new()),
        Expr::Or(items) => {
            let mut all = Vec::new();
            for item in items {
                all.extend(gates_of(item)?);
            }
            return Some(all);
        }
        _ => {}
    }
    if let Some(gate) = gate_of(cond) {
        return Some(vec![gate]);
    }
    conjuncts(cond)
        .iter()
        .filter(|c| matches!(c, Expr::Or(_) | Expr::And(_) | Expr::Const(false)))
        .find_map(gates_of)
}

/// The cheapest top-level conjunct of `cond` the rule can be filed under.
fn gate_of(cond: &Expr) -> Option<Gate> {
    if let Some((key, values)) = index_keys(cond) {
        return Some(Gate::Values(key, values));
    }
    let nets = conjuncts(cond).iter().find_map(|c| match c {
        Expr::Ip(IpTest::In(nets)) => Some(nets.to_vec()),
        Expr::Ip(IpTest::Eq(addr)) => Some(vec![Net {
            addr: *addr,
            prefix: if addr.is_ipv4() { 32 } else { 128 },
        }]),
        _ => None,
    });
    if let Some(nets) = nets {
        return Some(Gate::Nets(nets));
    }
    conjuncts(cond).iter().find_map(|c| match c {
        Expr::Str(f, StrTest::Match(_, slot)) => Some(Gate::Regex(*f, *slot)),
        _ => None,
    })
}

/// The first `prefix` bits of `v`, the rest cleared.
fn mask_v4(v: u32, prefix: u8) -> u32 {
    v & u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

fn mask_v6(v: u128, prefix: u8) -> u128 {
    v & u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

/// Files rule `n` under `key` in the table for `prefix` of `tables`.
fn file_net<A: std::hash::Hash + Eq>(
    tables: &mut Vec<(u8, HashMap<A, Vec<u32>>)>,
    prefix: u8,
    key: A,
    n: u32,
) {
    let slot = match tables.iter().position(|(p, _)| *p == prefix) {
        Some(i) => i,
        None => {
            tables.push((prefix, HashMap::new()));
            tables.len() - 1
        }
    };
    let postings = tables[slot].1.entry(key).or_default();
    if postings.last() != Some(&n) {
        postings.push(n);
    }
}

fn freeze_tables<A: std::hash::Hash + Eq>(
    mut tables: Vec<(u8, HashMap<A, Vec<u32>>)>,
) -> Vec<PrefixTable<A>> {
    tables.sort_by_key(|(p, _)| *p);
    tables
        .into_iter()
        .map(|(prefix, rules)| PrefixTable {
            prefix,
            rules: rules
                .into_iter()
                .map(|(k, p)| (k, p.into_boxed_slice()))
                .collect(),
        })
        .collect()
}

/// Posting lists being merged: inline up to [`LISTS_INLINE`], then on the
/// heap.
struct Lists<'a> {
    inline: [&'a [u32]; LISTS_INLINE],
    len: usize,
    heap: Option<Vec<&'a [u32]>>,
}

impl<'a> Lists<'a> {
    fn new() -> Self {
        Self {
            inline: [&[]; LISTS_INLINE],
            len: 0,
            heap: None,
        }
    }

    /// Adds a list (empty lists are dropped).
    fn push(&mut self, list: &'a [u32]) {
        if list.is_empty() {
            return;
        }
        if self.heap.is_none() {
            if let Some(slot) = self.inline.get_mut(self.len) {
                *slot = list;
                self.len += 1;
                return;
            }
            self.heap = Some(self.inline.to_vec());
        }
        if let Some(heap) = &mut self.heap {
            heap.push(list);
        }
    }

    fn lists(&mut self) -> &mut [&'a [u32]] {
        match &mut self.heap {
            Some(heap) => heap,
            None => &mut self.inline[..self.len],
        }
    }

    /// The index and head of the list with the smallest head.
    fn min(&mut self) -> Option<(usize, u32)> {
        let mut best: Option<(usize, u32)> = None;
        for (i, list) in self.lists().iter().enumerate() {
            if let Some(&head) = list.first() {
                if best.is_none_or(|(_, b)| head < b) {
                    best = Some((i, head));
                }
            }
        }
        best
    }

    /// Drops the head of list `i`, and the list once it is empty.
    fn pop(&mut self, i: usize) {
        let lists = self.lists();
        let Some(list) = lists.get_mut(i) else {
            return;
        };
        *list = list.get(1..).unwrap_or(&[]);
        if list.is_empty() {
            let last = lists.len() - 1;
            lists.swap(i, last);
            match &mut self.heap {
                Some(heap) => {
                    heap.pop();
                }
                None => self.len -= 1,
            }
        }
    }
}

/// The values of the most selective indexable conjunct of `cond`.
fn index_keys(cond: &Expr) -> Option<(Key, Vec<Box<str>>)> {
    conjuncts(cond)
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
    /// Builds the index over conditions in rule order; `regexes` are the
    /// sets the conditions' regex slots refer to.
    pub(super) fn build<'e>(conds: impl Iterator<Item = &'e Expr>, regexes: RegexSets) -> Self {
        let mut fields: Vec<Building> = Vec::new();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut gates: Vec<(StrField, u32, Vec<Vec<u32>>)> = Vec::new();
        let mut always = Vec::new();
        for (n, cond) in conds.enumerate() {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            let Some(filed) = gates_of(cond) else {
                always.push(n);
                continue;
            };
            for gate in filed {
                match gate {
                    Gate::Values(key, values) => {
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
                    Gate::Nets(nets) => {
                        for net in nets {
                            match net.addr {
                                IpAddr::V4(a) => {
                                    file_net(&mut v4, net.prefix, mask_v4(a.into(), net.prefix), n);
                                }
                                IpAddr::V6(a) => {
                                    file_net(&mut v6, net.prefix, mask_v6(a.into(), net.prefix), n);
                                }
                            }
                        }
                    }
                    Gate::Regex(field, slot) => {
                        let i = match gates.iter().position(|(f, _, _)| *f == field) {
                            Some(i) => i,
                            None => {
                                let slots = regexes.slots(field);
                                gates.push((field, n, vec![Vec::new(); slots]));
                                gates.len() - 1
                            }
                        };
                        match gates[i].2.get_mut(slot as usize) {
                            Some(postings) if postings.last() != Some(&n) => postings.push(n),
                            Some(_) => {}
                            // Every slot was numbered by `regexes`; never here.
                            None => always.push(n),
                        }
                    }
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
            nets: NetIndex {
                v4: freeze_tables(v4),
                v6: freeze_tables(v6),
            },
            regex_gates: gates
                .into_iter()
                .map(|(field, first, by_slot)| RegexGate {
                    field,
                    first,
                    by_slot: by_slot.into_iter().map(Vec::into_boxed_slice).collect(),
                })
                .collect(),
            regexes,
            always: always.into_boxed_slice(),
        }
    }

    /// Calls `check` on each candidate rule number in ascending order until it
    /// returns true; returns that rule number. `check` gets the decision's
    /// regex matches to evaluate conditions with.
    pub(super) fn first<'s>(
        &'s self,
        s: &Subject<'_>,
        mut check: impl FnMut(u32, &mut Matches<'s>) -> bool,
    ) -> Option<u32> {
        let mut matches = Matches::new(&self.regexes);
        let mut lists = Lists::new();
        lists.push(&self.always);
        for (key, map) in &self.fields {
            let found = match key {
                Key::Str(f) => probe(map, s.str(*f)),
                Key::Code(f) => s.code(*f).and_then(|c| probe(map, c.as_str())),
            };
            if let Some(postings) = found {
                lists.push(postings);
            }
        }
        match s.client_ip() {
            Some(IpAddr::V4(a)) => {
                let a = u32::from(a);
                for table in &self.nets.v4 {
                    if let Some(postings) = table.rules.get(&mask_v4(a, table.prefix)) {
                        lists.push(postings);
                    }
                }
            }
            Some(IpAddr::V6(a)) => {
                let a = u128::from(a);
                for table in &self.nets.v6 {
                    if let Some(postings) = table.rules.get(&mask_v6(a, table.prefix)) {
                        lists.push(postings);
                    }
                }
            }
            None => {}
        }
        // Bit `g` set: regex gate `g` has not run yet.
        let mut pending: u32 = (1u32 << self.regex_gates.len().min(31)) - 1;
        let mut last = None;
        loop {
            let best = lists.min();
            let gate = self
                .regex_gates
                .iter()
                .enumerate()
                .filter(|(g, _)| pending & (1 << g) != 0)
                .min_by_key(|(_, gate)| gate.first);
            if let Some((g, gate)) = gate {
                if best.is_none_or(|(_, head)| gate.first <= head) {
                    pending &= !(1 << g);
                    matches.for_each_match(gate.field, s, |slot| {
                        if let Some(postings) = gate.by_slot.get(slot) {
                            lists.push(postings);
                        }
                    });
                    continue;
                }
            }
            let (i, rule) = best?;
            lists.pop(i);
            // A rule filed under several networks can come up twice in a row.
            if last == Some(rule) {
                continue;
            }
            last = Some(rule);
            if check(rule, &mut matches) {
                return Some(rule);
            }
        }
    }

    /// Number of rules that every decision evaluates.
    pub(super) fn always_len(&self) -> usize {
        self.always.len()
    }
}
