//! Golden tests for the matcher backends: Hyperscan (with prefilter and
//! confirmation), aho-corasick and the naive oracle give the same hit sets.

use mb_engine::filter::matcher::{Backend, Database, DatabaseCache, HitSet, Mode, Pattern};
use proptest::prelude::*;

fn hits(db: &Database, haystack: &[u8]) -> Vec<u32> {
    let mut scratch = db.scratch();
    let mut set = HitSet::new(db.id_bound());
    db.scan(&mut scratch, haystack, &mut set);
    assert_eq!(set.issue(), None, "scan complete");
    set.iter().collect()
}

/// Hyperscan and naive (and aho-corasick for literal sets) agree; returns the hits.
fn agree(patterns: &[Pattern], haystack: &[u8]) -> Vec<u32> {
    let (naive, report) = Database::compile(patterns, Backend::Naive);
    for e in &report.entries {
        assert_eq!(e.mode, Mode::Exact, "naive compiles {e:?}");
    }
    let (hs, _) = Database::compile(patterns, Backend::Hyperscan);
    let want = hits(&naive, haystack);
    assert_eq!(
        hits(&hs, haystack),
        want,
        "hyperscan vs naive on {:?} over {:?}",
        patterns,
        String::from_utf8_lossy(&haystack[..haystack.len().min(200)])
    );
    if patterns.iter().all(|p| p.literal) {
        let (ac, _) = Database::compile(patterns, Backend::AhoCorasick);
        assert_eq!(hits(&ac, haystack), want, "aho-corasick vs naive");
    }
    want
}

fn one(p: Pattern, haystack: &[u8]) -> bool {
    !agree(&[p], haystack).is_empty()
}

#[test]
fn golden_table() {
    let r = Pattern::regex;
    // (pattern, haystack, expected)
    let table: Vec<(Pattern, &[u8], bool)> = vec![
        (r(0, "foo"), b"a foo b", true),
        (r(0, "FOO"), b"a foo b", false),
        (r(0, "FOO").caseless(), b"a foo b", true),
        (r(0, "a.b"), b"a\nb", false),
        (r(0, "a.b").dotall(), b"a\nb", true),
        (r(0, "^b"), b"a\nb", false),
        (r(0, "^b").multiline(), b"a\nb", true),
        (r(0, "a$"), b"a\nb", false),
        (r(0, "a$").multiline(), b"a\nb", true),
        (r(0, "a$"), b"xa\n", true),
        (r(0, "a$"), b"xa\n\n", false),
        (r(0, "a\\Z"), b"xa\n", true),
        (r(0, "a\\z"), b"xa\n", false),
        (r(0, "(?m)^b$"), b"a\nb\nc", true),
        // Perl: a multi-line `^` does not match after the final newline
        (r(0, "^$").multiline(), b"1\n", false),
        (r(0, "^$").multiline(), b"1\n\n", true),
        (r(0, "^$").multiline(), b"", true),
        (r(0, "\\bfoo\\b"), b"a foo.", true),
        (r(0, "\\bfoo\\b"), b"afoo", false),
        // ASCII \b and \w: a UTF-8 letter is not a word byte
        (r(0, "\\bfoo\\b"), "éfooé".as_bytes(), true),
        (r(0, "\\w"), "é".as_bytes(), false),
        (r(0, "."), b"\xff", true),
        (r(0, "\\xff"), b"\x00\xff", true),
        (r(0, "é"), "café".as_bytes(), true),
        (r(0, "[é]"), b"\xa9", true),
        (r(0, "É").caseless(), "é".as_bytes(), false),
        (r(0, "cat|dog"), b"hotdog", true),
        (r(0, "[0-9]{3,5}"), b"ab12c", false),
        (r(0, "[0-9]{3,5}"), b"ab1234c", true),
        (r(0, "[^a-z]"), b"abc", false),
        (r(0, "\\s+x"), b"a \t x", true),
        (r(0, "(a)\\1"), b"xaay", true),
        (r(0, "(a)\\1"), b"xaya", false),
        (r(0, "foo(?=bar)"), b"foobar", true),
        (r(0, "foo(?=bar)"), b"foobaz", false),
        (r(0, "(?<!x)foo"), b"xfoo", false),
        (r(0, "(?<!x)foo"), b"yfoo", true),
        (r(0, "a*"), b"", true),
        (r(0, "^$"), b"", true),
        (r(0, "^$"), b"x", false),
        (r(0, "x?"), b"abc", true),
        (r(0, "\\x00\\x01"), b"\x00\x01\x02", true),
        (Pattern::literal(0, "a.b"), b"axb", false),
        (Pattern::literal(0, "a.b"), b"a.b", true),
        (Pattern::literal(0, "A.B").caseless(), b"a.b", true),
        (Pattern::literal(0, "ÄB").caseless(), "äb".as_bytes(), false),
        (r(0, "[]a]"), b"]", true),
        (r(0, "[a[]"), b"[", true),
        (r(0, "[[:digit:]]+"), b"x9", true),
    ];
    for (p, haystack, expected) in table {
        let got = one(p.clone(), haystack);
        assert_eq!(
            got,
            expected,
            "{p:?} over {:?}",
            String::from_utf8_lossy(haystack)
        );
    }
}

