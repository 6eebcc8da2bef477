//! The scanner: SpamAssassin rules ([`super::sa`]) compiled into one matcher
//! database per class ([`super::matcher`]) and run over the message model
//! ([`super::mime`]), then meta rules and scores.
//!
//! Classes follow SpamAssassin's: one database per header (and form) that
//! header rules look at, one for the rendered body, one for the raw body,
//! one for the full message, one for URIs and one per MIME-part header. Each
//! class is scanned once per message whatever its number of rules. Negated
//! header rules (`!~`) hit when their pattern does not; `exists:` and eval
//! rules are decided without a pattern. Meta rules are evaluated last, in
//! dependency order, over the hits of everything else.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use super::matcher::{
    translate, Backend, CompileReport, Database, DatabaseCache, HitSet, Mode, Pattern, Scratch,
    Single,
};
use super::mime::{Header, Message};
use super::sa::meta::{self, Program};
use super::sa::{HeaderForm, Kind, Rule, RuleSet};

pub mod evals;
mod freemail;
pub mod relays;
mod style;

use evals::Facts;
pub use evals::IMPLEMENTED as IMPLEMENTED_EVALS;

/// Where a class takes its text from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    /// A header by lower-case name, in one form (`ALL` for all headers),
    /// with the `[if-unset: X]` value used when it is absent.
    Header(String, HeaderForm, Option<String>),
    /// The rendered body (Subject line first), as SpamAssassin's `body`.
    Body,
    /// The rendered body without the Subject line (`tflags nosubject`).
    BodyNoSubject,
    /// Transfer- and charset-decoded text parts, HTML not rendered.
    Rawbody,
    /// The raw message.
    Full,
    /// Every URI, one per line.
    Uri,
    /// A header of the MIME parts, by lower-case name.
    MimeHeader(String, HeaderForm),
}

/// One compiled class.
#[derive(Debug)]
struct Class {
    source: Source,
    database: Database,
    /// The patterns compiled into `database` with their rule indices, kept
    /// for [`Scanner::pattern_costs`].
    patterns: Vec<(usize, Pattern)>,
}

impl Class {
    /// The text this class matches in a message, built in `text` (the raw
    /// message itself for `full`), with `elements` set to the ranges
    /// scanned one at a time for raw-body rules (see
    /// [`Class::push_haystacks`]).
    fn text<'a>(
        &self,
        message: &Message,
        raw: &'a [u8],
        facts: &Facts,
        sizes: ScanSizes,
        text: &'a mut String,
        elements: &mut Vec<Range<usize>>,
    ) -> &'a [u8] {
        self.fill_text(message, facts, sizes, text, elements);
        self.haystack(raw, text)
    }

    /// Builds a message's text of this class in `text` and `elements`
    /// (left empty for `full`, which matches the raw message).
    fn fill_text(
        &self,
        message: &Message,
        facts: &Facts,
        sizes: ScanSizes,
        text: &mut String,
        elements: &mut Vec<Range<usize>>,
    ) {
        text.clear();
        elements.clear();
        if self.source != Source::Full {
            fill(&self.source, message, facts, sizes, text, elements);
        }
    }

    /// What this class matches of a message: the raw message for `full`,
    /// else the text [`Class::fill_text`] built.
    fn haystack<'a>(&self, raw: &'a [u8], text: &'a str) -> &'a [u8] {
        if self.source == Source::Full {
            raw
        } else {
            text.as_bytes()
        }
    }

    /// Adds message `m`'s haystacks to `out`: raw-body rules one element
    /// at a time, so that no match spans two parts or two pieces of a long
    /// part; every other class its whole text.
    fn push_haystacks<'a>(
        &self,
        m: usize,
        haystack: &'a [u8],
        elements: &[Range<usize>],
        out: &mut Vec<(usize, &'a [u8])>,
    ) {
        if self.source == Source::Rawbody {
            out.extend(elements.iter().map(|e| (m, &haystack[e.clone()])));
        } else {
            out.push((m, haystack));
        }
    }

    /// Matches one message's `text` (from [`Class::text`]).
    fn scan(
        &self,
        scratch: &mut Scratch,
        text: &[u8],
        elements: &[Range<usize>],
        hits: &mut HitSet,
    ) {
        let mut haystacks = Vec::with_capacity(elements.len().max(1));
        self.push_haystacks(0, text, elements, &mut haystacks);
        self.database
            .scan_many(scratch, &haystacks, std::slice::from_mut(hits));
    }
}

/// The result of a batch of one message.
fn only(results: Vec<ScanResult>) -> ScanResult {
    results
        .into_iter()
        .next()
        .unwrap_or_else(|| unreachable!("a batch gives one result per message"))
}

/// What a rule needs besides its class's pattern.
#[derive(Debug, Clone)]
enum Check {
    /// Hit when its class matched its pattern.
    Pattern { class: usize, id: u32, negate: bool },
    /// `exists:Header`.
    Exists(String),
    /// A meta rule.
    Meta,
    /// An implemented eval function ([`evals::run`]).
    Eval { function: String, args: Vec<String> },
    /// Not run (eval without an implementation, untranslatable regex).
    Skipped,
}

/// A compiled scanner: immutable, shared by every shard.
#[derive(Debug)]
pub struct Scanner {
    rules: Vec<Rule>,
    checks: Vec<Check>,
    classes: Vec<Class>,
    /// Meta rules in dependency order, with rule names resolved to
    /// indices, compiled into one program.
    metas: Program,
    required_score: f32,
    reports: Vec<CompileReport>,
    config: evals::Config,
    /// An active rule calls `check_for_uppercase` (which needs the body
    /// elements before the evals run).
    needs_uppercase: bool,
    /// A rule calls `tvd_vertical_words` (read from the body elements).
    needs_vertical: bool,
    /// How much of each text part body and rawbody rules see.
    sizes: ScanSizes,
    /// Per class: the `tflags multiple` rules whose hit count metas read
    /// (rule index, the translated regex, `maxhits`).
    counters: Vec<Vec<Counter>>,
}

/// A `tflags multiple` rule: counted with `regex` after its class hit.
#[derive(Debug)]
struct Counter {
    rule: usize,
    regex: Single,
    max: u32,
    per_line: bool,
}

