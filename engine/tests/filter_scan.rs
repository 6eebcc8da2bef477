//! The scanner end to end: `.cf` text → rule set → one database per class →
//! symbols and score for parsed messages, with every backend agreeing.

use mb_engine::filter::matcher::Backend;
use mb_engine::filter::mime::{self, Limits};
use mb_engine::filter::sa::{self, Options, Source};
use mb_engine::filter::scan::{ScanResult, Scanner};

const RULES: &str = r#"
required_score 5.0
header   SUBJ_FREE      Subject =~ /free\s+money/i
score    SUBJ_FREE      3.0
header   SUBJ_NOT_HELLO Subject !~ /hello/
score    SUBJ_NOT_HELLO 0.5
header   HAS_LIST_ID    exists:List-Id
score    HAS_LIST_ID    -1.0
header   FROM_ADDR      From:addr =~ /\@bad\.example$/
score    FROM_ADDR      1.5
body     BODY_WINNER    /you (?:are|were) (?:a|the) winner/i
score    BODY_WINNER    2.0
rawbody  RAW_HTML_FONT  /<font\s+size=/i
score    RAW_HTML_FONT  0.7
uri      URI_EVIL       /\bevil\.example\b/i
score    URI_EVIL       1.25
full     FULL_XMAILER   /^X-Mailer: spamblaster/m
score    FULL_XMAILER   0.3
body     __SUB_CLICK    /click here/i
body     BACKREF_DOUBLE /\b(\w{4,})\s+\1\b/
score    BACKREF_DOUBLE 0.1
meta     META_COMBO     (SUBJ_FREE && URI_EVIL) || (__SUB_CLICK && BODY_WINNER)
score    META_COMBO     2.5
"#;

const SPAMMY: &str = "From: \"Prize Team\" <prizes@bad.example>\r\n\
To: you@example.com\r\n\
Subject: FREE   money inside\r\n\
X-Mailer: spamblaster 2.0\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/html; charset=us-ascii\r\n\
\r\n\
<html><body><font size=5>You are a WINNER!</font> <a href=\"http://www.evil.example/claim\">Click here</a> today today</body></html>\r\n";

const HAMMY: &str = "From: alice@good.example\r\n\
To: bob@example.com\r\n\
Subject: hello bob\r\n\
List-Id: <team.lists.example>\r\n\
\r\n\
See you at lunch. The page is http://intranet.example/menu\r\n";

/// `text` loaded as a rule file named `file`, with the default options.
fn load(file: &str, text: &str) -> sa::RuleSet {
    sa::load(&[Source { file, text }], &Options::default())
}

/// RULES loaded.
fn rule_set() -> sa::RuleSet {
    load("test.cf", RULES)
}

fn scan(backend: Backend, raw: &str) -> ScanResult {
    let set = rule_set();
    assert!(
        set.report.diagnostics.is_empty(),
        "{:?}",
        set.report.diagnostics
    );
    let scanner = Scanner::compile(&set, backend);
    let mut state = scanner.state();
    let message = mime::parse(raw.as_bytes(), &Limits::default());
    scanner.scan(&mut state, raw.as_bytes(), &message)
}

fn names(r: &ScanResult) -> Vec<&str> {
    r.symbols.iter().map(|(s, _)| s.as_str()).collect()
}

#[test]
fn spammy_message_hits_every_class_and_the_meta() {
    let r = scan(Backend::Hyperscan, SPAMMY);
    assert_eq!(
        names(&r),
        [
            "SUBJ_FREE",
            "SUBJ_NOT_HELLO",
            "FROM_ADDR",
            "BODY_WINNER",
            "RAW_HTML_FONT",
            "URI_EVIL",
            "FULL_XMAILER",
            "BACKREF_DOUBLE",
            "META_COMBO"
        ],
        "{r:?}"
    );
    let expected = 3.0 + 0.5 + 1.5 + 2.0 + 0.7 + 1.25 + 0.3 + 0.1 + 2.5;
    assert!((r.score - expected).abs() < 1e-4, "{r:?}");
    assert!(r.is_spam());
}

#[test]
fn hammy_message_hits_only_the_negative_rule() {
    let r = scan(Backend::Hyperscan, HAMMY);
    assert_eq!(names(&r), ["HAS_LIST_ID"], "{r:?}");
    assert!((r.score + 1.0).abs() < 1e-6);
    assert!(!r.is_spam());
}

