//! The content filter as the daemon runs it at end of message: the scanner
//! ([`super::scan`]) over the message model ([`super::mime`]), its score
//! mapped to an action by the configured thresholds, the attachment policy
//! ([`super::attach`]), the model's caps, and the `X-Spam-*` headers.
//!
//! Three things can ask for an action, and the strictest one wins
//! ([`ContentAction`] is ordered weakest first):
//!
//! ```text
//! score        Thresholds::action         pass | spam | quarantine | reject
//! attachments  any Finding                the profile's attachment_action
//! MIME caps    a cap Violation (depth,    on_limit
//!              parts, headers, decoded)
//! ```
//!
//! Thresholds, `headers` and the attachment action come from a [`Profile`]:
//! the global one, or a per-domain override chosen by the recipient's domain.
//! A milter sees one message for all its recipients and cannot split it, so
//! a message for several domains gets the strictest verdict any of their
//! profiles gives ([`ContentFilter::for_recipients`]).
//!
//! A [`ContentFilter`] is immutable and shared by every shard as part of a
//! policy snapshot; it is compiled on the control thread, never on a shard
//! core. Scanning needs per-thread scratch space ([`ScanState`]), which a
//! shard keeps in one [`ScanPool`]: the pool builds the scratch for the
//! scanner it is asked to run and rebuilds it only when a reload swapped the
//! scanner, so a shard allocates scratch once per rule set, not per message.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use super::attach::{self, AttachPolicy, Finding, Rule};
use super::matcher::{Backend, DatabaseCache};
use super::mime::{self, Limits, Message, Violation};
use super::sa::{self, RuleSet};
use super::scan::{ScanResult, ScanState, Scanner};
use crate::config::{AttachmentsConfig, FilterAction, FilterConfig};

/// What the filter asks for, weakest first: the strictest of several wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ContentAction {
    /// Below `required_score`; or an attachment or cap rule set to `accept`
    /// (its symbol is still shown in `X-Spam-Status`).
    Pass,
    /// At or above `required_score`, or a rule set to `header`: delivered,
    /// flagged in the headers.
    Spam,
    /// At or above `quarantine_score`, or a rule set to `quarantine`: held.
    Quarantine,
    /// A rule set to `tempfail`: refused with 451 4.7.1 (the client retries).
    TempFail,
    /// At or above `reject_score`, or a rule set to `reject`: refused with
    /// 550 5.7.1.
    Reject,
}

impl ContentAction {
    /// Lower-case name for logs and traces.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Spam => "spam",
            Self::Quarantine => "quarantine",
            Self::TempFail => "tempfail",
            Self::Reject => "reject",
        }
    }
}

/// What decided a verdict's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The score and the thresholds.
    Score,
    /// An attachment finding and the attachment action.
    Attachment,
    /// A MIME cap violation and `on_limit`.
    Limit,
}

/// Score thresholds. `None` disables a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Spam at or above (SpamAssassin's `required_score`).
    pub required: f32,
    /// Held at or above.
    pub quarantine: Option<f32>,
    /// Refused at or above.
    pub reject: Option<f32>,
}

impl Thresholds {
    /// The action for `score`.
    #[must_use]
    pub fn action(&self, score: f32) -> ContentAction {
        // SpamAssassin compares the sum rounded to three decimals.
        let score = (score * 1000.0).round() / 1000.0;
        if self.reject.is_some_and(|r| score >= r) {
            ContentAction::Reject
        } else if self.quarantine.is_some_and(|q| score >= q) {
            ContentAction::Quarantine
        } else if score >= self.required {
            ContentAction::Spam
        } else {
            ContentAction::Pass
        }
    }
}

/// The settings that may differ per recipient domain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Score thresholds.
    pub thresholds: Thresholds,
    /// Add the `X-Spam-*` headers.
    pub headers: bool,
    /// The action when an attachment breaks the attachment policy.
    pub attachment_action: ContentAction,
}

/// One `[filter.domains."..."]` override; `None` fields inherit the global
/// setting.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainSettings {
    /// Lower-case domain; a leading `.` means the domain and every subdomain
    /// (`.example.com`), otherwise that domain only.
    pub domain: String,
    /// `required_score`.
    pub required_score: Option<f32>,
    /// `quarantine_score`; `Some(None)`: never quarantine by score.
    pub quarantine_score: Option<Option<f32>>,
    /// `reject_score`; `Some(None)`: never reject by score.
    pub reject_score: Option<Option<f32>>,
    /// `headers`.
    pub headers: Option<bool>,
    /// `attachment_action`.
    pub attachment_action: Option<ContentAction>,
}

/// The symbol of a MIME cap violation (`MIME_LIMIT_PARTS`), or `None` for
/// what is not a cap of the scanner: structural defects, and a message
/// longer than `scan_bytes_max` (its head is scanned, shown as
/// `truncated=yes`).
#[must_use]
pub fn limit_symbol(violation: &Violation) -> Option<&'static str> {
    match violation {
        Violation::DepthExceeded => Some("MIME_LIMIT_DEPTH"),
        Violation::PartsExceeded => Some("MIME_LIMIT_PARTS"),
        Violation::HeadersExceeded => Some("MIME_LIMIT_HEADERS"),
        Violation::HeaderTooLong => Some("MIME_LIMIT_HEADER_BYTES"),
        Violation::DecodedTooLarge => Some("MIME_LIMIT_DECODED"),
        Violation::MessageTooLarge | Violation::Malformed(_) => None,
    }
}

