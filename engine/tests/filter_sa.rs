//! The SpamAssassin `.cf` loader (`filter::sa`) on the stock rule set
//! (`shared/corpus/rules/spamassassin`, SpamAssassin 4.0.1 as Debian ships it)
//! and on small inline fixtures.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use mb_engine::filter::sa::{
    self, load, Class, EvalClass, EvalTarget, HeaderForm, Kind, Options, SkipReason, Source, Status,
};
use proptest::prelude::*;

const STOCK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/corpus/rules/spamassassin"
);

fn stock_texts() -> Vec<(String, String)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(STOCK)
        .expect("stock rule directory (shared/corpus beside the repository)")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cf"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, sa::decode(&std::fs::read(p).expect("read .cf")))
        })
        .collect()
}

fn load_texts(texts: &[(String, String)], options: &Options) -> sa::RuleSet {
    let sources: Vec<Source<'_>> = texts
        .iter()
        .map(|(f, t)| Source { file: f, text: t })
        .collect();
    load(&sources, options)
}

fn one(text: &str) -> sa::RuleSet {
    load(&[Source { file: "t.cf", text }], &Options::default())
}

const RULE_DIRECTIVES: &[&str] = &[
    "header",
    "body",
    "rawbody",
    "full",
    "uri",
    "mimeheader",
    "meta",
    "askdns",
    "urirhssub",
    "uridnssub",
    "urirhsbl",
    "uridnsbl",
];

/// An independent, simple scan: (directive, name) of every rule line, and
/// every `score` line's name, ignoring comments and `lang` lines.
fn scan(texts: &[(String, String)]) -> (Vec<(String, String)>, Vec<String>) {
    let mut defs = Vec::new();
    let mut scores = Vec::new();
    for (_, text) in texts {
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let Some(first) = words.next() else { continue };
            if first.starts_with('#') {
                continue;
            }
            let Some(name) = words.next() else { continue };
            if RULE_DIRECTIVES.contains(&first) {
                defs.push((first.to_owned(), name.to_owned()));
            } else if first == "score" {
                scores.push(name.to_owned());
            }
        }
    }
    (defs, scores)
}

