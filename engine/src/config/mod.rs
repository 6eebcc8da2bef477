//! The configuration file: one TOML document, checked as a whole.
//!
//! Two layers (ripgrep's low/high args): [`parse()`] reads text into a
//! [`Config`] without touching the file system, and reports **every** problem
//! at once as [`Diagnostic`]s with their key paths (`milter.tcp`,
//! `policy.sender[2].action`), including unknown keys (usually typos). Paths
//! that depend on the machine (state directory, socket paths) stay `None` here
//! and are resolved by the runtime, so `mbctl config verify` runs the exact same
//! checks as `mbd` on any machine.
//!
//! Every key is documented in `docs/CONFIG.md`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub mod defaults;
mod parse;
pub(crate) mod tree;
pub(crate) mod value;
pub use parse::parse;
pub use value::{parse_bytes, parse_duration, ValueError};

/// A checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[daemon]`: process-wide settings.
    pub daemon: DaemonConfig,
    /// `[shards]`: thread-per-core topology.
    pub shards: ShardsConfig,
    /// `[milter]`: the milter listener.
    pub milter: MilterConfig,
    /// `[policy]`: the first verdict path (lists, size limit, header).
    pub policy: PolicyConfig,
    /// `[eval]`: the policy engine (policy tree file, rate-limit table,
    /// policy delegation listeners).
    pub eval: EvalConfig,
    /// `[filter]`: the content scanner (SpamAssassin rules).
    pub filter: FilterConfig,
    /// `[delivery]`: the after-queue content filter (SMTP ingress, spool,
    /// delivery to the relay).
    pub delivery: DeliveryConfig,
}

/// `[delivery]`: the after-queue path (Postfix `content_filter`). Off by
/// default, so a milter-only setup is unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryConfig {
    /// `enabled`: listen for SMTP, keep a spool, deliver to the relay.
    pub enabled: bool,
    /// `listen`: the SMTP ingress addresses (SO_REUSEPORT on every shard).
    pub listen: Vec<SocketAddr>,
    /// `hostname`: our name in the greeting, EHLO and DSNs. `None`: the
    /// machine's host name (resolved by the runtime).
    pub hostname: Option<String>,
    /// `spool_dir`: where each shard keeps its spool (`shard-<n>/`).
    /// `None`: `<state_dir>/spool`.
    pub spool_dir: Option<PathBuf>,
    /// `commit_delay`, `commit_records_max`, `commit_bytes_max`: the group
    /// commit policy.
    pub group_commit: crate::spool::GroupCommit,
    /// `relay`: the next hop every message is delivered to.
    pub relay: SocketAddr,
    /// `connect_timeout`: longest wait for the relay's TCP connection.
    pub connect_timeout: Duration,
    /// `command_timeout`: longest wait for each reply of the relay (and
    /// for each write to it).
    pub command_timeout: Duration,
    /// `idle_timeout`: longest wait for the ingress client's next command
    /// (and for each write to it).
    pub idle_timeout: Duration,
    /// `session_time_max`: an ingress session is closed with 421 after this.
    pub session_time_max: Duration,
    /// `message_bytes_max`: largest message the ingress takes (announced
    /// as SIZE).
    pub message_bytes_max: u64,
    /// `rcpt_count_max`: most recipients per message.
    pub rcpt_count_max: u32,
    /// `errors_max`: client errors before the ingress closes the session.
    pub errors_max: u32,
    /// `connections_max_per_shard`: beyond this, ingress connections are
    /// greeted with 421.
    pub connections_max_per_shard: u32,
    /// `xforward`: announce and accept XFORWARD (loopback clients only).
    pub xforward: bool,
    /// `chunking`: announce and accept BDAT.
    pub chunking: bool,
    /// `smtputf8`: announce and accept SMTPUTF8.
    pub smtputf8: bool,
    /// `scan`: run the `[filter]` content scan on the after-queue path.
    pub scan: bool,
    /// `retry_*` and `queue_lifetime`: the retry schedule.
    pub retry: crate::delivery::RetryPolicy,
    /// `relay_connections_max`, `relay_connections_initial`: delivery
    /// connections per shard.
    pub concurrency: crate::delivery::ConcurrencyLimits,
    /// `relay_idle_time`: how long a delivery connection with nothing to
    /// send stays open for the next message.
    pub relay_idle_time: Duration,
    /// `relay_tls`: STARTTLS to the relay.
    pub relay_tls: RelayTls,
    /// `relay_tls_ca_file`: the PEM bundle `verify` trusts. `None`: the
    /// system trust store (read by the runtime).
    pub relay_tls_ca_file: Option<PathBuf>,
    /// `relay_tls_server_name`: the name (or IP address) the relay's
    /// certificate must be valid for under `verify`.
    pub relay_tls_server_name: Option<String>,
}

