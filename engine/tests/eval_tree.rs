//! The policy tree end to end in the engine: `policy.toml` text and the files
//! it names (served from memory) → compiled tree → decisions with reasons.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use mb_engine::config::PolicyConfig;
use mb_engine::ctl_api::PolicyQuery;
use mb_engine::eval::ratelimit::RateTable;
use mb_engine::eval::{source, Ask, Facts, PolicyTree};
use mb_engine::policy::{Deferred, Outcome, Policy};
use mb_engine::verdict::Action;
use proptest::prelude::*;

fn corpus(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus")
        .join(rel)
}

fn geoip_path() -> String {
    corpus("geoip/maxmind-test-data/GeoIP2-Country-Test.mmdb")
        .display()
        .to_string()
}

const POLICY: &str = r#"
[global]
sender_block = ["@.spam.example", "file:block.list"]
rules = ["local.rules"]

[recipients]
extension_delimiters = "+"

[geoip]
database = "GEOIP"

[[ratelimit]]
name = "per-sender"
key = ["sender"]
windows = ["3/1m"]

[[tenant]]
name = "acme"
sender_block = ["@tenantblock.example"]

[[tenant.domain]]
name = "acme.example"
recipients = ["alice", "bob@acme.example", "sales-*@acme.example"]
sender_allow = ["friend@spam.example"]
country_block = ["SE"]

[[tenant.domain.recipient]]
address = "bob@acme.example"
sender_block = ["friend@spam.example"]

[[tenant]]
name = "strict"
sender_block = ["@.evil.example"]
block_wins = true

[[tenant.domain]]
name = "strict.example"
sender_allow = ["@.evil.example"]

[[domain]]
name = "open.example"
"#;

const BLOCK_LIST: &str = "# global blocks\n192.0.2.0/24\nbad@evil.example\nhelo:.dynamic.example\n";
const RULES: &str =
    "rule dyn-helo:\n  when helo ~ \"^dyn-\"\n  then reject \"550 5.7.1 Dynamic HELO\"\n\n\
rule vip:\n  when sasl_user == \"vip\"\n  then allow\n\n\
rule hold:\n  when recipient == \"hold@open.example\"\n  then quarantine\n";

fn files(overrides: &[(&str, &str)]) -> HashMap<String, Vec<u8>> {
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    files.insert("block.list".into(), BLOCK_LIST.into());
    files.insert("local.rules".into(), RULES.into());
    for (name, text) in overrides {
        files.insert((*name).into(), text.as_bytes().to_vec());
    }
    files
}

