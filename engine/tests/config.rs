//! The config checker from the outside: defaults, the shipped example file,
//! every value form, and that one run reports every mistake with its key path.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mb_engine::config::{
    parse, AddressPattern, Checked, Config, Diagnostic, RuleAction, Severity, SmtpReply,
};
use mb_engine::limits;

const EXAMPLE: &str = include_str!("../../tuning/mbd.toml");

/// The config of a file that must be accepted without any diagnostic.
fn clean(text: &str) -> Config {
    let checked = parse(text);
    assert_eq!(
        checked.diagnostics,
        [],
        "unexpected diagnostics for:\n{text}"
    );
    checked.config.expect("no errors, so a config")
}

/// The diagnostics of a file, as `(severity, key, message)`.
fn diagnostics(text: &str) -> Vec<(Severity, String, String)> {
    let checked = parse(text);
    let failed = checked
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Error);
    assert_eq!(
        checked.config.is_none(),
        failed,
        "config is withheld exactly on errors"
    );
    checked
        .diagnostics
        .into_iter()
        .map(|d| (d.severity, d.key, d.message))
        .collect()
}

/// The single diagnostic of a file; panics when there are more or none.
fn only(text: &str) -> Diagnostic {
    let Checked { diagnostics, .. } = parse(text);
    assert_eq!(
        diagnostics.len(),
        1,
        "expected one diagnostic for:\n{text}\ngot {diagnostics:#?}"
    );
    diagnostics.into_iter().next().expect("one")
}

/// Asserts the file has exactly one error, at `key`, whose message contains
/// every one of `parts`.
fn assert_error(text: &str, key: &str, parts: &[&str]) {
    let d = only(text);
    assert_eq!(d.severity, Severity::Error, "{d}");
    assert_eq!(d.key, key, "{d}");
    for part in parts {
        assert!(d.message.contains(part), "`{}` lacks `{part}`", d.message);
    }
}

fn rule_file(section: &str, body: &str) -> String {
    format!("[[policy.{section}]]\n{body}\n")
}

// ----- defaults -----

#[test]
fn empty_file_gives_every_default() {
    let c = clean("");
    assert_eq!(c.daemon.state_dir, None);
    assert_eq!(c.daemon.control_socket, None);
    assert_eq!(c.daemon.shutdown_grace, Duration::from_secs(90));
    assert_eq!(c.shards.count, 0);
    assert_eq!(c.shards.cpus, Vec::<usize>::new());
    assert_eq!(c.shards.io_memory_bytes, 2 * 1024 * 1024);
    assert_eq!(c.milter.unix_socket, None);
    assert!(!c.milter.unix_socket_disabled);
    assert_eq!(c.milter.socket_mode, 0o770);
    assert_eq!(c.milter.socket_group, None);
    assert_eq!(c.milter.tcp, Vec::<SocketAddr>::new());
    assert_eq!(
        c.milter.connections_max_per_shard,
        limits::CONNECTIONS_PER_SHARD_DEFAULT
    );
    assert_eq!(c.milter.frame_bytes_max, limits::MILTER_FRAME_BYTES_DEFAULT);
    assert_eq!(c.milter.idle_timeout, Duration::from_secs(600));
    assert_eq!(c.milter.write_timeout, Duration::from_secs(30));
    assert_eq!(c.policy.message_bytes_max, limits::MESSAGE_BYTES_DEFAULT);
    assert_eq!(c.policy.header.as_deref(), Some("X-Mailborder"));
    assert_eq!(c.policy.sender, []);
    assert_eq!(c.policy.recipient, []);
    assert_eq!(c, Config::default());
}

#[test]
fn comments_and_empty_sections_give_the_defaults() {
    let text = "# nothing\n[daemon]\n[shards]\n[milter]\n[policy]\n";
    assert_eq!(clean(text), Config::default());
}

#[test]
fn example_file_restates_the_defaults() {
    assert_eq!(clean(EXAMPLE), Config::default());
}

/// `#key = value` lines in the example (no space after `#`) are meant to be
/// uncommented as they are; together they must still form a valid file.
#[test]
fn example_file_with_every_setting_uncommented_is_valid() {
    let uncommented: String = EXAMPLE
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if !rest.is_empty() && !rest.starts_with([' ', '#']) => rest,
            _ => line,
        })
        .flat_map(|line| [line, "\n"])
        .collect();
    let c = clean(&uncommented);
    assert_eq!(c.daemon.state_dir, Some(PathBuf::from("/run/mailborder")));
    assert_eq!(
        c.daemon.control_socket,
        Some(PathBuf::from("/run/mailborder/mbd.ctl"))
    );
    assert_eq!(
        c.milter.unix_socket,
        Some(PathBuf::from("/run/mailborder/mb-milter.sock"))
    );
    assert_eq!(c.milter.socket_group.as_deref(), Some("postfix"));
    let actions = |rules: &[mb_engine::config::AddressRule]| -> Vec<RuleAction> {
        rules.iter().map(|r| r.action).collect()
    };
    assert_eq!(
        actions(&c.policy.sender),
        [RuleAction::Allow, RuleAction::Reject]
    );
    assert_eq!(
        actions(&c.policy.recipient),
        [RuleAction::TempFail, RuleAction::ReplaceBody]
    );
    assert_eq!(c.policy.sender[1].origin, "policy.sender[1]");
    assert_eq!(
        c.policy.recipient[1].body.as_deref(),
        Some("Attachments to the printer address are removed.\r\n")
    );
}