/// `delivery.relay_tls`: when STARTTLS is used to the relay, and what the
/// relay's certificate must prove (Postfix `smtp_tls_security_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayTls {
    /// `off`: plaintext, STARTTLS never sent (loopback reinjection).
    #[default]
    Off,
    /// `may`: STARTTLS when the relay offers it, certificate not checked;
    /// plaintext when not offered or when the handshake fails.
    May,
    /// `encrypt`: STARTTLS required, certificate not checked.
    Encrypt,
    /// `verify`: STARTTLS required, the certificate chain verified against
    /// the CA bundle and valid for the server name.
    Verify,
}

impl RelayTls {
    /// The configuration word.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            RelayTls::Off => "off",
            RelayTls::May => "may",
            RelayTls::Encrypt => "encrypt",
            RelayTls::Verify => "verify",
        }
    }

    /// TLS must be negotiated (no plaintext delivery).
    #[must_use]
    pub fn required(self) -> bool {
        matches!(self, RelayTls::Encrypt | RelayTls::Verify)
    }
}

/// `[filter]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterConfig {
    /// `rules`: SpamAssassin `.cf` files or directories of them, read in
    /// order. Empty: no content scan.
    pub rules: Vec<PathBuf>,
    /// `required_score`: the spam threshold; `None`: the rule set's own
    /// (`required_score` in the `.cf` files, 5 by default).
    pub required_score: Option<f32>,
    /// `quarantine_score`: at or above, the message is held (Postfix hold
    /// queue). `None`: never.
    pub quarantine_score: Option<f32>,
    /// `reject_score`: at or above, the message is refused with 550 5.7.1.
    /// `None`: never.
    pub reject_score: Option<f32>,
    /// `headers`: add `X-Spam-Flag`, `X-Spam-Score` and `X-Spam-Status` to
    /// accepted and quarantined mail.
    pub headers: bool,
    /// `scan_bytes_max`: most bytes of a message buffered and scanned; the
    /// head of a longer message is scanned and the rest passes unscanned
    /// (as spamc's size limit, but the head is still judged).
    pub scan_bytes_max: usize,
    /// `on_limit`: what happens to a message that exceeds the MIME parser's
    /// caps (nesting depth, part count, header count or size, decoded
    /// bytes), whose rest was therefore not scanned.
    pub on_limit: FilterAction,
    /// `[filter.attachments]`: the attachment policy and its action.
    pub attachments: AttachmentsConfig,
    /// `[filter.domains."example.com"]`: per-recipient-domain overrides, in
    /// file order.
    pub domains: Vec<FilterDomainConfig>,
}

/// What a content filter rule (attachments, `on_limit`) does to a message.
/// Stricter actions win when several apply: accept < header < quarantine <
/// tempfail < reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterAction {
    /// `accept`: deliver; the symbol is still shown in `X-Spam-Status`.
    Accept,
    /// `header`: deliver, flagged as spam in the `X-Spam-*` headers.
    Header,
    /// `quarantine`: hold (Postfix hold queue).
    Quarantine,
    /// `tempfail`: refuse with 451 4.7.1; the client retries.
    TempFail,
    /// `reject`: refuse with 550 5.7.1, naming the reason.
    Reject,
}

