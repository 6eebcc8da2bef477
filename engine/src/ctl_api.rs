//! `mbctl` ⇄ `mbd` control protocol: one JSON object per line over the control
//! unix socket (`<state_dir>/mbd.ctl`), one request then one response per line,
//! any number of requests per connection. Lines longer than
//! [`crate::limits::CTL_LINE_BYTES_MAX`] are refused.
//!
//! ```text
//! → {"cmd":"status"}\n
//! ← {"ok":{"status":{...}}}\n        or   {"error":"..."}\n
//! ```

use serde::{Deserialize, Serialize};

/// A request from `mbctl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Process-wide status.
    Status,
    /// Per-shard status.
    Shards,
    /// Re-read the config file and swap it into every shard (like SIGHUP).
    Reload,
    /// Re-read the policy: `[policy]` of the config file, the eval policy
    /// tree with its list, rule and GeoIP files. Same as [`Request::Reload`]
    /// today, kept separate so scripts say what they mean.
    PolicyReload,
    /// Decide an envelope with the running policy and say why, without
    /// counting it against any rate limit.
    PolicyTest(PolicyQuery),
    /// The rate-limit buckets of a key (`192.0.2.0/24`,
    /// `sender=a@example.com`, or `LIMIT:KEY`).
    RatelimitShow {
        /// The key as `mbctl ratelimit show` was given it.
        key: String,
    },
    /// The after-queue spool: messages of every shard, oldest first
    /// (`mbctl queue list`, `mbctl quarantine list`).
    QueueList {
        /// Only messages held in quarantine.
        quarantined: bool,
        /// Most entries returned (all shards together).
        limit: u32,
    },
    /// One message: envelope, state, header (`mbctl queue show`).
    QueueShow {
        /// Its queue id.
        id: String,
        /// Refuse unless it is held in quarantine.
        quarantined: bool,
    },
    /// Make a deferred (or waiting) message due now (`mbctl queue retry`).
    QueueRetry {
        /// Its queue id.
        id: String,
    },
    /// Remove a message from the spool without delivering it (`mbctl queue
    /// delete`, `mbctl quarantine delete`).
    QueueDelete {
        /// Its queue id.
        id: String,
        /// Refuse unless it is held in quarantine.
        quarantined: bool,
    },
    /// Make every deferred message due now (`mbctl queue flush`).
    QueueFlush,
    /// Deliver a quarantined message (`mbctl quarantine release`).
    QuarantineRelease {
        /// Its queue id.
        id: String,
    },
}

/// One spooled message in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueEntry {
    /// Queue id (as in `250 2.0.0 Ok: queued as <id>`).
    pub id: String,
    /// The shard whose spool holds it.
    pub shard: u16,
    /// `unscanned`, `active` (due or being delivered), `deferred` or
    /// `quarantined`.
    pub phase: String,
    /// When it arrived (Unix ms).
    pub received_unix_ms: u64,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Next attempt (Unix ms), when deferred.
    pub next_try_unix_ms: Option<u64>,
    /// Recipients in the envelope.
    pub recipients: u32,
    /// Of which not yet delivered or bounced.
    pub pending: u32,
    /// Bytes of its spool record (envelope and content).
    pub bytes: u64,
    /// The scan: action (`pass`, `spam`, `quarantine`, `reject`,
    /// `tempfail`) and score, once scanned.
    pub scan: Option<(String, f32)>,
    /// Why the last attempt was deferred (the relay's reply, a connection or
    /// TLS error), when known.
    #[serde(default)]
    pub last_reason: Option<String>,
}

/// One spooled message in detail (`mbctl queue show`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueMessage {
    /// What a listing shows.
    pub entry: QueueEntry,
    /// Envelope sender (`""`: the null sender).
    pub sender: String,
    /// Recipients with their state (`pending`, `delivered`, `failed`).
    pub recipients: Vec<(String, String)>,
    /// XFORWARD and ingress facts.
    pub facts: Vec<(String, String)>,
    /// Symbols of the scan, comma separated.
    pub symbols: String,
    /// The message's header block (at most 64 KiB).
    pub header: String,
    /// Content bytes.
    pub size: u64,
}

/// An envelope to test (`mbctl policy test`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyQuery {
    /// Envelope sender (`""`: the null sender).
    pub from: String,
    /// Recipients, decided in order as one transaction.
    pub rcpt: Vec<String>,
    /// Client IP address.
    pub ip: Option<String>,
    /// Client host name.
    pub client_name: String,
    /// HELO name.
    pub helo: String,
    /// SASL login.
    pub sasl_user: String,
    /// TLS session.
    pub tls: bool,
    /// Unix time to decide at (default: now).
    pub unix_time: Option<u64>,
}

