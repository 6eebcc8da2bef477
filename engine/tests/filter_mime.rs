//! The MIME message model against real and hostile mail.
//!
//! - Every message of the shared corpus (ham, spam, malformed, mixed, virus)
//!   parses without panic, inside the caps, in bounded time; the counts are
//!   printed (`--nocapture`).
//! - Golden values on named corpus messages.
//! - Hostile messages generated here (never stored): deep nesting, many
//!   parts, huge header lines, many headers, decoded-size expansion, an
//!   oversized stream. Each yields its violation and the result stays under
//!   the caps.
//! - Properties: no panic on arbitrary bytes; the streamed parse equals the
//!   whole parse for any chunking.
//!
//! The corpus is third-party data (GPL and others) and stays in `shared/`
//! beside the repository; without it the corpus tests are skipped loudly.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mb_engine::filter::mime::{parse, sniff, Limits, Message, Parser, Violation};
use proptest::prelude::*;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus");

fn corpus_file(rel: &str) -> Option<Vec<u8>> {
    let path = Path::new(CORPUS).join(rel);
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("SKIP: corpus file {} unreadable: {e}", path.display());
            None
        }
    }
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.file_name().is_some_and(|n| n != "SOURCE.md") {
            out.push(p);
        }
    }
}

/// The invariants every parse keeps, whatever the input.
fn assert_within(m: &Message, l: &Limits, what: &str) {
    assert!(
        !m.parts.is_empty() || l.parts_max == 0,
        "{what}: no top-level part"
    );
    assert!(
        m.parts.len() <= l.parts_max,
        "{what}: {} parts",
        m.parts.len()
    );
    let headers: usize = m.parts.iter().map(|p| p.headers.len()).sum();
    assert!(headers <= l.headers_max, "{what}: {headers} headers");
    for h in m.parts.iter().flat_map(|p| &p.headers) {
        assert!(
            h.raw.len() <= 3 * l.header_bytes_max,
            "{what}: header {}",
            h.name
        );
    }
    for p in &m.parts {
        assert!(p.depth <= l.depth_max, "{what}: depth {}", p.depth);
        assert!(
            p.size <= l.part_bytes_max,
            "{what}: part of {} bytes",
            p.size
        );
        for t in [&p.text, &p.raw_text].into_iter().flatten() {
            assert!(
                t.len() <= 3 * p.size + 3,
                "{what}: text larger than its bytes"
            );
        }
    }
    let decoded: usize = m.attachments.iter().map(|a| a.data.len()).sum();
    assert!(
        decoded <= l.decoded_bytes_max,
        "{what}: {decoded} decoded bytes"
    );
    assert!(m.violations.len() <= 6 + mb_engine::filter::mime::MALFORMED_MAX);
}

