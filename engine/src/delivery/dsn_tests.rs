//! DSN tests: each report is parsed back with the content filter's MIME
//! parser and its delivery-status fields are checked against RFC 3464.

use super::*;
use crate::filter::mime::{self, Limits, Message};
use crate::smtp::client::Stage;

const ORIGINAL: &[u8] = b"Received: from client.example by mx.example\r\n\
From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: hello\r\n\
Message-ID: <1@example.org>\r\n\r\nThe body, which must not come back.\r\n";

/// 2026-12-06 10:00:00 UTC.
const NOW: u64 = 1_796_551_200_000;

fn failed(addr: &str, reply: Reply) -> DsnRecipient {
    let status = RcptStatus {
        outcome: Outcome::PermFailed,
        reply,
        stage: Stage::Rcpt,
        remote: true,
    };
    DsnRecipient::from_status(addr, &status, Some("mx.example.com"), NOW, false)
}

fn request<'a>(recipients: &'a [DsnRecipient], original: &'a [u8]) -> DsnRequest<'a> {
    DsnRequest {
        reporting_mta: "filter.example",
        queue_id: "Q1A2",
        original_sender: "alice@example.org",
        arrival_unix_ms: NOW - 3_600_000,
        now_unix_ms: NOW,
        utc_offset_minutes: 60,
        received_from_mta: Some("client.example"),
        recipients,
        original,
        unique: 0xfeed,
    }
}

fn parse(dsn: &Dsn) -> Message {
    let m = mime::parse(&dsn.content, &Limits::default());
    assert!(
        !m.violations
            .iter()
            .any(|v| matches!(v, mime::Violation::Malformed(_))),
        "{:?}\n{}",
        m.violations,
        String::from_utf8_lossy(&dsn.content)
    );
    m
}

/// The delivery-status body as blocks of (field, value), per RFC 3464
/// §2.1: the per-message block, then one block per recipient.
fn blocks(text: &str) -> Vec<Vec<(String, String)>> {
    text.replace("\r\n", "\n")
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|b| {
            b.lines()
                .map(|l| {
                    let (k, v) = l.split_once(':').expect("a field");
                    (k.to_owned(), v.trim().to_owned())
                })
                .collect()
        })
        .collect()
}

fn field<'a>(block: &'a [(String, String)], name: &str) -> Option<&'a str> {
    block
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn bounce_is_a_well_formed_multipart_report() {
    let rcpts = [
        failed(
            "bob@example.com",
            Reply::multiline(
                550,
                Some(Status::new(5, 1, 1)),
                vec!["<bob@example.com>: Recipient".into(), "unknown".into()],
            ),
        ),
        failed("carol@example.com", Reply::plain(554, "no thanks")),
    ];
    let dsn = build(&request(&rcpts, ORIGINAL)).unwrap();
    assert_eq!(dsn.sender, "", "sent from the null reverse-path");
    assert_eq!(dsn.recipient, "alice@example.org");
    assert_eq!(dsn.body, BodyType::SevenBit);
    assert!(!dsn.smtputf8);
    let text = String::from_utf8(dsn.content.clone()).unwrap();
    assert!(text.lines().all(|l| l.len() < 998));
    assert!(!text.replace("\r\n", "").contains('\n'), "CRLF only");

    let m = parse(&dsn);
    assert_eq!(
        m.header_value("From"),
        Some("Mail Delivery System <MAILER-DAEMON@filter.example>")
    );
    assert_eq!(m.header_value("To"), Some("<alice@example.org>"));
    assert_eq!(
        m.header_value("Subject"),
        Some("Undelivered Mail Returned to Sender")
    );
    assert_eq!(
        m.header_value("Date"),
        Some("Sun, 6 Dec 2026 11:00:00 +0100")
    );
    assert_eq!(m.header_value("Auto-Submitted"), Some("auto-replied"));
    assert!(m
        .header_value("Content-Type")
        .unwrap()
        .contains("report-type=delivery-status"));
    let types: Vec<&str> = m.parts.iter().map(|p| p.content_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "multipart/report",
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ]
    );

    let human = m.parts[1].text.as_deref().unwrap();
    assert!(human.contains("<bob@example.com>: host mx.example.com said: 550 5.1.1"));
    assert!(human.contains("Q1A2"));

    let status = m.parts[2].text.as_deref().unwrap();
    let b = blocks(status);
    assert_eq!(b.len(), 3, "{status}");
    assert_eq!(field(&b[0], "Reporting-MTA"), Some("dns; filter.example"));
    assert_eq!(
        field(&b[0], "Received-From-MTA"),
        Some("dns; client.example")
    );
    assert_eq!(
        field(&b[0], "Arrival-Date"),
        Some("Sun, 6 Dec 2026 10:00:00 +0100")
    );
    assert_eq!(
        field(&b[1], "Final-Recipient"),
        Some("rfc822; bob@example.com")
    );
    assert_eq!(field(&b[1], "Action"), Some("failed"));
    assert_eq!(field(&b[1], "Status"), Some("5.1.1"));
    assert_eq!(field(&b[1], "Remote-MTA"), Some("dns; mx.example.com"));
    assert_eq!(
        field(&b[1], "Diagnostic-Code"),
        Some("smtp; 550 5.1.1 <bob@example.com>: Recipient unknown")
    );
    assert_eq!(
        field(&b[1], "Last-Attempt-Date"),
        Some("Sun, 6 Dec 2026 11:00:00 +0100")
    );
    assert_eq!(
        field(&b[2], "Status"),
        Some("5.0.0"),
        "derived from the code"
    );
    for block in &b[1..] {
        for required in ["Final-Recipient", "Action", "Status"] {
            assert!(field(block, required).is_some(), "{required}");
        }
    }

    let headers = m.parts[3].text.as_deref().unwrap();
    assert!(headers.contains("Subject: hello"));
    assert!(!headers.contains("The body"), "only the header comes back");
}

