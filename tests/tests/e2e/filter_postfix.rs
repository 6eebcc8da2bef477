//! The content filter behind a real Postfix: SpamAssassin-format rules
//! compiled by mbd, scanned at end of message, mapped to X-Spam-* headers,
//! the hold queue and a 550 at end of data by the configured thresholds;
//! blocked attachments refused or held; per-recipient-domain thresholds;
//! a message over the MIME caps held (`on_limit`).
//! The rule file is a few lines: the stock set takes minutes in debug.

use std::time::Duration;

use mb_tests::harness::MbdConfig;
use mb_tests::postfix::{message, with_subject};

use crate::common::{assert_one_held, Stack};

const WAIT: Duration = Duration::from_secs(30);

const RULES: &str = "\
# test rules, SpamAssassin syntax
body     MB_TEST_SPAMMY   /cheap-meds-marker/i
describe MB_TEST_SPAMMY   Test body rule
score    MB_TEST_SPAMMY   6.0
body     __MB_TEST_HOLD1  /hold-me-marker/
body     __MB_TEST_HOLD2  /second-hold-word/
meta     MB_TEST_HOLD     __MB_TEST_HOLD1 && __MB_TEST_HOLD2
score    MB_TEST_HOLD     9.0
header   MB_TEST_SUBJ     Subject =~ /reject-me-subject/
score    MB_TEST_SUBJ     25.0
required_score 5.0
";

/// mbd with the test rules, Postfix in front; the rules' directory lives as
/// long as the returned guard.
fn stack(name: &str) -> (Stack, mb_tests::harness::TestDir) {
    stack_with(name, "")
}

/// Like [`stack`], with `extra` TOML after the `[filter]` keys (tables such
/// as `[filter.attachments]` or `[filter.domains."x.example"]`).
fn stack_with(name: &str, extra: &str) -> (Stack, mb_tests::harness::TestDir) {
    let dir = mb_tests::harness::TestDir::new(&format!("{name}-rules")).unwrap();
    let rules = dir.join("local.cf");
    std::fs::write(&rules, RULES).unwrap();
    let policy = format!(
        "[filter]\nrules = [\"{}\"]\nquarantine_score = 8.0\nreject_score = 20.0\n{extra}",
        rules.display()
    );
    (Stack::start(name, &MbdConfig::with_policy(&policy)), dir)
}

/// A DOS executable header (`MZ`, binary bytes, the DOS stub text), base64.
const EXE_BASE64: &str =
    "TVqQAAMAAAAEAAAA//8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\
                          AAAAAgAAAAFRoaXMgcHJvZ3JhbSBjYW5ub3QgYmUgcnVuIGluIERPUyBtb2RlLg==";

/// A message with a text part and one base64 attachment `name`.
fn with_attachment(to: &str, subject: &str, name: &str, base64: &str) -> String {
    format!(
        "From: <alice@source.example>\nTo: <{to}>\nSubject: {subject}\n\
         Message-ID: <{subject}.{pid}@client.mbtest.example>\n\
         Date: Thu, 01 Jan 2026 00:00:00 +0000\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"mb-b1\"\n\n\
         --mb-b1\nContent-Type: text/plain\n\nPlease find the invoice attached.\n\
         --mb-b1\nContent-Type: application/octet-stream; name=\"{name}\"\n\
         Content-Disposition: attachment; filename=\"{name}\"\n\
         Content-Transfer-Encoding: base64\n\n{base64}\n--mb-b1--\n",
        pid = std::process::id()
    )
}

