//! eval, the policy engine, behind a real Postfix 3.7 through both front
//! doors: the milter (`smtpd_milters`, answers at RCPT) and policy delegation
//! (`check_policy_service inet:127.0.0.1:PORT`, no milter on that instance).
//! Every scenario is written once and run through each door; both must give
//! the same SMTP replies and deliver the same mail to smtp-sink.
//!
//! Also: reloads with broken list and rule files (refused with file:line:column,
//! the old policy keeps deciding), `mbctl policy test` / `policy check`, and
//! `mbctl ratelimit show` after a burst.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mb_tests::harness::{
    describe, lease_port, mbctl, wait_for, workspace_root, Mbd, MbdConfig, PortLease, TestDir,
};
use mb_tests::postfix::{
    message, with_subject, Postfix, PostfixOpts, Reply, SmtpClient, SmtpResult,
};

use crate::common::assert_nothing_delivered;

const WAIT: Duration = Duration::from_secs(30);

/// Which front door of mbd the Postfix instance asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    /// `smtpd_milters = unix:<mbd>/mb-milter.sock`.
    Milter,
    /// `check_policy_service inet:127.0.0.1:<policyd_tcp>`, no milter.
    Policyd,
}

impl Door {
    /// The maillog words Postfix uses when this door refuses a recipient.
    fn reject_log(self) -> &'static str {
        match self {
            Self::Milter => "milter-reject: RCPT from",
            Self::Policyd => "NOQUEUE: reject: RCPT from",
        }
    }
}

// ------------------------------------------------------------------ policy

/// The GeoIP test database of MaxMind's test data (89.160.20.112 is SE,
/// 81.2.69.142 GB, 216.160.83.56 US), vendored in `engine/fixtures/geoip`.
fn geoip_db() -> PathBuf {
    let p =
        workspace_root().join("engine/fixtures/geoip/maxmind-test-data/GeoIP2-Country-Test.mmdb");
    assert!(
        p.is_file(),
        "GeoIP test database missing at {}",
        p.display()
    );
    p
}

const SE: &str = "89.160.20.112";
const GB: &str = "81.2.69.142";
const US: &str = "216.160.83.56";

/// Senders in `block.list`.
const BLOCK_LIST: &str = "# blocked senders\nvillain@evil.example\n";
/// The rule file: one rule on the HELO name.
const RULES: &str = "# custom rules\n\
rule bulk-helo:\n    when helo ends_with \".bulk.example\"\n    then reject \"550 5.7.1 Bulk HELO refused\"\n";
/// Extra valid recipients of acme.example.
const ACME_RCPT: &str = "carol@acme.example\n";

/// The rate limit the burst scenario adds: 3 messages per sender, one more
/// every 10 s.
const RATELIMIT: &str = r#"
[[ratelimit]]
name = "burst"
key = ["sender"]
windows = ["3/30s"]
"#;

/// policy.toml: global block of `@.spam.example` and `block.list`, SE
/// refused by GeoIP, one HELO rule; acme.example has a recipient list and
/// allows `friend@spam.example` and `@partner.example` at domain level.
fn policy_toml(extra: &str) -> String {
    format!(
        r#"[global]
sender_block = ["@.spam.example", "file:block.list"]
country_block = ["SE"]
rules = ["local.rules"]

[recipients]
extension_delimiters = "+"

[geoip]
database = "{geoip}"

[[tenant]]
name = "acme"

[[tenant.domain]]
name = "acme.example"
recipients = ["alice", "bob@acme.example", "sales-*@acme.example", "file:acme.rcpt"]
sender_allow = ["friend@spam.example", "@partner.example"]
{extra}"#,
        geoip = geoip_db().display()
    )
}

/// Writes policy.toml and its files into `dir`; returns the policy path.
fn write_policy(dir: &Path, extra: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("block.list"), BLOCK_LIST).unwrap();
    fs::write(dir.join("local.rules"), RULES).unwrap();
    fs::write(dir.join("acme.rcpt"), ACME_RCPT).unwrap();
    let path = dir.join("policy.toml");
    fs::write(&path, policy_toml(extra)).unwrap();
    path
}