// ----- collecting every problem -----

#[test]
fn five_mistakes_in_five_sections_are_all_reported_in_file_order() {
    let text = r#"
[daemon]
shutdown_grace = 90

[shards]
cpus = [0, 1, 1]

[milter]
tcp = ["127.0.0.1:9003", "localhost:9003"]

[policy]
header = "X Mailborder"

[[policy.sender]]
match = "@spam.example"
action = "bounce"
"#;
    let found = diagnostics(text);
    let keys: Vec<&str> = found.iter().map(|(_, k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "daemon.shutdown_grace",
            "shards.cpus[2]",
            "milter.tcp[1]",
            "policy.header",
            "policy.sender[0].action",
        ]
    );
    assert!(found.iter().all(|(s, _, _)| *s == Severity::Error));
    assert!(found[0].2.contains("needs a unit"), "{}", found[0].2);
    assert!(
        found[1].2.contains("CPU 1 is listed twice"),
        "{}",
        found[1].2
    );
    assert!(
        found[2].2.contains("not an IP address and port"),
        "{}",
        found[2].2
    );
    assert!(
        found[3].2.contains("not a header field name"),
        "{}",
        found[3].2
    );
    assert!(
        found[4].2.contains("unknown action `bounce`"),
        "{}",
        found[4].2
    );
}

#[test]
fn sections_are_reported_in_the_order_the_file_has_them() {
    let text = "[policy]\nheadr = 'x'\n[daemon]\nstate = '/x'\n";
    let keys: Vec<String> = diagnostics(text).into_iter().map(|(_, k, _)| k).collect();
    assert_eq!(keys, ["policy.headr", "daemon.state"]);
}

#[test]
fn warnings_do_not_block() {
    let checked = parse("[milter]\ntcp = \"192.0.2.10:9003\"\n");
    assert_eq!(checked.diagnostics.len(), 1);
    assert_eq!(checked.diagnostics[0].severity, Severity::Warning);
    assert_eq!(checked.diagnostics[0].key, "milter.tcp");
    assert!(checked.diagnostics[0].message.contains("unauthenticated"));
    let config = checked.config.expect("warnings never block");
    assert_eq!(
        config.milter.tcp,
        ["192.0.2.10:9003".parse::<SocketAddr>().unwrap()]
    );
}

// ----- syntax -----

#[test]
fn syntax_error_gives_line_and_column() {
    // The parser reads `90` as a number and stops at the `s`.
    let d = only("[daemon]\n# grace\nshutdown_grace = 90s\n");
    assert_eq!(d.severity, Severity::Error);
    assert_eq!(d.key, "");
    assert_eq!(d.position, Some((3, 20)));
    assert!(d.message.starts_with("TOML syntax: "), "{}", d.message);
    assert!(
        d.to_string()
            .starts_with("error at line 3, column 20: TOML syntax: "),
        "{d}"
    );
}

#[test]
fn syntax_error_column_counts_characters() {
    // "é" is two bytes; the column is in characters.
    let d = only("header = \"é\" x\n");
    assert_eq!(d.position, Some((1, 14)));
}

#[test]
fn duplicate_key_is_a_syntax_error_with_position() {
    let d = only("[milter]\nsocket_mode = \"0770\"\nsocket_mode = \"0700\"\n");
    assert_eq!(d.position, Some((3, 1)));
    assert!(d.message.contains("duplicate key"), "{}", d.message);
}

// ----- unknown keys and types -----

#[test]
fn typo_gets_a_suggestion() {
    assert_error(
        "[milter]\nsokcet = \"/x.sock\"\n",
        "milter.sokcet",
        &["unknown key `sokcet`", "did you mean `socket`?"],
    );
    assert_error(
        "[milter]\nidle_timout = \"5m\"\n",
        "milter.idle_timout",
        &["did you mean `idle_timeout`?"],
    );
    assert_error(
        "[milte]\n",
        "milte",
        &["unknown key `milte`; did you mean `milter`?"],
    );
    assert_error(
        &rule_file("sender", "match = '@a.example'\nacton = 'allow'"),
        "policy.sender[0].acton",
        &["did you mean `action`?"],
    );
}

