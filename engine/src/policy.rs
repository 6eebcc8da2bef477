//! Our rules, compiled from `[policy]` into lookup tables, answering at MAIL,
//! RCPT and end of message.
//!
//! This is the first verdict path, just rich enough to prove the milter path:
//! sender and recipient lists with first-match-wins rules, a message size limit,
//! and a header on accepted mail. It is the seam the full eval stage (tenant →
//! domain → recipient tree, rate limits, GeoIP, custom rules) and the filter
//! stage (content score) plug into: both feed [`Policy::end_of_message`] through
//! [`MessageFacts`], and both return decisions with [`Reason`]s.
//!
//! Lookups cost O(labels in the domain) hash probes, whatever the list size:
//! each rule set keeps one hash map per pattern kind, mapping a pattern to the
//! index of the first rule that names it, and the lowest index among all probes
//! wins, which is exactly "first matching rule in file order".
//!
//! A policy is immutable once built and shared as an `Arc` snapshot; a
//! conversation pins the snapshot at MAIL and keeps it until the message ends,
//! so a reload swaps policies at a message boundary.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{AddressPattern, AddressRule, PolicyConfig, RuleAction};
use crate::ctl_api::{PolicyQuery, PolicyTrace};
use crate::eval::ratelimit::RateTable;
use crate::eval::{Ask, EvalDecision, Facts, PolicyTree};
use crate::filter::content::{Cause, ContentAction, ContentFilter, ContentVerdict};
use crate::milter::Modification;
use crate::verdict::{Action, Reason, SmtpText, Verdict};

/// A compiled policy.
#[derive(Debug)]
pub struct Policy {
    generation: u64,
    message_bytes_max: u64,
    header: Option<String>,
    sender: RuleSet,
    recipient: RuleSet,
    eval: Option<Arc<PolicyTree>>,
    rate_table: Arc<RateTable>,
    filter: Option<Arc<ContentFilter>>,
}

/// The answer at MAIL or RCPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What to do now.
    pub outcome: Outcome,
    /// Why (`None` when no rule matched).
    pub reason: Option<Reason>,
}

/// What a MAIL/RCPT decision does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No rule matched: go on.
    Continue,
    /// An allow rule matched: go on, skipping later rules of this stage.
    Allow,
    /// Refuse now with this reply (reject or tempfail).
    Refuse(Action),
    /// Accept now; act at end of message.
    Defer(Deferred),
}

/// An action taken at end of message because of an envelope rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deferred {
    /// Accept and drop.
    Discard,
    /// Hold for review.
    Quarantine,
    /// Replace the body with this text.
    ReplaceBody(String),
}

/// Which SMTP events a policy looks at. The milter conversation negotiates
/// the others away (`NO_*`), so the MTA neither formats nor sends them: each
/// skipped event is a packet plus its macro packet less per message, for
/// Postfix and for the shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Events {
    /// The client address and name (CONNECT).
    pub connect: bool,
    /// The HELO/EHLO name.
    pub helo: bool,
    /// Message headers (and end of headers).
    pub headers: bool,
    /// Body chunks.
    pub body: bool,
}

/// What the end-of-message verdict is computed from.
#[derive(Debug, Clone, Default)]
pub struct MessageFacts {
    /// Body bytes as streamed by the MTA.
    pub body_bytes: u64,
    /// Actions deferred by envelope rules, with their reasons, in order.
    pub deferred: Vec<(Deferred, Reason)>,
    /// Content score (0 when no content filter ran).
    pub score: f32,
    /// The content filter's verdict, when one is configured, as
    /// [`ContentFilter::judge`] gave it (global profile): end of message
    /// applies the recipients' per-domain profiles.
    pub content: Option<ContentVerdict>,
    /// The accepted recipients (addresses without angle brackets): their
    /// domains pick the content filter's per-domain profiles.
    pub recipients: Vec<String>,
    /// Shard that handled the message (goes into the header).
    pub shard: u16,
}

impl Policy {
    /// Compiles `[policy]`. `generation` identifies the config snapshot in
    /// status output and traces.
    #[must_use]
    pub fn new(config: &PolicyConfig, generation: u64) -> Self {
        Self::with_eval(
            config,
            generation,
            None,
            Arc::new(RateTable::with_capacity(1024)),
        )
    }

