//! The policy rule compiler (`eval::rules::compile`) on raw text and on input
//! mapped onto rule-language tokens, so the fuzzer reaches the parser, the
//! type checker and the index instead of stopping at the first bad character.
//!
//! Invariants: no panic; every diagnostic has a 1-based line and column inside
//! the input and a message; a rule set that compiles evaluates without panic
//! and its index agrees with the naive oracle.
//!
//! Run: `cd engine/fuzz && cargo +nightly fuzz run policy_rules`; seed
//! `corpus/policy_rules` with `tuning/policy/*.rules`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mb_engine::eval::rules::{compile, Source};
use mb_engine::eval::{Code, Facts};

/// Tokens of the rule language, with the separators that matter.
#[rustfmt::skip]
const TOKENS: &[&str] = &[
    "rule", "r1:", "r2:", ":", "when", "then", "and", "or", "not", "(", ")", "[", "]", ",",
    "==", "!=", "<", "<=", ">", ">=", "~", "in", "starts_with", "ends_with", "contains",
    "true", "false", "client_ip", "client_name", "country", "continent", "helo", "sender",
    "sender_domain", "recipient", "recipient_local", "sasl_user", "recipient_count", "hour",
    "minute", "weekday", "authenticated", "tls", "null_sender", "allow", "reject", "tempfail",
    "discard", "quarantine", "\"a.example\"", "\"A.EXAMPLE\"", "\"^[0-9]+\"", "\"(\"",
    "\"550 5.7.1 no\"", "\"451 4.7.1 later\"", "\"450 5.7.1 bad\"", "\"", "\\", "#", "\n",
    "1", "23", "99999999999", "sat", "DE", "eu", "10.0.0.0/8", "10.0.0.1/8", "2001:db8::/32",
    "::ffff:10.0.0.0/104", "=", "!", "\u{e9}",
];

fn to_tokens(data: &[u8]) -> String {
    let mut text = String::with_capacity(data.len() * 6);
    for b in data {
        text.push_str(TOKENS[usize::from(*b) % TOKENS.len()]);
        text.push(' ');
    }
    text
}

fn facts(n: u8) -> Facts<'static> {
    Facts {
        client_ip: Some(if n.is_multiple_of(2) {
            std::net::IpAddr::from([10, 0, 0, 1])
        } else {
            std::net::IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1])
        }),
        client_name: "a.example",
        helo: if n.is_multiple_of(3) {
            "123.pool"
        } else {
            "A.example"
        },
        sender: if n.is_multiple_of(4) {
            ""
        } else {
            "x@a.example"
        },
        recipient: "rcpt@A.EXAMPLE",
        recipient_count: u32::from(n),
        sasl_user: if n.is_multiple_of(5) { "user" } else { "" },
        tls: n % 2 == 1,
        country: Code::parse(if n % 3 == 1 { "de" } else { "fr" }),
        unix_time: u64::from(n) * 3_600 * 7,
        ..Facts::default()
    }
}

fn check(text: &str) {
    let lines = u32::try_from(text.lines().count() + 1).unwrap_or(u32::MAX);
    match compile(&[Source {
        file: "fuzz.rules",
        text,
    }]) {
        Err(diags) => {
            assert!(!diags.is_empty());
            for d in diags {
                assert!(d.origin.line >= 1 && d.origin.line <= lines, "{d}");
                assert!(d.origin.column >= 1, "{d}");
                assert!(!d.message.is_empty());
            }
        }
        Ok(set) => {
            for n in 0..12 {
                let f = facts(n);
                let fast = set.evaluate(&f).map(|h| h.name);
                let naive = set.evaluate_naive(&f).map(|h| h.name);
                assert_eq!(fast, naive, "{f:?}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(&String::from_utf8_lossy(data));
    check(&to_tokens(data));
});
