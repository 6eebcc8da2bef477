//! Rule language tests: semantics per field and operator, exact error
//! positions, limits, and the index against the naive oracle.

use std::net::IpAddr;

use proptest::prelude::*;

use super::*;
use crate::eval::Code;

/// 2024-01-01 00:00:00 UTC, a Monday.
const MONDAY_MIDNIGHT_UTC: u64 = 1_704_067_200;

fn compile_one(text: &str) -> Result<RuleSet, Vec<FileDiagnostic>> {
    compile(&[Source {
        file: "t.rules",
        text,
    }])
}

fn rules(text: &str) -> RuleSet {
    match compile_one(text) {
        Ok(set) => set,
        Err(e) => panic!("rules should compile: {e:#?}"),
    }
}

/// The diagnostics as (line, column, message).
fn errors(text: &str) -> Vec<(u32, u32, String)> {
    match compile_one(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(diags) => diags
            .into_iter()
            .map(|d| (d.origin.line, d.origin.column, d.message))
            .collect(),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

fn base() -> Facts<'static> {
    Facts {
        client_ip: Some(ip("198.51.100.7")),
        client_name: "mail.example.net",
        helo: "mail.example.net",
        sender: "Alice@Example.NET",
        recipient: "bob@example.org",
        recipient_count: 3,
        message_count: 1,
        sasl_user: "",
        tls: true,
        country: Code::parse("de"),
        continent: Code::parse("eu"),
        unix_time: MONDAY_MIDNIGHT_UTC + 14 * 3600 + 30 * 60,
        utc_offset_minutes: 0,
    }
}

/// Whether a one-rule set with `cond` hits for `facts` (and the index agrees).
fn holds(cond: &str, facts: &Facts<'_>) -> bool {
    let set = rules(&format!("rule r:\n  when {cond}\n  then allow\n"));
    let naive = set.evaluate_naive(facts).is_some();
    assert_eq!(
        set.evaluate(facts).is_some(),
        naive,
        "index vs naive for {cond}"
    );
    naive
}

#[test]
fn brief_examples_decide_in_file_order() {
    let set = rules(
        r#"
# comment
rule dynamic-helo:
    when helo ~ "^[0-9]+([-.][0-9]+){3}" and not authenticated
    then reject "550 5.7.1 Dynamic-looking HELO refused"

rule night-bulk:
    when hour >= 1 and hour < 5 and recipient_count > 50
    then tempfail "451 4.7.1 Try again later"

rule partners:
    when client_ip in [192.0.2.0/24, 2001:db8::/32] or sender_domain in ["partner.example", "b.example"]
    then allow
"#,
    );
    assert_eq!(set.len(), 3);
    assert!(set.evaluate(&base()).is_none());

    let dynamic = Facts {
        helo: "10-1-2-3.pool.example",
        ..base()
    };
    let hit = set.evaluate(&dynamic).expect("dynamic HELO hits");
    assert_eq!(hit.name, "dynamic-helo");
    assert_eq!((hit.origin.line, hit.origin.column), (3, 1));
    assert_eq!(&*hit.origin.file, "t.rules");
    let reject = SmtpText {
        code: 550,
        text: "5.7.1 Dynamic-looking HELO refused".into(),
    };
    assert_eq!(hit.action, &RuleAction::Reject(reject));
    let authed = Facts {
        sasl_user: "alice",
        ..dynamic
    };
    assert!(set.evaluate(&authed).is_none());

    let night = Facts {
        recipient_count: 51,
        unix_time: MONDAY_MIDNIGHT_UTC + 3600,
        ..base()
    };
    assert_eq!(set.evaluate(&night).map(|h| h.name), Some("night-bulk"));
    let five = Facts {
        unix_time: MONDAY_MIDNIGHT_UTC + 5 * 3600,
        ..night
    };
    assert!(set.evaluate(&five).is_none());

    let partner_v6 = Facts {
        client_ip: Some(ip("2001:db8:ffff::1")),
        ..base()
    };
    assert_eq!(set.evaluate(&partner_v6).map(|h| h.name), Some("partners"));
    let partner_domain = Facts {
        sender: "x@B.Example",
        ..base()
    };
    let hit = set.evaluate(&partner_domain).expect("partner domain");
    assert_eq!((hit.name, hit.action), ("partners", &RuleAction::Allow));
}

#[test]
fn every_field_reads_its_fact() {
    let f = base();
    let cases: &[(&str, bool)] = &[
        ("client_ip == 198.51.100.7", true),
        ("client_ip == 198.51.100.8", false),
        ("client_name == \"MAIL.example.net\"", true),
        ("country == DE", true),
        ("country == \"fr\"", false),
        ("continent in [eu, na]", true),
        ("helo ends_with \".NET\"", true),
        ("sender == \"alice@example.net\"", true),
        ("sender_domain == \"example.net\"", true),
        ("sender_local == \"ALICE\"", true),
        ("recipient == \"bob@example.org\"", true),
        ("recipient_domain == \"example.org\"", true),
        ("recipient_local == \"bob\"", true),
        ("sasl_user == \"\"", true),
        ("recipient_count == 3", true),
        ("message_count == 1", true),
        ("hour == 14", true),
        ("minute == 30", true),
        ("weekday == mon", true),
        ("weekday == Monday", true),
        ("weekday == 1", true),
        ("weekday == tue", false),
        ("authenticated", false),
        ("tls", true),
        ("tls == false", false),
        ("tls != false", true),
        ("null_sender", false),
    ];
    for (cond, want) in cases {
        assert_eq!(holds(cond, &f), *want, "{cond}");
    }
}

#[test]
fn addresses_split_at_the_last_at_sign() {
    let f = Facts {
        sender: "\"a@b\"@x.example",
        recipient: "postmaster",
        ..base()
    };
    assert!(holds("sender_local == \"\\\"a@b\\\"\"", &f));
    assert!(holds("sender_domain == \"x.example\"", &f));
    assert!(holds("recipient_local == \"postmaster\"", &f));
    assert!(holds("recipient_domain == \"\"", &f));
    let null = Facts {
        sender: "",
        ..base()
    };
    assert!(holds("null_sender and sender_domain == \"\"", &null));
}

#[test]
fn string_operators_fold_ascii_case() {
    let f = Facts {
        helo: "Mail.EXAMPLE.com",
        ..base()
    };
    assert!(holds("helo == \"mail.example.COM\"", &f));
    assert!(!holds("helo != \"mail.example.COM\"", &f));
    assert!(holds("helo starts_with \"MAIL.\"", &f));
    assert!(holds("helo ends_with \".Com\"", &f));
    assert!(holds("helo contains \"example\"", &f));
    assert!(!holds("helo contains \"examplex\"", &f));
    assert!(holds("helo ~ \"^mail\\.\"", &f));
    assert!(!holds("helo ~ \"(?-i)^mail\\.\"", &f));
    assert!(holds("helo in [\"a\", \"MAIL.example.com\", \"z\"]", &f));
    assert!(!holds("helo in [\"a\", \"z\"]", &f));
    assert!(!holds("helo in []", &f));
    assert!(holds("helo starts_with \"\"", &f));
}

#[test]
fn unknown_codes_and_addresses_make_every_comparison_false() {
    let f = Facts {
        country: None,
        continent: None,
        client_ip: None,
        ..base()
    };
    for cond in [
        "country == DE",
        "country != DE",
        "country in [DE, FR]",
        "continent != EU",
        "client_ip == 192.0.2.1",
        "client_ip != 192.0.2.1",
        "client_ip in 0.0.0.0/0",
    ] {
        assert!(!holds(cond, &f), "{cond}");
    }
    assert!(holds("not country == DE", &f));
    assert!(holds("country != FR", &base()));
}

#[test]
fn ip_ranges_match_by_family_and_mapped_v4_is_v4() {
    let v6 = Facts {
        client_ip: Some(ip("2001:db8::25")),
        ..base()
    };
    assert!(holds("client_ip in 2001:db8::/32", &v6));
    assert!(holds("client_ip == 2001:DB8::25", &v6));
    assert!(!holds("client_ip in [0.0.0.0/0]", &v6));
    assert!(holds("client_ip in [::/0]", &v6));
    let mapped = Facts {
        client_ip: Some(ip("::ffff:192.0.2.9")),
        ..base()
    };
    assert!(holds("client_ip in 192.0.2.0/24", &mapped));
    assert!(holds("client_ip == 192.0.2.9", &mapped));
    assert!(holds("client_ip in [::ffff:192.0.2.0/120]", &mapped));
    assert!(!holds("client_ip in [192.0.3.0/24, 10.0.0.0/8]", &mapped));
    assert!(holds("client_ip != 192.0.2.10", &mapped));
}

#[test]
fn local_time_uses_the_offset_and_thursday_epoch() {
    use super::expr::local_time;
    assert_eq!(local_time(0, 0), (0, 0, 4));
    assert_eq!(local_time(MONDAY_MIDNIGHT_UTC, 0), (0, 0, 1));
    assert_eq!(local_time(MONDAY_MIDNIGHT_UTC, -60), (23, 0, 7));
    assert_eq!(local_time(MONDAY_MIDNIGHT_UTC + 59, 125), (2, 5, 1));
    assert_eq!(
        local_time(MONDAY_MIDNIGHT_UTC + 6 * 86_400 + 86_399, 0),
        (23, 59, 7)
    );
    assert_eq!(local_time(0, -1), (23, 59, 3));
    assert!(local_time(u64::MAX, i16::MAX).0 < 24);
    let sunday_evening = Facts {
        utc_offset_minutes: -60,
        unix_time: MONDAY_MIDNIGHT_UTC,
        ..base()
    };
    assert!(holds(
        "weekday in [sat, sun] and hour >= 23",
        &sunday_evening
    ));
    assert!(holds("weekday > fri", &sunday_evening));
}

#[test]
fn precedence_is_not_then_and_then_or() {
    let f = base();
    // `true or false and false` is `true or (false and false)`.
    assert!(holds("true or false and false", &f));
    assert!(!holds("(true or false) and false", &f));
    // `not` binds tighter than `and`.
    assert!(!holds("not true and true", &f));
    assert!(holds("not (true and false)", &f));
    assert!(holds("not not tls", &f));
}

#[test]
fn first_rule_in_file_order_wins_across_files() {
    let a = "rule a1:\n when sender_domain == \"example.net\"\n then discard\n";
    let b = "rule b1:\n when true\n then quarantine\nrule b2: then allow\n";
    let set =
        compile(&[Source { file: "a", text: a }, Source { file: "b", text: b }]).expect("compiles");
    assert_eq!(set.len(), 3);
    let hit = set.evaluate(&base()).expect("hit");
    assert_eq!((hit.name, hit.action), ("a1", &RuleAction::Discard));
    let other = Facts {
        sender: "x@other.example",
        ..base()
    };
    let hit = set.evaluate(&other).expect("hit");
    assert_eq!((hit.name, &*hit.origin.file), ("b1", "b"));
    assert_eq!(hit.action, &RuleAction::Quarantine);
}

#[test]
fn default_reply_texts_name_the_rule() {
    let set = rules("rule r1: when tls then reject\nrule r2: when not tls then tempfail\n");
    let reject = set.evaluate(&base()).map(|h| h.action.clone());
    assert_eq!(
        reject,
        Some(RuleAction::Reject(SmtpText {
            code: 550,
            text: "5.7.1 Rejected by policy rule r1".into()
        }))
    );
    let plain = Facts {
        tls: false,
        ..base()
    };
    let tempfail = set.evaluate(&plain).map(|h| h.action.clone());
    assert_eq!(
        tempfail,
        Some(RuleAction::TempFail(SmtpText {
            code: 451,
            text: "4.7.1 Deferred by policy rule r2".into()
        }))
    );
}

#[test]
fn strings_keep_unknown_escapes_for_regexes() {
    let f = Facts {
        helo: "a\"b\\c.d",
        ..base()
    };
    assert!(holds(r#"helo == "a\"b\\c.d""#, &f));
    // `\\\\` in a string is `\\` in the regex: one literal backslash.
    assert!(holds(r#"helo ~ "^a.b\\\\c\.d$""#, &f));
}

/// Line, column and a fragment of the message.
type Expected = (u32, u32, &'static str);

#[test]
fn errors_point_at_the_offending_token() {
    let cases: &[(&str, &[Expected])] = &[
        (
            "rule a:\n  when sendr_domain == \"x\"\n  then allow\n",
            &[(2, 8, "unknown field `sendr_domain`; did you mean `sender_domain`?")],
        ),
        (
            "rule a:\n  when hour ~ \"x\"\n  then allow\n",
            &[(2, 13, "operator `~` does not apply to `hour` (an integer)")],
        ),
        (
            "rule a:\n  when client_ip == \"abc\"\n  then allow\n",
            &[(2, 21, "`client_ip` is an IP address")],
        ),
        (
            "rule a:\n  when client_ip == abc\n  then allow\n",
            &[(2, 21, "`abc` is not an IP address or CIDR range")],
        ),
        (
            "rule a: when helo ~ \"(unclosed\" then allow\n",
            &[(1, 21, "bad regex \"(unclosed\": unclosed group")],
        ),
        (
            "rule a: when client_ip in [10.0.0.0/8, 192.0.2.1/24] then allow\n",
            &[(1, 40, "host bits set; did you mean 192.0.2.0/24?")],
        ),
        (
            "rule a: when client_ip in [10.0.0.0/33] then allow\n",
            &[(1, 28, "bad prefix length")],
        ),
        (
            "rule a: when tls\n then reject \"450 4.7.1 nope\"\n",
            &[(2, 14, "reject needs a 5xx reply code, found 450")],
        ),
        (
            "rule a: when tls then tempfail \"451 5.7.1 nope\"\n",
            &[(1, 32, "enhanced status code 5.7.1 does not match reply code 451")],
        ),
        (
            "rule a: then allow\nrule b: then allow\n\nrule a: then discard\n",
            &[(4, 1, "duplicate rule name `a` (first defined at t.rules:1:1)")],
        ),
        (
            "rule a: when helo == \"abc\n then allow\n",
            &[(1, 22, "unterminated string")],
        ),
        (
            "rule a: when hour >= and tls then allow\n",
            &[(1, 22, "expected a value (a quoted string, number or address), found `and`")],
        ),
        (
            "rule a: when tls allow\n",
            &[(1, 18, "expected `and`, `or` or `then`, found `allow`")],
        ),
        ("rule a when tls then allow\n", &[(1, 8, "expected `:` after the rule name `a`")]),
        ("rule : then allow\n", &[(1, 6, "expected a rule name")]),
        (
            "rule a: then rejct\n",
            &[(1, 14, "unknown action `rejct`; expected allow, reject, tempfail, discard or quarantine; did you mean `reject`?")],
        ),
        ("rule a: then allow and\n", &[(1, 20, "expected `rule` to start a rule, found `and`")]),
        ("allow\n", &[(1, 1, "expected `rule` to start a rule, found `allow`")]),
        ("rule a: when hour then allow\n", &[(1, 14, "`hour` is an integer, not a condition")]),
        ("rule a: when hour == 24 then allow\n", &[(1, 22, "`hour` takes 0 to 23, found `24`")]),
        ("rule a: when weekday == funday then allow\n", &[(1, 25, "`weekday` takes mon")]),
        ("rule a: when hour == \"5\" then allow\n", &[(1, 22, "write 5 without quotes")]),
        ("rule a: when country == DEU then allow\n", &[(1, 25, "two-letter code")]),
        ("rule a: when sender == x then allow\n", &[(1, 24, "write the value in double quotes, \"x\"")]),
        ("rule a: when sender in \"x\" then allow\n", &[(1, 24, "`in` takes a list")]),
        ("rule a: when hour == [1, 2] then allow\n", &[(1, 22, "a list only goes after `in`")]),
        ("rule a: when client_ip == 10.0.0.0/8 then allow\n", &[(1, 27, "takes one address")]),
        ("rule a: when tls == 1 then allow\n", &[(1, 21, "compare it with true or false")]),
        ("rule a: when helo = \"x\" then allow\n", &[(1, 19, "unexpected `=`; compare with `==`")]),
        ("rule a: when (tls then allow\n", &[(1, 19, "expected `)`, `and` or `or`, found `then`")]),
        (
            "rule a: when sender in [\"a\" \"b\"] then allow\n",
            &[(1, 29, "expected `,` or `]`, found string \"b\"")],
        ),
        ("rule a: when then allow\n", &[(1, 14, "expected a condition")]),
        ("rule a: when tls then allow \"550 5.7.1 x\"\n", &[(1, 29, "expected `rule`")]),
        ("rule a: when helo ~ \"é\" é then allow\n", &[(1, 25, "unexpected character 'é'")]),
    ];
    for (text, want) in cases {
        let got = errors(text);
        assert_eq!(got.len(), want.len(), "{text}\n{got:#?}");
        for ((line, col, msg), (wl, wc, wm)) in got.iter().zip(want.iter()) {
            assert_eq!((line, col), (wl, wc), "{text}\n{msg}");
            assert!(msg.contains(wm), "{text}\nwant `{wm}` in `{msg}`");
        }
    }
}

#[test]
fn every_error_in_every_file_is_reported_at_once() {
    let a = "\
rule ok1: then allow
rule bad1: when nope then allow
rule bad2: when hour ~ 1 and sender == y then allow
rule bad3 when
rule ok2: then allow
";
    let b = "rule ok1: then allow\nrule bad4: when tls then reject \"250 ok\"\n";
    let diags = compile(&[
        Source {
            file: "a.rules",
            text: a,
        },
        Source {
            file: "b.rules",
            text: b,
        },
    ])
    .expect_err("errors");
    let got: Vec<String> = diags.iter().map(|d| d.origin.to_string()).collect();
    assert_eq!(
        got,
        [
            "a.rules:2:17", // unknown field
            "a.rules:3:22", // ~ on an integer
            "a.rules:3:40", // unquoted string
            "a.rules:4:11", // missing colon
            "b.rules:1:1",  // duplicate ok1
            "b.rules:2:33", // 250 is not 5xx
        ]
    );
    assert!(diags[0]
        .to_string()
        .starts_with("a.rules:2:17: error: unknown field `nope`"));
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let text = format!("rule deep: when {}tls then allow\n", "(".repeat(100_000));
    let got = errors(&text);
    // The 33rd parenthesis (column 17 + 32) is one level too deep.
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].0, got[0].1), (1, 17 + 32));
    assert!(got[0].2.contains("deeper than 32"));
    let nots = format!("rule deep: when {}tls then allow\n", "not ".repeat(100_000));
    assert_eq!(errors(&nots)[0].1, 17 + 4 * 32);
    let ok = format!(
        "rule ok: when {}tls{} then allow\n",
        "(".repeat(32),
        ")".repeat(32)
    );
    assert_eq!(rules(&ok).len(), 1);
    let long = format!(
        "rule long: when {}tls then allow\n",
        "tls and ".repeat(100_000)
    );
    assert_eq!(rules(&long).len(), 1);
}

#[test]
fn limits_are_errors() {
    let big = "#".repeat(RULE_FILE_BYTES_MAX + 1);
    let got = errors(&big);
    assert_eq!((got[0].0, got[0].1), (1, 1));
    assert!(got[0].2.contains("limit"));

    let huge = "rule r: when helo ~ \"\\w{1000}\\w{1000}\\w{1000}\" then allow\n";
    let got = errors(huge);
    assert_eq!((got[0].0, got[0].1), (1, 21));
    assert!(got[0].2.contains("too big"), "{}", got[0].2);

    let garbage: String = (0..1000)
        .map(|n| format!("rule r{n}: when nope then allow\n"))
        .collect();
    assert_eq!(errors(&garbage).len(), DIAGNOSTICS_MAX);
    assert_eq!(errors(&"= ".repeat(10_000)).len(), 1);
}

#[test]
fn too_many_rules_is_one_error() {
    let mut text = String::new();
    for n in 0..=RULES_MAX {
        text.push_str(&format!("rule r{n}: then allow\n"));
    }
    let got = errors(&text);
    assert_eq!(got.len(), 1);
    let line = u32::try_from(RULES_MAX + 1).expect("fits");
    assert_eq!((got[0].0, got[0].1), (line, 1));
}

#[test]
fn needs_follow_the_fields_used() {
    assert_eq!(RuleSet::default().needs(), Needs::default());
    assert!(RuleSet::default().evaluate(&base()).is_none());
    assert!(RuleSet::default().is_empty());
    let set = rules("rule a: when helo == \"x\" or country == DE then allow\n");
    let want = Needs {
        helo: true,
        geoip: true,
        ..Needs::default()
    };
    assert_eq!(set.needs(), want);
    let set = rules("rule a: when not (client_name ~ \"x\") and tls then allow\n");
    let want = Needs {
        client: true,
        tls: true,
        ..Needs::default()
    };
    assert_eq!(set.needs(), want);
    assert!(
        rules("rule a: when client_ip in 10.0.0.0/8 then allow\n")
            .needs()
            .client
    );
}

#[test]
fn equality_regex_and_cidr_rules_are_indexed_and_others_are_not() {
    let set = rules(
        "rule a: when sender_domain == \"a.example\" and hour > 3 then allow
rule b: when country in [DE, FR] then allow
rule c: when recipient in [\"x@y\", \"z@y\"] or tls then allow
rule d: when helo ~ \"x\" then allow
rule e: when not sender == \"q\" then allow
rule f: when tls and client_ip in [10.0.0.0/8, 2001:db8::/32] then allow
rule g: when client_ip == 192.0.2.1 then allow
rule h: when client_ip != 192.0.2.1 and hour > 3 then allow
rule i: when helo == \"a\" or client_ip in 10.0.0.0/8 or false then allow
rule j: when tls and (false or sender ~ \"^x\") then allow
rule k: when false then allow
",
    );
    assert_eq!((set.len(), set.unindexed_len()), (11, 3));
}

/// The rule numbers the index hands to evaluation for `facts`, in order.
fn candidates(set: &RuleSet, facts: &Facts<'_>) -> Vec<u32> {
    let subject = super::expr::Subject::new(facts);
    let mut seen = Vec::new();
    let none = set.index.first(&subject, |n, _| {
        seen.push(n);
        false
    });
    assert_eq!(none, None);
    seen
}

#[test]
fn regex_and_cidr_rules_are_candidates_only_when_their_gate_matches() {
    let set = rules(
        r#"
rule re1: when helo ~ "^dyn[0-9]+\." and not authenticated then reject
rule net1: when client_ip in [10.0.0.0/8, 10.1.0.0/16, 10.1.2.3] then reject
rule re2: when (tls or true) and helo ~ "^DYN" then reject
rule net2: when client_ip == 192.0.2.1 then reject
rule v6: when client_ip in 2001:db8::/32 and tls then reject
rule num: when recipient_count > 100 then reject
rule both: when client_ip in [198.51.100.0/24] and helo ~ "x" then reject
rule re3: when sender ~ "^dyn" and helo ~ "^dyn[0-9]+\." then reject
rule any: when client_ip in 192.0.2.0/24 or helo == "x" or helo ~ "^dyn1" then reject
rule never: when false or (false and tls) then reject
"#,
    );
    assert_eq!(set.unindexed_len(), 1);
    // re3 is gated on its first regex, on `sender`, which always matches here;
    // `any` on each of its branches (and is checked once when several hold).
    let cases: [(&str, &str, &[u32]); 6] = [
        ("198.51.100.7", "mail.example.net", &[5, 6, 7]),
        ("10.1.2.3", "dyn12.pool", &[0, 1, 2, 5, 7, 8]),
        ("10.9.9.9", "DYN", &[1, 2, 5, 7]),
        ("2001:db8::1", "x", &[4, 5, 7, 8]),
        ("::ffff:192.0.2.1", "x", &[3, 5, 7, 8]),
        ("192.0.2.2", "dyn1", &[2, 5, 7, 8]),
    ];
    for (addr, helo, want) in cases {
        let facts = Facts {
            client_ip: Some(ip(addr)),
            helo,
            sender: "Dyn@example.net",
            ..base()
        };
        assert_eq!(candidates(&set, &facts), want, "{addr} {helo}");
        assert_eq!(
            set.evaluate(&facts).map(|h| h.name),
            set.evaluate_naive(&facts).map(|h| h.name),
            "{addr} {helo}"
        );
    }
    let unknown = Facts {
        client_ip: None,
        sender: "",
        ..base()
    };
    assert_eq!(candidates(&set, &unknown), [5]);
}

#[test]
fn equal_regexes_share_a_slot_and_flags_stay_per_regex() {
    let set = rules(
        r#"
rule a: when helo ~ "(?-i)^MX" then allow
rule b: when helo ~ "^mx" and helo ~ "example$" then discard
rule c: when helo ~ "^mx" then quarantine
rule d: when not helo ~ "" then reject
"#,
    );
    let name = |helo| set.evaluate(&Facts { helo, ..base() }).map(|h| h.name);
    assert_eq!(name("MX1.example"), Some("a"));
    assert_eq!(name("mx1.EXAMPLE"), Some("b"));
    assert_eq!(name("Mx1.example.net"), Some("c"));
    assert_eq!(name("other"), None);
    for helo in ["MX1.example", "mx1.EXAMPLE", "Mx1.example.net", "other", ""] {
        let facts = Facts { helo, ..base() };
        assert_eq!(
            set.evaluate(&facts).map(|h| h.name),
            set.evaluate_naive(&facts).map(|h| h.name)
        );
    }
}

#[test]
fn rule_sets_are_shareable() {
    fn shareable<T: Send + Sync + std::fmt::Debug + Default>() {}
    shareable::<RuleSet>();
}

#[test]
fn shipped_examples_compile_and_decide() {
    let text = include_str!("../../../../tuning/policy/example.rules");
    let set = compile(&[Source {
        file: "tuning/policy/example.rules",
        text,
    }])
    .unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(set.len() >= 8, "{}", set.len());
    let dynamic = Facts {
        helo: "192-0-2-1.dsl.example",
        ..base()
    };
    assert_eq!(set.evaluate(&dynamic).map(|h| h.name), Some("dynamic-helo"));
    assert!(set.evaluate(&base()).is_none());
}

#[test]
fn documented_first_look_compiles() {
    let doc = include_str!("../../../../docs/RULES.md");
    let section = doc.split("## 1. A first look").nth(1).expect("section 1");
    let block = section.split("```text\n").nth(1).expect("code block");
    let text = block.split("```").next().expect("block end");
    let set = rules(text);
    let names: Vec<&str> = set.rules.iter().map(|r| &*r.name).collect();
    assert_eq!(names, ["dynamic-helo", "night-bulk", "partners"]);
}

// --- The index against the naive oracle ------------------------------------

const VALUES: [&str; 5] = ["a.example", "B.example", "c", "", "x@a.example"];

fn str_fields() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "sender_domain",
        "recipient",
        "recipient_domain",
        "helo",
        "sender",
        "client_name",
        "sasl_user",
    ])
}

fn value() -> impl Strategy<Value = &'static str> {
    prop::sample::select(VALUES.to_vec())
}

fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        (str_fields(), value()).prop_map(|(f, v)| format!("{f} == \"{v}\"")),
        (str_fields(), prop::collection::vec(value(), 0..3)).prop_map(|(f, vs)| {
            let quoted: Vec<String> = vs.iter().map(|v| format!("\"{v}\"")).collect();
            format!("{f} in [{}]", quoted.join(", "))
        }),
        (str_fields(), value()).prop_map(|(f, v)| format!("{f} != \"{v}\"")),
        (str_fields(), value()).prop_map(|(f, v)| format!("{f} ends_with \"{v}\"")),
        (str_fields(), regex()).prop_map(|(f, r)| format!("{f} ~ \"{r}\"")),
        nets().prop_map(|ns| format!("client_ip in [{}]", ns.join(", "))),
        prop::sample::select(CLIENTS.to_vec()).prop_map(|a| format!("client_ip == {a}")),
        prop::sample::select(vec![
            "country == DE",
            "country in [FR, de]",
            "continent != EU",
            "tls",
            "authenticated",
            "null_sender",
            "hour < 12",
            "recipient_count >= 2",
            "client_ip in [10.0.0.0/8, 2001:db8::/32]",
            "helo ~ \"^b\"",
            "true",
            "false",
        ])
        .prop_map(str::to_owned),
    ]
}