#[test]
fn far_off_key_lists_the_known_ones() {
    assert_error(
        "[shards]\nthreads = 4\n",
        "shards.threads",
        &[
            "unknown key `threads`",
            "known keys here: count, cpus, io_memory",
        ],
    );
    assert_error(
        "greeting = 'hi'\n",
        "greeting",
        &["the sections are daemon, shards, milter, policy"],
    );
}

#[test]
fn key_in_the_wrong_section_names_the_right_one() {
    assert_error(
        "[daemon]\ntcp = '127.0.0.1:1'\n",
        "daemon.tcp",
        &["`tcp` belongs in `[milter]`"],
    );
    assert_error(
        "state_dir = '/x'\n",
        "state_dir",
        &["`state_dir` belongs in `[daemon]`"],
    );
    assert_error(
        "[policy]\naction = 'reject'\n",
        "policy.action",
        &["belongs in a rule, under `[[policy.sender]]`"],
    );
}

#[test]
fn wrong_type_names_the_type_and_an_example() {
    assert_error(
        "[shards]\ncount = \"4\"\n",
        "shards.count",
        &["expected an integer, e.g. `count = 4`, found a string"],
    );
    assert_error("[milter]\nsocket = 5\n", "milter.socket", &[
        "expected a string, e.g. `socket = \"/run/mailborder/mb-milter.sock\"`, found an integer",
    ]);
    assert_error(
        "daemon = 1\n",
        "daemon",
        &["expected a table, e.g. `[daemon]`, found an integer"],
    );
    assert_error(
        "[shards]\ncpus = 3\n",
        "shards.cpus",
        &["expected an array of CPU numbers, e.g. `cpus = [0, 1, 2, 3]`"],
    );
    assert_error(
        "[milter]\ntcp = 9003\n",
        "milter.tcp",
        &["expected a string or an array of strings"],
    );
    assert_error(
        "[milter]\ntcp = [9003]\n",
        "milter.tcp[0]",
        &["expected a string", "found an integer"],
    );
    assert_error(
        "[policy]\nmessage_bytes_max = true\n",
        "policy.message_bytes_max",
        &["expected a byte size, e.g. `message_bytes_max = \"50MiB\"`, found a boolean"],
    );
    assert_error(
        "[daemon]\nstate_dir = 1979-05-27\n",
        "daemon.state_dir",
        &["found a datetime"],
    );
}

#[test]
fn integer_ranges() {
    assert_error(
        "[shards]\ncount = 1025\n",
        "shards.count",
        &["between 0 and 1024, found 1025"],
    );
    assert_error(
        "[milter]\nconnections_max_per_shard = 0\n",
        "milter.connections_max_per_shard",
        &["between 1 and 1000000, found 0"],
    );
    assert_eq!(
        clean("[milter]\nconnections_max_per_shard = 1000000\n")
            .milter
            .connections_max_per_shard,
        1_000_000
    );
    assert_error(
        "[shards]\ncpus = [-1]\n",
        "shards.cpus[0]",
        &["between 0 and 8191, found -1"],
    );
}

// ----- durations and byte sizes -----

#[test]
fn every_duration_form() {
    let grace = |v: &str| {
        clean(&format!("[daemon]\nshutdown_grace = \"{v}\"\n"))
            .daemon
            .shutdown_grace
    };
    assert_eq!(grace("500ms"), Duration::from_millis(500));
    assert_eq!(grace("30s"), Duration::from_secs(30));
    assert_eq!(grace("90s"), Duration::from_secs(90));
    assert_eq!(grace("5m"), Duration::from_secs(300));
    assert_eq!(grace("1h"), Duration::from_secs(3600));
    assert_eq!(grace("0s"), Duration::ZERO);
    let idle = clean("[milter]\nidle_timeout = \"15m\"\nwrite_timeout = \"2s\"\n").milter;
    assert_eq!(
        (idle.idle_timeout, idle.write_timeout),
        (Duration::from_secs(900), Duration::from_secs(2))
    );
}

#[test]
fn durations_need_a_unit_and_a_range() {
    assert_error(
        "[daemon]\nshutdown_grace = 90\n",
        "daemon.shutdown_grace",
        &["a duration needs a unit", "shutdown_grace = \"90s\""],
    );
    assert_error(
        "[daemon]\nshutdown_grace = \"90\"\n",
        "daemon.shutdown_grace",
        &["`90` is not a duration", "e.g. \"90s\""],
    );
    assert_error(
        "[daemon]\nshutdown_grace = \"1.5m\"\n",
        "daemon.shutdown_grace",
        &["is not a duration"],
    );
    assert_error(
        "[daemon]\nshutdown_grace = \"2h\"\n",
        "daemon.shutdown_grace",
        &["between 0s and 1h, found 2h"],
    );
    assert_error(
        "[milter]\nidle_timeout = \"500ms\"\n",
        "milter.idle_timeout",
        &["between 1s and 1h, found 500ms"],
    );
    assert_error(
        "[milter]\nwrite_timeout = \"90m\"\n",
        "milter.write_timeout",
        &["between 1s and 10m, found 90m"],
    );
}

