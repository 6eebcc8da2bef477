//! Sender list and recipient file parsers on raw and alphabet-mapped bytes.
//! Invariants: no panic; every diagnostic has a line and column >= 1; every
//! accepted entry writes back (Display) to text that parses to itself; a list
//! built from the entries answers lookups on the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mb_engine::eval::lists::{parse_entry, parse_list, List};
use mb_engine::eval::recipients::Recipients;
use mb_engine::eval::Facts;

/// Bytes that mean something to the list grammar.
const LIST_ALPHABET: &[u8] = b"abcdehlo0123456789f@.:/<>#*+- \t\r\n[]\xc3\xbc";

fn to_list_alphabet(data: &[u8]) -> Vec<u8> {
    data.iter()
        .map(|b| LIST_ALPHABET[usize::from(*b) % LIST_ALPHABET.len()])
        .collect()
}

fn check(text: &str) {
    let (entries, errors) = parse_list("fuzz.list", text);
    for e in &errors {
        assert!(e.origin.line >= 1 && e.origin.column >= 1, "{e}");
    }
    for (entry, _) in &entries {
        assert_eq!(parse_entry(&entry.to_string()).as_ref(), Ok(entry));
    }
    let list: List = entries.into_iter().collect();
    let _ = list.matches(&Facts {
        sender: text,
        helo: text,
        ..Facts::default()
    });
    let mut recipients = Recipients::new("+-");
    let _ = recipients.parse_file("fuzz.list", text);
    let _ = recipients.check(text);
}

fuzz_target!(|data: &[u8]| {
    check(&String::from_utf8_lossy(data));
    check(&String::from_utf8_lossy(&to_list_alphabet(data)));
});