#[test]
fn stock_rule_set_loads_and_accounts_for_every_rule() {
    let texts = stock_texts();
    assert!(texts.len() > 50, "stock files: {}", texts.len());
    let set = load_texts(&texts, &Options::default());
    let r = &set.report;
    assert_eq!(r.files, texts.len());
    assert_eq!(
        r.lines,
        texts.iter().map(|t| t.1.lines().count()).sum::<usize>()
    );
    // No malformed lines, no unknown directives in the stock set.
    assert_eq!(r.malformed, 0, "{:#?}", r.diagnostics);
    assert!(r.diagnostics.is_empty(), "{:#?}", r.diagnostics);
    assert!(
        r.unknown_directives.is_empty(),
        "{:?}",
        r.unknown_directives
    );

    // Every name on a rule line (scanned independently) is a rule, and back.
    let (defs, score_names) = scan(&texts);
    let scanned: BTreeSet<&str> = defs.iter().map(|d| d.1.as_str()).collect();
    let loaded: BTreeSet<&str> = set.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(scanned, loaded);
    assert_eq!(set.rules.len(), loaded.len(), "one entry per name");
    // Rule lines = distinct names + later definitions of a name.
    assert!(defs.len() >= set.rules.len() + r.redefinitions);

    // Active + skipped = all; every skip has a reason with details.
    assert_eq!(r.active() + r.skipped(), set.rules.len());
    assert_eq!(r.rules_total, set.rules.len());
    for rule in &set.rules {
        match &rule.status {
            Status::Active => {
                if let Some(p) = &rule.pattern {
                    assert_ne!(p.class(), Class::Unsupported, "{}", rule.name);
                }
                if let Kind::Eval { function, .. } = &rule.kind {
                    assert!(
                        mb_engine::filter::scan::IMPLEMENTED_EVALS.contains(&function.as_str()),
                        "{} is active with unimplemented eval {function}",
                        rule.name
                    );
                }
            }
            Status::Skipped(SkipReason::EvalNotImplemented(f)) => assert!(!f.is_empty()),
            Status::Skipped(SkipReason::UnsupportedRegex(why)) => assert!(!why.is_empty()),
            Status::Skipped(SkipReason::Conditional(c)) => assert!(!c.is_empty()),
            Status::Skipped(_) => {}
        }
    }
    // Kinds: each scanned directive maps to the kind the loader gave it
    // (for names defined once, by one directive).
    let mut by_name: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (d, n) in &defs {
        by_name.entry(n).or_default().insert(d);
    }
    for rule in &set.rules {
        let dirs = &by_name[rule.name.as_str()];
        if dirs.len() != 1 {
            continue;
        }
        let d = *dirs.iter().next().expect("one");
        let ok = match (&rule.kind, d) {
            (Kind::Header { .. }, "header") | (Kind::Body, "body") | (Kind::Rawbody, "rawbody") => {
                true
            }
            (Kind::Full, "full") | (Kind::Uri, "uri") | (Kind::Meta { .. }, "meta") => true,
            (Kind::Mimeheader { .. }, "mimeheader") => true,
            (Kind::Eval { target, .. }, d) => {
                matches!(
                    (target, d),
                    (EvalTarget::Header, "header")
                        | (EvalTarget::Body, "body")
                        | (EvalTarget::Rawbody, "rawbody")
                        | (EvalTarget::Full, "full")
                        | (EvalTarget::Uri, "uri")
                        | (EvalTarget::Mimeheader, "mimeheader")
                )
            }
            (Kind::Net { directive, .. }, d) => directive == d,
            _ => false,
        };
        assert!(
            ok,
            "{} defined by `{d}` loaded as {:?}",
            rule.name, rule.kind
        );
    }
    // Scores: every rule with a `score` line somewhere and in effect either
    // took one of its values or is a `__` sub-rule.
    let scored: BTreeSet<&str> = score_names.iter().map(String::as_str).collect();
    let with_scores = set.rules.iter().filter(|r| r.scores.is_some()).count();
    assert!(with_scores > 500, "{with_scores}");
    for rule in &set.rules {
        if rule.scores.is_some() {
            assert!(scored.contains(rule.name.as_str()), "{}", rule.name);
        }
    }
    // Known values.
    let gtube = set.get("GTUBE").expect("GTUBE");
    assert_eq!(gtube.kind, Kind::Body);
    assert_eq!(gtube.score, 1000.0);
    assert!(gtube.is_active());
    assert_eq!(set.required_score, 5.0);
    assert!(set.util_rb_tld.iter().any(|t| t == "com"));
    assert!(set.util_rb_2tld.iter().any(|t| t == "co.uk"));
    let bayes = set.get("BAYES_99").expect("BAYES_99");
    assert_eq!(bayes.status, Status::Skipped(SkipReason::Bayes));
    let sbl = set.get("RCVD_IN_SBL").expect("RCVD_IN_SBL");
    assert_eq!(sbl.status, Status::Skipped(SkipReason::Net));
    // ReplaceTags expanded the fuzzy rules.
    let fuzzy = set.get("FUZZY_CREDIT").expect("FUZZY_CREDIT");
    let p = fuzzy.pattern.as_ref().expect("pattern");
    assert!(p
        .expanded
        .as_ref()
        .is_some_and(|e| !e.contains("<C>") && e.contains("\\xc7")));
    assert!(r.replace_tags_expanded > 50);

    // Eval inventory: every eval use is counted once.
    let eval_rules: usize = r
        .evals
        .iter()
        .map(|e| e.rules.len() + e.inactive_rules.len())
        .sum();
    let eval_defs = set
        .rules
        .iter()
        .filter(|r| matches!(r.kind, Kind::Eval { .. }))
        .count();
    assert_eq!(eval_rules, eval_defs);
    let rbl = r
        .evals
        .iter()
        .find(|e| e.name == "check_rbl_sub")
        .expect("check_rbl_sub");
    assert_eq!(rbl.class, EvalClass::Network);
    assert!(r
        .evals
        .iter()
        .any(|e| e.name == "check_for_missing_to_header"));
    // The Markdown report renders.
    let md = r.to_markdown();
    assert!(md.contains("### Eval functions") && md.contains("check_rbl_sub"));
}

