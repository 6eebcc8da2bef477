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

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::defaults as d;
use super::tree::{parse_document, Node};
use super::value::closest;
use super::{
    AddressPattern, AddressRule, Checked, Config, DaemonConfig, Diagnostic, EvalConfig,
    FilterConfig, MilterConfig, PolicyConfig, RuleAction, Severity, ShardsConfig, SmtpReply,
};
use crate::limits;

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
];
const SECTIONS: &[(&str, &[&str])] = &[
    ("daemon", DAEMON_KEYS),
    ("shards", SHARDS_KEYS),
    ("milter", MILTER_KEYS),
    ("policy", POLICY_KEYS),
    ("eval", EVAL_KEYS),
    ("filter", FILTER_KEYS),
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
        for (name, node) in root {
            match name.as_str() {
                "daemon" => daemon = Some(self.daemon(node)),
                "shards" => shards = Some(self.shards(node)),
                "milter" => milter = Some(self.milter(node)),
                "policy" => policy = Some(self.policy(node)),
                "eval" => eval = Some(self.eval(node)),
                "filter" => filter = Some(self.filter(node)),
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
        };
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
                "required_score" | "quarantine_score" | "reject_score" => {
                    let score = match value {
                        Node::Float(f) => Some(*f),
                        Node::Integer(n) => Some(*n as f64),
                        other => self.expected(&key, "a number", &format!("{name} = 10.0"), other),
                    };
                    if let Some(v) = score {
                        if !(-1000.0..=1000.0).contains(&v) {
                            self.error(&key, format!("must be between -1000 and 1000, found {v}"));
                        }
                        let v = Some(v as f32);
                        match name.as_str() {
                            "required_score" => out.required_score = v,
                            "quarantine_score" => out.quarantine_score = v,
                            _ => out.reject_score = v,
                        }
                    }
                }
                "scan_bytes_max" => {
                    let example = r#"scan_bytes_max = "2MiB""#;
                    if let Some(n) = self.bytes(&key, value, example, limits::SCAN_BYTES_RANGE) {
                        out.scan_bytes_max = usize::try_from(n).unwrap_or(usize::MAX);
                    }
                }
                "headers" => match value {
                    Node::Boolean(b) => out.headers = *b,
                    other => {
                        self.expected::<()>(&key, "true or false", "headers = true", other);
                    }
                },
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
        out
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
        let items: Vec<(String, &Node)> = match node {
            Node::String(_) => vec![(key.to_owned(), node)],
            Node::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| (format!("{key}[{i}]"), item))
                .collect(),
            other => return self.expected(key, "a string or an array of strings", example, other),
        };
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
                    format!(
                        "{address} is not a loopback address: milter \
                    traffic is unauthenticated and unencrypted, so keep this listener on a \
                    trusted network (firewall it)"
                    ),
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