/// Per-shard state for scanning: one scratch per class, per class one hit
/// set for each message of the largest batch scanned so far, and the meta
/// program's working space.
#[derive(Debug)]
pub struct ScanState {
    scratches: Vec<Scratch>,
    hits: Vec<Vec<HitSet>>,
    metas: meta::Scratch,
}

/// Where scans spend their time, summed over messages
/// ([`Scanner::scan_profiled`]; `mbctl scan --profile` prints it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Per class, by index ([`Scanner::class_label`]): nanoseconds building
    /// its text and matching it (confirmations and literal lists included).
    pub classes: Vec<u64>,
    /// Nanoseconds deciding `exists:`, eval and meta rules and summing.
    pub rules: u64,
    /// Messages profiled.
    pub messages: u64,
}

/// One pattern rule's cost on its own ([`Scanner::pattern_costs`]).
#[derive(Debug, Clone)]
pub struct PatternCost {
    /// The rule's name.
    pub rule: String,
    /// Its class ([`Scanner::class_label`]).
    pub class: usize,
    /// How the matcher runs it.
    pub mode: Option<Mode>,
    /// Nanoseconds scanning every message's class text with it alone.
    pub nanos: u64,
    /// Messages it matched.
    pub matched: usize,
}

/// The outcome of one scan.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanResult {
    /// Sum of the scores of the rules that hit.
    pub score: f32,
    /// The threshold of the rule set (`required_score`, 5 by default).
    pub required_score: f32,
    /// Rules that hit, with their scores, in rule-set order (sub-rules, whose
    /// names start with `__`, are left out).
    pub symbols: Vec<(String, f32)>,
}

impl ScanResult {
    /// SpamAssassin's verdict: score at or above the threshold.
    #[must_use]
    pub fn is_spam(&self) -> bool {
        self.score >= self.required_score
    }
}

impl Scanner {
    /// Compiles a rule set with `backend` for every class.
    #[must_use]
    pub fn compile(set: &RuleSet, backend: Backend) -> Self {
        Self::compile_on(set, backend, 1)
    }

    /// [`Scanner::compile`] on up to `threads` threads (each class's
    /// databases are compiled in parallel; see [`Database::compile_on`]).
    #[must_use]
    pub fn compile_on(set: &RuleSet, backend: Backend, threads: usize) -> Self {
        Self::compile_cached(set, backend, threads, None)
    }

