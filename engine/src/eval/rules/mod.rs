//! rules: the custom policy rule language, compiled once per reload.
//!
//! A rule file is a list of named rules, each a condition over the session
//! [`Facts`] and an action (the full reference is `docs/RULES.md`):
//!
//! ```text
//! # comment
//! rule dynamic-helo:
//!     when helo ~ "^[0-9]+([-.][0-9]+){3}" and not authenticated
//!     then reject "550 5.7.1 Dynamic-looking HELO refused"
//! ```
//!
//! Semantics: rules are evaluated at RCPT time for each recipient; the first
//! rule in file order (files in the order given to [`compile`]) whose
//! condition holds decides. No hit means the rules have nothing to say.
//!
//! Pipeline: `lex` (tokens with line and column), `parse` (untyped
//! tree, recovery at the next `rule`), `check` (types, regexes, CIDRs, reply
//! codes; every error collected), `prefilter` (one `RegexSet` per string field,
//! so each regex test is a bit test), `index` (hash index over equality tests,
//! a prefix table over `client_ip` ranges and the regex sets, so a decision
//! over 10,000 rules evaluates only the few that can match).
//!
//! Limits (all reported as diagnostics, never panics): [`RULE_FILE_BYTES_MAX`],
//! [`RULES_MAX`], [`EXPR_DEPTH_MAX`], [`REGEX_BYTES_MAX`],
//! [`REPLY_TEXT_BYTES_MAX`]; at most [`DIAGNOSTICS_MAX`] diagnostics per file.

mod check;
mod expr;
mod index;
mod lex;
mod parse;
mod prefilter;

use std::collections::HashMap;
use std::sync::Arc;

use crate::eval::{Facts, FileDiagnostic, Origin};
use crate::verdict::SmtpText;

use expr::{CodeField, Expr, Field, StrField, Subject};
use index::Index;
use lex::{Diag, Pos};

/// Largest rule file accepted: 8 MiB, room for about 80,000 typical rules.
pub const RULE_FILE_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Most rules over all files. Indexed rules cost one hash entry each; the
/// limit bounds memory and compile time (about 1 s per 100,000 rules).
pub const RULES_MAX: usize = 100_000;

/// Deepest nesting of `(` and `not` in one condition. Parsing and evaluation
/// recurse on nesting, so this bounds their stack use; `and`/`or` chains do
/// not nest and are unbounded.
pub const EXPR_DEPTH_MAX: usize = 32;

/// Most bytes one compiled regex (and its lazy DFA cache) may use: 1 MiB.
/// The `regex` crate enforces it at compile time. The per-field regex sets
/// that evaluation uses are held to it too: a field's set is split into parts
/// that each fit.
pub const REGEX_BYTES_MAX: usize = 1024 * 1024;

/// Longest reply text after the code (`5.7.1 ...`), in bytes. SMTP limits a
/// reply line to 512 bytes including code and CRLF (RFC 5321 4.5.3.1.5).
pub const REPLY_TEXT_BYTES_MAX: usize = 500;

/// Most diagnostics reported per file (a garbage file should not produce a
/// million lines).
pub const DIAGNOSTICS_MAX: usize = 100;

/// One rule file: its name (for diagnostics and [`Hit::origin`]) and text.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// File name as the admin wrote it in the config.
    pub file: &'a str,
    /// The whole file.
    pub text: &'a str,
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleAction {
    /// Accept this recipient; skip later rules.
    Allow,
    /// Refuse this recipient permanently (5xx).
    Reject(SmtpText),
    /// Refuse this recipient temporarily (4xx).
    TempFail(SmtpText),
    /// Accept and silently drop the message.
    Discard,
    /// Accept and hold the message for review.
    Quarantine,
}

/// Which facts the rules read, so callers can skip work nobody needs
/// (a reverse lookup, a GeoIP lookup, waiting for HELO).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// Some rule reads `client_ip` or `client_name`.
    pub client: bool,
    /// Some rule reads `helo`.
    pub helo: bool,
    /// Some rule reads `country` or `continent`.
    pub geoip: bool,
    /// Some rule reads `tls`.
    pub tls: bool,
}

/// The rule that decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit<'a> {
    /// The rule's name.
    pub name: &'a str,
    /// Where the rule starts (its `rule` keyword).
    pub origin: &'a Origin,
    /// What to do.
    pub action: &'a RuleAction,
}

/// One compiled rule.
#[derive(Debug)]
struct Rule {
    name: Box<str>,
    origin: Origin,
    cond: Expr,
    action: RuleAction,
}

/// A compiled, immutable rule set: build it once per reload with [`compile`]
/// and share it between shards (`Arc<RuleSet>`).
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    index: Index,
    needs: Needs,
}

