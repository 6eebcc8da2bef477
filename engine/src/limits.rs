//! Every bound of the engine in one place, with the relations between them
//! checked at compile time. Config values default to these and may only lower
//! the hard maxima.

/// Largest body chunk Postfix sends (and that we send in REPLBODY): 64 KiB - 1.
pub const MILTER_BODY_CHUNK_BYTES_MAX: usize = 65_535;

/// Default maximum milter frame length (command byte + payload). Postfix never
/// sends more than a body chunk plus the command byte unless MDS_256K/MDS_1M is
/// negotiated, which we never do; the headroom covers long header values.
pub const MILTER_FRAME_BYTES_DEFAULT: u32 = 256 * 1024;

/// Hard ceiling for `milter.frame_bytes_max`.
pub const MILTER_FRAME_BYTES_CEILING: u32 = 16 * 1024 * 1024;

/// Most macro bytes remembered per stage; longer macro packets are truncated
/// for lookup purposes (never an error: the MTA decides what it sends).
pub const MILTER_MACRO_BYTES_MAX: usize = 16 * 1024;

/// Most recipients remembered per message (Postfix's own default
/// `smtpd_recipient_limit` is 1000).
pub const RCPT_COUNT_MAX: usize = 10_000;

/// Default maximum message size (body bytes as streamed by the MTA): 50 MiB,
/// Postfix's own `message_size_limit` default is 10 MiB.
pub const MESSAGE_BYTES_DEFAULT: u64 = 50 * 1024 * 1024;

/// Default for `filter.scan_bytes_max`: the most bytes of one message a
/// conversation buffers for the content scan. 2 MiB covers nearly all mail
/// (spamc's own default is 500 KB) while 4,096 connections in DATA on one
/// shard stay under 8 GiB in the worst case.
pub const SCAN_BYTES_DEFAULT: usize = 2 * 1024 * 1024;

/// Accepted range of `filter.scan_bytes_max`: 64 KiB to 64 MiB.
pub const SCAN_BYTES_RANGE: (u64, u64) = (64 * 1024, 64 * 1024 * 1024);

/// Default connection ceiling per shard. Postfix opens one milter connection per
/// SMTP session, and its default `default_process_limit` is 100 per service.
pub const CONNECTIONS_PER_SHARD_DEFAULT: u32 = 4_096;

/// Most bytes in one `mbctl` request or response line.
pub const CTL_LINE_BYTES_MAX: usize = 1024 * 1024;

const _: () = assert!(MILTER_FRAME_BYTES_DEFAULT as usize > MILTER_BODY_CHUNK_BYTES_MAX + 1);
const _: () = assert!(MILTER_FRAME_BYTES_DEFAULT <= MILTER_FRAME_BYTES_CEILING);
const _: () = assert!(CTL_LINE_BYTES_MAX >= 64 * 1024);