// ------------------------------------------------------------------ stack

/// mbd with an eval policy, and Postfix asking it through one door. Drop
/// order: Postfix, mbd, the policyd port lease, the directory.
struct EvalStack {
    pf: Postfix,
    mbd: Mbd,
    _policyd_port: PortLease,
    door: Door,
    policy_dir: PathBuf,
    _dir: TestDir,
}

impl EvalStack {
    fn start(name: &str, door: Door, extra_policy: &str) -> Self {
        let dir = TestDir::new(name).unwrap();
        let policy_dir = dir.subdir("policy").unwrap();
        let policy = write_policy(&policy_dir, extra_policy);
        let port = lease_port().unwrap();
        let policyd = format!("127.0.0.1:{}", port.port);
        let cfg = MbdConfig::with_policy(&format!(
            "[eval]\npolicy = \"{}\"\npolicyd_tcp = [\"{policyd}\"]\n",
            policy.display()
        ));
        let mbd = Mbd::start(&dir.join("mbd"), &cfg).unwrap();
        let mut main_extra = vec![
            // XCLIENT from the test client on loopback sets the client address
            ("smtpd_authorized_xclient_hosts", "127.0.0.0/8".to_string()),
            // a client posing (XCLIENT) as a foreign address is not in
            // mynetworks: the test domains are relay domains, like a gateway's
            ("relay_domains", "acme.example, dest.example".to_string()),
            (
                "smtpd_relay_restrictions",
                "permit_mynetworks, reject_unauth_destination".to_string(),
            ),
        ];
        let mut opts = match door {
            Door::Milter => PostfixOpts::with_milter(&mbd.milter_spec()),
            Door::Policyd => {
                // no permit_mynetworks before the policy service: the test
                // client is on loopback, which mynetworks would wave through
                main_extra.push((
                    "smtpd_recipient_restrictions",
                    format!("reject_unauth_destination, check_policy_service inet:{policyd}"),
                ));
                PostfixOpts::default()
            }
        };
        opts.main_extra = main_extra
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let pf = Postfix::start(&dir.join("postfix"), &opts).unwrap();
        Self {
            pf,
            mbd,
            _policyd_port: port,
            door,
            policy_dir,
            _dir: dir,
        }
    }

    /// One message from `from` to `to`, as `client`; the subject is `subject`.
    fn send(&self, client: &SmtpClient, from: &str, to: &[&str], subject: &str) -> SmtpResult {
        let body = format!("marker-{subject}");
        self.pf
            .send_as(client, from, to, &message(from, to[0], subject, &body))
    }

    /// Every delivered message has its Subject in `subjects` and each of those
    /// arrived exactly once, after the queue settled (nothing else pending).
    fn assert_delivered_exactly(&self, subjects: &[&str]) {
        let got = self.pf.wait_delivered(subjects.len(), WAIT).unwrap();
        self.pf.wait_queue_settled(WAIT).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let got = if got.len() == self.pf.delivered().len() {
            got
        } else {
            self.pf.delivered()
        };
        let mut seen: Vec<String> = got
            .iter()
            .flat_map(|m| m.header_values("Subject"))
            .collect();
        seen.sort();
        let mut want: Vec<String> = subjects.iter().map(ToString::to_string).collect();
        want.sort();
        assert_eq!(
            seen,
            want,
            "delivered subjects differ ({:?} door); raw:\n{:#?}",
            self.door,
            got.iter().map(|m| &m.raw).collect::<Vec<_>>()
        );
    }

    /// The recipients smtp-sink got for the message with this subject, sorted
    /// (Postfix groups them by destination).
    fn delivered_rcpts(&self, subject: &str) -> Vec<String> {
        let delivered = self.pf.delivered();
        let m = with_subject(&delivered, subject);
        let mut rcpts = m.rcpt_args();
        rcpts.sort();
        rcpts
    }
}

// ------------------------------------------------------------------ assertions

fn want(code: u16, text: &str) -> Reply {
    Reply {
        code,
        text: text.to_string(),
    }
}

