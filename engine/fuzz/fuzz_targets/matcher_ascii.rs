//! The matcher's ASCII forms (`filter::matcher::ascii`): a pattern written
//! from tokens of the regex syntax (alternations, classes with bytes above
//! `0x7F`, lookarounds, quantifiers) is compiled for Hyperscan, which also
//! compiles its ASCII form when it has one, and for the naive oracle.
//!
//! Invariants: no panic; on an ASCII haystack and on one with a byte above
//! `0x7F`, Hyperscan (the ASCII form or the pattern as written, by haystack)
//! reports exactly the oracle's hits.
//!
//! Run: `cd engine/fuzz && cargo +nightly fuzz run matcher_ascii`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mb_engine::filter::matcher::{Backend, Database, HitSet, Mode, Pattern};

#[rustfmt::skip]
const TOKENS: &[&str] = &[
    "a", "b", "c", "A", " ", "(?:", "(", ")", "|", "?", "*", "+", "{1,2}", "{0,3}", "[",
    "]", "[^", "-", "\\xd1", "\\xe9", "\\x80", "\\x7b-\\xff", "[\\xce][\\xa1]", "é", "\\w",
    "\\W", "\\b", "\\s", "^", "$", ".", "(?!", "(?=", "(?<!", "(?i)", "(?i:", "\\n", "{",
];

const HAYSTACKS: &[&[u8]] = &[b"a b c", b"abc A cab", "caf\u{e9} \u{440}ab".as_bytes()];

fn hits(db: &Database, haystack: &[u8]) -> Vec<u32> {
    let mut scratch = db.scratch();
    let mut set = HitSet::new(db.id_bound());
    db.scan(&mut scratch, haystack, &mut set);
    set.iter().collect()
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 40 {
        return;
    }
    let source: String = data
        .iter()
        .map(|b| TOKENS[usize::from(*b) % TOKENS.len()])
        .collect();
    let patterns = [Pattern::regex(0, source.clone())];
    let (naive, report) = Database::compile(&patterns, Backend::Naive);
    if report.mode(0) != Some(&Mode::Exact) {
        return;
    }
    let (hs, report) = Database::compile(&patterns, Backend::Hyperscan);
    if matches!(report.mode(0), Some(Mode::Rejected { .. })) {
        return;
    }
    let mut tail = data.to_vec();
    tail.retain(u8::is_ascii_alphabetic);
    for haystack in HAYSTACKS.iter().copied().chain([tail.as_slice()]) {
        assert_eq!(
            hits(&hs, haystack),
            hits(&naive, haystack),
            "{source:?} on {haystack:?}"
        );
    }
});
