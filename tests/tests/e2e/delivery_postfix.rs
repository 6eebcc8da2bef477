//! The after-queue content filter behind a real Postfix: Postfix's
//! `content_filter = smtp:[127.0.0.1]:<ingress>` hands every message to
//! mbd's SMTP ingress, mbd spools it (250 only after fdatasync), then
//! delivers it to the relay:
//!
//! - `round_trip_through_postfix_reinjection`: the classic amavis-style
//!   setup, the relay being a second Postfix smtpd (`content_filter=`
//!   empty, `receive_override_options`) that delivers to smtp-sink; the
//!   message arrives with our header, and the original client's HELO made
//!   it through XFORWARD.
//! - `relay_down_then_back_gets_everything`: nothing listens on the relay
//!   port; the messages are deferred (retry interval 1 s), then a relay
//!   starts and receives every one of them.
//! - `permanent_refusal_bounces_to_the_sender`: the relay answers 550 for one
//!   of two recipients; the other is delivered, and an RFC 3464 DSN from
//!   the null sender reaches the original sender through the relay.

use std::time::Duration;

use mb_tests::harness::{lease_port, port_listening, wait_for, Mbd, MbdConfig, PortLease, TestDir};
use mb_tests::postfix::{message, Postfix, PostfixOpts};
use mb_tests::relay::Relay;

/// mbd with `[delivery]` on, Postfix in front of it with `content_filter`.
pub struct FilterStack {
    pub pf: Postfix,
    pub mbd: Mbd,
    pub ingress: PortLease,
    pub _dir: TestDir,
}

/// The `[delivery]` table for an ingress port and a relay port, with a 1 s
/// retry schedule; `extra` lines are appended to it.
pub fn delivery_config(ingress: u16, relay: u16, extra: &str) -> MbdConfig {
    delivery_config_retry(ingress, relay, "1s", extra)
}

/// Like [`delivery_config`], retrying every `retry` (a duration).
pub fn delivery_config_retry(ingress: u16, relay: u16, retry: &str, extra: &str) -> MbdConfig {
    MbdConfig {
        shards: 2,
        policy: format!(
            "[policy]\nheader = \"X-Mailborder\"\n\n\
             [delivery]\nenabled = true\nlisten = [\"127.0.0.1:{ingress}\"]\n\
             relay = \"127.0.0.1:{relay}\"\nretry_initial = \"{retry}\"\nretry_factor = 1\n\
             retry_interval_max = \"{retry}\"\nretry_jitter_percent = 0\nconnect_timeout = \"2s\"\n\
             command_timeout = \"20s\"\n{extra}\n"
        ),
        ..MbdConfig::default()
    }
}

impl FilterStack {
    /// mbd delivering to 127.0.0.1:`relay`, Postfix filtering through it.
    pub fn start(name: &str, relay: u16, extra: &str) -> Self {
        let dir = TestDir::new(name).unwrap();
        let ingress = lease_port().unwrap();
        let mbd = Mbd::start(
            &dir.join("mbd"),
            &delivery_config(ingress.port, relay, extra),
        )
        .unwrap();
        let opts = PostfixOpts {
            main_extra: vec![
                (
                    "content_filter".into(),
                    format!("smtp:[127.0.0.1]:{}", ingress.port),
                ),
                ("smtp_send_xforward_command".into(), "yes".into()),
            ],
            ..PostfixOpts::default()
        };
        let pf = Postfix::start(&dir.join("postfix"), &opts).unwrap();
        Self {
            pf,
            mbd,
            ingress,
            _dir: dir,
        }
    }

    /// Sum over shards of a field of `queue` in `mbctl shard status`.
    pub fn queue_sum(&self, field: &str) -> u64 {
        self.mbd
            .shard_status()
            .unwrap()
            .iter()
            .map(|s| s["queue"][field].as_u64().unwrap_or(0))
            .sum()
    }
}

/// Adds the reinjection smtpd on 127.0.0.1:`port` to `pf` (Postfix's
/// FILTER_README), reloads and waits until it listens.
fn add_reinjection(pf: &Postfix, port: u16) {
    let svc = format!("127.0.0.1:{port}/inet");
    pf.postconf(&[
        "-M",
        &format!("{svc}=127.0.0.1:{port} inet n - n - - smtpd"),
    ])
    .unwrap();
    for option in [
        "content_filter=",
        "receive_override_options=no_header_body_checks,no_unknown_recipient_checks",
        "smtpd_authorized_xforward_hosts=127.0.0.0/8",
    ] {
        pf.postconf(&["-P", &format!("{svc}/{option}")]).unwrap();
    }
    pf.postfix_cmd("reload").unwrap();
    wait_for(Duration::from_secs(15), Duration::from_millis(50), || {
        port_listening(port).then_some(())
    })
    .unwrap_or_else(|| panic!("the reinjection smtpd does not listen on {port}"));
}

