//! Defaults and bounds of every config key that is not already an engine-wide
//! limit in [`crate::limits`].
//!
//! Each constant says why it has its value and what it costs, so that
//! `docs/CONFIG.md` and `tuning/mbd.toml` can be checked against one place. The
//! checker ([`parse()`](super::parse())) takes every default from here or from
//! [`crate::limits`]; nothing else in the checker is a magic number.

use std::time::Duration;

use super::FilterAction;
use crate::filter::attach;
use crate::limits;

/// `daemon.shutdown_grace` default: 90 s.
///
/// Why: a conversation in flight usually finishes within seconds, and a slow
/// one is bounded by Postfix's `milter_content_timeout` (300 s) per step; 90 s
/// lets practically every message in progress end cleanly. Cost: a stop or
/// restart can take this long. The systemd unit's `TimeoutStopSec` must be
/// larger (systemd's own default is also 90 s), or systemd kills `mbd` first.
pub const SHUTDOWN_GRACE_DEFAULT: Duration = Duration::from_secs(90);

/// `daemon.shutdown_grace` maximum: 1 h. Longer only delays restarts: Postfix
/// gives up on a silent milter after `milter_content_timeout` (300 s) anyway.
pub const SHUTDOWN_GRACE_MAX: Duration = Duration::from_secs(3600);

/// `shards.count` maximum: 1024 shards. Each shard owns a thread, an io_uring
/// and `shards.io_memory` of locked memory; beyond this the machine runs out
/// of locked memory long before it runs out of cores.
pub const SHARDS_COUNT_MAX: u16 = 1024;

/// Highest CPU index accepted in `shards.cpus`: Linux builds support at most
/// 8192 CPUs (`CONFIG_NR_CPUS`), numbered from 0.
pub const CPU_INDEX_MAX: usize = 8191;

/// `shards.io_memory` default: 2 MiB per shard.
///
/// Why: glommio's own default for registered I/O buffers; enough for the
/// socket reads and spool writes of thousands of idle milter connections.
/// Cost: locked memory (counted against `ulimit -l` / `LimitMEMLOCK`) per shard.
pub const IO_MEMORY_BYTES_DEFAULT: usize = 2 * 1024 * 1024;

/// `shards.io_memory` minimum: 64 KiB, one full milter body chunk.
pub const IO_MEMORY_BYTES_MIN: usize = 64 * 1024;

/// `shards.io_memory` maximum: 1 GiB per shard; more is locked memory the
/// kernel cannot reclaim, for no measured gain.
pub const IO_MEMORY_BYTES_MAX: usize = 1024 * 1024 * 1024;

/// `milter.socket_mode` default: `0770`, owner and group (`socket_group`,
/// usually `postfix`) may connect, others may not. Cost: none; `0777` would let
/// any local user talk milter to us.
pub const SOCKET_MODE_DEFAULT: u32 = 0o770;

/// `milter.socket_mode` maximum: the nine permission bits. Set-id and sticky
/// bits mean nothing on a socket.
pub const SOCKET_MODE_MAX: u32 = 0o777;

/// Longest unix socket path in bytes: `sun_path` is 108 bytes on Linux,
/// including the terminating NUL.
pub const UNIX_SOCKET_PATH_BYTES_MAX: usize = 107;

/// `milter.connections_max_per_shard` maximum. Each connection holds a
/// conversation and a socket buffer; a million per shard is already beyond any
/// file descriptor limit worth configuring.
pub const CONNECTIONS_MAX_PER_SHARD_MAX: u32 = 1_000_000;

/// `milter.frame_bytes_max` minimum: 65537 bytes, strictly more than the
/// largest frame Postfix sends without MDS negotiation (a 65535-byte body chunk
/// plus the command byte), the same relation `limits` asserts for the default.
pub const MILTER_FRAME_BYTES_MIN: u32 = limits::MILTER_BODY_CHUNK_BYTES_MAX as u32 + 2;

