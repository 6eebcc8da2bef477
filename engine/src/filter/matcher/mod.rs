//! Pattern-set matchers: which patterns of a rule class hit a byte haystack.
//!
//! One [`Database`] holds all patterns of a class, compiled for one
//! [`Backend`]:
//!
//! - [`Backend::Hyperscan`]: one block-mode Hyperscan database for every
//!   pattern (`HS_FLAG_SINGLEMATCH`: we need which rules hit, not every offset;
//!   `HS_FLAG_ALLOWEMPTY`: an always-matching rule hits). A pattern Hyperscan
//!   rejects (backreference, lookaround, ...) is compiled with
//!   `HS_FLAG_PREFILTER` and each Hyperscan hit is confirmed by a backtracking
//!   engine (PCRE2; see `Oracle`); a pattern that fails even as a prefilter is
//!   run by that engine on every
//!   scan ("confirm-only"). A pattern with a bounded repeat `{n,m}` is
//!   compiled widened to `{n,}` as a prefilter too (Hyperscan unrolls bounded
//!   repeats, and a few stock rules took tens of seconds each). A class is
//!   split into databases of 32 patterns (2 for very long patterns), since
//!   compile time grows faster than linearly with the set. The
//!   [`CompileReport`] says which pattern runs how and why. A pattern with
//!   branches or class members that need a byte above `0x7F` (the
//!   look-alike families) is also compiled without them, and that form
//!   runs on ASCII haystacks instead (see `ascii`): same hits, smaller
//!   databases for most mail.
//! - [`Backend::AhoCorasick`]: literal lists (one automaton per case mode).
//! - [`Backend::Naive`]: every pattern run one after the other with `regex`
//!   (or PCRE2 / `fancy-regex` where needed): the oracle the other two are tested
//!   against.
//!
//! # Semantics (shared by the three backends)
//!
//! Haystacks are bytes. Patterns mean what Perl gives SpamAssassin on a byte
//! string: `.` is one byte, `\w`/`\d`/`\s`/`\b` are ASCII, case folding is
//! ASCII, a non-ASCII character written in the pattern stands for its UTF-8
//! bytes, and `$` (without multi-line) matches at the end or before a final
//! `\n`. Hyperscan runs without `HS_FLAG_UTF8`; `regex`/`fancy-regex` run on
//! bytes with Unicode off after the rewrites in `translate`. A pattern that
//! asks for Unicode (`\p{..}`, a code point above `\xFF`) is matched by
//! `fancy-regex` in its Unicode-on-bytes mode by every backend (confirm-only
//! under Hyperscan, whose UTF-8 mode is undefined on invalid UTF-8).
//!
//! # Threads
//!
//! Compiling is a plain function (the 2,000 patterns of SpamAssassin's stock
//! rules: about 10 s on two threads with [`Database::compile_on`]): the
//! daemon calls it off the shard cores and ships the [`Database`] as an `Arc`. Each
//! shard owns one [`Scratch`] and calls [`Scratch::fit`] when it swaps in a
//! new database. A scan does not allocate in the steady state.

pub(crate) mod ascii;
pub(crate) mod translate;

use std::fmt::{self, Write as _};
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use hyperscan::prelude::{BlockDatabase, Builder as _, Matching};
use hyperscan::{CompileFlags, HsError};

use self::ascii::AsciiForm;

/// One pattern of a rule class.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pattern {
    /// The rule's id: what [`HitSet`] reports. Ids should be dense (the hit
    /// set is a bitset sized by the largest id).
    pub id: u32,
    /// Perl/PCRE-compatible pattern text, or the exact string when `literal`.
    pub source: String,
    /// ASCII case-insensitive (`/i`).
    pub caseless: bool,
    /// `.` also matches `\n` (`/s`).
    pub dotall: bool,
    /// `^` and `$` also match at line boundaries (`/m`).
    pub multiline: bool,
    /// `source` is an exact string, not a regex.
    pub literal: bool,
}

impl Pattern {
    /// A regex pattern with no flags.
    pub fn regex(id: u32, source: impl Into<String>) -> Self {
        Pattern {
            id,
            source: source.into(),
            ..Pattern::default()
        }
    }

    /// An exact string.
    pub fn literal(id: u32, source: impl Into<String>) -> Self {
        Pattern {
            id,
            source: source.into(),
            literal: true,
            ..Pattern::default()
        }
    }

    /// The same pattern, ASCII case-insensitive.
    #[must_use]
    pub fn caseless(mut self) -> Self {
        self.caseless = true;
        self
    }

    /// The same pattern with `.` matching `\n`.
    #[must_use]
    pub fn dotall(mut self) -> Self {
        self.dotall = true;
        self
    }

    /// The same pattern in multi-line mode.
    #[must_use]
    pub fn multiline(mut self) -> Self {
        self.multiline = true;
        self
    }
}

/// The engine a [`Database`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Hyperscan databases, plus backtracking (PCRE2) confirmation.
    Hyperscan,
    /// aho-corasick automata; literal patterns only (others are rejected).
    AhoCorasick,
    /// Each pattern on its own with `regex`/PCRE2/`fancy-regex`: the oracle.
    Naive,
}

/// How one pattern is run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Run as written by the backend's own engine.
    Exact,
    /// Hyperscan runs a relaxed form (`HS_FLAG_PREFILTER`); each of its hits is
    /// confirmed by the pattern's oracle. `reason`: why the exact form was
    /// refused.
    Prefiltered {
        /// Hyperscan's error for the exact form.
        reason: String,
    },
    /// Not in the Hyperscan database: its oracle runs on every scan.
    ConfirmOnly {
        /// Why Hyperscan cannot run it, even as a prefilter.
        reason: String,
    },
    /// Never matches: the pattern is invalid for this backend.
    Rejected {
        /// The engine's error.
        reason: String,
    },
}

impl Mode {
    /// The mode in reports' words: `exact`, `prefiltered`, `confirm-only`,
    /// `rejected`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Exact => "exact",
            Mode::Prefiltered { .. } => "prefiltered",
            Mode::ConfirmOnly { .. } => "confirm-only",
            Mode::Rejected { .. } => "rejected",
        }
    }

    /// Why the pattern is not run exactly (`None` when it is).
    #[must_use]
    pub fn reason(&self) -> Option<&str> {
        match self {
            Mode::Exact => None,
            Mode::Prefiltered { reason }
            | Mode::ConfirmOnly { reason }
            | Mode::Rejected { reason } => Some(reason),
        }
    }
}

/// The outcome for one pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternReport {
    /// The pattern's id.
    pub id: u32,
    /// How it is run.
    pub mode: Mode,
}

/// Per pattern, how the backend runs it (in input order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompileReport {
    /// One entry per input pattern, in input order.
    pub entries: Vec<PatternReport>,
}

impl CompileReport {
    /// The mode of pattern `id` (its first entry).
    pub fn mode(&self, id: u32) -> Option<&Mode> {
        self.entries.iter().find(|e| e.id == id).map(|e| &e.mode)
    }