/// The content verdict of one message.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentVerdict {
    /// The scan: score, the deciding profile's threshold, and symbols.
    pub result: ScanResult,
    /// The strictest of what the score, the attachments and the caps ask.
    pub action: ContentAction,
    /// Which of them decided `action` (on a tie: attachments, then caps,
    /// then the score, the most specific reason first).
    pub cause: Cause,
    /// What the score alone asks for under the deciding profile.
    pub score_action: ContentAction,
    /// The message was longer than `scan_bytes_max` and only its head was
    /// scanned.
    pub truncated: bool,
    /// Message-model caps that were hit and defects found, as text. The
    /// message is still scanned as far as the caps allowed.
    pub violations: Vec<String>,
    /// Attachment policy findings, in attachment order.
    pub findings: Vec<Finding>,
    /// Symbols of the MIME caps hit (`MIME_LIMIT_PARTS`), see
    /// [`limit_symbol`].
    pub limits: Vec<&'static str>,
    /// Whether the `X-Spam-*` headers are added (any recipient's profile
    /// asks for them).
    pub add_headers: bool,
    /// The `[filter.domains]` key of the profile that decided, `None` for
    /// the global one.
    pub domain: Option<String>,
}

impl ContentVerdict {
    /// Every symbol: the rules that hit, then attachment findings, then MIME
    /// caps, each once.
    #[must_use]
    pub fn symbols(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .result
            .symbols
            .iter()
            .map(|(s, _)| s.as_str())
            .collect();
        let extra = self
            .findings
            .iter()
            .map(|f| f.rule.symbol())
            .chain(self.limits.iter().copied());
        for symbol in extra {
            if !out.contains(&symbol) {
                out.push(symbol);
            }
        }
        out
    }

    /// What the refusal or hold is about, for an SMTP reply or a hold
    /// reason (printable ASCII, without a status code):
    /// `Attachment "invoice.pdf.exe" blocked: .exe file disguised as .pdf`.
    #[must_use]
    pub fn summary(&self) -> String {
        match (self.cause, self.findings.first(), self.limits.first()) {
            (Cause::Attachment, Some(f), _) => {
                let mut detail = f.detail().to_owned();
                if detail.len() > 120 {
                    detail.truncate(117);
                    detail.push_str("...");
                }
                format!(
                    "Attachment \"{}\" blocked: {detail}",
                    f.ascii_path(ATTACH_PATH_CHARS_MAX)
                )
            }
            (Cause::Limit, _, Some(_)) => format!(
                "Message structure over the scanner's limits ({})",
                self.limits.join(",")
            ),
            _ => format!(
                "Message content rejected as spam (score {:.1})",
                self.result.score
            ),
        }
    }

    /// The `X-Spam-*` headers, SpamAssassin style: `(name, value)`, the value
    /// folded with `\n\t` so no line passes 78 columns.
    #[must_use]
    pub fn headers(&self) -> Vec<(String, String)> {
        let spam = self.action != ContentAction::Pass;
        let score = format!("{:.1}", self.result.score);
        let tests = self.symbols();
        let mut status = format!(
            "{}, score={score} required={:.1} tests={}",
            if spam { "Yes" } else { "No" },
            self.result.required_score,
            if tests.is_empty() {
                "none".to_owned()
            } else {
                tests.join(",")
            }
        );
        if self.truncated {
            status.push_str(" truncated=yes");
        }
        let mut out = Vec::with_capacity(3);
        if spam {
            out.push(("X-Spam-Flag".to_owned(), "YES".to_owned()));
        }
        out.push(("X-Spam-Score".to_owned(), score));
        out.push(("X-Spam-Status".to_owned(), fold("X-Spam-Status", &status)));
        out
    }
}

/// Longest attachment path quoted in a reply, in characters: with the code,
/// the words and the detail the line stays far below SMTP's 512 octets.
const ATTACH_PATH_CHARS_MAX: usize = 100;

/// Folds a header value at commas and spaces so that no line of
/// `name: value` passes 78 columns (a single token longer than that stays
/// whole).
fn fold(name: &str, value: &str) -> String {
    const WIDTH: usize = 78;
    let mut out = String::with_capacity(value.len() + 16);
    let mut column = name.len() + 2;
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String, column: &mut usize| {
        if word.is_empty() {
            return;
        }
        if *column + word.len() > WIDTH && !out.is_empty() {
            out.push_str("\n\t");
            *column = 8;
            let trimmed = word.trim_start();
            out.push_str(trimmed);
            *column += trimmed.len();
        } else {
            out.push_str(word);
            *column += word.len();
        }
        word.clear();
    };
    for c in value.chars() {
        if c == ' ' {
            flush(&mut word, &mut out, &mut column);
            word.push(c);
        } else {
            word.push(c);
            if c == ',' {
                flush(&mut word, &mut out, &mut column);
            }
        }
    }
    flush(&mut word, &mut out, &mut column);
    out
}

