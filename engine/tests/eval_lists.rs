//! Sender lists and the recipient table: parsing (every error with its exact
//! line and column), matching order, case folding, CIDR longest prefix,
//! recipient validation, the shipped example files, and no panic on arbitrary
//! input.

use std::net::IpAddr;
use std::sync::Arc;

use mb_engine::eval::lists::{
    parse_entry, parse_list, parse_list_with, Entry, IpNet, List, ListLimits,
};
use mb_engine::eval::recipients::{Match, RecipientCheck, Recipients};
use mb_engine::eval::{Facts, Origin};
use proptest::prelude::*;

fn origin(line: u32) -> Origin {
    Origin {
        file: Arc::from("t.list"),
        line,
        column: 1,
    }
}

fn list(text: &str) -> List {
    let (entries, errors) = parse_list("t.list", text);
    assert!(errors.is_empty(), "{errors:?}");
    entries.into_iter().collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// (line, column, message fragment) of each diagnostic.
fn errors_of(text: &str) -> Vec<(u32, u32, String)> {
    let (_, errors) = parse_list("bad.list", text);
    for e in &errors {
        assert_eq!(&*e.origin.file, "bad.list");
    }
    errors
        .into_iter()
        .map(|e| (e.origin.line, e.origin.column, e.message))
        .collect()
}

#[test]
fn entries_parse_to_their_kind_normalised() {
    let cases = [
        (
            "User@Example.COM",
            Entry::Address("user@example.com".into()),
        ),
        ("@Example.com", Entry::Domain("example.com".into())),
        ("@.example.com", Entry::Subdomain("example.com".into())),
        (".Example.com", Entry::Subdomain("example.com".into())),
        ("<>", Entry::NullSender),
        (
            "HELO:Mail.Example.com",
            Entry::Helo("mail.example.com".into()),
        ),
        (
            "helo:.example.com",
            Entry::HeloSubdomain("example.com".into()),
        ),
        ("helo:[192.0.2.1]", Entry::Helo("[192.0.2.1]".into())),
        (
            "user#tag@example.com",
            Entry::Address("user#tag@example.com".into()),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(parse_entry(text), Ok(want.clone()), "{text}");
        // Display writes list syntax that parses back to the same entry.
        assert_eq!(parse_entry(&want.to_string()), Ok(want), "{text}");
    }
    let net = |s: &str| match parse_entry(s) {
        Ok(Entry::Net(n)) => n.to_string(),
        other => panic!("{s}: {other:?}"),
    };
    assert_eq!(net("192.0.2.1"), "192.0.2.1/32");
    assert_eq!(net("192.0.2.0/24"), "192.0.2.0/24");
    assert_eq!(net("2001:db8::/32"), "2001:db8::/32");
    assert_eq!(net("2001:DB8::1"), "2001:db8::1/128");
    assert_eq!(net("dead:beef::/32"), "dead:beef::/32");
    assert_eq!(net("::ffff:192.0.2.0/120"), "192.0.2.0/24");
    assert_eq!(net("0.0.0.0/0"), "0.0.0.0/0");
}

#[test]
fn host_bits_error_names_the_network() {
    let e = parse_entry("192.0.2.1/24").unwrap_err();
    assert!(e.contains("host bits") && e.contains("192.0.2.0/24"), "{e}");
    let e = parse_entry("2001:db8::1/32").unwrap_err();
    assert!(e.contains("2001:db8::/32"), "{e}");
    assert!(IpNet::new(ip("192.0.2.1"), 24).is_none());
    let n = IpNet::new(ip("192.0.2.0"), 24).unwrap();
    assert!(n.contains(ip("192.0.2.255")) && !n.contains(ip("192.0.3.0")));
    assert!(n.contains(ip("::ffff:192.0.2.7")));
}

#[test]
fn every_error_of_a_file_with_line_and_column() {
    let text = "\
# comment
user@example.com
  192.0.2.1/24   # host bits
10.0.0.0/33
example.com
bogus:thing
user@exa mple.com
@exa!mple.com
 @.example..com
helo:
user@@example.com
\t@
300.1.2.3
";
    let got = errors_of(text);
    let positions: Vec<(u32, u32)> = got.iter().map(|(l, c, _)| (*l, *c)).collect();
    assert_eq!(
        positions,
        vec![
            (3, 3),  // whole CIDR
            (4, 10), // the prefix length
            (5, 1),  // bare word
            (6, 1),  // unknown prefix
            (7, 10), // second token
            (8, 5),  // the `!`
            (9, 12), // empty label
            (10, 6), // name missing after helo:
            (11, 5), // `@` in the local part
            (12, 3), // domain missing after `@` (tab is one column)
            (13, 1), // not an address
        ],
        "{got:#?}"
    );
    let message = |line: u32| &got.iter().find(|(l, _, _)| *l == line).unwrap().2;
    assert!(message(3).contains("192.0.2.0/24"));
    assert!(message(4).contains("0 to 32"));
    assert!(message(5).contains("@example.com") && message(5).contains(".example.com"));
    assert!(message(6).contains("bogus:") && message(6).contains("helo:"));
    assert!(message(7).contains("mple.com"));
    assert!(message(8).contains('!'));
    assert!(message(13).contains("300.1.2.3"));
}

#[test]
fn diagnostics_display_as_file_line_column() {
    let (_, errors) = parse_list("lists/block.list", "ok@example.com\n\n  10.1.2.3/8\n");
    assert_eq!(errors.len(), 1);
    let text = errors[0].to_string();
    assert!(text.starts_with("lists/block.list:3:3: error: "), "{text}");
}

#[test]
fn comments_blank_lines_and_whitespace() {
    let (entries, errors) = parse_list(
        "t",
        "\u{feff}# header\n\n   \n\tuser@example.com\t# trailing\r\n#@example.org\n.example.net#x\n",
    );
    let got: Vec<(String, u32, u32)> = entries
        .iter()
        .map(|(e, o)| (e.to_string(), o.line, o.column))
        .collect();
    assert_eq!(got, vec![("user@example.com".to_owned(), 4, 2)]);
    // A `#` not after whitespace is part of the entry (legal in addresses), so
    // here it is an invalid domain character.
    let got: Vec<(u32, u32)> = errors
        .iter()
        .map(|e| (e.origin.line, e.origin.column))
        .collect();
    assert_eq!(got, vec![(6, 13)], "{errors:?}");
}

#[test]
fn limits_line_entry_and_count() {
    let limits = ListLimits {
        line_bytes: 40,
        entry_bytes: 20,
        entries: 2,
    };
    let long_line = format!("a@b.com {}", "#".repeat(40));
    let long_entry = format!("{}@example.com", "x".repeat(10));
    let text =
        format!("{long_line}\n{long_entry}\na@example.com\nb@example.com\nc@example.com\nbad\n");
    let (entries, errors) = parse_list_with("t", &text, &limits);
    let got: Vec<(u32, u32)> = errors
        .iter()
        .map(|e| (e.origin.line, e.origin.column))
        .collect();
    assert_eq!(got, vec![(1, 41), (2, 21), (5, 1)], "{errors:?}");
    assert!(errors[0].message.contains("limit is 40"));
    assert!(errors[1].message.contains("limit is 20"));
    assert!(errors[2].message.contains("too many entries"));
    assert_eq!(entries.len(), 2);
}

#[test]
fn column_counts_characters_not_bytes() {
    let (_, errors) = parse_list("t", "ü@exämple.com x\n");
    assert_eq!((errors[0].origin.line, errors[0].origin.column), (1, 15));
}

#[test]
fn match_order_most_specific_first() {
    let l = list(
        "\
.example.com
@example.com
boss@example.com
.sub.example.com
<>
192.0.2.0/24
192.0.2.128/25
2001:db8::/32
2001:db8:1::/48
helo:mail.example.org
helo:.example.org
helo:.deep.example.org
",
    );
    let hit = |sender: &str, client: Option<&str>, helo: &str| {
        let facts = Facts {
            sender,
            client_ip: client.map(ip),
            helo,
            ..Facts::default()
        };
        l.matches(&facts)
            .map(|h| (h.entry.to_string(), h.origin.line))
    };
    let s = |x: &str| Some((x.to_owned(), 0));
    let strip = |h: Option<(String, u32)>| h.map(|(e, _)| (e, 0));
    assert_eq!(
        strip(hit("Boss@EXAMPLE.com", None, "")),
        s("boss@example.com")
    );
    assert_eq!(strip(hit("other@example.com", None, "")), s("@example.com"));
    assert_eq!(
        strip(hit("x@a.sub.example.com", None, "")),
        s(".sub.example.com")
    );
    assert_eq!(
        strip(hit("x@other.example.com", None, "")),
        s(".example.com")
    );
    assert_eq!(strip(hit("x@example.net", None, "")), None);
    assert_eq!(strip(hit("x@notexample.com", None, "")), None);
    assert_eq!(strip(hit("", None, "")), s("<>"));
    // Sender beats IP, IP beats HELO.
    assert_eq!(
        strip(hit(
            "boss@example.com",
            Some("192.0.2.1"),
            "mail.example.org"
        )),
        s("boss@example.com")
    );
    assert_eq!(
        strip(hit("a@b.test", Some("192.0.2.1"), "mail.example.org")),
        s("192.0.2.0/24")
    );
    assert_eq!(
        strip(hit("a@b.test", Some("192.0.2.200"), "")),
        s("192.0.2.128/25")
    );
    assert_eq!(
        strip(hit("a@b.test", Some("::ffff:192.0.2.200"), "")),
        s("192.0.2.128/25")
    );
    assert_eq!(
        strip(hit("a@b.test", Some("2001:db8:1::9"), "")),
        s("2001:db8:1::/48")
    );
    assert_eq!(
        strip(hit("a@b.test", Some("2001:db8:2::9"), "")),
        s("2001:db8::/32")
    );
    assert_eq!(strip(hit("a@b.test", Some("2001:db9::1"), "")), None);
    assert_eq!(
        strip(hit("a@b.test", Some("198.51.100.1"), "Mail.Example.org.")),
        s("helo:mail.example.org")
    );
    assert_eq!(
        strip(hit("a@b.test", None, "x.deep.example.org")),
        s("helo:.deep.example.org")
    );
    assert_eq!(
        strip(hit("a@b.test", None, "example.org")),
        s("helo:.example.org")
    );
    assert_eq!(strip(hit("a@b.test", None, "badexample.org")), None);
    // The hit carries the origin of the entry.
    assert_eq!(hit("x@example.com", None, "").map(|h| h.1), Some(2));
}

#[test]
fn duplicates_keep_the_first_origin() {
    let mut l = List::new();
    l.push(Entry::Domain("example.com".into()), origin(1));
    l.push(Entry::Domain("EXAMPLE.com".to_ascii_lowercase()), origin(2));
    l.push(
        Entry::Net(IpNet::new(ip("10.0.0.0"), 8).unwrap()),
        origin(3),
    );
    l.push(
        Entry::Net(IpNet::new(ip("10.0.0.0"), 8).unwrap()),
        origin(4),
    );
    l.push(
        Entry::Net(IpNet::new(ip("10.0.0.0"), 16).unwrap()),
        origin(5),
    );
    assert_eq!((l.len(), l.duplicates()), (3, 2));
    let hit = l.match_sender("a@example.com").unwrap();
    assert_eq!(hit.origin.line, 1);
    assert_eq!(l.match_ip(ip("10.0.1.1")).unwrap().origin.line, 5);
    assert_eq!(l.match_ip(ip("10.1.1.1")).unwrap().origin.line, 3);
    assert!(List::new().is_empty());
}

#[test]
fn large_list_finds_every_kind() {
    let mut text = String::new();
    for i in 0..20_000u32 {
        text.push_str(&format!(
            "user{i}@example.com\n@d{i}.test\n10.{}.{}.0/24\n",
            i >> 8,
            i & 255
        ));
    }
    let l = list(&text);
    assert_eq!(l.len(), 60_000);
    for i in (0..20_000u32).step_by(997) {
        assert!(l.match_sender(&format!("USER{i}@example.com")).is_some());
        assert!(l.match_sender(&format!("x@D{i}.test")).is_some());
        assert!(l
            .match_ip(ip(&format!("10.{}.{}.77", i >> 8, i & 255)))
            .is_some());
    }
    assert!(l.match_sender("user20000@example.com").is_none());
    assert!(l.match_ip(ip("11.0.0.1")).is_none());
}

// ---------------------------------------------------------------------------
// Recipients.

fn recipients() -> Recipients {
    let mut r = Recipients::new("+-");
    let errors = r.parse_file(
        "rcpt.list",
        "\
alice@example.com
Bob@Example.com
sales-*@example.com
*-team@example.com
sales-eu-*@example.com
*@catch.example
@empty.example
",
    );
    assert!(errors.is_empty(), "{errors:?}");
    r.add_domain("open.example", false);
    r
}

#[test]
fn recipients_exact_extension_wildcard_catch_all() {
    let r = recipients();
    assert_eq!((r.len(), r.domains()), (2, 4));
    use RecipientCheck::*;
    assert_eq!(
        r.check("alice@example.com"),
        Valid(Match::Exact("alice@example.com"))
    );
    assert_eq!(
        r.check("ALICE@EXAMPLE.COM"),
        Valid(Match::Exact("alice@example.com"))
    );
    assert_eq!(
        r.check("bob@example.com"),
        Valid(Match::Exact("bob@example.com"))
    );
    assert_eq!(
        r.check("alice+news@example.com"),
        Valid(Match::Extension("alice@example.com"))
    );
    assert_eq!(
        r.check("alice-x@example.com"),
        Valid(Match::Extension("alice@example.com"))
    );
    assert_eq!(
        r.check("sales-us@example.com"),
        Valid(Match::Wildcard("sales-*@example.com"))
    );
    assert_eq!(
        r.check("sales-eu-de@example.com"),
        Valid(Match::Wildcard("sales-eu-*@example.com"))
    );
    assert_eq!(
        r.check("ops-team@example.com"),
        Valid(Match::Wildcard("*-team@example.com"))
    );
    assert_eq!(
        r.check("anyone@catch.example"),
        Valid(Match::CatchAll("*@catch.example"))
    );
    assert_eq!(
        r.check("anyone@Open.Example"),
        Valid(Match::DomainNotValidated("open.example"))
    );
    assert_eq!(
        r.check("carol@example.com"),
        Unknown {
            domain: "example.com"
        }
    );
    assert_eq!(
        r.check("+alice@example.com"),
        Unknown {
            domain: "example.com"
        }
    );
    assert_eq!(
        r.check("@example.com"),
        Unknown {
            domain: "example.com"
        }
    );
    assert_eq!(
        r.check("x@empty.example"),
        Unknown {
            domain: "empty.example"
        }
    );
    assert_eq!(r.check("alice@example.org"), NotOurDomain);
    assert_eq!(r.check("alice@sub.example.com"), NotOurDomain);
    assert_eq!(r.check("postmaster"), NotOurDomain);
    assert_eq!(Match::Wildcard("a*@b").entry(), "a*@b");
}

#[test]
fn recipients_without_delimiters_do_not_strip_extensions() {
    let mut r = Recipients::new("");
    r.add("alice@example.com").unwrap();
    assert_eq!(
        r.check("alice+x@example.com"),
        RecipientCheck::Unknown {
            domain: "example.com"
        }
    );
    // An address with the delimiter in it can be listed itself.
    r.add("alice+x@example.com").unwrap();
    assert!(matches!(
        r.check("alice+x@example.com"),
        RecipientCheck::Valid(Match::Exact(_))
    ));
}

#[test]
fn recipient_add_errors_and_file_positions() {
    let mut r = Recipients::new("+");
    assert!(r.add("nobody").unwrap_err().contains("user@domain"));
    assert!(r.add("a**@example.com").unwrap_err().contains("one `*`"));
    assert!(r.add("a b@example.com").is_err());
    let errors = r.parse_file(
        "r.list",
        "ok@example.com\nnobody\n  a*b*@example.com\nx@exa_mple..com\n",
    );
    let got: Vec<(u32, u32)> = errors
        .iter()
        .map(|e| (e.origin.line, e.origin.column))
        .collect();
    assert_eq!(got, vec![(2, 1), (3, 6), (4, 12)], "{errors:?}");
    assert_eq!(r.len(), 1);
}

#[test]
fn million_recipients_are_all_found() {
    let mut r = Recipients::new("+");
    for i in 0..1_000_000u32 {
        r.add(&format!("user{i}@d{}.example", i % 100)).unwrap();
    }
    assert_eq!((r.len(), r.domains()), (1_000_000, 100));
    for i in (0..1_000_000u32).step_by(9973) {
        let a = format!("user{i}@d{}.example", i % 100);
        assert_eq!(r.check(&a), RecipientCheck::Valid(Match::Exact(&a)));
        let tagged = format!("USER{i}+x@D{}.example", i % 100);
        assert_eq!(
            r.check(&tagged),
            RecipientCheck::Valid(Match::Extension(&a))
        );
    }
    assert_eq!(
        r.check("user1@d2.example"),
        RecipientCheck::Unknown {
            domain: "d2.example"
        }
    );
    // Arena + table: well under 100 bytes an address.
    assert!(r.heap_bytes() < 100 * 1_000_000, "{}", r.heap_bytes());
}

// ---------------------------------------------------------------------------
// Shipped examples and robustness.

#[test]
fn shipped_example_lists_parse_cleanly() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tuning/policy");
    for name in ["sender-block.list", "sender-allow.list"] {
        let text = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
        let (entries, errors) = parse_list(name, &text);
        assert!(errors.is_empty(), "{name}: {errors:?}");
        assert!(entries.len() >= 5, "{name}");
    }
    let text = std::fs::read_to_string(format!("{dir}/recipients-example.com.list")).unwrap();
    let mut r = Recipients::new("+");
    let errors = r.parse_file("recipients-example.com.list", &text);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(r.len() >= 3);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_list_text_never_panics(text in "(?s).{0,400}") {
        let (entries, _) = parse_list("p", &text);
        let l: List = entries.into_iter().collect();
        let _ = l.matches(&Facts { sender: &text, helo: &text, ..Facts::default() });
        let mut r = Recipients::new("+-");
        let _ = r.parse_file("p", &text);
        let _ = r.check(&text);
    }

    #[test]
    fn list_alphabet_never_panics(text in "[a-z0-9@.:/<>#+*\\[\\] \t\n-]{0,300}") {
        let (entries, errors) = parse_list("p", &text);
        for e in &errors {
            prop_assert!(e.origin.line >= 1 && e.origin.column >= 1);
        }
        for (e, _) in &entries {
            // Every accepted entry round-trips through its Display.
            prop_assert_eq!(parse_entry(&e.to_string()), Ok(e.clone()));
        }
        let mut r = Recipients::new("+-");
        let _ = r.parse_file("p", &text);
    }
}

#[test]
fn docs_error_example_is_what_the_parser_says() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/LISTS.md")).unwrap();
    let after = &doc[doc.find("Given `block.list`").unwrap()..];
    let mut blocks = after
        .split("```text\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap());
    let (input, output) = (blocks.next().unwrap(), blocks.next().unwrap());
    let (_, errors) = parse_list("block.list", input);
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let want: Vec<&str> = output.lines().collect();
    assert_eq!(got, want);
}