/// Shortest `milter.idle_timeout` and `milter.write_timeout`: 1 s. Anything
/// shorter cuts healthy connections on a briefly busy machine.
pub const MILTER_TIMEOUT_MIN: Duration = Duration::from_secs(1);

/// `milter.idle_timeout` default: 10 min.
///
/// Why: between two commands the MTA is waiting for its SMTP client, and
/// Postfix allows that client `smtpd_timeout` (300 s) per command, so a slow but
/// legitimate session can keep a milter connection silent for several minutes.
/// Twice that avoids cutting such sessions. Cost: a dead connection holds its
/// slot (and a bit of memory) this long.
pub const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(600);

/// `milter.idle_timeout` maximum: 1 h.
pub const IDLE_TIMEOUT_MAX: Duration = Duration::from_secs(3600);

/// `milter.write_timeout` default: 30 s.
///
/// Why: Postfix reads our reply within `milter_command_timeout` (30 s) or gives
/// up on us; waiting longer to write is pointless. Cost: a stuck MTA holds the
/// connection this long.
pub const WRITE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// `milter.write_timeout` maximum: 10 min, twice Postfix's
/// `milter_content_timeout`.
pub const WRITE_TIMEOUT_MAX: Duration = Duration::from_secs(600);

/// `policy.message_bytes_max` minimum: 1 KiB. Smaller would reject even a bare
/// bounce.
pub const MESSAGE_BYTES_MIN: u64 = 1024;

/// `policy.header` default: `X-Mailborder`. Cost: one header line per accepted
/// message.
pub const HEADER_DEFAULT: &str = "X-Mailborder";

const _: () = assert!(SHUTDOWN_GRACE_DEFAULT.as_secs() <= SHUTDOWN_GRACE_MAX.as_secs());
const _: () = assert!(IO_MEMORY_BYTES_MIN <= IO_MEMORY_BYTES_DEFAULT);
const _: () = assert!(IO_MEMORY_BYTES_DEFAULT <= IO_MEMORY_BYTES_MAX);
const _: () = assert!(SOCKET_MODE_DEFAULT <= SOCKET_MODE_MAX);
const _: () = assert!(limits::CONNECTIONS_PER_SHARD_DEFAULT >= 1);
const _: () = assert!(limits::CONNECTIONS_PER_SHARD_DEFAULT <= CONNECTIONS_MAX_PER_SHARD_MAX);
const _: () = assert!(MILTER_FRAME_BYTES_MIN <= limits::MILTER_FRAME_BYTES_DEFAULT);
const _: () = assert!(MILTER_TIMEOUT_MIN.as_secs() <= IDLE_TIMEOUT_DEFAULT.as_secs());
const _: () = assert!(IDLE_TIMEOUT_DEFAULT.as_secs() <= IDLE_TIMEOUT_MAX.as_secs());
const _: () = assert!(MILTER_TIMEOUT_MIN.as_secs() <= WRITE_TIMEOUT_DEFAULT.as_secs());
const _: () = assert!(WRITE_TIMEOUT_DEFAULT.as_secs() <= WRITE_TIMEOUT_MAX.as_secs());
const _: () = assert!(MESSAGE_BYTES_MIN <= limits::MESSAGE_BYTES_DEFAULT);

/// `eval.ratelimit_slots`: 262,144 buckets (16 bytes each: 4 MiB; 32 bytes with
/// `redis`), enough for about 100,000 live keys at the table's probe length.
pub const RATELIMIT_SLOTS_DEFAULT: usize = 1 << 18;

/// `eval.redis_sync_interval`: one second.
pub const REDIS_SYNC_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);

/// Shortest `eval.redis_sync_interval`.
pub const REDIS_SYNC_INTERVAL_MIN: Duration = Duration::from_millis(100);

/// Longest `eval.redis_sync_interval`.
pub const REDIS_SYNC_INTERVAL_MAX: Duration = Duration::from_secs(60);

/// `eval.redis_key_prefix`.
pub const REDIS_KEY_PREFIX_DEFAULT: &str = "mb:rl:";

/// Longest `eval.redis_key_prefix`, in bytes.
pub const REDIS_KEY_PREFIX_BYTES_MAX: usize = 64;