#[test]
fn backends_agree() {
    for raw in [SPAMMY, HAMMY] {
        assert_eq!(scan(Backend::Hyperscan, raw), scan(Backend::Naive, raw));
    }
}

#[test]
fn sub_rules_never_score_and_inactive_rules_never_hit() {
    let r = scan(Backend::Naive, SPAMMY);
    assert!(!names(&r).iter().any(|n| n.starts_with("__")), "{r:?}");
    let set = load("t.cf", "body ZERO /winner/i\nscore ZERO 0\n");
    let scanner = Scanner::compile(&set, Backend::Hyperscan);
    let mut state = scanner.state();
    let message = mime::parse(SPAMMY.as_bytes(), &Limits::default());
    assert!(scanner
        .scan(&mut state, SPAMMY.as_bytes(), &message)
        .symbols
        .is_empty());
}

/// A meta in a false conditional block never runs; a name defined there
/// and again in a live block means the live definition; and, as in
/// SpamAssassin, `tflags net` skips only eval rules: a meta with it runs.
#[test]
fn conditional_metas_and_net_metas() {
    let text = "\
ifplugin Mail::SpamAssassin::Plugin::FreeMail
  ifplugin Mail::SpamAssassin::Plugin::NotLoaded
    meta  DEAD_META  SUBJ_FREE
  endif
endif
if !plugin(Mail::SpamAssassin::Plugin::DKIM)
  meta  TWICE  !SUBJ_FREE
endif
ifplugin Mail::SpamAssassin::Plugin::DKIM
  meta  TWICE  SUBJ_FREE
endif
meta  USES_TWICE  TWICE
header SUBJ_FREE Subject =~ /free\\s+money/i
meta  NET_META  SUBJ_FREE
tflags NET_META net
header NET_EVAL eval:check_rbl('x', 'rbl.example.')
tflags NET_EVAL net
";
    let set = load("cond.cf", text);
    for backend in [Backend::Hyperscan, Backend::Naive] {
        let scanner = Scanner::compile(&set, backend);
        let mut state = scanner.state();
        let message = mime::parse(SPAMMY.as_bytes(), &Limits::default());
        let r = scanner.scan(&mut state, SPAMMY.as_bytes(), &message);
        let mut got = names(&r);
        got.sort_unstable();
        assert_eq!(
            got,
            ["NET_META", "SUBJ_FREE", "TWICE", "USES_TWICE"],
            "{backend:?} {r:?}"
        );
    }
    assert!(set.get("NET_META").is_some_and(sa::Rule::is_active));
    assert!(!set.get("NET_EVAL").is_some_and(sa::Rule::is_active));
}

/// `tflags multiple` counts a pattern the `regex` crate cannot run
/// (a lookahead) with the engine that confirms it.
#[test]
fn multiple_counts_patterns_with_lookarounds() {
    let text = "\
body __FOO /\\bfoo(?!bar)/i
tflags __FOO multiple maxhits=5
meta FOO_3 __FOO > 2
";
    let set = load("count.cf", text);
    let run = |body: &str| {
        let raw = format!("From: a@b.example\nSubject: s\n\n{body}\n");
        let scanner = Scanner::compile(&set, Backend::Hyperscan);
        let mut state = scanner.state();
        let message = mime::parse(raw.as_bytes(), &Limits::default());
        let r = scanner.scan(&mut state, raw.as_bytes(), &message);
        names(&r).contains(&"FOO_3")
    };
    assert!(run("foo one, FOO two, foobar, foo three"));
    assert!(!run("foo one, foobar, foobar, foobar"));
}

