//! The SpamAssassin `.cf` loader (`filter::sa::load`) on raw text and on
//! input mapped onto `.cf` tokens, so the fuzzer reaches the directive
//! parsers, the conditionals, ReplaceTags, meta expressions and the Perl
//! regex translator instead of stopping at the first bad line.
//!
//! Invariants: no panic; every diagnostic has a 1-based line and column
//! inside the input; active + skipped = rules; every translated pattern that
//! is classed as runnable by the `regex` crate compiles with it (validation
//! is on, so a rejected one must have been reclassified).
//!
//! Run: `cd engine/fuzz && cargo +nightly fuzz run sa_rules`; seed
//! `corpus/sa_rules` with `../../shared/corpus/rules/spamassassin/*.cf`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mb_engine::filter::sa::{load, Class, Options, Source};

#[rustfmt::skip]
const TOKENS: &[&str] = &[
    "header", "body", "rawbody", "full", "uri", "mimeheader", "meta", "score", "describe",
    "tflags", "priority", "lang de", "ifplugin", "if", "else", "endif", "require_version",
    "replace_tag", "replace_rules", "replace_inter", "replace_post", "replace_pre",
    "util_rb_tld", "required_score", "askdns", "R1", "R2", "__S", "T_X", "Subject",
    "From:addr", "ALL", "exists:X-A", "=~", "!~", "/a.b/i", "m{x}s", "/(?!a)b/", "/(a)\\1/",
    "/[a-z]+$/m", "/\\x{263a}/", "/(?{1})/", "/<A><B>/", "<A>", "(?:a|4)", "eval:f('a', 2)",
    "eval:check_rbl('x','y.')", "&&", "||", "!", "(", ")", "+", ">", "1", "0", "2.5",
    "[if-unset: x]", "(version >= 3.004000)", "plugin(Mail::SpamAssassin::Plugin::HTMLEval)",
    "can(Mail::SpamAssassin::Conf::feature_bug6558_free)", "#", "\\#", "\n", "\n", "\t",
    "é", "\\", "/", "{", "}", "[", "]",
];

fn to_tokens(data: &[u8]) -> String {
    let mut text = String::with_capacity(data.len() * 8);
    for b in data {
        text.push_str(TOKENS[usize::from(*b) % TOKENS.len()]);
        text.push(' ');
    }
    text
}

fn check(text: &str) {
    let lines = u32::try_from(text.lines().count() + 1).unwrap_or(u32::MAX);
    let set = load(
        &[Source {
            file: "fuzz.cf",
            text,
        }],
        &Options::default(),
    );
    for d in &set.report.diagnostics {
        assert!(d.origin.line >= 1 && d.origin.line <= lines, "{d}");
        assert!(d.origin.column >= 1, "{d}");
        assert!(!d.message.is_empty());
    }
    assert_eq!(set.report.active() + set.report.skipped(), set.rules.len());
    for rule in &set.rules {
        if let Some(p) = &rule.pattern {
            if let (Class::Rust, Ok(t)) = (p.class(), &p.translated) {
                assert!(
                    regex::bytes::RegexBuilder::new(t)
                        .size_limit(1 << 26)
                        .build()
                        .is_ok(),
                    "{t}"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(&String::from_utf8_lossy(data));
    check(&to_tokens(data));
});