/// `eval.ratelimit_seed`: a fixed constant, so that a single node needs no
/// setting and nodes left at the default agree. Public, so set a secret one
/// where senders could craft colliding keys.
pub const RATELIMIT_SEED_DEFAULT: u64 = 0;

/// Smallest `eval.ratelimit_slots`.
pub const RATELIMIT_SLOTS_MIN: usize = 1 << 10;

/// Largest `eval.ratelimit_slots` (1 GiB of buckets).
pub const RATELIMIT_SLOTS_MAX: usize = 1 << 26;

/// `eval.watch_interval`: 30 s between checks of the GeoIP database's
/// modification time (one `stat`); `geoipupdate` runs weekly or daily.
pub const WATCH_INTERVAL_DEFAULT: Duration = Duration::from_secs(30);

/// Smallest `eval.watch_interval`.
pub const WATCH_INTERVAL_MIN: Duration = Duration::from_secs(1);

/// Largest `eval.watch_interval` (the control plane ticks every 30 s anyway).
pub const WATCH_INTERVAL_MAX: Duration = Duration::from_secs(30);

/// `filter.on_limit` default: quarantine.
///
/// Why: a message past the MIME parser's caps (more than 256 parts, nesting
/// deeper than 8, 1000 headers, a 64 KiB header) was not scanned in full,
/// and no ordinary mail looks like that; passing it would let anyone hide
/// content behind the caps, while rejecting it would bounce the odd
/// legitimate monster (a long mailing-list digest). Holding it lets a person
/// decide. Cost: the hold queue needs someone to review it.
pub const ON_LIMIT_DEFAULT: FilterAction = FilterAction::Quarantine;

/// `filter.attachments.action` default: reject.
///
/// Why: the default lists name executables, scripts, installers, shortcuts
/// and disk images, which no ISP customer should receive by mail; a 550
/// tells the sender at once (nothing is held, nothing bounces later), the
/// way the large mail providers refuse them. Cost: none for the recipient;
/// a sender with a legitimate need must use another channel.
pub const ATTACHMENT_ACTION_DEFAULT: FilterAction = FilterAction::Reject;

/// `filter.attachments.part_bytes_max` range: 1 KiB to 1 GiB.
pub const ATTACH_PART_BYTES_RANGE: (u64, u64) = (1024, 1 << 30);

/// `filter.attachments.zip_depth_max` range: 1 (the attached archive only)
/// to the walk's hard ceiling.
pub const ZIP_DEPTH_RANGE: (i64, i64) = (1, attach::ZIP_DEPTH_HARD_MAX as i64);

/// `filter.attachments.zip_entries_max` range: 1 to a million entries.
pub const ZIP_ENTRIES_RANGE: (i64, i64) = (1, 1_000_000);

/// `filter.attachments.zip_ratio_max` range: 2:1 (anything compressed is a
/// bomb) to 100000:1 (deflate cannot reach it: off).
pub const ZIP_RATIO_RANGE: (i64, i64) = (2, 100_000);

/// `filter.attachments.zip_uncompressed_bytes_max` range: 1 MiB to 1 TiB
/// (declared sizes only; nothing is inflated to check it).
pub const ZIP_UNCOMPRESSED_BYTES_RANGE: (u64, u64) = (1 << 20, 1 << 40);

/// `filter.attachments.zip_inflate_bytes_max` range: 64 KiB to 256 MiB. It
/// is memory a shard may allocate for one message.
pub const ZIP_INFLATE_BYTES_RANGE: (u64, u64) = (64 * 1024, 256 << 20);

/// Most `[filter.domains]` tables: each is one small profile and two hash
/// entries; more is a mistake (a generated file gone wrong).
pub const FILTER_DOMAINS_MAX: usize = 100_000;