#[test]
fn every_translated_stock_regex_compiles() {
    let texts = stock_texts();
    let options = Options {
        validate: false,
        ..Options::default()
    };
    let set = load_texts(&texts, &options);
    let mut rust = 0;
    let mut failures = Vec::new();
    for rule in &set.rules {
        let Some(p) = &rule.pattern else { continue };
        if let (Class::Rust, Ok(t)) = (p.class(), &p.translated) {
            rust += 1;
            if let Err(e) = regex::bytes::RegexBuilder::new(t)
                .size_limit(1 << 26)
                .build()
            {
                failures.push(format!(
                    "{}: /{}/{} -> {t}: {e}",
                    rule.name, p.source, p.flags
                ));
            }
        }
    }
    assert!(rust > 1000, "{rust}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn directive_forms() {
    let text = "\
header   H1  Subject =~ /^hello$/i
header   H2  From:addr !~ /\\@example\\.com$/ [if-unset: nobody@example.com]
header   H3  exists:X-Spam-Flag
header   H4  Received:raw =~ m{from \\S+}s
header   H5  eval:check_header_count_range('Content-Type','2','999')
body     B1  /viagra/i
rawbody  R1  m!<a href!i
full     F1  /\\A.{0,5}$/s
uri      U1  /^https?:\\/\\/bit\\.ly/
mimeheader M1 Content-Type:raw =~ /name=\"[^\"]+\\.exe\"/i
meta     META1  (H1 + B1 > 1) && !H3
score    H1  2.5
score    B1  0 1 2 3
score    META1  1 2 3 4
describe H1  Subject is hello
tflags   B1  multiple maxhits=3
priority H1  -100
header   T_TEST  Subject =~ /x/
body     NICE1  /thanks/
tflags   NICE1  nice
body     __SUB  /sub/
required_score 6.5
util_rb_tld com net
util_rb_2tld co.uk
add_header all Status _YESNO_
";
    let set = one(text);
    assert!(
        set.report.diagnostics.is_empty(),
        "{:#?}",
        set.report.diagnostics
    );
    let h1 = set.get("H1").expect("H1");
    assert_eq!(
        h1.kind,
        Kind::Header {
            header: "Subject".into(),
            form: HeaderForm::Decoded,
            modifiers: vec![],
            negate: false,
            if_unset: None,
            exists: false
        }
    );
    let p = h1.pattern.as_ref().expect("pattern");
    assert_eq!((p.source.as_str(), p.flags.as_str()), ("^hello$", "i"));
    assert_eq!(p.translated.as_deref(), Ok("(?-u)(?i)^hello(?:\\n?\\z)"));
    assert_eq!(h1.score, 2.5);
    assert_eq!(h1.describe.as_deref(), Some("Subject is hello"));
    assert_eq!(h1.priority, -100);
    assert_eq!(h1.origin.to_string(), "t.cf:1:1");
    match &set.get("H2").expect("H2").kind {
        Kind::Header {
            header,
            form,
            negate,
            if_unset,
            ..
        } => {
            assert_eq!(header, "From");
            assert_eq!(*form, HeaderForm::Addr);
            assert!(*negate);
            assert_eq!(if_unset.as_deref(), Some("nobody@example.com"));
        }
        k => panic!("{k:?}"),
    }
    assert!(
        matches!(&set.get("H3").expect("H3").kind, Kind::Header { exists: true, header, .. } if header == "X-Spam-Flag")
    );
    let h4 = set.get("H4").expect("H4");
    assert!(matches!(
        &h4.kind,
        Kind::Header {
            form: HeaderForm::Raw,
            ..
        }
    ));
    assert_eq!(
        h4.pattern.as_ref().map(|p| p.source.as_str()),
        Some("from \\S+")
    );
    assert_eq!(
        set.get("H5").expect("H5").kind,
        Kind::Eval {
            function: "check_header_count_range".into(),
            args: vec!["Content-Type".into(), "2".into(), "999".into()],
            target: EvalTarget::Header
        }
    );
    assert_eq!(
        set.get("H5").expect("H5").status,
        Status::Skipped(SkipReason::EvalNotImplemented(
            "check_header_count_range".into()
        ))
    );
    let b1 = set.get("B1").expect("B1");
    assert_eq!(b1.kind, Kind::Body);
    assert_eq!(b1.score, 0.0);
    assert_eq!(b1.scores, Some([0.0, 1.0, 2.0, 3.0]));
    assert_eq!(b1.status, Status::Skipped(SkipReason::ScoreZero));
    assert_eq!(b1.tflags, vec!["multiple", "maxhits=3"]);
    assert_eq!(set.get("R1").expect("R1").kind, Kind::Rawbody);
    assert_eq!(set.get("F1").expect("F1").kind, Kind::Full);
    assert_eq!(set.get("U1").expect("U1").kind, Kind::Uri);
    assert!(
        matches!(&set.get("M1").expect("M1").kind, Kind::Mimeheader { header, form: HeaderForm::Raw, negate: false } if header == "Content-Type")
    );
    let meta = set.get("META1").expect("META1");
    let Kind::Meta { expr } = &meta.kind else {
        panic!("{:?}", meta.kind)
    };
    assert_eq!(expr.rules(), vec!["H1", "B1", "H3"]);
    let hits = |names: &'static [&'static str]| {
        move |n: &String| f64::from(u8::from(names.contains(&n.as_str())))
    };
    assert_eq!(expr.eval(&hits(&["H1", "B1"])), 1.0);
    assert_eq!(expr.eval(&hits(&["H1", "B1", "H3"])), 0.0);
    assert_eq!(expr.eval(&hits(&["H1"])), 0.0);
    assert_eq!(meta.score, 1.0);
    assert_eq!(set.get("T_TEST").expect("T").score, 0.01);
    assert_eq!(set.get("NICE1").expect("N").score, -1.0);
    // no scored rule uses __SUB: not run (see unused_sub_rules_are_pruned)
    let sub = set.get("__SUB").expect("sub");
    assert!(sub.is_subrule());
    assert_eq!(sub.status, Status::Skipped(SkipReason::Unused));
    assert_eq!(sub.score, 0.0);
    assert_eq!(set.required_score, 6.5);
    assert_eq!(set.util_rb_tld, vec!["com", "net"]);
    assert_eq!(set.util_rb_2tld, vec!["co.uk"]);
    assert!(set
        .settings
        .iter()
        .any(|s| s.name == "add_header" && s.value == "all Status _YESNO_"));
    assert_eq!(set.report.active_by_kind.get("header"), Some(&5));
}

