//! The compiled policy tree and the decision at RCPT.
//!
//! One decision per recipient, in this order (each step can end it):
//!
//! 1. **Recipient validation.** A recipient of a domain we host must be
//!    valid (exact, `user+tag`, wildcard or catch-all) or gets
//!    `550 5.1.1`. Recipients of other domains are not ours to judge (Postfix's
//!    relay restrictions are).
//! 2. **Sender lists**, levels from most to least specific: recipient,
//!    domain, tenant, global. First, a block at any level marked
//!    `block_wins` refuses. Otherwise the most specific level with a matching
//!    entry decides, and within a level an allow beats a block. An allowed
//!    sender skips steps 3 and 4.
//! 3. **GeoIP**: the most specific level with country or continent settings
//!    decides; a client whose country is unknown passes.
//! 4. **Custom rules** (the global rule files), first match wins.
//! 5. **Rate limits**, for every recipient that passed the rest: the message
//!    scope at the transaction's first accepted recipient, the recipient
//!    scope at each.
//!
//! Every decision carries the reasons that made it; with `trace` also the
//! ones that did not (an allow that overrode a block, a valid recipient), for
//! `mbctl policy test`.

use std::collections::HashMap;
use std::sync::Arc;

use super::facts::{Code, Facts, FileDiagnostic, Origin};
use super::geoip::GeoIp;
use super::lists::{self, Entry, List};
use super::ratelimit::{KeyPart, Limits, RateTable, Scope};
use super::recipients::{Match, RecipientCheck, Recipients};
use super::rules::{self, RuleAction, RuleSet};
use super::source::{EntrySource, LevelSource, PolicySource};
use crate::policy::{Deferred, Outcome};
use crate::verdict::{Action, Reason, SmtpText};

/// Reads a file named in the policy (relative to the policy file's
/// directory), for [`PolicyTree::compile`]. The engine does no I/O itself.
pub type ReadFile<'a> = dyn FnMut(&str) -> Result<Vec<u8>, String> + 'a;

/// The compiled tree: immutable, shared by every shard as an `Arc`.
#[derive(Debug)]
pub struct PolicyTree {
    global: Level,
    tenants: Vec<Level>,
    domains: HashMap<String, DomainNode>,
    recipients: Recipients,
    rules: RuleSet,
    limits: Limits,
    geoip: Option<Arc<GeoIp>>,
    needs: Needs,
    summary: Summary,
    delimiters: String,
    rules_need_geoip: bool,
}

/// What the tree needs the MTA to tell us (beyond MAIL and RCPT).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// The client address or name (milter CONNECT).
    pub client: bool,
    /// The HELO name or TLS facts (milter HELO and its macros).
    pub helo: bool,
}

/// Sizes, for status output and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Tenants.
    pub tenants: usize,
    /// Hosted domains.
    pub domains: usize,
    /// Valid-recipient entries.
    pub recipients: usize,
    /// Sender list entries over all levels.
    pub list_entries: usize,
    /// Custom rules.
    pub rules: usize,
    /// Rate limits.
    pub ratelimits: usize,
    /// Whether a GeoIP database is loaded.
    pub geoip: bool,
}

#[derive(Debug, Default)]
struct Level {
    label: String,
    allow: List,
    block: List,
    block_wins: bool,
    block_reply: Option<SmtpText>,
    geo: Option<Geo>,
}

#[derive(Debug)]
struct Geo {
    country_allow: Vec<Code>,
    country_block: Vec<Code>,
    continent_allow: Vec<Code>,
    continent_block: Vec<Code>,
    reply: Option<SmtpText>,
}

#[derive(Debug)]
struct DomainNode {
    tenant: usize,
    level: Level,
    recipients: HashMap<String, Level>,
}

/// The answer for one recipient, with its reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalDecision {
    /// What to do with this recipient.
    pub outcome: Outcome,
    /// Why, in the order the steps ran.
    pub reasons: Vec<Reason>,
}

/// One recipient's question.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The session facts; `country`/`continent` are filled from GeoIP here.
    pub facts: Facts<'a>,
    /// Whether this is the first recipient accepted in the transaction (the
    /// message-scope rate limits count once, there).
    pub first_recipient: bool,
    /// Whether an earlier stage already allowed the sender (the `[policy]`
    /// lists of `mbd.toml`).
    pub sender_allowed: bool,
    /// Wall clock, Unix milliseconds (rate limits).
    pub now_ms: u64,
    /// Collect reasons that did not decide, too.
    pub trace: bool,
}