    /// Compiles `[policy]` together with the eval policy tree (if any).
    /// `rate_table` holds the rate-limit buckets: the runtime keeps one table
    /// for its lifetime and hands it to every snapshot, so buckets survive a
    /// reload.
    #[must_use]
    pub fn with_eval(
        config: &PolicyConfig,
        generation: u64,
        eval: Option<Arc<PolicyTree>>,
        rate_table: Arc<RateTable>,
    ) -> Self {
        Self {
            generation,
            message_bytes_max: config.message_bytes_max,
            header: config.header.clone(),
            sender: RuleSet::new(&config.sender, Stage::Sender),
            recipient: RuleSet::new(&config.recipient, Stage::Recipient),
            eval,
            rate_table,
            filter: None,
        }
    }

    /// Adds the content filter (compiled on the control thread).
    #[must_use]
    pub fn with_filter(mut self, filter: Option<Arc<ContentFilter>>) -> Self {
        self.filter = filter;
        self
    }

    /// The content filter, if one is configured.
    #[must_use]
    pub fn filter(&self) -> Option<&Arc<ContentFilter>> {
        self.filter.as_ref()
    }

    /// The eval policy tree, if one is configured.
    #[must_use]
    pub fn eval(&self) -> Option<&Arc<PolicyTree>> {
        self.eval.as_ref()
    }

    /// The shared rate-limit buckets.
    #[must_use]
    pub fn rate_table(&self) -> &Arc<RateTable> {
        &self.rate_table
    }

    /// The eval decision for one recipient, when a policy tree is configured.
    #[must_use]
    pub fn eval_rcpt(&self, ask: &Ask<'_>) -> Option<EvalDecision> {
        self.eval
            .as_ref()
            .map(|tree| tree.decide(ask, &self.rate_table))
    }

    /// The config generation this policy was built from.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The events this policy needs. Envelope lists need only MAIL and RCPT;
    /// the size limit needs the body (clients need not declare SIZE=). The
    /// eval tree asks for CONNECT when it looks at the client (IP lists,
    /// GeoIP, rules, rate limits by IP) and HELO when it looks at the HELO
    /// name or TLS; the content filter needs the headers.
    #[must_use]
    pub fn events(&self) -> Events {
        let needs = self.eval.as_ref().map(|t| t.needs()).unwrap_or_default();
        Events {
            connect: needs.client,
            helo: needs.helo,
            headers: self.filter.is_some(),
            body: true,
        }
    }

    /// The size limit in bytes.
    #[must_use]
    pub fn message_bytes_max(&self) -> u64 {
        self.message_bytes_max
    }

    /// Decision at MAIL FROM. `sender` is the address without angle brackets
    /// (empty for the null sender); `declared_bytes` is the ESMTP `SIZE=` value.
    #[must_use]
    pub fn mail(&self, sender: &str, declared_bytes: Option<u64>) -> Decision {
        if let Some(size) = declared_bytes.filter(|&s| s > self.message_bytes_max) {
            return self.too_large(size);
        }
        self.sender.decide(sender)
    }

    /// Decision at RCPT TO for one recipient (without angle brackets).
    #[must_use]
    pub fn rcpt(&self, recipient: &str) -> Decision {
        self.recipient.decide(recipient)
    }

    /// One recipient decided by everything that runs before DATA: the
    /// `[policy]` sender and recipient lists, then the eval tree. The policy
    /// delegation server and `mbctl policy test` use this; the milter
    /// conversation runs the same steps at MAIL and RCPT.
    #[must_use]
    pub fn envelope(&self, ask: &Ask<'_>, table: &RateTable) -> EvalDecision {
        let mut reasons = Vec::new();
        let mut ask = *ask;
        let mut deferred = None;
        for decision in [
            self.sender.decide(ask.facts.sender),
            self.recipient.decide(ask.facts.recipient),
        ] {
            reasons.extend(decision.reason);
            match decision.outcome {
                Outcome::Refuse(action) => {
                    return EvalDecision {
                        outcome: Outcome::Refuse(action),
                        reasons,
                    }
                }
                Outcome::Allow => ask.sender_allowed = true,
                Outcome::Defer(d) => deferred = Some(d),
                Outcome::Continue => {}
            }
        }
        let Some(tree) = &self.eval else {
            let outcome = match deferred {
                Some(d) => Outcome::Defer(d),
                None if ask.sender_allowed => Outcome::Allow,
                None => Outcome::Continue,
            };
            return EvalDecision { outcome, reasons };
        };
        let mut decision = tree.decide(&ask, table);
        reasons.append(&mut decision.reasons);
        decision.reasons = reasons;
        if let (Some(d), Outcome::Continue | Outcome::Allow) = (deferred, &decision.outcome) {
            decision.outcome = Outcome::Defer(d);
        }
        decision
    }