/// MAIL accepted, one reply per recipient as given (see [`same_reply`]), and
/// the end of data `250` when any recipient was accepted (else no DATA).
fn assert_replies(door: Door, r: &SmtpResult, rcpts: &[Reply]) {
    assert_eq!(r.mail_code(), 250, "MAIL refused:\n{}", r.transcript);
    let same = r.rcpt.len() == rcpts.len()
        && r.rcpt
            .iter()
            .zip(rcpts)
            .all(|(got, want)| same_reply(door, got, want));
    assert!(
        same,
        "RCPT replies differ ({door:?} door): want {rcpts:?}, got {:?}:\n{}",
        r.rcpt, r.transcript
    );
    if rcpts.iter().any(|x| x.code == 250) {
        assert_eq!(r.eod_code(), 250, "message not accepted:\n{}", r.transcript);
    } else {
        assert!(
            r.eod.is_none(),
            "DATA went through with every recipient refused:\n{}",
            r.transcript
        );
    }
}

/// Whether `got` is the reply `want` (written as the milter door gives it).
///
/// Through the milter the reply is exactly mbd's. Through policy delegation
/// Postfix puts its own `<rcpt>: Recipient address rejected: ` before the
/// text of the action, and mbd answers with the whole milter text, so the
/// client sees that prefix twice (see [`policyd_reject_text_is_not_doubled`]).
/// For that door: the same code and enhanced status code, and the text ends
/// with mbd's reason (after the last `rejected: `, or the whole text).
fn same_reply(door: Door, got: &Reply, want: &Reply) -> bool {
    if door == Door::Milter || want.code < 400 {
        return got == want;
    }
    let (Some((want_esc, want_text)), Some((got_esc, got_text))) =
        (want.text.split_once(' '), got.text.split_once(' '))
    else {
        return false;
    };
    let reason = want_text
        .rsplit_once("rejected: ")
        .map_or(want_text, |(_, r)| r);
    got.code == want.code && got_esc == want_esc && got_text.ends_with(reason)
}

fn ok() -> Reply {
    want(250, "2.1.5 Ok")
}

fn unknown_user(rcpt: &str) -> Reply {
    want(
        550,
        &format!("5.1.1 <{rcpt}>: Recipient address rejected: User unknown"),
    )
}

fn sender_denied(sender: &str) -> Reply {
    want(
        550,
        &format!("5.7.1 <{sender}>: Sender address rejected: Access denied"),
    )
}

// ------------------------------------------------------------------ scenarios

/// Recipient validation: exact, extension, wildcard, list-file and unknown
/// recipients of acme.example in one transaction; a message to unknown
/// recipients only is never delivered.
fn unknown_recipient_gets_550(door: Door) {
    let s = EvalStack::start("ev-rcpt", door, "");
    let client = SmtpClient::default();
    let r = s.send(
        &client,
        "sam@source.example",
        &[
            "alice@acme.example",
            "nobody@acme.example",
            "alice+tag@acme.example",
            "sales-eu@acme.example",
            "carol@acme.example",
            "bob@dest.example",
        ],
        "rcpt-mixed",
    );
    assert_replies(
        door,
        &r,
        &[
            ok(),
            unknown_user("nobody@acme.example"),
            ok(),
            ok(),
            ok(),
            ok(),
        ],
    );
    let r = s.send(
        &client,
        "sam@source.example",
        &["ghost@acme.example", "Nobody@ACME.example"],
        "rcpt-none",
    );
    assert_replies(
        door,
        &r,
        &[
            unknown_user("ghost@acme.example"),
            unknown_user("Nobody@ACME.example"),
        ],
    );
    s.pf.wait_log(door.reject_log(), WAIT).unwrap();
    s.assert_delivered_exactly(&["rcpt-mixed"]);
    assert_eq!(
        s.delivered_rcpts("rcpt-mixed"),
        [
            "<alice+tag@acme.example>",
            "<alice@acme.example>",
            "<bob@dest.example>",
            "<carol@acme.example>",
            "<sales-eu@acme.example>",
        ]
    );
}