/// `[filter.attachments]`, mapped onto
/// [`AttachPolicy`](crate::filter::attach::AttachPolicy).
#[derive(Debug, Clone, PartialEq)]
pub struct AttachmentsConfig {
    /// `enabled`: check attachments at all.
    pub enabled: bool,
    /// `action`: what a message with a blocked attachment gets.
    pub action: FilterAction,
    /// `blocked_extensions`: lower-case, without the leading dot.
    pub blocked_extensions: Vec<String>,
    /// `blocked_types`: declared `type/subtype`s refused, lower-case.
    pub blocked_types: Vec<String>,
    /// `double_extension`: report `invoice.pdf.exe` as a disguised file
    /// (`ATTACH_DOUBLE_EXT`) rather than a blocked extension.
    pub double_extension: bool,
    /// `sniff_executables`: refuse executable content (Windows, ELF,
    /// Mach-O magic bytes) whatever the name says.
    pub sniff_executables: bool,
    /// `deceptive_names`: refuse names with Unicode direction controls.
    pub deceptive_names: bool,
    /// `part_bytes_max`: largest decoded attachment.
    pub part_bytes_max: usize,
    /// `inspect_zip`: look inside ZIP archives (also OOXML, ODF, JAR).
    pub inspect_zip: bool,
    /// `zip_depth_max`: deepest archive nesting opened.
    pub zip_depth_max: usize,
    /// `zip_entries_max`: most archive entries read per attachment.
    pub zip_entries_max: usize,
    /// `zip_uncompressed_bytes_max`: most uncompressed bytes an attachment's
    /// archives may declare.
    pub zip_uncompressed_bytes_max: u64,
    /// `zip_ratio_max`: highest compression ratio of an entry or archive.
    pub zip_ratio_max: u64,
    /// `zip_inflate_bytes_max`: most bytes inflated per attachment to open
    /// nested archives.
    pub zip_inflate_bytes_max: usize,
    /// `block_encrypted_archives`: refuse encrypted ZIP entries.
    pub block_encrypted_archives: bool,
    /// `block_unsupported_archives`: refuse RAR, 7-Zip, CAB, gzip, bzip2,
    /// xz and ZIP entries that cannot be inflated.
    pub block_unsupported_archives: bool,
}

/// One `[filter.domains."example.com"]` table: settings for recipients in
/// that domain. `None` inherits the global `[filter]` value.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterDomainConfig {
    /// The domain, lower-case; a leading `.` means the domain and every
    /// subdomain.
    pub domain: String,
    /// Key path of the table, e.g. `filter.domains."example.com"`.
    pub origin: String,
    /// `required_score`.
    pub required_score: Option<f32>,
    /// `quarantine_score`; `Some(None)` for `false` (never by score).
    pub quarantine_score: Option<Option<f32>>,
    /// `reject_score`; `Some(None)` for `false` (never by score).
    pub reject_score: Option<Option<f32>>,
    /// `headers`.
    pub headers: Option<bool>,
    /// `attachment_action`.
    pub attachment_action: Option<FilterAction>,
}

/// `[eval]`.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalConfig {
    /// `policy`: the policy tree file (`policy.toml`); list, rule and GeoIP
    /// files it names are relative to its directory. `None`: no tree.
    pub policy: Option<PathBuf>,
    /// `ratelimit_slots`: buckets in the shared rate-limit table (a power of
    /// two). Start-only.
    pub ratelimit_slots: usize,
    /// `policyd_socket`: unix socket for Postfix `check_policy_service`.
    /// `None` with the key absent: `<state_dir>/mb-policy.sock`.
    pub policyd_socket: Option<PathBuf>,
    /// True when `policyd_socket = ""` disabled the unix listener.
    pub policyd_socket_disabled: bool,
    /// `policyd_tcp`: TCP listeners for policy delegation.
    pub policyd_tcp: Vec<SocketAddr>,
    /// `redis`: the Redis server through which cluster nodes share rate-limit
    /// buckets (`redis://host:port/db` or `unix:///path`). `None`: limits are
    /// node-local. Start-only.
    pub redis: Option<String>,
    /// `watch_interval`: how often the control plane checks whether the
    /// GeoIP database changed on disk (and reloads the policy if so).
    pub watch_interval: Duration,
    /// `redis_sync_interval`: how often the control plane reconciles the
    /// buckets with Redis. Start-only.
    pub redis_sync_interval: Duration,
    /// `redis_key_prefix`: prefix of the bucket keys in Redis. Start-only.
    pub redis_key_prefix: String,
    /// `ratelimit_seed`: the bucket hash seed; cluster nodes must share it.
    /// Start-only.
    pub ratelimit_seed: u64,
}

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// `state_dir`: where sockets and state live. `None`: `/run/mailborder` when
    /// writable, else `$XDG_RUNTIME_DIR/mailborder`, else `./state`.
    pub state_dir: Option<PathBuf>,
    /// `control_socket`: the `mbctl` socket. `None`: `<state_dir>/mbd.ctl`.
    pub control_socket: Option<PathBuf>,
    /// `shutdown_grace`: how long SIGTERM waits for conversations to finish.
    pub shutdown_grace: Duration,
}

/// `[shards]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardsConfig {
    /// `count`: number of shards; 0 means one per CPU in `cpus` (or online CPU).
    pub count: u16,
    /// `cpus`: CPUs to pin shards to, in order. Empty: all online CPUs.
    pub cpus: Vec<usize>,
    /// `io_memory`: glommio registered I/O memory per shard, in bytes.
    pub io_memory_bytes: usize,
}

