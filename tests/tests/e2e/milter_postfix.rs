//! mbd behind a real Postfix 3.7: every policy action as an SMTP client and
//! the relay target (smtp-sink) see it, plus outages and reloads.

use std::fs;
use std::time::{Duration, Instant};

use mb_tests::harness::{wait_for, Mbd, MbdConfig, TestDir};
use mb_tests::postfix::{message, Postfix, PostfixOpts};
use mb_tests::smtp::SmtpSession;

use crate::common::{
    assert_mailborder_header, assert_nothing_delivered, assert_one_held, Stack, POLICY,
    REPLACED_BODY,
};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn accepted_mail_arrives_with_x_mailborder_header() {
    let s = Stack::with_policy("pf-accept");
    let r = s.pf.send(
        "alice@source.example",
        &["bob@dest.example"],
        &message(
            "alice@source.example",
            "bob@dest.example",
            "accept-1",
            "marker-accept-1\nsecond line",
        ),
    );
    assert_eq!(r.mail_code(), 250, "{}", r.transcript);
    assert_eq!(
        r.rcpt.first().map(|x| x.code),
        Some(250),
        "{}",
        r.transcript
    );
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    let msgs = s.pf.wait_delivered(1, WAIT).unwrap();
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_mailborder_header(m, 2);
    assert_eq!(m.mail_args(), "<alice@source.example>");
    assert_eq!(m.rcpt_args(), ["<bob@dest.example>"]);
    assert_eq!(m.header_values("Subject"), ["accept-1"]);
    assert_eq!(
        m.body(),
        "marker-accept-1\nsecond line",
        "body must pass unchanged:\n{}",
        m.raw
    );
    // mbd counted it
    let accepted = wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        let shards = s.mbd.shard_status().ok()?;
        let n: u64 = shards
            .iter()
            .filter_map(|x| x["verdicts"]["accept"].as_u64())
            .sum();
        (n >= 1).then_some(n)
    });
    assert!(
        accepted.is_some(),
        "shard status shows no accept verdict: {:?}",
        s.mbd.shard_status()
    );
}

#[test]
fn blocked_sender_gets_configured_5xx_at_mail_and_nothing_is_delivered() {
    let s = Stack::with_policy("pf-reject");
    let r = s.pf.send(
        "spammer@blocked.example",
        &["bob@dest.example"],
        &message(
            "spammer@blocked.example",
            "bob@dest.example",
            "reject-1",
            "marker-reject-1",
        ),
    );
    let mail = r
        .mail
        .clone()
        .unwrap_or_else(|| panic!("no MAIL reply:\n{}", r.transcript));
    assert_eq!(mail.code, 550, "{}", r.transcript);
    assert_eq!(
        mail.text, "5.7.1 Sender blocked by mailborder test",
        "{}",
        r.transcript
    );
    assert!(
        r.rcpt.is_empty() && r.eod.is_none(),
        "transaction went on after the reject:\n{}",
        r.transcript
    );
    // the rule without `reply` uses the default text
    let r2 = s.pf.send(
        "default-reject@source.example",
        &["bob@dest.example"],
        &message(
            "default-reject@source.example",
            "bob@dest.example",
            "reject-2",
            "marker-reject-2",
        ),
    );
    let mail2 = r2
        .mail
        .clone()
        .unwrap_or_else(|| panic!("no MAIL reply:\n{}", r2.transcript));
    assert_eq!(mail2.code, 550, "{}", r2.transcript);
    assert_eq!(
        mail2.text, "5.7.1 Sender address rejected by policy",
        "{}",
        r2.transcript
    );
    let log = s.pf.wait_log("milter-reject: MAIL from", WAIT).unwrap();
    assert!(log.contains("Sender blocked by mailborder test"), "{log}");
    s.assert_nothing_delivered();
}

