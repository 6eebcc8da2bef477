//! Regex prefilter: every distinct regex tested on a string field is compiled
//! once more into that field's `RegexSet`, so a decision runs one set scan per
//! field (the first time a rule needs it) instead of one scan per regex, and
//! each regex test becomes a bit test.
//!
//! Each regex keeps its own `Regex` too: the naive oracle uses it. The set is
//! built with the same options (case-insensitive by default, the same size
//! limits), so `(?-i)`, anchors and every other flag mean the same. A set that
//! would compile to more than [`REGEX_BYTES_MAX`] is split in halves until each
//! part fits; a regex that does not fit a set on its own keeps its `Regex`.

use std::collections::HashMap;

use regex::{Regex, RegexSet, RegexSetBuilder};

use super::expr::{Expr, StrField, Subject};
use super::REGEX_BYTES_MAX;

/// Number of string fields (`StrField` variants).
const STR_FIELDS: usize = 9;

/// Words of match bits kept inline (512 regexes); more use one allocation
/// per decision.
const INLINE_WORDS: usize = 8;

/// Where a field's match bits live in the per-decision bitset.
fn field_slot(field: StrField) -> usize {
    field as usize
}

/// Matches some regexes of one field.
#[derive(Debug)]
enum Matcher {
    /// Slots `base..base + set.len()`.
    Set { set: RegexSet, base: usize },
    /// One slot whose regex did not fit in a set alone.
    One { re: Regex, slot: usize },
}

/// The compiled sets of one field.
#[derive(Debug, Default)]
struct FieldSets {
    matchers: Box<[Matcher]>,
    /// First word of this field's bits.
    word: usize,
    /// Number of distinct regexes (slots).
    slots: usize,
}

/// Every field's regex sets.
#[derive(Debug, Default)]
pub(super) struct RegexSets {
    fields: [FieldSets; STR_FIELDS],
    /// Words in the per-decision bitset.
    words: usize,
}

/// Compiles `res` (slots `base..`) into as few sets as the size limit allows.
fn compile_sets(res: &[Regex], base: usize, limit: usize, out: &mut Vec<Matcher>) {
    if res.is_empty() {
        return;
    }
    let built = RegexSetBuilder::new(res.iter().map(Regex::as_str))
        .case_insensitive(true)
        .size_limit(limit)
        .dfa_size_limit(limit)
        .build();
    match (built, res) {
        (Ok(set), _) => out.push(Matcher::Set { set, base }),
        (Err(_), [re]) => out.push(Matcher::One {
            re: re.clone(),
            slot: base,
        }),
        (Err(_), _) => {
            let mid = res.len() / 2;
            compile_sets(&res[..mid], base, limit, out);
            compile_sets(&res[mid..], base + mid, limit, out);
        }
    }
}

impl RegexSets {
    /// Numbers the distinct regexes of each field (equal patterns share a
    /// slot) and compiles each field's sets.
    pub(super) fn build<'e>(conds: impl Iterator<Item = &'e mut Expr>) -> Self {
        Self::build_with_limit(conds, REGEX_BYTES_MAX)
    }

    fn build_with_limit<'e>(conds: impl Iterator<Item = &'e mut Expr>, limit: usize) -> Self {
        let mut patterns: [Vec<Regex>; STR_FIELDS] = Default::default();
        let mut seen: [HashMap<Box<str>, u32>; STR_FIELDS] = Default::default();
        for cond in conds {
            cond.for_each_regex_mut(&mut |field, re, slot| {
                let f = field_slot(field);
                let (Some(list), Some(seen)) = (patterns.get_mut(f), seen.get_mut(f)) else {
                    return;
                };
                *slot = *seen.entry(re.as_str().into()).or_insert_with(|| {
                    list.push(re.clone());
                    u32::try_from(list.len() - 1).unwrap_or(u32::MAX)
                });
            });
        }
        let mut sets = Self::default();
        for (fs, res) in sets.fields.iter_mut().zip(&patterns) {
            let mut matchers = Vec::new();
            compile_sets(res, 0, limit, &mut matchers);
            fs.matchers = matchers.into_boxed_slice();
            fs.word = sets.words;
            fs.slots = res.len();
            sets.words += res.len().div_ceil(64);
        }
        sets
    }

    /// Number of distinct regexes tested on `field`.
    pub(super) fn slots(&self, field: StrField) -> usize {
        self.fields.get(field_slot(field)).map_or(0, |fs| fs.slots)
    }
}

/// Per-decision regex results: which fields' sets have run, and their match
/// bits. Lives on the stack; allocates only for fields with more than 512
/// regexes in all or when a set matches (`RegexSet::matches`).
#[derive(Debug)]
pub(super) struct Matches<'r> {
    sets: &'r RegexSets,
    /// Bit `field_slot(f)` is set once `f`'s sets have run.
    done: u16,
    inline: [u64; INLINE_WORDS],
    heap: Vec<u64>,
}

impl<'r> Matches<'r> {
    /// No field run yet.
    pub(super) fn new(sets: &'r RegexSets) -> Self {
        let heap = if sets.words > INLINE_WORDS {
            vec![0; sets.words]
        } else {
            Vec::new()
        };
        Self {
            sets,
            done: 0,
            inline: [0; INLINE_WORDS],
            heap,
        }
    }