/// `[milter]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MilterConfig {
    /// `socket`: unix socket path. `None` with `socket` absent: the default
    /// `<state_dir>/mb-milter.sock`; the key set to `""` disables the unix socket.
    pub unix_socket: Option<PathBuf>,
    /// True when `socket = ""` disabled the unix listener.
    pub unix_socket_disabled: bool,
    /// `socket_mode`: permission bits of the unix socket (octal string in TOML).
    pub socket_mode: u32,
    /// `socket_group`: group owning the socket (e.g. `postfix`), if any.
    pub socket_group: Option<String>,
    /// `tcp`: optional TCP listeners (SO_REUSEPORT on every shard).
    pub tcp: Vec<SocketAddr>,
    /// `connections_max_per_shard`: beyond this, new connections are answered
    /// with tempfail and closed.
    pub connections_max_per_shard: u32,
    /// `frame_bytes_max`: largest milter frame accepted.
    pub frame_bytes_max: u32,
    /// `idle_timeout`: longest wait for the MTA's next command.
    pub idle_timeout: Duration,
    /// `write_timeout`: longest wait to write a reply.
    pub write_timeout: Duration,
}

/// `[policy]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// `message_bytes_max`: larger messages are rejected (552 5.3.4), at MAIL
    /// when the client declared SIZE=, else at end of message.
    pub message_bytes_max: u64,
    /// `header`: name of the header added to accepted mail (score and shard);
    /// `None` when set to `""`.
    pub header: Option<String>,
    /// `[[policy.sender]]`: rules on the envelope sender, first match wins.
    pub sender: Vec<AddressRule>,
    /// `[[policy.recipient]]`: rules on each recipient, first match wins.
    pub recipient: Vec<AddressRule>,
}

/// One list rule.
#[derive(Debug, Clone, PartialEq)]
pub struct AddressRule {
    /// Key path of this rule, e.g. `policy.sender[2]`, for reasons and traces.
    pub origin: String,
    /// What addresses it matches.
    pub patterns: Vec<AddressPattern>,
    /// What happens on a match.
    pub action: RuleAction,
    /// SMTP reply for reject/tempfail (`550 5.7.1 text`); `None`: our default text.
    pub reply: Option<SmtpReply>,
    /// Replacement body text for `replace-body`.
    pub body: Option<String>,
}

/// An address pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AddressPattern {
    /// `user@example.com` (compared case-insensitively).
    Exact(String),
    /// `@example.com`: that domain only.
    Domain(String),
    /// `@.example.com`: every subdomain of example.com and the domain itself.
    Subdomain(String),
    /// `<>`: the null sender (bounces).
    NullSender,
}

/// What a list rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// `allow`: accept this sender/recipient; later rules at this stage are skipped.
    Allow,
    /// `reject`: 5xx at MAIL/RCPT.
    Reject,
    /// `tempfail`: 4xx at MAIL/RCPT.
    TempFail,
    /// `discard`: accept, then drop at end of message.
    Discard,
    /// `quarantine`: accept, then hold at end of message (Postfix hold queue).
    Quarantine,
    /// `replace-body`: accept, then replace the body with `body`.
    ReplaceBody,
}

/// An SMTP reply given in config: `550 5.7.1 Sender blocked`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReply {
    /// 4xx or 5xx.
    pub code: u16,
    /// The rest of the line, enhanced status code first.
    pub text: String,
}

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error (the file is refused) or warning (accepted, but look).
    pub severity: Severity,
    /// Key path, e.g. `milter.tcp[0]`; empty for syntax errors.
    pub key: String,
    /// 1-based line and column when known (syntax errors).
    pub position: Option<(usize, usize)>,
    /// What is wrong and what to write instead.
    pub message: String,
}

/// Diagnostic severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The file is refused.
    Error,
    /// The file is accepted.
    Warning,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}")?;
        if let Some((line, col)) = self.position {
            write!(f, " at line {line}, column {col}")?;
        }
        if !self.key.is_empty() {
            write!(f, " in `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The result of checking a file: a config when there is no error, and every
/// diagnostic (warnings too) either way.
#[derive(Debug, Clone)]
pub struct Checked {
    /// `Some` when no diagnostic is an error.
    pub config: Option<Config>,
    /// All diagnostics, in file order where known.
    pub diagnostics: Vec<Diagnostic>,
}

impl Default for Config {
    /// The embedded defaults: what `mbd` runs with and no config file.
    fn default() -> Self {
        match parse("").config {
            Some(c) => c,
            None => unreachable!("the empty config is valid"),
        }
    }
}