const _: () = assert!(ATTACH_PART_BYTES_RANGE.0 <= attach::PART_BYTES_MAX_DEFAULT as u64);
const _: () = assert!(attach::PART_BYTES_MAX_DEFAULT as u64 <= ATTACH_PART_BYTES_RANGE.1);
const _: () = assert!(ZIP_DEPTH_RANGE.0 <= attach::ZIP_DEPTH_MAX_DEFAULT as i64);
const _: () = assert!(attach::ZIP_DEPTH_MAX_DEFAULT as i64 <= ZIP_DEPTH_RANGE.1);
const _: () = assert!(ZIP_ENTRIES_RANGE.0 <= attach::ZIP_ENTRIES_MAX_DEFAULT as i64);
const _: () = assert!(attach::ZIP_ENTRIES_MAX_DEFAULT as i64 <= ZIP_ENTRIES_RANGE.1);
const _: () = assert!(ZIP_RATIO_RANGE.0 <= attach::ZIP_RATIO_MAX_DEFAULT as i64);
const _: () = assert!(attach::ZIP_RATIO_MAX_DEFAULT as i64 <= ZIP_RATIO_RANGE.1);
const _: () = assert!(ZIP_UNCOMPRESSED_BYTES_RANGE.0 <= attach::ZIP_UNCOMPRESSED_BYTES_MAX_DEFAULT);
const _: () = assert!(attach::ZIP_UNCOMPRESSED_BYTES_MAX_DEFAULT <= ZIP_UNCOMPRESSED_BYTES_RANGE.1);
const _: () = assert!(ZIP_INFLATE_BYTES_RANGE.0 <= attach::ZIP_INFLATE_BYTES_MAX_DEFAULT as u64);
const _: () = assert!(attach::ZIP_INFLATE_BYTES_MAX_DEFAULT as u64 <= ZIP_INFLATE_BYTES_RANGE.1);

// ----- [delivery]: the after-queue path -----

/// `delivery.listen` default: `127.0.0.1:10024`, the port Postfix's
/// documentation (FILTER_README) and amavis use for an after-queue content
/// filter. Loopback only: the ingress trusts its client (XFORWARD).
pub const DELIVERY_LISTEN_DEFAULT: std::net::SocketAddr = std::net::SocketAddr::V4(
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 10024),
);

/// `delivery.relay` default: `127.0.0.1:10025`, the reinjection smtpd of
/// Postfix's FILTER_README (a master.cf entry with `content_filter=` empty).
pub const DELIVERY_RELAY_DEFAULT: std::net::SocketAddr = std::net::SocketAddr::V4(
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 10025),
);

/// `delivery.spool_dir` under the state directory when the key is absent.
pub const SPOOL_SUBDIR: &str = "spool";

/// `delivery.commit_delay` maximum: 1 s. A 250 waits for the sync, so a
/// longer delay only holds Postfix's smtp client (and its connection) longer.
pub const COMMIT_DELAY_MAX: Duration = Duration::from_secs(1);

/// `delivery.commit_records_max` range: 1 (a sync per record) to 65,536.
pub const COMMIT_RECORDS_RANGE: (i64, i64) = (1, 65_536);

/// `delivery.commit_bytes_max` range: 4 KiB (one block) to 1 GiB.
pub const COMMIT_BYTES_RANGE: (u64, u64) = (4096, 1 << 30);

/// Shortest `delivery.connect_timeout` and `delivery.command_timeout`:
/// 100 ms (tests; a loopback relay answers in microseconds).
pub const DELIVERY_TIMEOUT_MIN: Duration = Duration::from_millis(100);

/// `delivery.connect_timeout` default: 30 s, Postfix's `smtp_connect_timeout`.
/// Cost: a relay that drops SYNs holds a delivery slot this long per try.
pub const DELIVERY_CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// `delivery.connect_timeout` maximum: 5 min.
pub const DELIVERY_CONNECT_TIMEOUT_MAX: Duration = Duration::from_secs(300);

/// `delivery.command_timeout` default: 10 min, Postfix's
/// `smtp_data_done_timeout` (the longest of its per-reply timeouts: a
/// reinjection smtpd runs its own milters before it answers the final dot).
/// Cost: a relay that stops answering holds a slot this long.
pub const DELIVERY_COMMAND_TIMEOUT_DEFAULT: Duration = Duration::from_secs(600);

