//! The load report: what is active, what is skipped and why, the eval
//! inventory, regex classes, unknown directives and diagnostics; and its
//! Markdown rendering (for `docs/SPAMASSASSIN.md`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{evals, Class, Diagnostic, EvalUse, Kind, RuleSet, Status};

/// Counts and diagnostics of one [`super::load`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Files read.
    pub files: usize,
    /// Lines read.
    pub lines: usize,
    /// Rule definitions in effect, and those only under a false condition or
    /// another language (the latter are in [`RuleSet::rules`] as skipped).
    pub rules_total: usize,
    /// Active rules by kind label ([`Kind::label`]).
    pub active_by_kind: BTreeMap<String, usize>,
    /// Active `__` sub-rules (included in `active_by_kind`).
    pub active_subrules: usize,
    /// Active rules that add to the score (non-`__`, score not 0).
    pub active_scoring: usize,
    /// Skipped rules by reason label ([`super::SkipReason::label`]).
    pub skipped_by_reason: BTreeMap<String, usize>,
    /// Unsupported regexes by reason.
    pub unsupported_regex: BTreeMap<String, usize>,
    /// Regexes of rules in effect by class (`rust`, `backtracking`, `unsupported`).
    pub regex_classes: BTreeMap<String, usize>,
    /// Backtracking constructs (lookahead, ...) by number of patterns using them.
    pub backtracking_features: BTreeMap<String, usize>,
    /// Patterns expanded by ReplaceTags.
    pub replace_tags_expanded: usize,
    /// Active meta rules referring to a rule that is skipped or undefined
    /// (the reference counts as 0, as in SpamAssassin).
    pub meta_with_unavailable_deps: usize,
    /// Names referred to by metas but defined nowhere.
    pub meta_undefined_refs: BTreeMap<String, usize>,
    /// The eval inventory, most used first.
    pub evals: Vec<EvalUse>,
    /// Settings (not rules) by directive.
    pub settings: BTreeMap<String, usize>,
    /// Directives not recognised, by name.
    pub unknown_directives: BTreeMap<String, usize>,
    /// `lang xx` lines skipped (another language).
    pub lang_lines_skipped: usize,
    /// Non-rule lines inside false conditional blocks.
    pub false_block_lines: usize,
    /// Rule lines that could not be parsed (also in `diagnostics`).
    pub malformed: usize,
    /// Definitions that replaced an earlier one of the same name.
    pub redefinitions: usize,
    /// `score` lines for rules never defined (net rules of absent plugins, ...).
    pub scores_without_rule: usize,
    /// `describe` lines for rules never defined.
    pub describe_without_rule: usize,
    /// `tflags` lines for rules never defined.
    pub tflags_without_rule: usize,
    /// Malformed lines and other problems, with file:line:column.
    pub diagnostics: Vec<Diagnostic>,
}

fn bump(map: &mut BTreeMap<String, usize>, key: &str) {
    *map.entry(key.to_owned()).or_default() += 1;
}

pub(super) fn tally(set: &mut RuleSet, options: &super::Options) {
    let r = &mut set.report;
    r.rules_total = set.rules.len();
    let mut evals: BTreeMap<String, EvalUse> = BTreeMap::new();
    let status: std::collections::HashMap<&str, bool> = set
        .rules
        .iter()
        .map(|x| (x.name.as_str(), x.is_active()))
        .collect();
    for rule in &set.rules {
        let in_effect = !matches!(
            &rule.status,
            Status::Skipped(super::SkipReason::Conditional(_) | super::SkipReason::Lang)
        );
        match &rule.status {
            Status::Active => {
                bump(&mut r.active_by_kind, rule.kind.label());
                if rule.is_subrule() {
                    r.active_subrules += 1;
                } else if rule.score != 0.0 {
                    r.active_scoring += 1;
                }
            }
            Status::Skipped(reason) => {
                bump(&mut r.skipped_by_reason, reason.label());
                if let super::SkipReason::UnsupportedRegex(why) = reason {
                    bump(&mut r.unsupported_regex, why);
                }
            }
        }
        if in_effect {
            if let Some(p) = &rule.pattern {
                let class = match p.class() {
                    Class::Rust => "rust",
                    Class::Backtracking => "backtracking",
                    Class::Unsupported => "unsupported",
                };
                bump(&mut r.regex_classes, class);
                for f in &p.backtracking_features {
                    bump(&mut r.backtracking_features, f);
                }
                if p.expanded.is_some() {
                    r.replace_tags_expanded += 1;
                }
            }
        }
        if let Kind::Eval { function, args, .. } = &rule.kind {
            let e = evals.entry(function.clone()).or_insert_with(|| EvalUse {
                name: function.clone(),
                class: evals::classify(function),
                implemented: options.evals.iter().any(|x| x == function),
                rules: Vec::new(),
                inactive_rules: Vec::new(),
                args: Vec::new(),
            });
            if in_effect {
                e.rules.push(rule.name.clone());
                e.args.push(args.clone());
            } else {
                e.inactive_rules.push(rule.name.clone());
            }
        }
        if let (Status::Active, Kind::Meta { expr }) = (&rule.status, &rule.kind) {
            let mut unavailable = false;
            for dep in expr.rules() {
                match status.get(dep) {
                    Some(true) => {}
                    Some(false) => unavailable = true,
                    None => {
                        unavailable = true;
                        bump(&mut r.meta_undefined_refs, dep);
                    }
                }
            }
            if unavailable {
                r.meta_with_unavailable_deps += 1;
            }
        }
    }
    let mut evals: Vec<EvalUse> = evals.into_values().collect();
    evals.sort_by(|a, b| {
        let n = |e: &EvalUse| (e.rules.len(), e.inactive_rules.len());
        n(b).cmp(&n(a)).then_with(|| a.name.cmp(&b.name))
    });
    r.evals = evals;
}