    /// How many patterns are exact, prefiltered, confirm-only and rejected.
    pub fn counts(&self) -> [usize; 4] {
        let mut n = [0; 4];
        for e in &self.entries {
            let k = match e.mode {
                Mode::Exact => 0,
                Mode::Prefiltered { .. } => 1,
                Mode::ConfirmOnly { .. } => 2,
                Mode::Rejected { .. } => 3,
            };
            n[k] += 1;
        }
        n
    }
}

impl fmt::Display for CompileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [exact, pre, confirm, rejected] = self.counts();
        write!(
            f,
            "{exact} exact, {pre} prefiltered+confirmed, {confirm} confirm-only, \
             {rejected} rejected"
        )
    }
}

/// Why a scan's hit set may be incomplete (the hits it holds are real).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanIssue {
    /// Hyperscan failed (no scratch, scratch allocation failed, ...).
    Hyperscan(String),
    /// The backtracking engine gave up on pattern `id` (backtrack limit).
    Confirm {
        /// The pattern not decided.
        id: u32,
        /// The backtracking engine's error.
        reason: String,
    },
    /// The haystack is longer than Hyperscan's 4 GiB block limit.
    TooLarge,
}

/// The reusable set of pattern ids that hit.
#[derive(Clone, Debug, Default)]
pub struct HitSet {
    words: Vec<u64>,
    ids: Vec<u32>,
    issue: Option<ScanIssue>,
}

impl HitSet {
    /// An empty set sized for ids below `capacity` (it grows when needed;
    /// [`Database::id_bound`] is the right size).
    pub fn new(capacity: usize) -> Self {
        HitSet {
            words: vec![0; capacity.div_ceil(64)],
            ids: Vec::with_capacity(capacity.min(1024)),
            issue: None,
        }
    }

    /// Empties the set (keeps its memory).
    pub fn clear(&mut self) {
        for &id in &self.ids {
            if let Some(w) = self.words.get_mut(id as usize / 64) {
                *w = 0;
            }
        }
        self.ids.clear();
        self.issue = None;
    }

    /// Adds `id`; true when it was not there yet.
    pub fn insert(&mut self, id: u32) -> bool {
        let (word, bit) = (id as usize / 64, id % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let mask = 1u64 << bit;
        if self.words[word] & mask != 0 {
            return false;
        }
        self.words[word] |= mask;
        self.ids.push(id);
        true
    }

    /// Whether `id` hit.
    pub fn contains(&self, id: u32) -> bool {
        self.words
            .get(id as usize / 64)
            .is_some_and(|w| w & (1u64 << (id % 64)) != 0)
    }

    /// The ids that hit, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let base = i as u32 * 64;
            BitIter(w).map(move |b| base + b)
        })
    }

    /// How many ids hit.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether nothing hit.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Why the last scan may have missed hits, if it may have.
    pub fn issue(&self) -> Option<&ScanIssue> {
        self.issue.as_ref()
    }

    fn report(&mut self, issue: ScanIssue) {
        if self.issue.is_none() {
            self.issue = Some(issue);
        }
    }
}

struct BitIter(u64);

impl Iterator for BitIter {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.0 == 0 {
            return None;
        }
        let b = self.0.trailing_zeros();
        self.0 &= self.0 - 1;
        Some(b)
    }
}

/// Lazy-DFA cache per oracle regex (the `regex` crate's default is 2 MiB).
/// The stock rules' long alternations (__FILL_THIS_FORM_*) thrash a 2 MiB
/// cache on every message and fall back to the much slower PikeVM. The
/// cache is allocated as it fills, per thread.
const ORACLE_DFA_BYTES: usize = 16 << 20;

/// A backtracking or automaton regex that decides one pattern on its own.
#[derive(Debug)]
struct Oracle {
    engine: Engine,
    /// No match can take a newline, so every match lies within one line
    /// (see [`takes_no_newline`]).
    one_line: bool,
}

#[derive(Debug)]
enum Engine {
    Plain(regex::bytes::Regex),
    /// PCRE2 (JIT-compiled, byte mode: Perl's own semantics on bytes, the
    /// pattern's Perl text as written) for what the `regex` crate cannot
    /// run, behind an optional `regex` superset (see
    /// `translate::fancy_superset`) that rejects most haystacks first.
    Pcre(pcre2::bytes::Regex, Option<regex::bytes::Regex>),
    /// `fancy-regex`: patterns that need Unicode semantics, and any PCRE2
    /// refuses.
    Fancy(fancy_regex::Regex, Option<regex::bytes::Regex>),
}

impl Oracle {
    fn compile(p: &Pattern) -> Result<Oracle, String> {
        let (text, fancy, unicode) = if p.literal {
            (translate::escape_literal(&p.source), false, false)
        } else {
            let t = translate::translate(&p.source, p.multiline);
            (t.text, t.needs_fancy || t.needs_unicode, t.needs_unicode)
        };
        if fancy {
            // what the backtracking engines run is judged by its superset
            let superset_text = if unicode {
                None
            } else {
                translate::fancy_superset(&text)
            };
            let one_line = superset_text
                .as_deref()
                .is_some_and(|sup| takes_no_newline(sup, p));
            let superset = || {
                superset_text.as_deref().and_then(|sup| {
                    regex::bytes::RegexBuilder::new(sup)
                        .unicode(false)
                        .dfa_size_limit(ORACLE_DFA_BYTES)
                        .case_insensitive(p.caseless)
                        .multi_line(p.multiline)
                        .dot_matches_new_line(p.dotall)
                        .build()
                        .ok()
                })
            };
            if !unicode {
                let pcre = pcre2::bytes::RegexBuilder::new()
                    .caseless(p.caseless)
                    .multi_line(p.multiline)
                    .dotall(p.dotall)
                    .jit_if_available(true)
                    .build(&p.source);
                if let Ok(re) = pcre {
                    return Ok(Oracle {
                        engine: Engine::Pcre(re, superset()),
                        one_line,
                    });
                }
            }
            let mode = if unicode {
                fancy_regex::BytesMode::UnicodeBytes
            } else {
                fancy_regex::BytesMode::Ascii
            };
            let re = fancy_regex::RegexBuilder::new(&text)
                .bytes_mode(mode)
                .case_insensitive(p.caseless)
                .multi_line(p.multiline)
                .dot_matches_new_line(p.dotall)
                .build()
                .map_err(|e| e.to_string())?;
            Ok(Oracle {
                engine: Engine::Fancy(re, superset()),
                one_line,
            })
        } else {
            let re = regex::bytes::RegexBuilder::new(&text)
                .unicode(false)
                .dfa_size_limit(ORACLE_DFA_BYTES)
                .case_insensitive(p.caseless)
                .multi_line(p.multiline)
                .dot_matches_new_line(p.dotall)
                .build()
                .map_err(|e| e.to_string())?;
            Ok(Oracle {
                engine: Engine::Plain(re),
                one_line: takes_no_newline(&text, p),
            })
        }
    }