    /// [`Scanner::compile_on`] with a cache of compiled Hyperscan databases
    /// (see [`DatabaseCache`]).
    #[must_use]
    pub fn compile_cached(
        set: &RuleSet,
        backend: Backend,
        threads: usize,
        cache: Option<&DatabaseCache>,
    ) -> Self {
        let rules = set.rules.clone();
        // A name can be defined twice, once in a false conditional block
        // (kept as skipped, for the report) and once live: the live one is
        // the rule the name means.
        let mut index: HashMap<String, usize> = HashMap::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            let slot = index.entry(r.name.clone()).or_insert(i);
            if r.is_active() && !rules[*slot].is_active() {
                *slot = i;
            }
        }
        let mut by_source: HashMap<Source, Vec<(usize, Pattern)>> = HashMap::new();
        let mut order: Vec<Source> = Vec::new();
        let mut checks = vec![Check::Skipped; rules.len()];
        for (i, rule) in rules.iter().enumerate() {
            if !rule.is_active() {
                continue;
            }
            let (source, negate) = match &rule.kind {
                Kind::Header {
                    header,
                    form,
                    negate,
                    exists,
                    if_unset,
                    ..
                } => {
                    if *exists {
                        checks[i] = Check::Exists(header.to_ascii_lowercase());
                        continue;
                    }
                    (
                        Source::Header(header.to_ascii_lowercase(), *form, if_unset.clone()),
                        *negate,
                    )
                }
                Kind::Body if rule.has_tflag("nosubject") => (Source::BodyNoSubject, false),
                Kind::Body => (Source::Body, false),
                Kind::Rawbody => (Source::Rawbody, false),
                Kind::Full => (Source::Full, false),
                Kind::Uri => (Source::Uri, false),
                Kind::Mimeheader {
                    header,
                    form,
                    negate,
                } => (
                    Source::MimeHeader(header.to_ascii_lowercase(), *form),
                    *negate,
                ),
                Kind::Meta { .. } => {
                    checks[i] = Check::Meta;
                    continue;
                }
                Kind::Eval { function, args, .. } => {
                    checks[i] = Check::Eval {
                        function: function.clone(),
                        args: args.clone(),
                    };
                    continue;
                }
                Kind::Net { .. } => continue,
            };
            let Some(regex) = rule.pattern.as_ref() else {
                continue;
            };
            // The matcher reads Perl syntax itself (after ReplaceTags) and
            // makes its three engines agree on Perl's byte semantics.
            let mut text = regex
                .expanded
                .clone()
                .unwrap_or_else(|| regex.source.clone());
            // SpamAssassin matches body rules one element (paragraph) at a
            // time, URI rules one URI at a time and MIME-header rules one
            // part's value at a time (its MIMEHeader plugin); the class
            // text joins them with newlines, so `^`/`$` must match at line
            // boundaries, and no match may take the newline between two
            // (a negated class of a URI rule ran over into the next URI).
            // Raw-body elements are whole parts (or 2-4 KB pieces), scanned
            // one by one: `^`/`$` are their ends unless the rule says `/m`.
            let elements = matches!(
                source,
                Source::Body | Source::BodyNoSubject | Source::Uri | Source::MimeHeader(..)
            );
            if elements {
                // one line of the class text is one SpamAssassin element:
                // its ends are the pattern's string ends
                if let Some(anchored) = translate::element_anchors(&text) {
                    text = anchored;
                }
                if let Some(within) = translate::within_element(&text) {
                    text = within;
                }
            }
            if regex.flags.contains('x') {
                text.insert_str(0, "(?x)");
            }
            let list = by_source.entry(source.clone()).or_insert_with(|| {
                order.push(source.clone());
                Vec::new()
            });
            let id = u32::try_from(list.len()).unwrap_or(u32::MAX);
            list.push((
                i,
                Pattern {
                    id,
                    source: text,
                    caseless: regex.flags.contains('i'),
                    // an element holds no newline: `.` is the same either way
                    dotall: !elements && regex.flags.contains('s'),
                    multiline: elements || regex.flags.contains('m'),
                    literal: false,
                },
            ));
            checks[i] = Check::Pattern {
                class: 0,
                id,
                negate,
            };
        }
        let mut classes = Vec::with_capacity(order.len());
        let mut reports = Vec::with_capacity(order.len());
        for source in order {
            let list = by_source.remove(&source).unwrap_or_default();
            let patterns: Vec<Pattern> = list.iter().map(|(_, p)| p.clone()).collect();
            let (database, report) = Database::compile_cached(&patterns, backend, threads, cache);
            let class = classes.len();
            for (rule, _) in &list {
                if let Check::Pattern { class: c, .. } = &mut checks[*rule] {
                    *c = class;
                }
            }
            classes.push(Class {
                source,
                database,
                patterns: list,
            });
            reports.push(report);
        }
        let mut counters: Vec<Vec<Counter>> = classes.iter().map(|_| Vec::new()).collect();
        for (i, rule) in rules.iter().enumerate() {
            let Check::Pattern {
                class,
                negate: false,
                ..
            } = checks[i]
            else {
                continue;
            };
            if !rule.has_tflag("multiple") {
                continue;
            }
            // the pattern as the class compiled it, counted by the engine
            // that confirms it (lookarounds and backreferences included)
            let Some(regex) = classes
                .get(class)
                .and_then(|c| c.patterns.iter().find(|(r, _)| *r == i))
                .and_then(|(_, p)| Single::compile(p).ok())
            else {
                continue;
            };
            let max = rule
                .tflags
                .iter()
                .find_map(|t| t.strip_prefix("maxhits=").and_then(|n| n.parse().ok()))
                .unwrap_or(u32::MAX);
            let per_line = matches!(
                classes.get(class).map(|c| &c.source),
                Some(Source::Body | Source::BodyNoSubject | Source::Rawbody | Source::Uri)
            );
            if let Some(list) = counters.get_mut(class) {
                list.push(Counter {
                    rule: i,
                    regex,
                    max,
                    per_line,
                });
            }
        }
        let resolved: Vec<_> = meta_order(&rules, &index)
            .into_iter()
            .filter_map(|m| match &rules[m].kind {
                Kind::Meta { expr } => {
                    Some((m, expr.resolve(&|name: &str| index.get(name).copied())))
                }
                _ => None,
            })
            .collect();
        let metas = Program::new(resolved.iter().map(|(m, e)| (*m, e)));
        let calls = |name: &str| {
            checks
                .iter()
                .any(|c| matches!(c, Check::Eval { function, .. } if function == name))
        };
        let (needs_uppercase, needs_vertical) =
            (calls("check_for_uppercase"), calls("tvd_vertical_words"));
        Self {
            rules,
            checks,
            classes,
            metas,
            required_score: set.required_score,
            reports,
            config: evals::Config::from_set(set),
            needs_uppercase,
            needs_vertical,
            sizes: ScanSizes::from_set(set),
            counters,
        }
    }

    /// Per-shard scratch space for this scanner.
    #[must_use]
    pub fn state(&self) -> ScanState {
        ScanState {
            scratches: self.classes.iter().map(|c| c.database.scratch()).collect(),
            hits: self
                .classes
                .iter()
                .map(|c| vec![HitSet::new(c.database.id_bound())])
                .collect(),
            metas: meta::Scratch::default(),
        }
    }

    /// How each pattern rule runs on the matcher, in rule-set order: the
    /// rule's name and its [`Mode`] (exact, prefiltered and confirmed,
    /// confirm-only, rejected: each but exact with the reason).
    #[must_use]
    pub fn pattern_modes(&self) -> Vec<(&str, &Mode)> {
        let mut out = Vec::new();
        for (rule, check) in self.rules.iter().zip(&self.checks) {
            let Check::Pattern { class, id, .. } = check else {
                continue;
            };
            if let Some(mode) = self.reports.get(*class).and_then(|r| r.mode(*id)) {
                out.push((rule.name.as_str(), mode));
            }
        }
        out
    }

    /// How many pattern rules run exact, prefiltered and confirmed,
    /// confirm-only, and rejected (see [`Scanner::pattern_modes`]).
    #[must_use]
    pub fn mode_counts(&self) -> [usize; 4] {
        let mut n = [0; 4];
        for report in &self.reports {
            let c = report.counts();
            for k in 0..4 {
                n[k] += c[k];
            }
        }
        n
    }

    /// Pattern rules that also run in an ASCII form on ASCII text (see
    /// [`Database::ascii_forms`]).
    #[must_use]
    pub fn ascii_forms(&self) -> usize {
        self.classes.iter().map(|c| c.database.ascii_forms()).sum()
    }

    /// Prefiltered pattern rules confirmed from the line of their
    /// prefilter's first match (see [`Database::confirmed_from_line`]).
    #[must_use]
    pub fn confirmed_from_line(&self) -> usize {
        self.classes
            .iter()
            .map(|c| c.database.confirmed_from_line())
            .sum()
    }

    /// The compile reports, one per class.
    #[must_use]
    pub fn reports(&self) -> &[CompileReport] {
        &self.reports
    }

    /// Number of rules that can hit (patterns compiled, metas, exists).
    #[must_use]
    pub fn active_rules(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| !matches!(c, Check::Skipped))
            .count()
    }

    /// Scans one message. `raw` is the message as received; `message` its
    /// parsed model.
    pub fn scan(&self, state: &mut ScanState, raw: &[u8], message: &Message) -> ScanResult {
        only(self.scan_inner(state, &[(raw, message)], None))
    }

    /// [`Scanner::scan`] of several messages at once, results in the same
    /// order. The batch runs class by class: each class's databases and
    /// confirming engines (tens of megabytes for the stock rules, far more
    /// than the caches hold) are read once per batch instead of once per
    /// message, so a message in a batch costs less than one scanned alone.
    /// The results are the same either way.
    pub fn scan_batch(
        &self,
        state: &mut ScanState,
        batch: &[(&[u8], &Message)],
    ) -> Vec<ScanResult> {
        self.scan_inner(state, batch, None)
    }

    /// [`Scanner::scan`], adding where the time went to `profile`; `clock`
    /// reads a monotonic clock in nanoseconds (the engine keeps none).
    pub fn scan_profiled(
        &self,
        state: &mut ScanState,
        raw: &[u8],
        message: &Message,
        clock: &dyn Fn() -> u64,
        profile: &mut Profile,
    ) -> ScanResult {
        only(self.scan_batch_profiled(state, &[(raw, message)], clock, profile))
    }

    /// [`Scanner::scan_batch`] with a [`Profile`], as
    /// [`Scanner::scan_profiled`].
    pub fn scan_batch_profiled(
        &self,
        state: &mut ScanState,
        batch: &[(&[u8], &Message)],
        clock: &dyn Fn() -> u64,
        profile: &mut Profile,
    ) -> Vec<ScanResult> {
        profile.classes.resize(self.classes.len(), 0);
        profile.messages += batch.len() as u64;
        self.scan_inner(state, batch, Some((clock, profile)))
    }

    /// Number of classes (one matcher database each).
    #[must_use]
    pub fn class_count(&self) -> usize {
        self.classes.len()
    }

    /// What class `c` matches, in rule-file words: `body`, `rawbody`,
    /// `full`, `uri`, `header From:addr`, `header ALL`, `mimeheader
    /// Content-Type`; and how many patterns it holds.
    #[must_use]
    pub fn class_label(&self, c: usize) -> (String, usize) {
        let Some(class) = self.classes.get(c) else {
            return (String::new(), 0);
        };
        let form = |f: &HeaderForm| match f {
            HeaderForm::Decoded => String::new(),
            other => format!(":{}", format!("{other:?}").to_ascii_lowercase()),
        };
        let label = match &class.source {
            Source::Header(name, f, _) => format!("header {name}{}", form(f)),
            Source::MimeHeader(name, f) => format!("mimeheader {name}{}", form(f)),
            Source::Body => "body".to_owned(),
            Source::BodyNoSubject => "body (nosubject)".to_owned(),
            Source::Rawbody => "rawbody".to_owned(),
            Source::Full => "full".to_owned(),
            Source::Uri => "uri".to_owned(),
        };
        (label, class.database.len())
    }

    /// The facts some evals read from the body elements (`text`, one
    /// element per line): `check_for_uppercase`'s share,
    /// `tvd_vertical_words`' and FreeMail's addresses.
    fn body_facts(&self, message: &Message, facts: &mut Facts, text: &str) {
        if self.needs_uppercase {
            facts.uppercase = evals::uppercase_percent(message, text);
        }
        if self.needs_vertical {
            facts.vertical_words = evals::vertical_words(text);
        }
        if let Some(finder) = self.config.body_emails() {
            if evals::wants_body_emails(message, facts, &self.config) {
                facts.body_emails = finder.find(text, &facts.html_mailtos);
            }
        }
    }

    /// A message's facts, with the body facts already set when no class
    /// builds the body text; the flag says whether they are still due.
    fn facts_of(&self, raw: &[u8], message: &Message) -> (Facts, bool) {
        let mut facts = Facts::of(message, raw);
        // some evals read the body elements (see `body_facts`): from the
        // body class's text, or built here when there is no body class
        let pending =
            self.needs_uppercase || self.needs_vertical || self.config.body_emails().is_some();
        if pending && !self.classes.iter().any(|c| c.source == Source::Body) {
            let mut body = String::new();
            fill(
                &Source::Body,
                message,
                &facts,
                self.sizes,
                &mut body,
                &mut Vec::new(),
            );
            self.body_facts(message, &mut facts, &body);
            return (facts, false);
        }
        (facts, pending)
    }

    fn scan_inner(
        &self,
        state: &mut ScanState,
        batch: &[(&[u8], &Message)],
        mut probe: Option<(&dyn Fn() -> u64, &mut Profile)>,
    ) -> Vec<ScanResult> {
        for (class, hits) in self.classes.iter().zip(&mut state.hits) {
            while hits.len() < batch.len() {
                hits.push(HitSet::new(class.database.id_bound()));
            }
        }
        let mut work: Vec<(Facts, bool, Vec<f64>)> = batch
            .iter()
            .map(|(raw, message)| {
                let (facts, body_pending) = self.facts_of(raw, message);
                (facts, body_pending, vec![1.0f64; self.rules.len()])
            })
            .collect();
        // each message's text of the class at hand, and its elements
        let mut texts: Vec<String> = vec![String::new(); batch.len()];
        let mut elements: Vec<Vec<Range<usize>>> = vec![Vec::new(); batch.len()];
        for (c, class) in self.classes.iter().enumerate() {
            let (Some(scratch), Some(hits)) = (state.scratches.get_mut(c), state.hits.get_mut(c))
            else {
                continue;
            };
            let started = probe.as_ref().map(|(clock, _)| clock());
            for ((((_, message), (facts, ..)), text), elements) in
                batch.iter().zip(&work).zip(&mut texts).zip(&mut elements)
            {
                class.fill_text(message, facts, self.sizes, text, elements);
            }
            let haystack = |m: usize| class.haystack(batch[m].0, &texts[m]);
            let mut haystacks: Vec<(usize, &[u8])> = Vec::with_capacity(batch.len());
            for m in 0..batch.len() {
                hits[m].clear();
                class.push_haystacks(m, haystack(m), &elements[m], &mut haystacks);
            }
            class.database.scan_many(scratch, &haystacks, hits);
            for (m, ((_, message), (facts, body_pending, counts))) in
                batch.iter().zip(&mut work).enumerate()
            {
                for counter in self.counters.get(c).into_iter().flatten() {
                    let Check::Pattern { id, .. } = self.checks[counter.rule] else {
                        continue;
                    };
                    if hits[m].contains(id) {
                        counts[counter.rule] = f64::from(counter.count(haystack(m)));
                    }
                }
                if *body_pending && class.source == Source::Body {
                    self.body_facts(message, facts, &texts[m]);
                    *body_pending = false;
                }
            }
            if let (Some((clock, profile)), Some(t0)) = (probe.as_mut(), started) {
                profile.classes[c] += clock().saturating_sub(t0);
            }
        }
        let started = probe.as_ref().map(|(clock, _)| clock());
        let ScanState { hits, metas, .. } = state;
        let results = batch
            .iter()
            .zip(&work)
            .enumerate()
            .map(|(m, ((_, message), (facts, _, counts)))| {
                self.decide(message, facts, counts, hits, m, metas)
            })
            .collect();
        if let (Some((clock, profile)), Some(t0)) = (probe, started) {
            profile.rules += clock().saturating_sub(t0);
        }
        results
    }

    /// The rule logic of message `m` of a batch: `exists:`, evals and
    /// metas over its pattern hits (`hits[class][m]`) and `counts`, then
    /// the score.
    fn decide(
        &self,
        message: &Message,
        facts: &Facts,
        counts: &[f64],
        hits: &[Vec<HitSet>],
        m: usize,
        metas: &mut meta::Scratch,
    ) -> ScanResult {
        let mut hit = vec![false; self.rules.len()];
        for (i, check) in self.checks.iter().enumerate() {
            hit[i] = match check {
                Check::Pattern { class, id, negate } => {
                    let matched = hits
                        .get(*class)
                        .and_then(|h| h.get(m))
                        .is_some_and(|h| h.contains(*id));
                    // A negated header rule only means something when the
                    // header exists (SpamAssassin: `!~` on a missing header
                    // hits unless [if-unset] says otherwise).
                    matched != *negate
                }
                Check::Exists(name) => match name.as_str() {
                    "tocc" => message
                        .header("to")
                        .chain(message.header("cc"))
                        .next()
                        .is_some(),
                    "envelopefrom" => facts.envfrom.is_some(),
                    _ => message.header(name).next().is_some(),
                },
                Check::Eval { function, args } => {
                    evals::run(function, args, message, facts, &self.config)
                }
                Check::Meta | Check::Skipped => false,
            };
        }
        self.metas.run(&mut hit, counts, metas);
        let mut score = 0.0f32;
        let mut symbols = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if hit[i] && !rule.is_subrule() && rule.score != 0.0 {
                score += rule.score;
                symbols.push((rule.name.clone(), rule.score));
            }
        }
        ScanResult {
            score,
            required_score: self.required_score,
            symbols,
        }
    }

    /// The raw Hyperscan floor of [`Scanner::scan`]: every class's
    /// databases over the raw message bytes (no parsing, no class texts, no
    /// confirmation, no evals or metas). Returns the number of raw hits.
    /// `mbctl scan --floor` reports it beside the real scan.
    pub fn scan_floor(&self, state: &mut ScanState, raw: &[u8]) -> usize {
        let mut n = 0;
        for (class, scratch) in self.classes.iter().zip(&mut state.scratches) {
            n += class.database.scan_unconfirmed(scratch, raw);
        }
        n
    }

    /// [`Scanner::scan_floor`] of a batch, class by class as
    /// [`Scanner::scan_batch`] runs.
    pub fn scan_floor_batch(&self, state: &mut ScanState, raws: &[&[u8]]) -> usize {
        let mut n = 0;
        for (class, scratch) in self.classes.iter().zip(&mut state.scratches) {
            n += class.database.scan_unconfirmed_many(scratch, raws);
        }
        n
    }

    /// What each pattern rule costs on its own: every pattern compiled alone
    /// (as the scanner compiles it) and run over its class's text of every
    /// message in `messages`, confirmation included. Sorted costliest first.
    /// `clock` reads a monotonic clock in nanoseconds. Slow (one compile per
    /// pattern): a diagnostic for `mbctl scan --pattern-costs`, never for
    /// a shard.
    pub fn pattern_costs(
        &self,
        messages: &[(&[u8], &Message)],
        clock: &dyn Fn() -> u64,
    ) -> Vec<PatternCost> {
        let mut out = Vec::new();
        let facts: Vec<Facts> = messages
            .iter()
            .map(|(raw, message)| Facts::of(message, raw))
            .collect();
        for (c, class) in self.classes.iter().enumerate() {
            // each message's class text and its elements, built once
            let texts = self.texts_of(class, messages, &facts);
            for (rule, pattern) in &class.patterns {
                let (db, report) =
                    Database::compile(std::slice::from_ref(pattern), class.database.backend());
                let alone = Class {
                    source: class.source.clone(),
                    database: db,
                    patterns: Vec::new(),
                };
                let mut scratch = alone.database.scratch();
                let mut hits = HitSet::new(alone.database.id_bound());
                let mut matched = 0;
                let t0 = clock();
                for (t, elements) in &texts {
                    hits.clear();
                    alone.scan(&mut scratch, t, elements, &mut hits);
                    matched += usize::from(!hits.is_empty());
                }
                let nanos = clock().saturating_sub(t0);
                out.push(PatternCost {
                    rule: self.rules[*rule].name.clone(),
                    class: c,
                    mode: report.mode(pattern.id).cloned(),
                    nanos,
                    matched,
                });
            }
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.nanos));
        out
    }

    /// Class `c`'s patterns as compiled into its database (diagnostics:
    /// the `hs_lab` bench binary recompiles subsets of them).
    #[doc(hidden)]
    #[must_use]
    pub fn class_patterns(&self, c: usize) -> Vec<Pattern> {
        self.classes
            .get(c)
            .map(|class| class.patterns.iter().map(|(_, p)| p.clone()).collect())
            .unwrap_or_default()
    }

    /// Class `c`'s text of each message (diagnostics, as
    /// [`Scanner::class_patterns`]); raw-body texts are whole, not cut
    /// into elements.
    #[doc(hidden)]
    #[must_use]
    pub fn class_texts(&self, c: usize, messages: &[(&[u8], &Message)]) -> Vec<Vec<u8>> {
        let Some(class) = self.classes.get(c) else {
            return Vec::new();
        };
        let facts: Vec<Facts> = messages
            .iter()
            .map(|(raw, message)| Facts::of(message, raw))
            .collect();
        self.texts_of(class, messages, &facts)
            .into_iter()
            .map(|(text, _)| text)
            .collect()
    }

    /// `class`'s text and elements of each message (with its `facts`),
    /// copied out: for the diagnostics that time patterns over them.
    fn texts_of(
        &self,
        class: &Class,
        messages: &[(&[u8], &Message)],
        facts: &[Facts],
    ) -> Vec<(Vec<u8>, Vec<Range<usize>>)> {
        let (mut text, mut elements) = (String::new(), Vec::new());
        messages
            .iter()
            .zip(facts)
            .map(|((raw, message), facts)| {
                let t = class.text(message, raw, facts, self.sizes, &mut text, &mut elements);
                (t.to_vec(), elements.clone())
            })
            .collect()
    }

    /// Rules of this scanner, in rule-set order.
    #[must_use]
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Shares the scanner.
    #[must_use]
    pub fn shared(self) -> Arc<Self> {
        Arc::new(self)
    }
}