#[test]
fn report_says_what_is_confirmed_and_why() {
    let patterns = [
        Pattern::regex(0, "foo"),
        Pattern::regex(1, "(a)\\1"),
        Pattern::regex(2, "foo(?=bar)"),
        Pattern::regex(3, "\\p{Greek}"),
        Pattern::regex(4, "(unclosed"),
        Pattern::literal(5, "lit"),
    ];
    let (db, report) = Database::compile(&patterns, Backend::Hyperscan);
    assert_eq!(report.mode(0), Some(&Mode::Exact));
    assert!(matches!(report.mode(1), Some(Mode::Prefiltered { reason }) if !reason.is_empty()));
    assert!(matches!(report.mode(2), Some(Mode::Prefiltered { .. })));
    assert!(matches!(report.mode(3), Some(Mode::ConfirmOnly { .. })));
    assert!(matches!(report.mode(4), Some(Mode::Rejected { .. })));
    assert_eq!(report.mode(5), Some(&Mode::Exact));
    assert_eq!(db.len(), 5);
    assert_eq!(db.confirm_only(), 1);
    assert_eq!(hits(&db, "aa foobar lit α".as_bytes()), vec![0, 1, 2, 3, 5]);
    let (ac, report) = Database::compile(&patterns, Backend::AhoCorasick);
    assert_eq!(report.counts(), [1, 0, 0, 5]);
    assert_eq!(hits(&ac, b"lit"), vec![5]);
}

#[test]
fn literal_lists_empty_binary_and_large_haystacks() {
    let lits: Vec<Pattern> = ["viagra", "Cheap", "a\u{0}b", "\u{ff}", "x.y", "", "zz"]
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let p = Pattern::literal(i as u32, *s);
            if i % 2 < 1 {
                p.caseless()
            } else {
                p
            }
        })
        .collect();
    for hay in [
        &b""[..],
        b"VIAGRA cheap",
        b"\x00\x01a\x00b\xff\xc3\xbf",
        b"x.y zz Cheap",
    ] {
        agree(&lits, hay);
    }
    let mut big = vec![b'q'; 1 << 20];
    big[(1 << 20) - 3..].copy_from_slice(b"zz\n");
    big[17..23].copy_from_slice(b"ViAgRa");
    let mut set = lits.clone();
    set.push(Pattern::regex(20, "zz$"));
    set.push(Pattern::regex(21, "^q+V"));
    set.push(Pattern::regex(22, "(q)\\1{5}V"));
    let got = agree(&set, &big);
    assert_eq!(got, vec![0, 5, 6, 20, 21, 22]);
}

/// A small deterministic generator (no clock, no rand crate).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn word(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b'a' + (self.next() % 26) as u8))
            .collect()
    }
}