    /// Whether the pattern matches `haystack` at `start` or later; the
    /// bytes before `start` are context (look-behind, `\b`, `^`), as in the
    /// whole haystack.
    fn is_match(&self, haystack: &[u8], start: usize) -> Result<bool, String> {
        match &self.engine {
            Engine::Plain(re) => Ok(re.is_match_at(haystack, start)),
            Engine::Pcre(_, Some(superset)) | Engine::Fancy(_, Some(superset))
                if !superset.is_match_at(haystack, start) =>
            {
                Ok(false)
            }
            Engine::Pcre(re, _) => re.is_match_at(haystack, start).map_err(|e| e.to_string()),
            Engine::Fancy(re, _) => re
                .is_match_input(fancy_regex::RegexInput::new(haystack).from_pos(start))
                .map_err(|e| e.to_string()),
        }
    }

    /// Adds `id` to `hits` when the pattern matches at `start` or later.
    fn confirm(&self, id: u32, haystack: &[u8], start: usize, hits: &mut HitSet) {
        match self.is_match(haystack, start) {
            Ok(true) => {
                hits.insert(id);
            }
            Ok(false) => {}
            Err(reason) => hits.report(ScanIssue::Confirm { id, reason }),
        }
    }
}

/// One pattern compiled on its own, with the engine that confirms it (the
/// `regex` crate, else PCRE2, else `fancy-regex`), for counting its
/// matches: SpamAssassin's `tflags multiple`.
#[derive(Debug)]
pub struct Single(Oracle);

impl Single {
    /// Compiles `pattern`; the error says why no engine takes it.
    ///
    /// # Errors
    ///
    /// When no engine compiles the pattern.
    pub fn compile(pattern: &Pattern) -> Result<Self, String> {
        Oracle::compile(pattern).map(Single)
    }

    /// Non-overlapping matches in `haystack`, left to right, at most `max`
    /// (a match error ends the count).
    #[must_use]
    pub fn count(&self, haystack: &[u8], max: usize) -> usize {
        match &self.0.engine {
            Engine::Plain(re) => re.find_iter(haystack).take(max).count(),
            Engine::Pcre(_, Some(superset)) | Engine::Fancy(_, Some(superset))
                if !superset.is_match(haystack) =>
            {
                0
            }
            Engine::Pcre(re, _) => re
                .find_iter(haystack)
                .map_while(Result::ok)
                .take(max)
                .count(),
            Engine::Fancy(re, _) => re
                .find_iter(haystack)
                .map_while(Result::ok)
                .take(max)
                .count(),
        }
    }
}

/// One pattern inside the Hyperscan database (indexed by Hyperscan id).
#[derive(Debug)]
struct HsEntry {
    id: u32,
    /// `Some` when Hyperscan runs a prefilter of the pattern.
    confirm: Option<Arc<Oracle>>,
    /// The confirmation starts at the line of the prefilter's first match
    /// (the oracle's matches stay on one line, and Hyperscan reports this
    /// prefilter's matches in order); otherwise at the start of the
    /// haystack.
    from_line: bool,
}

/// Whether no match of `text`, the `regex`-crate text an oracle runs (or,
/// for a pattern only the backtracking engines run, its superset:
/// lookarounds dropped, a backreference as `(?s:.*)`, which takes a
/// newline), can take a newline with `p`'s flags. Lookarounds read across
/// lines but take nothing. `false` when in doubt.
fn takes_no_newline(text: &str, p: &Pattern) -> bool {
    let parsed = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .case_insensitive(p.caseless)
        .multi_line(p.multiline)
        .dot_matches_new_line(p.dotall)
        .build()
        .parse(text);
    parsed.is_ok_and(|hir| !takes_byte(&hir, b'\n'))
}

/// Whether a match of `hir` can take `byte` (assertions take nothing).
fn takes_byte(hir: &regex_syntax::hir::Hir, byte: u8) -> bool {
    use regex_syntax::hir::{Class, HirKind};
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => false,
        HirKind::Literal(literal) => literal.0.contains(&byte),
        HirKind::Class(Class::Bytes(class)) => class
            .ranges()
            .iter()
            .any(|r| (r.start()..=r.end()).contains(&byte)),
        HirKind::Class(Class::Unicode(class)) => class
            .ranges()
            .iter()
            .any(|r| (r.start()..=r.end()).contains(&char::from(byte))),
        HirKind::Repetition(r) => r.max != Some(0) && takes_byte(&r.sub, byte),
        HirKind::Capture(c) => takes_byte(&c.sub, byte),
        HirKind::Concat(all) | HirKind::Alternation(all) => all.iter().any(|h| takes_byte(h, byte)),
    }
}

/// The start of the line holding offset `at` (just after the last newline
/// before it).
fn line_start(haystack: &[u8], at: usize) -> usize {
    memchr::memrchr(b'\n', &haystack[..at.min(haystack.len())]).map_or(0, |i| i + 1)
}

struct HsPart {
    db: BlockDatabase,
    entries: Vec<HsEntry>,
    scope: Scope,
}

/// Which haystacks a database part runs on. A pattern with an ASCII form
/// (see [`ascii`]) is in two parts: as written, for haystacks with a byte
/// above `0x7F`, and in its ASCII form, for the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    All,
    NotAscii,
    Ascii,
}

impl Scope {
    fn takes(self, ascii: bool) -> bool {
        match self {
            Scope::All => true,
            Scope::NotAscii => !ascii,
            Scope::Ascii => ascii,
        }
    }
}

impl fmt::Debug for HsPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HsPart")
            .field("entries", &self.entries.len())
            .field("scope", &self.scope)
            .finish()
    }
}

#[derive(Debug)]
struct AcPart {
    automaton: AhoCorasick,
    ids: Vec<u32>,
}

/// A compiled pattern set. `Send + Sync`: share it across shards as an `Arc`.
#[derive(Debug)]
pub struct Database {
    backend: Backend,
    len: usize,
    id_bound: usize,
    hyperscan: Vec<HsPart>,
    automata: Vec<AcPart>,
    /// Run one after the other on every scan: the whole set for
    /// [`Backend::Naive`], the confirm-only patterns for Hyperscan.
    oracles: Vec<(u32, Arc<Oracle>)>,
    /// Some Hyperscan parts run only on ASCII haystacks, some only on the
    /// others.
    scoped: bool,
}

/// Per-shard (per-thread) scan state: the Hyperscan scratch and buffers.
#[derive(Default)]
pub struct Scratch {
    hyperscan: Option<hyperscan::Scratch>,
    error: Option<String>,
    /// Prefilter hits of one scan: entry index and end offset.
    candidates: Vec<(u32, usize)>,
    /// Per haystack of a scan, whether it is ASCII (for scoped parts).
    ascii: Vec<bool>,
}

impl fmt::Debug for Scratch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scratch")
            .field("size", &self.size())
            .field("error", &self.error)
            .finish()
    }
}

impl Scratch {
    /// Makes this scratch fit `db` (reallocates the Hyperscan scratch when the
    /// new database needs more; call it when swapping in a new database).
    pub fn fit(&mut self, db: &Database) {
        self.error = None;
        for hs in &db.hyperscan {
            let result = match &mut self.hyperscan {
                Some(s) => hs.db.realloc_scratch(s).map(|_| ()),
                None => hs.db.alloc_scratch().map(|s| self.hyperscan = Some(s)),
            };
            if let Err(e) = result {
                self.error = Some(format!("scratch allocation: {e}"));
            }
            if self.candidates.capacity() < hs.entries.len() {
                self.candidates
                    .reserve(hs.entries.len() - self.candidates.len());
            }
        }
    }