    /// `mbctl policy test`: decides `query` recipient by recipient as one
    /// transaction, with every reason, against a scratch rate-limit table so
    /// that nothing is counted.
    #[must_use]
    pub fn test_envelope(
        &self,
        query: &PolicyQuery,
        now_ms: u64,
        utc_offset_minutes: i16,
    ) -> Vec<PolicyTrace> {
        let scratch = RateTable::with_capacity(1024);
        let client_ip = query.ip.as_deref().and_then(|ip| ip.parse().ok());
        let unix_time = query.unix_time.unwrap_or(now_ms / 1000);
        let mut accepted = 0u32;
        let mut traces = Vec::with_capacity(query.rcpt.len());
        for recipient in &query.rcpt {
            let ask = Ask {
                facts: Facts {
                    client_ip,
                    client_name: &query.client_name,
                    helo: &query.helo,
                    sender: &query.from,
                    recipient,
                    recipient_count: accepted,
                    message_count: 0,
                    sasl_user: &query.sasl_user,
                    tls: query.tls,
                    country: None,
                    continent: None,
                    unix_time,
                    utc_offset_minutes,
                },
                first_recipient: accepted == 0,
                sender_allowed: false,
                now_ms: unix_time.saturating_mul(1000),
                trace: true,
            };
            let decision = self.envelope(&ask, &scratch);
            let (name, reply) = match &decision.outcome {
                Outcome::Continue => ("continue", None),
                Outcome::Allow => ("allow", None),
                Outcome::Refuse(Action::Reject(t)) => {
                    ("reject", Some(format!("{} {}", t.code, t.text)))
                }
                Outcome::Refuse(Action::TempFail(t)) => {
                    ("tempfail", Some(format!("{} {}", t.code, t.text)))
                }
                Outcome::Refuse(_) => ("refuse", None),
                Outcome::Defer(Deferred::Discard) => ("discard", None),
                Outcome::Defer(Deferred::Quarantine) => ("quarantine", None),
                Outcome::Defer(Deferred::ReplaceBody(_)) => ("replace-body", None),
            };
            if !matches!(decision.outcome, Outcome::Refuse(_)) {
                accepted += 1;
            }
            traces.push(PolicyTrace {
                recipient: recipient.clone(),
                decision: name.to_owned(),
                reply,
                reasons: decision
                    .reasons
                    .into_iter()
                    .map(|r| (r.rule, r.detail))
                    .collect(),
            });
        }
        traces
    }

