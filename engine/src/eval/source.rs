//! The policy file (`policy.toml`): the tenant → domain → recipient tree, read
//! into plain data ([`PolicySource`]) before anything is compiled.
//!
//! The tree is data first so that it can come from more than one place: this
//! file today, the control plane's database tables later. Both produce a
//! [`PolicySource`]; [`super::tree::PolicyTree::compile`] turns it into lookup
//! tables. Pure: list and rule files named here are read by the caller.
//!
//! ```toml
//! [global]
//! sender_block = ["@.spam.example", "198.51.100.0/24", "file:block.list"]
//! sender_allow = ["file:allow.list"]
//! country_block = ["KP"]
//! rules = ["local.rules"]
//!
//! [recipients]
//! extension_delimiters = "+"
//!
//! [geoip]
//! database = "/var/lib/GeoIP/GeoLite2-Country.mmdb"
//!
//! [[ratelimit]]
//! name = "per-client-net"
//! key = ["client_ip/24"]
//! windows = ["100/1m", "1000/1h"]
//!
//! [[tenant]]
//! name = "acme"
//!
//! [[tenant.domain]]
//! name = "acme.example"
//! recipients = ["alice@acme.example", "file:acme.example.rcpt"]
//! sender_allow = ["@.partner.example"]
//!
//! [[tenant.domain.recipient]]
//! address = "ceo@acme.example"
//! sender_block = ["@.newsletter.example"]
//! ```
//!
//! Errors carry the file and the key path (`tenant[0].domain[1].name`); a
//! TOML syntax error carries its line and column.

use std::sync::Arc;

use super::facts::{Code, FileDiagnostic, Origin};
use super::ratelimit::{self, Limit};
use crate::config::tree::{parse_document, Node};
use crate::config::value::closest;
use crate::verdict::SmtpText;

/// The whole policy tree as written, not yet compiled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicySource {
    /// The file this came from (for diagnostics and reasons).
    pub file: String,
    /// `[global]`: the level every recipient inherits from.
    pub global: LevelSource,
    /// `[[tenant]]` (and top-level `[[domain]]`, gathered in a tenant named
    /// `default`).
    pub tenants: Vec<TenantSource>,
    /// `recipients.extension_delimiters`: `user+tag@` matches `user@`.
    pub extension_delimiters: String,
    /// `[[ratelimit]]`.
    pub ratelimits: Vec<Limit>,
    /// `geoip.database`: path of the mmdb file, if any.
    pub geoip_database: Option<String>,
}

/// The settings one level (global, tenant, domain, recipient) can carry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LevelSource {
    /// Key path of the level, e.g. `tenant[0].domain[1]`; `global` for the top.
    pub key: String,
    /// What the level is called in reasons: `global`, `tenant acme`,
    /// `domain acme.example`, `recipient ceo@acme.example`.
    pub label: String,
    /// `sender_allow`: entries or `file:NAME` list files.
    pub sender_allow: Vec<EntrySource>,
    /// `sender_block`: entries or `file:NAME` list files.
    pub sender_block: Vec<EntrySource>,
    /// `block_wins`: a block at this level beats allows at every level.
    pub block_wins: bool,
    /// `block_reply`: the reply for a sender block at this level.
    pub block_reply: Option<SmtpText>,
    /// `country_allow`: when non-empty, only these countries pass.
    pub country_allow: Vec<Code>,
    /// `country_block`: these countries are refused.
    pub country_block: Vec<Code>,
    /// `continent_allow`: when non-empty, only these continents pass.
    pub continent_allow: Vec<Code>,
    /// `continent_block`: these continents are refused.
    pub continent_block: Vec<Code>,
    /// `geo_reply`: the reply for a GeoIP refusal at this level.
    pub geo_reply: Option<SmtpText>,
    /// `rules`: rule files (global level only).
    pub rules: Vec<String>,
}

impl LevelSource {
    /// Whether this level says anything about countries or continents.
    #[must_use]
    pub fn has_geo(&self) -> bool {
        !(self.country_allow.is_empty()
            && self.country_block.is_empty()
            && self.continent_allow.is_empty()
            && self.continent_block.is_empty())
    }
}

/// A list entry written inline, or a list file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntrySource {
    /// An entry in the policy file itself, with its key path.
    Inline {
        /// The entry text, e.g. `@.spam.example`.
        text: String,
        /// Where it was written, e.g. `global.sender_block[2]`.
        key: String,
    },
    /// `file:NAME`: a list file, relative to the policy file's directory.
    File(String),
}