    /// Bytes of Hyperscan scratch held (0 when none).
    pub fn size(&self) -> usize {
        self.hyperscan
            .as_ref()
            .and_then(|s| s.size().ok())
            .unwrap_or(0)
    }
}

/// One database's share of a class: its index among the parts, and the
/// plans, Hyperscan texts and patterns of its members, with their ASCII
/// forms when they have them.
type PartWork<'a> = (
    usize,
    &'a mut [Plan],
    &'a [String],
    &'a [Pattern],
    Option<&'a [(AsciiForm, bool)]>,
);

/// What compiling one pattern for Hyperscan decided so far.
enum Plan {
    Exact,
    /// Why, the oracle, and whether Hyperscan reports the prefilter's
    /// matches in order (`hs_expression_info`, asked while planning: a
    /// database from the cache does not ask again).
    Prefilter(String, Arc<Oracle>, bool),
    /// In the database as a prefilter; its oracle moved into the database.
    Confirmed(String),
    ConfirmOnly(String, Arc<Oracle>),
    Rejected(String),
}

impl Database {
    /// Compiles `patterns` for `backend`. Every pattern gets an entry in the
    /// report; rejected ones never hit. This is slow (seconds for thousands
    /// of patterns on Hyperscan): never call it on a shard core.
    pub fn compile(patterns: &[Pattern], backend: Backend) -> (Database, CompileReport) {
        Self::compile_on(patterns, backend, 1)
    }

    /// [`Database::compile`] on up to `threads` threads (scoped; all joined
    /// before it returns). The result does not depend on `threads`.
    pub fn compile_on(
        patterns: &[Pattern],
        backend: Backend,
        threads: usize,
    ) -> (Database, CompileReport) {
        Self::compile_cached(patterns, backend, threads, None)
    }

    /// [`Database::compile_on`], taking Hyperscan databases from `cache`
    /// where it has them and adding the ones it compiles.
    pub fn compile_cached(
        patterns: &[Pattern],
        backend: Backend,
        threads: usize,
        cache: Option<&DatabaseCache>,
    ) -> (Database, CompileReport) {
        Self::compile_with(patterns, backend, threads, cache, true)
    }

    fn compile_with(
        patterns: &[Pattern],
        backend: Backend,
        threads: usize,
        cache: Option<&DatabaseCache>,
        ascii_forms: bool,
    ) -> (Database, CompileReport) {
        let id_bound = patterns
            .iter()
            .map(|p| p.id as usize + 1)
            .max()
            .unwrap_or(0);
        let mut db = Database {
            backend,
            len: 0,
            id_bound,
            hyperscan: Vec::new(),
            automata: Vec::new(),
            oracles: Vec::new(),
            scoped: false,
        };
        let modes = match backend {
            Backend::Naive => db.compile_naive(patterns),
            Backend::AhoCorasick => db.compile_aho_corasick(patterns),
            Backend::Hyperscan => db.compile_hyperscan(patterns, threads, cache, ascii_forms),
        };
        db.len = modes
            .iter()
            .filter(|m| !matches!(m, Mode::Rejected { .. }))
            .count();
        let entries = patterns
            .iter()
            .zip(modes)
            .map(|(p, mode)| PatternReport { id: p.id, mode })
            .collect();
        (db, CompileReport { entries })
    }

    fn compile_naive(&mut self, patterns: &[Pattern]) -> Vec<Mode> {
        patterns
            .iter()
            .map(|p| match Oracle::compile(p) {
                Ok(o) => {
                    self.oracles.push((p.id, Arc::new(o)));
                    Mode::Exact
                }
                Err(reason) => Mode::Rejected { reason },
            })
            .collect()
    }

    fn compile_aho_corasick(&mut self, patterns: &[Pattern]) -> Vec<Mode> {
        let mut modes: Vec<Mode> = patterns
            .iter()
            .map(|p| {
                if p.literal {
                    Mode::Exact
                } else {
                    Mode::Rejected {
                        reason: "not a literal: the aho-corasick backend runs literal lists only"
                            .to_owned(),
                    }
                }
            })
            .collect();
        for caseless in [false, true] {
            let members: Vec<usize> = (0..patterns.len())
                .filter(|&i| patterns[i].literal && patterns[i].caseless == caseless)
                .collect();
            if members.is_empty() {
                continue;
            }
            let built = AhoCorasick::builder()
                .ascii_case_insensitive(caseless)
                .match_kind(MatchKind::Standard)
                .build(members.iter().map(|&i| patterns[i].source.as_bytes()));
            match built {
                Ok(automaton) => self.automata.push(AcPart {
                    automaton,
                    ids: members.iter().map(|&i| patterns[i].id).collect(),
                }),
                Err(e) => {
                    for &i in &members {
                        modes[i] = Mode::Rejected {
                            reason: e.to_string(),
                        };
                    }
                }
            }
        }
        modes
    }