#[test]
fn never_a_dsn_for_a_bounce() {
    let rcpts = [failed("bob@example.com", Reply::plain(550, "no"))];
    let mut req = request(&rcpts, ORIGINAL);
    req.original_sender = "";
    assert_eq!(build(&req), Err(DsnError::NullSender));
    let req = request(&[], ORIGINAL);
    assert_eq!(build(&req), Err(DsnError::NoRecipients));
}

#[test]
fn delay_warning_and_expiry() {
    let temp = RcptStatus {
        outcome: Outcome::TempFailed,
        reply: Reply::new(451, Status::new(4, 3, 0), "busy"),
        stage: Stage::Rcpt,
        remote: true,
    };
    let mut delayed = DsnRecipient::from_status("bob@example.com", &temp, Some("mx"), NOW, false);
    delayed.will_retry_until_unix_ms = Some(NOW + 4 * 86_400_000);
    assert_eq!(delayed.action, Action::Delayed);
    let dsn = build(&request(std::slice::from_ref(&delayed), ORIGINAL)).unwrap();
    let m = parse(&dsn);
    assert_eq!(
        m.header_value("Subject"),
        Some("Delayed Mail (still being retried)")
    );
    let b = blocks(m.parts[2].text.as_deref().unwrap());
    assert_eq!(field(&b[1], "Action"), Some("delayed"));
    assert_eq!(field(&b[1], "Status"), Some("4.3.0"));
    assert_eq!(
        field(&b[1], "Will-Retry-Until"),
        Some("Thu, 10 Dec 2026 11:00:00 +0100")
    );

    let expired = DsnRecipient::from_status("bob@example.com", &temp, Some("mx"), NOW, true);
    assert_eq!(expired.action, Action::Failed);
    assert_eq!(expired.status, Status::new(5, 4, 7));
    let local = RcptStatus {
        remote: false,
        ..temp
    };
    let lost = DsnRecipient::from_status("bob@example.com", &local, Some("mx"), NOW, true);
    assert_eq!(lost.remote_mta, None, "a local reason names no remote MTA");
    let dsn = build(&request(&[lost], ORIGINAL)).unwrap();
    let b = blocks(parse(&dsn).parts[2].text.as_deref().unwrap());
    assert_eq!(field(&b[1], "Diagnostic-Code"), Some("X-Mailborder; busy"));
}

#[test]
fn hostile_text_cannot_forge_fields_or_the_boundary() {
    let evil = Reply::plain(550, "x\r\nAction: delivered\r\n--=_mb_000000000000feed_0--");
    let rcpts = [failed("bob@example.com", evil)];
    let original =
        b"Subject: hi\r\n--=_mb_000000000000feed_0\r\n--=_mb_000000000000feed_1--\r\n\r\nbody";
    let dsn = build(&request(&rcpts, original)).unwrap();
    let text = String::from_utf8_lossy(&dsn.content);
    assert!(
        text.contains("boundary=\"=_mb_000000000000feed_2\""),
        "{text}"
    );
    let m = parse(&dsn);
    assert_eq!(m.parts.len(), 4);
    let b = blocks(m.parts[2].text.as_deref().unwrap());
    assert_eq!(b.len(), 2);
    assert_eq!(field(&b[1], "Action"), Some("failed"));
}

#[test]
fn utf8_addresses_make_a_global_report() {
    let rcpts = [failed("bj\u{f6}rn@example.com", Reply::plain(550, "no"))];
    let mut req = request(&rcpts, ORIGINAL);
    req.original_sender = "\u{e5}sa@example.org";
    let dsn = build(&req).unwrap();
    assert!(dsn.smtputf8);
    assert_eq!(dsn.body, BodyType::EightBitMime);
    let m = parse(&dsn);
    assert_eq!(m.parts[2].content_type, "message/global-delivery-status");
    assert_eq!(m.parts[3].content_type, "message/global-headers");
    let b = blocks(m.parts[2].text.as_deref().unwrap());
    assert_eq!(
        field(&b[1], "Final-Recipient"),
        Some("utf-8; bj\u{f6}rn@example.com")
    );
}

#[test]
fn original_header_is_capped_on_a_line_boundary() {
    let mut original = Vec::new();
    for i in 0..10_000 {
        original.extend_from_slice(format!("X-Filler-{i}: {}\n", "y".repeat(40)).as_bytes());
    }
    original.extend_from_slice(b"\nbody\n");
    let rcpts = [failed("bob@example.com", Reply::plain(550, "no"))];
    let dsn = build(&request(&rcpts, &original)).unwrap();
    assert!(dsn.content.len() < ORIGINAL_HEADER_BYTES_MAX + 8 * 1024);
    let m = parse(&dsn);
    let headers = m.parts[3].text.as_deref().unwrap();
    assert!(headers.starts_with("X-Filler-0: "));
    assert!(headers.trim_end().ends_with(&"y".repeat(40)));
}

#[test]
fn dates() {
    assert_eq!(rfc5322_date(0, 0), "Thu, 1 Jan 1970 00:00:00 +0000");
    assert_eq!(
        rfc5322_date(951_782_400_000, -210),
        "Mon, 28 Feb 2000 20:30:00 -0330"
    );
    assert_eq!(
        rfc5322_date(951_868_800_000, 0),
        "Wed, 1 Mar 2000 00:00:00 +0000"
    );
    assert_eq!(
        rfc5322_date(4_107_542_400_000, 0),
        "Mon, 1 Mar 2100 00:00:00 +0000"
    );
}