    /// The verdict at end of message.
    #[must_use]
    pub fn end_of_message(&self, facts: &MessageFacts) -> Verdict {
        if facts.body_bytes > self.message_bytes_max {
            let Decision { outcome, reason } = self.too_large(facts.body_bytes);
            let Outcome::Refuse(action) = outcome else {
                unreachable!("too_large refuses")
            };
            return Verdict {
                action,
                score: facts.score,
                reasons: reason.into_iter().collect(),
                modifications: Vec::new(),
            };
        }
        let mut modifications = Vec::new();
        if let Some(name) = &self.header {
            modifications.push(Modification::AddHeader {
                name: name.clone(),
                value: format!("score={:.2} shard={}", facts.score, facts.shard),
            });
        }
        let mut action = Action::Accept;
        let mut reasons = Vec::new();
        if let Some(content) = &facts.content {
            let content = match &self.filter {
                Some(filter) => {
                    filter.for_recipients(content, facts.recipients.iter().map(String::as_str))
                }
                None => content.clone(),
            };
            if let Some(refusal) = content_verdict(&content, &mut reasons, &mut modifications) {
                return Verdict {
                    action: refusal,
                    score: facts.score,
                    reasons,
                    modifications: Vec::new(),
                };
            }
            if content.action == ContentAction::Quarantine {
                action = Action::Quarantine(format!("mailborder {}", hold_reason(&content)));
            }
        }
        // Discard beats quarantine beats replace-body: the strongest deferred
        // action decides, and every one of them is kept as a reason.
        for (deferred, reason) in &facts.deferred {
            reasons.push(reason.clone());
            match deferred {
                Deferred::Discard => action = Action::Discard,
                Deferred::Quarantine
                    if !matches!(action, Action::Discard | Action::Quarantine(_)) =>
                {
                    action = Action::Quarantine(format!("mailborder {}", reason.rule));
                }
                Deferred::Quarantine => {}
                Deferred::ReplaceBody(text) => {
                    if !modifications
                        .iter()
                        .any(|m| matches!(m, Modification::ReplaceBody(_)))
                    {
                        modifications.push(Modification::ReplaceBody(text.clone().into_bytes()));
                    }
                }
            }
        }
        if action == Action::Discard {
            modifications.clear();
        }
        Verdict {
            action,
            score: facts.score,
            reasons,
            modifications,
        }
    }

    fn too_large(&self, size: u64) -> Decision {
        Decision {
            outcome: Outcome::Refuse(Action::Reject(SmtpText {
                code: 552,
                text: "5.3.4 Message size exceeds fixed maximum message size".to_owned(),
            })),
            reason: Some(Reason {
                rule: "policy.message_bytes_max".to_owned(),
                detail: format!("{size} > {}", self.message_bytes_max),
            }),
        }
    }
}

/// Adds the content verdict's headers and reasons; returns the refusal
/// when the verdict refuses the message.
fn content_verdict(
    content: &ContentVerdict,
    reasons: &mut Vec<Reason>,
    modifications: &mut Vec<Modification>,
) -> Option<Action> {
    if content.add_headers {
        for (name, value) in content.headers() {
            modifications.push(Modification::AddHeader { name, value });
        }
    }
    // The score is a reason whenever it asked for something, also when an
    // attachment or a cap decided.
    if content.score_action != ContentAction::Pass {
        let shown: Vec<&str> = content
            .result
            .symbols
            .iter()
            .map(|(s, _)| s.as_str())
            .collect();
        let domain = content
            .domain
            .as_ref()
            .map(|d| format!(" [filter.domains.{d:?}]"))
            .unwrap_or_default();
        reasons.push(Reason {
            rule: format!("filter.{}", content.score_action.name()),
            detail: format!(
                "score {:.2} (required {:.1}{domain}): {}",
                content.result.score,
                content.result.required_score,
                shown.join(",")
            ),
        });
    }
    for f in &content.findings {
        reasons.push(Reason {
            rule: "filter.attachments".to_owned(),
            detail: format!("{} {}", f.rule.symbol(), f.text),
        });
    }
    for symbol in &content.limits {
        reasons.push(Reason {
            rule: "filter.on_limit".to_owned(),
            detail: (*symbol).to_owned(),
        });
    }
    // The summary quotes a file name the sender chose. Sendmail reads a
    // milter reply as a format string and Postfix turns `%%` into `%`
    // (milter8.c), so a `%` is sent doubled.
    let summary = || content.summary().replace('%', "%%");
    match content.action {
        ContentAction::Reject => Some(Action::Reject(SmtpText {
            code: 550,
            text: format!("5.7.1 {}", summary()),
        })),
        ContentAction::TempFail => Some(Action::TempFail(SmtpText {
            code: 451,
            text: format!("4.7.1 {}, try again later", summary()),
        })),
        ContentAction::Pass | ContentAction::Spam | ContentAction::Quarantine => None,
    }
}