    fn compile_hyperscan(
        &mut self,
        patterns: &[Pattern],
        threads: usize,
        cache: Option<&DatabaseCache>,
        ascii_forms: bool,
    ) -> Vec<Mode> {
        let mut plans: Vec<Plan> = Vec::with_capacity(patterns.len());
        let mut texts: Vec<String> = Vec::with_capacity(patterns.len());
        for p in patterns {
            let (mut text, unicode) = if p.literal {
                (translate::escape_literal(&p.source), false)
            } else {
                let t = translate::translate(&p.source, p.multiline);
                (translate::hyperscan_text(&p.source), t.needs_unicode)
            };
            let relaxed = if p.literal || unicode {
                None
            } else {
                translate::relax_bounded_repeats(&text, WIDEN_MIN_UPPER)
            };
            let plan = if unicode {
                demote(
                    p,
                    "needs Unicode semantics (\\p{..} or a code point above \\xFF); \
                     Hyperscan's UTF-8 mode is undefined on invalid UTF-8"
                        .to_owned(),
                    None,
                )
            } else if let Some((wide, oracle, ordered)) = relaxed
                .and_then(|wide| in_order(&wide, p).map(|ordered| (wide, ordered)))
                // widening needs a confirming engine: a pattern only
                // Hyperscan reads (octal escapes, say) stays exact
                .and_then(|(wide, ordered)| {
                    Oracle::compile(p)
                        .ok()
                        .map(|o| (wide, Arc::new(o), ordered))
                })
            {
                text = wide;
                Plan::Prefilter(WIDENED.to_owned(), oracle, ordered)
            } else {
                match hs_pattern(&text, p, false)
                    .info()
                    .map_err(|e| (in_order(&text, p), e))
                {
                    Ok(_) => Plan::Exact,
                    Err((Some(ordered), e)) => demote(p, hs_message(&e), Some(ordered)),
                    Err((None, e)) => {
                        // A start anchor inside the pattern: without it,
                        // a prefilter (widened too, if it can be).
                        let base = translate::relax_bounded_repeats(&text, WIDEN_MIN_UPPER)
                            .unwrap_or_else(|| text.clone());
                        match translate::drop_inner_start_anchors(&base)
                            .and_then(|loose| in_order(&loose, p).map(|ordered| (loose, ordered)))
                            .and_then(|(loose, ordered)| {
                                Oracle::compile(p)
                                    .ok()
                                    .map(|o| (loose, Arc::new(o), ordered))
                            }) {
                            Some((loose, oracle, ordered)) => {
                                text = loose;
                                Plan::Prefilter(
                                    format!(
                                        "{}; prefiltered without its inner start anchors",
                                        hs_message(&e).trim_end_matches('.')
                                    ),
                                    oracle,
                                    ordered,
                                )
                            }
                            None => demote(p, hs_message(&e), None),
                        }
                    }
                }
            };
            plans.push(plan);
            texts.push(text);
        }
        // A pattern with an ASCII form (see `ascii`) runs as written on
        // haystacks with a byte above 0x7F and in that form on the others:
        // most mail is ASCII, and the look-alike families are far smaller
        // without their Latin-1, Greek and Cyrillic branches.
        // (With each form, whether Hyperscan reports its prefilter's matches
        // in order.)
        let forms: Vec<(AsciiForm, bool)> = plans
            .iter()
            .zip(&texts)
            .zip(patterns)
            .map(|((plan, text), p)| {
                let prefilter = match plan {
                    _ if !ascii_forms => return (AsciiForm::Same, false),
                    Plan::Exact => false,
                    Plan::Prefilter(..) => true,
                    _ => return (AsciiForm::Same, false),
                };
                match ascii::ascii_only(text) {
                    AsciiForm::Text(t) => match hs_pattern(&t, p, prefilter).info() {
                        Ok(info) => (AsciiForm::Text(t), prefilter && !info.unordered_matches()),
                        Err(_) => (AsciiForm::Same, false),
                    },
                    form => (form, false),
                }
            })
            .collect();
        // Hyperscan's compile time grows faster than linearly with the
        // number and size of the patterns in one database: a class is split
        // into parts (PART_PATTERNS short patterns, or HEAVY_PART long ones
        // such as the FUZZY_* alternations), compiled on up to `threads`
        // threads. `order` lists the patterns without an ASCII form first,
        // then those with one; in each, the short before the long.
        let heavy = |i: usize| texts[i].len() >= HEAVY_TEXT;
        let split = |i: usize| !matches!(forms[i].0, AsciiForm::Same);
        let kind = |i: usize| (split(i), heavy(i));
        let mut order: Vec<usize> = (0..patterns.len()).collect();
        order.sort_by_key(|&i| kind(i));
        let mut part_plans: Vec<Plan> = order
            .iter()
            .map(|&i| std::mem::replace(&mut plans[i], Plan::Exact))
            .collect();
        let part_texts: Vec<String> = order.iter().map(|&i| texts[i].clone()).collect();
        let part_patterns: Vec<Pattern> = order.iter().map(|&i| patterns[i].clone()).collect();
        let part_forms: Vec<(AsciiForm, bool)> = order.iter().map(|&i| forms[i].clone()).collect();
        let mut work: Vec<Vec<PartWork<'_>>> = (0..threads.max(1)).map(|_| Vec::new()).collect();
        {
            let (mut rest_plans, mut rest_texts, mut rest_patterns, mut rest_forms) = (
                part_plans.as_mut_slice(),
                part_texts.as_slice(),
                part_patterns.as_slice(),
                part_forms.as_slice(),
            );
            let mut at = 0usize;
            let mut k = 0usize;
            while !rest_plans.is_empty() {
                let (split, heavy) = kind(order[at]);
                let same = order[at..]
                    .iter()
                    .take_while(|&&i| kind(i) == (split, heavy))
                    .count();
                let size = if heavy { HEAVY_PART } else { PART_PATTERNS }.min(same);
                let (p, pr) = std::mem::take(&mut rest_plans).split_at_mut(size);
                let (t, tr) = rest_texts.split_at(size);
                let (q, qr) = rest_patterns.split_at(size);
                let (f, fr) = rest_forms.split_at(size);
                (rest_plans, rest_texts, rest_patterns, rest_forms) = (pr, tr, qr, fr);
                let bucket = k % work.len();
                work[bucket].push((k, p, t, q, split.then_some(f)));
                at += size;
                k += 1;
            }
        }
        let build_all = |list: Vec<PartWork<'_>>| {
            list.into_iter()
                .flat_map(|(k, plans, texts, patterns, forms)| {
                    build_parts(plans, texts, patterns, forms, cache)
                        .into_iter()
                        .map(move |part| (k, part))
                })
                .collect::<Vec<_>>()
        };
        let mut parts: Vec<(usize, HsPart)> = if work.len() == 1 {
            work.into_iter().flat_map(build_all).collect()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = work
                    .into_iter()
                    .map(|list| scope.spawn(move || build_all(list)))
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            })
        };
        parts.sort_by_key(|(k, _)| *k);
        self.hyperscan = parts.into_iter().map(|(_, part)| part).collect();
        self.scoped = self.hyperscan.iter().any(|p| p.scope != Scope::All);
        for (plan, &i) in part_plans.into_iter().zip(&order) {
            plans[i] = plan;
        }
        let mut modes = Vec::with_capacity(patterns.len());
        for (p, plan) in patterns.iter().zip(plans) {
            modes.push(match plan {
                Plan::Exact => Mode::Exact,
                Plan::Prefilter(reason, ..) | Plan::Confirmed(reason) => {
                    Mode::Prefiltered { reason }
                }
                Plan::Rejected(reason) => Mode::Rejected { reason },
                Plan::ConfirmOnly(reason, oracle) => {
                    self.oracles.push((p.id, oracle));
                    Mode::ConfirmOnly { reason }
                }
            });
        }
        modes
    }

    /// [`Database::compile_on`] for Hyperscan, every pattern as written on
    /// every haystack (no ASCII forms): for measuring what they gain.
    #[doc(hidden)]
    pub fn compile_without_ascii_forms(
        patterns: &[Pattern],
        threads: usize,
    ) -> (Database, CompileReport) {
        Self::compile_with(patterns, Backend::Hyperscan, threads, None, false)
    }

    /// A scratch fitted to this database.
    pub fn scratch(&self) -> Scratch {
        let mut s = Scratch::default();
        s.fit(self);
        s
    }

    /// Adds the ids of the patterns that match `haystack` to `hits` (call
    /// [`HitSet::clear`] between messages). If a hit may be missing,
    /// [`HitSet::issue`] says why.
    pub fn scan(&self, scratch: &mut Scratch, haystack: &[u8], hits: &mut HitSet) {
        self.scan_many(scratch, &[(0, haystack)], std::slice::from_mut(hits));
    }

    /// [`Database::scan`] of several haystacks, each `(i, haystack)` adding
    /// to `hits[i]` (several haystacks may share one hit set). Each part of
    /// the database runs over every haystack before the next part starts,
    /// so a part is read from memory once per call instead of once per
    /// haystack: the stock rules' databases are larger than the caches.
    pub fn scan_many(
        &self,
        scratch: &mut Scratch,
        haystacks: &[(usize, &[u8])],
        hits: &mut [HitSet],
    ) {
        let ascii = self.ascii_flags(scratch, haystacks.iter().map(|(_, h)| *h));
        for hs in &self.hyperscan {
            for (n, &(i, haystack)) in haystacks.iter().enumerate() {
                if !hs.scope.takes(ascii.get(n).copied().unwrap_or(false)) {
                    continue;
                }
                if let Some(hits) = hits.get_mut(i) {
                    scan_hyperscan(hs, scratch, haystack, hits);
                }
            }
        }
        scratch.ascii = ascii;
        for part in &self.automata {
            for &(i, haystack) in haystacks {
                let Some(hits) = hits.get_mut(i) else {
                    continue;
                };
                for m in part.automaton.find_overlapping_iter(haystack) {
                    if let Some(&id) = part.ids.get(m.pattern().as_usize()) {
                        hits.insert(id);
                    }
                }
            }
        }
        for (id, oracle) in &self.oracles {
            for &(i, haystack) in haystacks {
                if let Some(hits) = hits.get_mut(i) {
                    if !hits.contains(*id) {
                        oracle.confirm(*id, haystack, 0, hits);
                    }
                }
            }
        }
    }

    /// The floor of [`Database::scan`]: only the Hyperscan databases, hits
    /// not confirmed, no oracles, no literal automata. Returns how many
    /// (prefilter) hits were reported. For measuring what the rest costs.
    pub fn scan_unconfirmed(&self, scratch: &mut Scratch, haystack: &[u8]) -> usize {
        self.scan_unconfirmed_many(scratch, &[haystack])
    }

    /// [`Database::scan_unconfirmed`] of several haystacks, part by part as
    /// [`Database::scan_many`] runs.
    pub fn scan_unconfirmed_many(&self, scratch: &mut Scratch, haystacks: &[&[u8]]) -> usize {
        let ascii = self.ascii_flags(scratch, haystacks.iter().copied());
        let mut n = 0usize;
        for hs in &self.hyperscan {
            let Some(s) = scratch.hyperscan.as_mut() else {
                break;
            };
            for (k, haystack) in haystacks.iter().enumerate() {
                if !hs.scope.takes(ascii.get(k).copied().unwrap_or(false)) {
                    continue;
                }
                let _ = hs.db.scan(*haystack, s, |_, _, _, _| {
                    n += 1;
                    Matching::Continue
                });
            }
        }
        scratch.ascii = ascii;
        n
    }

    /// Whether each haystack is ASCII; empty when every part runs on every
    /// haystack. The buffer is the scratch's: the caller hands it back.
    fn ascii_flags<'h>(
        &self,
        scratch: &mut Scratch,
        haystacks: impl Iterator<Item = &'h [u8]>,
    ) -> Vec<bool> {
        let mut ascii = std::mem::take(&mut scratch.ascii);
        ascii.clear();
        if self.scoped {
            ascii.extend(haystacks.map(<[u8]>::is_ascii));
        }
        ascii
    }

    /// The backend this database was compiled for.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Patterns that can hit (all but the rejected ones).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no pattern can hit.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// One more than the largest pattern id: the capacity for [`HitSet::new`].
    pub fn id_bound(&self) -> usize {
        self.id_bound
    }

    /// Patterns run by the backtracking engine on every scan.
    pub fn confirm_only(&self) -> usize {
        match self.backend {
            Backend::Hyperscan => self.oracles.len(),
            _ => 0,
        }
    }

    /// Patterns that run in their ASCII form on ASCII haystacks (see
    /// [`ascii`]); the others run as written on every haystack.
    pub fn ascii_forms(&self) -> usize {
        self.hyperscan
            .iter()
            .filter(|p| p.scope == Scope::Ascii)
            .map(|p| p.entries.len())
            .sum()
    }

    /// Prefiltered patterns whose hits are confirmed from the line of the
    /// prefilter's first match (their matches cannot take a newline); the
    /// others are confirmed over the whole haystack.
    pub fn confirmed_from_line(&self) -> usize {
        self.hyperscan
            .iter()
            .filter(|p| p.scope != Scope::Ascii)
            .flat_map(|p| &p.entries)
            .filter(|e| e.from_line)
            .count()
    }

    /// Size in bytes of the Hyperscan database (0 for other backends).
    pub fn hyperscan_size(&self) -> usize {
        self.hyperscan
            .iter()
            .map(|h| h.db.size().unwrap_or(0))
            .sum()
    }
}