impl RuleSet {
    /// The first rule, in file order, whose condition holds for `facts`.
    /// Evaluates only the rules the index says can match.
    #[must_use]
    pub fn evaluate(&self, facts: &Facts<'_>) -> Option<Hit<'_>> {
        let subject = Subject::new(facts);
        let found = self.index.first(&subject, |n, matches| {
            self.rules
                .get(n as usize)
                .is_some_and(|r| r.cond.eval_fast(&subject, matches))
        })?;
        self.rules.get(found as usize).map(Rule::hit)
    }

    /// The same answer as [`RuleSet::evaluate`], by evaluating every rule in
    /// order: the oracle for tests and `mbctl rules test --explain`.
    #[must_use]
    pub fn evaluate_naive(&self, facts: &Facts<'_>) -> Option<Hit<'_>> {
        let subject = Subject::new(facts);
        self.rules
            .iter()
            .find(|r| r.cond.eval(&subject))
            .map(Rule::hit)
    }

    /// Number of rules.
    #[must_use]
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Which facts the rules read.
    #[must_use]
    pub fn needs(&self) -> Needs {
        self.needs
    }

    /// Number of rules that are not indexed and so are evaluated on every
    /// decision (numeric-only conditions, `not` at the top, `!=`, an `or` with
    /// such a branch); equality, `client_ip in [...]` and regex conjuncts are
    /// indexed, and so is an `or` of indexed branches.
    #[must_use]
    pub fn unindexed_len(&self) -> usize {
        self.index.always_len()
    }
}

impl Rule {
    fn hit(&self) -> Hit<'_> {
        Hit {
            name: &self.name,
            origin: &self.origin,
            action: &self.action,
        }
    }
}

fn needs_of(rules: &[Rule]) -> Needs {
    let mut needs = Needs::default();
    for rule in rules {
        rule.cond.for_each_field(&mut |field| match field {
            Field::Ip | Field::Str(StrField::ClientName) => needs.client = true,
            Field::Str(StrField::Helo) => needs.helo = true,
            Field::Code(CodeField::Country | CodeField::Continent) => needs.geoip = true,
            Field::Bool(expr::BoolField::Tls) => needs.tls = true,
            _ => {}
        });
    }
    needs
}

/// Compiles rule files, in order, into one [`RuleSet`].
///
/// # Errors
///
/// Every problem in every file at once, each with file, 1-based line and
/// column of the offending token: syntax errors (the parser resumes at the next
/// `rule`), unknown fields (with a suggestion), type mismatches, bad regexes,
/// CIDRs and reply codes, duplicate rule names, and exceeded limits. The list
/// is in file order, then position order.
pub fn compile(sources: &[Source<'_>]) -> Result<RuleSet, Vec<FileDiagnostic>> {
    let mut rules: Vec<Rule> = Vec::new();
    let mut names: HashMap<Box<str>, Origin> = HashMap::new();
    let mut out = Vec::new();
    let mut too_many = false;
    for source in sources {
        let file: Arc<str> = Arc::from(source.file);
        let origin = |pos: Pos| Origin {
            file: Arc::clone(&file),
            line: pos.line,
            column: pos.column,
        };
        if source.text.len() > RULE_FILE_BYTES_MAX {
            out.push(FileDiagnostic {
                origin: origin(Pos { line: 1, column: 1 }),
                message: format!(
                    "rule file is {} bytes; the limit is {RULE_FILE_BYTES_MAX}: split it",
                    source.text.len()
                ),
            });
            continue;
        }
        let (asts, mut diags) = parse::parse(source.text);
        for ast in &asts {
            let mut checker = check::Checker { diags: &mut diags };
            let cond = match &ast.cond {
                Some(c) => checker.expr(c),
                None => Some(Expr::Const(true)),
            };
            let action = checker.action(ast.name, &ast.action);
            if let Some(first) = names.get(ast.name) {
                let message = format!(
                    "duplicate rule name `{}` (first defined at {first}); rule names must be \
                     unique",
                    ast.name
                );
                diags.push(Diag::new(ast.pos, message));
                continue;
            }
            names.insert(ast.name.into(), origin(ast.pos));
            if rules.len() >= RULES_MAX {
                if !too_many {
                    too_many = true;
                    let message =
                        format!("more than {RULES_MAX} rules; merge rules with `in [...]` lists");
                    diags.push(Diag::new(ast.pos, message));
                }
                continue;
            }
            if let (Some(cond), Some(action)) = (cond, action) {
                rules.push(Rule {
                    name: ast.name.into(),
                    origin: origin(ast.pos),
                    cond,
                    action,
                });
            }
        }
        diags.sort_by_key(|d| d.pos);
        diags.truncate(DIAGNOSTICS_MAX);
        out.extend(diags.into_iter().map(|d| FileDiagnostic {
            origin: origin(d.pos),
            message: d.message,
        }));
    }
    if !out.is_empty() {
        return Err(out);
    }
    let regexes = prefilter::RegexSets::build(rules.iter_mut().map(|r| &mut r.cond));
    let index = Index::build(rules.iter().map(|r| &r.cond), regexes);
    let needs = needs_of(&rules);
    Ok(RuleSet {
        rules,
        index,
        needs,
    })
}

#[cfg(test)]
mod tests;