#[test]
fn every_byte_size_form() {
    let io = |v: &str| {
        clean(&format!("[shards]\nio_memory = {v}\n"))
            .shards
            .io_memory_bytes
    };
    assert_eq!(io("65536"), 65_536);
    assert_eq!(io("\"65536\""), 65_536);
    assert_eq!(io("\"256KiB\""), 256 * 1024);
    assert_eq!(io("\"50MiB\""), 50 * 1024 * 1024);
    assert_eq!(io("\"1GiB\""), 1024 * 1024 * 1024);
    assert_eq!(io("\"100KB\""), 100_000);
    assert_eq!(io("\"10MB\""), 10_000_000);
    assert_eq!(io("\"1GB\""), 1_000_000_000);
    assert_eq!(io("\"2 MiB\""), 2 * 1024 * 1024);
    let max = |v: &str| {
        clean(&format!("[policy]\nmessage_bytes_max = {v}\n"))
            .policy
            .message_bytes_max
    };
    assert_eq!(max("\"10GiB\""), 10 << 30);
    assert_eq!(max("1024"), 1024);
    let frame = clean("[milter]\nframe_bytes_max = \"16MiB\"\n")
        .milter
        .frame_bytes_max;
    assert_eq!(frame, limits::MILTER_FRAME_BYTES_CEILING);
}

#[test]
fn byte_sizes_are_checked() {
    assert_error(
        "[shards]\nio_memory = \"2mb\"\n",
        "shards.io_memory",
        &["`2mb` is not a byte size", "e.g. \"50MiB\""],
    );
    assert_error(
        "[shards]\nio_memory = -1\n",
        "shards.io_memory",
        &["must not be negative"],
    );
    assert_error(
        "[shards]\nio_memory = \"2GiB\"\n",
        "shards.io_memory",
        &["between 64KiB and 1GiB, found 2GiB"],
    );
    assert_error(
        "[policy]\nmessage_bytes_max = 1000\n",
        "policy.message_bytes_max",
        &["at least 1KiB, found 1000 bytes"],
    );
    assert_error(
        "[milter]\nframe_bytes_max = 65536\n",
        "milter.frame_bytes_max",
        &["between 65537 bytes and 16MiB, found 64KiB"],
    );
    assert_eq!(
        clean("[milter]\nframe_bytes_max = 65537\n")
            .milter
            .frame_bytes_max,
        65_537
    );
    assert_error(
        "[milter]\nframe_bytes_max = \"17MiB\"\n",
        "milter.frame_bytes_max",
        &["found 17MiB"],
    );
}

// ----- [shards] -----

#[test]
fn shards_count_and_cpus() {
    let s = clean("[shards]\ncount = 2\ncpus = [3, 1, 2]\n").shards;
    assert_eq!((s.count, s.cpus), (2, vec![3, 1, 2]));
    assert_error(
        "[shards]\ncount = 4\ncpus = [0, 1]\n",
        "shards.count",
        &["count = 4 but shards.cpus lists 2 CPUs"],
    );
    assert_error(
        "[shards]\ncpus = [5, 6, 5]\n",
        "shards.cpus[2]",
        &["CPU 5 is listed twice (first at shards.cpus[0])"],
    );
}

// ----- [milter] -----

#[test]
fn unix_socket_forms() {
    let m = clean("[milter]\nsocket = \"/run/mb/milter.sock\"\n").milter;
    assert_eq!(m.unix_socket, Some(PathBuf::from("/run/mb/milter.sock")));
    assert!(!m.unix_socket_disabled);
    let m = clean("[milter]\nsocket = \"unix:/run/mb/milter.sock\"\n").milter;
    assert_eq!(m.unix_socket, Some(PathBuf::from("/run/mb/milter.sock")));
    let m = clean("[milter]\nsocket = \"\"\ntcp = \"127.0.0.1:9003\"\n").milter;
    assert_eq!((m.unix_socket, m.unix_socket_disabled), (None, true));
    assert_eq!(m.tcp, ["127.0.0.1:9003".parse::<SocketAddr>().unwrap()]);
    assert_error(
        "[milter]\nsocket = \"mb.sock\"\n",
        "milter.socket",
        &["`mb.sock` is not an absolute path"],
    );
    assert_error(
        "[milter]\nsocket = \"unix:mb.sock\"\n",
        "milter.socket",
        &["not an absolute path"],
    );
    assert_error(
        "[milter]\nsocket = \"inet:127.0.0.1:9003\"\n",
        "milter.socket",
        &["put it in `milter.tcp`"],
    );
    let long = format!("[milter]\nsocket = \"/{}\"\n", "a".repeat(107));
    assert_error(
        &long,
        "milter.socket",
        &["at most 107 bytes", "this one is 108"],
    );
}