#[test]
fn blocked_attachment_is_rejected_or_held_per_domain() {
    let (s, _rules) = stack_with(
        "pf-filter-attach",
        "[filter.domains.\"held.example\"]\nattachment_action = \"quarantine\"\n",
    );
    let send = |to: &str, subject: &str, name: &str, data: &str| {
        s.pf.send(
            "alice@source.example",
            &[to],
            &with_attachment(to, subject, name, data),
        )
    };

    // The default action: 550 5.7.1 at end of data, naming the file.
    let r = send("bob@dest.example", "exe-1", "invoice.pdf.exe", EXE_BASE64);
    assert_eq!(r.eod_code(), 550, "{}", r.transcript);
    assert!(
        r.transcript
            .contains("5.7.1 Attachment \"invoice.pdf.exe\" blocked: .exe file disguised as .pdf"),
        "{}",
        r.transcript
    );
    // Executable content under a harmless name is refused too.
    let r = send("bob@dest.example", "exe-2", "report.dat", EXE_BASE64);
    assert_eq!(r.eod_code(), 550, "{}", r.transcript);
    assert!(
        r.transcript.contains("blocked: executable content"),
        "{}",
        r.transcript
    );

    // The same file to the domain whose override holds it: accepted, held.
    let r = send("carol@held.example", "exe-3", "invoice.pdf.exe", EXE_BASE64);
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    assert_one_held(&s.pf);

    // A harmless attachment is delivered, with its X-Spam-Status clean.
    let pdf = "JVBERi0xLjQKJcOkw7zDtsOfCg==";
    let r = send("bob@dest.example", "pdf-1", "invoice.pdf", pdf);
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    let msgs = s.pf.wait_delivered(1, WAIT).unwrap();
    let status = msgs[0].header_values("X-Spam-Status").join("|");
    assert!(
        status.starts_with("No, score=0.0 required=5.0 tests=none"),
        "{}",
        msgs[0].raw
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(s.pf.delivered().len(), 1, "only the pdf is delivered");
}

#[test]
fn domain_override_changes_the_action_for_the_same_spam() {
    let (s, _rules) = stack_with(
        "pf-filter-domains",
        "[filter.domains.\"strict.example\"]\nreject_score = 5.5\n\
         [filter.domains.\".lax.example\"]\nrequired_score = 10.0\n",
    );
    let send = |to: &str, subject: &str| {
        s.pf.send(
            "alice@source.example",
            &[to],
            &message(
                "alice@source.example",
                to,
                subject,
                "buy cheap-meds-marker now",
            ),
        )
    };
    // Global profile: score 6 is spam, delivered and flagged.
    let r = send("bob@dest.example", "spam-global");
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    // strict.example rejects at 5.5.
    let r = send("dan@strict.example", "spam-strict");
    assert_eq!(r.eod_code(), 550, "{}", r.transcript);
    assert!(
        r.transcript
            .contains("5.7.1 Message content rejected as spam (score 6.0)"),
        "{}",
        r.transcript
    );
    // A subdomain of .lax.example needs 10: not spam.
    let r = send("erin@mx.lax.example", "spam-lax");
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);

    let msgs = s.pf.wait_delivered(2, WAIT).unwrap();
    let by_subject = |subj: &str| with_subject(&msgs, subj);
    let global = by_subject("spam-global");
    assert_eq!(
        global.header_values("X-Spam-Flag"),
        ["YES"],
        "{}",
        global.raw
    );
    let status = global.header_values("X-Spam-Status").join("|");
    assert!(
        status.starts_with("Yes, score=6.0 required=5.0 "),
        "{}",
        global.raw
    );
    let lax = by_subject("spam-lax");
    assert!(lax.header_values("X-Spam-Flag").is_empty(), "{}", lax.raw);
    let status = lax.header_values("X-Spam-Status").join("|");
    assert!(
        status.starts_with("No, score=6.0 required=10.0 "),
        "{}",
        lax.raw
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(s.pf.delivered().len(), 2, "the strict one is not delivered");
}

#[test]
fn content_scores_map_to_headers_hold_and_reject() {
    let (s, _rules) = stack("pf-filter");
    let send = |subject: &str, body: &str| {
        s.pf.send(
            "alice@source.example",
            &["bob@dest.example"],
            &message("alice@source.example", "bob@dest.example", subject, body),
        )
    };

    // ham: delivered, X-Spam-Status says No, no flag
    let r = send("ham-1", "marker-ham-1 nothing to see");
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    // spam below the hold threshold: delivered, flagged, the symbol named
    let r = send("spam-1", "buy Cheap-Meds-Marker now");
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    let msgs = s.pf.wait_delivered(2, WAIT).unwrap();
    let by_subject = |subj: &str| with_subject(&msgs, subj);
    let ham = by_subject("ham-1");
    let status = ham.header_values("X-Spam-Status").join("|");
    assert!(
        status.starts_with("No, score=0.0 required=5.0 tests=none"),
        "{}",
        ham.raw
    );
    assert!(ham.header_values("X-Spam-Flag").is_empty(), "{}", ham.raw);
    assert_eq!(ham.header_values("X-Spam-Score"), ["0.0"], "{}", ham.raw);
    let spam = by_subject("spam-1");
    assert_eq!(spam.header_values("X-Spam-Flag"), ["YES"], "{}", spam.raw);
    let status = spam.header_values("X-Spam-Status").join("|");
    assert!(
        status.starts_with("Yes, score=6.0 required=5.0 tests=MB_TEST_SPAMMY"),
        "{}",
        spam.raw
    );
    let mb = spam.header_values("X-Mailborder").join("|");
    assert!(mb.starts_with("score=6.00 "), "{}", spam.raw);
    assert!(
        spam.body().contains("Cheap-Meds-Marker"),
        "body unchanged: {}",
        spam.raw
    );

    // the meta rule (both sub-rules) crosses the hold threshold
    let r = send("hold-1", "hold-me-marker and the second-hold-word");
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    assert_one_held(&s.pf);

    // only one sub-rule: not held, not flagged (score 0)
    let r = send("half-1", "hold-me-marker alone");
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);

    // the reject threshold: 550 5.7.1 at end of data
    let r = send("reject-me-subject", "body");
    assert_eq!(r.eod_code(), 550, "{}", r.transcript);
    assert!(r.transcript.contains("5.7.1"), "{}", r.transcript);

    let msgs = s.pf.wait_delivered(3, WAIT).unwrap();
    let half = with_subject(&msgs, "half-1");
    assert!(half.header_values("X-Spam-Flag").is_empty(), "{}", half.raw);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        s.pf.delivered().len(),
        3,
        "the rejected and held ones are not delivered"
    );
}

