//! The per-shard durable spool, sans I/O: the on-disk record format, the
//! segment reader that survives damage, the queue rebuilt from records, the
//! compaction planner and the group-commit policy. The runtime
//! (`mb-shards`) owns the files, the clock and the fsyncs; everything it
//! decides is decided here. docs/SPOOL.md is the long form.
//!
//! # On-disk format (version 1, little-endian)
//!
//! A shard's spool is a directory of append-only *segment* files named by a
//! 64-bit segment id (`seg-<id as 16 hex digits>.mbs`), written in id order.
//! Each starts with a segment header; records follow at offset 64, each
//! padded with zero bytes to a multiple of 8. After the last record the file
//! is zero (pre-zeroed or not yet grown).
//!
//! ```text
//! segment header (64 bytes)
//!   0   4  magic "MBSG"
//!   4   2  format version (1)
//!   6   2  zero
//!   8   8  segment id (must match the file name)
//!  16   8  nonce: random per segment, repeated in every record
//!  24   8  created, unix ms
//!  32   4  CRC32C of bytes 0..32
//!  36  28  zero
//!
//! record (48-byte header + payload + zero padding to a multiple of 8)
//!   0   4  magic "MBSR"
//!   4   2  format version (1)
//!   6   1  kind: 1 Message 2 Scanned 3 Deferred 4 Delivered 5 Bounced
//!             6 Quarantined 7 Deleted
//!   7   1  flags (zero)
//!   8   4  payload length (<= RECORD_PAYLOAD_BYTES_MAX)
//!  12   4  CRC32C of bytes 0..12, 16..48 and the payload
//!  16   8  sequence number (strictly increasing per shard)
//!  24   8  segment nonce
//!  32  16  message id (u128)
//!  48   n  payload (see docs/SPOOL.md for each kind)
//! ```
//!
//! Alignment: records are 8-byte aligned, not 4 KiB aligned. With O_DIRECT
//! (glommio `DmaFile`) the writer keeps the unaligned tail block in memory and
//! at each commit rewrites the range [last 4 KiB boundary, end) padded with
//! zeros to 4 KiB; the re-written prefix is byte-identical to what is on disk,
//! so a torn write of that block cannot change already-synced bytes. A 4 KiB
//! record alignment would cost up to 4 KiB per commit for nothing.
//!
//! Every length read from disk is checked against the maximum below before
//! anything is allocated.

pub mod commit;
pub mod compact;
pub mod crc;
pub mod queue;
pub mod record;
pub mod segment;

pub use commit::{AckGate, CommitState, GroupCommit, SyncDecision, SyncTicket, LAZY_SYNC_DELAY};
pub use compact::{plan as plan_compaction, CompactionPlan, CompactionPolicy};
pub use queue::{
    recover, Entry, Queue, Recoverer, Recovery, RecoveryReport, Reject, SegmentUsage, Tombstone,
};
pub use record::{
    decode_record, decode_segment_header, encode_record, encode_segment_header, Damage,
    EncodeError, MessageRecord, Phase, Rcpt, RcptState, Record, RecordHeader, ScanAction,
    ScanSummary, SegmentHeader,
};
pub use segment::{Corruption, Decoded, Item, Location, SegmentReader};

/// A message's spool id, unique per shard for the spool's lifetime (the
/// runtime builds it from shard, time and a counter; it is also the queue id
/// in logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u128);

/// A segment's number: segments are written in increasing id order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId(pub u64);

/// Record magic.
pub const RECORD_MAGIC: [u8; 4] = *b"MBSR";
/// Segment header magic.
pub const SEGMENT_MAGIC: [u8; 4] = *b"MBSG";
/// The only format version this build reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Record header bytes.
pub const RECORD_HEADER_BYTES: usize = 48;
/// Segment header bytes (records start here).
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// Records start at multiples of this.
pub const RECORD_ALIGN: usize = 8;

/// Most message bytes in one record: 64 MiB, above the 50 MiB default
/// message size limit (`limits::MESSAGE_BYTES_DEFAULT`).
pub const BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Most bytes of one envelope address (RFC 5321 §4.5.3.1.3 allows 256 for a
/// path; headroom for SMTPUTF8).
pub const ADDRESS_BYTES_MAX: usize = 1024;
/// Most recipients per message (the engine-wide limit).
pub const RCPT_COUNT_MAX: usize = crate::limits::RCPT_COUNT_MAX;
/// Most XFORWARD/macro facts per message.
pub const FACT_COUNT_MAX: usize = 64;
/// Most bytes of a fact name.
pub const FACT_KEY_BYTES_MAX: usize = 64;
/// Most bytes of a fact value.
pub const FACT_VALUE_BYTES_MAX: usize = 1024;
/// Most bytes of the symbol list of a scan summary.
pub const SYMBOLS_BYTES_MAX: usize = 4096;
/// Most bytes of a reason text (an SMTP reply line is at most 512).
pub const REASON_BYTES_MAX: usize = 1024;
/// Most payload bytes of one record: the largest message record that fits
/// the maxima above, rounded up to 80 MiB.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 80 * 1024 * 1024;
/// Default segment size at which the writer starts a new segment (a record
/// never spans segments, so a segment may exceed it by one record).
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Largest segment file recovery reads (the target plus one record, with
/// headroom for a raised target); a larger file is refused by the runtime as
/// not a segment of ours.
pub const SEGMENT_FILE_BYTES_MAX: u64 = 1024 * 1024 * 1024;

const MESSAGE_RECORD_BYTES_MAX: usize = 8
    + 1
    + 4
    + 8
    + 1
    + (1 + 4 + 2 + SYMBOLS_BYTES_MAX)
    + (2 + ADDRESS_BYTES_MAX)
    + 4
    + RCPT_COUNT_MAX * (1 + 2 + ADDRESS_BYTES_MAX)
    + 2
    + FACT_COUNT_MAX * (1 + FACT_KEY_BYTES_MAX + 2 + FACT_VALUE_BYTES_MAX)
    + 4
    + BODY_BYTES_MAX;
const _: () = assert!(MESSAGE_RECORD_BYTES_MAX <= RECORD_PAYLOAD_BYTES_MAX);
const _: () = assert!(RECORD_PAYLOAD_BYTES_MAX < u32::MAX as usize);
const _: () =
    assert!(SEGMENT_FILE_BYTES_MAX > SEGMENT_BYTES_DEFAULT + RECORD_PAYLOAD_BYTES_MAX as u64);
const _: () = assert!(BODY_BYTES_MAX as u64 >= crate::limits::MESSAGE_BYTES_DEFAULT);
const _: () = assert!(SEGMENT_HEADER_BYTES.is_multiple_of(RECORD_ALIGN));
const _: () = assert!(RECORD_HEADER_BYTES.is_multiple_of(RECORD_ALIGN));
const _: () = assert!(ADDRESS_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(FACT_KEY_BYTES_MAX <= u8::MAX as usize);
const _: () = assert!(FACT_VALUE_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(SYMBOLS_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(REASON_BYTES_MAX <= u16::MAX as usize);
