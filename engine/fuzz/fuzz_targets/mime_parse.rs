//! `filter::mime::parse` on raw and MIME-shaped bytes.
//! Invariants: no panic; the result stays within the limits (parts, headers,
//! header bytes, decoded bytes, depth); streaming in two chunks at any point
//! and byte by byte gives the same message as the whole parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mb_engine::filter::mime::{parse, Limits, Message, Parser};

/// Tokens that steer the parser into its interesting states.
const TOKENS: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b"--b\n",
    b"--b--\n",
    b"Content-Type: multipart/mixed; boundary=b\n",
    b"Content-Type: message/rfc822\n",
    b"Content-Type: text/html; charset=koi8-r\n",
    b"Content-Transfer-Encoding: base64\n",
    b"Content-Transfer-Encoding: quoted-printable\n",
    b"Content-Disposition: attachment; filename*0*=utf-8''%C3%A9; filename*1=x\n",
    b"Subject: =?utf-8?B?w6k=?= =?iso-8859-1?Q?a_b?=\n",
    b" folded",
    b"<a href=\"http://x/\">",
    b"<script>",
    b"<!--",
    b"&amp;&#x41;",
    b"www.y.example ",
    b"TVqQAAMAAAA=",
    b"=C3=A9=\n",
];

const LIMITS: Limits = Limits {
    depth_max: 4,
    parts_max: 16,
    headers_max: 32,
    header_bytes_max: 128,
    message_bytes_max: 64 * 1024,
    decoded_bytes_max: 4096,
    part_bytes_max: 2048,
};

fn check_limits(m: &Message) {
    assert!(m.parts.len() <= LIMITS.parts_max);
    let headers: usize = m.parts.iter().map(|p| p.headers.len()).sum();
    assert!(headers <= LIMITS.headers_max);
    assert!(m
        .parts
        .iter()
        .all(|p| p.depth <= LIMITS.depth_max && p.size <= LIMITS.part_bytes_max));
    let decoded: usize = m.attachments.iter().map(|a| a.data.len()).sum();
    assert!(decoded <= LIMITS.decoded_bytes_max);
}

fn check(raw: &[u8]) {
    let whole = parse(raw, &LIMITS);
    check_limits(&whole);
    let split = raw.first().map_or(0, |b| usize::from(*b) % (raw.len() + 1));
    let mut s = Parser::new(LIMITS);
    s.push(&raw[..split]);
    s.push(&raw[split..]);
    assert_eq!(s.finish(), whole);
    let _ = parse(raw, &Limits::default());
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let shaped: Vec<u8> = data
        .iter()
        .flat_map(|b| TOKENS[usize::from(*b) % TOKENS.len()].iter().copied())
        .collect();
    check(&shaped);
});