#[test]
fn recipient_reject_refuses_only_that_recipient() {
    let s = Stack::with_policy("pf-rcpt-reject");
    let r = s.pf.send(
        "alice@source.example",
        &["bob@dest.example", "ghost@nobody.example"],
        &message(
            "alice@source.example",
            "bob@dest.example",
            "rcpt-1",
            "marker-rcpt-1",
        ),
    );
    assert_eq!(r.mail_code(), 250, "{}", r.transcript);
    assert_eq!(r.rcpt.len(), 2, "{}", r.transcript);
    assert_eq!(r.rcpt[0].code, 250, "{}", r.transcript);
    assert_eq!(r.rcpt[1].code, 550, "{}", r.transcript);
    assert_eq!(
        r.rcpt[1].text, "5.7.1 Recipient address rejected by policy",
        "{}",
        r.transcript
    );
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    s.pf.wait_log("milter-reject: RCPT from", WAIT).unwrap();
    let msgs = s.pf.wait_delivered(1, WAIT).unwrap();
    assert_eq!(
        msgs[0].rcpt_args(),
        ["<bob@dest.example>"],
        "{}",
        msgs[0].raw
    );
    assert_mailborder_header(&msgs[0], 2);
}

#[test]
fn tempfail_rule_gives_4xx_at_mail() {
    let s = Stack::with_policy("pf-tempfail");
    let r = s.pf.send(
        "tempfail@source.example",
        &["bob@dest.example"],
        &message(
            "tempfail@source.example",
            "bob@dest.example",
            "tempfail-1",
            "marker-tempfail-1",
        ),
    );
    let mail = r
        .mail
        .clone()
        .unwrap_or_else(|| panic!("no MAIL reply:\n{}", r.transcript));
    assert_eq!(mail.code, 451, "{}", r.transcript);
    assert!(mail.text.starts_with("4.7.1 "), "{}", r.transcript);
    assert!(
        mail.text.contains("temporarily deferred by policy"),
        "{}",
        r.transcript
    );
    assert!(r.eod.is_none(), "{}", r.transcript);
    let log = s.pf.wait_log("milter-reject: MAIL from", WAIT).unwrap();
    assert!(log.contains("temporarily deferred by policy"), "{log}");
    s.assert_nothing_delivered();
    assert_eq!(
        s.pf.deferred_count(),
        0,
        "a MAIL-stage 4xx must not queue anything"
    );
}

#[test]
fn replace_body_delivers_the_configured_text_only() {
    let s = Stack::with_policy("pf-replbody");
    let original = "ORIGINAL-SECRET-BODY line one\nORIGINAL-SECRET-BODY line two";
    let r = s.pf.send(
        "rewrite@source.example",
        &["bob@dest.example"],
        &message(
            "rewrite@source.example",
            "bob@dest.example",
            "replbody-1",
            original,
        ),
    );
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    let msgs = s.pf.wait_delivered(1, WAIT).unwrap();
    let m = &msgs[0];
    assert_eq!(
        m.body(),
        REPLACED_BODY.trim_end_matches(['\r', '\n']),
        "delivered:\n{}",
        m.raw
    );
    assert!(
        !m.raw.contains("ORIGINAL-SECRET-BODY"),
        "original body leaked:\n{}",
        m.raw
    );
    assert_eq!(
        m.header_values("Subject"),
        ["replbody-1"],
        "headers must stay:\n{}",
        m.raw
    );
}

#[test]
fn quarantine_puts_the_message_in_the_hold_queue() {
    let s = Stack::with_policy("pf-quarantine");
    let r = s.pf.send(
        "alice@source.example",
        &["boss@held.example"],
        &message(
            "alice@source.example",
            "boss@held.example",
            "hold-1",
            "marker-hold-1",
        ),
    );
    assert_eq!(
        r.rcpt.first().map(|x| x.code),
        Some(250),
        "{}",
        r.transcript
    );
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    let held = assert_one_held(&s.pf);
    assert_nothing_delivered(&s.pf);
    assert_eq!(
        s.pf.hold_queue(),
        [held],
        "still held after the queue settled"
    );
}