#[test]
fn no_listener_is_an_error() {
    assert_error(
        "[milter]\nsocket = \"\"\n",
        "milter.socket",
        &["no milter listener: set milter.socket or milter.tcp"],
    );
    assert_error(
        "[milter]\nsocket = \"\"\ntcp = []\n",
        "milter.socket",
        &["no milter listener"],
    );
    // An invalid tcp address is reported once, not again as "no listener".
    assert_error(
        "[milter]\nsocket = \"\"\ntcp = \"nowhere\"\n",
        "milter.tcp",
        &["not an IP address"],
    );
}

#[test]
fn tcp_forms() {
    let tcp = |v: &str| clean(&format!("[milter]\ntcp = {v}\n")).milter.tcp;
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert_eq!(tcp("\"127.0.0.1:9003\""), [addr("127.0.0.1:9003")]);
    assert_eq!(tcp("\"inet:127.0.0.1:9003\""), [addr("127.0.0.1:9003")]);
    assert_eq!(
        tcp("[\"[::1]:9003\", \"127.0.0.2:9004\"]"),
        [addr("[::1]:9003"), addr("127.0.0.2:9004")]
    );
    assert_error(
        "[milter]\ntcp = [\"127.0.0.1:9003\", \"inet:127.0.0.1:9003\"]\n",
        "milter.tcp[1]",
        &["127.0.0.1:9003 is listed twice"],
    );
    assert_error(
        "[milter]\ntcp = \"127.0.0.1:0\"\n",
        "milter.tcp",
        &["port 0"],
    );
    assert_error(
        "[milter]\ntcp = \"127.0.0.1\"\n",
        "milter.tcp",
        &["not an IP address and port"],
    );
    let d = only("[milter]\ntcp = [\"127.0.0.1:1\", \"[2001:db8::1]:9003\"]\n");
    assert_eq!(
        (d.severity, d.key.as_str()),
        (Severity::Warning, "milter.tcp[1]")
    );
    assert!(d.message.contains("trusted network"), "{}", d.message);
}

#[test]
fn socket_mode_and_group() {
    let mode = |v: &str| {
        clean(&format!("[milter]\nsocket_mode = \"{v}\"\n"))
            .milter
            .socket_mode
    };
    assert_eq!(mode("0770"), 0o770);
    assert_eq!(mode("660"), 0o660);
    assert_error(
        "[milter]\nsocket_mode = 770\n",
        "milter.socket_mode",
        &["octal string", "socket_mode = \"0770\""],
    );
    assert_error(
        "[milter]\nsocket_mode = \"0780\"\n",
        "milter.socket_mode",
        &["`0780` is not a permission mode"],
    );
    assert_error(
        "[milter]\nsocket_mode = \"1777\"\n",
        "milter.socket_mode",
        &["not a permission mode"],
    );
    let d = only("[milter]\nsocket_mode = \"0666\"\n");
    assert_eq!(
        (d.severity, d.key.as_str()),
        (Severity::Warning, "milter.socket_mode")
    );
    assert!(d.message.contains("every local user"), "{}", d.message);
    let m = clean("[milter]\nsocket_group = \"postfix\"\n").milter;
    assert_eq!(m.socket_group.as_deref(), Some("postfix"));
    assert_eq!(
        clean("[milter]\nsocket_group = \"\"\n").milter.socket_group,
        None
    );
    assert_error(
        "[milter]\nsocket_group = \"post fix\"\n",
        "milter.socket_group",
        &["not a group name"],
    );
}

// ----- [policy] -----

#[test]
fn header_forms() {
    assert_eq!(
        clean("[policy]\nheader = \"X-Scan\"\n")
            .policy
            .header
            .as_deref(),
        Some("X-Scan")
    );
    assert_eq!(clean("[policy]\nheader = \"\"\n").policy.header, None);
    assert_error(
        "[policy]\nheader = \"X-Scan:\"\n",
        "policy.header",
        &["not a header field name"],
    );
    assert_error(
        "[policy]\nheader = \"X-Scän\"\n",
        "policy.header",
        &["printable ASCII"],
    );
}

#[test]
fn every_pattern_form() {
    let text = rule_file(
        "sender",
        r#"match = ["<>", "@.Example.COM", "@example.org", "User@Example.net", "<Boss@Example.net>"]
action = "allow""#,
    );
    let rule = &clean(&text).policy.sender[0];
    assert_eq!(rule.origin, "policy.sender[0]");
    assert_eq!(
        rule.patterns,
        [
            AddressPattern::NullSender,
            AddressPattern::Subdomain("example.com".into()),
            AddressPattern::Domain("example.org".into()),
            AddressPattern::Exact("user@example.net".into()),
            AddressPattern::Exact("boss@example.net".into()),
        ]
    );
    let one = clean(&rule_file(
        "recipient",
        "match = \"@x.example\"\naction = \"discard\"",
    ));
    assert_eq!(
        one.policy.recipient[0].patterns,
        [AddressPattern::Domain("x.example".into())]
    );
}