fn table(out: &mut String, head: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}

fn counts(out: &mut String, head: &str, map: &BTreeMap<String, usize>) {
    let mut rows: Vec<(&String, &usize)> = map.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    table(
        out,
        &[head, "count"],
        rows.into_iter()
            .map(|(k, v)| vec![format!("`{k}`"), v.to_string()]),
    );
}

impl Report {
    /// Active rules, all kinds.
    #[must_use]
    pub fn active(&self) -> usize {
        self.active_by_kind.values().sum()
    }

    /// Skipped rules, all reasons.
    #[must_use]
    pub fn skipped(&self) -> usize {
        self.skipped_by_reason.values().sum()
    }

    /// The report as Markdown sections (counts, skips, regex classes, the
    /// eval inventory, unknown directives, diagnostics).
    #[must_use]
    pub fn to_markdown(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{} files, {} lines; {} rule definitions: **{} active** ({} scoring, {} `__` \
             sub-rules), **{} skipped**.\n",
            self.files,
            self.lines,
            self.rules_total,
            self.active(),
            self.active_scoring,
            self.active_subrules,
            self.skipped()
        );
        o.push_str("### Active rules by kind\n\n");
        counts(&mut o, "kind", &self.active_by_kind);
        o.push_str("### Skipped rules by reason\n\n");
        counts(&mut o, "reason", &self.skipped_by_reason);
        let _ = writeln!(
            o,
            "Active meta rules with at least one skipped or undefined dependency (it counts \
             as 0): {}. Undefined names referred to by metas: {}.\n",
            self.meta_with_unavailable_deps,
            self.meta_undefined_refs.len()
        );
        o.push_str("### Regexes (rules in effect)\n\n");
        counts(&mut o, "class", &self.regex_classes);
        let _ = writeln!(
            o,
            "Patterns expanded by ReplaceTags: {}.\n",
            self.replace_tags_expanded
        );
        o.push_str("Constructs needing a backtracking engine:\n\n");
        counts(&mut o, "construct", &self.backtracking_features);
        if !self.unsupported_regex.is_empty() {
            o.push_str("Unsupported regexes (active otherwise), by reason:\n\n");
            counts(&mut o, "reason", &self.unsupported_regex);
        }
        o.push_str("### Eval functions\n\n");
        table(
            &mut o,
            &[
                "function",
                "rules",
                "not in effect",
                "needs",
                "implemented",
                "example rule",
            ],
            self.evals.iter().map(|e| {
                vec![
                    format!("`{}`", e.name),
                    e.rules.len().to_string(),
                    e.inactive_rules.len().to_string(),
                    e.class.label().to_owned(),
                    if e.implemented { "yes" } else { "no" }.to_owned(),
                    e.rules
                        .first()
                        .or(e.inactive_rules.first())
                        .cloned()
                        .unwrap_or_default(),
                ]
            }),
        );
        let mut by_class: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
        for e in &self.evals {
            let c = by_class.entry(e.class.label().to_owned()).or_default();
            c.0 += 1;
            c.1 += e.rules.len();
            c.2 += e.inactive_rules.len();
        }
        table(
            &mut o,
            &["needs", "functions", "rules", "not in effect"],
            by_class
                .into_iter()
                .map(|(k, (f, r, i))| vec![k, f.to_string(), r.to_string(), i.to_string()]),
        );
        o.push_str("### Other lines\n\n");
        let _ = writeln!(
            o,
            "- settings (not rules): {} lines in {} directives\n- `lang` lines skipped: {}\n\
             - lines in false conditional blocks (not rules): {}\n- redefinitions: {}\n\
             - `score` / `describe` / `tflags` for rules never defined: {} / {} / {}\n\
             - malformed rule lines: {}\n- diagnostics: {}\n",
            self.settings.values().sum::<usize>(),
            self.settings.len(),
            self.lang_lines_skipped,
            self.false_block_lines,
            self.redefinitions,
            self.scores_without_rule,
            self.describe_without_rule,
            self.tflags_without_rule,
            self.malformed,
            self.diagnostics.len()
        );
        if !self.unknown_directives.is_empty() {
            o.push_str("Unknown directives:\n\n");
            counts(&mut o, "directive", &self.unknown_directives);
        }
        if !self.diagnostics.is_empty() {
            o.push_str("Diagnostics:\n\n");
            for d in &self.diagnostics {
                let _ = writeln!(o, "- `{d}`");
            }
            o.push('\n');
        }
        o
    }
}