impl Counter {
    /// Matches in `text` (per line for body, rawbody and URI classes), at
    /// most `max`.
    fn count(&self, text: &[u8]) -> u32 {
        let mut n = 0u32;
        let lines: Box<dyn Iterator<Item = &[u8]>> = if self.per_line {
            Box::new(text.split(|&b| b == b'\n'))
        } else {
            Box::new(std::iter::once(text))
        };
        for line in lines {
            let left = usize::try_from(self.max - n).unwrap_or(usize::MAX);
            n = n.saturating_add(u32::try_from(self.regex.count(line, left)).unwrap_or(u32::MAX));
            if n >= self.max {
                return self.max;
            }
        }
        n.max(1)
    }
}

/// SpamAssassin's `body_part_scan_size` and `rawbody_part_scan_size`: body
/// and rawbody rules see about this much of each text part (0: all of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ScanSizes {
    body: usize,
    rawbody: usize,
}

impl ScanSizes {
    /// SpamAssassin 4's defaults, or the rule set's last setting of each.
    fn from_set(set: &RuleSet) -> Self {
        let mut sizes = ScanSizes {
            body: 50_000,
            rawbody: 500_000,
        };
        for s in &set.settings {
            let value = s.value.trim().parse::<usize>().ok();
            match (s.name.as_str(), value) {
                ("body_part_scan_size", Some(v)) => sizes.body = v,
                ("rawbody_part_scan_size", Some(v)) => sizes.rawbody = v,
                _ => {}
            }
        }
        sizes
    }
}