/// Regexes over [`VALUES`]: anchors, case flags, the empty regex, classes.
fn regex() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "^b",
        "^B",
        "(?-i)^B",
        "(?-i)^b",
        "example$",
        "a\\.ex",
        "",
        "^$",
        "@",
        "^[a-c]\\.",
        "x|c$",
        "zz",
    ])
}

/// Client addresses the probes use (`None` is a probe too).
const CLIENTS: [&str; 5] = [
    "10.1.2.3",
    "2001:db8::1",
    "192.0.2.5",
    "::ffff:10.1.2.3",
    "2001:db8:1::5",
];

/// CIDR lists: nested, repeated prefix lengths, both families, mapped, empty.
fn nets() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(
        prop::sample::select(vec![
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.3",
            "10.2.0.0/16",
            "0.0.0.0/0",
            "192.0.2.0/24",
            "2001:db8::/32",
            "2001:db8:1::/48",
            "::/0",
            "::ffff:10.1.0.0/112",
            "::ffff:0.0.0.0/96",
            "::/64",
        ]),
        0..3,
    )
}

fn cond() -> impl Strategy<Value = String> {
    atom().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(|v| v.join(" and ")),
            prop::collection::vec(inner.clone(), 1..3)
                .prop_map(|v| format!("({})", v.join(" or "))),
            inner.prop_map(|c| format!("not ({c})")),
        ]
    })
}