#[test]
fn round_trip_through_postfix_reinjection() {
    let reinject = lease_port().unwrap();
    let s = FilterStack::start("delivery-roundtrip", reinject.port, "");
    add_reinjection(&s.pf, reinject.port);
    let msg = message(
        "sender@source.example",
        "rcpt@dest.example",
        "after-queue round trip",
        "hello through the content filter",
    );
    let r =
        s.pf.send("sender@source.example", &["rcpt@dest.example"], &msg);
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    let got = s.pf.wait_delivered(1, Duration::from_secs(60)).unwrap();
    let m = &got[0];
    assert_eq!(m.rcpt_args(), ["<rcpt@dest.example>"], "{}", m.raw);
    assert_eq!(m.mail_args(), "<sender@source.example>", "{}", m.raw);
    assert!(
        m.body().contains("hello through the content filter"),
        "{}",
        m.raw
    );
    let values = m.header_values("X-Mailborder");
    assert_eq!(values.len(), 1, "one X-Mailborder header:\n{}", m.raw);
    assert!(values[0].starts_with("score=0.00 shard="), "{values:?}");
    // Postfix logged mbd's queue id for the hop through the filter.
    let log = s.pf.maillog();
    let hop = log
        .lines()
        .find(|l| l.contains(&format!(":{}, ", s.ingress.port)) && l.contains("status=sent"))
        .unwrap_or_else(|| panic!("no delivery to the filter in the maillog:\n{log}"));
    assert!(hop.contains("Ok: queued as "), "{hop}");
    // XFORWARD carried the original client's HELO to the reinjection smtpd,
    // which logs it in its Received header.
    assert!(
        m.headers().contains("client.mbtest.example"),
        "the original HELO is not in the relayed headers:\n{}",
        m.headers()
    );
    assert!(
        wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            (s.queue_sum("messages") == 0 && s.queue_sum("delivered") == 1).then_some(())
        })
        .is_some(),
        "the spool still holds the message: {:?}",
        s.mbd.shard_status()
    );
}

#[test]
fn relay_down_then_back_gets_everything() {
    let relay_port = lease_port().unwrap();
    let s = FilterStack::start("delivery-relay-down", relay_port.port, "");
    let n = 3;
    for i in 0..n {
        let subject = format!("while the relay is down {i}");
        let msg = message("sender@source.example", "rcpt@dest.example", &subject, "x");
        let r =
            s.pf.send("sender@source.example", &["rcpt@dest.example"], &msg);
        assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    }
    // Every message went through the filter hop and is deferred in mbd.
    let deferred = wait_for(Duration::from_secs(60), Duration::from_millis(200), || {
        let d = s.queue_sum("deferrals");
        (s.queue_sum("received") == n && d >= n).then_some(d)
    });
    assert!(
        deferred.is_some(),
        "not all deferred: {:?}\n{}",
        s.mbd.shard_status(),
        s.mbd.stderr()
    );
    assert_eq!(s.queue_sum("messages"), n);
    // The relay comes back: the next retry (1 s) delivers everything.
    let relay = Relay::accept_all(relay_port.port).unwrap();
    let got = relay.wait(n as usize, Duration::from_secs(30)).unwrap();
    let mut ids: Vec<String> = got
        .iter()
        .map(|m| m.header_values("Message-ID").join(""))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n as usize, "{got:#?}");
    for m in &got {
        assert_eq!(m.mail_from, "sender@source.example");
        assert_eq!(m.rcpts, ["rcpt@dest.example"]);
        assert_eq!(m.header_values("X-Mailborder").len(), 1, "{}", m.data);
    }
    assert!(
        wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            (s.queue_sum("messages") == 0).then_some(())
        })
        .is_some(),
        "the spool still holds messages: {:?}",
        s.mbd.shard_status()
    );
    assert!(s.queue_sum("relay_failures") >= 1);
}