/// A part's text cut to about `limit` bytes as SpamAssassin cuts it
/// (`Message::get_body_text_array_common`, `get_decoded_body_text_array`):
/// just after the first of `boundaries` (tried in order) found within 1,024
/// bytes after `limit`, else at `limit`. A limit of 0 keeps everything.
fn truncate_part<'a>(text: &'a str, limit: usize, boundaries: &[char]) -> &'a str {
    if limit == 0 || text.len() <= limit {
        return text;
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    for &b in boundaries {
        if let Some(idx) = text[cut..].find(b) {
            if (cut + idx).saturating_sub(limit) <= 1024 {
                return &text[..cut + idx + b.len_utf8()];
            }
        }
    }
    &text[..cut]
}

/// Appends the raw-body elements of `message` to `out` and their ranges to
/// `elements`, as SpamAssassin 4 hands them to rawbody rules
/// (`get_decoded_body_text_array`): each text part's decoded text, cut at
/// `rawbody_part_scan_size`, is one element, and a part longer than 2,048
/// bytes is split into pieces of 2,048 to 4,096 bytes just after a newline,
/// else a `>`, else a space, else at 2,048 bytes
/// (`split_into_array_of_short_paragraphs`).
fn rawbody_elements(
    message: &Message,
    sizes: ScanSizes,
    out: &mut String,
    elements: &mut Vec<Range<usize>>,
) {
    for part in &message.parts {
        let Some(t) = &part.raw_text else {
            continue;
        };
        let t = truncate_part(t, sizes.rawbody, &['\n', '>', ' ']);
        let base = out.len();
        out.push_str(t);
        let mut ofs = 0;
        if t.len() > BODY_LINE_BYTES_MAX {
            let b = t.as_bytes();
            while t.len() - ofs > 2 * BODY_LINE_BYTES_MAX {
                let from = ofs + BODY_LINE_BYTES_MAX;
                let within = |j: usize| j + 1 - ofs <= 2 * BODY_LINE_BYTES_MAX;
                let end = [b'\n', b'>', b' ']
                    .iter()
                    .find_map(|&c| {
                        memchr::memchr(c, &b[from..])
                            .map(|k| from + k)
                            .filter(|&j| within(j))
                    })
                    .map_or_else(
                        || {
                            let mut j = from;
                            while !t.is_char_boundary(j) {
                                j -= 1;
                            }
                            j
                        },
                        |j| j + 1,
                    );
                elements.push(base + ofs..base + end);
                ofs = end;
            }
        }
        if ofs < t.len() || t.is_empty() {
            elements.push(base + ofs..base + t.len());
        }
    }
}

