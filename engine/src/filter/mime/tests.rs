//! Unit tests of the parser on small hand-written messages.

use super::*;

fn p(raw: &str) -> Message {
    parse(raw.as_bytes(), &Limits::default())
}

#[test]
fn single_part_plain() {
    let m = p("Subject: =?iso-8859-1?q?Caf=E9?=\nFrom: A <a@b.c>\n\nhello http://x.example/\n");
    assert_eq!(m.header_value("subject"), Some("Café"));
    assert_eq!(m.parts.len(), 1);
    assert_eq!(m.parts[0].content_type, "text/plain");
    assert_eq!(
        m.parts[0].text.as_deref(),
        Some("hello http://x.example/\n")
    );
    assert_eq!(m.body_text(), "Café\nhello http://x.example/\n");
    assert_eq!(m.urls, ["http://x.example/"]);
    assert_eq!(m.all_headers(), "Subject: Café\nFrom: A <a@b.c>\n");
    assert!(m.violations.is_empty(), "{:?}", m.violations);
}

#[test]
fn folded_headers_and_crlf() {
    let m = p("Subject: a\r\n  b\r\n\tc\r\nX: 1\r\n\r\nbody\r\n");
    assert_eq!(m.header_value("Subject"), Some("a  b\tc"));
    assert_eq!(m.header("x").count(), 1);
    assert_eq!(m.parts[0].text.as_deref(), Some("body\r\n"));
}

#[test]
fn multipart_alternative_with_attachment() {
    let raw = "From: x@y\nContent-Type: multipart/mixed; boundary=\"outer\"\n\npreamble\n\
--outer\nContent-Type: multipart/alternative; boundary=inner\n\n\
--inner\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n\
caf=C3=A9 www.a.example\n\
--inner\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n\
PHA+Y2Fmw6k8L3A+PGEgaHJlZj0iaHR0cDovL2IuZXhhbXBsZS8iPmxpbms8L2E+\n\
--inner--\n\
--outer\nContent-Type: application/octet-stream; name=\"x.bin\"\n\
Content-Disposition: attachment; filename*=utf-8''%C3%A9.exe\nContent-Transfer-Encoding: base64\n\n\
TVqQAAMAAAA=\n--outer--\nepilogue\n";
    let m = p(raw);
    let types: Vec<_> = m
        .parts
        .iter()
        .map(|p| (p.content_type.as_str(), p.depth))
        .collect();
    assert_eq!(
        types,
        [
            ("multipart/mixed", 0),
            ("multipart/alternative", 1),
            ("text/plain", 2),
            ("text/html", 2),
            ("application/octet-stream", 1)
        ]
    );
    assert_eq!(m.parts[2].text.as_deref(), Some("café www.a.example"));
    assert_eq!(m.parts[3].text.as_deref(), Some("\n\ncafé\n\nlink"));
    assert!(m.parts[3]
        .raw_text
        .as_deref()
        .is_some_and(|t| t.starts_with("<p>café")));
    assert!(m.parts[3].is_html);
    assert_eq!(m.urls, ["http://www.a.example", "http://b.example/"]);
    assert_eq!(m.attachments.len(), 1);
    let a = &m.attachments[0];
    assert_eq!(a.filename.as_deref(), Some("é.exe"));
    assert_eq!(a.declared_type, "application/octet-stream");
    assert_eq!(a.sniffed_type, Some(sniff::EXE));
    assert_eq!((a.size, a.depth, a.part), (8, 1, 4));
    assert_eq!(m.body_text(), "\ncafé www.a.example\n\n\ncafé\n\nlink\n");
    assert!(m.violations.is_empty(), "{:?}", m.violations);
}

#[test]
fn embedded_message() {
    let raw = "Subject: outer\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\
Content-Type: message/rfc822\n\nSubject: inner\nContent-Type: text/plain\n\ninner body\n--b--\n";
    let m = p(raw);
    assert_eq!(m.parts.len(), 3);
    assert_eq!(m.parts[1].content_type, "message/rfc822");
    assert_eq!(m.parts[2].headers[0].value, "inner");
    assert_eq!(m.parts[2].depth, 2);
    assert_eq!(m.parts[2].text.as_deref(), Some("inner body"));
    assert_eq!(m.body_text(), "outer\ninner body\n");
}

