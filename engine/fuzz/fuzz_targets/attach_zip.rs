//! `filter::attach` on arbitrary attachment bytes, read as a ZIP archive.
//! Invariants: no panic; at most `FINDINGS_MAX` findings, each text printable
//! ASCII within `TEXT_CHARS_MAX`; the small policy's caps (depth, entries,
//! inflate budget) keep every run short. Runs on the input as is, forced to
//! be treated as a ZIP, and mapped onto ZIP record tokens so the walker gets
//! past the signatures; the input is also parsed as a message and checked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mb_engine::filter::attach::{
    check, check_attachment, AttachPolicy, Finding, FINDINGS_MAX, TEXT_CHARS_MAX,
};
use mb_engine::filter::mime::{parse, sniff, Attachment, Limits};

/// Pieces of ZIP structure: record signatures, all-ones sizes (ZIP64
/// markers), small lengths, method and flag values, deflate block starts.
const TOKENS: &[&[u8]] = &[
    b"PK\x03\x04",
    b"PK\x01\x02",
    b"PK\x05\x06",
    b"PK\x06\x06",
    b"PK\x06\x07",
    b"\xff\xff\xff\xff",
    b"\x01\x00\x10\x00",
    b"\x00\x00",
    b"\x01\x00",
    b"\x08\x00",
    b"\x2e\x00",
    b"\x00\x00\x00\x00",
    b"x.exe",
    b"a.zip",
    b"MZ",
    b"\x03\x00",
    b"\x00\xff\xff\x00\x00",
    b"\x63\x60\x18\x05",
];

fn small_policy() -> AttachPolicy {
    AttachPolicy {
        zip_depth_max: 3,
        zip_entries_max: 64,
        zip_inflate_max: 64 * 1024,
        block_unsupported_archives: true,
        ..AttachPolicy::default()
    }
}

fn assert_findings(f: &[Finding]) {
    assert!(f.len() <= FINDINGS_MAX);
    for f in f {
        assert!(f.text.len() <= TEXT_CHARS_MAX);
        assert!(f.text.bytes().all(|b| b == b' ' || b.is_ascii_graphic()));
    }
}

fn run(data: &[u8]) {
    let mut a = Attachment {
        filename: Some("fuzz.zip".to_owned()),
        declared_type: "application/zip".to_owned(),
        sniffed_type: sniff::sniff(data),
        size: data.len(),
        depth: 1,
        part: 1,
        data: data.to_vec(),
    };
    let policy = small_policy();
    assert_findings(&check_attachment(&policy, &a));
    a.sniffed_type = Some(sniff::ZIP);
    assert_findings(&check_attachment(&policy, &a));
}

fuzz_target!(|data: &[u8]| {
    run(data);
    let shaped: Vec<u8> = data
        .iter()
        .flat_map(|b| {
            if b & 0x80 == 0 {
                TOKENS[usize::from(*b) % TOKENS.len()]
            } else {
                std::slice::from_ref(b)
            }
        })
        .copied()
        .collect();
    run(&shaped);
    let limits = Limits {
        depth_max: 4,
        parts_max: 16,
        headers_max: 32,
        header_bytes_max: 128,
        message_bytes_max: 64 * 1024,
        decoded_bytes_max: 16 * 1024,
        part_bytes_max: 8192,
    };
    assert_findings(&check(&small_policy(), &parse(data, &limits)));
});