/// `[[tenant]]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantSource {
    /// `name`.
    pub name: String,
    /// The tenant's own lists and GeoIP settings.
    pub level: LevelSource,
    /// `[[tenant.domain]]`.
    pub domains: Vec<DomainSource>,
}

/// `[[tenant.domain]]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DomainSource {
    /// `name`: the domain, lower case.
    pub name: String,
    /// The domain's lists and GeoIP settings.
    pub level: LevelSource,
    /// `recipients`: valid recipients (entries or `file:NAME`). `None`: the
    /// domain is accepted and every address of it is valid.
    pub recipients: Option<Vec<EntrySource>>,
    /// `[[tenant.domain.recipient]]`: per-recipient levels.
    pub recipient_levels: Vec<RecipientSource>,
}

/// `[[tenant.domain.recipient]]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecipientSource {
    /// `address`, lower case.
    pub address: String,
    /// The recipient's own lists and GeoIP settings.
    pub level: LevelSource,
}

const ROOT_KEYS: &[&str] = &[
    "global",
    "recipients",
    "geoip",
    "ratelimit",
    "tenant",
    "domain",
];
const LEVEL_KEYS: &[&str] = &[
    "sender_allow",
    "sender_block",
    "block_wins",
    "block_reply",
    "country_allow",
    "country_block",
    "continent_allow",
    "continent_block",
    "geo_reply",
];
const CONTINENTS: &[&str] = &["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

/// Reads a policy file. Every problem is reported at once; `Err` when any.
///
/// # Errors
/// The diagnostics, each with the file and a key path (or line and column
/// for a TOML syntax error).
pub fn parse(file: &str, text: &str) -> Result<PolicySource, Vec<FileDiagnostic>> {
    let root = match parse_document(text) {
        Ok(root) => root,
        Err(error) => {
            let (line, column) = error.span().map_or((1, 1), |span| {
                let before = text.get(..span.start).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                (line, column)
            });
            let message = error
                .message()
                .trim()
                .lines()
                .collect::<Vec<_>>()
                .join(": ");
            return Err(vec![FileDiagnostic {
                origin: Origin {
                    file: Arc::from(file),
                    line: u32::try_from(line).unwrap_or(u32::MAX),
                    column: u32::try_from(column).unwrap_or(u32::MAX),
                },
                message: format!("TOML syntax: {message}"),
            }]);
        }
    };
    let mut walker = Walker {
        file: Arc::from(file),
        diagnostics: Vec::new(),
    };
    let source = walker.root(file, &root);
    if walker.diagnostics.is_empty() {
        Ok(source)
    } else {
        Err(walker.diagnostics)
    }
}

struct Walker {
    file: Arc<str>,
    diagnostics: Vec<FileDiagnostic>,
}

impl Walker {
    fn error(&mut self, key: &str, message: impl std::fmt::Display) {
        self.diagnostics.push(FileDiagnostic {
            origin: Origin {
                file: Arc::clone(&self.file),
                line: 0,
                column: 0,
            },
            message: format!("in `{key}`: {message}"),
        });
    }

    fn unknown(&mut self, key: &str, name: &str, known: &[&str]) {
        let hint = closest(name, known.iter().copied()).map_or_else(
            || format!("known keys here: {}", known.join(", ")),
            |k| format!("did you mean `{k}`?"),
        );
        self.error(key, format!("unknown key `{name}`; {hint}"));
    }

    fn table<'n>(&mut self, key: &str, node: &'n Node) -> &'n [(String, Node)] {
        match node {
            Node::Table(entries) => entries,
            other => {
                self.error(key, format!("expected a table, found {}", other.kind()));
                &[]
            }
        }
    }

    /// An array of tables (`[[x]]`).
    fn tables<'n>(&mut self, key: &str, node: &'n Node) -> Vec<(String, &'n [(String, Node)])> {
        let Node::Array(items) = node else {
            self.error(
                key,
                format!(
                    "expected an array of tables `[[{key}]]`, found {}",
                    node.kind()
                ),
            );
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let path = format!("{key}[{i}]");
            let entries = self.table(&path, item);
            out.push((path, entries));
        }
        out
    }

    fn string(&mut self, key: &str, node: &Node) -> Option<String> {
        match node {
            Node::String(s) => Some(s.clone()),
            other => {
                self.error(key, format!("expected a string, found {}", other.kind()));
                None
            }
        }
    }

    fn boolean(&mut self, key: &str, node: &Node) -> Option<bool> {
        match node {
            Node::Boolean(b) => Some(*b),
            other => {
                self.error(
                    key,
                    format!("expected true or false, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// A string or an array of strings, each with its key path.
    fn strings(&mut self, key: &str, node: &Node) -> Vec<(String, String)> {
        match node {
            Node::String(s) => vec![(s.clone(), key.to_owned())],
            Node::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let path = format!("{key}[{i}]");
                    if let Some(s) = self.string(&path, item) {
                        out.push((s, path));
                    }
                }
                out
            }
            other => {
                self.error(
                    key,
                    format!(
                        "expected a string or an array of strings, found {}",
                        other.kind()
                    ),
                );
                Vec::new()
            }
        }
    }

    fn entries(&mut self, key: &str, node: &Node) -> Vec<EntrySource> {
        self.strings(key, node)
            .into_iter()
            .filter_map(|(text, path)| {
                if let Some(name) = text.strip_prefix("file:") {
                    if name.trim().is_empty() {
                        self.error(&path, "`file:` needs a file name, e.g. `file:block.list`");
                        return None;
                    }
                    return Some(EntrySource::File(name.trim().to_owned()));
                }
                if let Err(message) = super::lists::parse_entry(text.trim()) {
                    self.error(&path, message);
                    return None;
                }
                Some(EntrySource::Inline {
                    text: text.trim().to_owned(),
                    key: path,
                })
            })
            .collect()
    }

    fn codes(&mut self, key: &str, node: &Node, continents: bool) -> Vec<Code> {
        self.strings(key, node)
            .into_iter()
            .filter_map(|(text, path)| {
                let code = Code::parse(text.trim());
                match code {
                    Some(c) if continents && !CONTINENTS.contains(&c.as_str()) => {
                        self.error(
                            &path,
                            format!(
                                "`{text}` is not a continent code; use one of {}",
                                CONTINENTS.join(", ")
                            ),
                        );
                        None
                    }
                    Some(c) => Some(c),
                    None => {
                        let what = if continents {
                            "a continent code like `EU`"
                        } else {
                            "a two-letter ISO country code like `DE`"
                        };
                        self.error(&path, format!("`{text}` is not {what}"));
                        None
                    }
                }
            })
            .collect()
    }

    fn reply(&mut self, key: &str, node: &Node, class: u8) -> Option<SmtpText> {
        let text = self.string(key, node)?;
        match parse_reply(&text, class) {
            Ok(reply) => Some(reply),
            Err(message) => {
                self.error(key, message);
                None
            }
        }
    }

    /// A level key; false when `name` is not one.
    fn level_key(&mut self, level: &mut LevelSource, key: &str, name: &str, node: &Node) -> bool {
        match name {
            "sender_allow" => level.sender_allow = self.entries(key, node),
            "sender_block" => level.sender_block = self.entries(key, node),
            "block_wins" => level.block_wins = self.boolean(key, node).unwrap_or(false),
            "block_reply" => level.block_reply = self.reply(key, node, b'5'),
            "country_allow" => level.country_allow = self.codes(key, node, false),
            "country_block" => level.country_block = self.codes(key, node, false),
            "continent_allow" => level.continent_allow = self.codes(key, node, true),
            "continent_block" => level.continent_block = self.codes(key, node, true),
            "geo_reply" => level.geo_reply = self.reply(key, node, b'5'),
            _ => return false,
        }
        true
    }

    fn root(&mut self, file: &str, root: &[(String, Node)]) -> PolicySource {
        let mut source = PolicySource {
            file: file.to_owned(),
            global: LevelSource {
                key: "global".to_owned(),
                label: "global".to_owned(),
                ..LevelSource::default()
            },
            ..PolicySource::default()
        };
        let mut loose_domains = Vec::new();
        for (name, node) in root {
            match name.as_str() {
                "global" => {
                    for (k, v) in self.table("global", node) {
                        let key = format!("global.{k}");
                        if k == "rules" {
                            source.global.rules =
                                self.strings(&key, v).into_iter().map(|(s, _)| s).collect();
                        } else if !self.level_key(&mut source.global, &key, k, v) {
                            let mut known = LEVEL_KEYS.to_vec();
                            known.push("rules");
                            self.unknown(&key, k, &known);
                        }
                    }
                }
                "recipients" => {
                    for (k, v) in self.table("recipients", node) {
                        let key = format!("recipients.{k}");
                        match k.as_str() {
                            "extension_delimiters" => {
                                let d = self.string(&key, v).unwrap_or_default();
                                if d.chars()
                                    .any(|c| c.is_alphanumeric() || c == '@' || c.is_whitespace())
                                {
                                    self.error(
                                        &key,
                                        "delimiters are punctuation such as \"+\" or \"+-\"",
                                    );
                                }
                                source.extension_delimiters = d;
                            }
                            _ => self.unknown(&key, k, &["extension_delimiters"]),
                        }
                    }
                }
                "geoip" => {
                    for (k, v) in self.table("geoip", node) {
                        let key = format!("geoip.{k}");
                        match k.as_str() {
                            "database" => source.geoip_database = self.string(&key, v),
                            _ => self.unknown(&key, k, &["database"]),
                        }
                    }
                }
                "ratelimit" => {
                    for (key, entries) in self.tables("ratelimit", node) {
                        if let Some(limit) = self.ratelimit(&key, entries) {
                            if source.ratelimits.iter().any(|l| l.name == limit.name) {
                                self.error(&format!("{key}.name"), format!("a limit named `{}` exists already; names identify buckets and must be unique", limit.name));
                            }
                            source.ratelimits.push(limit);
                        }
                    }
                }
                "tenant" => {
                    for (key, entries) in self.tables("tenant", node) {
                        let tenant = self.tenant(&key, entries);
                        source.tenants.push(tenant);
                    }
                }
                "domain" => {
                    for (key, entries) in self.tables("domain", node) {
                        loose_domains.push(self.domain(&key, entries));
                    }
                }
                _ => self.unknown(name, name, ROOT_KEYS),
            }
        }
        if !loose_domains.is_empty() {
            source.tenants.push(TenantSource {
                name: "default".to_owned(),
                level: LevelSource {
                    key: "domain".to_owned(),
                    label: "tenant default".to_owned(),
                    ..LevelSource::default()
                },
                domains: loose_domains,
            });
        }
        self.check_unique(&source);
        source
    }

    fn check_unique(&mut self, source: &PolicySource) {
        let mut seen = std::collections::HashMap::new();
        for tenant in &source.tenants {
            for domain in &tenant.domains {
                if let Some(first) = seen.insert(domain.name.clone(), domain.level.key.clone()) {
                    self.error(
                        &domain.level.key,
                        format!("domain `{}` is already defined at `{first}`", domain.name),
                    );
                }
            }
        }
    }

    fn ratelimit(&mut self, key: &str, entries: &[(String, Node)]) -> Option<Limit> {
        let (mut name, mut parts, mut windows, mut reply) = (None, Vec::new(), Vec::new(), None);
        let mut ok = true;
        for (k, v) in entries {
            let path = format!("{key}.{k}");
            match k.as_str() {
                "name" => name = self.string(&path, v),
                "key" => {
                    for (text, p) in self.strings(&path, v) {
                        match ratelimit::parse_key_part(text.trim()) {
                            Ok(part) => parts.push(part),
                            Err(message) => {
                                ok = false;
                                self.error(&p, message);
                            }
                        }
                    }
                }
                "windows" => {
                    for (text, p) in self.strings(&path, v) {
                        match ratelimit::parse_window(text.trim()) {
                            Ok(w) => windows.push(w),
                            Err(message) => {
                                ok = false;
                                self.error(&p, message);
                            }
                        }
                    }
                }
                "reply" => reply = self.reply(&path, v, b'4'),
                _ => self.unknown(&path, k, &["name", "key", "windows", "reply"]),
            }
        }
        let Some(name) = name.filter(|n| !n.trim().is_empty()) else {
            self.error(
                key,
                "a rate limit needs a `name` (it identifies its buckets across reloads)",
            );
            return None;
        };
        if parts.is_empty() && ok {
            self.error(
                key,
                "a rate limit needs a `key`, e.g. key = [\"client_ip/24\"]",
            );
            return None;
        }
        if windows.is_empty() && ok {
            self.error(
                key,
                "a rate limit needs `windows`, e.g. windows = [\"100/1m\", \"1000/1h\"]",
            );
            return None;
        }
        ok.then(|| Limit {
            name,
            key: parts,
            windows,
            reply,
            origin: key.to_owned(),
        })
    }

    fn tenant(&mut self, key: &str, entries: &[(String, Node)]) -> TenantSource {
        let mut tenant = TenantSource {
            level: LevelSource {
                key: key.to_owned(),
                ..LevelSource::default()
            },
            ..TenantSource::default()
        };
        for (k, v) in entries {
            let path = format!("{key}.{k}");
            match k.as_str() {
                "name" => tenant.name = self.string(&path, v).unwrap_or_default(),
                "domain" => {
                    for (dkey, dentries) in self.tables(&path, v) {
                        tenant.domains.push(self.domain(&dkey, dentries));
                    }
                }
                _ => {
                    if !self.level_key(&mut tenant.level, &path, k, v) {
                        let mut known = LEVEL_KEYS.to_vec();
                        known.extend(["name", "domain"]);
                        self.unknown(&path, k, &known);
                    }
                }
            }
        }
        if tenant.name.trim().is_empty() {
            self.error(key, "a tenant needs a `name`");
        }
        tenant.level.label = format!("tenant {}", tenant.name);
        tenant
    }

    fn domain(&mut self, key: &str, entries: &[(String, Node)]) -> DomainSource {
        let mut domain = DomainSource {
            level: LevelSource {
                key: key.to_owned(),
                ..LevelSource::default()
            },
            ..DomainSource::default()
        };
        for (k, v) in entries {
            let path = format!("{key}.{k}");
            match k.as_str() {
                "name" => {
                    domain.name = self
                        .string(&path, v)
                        .unwrap_or_default()
                        .trim()
                        .to_ascii_lowercase()
                }
                "recipients" => {
                    domain.recipients = Some(
                        self.strings(&path, v)
                            .into_iter()
                            .map(|(text, key)| match text.strip_prefix("file:") {
                                Some(name) => EntrySource::File(name.trim().to_owned()),
                                None => EntrySource::Inline {
                                    text: text.trim().to_owned(),
                                    key,
                                },
                            })
                            .collect(),
                    );
                }
                "recipient" => {
                    for (rkey, rentries) in self.tables(&path, v) {
                        domain
                            .recipient_levels
                            .push(self.recipient(&rkey, rentries));
                    }
                }
                _ => {
                    if !self.level_key(&mut domain.level, &path, k, v) {
                        let mut known = LEVEL_KEYS.to_vec();
                        known.extend(["name", "recipients", "recipient"]);
                        self.unknown(&path, k, &known);
                    }
                }
            }
        }
        if !is_domain(&domain.name) {
            self.error(
                &format!("{key}.name"),
                format!(
                    "`{}` is not a domain name, e.g. name = \"example.com\"",
                    domain.name
                ),
            );
        }
        for r in &domain.recipient_levels {
            if !r.address.ends_with(&format!("@{}", domain.name)) {
                self.error(
                    &r.level.key,
                    format!(
                        "recipient `{}` is not in domain `{}`",
                        r.address, domain.name
                    ),
                );
            }
        }
        domain.level.label = format!("domain {}", domain.name);
        domain
    }

    fn recipient(&mut self, key: &str, entries: &[(String, Node)]) -> RecipientSource {
        let mut recipient = RecipientSource {
            level: LevelSource {
                key: key.to_owned(),
                ..LevelSource::default()
            },
            ..RecipientSource::default()
        };
        for (k, v) in entries {
            let path = format!("{key}.{k}");
            if k == "address" {
                recipient.address = self
                    .string(&path, v)
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase();
            } else if !self.level_key(&mut recipient.level, &path, k, v) {
                let mut known = LEVEL_KEYS.to_vec();
                known.push("address");
                self.unknown(&path, k, &known);
            }
        }
        if !recipient.address.contains('@') {
            self.error(
                &format!("{key}.address"),
                "expected an address, e.g. address = \"ceo@example.com\"",
            );
        }
        recipient.level.label = format!("recipient {}", recipient.address);
        recipient
    }
}

fn is_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Parses `"550 5.7.1 text"`: a code of class `class` (`b'4'` or `b'5'`), an
/// enhanced status code of the same class, and text.
///
/// # Errors
/// What is wrong, with an example.
pub fn parse_reply(text: &str, class: u8) -> Result<SmtpText, String> {
    let example = if class == b'4' {
        "450 4.7.1 Try again later"
    } else {
        "550 5.7.1 Refused by policy"
    };
    let mut words = text.trim().splitn(2, ' ');
    let code = words.next().unwrap_or("");
    let rest = words.next().unwrap_or("").trim();
    let valid_code =
        code.len() == 3 && code.as_bytes()[0] == class && code.bytes().all(|b| b.is_ascii_digit());
    if !valid_code {
        return Err(format!(
            "expected a {}xx reply, e.g. \"{example}\", found \"{text}\"",
            class as char
        ));
    }
    let enhanced = rest.split(' ').next().unwrap_or("");
    let valid_enhanced = enhanced.as_bytes().first() == Some(&class)
        && enhanced.split('.').count() == 3
        && enhanced
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !valid_enhanced {
        return Err(format!(
            "the reply needs an enhanced status code of class {}, e.g. \"{example}\"",
            class as char
        ));
    }
    if rest.contains(['\r', '\n']) {
        return Err("a reply is one line".to_owned());
    }
    Ok(SmtpText {
        code: code
            .parse()
            .unwrap_or(if class == b'4' { 450 } else { 550 }),
        text: rest.to_owned(),
    })
}