pub fn big_set() -> (Vec<Pattern>, Vec<u8>) {
    let mut g = Lcg(7);
    let mut patterns = Vec::new();
    for i in 0..5000 {
        let len = 5 + (g.next() % 6) as usize;
        let w = g.word(len);
        let s = match i % 4 {
            0 => w,
            1 => format!("{w}.tld"),
            2 => format!("{w} {}", g.word(4)),
            _ => format!("{w}{}", g.next() % 1000),
        };
        patterns.push(Pattern::literal(i, s).caseless());
    }
    let templates = [
        "\\b{w}\\s+[0-9]{{2,6}}",
        "https?://[a-z0-9.-]*{w}",
        "{w}.{{0,20}}{v}",
        "(?:{w}|{v})\\W{{1,3}}",
        "\\${w}[0-9]+",
        "{w}[^a-z]{v}",
        "\\b{w}\\b",
        "[a-z0-9._-]+@{w}\\.com",
        "({w})\\s\\1",
        "{w}(?={v})",
    ];
    for i in 0..500u32 {
        let t = templates[i as usize % templates.len()];
        let n = 3 + (g.next() % 3) as usize;
        let w = g.word(n);
        let v = g.word(3);
        let src = t
            .replace("{w}", &w)
            .replace("{v}", &v)
            .replace("{{", "{")
            .replace("}}", "}");
        let mut p = Pattern::regex(5000 + i, src);
        p.caseless = i % 3 < 1;
        patterns.push(p);
    }
    let mut msg = Vec::with_capacity(50 * 1024);
    while msg.len() < 50 * 1024 {
        match g.next() % 200 {
            0 => {
                let k = (g.next() % 5000) as usize;
                msg.extend_from_slice(patterns[k].source.to_uppercase().as_bytes());
            }
            1 => {
                let k = 5000 + (g.next() % 500) as usize;
                let w: String = patterns[k]
                    .source
                    .chars()
                    .filter(|c| c.is_ascii_lowercase())
                    .take(5)
                    .collect();
                msg.extend_from_slice(format!("{w} 1234 {w}.com").as_bytes());
            }
            _ => {
                let len = 2 + (g.next() % 8) as usize;
                msg.extend_from_slice(g.word(len).as_bytes());
            }
        }
        msg.push(if g.next() % 12 < 1 { b'\n' } else { b' ' });
    }
    (patterns, msg)
}

#[test]
fn five_thousand_literals_and_five_hundred_regexes() {
    let (patterns, msg) = big_set();
    let (hs, report) = Database::compile(&patterns, Backend::Hyperscan);
    let [exact, pre, confirm, rejected] = report.counts();
    assert_eq!(rejected, 0, "{report}");
    assert_eq!(exact + pre + confirm, 5500);
    assert!(
        pre >= 100,
        "backrefs and lookaheads are prefiltered: {report}"
    );
    let (naive, _) = Database::compile(&patterns, Backend::Naive);
    let want = hits(&naive, &msg);
    assert!(
        want.len() > 20,
        "the message hits something: {}",
        want.len()
    );
    assert_eq!(hits(&hs, &msg), want);
    let (ac, _) = Database::compile(&patterns[..5000], Backend::AhoCorasick);
    let (naive_lits, _) = Database::compile(&patterns[..5000], Backend::Naive);
    assert_eq!(hits(&ac, &msg), hits(&naive_lits, &msg));
}

#[test]
fn scratch_refits_for_a_new_database() {
    let (small, _) = Database::compile(&[Pattern::regex(0, "a")], Backend::Hyperscan);
    let (patterns, msg) = big_set();
    let (big, _) = Database::compile(&patterns[4900..], Backend::Hyperscan);
    let mut scratch = small.scratch();
    let mut set = HitSet::new(0);
    small.scan(&mut scratch, b"a", &mut set);
    assert_eq!(set.iter().collect::<Vec<_>>(), vec![0]);
    scratch.fit(&big);
    set.clear();
    big.scan(&mut scratch, &msg, &mut set);
    assert_eq!(set.issue(), None);
    let (naive, _) = Database::compile(&patterns[4900..], Backend::Naive);
    assert_eq!(set.iter().collect::<Vec<_>>(), hits(&naive, &msg));
}

// ---------------------------------------------------------------- proptest

fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        "[abc]{1,3}",
        Just("[a-c]".to_owned()),
        Just("[^b]".to_owned()),
        Just("\\w".to_owned()),
        Just("\\s".to_owned()),
        Just("\\d".to_owned()),
        Just(".".to_owned()),
        Just("\\b".to_owned()),
        Just("\\xff".to_owned()),
        Just("é".to_owned()),
        // what a pattern's ASCII form drops or cuts
        Just("[a\\xe9]".to_owned()),
        Just("[\\x7b-\\xff]".to_owned()),
        Just("(?:b|\\xc3\\xa9|[\\xce][\\xa1])".to_owned()),
    ]
}

fn piece() -> impl Strategy<Value = String> {
    (
        atom(),
        prop_oneof![
            Just(""),
            Just("*"),
            Just("+"),
            Just("?"),
            Just("{1,2}"),
            Just("*?")
        ],
    )
        .prop_map(|(a, q)| {
            if q.is_empty() || a == "\\b" {
                a
            } else {
                format!("(?:{a}){q}")
            }
        })
}

fn regex_source() -> impl Strategy<Value = String> {
    let seq = prop::collection::vec(piece(), 1..4).prop_map(|v| v.concat());
    (
        prop::collection::vec(seq, 1..3),
        any::<bool>(),
        any::<bool>(),
        0..8u8,
    )
        .prop_map(|(alts, start, end, fancy)| {
            let mut s = alts.join("|");
            if alts.len() > 1 {
                s = format!("(?:{s})");
            }
            match fancy {
                1 => s = format!("({s})\\1"),
                2 => s = format!("{s}(?=[ab])"),
                3 => s = format!("(?<!c){s}"),
                4 => s = format!("(?!a\\xff|\\xc3){s}"),
                // look-behinds that see the newline before a line: a
                // confirmation that starts at a line must keep the text
                // before it as context
                5 => s = format!("(?<=\\s){s}"),
                6 => s = format!("(?<![\\n]){s}"),
                _ => {}
            }
            if start {
                s = format!("^{s}");
            }
            if end {
                s.push('$');
            }
            s
        })
}

fn pattern_set() -> impl Strategy<Value = Vec<Pattern>> {
    prop::collection::vec(
        (regex_source(), any::<bool>(), any::<bool>(), any::<bool>()),
        1..6,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (source, c, d, m))| Pattern {
                id: i as u32,
                source,
                caseless: c,
                dotall: d,
                multiline: m,
                literal: false,
            })
            .collect()
    })
}

