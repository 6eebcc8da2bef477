//! mbd driven by miltertest (OpenDKIM's MTA simulator), one shard so the
//! header value is fully known.

use mb_tests::harness::{describe, Mbd, MbdConfig, TestDir};
use mb_tests::miltertest;

use crate::common::POLICY;

struct Setup {
    mbd: Mbd,
    dir: TestDir,
}

fn setup(name: &str, policy: &str) -> Setup {
    let dir = TestDir::new(name).unwrap();
    let cfg = MbdConfig {
        shards: 1,
        ..MbdConfig::with_policy(policy)
    };
    let mbd = Mbd::start(&dir.join("mbd"), &cfg).unwrap();
    Setup { mbd, dir }
}

fn run_ok(s: &Setup, name: &str, script: &str) -> String {
    let out = miltertest::run(s.dir.path(), name, &s.mbd.milter_spec(), script).unwrap();
    let text = describe(&out);
    assert!(
        out.status.success(),
        "miltertest script {name} failed:\n{text}\n--- script\n{script}"
    );
    text
}

const HEADERS: &str =
    r#"{{"From", "<alice@source.example>"}, {"To", "<bob@dest.example>"}, {"Subject", "mt"}}"#;

#[test]
fn accept_adds_the_x_mailborder_header() {
    let s = setup("mt-accept", POLICY);
    let script = format!(
        r#"
local conn = open()
local r, where = envelope(conn, "alice@source.example", {{"bob@dest.example"}})
expect(r == SMFIR_CONTINUE, "envelope ended at " .. where .. " with " .. rname(r))
r, where = content(conn, {HEADERS}, "hello from miltertest\r\n")
expect(r == SMFIR_CONTINUE, "content ended at " .. where .. " with " .. rname(r))
r = eom(conn)
expect(r == SMFIR_ACCEPT or r == SMFIR_CONTINUE, "EOM reply " .. rname(r))
local added = mt.eom_check(conn, MT_HDRADD, "X-Mailborder")
local inserted = mt.eom_check(conn, MT_HDRINSERT, "X-Mailborder")
mt.echo("MT_HDRADD=" .. tostring(added) .. " MT_HDRINSERT=" .. tostring(inserted))
expect(added or inserted, "no X-Mailborder header added at EOM")
local v = mt.getheader(conn, "X-Mailborder", 0)
if v == nil then v = mt.getheader(conn, "X-Mailborder", 1) end
expect(v ~= nil, "mt.getheader(X-Mailborder) returned nil")
v = string.gsub(v, "^%s+", "")
mt.echo("X-Mailborder value [" .. v .. "]")
expect(v == "score=0.00 shard=0", "X-Mailborder value is [" .. v .. "]")
expect(not mt.eom_check(conn, MT_BODYCHANGE), "body changed on a plain accept")
mt.disconnect(conn)
"#
    );
    let out = run_ok(&s, "accept", &script);
    eprintln!(
        "{}",
        out.lines()
            .filter(|l| l.starts_with("MT_"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        out.contains("X-Mailborder value [score=0.00 shard=0]"),
        "{out}"
    );
}

#[test]
fn sender_rules_answer_at_mail() {
    let s = setup("mt-sender", POLICY);
    let script = r#"
local conn = open()
local r, where = envelope(conn, "spammer@blocked.example", {"bob@dest.example"})
expect(where == "mailfrom", "blocked sender not stopped at MAIL but at " .. where)
expect(r == SMFIR_REPLYCODE, "blocked sender: reply " .. rname(r) .. ", want y (REPLYCODE)")
mt.disconnect(conn)

conn = open()
r, where = envelope(conn, "tempfail@source.example", {"bob@dest.example"})
expect(where == "mailfrom", "tempfail sender not stopped at MAIL but at " .. where)
expect(r == SMFIR_REPLYCODE or r == SMFIR_TEMPFAIL, "tempfail sender: reply " .. rname(r))
mt.disconnect(conn)

conn = open()
r, where = envelope(conn, "alice@source.example", {"bob@dest.example"})
expect(r == SMFIR_CONTINUE, "plain sender stopped at " .. where .. " with " .. rname(r))
mt.disconnect(conn)
"#;
    run_ok(&s, "sender", script);
}

#[test]
fn recipient_rules_reject_at_rcpt_and_quarantine_at_eom() {
    let s = setup("mt-rcpt", POLICY);
    let script = format!(
        r#"
local conn = open()
local r, where = envelope(conn, "alice@source.example", {{"ghost@nobody.example"}})
expect(where == "rcptto", "recipient reject not at RCPT but at " .. where)
expect(r == SMFIR_REPLYCODE, "rejected recipient: reply " .. rname(r))
mt.disconnect(conn)

conn = open()
r, where = envelope(conn, "alice@source.example", {{"boss@held.example"}})
expect(r == SMFIR_CONTINUE, "held recipient stopped at " .. where .. " with " .. rname(r))
r, where = content(conn, {HEADERS}, "for the hold queue\r\n")
expect(r == SMFIR_CONTINUE, "content ended at " .. where .. " with " .. rname(r))
r = eom(conn)
expect(r == SMFIR_ACCEPT or r == SMFIR_CONTINUE, "EOM reply " .. rname(r))
expect(mt.eom_check(conn, MT_QUARANTINE), "no quarantine requested at EOM")
mt.disconnect(conn)
"#
    );
    run_ok(&s, "rcpt", &script);
}

#[test]
fn replace_body_and_discard_at_eom() {
    let s = setup("mt-eom-actions", POLICY);
    let script = format!(
        r#"
local conn = open()
local r, where = envelope(conn, "rewrite@source.example", {{"bob@dest.example"}})
expect(r == SMFIR_CONTINUE, "stopped at " .. where .. " with " .. rname(r))
r, where = content(conn, {HEADERS}, "ORIGINAL BODY\r\n")
expect(r == SMFIR_CONTINUE, "content ended at " .. where .. " with " .. rname(r))
r = eom(conn)
expect(r == SMFIR_ACCEPT or r == SMFIR_CONTINUE, "EOM reply " .. rname(r))
expect(mt.eom_check(conn, MT_BODYCHANGE), "body not replaced")
expect(mt.eom_check(conn, MT_BODYCHANGE, "The original body was replaced by policy.\r\n"),
       "body replaced with something else than the configured text")
mt.disconnect(conn)

conn = open()
r, where = envelope(conn, "discard@source.example", {{"bob@dest.example"}})
expect(r == SMFIR_CONTINUE, "stopped at " .. where .. " with " .. rname(r))
r, where = content(conn, {HEADERS}, "to be discarded\r\n")
expect(r == SMFIR_CONTINUE or r == SMFIR_DISCARD, "content ended at " .. where .. " with " .. rname(r))
if r == SMFIR_CONTINUE then r = eom(conn) end
expect(r == SMFIR_DISCARD, "discard rule: reply " .. rname(r))
mt.disconnect(conn)
"#
    );
    run_ok(&s, "eom-actions", &script);
}

#[test]
fn oversized_body_gets_552_534_at_eom() {
    let s = setup(
        "mt-oversize",
        "[policy]\nmessage_bytes_max = \"2KiB\"\nheader = \"X-Mailborder\"\n",
    );
    let body = "x".repeat(70) + "\r\n";
    let script = format!(
        r#"
local conn = open()
local r, where = envelope(conn, "alice@source.example", {{"bob@dest.example"}})
expect(r == SMFIR_CONTINUE, "stopped at " .. where .. " with " .. rname(r))
r, where = content(conn, {HEADERS}, string.rep("{body}", 100))
if r == SMFIR_CONTINUE then r = eom(conn) end
mt.echo("final reply " .. rname(r) .. " at " .. where)
expect(r == SMFIR_REPLYCODE, "oversized: reply " .. rname(r) .. ", want REPLYCODE")
if where == "content" then
  -- miltertest 1.6 quirk: MT_SMTPREPLY only matches with all three of code,
  -- enhanced code and text (with one or two it returns false or errors out)
  expect(mt.eom_check(conn, MT_SMTPREPLY, "552", "5.3.4", "Message size exceeds fixed maximum message size"),
         "EOM reply is not 552 5.3.4 Message size exceeds fixed maximum message size")
end
mt.disconnect(conn)
"#,
        body = body.replace("\r\n", "\\r\\n")
    );
    run_ok(&s, "oversize", &script);
}