/// The compiled content filter of one policy snapshot.
#[derive(Debug)]
pub struct ContentFilter {
    scanner: Arc<Scanner>,
    /// The global profile.
    global: Profile,
    /// Per-domain profiles with their `[filter.domains]` key, in file order.
    domains: Vec<(String, Profile)>,
    /// Domain → index in `domains`, for keys without a leading dot.
    exact: HashMap<String, usize>,
    /// Parent domain → index in `domains`, for `.example.com` keys.
    subtree: HashMap<String, usize>,
    /// The attachment policy; `None`: attachments are not checked.
    attach: Option<AttachPolicy>,
    /// The action when a MIME cap was hit.
    on_limit: ContentAction,
    /// The model's caps; `message_bytes_max` is `scan_bytes_max`.
    limits: Limits,
}

/// How the filter is set up, besides the compiled scanner.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterSettings {
    /// `required_score`; `None` takes the rule set's.
    pub required_score: Option<f32>,
    /// `quarantine_score`.
    pub quarantine_score: Option<f32>,
    /// `reject_score`.
    pub reject_score: Option<f32>,
    /// Add the `X-Spam-*` headers.
    pub headers: bool,
    /// Most bytes of a message scanned (the head of a longer one is).
    pub scan_bytes_max: usize,
    /// The attachment policy; `None`: attachments are not checked.
    pub attachments: Option<AttachPolicy>,
    /// The action when an attachment breaks the policy.
    pub attachment_action: ContentAction,
    /// The action when a MIME cap was hit.
    pub on_limit: ContentAction,
    /// Per-domain overrides, in file order (a domain at most once).
    pub domains: Vec<DomainSettings>,
}

impl FilterSettings {
    /// The settings of a checked `[filter]` section; `required_score`
    /// absent takes the rule set's at [`ContentFilter::new`].
    #[must_use]
    pub fn from_config(config: &FilterConfig) -> Self {
        Self {
            required_score: config.required_score,
            quarantine_score: config.quarantine_score,
            reject_score: config.reject_score,
            headers: config.headers,
            scan_bytes_max: config.scan_bytes_max,
            attachments: attach_policy(&config.attachments),
            attachment_action: config.attachments.action.into(),
            on_limit: config.on_limit.into(),
            domains: config
                .domains
                .iter()
                .map(|d| DomainSettings {
                    domain: d.domain.clone(),
                    required_score: d.required_score,
                    quarantine_score: d.quarantine_score,
                    reject_score: d.reject_score,
                    headers: d.headers,
                    attachment_action: d.attachment_action.map(ContentAction::from),
                })
                .collect(),
        }
    }
}

impl From<FilterAction> for ContentAction {
    fn from(action: FilterAction) -> Self {
        match action {
            FilterAction::Accept => ContentAction::Pass,
            FilterAction::Header => ContentAction::Spam,
            FilterAction::Quarantine => ContentAction::Quarantine,
            FilterAction::TempFail => ContentAction::TempFail,
            FilterAction::Reject => ContentAction::Reject,
        }
    }
}

/// `[filter.attachments]` as an [`AttachPolicy`]; `None` when disabled.
/// `double_extension = false` empties the decoy list (`invoice.pdf.exe`
/// is then reported as a plain blocked extension), `sniff_executables =
/// false` the sniffed types.
#[must_use]
pub fn attach_policy(config: &AttachmentsConfig) -> Option<AttachPolicy> {
    if !config.enabled {
        return None;
    }
    let defaults = AttachPolicy::default();
    Some(AttachPolicy {
        blocked_extensions: config.blocked_extensions.clone(),
        decoy_extensions: if config.double_extension {
            defaults.decoy_extensions
        } else {
            Vec::new()
        },
        blocked_declared_types: config.blocked_types.clone(),
        blocked_sniffed_types: if config.sniff_executables {
            defaults.blocked_sniffed_types
        } else {
            Vec::new()
        },
        block_deceptive_names: config.deceptive_names,
        max_part_bytes: config.part_bytes_max,
        inspect_zip: config.inspect_zip,
        zip_depth_max: config.zip_depth_max,
        zip_entries_max: config.zip_entries_max,
        zip_uncompressed_max: config.zip_uncompressed_bytes_max,
        zip_ratio_max: config.zip_ratio_max,
        zip_inflate_max: config.zip_inflate_bytes_max,
        block_encrypted_archives: config.block_encrypted_archives,
        block_unsupported_archives: config.block_unsupported_archives,
    })
}

