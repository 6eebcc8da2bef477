//! The checker: TOML text in, a [`Config`] and every [`Diagnostic`] out.
//!
//! The text is parsed once into a [`Node`] tree that keeps file order, then
//! walked by hand, one function per table. Each key is read by a typed helper
//! that either returns the value or records an error with the key's path and
//! keeps going, so one run reports every problem. Missing keys take their
//! default from [`super::defaults`] or [`crate::limits`]; checks that involve
//! several keys run after their table is read. Any error withholds the config.
//!
//! ```text
//! key paths   daemon.shutdown_grace   milter.tcp[1]   policy.sender[2].action
//! ```
//!
//! Pure: no file system, environment or clock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::defaults as d;
use super::tree::{parse_document, Node};
use super::value::closest;
use super::{
    AddressPattern, AddressRule, AttachmentsConfig, Checked, Config, DaemonConfig, Diagnostic,
    EvalConfig, FilterAction, FilterConfig, FilterDomainConfig, MilterConfig, PolicyConfig,
    RuleAction, Severity, ShardsConfig, SmtpReply,
};
use crate::filter::attach;
use crate::limits;

mod delivery;
use delivery::DELIVERY_KEYS;

const DAEMON_KEYS: &[&str] = &["state_dir", "control_socket", "shutdown_grace"];
const SHARDS_KEYS: &[&str] = &["count", "cpus", "io_memory"];
const MILTER_KEYS: &[&str] = &[
    "socket",
    "socket_mode",
    "socket_group",
    "tcp",
    "connections_max_per_shard",
    "frame_bytes_max",
    "idle_timeout",
    "write_timeout",
];
const POLICY_KEYS: &[&str] = &["message_bytes_max", "header", "sender", "recipient"];
const RULE_KEYS: &[&str] = &["match", "action", "reply", "body"];
const EVAL_KEYS: &[&str] = &[
    "policy",
    "ratelimit_slots",
    "policyd_socket",
    "policyd_tcp",
    "redis",
    "redis_sync_interval",
    "redis_key_prefix",
    "ratelimit_seed",
    "watch_interval",
];
const FILTER_KEYS: &[&str] = &[
    "rules",
    "required_score",
    "quarantine_score",
    "reject_score",
    "headers",
    "scan_bytes_max",
    "on_limit",
    "attachments",
    "domains",
];
const ATTACH_KEYS: &[&str] = &[
    "enabled",
    "action",
    "blocked_extensions",
    "blocked_types",
    "double_extension",
    "sniff_executables",
    "deceptive_names",
    "part_bytes_max",
    "inspect_zip",
    "zip_depth_max",
    "zip_entries_max",
    "zip_uncompressed_bytes_max",
    "zip_ratio_max",
    "zip_inflate_bytes_max",
    "block_encrypted_archives",
    "block_unsupported_archives",
];
const FILTER_DOMAIN_KEYS: &[&str] = &[
    "required_score",
    "quarantine_score",
    "reject_score",
    "headers",
    "attachment_action",
];
const SECTIONS: &[(&str, &[&str])] = &[
    ("daemon", DAEMON_KEYS),
    ("shards", SHARDS_KEYS),
    ("milter", MILTER_KEYS),
    ("policy", POLICY_KEYS),
    ("eval", EVAL_KEYS),
    ("filter", FILTER_KEYS),
    ("delivery", DELIVERY_KEYS),
];

/// Checks a whole config file. Never panics on any input; the empty text
/// gives the defaults.
pub fn parse(text: &str) -> super::Checked {
    let root = match parse_document(text) {
        Ok(root) => root,
        Err(error) => {
            return Checked {
                config: None,
                diagnostics: vec![syntax_error(text, &error)],
            };
        }
    };
    let mut checker = Checker::default();
    let config = checker.root(&root);
    let failed = checker
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Error);
    Checked {
        config: (!failed).then_some(config),
        diagnostics: checker.diagnostics,
    }
}