/// The hold reason of a quarantined message, as Postfix logs it.
fn hold_reason(content: &ContentVerdict) -> String {
    match content.cause {
        Cause::Score => format!("filter spam score {:.1}", content.result.score),
        Cause::Attachment | Cause::Limit => format!("filter: {}", content.summary()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Sender,
    Recipient,
}

#[derive(Debug)]
struct CompiledRule {
    origin: String,
    action: RuleAction,
    reply: Option<SmtpText>,
    body: Option<String>,
}

/// One list of rules with a hash map per pattern kind.
#[derive(Debug)]
struct RuleSet {
    stage: Stage,
    rules: Vec<CompiledRule>,
    exact: HashMap<String, (usize, String)>,
    domain: HashMap<String, (usize, String)>,
    subdomain: HashMap<String, (usize, String)>,
    null_sender: Option<usize>,
}

impl RuleSet {
    fn new(rules: &[AddressRule], stage: Stage) -> Self {
        let mut set = Self {
            stage,
            rules: Vec::with_capacity(rules.len()),
            exact: HashMap::new(),
            domain: HashMap::new(),
            subdomain: HashMap::new(),
            null_sender: None,
        };
        for (index, rule) in rules.iter().enumerate() {
            set.rules.push(CompiledRule {
                origin: rule.origin.clone(),
                action: rule.action,
                reply: rule.reply.as_ref().map(|r| SmtpText {
                    code: r.code,
                    text: r.text.clone(),
                }),
                body: rule.body.clone(),
            });
            for pattern in &rule.patterns {
                // `or_insert` keeps the first rule naming a pattern: first match wins.
                match pattern {
                    AddressPattern::Exact(a) => {
                        set.exact
                            .entry(a.to_ascii_lowercase())
                            .or_insert((index, a.clone()));
                    }
                    AddressPattern::Domain(d) => {
                        let shown = format!("@{d}");
                        set.domain
                            .entry(d.to_ascii_lowercase())
                            .or_insert((index, shown));
                    }
                    AddressPattern::Subdomain(d) => {
                        let shown = format!("@.{d}");
                        set.subdomain
                            .entry(d.to_ascii_lowercase())
                            .or_insert((index, shown));
                    }
                    AddressPattern::NullSender => {
                        set.null_sender.get_or_insert(index);
                    }
                }
            }
        }
        set
    }

    /// The first rule (lowest index) matching `address`, with the pattern text.
    fn first_match<'a>(&'a self, address: &str) -> Option<(usize, String)> {
        if address.is_empty() {
            return self.null_sender.map(|i| (i, "<>".to_owned()));
        }
        let lower = address.to_ascii_lowercase();
        let mut best: Option<(usize, &str)> = None;
        let mut consider = |hit: Option<&'a (usize, String)>| {
            if let Some((i, shown)) = hit {
                if best.is_none_or(|(b, _)| *i < b) {
                    best = Some((*i, shown.as_str()));
                }
            }
        };
        consider(self.exact.get(&lower));
        if let Some(at) = lower.rfind('@') {
            let domain = &lower[at + 1..];
            consider(self.domain.get(domain));
            // The domain itself and every parent: a.b.example → b.example → example.
            let mut rest = domain;
            loop {
                consider(self.subdomain.get(rest));
                match rest.find('.') {
                    Some(dot) => rest = &rest[dot + 1..],
                    None => break,
                }
            }
        }
        best.map(|(i, shown)| (i, shown.to_owned()))
    }

    fn decide(&self, address: &str) -> Decision {
        let Some((index, pattern)) = self.first_match(address) else {
            return Decision {
                outcome: Outcome::Continue,
                reason: None,
            };
        };
        let rule = &self.rules[index];
        let reason = Reason {
            rule: rule.origin.clone(),
            detail: pattern,
        };
        let who = match self.stage {
            Stage::Sender => "Sender",
            Stage::Recipient => "Recipient",
        };
        let outcome = match rule.action {
            RuleAction::Allow => Outcome::Allow,
            RuleAction::Reject => {
                Outcome::Refuse(Action::Reject(rule.reply.clone().unwrap_or(SmtpText {
                    code: 550,
                    text: format!("5.7.1 {who} address rejected by policy"),
                })))
            }
            RuleAction::TempFail => {
                Outcome::Refuse(Action::TempFail(rule.reply.clone().unwrap_or(SmtpText {
                    code: 451,
                    text: format!("4.7.1 {who} address temporarily deferred by policy"),
                })))
            }
            RuleAction::Discard => Outcome::Defer(Deferred::Discard),
            RuleAction::Quarantine => Outcome::Defer(Deferred::Quarantine),
            RuleAction::ReplaceBody => {
                Outcome::Defer(Deferred::ReplaceBody(rule.body.clone().unwrap_or_default()))
            }
        };
        Decision {
            outcome,
            reason: Some(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SmtpReply;

    fn rule(origin: &str, patterns: &[AddressPattern], action: RuleAction) -> AddressRule {
        AddressRule {
            origin: origin.to_owned(),
            patterns: patterns.to_vec(),
            action,
            reply: None,
            body: (action == RuleAction::ReplaceBody).then(|| "replaced\r\n".to_owned()),
        }
    }

    fn policy(sender: Vec<AddressRule>, recipient: Vec<AddressRule>) -> Policy {
        Policy::new(
            &PolicyConfig {
                message_bytes_max: 1000,
                header: Some("X-Mailborder".to_owned()),
                sender,
                recipient,
            },
            7,
        )
    }

    use AddressPattern::{Domain, Exact, NullSender, Subdomain};

    #[test]
    fn first_matching_rule_in_file_order_wins_across_pattern_kinds() {
        let p = policy(
            vec![
                rule(
                    "policy.sender[0]",
                    &[Exact("ok@spam.example".into())],
                    RuleAction::Allow,
                ),
                rule(
                    "policy.sender[1]",
                    &[Subdomain("spam.example".into())],
                    RuleAction::Reject,
                ),
                rule(
                    "policy.sender[2]",
                    &[Exact("x@a.spam.example".into())],
                    RuleAction::Allow,
                ),
            ],
            vec![],
        );
        assert_eq!(p.mail("OK@Spam.Example", None).outcome, Outcome::Allow);
        let d = p.mail("x@a.spam.example", None);
        assert!(matches!(d.outcome, Outcome::Refuse(Action::Reject(ref t)) if t.code == 550));
        let reason = d.reason.unwrap();
        assert_eq!(reason.rule, "policy.sender[1]");
        assert_eq!(reason.detail, "@.spam.example");
        assert_eq!(
            p.mail("y@spam.example", None).reason.unwrap().rule,
            "policy.sender[1]"
        );
        assert_eq!(p.mail("y@notspam.example", None).outcome, Outcome::Continue);
    }

    #[test]
    fn domain_pattern_does_not_match_subdomains() {
        let p = policy(
            vec![rule("s", &[Domain("d.example".into())], RuleAction::Reject)],
            vec![],
        );
        assert!(matches!(
            p.mail("a@d.example", None).outcome,
            Outcome::Refuse(_)
        ));
        assert_eq!(p.mail("a@x.d.example", None).outcome, Outcome::Continue);
    }

    #[test]
    fn null_sender_matches_only_the_empty_address() {
        let p = policy(vec![rule("s", &[NullSender], RuleAction::TempFail)], vec![]);
        let d = p.mail("", None);
        assert!(matches!(d.outcome, Outcome::Refuse(Action::TempFail(ref t)) if t.code == 451));
        assert_eq!(p.mail("a@b.example", None).outcome, Outcome::Continue);
    }

    #[test]
    fn configured_reply_text_is_used() {
        let mut r = rule("s", &[Exact("a@b.example".into())], RuleAction::Reject);
        r.reply = Some(SmtpReply {
            code: 554,
            text: "5.7.1 Go away".into(),
        });
        let p = policy(vec![r], vec![]);
        assert_eq!(
            p.mail("a@b.example", None).outcome,
            Outcome::Refuse(Action::Reject(SmtpText {
                code: 554,
                text: "5.7.1 Go away".into()
            }))
        );
    }

    #[test]
    fn declared_and_streamed_size_over_limit_reject_with_552() {
        let p = policy(vec![], vec![]);
        assert!(matches!(p.mail("a@b.example", Some(1001)).outcome,
            Outcome::Refuse(Action::Reject(ref t)) if t.code == 552));
        assert_eq!(p.mail("a@b.example", Some(1000)).outcome, Outcome::Continue);
        let v = p.end_of_message(&MessageFacts {
            body_bytes: 1001,
            ..Default::default()
        });
        assert!(matches!(v.action, Action::Reject(ref t) if t.code == 552));
        assert!(v.modifications.is_empty());
    }

    #[test]
    fn accepted_message_gets_the_header_with_score_and_shard() {
        let p = policy(vec![], vec![]);
        let v = p.end_of_message(&MessageFacts {
            body_bytes: 10,
            shard: 3,
            ..Default::default()
        });
        assert_eq!(v.action, Action::Accept);
        assert_eq!(
            v.modifications,
            vec![Modification::AddHeader {
                name: "X-Mailborder".into(),
                value: "score=0.00 shard=3".into()
            }]
        );
    }

    #[test]
    fn deferred_actions_combine_discard_over_quarantine() {
        let p = policy(vec![], vec![]);
        let reason = |r: &str| Reason {
            rule: r.into(),
            detail: String::new(),
        };
        let v = p.end_of_message(&MessageFacts {
            deferred: vec![
                (Deferred::ReplaceBody("b".into()), reason("r0")),
                (Deferred::Quarantine, reason("r1")),
            ],
            ..Default::default()
        });
        assert_eq!(v.action, Action::Quarantine("mailborder r1".into()));
        assert!(v
            .modifications
            .contains(&Modification::ReplaceBody(b"b".to_vec())));
        assert_eq!(v.reasons.len(), 2);
        let v = p.end_of_message(&MessageFacts {
            deferred: vec![
                (Deferred::Quarantine, reason("r1")),
                (Deferred::Discard, reason("r2")),
            ],
            ..Default::default()
        });
        assert_eq!(v.action, Action::Discard);
        assert!(v.modifications.is_empty());
    }

    /// A policy with a content filter over one 6-point body rule and the
    /// `[filter]` section `section` (TOML).
    fn filtered(section: &str) -> Policy {
        use crate::filter::content::{compile_rules, FilterSettings};
        use crate::filter::matcher::Backend;
        let cfg = crate::config::parse(section).config.expect("valid");
        let rules = "body SPAMMY /spammy-marker/\nscore SPAMMY 6.0\n";
        let (set, scanner) =
            compile_rules(&[("t.cf".into(), rules.into())], Backend::Naive, 1, None);
        let filter = ContentFilter::new(
            Arc::new(scanner),
            set.required_score,
            &FilterSettings::from_config(&cfg.filter),
        );
        policy(vec![], vec![]).with_filter(Some(Arc::new(filter)))
    }

    /// End of message for `raw` to `recipients`, judged as the milter
    /// conversation does.
    fn verdict(p: &Policy, raw: &str, recipients: &[&str]) -> Verdict {
        let filter = p.filter().expect("a filter");
        let mut state = filter.scanner().state();
        let content = filter.judge(&mut state, raw.as_bytes(), false);
        p.end_of_message(&MessageFacts {
            body_bytes: 10,
            score: content.result.score,
            content: Some(content),
            recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
            ..Default::default()
        })
    }

    const ATTACHED: &str = "From: a@b.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
        --b\r\nContent-Type: text/plain\r\n\r\nBODY\r\n\
        --b\r\nContent-Type: application/octet-stream\r\n\
        Content-Disposition: attachment; filename=\"invoice.pdf.exe\"\r\n\r\n\
        MZ\x01\x02\x03\r\n--b--\r\n";

    fn header<'a>(v: &'a Verdict, name: &str) -> Option<&'a str> {
        v.modifications.iter().find_map(|m| match m {
            Modification::AddHeader { name: n, value } if n == name => Some(value.as_str()),
            _ => None,
        })
    }

    #[test]
    fn blocked_attachment_is_rejected_naming_the_file() {
        let p = filtered("[filter]\nrules = [\"/x\"]\n");
        let v = verdict(&p, ATTACHED, &["u@d.example"]);
        assert_eq!(
            v.action,
            Action::Reject(SmtpText {
                code: 550,
                text: "5.7.1 Attachment \"invoice.pdf.exe\" blocked: .exe file disguised as .pdf"
                    .into()
            })
        );
        assert_eq!(v.reasons[0].rule, "filter.attachments");
        assert!(v.reasons[0]
            .detail
            .starts_with("ATTACH_DOUBLE_EXT invoice.pdf.exe"));
        assert!(v.modifications.is_empty());
        // A `%` in the name is doubled for the MTA, which undoes it.
        let v = verdict(&p, &ATTACHED.replace("invoice.pdf", "50%off"), &[]);
        assert!(
            matches!(&v.action, Action::Reject(t)
                if t.text == "5.7.1 Attachment \"50%%off.exe\" blocked: .exe files are not accepted"),
            "{:?}",
            v.action
        );
        // Spam-level score besides the attachment: both are reasons.
        let v = verdict(&p, &ATTACHED.replace("BODY", "spammy-marker"), &[]);
        let rules: Vec<&str> = v.reasons.iter().map(|r| r.rule.as_str()).collect();
        assert_eq!(rules[0], "filter.spam", "{rules:?}");
        assert!(rules.contains(&"filter.attachments"), "{rules:?}");
    }

    #[test]
    fn attachment_action_per_domain_holds_or_defers() {
        let p = filtered(
            "[filter]\nrules = [\"/x\"]\n[filter.attachments]\naction = \"quarantine\"\n\
             [filter.domains.\"tf.example\"]\nattachment_action = \"tempfail\"\n",
        );
        let v = verdict(&p, ATTACHED, &["u@d.example"]);
        assert_eq!(
            v.action,
            Action::Quarantine(
                "mailborder filter: Attachment \"invoice.pdf.exe\" blocked: .exe file \
                 disguised as .pdf"
                    .into()
            )
        );
        let status = header(&v, "X-Spam-Status").expect("headers on hold");
        assert!(status.contains("tests=ATTACH_DOUBLE_EXT"), "{status}");
        let v = verdict(&p, ATTACHED, &["u@d.example", "v@tf.example"]);
        assert!(
            matches!(&v.action, Action::TempFail(t) if t.code == 451
                && t.text.starts_with("4.7.1 Attachment \"invoice.pdf.exe\" blocked")
                && t.text.ends_with(", try again later")),
            "{:?}",
            v.action
        );
    }

    #[test]
    fn per_domain_thresholds_change_the_action_for_the_same_message() {
        let p = filtered(
            "[filter]\nrules = [\"/x\"]\nreject_score = 20\n\
             [filter.domains.\"strict.example\"]\nreject_score = 5\n\
             [filter.domains.\"lax.example\"]\nrequired_score = 10\nheaders = false\n",
        );
        let spam = "From: a@b.example\r\nSubject: s\r\n\r\nspammy-marker\r\n";
        let v = verdict(&p, spam, &["u@other.example"]);
        assert_eq!(v.action, Action::Accept);
        assert_eq!(header(&v, "X-Spam-Flag"), Some("YES"));
        assert_eq!(v.reasons[0].rule, "filter.spam");
        let v = verdict(&p, spam, &["u@lax.example"]);
        assert_eq!(v.action, Action::Accept);
        assert_eq!(header(&v, "X-Spam-Flag"), None, "no headers for lax");
        assert!(v.reasons.is_empty(), "6 < 10 is no spam: {:?}", v.reasons);
        let v = verdict(&p, spam, &["u@lax.example", "u@strict.example"]);
        assert!(
            matches!(&v.action, Action::Reject(t) if t.code == 550
                && t.text == "5.7.1 Message content rejected as spam (score 6.0)"),
            "{:?}",
            v.action
        );
        assert!(v.reasons[0]
            .detail
            .contains(r#"[filter.domains."strict.example"]"#));
    }

    #[test]
    fn large_lists_are_hash_lookups() {
        let patterns: Vec<_> = (0..100_000)
            .map(|i| Exact(format!("user{i}@big.example")))
            .collect();
        let p = policy(vec![rule("s", &patterns, RuleAction::Reject)], vec![]);
        assert!(matches!(
            p.mail("user99999@big.example", None).outcome,
            Outcome::Refuse(_)
        ));
        assert_eq!(
            p.mail("user100000@big.example", None).outcome,
            Outcome::Continue
        );
    }
}