/// A `__` sub-rule runs only when a scored rule depends on it, through any
/// chain of metas; one used only by a disabled (score 0) or unused meta is
/// skipped as unused, as is every rule of the chain below it. With
/// `prune: false` all of them run.
#[test]
fn unused_sub_rules_are_pruned() {
    let text = "\
body  __A     /alpha/
body  __B     /beta/
meta  __MID   __A && __B
meta  SCORED  __MID || __C
body  __C     /gamma/
body  __D     /delta/
meta  OFF     __D
score OFF     0
body  __E     /epsilon/
meta  __ORPHAN __E
body  __F     /phi/
meta  NICE    !__F
score NICE    -1
";
    let set = one(text);
    let status = |n: &str| set.get(n).expect(n).status.clone();
    for used in ["__A", "__B", "__MID", "__C", "SCORED", "__F", "NICE"] {
        assert_eq!(status(used), Status::Active, "{used}");
    }
    for unused in ["__D", "__E", "__ORPHAN"] {
        assert_eq!(
            status(unused),
            Status::Skipped(SkipReason::Unused),
            "{unused}"
        );
    }
    assert_eq!(status("OFF"), Status::Skipped(SkipReason::ScoreZero));
    let all = load(
        &[Source { file: "t.cf", text }],
        &Options {
            prune: false,
            ..Options::default()
        },
    );
    for n in ["__D", "__E", "__ORPHAN"] {
        assert_eq!(all.get(n).expect(n).status, Status::Active, "{n}");
    }
}