#[test]
fn permanent_refusal_bounces_to_the_sender() {
    let relay_port = lease_port().unwrap();
    let relay = Relay::start(
        relay_port.port,
        Box::new(|rcpt| {
            (rcpt == "bounce@dest.example").then(|| {
                "550 5.1.1 <bounce@dest.example>: Recipient address rejected: no such user".into()
            })
        }),
    )
    .unwrap();
    let s = FilterStack::start("delivery-bounce", relay_port.port, "");
    let msg = message(
        "sender@source.example",
        "ok@dest.example",
        "half of it bounces",
        "body",
    );
    let r = s.pf.send(
        "sender@source.example",
        &["ok@dest.example", "bounce@dest.example"],
        &msg,
    );
    assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    let got = relay.wait(2, Duration::from_secs(60)).unwrap();
    let (dsn, original): (Vec<_>, Vec<_>) = got.iter().partition(|m| m.mail_from.is_empty());
    assert_eq!(original.len(), 1, "{got:#?}");
    assert_eq!(original[0].rcpts, ["ok@dest.example"]);
    assert_eq!(dsn.len(), 1, "one DSN: {got:#?}");
    let dsn = dsn[0];
    assert_eq!(dsn.rcpts, ["sender@source.example"]);
    let text = &dsn.data;
    for want in [
        "multipart/report",
        "report-type=delivery-status",
        "Final-Recipient: rfc822; bounce@dest.example",
        "Action: failed",
        "Status: 5.1.1",
        "Diagnostic-Code: smtp; 550 5.1.1",
        "Subject: half of it bounces",
    ] {
        assert!(text.contains(want), "the DSN lacks {want:?}:\n{text}");
    }
    assert!(
        !text.contains("Final-Recipient: rfc822; ok@dest.example"),
        "{text}"
    );
    assert!(dsn.header_values("X-Mailborder").is_empty(), "{text}");
    assert!(
        wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            (s.queue_sum("messages") == 0
                && s.queue_sum("bounced") == 1
                && s.queue_sum("dsns") == 1)
                .then_some(())
        })
        .is_some(),
        "{:?}",
        s.mbd.shard_status()
    );
}

/// Rules for the filter verdicts on this path (same shapes as
/// `filter_postfix`'s): spam 6, held 9 (quarantine at 8), refused 25
/// (reject at 20).
pub const RULES: &str = "\
body     MB_TEST_SPAMMY   /cheap-meds-marker/i
score    MB_TEST_SPAMMY   6.0
body     MB_TEST_HOLD     /hold-me-marker/
score    MB_TEST_HOLD     9.0
header   MB_TEST_SUBJ     Subject =~ /reject-me-subject/
score    MB_TEST_SUBJ     25.0
required_score 5.0
";

/// `[filter]` with [`RULES`] written to `dir`.
pub fn filter_config(dir: &TestDir) -> String {
    let rules = dir.join("local.cf");
    std::fs::write(&rules, RULES).unwrap();
    format!(
        "[filter]\nrules = [\"{}\"]\nquarantine_score = 8.0\nreject_score = 20.0\n",
        rules.display()
    )
}

#[test]
fn filter_verdicts_header_hold_and_bounce() {
    let rules = TestDir::new("delivery-filter-rules").unwrap();
    let relay_port = lease_port().unwrap();
    let relay = Relay::accept_all(relay_port.port).unwrap();
    let s = FilterStack::start("delivery-filter", relay_port.port, &filter_config(&rules));
    let send = |subject: &str, body: &str| {
        let msg = message("sender@source.example", "rcpt@dest.example", subject, body);
        let r =
            s.pf.send("sender@source.example", &["rcpt@dest.example"], &msg);
        assert_eq!(r.eod_code(), 250, "{}", r.transcript);
    };
    send("clean one", "nothing to see");
    send("spammy one", "buy cheap-meds-marker now");
    send("held one", "hold-me-marker");
    send("reject-me-subject", "refused by score");
    // clean + spammy delivered, the DSN for the refused one.
    let got = relay.wait(3, Duration::from_secs(60)).unwrap();
    let by_subject = |want: &str| {
        got.iter()
            .find(|m| m.header_values("Subject").iter().any(|v| v == want))
            .unwrap_or_else(|| panic!("no message {want:?}: {got:#?}"))
    };
    let clean = by_subject("clean one");
    let status = clean.header_values("X-Spam-Status").join("|");
    assert!(
        status.starts_with("No, score=0.0 required=5.0 tests=none"),
        "{}",
        clean.data
    );
    assert!(clean.header_values("X-Spam-Flag").is_empty());
    let spammy = by_subject("spammy one");
    assert_eq!(
        spammy.header_values("X-Spam-Flag"),
        ["YES"],
        "{}",
        spammy.data
    );
    assert!(
        spammy
            .header_values("X-Spam-Status")
            .join("")
            .contains("tests=MB_TEST_SPAMMY"),
        "{}",
        spammy.data
    );
    let mb = spammy.header_values("X-Mailborder");
    assert!(
        mb.len() == 1 && mb[0].starts_with("score=6.00 shard="),
        "{}",
        spammy.data
    );
    let dsn = got
        .iter()
        .find(|m| m.mail_from.is_empty())
        .unwrap_or_else(|| panic!("no DSN: {got:#?}"));
    assert_eq!(dsn.rcpts, ["sender@source.example"]);
    assert!(dsn.data.contains("Status: 5.7.1"), "{}", dsn.data);
    assert!(dsn.data.contains("rejected as spam"), "{}", dsn.data);
    // The held one stays in the spool, quarantined; nothing else is left.
    assert!(
        wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            (s.queue_sum("messages") == 1 && s.queue_sum("quarantined") == 1).then_some(())
        })
        .is_some(),
        "{:?}",
        s.mbd.shard_status()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        relay.accepted().len(),
        3,
        "the held message was not delivered"
    );
}