/// SpamAssassin's body line length: longer paragraphs are split into
/// elements of at most this many bytes (`MAX_BODY_LINE_LENGTH`).
const BODY_LINE_BYTES_MAX: usize = 2048;

/// Appends `text` (the text parts, joined by a newline) as SpamAssassin 4
/// hands it to body rules, one element per line: a whitespace run holding
/// two or more newlines is a paragraph break (a newline, with one space for
/// any other whitespace before the first or after the last newline), any
/// other whitespace run is one space, and an element longer than 2,048
/// bytes is cut after its last space within that length (or at it). So a
/// body rule sees a paragraph as one line, as in SpamAssassin, and `^`/`$`
/// are its ends.
fn push_paragraphs(text: &str, out: &mut String) {
    let mut flat = String::with_capacity(text.len() + 1);
    let bytes = text.as_bytes();
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c');
    let mut i = 0;
    while i < bytes.len() {
        if !is_space(bytes[i]) {
            let end = bytes[i..]
                .iter()
                .position(|&b| is_space(b))
                .map_or(bytes.len(), |n| i + n);
            flat.push_str(&text[i..end]);
            i = end;
            continue;
        }
        let end = bytes[i..]
            .iter()
            .position(|&b| !is_space(b))
            .map_or(bytes.len(), |n| i + n);
        let run = &bytes[i..end];
        let first = run.iter().position(|&b| b == b'\n');
        let last = run.iter().rposition(|&b| b == b'\n');
        match (first, last) {
            (Some(f), Some(l)) if f != l => {
                if f > 0 {
                    flat.push(' ');
                }
                flat.push('\n');
                if l + 1 < run.len() {
                    flat.push(' ');
                }
            }
            _ => flat.push(' '),
        }
        i = end;
    }
    if !flat.ends_with('\n') {
        flat.push('\n');
    }
    // cut long elements (each ends with its newline)
    for mut line in flat.split_inclusive('\n') {
        while line.len() > BODY_LINE_BYTES_MAX {
            // Perl: rindex($line, ' ', 2048) + 1, else 2048 (here: the last
            // character boundary at or before it)
            let space = line.as_bytes()[..=BODY_LINE_BYTES_MAX]
                .iter()
                .rposition(|&b| b == b' ');
            let cut = match space {
                Some(n) => n + 1,
                None => {
                    let mut limit = BODY_LINE_BYTES_MAX;
                    while !line.is_char_boundary(limit) {
                        limit -= 1;
                    }
                    limit
                }
            };
            out.push_str(&line[..cut]);
            out.push('\n');
            line = &line[cut..];
        }
        out.push_str(line);
    }
}