impl ContentFilter {
    /// A filter around a compiled scanner; `rule_set_required` is the rule
    /// set's own `required_score`, used unless the settings override it.
    #[must_use]
    pub fn new(scanner: Arc<Scanner>, rule_set_required: f32, settings: &FilterSettings) -> Self {
        let required = settings.required_score.unwrap_or(rule_set_required);
        let limits = Limits {
            message_bytes_max: settings.scan_bytes_max,
            ..Limits::default()
        };
        let global = Profile {
            thresholds: Thresholds {
                required,
                quarantine: settings.quarantine_score,
                reject: settings.reject_score,
            },
            headers: settings.headers,
            attachment_action: settings.attachment_action,
        };
        let mut domains = Vec::with_capacity(settings.domains.len());
        let mut exact = HashMap::new();
        let mut subtree = HashMap::new();
        for d in &settings.domains {
            let profile = Profile {
                thresholds: Thresholds {
                    required: d.required_score.unwrap_or(global.thresholds.required),
                    quarantine: d.quarantine_score.unwrap_or(global.thresholds.quarantine),
                    reject: d.reject_score.unwrap_or(global.thresholds.reject),
                },
                headers: d.headers.unwrap_or(global.headers),
                attachment_action: d.attachment_action.unwrap_or(global.attachment_action),
            };
            let key = d.domain.to_ascii_lowercase();
            // The first of two equal keys wins (the checker refuses them).
            match key.strip_prefix('.') {
                Some(parent) => subtree.entry(parent.to_owned()),
                None => exact.entry(key.clone()),
            }
            .or_insert(domains.len());
            domains.push((key, profile));
        }
        Self {
            scanner,
            global,
            domains,
            exact,
            subtree,
            attach: settings.attachments.clone(),
            on_limit: settings.on_limit,
            limits,
        }
    }

    /// The global thresholds.
    #[must_use]
    pub fn thresholds(&self) -> Thresholds {
        self.global.thresholds
    }

    /// The profile for recipients at `domain`, with its `[filter.domains]`
    /// key (`None`: the global profile). An exact key wins over a `.parent`
    /// key, and a nearer parent over a farther one.
    #[must_use]
    pub fn profile(&self, domain: &str) -> (Option<&str>, &Profile) {
        match self.profile_index(domain) {
            Some(i) => (Some(self.domains[i].0.as_str()), &self.domains[i].1),
            None => (None, &self.global),
        }
    }

    fn profile_index(&self, domain: &str) -> Option<usize> {
        if self.domains.is_empty() || domain.is_empty() {
            return None;
        }
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if let Some(i) = self.exact.get(&domain) {
            return Some(*i);
        }
        let mut rest = domain.as_str();
        loop {
            if let Some(i) = self.subtree.get(rest) {
                return Some(*i);
            }
            match rest.find('.') {
                Some(dot) => rest = &rest[dot + 1..],
                None => return None,
            }
        }
    }

    /// Whether the `X-Spam-*` headers are added for recipients with the
    /// global profile.
    #[must_use]
    pub fn adds_headers(&self) -> bool {
        self.global.headers
    }

    /// The attachment policy, when attachments are checked.
    #[must_use]
    pub fn attachments(&self) -> Option<&AttachPolicy> {
        self.attach.as_ref()
    }

    /// Most message bytes scanned; a conversation buffers no more.
    #[must_use]
    pub fn scan_bytes_max(&self) -> usize {
        self.limits.message_bytes_max
    }

    /// The scanner (rule counts, compile reports).
    #[must_use]
    pub fn scanner(&self) -> &Scanner {
        &self.scanner
    }

    /// Scans `raw` (the message as received, or its first `scan_bytes_max`
    /// bytes when `truncated`), checks its attachments and caps, and judges
    /// it with the global profile; [`ContentFilter::for_recipients`] then
    /// applies the recipients' domains.
    #[must_use]
    pub fn judge(&self, state: &mut ScanState, raw: &[u8], truncated: bool) -> ContentVerdict {
        self.judge_batch(state, &[(raw, truncated)])
            .pop()
            .unwrap_or_else(|| unreachable!("one verdict per message"))
    }

    /// [`ContentFilter::judge`] of several messages (`(raw, truncated)`),
    /// verdicts in the same order. The scanner runs them as one batch
    /// ([`Scanner::scan_batch`]): cheaper per message than one by one,
    /// with the same verdicts.
    #[must_use]
    pub fn judge_batch(
        &self,
        state: &mut ScanState,
        messages: &[(&[u8], bool)],
    ) -> Vec<ContentVerdict> {
        let parsed: Vec<Message> = messages
            .iter()
            .map(|(raw, _)| mime::parse(raw, &self.limits))
            .collect();
        let batch: Vec<(&[u8], &Message)> =
            messages.iter().map(|(raw, _)| *raw).zip(&parsed).collect();
        let results = self.scanner.scan_batch(state, &batch);
        parsed
            .iter()
            .zip(results)
            .zip(messages)
            .map(|((message, result), (_, truncated))| self.verdict(message, result, *truncated))
            .collect()
    }

    /// The global profile's verdict on a parsed, scanned message.
    fn verdict(&self, message: &Message, result: ScanResult, truncated: bool) -> ContentVerdict {
        let mut findings = match &self.attach {
            Some(policy) => attach::check(policy, message),
            None => Vec::new(),
        };
        if truncated {
            // The archive cut at `scan_bytes_max` has lost its central
            // directory and reads as malformed; it cannot be told from a
            // broken one, so no archive is held against a cut message.
            findings.retain(|f| f.rule != Rule::ArchiveMalformed);
        }
        let mut limits: Vec<&'static str> = Vec::new();
        for symbol in message.violations.iter().filter_map(limit_symbol) {
            if !limits.contains(&symbol) {
                limits.push(symbol);
            }
        }
        let mut verdict = ContentVerdict {
            result,
            action: ContentAction::Pass,
            cause: Cause::Score,
            score_action: ContentAction::Pass,
            truncated,
            violations: message
                .violations
                .iter()
                .map(|v| format!("{v:?}"))
                .collect(),
            findings,
            limits,
            add_headers: self.global.headers,
            domain: None,
        };
        self.decide(&mut verdict, std::iter::empty());
        verdict
    }