/// Blocked senders (inline subdomain entry, list file) get 550 5.7.1 at
/// RCPT for every recipient; nothing is delivered.
fn blocked_sender_gets_550(door: Door) {
    let s = EvalStack::start("ev-block", door, "");
    let client = SmtpClient::default();
    for (sender, subject) in [
        ("bad@mx.spam.example", "block-inline"),
        ("villain@evil.example", "block-file"),
    ] {
        let r = s.send(
            &client,
            sender,
            &["alice@acme.example", "bob@dest.example"],
            subject,
        );
        assert_replies(door, &r, &[sender_denied(sender), sender_denied(sender)]);
    }
    let log = s.pf.wait_log(door.reject_log(), WAIT).unwrap();
    assert!(log.contains("address rejected: Access denied"), "{log}");
    assert_nothing_delivered(&s.pf);
}

/// A domain-level allow beats the global block for that domain's
/// recipients only, and an allowed sender skips the custom rules (the rule
/// still refuses other senders).
fn allowed_sender_bypasses_a_later_block(door: Door) {
    let s = EvalStack::start("ev-allow", door, "");
    let sender = "friend@spam.example";
    let r = s.send(
        &SmtpClient::default(),
        sender,
        &["alice@acme.example", "bob@dest.example"],
        "allow-level",
    );
    assert_replies(door, &r, &[ok(), sender_denied(sender)]);

    let bulk = SmtpClient::helo("relay7.bulk.example");
    let r = s.send(&bulk, sender, &["alice@acme.example"], "allow-rule");
    assert_replies(door, &r, &[ok()]);
    let r = s.send(
        &bulk,
        "sam@source.example",
        &["alice@acme.example"],
        "rule-refused",
    );
    assert_replies(door, &r, &[want(550, "5.7.1 Bulk HELO refused")]);

    s.pf.wait_log(door.reject_log(), WAIT).unwrap();
    s.assert_delivered_exactly(&["allow-level", "allow-rule"]);
    assert_eq!(s.delivered_rcpts("allow-level"), ["<alice@acme.example>"]);
}

/// GeoIP by client country, the client address set with XCLIENT: SE is
/// refused, GB and US pass, an allowed sender from SE passes.
fn geoip_denies_by_client_country(door: Door) {
    let s = EvalStack::start("ev-geoip", door, "");
    let se = SmtpClient::xclient(SE, "mail.example.se");
    let r = s.send(&se, "sam@source.example", &["alice@acme.example"], "geo-se");
    assert_replies(
        door,
        &r,
        &[want(550, "5.7.1 Mail from country SE is not accepted here")],
    );
    let r = s.send(
        &se,
        "boss@partner.example",
        &["alice@acme.example"],
        "geo-se-allowed",
    );
    assert_replies(door, &r, &[ok()]);
    for (ip, subject) in [(GB, "geo-gb"), (US, "geo-us")] {
        let c = SmtpClient::xclient(ip, "mail.example.net");
        let r = s.send(&c, "sam@source.example", &["alice@acme.example"], subject);
        assert_replies(door, &r, &[ok()]);
    }
    // Postfix used the XCLIENT address for the session it refused
    let log = s.pf.wait_log(door.reject_log(), WAIT).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains(door.reject_log()) && l.contains("country SE"))
        .unwrap_or_else(|| panic!("no reject line for country SE:\n{log}"));
    assert!(line.contains(&format!("[{SE}]")), "{line}");
    s.assert_delivered_exactly(&["geo-se-allowed", "geo-gb", "geo-us"]);
}