/// Appends a class's text for `message` to `out`.
/// Appends a class's text for `message` to `out`; for the raw body, also
/// the ranges of its elements to `elements` (see [`rawbody_elements`]).
fn fill(
    source: &Source,
    message: &Message,
    facts: &Facts,
    sizes: ScanSizes,
    out: &mut String,
    elements: &mut Vec<Range<usize>>,
) {
    match source {
        Source::Header(name, form, _) if name == "all" => {
            for h in &message.headers {
                out.push_str(&h.name);
                out.push_str(": ");
                push_form(h, *form, out);
                out.push('\n');
            }
        }
        Source::Header(name, form, _) if name == "all-external" || name == "all-untrusted" => {
            // Headers from the first Received line after the trusted area
            // (PerMsgStatus `get_all_hdrs_in_rcvd_index_range`).
            let start = facts.relays.last_internal_index + 1;
            let mut index = -1i64;
            for h in &message.headers {
                if h.name.eq_ignore_ascii_case("received") {
                    index += 1;
                }
                if index >= start {
                    out.push_str(&h.name);
                    out.push_str(": ");
                    push_form(h, *form, out);
                    out.push('\n');
                }
            }
        }
        Source::Header(name, _, _) if name.starts_with("x-spam-relays-") => {
            out.push_str(match name.as_str() {
                "x-spam-relays-trusted" | "x-spam-relays-internal" => &facts.trusted_str,
                "x-spam-relays-untrusted" | "x-spam-relays-external" => &facts.untrusted_str,
                _ => "",
            });
        }
        Source::Header(name, form, if_unset) if name == "envelopefrom" => match &facts.envfrom {
            Some(a) => out.push_str(a),
            None => {
                if let Some(v) = if_unset {
                    out.push_str(v);
                }
                let _ = form;
            }
        },
        Source::Header(name, form, if_unset) => {
            let single = [name.as_str()];
            let names: &[&str] = match name.as_str() {
                "tocc" => &["to", "cc"],
                "messageid" => &["message-id", "resent-message-id", "x-message-id"],
                _ => &single,
            };
            let mut first = true;
            for n in names {
                for h in message.header(n) {
                    if !first {
                        out.push('\n');
                    }
                    first = false;
                    push_form(h, *form, out);
                }
            }
            if first {
                if let Some(v) = if_unset {
                    out.push_str(v);
                }
            }
        }
        Source::Body | Source::BodyNoSubject => {
            if *source == Source::Body {
                out.push_str(message.header_value("Subject").unwrap_or(""));
                out.push('\n');
            }
            let mut text = String::new();
            for t in message.parts.iter().filter_map(|p| p.text.as_deref()) {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(truncate_part(t, sizes.body, &['\n', ' ']));
            }
            push_paragraphs(&text, out);
        }
        Source::Rawbody => rawbody_elements(message, sizes, out, elements),
        Source::Full => {}
        Source::Uri => {
            // each URI with the variants SpamAssassin's URI rules also see
            for v in facts.uris(message) {
                out.push_str(v);
                out.push('\n');
            }
            // SpamAssassin's URI list also holds `mailto:` for every bare
            // address in the text parts.
            for part in &message.parts {
                if let Some(t) = &part.text {
                    for addr in bare_addresses(t) {
                        let m = format!("mailto:{addr}");
                        if !message.urls.iter().any(|u| u.eq_ignore_ascii_case(&m)) {
                            out.push_str(&m);
                            out.push('\n');
                        }
                    }
                }
            }
        }
        Source::MimeHeader(name, form) => {
            for part in &message.parts {
                for h in part
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case(name))
                {
                    push_form(h, *form, out);
                    out.push('\n');
                }
            }
        }
    }
}

/// Addresses (`local@domain.tld`) in text, in order.
fn bare_addresses(text: &str) -> Vec<&str> {
    let b = text.as_bytes();
    let local = |c: u8| c.is_ascii_alphanumeric() || b"._%+-=".contains(&c);
    let host = |c: u8| c.is_ascii_alphanumeric() || c == b'.' || c == b'-';
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(off) = memchr::memchr(b'@', &b[from..]) {
        let at = from + off;
        let mut s = at;
        while s > 0 && local(b[s - 1]) {
            s -= 1;
        }
        let mut e = at + 1;
        while e < b.len() && host(b[e]) {
            e += 1;
        }
        while e > at + 1 && matches!(b[e - 1], b'.' | b'-') {
            e -= 1;
        }
        let domain = &text[at + 1..e];
        if s < at && domain.contains('.') && !domain.starts_with('.') {
            out.push(&text[s..e]);
        }
        from = e.max(at + 1);
        if out.len() >= 100 {
            break;
        }
    }
    out
}

fn push_form(h: &Header, form: HeaderForm, out: &mut String) {
    match form {
        HeaderForm::Raw => out.push_str(&h.raw),
        HeaderForm::Addr => out.push_str(&h.addrs().join("\n")),
        HeaderForm::Name => out.push_str(&h.names().join("\n")),
        HeaderForm::Host => {
            let addrs = h.addrs();
            let hosts: Vec<&str> = addrs
                .iter()
                .filter_map(|a| a.rsplit_once('@').map(|(_, d)| d.trim_end_matches('>')))
                .collect();
            out.push_str(&hosts.join("\n"));
        }
        _ => out.push_str(&h.value),
    }
}