#[test]
fn message_over_the_mime_caps_is_held_by_default() {
    let (s, _rules) = stack("pf-filter-limits");
    // 300 parts: past the parser's 256, so the rest is not scanned and the
    // default on_limit holds the message.
    let mut body = String::from("This is a multi-part message.\n");
    for i in 0..300 {
        body.push_str(&format!("--mb-p\nContent-Type: text/plain\n\npart {i}\n"));
    }
    body.push_str("--mb-p--\n");
    let msg = format!(
        "From: <alice@source.example>\nTo: <bob@dest.example>\nSubject: many-parts\n\
         Message-ID: <many-parts.{pid}@client.mbtest.example>\n\
         Date: Thu, 01 Jan 2026 00:00:00 +0000\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"mb-p\"\n\n{body}",
        pid = std::process::id()
    );
    let r =
        s.pf.send("alice@source.example", &["bob@dest.example"], &msg);
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    assert_one_held(&s.pf);
    // An ordinary multipart is delivered.
    let ok = msg
        .replace("many-parts", "few-parts")
        .split("--mb-p\nContent-Type: text/plain\n\npart 3\n")
        .next()
        .map(|head| format!("{head}--mb-p--\n"))
        .unwrap();
    let r =
        s.pf.send("alice@source.example", &["bob@dest.example"], &ok);
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    let msgs = s.pf.wait_delivered(1, WAIT).unwrap();
    assert_eq!(
        msgs[0].header_values("Subject"),
        ["few-parts"],
        "{}",
        msgs[0].raw
    );
    let status = msgs[0].header_values("X-Spam-Status").join("|");
    assert!(status.contains("tests=none"), "{}", msgs[0].raw);
}

/// Messages sent at once from several SMTP sessions: mbd scans the
/// end-of-message scans of concurrent milter connections together
/// (`scan_batcher`), and each message still gets its own verdict: the spam
/// ones flagged with their score, the ham ones not. `mbctl shard status`
/// counts every scan and the batches they ran in.
#[test]
fn concurrent_messages_each_get_their_own_verdict() {
    const SENDERS: usize = 6;
    const EACH: usize = 5;
    let (s, _rules) = stack("pf-filter-concurrent");
    std::thread::scope(|scope| {
        for t in 0..SENDERS {
            let pf = &s.pf;
            scope.spawn(move || {
                for i in 0..EACH {
                    let subject = format!("conc-{t}-{i}");
                    let body = if (t + i) % 2 == 0 {
                        format!("{subject} buy cheap-meds-marker now")
                    } else {
                        format!("{subject} nothing to see")
                    };
                    let r = pf.send(
                        "alice@source.example",
                        &["bob@dest.example"],
                        &message("alice@source.example", "bob@dest.example", &subject, &body),
                    );
                    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
                }
            });
        }
    });
    let msgs = s.pf.wait_delivered(SENDERS * EACH, WAIT).unwrap();
    for t in 0..SENDERS {
        for i in 0..EACH {
            let m = with_subject(&msgs, &format!("conc-{t}-{i}"));
            let (flag, score): (&[&str], &str) = if (t + i) % 2 == 0 {
                (&["YES"], "score=6.00 ")
            } else {
                (&[], "score=0.00 ")
            };
            assert_eq!(m.header_values("X-Spam-Flag"), flag, "{}", m.raw);
            let mb = m.header_values("X-Mailborder").join("|");
            assert!(mb.starts_with(score), "{}", m.raw);
        }
    }
    let shards = s.mbd.shard_status().unwrap();
    let sum = |key: &str| -> u64 { shards.iter().map(|v| v[key].as_u64().unwrap()).sum() };
    assert_eq!(sum("scanned"), (SENDERS * EACH) as u64, "{shards:?}");
    let batches = sum("scan_batches");
    assert!(
        (1..=(SENDERS * EACH) as u64).contains(&batches),
        "{shards:?}"
    );
    eprintln!("{} messages scanned in {batches} batches", SENDERS * EACH);
}