/// The decision for one recipient of a [`PolicyQuery`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyTrace {
    /// The recipient.
    pub recipient: String,
    /// `continue`, `allow`, `reject`, `tempfail`, `discard`, `quarantine`,
    /// `replace-body`.
    pub decision: String,
    /// The SMTP reply for reject/tempfail.
    pub reply: Option<String>,
    /// Every reason, in the order the checks ran: (rule, detail).
    pub reasons: Vec<(String, String)>,
}

/// One rate-limit bucket (`mbctl ratelimit show`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRow {
    /// Limit name.
    pub limit: String,
    /// Rendered key.
    pub key: String,
    /// Window, e.g. `100/1m`.
    pub window: String,
    /// Requests left before the limit answers 4xx.
    pub remaining: u32,
    /// Milliseconds until the next request is admitted (0: now).
    pub retry_after_ms: u64,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Success.
    Ok(Answer),
    /// The request failed; the text says why.
    Error(String),
}

/// Successful answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// For [`Request::Status`].
    Status(DaemonStatus),
    /// For [`Request::Shards`].
    Shards(Vec<ShardStatus>),
    /// For [`Request::Reload`]: the new config generation, and warnings.
    Reloaded {
        /// Config generation now active (1 at start, +1 per reload).
        generation: u64,
        /// Diagnostics of severity warning.
        warnings: Vec<String>,
    },
    /// For [`Request::PolicyTest`]: one trace per recipient.
    PolicyTest(Vec<PolicyTrace>),
    /// For [`Request::RatelimitShow`].
    Ratelimit(Vec<BucketRow>),
    /// For [`Request::QueueList`].
    Queue {
        /// Entries, oldest first, at most the limit asked for.
        entries: Vec<QueueEntry>,
        /// Messages that matched, all shards (may exceed `entries`).
        total: u64,
    },
    /// For [`Request::QueueShow`].
    QueueMessage(Box<QueueMessage>),
    /// For [`Request::QueueRetry`], [`Request::QueueDelete`],
    /// [`Request::QueueFlush`], [`Request::QuarantineRelease`]: how many
    /// messages changed.
    QueueChanged {
        /// Messages changed.
        count: u64,
    },
}

/// Process-wide status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// `mbd` version.
    pub version: String,
    /// Process id.
    pub pid: u32,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Config file in use (`None`: embedded defaults).
    pub config_path: Option<String>,
    /// Config generation (1 at start, +1 per successful reload).
    pub config_generation: u64,
    /// The last reload error, if the last reload failed.
    pub last_reload_error: Option<String>,
    /// Listeners, as `unix:/path` or `inet:host:port`.
    pub listeners: Vec<String>,
    /// Control socket path.
    pub control_socket: String,
    /// Number of shards.
    pub shards: u16,
    /// Open milter connections, all shards.
    pub connections: u64,
    /// Messages finished, all shards.
    pub messages: u64,
    /// Resident set size of the process in bytes (from /proc).
    pub rss_bytes: u64,
    /// True while draining after SIGTERM.
    pub draining: bool,
    /// Cluster-wide rate limits through Redis (`None`: `[eval] redis` unset,
    /// or an mbd that predates it). Boxed: most daemons have none.
    #[serde(default)]
    pub cluster: Option<Box<ClusterStatus>>,
}

/// The control plane's reconciliation of rate-limit buckets with Redis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterStatus {
    /// The Redis URL, password hidden.
    pub redis: String,
    /// Whether the last attempt to reach Redis succeeded.
    pub connected: bool,
    /// `redis_sync_interval` in milliseconds.
    pub interval_ms: u64,
    /// Successful syncs (a ping when nothing changed).
    pub syncs: u64,
    /// Buckets sent, summed over syncs.
    pub buckets_sent: u64,
    /// Locally admitted events sent.
    pub events_sent: u64,
    /// Local buckets raised by a merged TAT (other nodes had spent from them).
    pub merges: u64,
    /// Merged TATs whose bucket had left the local table meanwhile.
    pub merges_absent: u64,
    /// Locally admitted events not sent because Redis was unreachable.
    pub events_dropped: u64,
    /// Failed connects and syncs.
    pub errors: u64,
    /// The last error.
    pub last_error: Option<String>,
    /// When it happened (Unix ms).
    pub last_error_unix_ms: Option<u64>,
    /// When the last sync that sent buckets finished (Unix ms).
    pub last_sync_unix_ms: Option<u64>,
}

/// Verdict counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictCounts {
    /// Accepted (with or without added headers).
    pub accept: u64,
    /// Rejected with 5xx at any stage.
    pub reject: u64,
    /// Tempfailed with 4xx at any stage.
    pub tempfail: u64,
    /// Discarded.
    pub discard: u64,
    /// Quarantined (held).
    pub quarantine: u64,
}