#[test]
fn discard_answers_250_and_delivers_nothing() {
    let s = Stack::with_policy("pf-discard");
    let r = s.pf.send(
        "discard@source.example",
        &["bob@dest.example"],
        &message(
            "discard@source.example",
            "bob@dest.example",
            "discard-1",
            "marker-discard-1",
        ),
    );
    assert_eq!(r.mail_code(), 250, "{}", r.transcript);
    assert_eq!(
        r.eod_code(),
        250,
        "client must see success:\n{}",
        r.transcript
    );
    s.pf.wait_log("milter-discard", WAIT).unwrap();
    s.assert_nothing_delivered();
    assert!(s.pf.hold_queue().is_empty());
}

#[test]
fn oversized_message_is_rejected_with_552_534() {
    let cfg = MbdConfig::with_policy(
        "[policy]\nmessage_bytes_max = \"2KiB\"\nheader = \"X-Mailborder\"\n",
    );
    let s = Stack::start("pf-oversize", &cfg);
    // under the limit: accepted
    let small = s.pf.send(
        "alice@source.example",
        &["bob@dest.example"],
        &message(
            "alice@source.example",
            "bob@dest.example",
            "small-1",
            "short body",
        ),
    );
    assert_eq!(small.eod_code(), 250, "{}", small.transcript);
    // 8 KiB body, no SIZE= declared: rejected at end of data
    let big_body = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n".repeat(128);
    let big = s.pf.send(
        "alice@source.example",
        &["bob@dest.example"],
        &message(
            "alice@source.example",
            "bob@dest.example",
            "big-1",
            &big_body,
        ),
    );
    let eod = big
        .eod
        .clone()
        .unwrap_or_else(|| panic!("no end-of-data reply:\n{}", big.transcript));
    assert_eq!(eod.code, 552, "{}", big.transcript);
    assert_eq!(
        eod.text, "5.3.4 Message size exceeds fixed maximum message size",
        "{}",
        big.transcript
    );
    s.pf.wait_log("milter-reject: END-OF-MESSAGE", WAIT)
        .unwrap();
    // SIZE= declared: rejected at MAIL
    let (mut c, greet) = SmtpSession::connect(s.pf.port).unwrap();
    assert_eq!(greet.code, 220);
    assert_eq!(c.cmd("EHLO client.mbtest.example").unwrap().code, 250);
    let mail = c
        .cmd("MAIL FROM:<alice@source.example> SIZE=100000")
        .unwrap();
    assert_eq!(mail.code, 552, "{}", c.transcript);
    assert!(mail.text.starts_with("5.3.4 "), "{}", c.transcript);
    c.quit();
    let msgs = s.pf.wait_delivered(1, WAIT).unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].header_values("Subject"), ["small-1"]);
    assert_nothing_more_delivered(&s.pf, 1);
}

fn assert_nothing_more_delivered(pf: &Postfix, n: usize) {
    pf.wait_queue_settled(WAIT).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(pf.delivered().len(), n, "unexpected extra deliveries");
}

/// Postfix in front of a socket where no mbd listens yet, then mbd appears.
#[test]
fn smtp_while_mbd_is_down_gets_4xx_and_the_retry_is_delivered() {
    let dir = TestDir::new("pf-down-smtp").unwrap();
    let mbd_dir = dir.join("mbd");
    fs::create_dir_all(mbd_dir.join("state")).unwrap();
    let spec = format!("unix:{}", mbd_dir.join("state/mb-milter.sock").display());
    let pf = Postfix::start(&dir.join("postfix"), &PostfixOpts::with_milter(&spec)).unwrap();
    let msg = message(
        "alice@source.example",
        "bob@dest.example",
        "down-1",
        "marker-down-1",
    );
    let r = pf.send("alice@source.example", &["bob@dest.example"], &msg);
    let mail = r
        .mail
        .clone()
        .unwrap_or_else(|| panic!("no MAIL reply:\n{}", r.transcript));
    assert_eq!(
        mail.code, 451,
        "milter down + tempfail must give 451 at MAIL:\n{}",
        r.transcript
    );
    assert!(pf.delivered().is_empty());
    let mbd = Mbd::start(&mbd_dir, &MbdConfig::with_policy(POLICY)).unwrap();
    assert_eq!(mbd.milter_spec(), spec);
    // the client retries
    let r = pf.send("alice@source.example", &["bob@dest.example"], &msg);
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    let msgs = pf.wait_delivered(1, WAIT).unwrap();
    assert_eq!(msgs.len(), 1);
    assert_mailborder_header(&msgs[0], 2);
    drop(pf);
}