impl PolicyTree {
    /// Compiles a policy source, reading the list, rule and GeoIP files it
    /// names through `read`. Every problem in every file is reported at once.
    ///
    /// # Errors
    /// The diagnostics, each with file, line and column (or key path).
    pub fn compile(
        source: &PolicySource,
        read: &mut ReadFile<'_>,
    ) -> Result<Self, Vec<FileDiagnostic>> {
        let mut c = Compiler {
            file: Arc::from(source.file.as_str()),
            read,
            cache: HashMap::new(),
            diagnostics: Vec::new(),
            needs: Needs::default(),
            entries: 0,
        };
        let global = c.level(&source.global);
        let mut tenants = Vec::with_capacity(source.tenants.len());
        let mut domains = HashMap::new();
        let mut recipients = Recipients::new(&source.extension_delimiters);
        for (t, tenant) in source.tenants.iter().enumerate() {
            tenants.push(c.level(&tenant.level));
            for domain in &tenant.domains {
                recipients.add_domain(&domain.name, domain.recipients.is_some());
                for entry in domain.recipients.iter().flatten() {
                    c.recipient_entry(&mut recipients, &domain.name, entry);
                }
                let mut node = DomainNode {
                    tenant: t,
                    level: c.level(&domain.level),
                    recipients: HashMap::new(),
                };
                for r in &domain.recipient_levels {
                    node.recipients.insert(r.address.clone(), c.level(&r.level));
                }
                domains.insert(domain.name.clone(), node);
            }
        }
        let rules = c.rules(&source.global.rules);
        let geoip = source
            .geoip_database
            .as_deref()
            .and_then(|path| c.geoip(path));
        let needs_geo = geoip.is_some()
            && (source.global.has_geo()
                || source.tenants.iter().any(|t| {
                    t.level.has_geo()
                        || t.domains.iter().any(|d| {
                            d.level.has_geo()
                                || d.recipient_levels.iter().any(|r| r.level.has_geo())
                        })
                })
                || rules.needs().geoip);
        let rule_needs = rules.needs();
        let mut needs = c.needs;
        needs.client |= needs_geo || rule_needs.client || rule_needs.geoip;
        needs.helo |= rule_needs.helo || rule_needs.tls;
        for limit in &source.ratelimits {
            for part in &limit.key {
                match part {
                    KeyPart::ClientIp | KeyPart::ClientNet { .. } => needs.client = true,
                    KeyPart::Helo => needs.helo = true,
                    _ => {}
                }
            }
        }
        if !c.diagnostics.is_empty() {
            return Err(c.diagnostics);
        }
        let summary = Summary {
            tenants: tenants.len(),
            domains: domains.len(),
            recipients: recipients.len(),
            list_entries: c.entries,
            rules: rules.len(),
            ratelimits: source.ratelimits.len(),
            geoip: geoip.is_some(),
        };
        Ok(Self {
            global,
            tenants,
            domains,
            recipients,
            rules,
            limits: Limits::new(source.ratelimits.clone()),
            geoip,
            needs,
            summary,
            delimiters: source.extension_delimiters.clone(),
            rules_need_geoip: rule_needs.geoip,
        })
    }

    /// What the tree needs from the MTA.
    #[must_use]
    pub fn needs(&self) -> Needs {
        self.needs
    }

    /// Sizes, for status output.
    #[must_use]
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// The rate limits (for `mbctl ratelimit show`).
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The GeoIP database, if one is loaded.
    #[must_use]
    pub fn geoip(&self) -> Option<&Arc<GeoIp>> {
        self.geoip.as_ref()
    }

    /// Decides one recipient. See the module documentation for the order.
    #[must_use]
    pub fn decide(&self, ask: &Ask<'_>, table: &RateTable) -> EvalDecision {
        let mut facts = ask.facts;
        // GeoIP costs a tree walk and a record decode: only when a level or a
        // rule asks for the country.
        let locate = |facts: &mut Facts<'_>| {
            if let (Some(db), Some(ip), None) = (&self.geoip, facts.client_ip, facts.country) {
                if let Some(place) = db.lookup(ip) {
                    facts.country = place.country;
                    facts.continent = place.continent;
                }
            }
        };
        let mut reasons = Vec::new();
        let refuse = |action: Action, reasons: Vec<Reason>| EvalDecision {
            outcome: Outcome::Refuse(action),
            reasons,
        };