#[test]
fn bad_patterns_are_explained() {
    let check = |pattern: &str, part: &str| {
        let text = rule_file(
            "sender",
            &format!("match = ['@ok.example', '{pattern}']\naction = 'reject'"),
        );
        assert_error(&text, "policy.sender[0].match[1]", &[part]);
    };
    check("", "it is empty");
    check("user @example.com", "contains a space");
    check("example.com", "missing `@`");
    check("a@b@example.com", "second `@`");
    check("@", "the domain after `@` is empty");
    check("@.", "the domain after `@` is empty");
    check("user@example..com", "empty label");
    check("<user@example.com", "unbalanced");
    check("<@example.com>", "only surround full addresses");
    assert_error(
        &rule_file("sender", "match = []\naction = 'reject'"),
        "policy.sender[0].match",
        &["needs at least one pattern"],
    );
    assert_error(
        &rule_file("recipient", "match = '<>'\naction = 'reject'"),
        "policy.recipient[0].match",
        &["null sender and never matches a recipient"],
    );
}

#[test]
fn duplicate_patterns_warn() {
    let text = rule_file(
        "sender",
        "match = ['@a.example', 'x@b.example', '@A.example']\naction = 'reject'",
    );
    let d = only(&text);
    assert_eq!(
        (d.severity, d.key.as_str()),
        (Severity::Warning, "policy.sender[0].match[2]")
    );
    assert!(
        d.message.contains(
            "`@a.example` is listed twice in this rule (first at policy.sender[0].match[0])"
        ),
        "{}",
        d.message
    );
    let rule = &parse(&text).config.expect("warning only").policy.sender[0];
    assert_eq!(rule.patterns.len(), 2);
}

#[test]
fn every_action() {
    for (name, action) in RuleAction::ALL {
        let extra = if action == RuleAction::ReplaceBody {
            "\nbody = 'gone'"
        } else {
            ""
        };
        let text = rule_file(
            "recipient",
            &format!("match = 'a@b.example'\naction = '{name}'{extra}"),
        );
        assert_eq!(clean(&text).policy.recipient[0].action, action, "{name}");
    }
    assert_error(
        &rule_file("sender", "match = '@a.example'\naction = 'Rejekt'"),
        "policy.sender[0].action",
        &[
            "unknown action `Rejekt`; did you mean `reject`?",
            "(actions: allow, reject, tempfail, discard, quarantine, replace-body)",
        ],
    );
}

#[test]
fn rules_need_match_and_action() {
    let found = diagnostics(&rule_file("sender", "reply = '550 5.7.1 No'"));
    let keys: Vec<&str> = found.iter().map(|(_, k, _)| k.as_str()).collect();
    assert_eq!(keys, ["policy.sender[0].match", "policy.sender[0].action"]);
    assert!(found[0].2.contains("missing key `match`"));
    assert!(found[1]
        .2
        .contains("missing key `action`: one of allow, reject"));
    assert_error("[policy.sender]\nmatch = '@a.example'\naction = 'reject'\n", "policy.sender", &[
        "expected an array of tables (note the double brackets), e.g. `[[policy.sender]]`, found a table",
    ]);
    // The second rule's origin counts from zero in file order.
    let text = format!(
        "{}{}",
        rule_file("sender", "match = '@a.example'\naction = 'allow'"),
        rule_file("sender", "match = '@b.example'\naction = 'nope'")
    );
    assert_error(&text, "policy.sender[1].action", &["unknown action `nope`"]);
}