/// mbd dies hard (SIGKILL: stale socket left behind) and is restarted.
#[test]
fn smtp_after_mbd_is_killed_gets_4xx_and_a_restarted_mbd_serves_again() {
    let s = Stack::with_policy("pf-killed");
    let msg = |n: u32| {
        message(
            "alice@source.example",
            "bob@dest.example",
            &format!("killed-{n}"),
            &format!("marker-killed-{n}"),
        )
    };
    let r =
        s.pf.send("alice@source.example", &["bob@dest.example"], &msg(1));
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    s.pf.wait_delivered(1, WAIT).unwrap();
    let Stack { pf, mut mbd, dir } = s;
    mbd.kill();
    let r = pf.send("alice@source.example", &["bob@dest.example"], &msg(2));
    let code = r
        .mail
        .as_ref()
        .map(|m| m.code)
        .or_else(|| r.greeting.as_ref().map(|g| g.code));
    assert!(
        matches!(code, Some(400..=499)),
        "mbd killed: expected a 4xx (at MAIL), got:\n{}",
        r.transcript
    );
    assert_eq!(
        r.eod_code(),
        0,
        "no message may be accepted while mbd is down:\n{}",
        r.transcript
    );
    // restart on the same config and socket path (the stale socket is still there)
    let mbd2 = Mbd::start_with_config(&mbd.dir, &mbd.config_path, &mbd.state_dir).unwrap();
    let r = pf.send("alice@source.example", &["bob@dest.example"], &msg(3));
    assert_eq!(
        r.eod_code(),
        250,
        "restarted mbd must serve:\n{}",
        r.transcript
    );
    let msgs = pf.wait_delivered(2, WAIT).unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[1].header_values("Subject"), ["killed-3"]);
    assert_mailborder_header(&msgs[1], 2);
    drop(pf);
    drop(mbd2);
    drop(mbd);
    drop(dir);
}

/// sendmail → pickup → cleanup → non_smtpd_milters while mbd is down: the
/// message stays in maildrop and is delivered once mbd is back. Nothing lost.
#[test]
fn sendmail_while_mbd_is_down_stays_queued_and_is_delivered_later() {
    let dir = TestDir::new("pf-down-sendmail").unwrap();
    let mbd_dir = dir.join("mbd");
    fs::create_dir_all(mbd_dir.join("state")).unwrap();
    let spec = format!("unix:{}", mbd_dir.join("state/mb-milter.sock").display());
    let pf = Postfix::start(&dir.join("postfix"), &PostfixOpts::with_milter(&spec)).unwrap();
    pf.sendmail(
        "local@source.example",
        &["bob@dest.example"],
        &message(
            "local@source.example",
            "bob@dest.example",
            "queued-1",
            "marker-queued-1",
        ),
    )
    .unwrap();
    pf.wait_log("connect to Milter service", WAIT).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(pf.delivered().is_empty(), "delivered without the milter");
    assert_eq!(
        pf.maildrop_count(),
        1,
        "the message must stay in maildrop: {:?}",
        pf.queue()
    );
    let mbd = Mbd::start(&mbd_dir, &MbdConfig::with_policy(POLICY)).unwrap();
    // pickup rescans maildrop on its own every 60 s; kick it to be quick, and
    // bound the whole wait at 90 s either way
    let t0 = Instant::now();
    let msgs = wait_for(Duration::from_secs(90), Duration::from_secs(3), || {
        pf.kick_pickup().ok();
        pf.flush().ok();
        let d = pf.delivered();
        (!d.is_empty() && pf.sink_messages() >= 1).then_some(d)
    })
    .unwrap_or_else(|| {
        panic!(
            "not delivered 90 s after mbd came back; queue {:?}",
            pf.queue()
        )
    });
    eprintln!("delivered {:?} after mbd came back", t0.elapsed());
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].header_values("Subject"), ["queued-1"]);
    assert_eq!(msgs[0].body(), "marker-queued-1");
    assert_mailborder_header(&msgs[0], 2);
    assert_eq!(pf.maildrop_count(), 0);
    drop(pf);
    drop(mbd);
}