/// The 4th message of a sender within the window gets 450 4.7.1 at RCPT
/// (other senders are unaffected), `mbctl ratelimit show` drains 2, 1, 0,
/// and once the bucket refills the sender is accepted again.
fn rate_limit_burst_crosses_and_recovers(door: Door) {
    let s = EvalStack::start("ev-rate", door, RATELIMIT);
    let client = SmtpClient::default();
    let sender = "burst@source.example";
    let key = format!("sender={sender}");
    let show = |key: &str| -> Vec<serde_json::Value> {
        let out = s.mbd.ctl(&["--json", "ratelimit", "show", key]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("ratelimit show --json ({e}): {}", describe(&out)))
    };
    assert!(show(&key).is_empty(), "a bucket before any mail");

    for (i, remaining) in [2u64, 1, 0].into_iter().enumerate() {
        let subject = format!("burst-{i}");
        let r = s.send(&client, sender, &["alice@acme.example"], &subject);
        assert_replies(door, &r, &[ok()]);
        let rows = show(&key);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0]["limit"], "burst", "{rows:?}");
        assert_eq!(rows[0]["key"], key.as_str(), "{rows:?}");
        assert_eq!(rows[0]["window"], "3/30s", "{rows:?}");
        assert_eq!(rows[0]["remaining"].as_u64(), Some(remaining), "{rows:?}");
    }
    let retry_ms = show(&key)[0]["retry_after_ms"].as_u64().unwrap();
    assert!(
        retry_ms > 0 && retry_ms <= 10_000,
        "retry_after_ms {retry_ms}"
    );
    // the human table says the same
    let out = s.mbd.ctl(&["ratelimit", "show", &key]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with("burst "))
        .unwrap_or_else(|| panic!("no `burst` row:\n{table}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[..4], ["burst", key.as_str(), "3/30s", "0"], "{table}");

    let r = s.send(&client, sender, &["alice@acme.example"], "burst-over");
    assert_eq!(r.rcpt.len(), 1, "{}", r.transcript);
    let over = &r.rcpt[0];
    assert_eq!(over.code, 450, "{}", r.transcript);
    assert!(over.text.starts_with("4.7.1 "), "{}", r.transcript);
    let secs: u64 = over
        .text
        .rsplit_once("Rate limit exceeded, try again in ")
        .and_then(|(_, t)| t.strip_suffix(" s"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected 450 text: {}", r.transcript));
    assert!((1..=10).contains(&secs), "{}", r.transcript);
    assert!(r.eod.is_none(), "{}", r.transcript);
    // the key is the sender: another sender is not limited
    let r = s.send(
        &client,
        "calm@source.example",
        &["alice@acme.example"],
        "other-sender",
    );
    assert_replies(door, &r, &[ok()]);

    // refill: wait (bounded) until the bucket admits one again
    wait_for(Duration::from_secs(20), Duration::from_millis(250), || {
        let rows = show(&key);
        (rows.len() == 1 && rows[0]["retry_after_ms"].as_u64() == Some(0)).then_some(())
    })
    .unwrap_or_else(|| panic!("bucket did not refill: {:?}", show(&key)));
    let r = s.send(&client, sender, &["alice@acme.example"], "burst-recovered");
    assert_replies(door, &r, &[ok()]);

    s.assert_delivered_exactly(&[
        "burst-0",
        "burst-1",
        "burst-2",
        "other-sender",
        "burst-recovered",
    ]);
}

/// A reload with a broken list file and a broken rule file is refused with
/// every error as file:line:column (`mbctl policy reload`, SIGHUP and
/// `mbctl policy check` agree) and the old policy keeps deciding mail; once
/// the files are fixed the new policy takes over.
fn broken_files_are_refused_and_the_old_policy_stays(door: Door) {
    let s = EvalStack::start("ev-reload", door, "");
    let bulk = SmtpClient::helo("relay7.bulk.example");
    let newly = "newly@blocked.example";
    let r = s.send(
        &SmtpClient::default(),
        newly,
        &["alice@acme.example"],
        "before",
    );
    assert_replies(door, &r, &[ok()]);

    // the new list blocks `newly@`, but line 4 is broken; the rule file gains
    // a rule with a misspelt field (line 6, column 10)
    let list_path = s.policy_dir.join("block.list");
    let rules_path = s.policy_dir.join("local.rules");
    fs::write(&list_path, format!("{BLOCK_LIST}{newly}\n192.0.2.1/24\n")).unwrap();
    fs::write(
        &rules_path,
        format!("{RULES}\nrule typo:\n    when sendr_domain == \"x.example\"\n    then reject\n"),
    )
    .unwrap();
    let errors = [
        "block.list:4:1: error: `192.0.2.1/24` has host bits set; the network is 192.0.2.0/24",
        "local.rules:7:10: error: unknown field `sendr_domain`; did you mean `sender_domain`?",
    ];
    let text = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let assert_errors = |what: &str, t: &str| {
        for e in errors {
            assert!(t.contains(e), "{what}: missing `{e}` in:\n{t}");
        }
    };

    // mbctl policy check: the errors, exit 1
    let policy = s.policy_dir.join("policy.toml");
    let out = mbctl(&["policy", "check", policy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_errors("policy check", &text(&out));
    let out = mbctl(&["--json", "policy", "check", policy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    let listed: Vec<&str> = v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {v}"))
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    assert_eq!(listed.len(), 2, "{v}");
    assert_errors("policy check --json", &listed.join("\n"));

    // SIGHUP: refused, the errors kept in status and the generation unchanged
    let st = s.mbd.status().unwrap();
    assert!(st["last_reload_error"].is_null(), "{st}");
    s.mbd.hup();
    let st = wait_for(Duration::from_secs(15), Duration::from_millis(100), || {
        let st = s.mbd.status().ok()?;
        (!st["last_reload_error"].is_null()).then_some(st)
    })
    .unwrap_or_else(|| panic!("no reload error after SIGHUP: {:?}", s.mbd.status()));
    assert_errors(
        "SIGHUP (status last_reload_error)",
        st["last_reload_error"].as_str().unwrap_or_default(),
    );
    assert_eq!(st["config_generation"].as_u64(), Some(1), "{st}");

    // mbctl policy reload: refused with the same errors
    let out = s.mbd.ctl(&["policy", "reload"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "broken reload: {}",
        describe(&out)
    );
    assert_errors("policy reload", &text(&out));
    let st = s.mbd.status().unwrap();
    assert_eq!(st["config_generation"].as_u64(), Some(1), "{st}");

    // the old policy still decides: `newly@` passes, the old rule refuses
    let r = s.send(
        &SmtpClient::default(),
        newly,
        &["alice@acme.example"],
        "old-policy",
    );
    assert_replies(door, &r, &[ok()]);
    let r = s.send(
        &bulk,
        "sam@source.example",
        &["alice@acme.example"],
        "old-rule",
    );
    assert_replies(door, &r, &[want(550, "5.7.1 Bulk HELO refused")]);
    let out = s.mbd.ctl(&[
        "policy",
        "test",
        "--from",
        newly,
        "--rcpt",
        "alice@acme.example",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        text(&out).starts_with("alice@acme.example: continue\n"),
        "{}",
        describe(&out)
    );

    // fixed files: the reload goes through and the new list decides
    fs::write(&list_path, format!("{BLOCK_LIST}{newly}\n")).unwrap();
    fs::write(&rules_path, RULES).unwrap();
    let out = mbctl(&["policy", "check", policy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = s.mbd.ctl(&["policy", "reload"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        text(&out).contains("config generation 2"),
        "{}",
        describe(&out)
    );
    let r = s.send(
        &SmtpClient::default(),
        newly,
        &["alice@acme.example"],
        "new-policy",
    );
    assert_replies(door, &r, &[sender_denied(newly)]);

    s.assert_delivered_exactly(&["before", "old-policy"]);
}

/// Writes each scenario's test once per door: `via_milter::NAME` and
/// `via_policyd::NAME`.
macro_rules! both_doors {
    ($($scenario:ident),* $(,)?) => {
        mod via_milter {
            $(
                #[test]
                fn $scenario() {
                    super::$scenario(super::Door::Milter);
                }
            )*
        }
        mod via_policyd {
            $(
                #[test]
                fn $scenario() {
                    super::$scenario(super::Door::Policyd);
                }
            )*
        }
    };
}

both_doors!(
    unknown_recipient_gets_550,
    blocked_sender_gets_550,
    allowed_sender_bypasses_a_later_block,
    geoip_denies_by_client_country,
    rate_limit_burst_crosses_and_recovers,
    broken_files_are_refused_and_the_old_policy_stays,
);

/// Through policy delegation a refusal must read as it does through the
/// milter: `550 5.1.1 <rcpt>: Recipient address rejected: User unknown`.
/// Postfix puts its own `<rcpt>: Recipient address rejected: ` before a
/// policy service's text; mbd drops its milter-style prefix for that door, so
/// the client reads exactly what the milter door gives.
#[test]
fn policyd_reject_text_is_not_doubled() {
    let s = EvalStack::start("ev-pd-text", Door::Policyd, "");
    let r = s.send(
        &SmtpClient::default(),
        "sam@source.example",
        &["nobody@acme.example"],
        "pd-text",
    );
    assert_replies(Door::Milter, &r, &[unknown_user("nobody@acme.example")]);
}

// ------------------------------------------------------------------ mbctl

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `mbctl policy test` prints the decision and every reason per recipient,
/// in text and JSON, and counts nothing against rate limits.
#[test]
fn policy_test_prints_decisions_and_reasons() {
    let dir = TestDir::new("ev-ctl-test").unwrap();
    let policy_dir = dir.subdir("policy").unwrap();
    let policy = write_policy(&policy_dir, RATELIMIT);
    let cfg = MbdConfig::with_policy(&format!("[eval]\npolicy = \"{}\"\n", policy.display()));
    let mbd = Mbd::start(&dir.join("mbd"), &cfg).unwrap();

    // the GeoIP database as mbd sees it
    for (ip, decision) in [
        (
            SE,
            "reject (550 5.7.1 Mail from country SE is not accepted here)",
        ),
        (GB, "continue"),
        (US, "continue"),
        ("127.0.0.1", "continue"),
    ] {
        let out = mbd.ctl(&[
            "policy",
            "test",
            "--from",
            "sam@source.example",
            "--rcpt",
            "alice@acme.example",
            "--ip",
            ip,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let first = stdout(&out);
        assert_eq!(
            first.lines().next(),
            Some(format!("alice@acme.example: {decision}").as_str()),
            "{ip}: {}",
            describe(&out)
        );
        if ip == SE {
            assert!(
                first.contains("  global geoip: country SE in country_block\n"),
                "{first}"
            );
        }
    }

    // one envelope, several recipients: allow at domain level, unknown user,
    // global block for a foreign domain; rule and GeoIP skipped for the allow
    let out = mbd.ctl(&[
        "policy",
        "test",
        "--from",
        "friend@spam.example",
        "--rcpt",
        "alice@acme.example",
        "--rcpt",
        "nobody@acme.example",
        "--rcpt",
        "bob@dest.example",
        "--ip",
        SE,
        "--helo",
        "relay7.bulk.example",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let t = stdout(&out);
    assert!(
        t.starts_with("alice@acme.example: allow\n"),
        "{}",
        describe(&out)
    );
    for line in [
        // Inline entries name their place in policy.toml.
        "  domain acme.example sender_allow: friend@spam.example (",
        "nobody@acme.example: reject (550 5.1.1 <nobody@acme.example>: Recipient address rejected: User unknown)\n",
        "  recipients domain acme.example: no valid recipient matches nobody@acme.example\n",
        "bob@dest.example: reject (550 5.7.1 <friend@spam.example>: Sender address rejected: Access denied)\n",
        "  global sender_block: @.spam.example (",
    ] {
        assert!(t.contains(line), "missing {line:?} in:\n{t}");
    }
    assert!(
        !t.contains("geoip") && !t.contains("bulk-helo"),
        "an allowed sender ran into GeoIP or rules:\n{t}"
    );

    // the rule decides for a sender that is not allowed, with its position
    let out = mbd.ctl(&[
        "--json",
        "policy",
        "test",
        "--from",
        "sam@source.example",
        "--rcpt",
        "alice@acme.example",
        "--ip",
        GB,
        "--helo",
        "relay7.bulk.example",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("policy test --json ({e}): {}", describe(&out)));
    let traces = v.as_array().unwrap_or_else(|| panic!("not an array: {v}"));
    assert_eq!(traces.len(), 1, "{v}");
    assert_eq!(traces[0]["recipient"], "alice@acme.example", "{v}");
    assert_eq!(traces[0]["decision"], "reject", "{v}");
    assert_eq!(traces[0]["reply"], "550 5.7.1 Bulk HELO refused", "{v}");
    let reasons: Vec<(String, String)> = serde_json::from_value(traces[0]["reasons"].clone())
        .unwrap_or_else(|e| panic!("reasons are not (rule, detail) pairs ({e}): {v}"));
    assert!(
        reasons
            .iter()
            .any(|(rule, detail)| rule == "rule bulk-helo" && detail == "local.rules:2:1"),
        "{reasons:?}"
    );

    // testing counts nothing against the rate limit
    for _ in 0..5 {
        let out = mbd.ctl(&[
            "policy",
            "test",
            "--from",
            "burst@source.example",
            "--rcpt",
            "alice@acme.example",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        assert!(
            stdout(&out).starts_with("alice@acme.example: continue\n"),
            "{}",
            describe(&out)
        );
    }
    let out = mbd.ctl(&["--json", "ratelimit", "show", "sender=burst@source.example"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(stdout(&out).trim(), "[]", "{}", describe(&out));

    // a good file checks OK without a daemon
    let out = mbctl(&["policy", "check", policy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).contains(": OK: 1 tenants, 1 domains, 3 recipients,")
            && stdout(&out).contains("1 rules, 1 rate limits, GeoIP loaded"),
        "{}",
        describe(&out)
    );
}

/// The GeoIP database reloads without a restart: replacing the file on disk
/// changes decisions within `eval.watch_interval`, with no signal and no
/// `mbctl`; a broken replacement is refused and the last good one stays.
#[test]
fn geoip_database_replaced_on_disk_is_picked_up() {
    let dir = TestDir::new("ev-geo-watch").unwrap();
    let policy_dir = dir.subdir("policy").unwrap();
    let db = policy_dir.join("country.mmdb");
    fs::copy(geoip_db(), &db).unwrap();
    let policy = write_policy(&policy_dir, "");
    let text = fs::read_to_string(&policy)
        .unwrap()
        .replace(&geoip_db().display().to_string(), &db.display().to_string());
    fs::write(&policy, text).unwrap();
    let cfg = MbdConfig::with_policy(&format!(
        "[eval]\npolicy = \"{}\"\nwatch_interval = \"1s\"\n",
        policy.display()
    ));
    let mbd = Mbd::start(&dir.join("mbd"), &cfg).unwrap();
    let decide = || {
        let out = mbd.ctl(&[
            "policy",
            "test",
            "--from",
            "sam@source.example",
            "--rcpt",
            "alice@acme.example",
            "--ip",
            SE,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        stdout(&out).lines().next().unwrap_or_default().to_owned()
    };
    assert_eq!(
        decide(),
        "alice@acme.example: reject (550 5.7.1 Mail from country SE is not accepted here)"
    );
    let generation = |mbd: &Mbd| mbd.status().unwrap()["config_generation"].as_u64().unwrap();
    assert_eq!(generation(&mbd), 1);

    // A broken database: refused, the SE client is still refused.
    let fixtures = db_fixture_dir();
    fs::copy(
        fixtures.join("MaxMind-DB-test-broken-pointers-24.mmdb"),
        &db,
    )
    .unwrap();
    let err = wait_for(Duration::from_secs(15), Duration::from_millis(200), || {
        mbd.status().ok()?["last_reload_error"]
            .as_str()
            .map(str::to_owned)
    })
    .expect("a broken database is reported in mbctl status");
    assert!(err.contains("country.mmdb"), "{err}");
    assert_eq!(generation(&mbd), 1);
    assert!(decide().contains("reject (550 5.7.1"), "old database stays");

    // A database without country data for that address: the client passes.
    fs::copy(fixtures.join("MaxMind-DB-test-ipv4-24.mmdb"), &db).unwrap();
    let passed = wait_for(Duration::from_secs(15), Duration::from_millis(200), || {
        (decide() == "alice@acme.example: continue").then_some(())
    });
    assert!(
        passed.is_some(),
        "the new database was not picked up: {}",
        decide()
    );
    assert!(generation(&mbd) >= 2);
}

fn db_fixture_dir() -> PathBuf {
    workspace_root().join("engine/fixtures/geoip/maxmind-test-data")
}