/// A `mimeheader` rule matches each part's value on its own: `^` anchors
/// at the start of every part's value, not only the first part's.
#[test]
fn mimeheader_rules_match_each_part() {
    let set = load(
        "mh.cf",
        "mimeheader GIF_PART Content-Type =~ /^image\\/gif\\b/i\n\
         mimeheader GIF_END Content-Type =~ /gif\"$/i\n",
    );
    let raw = "From: a@b.example\nSubject: s\nMIME-Version: 1.0\n\
               Content-Type: multipart/related; boundary=\"n\"\n\n--n\n\
               Content-Type: text/html\n\n<b>hi</b>\n--n\n\
               Content-Type: image/gif; name=\"e.gif\"\n\nR0lGOD\n--n--\n";
    for backend in [Backend::Hyperscan, Backend::Naive] {
        let scanner = Scanner::compile(&set, backend);
        let mut state = scanner.state();
        let message = mime::parse(raw.as_bytes(), &Limits::default());
        let r = scanner.scan(&mut state, raw.as_bytes(), &message);
        assert_eq!(names(&r), ["GIF_PART", "GIF_END"], "{backend:?}");
    }
}

#[test]
fn the_floor_counts_raw_hits_of_every_class() {
    let set = load(
        "t.cf",
        "body B /winner/i\nheader S Subject =~ /money/i\nfull F /^Subject:/m\n",
    );
    let scanner = Scanner::compile_on(&set, Backend::Hyperscan, 2);
    let mut state = scanner.state();
    // the raw bytes: `winner` and `money` and `Subject:` each hit once
    let raw = b"Subject: money\r\n\r\nyou are a winner\r\n";
    assert_eq!(scanner.scan_floor(&mut state, raw), 3);
    assert_eq!(scanner.scan_floor(&mut state, b"nothing"), 0);
}

/// `scan_profiled` gives the same result as `scan` and charges every class
/// and the rule logic once per message: with a clock that ticks by one per
/// read, each class accrues exactly one tick per message. Labels use the
/// rule files' words.
#[test]
fn profiled_scans_agree_and_charge_every_class() {
    use mb_engine::filter::scan::Profile;
    use std::cell::Cell;
    let set = rule_set();
    let scanner = Scanner::compile(&set, Backend::Hyperscan);
    let mut state = scanner.state();
    let ticks = Cell::new(0u64);
    let clock = || {
        ticks.set(ticks.get() + 1);
        ticks.get()
    };
    let mut profile = Profile::default();
    for raw in [SPAMMY, HAMMY] {
        let message = mime::parse(raw.as_bytes(), &Limits::default());
        let plain = scanner.scan(&mut state, raw.as_bytes(), &message);
        let profiled =
            scanner.scan_profiled(&mut state, raw.as_bytes(), &message, &clock, &mut profile);
        assert_eq!(plain, profiled);
    }
    assert_eq!(profile.messages, 2);
    assert_eq!(profile.classes, vec![2; scanner.class_count()]);
    assert_eq!(profile.rules, 2);
    let labels: Vec<String> = (0..scanner.class_count())
        .map(|c| scanner.class_label(c).0)
        .collect();
    for want in [
        "header subject",
        "header from:addr",
        "body",
        "rawbody",
        "uri",
        "full",
    ] {
        assert!(labels.iter().any(|l| l == want), "{want} not in {labels:?}");
    }
    let patterns: usize = (0..scanner.class_count())
        .map(|c| scanner.class_label(c).1)
        .sum();
    // the nine regex rules of RULES (`exists:` and metas are no pattern)
    assert_eq!(patterns, 9);
}

/// A body rule matches within one body element (a paragraph), as
/// SpamAssassin matches each element alone: `\s`, `\W` and negated classes
/// do not take the break between two paragraphs, on every backend, with
/// and without a Hyperscan prefilter (the lookbehind forces one).
#[test]
fn body_rules_do_not_match_across_paragraphs() {
    let rules = r"
body  SPACE_ACROSS    /lunch\s+tomorrow/
score SPACE_ACROSS    1.0
body  NONWORD_ACROSS  /lunch\W+tomorrow/
score NONWORD_ACROSS  1.0
body  NEGATED_ACROSS  /lunch[^<]{1,5}tomorrow/s
score NEGATED_ACROSS  1.0
body  PREFILTERED     /(?<!no )lunch\s+tomorrow/
score PREFILTERED     1.0
";
    let set = load("t.cf", rules);
    let head = "From: a@b.example\r\nSubject: x\r\n\r\n";
    let all = [
        "SPACE_ACROSS",
        "NONWORD_ACROSS",
        "NEGATED_ACROSS",
        "PREFILTERED",
    ];
    for backend in [Backend::Hyperscan, Backend::Naive] {
        let scanner = Scanner::compile(&set, backend);
        let mut state = scanner.state();
        for (body, want) in [
            ("see you at lunch\r\ntomorrow then\r\n", &all[..]),
            ("see you at lunch\r\n\r\ntomorrow then\r\n", &[][..]),
            ("see you at lunch.\r\n \r\n\r\ntomorrow then\r\n", &[][..]),
        ] {
            let raw = format!("{head}{body}");
            let message = mime::parse(raw.as_bytes(), &Limits::default());
            let r = scanner.scan(&mut state, raw.as_bytes(), &message);
            assert_eq!(names(&r), want, "{backend:?} on {body:?}");
        }
    }
}