fn compile_with(policy: &str, files: &HashMap<String, Vec<u8>>) -> Result<PolicyTree, Vec<String>> {
    let text = policy.replace("GEOIP", &geoip_path());
    let source = source::parse("policy.toml", &text)
        .map_err(|d| d.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let mut read = |name: &str| {
        if name.ends_with(".mmdb") {
            return std::fs::read(name).map_err(|e| e.to_string());
        }
        files
            .get(name)
            .cloned()
            .ok_or_else(|| "No such file or directory".to_owned())
    };
    PolicyTree::compile(&source, &mut read)
        .map_err(|d| d.iter().map(ToString::to_string).collect::<Vec<_>>())
}

fn tree() -> PolicyTree {
    compile_with(POLICY, &files(&[])).expect("the test policy compiles")
}

fn facts<'a>(sender: &'a str, recipient: &'a str, ip: &str) -> Facts<'a> {
    Facts {
        client_ip: ip.parse::<IpAddr>().ok(),
        client_name: "unknown",
        helo: "mail.client.example",
        sender,
        recipient,
        unix_time: 1_764_000_000,
        ..Facts::default()
    }
}

fn ask(facts: Facts<'_>) -> Ask<'_> {
    Ask {
        facts,
        first_recipient: true,
        sender_allowed: false,
        now_ms: 1_764_000_000_000,
        trace: true,
    }
}

fn reply_of(outcome: &Outcome) -> Option<(u16, String)> {
    match outcome {
        Outcome::Refuse(Action::Reject(t) | Action::TempFail(t)) => Some((t.code, t.text.clone())),
        _ => None,
    }
}

const GB: &str = "81.2.69.142";
const SE: &str = "89.160.20.112";

#[test]
fn unknown_recipient_of_a_hosted_domain_is_550_5_1_1() {
    let t = tree();
    let table = RateTable::with_capacity(1024);
    let d = t.decide(&ask(facts("a@b.example", "carol@acme.example", GB)), &table);
    let (code, text) = reply_of(&d.outcome).expect("refused");
    assert_eq!(code, 550);
    assert!(text.starts_with("5.1.1 <carol@acme.example>"), "{text}");
    for ok in [
        "alice@acme.example",
        "ALICE+tag@Acme.Example",
        "sales-eu@acme.example",
    ] {
        let d = t.decide(
            &ask(facts("a@b.example", ok, GB)),
            &RateTable::with_capacity(1024),
        );
        assert!(reply_of(&d.outcome).is_none(), "{ok}: {d:?}");
    }
    // Not our domain: not judged. A hosted domain without `recipients`: all valid.
    for other in ["x@elsewhere.example", "anyone@open.example"] {
        let d = t.decide(
            &ask(facts("a@b.example", other, GB)),
            &RateTable::with_capacity(1024),
        );
        assert!(reply_of(&d.outcome).is_none(), "{other}: {d:?}");
    }
}

#[test]
fn blocks_at_every_kind_of_entry_with_the_entry_as_reason() {
    let t = tree();
    let cases = [
        ("x@spam.example", "10.0.0.1", "@.spam.example"),
        ("x@sub.spam.example", "10.0.0.1", "@.spam.example"),
        (
            "bad@evil.example",
            "10.0.0.1",
            "bad@evil.example (block.list:3:1)",
        ),
        (
            "ok@good.example",
            "192.0.2.77",
            "192.0.2.0/24 (block.list:2:1)",
        ),
        ("x@tenantblock.example", "10.0.0.1", "@tenantblock.example"),
    ];
    for (sender, ip, detail) in cases {
        let d = t.decide(
            &ask(facts(sender, "alice@acme.example", ip)),
            &RateTable::with_capacity(1024),
        );
        let (code, _) = reply_of(&d.outcome).unwrap_or_else(|| panic!("{sender} {ip}: {d:?}"));
        assert_eq!(code, 550);
        assert!(
            d.reasons.iter().any(|r| r.detail == detail),
            "{sender}: reasons {:?} lack {detail}",
            d.reasons
        );
    }
    let mut f = facts("ok@good.example", "alice@acme.example", "10.0.0.1");
    f.helo = "host-1.dynamic.example";
    let d = t.decide(&ask(f), &RateTable::with_capacity(1024));
    assert!(
        reply_of(&d.outcome).is_some(),
        "HELO subdomain entry: {d:?}"
    );
}

#[test]
fn precedence_recipient_over_domain_over_global_and_block_wins() {
    let t = tree();
    let table = RateTable::with_capacity(1024);
    // Global blocks @.spam.example; domain acme.example allows friend@spam.example.
    let d = t.decide(
        &ask(facts("friend@spam.example", "alice@acme.example", GB)),
        &table,
    );
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    assert!(d
        .reasons
        .iter()
        .any(|r| r.rule == "domain acme.example sender_allow"));
    // ... but the recipient level of bob blocks it again: most specific wins.
    let d = t.decide(
        &ask(facts("friend@spam.example", "bob@acme.example", GB)),
        &table,
    );
    assert!(reply_of(&d.outcome).is_some(), "{d:?}");
    assert!(d
        .reasons
        .iter()
        .any(|r| r.rule == "recipient bob@acme.example sender_block"));
    // Same sender to another domain: the global block.
    let d = t.decide(
        &ask(facts("friend@spam.example", "x@open.example", GB)),
        &table,
    );
    assert!(reply_of(&d.outcome).is_some(), "{d:?}");
    // Tenant `strict` blocks with block_wins: its domain's allow cannot override.
    let d = t.decide(
        &ask(facts("x@a.evil.example", "any@strict.example", GB)),
        &table,
    );
    assert!(reply_of(&d.outcome).is_some(), "{d:?}");
    assert!(
        d.reasons.iter().any(|r| r.rule.contains("block_wins")),
        "{d:?}"
    );
}

#[test]
fn allowed_sender_bypasses_geoip_and_rules() {
    let t = tree();
    let table = RateTable::with_capacity(1024);
    let d = t.decide(
        &ask(facts("ok@good.example", "alice@acme.example", SE)),
        &table,
    );
    let (code, text) = reply_of(&d.outcome).expect("SE is blocked for acme.example");
    assert_eq!(
        (code, text.as_str()),
        (550, "5.7.1 Mail from country SE is not accepted here")
    );
    // GB passes; SE passes for a domain without GeoIP settings.
    let d = t.decide(
        &ask(facts("ok@good.example", "alice@acme.example", GB)),
        &table,
    );
    assert!(reply_of(&d.outcome).is_none(), "{d:?}");
    let d = t.decide(&ask(facts("ok@good.example", "a@open.example", SE)), &table);
    assert!(reply_of(&d.outcome).is_none(), "{d:?}");
    // The domain's allow wins over the GeoIP block.
    let d = t.decide(
        &ask(facts("friend@spam.example", "alice@acme.example", SE)),
        &table,
    );
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    // A rule: dynamic HELO rejected, unless an allow (rule `vip`, later) ... first match wins.
    let mut f = facts("ok@good.example", "a@open.example", GB);
    f.helo = "dyn-1-2-3";
    let d = t.decide(&ask(f), &table);
    assert_eq!(reply_of(&d.outcome).map(|r| r.0), Some(550), "{d:?}");
    f.sender = "friend@spam.example";
    f.recipient = "alice@acme.example";
    let d = t.decide(&ask(f), &table);
    assert_eq!(
        d.outcome,
        Outcome::Allow,
        "allowed senders skip rules: {d:?}"
    );
    let mut f = facts("ok@good.example", "hold@open.example", GB);
    f.sasl_user = "";
    let d = t.decide(&ask(f), &table);
    assert_eq!(d.outcome, Outcome::Defer(Deferred::Quarantine), "{d:?}");
}

#[test]
fn rate_limit_burst_crosses_and_recovers_and_survives_a_reload() {
    let table = Arc::new(RateTable::with_capacity(1 << 12));
    let config = PolicyConfig {
        message_bytes_max: 1 << 20,
        header: None,
        sender: Vec::new(),
        recipient: Vec::new(),
    };
    let first = Policy::with_eval(&config, 1, Some(Arc::new(tree())), Arc::clone(&table));
    let mut a = ask(facts("burst@good.example", "a@open.example", GB));
    a.trace = false;
    for i in 0..3 {
        let d = first.eval_rcpt(&a).expect("tree");
        assert!(reply_of(&d.outcome).is_none(), "message {i}: {d:?}");
    }
    let d = first.eval_rcpt(&a).expect("tree");
    let (code, text) = reply_of(&d.outcome).expect("4th is over 3/1m");
    assert_eq!(code, 450);
    assert!(text.starts_with("4.7.1"), "{text}");
    // A reload (new tree, same table): still over.
    let second = Policy::with_eval(&config, 2, Some(Arc::new(tree())), Arc::clone(&table));
    let d = second.eval_rcpt(&a).expect("tree");
    assert_eq!(
        reply_of(&d.outcome).map(|r| r.0),
        Some(450),
        "buckets survive a reload"
    );
    // Recovery: one emission interval (20 s) later one more is admitted.
    a.now_ms += 20_000;
    let d = second.eval_rcpt(&a).expect("tree");
    assert!(reply_of(&d.outcome).is_none(), "{d:?}");
    // Later recipients of the same message do not count the message again.
    a.first_recipient = false;
    for _ in 0..5 {
        let d = second.eval_rcpt(&a).expect("tree");
        assert!(reply_of(&d.outcome).is_none(), "{d:?}");
    }
}

#[test]
fn policy_test_traces_without_counting() {
    let table = Arc::new(RateTable::with_capacity(1 << 12));
    let config = PolicyConfig {
        message_bytes_max: 1 << 20,
        header: None,
        sender: Vec::new(),
        recipient: Vec::new(),
    };
    let policy = Policy::with_eval(&config, 1, Some(Arc::new(tree())), table);
    let query = PolicyQuery {
        from: "friend@spam.example".into(),
        rcpt: vec![
            "alice@acme.example".into(),
            "carol@acme.example".into(),
            "bob@acme.example".into(),
        ],
        ip: Some(SE.into()),
        ..PolicyQuery::default()
    };
    for _ in 0..5 {
        let traces = policy.test_envelope(&query, 1_764_000_000_000, 0);
        let decisions: Vec<&str> = traces.iter().map(|t| t.decision.as_str()).collect();
        assert_eq!(decisions, ["allow", "reject", "reject"], "{traces:#?}");
        assert!(traces[1]
            .reply
            .as_deref()
            .unwrap_or("")
            .starts_with("550 5.1.1"));
        assert!(traces[0]
            .reasons
            .iter()
            .any(|(rule, _)| rule == "domain acme.example sender_allow"));
    }
}

#[test]
fn bad_list_and_rule_files_report_file_line_and_column() {
    let broken = files(&[
        (
            "block.list",
            "# ok\n192.0.2.0/24\n10.0.0.1/33\nnot an entry\n",
        ),
        ("local.rules", "rule a:\n  when hour == 25\n  then reject\n"),
    ]);
    let errors = compile_with(POLICY, &broken).expect_err("broken files");
    assert!(
        errors.iter().any(|e| e.starts_with("block.list:3:")),
        "{errors:#?}"
    );
    assert!(
        errors.iter().any(|e| e.starts_with("block.list:4:")),
        "{errors:#?}"
    );
    assert!(
        errors.iter().any(|e| e.starts_with("local.rules:2:16:")),
        "{errors:#?}"
    );
    let missing = compile_with(
        &POLICY.replace("file:block.list", "file:nope.list"),
        &files(&[]),
    )
    .expect_err("missing file");
    assert!(
        missing
            .iter()
            .any(|e| e.contains("cannot read `nope.list`")),
        "{missing:#?}"
    );
}

#[test]
fn policy_file_errors_name_their_key_paths() {
    let text = r#"
[global]
sender_blok = ["x@y.example"]
country_block = ["XYZ"]

[[ratelimit]]
name = "a"
key = ["client_iq"]
windows = ["3/1m"]

[[tenant]]
name = "t"
[[tenant.domain]]
name = "bad domain"
recipients = ["a@b.example"]
"#;
    let errors: Vec<String> = source::parse("policy.toml", text)
        .expect_err("errors")
        .iter()
        .map(ToString::to_string)
        .collect();
    for needle in [
        "`global.sender_blok`: unknown key `sender_blok`; did you mean `sender_block`?",
        "`global.country_block[0]`",
        "`ratelimit[0].key[0]`",
        "`tenant[0].domain[0].name`",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{needle} not in {errors:#?}"
        );
    }
    let syntax = source::parse("policy.toml", "[global\n").expect_err("syntax");
    assert_eq!(
        (syntax[0].origin.line, syntax[0].origin.column),
        (1, 8),
        "{syntax:?}"
    );
}

#[test]
fn shipped_example_policy_compiles() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tuning/policy");
    let path = dir.join("policy.toml");
    let text = std::fs::read_to_string(&path).expect("tuning/policy/policy.toml");
    let source = source::parse("policy.toml", &text).expect("parses");
    let mut read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| e.to_string());
    let tree = PolicyTree::compile(&source, &mut read).expect("compiles");
    assert!(
        tree.summary().rules > 0 && tree.summary().list_entries > 0,
        "{:?}",
        tree.summary()
    );
}

proptest! {
    /// Decisions depend on the facts only: any number of shards sharing the
    /// tree give the same answer (rate limits aside, which are shared state).
    #[test]
    fn decisions_are_independent_of_the_asking_shard(
        sender in prop::sample::select(vec!["a@good.example", "friend@spam.example", "x@spam.example", "bad@evil.example", ""]),
        recipient in prop::sample::select(vec!["alice@acme.example", "carol@acme.example", "bob@acme.example", "q@open.example", "z@strict.example"]),
        ip in prop::sample::select(vec![GB, SE, "192.0.2.9", "2001:db8::1", "10.1.2.3"]),
        helo in prop::sample::select(vec!["mx.example", "dyn-9", "a.dynamic.example"]),
    ) {
        let t = Arc::new(tree());
        let decide = move |t: &PolicyTree| {
            let mut f = facts(sender, recipient, ip);
            f.helo = helo;
            t.decide(&ask(f), &RateTable::with_capacity(1024))
        };
        let here = decide(&t);
        let there: Vec<_> = (0..2)
            .map(|_| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || decide(&t))
            })
            .map(|h| h.join().expect("thread"))
            .collect();
        for d in there {
            prop_assert_eq!(&d, &here);
        }
    }
}