#[test]
fn corpus_parses_within_limits() {
    let limits = Limits::default();
    // MIME_CORPUS_VERBOSE=1 lists every message with a violation.
    let verbose = std::env::var_os("MIME_CORPUS_VERBOSE").is_some();
    let mut total = (0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for set in ["ham", "spam", "malformed", "mixed", "virus"] {
        let mut list = Vec::new();
        files(&Path::new(CORPUS).join(set), &mut list);
        if list.is_empty() {
            eprintln!("SKIP: no corpus under {CORPUS}/{set}");
            continue;
        }
        let (mut bytes, mut parts, mut atts, mut urls, mut viol) = (0, 0, 0, 0, 0);
        let mut with_violation = 0;
        let mut slowest = Duration::ZERO;
        for path in &list {
            let raw = std::fs::read(path).expect("read corpus file");
            let t = Instant::now();
            let m = parse(&raw, &limits);
            let took = t.elapsed();
            slowest = slowest.max(took);
            assert!(
                took < Duration::from_secs(5),
                "{}: {took:?}",
                path.display()
            );
            assert_within(&m, &limits, &path.display().to_string());
            bytes += raw.len();
            parts += m.parts.len();
            atts += m.attachments.len();
            urls += m.urls.len();
            viol += m.violations.len();
            if verbose && !m.violations.is_empty() {
                eprintln!("{}: {:?}", path.display(), m.violations);
            }
            for v in &m.violations {
                *kinds.entry(format!("{v:?}")).or_default() += 1;
            }
            with_violation += usize::from(!m.violations.is_empty());
        }
        eprintln!(
            "corpus {set}: {} messages, {:.1} MB, {parts} parts, {atts} attachments, {urls} urls, \
             {viol} violations in {with_violation} messages, slowest {slowest:?}",
            list.len(),
            bytes as f64 / 1e6
        );
        total.0 += list.len();
        total.1 += parts;
        total.2 += atts;
        total.3 += urls;
        total.4 += viol;
        total.5 += with_violation;
    }
    eprintln!(
        "corpus total: {} messages, {} parts, {} attachments, {} urls, {} violations in {} \
         messages",
        total.0, total.1, total.2, total.3, total.4, total.5
    );
    eprintln!("corpus violations by kind: {kinds:?}");
}

#[test]
fn golden_rfc2047_subject_in_iso_2022_jp() {
    let Some(raw) = corpus_file("spam/spamassassin/spam/00323.9e36bf05304c99f2133a4c03c49533a9")
    else {
        return;
    };
    let m = parse(&raw, &Limits::default());
    let subject = m.header("subject").next().expect("subject");
    assert_eq!(subject.value, "しじみともものコラボレーション");
    assert!(subject.raw.starts_with("=?iso-2022-jp?B?"));
    assert!(m
        .body_text()
        .starts_with("しじみともものコラボレーション\n"));
}

#[test]
fn golden_base64_html_rendered() {
    let Some(raw) = corpus_file("spam/spamassassin/spam/00092.8ca54ce0c31e6149b5ef05c0108743be")
    else {
        return;
    };
    let m = parse(&raw, &Limits::default());
    let html = m.parts.iter().find(|p| p.is_html).expect("an html part");
    assert_eq!(html.content_type, "text/html");
    let raw_text = html.raw_text.as_deref().expect("raw text");
    assert!(raw_text.starts_with("<!DOCTYPE HTML PUBLIC"));
    let text = html.text.as_deref().expect("rendered");
    // SpamAssassin's whitespace for the elements around it: blank lines
    assert!(
        text.trim_start_matches('\n')
            .starts_with("Adult Classified 2k2\n"),
        "{text}"
    );
    assert!(text.contains("--- The most comprehensive adult match making service"));
    assert!(
        !text.contains('<') || !text.contains("<td"),
        "tags left: {text}"
    );
    assert!(
        m.urls
            .contains(&"http://www.xxxmatch.net/logo.jpg".to_owned()),
        "{:?}",
        m.urls
    );
    assert!(m.body_text().contains("Adult Classified 2k2"));
}

#[test]
fn golden_rfc2231_attachment_name() {
    let Some(raw) = corpus_file("mixed/mail-parser-rs/legacy/045.eml") else {
        return;
    };
    let m = parse(&raw, &Limits::default());
    let a = m
        .attachments
        .iter()
        .find(|a| a.filename.as_deref() == Some("HasenundFrösche.txt"))
        .unwrap_or_else(|| panic!("attachment by RFC 2231 name: {:?}", m.attachments));
    assert_eq!(a.declared_type, "text/plain");
    let text = m.parts[a.part]
        .text
        .as_deref()
        .expect("text attachment is text");
    assert!(text.starts_with("Die Hasen und die Frösche"), "{text}");
}

#[test]
fn golden_urls_from_html_href() {
    let Some(raw) = corpus_file("spam/spamassassin/spam/00092.8ca54ce0c31e6149b5ef05c0108743be")
    else {
        return;
    };
    let m = parse(&raw, &Limits::default());
    let hrefs: Vec<_> = m.urls.iter().filter(|u| u.contains("xxxmatch")).collect();
    assert!(hrefs.len() > 3, "{:?}", m.urls);
    let mut sorted = m.urls.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), m.urls.len(), "de-duplicated");
}

#[test]
fn golden_nested_rfc822() {
    let Some(raw) = corpus_file("mixed/mimekit/messages/simple-embedded-message.eml") else {
        return;
    };
    let m = parse(&raw, &Limits::default());
    let types: Vec<_> = m
        .parts
        .iter()
        .map(|p| (p.content_type.as_str(), p.depth))
        .collect();
    assert_eq!(
        types,
        [
            ("multipart/mixed", 0),
            ("text/plain", 1),
            ("message/rfc822", 1),
            ("text/plain", 2)
        ]
    );
    assert_eq!(
        m.parts[3]
            .headers
            .iter()
            .find(|h| h.name == "Subject")
            .map(|h| h.value.as_str()),
        Some("embedded message")
    );
    assert_eq!(
        m.body_text(),
        "test of simple embedded message/rfc822 part\nThis is the message body.\n\
         This is the embedded message body.\n"
    );
    assert!(m.violations.is_empty(), "{:?}", m.violations);
}

// ---- hostile inputs, generated ----