/// `delivery.relay_idle_time` default: 2 s, Postfix's
/// `smtp_connection_cache_time_limit`. A delivery connection with nothing
/// to send waits this long for the next message before QUIT, so a trickle
/// of mail (one message every second or so per shard) reuses one
/// connection instead of opening one per message.
/// Cost: one idle connection per shard at the relay for this long.
pub const RELAY_IDLE_TIME_DEFAULT: Duration = Duration::from_secs(2);

/// `delivery.relay_idle_time` range: 0 (QUIT at once) to 5 min (Postfix's
/// smtpd closes an idle client after `smtpd_timeout`, 300 s).
pub const RELAY_IDLE_TIME_RANGE: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(300));

/// `delivery.command_timeout` maximum: 1 h.
pub const DELIVERY_COMMAND_TIMEOUT_MAX: Duration = Duration::from_secs(3600);

/// `delivery.idle_timeout` default: 5 min, Postfix's `smtpd_timeout`.
/// Postfix's smtp client keeps a content-filter connection open between
/// messages for `smtp_connection_cache_time_limit` (2 s) only.
pub const INGRESS_IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(300);

/// `delivery.idle_timeout` range: 1 s to 1 h.
pub const INGRESS_IDLE_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(3600));

/// `delivery.session_time_max` range: 1 s to 24 h.
pub const SESSION_TIME_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(24 * 3600));

/// `delivery.errors_max` range.
pub const INGRESS_ERRORS_RANGE: (i64, i64) = (1, 1000);

/// `delivery.connections_max_per_shard` default: 100, the `maxproc` of
/// Postfix's default smtp transport (its content filter opens at most that
/// many connections). Each may hold one message in memory
/// (`message_bytes_max`) until it is spooled.
pub const INGRESS_CONNECTIONS_PER_SHARD_DEFAULT: u32 = 100;

/// `delivery.retry_initial` and `retry_interval_max` range: 1 s to 7 days.
pub const RETRY_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(7 * 24 * 3600));

/// `delivery.retry_factor` range.
pub const RETRY_FACTOR_RANGE: (i64, i64) = (1, 16);

/// `delivery.queue_lifetime` range: 1 s to 100 days (Postfix's own ceiling
/// for `maximal_queue_lifetime`).
pub const QUEUE_LIFETIME_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(100 * 24 * 3600));

/// `delivery.relay_connections_max` and `relay_connections_initial` range.
pub const RELAY_CONNECTIONS_RANGE: (i64, i64) = (1, 1000);

const _: () =
    assert!(INGRESS_IDLE_TIMEOUT_RANGE.0.as_secs() <= INGRESS_IDLE_TIMEOUT_DEFAULT.as_secs());
const _: () =
    assert!(INGRESS_IDLE_TIMEOUT_DEFAULT.as_secs() <= INGRESS_IDLE_TIMEOUT_RANGE.1.as_secs());
const _: () =
    assert!(DELIVERY_CONNECT_TIMEOUT_DEFAULT.as_secs() <= DELIVERY_CONNECT_TIMEOUT_MAX.as_secs());
const _: () =
    assert!(DELIVERY_COMMAND_TIMEOUT_DEFAULT.as_secs() <= DELIVERY_COMMAND_TIMEOUT_MAX.as_secs());
const _: () =
    assert!(crate::smtp::SESSION_TIME_DEFAULT.as_secs() <= SESSION_TIME_RANGE.1.as_secs());
const _: () =
    assert!(crate::spool::commit::GROUP_COMMIT_RECORDS_DEFAULT as i64 <= COMMIT_RECORDS_RANGE.1);
const _: () = assert!(crate::spool::commit::GROUP_COMMIT_BYTES_DEFAULT <= COMMIT_BYTES_RANGE.1);
const _: () = assert!(
    crate::delivery::retry::QUEUE_LIFETIME_DEFAULT.as_secs() <= QUEUE_LIFETIME_RANGE.1.as_secs()
);