        // 1. Recipient validation.
        let recipient = facts.recipient.to_ascii_lowercase();
        let domain_name = recipient.rsplit_once('@').map_or("", |(_, d)| d);
        match self.recipients.check(&recipient) {
            RecipientCheck::NotOurDomain => {}
            RecipientCheck::Unknown { domain } => {
                reasons.push(Reason {
                    rule: format!("recipients domain {domain}"),
                    detail: format!("no valid recipient matches {}", facts.recipient),
                });
                return refuse(
                    Action::Reject(SmtpText {
                        code: 550,
                        text: format!(
                            "5.1.1 <{}>: Recipient address rejected: User unknown",
                            facts.recipient
                        ),
                    }),
                    reasons,
                );
            }
            RecipientCheck::Valid(how) => {
                if ask.trace {
                    reasons.push(Reason {
                        rule: format!("recipients domain {domain_name}"),
                        detail: match how {
                            Match::Exact(e) => format!("valid: listed {e}"),
                            Match::Extension(e) => format!("valid: extension of {e}"),
                            Match::Wildcard(e) => format!("valid: wildcard {e}"),
                            Match::CatchAll(e) => format!("valid: catch-all {e}"),
                            Match::DomainNotValidated(d) => {
                                format!("valid: {d} accepts every address")
                            }
                        },
                    });
                }
            }
        }
        let domain = self.domains.get(domain_name);
        let mut buf = [&self.global; 4];
        let levels = self.levels(domain, &recipient, &mut buf);

        // 2. Sender lists.
        let mut allowed = ask.sender_allowed;
        if allowed && ask.trace {
            reasons.push(Reason {
                rule: "policy.sender".to_owned(),
                detail: "sender allowed by mbd.toml [policy]".to_owned(),
            });
        }
        if !allowed {
            for level in levels.iter().rev().filter(|l| l.block_wins) {
                if let Some(hit) = level.block.matches(&facts) {
                    reasons.push(list_reason(
                        level,
                        "sender_block (block_wins)",
                        hit.entry,
                        hit.origin,
                    ));
                    return refuse(Action::Reject(block_reply(level, &facts)), reasons);
                }
            }
            for level in levels {
                let allow = level.allow.matches(&facts);
                let block = level.block.matches(&facts);
                if let Some(hit) = allow {
                    reasons.push(list_reason(level, "sender_allow", hit.entry, hit.origin));
                    if ask.trace {
                        if let Some(b) = block {
                            reasons.push(list_reason(
                                level,
                                "sender_block (overridden)",
                                b.entry,
                                b.origin,
                            ));
                        }
                    }
                    allowed = true;
                    break;
                }
                if let Some(hit) = block {
                    reasons.push(list_reason(level, "sender_block", hit.entry, hit.origin));
                    return refuse(Action::Reject(block_reply(level, &facts)), reasons);
                }
            }
        }

        // 3. GeoIP.
        let mut deferred = None;
        if !allowed {
            if let Some((level, geo)) = levels.iter().find_map(|l| l.geo.as_ref().map(|g| (l, g))) {
                locate(&mut facts);
                if let Some(why) = geo.refuses(&facts) {
                    reasons.push(Reason {
                        rule: format!("{} geoip", level.label),
                        detail: why,
                    });
                    let reply = geo.reply.clone().unwrap_or_else(|| SmtpText {
                        code: 550,
                        text: format!(
                            "5.7.1 Mail from {} is not accepted here",
                            facts.country.map_or_else(
                                || "your network".to_owned(),
                                |c| format!("country {c}")
                            )
                        ),
                    });
                    return refuse(Action::Reject(reply), reasons);
                }
            }

            // 4. Custom rules.
            if self.rules_need_geoip {
                locate(&mut facts);
            }
            if let Some(hit) = self.rules.evaluate(&facts) {
                reasons.push(Reason {
                    rule: format!("rule {}", hit.name),
                    detail: hit.origin.to_string(),
                });
                match hit.action {
                    RuleAction::Allow => allowed = true,
                    RuleAction::Reject(text) => {
                        return refuse(Action::Reject(text.clone()), reasons)
                    }
                    RuleAction::TempFail(text) => {
                        return refuse(Action::TempFail(text.clone()), reasons)
                    }
                    RuleAction::Discard => deferred = Some(Deferred::Discard),
                    RuleAction::Quarantine => deferred = Some(Deferred::Quarantine),
                }
            }
        }