fn scan_hyperscan(hs: &HsPart, scratch: &mut Scratch, haystack: &[u8], hits: &mut HitSet) {
    if u32::try_from(haystack.len()).is_err() {
        hits.report(ScanIssue::TooLarge);
        return;
    }
    if scratch.hyperscan.is_none() {
        hits.report(ScanIssue::Hyperscan(
            scratch
                .error
                .clone()
                .unwrap_or_else(|| "no scratch: call Scratch::fit".to_owned()),
        ));
        return;
    }
    scratch.candidates.clear();
    let mut result = Ok(());
    for attempt in 0..2 {
        let Scratch {
            hyperscan: Some(s),
            candidates,
            ..
        } = scratch
        else {
            return;
        };
        result = hs.db.scan(haystack, s, |index: u32, _from, to, _flags| {
            if let Some(entry) = hs.entries.get(index as usize) {
                if entry.confirm.is_some() {
                    candidates.push((index, usize::try_from(to).unwrap_or(usize::MAX)));
                } else {
                    hits.insert(entry.id);
                }
            }
            Matching::Continue
        });
        // a scratch from an older, smaller database: fit it once and retry
        if attempt == 0 && matches!(result, Err(hyperscan::Error::Hyperscan(HsError::Invalid))) {
            scratch.fit_hyperscan(hs);
            scratch.candidates.clear();
            continue;
        }
        break;
    }
    if let Err(e) = result {
        hits.report(ScanIssue::Hyperscan(e.to_string()));
    }
    // One match per pattern (single-match mode), the first: no match of
    // the pattern ends before it, since a prefilter's matches are a
    // superset of the pattern's. A pattern whose matches stay on one line
    // is confirmed from that line on, with the text before it as context.
    for &(index, to) in &scratch.candidates {
        if let Some(HsEntry {
            id,
            confirm: Some(oracle),
            from_line,
        }) = hs.entries.get(index as usize)
        {
            if !hits.contains(*id) {
                let start = if *from_line {
                    line_start(haystack, to)
                } else {
                    0
                };
                oracle.confirm(*id, haystack, start, hits);
            }
        }
    }
}

impl Scratch {
    fn fit_hyperscan(&mut self, hs: &HsPart) {
        if let Some(s) = &mut self.hyperscan {
            if let Err(e) = hs.db.realloc_scratch(s) {
                self.error = Some(format!("scratch allocation: {e}"));
            }
        }
    }
}