/// Meta rules in an order where every meta comes after the metas it uses
/// (cycles are broken by leaving the rest in file order).
fn meta_order(rules: &[Rule], index: &HashMap<String, usize>) -> Vec<usize> {
    let metas: Vec<usize> = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.kind, Kind::Meta { .. }) && r.is_active())
        .map(|(i, _)| i)
        .collect();
    let mut state = vec![0u8; rules.len()]; // 0 new, 1 visiting, 2 done
    let mut out = Vec::with_capacity(metas.len());
    fn visit(
        i: usize,
        rules: &[Rule],
        index: &HashMap<String, usize>,
        state: &mut [u8],
        out: &mut Vec<usize>,
        depth: usize,
    ) {
        if state[i] != 0 || depth > 64 {
            return;
        }
        state[i] = 1;
        if let Kind::Meta { expr } = &rules[i].kind {
            for name in expr.rules() {
                if let Some(&d) = index.get(name) {
                    if matches!(rules[d].kind, Kind::Meta { .. }) && rules[d].is_active() {
                        visit(d, rules, index, state, out, depth + 1);
                    }
                }
            }
            out.push(i);
        }
        state[i] = 2;
    }
    for m in metas {
        visit(m, rules, index, &mut state, &mut out, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{push_paragraphs, rawbody_elements, truncate_part, ScanSizes, BODY_LINE_BYTES_MAX};
    use crate::filter::mime::{self, Limits};

    /// Long raw-body parts are cut like `split_into_array_of_short_paragraphs`:
    /// pieces of 2,048 to 4,096 bytes ending after a newline, else a `>`,
    /// else a space, else at 2,048 bytes; short parts are one element each.
    #[test]
    fn rawbody_parts_are_cut_like_spamassassin() {
        let sizes = ScanSizes {
            body: 50_000,
            rawbody: 500_000,
        };
        let elements = |body: &str| {
            let raw = format!("Subject: x\n\n{body}");
            let message = mime::parse(raw.as_bytes(), &Limits::default());
            let (mut out, mut cuts) = (String::new(), Vec::new());
            rawbody_elements(&message, sizes, &mut out, &mut cuts);
            assert_eq!(cuts.last().map(|c| c.end), Some(out.len()));
            cuts.iter()
                .map(|c| out[c.clone()].to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(elements("short\ntext\n"), ["short\ntext\n"]);
        // 100-byte lines: every piece but the last ends after a newline
        // between 2,048 and 4,096 bytes
        let lines = format!("{}\n", "x".repeat(99)).repeat(100);
        let pieces = elements(&lines);
        assert_eq!(pieces.concat(), lines);
        for p in &pieces[..pieces.len() - 1] {
            assert!(p.len() > BODY_LINE_BYTES_MAX && p.len() <= 2 * BODY_LINE_BYTES_MAX);
            assert!(p.ends_with('\n'));
        }
        // no newline: after a `>`; nothing at all: at 2,048 bytes
        let tags = "<b>".repeat(3000);
        assert!(elements(&tags)[0].ends_with('>'));
        let flat = "y".repeat(9000);
        let pieces = elements(&flat);
        assert_eq!(pieces[0].len(), BODY_LINE_BYTES_MAX);
        assert_eq!(pieces.concat(), flat);
    }

    fn paragraphs(text: &str) -> String {
        let mut out = String::from("subject\n");
        push_paragraphs(text, &mut out);
        out
    }

    /// SpamAssassin 4 (`get_body_text_array_common`): `\n+\s*\n+` becomes a
    /// line break, every other whitespace run one space.
    #[test]
    fn body_text_is_paragraphs_like_spamassassin() {
        assert_eq!(
            paragraphs("Dear friend,\nI am writing\r\nto you.\n\nRegards,\n  Bob\n"),
            "subject\nDear friend, I am writing to you.\nRegards, Bob \n"
        );
        // whitespace around a paragraph break leaves a space on either side
        assert_eq!(paragraphs("a \n \t\n b"), "subject\na \n b\n");
        assert_eq!(paragraphs("\n\nlead"), "subject\n\nlead\n");
        assert_eq!(paragraphs("tab\there\x0bvt"), "subject\ntab here vt\n");
        assert_eq!(paragraphs(""), "subject\n\n");
    }

    /// Elements over 2,048 bytes are cut after the last space within that
    /// length, or at it when there is none.
    #[test]
    fn long_paragraphs_are_cut_into_elements() {
        let word = "abcdefghi ";
        let long = word.repeat(500); // 5,000 bytes, one paragraph
        let out = paragraphs(&long);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "subject");
        assert!(lines.len() >= 4, "{}", lines.len());
        for l in &lines[1..] {
            assert!(l.len() < BODY_LINE_BYTES_MAX, "{}", l.len());
        }
        assert!(lines[1].ends_with(' ') && lines[1].len() == 2040);
        assert_eq!(out.replace('\n', "").len(), "subject".len() + long.len());
        let solid = "x".repeat(5000);
        let out = paragraphs(&solid);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1].len(), BODY_LINE_BYTES_MAX);
        assert_eq!(lines[2].len(), BODY_LINE_BYTES_MAX);
        assert_eq!(lines[3].len(), 5000 - 2 * BODY_LINE_BYTES_MAX);
        // never inside a UTF-8 character
        let wide = "é".repeat(3000);
        let out = paragraphs(&wide);
        assert_eq!(out.replace('\n', "").len(), "subject".len() + wide.len());
    }

    #[test]
    fn parts_are_cut_like_spamassassin_cuts_them() {
        let text = format!("{}\nrest", "a".repeat(10));
        assert_eq!(truncate_part(&text, 0, &['\n']), text, "0 keeps all");
        assert_eq!(truncate_part(&text, 100, &['\n']), text, "short enough");
        assert_eq!(
            truncate_part(&text, 4, &['\n']),
            "aaaaaaaaaa\n",
            "next newline"
        );
        let far = format!("{} x{}\n", "a".repeat(10), "b".repeat(2000));
        assert_eq!(
            truncate_part(&far, 4, &['\n', ' ']),
            "aaaaaaaaaa ",
            "space when the newline is over 1 KiB away"
        );
        assert_eq!(
            truncate_part(&"é".repeat(3000), 5, &['\n']),
            "éé",
            "never inside a character"
        );
    }
}