/// URI rules see one URI at a time: a negated class or `\s` does not run
/// from one URI into the next (SpamAssassin's __MANY_SUBDOM counted the
/// labels of three URIs as one host), nor does `/s`.
#[test]
fn uri_rules_do_not_match_across_uris() {
    let rules = r"
uri   MANY_LABELS  m;^https?://(?:[^\./]{1,30}\.){6};i
score MANY_LABELS  1.0
uri   SPAN_S       /example\.org.mailto/s
score SPAN_S       1.0
uri   ONE_HOST     m;^https?://(?:[^\./]{1,30}\.){3};i
score ONE_HOST     1.0
";
    let set = load("t.cf", rules);
    let raw = "From: a@b.example\nSubject: x\n\nsee http://www.example.org, \
               write to joe@mail.b.example or ann@c.d.example, or see http://w.x.y.example\n";
    let message = mime::parse(raw.as_bytes(), &Limits::default());
    assert_eq!(message.urls.len(), 2, "{:?}", message.urls);
    for backend in [Backend::Hyperscan, Backend::Naive] {
        let scanner = Scanner::compile(&set, backend);
        let mut state = scanner.state();
        let r = scanner.scan(&mut state, raw.as_bytes(), &message);
        assert_eq!(names(&r), ["ONE_HOST"], "{backend:?}");
    }
}

/// `pattern_costs` times every pattern rule once, sorted costliest first,
/// and counts the messages each pattern matched on its own.
#[test]
fn pattern_costs_cover_every_pattern() {
    use std::cell::Cell;
    let set = rule_set();
    let scanner = Scanner::compile(&set, Backend::Hyperscan);
    let parsed: Vec<_> = [SPAMMY, HAMMY]
        .iter()
        .map(|raw| mime::parse(raw.as_bytes(), &Limits::default()))
        .collect();
    let messages: Vec<(&[u8], &mime::Message)> = [SPAMMY, HAMMY]
        .iter()
        .map(|r| r.as_bytes())
        .zip(parsed.iter())
        .collect();
    // each read advances the clock by one more than the last: later
    // patterns cost more, so the sort is visible
    let ticks = Cell::new((0u64, 0u64));
    let clock = || {
        let (t, step) = ticks.get();
        ticks.set((t + step + 1, step + 1));
        t + step + 1
    };
    let costs = scanner.pattern_costs(&messages, &clock);
    assert_eq!(costs.len(), 9);
    assert!(
        costs.windows(2).all(|w| w[0].nanos > w[1].nanos),
        "{costs:?}"
    );
    let matched = |rule: &str| costs.iter().find(|c| c.rule == rule).map(|c| c.matched);
    assert_eq!(matched("BODY_WINNER"), Some(1));
    assert_eq!(matched("SUBJ_FREE"), Some(1));
    // the pattern of a negated rule: `hello` is in HAMMY's Subject only
    assert_eq!(matched("SUBJ_NOT_HELLO"), Some(1));
    assert_eq!(matched("URI_EVIL"), Some(1));
    assert_eq!(matched("HAS_LIST_ID"), None);
}