        // 5. Rate limits.
        if !self.limits.is_empty() {
            let scopes: &[Scope] = if ask.first_recipient {
                &[Scope::Message, Scope::Recipient]
            } else {
                &[Scope::Recipient]
            };
            for &scope in scopes {
                if let Err(over) = self.limits.check(table, &facts, scope, ask.now_ms) {
                    reasons.push(Reason {
                        rule: format!("ratelimit {}", over.limit),
                        detail: format!(
                            "{} over {}/{}ms, retry in {} s",
                            over.key,
                            over.window.count,
                            over.window.period_ms,
                            over.retry_after_ms.div_ceil(1000)
                        ),
                    });
                    return refuse(Action::TempFail(over.reply), reasons);
                }
            }
        }
        let outcome = match deferred {
            Some(d) => Outcome::Defer(d),
            None if allowed => Outcome::Allow,
            None => Outcome::Continue,
        };
        EvalDecision { outcome, reasons }
    }

    /// Levels from most to least specific for a recipient, in `buf`.
    fn levels<'t, 'b>(
        &'t self,
        domain: Option<&'t DomainNode>,
        recipient: &str,
        buf: &'b mut [&'t Level; 4],
    ) -> &'b [&'t Level] {
        let mut n = 0;
        if let Some(d) = domain {
            if !d.recipients.is_empty() {
                let found = d.recipients.get(recipient).or_else(|| {
                    let bare = strip_extension(recipient, &self.delimiters);
                    d.recipients.get(bare.as_str())
                });
                if let Some(r) = found {
                    buf[n] = r;
                    n += 1;
                }
            }
            buf[n] = &d.level;
            n += 1;
            if let Some(t) = self.tenants.get(d.tenant) {
                buf[n] = t;
                n += 1;
            }
        }
        buf[n] = &self.global;
        &buf[..=n]
    }
}

/// `user+tag@d` → `user@d` for the first delimiter found in the local part.
fn strip_extension(address: &str, delimiters: &str) -> String {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return address.to_owned();
    };
    match local.find(|c| delimiters.contains(c)) {
        Some(i) if !delimiters.is_empty() && i > 0 => format!("{}@{domain}", &local[..i]),
        _ => address.to_owned(),
    }
}

fn list_reason(level: &Level, list: &str, entry: &Entry, origin: &Origin) -> Reason {
    // Entries of list files have a line; inline ones name their key path.
    let at = if origin.line == 0 && !origin.file.contains('#') {
        String::new()
    } else {
        format!(" ({origin})")
    };
    Reason {
        rule: format!("{} {list}", level.label),
        detail: format!("{}{at}", show_entry(entry)),
    }
}

fn show_entry(entry: &Entry) -> String {
    match entry {
        Entry::Address(a) => a.clone(),
        Entry::Domain(d) => format!("@{d}"),
        Entry::Subdomain(d) => format!("@.{d}"),
        Entry::NullSender => "<>".to_owned(),
        Entry::Net(n) => n.to_string(),
        Entry::Helo(h) => format!("helo:{h}"),
        Entry::HeloSubdomain(h) => format!("helo:.{h}"),
    }
}

fn block_reply(level: &Level, facts: &Facts<'_>) -> SmtpText {
    level.block_reply.clone().unwrap_or_else(|| SmtpText {
        code: 550,
        text: format!(
            "5.7.1 <{}>: Sender address rejected: Access denied",
            facts.sender
        ),
    })
}

impl Geo {
    fn refuses(&self, facts: &Facts<'_>) -> Option<String> {
        if let Some(c) = facts.country {
            if self.country_block.contains(&c) {
                return Some(format!("country {c} in country_block"));
            }
            if !self.country_allow.is_empty() && !self.country_allow.contains(&c) {
                return Some(format!("country {c} not in country_allow"));
            }
        }
        if let Some(c) = facts.continent {
            if self.continent_block.contains(&c) {
                return Some(format!("continent {c} in continent_block"));
            }
            if !self.continent_allow.is_empty() && !self.continent_allow.contains(&c) {
                return Some(format!("continent {c} not in continent_allow"));
            }
        }
        None
    }
}

struct Compiler<'r, 'a> {
    file: Arc<str>,
    read: &'r mut ReadFile<'a>,
    cache: HashMap<String, Option<Vec<(Entry, Origin)>>>,
    diagnostics: Vec<FileDiagnostic>,
    needs: Needs,
    entries: usize,
}

impl Compiler<'_, '_> {
    fn error(&mut self, file: &str, message: String) {
        self.diagnostics.push(FileDiagnostic {
            origin: Origin {
                file: Arc::from(file),
                line: 0,
                column: 0,
            },
            message,
        });
    }