fn haystack() -> impl Strategy<Value = Vec<u8>> {
    // half of them ASCII: the databases run ASCII haystacks on patterns'
    // ASCII forms
    let bytes = |set: &[u8]| prop::collection::vec(prop::sample::select(set.to_vec()), 0..24);
    prop_oneof![bytes(b"abcA \n1{"), bytes(b"abcA \n1\xff\xc3\xa9")]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn hyperscan_equals_naive(patterns in pattern_set(), hays in prop::collection::vec(haystack(), 1..4)) {
        let (naive, report) = Database::compile(&patterns, Backend::Naive);
        prop_assume!(report.counts()[3] == 0);
        let (hs, _) = Database::compile(&patterns, Backend::Hyperscan);
        let mut s_n = naive.scratch();
        let mut s_h = hs.scratch();
        let mut a = HitSet::new(8);
        let mut b = HitSet::new(8);
        for hay in &hays {
            a.clear();
            b.clear();
            naive.scan(&mut s_n, hay, &mut a);
            hs.scan(&mut s_h, hay, &mut b);
            prop_assert_eq!(a.issue(), None);
            prop_assert_eq!(b.issue(), None);
            prop_assert_eq!(
                a.iter().collect::<Vec<_>>(),
                b.iter().collect::<Vec<_>>(),
                "haystack {:?}",
                String::from_utf8_lossy(hay)
            );
        }
    }

    /// Patterns written from pieces of regex syntax, many with bytes above
    /// 0x7F, inline flags mid-branch and quantified multi-byte characters
    /// (where the ASCII forms once went wrong: `é?` is `\xC3\xA9?`, and a
    /// `(?i)` in a dropped branch set the flag for the branches after it).
    #[test]
    fn ascii_forms_agree_with_the_oracle(
        pieces in prop::collection::vec(prop::sample::select(vec![
            "a", "b", "A", " ", "(?:", ")", "|", "?", "*", "{0,2}", "[a\\xd1]", "[\\xce][\\xa1]",
            "\\xe9", "é", "é?", "(?i)", "(?!\\xd1)", "(?=a|\\xd1)", "\\W", "\\b", "^", "$",
        ]), 1..12),
        hays in prop::collection::vec(haystack(), 1..4),
    ) {
        let patterns = vec![Pattern::regex(0, pieces.concat())];
        let (naive, report) = Database::compile(&patterns, Backend::Naive);
        prop_assume!(report.counts()[0] == 1);
        let (hs, report) = Database::compile(&patterns, Backend::Hyperscan);
        prop_assume!(report.counts()[3] == 0);
        for hay in &hays {
            prop_assert_eq!(hits(&hs, hay), hits(&naive, hay), "{:?} on {:?}", patterns[0].source, hay);
        }
    }

    #[test]
    fn aho_corasick_equals_naive(
        lits in prop::collection::vec(("[abAB\u{e9} ]{0,4}", any::<bool>()), 1..8),
        hays in prop::collection::vec(haystack(), 1..4),
    ) {
        let patterns: Vec<Pattern> = lits
            .iter()
            .enumerate()
            .map(|(i, (s, c))| Pattern { caseless: *c, ..Pattern::literal(i as u32, s.clone()) })
            .collect();
        for hay in &hays {
            agree(&patterns, hay);
        }
    }
}

/// Bounded repeats are widened into prefilters, classes are split into
/// several databases (long patterns two to a database), and compiling on
/// several threads: none of it changes a hit.
#[test]
fn widened_repeats_parts_and_threads_keep_the_oracles_hits() {
    let (big, msg) = big_set();
    // the 500 regexes of the big set (ids 5000..5500), renumbered densely
    let mut patterns: Vec<Pattern> = big.into_iter().skip(5000).collect();
    for (i, p) in patterns.iter_mut().enumerate() {
        p.id = i as u32;
    }
    // long alternations (the FUZZY_* shape) with bounded repeats inside
    let mut g = Lcg(11);
    for k in 0..5u32 {
        let words: Vec<String> = (0..150).map(|_| g.word(6)).collect();
        let src = format!("\\b(?:{})[ ._-]{{0,3}}(?:1|2){{1,8}}", words.join("|"));
        assert!(src.len() > 1000);
        patterns.push(Pattern::regex(500 + k, src).caseless());
    }
    let mut haystack = msg.clone();
    haystack.extend_from_slice(b"\nfoo ");
    if let Some(p) = patterns.last() {
        let word = &p.source[5..11];
        haystack.extend_from_slice(format!("{} - 1212\n", word.to_uppercase()).as_bytes());
    }
    let (naive, _) = Database::compile(&patterns, Backend::Naive);
    let want = hits(&naive, &haystack);
    assert!(want.contains(&504), "the long pattern hits: {want:?}");
    for threads in [1, 3] {
        let (hs, report) = Database::compile_on(&patterns, Backend::Hyperscan, threads);
        assert_eq!(report.counts()[3], 0, "{report}");
        assert_eq!(hits(&hs, &haystack), want, "threads {threads}");
        assert_eq!(hits(&hs, b"nothing here"), hits(&naive, b"nothing here"));
        // `{w}.{0,20}{v}` has no other reason to be prefiltered
        assert!(
            matches!(report.mode(2), Some(Mode::Prefiltered { reason }) if reason.contains("widened")),
            "{:?}",
            report.mode(2)
        );
    }
}