#[test]
fn comments_lang_and_redefinition() {
    let text = "\
body  C1  /a\\#b/   # a comment
lang de describe C1 Deutsch
lang fr body L1 /bonjour/
body  C1  /again/
test  C1 ok Subject: x
";
    let set = one(text);
    let c1 = set.get("C1").expect("C1");
    assert_eq!(
        c1.pattern.as_ref().map(|p| p.source.as_str()),
        Some("again")
    );
    assert_eq!(c1.describe, None);
    assert_eq!(set.report.redefinitions, 1);
    assert_eq!(set.report.lang_lines_skipped, 2);
    assert_eq!(
        set.get("L1").expect("L1").status,
        Status::Skipped(SkipReason::Lang)
    );
    let set = load(
        &[Source {
            file: "t.cf",
            text: "body C1 /a\\#b/ # c\nlang de describe C1 Deutsch\n",
        }],
        &Options {
            lang: Some("de_DE".into()),
            ..Options::default()
        },
    );
    let c1 = set.get("C1").expect("C1");
    assert_eq!(c1.pattern.as_ref().map(|p| p.source.as_str()), Some("a#b"));
    assert_eq!(c1.describe.as_deref(), Some("Deutsch"));
}

#[test]
fn conditional_blocks() {
    let text = "\
ifplugin Mail::SpamAssassin::Plugin::HTMLEval
  body P1 eval:html_title_subject_ratio('x')
endif
ifplugin Mail::SpamAssassin::Plugin::NotLoaded
  body P2 /x/
  score P2 3
else
  body P3 /y/
endif
if (version >= 3.004000)
  body V1 /v/
  if !plugin(Mail::SpamAssassin::Plugin::HTMLEval)
    body V2 /w/
  endif
endif
if (version >= 9.000000)
  body V3 /z/
endif
if can(Mail::SpamAssassin::Conf::feature_unknown)
  body K1 /k/
endif
if can(Mail::SpamAssassin::Conf::feature_bug6558_free)
  body K2 /k/
endif
if frobnicate(1)
  body K3 /k/
endif
";
    let set = one(text);
    let st = |n: &str| set.get(n).map(|r| r.status.clone());
    assert!(matches!(
        st("P1"),
        Some(Status::Skipped(SkipReason::EvalNotImplemented(_)))
    ));
    assert!(
        matches!(st("P2"), Some(Status::Skipped(SkipReason::Conditional(c))) if c.contains("NotLoaded"))
    );
    assert_eq!(
        set.get("P2").map(|r| r.score),
        Some(1.0),
        "score line in a false block"
    );
    assert_eq!(st("P3"), Some(Status::Active));
    assert_eq!(st("V1"), Some(Status::Active));
    assert!(matches!(
        st("V2"),
        Some(Status::Skipped(SkipReason::Conditional(_)))
    ));
    assert!(matches!(
        st("V3"),
        Some(Status::Skipped(SkipReason::Conditional(_)))
    ));
    assert!(matches!(
        st("K1"),
        Some(Status::Skipped(SkipReason::Conditional(_)))
    ));
    assert_eq!(st("K2"), Some(Status::Active));
    assert!(matches!(
        st("K3"),
        Some(Status::Skipped(SkipReason::Conditional(_)))
    ));
    assert_eq!(
        set.report.diagnostics.len(),
        1,
        "{:#?}",
        set.report.diagnostics
    );
    assert_eq!(set.report.diagnostics[0].origin.line, 25);
    // A plugin list without HTMLEval flips P1/V2.
    let options = Options {
        plugins: vec![],
        ..Options::default()
    };
    let set = load(&[Source { file: "t.cf", text }], &options);
    assert!(matches!(
        set.get("P1").map(|r| &r.status),
        Some(Status::Skipped(SkipReason::Conditional(_)))
    ));
    assert_eq!(set.get("V2").map(|r| &r.status), Some(&Status::Active));
    // require_version other than ours skips the rest of the file.
    let set = one("body A /a/\nrequire_version 3.004006\nbody B /b/\n");
    assert!(set.get("A").is_some() && set.get("B").is_none());
    assert_eq!(set.report.diagnostics[0].origin.line, 2);
}