/// The Hyperscan parts of one share of a class: one part for every haystack;
/// or, when `forms` gives the members' ASCII forms, the members as written
/// for haystacks with a byte above `0x7F` and their ASCII forms for the
/// others. A member without an ASCII part (it can never match ASCII) is
/// only in the first. Should the ASCII part not compile as planned, the
/// members as written serve every haystack.
fn build_parts(
    plans: &mut [Plan],
    texts: &[String],
    patterns: &[Pattern],
    forms: Option<&[(AsciiForm, bool)]>,
    cache: Option<&DatabaseCache>,
) -> Vec<HsPart> {
    let Some((mut wide, members)) = build_part(plans, texts, patterns, cache) else {
        return Vec::new();
    };
    let Some(forms) = forms else {
        return vec![wide];
    };
    // the ASCII forms of the members that made it into the database, run
    // as those members run: exact, or prefiltered and confirmed by the
    // same oracle (the pattern as written, which is exact on any haystack)
    let mut narrow_plans = Vec::new();
    let mut narrow_texts = Vec::new();
    let mut narrow_patterns = Vec::new();
    for (entry, &i) in wide.entries.iter().zip(&members) {
        let (AsciiForm::Text(text), ordered) = &forms[i] else {
            continue;
        };
        narrow_plans.push(match &entry.confirm {
            Some(oracle) => Plan::Prefilter(String::new(), Arc::clone(oracle), *ordered),
            None => Plan::Exact,
        });
        narrow_texts.push(text.clone());
        narrow_patterns.push(patterns[i].clone());
    }
    wide.scope = Scope::NotAscii;
    if narrow_plans.is_empty() {
        return vec![wide];
    }
    let narrow = build_part(&mut narrow_plans, &narrow_texts, &narrow_patterns, cache);
    // every form in the database, none demoted out of it
    let complete = narrow_plans
        .iter()
        .all(|p| matches!(p, Plan::Exact | Plan::Confirmed(_)));
    match narrow {
        Some((mut narrow, _)) if complete => {
            narrow.scope = Scope::Ascii;
            vec![wide, narrow]
        }
        _ => {
            wide.scope = Scope::All;
            vec![wide]
        }
    }
}

/// Builds one Hyperscan database of the patterns whose plan puts them in it,
/// with the indices of its members. A pattern can pass
/// `hs_expression_info` and still fail the database compile (size limits):
/// it is demoted one step and the rest compiled again.
fn build_part(
    plans: &mut [Plan],
    texts: &[String],
    patterns: &[Pattern],
    cache: Option<&DatabaseCache>,
) -> Option<(HsPart, Vec<usize>)> {
    for attempt in 0..=2 * patterns.len() {
        let mut in_db: Vec<usize> = Vec::new();
        let mut list: Vec<hyperscan::Pattern> = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            let prefilter = match plan {
                Plan::Exact => false,
                Plan::Prefilter(..) => true,
                _ => continue,
            };
            let mut hp = hs_pattern(&texts[i], &patterns[i], prefilter);
            hp.id = Some(in_db.len());
            in_db.push(i);
            list.push(hp);
        }
        if list.is_empty() {
            break;
        }
        // The first attempt's pattern list is the cache key (a database
        // that needed demotions is not cached: it compiles again).
        let spec = (attempt == 0)
            .then(|| cache.map(|_| spec_of(&list)))
            .flatten();
        let cached = match (cache, &spec) {
            (Some(c), Some(spec)) => c.get(spec),
            _ => None,
        };
        let built = match cached {
            Some(db) => Ok(db),
            None => {
                let built = hyperscan::Patterns(list).build::<hyperscan::Block>();
                if let (Some(c), Some(spec), Ok(db)) = (cache, spec, &built) {
                    c.add(spec, db);
                }
                built
            }
        };
        match built {
            Ok(db) => {
                let mut entries = Vec::with_capacity(in_db.len());
                for &i in &in_db {
                    // Hyperscan reports an expression's matches in order
                    // unless it says otherwise, so its one report is its
                    // first match
                    let (confirm, ordered) = match std::mem::replace(&mut plans[i], Plan::Exact) {
                        Plan::Prefilter(reason, oracle, ordered) => {
                            plans[i] = Plan::Confirmed(reason);
                            (Some(oracle), ordered)
                        }
                        other => {
                            plans[i] = other;
                            (None, false)
                        }
                    };
                    let from_line = ordered && confirm.as_ref().is_some_and(|o| o.one_line);
                    entries.push(HsEntry {
                        id: patterns[i].id,
                        confirm,
                        from_line,
                    });
                }
                return Some((
                    HsPart {
                        db,
                        entries,
                        scope: Scope::All,
                    },
                    in_db,
                ));
            }
            Err(e) => {
                let message = hs_message(&e);
                let culprit = match &e {
                    hyperscan::Error::Hyperscan(HsError::CompileError(ce)) => {
                        ce.expression().and_then(|k| in_db.get(k).copied())
                    }
                    _ => None,
                };
                match culprit {
                    Some(i) => {
                        let p = &patterns[i];
                        plans[i] = match std::mem::replace(&mut plans[i], Plan::Exact) {
                            Plan::Exact => {
                                demote(p, message, Some(in_order(&texts[i], p).unwrap_or(false)))
                            }
                            Plan::Prefilter(_, o, _) => Plan::ConfirmOnly(message, o),
                            other => other,
                        };
                    }
                    None => {
                        // not attributable: nothing runs on Hyperscan
                        for (i, p) in patterns.iter().enumerate() {
                            if matches!(plans[i], Plan::Exact | Plan::Prefilter(..)) {
                                let reason = format!("database compile failed: {message}");
                                plans[i] = demote(p, reason, None);
                            }
                        }
                    }
                }
            }
        }
    }
    None
}

/// The exact Hyperscan input of a database, as the cache's key: every
/// pattern's flags, id and expression, length-prefixed.
fn spec_of(list: &[hyperscan::Pattern]) -> String {
    let mut spec = String::new();
    for p in list {
        let _ = writeln!(
            spec,
            "{}:{:?}:{:?}:{}",
            p.expression.len(),
            p.flags,
            p.id,
            p.expression
        );
    }
    spec
}

/// Compiled Hyperscan databases kept between runs, so that a restart does
/// not compile the rules again (the stock rules: 11–16 s of compiling, about
/// 1 s with every database cached). The engine does no I/O: the caller loads
/// the entries it stored ([`DatabaseCache::insert`]), compiles with the cache
/// ([`Database::compile_cached`]), then stores [`DatabaseCache::take_added`].
///
/// An entry is keyed by the exact pattern list it was compiled from (flags,
/// ids, expressions), so a hit is that very database. It is used only when
/// its Hyperscan version, CPU features and mode equal what this process
/// would build (`hs_serialized_database_info`); anything else, including
/// damaged bytes, is a miss and compiles afresh.
#[derive(Default)]
pub struct DatabaseCache {
    known: std::collections::HashMap<String, Vec<u8>>,
    platform: std::sync::OnceLock<Option<String>>,
    added: std::sync::Mutex<Vec<(String, Vec<u8>)>>,
    used: std::sync::Mutex<Vec<String>>,
    hits: std::sync::atomic::AtomicUsize,
}

impl fmt::Debug for DatabaseCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseCache")
            .field("known", &self.known.len())
            .field("hits", &self.hits())
            .finish_non_exhaustive()
    }
}

impl DatabaseCache {
    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A stored entry: the key as [`DatabaseCache::take_added`] gave it, and
    /// the serialized database.
    pub fn insert(&mut self, key: String, bytes: Vec<u8>) {
        self.known.insert(key, bytes);
    }