    /// `verdict` (from [`ContentFilter::judge`]) for a message to
    /// `recipients` (addresses without angle brackets): each recipient's
    /// domain picks its profile, and the strictest action over those
    /// profiles wins (on a tie, the lower `required_score`); the headers are
    /// added when any of them asks for them. No recipients: the global
    /// profile.
    #[must_use]
    pub fn for_recipients<'a>(
        &self,
        verdict: &ContentVerdict,
        recipients: impl IntoIterator<Item = &'a str>,
    ) -> ContentVerdict {
        let mut out = verdict.clone();
        let domains = recipients
            .into_iter()
            .map(|r| r.rsplit_once('@').map_or("", |(_, d)| d));
        self.decide(&mut out, domains);
        out
    }

    /// The action of one profile for a verdict's facts, and its cause.
    fn action_of(&self, profile: &Profile, verdict: &ContentVerdict) -> (ContentAction, Cause) {
        let mut best = (
            profile.thresholds.action(verdict.result.score),
            Cause::Score,
        );
        if !verdict.limits.is_empty() && self.on_limit >= best.0 {
            best = (self.on_limit, Cause::Limit);
        }
        if !verdict.findings.is_empty() && profile.attachment_action >= best.0 {
            best = (profile.attachment_action, Cause::Attachment);
        }
        best
    }

    /// Sets the action, cause, threshold, headers flag and deciding domain
    /// of `verdict` for recipients at `domains`.
    fn decide<'a>(&self, verdict: &mut ContentVerdict, domains: impl Iterator<Item = &'a str>) {
        // Index `usize::MAX` is the global profile; each profile is looked at
        // once however many recipients share it.
        let mut seen: Vec<usize> = domains
            .map(|d| self.profile_index(d).unwrap_or(usize::MAX))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        if seen.is_empty() {
            seen.push(usize::MAX);
        }
        let mut best: Option<(ContentAction, Cause, usize, &Profile)> = None;
        let mut headers = false;
        for index in seen {
            let profile = self.domains.get(index).map_or(&self.global, |(_, p)| p);
            headers |= profile.headers;
            let (action, cause) = self.action_of(profile, verdict);
            let stricter = match &best {
                None => true,
                Some((a, _, _, p)) => {
                    action > *a
                        || (action == *a && profile.thresholds.required < p.thresholds.required)
                }
            };
            if stricter {
                best = Some((action, cause, index, profile));
            }
        }
        let Some((action, cause, index, profile)) = best else {
            unreachable!("at least the global profile is looked at");
        };
        verdict.action = action;
        verdict.cause = cause;
        verdict.score_action = profile.thresholds.action(verdict.result.score);
        verdict.result.required_score = profile.thresholds.required;
        verdict.add_headers = headers;
        verdict.domain = self.domains.get(index).map(|(d, _)| d.clone());
    }
}

/// One shard's scratch space for the scanner it runs.
#[derive(Debug, Default)]
pub struct ScanPool {
    /// The scanner `state` was built for. A `Weak` keeps the allocation's
    /// address from being reused while it is compared. Filters that share a
    /// scanner (a reload that changed only thresholds) share the scratch.
    owner: Weak<Scanner>,
    state: Option<ScanState>,
}

impl ScanPool {
    /// Judges `raw` with `filter`, building scratch space first when this
    /// pool last ran another scanner.
    pub fn judge(
        &mut self,
        filter: &Arc<ContentFilter>,
        raw: &[u8],
        truncated: bool,
    ) -> ContentVerdict {
        filter.judge(self.state_for(filter), raw, truncated)
    }

    /// [`ContentFilter::judge_batch`] on this pool's scratch space.
    pub fn judge_batch(
        &mut self,
        filter: &Arc<ContentFilter>,
        messages: &[(&[u8], bool)],
    ) -> Vec<ContentVerdict> {
        filter.judge_batch(self.state_for(filter), messages)
    }

    /// The scratch space for `filter`'s scanner, built first when this pool
    /// last ran another scanner.
    fn state_for(&mut self, filter: &Arc<ContentFilter>) -> &mut ScanState {
        let current = Arc::downgrade(&filter.scanner);
        if !Weak::ptr_eq(&self.owner, &current) {
            self.owner = current;
            self.state = None;
        }
        self.state.get_or_insert_with(|| filter.scanner.state())
    }
}