    fn bits(&mut self) -> &mut [u64] {
        if self.heap.is_empty() {
            &mut self.inline
        } else {
            &mut self.heap
        }
    }

    /// Runs `field`'s sets over its value unless done already; returns the
    /// field's match bits (bit `n` for slot `n`).
    fn run(&mut self, field: StrField, s: &Subject<'_>) -> &[u64] {
        let sets = self.sets;
        let f = field_slot(field);
        let Some(fs) = sets.fields.get(f) else {
            return &[];
        };
        if self.done & (1 << f) == 0 {
            self.done |= 1 << f;
            let value = s.str(field);
            let bits = self.bits();
            let mut set_bit = |slot: usize| {
                let bit = fs.word * 64 + slot;
                if let Some(w) = bits.get_mut(bit / 64) {
                    *w |= 1 << (bit % 64);
                }
            };
            for matcher in &fs.matchers {
                match matcher {
                    // `is_match` stops early and does not allocate: most
                    // decisions match no regex at all.
                    Matcher::Set { set, base } if set.is_match(value) => {
                        set.matches(value).iter().for_each(|i| set_bit(base + i));
                    }
                    Matcher::Set { .. } => {}
                    Matcher::One { re, slot } => {
                        if re.is_match(value) {
                            set_bit(*slot);
                        }
                    }
                }
            }
        }
        let words = fs.slots.div_ceil(64);
        let bits = self.bits();
        bits.get(fs.word..fs.word + words).unwrap_or(&[])
    }

    /// Whether regex `slot` of `field` matches the field's value.
    pub(super) fn is_match(&mut self, field: StrField, slot: u32, s: &Subject<'_>) -> bool {
        let bits = self.run(field, s);
        let slot = slot as usize;
        bits.get(slot / 64)
            .is_some_and(|w| (w >> (slot % 64)) & 1 == 1)
    }

    /// Calls `visit` on every matching slot of `field`, ascending.
    pub(super) fn for_each_match(
        &mut self,
        field: StrField,
        s: &Subject<'_>,
        mut visit: impl FnMut(usize),
    ) {
        let bits = self.run(field, s);
        for (n, &word) in bits.iter().enumerate() {
            let mut w = word;
            while w != 0 {
                visit(n * 64 + w.trailing_zeros() as usize);
                w &= w - 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::rules::{compile, Source};
    use crate::eval::Facts;

    /// Small enough to split 40 small regexes into several sets and leave
    /// `\w{4}x` (Unicode classes are large) on its own.
    const LIMIT: usize = 20 * 1024;

    #[test]
    fn split_sets_and_lone_regexes_answer_like_each_regex() {
        let mut text = String::new();
        for n in 0..40 {
            text.push_str(&format!(
                "rule r{n}: when helo ~ \"^h{n}[a-z]*\\.example$\" then allow\n"
            ));
        }
        text.push_str("rule big: when helo ~ \"\\w{4}x\" then allow\n");
        text.push_str("rule cs: when helo ~ \"(?-i)^H7x\" or sender ~ \"^a\" then allow\n");
        text.push_str("rule again: when not helo ~ \"^h3[a-z]*\\.example$\" then allow\n");
        let mut set = compile(&[Source {
            file: "t.rules",
            text: &text,
        }])
        .unwrap_or_else(|e| panic!("{e:#?}"));
        let sets = RegexSets::build_with_limit(set.rules.iter_mut().map(|r| &mut r.cond), LIMIT);
        assert_eq!(sets.slots(StrField::Helo), 42, "`again` shares a slot");
        assert_eq!(sets.slots(StrField::Sender), 1);
        let helo = &sets.fields[field_slot(StrField::Helo)];
        let lone = helo
            .matchers
            .iter()
            .filter(|m| matches!(m, Matcher::One { .. }))
            .count();
        assert!(
            lone >= 1 && helo.matchers.len() > lone + 1,
            "{lone} of {}",
            helo.matchers.len()
        );
        let long = format!("{}x", "é".repeat(4));
        for value in [
            "h7abc.example",
            "H7x.EXAMPLE",
            "h39.example",
            "h3.example",
            &long,
            "no",
        ] {
            let facts = Facts {
                helo: value,
                sender: "Alice@example.net",
                ..Facts::default()
            };
            let subject = Subject::new(&facts);
            let mut m = Matches::new(&sets);
            for rule in &set.rules {
                assert_eq!(
                    rule.cond.eval_fast(&subject, &mut m),
                    rule.cond.eval(&subject),
                    "{} on {value}",
                    rule.name
                );
            }
        }
    }

    #[test]
    fn many_regexes_spill_the_bits_to_the_heap() {
        let text: String = (0..700)
            .map(|n| format!("rule r{n}: when recipient ~ \"^u{n}@\" then allow\n"))
            .collect();
        let set = compile(&[Source {
            file: "t.rules",
            text: &text,
        }])
        .unwrap_or_else(|e| panic!("{e:#?}"));
        for n in [0, 63, 64, 511, 512, 699] {
            let recipient = format!("U{n}@example.org");
            let facts = Facts {
                recipient: &recipient,
                ..Facts::default()
            };
            let want = format!("r{n}");
            assert_eq!(set.evaluate(&facts).map(|h| h.name), Some(want.as_str()));
        }
        let none = Facts {
            recipient: "u700@x",
            ..Facts::default()
        };
        assert!(set.evaluate(&none).is_none());
    }
}