/// One diagnostic for a TOML syntax error, at the 1-based line and column (in
/// characters) where the parser stopped.
fn syntax_error(text: &str, error: &toml::de::Error) -> Diagnostic {
    let position = error.span().map(|span| {
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
    Diagnostic {
        severity: Severity::Error,
        key: String::new(),
        position,
        message: format!("TOML syntax: {message}"),
    }
}

/// The walk's state: diagnostics in the order found, which is file order
/// within each table.
#[derive(Default)]
struct Checker {
    diagnostics: Vec<Diagnostic>,
}

impl Checker {
    fn push(&mut self, severity: Severity, key: &str, message: String) {
        self.diagnostics.push(Diagnostic {
            severity,
            key: key.to_owned(),
            position: None,
            message,
        });
    }

    fn error(&mut self, key: &str, message: impl Into<String>) {
        self.push(Severity::Error, key, message.into());
    }

    /// Records an error and returns `None`, for early returns.
    fn fail<T>(&mut self, key: &str, message: impl Into<String>) -> Option<T> {
        self.error(key, message);
        None
    }

    fn warning(&mut self, key: &str, message: impl Into<String>) {
        self.push(Severity::Warning, key, message.into());
    }

    /// A type error: what was expected, a valid example, what was found.
    fn expected<T>(&mut self, key: &str, what: &str, example: &str, found: &Node) -> Option<T> {
        let found = found.kind();
        self.fail(
            key,
            format!("expected {what}, e.g. `{example}`, found {found}"),
        )
    }

    /// An unknown key, with a "did you mean" when a known key is close, or the
    /// section it belongs to when it is a key of another section.
    /// Returns the suggested key, if any.
    fn unknown(&mut self, key: &str, name: &str, known: &[&'static str]) -> Option<&'static str> {
        let mut message = format!("unknown key `{name}`");
        let suggestion = closest(name, known.iter().copied());
        if let Some(near) = suggestion {
            message.push_str(&format!("; did you mean `{near}`?"));
        } else if let Some((section, _)) = SECTIONS.iter().find(|(_, keys)| keys.contains(&name)) {
            message.push_str(&format!("; `{name}` belongs in `[{section}]`"));
        } else if key.starts_with("filter.")
            && !key.starts_with("filter.attachments.")
            && ATTACH_KEYS.contains(&name)
        {
            message.push_str(&format!("; `{name}` belongs in `[filter.attachments]`"));
        } else if key.starts_with("policy.") && RULE_KEYS.contains(&name) {
            message.push_str(&format!(
                "; `{name}` belongs in a rule, under `[[policy.sender]]` or `[[policy.recipient]]`"
            ));
        } else if key.contains('.') {
            message.push_str(&format!("; known keys here: {}", known.join(", ")));
        } else {
            message.push_str(&format!("; the sections are {}", known.join(", ")));
        }
        self.error(key, message);
        suggestion
    }

    /// The entries of a table, or none (and an error) for another type.
    fn table<'n>(&mut self, key: &str, node: &'n Node, example: &str) -> &'n [(String, Node)] {
        match node {
            Node::Table(entries) => entries,
            other => {
                self.expected::<()>(key, "a table", example, other);
                &[]
            }
        }
    }

    fn string<'n>(&mut self, key: &str, node: &'n Node, example: &str) -> Option<&'n str> {
        match node {
            Node::String(s) => Some(s),
            other => self.expected(key, "a string", example, other),
        }
    }

    fn integer(
        &mut self,
        key: &str,
        node: &Node,
        example: &str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let Node::Integer(n) = *node else {
            return self.expected(key, "an integer", example, node);
        };
        if !(min..=max).contains(&n) {
            self.error(key, format!("must be between {min} and {max}, found {n}"));
            return None;
        }
        Some(n)
    }

    fn duration(
        &mut self,
        key: &str,
        node: &Node,
        example: &str,
        range: (Duration, Duration),
    ) -> Option<Duration> {
        if let Node::Integer(_) = node {
            self.error(
                key,
                format!("a duration needs a unit (ms, s, m or h), e.g. `{example}`"),
            );
            return None;
        }
        let value = match super::parse_duration(self.string(key, node, example)?) {
            Ok(v) => v,
            Err(e) => return self.fail(key, e.to_string()),
        };
        let (min, max) = range;
        if value < min || value > max {
            let (lo, hi, v) = (show_duration(min), show_duration(max), show_duration(value));
            self.error(key, format!("must be between {lo} and {hi}, found {v}"));
            return None;
        }
        Some(value)
    }

    fn bytes(&mut self, key: &str, node: &Node, example: &str, range: (u64, u64)) -> Option<u64> {
        let value = match node {
            Node::Integer(n) => match u64::try_from(*n) {
                Ok(n) => n,
                Err(_) => return self.fail(key, format!("must not be negative, found {n}")),
            },
            Node::String(s) => match super::parse_bytes(s) {
                Ok(n) => n,
                Err(e) => return self.fail(key, e.to_string()),
            },
            other => return self.expected(key, "a byte size", example, other),
        };
        let (min, max) = range;
        if value < min || value > max {
            let (lo, v) = (show_bytes(min), show_bytes(value));
            let message = if max == u64::MAX {
                format!("must be at least {lo}, found {v}")
            } else {
                format!("must be between {lo} and {}, found {v}", show_bytes(max))
            };
            self.error(key, message);
            return None;
        }
        Some(value)
    }

    /// A file system path: non-empty, no NUL, with a warning when relative.
    fn path(&mut self, key: &str, node: &Node, example: &str) -> Option<PathBuf> {
        let text = self.string(key, node, example)?;
        if text.is_empty() {
            return self.fail(
                key,
                format!("empty path: write e.g. `{example}` or remove the key"),
            );
        }
        if text.contains('\0') {
            return self.fail(key, "a path cannot contain a NUL character");
        }
        if !text.starts_with('/') {
            self.warning(
                key,
                format!(
                    "`{text}` is relative to mbd's working directory (`/` under systemd); \
                    write an absolute path, e.g. `{example}`"
                ),
            );
        }
        Some(PathBuf::from(text))
    }

    // ----- the tables -----

    /// The document root: the four sections, checked in file order; a
    /// missing section is checked as an empty table, which yields its defaults.
    fn root(&mut self, root: &[(String, Node)]) -> Config {
        let (mut daemon, mut shards, mut milter, mut policy) = (None, None, None, None);
        let mut eval = None;
        let mut filter = None;
        let mut delivery = None;
        for (name, node) in root {
            match name.as_str() {
                "daemon" => daemon = Some(self.daemon(node)),
                "shards" => shards = Some(self.shards(node)),
                "milter" => milter = Some(self.milter(node)),
                "policy" => policy = Some(self.policy(node)),
                "eval" => eval = Some(self.eval(node)),
                "filter" => filter = Some(self.filter(node)),
                "delivery" => delivery = Some(self.delivery(node)),
                _ => {
                    let names: Vec<&str> = SECTIONS.iter().map(|(section, _)| *section).collect();
                    self.unknown(name, name, &names);
                }
            }
        }
        let empty = Node::Table(Vec::new());
        Config {
            daemon: daemon.unwrap_or_else(|| self.daemon(&empty)),
            shards: shards.unwrap_or_else(|| self.shards(&empty)),
            milter: milter.unwrap_or_else(|| self.milter(&empty)),
            policy: policy.unwrap_or_else(|| self.policy(&empty)),
            eval: eval.unwrap_or_else(|| self.eval(&empty)),
            filter: filter.unwrap_or_else(|| self.filter(&empty)),
            delivery: delivery.unwrap_or_else(|| self.delivery(&empty)),
        }
    }

    /// `[filter]`.
    fn filter(&mut self, node: &Node) -> FilterConfig {
        let mut out = FilterConfig {
            rules: Vec::new(),
            required_score: None,
            quarantine_score: None,
            reject_score: None,
            headers: true,
            scan_bytes_max: limits::SCAN_BYTES_DEFAULT,
            on_limit: d::ON_LIMIT_DEFAULT,
            attachments: default_attachments(),
            domains: Vec::new(),
        };
        let mut domains = None;
        for (name, value) in self.table("filter", node, "[filter]") {
            let key = format!("filter.{name}");
            match name.as_str() {
                "rules" => {
                    let example =
                        r#"rules = ["/usr/share/spamassassin", "/etc/spamassassin/local.cf"]"#;
                    let items: Vec<&Node> = match value {
                        Node::Array(items) => items.iter().collect(),
                        other => vec![other],
                    };
                    for (i, item) in items.into_iter().enumerate() {
                        if let Some(p) = self.path(&format!("{key}[{i}]"), item, example) {
                            out.rules.push(p);
                        }
                    }
                }
                "required_score" => {
                    if let Some(Some(v)) = self.score(&key, name, value, false) {
                        out.required_score = Some(v);
                    }
                }
                "quarantine_score" => {
                    if let Some(v) = self.score(&key, name, value, true) {
                        out.quarantine_score = v;
                    }
                }
                "reject_score" => {
                    if let Some(v) = self.score(&key, name, value, true) {
                        out.reject_score = v;
                    }
                }
                "scan_bytes_max" => {
                    let example = r#"scan_bytes_max = "2MiB""#;
                    if let Some(n) = self.bytes(&key, value, example, limits::SCAN_BYTES_RANGE) {
                        out.scan_bytes_max = usize::try_from(n).unwrap_or(usize::MAX);
                    }
                }
                "headers" => {
                    if let Some(b) = self.boolean(&key, value, "headers = true") {
                        out.headers = b;
                    }
                }
                "on_limit" => {
                    if let Some(a) = self.filter_action(&key, value, r#"on_limit = "quarantine""#) {
                        out.on_limit = a;
                    }
                }
                "attachments" => out.attachments = self.attachments(value),
                "domains" => domains = Some(value),
                _ => {
                    self.unknown(&key, name, FILTER_KEYS);
                }
            }
        }
        if let (Some(q), Some(r)) = (out.quarantine_score, out.reject_score) {
            if q >= r {
                self.warning(
                    "filter.quarantine_score",
                    format!("{q} is not below reject_score {r}: nothing is ever quarantined"),
                );
            }
        }
        if out.attachments.enabled && out.attachments.action == FilterAction::Header && !out.headers
        {
            self.warning(
                "filter.attachments.action",
                "action \"header\" flags the message in the X-Spam-* headers, but \
                 filter.headers = false adds none: set headers = true or choose another action",
            );
        }
        // Read after the global keys, whatever their order in the file: the
        // per-domain checks compare with the inherited values.
        if let Some(value) = domains {
            out.domains = self.filter_domains(value, &out);
        }
        out
    }

    /// A `true`/`false` value.
    fn boolean(&mut self, key: &str, node: &Node, example: &str) -> Option<bool> {
        match node {
            Node::Boolean(b) => Some(*b),
            other => self.expected(key, "true or false", example, other),
        }
    }

    /// A score: a number within ±1000; with `off_allowed`, `false` is
    /// `Some(None)` (never). `None` after an error.
    fn score(
        &mut self,
        key: &str,
        name: &str,
        node: &Node,
        off_allowed: bool,
    ) -> Option<Option<f32>> {
        let v = match node {
            Node::Float(f) => *f,
            Node::Integer(n) => *n as f64,
            Node::Boolean(false) if off_allowed => return Some(None),
            other => {
                let what = if off_allowed {
                    "a number, or false for never"
                } else {
                    "a number"
                };
                return self.expected(key, what, &format!("{name} = 10.0"), other);
            }
        };
        if !(-1000.0..=1000.0).contains(&v) {
            return self.fail(key, format!("must be between -1000 and 1000, found {v}"));
        }
        Some(Some(v as f32))
    }

    /// One of the filter actions.
    fn filter_action(&mut self, key: &str, node: &Node, example: &str) -> Option<FilterAction> {
        let text = self.string(key, node, example)?;
        if let Some(action) = FilterAction::from_name(text) {
            return Some(action);
        }
        let names: Vec<&str> = FilterAction::ALL.iter().map(|(n, _)| *n).collect();
        let mut message = format!("unknown action `{text}`");
        if let Some(near) = closest(text, names.iter().copied()) {
            message.push_str(&format!("; did you mean `{near}`?"));
        }
        message.push_str(&format!(" (actions: {})", names.join(", ")));
        self.fail(key, message)
    }

    /// `[filter.attachments]`.
    fn attachments(&mut self, node: &Node) -> AttachmentsConfig {
        let mut out = default_attachments();
        for (name, value) in self.table("filter.attachments", node, "[filter.attachments]") {
            let key = format!("filter.attachments.{name}");
            let flag = |c: &mut Self, example: &str| c.boolean(&key, value, example);
            match name.as_str() {
                "enabled" => out.enabled = flag(self, "enabled = true").unwrap_or(out.enabled),
                "action" => {
                    let example = r#"action = "reject""#;
                    if let Some(a) = self.filter_action(&key, value, example) {
                        out.action = a;
                    }
                }
                "blocked_extensions" => {
                    if let Some(list) = self.extensions(&key, value) {
                        out.blocked_extensions = list;
                    }
                }
                "blocked_types" => {
                    if let Some(list) = self.mime_types(&key, value) {
                        out.blocked_types = list;
                    }
                }
                "double_extension" => {
                    let b = flag(self, "double_extension = true");
                    out.double_extension = b.unwrap_or(out.double_extension);
                }
                "sniff_executables" => {
                    let b = flag(self, "sniff_executables = true");
                    out.sniff_executables = b.unwrap_or(out.sniff_executables);
                }
                "deceptive_names" => {
                    let b = flag(self, "deceptive_names = true");
                    out.deceptive_names = b.unwrap_or(out.deceptive_names);
                }
                "inspect_zip" => {
                    out.inspect_zip = flag(self, "inspect_zip = true").unwrap_or(out.inspect_zip);
                }
                "block_encrypted_archives" => {
                    let b = flag(self, "block_encrypted_archives = true");
                    out.block_encrypted_archives = b.unwrap_or(out.block_encrypted_archives);
                }
                "block_unsupported_archives" => {
                    let b = flag(self, "block_unsupported_archives = false");
                    out.block_unsupported_archives = b.unwrap_or(out.block_unsupported_archives);
                }
                "part_bytes_max" => {
                    let example = r#"part_bytes_max = "25MiB""#;
                    if let Some(n) = self.bytes(&key, value, example, d::ATTACH_PART_BYTES_RANGE) {
                        out.part_bytes_max = usize::try_from(n).unwrap_or(usize::MAX);
                    }
                }
                "zip_depth_max" => {
                    let (min, max) = d::ZIP_DEPTH_RANGE;
                    if let Some(n) = self.integer(&key, value, "zip_depth_max = 4", min, max) {
                        out.zip_depth_max = usize::try_from(n).unwrap_or(usize::MAX);
                    }
                }
                "zip_entries_max" => {
                    let (min, max) = d::ZIP_ENTRIES_RANGE;
                    if let Some(n) = self.integer(&key, value, "zip_entries_max = 5000", min, max) {
                        out.zip_entries_max = usize::try_from(n).unwrap_or(usize::MAX);
                    }
                }
                "zip_ratio_max" => {
                    let (min, max) = d::ZIP_RATIO_RANGE;
                    if let Some(n) = self.integer(&key, value, "zip_ratio_max = 100", min, max) {
                        out.zip_ratio_max = u64::try_from(n).unwrap_or(u64::MAX);
                    }
                }
                "zip_uncompressed_bytes_max" => {
                    let example = r#"zip_uncompressed_bytes_max = "1GiB""#;
                    let range = d::ZIP_UNCOMPRESSED_BYTES_RANGE;
                    if let Some(n) = self.bytes(&key, value, example, range) {
                        out.zip_uncompressed_bytes_max = n;
                    }
                }
                "zip_inflate_bytes_max" => {
                    let example = r#"zip_inflate_bytes_max = "16MiB""#;
                    let range = d::ZIP_INFLATE_BYTES_RANGE;
                    if let Some(n) = self.bytes(&key, value, example, range) {
                        out.zip_inflate_bytes_max = usize::try_from(n).unwrap_or(usize::MAX);
                    }
                }
                _ => {
                    self.unknown(&key, name, ATTACH_KEYS);
                }
            }
        }
        out
    }

    /// An array of strings, each checked by `item` (which records its own
    /// error and returns `None`); duplicates after normalization warn.
    /// `None` when any item had an error.
    fn string_list(
        &mut self,
        key: &str,
        node: &Node,
        example: &str,
        item: fn(&str) -> Result<String, String>,
    ) -> Option<Vec<String>> {
        let Node::Array(items) = node else {
            return self.expected(key, "an array of strings", example, node);
        };
        let mut out: Vec<String> = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, node) in items.iter().enumerate() {
            let item_key = format!("{key}[{i}]");
            let Some(text) = self.string(&item_key, node, example) else {
                ok = false;
                continue;
            };
            match item(text) {
                Ok(v) => {
                    if let Some(first) = out.iter().position(|x| *x == v) {
                        self.warning(
                            &item_key,
                            format!("`{v}` is listed twice (first at {key}[{first}])"),
                        );
                    } else {
                        out.push(v);
                    }
                }
                Err(message) => {
                    self.error(&item_key, message);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// `blocked_extensions`: `"exe"` or `".exe"`, stored lower-case without
    /// the dot.
    fn extensions(&mut self, key: &str, node: &Node) -> Option<Vec<String>> {
        let example = r#"blocked_extensions = ["exe", "js", "docm"]"#;
        self.string_list(key, node, example, |text| {
            let ext = text.strip_prefix('.').unwrap_or(text);
            if ext.is_empty() {
                return Err("an empty extension: write e.g. \"exe\"".to_owned());
            }
            if ext.contains('.') {
                return Err(format!(
                    "`{text}`: only the last extension of a name is compared; write \"{}\"",
                    ext.rsplit('.').next().unwrap_or(ext)
                ));
            }
            if ext.contains(['/', '\\', '*', '?']) || ext.chars().any(char::is_whitespace) {
                return Err(format!(
                    "`{text}` is not a file extension: write it without paths, wildcards or \
                     spaces, e.g. \"exe\""
                ));
            }
            Ok(ext.to_lowercase())
        })
    }

    /// `blocked_types`: `type/subtype`, stored lower-case.
    fn mime_types(&mut self, key: &str, node: &Node) -> Option<Vec<String>> {
        let example = r#"blocked_types = ["application/x-msdownload"]"#;
        self.string_list(key, node, example, |text| {
            let shaped = text.split_once('/').is_some_and(|(t, s)| {
                !t.is_empty()
                    && !s.is_empty()
                    && !s.contains('/')
                    && text.bytes().all(|b| b.is_ascii_graphic() && b != b';')
            });
            if !shaped {
                return Err(format!(
                    "`{text}` is not a MIME type: write `type/subtype` without parameters, \
                     e.g. \"application/x-msdownload\""
                ));
            }
            Ok(text.to_ascii_lowercase())
        })
    }

    /// `[filter.domains]`: a table of domain tables.
    fn filter_domains(&mut self, node: &Node, global: &FilterConfig) -> Vec<FilterDomainConfig> {
        let example = r#"[filter.domains."example.com"]"#;
        let entries = self.table("filter.domains", node, example);
        if entries.len() > d::FILTER_DOMAINS_MAX {
            self.error(
                "filter.domains",
                format!(
                    "{} domains, at most {} are accepted",
                    entries.len(),
                    d::FILTER_DOMAINS_MAX
                ),
            );
            return Vec::new();
        }
        let mut out: Vec<FilterDomainConfig> = Vec::with_capacity(entries.len());
        // Every valid domain seen, with its table's key path (also those
        // whose table has an error), to report a repeat once.
        let mut seen: HashMap<String, String> = HashMap::with_capacity(entries.len());
        for (name, value) in entries {
            let origin = format!("filter.domains.{}", quoted_key(name));
            let domain = match check_filter_domain(name) {
                Ok(domain) => domain,
                Err(message) => {
                    self.error(&origin, message);
                    continue;
                }
            };
            if let Some(first) = seen.get(&domain) {
                let message = format!("`{name}` is the same domain as {first}");
                self.error(&origin, message);
                continue;
            }
            seen.insert(domain.clone(), origin.clone());
            if let Some(parsed) = self.filter_domain(origin, domain, value, global) {
                out.push(parsed);
            }
        }
        out
    }

    /// One `[filter.domains."example.com"]` table; `None` when it has an
    /// error.
    fn filter_domain(
        &mut self,
        origin: String,
        domain: String,
        node: &Node,
        global: &FilterConfig,
    ) -> Option<FilterDomainConfig> {
        let example = format!("[{origin}]");
        let Node::Table(entries) = node else {
            return self.expected(&origin, "a table", &example, node);
        };
        let mut out = FilterDomainConfig {
            domain,
            origin,
            required_score: None,
            quarantine_score: None,
            reject_score: None,
            headers: None,
            attachment_action: None,
        };
        let mut ok = true;
        for (name, value) in entries {
            let key = format!("{}.{name}", out.origin);
            let parsed = match name.as_str() {
                "required_score" => self
                    .score(&key, name, value, false)
                    .map(|v| out.required_score = v),
                "quarantine_score" => self
                    .score(&key, name, value, true)
                    .map(|v| out.quarantine_score = Some(v)),
                "reject_score" => self
                    .score(&key, name, value, true)
                    .map(|v| out.reject_score = Some(v)),
                "headers" => self
                    .boolean(&key, value, "headers = false")
                    .map(|b| out.headers = Some(b)),
                "attachment_action" => self
                    .filter_action(&key, value, r#"attachment_action = "quarantine""#)
                    .map(|a| out.attachment_action = Some(a)),
                _ if matches!(value, Node::Table(_)) => {
                    let dotted = format!("{}.{name}", out.domain);
                    self.fail(
                        &key,
                        format!(
                            "`{name}` is a table: a domain with dots must be quoted, \
                             e.g. [filter.domains.\"{dotted}\"]"
                        ),
                    )
                }
                _ => {
                    self.unknown(&key, name, FILTER_DOMAIN_KEYS);
                    None
                }
            };
            ok &= parsed.is_some();
        }
        if !ok {
            return None;
        }
        if entries.is_empty() {
            self.warning(
                &out.origin,
                "overrides nothing: add required_score, quarantine_score, reject_score, \
                 headers or attachment_action, or remove the table",
            );
        }
        let quarantine = out.quarantine_score.unwrap_or(global.quarantine_score);
        let reject = out.reject_score.unwrap_or(global.reject_score);
        let own = out.quarantine_score.is_some() || out.reject_score.is_some();
        if let (Some(q), Some(r), true) = (quarantine, reject, own) {
            if q >= r {
                self.warning(
                    &format!("{}.quarantine_score", out.origin),
                    format!(
                        "{q} is not below reject_score {r} for this domain: nothing is ever \
                         quarantined"
                    ),
                );
            }
        }
        let headers = out.headers.unwrap_or(global.headers);
        let action = out.attachment_action.unwrap_or(global.attachments.action);
        if global.attachments.enabled && action == FilterAction::Header && !headers {
            self.warning(
                &out.origin,
                "attachment action \"header\" flags the message in the X-Spam-* headers, but \
                 headers = false adds none for this domain",
            );
        }
        Some(out)
    }

    /// `[eval]`.
    fn eval(&mut self, node: &Node) -> EvalConfig {
        let mut out = EvalConfig {
            policy: None,
            ratelimit_slots: d::RATELIMIT_SLOTS_DEFAULT,
            policyd_socket: None,
            policyd_socket_disabled: false,
            policyd_tcp: Vec::new(),
            redis: None,
            redis_sync_interval: d::REDIS_SYNC_INTERVAL_DEFAULT,
            watch_interval: d::WATCH_INTERVAL_DEFAULT,
            redis_key_prefix: d::REDIS_KEY_PREFIX_DEFAULT.to_owned(),
            ratelimit_seed: d::RATELIMIT_SEED_DEFAULT,
        };
        let mut seed_set = false;
        for (name, value) in self.table("eval", node, "[eval]") {
            let key = format!("eval.{name}");
            match name.as_str() {
                "policy" => {
                    out.policy =
                        self.path(&key, value, r#"policy = "/etc/mailborder/policy.toml""#);
                }
                "ratelimit_slots" => {
                    let (min, max) = (d::RATELIMIT_SLOTS_MIN, d::RATELIMIT_SLOTS_MAX);
                    let example = "ratelimit_slots = 262144";
                    if let Some(n) = self.integer(&key, value, example, min as i64, max as i64) {
                        let n = n as usize;
                        if !n.is_power_of_two() {
                            self.error(
                                &key,
                                format!("must be a power of two, e.g. {}", n.next_power_of_two()),
                            );
                        }
                        out.ratelimit_slots = n;
                    }
                }
                "policyd_socket" => match self.unix_socket(&key, value) {
                    Some(Some(path)) => out.policyd_socket = Some(path),
                    Some(None) => out.policyd_socket_disabled = true,
                    None => {}
                },
                "policyd_tcp" => {
                    if let Some(tcp) = self.tcp(&key, value) {
                        out.policyd_tcp = tcp;
                    }
                }
                "redis" => {
                    let example = r#"redis = "redis://127.0.0.1:6379/0""#;
                    if let Some(url) = self.string(&key, value, example) {
                        match check_redis_url(url) {
                            Ok(()) => out.redis = Some(url.to_owned()),
                            Err(e) => self.error(&key, format!("{e}, e.g. `{example}`")),
                        }
                    }
                }
                "watch_interval" => {
                    let range = (d::WATCH_INTERVAL_MIN, d::WATCH_INTERVAL_MAX);
                    let example = r#"watch_interval = "30s""#;
                    if let Some(v) = self.duration(&key, value, example, range) {
                        out.watch_interval = v;
                    }
                }
                "redis_sync_interval" => {
                    let range = (d::REDIS_SYNC_INTERVAL_MIN, d::REDIS_SYNC_INTERVAL_MAX);
                    let example = r#"redis_sync_interval = "1s""#;
                    if let Some(v) = self.duration(&key, value, example, range) {
                        out.redis_sync_interval = v;
                    }
                }
                "redis_key_prefix" => {
                    if let Some(p) = self.string(&key, value, r#"redis_key_prefix = "mb:rl:""#) {
                        if p.len() > d::REDIS_KEY_PREFIX_BYTES_MAX
                            || p.bytes().any(|b| b.is_ascii_control() || b == b' ')
                        {
                            self.error(
                                &key,
                                format!(
                                    "must be at most {} bytes without spaces or control \
                                     characters, e.g. `mb:rl:`",
                                    d::REDIS_KEY_PREFIX_BYTES_MAX
                                ),
                            );
                        } else {
                            out.redis_key_prefix = p.to_owned();
                        }
                    }
                }
                "ratelimit_seed" => {
                    let example = "ratelimit_seed = 8167301952";
                    if let Some(n) = self.integer(&key, value, example, i64::MIN, i64::MAX) {
                        // Any 64-bit pattern will do: negative numbers reuse the bits.
                        out.ratelimit_seed = n as u64;
                        seed_set = true;
                    }
                }
                _ => {
                    self.unknown(&key, name, EVAL_KEYS);
                }
            }
        }
        if out.redis.is_some() && !seed_set {
            self.warning(
                "eval.ratelimit_seed",
                "cluster nodes share buckets with the built-in hash seed, which anyone can \
                 read; set the same secret `ratelimit_seed` on every node",
            );
        }
        out
    }

    /// `[daemon]`.
    fn daemon(&mut self, node: &Node) -> DaemonConfig {
        let mut out = DaemonConfig {
            state_dir: None,
            control_socket: None,
            shutdown_grace: d::SHUTDOWN_GRACE_DEFAULT,
        };
        for (name, value) in self.table("daemon", node, "[daemon]") {
            let key = format!("daemon.{name}");
            match name.as_str() {
                "state_dir" => {
                    out.state_dir = self.path(&key, value, r#"state_dir = "/var/lib/mailborder""#);
                }
                "control_socket" => {
                    let example = r#"control_socket = "/run/mailborder/mbd.ctl""#;
                    out.control_socket = self.path(&key, value, example);
                    if let Some(path) = &out.control_socket {
                        self.socket_path_length(&key, path.as_os_str().len());
                    }
                }
                "shutdown_grace" => {
                    let range = (Duration::ZERO, d::SHUTDOWN_GRACE_MAX);
                    if let Some(v) = self.duration(&key, value, r#"shutdown_grace = "90s""#, range)
                    {
                        out.shutdown_grace = v;
                    }
                }
                _ => {
                    self.unknown(&key, name, DAEMON_KEYS);
                }
            }
        }
        out
    }

    fn socket_path_length(&mut self, key: &str, len: usize) {
        if len > d::UNIX_SOCKET_PATH_BYTES_MAX {
            let max = d::UNIX_SOCKET_PATH_BYTES_MAX;
            self.error(
                key,
                format!(
                    "a unix socket path is at most {max} bytes (sun_path), \
                this one is {len}; choose a shorter path"
                ),
            );
        }
    }

    /// `[shards]`.
    fn shards(&mut self, node: &Node) -> ShardsConfig {
        let mut out = ShardsConfig {
            count: 0,
            cpus: Vec::new(),
            io_memory_bytes: d::IO_MEMORY_BYTES_DEFAULT,
        };
        // Cross-key checks only run on values that were valid on their own.
        let (mut count_ok, mut cpus_ok) = (true, true);
        for (name, value) in self.table("shards", node, "[shards]") {
            let key = format!("shards.{name}");
            match name.as_str() {
                "count" => {
                    let max = i64::from(d::SHARDS_COUNT_MAX);
                    match self.integer(&key, value, "count = 4", 0, max) {
                        Some(n) => out.count = u16::try_from(n).unwrap_or(d::SHARDS_COUNT_MAX),
                        None => count_ok = false,
                    }
                }
                "cpus" => match self.cpus(&key, value) {
                    Some(cpus) => out.cpus = cpus,
                    None => cpus_ok = false,
                },
                "io_memory" => {
                    let range = (d::IO_MEMORY_BYTES_MIN as u64, d::IO_MEMORY_BYTES_MAX as u64);
                    if let Some(n) = self.bytes(&key, value, r#"io_memory = "2MiB""#, range) {
                        // The range check bounds n to 1 GiB, which fits a 32-bit usize.
                        out.io_memory_bytes = usize::try_from(n).unwrap_or(d::IO_MEMORY_BYTES_MAX);
                    }
                }
                _ => {
                    self.unknown(&key, name, SHARDS_KEYS);
                }
            }
        }
        let cpus = out.cpus.len();
        if count_ok && cpus_ok && out.count > 0 && usize::from(out.count) > cpus && cpus > 0 {
            let count = out.count;
            self.error(
                "shards.count",
                format!(
                    "count = {count} but shards.cpus lists {cpus} CPUs, and each shard is \
                    pinned to its own CPU: list more CPUs or set count to at most {cpus}"
                ),
            );
        }
        if cpus_ok && out.count == 0 && cpus > usize::from(d::SHARDS_COUNT_MAX) {
            let max = d::SHARDS_COUNT_MAX;
            self.error(
                "shards.cpus",
                format!(
                    "{cpus} CPUs would start {cpus} shards, more \
                than the maximum of {max}; set shards.count"
                ),
            );
        }
        out
    }

    /// `shards.cpus`: distinct CPU indexes, in order.
    fn cpus(&mut self, key: &str, node: &Node) -> Option<Vec<usize>> {
        let Node::Array(items) = node else {
            return self.expected(key, "an array of CPU numbers", "cpus = [0, 1, 2, 3]", node);
        };
        let mut cpus: Vec<usize> = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let item_key = format!("{key}[{i}]");
            let max = d::CPU_INDEX_MAX as i64;
            let Some(cpu) = self.integer(&item_key, item, "cpus = [0, 1, 2, 3]", 0, max) else {
                ok = false;
                continue;
            };
            let cpu = cpu as usize;
            if let Some(first) = cpus.iter().position(|&c| c == cpu) {
                self.error(
                    &item_key,
                    format!(
                        "CPU {cpu} is listed twice (first at \
                    {key}[{first}]); each shard needs its own CPU"
                    ),
                );
                ok = false;
            }
            cpus.push(cpu);
        }
        ok.then_some(cpus)
    }
}

impl Checker {
    /// `[milter]`.
    fn milter(&mut self, node: &Node) -> MilterConfig {
        let mut out = MilterConfig {
            unix_socket: None,
            unix_socket_disabled: false,
            socket_mode: d::SOCKET_MODE_DEFAULT,
            socket_group: None,
            tcp: Vec::new(),
            connections_max_per_shard: limits::CONNECTIONS_PER_SHARD_DEFAULT,
            frame_bytes_max: limits::MILTER_FRAME_BYTES_DEFAULT,
            idle_timeout: d::IDLE_TIMEOUT_DEFAULT,
            write_timeout: d::WRITE_TIMEOUT_DEFAULT,
        };
        let (mut socket_ok, mut tcp_ok) = (true, true);
        for (name, value) in self.table("milter", node, "[milter]") {
            let key = format!("milter.{name}");
            match name.as_str() {
                "socket" => match self.unix_socket(&key, value) {
                    Some(None) => out.unix_socket_disabled = true,
                    Some(path) => out.unix_socket = path,
                    None => socket_ok = false,
                },
                "socket_mode" => {
                    if let Some(mode) = self.socket_mode(&key, value) {
                        out.socket_mode = mode;
                    }
                }
                "socket_group" => out.socket_group = self.group(&key, value),
                "tcp" => match self.tcp(&key, value) {
                    Some(addresses) => out.tcp = addresses,
                    None => tcp_ok = false,
                },
                "connections_max_per_shard" => {
                    let max = i64::from(d::CONNECTIONS_MAX_PER_SHARD_MAX);
                    let example = "connections_max_per_shard = 4096";
                    if let Some(n) = self.integer(&key, value, example, 1, max) {
                        out.connections_max_per_shard =
                            u32::try_from(n).unwrap_or(d::CONNECTIONS_MAX_PER_SHARD_MAX);
                    }
                }
                "frame_bytes_max" => {
                    let range = (
                        u64::from(d::MILTER_FRAME_BYTES_MIN),
                        u64::from(limits::MILTER_FRAME_BYTES_CEILING),
                    );
                    let example = r#"frame_bytes_max = "256KiB""#;
                    if let Some(n) = self.bytes(&key, value, example, range) {
                        out.frame_bytes_max =
                            u32::try_from(n).unwrap_or(limits::MILTER_FRAME_BYTES_CEILING);
                    }
                }
                "idle_timeout" => {
                    let range = (d::MILTER_TIMEOUT_MIN, d::IDLE_TIMEOUT_MAX);
                    if let Some(v) = self.duration(&key, value, r#"idle_timeout = "10m""#, range) {
                        out.idle_timeout = v;
                    }
                }
                "write_timeout" => {
                    let range = (d::MILTER_TIMEOUT_MIN, d::WRITE_TIMEOUT_MAX);
                    if let Some(v) = self.duration(&key, value, r#"write_timeout = "30s""#, range) {
                        out.write_timeout = v;
                    }
                }
                _ => {
                    self.unknown(&key, name, MILTER_KEYS);
                }
            }
        }
        if out.unix_socket_disabled && socket_ok && tcp_ok && out.tcp.is_empty() {
            self.error(
                "milter.socket",
                "no milter listener: set milter.socket or milter.tcp (`socket = \"\"` disables \
                 the unix socket and `tcp` is empty)",
            );
        }
        out
    }

    /// `milter.socket`: `Some(None)` for `""` (disabled), `Some(Some(path))`
    /// for a valid path, `None` after an error.
    fn unix_socket(&mut self, key: &str, node: &Node) -> Option<Option<PathBuf>> {
        let example = r#"socket = "/run/mailborder/mb-milter.sock""#;
        let text = self.string(key, node, example)?;
        if text.is_empty() {
            return Some(None);
        }
        if text.starts_with("inet:") {
            return self.fail(
                key,
                format!(
                    "`{text}` is a TCP address: put it in `milter.tcp`, and \
                    give `socket` a path such as `/run/mailborder/mb-milter.sock` (or \"\" for \
                    none)"
                ),
            );
        }
        let path = text.strip_prefix("unix:").unwrap_or(text);
        if !path.starts_with('/') {
            return self.fail(
                key,
                format!("`{text}` is not an absolute path; write e.g. `{example}`"),
            );
        }
        if path.contains('\0') {
            return self.fail(key, "a path cannot contain a NUL character");
        }
        self.socket_path_length(key, path.len());
        Some(Some(PathBuf::from(path)))
    }

    /// `milter.socket_mode`: an octal string such as `"0770"`.
    fn socket_mode(&mut self, key: &str, node: &Node) -> Option<u32> {
        let example = r#"socket_mode = "0770""#;
        if let Node::Integer(_) = node {
            let message = format!(
                "write the mode as an octal string, e.g. `{example}`; a TOML \
                integer would be read as decimal"
            );
            return self.fail(key, message);
        }
        let text = self.string(key, node, example)?;
        let octal =
            !text.is_empty() && text.len() <= 4 && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
        let mode = if octal {
            u32::from_str_radix(text, 8).ok()
        } else {
            None
        };
        let Some(mode) = mode.filter(|&m| m <= d::SOCKET_MODE_MAX) else {
            let message = format!(
                "`{text}` is not a permission mode: write up to three octal \
                digits with an optional leading 0, at most \"0777\", e.g. `{example}`"
            );
            return self.fail(key, message);
        };
        if mode & 0o002 != 0 {
            self.warning(
                key,
                format!(
                    "mode {text} lets every local user connect to the milter \
                socket; \"0770\" with socket_group = \"postfix\" is enough"
                ),
            );
        } else if mode & 0o020 == 0 {
            self.warning(
                key,
                format!(
                    "mode {text} lets only mbd's own user connect, so \
                Postfix cannot unless it runs as that user; use \"0770\" with socket_group"
                ),
            );
        }
        Some(mode)
    }

    /// `milter.socket_group`: a group name or number; `""` means none.
    fn group(&mut self, key: &str, node: &Node) -> Option<String> {
        let text = self.string(key, node, r#"socket_group = "postfix""#)?;
        if text.is_empty() {
            return None;
        }
        if text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':' || c == '/')
        {
            return self.fail(
                key,
                format!("`{text}` is not a group name (no spaces, `:` or `/`), e.g. \"postfix\""),
            );
        }
        Some(text.to_owned())
    }

    /// `milter.tcp`: one address or a list; warns on non-loopback addresses.
    fn tcp(&mut self, key: &str, node: &Node) -> Option<Vec<SocketAddr>> {
        let example = r#"tcp = ["127.0.0.1:9003", "[::1]:9003"]"#;
        let items = self.address_items(key, node, example)?;
        self.addresses(
            items,
            "milter traffic is unauthenticated and unencrypted, so keep this listener on a \
             trusted network (firewall it)",
        )
    }

    /// One address or an array of them, each with its own key path.
    pub(crate) fn address_items<'n>(
        &mut self,
        key: &str,
        node: &'n Node,
        example: &str,
    ) -> Option<Vec<(String, &'n Node)>> {
        match node {
            Node::String(_) => Some(vec![(key.to_owned(), node)]),
            Node::Array(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| (format!("{key}[{i}]"), item))
                    .collect(),
            ),
            other => self.expected(key, "a string or an array of strings", example, other),
        }
    }

    /// Listener addresses: each parsed, none listed twice, and a warning
    /// (ending in `why`) for each that is not loopback.
    pub(crate) fn addresses(
        &mut self,
        items: Vec<(String, &Node)>,
        why: &str,
    ) -> Option<Vec<SocketAddr>> {
        let mut out: Vec<SocketAddr> = Vec::with_capacity(items.len());
        let mut ok = true;
        for (item_key, item) in items {
            let Some(address) = self.tcp_address(&item_key, item) else {
                ok = false;
                continue;
            };
            if out.contains(&address) {
                self.error(&item_key, format!("{address} is listed twice"));
                ok = false;
                continue;
            }
            if !address.ip().to_canonical().is_loopback() {
                self.warning(
                    &item_key,
                    format!("{address} is not a loopback address: {why}"),
                );
            }
            out.push(address);
        }
        ok.then_some(out)
    }

    fn tcp_address(&mut self, key: &str, node: &Node) -> Option<SocketAddr> {
        let text = self.string(key, node, r#""127.0.0.1:9003""#)?;
        let bare = text.strip_prefix("inet:").unwrap_or(text);
        let Ok(address) = bare.parse::<SocketAddr>() else {
            let message = format!(
                "`{text}` is not an IP address and port: write e.g. \
                \"127.0.0.1:9003\" or \"[::1]:9003\" (host names are not resolved)"
            );
            return self.fail(key, message);
        };
        if address.port() == 0 {
            return self.fail(
                key,
                format!("`{text}` has port 0; Postfix needs a fixed port, e.g. \"127.0.0.1:9003\""),
            );
        }
        Some(address)
    }
}

impl Checker {
    /// `[policy]`.
    fn policy(&mut self, node: &Node) -> PolicyConfig {
        let mut out = PolicyConfig {
            message_bytes_max: limits::MESSAGE_BYTES_DEFAULT,
            header: Some(d::HEADER_DEFAULT.to_owned()),
            sender: Vec::new(),
            recipient: Vec::new(),
        };
        for (name, value) in self.table("policy", node, "[policy]") {
            let key = format!("policy.{name}");
            match name.as_str() {
                "message_bytes_max" => {
                    let range = (d::MESSAGE_BYTES_MIN, u64::MAX);
                    let example = r#"message_bytes_max = "50MiB""#;
                    if let Some(n) = self.bytes(&key, value, example, range) {
                        out.message_bytes_max = n;
                    }
                }
                "header" => {
                    if let Some(header) = self.header(&key, value) {
                        out.header = header;
                    }
                }
                "sender" => out.sender = self.rules(&key, value, false),
                "recipient" => out.recipient = self.rules(&key, value, true),
                _ => {
                    self.unknown(&key, name, POLICY_KEYS);
                }
            }
        }
        out
    }

    /// `policy.header`: `Some(None)` for `""`, `None` after an error.
    fn header(&mut self, key: &str, node: &Node) -> Option<Option<String>> {
        let text = self.string(key, node, r#"header = "X-Mailborder""#)?;
        if text.is_empty() {
            return Some(None);
        }
        // RFC 5322 §3.6.8: field-name = 1*ftext; ftext = %d33-57 / %d59-126.
        if !text.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
            let message = format!(
                "`{text}` is not a header field name: use printable ASCII \
                without spaces or `:` (RFC 5322 ftext), e.g. \"X-Mailborder\", or \"\" for no \
                header"
            );
            return self.fail(key, message);
        }
        Some(Some(text.to_owned()))
    }

    /// `[[policy.sender]]` / `[[policy.recipient]]`: an array of rule tables.
    fn rules(&mut self, key: &str, node: &Node, recipient: bool) -> Vec<AddressRule> {
        let Node::Array(items) = node else {
            let example = format!("[[{key}]]");
            let message = format!(
                "expected an array of tables (note the double brackets), \
                e.g. `{example}`, found {}",
                node.kind()
            );
            self.error(key, message);
            return Vec::new();
        };
        let mut rules = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let origin = format!("{key}[{i}]");
            let Node::Table(entries) = item else {
                let example = r#"{ match = "@example.com", action = "reject" }"#;
                self.expected::<()>(&origin, "a rule table", example, item);
                continue;
            };
            if let Some(rule) = self.rule(origin, entries, recipient) {
                rules.push(rule);
            }
        }
        rules
    }

    /// One rule; `None` when it has an error.
    fn rule(
        &mut self,
        origin: String,
        entries: &[(String, Node)],
        recipient: bool,
    ) -> Option<AddressRule> {
        let mut patterns: Option<Vec<AddressPattern>> = None;
        let mut action: Option<RuleAction> = None;
        let mut reply: Option<SmtpReply> = None;
        let mut body: Option<String> = None;
        let mut ok = true;
        let mut suggested: Vec<&str> = Vec::new();
        for (name, value) in entries {
            let key = format!("{origin}.{name}");
            let parsed = match name.as_str() {
                "match" => self
                    .patterns(&key, value, recipient)
                    .map(|p| patterns = Some(p)),
                "action" => self.action(&key, value).map(|a| action = Some(a)),
                "reply" => self.reply(&key, value).map(|r| reply = Some(r)),
                "body" => {
                    let example = r#"body = "This message was removed.\n""#;
                    self.string(&key, value, example)
                        .map(|b| body = Some(crlf(b)))
                }
                _ => {
                    // A typo of a required key is reported once, here, and
                    // not again as "missing key" below.
                    if let Some(near) = self.unknown(&key, name, RULE_KEYS) {
                        suggested.push(near);
                    }
                    None
                }
            };
            ok &= parsed.is_some();
        }
        let present = |name: &str| entries.iter().any(|(k, _)| k == name);
        ok &= present("match") && present("action");
        let missing = |name: &str| !present(name) && !suggested.contains(&name);
        if missing("match") {
            let message = "missing key `match`: the addresses this rule applies to, \
                           e.g. `match = [\"@example.com\"]`";
            self.error(&format!("{origin}.match"), message);
        }
        if missing("action") {
            let names: Vec<&str> = RuleAction::ALL.iter().map(|(n, _)| *n).collect();
            self.error(
                &format!("{origin}.action"),
                format!("missing key `action`: one of {}", names.join(", ")),
            );
        }
        if let Some(action) = action {
            // A typo of `body` leaves its presence unknown: check nothing about it.
            let body = (!suggested.contains(&"body")).then(|| present("body"));
            ok &= self.rule_action_fits(&origin, action, reply.as_ref(), body);
        }
        let (Some(patterns), Some(action), true) = (patterns, action, ok) else {
            return None;
        };
        Some(AddressRule {
            origin,
            patterns,
            action,
            reply,
            body,
        })
    }

    /// The keys that only some actions use: `reply` (reject, tempfail, with a
    /// code of the matching class) and `body` (replace-body, required);
    /// `body` is `None` when its presence is unknown.
    fn rule_action_fits(
        &mut self,
        origin: &str,
        action: RuleAction,
        reply: Option<&SmtpReply>,
        body: Option<bool>,
    ) -> bool {
        let mut ok = true;
        let name = action.as_str();
        if let Some(reply) = reply {
            let class = match action {
                RuleAction::Reject => Some((5, "550 5.7.1 Blocked", "tempfail")),
                RuleAction::TempFail => Some((4, "451 4.7.1 Try again later", "reject")),
                _ => None,
            };
            let key = format!("{origin}.reply");
            match class {
                None => {
                    self.error(
                        &key,
                        format!(
                            "`reply` is only used by the actions reject and \
                        tempfail, not {name}; remove it"
                        ),
                    );
                    ok = false;
                }
                Some((class, example, other)) if reply.code / 100 != class => {
                    let code = reply.code;
                    self.error(
                        &key,
                        format!(
                            "action {name} needs a {class}xx reply, e.g. \
                        \"{example}\", found {code}; or use action = \"{other}\""
                        ),
                    );
                    ok = false;
                }
                Some(_) => {}
            }
        }
        match (action == RuleAction::ReplaceBody, body) {
            (true, Some(false)) => {
                self.error(
                    &format!("{origin}.body"),
                    "missing key `body`: action replace-body \
                    needs the replacement text, e.g. `body = \"This message was removed.\\n\"`",
                );
                ok = false;
            }
            (false, Some(true)) => {
                self.error(
                    &format!("{origin}.body"),
                    format!(
                        "`body` is only used by the action replace-body, not {name}; remove it"
                    ),
                );
                ok = false;
            }
            _ => {}
        }
        ok
    }

    /// `match`: one pattern or a non-empty list; warns on duplicates.
    fn patterns(&mut self, key: &str, node: &Node, recipient: bool) -> Option<Vec<AddressPattern>> {
        let example = r#"match = ["user@example.com", "@example.com", "@.example.com"]"#;
        let items: Vec<(String, &Node)> = match node {
            Node::String(_) => vec![(key.to_owned(), node)],
            Node::Array(items) if items.is_empty() => {
                return self.fail(key, format!("needs at least one pattern, e.g. `{example}`"));
            }
            Node::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| (format!("{key}[{i}]"), item))
                .collect(),
            other => return self.expected(key, "a string or an array of strings", example, other),
        };
        let mut patterns: Vec<AddressPattern> = Vec::with_capacity(items.len());
        let mut ok = true;
        for (item_key, item) in items {
            let Some(text) = self.string(&item_key, item, r#""@example.com""#) else {
                ok = false;
                continue;
            };
            let pattern = match AddressPattern::parse(text) {
                Ok(pattern) => pattern,
                Err(e) => {
                    self.error(&item_key, e.to_string());
                    ok = false;
                    continue;
                }
            };
            if recipient && pattern == AddressPattern::NullSender {
                self.error(
                    &item_key,
                    "`<>` is the null sender and never matches a recipient; \
                    use it in [[policy.sender]]",
                );
                ok = false;
                continue;
            }
            if let Some(first) = patterns.iter().position(|p| *p == pattern) {
                self.warning(
                    &item_key,
                    format!("`{pattern}` is listed twice in this rule (first at {key}[{first}])"),
                );
                continue;
            }
            patterns.push(pattern);
        }
        ok.then_some(patterns)
    }

    fn action(&mut self, key: &str, node: &Node) -> Option<RuleAction> {
        let text = self.string(key, node, r#"action = "reject""#)?;
        if let Some(action) = RuleAction::from_name(text) {
            return Some(action);
        }
        let names: Vec<&str> = RuleAction::ALL.iter().map(|(n, _)| *n).collect();
        let mut message = format!("unknown action `{text}`");
        if let Some(near) = closest(text, names.iter().copied()) {
            message.push_str(&format!("; did you mean `{near}`?"));
        }
        message.push_str(&format!(" (actions: {})", names.join(", ")));
        self.error(key, message);
        None
    }

    fn reply(&mut self, key: &str, node: &Node) -> Option<SmtpReply> {
        let text = self.string(key, node, r#"reply = "550 5.7.1 Sender blocked""#)?;
        match SmtpReply::parse(text) {
            Ok(reply) => Some(reply),
            Err(e) => self.fail(key, e.to_string()),
        }
    }
}

/// The `[filter.attachments]` defaults: [`AttachPolicy::default`]'s lists
/// and caps, action reject.
///
/// [`AttachPolicy::default`]: crate::filter::attach::AttachPolicy
fn default_attachments() -> AttachmentsConfig {
    let owned = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
    AttachmentsConfig {
        enabled: true,
        action: d::ATTACHMENT_ACTION_DEFAULT,
        blocked_extensions: owned(attach::DEFAULT_BLOCKED_EXTENSIONS),
        blocked_types: owned(attach::DEFAULT_BLOCKED_DECLARED_TYPES),
        double_extension: true,
        sniff_executables: true,
        deceptive_names: true,
        part_bytes_max: attach::PART_BYTES_MAX_DEFAULT,
        inspect_zip: true,
        zip_depth_max: attach::ZIP_DEPTH_MAX_DEFAULT,
        zip_entries_max: attach::ZIP_ENTRIES_MAX_DEFAULT,
        zip_uncompressed_bytes_max: attach::ZIP_UNCOMPRESSED_BYTES_MAX_DEFAULT,
        zip_ratio_max: attach::ZIP_RATIO_MAX_DEFAULT,
        zip_inflate_bytes_max: attach::ZIP_INFLATE_BYTES_MAX_DEFAULT,
        block_encrypted_archives: true,
        block_unsupported_archives: false,
    }
}

/// A `[filter.domains]` key as it appears in a key path: bare when TOML
/// allows it, else quoted (`"example.com"`).
fn quoted_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}

/// Checks a `[filter.domains]` key: a domain name in ASCII (IDNs as
/// `xn--` A-labels), letters, digits and hyphens in labels of 1 to 63
/// characters, at most 253 in all; a leading `.` means the domain and its
/// subdomains. Returns it lower-cased.
fn check_filter_domain(name: &str) -> Result<String, String> {
    let example = "write e.g. \"example.com\" (that domain) or \".example.com\" (it and its \
                   subdomains)";
    let lower = name.to_ascii_lowercase();
    let bare = lower.strip_prefix('.').unwrap_or(&lower);
    if bare.is_empty() {
        return Err(format!("an empty domain: {example}"));
    }
    if let Some(rest) = bare.strip_prefix("*.") {
        return Err(format!(
            "`{name}`: no wildcards; write \".{rest}\" for the domain and its subdomains"
        ));
    }
    if let Some((_, domain)) = bare.rsplit_once('@') {
        return Err(format!(
            "`{name}` is an address; these tables are per domain: write \"{domain}\""
        ));
    }
    if !bare.is_ascii() {
        return Err(format!(
            "`{name}`: write an internationalized domain in its ASCII form \
             (xn--...), as it appears in the SMTP envelope"
        ));
    }
    if bare.ends_with('.') {
        return Err(format!(
            "`{name}`: drop the trailing dot: write \"{}\"",
            bare.trim_end_matches('.')
        ));
    }
    if bare.len() > 253 {
        return Err(format!("`{name}` is longer than 253 characters"));
    }
    for label in bare.split('.') {
        if label.is_empty() {
            return Err(format!("`{name}` has an empty label (a doubled `.`)"));
        }
        if label.len() > 63 {
            return Err(format!("`{name}` has a label longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "`{name}`: a domain has only letters, digits, hyphens and dots; {example}"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "`{name}`: a label cannot start or end with a hyphen"
            ));
        }
    }
    Ok(lower)
}

/// Replacement body text with CRLF line ends, the form a milter sends (TOML
/// multi-line strings give LF).
fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                out.push_str("\r\n");
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
            }
            '\n' => out.push_str("\r\n"),
            c => out.push(c),
        }
    }
    out
}