    fn text(&mut self, name: &str) -> Option<String> {
        match (self.read)(name) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Some(text),
                Err(e) => {
                    let at = e.utf8_error().valid_up_to();
                    self.error(
                        name,
                        format!("not UTF-8 text (invalid byte at offset {at})"),
                    );
                    None
                }
            },
            Err(message) => {
                let file = Arc::clone(&self.file);
                self.error(&file, format!("cannot read `{name}`: {message}"));
                None
            }
        }
    }

    fn list_file(&mut self, name: &str) -> Option<Vec<(Entry, Origin)>> {
        if let Some(cached) = self.cache.get(name) {
            return cached.clone();
        }
        let parsed = self.text(name).and_then(|text| {
            let (entries, diagnostics) = lists::parse_list(name, &text);
            let ok = diagnostics.is_empty();
            self.diagnostics.extend(diagnostics);
            ok.then_some(entries)
        });
        self.cache.insert(name.to_owned(), parsed.clone());
        parsed
    }

    fn list(&mut self, sources: &[EntrySource]) -> List {
        let mut list = List::new();
        for source in sources {
            let entries = match source {
                EntrySource::Inline { text, key } => match lists::parse_entry(text) {
                    Ok(entry) => vec![(
                        entry,
                        Origin {
                            file: Arc::from(format!("{}#{key}", self.file).as_str()),
                            line: 0,
                            column: 0,
                        },
                    )],
                    Err(message) => {
                        let file = Arc::clone(&self.file);
                        self.error(&file, format!("in `{key}`: {message}"));
                        continue;
                    }
                },
                EntrySource::File(name) => self.list_file(name).unwrap_or_default(),
            };
            for (entry, origin) in entries {
                match entry {
                    Entry::Net(_) => self.needs.client = true,
                    Entry::Helo(_) | Entry::HeloSubdomain(_) => self.needs.helo = true,
                    _ => {}
                }
                self.entries += 1;
                list.push(entry, origin);
            }
        }
        list
    }

    fn level(&mut self, source: &LevelSource) -> Level {
        let geo = source.has_geo().then(|| Geo {
            country_allow: source.country_allow.clone(),
            country_block: source.country_block.clone(),
            continent_allow: source.continent_allow.clone(),
            continent_block: source.continent_block.clone(),
            reply: source.geo_reply.clone(),
        });
        Level {
            label: source.label.clone(),
            allow: self.list(&source.sender_allow),
            block: self.list(&source.sender_block),
            block_wins: source.block_wins,
            block_reply: source.block_reply.clone(),
            geo,
        }
    }

    fn recipient_entry(&mut self, recipients: &mut Recipients, domain: &str, entry: &EntrySource) {
        match entry {
            EntrySource::Inline { text, key } => {
                let full = if text.contains('@') {
                    text.clone()
                } else {
                    format!("{text}@{domain}")
                };
                if let Err(message) = recipients.add(&full) {
                    let file = Arc::clone(&self.file);
                    self.error(&file, format!("in `{key}`: {message}"));
                }
            }
            EntrySource::File(name) => {
                if let Some(text) = self.text(name) {
                    let diagnostics = recipients.parse_file(name, &text);
                    self.diagnostics.extend(diagnostics);
                }
            }
        }
    }

    fn rules(&mut self, files: &[String]) -> RuleSet {
        let texts: Vec<(String, String)> = files
            .iter()
            .filter_map(|name| self.text(name).map(|t| (name.clone(), t)))
            .collect();
        let sources: Vec<rules::Source<'_>> = texts
            .iter()
            .map(|(file, text)| rules::Source { file, text })
            .collect();
        match rules::compile(&sources) {
            Ok(set) => set,
            Err(diagnostics) => {
                self.diagnostics.extend(diagnostics);
                RuleSet::default()
            }
        }
    }

    fn geoip(&mut self, path: &str) -> Option<Arc<GeoIp>> {
        let bytes = match (self.read)(path) {
            Ok(bytes) => bytes,
            Err(message) => {
                let file = Arc::clone(&self.file);
                self.error(
                    &file,
                    format!("in `geoip.database`: cannot read `{path}`: {message}"),
                );
                return None;
            }
        };
        match GeoIp::from_bytes(bytes) {
            Ok(db) => Some(Arc::new(db)),
            Err(message) => {
                self.error(path, format!("not a usable MaxMind database: {message}"));
                None
            }
        }
    }
}