#[test]
fn hostile_deep_nesting() {
    let mut raw = String::new();
    for i in 0..10_000 {
        raw.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\n\n--b{i}\n"
        ));
    }
    raw.push_str("Content-Type: text/plain\n\ndeep\n");
    for i in (0..10_000).rev() {
        raw.push_str(&format!("--b{i}--\n"));
    }
    let l = Limits::default();
    let t = Instant::now();
    let m = parse(raw.as_bytes(), &l);
    assert!(m.has(&Violation::DepthExceeded), "{:?}", m.violations);
    assert_eq!(m.parts.len(), l.depth_max + 1);
    assert_within(&m, &l, "deep nesting");
    assert!(t.elapsed() < Duration::from_secs(10));
    // Embedded messages nest the same way.
    let mut raw = String::new();
    for _ in 0..10_000 {
        raw.push_str("Content-Type: message/rfc822\n\n");
    }
    let m = parse(raw.as_bytes(), &l);
    assert!(m.has(&Violation::DepthExceeded));
    assert_within(&m, &l, "deep rfc822");
    // A configured depth above the hard ceiling is clamped.
    let wide = Limits {
        depth_max: 1_000_000,
        ..l
    };
    let m = parse(raw.as_bytes(), &wide);
    assert!(m.parts.len() <= mb_engine::filter::mime::DEPTH_HARD_MAX + 1);
}

#[test]
fn hostile_many_parts() {
    let mut raw = String::from("Content-Type: multipart/mixed; boundary=b\n\n");
    for i in 0..100_000 {
        raw.push_str(&format!(
            "--b\nContent-Type: text/plain\n\npart {i} http://u{i}.example/\n"
        ));
    }
    raw.push_str("--b--\n");
    let l = Limits::default();
    let m = parse(raw.as_bytes(), &l);
    assert!(m.has(&Violation::PartsExceeded));
    assert_eq!(m.parts.len(), l.parts_max);
    assert_eq!(m.urls.len(), l.parts_max - 1);
    assert_within(&m, &l, "many parts");
}

#[test]
fn hostile_huge_header_line() {
    let mut raw = b"Subject: ".to_vec();
    raw.resize(raw.len() + 10 * 1024 * 1024, b'a');
    raw.extend_from_slice(b"\nX-Folded: a\n");
    for _ in 0..100_000 {
        raw.extend_from_slice(b" =?utf-8?B?w6k=?= continuation\n");
    }
    raw.extend_from_slice(b"\nbody\n");
    let l = Limits::default();
    let m = parse(&raw, &l);
    assert!(m.has(&Violation::HeaderTooLong));
    let subject = m.header("subject").next().expect("subject kept, cut");
    assert_eq!(subject.raw.len(), l.header_bytes_max);
    let folded = m.header("x-folded").next().expect("folded kept, cut");
    assert!(folded.raw.len() <= l.header_bytes_max);
    assert!(folded.value.contains("é continuation"));
    assert_eq!(m.parts[0].text.as_deref(), Some("body\n"));
    assert_within(&m, &l, "huge header");
}

#[test]
fn hostile_million_headers() {
    let mut raw = Vec::with_capacity(8_000_000);
    for i in 0..1_000_000u32 {
        raw.extend_from_slice(format!("X-H{}: v\n", i % 10).as_bytes());
    }
    raw.extend_from_slice(b"Subject: last\n\nbody\n");
    let l = Limits::default();
    let m = parse(&raw, &l);
    assert!(m.has(&Violation::HeadersExceeded));
    assert_eq!(m.headers.len(), l.headers_max);
    assert_eq!(
        m.parts[0].text.as_deref(),
        Some("body\n"),
        "the body is still found"
    );
    assert_within(&m, &l, "many headers");
}

#[test]
fn hostile_decoded_expansion() {
    let l = Limits {
        decoded_bytes_max: 1024 * 1024,
        part_bytes_max: 512 * 1024,
        ..Limits::default()
    };
    let b64_line = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\n";
    let mut raw = String::from("Content-Type: multipart/mixed; boundary=b\n\n");
    for i in 0..8 {
        raw.push_str(&format!(
            "--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment; \
             filename=f{i}.bin\nContent-Transfer-Encoding: base64\n\n"
        ));
        for _ in 0..(700 * 1024 / 54) {
            raw.push_str(b64_line);
        }
    }
    raw.push_str("--b--\n");
    let m = parse(raw.as_bytes(), &l);
    assert!(m.has(&Violation::DecodedTooLarge));
    let decoded: usize = m.attachments.iter().map(|a| a.data.len()).sum();
    assert_eq!(decoded, l.decoded_bytes_max);
    assert!(m.attachments.iter().all(|a| a.size <= l.part_bytes_max));
    assert_within(&m, &l, "decoded expansion");

    // Base64 inside base64: an embedded message, encoded, holding an encoded
    // part; the budget counts both layers.
    let inner = format!(
        "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n{}",
        b64_line.repeat(20_000)
    );
    let outer = format!(
        "Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n{}",
        b64(inner.as_bytes())
    );
    let m = parse(outer.as_bytes(), &l);
    assert!(m.has(&Violation::DecodedTooLarge));
    assert!(m.parts.iter().map(|p| p.size).sum::<usize>() <= l.decoded_bytes_max);
    assert_within(&m, &l, "nested base64");
}