#[test]
fn broken_structures_are_reported() {
    let m = p("Content-Type: multipart/mixed\n\nno boundary\n");
    assert!(m.has(&Violation::Malformed("multipart without boundary".into())));
    assert_eq!(m.parts[0].text.as_deref(), Some("no boundary\n"));
    let m = p("Content-Type: multipart/mixed; boundary=z\n\n--z\n\nunterminated");
    assert!(m.has(&Violation::Malformed(
        "multipart without closing boundary".into()
    )));
    assert_eq!(m.parts[1].text.as_deref(), Some("unterminated"));
    // SpamAssassin skips up to three invalid header lines: these two are
    // read as (skipped) header lines and the body is empty
    let m = p("Subject: x\nthis is not a header\nmore\n");
    assert_eq!(m.headers.len(), 1);
    assert_eq!(m.parts[0].text.as_deref(), Some(""));
    assert!(m.has(&Violation::Malformed("invalid header line skipped".into())));
    let m = p("Subject: x\nno header 1\nno header 2\nno header 3\nbody 4\nbody 5\n");
    assert_eq!(m.headers.len(), 1);
    assert_eq!(m.parts[0].text.as_deref(), Some("body 4\nbody 5\n"));
}

#[test]
fn boundary_prefix_is_not_a_delimiter() {
    let raw = "Content-Type: multipart/mixed; boundary=ab\n\n--ab\n\n--abc\nx\n--ab--\n";
    let m = p(raw);
    assert_eq!(m.parts.len(), 2);
    assert_eq!(m.parts[1].text.as_deref(), Some("--abc\nx"));
}

#[test]
fn caps_hold() {
    let limits = Limits {
        parts_max: 3,
        headers_max: 2,
        header_bytes_max: 8,
        ..Limits::default()
    };
    let m = parse(b"A: 0123456789\nB: 1\nC: 2\n\nx", &limits);
    assert_eq!(m.headers.len(), 2);
    assert_eq!(m.headers[0].raw, "01234567");
    assert!(m.has(&Violation::HeaderTooLong) && m.has(&Violation::HeadersExceeded));
    let raw = "Content-Type: multipart/mixed; boundary=b\n\n--b\n\n1\n--b\n\n2\n--b\n\n3\n--b--\n";
    let m = parse(
        raw.as_bytes(),
        &Limits {
            parts_max: 3,
            ..Limits::default()
        },
    );
    assert_eq!(m.parts.len(), 3);
    assert!(m.has(&Violation::PartsExceeded));
}

#[test]
fn streaming_matches_whole() {
    let raw = b"Subject: s\r\nContent-Type: text/html\r\n\r\n<p>x</p>";
    let mut s = Parser::new(Limits::default());
    s.push_header(b"Subject", b"s");
    s.push_header(b"Content-Type", b"text/html");
    s.end_of_headers();
    s.push(b"<p>");
    s.push(b"x</p>");
    assert_eq!(s.finish(), parse(raw, &Limits::default()));
}

/// The parse flags SpamAssassin's parser and MIMEEval record: epilogue,
/// a delimiter without headers after it, a part header block without its
/// blank line, an over-long quoted-printable line.
#[test]
fn mime_flags_like_spamassassin() {
    let multipart = |parts: &str, after: &str| {
        p(&format!(
            "Content-Type: multipart/mixed; boundary=\"b\"\n\npreamble\n{parts}--b--\n{after}"
        ))
        .flags
    };
    let good = "--b\nContent-Type: text/plain\n\nhello\n";
    assert_eq!(multipart(good, ""), MimeFlags::default());
    // epilogue: anything but whitespace and dots
    assert!(multipart(good, "trailing words\n").epilogue);
    assert!(!multipart(good, " \n.\n\t\n").epilogue);
    // a delimiter followed by a body line, not a field
    let bare = multipart("--b\nno header here\n", "");
    assert!(bare.missing_headers && bare.missing_separator);
    // a blank line right after the delimiter: no headers, separator fine
    let blank = multipart("--b\n\nhello\n", "");
    assert!(blank.missing_headers && !blank.missing_separator);
    // headers, then a body line without the blank line between
    let joined = multipart("--b\nContent-Type: text/plain\nhello\n", "");
    assert!(!joined.missing_headers && joined.missing_separator);
    // the top-level header block is not a part's
    assert!(
        !p("Subject: x\nbody without blank line\n")
            .flags
            .missing_separator
    );
    // quoted-printable lines: 78 characters pass, 79 do not ("SPAM: "
    // lines of an earlier report are skipped)
    let qp = |line: &str| {
        p(&format!(
            "Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n{line}\nend\n"
        ))
        .flags
        .qp_long_line
    };
    assert!(!qp(&"a".repeat(78)));
    assert!(qp(&"a".repeat(79)));
    assert!(!qp(&format!("SPAM: {}", "a".repeat(90))));
    // CRLF mail: the CR is not counted (SpamAssassin reads it as LF)
    assert!(!qp(&format!("{}\r", "a".repeat(78))));
    // the longest base64 line, line feed counted, CRLF as LF, calendar
    // invites aside
    let b64 = |ct: &str, lines: &[usize], eol: &str| {
        let body: String = lines
            .iter()
            .map(|n| format!("{}{eol}", "QUFB".repeat(*n / 4)))
            .collect();
        p(&format!(
            "Content-Type: {ct}\nContent-Transfer-Encoding: base64\n\n{body}"
        ))
        .flags
        .base64_line_max
    };
    assert_eq!(b64("text/plain", &[76, 20], "\n"), 77);
    assert_eq!(b64("text/plain", &[76, 20], "\r\n"), 77);
    assert_eq!(b64("image/png", &[80], "\n"), 81);
    assert_eq!(b64("application/ics", &[80], "\n"), 0);
    // only quoted-printable parts count
    assert!(
        !p(&format!(
            "Content-Type: text/plain\n\n{}\n",
            "a".repeat(200)
        ))
        .flags
        .qp_long_line
    );
}

