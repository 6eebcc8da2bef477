//! The content filter as the daemon runs it at end of message: the scanner
//! ([`super::scan`]) over the message model ([`super::mime`]), its score
//! mapped to an action by the configured thresholds, and the `X-Spam-*`
//! headers.
//!
//! A [`ContentFilter`] is immutable and shared by every shard as part of a
//! policy snapshot; it is compiled on the control thread, never on a shard
//! core. Scanning needs per-thread scratch space ([`ScanState`]), which a
//! shard keeps in one [`ScanPool`]: the pool builds the scratch for the
//! filter it is asked to run and rebuilds it only when a reload swapped the
//! filter, so a shard allocates scratch once per rule set, not per message.

use std::path::PathBuf;
use std::sync::{Arc, Weak};

use super::matcher::Backend;
use super::mime::{self, Limits};
use super::sa::{self, RuleSet};
use super::scan::{ScanResult, ScanState, Scanner};

/// What the score asks for, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContentAction {
    /// Below `required_score`.
    Pass,
    /// At or above `required_score`: delivered, flagged in the headers.
    Spam,
    /// At or above `quarantine_score`: held.
    Quarantine,
    /// At or above `reject_score`: refused with 550 5.7.1.
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
            Self::Reject => "reject",
        }
    }
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

/// The content verdict of one message.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentVerdict {
    /// The scan: score, threshold and symbols.
    pub result: ScanResult,
    /// What the thresholds make of the score.
    pub action: ContentAction,
    /// The message was longer than `scan_bytes_max` and only its head was
    /// scanned.
    pub truncated: bool,
    /// Message-model caps that were hit (nesting, parts, header sizes), as
    /// text. The message is still scanned as far as the caps allowed.
    pub violations: Vec<String>,
}

impl ContentVerdict {
    /// The `X-Spam-*` headers, SpamAssassin style: `(name, value)`, the value
    /// folded with `\n\t` so no line passes 78 columns.
    #[must_use]
    pub fn headers(&self) -> Vec<(String, String)> {
        let spam = self.action != ContentAction::Pass;
        let score = format!("{:.1}", self.result.score);
        let tests: Vec<&str> = self
            .result
            .symbols
            .iter()
            .map(|(s, _)| s.as_str())
            .collect();
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
    scanner: Scanner,
    thresholds: Thresholds,
    headers: bool,
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
}

impl ContentFilter {
    /// A filter around a compiled scanner; `rule_set_required` is the rule
    /// set's own `required_score`, used unless the settings override it.
    #[must_use]
    pub fn new(scanner: Scanner, rule_set_required: f32, settings: &FilterSettings) -> Self {
        let required = settings.required_score.unwrap_or(rule_set_required);
        let limits = Limits {
            message_bytes_max: settings.scan_bytes_max,
            ..Limits::default()
        };
        Self {
            scanner,
            thresholds: Thresholds {
                required,
                quarantine: settings.quarantine_score,
                reject: settings.reject_score,
            },
            headers: settings.headers,
            limits,
        }
    }

    /// The thresholds in effect.
    #[must_use]
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// Whether the `X-Spam-*` headers are added.
    #[must_use]
    pub fn adds_headers(&self) -> bool {
        self.headers
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
    /// bytes when `truncated`) and judges it.
    #[must_use]
    pub fn judge(&self, state: &mut ScanState, raw: &[u8], truncated: bool) -> ContentVerdict {
        let message = mime::parse(raw, &self.limits);
        let result = self.scanner.scan(state, raw, &message);
        let action = self.thresholds.action(result.score);
        ContentVerdict {
            result: ScanResult {
                required_score: self.thresholds.required,
                ..result
            },
            action,
            truncated,
            violations: message
                .violations
                .iter()
                .map(|v| format!("{v:?}"))
                .collect(),
        }
    }
}

/// One shard's scratch space for the filter it runs.
#[derive(Debug, Default)]
pub struct ScanPool {
    /// The filter `state` was built for. A `Weak` keeps the allocation's
    /// address from being reused while it is compared.
    owner: Weak<ContentFilter>,
    state: Option<ScanState>,
}

impl ScanPool {
    /// Judges `raw` with `filter`, building scratch space first when this
    /// pool last ran another filter.
    pub fn judge(
        &mut self,
        filter: &Arc<ContentFilter>,
        raw: &[u8],
        truncated: bool,
    ) -> ContentVerdict {
        let current = Arc::downgrade(filter);
        let state = match &mut self.state {
            Some(state) if Weak::ptr_eq(&self.owner, &current) => state,
            slot => {
                self.owner = current;
                slot.insert(filter.scanner.state())
            }
        };
        filter.judge(state, raw, truncated)
    }
}

/// Loads rule files (`(name, text)` in reading order, see
/// [`rule_file_order`]) with the default options and compiles them for
/// `backend`. Slow on the stock set: never on a shard core.
#[must_use]
pub fn compile_rules(texts: &[(String, String)], backend: Backend) -> (RuleSet, Scanner) {
    let sources: Vec<sa::Source<'_>> = texts
        .iter()
        .map(|(file, text)| sa::Source { file, text })
        .collect();
    let set = sa::load(&sources, &sa::Options::default());
    let scanner = Scanner::compile(&set, backend);
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
            truncated: false,
            violations: Vec::new(),
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