fn facts_strategy() -> impl Strategy<Value = (Vec<&'static str>, bool, bool, u8, u32, usize)> {
    (
        prop::collection::vec(value(), 6),
        any::<bool>(),
        any::<bool>(),
        0u8..3,
        0u32..4,
        0..=CLIENTS.len(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn index_agrees_with_naive(
        conds in prop::collection::vec(cond(), 1..40),
        probes in prop::collection::vec(facts_strategy(), 1..16),
    ) {
        let text: String = conds
            .iter()
            .enumerate()
            .map(|(n, c)| format!("rule r{n}:\n  when {c}\n  then allow\n"))
            .collect();
        let set = compile_one(&text).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(set.len(), conds.len());
        for (v, tls, authed, country, count, client) in probes {
            let sender = if v[1].is_empty() { "" } else { v[1] };
            let facts = Facts {
                client_ip: CLIENTS.get(client).map(|a| ip(a)),
                client_name: v[0],
                helo: v[2],
                sender,
                recipient: v[3],
                recipient_count: count,
                sasl_user: if authed { v[4] } else { "" },
                tls,
                country: [None, Code::parse("DE"), Code::parse("fr")][usize::from(country)],
                continent: Code::parse("EU"),
                unix_time: MONDAY_MIDNIGHT_UTC + u64::from(count) * 4 * 3600,
                ..Facts::default()
            };
            let fast = set.evaluate(&facts).map(|h| h.name);
            let naive = set.evaluate_naive(&facts).map(|h| h.name);
            prop_assert_eq!(fast, naive, "facts {:?}", facts);
        }
    }

    #[test]
    fn compile_never_panics_on_arbitrary_text(text in ".{0,400}") {
        let _ = compile_one(&text);
    }

    #[test]
    fn compile_never_panics_on_rule_shaped_text(
        words in prop::collection::vec(
            prop::sample::select(vec![
                "rule", "r:", "r", ":", "when", "then", "and", "or", "not", "(", ")", "[", "]",
                ",", "==", "!=", "<", ">=", "~", "in", "helo", "hour", "client_ip", "country",
                "\"x\"", "\"550 5.7.1 x\"", "\"(\"", "1", "10.0.0.0/8", "::1", "DE", "allow",
                "reject", "tempfail", "true", "\"", "\\", "#", "\n", "=", "!", "é",
            ]),
            0..60,
        ),
    ) {
        let text = words.join(" ");
        if let Err(diags) = compile_one(&text) {
            for d in diags {
                prop_assert!(d.origin.line >= 1 && d.origin.column >= 1);
                prop_assert!(!d.message.is_empty());
            }
        }
    }
}