#[test]
fn malformed_lines_are_reported_with_position() {
    let text = "\
body OK /fine/
body BAD1 /unterminated
header BAD2 Subject =~
  header BAD3 Subject ~~ /x/
meta BAD4 (A && B
meta BAD5 A $ B
body 9BAD /x/
score OK x
body BAD6 /x/ trailing
header BAD7 Subject:bogus =~ /x/
ifplugin X
";
    let set = one(text);
    let at: Vec<String> = set
        .report
        .diagnostics
        .iter()
        .map(|d| format!("{}:{}", d.origin.line, d.origin.column))
        .collect();
    assert_eq!(
        at,
        vec!["2:11", "3:23", "4:15", "5:18", "6:13", "7:6", "8:10", "9:15", "10:13", "11:1"],
        "{:#?}",
        set.report.diagnostics
    );
    assert_eq!(set.report.malformed, 7);
    assert!(set
        .get("OK")
        .is_some_and(|r| r.is_active() && r.score == 1.0));
    assert_eq!(set.rules.len(), 1);
}

#[test]
fn unknown_directives_and_net_rule_types() {
    let set = one("frobnicate 1\nfrobnicate 2\naskdns A _SENDERDOMAIN_ x.example TXT /y/\n");
    assert_eq!(set.report.unknown_directives.get("frobnicate"), Some(&2));
    let a = set.get("A").expect("A");
    assert!(matches!(&a.kind, Kind::Net { directive, .. } if directive == "askdns"));
    assert_eq!(a.status, Status::Skipped(SkipReason::Net));
}

#[test]
fn replace_tags() {
    let text = "\
replace_start <
replace_end >
replace_tag A (?:a|4)
replace_tag B (?:b|8)
replace_inter W1 \\W?
replace_post P2 {1,2}
body FZ /<inter W1><post P2><A><B>/i
replace_rules FZ
";
    let set = one(text);
    let p = set.get("FZ").and_then(|r| r.pattern.clone()).expect("FZ");
    assert_eq!(p.source, "<inter W1><post P2><A><B>");
    assert_eq!(
        p.expanded.as_deref(),
        Some("\\W?(?:a|4){1,2}\\W?(?:b|8){1,2}")
    );
    assert!(p.translated.is_ok());
}

proptest! {
    #[test]
    fn no_panic_on_arbitrary_text(text in "\\PC{0,400}") {
        let set = one(&text);
        let lines = u32::try_from(text.lines().count() + 1).unwrap_or(u32::MAX);
        for d in &set.report.diagnostics {
            prop_assert!(d.origin.line >= 1 && d.origin.line <= lines);
            prop_assert!(d.origin.column >= 1);
        }
    }

    #[test]
    fn no_panic_on_rule_like_lines(
        lines in proptest::collection::vec(
            (prop::sample::select(vec![
                "header", "body", "rawbody", "full", "uri", "mimeheader", "meta", "score",
                "if", "ifplugin", "else", "endif", "lang de", "tflags", "replace_rules",
                "replace_tag",
            ]), "[A-Z_]{1,4}", "[ -~]{0,30}"),
            0..20,
        )
    ) {
        let text: String = lines.iter().map(|(d, n, r)| format!("{d} {n} {r}\n")).collect();
        let _ = one(&text);
    }

    #[test]
    fn translation_never_panics(src in "[ -~]{0,40}", flags in "[imsxg]{0,3}") {
        let p = sa::PerlRegex::new(&src, &flags);
        if let (Class::Rust, Ok(t)) = (p.class(), &p.translated) {
            // Either compiles or is caught by validation at load time.
            let _ = regex::bytes::Regex::new(t);
        }
    }
}