/// Loads rule files (`(name, text)` in reading order, see
/// [`rule_file_order`]) with the default options and compiles them for
/// `backend` on up to `threads` threads, with `cache` of compiled databases
/// if given. Slow on the stock set (11–16 s on two threads, about 1 s with
/// every database cached): never on a shard core.
#[must_use]
pub fn compile_rules(
    texts: &[(String, String)],
    backend: Backend,
    threads: usize,
    cache: Option<&DatabaseCache>,
) -> (RuleSet, Scanner) {
    let sources: Vec<sa::Source<'_>> = texts
        .iter()
        .map(|(file, text)| sa::Source { file, text })
        .collect();
    let set = sa::load(&sources, &sa::Options::default());
    let scanner = Scanner::compile_cached(&set, backend, threads, cache);
    (set, scanner)
}

/// The `.cf` files of a rules setting, in the order SpamAssassin reads them:
/// `entries` are the settings' paths, each either a file (kept as given) or a
/// directory with its listing (only `*.cf`, sorted by name).
#[must_use]
pub fn rule_file_order(entries: Vec<(PathBuf, Option<Vec<PathBuf>>)>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (path, listing) in entries {
        match listing {
            None => out.push(path),
            Some(mut files) => {
                files.retain(|f| f.extension().is_some_and(|x| x == "cf"));
                files.sort();
                out.extend(files);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    const RULES: &str = "body SPAMMY /spammy-marker/\nscore SPAMMY 6.0\n\
                         body VERY /very-spammy/\nscore VERY 10.0\nrequired_score 5.0\n";

    /// A filter over [`RULES`] (naive backend) with the settings of a
    /// `[filter]` section written in TOML.
    fn filter(section: &str) -> ContentFilter {
        let checked = config::parse(section);
        let cfg = checked
            .config
            .unwrap_or_else(|| panic!("{section}: {:?}", checked.diagnostics));
        let (set, scanner) = compile_rules(
            &[("t.cf".to_owned(), RULES.to_owned())],
            Backend::Naive,
            1,
            None,
        );
        ContentFilter::new(
            Arc::new(scanner),
            set.required_score,
            &FilterSettings::from_config(&cfg.filter),
        )
    }

    fn judge(f: &ContentFilter, raw: &str) -> ContentVerdict {
        let mut state = f.scanner().state();
        f.judge(&mut state, raw.as_bytes(), false)
    }

    fn msg(body: &str) -> String {
        format!("From: a@b.example\r\nTo: c@d.example\r\nSubject: t\r\n\r\n{body}\r\n")
    }

    /// A message with one base64 attachment called `name` holding `data`.
    fn with_attachment(name: &str, data: &[u8]) -> String {
        const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut encoded = String::new();
        for chunk in data.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    encoded.push(char::from(B64[(n >> (18 - 6 * i)) as usize & 63]));
                } else {
                    encoded.push('=');
                }
            }
        }
        format!(
            "From: a@b.example\r\nTo: c@d.example\r\nSubject: invoice\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
             --b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
             --b1\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--b1--\r\n"
        )
    }

    /// A DOS header: `MZ` and binary bytes.
    fn exe() -> Vec<u8> {
        let mut data = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff".to_vec();
        data.resize(128, 0);
        data
    }

    #[test]
    fn domain_profile_exact_beats_parent_and_nearer_parent_beats_farther() {
        let f = filter(
            "[filter]\nrules = [\"/x\"]\nreject_score = 20\n\
             [filter.domains.\".example.com\"]\nrequired_score = 3\n\
             [filter.domains.\".sub.example.com\"]\nrequired_score = 4\n\
             [filter.domains.\"exact.example.com\"]\nrequired_score = 7\nreject_score = false\n",
        );
        let required = |d: &str| f.profile(d).1.thresholds.required;
        assert_eq!(f.profile("other.example").0, None);
        assert_eq!(required("other.example"), 5.0, "global: the rule set's");
        assert_eq!(
            required("example.com"),
            3.0,
            "a .parent key covers the domain"
        );
        assert_eq!(required("a.b.example.com"), 3.0);
        assert_eq!(required("x.sub.example.com"), 4.0, "nearer parent");
        assert_eq!(required("sub.example.com"), 4.0);
        assert_eq!(required("EXACT.Example.COM."), 7.0, "case, trailing dot");
        assert_eq!(f.profile("exact.example.com").0, Some("exact.example.com"));
        assert_eq!(required("x.exact.example.com"), 3.0, "exact is exact");
        // Unset keys inherit; `false` turns a step off.
        assert_eq!(f.profile("a.example.com").1.thresholds.reject, Some(20.0));
        assert_eq!(f.profile("exact.example.com").1.thresholds.reject, None);
    }

    #[test]
    fn several_recipient_domains_get_the_strictest_profile() {
        let f = filter(
            "[filter]\nrules = [\"/x\"]\nheaders = false\n\
             [filter.domains.\"strict.example\"]\nreject_score = 5.5\n\
             [filter.domains.\"lax.example\"]\nrequired_score = 8\nheaders = true\n\
             [filter.domains.\"low.example\"]\nrequired_score = 4\n",
        );
        let v = judge(&f, &msg("spammy-marker"));
        assert_eq!(v.result.score, 6.0);
        assert_eq!((v.action, v.domain.as_deref()), (ContentAction::Spam, None));
        assert!(!v.add_headers);
        let at = |rcpts: &[&str]| f.for_recipients(&v, rcpts.iter().copied());
        let lax = at(&["u@lax.example"]);
        assert_eq!(lax.action, ContentAction::Pass, "6 < 8");
        assert_eq!(lax.result.required_score, 8.0);
        assert!(lax.add_headers);
        let strict = at(&["u@lax.example", "u@strict.example", "v@other.example"]);
        assert_eq!(strict.action, ContentAction::Reject);
        assert_eq!(strict.domain.as_deref(), Some("strict.example"));
        assert!(
            strict.add_headers,
            "one recipient's profile asks for headers"
        );
        // Same action (spam) in the global and low profiles: the lower
        // required_score is shown.
        let tie = at(&["u@other.example", "u@low.example"]);
        assert_eq!(tie.action, ContentAction::Spam);
        assert_eq!(tie.result.required_score, 4.0);
        assert_eq!(at(&[]).action, ContentAction::Spam, "no recipients: global");
        assert_eq!(at(&["postmaster"]).domain, None, "no domain: global");
    }

    #[test]
    fn blocked_attachment_rejects_with_its_name_and_reason() {
        let f = filter("[filter]\nrules = [\"/x\"]\n");
        let v = judge(&f, &with_attachment("invoice.pdf.exe", &exe()));
        assert_eq!(v.action, ContentAction::Reject);
        assert_eq!(v.cause, Cause::Attachment);
        let rules: Vec<Rule> = v.findings.iter().map(|f| f.rule).collect();
        assert_eq!(rules, [Rule::DoubleExtension, Rule::ExecutableContent]);
        assert_eq!(
            v.symbols(),
            ["ATTACH_DOUBLE_EXT", "ATTACH_EXECUTABLE"],
            "no rule hit"
        );
        assert_eq!(
            v.summary(),
            "Attachment \"invoice.pdf.exe\" blocked: .exe file disguised as .pdf"
        );
        let status = &v.headers()[2].1.replace("\n\t", " ");
        assert!(
            status.starts_with("Yes, score=0.0 required=5.0 tests=ATTACH_DOUBLE_EXT,"),
            "{status}"
        );
        // Executable content under a harmless name.
        let v = judge(&f, &with_attachment("report.dat", &exe()));
        assert_eq!(
            v.summary(),
            "Attachment \"report.dat\" blocked: executable content (application/x-dosexec)"
        );
        // A clean attachment passes.
        let v = judge(&f, &with_attachment("notes.pdf", b"%PDF-1.4 hello"));
        assert_eq!((v.action, v.findings.len()), (ContentAction::Pass, 0));
    }

    #[test]
    fn the_stricter_of_score_and_attachment_wins() {
        let f = filter(
            "[filter]\nrules = [\"/x\"]\nquarantine_score = 8\nreject_score = 15\n\
             [filter.attachments]\naction = \"quarantine\"\n\
             [filter.domains.\"hdr.example\"]\nattachment_action = \"header\"\n\
             [filter.domains.\"tf.example\"]\nattachment_action = \"tempfail\"\n",
        );
        let attached =
            with_attachment("run.js", b"alert(1)").replace("see attached", "spammy-marker");
        let v = judge(&f, &attached);
        assert_eq!(
            (v.action, v.cause),
            (ContentAction::Quarantine, Cause::Attachment)
        );
        let hdr = f.for_recipients(&v, ["a@hdr.example"]);
        assert_eq!(
            (hdr.action, hdr.cause),
            (ContentAction::Spam, Cause::Attachment),
            "tie of header and score 6: the attachment is named"
        );
        let tf = f.for_recipients(&v, ["a@tf.example"]);
        assert_eq!(
            (tf.action, tf.cause),
            (ContentAction::TempFail, Cause::Attachment)
        );
        // A score past reject_score beats the attachment's quarantine.
        let worse = attached.replace("spammy-marker", "spammy-marker very-spammy");
        let v = judge(&f, &worse);
        assert_eq!((v.action, v.cause), (ContentAction::Reject, Cause::Score));
        assert!(v
            .summary()
            .starts_with("Message content rejected as spam (score 16.0)"));
        // Disabled: no findings at all.
        let off = filter("[filter]\nrules = [\"/x\"]\n[filter.attachments]\nenabled = false\n");
        let v = judge(&off, &with_attachment("run.js", b"alert(1)"));
        assert_eq!((v.action, v.findings.len()), (ContentAction::Pass, 0));
        // accept: delivered, but the symbol is shown.
        let accept =
            filter("[filter]\nrules = [\"/x\"]\n[filter.attachments]\naction = \"accept\"\n");
        let v = judge(&accept, &with_attachment("run.js", b"alert(1)"));
        assert_eq!(v.action, ContentAction::Pass);
        assert!(
            v.headers()[1].1.contains("tests=ATTACH_BLOCKED_EXT"),
            "{:?}",
            v.headers()
        );
    }

    /// A multipart with `n` text parts.
    fn many_parts(n: usize) -> String {
        let mut m = String::from(
            "From: a@b.example\r\nSubject: parts\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"p\"\r\n\r\n",
        );
        for i in 0..n {
            m.push_str(&format!(
                "--p\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n"
            ));
        }
        m.push_str("--p--\r\n");
        m
    }

    #[test]
    fn mime_caps_act_by_on_limit() {
        let f = filter("[filter]\nrules = [\"/x\"]\n");
        let v = judge(&f, &many_parts(300));
        assert_eq!(v.limits, ["MIME_LIMIT_PARTS"]);
        assert_eq!(
            (v.action, v.cause),
            (ContentAction::Quarantine, Cause::Limit)
        );
        assert!(v.headers()[2].1.contains("tests=MIME_LIMIT_PARTS"));
        assert_eq!(
            v.summary(),
            "Message structure over the scanner's limits (MIME_LIMIT_PARTS)"
        );
        let ok = judge(&f, &many_parts(10));
        assert_eq!((ok.action, ok.limits.len()), (ContentAction::Pass, 0));
        for (name, action) in [
            ("accept", ContentAction::Pass),
            ("reject", ContentAction::Reject),
            ("tempfail", ContentAction::TempFail),
        ] {
            let f = filter(&format!(
                "[filter]\nrules = [\"/x\"]\non_limit = \"{name}\"\n"
            ));
            assert_eq!(judge(&f, &many_parts(300)).action, action, "{name}");
        }
        // The depth cap too.
        let mut deep = String::from("From: a@b.example\r\nSubject: deep\r\n");
        for i in 0..12 {
            deep.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"d{i}\"\r\n\r\n--d{i}\r\n"
            ));
        }
        deep.push_str("Content-Type: text/plain\r\n\r\nbottom\r\n");
        assert!(judge(&f, &deep).limits.contains(&"MIME_LIMIT_DEPTH"));
    }

    #[test]
    fn a_cut_archive_is_not_held_against_a_truncated_message() {
        let f = filter("[filter]\nrules = [\"/x\"]\n");
        let broken_zip = b"PK\x03\x04 this zip lost its end";
        let raw = with_attachment("big.zip", broken_zip);
        let mut state = f.scanner().state();
        let whole = f.judge(&mut state, raw.as_bytes(), false);
        assert_eq!(whole.findings[0].rule, Rule::ArchiveMalformed);
        let cut = f.judge(&mut state, raw.as_bytes(), true);
        assert_eq!((cut.action, cut.findings.len()), (ContentAction::Pass, 0));
    }

    #[test]
    fn thresholds_pick_the_strongest_step_reached() {
        let t = Thresholds {
            required: 5.0,
            quarantine: Some(8.0),
            reject: Some(15.0),
        };
        assert_eq!(t.action(-1.0), ContentAction::Pass);
        assert_eq!(t.action(4.9), ContentAction::Pass);
        assert_eq!(
            t.action(4.9996),
            ContentAction::Spam,
            "rounded to 3 decimals"
        );
        assert_eq!(t.action(5.0), ContentAction::Spam);
        assert_eq!(t.action(8.0), ContentAction::Quarantine);
        assert_eq!(t.action(1000.0), ContentAction::Reject);
        let none = Thresholds {
            required: 5.0,
            quarantine: None,
            reject: None,
        };
        assert_eq!(none.action(1000.0), ContentAction::Spam);
    }

    #[test]
    fn status_header_folds_under_78_columns() {
        let symbols: Vec<(String, f32)> =
            (0..30).map(|i| (format!("RULE_NUMBER_{i}"), 0.5)).collect();
        let verdict = ContentVerdict {
            result: ScanResult {
                score: 15.0,
                required_score: 5.0,
                symbols,
            },
            action: ContentAction::Spam,
            cause: Cause::Score,
            score_action: ContentAction::Spam,
            truncated: false,
            violations: Vec::new(),
            findings: Vec::new(),
            limits: Vec::new(),
            add_headers: true,
            domain: None,
        };
        let headers = verdict.headers();
        assert_eq!(headers[0], ("X-Spam-Flag".to_owned(), "YES".to_owned()));
        assert_eq!(headers[1].1, "15.0");
        let (name, value) = &headers[2];
        let full = format!("{name}: {value}");
        assert!(full.lines().count() > 3, "{full}");
        for line in full.lines() {
            assert!(line.len() <= 78, "{line:?}");
        }
        let unfolded = value.replace("\n\t", " ");
        assert!(unfolded.starts_with("Yes, score=15.0 required=5.0 tests=RULE_NUMBER_0,"));
        assert!(unfolded.replace(", ", ",").ends_with("RULE_NUMBER_29"));
    }

    #[test]
    fn rule_files_are_cf_only_sorted_within_a_directory_in_setting_order() {
        let order = rule_file_order(vec![
            (
                PathBuf::from("/d"),
                Some(vec![
                    PathBuf::from("/d/20_b.cf"),
                    PathBuf::from("/d/README"),
                    PathBuf::from("/d/10_a.cf"),
                ]),
            ),
            (PathBuf::from("/etc/local.cf"), None),
        ]);
        assert_eq!(
            order,
            vec![
                PathBuf::from("/d/10_a.cf"),
                PathBuf::from("/d/20_b.cf"),
                PathBuf::from("/etc/local.cf")
            ]
        );
    }
}