/// Raw-body rules see each text part as one element, as SpamAssassin 4
/// does: no match across two parts, `^` is a part's start (unless `/m`),
/// and a match may span lines inside a part.
#[test]
fn rawbody_elements_are_parts() {
    let rules = r"
rawbody  AFTER_HTML   /<\/html>\s*[a-z0-9]/i
score    AFTER_HTML   1.0
rawbody  STARTS       /^second/
score    STARTS       1.0
rawbody  STARTS_M     /^inside/m
score    STARTS_M     1.0
rawbody  STARTS_NO_M  /^inside/
score    STARTS_NO_M  1.0
rawbody  SPANS        /line one\s+line two/
score    SPANS        1.0
";
    let set = load("t.cf", rules);
    let raw = "From: a@b.example\r\nSubject: x\r\n\
        Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
        --b\r\nContent-Type: text/html\r\n\r\n<html><body>hi</body></html>\r\n\
        --b\r\nContent-Type: text/plain\r\n\r\nsecond part\r\ninside it\r\nline one\r\nline two\r\n--b--\r\n";
    for backend in [Backend::Hyperscan, Backend::Naive] {
        let scanner = Scanner::compile(&set, backend);
        let mut state = scanner.state();
        let message = mime::parse(raw.as_bytes(), &Limits::default());
        let r = scanner.scan(&mut state, raw.as_bytes(), &message);
        assert_eq!(names(&r), ["STARTS", "STARTS_M", "SPANS"], "{backend:?}");
    }
}

/// Every file under `dir`, recursively, sorted (the `.md` notes skipped).
fn corpus_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("shared/corpus beside the repository")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            corpus_files(&p, out);
        } else if p.extension().is_none_or(|x| x != "md") {
            out.push(p);
        }
    }
}

/// `scan_batch` gives each message the result `scan` gives it alone, for
/// batches of every size from one up, with one state reused as batches
/// grow and shrink (hit sets of an earlier, larger batch must not leak into
/// a later one), on every backend; over the corpus's malformed and mixed
/// messages, with counted (`tflags multiple`), confirmed (lookbehind) and
/// raw-body rules beside every class of [`RULES`].
#[test]
fn batches_give_the_results_of_single_scans() {
    let rules = format!(
        "{RULES}\nbody __CLICK_MULTI /click/i\ntflags __CLICK_MULTI multiple\n\
         meta CLICK_TWICE __CLICK_MULTI > 1\nscore CLICK_TWICE 0.4\n\
         body LOOKBEHIND /(?<!not )winner/i\nscore LOOKBEHIND 0.2\n\
         rawbody RAW_BOUNDARY /^--/m\nscore RAW_BOUNDARY 0.1\n\
         header MIME_VERSION MIME-Version =~ /1\\.0/\nscore MIME_VERSION 0.01\n"
    );
    let set = load("t.cf", &rules);
    assert!(
        set.report.diagnostics.is_empty(),
        "{:?}",
        set.report.diagnostics
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
    let mut files = Vec::new();
    corpus_files(&root.join("malformed"), &mut files);
    corpus_files(&root.join("mixed"), &mut files);
    let mut raws: Vec<Vec<u8>> = files
        .iter()
        .map(|p| std::fs::read(p).expect("corpus message"))
        .collect();
    raws.push(SPAMMY.as_bytes().to_vec());
    raws.push(HAMMY.as_bytes().to_vec());
    raws.push(SPAMMY.replace("Click here", "click, click").into_bytes());
    assert!(raws.len() > 20, "{} messages", raws.len());
    let parsed: Vec<_> = raws
        .iter()
        .map(|r| mime::parse(r, &Limits::default()))
        .collect();
    let messages: Vec<(&[u8], &mime::Message)> =
        raws.iter().map(Vec::as_slice).zip(&parsed).collect();
    for backend in [Backend::Hyperscan, Backend::Naive] {
        let scanner = Scanner::compile(&set, backend);
        let mut state = scanner.state();
        let alone: Vec<ScanResult> = messages
            .iter()
            .map(|(raw, message)| scanner.scan(&mut state, raw, message))
            .collect();
        let hits = alone.iter().filter(|r| !r.symbols.is_empty()).count();
        assert!(hits >= 3, "the rules hit too little to test: {alone:?}");
        assert!(
            names(&alone[alone.len() - 1]).contains(&"CLICK_TWICE"),
            "{:?}",
            alone[alone.len() - 1]
        );
        for size in [messages.len(), 1, 2, 3, 7, 16] {
            let batched: Vec<ScanResult> = messages
                .chunks(size)
                .flat_map(|chunk| scanner.scan_batch(&mut state, chunk))
                .collect();
            assert_eq!(batched, alone, "{backend:?}, batches of {size}");
        }
    }
}