/// A Content-Type without a `/` is kept as SpamAssassin keeps it: a file,
/// not text, unless it starts with the word "text".
#[test]
fn unreadable_content_types_as_spamassassin_reads_them() {
    let ct = |value: &str| {
        let m = p(&format!(
            "From: a@b.example\nContent-Type: {value}\n\nblah blah\n"
        ));
        (m.parts[0].content_type.clone(), m.parts[0].text.is_some())
    };
    assert_eq!(
        ct("application-x-gzip; name=\"d.xml.gz\""),
        ("application-x-gzip".to_owned(), false)
    );
    assert_eq!(
        ct("text; charset=us-ascii"),
        ("text/plain".to_owned(), true)
    );
    assert_eq!(ct("image/gif junk"), ("image/gif".to_owned(), false));
    assert_eq!(ct("text/plain junk"), ("text/plain".to_owned(), true));
    assert_eq!(ct(""), ("text/plain".to_owned(), true));
}

/// The message's header block skips up to three invalid lines (with their
/// continuations), as SpamAssassin does; the fourth, or a `--` line, ends
/// it. A part's header block ends at its first invalid line.
#[test]
fn invalid_header_lines_are_skipped_like_spamassassin() {
    let m = p("Received: by a.example with SMTP id 1\nFrom\n : <any@attack.example>\nFrom: <admin@b.example>\nSubject: s\n\nbody\n");
    assert_eq!(m.header_value("from"), Some("<admin@b.example>"));
    assert_eq!(m.header_value("subject"), Some("s"));
    assert_eq!(m.parts[0].text.as_deref(), Some("body\n"));
    assert!(!m.violations.is_empty(), "the skipped line is reported");

    let m = p("A: 1\nbad one\nbad two\nbad three\nbad four\nB: 2\n\nx\n");
    assert_eq!(m.header_value("a"), Some("1"));
    assert_eq!(
        m.header("b").count(),
        0,
        "the fourth invalid line ends the block"
    );
    assert_eq!(m.parts[0].text.as_deref(), Some("bad four\nB: 2\n\nx\n"));

    let m = p("A: 1\n--boundary\nB: 2\n\nx\n");
    assert_eq!(m.header("b").count(), 0, "a `--` line ends the block");

    let m = p("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\nnot a field\nX-In-Part: 1\n\ntext\n--b--\n");
    let part = &m.parts[m.parts.len() - 1];
    assert!(
        part.text
            .as_deref()
            .is_some_and(|t| t.starts_with("not a field\n")),
        "{:?}",
        part.text
    );
    assert!(!part
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("x-in-part")));
}

/// A multipart Content-Type whose boundary lacks its `;` still names the
/// boundary, as Util::parse_content_type finds `boundary=` anywhere.
#[test]
fn boundary_without_semicolon() {
    let m = p("Subject: s\nContent-Type: multipart/mixed\n\tboundary=\"bnd\"\n\n--bnd\nContent-Type: text/plain\n\ninside\n--bnd--\n");
    assert_eq!(m.parts.len(), 2, "{:?}", m.parts);
    assert_eq!(m.parts[1].text.as_deref(), Some("inside"));
    assert!(!m.has(&Violation::Malformed("multipart without boundary".into())));
    assert_eq!(
        loose_boundary(b"multipart/mixed boundary=abc def"),
        Some(b"abc".to_vec())
    );
    assert_eq!(loose_boundary(b"multipart/mixed; xboundary=abc"), None);
    assert_eq!(
        loose_boundary(b"multipart/mixed Boundary = \"a b\""),
        Some(b"a b".to_vec())
    );
}