#[test]
fn hostile_stream_larger_than_message_cap() {
    let l = Limits {
        message_bytes_max: 1024 * 1024,
        ..Limits::default()
    };
    let mut s = Parser::new(l);
    s.push_header(b"Subject", b"big");
    s.end_of_headers();
    let chunk = vec![b'x'; 65_535];
    for _ in 0..64 {
        s.push(&chunk);
        assert!(s.buffered() <= l.message_bytes_max + 1);
    }
    let m = s.finish();
    assert!(m.has(&Violation::MessageTooLarge));
    assert!(m.parts[0].size <= l.message_bytes_max);
}

#[test]
fn sniffed_types_of_corpus_attachments() {
    let Some(raw) = corpus_file("mixed/mail-parser-rs/legacy/045.eml") else {
        return;
    };
    let m = parse(&raw, &Limits::default());
    assert!(m
        .attachments
        .iter()
        .all(|a| a.sniffed_type != Some(sniff::EXE)));
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, c) in data.chunks(3).enumerate() {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..=c.len() {
            out.push(T[(n >> (18 - 6 * k) & 63) as usize] as char);
        }
        for _ in c.len()..3 {
            out.push('=');
        }
        if i % 19 == 18 {
            out.push('\n');
        }
    }
    out
}

// ---- properties ----

/// Tokens that steer the parser into its interesting states.
const TOKENS: &[&str] = &[
    "\n",
    "\r\n",
    "\n\n",
    "--b\n",
    "--b--\n",
    "--c\n",
    "Content-Type: multipart/mixed; boundary=b\n",
    "Content-Type: multipart/alternative; boundary=\"c\"\n",
    "Content-Type: message/rfc822\n",
    "Content-Type: text/html; charset=iso-8859-1\n",
    "Content-Transfer-Encoding: base64\n",
    "Content-Transfer-Encoding: quoted-printable\n",
    "Content-Disposition: attachment; filename*0*=utf-8''%C3%A9; filename*1=x\n",
    "Subject: =?koi8-r?B?wdXT?= =?utf-8?Q?a_b?=\n",
    " folded\n",
    "<a href=\"http://x/\">",
    "<script>",
    "<!--",
    "&amp;&#x41;&bogus",
    "www.y.example ",
    "TVqQAAMAAAA=",
    "=C3=A9=\n",
    "x",
];

fn tokens() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0..TOKENS.len(), 0..80)
        .prop_map(|ix| ix.into_iter().flat_map(|i| TOKENS[i].bytes()).collect())
}

fn small_limits() -> Limits {
    Limits {
        depth_max: 3,
        parts_max: 12,
        headers_max: 20,
        header_bytes_max: 64,
        message_bytes_max: 2048,
        decoded_bytes_max: 512,
        part_bytes_max: 256,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_panic_on_arbitrary_bytes(raw in prop::collection::vec(any::<u8>(), 0..2048)) {
        for l in [Limits::default(), small_limits()] {
            let m = parse(&raw, &l);
            assert_within(&m, &l, "arbitrary");
        }
    }

    #[test]
    fn no_panic_on_mime_shaped_input(raw in tokens()) {
        for l in [Limits::default(), small_limits()] {
            let m = parse(&raw, &l);
            assert_within(&m, &l, "tokens");
        }
    }

    #[test]
    fn streamed_equals_whole(raw in tokens(), cuts in prop::collection::vec(any::<usize>(), 0..12)) {
        for l in [Limits::default(), small_limits()] {
            let whole = parse(&raw, &l);
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (raw.len() + 1)).collect();
            points.sort_unstable();
            let mut s = Parser::new(l);
            let mut at = 0;
            for p in points.into_iter().chain([raw.len()]) {
                s.push(&raw[at..p]);
                at = p;
            }
            prop_assert_eq!(s.finish(), whole);
        }
    }
}