#[test]
fn reply_validation() {
    let reply = |action: &str, reply: &str| {
        rule_file(
            "sender",
            &format!("match = '@a.example'\naction = '{action}'\nreply = '{reply}'"),
        )
    };
    let rule = clean(&reply("reject", "550 5.7.1 Sender blocked"))
        .policy
        .sender
        .remove(0);
    assert_eq!(
        rule.reply,
        Some(SmtpReply {
            code: 550,
            text: "5.7.1 Sender blocked".into()
        })
    );
    let rule = clean(&reply("tempfail", "451 4.7.1 Try later"))
        .policy
        .sender
        .remove(0);
    assert_eq!(rule.reply.map(|r| r.code), Some(451));
    let key = "policy.sender[0].reply";
    assert_error(
        &reply("reject", "451 4.7.1 Later"),
        key,
        &["action reject needs a 5xx reply", "action = \"tempfail\""],
    );
    assert_error(
        &reply("tempfail", "550 5.7.1 No"),
        key,
        &["action tempfail needs a 4xx reply"],
    );
    assert_error(
        &reply("reject", "550 4.7.1 No"),
        key,
        &["must have the class of the reply code"],
    );
    assert_error(
        &reply("reject", "550 5.7.1"),
        key,
        &["text must follow the enhanced status code"],
    );
    assert_error(&reply("reject", "550 5.7.1 "), key, &["text must follow"]);
    assert_error(
        &reply("reject", "550 Blocked"),
        key,
        &["an enhanced status code must follow the code"],
    );
    assert_error(
        &reply("reject", "250 2.0.0 Ok"),
        key,
        &["must start with a 4xx or 5xx code"],
    );
    assert_error(
        &reply("reject", "550"),
        key,
        &["an enhanced status code and text must follow"],
    );
    assert_error(
        &reply("reject", "550-5.7.1 No"),
        key,
        &["one space after the code"],
    );
    assert_error(
        &reply("allow", "550 5.7.1 No"),
        key,
        &["only used by the actions reject and tempfail, not allow"],
    );
    let crlf = rule_file(
        "sender",
        "match = '@a.example'\naction = 'reject'\nreply = \"550 5.7.1 a\\r\\nb\"",
    );
    assert_error(&crlf, key, &["one line (no CR or LF)"]);
}

#[test]
fn body_is_required_for_replace_body_only() {
    let rule = |action: &str, body: &str| {
        rule_file(
            "recipient",
            &format!("match = 'a@b.example'\naction = '{action}'{body}"),
        )
    };
    let text = rule(
        "replace-body",
        "\nbody = \"\"\"\nline one\nline two\n\"\"\"",
    );
    let body = clean(&text).policy.recipient.remove(0).body;
    assert_eq!(body.as_deref(), Some("line one\r\nline two\r\n"));
    assert_error(
        &rule("replace-body", ""),
        "policy.recipient[0].body",
        &["missing key `body`: action replace-body"],
    );
    assert_error(
        &rule("discard", "\nbody = 'x'"),
        "policy.recipient[0].body",
        &["only used by the action replace-body, not discard"],
    );
}

#[test]
fn a_typo_of_a_required_key_is_reported_once() {
    let text = rule_file(
        "recipient",
        "match = 'a@b.example'\naction = 'replace-body'\nbdy = 'x'",
    );
    assert_error(
        &text,
        "policy.recipient[0].bdy",
        &["unknown key `bdy`; did you mean `body`?"],
    );
    let text = rule_file("sender", "mach = 'a@b.example'\naction = 'allow'");
    assert_error(&text, "policy.sender[0].mach", &["did you mean `match`?"]);
}

// ----- never panics -----

mod arbitrary {
    use mb_engine::config::{parse, parse_bytes, parse_duration, AddressPattern, SmtpReply};
    use proptest::prelude::*;

    /// Values of every TOML type, some of them plausible for our keys.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            "[0-9]{1,6}(ms|s|m|h|KiB|MiB|GB|B)?".prop_map(|s| format!("\"{s}\"")),
            "[ -~]{0,12}".prop_map(|s| format!("{s:?}")),
            Just("\"\"".to_owned()),
            Just("true".to_owned()),
            Just("[1, 2, 2]".to_owned()),
            Just("[\"127.0.0.1:9003\", \"@a.example\"]".to_owned()),
            Just("{ x = 1 }".to_owned()),
        ]
    }

    fn key() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "state_dir",
            "control_socket",
            "shutdown_grace",
            "count",
            "cpus",
            "io_memory",
            "socket",
            "socket_mode",
            "socket_group",
            "tcp",
            "connections_max_per_shard",
            "frame_bytes_max",
            "idle_timeout",
            "write_timeout",
            "message_bytes_max",
            "header",
            "match",
            "action",
            "reply",
            "body",
            "sokcet",
        ])
    }

    fn section() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "[daemon]",
            "[shards]",
            "[milter]",
            "[policy]",
            "[[policy.sender]]",
            "[[policy.recipient]]",
            "[other]",
        ])
    }

    proptest! {
        #[test]
        fn any_text_is_checked_without_panic(text in "\\PC{0,200}") {
            let checked = parse(&text);
            let failed = checked.diagnostics.iter().any(|d| d.severity == mb_engine::config::Severity::Error);
            prop_assert_eq!(checked.config.is_none(), failed);
        }

        #[test]
        fn any_value_is_checked_without_panic(text in "\\PC{0,40}") {
            let _ = parse_duration(&text);
            let _ = parse_bytes(&text);
            let _ = AddressPattern::parse(&text);
            let _ = SmtpReply::parse(&text);
        }

        /// Files made of our own sections and keys with values of every type:
        /// mostly valid TOML, so the checker itself is exercised.
        #[test]
        fn plausible_files_are_checked_without_panic(
            body in prop::collection::vec((section(), prop::collection::vec((key(), value()), 0..4)), 0..6)
        ) {
            let mut text = String::new();
            for (section, entries) in body {
                text.push_str(section);
                text.push('\n');
                for (key, value) in entries {
                    text.push_str(&format!("{key} = {value}\n"));
                }
            }
            let checked = parse(&text);
            let failed = checked.diagnostics.iter().any(|d| d.severity == mb_engine::config::Severity::Error);
            prop_assert_eq!(checked.config.is_none(), failed, "{}", text);
        }
    }
}

