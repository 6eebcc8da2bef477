//! The content filter behind a real Postfix: SpamAssassin-format rules
//! compiled by mbd, scanned at end of message, mapped to X-Spam-* headers,
//! the hold queue and a 550 at end of data by the configured thresholds.

use std::time::Duration;

use mb_tests::harness::MbdConfig;
use mb_tests::postfix::message;

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
    let dir = mb_tests::harness::TestDir::new(&format!("{name}-rules")).unwrap();
    let rules = dir.join("local.cf");
    std::fs::write(&rules, RULES).unwrap();
    let policy = format!(
        "[filter]\nrules = [\"{}\"]\nquarantine_score = 8.0\nreject_score = 20.0\n",
        rules.display()
    );
    (Stack::start(name, &MbdConfig::with_policy(&policy)), dir)
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
    let by_subject = |subj: &str| {
        msgs.iter()
            .find(|m| m.header_values("Subject") == [subj])
            .unwrap_or_else(|| panic!("{subj} not delivered: {msgs:#?}"))
    };
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
    let half = msgs
        .iter()
        .find(|m| m.header_values("Subject") == ["half-1"])
        .unwrap_or_else(|| panic!("half-1 not delivered: {msgs:#?}"));
    assert!(half.header_values("X-Spam-Flag").is_empty(), "{}", half.raw);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        s.pf.delivered().len(),
        3,
        "the rejected and held ones are not delivered"
    );
}