/// `90s`, `10m`, `1h`, `500ms`: the largest unit that shows `d` exactly.
/// Accepts what the Redis client can open without TLS: `redis://` and
/// `unix://` / `redis+unix://` URLs with a host or path.
fn check_redis_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("`{url}` is not a URL"));
    };
    match scheme {
        "redis" => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            if host.is_empty() || host.starts_with('/') || host.starts_with(':') {
                return Err(format!("`{url}` names no host"));
            }
        }
        "unix" | "redis+unix" => {
            if !rest.starts_with('/') {
                return Err(format!("`{url}`: the socket path must be absolute"));
            }
        }
        "rediss" => return Err("TLS to Redis (`rediss://`) is not built in".into()),
        other => {
            return Err(format!(
                "unknown scheme `{other}` (use redis:// or unix://)"
            ))
        }
    }
    if url.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err("the URL contains a space or a control character".into());
    }
    Ok(())
}

fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    for (unit, scale) in [("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        let rest = ms % scale;
        if rest == 0 {
            return format!("{}{unit}", ms / scale);
        }
    }
    format!("{ms}ms")
}

/// `64KiB`, `2MiB`, `1GiB`, `1500 bytes`: the largest binary unit that shows
/// `n` exactly, else plain bytes.
fn show_bytes(n: u64) -> String {
    if n != 0 {
        for (unit, scale) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            let rest = n % scale;
            if rest == 0 {
                return format!("{}{unit}", n / scale);
            }
        }
    }
    format!("{n} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(severity, key, message)` of every diagnostic of `text`.
    fn diagnostics(text: &str) -> Vec<(Severity, String, String)> {
        let checked = parse(text);
        let failed = checked
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error);
        assert_eq!(
            checked.config.is_none(),
            failed,
            "config withheld on errors"
        );
        checked
            .diagnostics
            .into_iter()
            .map(|d| (d.severity, d.key, d.message))
            .collect()
    }

    fn clean(text: &str) -> FilterConfig {
        let checked = parse(text);
        assert_eq!(checked.diagnostics, [], "{text}");
        checked.config.expect("no errors").filter
    }

    #[test]
    fn filter_defaults() {
        let f = clean("");
        assert_eq!(f.on_limit, FilterAction::Quarantine);
        assert_eq!(f.domains, []);
        let a = &f.attachments;
        assert!(a.enabled && a.double_extension && a.sniff_executables && a.deceptive_names);
        assert_eq!(a.action, FilterAction::Reject);
        assert!(a.blocked_extensions.iter().any(|e| e == "exe"));
        assert!(a
            .blocked_types
            .iter()
            .any(|t| t == "application/x-msdownload"));
        assert_eq!(a.part_bytes_max, 25 << 20);
        assert_eq!(a.zip_depth_max, 4);
        assert!(a.block_encrypted_archives && !a.block_unsupported_archives);
        // The defaults map onto exactly the attachment policy's defaults.
        assert_eq!(
            crate::filter::content::attach_policy(a),
            Some(attach::AttachPolicy::default())
        );
    }

    #[test]
    fn filter_attachments_and_domains_are_read() {
        let f = clean(
            r#"
[filter]
on_limit = "reject"
quarantine_score = false

[filter.attachments]
action = "quarantine"
blocked_extensions = [".EXE", "docm"]
blocked_types = ["Application/X-MSDownload"]
double_extension = false
sniff_executables = false
deceptive_names = false
part_bytes_max = "10MiB"
inspect_zip = false
zip_depth_max = 2
zip_entries_max = 100
zip_uncompressed_bytes_max = "100MiB"
zip_ratio_max = 50
zip_inflate_bytes_max = "1MiB"
block_encrypted_archives = false
block_unsupported_archives = true

[filter.domains."Example.COM"]
required_score = 3.5
reject_score = false
headers = true
attachment_action = "header"

[filter.domains.".isp.example"]
quarantine_score = 7
"#,
        );
        assert_eq!(f.on_limit, FilterAction::Reject);
        assert_eq!(f.quarantine_score, None);
        let a = &f.attachments;
        assert_eq!(a.action, FilterAction::Quarantine);
        assert_eq!(a.blocked_extensions, ["exe", "docm"]);
        assert_eq!(a.blocked_types, ["application/x-msdownload"]);
        assert!(!a.double_extension && !a.sniff_executables && !a.deceptive_names);
        assert_eq!(a.part_bytes_max, 10 << 20);
        assert!(!a.inspect_zip);
        assert_eq!(
            (a.zip_depth_max, a.zip_entries_max, a.zip_ratio_max),
            (2, 100, 50)
        );
        assert_eq!(a.zip_uncompressed_bytes_max, 100 << 20);
        assert_eq!(a.zip_inflate_bytes_max, 1 << 20);
        assert!(!a.block_encrypted_archives && a.block_unsupported_archives);
        let policy = crate::filter::content::attach_policy(a).expect("enabled");
        assert!(policy.decoy_extensions.is_empty() && policy.blocked_sniffed_types.is_empty());
        assert_eq!(f.domains.len(), 2);
        let d = &f.domains[0];
        assert_eq!(d.domain, "example.com");
        assert_eq!(d.origin, r#"filter.domains."Example.COM""#);
        assert_eq!(d.required_score, Some(3.5));
        assert_eq!(d.reject_score, Some(None));
        assert_eq!(d.quarantine_score, None);
        assert_eq!(d.headers, Some(true));
        assert_eq!(d.attachment_action, Some(FilterAction::Header));
        assert_eq!(f.domains[1].domain, ".isp.example");
        assert_eq!(f.domains[1].quarantine_score, Some(Some(7.0)));
        let disabled = clean("[filter.attachments]\nenabled = false\n");
        assert_eq!(
            crate::filter::content::attach_policy(&disabled.attachments),
            None
        );
    }

    #[test]
    fn filter_mistakes_are_all_reported_with_key_paths() {
        let text = r#"
[filter]
on_limit = "hold"

[filter.attachments]
action = "rejct"
blocked_extensions = ["tar.gz", "", 7]
blocked_types = ["application"]
zip_depth_max = 40
scan = true

[filter.domains."exa mple.com"]
required_score = 1
[filter.domains."*.example.org"]
required_score = 1
[filter.domains."user@example.net"]
required_score = 1
[filter.domains."bücher.example"]
required_score = 1
[filter.domains."trailing.example."]
required_score = 1
[filter.domains."ok.example"]
reject_score = "high"
action = "reject"
[filter.domains."OK.example"]
required_score = 2
[filter.domains.dotted.example]
required_score = 2
"#;
        let got = diagnostics(text);
        let keys: Vec<&str> = got.iter().map(|(_, k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "filter.on_limit",
                "filter.attachments.action",
                "filter.attachments.blocked_extensions[0]",
                "filter.attachments.blocked_extensions[1]",
                "filter.attachments.blocked_extensions[2]",
                "filter.attachments.blocked_types[0]",
                "filter.attachments.zip_depth_max",
                "filter.attachments.scan",
                r#"filter.domains."exa mple.com""#,
                r#"filter.domains."*.example.org""#,
                r#"filter.domains."user@example.net""#,
                r#"filter.domains."bücher.example""#,
                r#"filter.domains."trailing.example.""#,
                r#"filter.domains."ok.example".reject_score"#,
                r#"filter.domains."ok.example".action"#,
                r#"filter.domains."OK.example""#,
                "filter.domains.dotted.example",
            ],
            "{got:#?}"
        );
        assert!(got.iter().all(|(s, _, _)| *s == Severity::Error));
        let message = |key: &str| {
            got.iter()
                .find(|(_, k, _)| k == key)
                .map(|(_, _, m)| m.as_str())
                .unwrap_or_default()
        };
        assert!(message("filter.on_limit").contains("accept, header, quarantine"));
        assert!(message("filter.attachments.action").contains("did you mean `reject`?"));
        assert!(message("filter.attachments.blocked_extensions[0]").contains(r#"write "gz""#));
        assert!(message("filter.attachments.zip_depth_max").contains("between 1 and 16"));
        assert!(message(r#"filter.domains."*.example.org""#).contains(r#"".example.org""#));
        assert!(message(r#"filter.domains."user@example.net""#).contains("an address"));
        assert!(message(r#"filter.domains."bücher.example""#).contains("xn--"));
        assert!(message(r#"filter.domains."OK.example""#)
            .contains(r#"same domain as filter.domains."ok.example""#));
        assert!(message("filter.domains.dotted.example").contains("must be quoted"));
        assert!(message(r#"filter.domains."ok.example".reject_score"#)
            .contains("a number, or false for never"));
    }

    #[test]
    fn filter_warnings_do_not_block() {
        let text = r#"
[filter]
quarantine_score = 8
reject_score = 15
headers = false

[filter.attachments]
action = "header"
blocked_extensions = ["exe", "EXE"]

[filter.domains."a.example"]
reject_score = 6
[filter.domains."b.example"]
"#;
        let got = diagnostics(text);
        assert!(
            got.iter().all(|(s, _, _)| *s == Severity::Warning),
            "{got:#?}"
        );
        let keys: Vec<&str> = got.iter().map(|(_, k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "filter.attachments.blocked_extensions[1]",
                "filter.attachments.action",
                r#"filter.domains."a.example".quarantine_score"#,
                r#"filter.domains."a.example""#,
                r#"filter.domains."b.example""#,
                r#"filter.domains."b.example""#,
            ],
            "{got:#?}"
        );
        // An attachment key in [filter] is pointed to its table.
        let got = diagnostics("[filter]\nblocked_extensions = [\"exe\"]\n");
        assert!(
            got[0].2.contains("belongs in `[filter.attachments]`"),
            "{got:?}"
        );
    }

    /// Every key of every section is documented in docs/CONFIG.md, in its
    /// section.
    #[test]
    fn every_key_is_in_config_md() {
        let doc = include_str!("../../../docs/CONFIG.md");
        let section = |heading: &str| -> &str {
            let start = doc
                .find(heading)
                .unwrap_or_else(|| panic!("CONFIG.md has no `{heading}` heading"));
            let rest = &doc[start + heading.len()..];
            &rest[..rest.find("\n## ").unwrap_or(rest.len())]
        };
        let mut tables: Vec<(String, &[&str])> = SECTIONS
            .iter()
            .map(|(name, keys)| (format!("## `[{name}]`"), *keys))
            .collect();
        tables.push(("### `[filter.attachments]`".to_owned(), ATTACH_KEYS));
        tables.push((
            "### `[filter.domains.\"example.com\"]`".to_owned(),
            FILTER_DOMAIN_KEYS,
        ));
        for (heading, keys) in tables {
            let text = section(&heading);
            for key in keys {
                // A key, or a sub-table: `[[policy.sender]]`,
                // `[filter.attachments]`, `[filter.domains."example.com"]`.
                let documented = [format!("`{key}`"), format!(".{key}]"), format!(".{key}.")]
                    .iter()
                    .any(|form| text.contains(form.as_str()));
                assert!(documented, "`{key}` is not documented under {heading}");
            }
        }
    }
}