/// A second compile with the databases the first one cached takes every
/// Hyperscan database from the cache and finds the same hits; a damaged or
/// foreign entry is a miss that compiles afresh.
#[test]
fn cached_databases_give_the_same_hits() {
    let (big, msg) = big_set();
    let mut patterns: Vec<Pattern> = big.into_iter().skip(5000).take(100).collect();
    for (i, p) in patterns.iter_mut().enumerate() {
        p.id = i as u32;
    }
    let (naive, _) = Database::compile(&patterns, Backend::Naive);
    let want = hits(&naive, &msg);

    let first = DatabaseCache::new();
    let (db, _) = Database::compile_cached(&patterns, Backend::Hyperscan, 2, Some(&first));
    assert_eq!(hits(&db, &msg), want);
    assert_eq!(first.hits(), 0);
    let added = first.take_added();
    assert!(
        added.len() >= 3,
        "100 patterns make several parts: {}",
        added.len()
    );

    let mut second = DatabaseCache::new();
    for (key, bytes) in added.clone() {
        second.insert(key, bytes);
    }
    let (db, report) = Database::compile_cached(&patterns, Backend::Hyperscan, 1, Some(&second));
    assert_eq!(second.hits(), added.len());
    assert!(second.take_added().is_empty());
    assert_eq!(second.used().len(), added.len());
    assert_eq!(hits(&db, &msg), want);
    assert_eq!(report.counts()[3], 0);

    let mut damaged = DatabaseCache::new();
    for (key, mut bytes) in added {
        let mid = bytes.len() / 2;
        bytes.truncate(mid);
        damaged.insert(key, bytes);
    }
    let (db, _) = Database::compile_cached(&patterns, Backend::Hyperscan, 1, Some(&damaged));
    assert_eq!(damaged.hits(), 0);
    assert_eq!(hits(&db, &msg), want);
}

/// A start anchor inside a pattern (which Hyperscan refuses even as a
/// prefilter) no longer sends the pattern to the backtracking engine on
/// every haystack: it runs as a prefilter without that anchor, confirmed by
/// the exact pattern, and finds exactly the oracle's hits.
#[test]
fn inner_start_anchors_are_prefiltered_without_them() {
    let p = Pattern::regex(0, r"^Message-Id:.*?^Received:")
        .multiline()
        .dotall()
        .caseless();
    let q = Pattern::regex(
        1,
        r"^List-unsubscribe: (?:[^\n]+\n+){1,40}^(?:Subject|Date): ",
    )
    .multiline()
    .dotall()
    .caseless();
    let (_, report) = Database::compile(&[p.clone(), q.clone()], Backend::Hyperscan);
    for id in [0, 1] {
        assert!(
            matches!(report.mode(id), Some(Mode::Prefiltered { reason }) if reason.contains("inner start anchors")),
            "{:?}",
            report.mode(id)
        );
    }
    let cases: [(&[u8], bool, bool); 5] = [
        (b"Message-Id: <a@b>\nReceived: from x\n", true, false),
        // `Received:` not at a line start: the dropped anchor matters
        (b"Message-Id: <a@b> Received: from x\n", false, false),
        (b"Received: x\nMessage-Id: <a@b>\n", false, false),
        (b"List-Unsubscribe: <u>\nX: y\nSubject: hi\n", false, true),
        (b"List-Unsubscribe: <u>\nX: y Subject: hi\n", false, false),
    ];
    for (haystack, want_p, want_q) in cases {
        assert_eq!(
            one(p.clone(), haystack),
            want_p,
            "{:?}",
            String::from_utf8_lossy(haystack)
        );
        assert_eq!(
            one(q.clone(), haystack),
            want_q,
            "{:?}",
            String::from_utf8_lossy(haystack)
        );
    }
}