impl VerdictCounts {
    /// Counts one verdict of `kind`.
    pub fn record(&mut self, kind: crate::verdict::VerdictKind) {
        use crate::verdict::VerdictKind;
        match kind {
            VerdictKind::Accept => self.accept += 1,
            VerdictKind::Reject => self.reject += 1,
            VerdictKind::TempFail => self.tempfail += 1,
            VerdictKind::Discard => self.discard += 1,
            VerdictKind::Quarantine => self.quarantine += 1,
        }
    }
}

impl std::ops::AddAssign for VerdictCounts {
    fn add_assign(&mut self, other: Self) {
        self.accept += other.accept;
        self.reject += other.reject;
        self.tempfail += other.tempfail;
        self.discard += other.discard;
        self.quarantine += other.quarantine;
    }
}

/// One shard's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardStatus {
    /// Shard index.
    pub shard: u16,
    /// CPU the shard is pinned to, if pinned.
    pub cpu: Option<usize>,
    /// Open milter connections.
    pub connections: u32,
    /// Connection ceiling.
    pub connections_max: u32,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Connections refused (over the ceiling or while draining).
    pub connections_refused: u64,
    /// Protocol errors (malformed frames, out-of-order commands, timeouts).
    pub protocol_errors: u64,
    /// Messages finished (verdict given or aborted).
    pub messages: u64,
    /// Policy delegation requests answered.
    #[serde(default)]
    pub policy_requests: u64,
    /// Verdicts given.
    pub verdicts: VerdictCounts,
    /// Messages the content filter scanned on this shard (milter and
    /// after-queue paths).
    #[serde(default)]
    pub scanned: u64,
    /// Batches they were scanned in: `scanned / scan_batches` is the mean
    /// batch, which grows with the load.
    #[serde(default)]
    pub scan_batches: u64,
    /// Reply latency (command received → reply written), 50th percentile, µs.
    pub latency_p50_us: u64,
    /// 99th percentile, µs.
    pub latency_p99_us: u64,
    /// 99.9th percentile, µs.
    pub latency_p999_us: u64,
    /// Bytes held in connection buffers on this shard.
    pub buffer_bytes: u64,
    /// Config generation this shard runs.
    pub config_generation: u64,
    /// The after-queue path (`None`: `[delivery]` is off).
    #[serde(default)]
    pub queue: Option<QueueStatus>,
}

/// One shard's spool and delivery figures (`mbctl shard status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueStatus {
    /// Messages in the spool (every live phase).
    pub messages: u64,
    /// Waiting for the scan.
    pub unscanned: u64,
    /// Scanned and due (or being delivered).
    pub active: u64,
    /// Waiting for a retry.
    pub deferred: u64,
    /// Held in quarantine.
    pub quarantined: u64,
    /// Segment files.
    pub segments: u64,
    /// Group commits (`fdatasync`) since start.
    pub syncs: u64,
    /// The spool cannot be written (new messages get 451).
    pub broken: bool,
    /// Open ingress connections.
    pub ingress_connections: u32,
    /// Open delivery connections.
    pub delivery_connections: u32,
    /// Messages spooled and answered 250 since start.
    pub received: u64,
    /// Messages answered 451 because the spool failed.
    pub spool_failures: u64,
    /// Recipients delivered since start.
    pub delivered: u64,
    /// Recipients bounced since start.
    pub bounced: u64,
    /// Recipient deferrals since start (one per failed attempt).
    pub deferrals: u64,
    /// DSNs queued since start.
    pub dsns: u64,
    /// Connections opened to the relay since start.
    pub relay_connections: u64,
    /// Of which failed.
    pub relay_failures: u64,
}

/// Encodes a value as one line (JSON + `\n`).
///
/// # Errors
/// Only if serialisation fails, which for these types means a bug.
pub fn to_line<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    Ok(line)
}

/// Decodes one line (with or without its `\n`).
///
/// # Errors
/// When the line is not the expected JSON.
pub fn from_line<'a, T: Deserialize<'a>>(line: &'a [u8]) -> Result<T, serde_json::Error> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    serde_json::from_slice(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_as_one_line() {
        for req in [Request::Status, Request::Shards, Request::Reload] {
            let line = to_line(&req).unwrap();
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(from_line::<Request>(&line).unwrap(), req);
        }
        assert_eq!(
            to_line(&Request::Status).unwrap(),
            b"{\"cmd\":\"status\"}\n"
        );
    }

    #[test]
    fn unknown_request_is_an_error() {
        assert!(from_line::<Request>(b"{\"cmd\":\"format_disk\"}").is_err());
    }
}