#[test]
fn sighup_reload_applies_the_new_rule_and_keeps_open_sessions() {
    let s = Stack::with_policy("pf-sighup");
    let before = s.pf.send(
        "spammer@blocked.example",
        &["bob@dest.example"],
        &message("spammer@blocked.example", "bob@dest.example", "hup-0", "x"),
    );
    assert_eq!(before.mail_code(), 550, "{}", before.transcript);

    // a session that is open (milter connection included) across the reload
    let (mut open, greet) = SmtpSession::connect(s.pf.port).unwrap();
    assert_eq!(greet.code, 220);
    assert_eq!(
        open.cmd("EHLO client.mbtest.example").unwrap().code,
        250,
        "{}",
        open.transcript
    );
    assert_eq!(
        open.cmd("MAIL FROM:<carol@other.example>").unwrap().code,
        250,
        "{}",
        open.transcript
    );
    assert_eq!(
        open.cmd("RCPT TO:<bob@dest.example>").unwrap().code,
        250,
        "{}",
        open.transcript
    );

    // new rules: blocked.example is allowed now, source.example rejected
    let new_policy = r#"
[policy]
message_bytes_max = "1MiB"
header = "X-Mailborder"

[[policy.sender]]
match = "@source.example"
action = "reject"
reply = "550 5.7.1 Rejected by the reloaded rule"
"#;
    let cfg = MbdConfig::with_policy(new_policy);
    fs::write(&s.mbd.config_path, cfg.render(&s.mbd.state_dir)).unwrap();
    s.mbd.hup();
    let generation = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        let st = s.mbd.status().ok()?;
        (st["config_generation"].as_u64() == Some(2)).then_some(st)
    })
    .unwrap_or_else(|| panic!("config_generation did not reach 2: {:?}", s.mbd.status()));
    assert!(generation["last_reload_error"].is_null(), "{generation}");

    let after = s.pf.send(
        "dave@source.example",
        &["bob@dest.example"],
        &message("dave@source.example", "bob@dest.example", "hup-1", "x"),
    );
    let mail = after
        .mail
        .clone()
        .unwrap_or_else(|| panic!("{}", after.transcript));
    assert_eq!(
        mail.code, 550,
        "new rule not applied:\n{}",
        after.transcript
    );
    assert_eq!(
        mail.text, "5.7.1 Rejected by the reloaded rule",
        "{}",
        after.transcript
    );
    let freed = s.pf.send(
        "spammer@blocked.example",
        &["bob@dest.example"],
        &message(
            "spammer@blocked.example",
            "bob@dest.example",
            "hup-2",
            "marker-hup-2",
        ),
    );
    assert_eq!(
        freed.eod_code(),
        250,
        "old rule still applied:\n{}",
        freed.transcript
    );

    // the session opened before the reload completes normally
    let (data, end) = open
        .data(&message(
            "carol@other.example",
            "bob@dest.example",
            "hup-open",
            "marker-hup-open",
        ))
        .unwrap();
    assert_eq!(data.code, 354, "{}", open.transcript);
    let end = end.unwrap();
    assert_eq!(
        end.code, 250,
        "open session broken by the reload:\n{}",
        open.transcript
    );
    open.quit();

    let msgs = s.pf.wait_delivered(2, WAIT).unwrap();
    let mut subjects: Vec<String> = msgs
        .iter()
        .flat_map(|m| m.header_values("Subject"))
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["hup-2", "hup-open"]);
    for m in &msgs {
        assert_mailborder_header(m, 2);
    }
    let mut mbd = s.mbd;
    assert!(mbd.alive(), "mbd died during reload");
    drop(s.pf);
}