/// A prefiltered pattern whose matches cannot take a newline is confirmed
/// from the line of its prefilter's first match, not from the start of the
/// haystack, with the text before that line still its context.
#[test]
fn one_line_patterns_are_confirmed_from_the_first_hits_line() {
    // look-behinds: prefiltered, and their matches stay on one line
    let after_space = Pattern::regex(0, r"(?<=\s)foo[a-z]*bar");
    let not_line_start = Pattern::regex(1, r"(?<![\n])foo[a-z]*bar");
    // a backreference may take a newline: confirmed from the start
    let repeated = Pattern::regex(2, r"(foo)[^x]*\1bar");
    let (db, report) = Database::compile(
        &[
            after_space.clone(),
            not_line_start.clone(),
            repeated.clone(),
        ],
        Backend::Hyperscan,
    );
    assert_eq!(
        db.confirmed_from_line(),
        2,
        "the look-behinds, not the backreference"
    );
    for id in 0..3 {
        assert!(
            matches!(report.mode(id), Some(Mode::Prefiltered { .. })),
            "{:?}",
            report.mode(id)
        );
    }
    let cases: [(&[u8], bool, bool, bool); 6] = [
        // the prefilter's first match is on line 1, the match on line 3
        // (and the backreference's runs across the lines)
        (b"xfoobar\nzzz\n foobar", true, true, true),
        // the newline before the line is the `\s` the look-behind needs
        (b"ab\nfoobar", true, false, false),
        (b"ab\nfoozbar xfoobar", true, true, false),
        (b"a foobar", true, true, false),
        (b"afoobar", false, true, false),
        // a match of the backreference across lines
        (b"foo\nfoobar", true, false, true),
    ];
    for (haystack, want0, want1, want2) in cases {
        let shown = String::from_utf8_lossy(haystack);
        assert_eq!(one(after_space.clone(), haystack), want0, "{shown:?}");
        assert_eq!(one(not_line_start.clone(), haystack), want1, "{shown:?}");
        assert_eq!(one(repeated.clone(), haystack), want2, "{shown:?}");
    }
}

/// A pattern with branches, class members or optional items that need a
/// byte above 0x7F also runs in its ASCII form, on ASCII haystacks only;
/// haystacks with such a byte still get the pattern as written. Either way
/// the hits are the oracle's, in one scan and in a batch mixing both kinds.
#[test]
fn ascii_haystacks_run_the_patterns_ascii_forms() {
    let patterns = vec![
        // a look-alike family: prefiltered (lookahead), confirmed
        Pattern::regex(
            0,
            r"(?!price)(?:[pP\xd1\xf1]|[\xce][\xa1]|[\xd1][\x80])[^\w\n]?(?:[rR]|[\xd0][\xb3])[^\w\n]?(?:[iI1!|]|[\xd1][\x96])[^\w\n]?[cC\xe7]e",
        )
        .caseless(),
        // exact
        Pattern::regex(1, r"\bcaf(?:e|\xc3\xa9)"),
        Pattern::regex(2, r"a[\x7b-\xff]{2,}z"),
        // never on ASCII
        Pattern::regex(3, r"\xd0\xbf[\xd1][\x80]"),
        // nothing to drop
        Pattern::regex(4, r"hel+o"),
    ];
    let (db, _) = Database::compile(&patterns, Backend::Hyperscan);
    assert_eq!(db.ascii_forms(), 3, "ids 0, 1 and 2 have ASCII forms");
    let cases: [(&[u8], &[u32]); 8] = [
        (b"best P-R-1-ce", &[0]),
        (b"best price", &[]),
        ("best \u{440}-R-1-ce".as_bytes(), &[0]),
        (b"a cafe", &[1]),
        ("a caf\u{e9}".as_bytes(), &[1]),
        (b"a{|}z hello", &[2, 4]),
        ("a\u{e9}z \u{43f}\u{440}".as_bytes(), &[2, 3]),
        ("\u{43f}\u{440} hello".as_bytes(), &[3, 4]),
    ];
    for (haystack, want) in cases {
        assert_eq!(
            agree(&patterns, haystack),
            want,
            "{:?}",
            String::from_utf8_lossy(haystack)
        );
    }
    // one batch of both kinds: each haystack gets its own parts
    let mut scratch = db.scratch();
    let mut sets: Vec<HitSet> = cases.iter().map(|_| HitSet::new(db.id_bound())).collect();
    let batch: Vec<(usize, &[u8])> = cases.iter().map(|(h, _)| *h).enumerate().collect();
    db.scan_many(&mut scratch, &batch, &mut sets);
    for ((haystack, want), set) in cases.iter().zip(&sets) {
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            *want,
            "{:?}",
            String::from_utf8_lossy(haystack)
        );
    }
}