#[test]
fn eval_section_is_checked() {
    let c = clean(
        "[eval]\npolicy = \"/etc/mailborder/policy.toml\"\nratelimit_slots = 4096\n\
         policyd_socket = \"\"\npolicyd_tcp = [\"127.0.0.1:9002\"]\n",
    );
    assert_eq!(
        c.eval.policy.as_deref(),
        Some(std::path::Path::new("/etc/mailborder/policy.toml"))
    );
    assert_eq!(c.eval.ratelimit_slots, 4096);
    assert!(c.eval.policyd_socket_disabled);
    assert_eq!(c.eval.policyd_tcp, ["127.0.0.1:9002".parse().unwrap()]);
    let d = Config::default();
    assert_eq!((d.eval.policy, d.eval.ratelimit_slots), (None, 262_144));
    assert_error(
        "[eval]\nratelimit_slots = 5000\n",
        "eval.ratelimit_slots",
        &["power of two", "8192"],
    );
    assert_error(
        "[eval]\nratelimit_slots = 10\n",
        "eval.ratelimit_slots",
        &["between"],
    );
    assert_error(
        "[eval]\npolicyd_sockte = \"/x\"\n",
        "eval.policyd_sockte",
        &["did you mean `policyd_socket`"],
    );
}

#[test]
fn eval_redis_keys_are_checked() {
    let d = Config::default();
    assert_eq!(d.eval.redis, None);
    assert_eq!(d.eval.redis_sync_interval, Duration::from_secs(1));
    assert_eq!(d.eval.redis_key_prefix, "mb:rl:");
    assert_eq!(d.eval.ratelimit_seed, 0);
    let c = clean(
        "[eval]\nredis = \"redis://:pw@10.0.0.5:6380/2\"\nredis_sync_interval = \"250ms\"\n\
         redis_key_prefix = \"acme:rl:\"\nratelimit_seed = -5\n",
    );
    assert_eq!(c.eval.redis.as_deref(), Some("redis://:pw@10.0.0.5:6380/2"));
    assert_eq!(c.eval.redis_sync_interval, Duration::from_millis(250));
    assert_eq!(c.eval.redis_key_prefix, "acme:rl:");
    assert_eq!(c.eval.ratelimit_seed, (-5i64) as u64);
    let c = clean("[eval]\nredis = \"unix:///run/redis/redis.sock\"\nratelimit_seed = 7\n");
    assert_eq!(c.eval.ratelimit_seed, 7);
    // Without a seed of its own a cluster shares the public one: a warning.
    let ds = diagnostics("[eval]\nredis = \"redis://127.0.0.1\"\n");
    assert_eq!(ds.len(), 1, "{ds:?}");
    assert_eq!(ds[0].0, Severity::Warning);
    assert_eq!(ds[0].1, "eval.ratelimit_seed");
    assert_error(
        "[eval]\nredis = \"rediss://h:6379\"\nratelimit_seed = 1\n",
        "eval.redis",
        &["TLS"],
    );
    assert_error(
        "[eval]\nredis = \"127.0.0.1:6379\"\nratelimit_seed = 1\n",
        "eval.redis",
        &["not a URL", "redis://127.0.0.1:6379/0"],
    );
    assert_error(
        "[eval]\nredis = \"http://h\"\nratelimit_seed = 1\n",
        "eval.redis",
        &["unknown scheme"],
    );
    assert_error(
        "[eval]\nredis_sync_interval = \"10ms\"\n",
        "eval.redis_sync_interval",
        &["between 100ms and 1m"],
    );
    assert_error(
        "[eval]\nredis_sync_interval = 5\n",
        "eval.redis_sync_interval",
        &["unit"],
    );
    assert_error(
        "[eval]\nredis_key_prefix = \"a b\"\n",
        "eval.redis_key_prefix",
        &["without spaces"],
    );
    assert_error(
        "[eval]\nratelimit_seed = \"x\"\n",
        "eval.ratelimit_seed",
        &["integer"],
    );
    assert_error(
        "[eval]\nredis_sync_intervall = \"1s\"\n",
        "eval.redis_sync_intervall",
        &["did you mean `redis_sync_interval`"],
    );
}