    /// The databases compiled (not found) since the cache was made: store
    /// them.
    pub fn take_added(&self) -> Vec<(String, Vec<u8>)> {
        std::mem::take(
            &mut *self
                .added
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Keys of every entry hit or added: what a compile of the same rules
    /// needs. Stored entries not among them can be dropped.
    pub fn used(&self) -> Vec<String> {
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Databases taken from the cache instead of compiled.
    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What this process's Hyperscan builds: version, CPU features, mode.
    fn platform(&self) -> Option<&String> {
        self.platform
            .get_or_init(|| {
                let probe =
                    hyperscan::Patterns(vec![hs_pattern("a", &Pattern::regex(0, "a"), false)])
                        .build::<hyperscan::Block>()
                        .ok()?;
                let bytes = probe.serialize().ok()?;
                hyperscan::Serialized::info(&bytes.as_ref()).ok()
            })
            .as_ref()
    }

    fn get(&self, key: &str) -> Option<BlockDatabase> {
        use hyperscan::Serialized as _;
        let bytes = self.known.get(key)?;
        let platform = self.platform()?;
        if bytes.info().ok().as_ref() != Some(platform) {
            return None;
        }
        let db: BlockDatabase = bytes.deserialize().ok()?;
        self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.mark_used(key);
        Some(db)
    }

    fn add(&self, key: String, db: &BlockDatabase) {
        let Ok(bytes) = db.serialize() else {
            return;
        };
        self.mark_used(&key);
        self.added
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((key, bytes.as_ref().to_vec()));
    }

    fn mark_used(&self, key: &str) {
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(key.to_owned());
    }
}

/// Patterns per Hyperscan database: compile time grows faster than linearly
/// with the set (the stock rules' 576 body patterns: 40 s as one database,
/// 20 s in parts of 32), and every part is one more pass over the haystack.
const PART_PATTERNS: usize = 32;

/// Patterns whose text is at least this long (the FUZZY_* and
/// __FILL_THIS_FORM_* families: thousands of bytes of alternations) are
/// compiled HEAVY_PART to a database: one such pattern takes 0.1 to 1 s on
/// its own, and a few together take far longer than the sum.
const HEAVY_TEXT: usize = 1000;
const HEAVY_PART: usize = 2;

/// The reason reported for a pattern whose bounded repeats were widened (see
/// `translate::relax_bounded_repeats`).
const WIDENED: &str = "bounded repeat widened to {n,} for Hyperscan (an exact \
                       {n,m} compiles too slowly); hits confirmed with the exact pattern";

/// Bounded repeats with an upper bound at least this are widened. Widening
/// every repeat (rather than only wide ones, say 16 and up) cuts the stock
/// rules' compile time from 40 s to 20 s at no measurable cost in
/// confirmations: the prefilter hits that cost confirmation time come from
/// lookaround and backreferences, not from widened repeats.
const WIDEN_MIN_UPPER: u32 = 2;

/// Whether `text` compiles as a Hyperscan prefilter of `p` (`Some`), and
/// whether Hyperscan then reports its matches in order.
fn in_order(text: &str, p: &Pattern) -> Option<bool> {
    hs_pattern(text, p, true)
        .info()
        .ok()
        .map(|info| !info.unordered_matches())
}

/// The Hyperscan form of a pattern.
fn hs_pattern(text: &str, p: &Pattern, prefilter: bool) -> hyperscan::Pattern {
    let mut flags = CompileFlags::SINGLEMATCH | CompileFlags::ALLOWEMPTY;
    if p.caseless {
        flags |= CompileFlags::CASELESS;
    }
    if !p.literal {
        if p.dotall {
            flags |= CompileFlags::DOTALL;
        }
        if p.multiline {
            flags |= CompileFlags::MULTILINE;
        }
    }
    if prefilter {
        flags |= CompileFlags::PREFILTER;
    }
    hyperscan::Pattern {
        expression: text.to_owned(),
        flags,
        id: None,
        ext: Default::default(),
        som: None,
    }
}

fn hs_message(e: &hyperscan::Error) -> String {
    match e {
        hyperscan::Error::Hyperscan(HsError::CompileError(ce)) => ce.message().to_owned(),
        other => other.to_string(),
    }
}

/// The plan for a pattern Hyperscan cannot run exactly: prefilter plus
/// confirmation, or confirm-only; rejected when the backtracking engine cannot
/// compile it either.
fn demote(p: &Pattern, reason: String, prefilter: Option<bool>) -> Plan {
    match Oracle::compile(p).map(Arc::new) {
        Ok(o) => match prefilter {
            Some(ordered) => Plan::Prefilter(reason, o, ordered),
            None => Plan::ConfirmOnly(reason, o),
        },
        Err(e) => Plan::Rejected(format!("hyperscan: {reason}; regex engines: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Database>();
        fn send<T: Send>() {}
        send::<Scratch>();
    }

    #[test]
    fn mode_names_and_reasons() {
        let r = || "why".to_owned();
        let modes = [
            (Mode::Exact, "exact", None),
            (
                Mode::Prefiltered { reason: r() },
                "prefiltered",
                Some("why"),
            ),
            (
                Mode::ConfirmOnly { reason: r() },
                "confirm-only",
                Some("why"),
            ),
            (Mode::Rejected { reason: r() }, "rejected", Some("why")),
        ];
        for (mode, name, reason) in modes {
            assert_eq!((mode.name(), mode.reason()), (name, reason));
        }
    }

    #[test]
    fn oracles_know_whether_their_matches_stay_on_one_line() {
        let r = |s: &str| Pattern::regex(0, s);
        for (p, want) in [
            (r(r"foo[ \t]+bar"), true),
            (r(r"foo\s+bar"), false),
            (r(r"a.b"), true),
            (r(r"a.b").dotall(), false),
            (r(r"[^a]"), false),
            (r(r"[^a\n]+"), true),
            (r(r"\x0a"), false),
            (r(r"[\x00-\x20]"), false),
            (r(r"^foo$").multiline(), true),
            (r(r"(?<!x)foo(?=\n)"), true),
            (r(r"(?<=\s)foo"), true),
            (r(r"(a)\1"), false),
            (r(r"a(?:\n){0}b"), true),
            (Pattern::literal(0, "a\nb"), false),
            (Pattern::literal(0, "ab"), true),
        ] {
            let one_line = Oracle::compile(&p).map(|o| o.one_line);
            assert_eq!(one_line, Ok(want), "{p:?}");
        }
    }

    #[test]
    fn line_starts() {
        assert_eq!(line_start(b"ab\ncd\nef", 0), 0);
        assert_eq!(line_start(b"ab\ncd\nef", 2), 0);
        assert_eq!(line_start(b"ab\ncd\nef", 3), 3);
        assert_eq!(line_start(b"ab\ncd\nef", 5), 3);
        assert_eq!(line_start(b"ab\ncd\nef", 9), 6);
        assert_eq!(line_start(b"ab\n", 99), 3);
    }

    #[test]
    fn hit_set_basics() {
        let mut h = HitSet::new(10);
        assert!(h.insert(3));
        assert!(!h.insert(3));
        assert!(h.insert(200));
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![3, 200]);
        assert_eq!(h.len(), 2);
        h.clear();
        assert!(h.is_empty() && !h.contains(3) && h.iter().next().is_none());
    }
}
