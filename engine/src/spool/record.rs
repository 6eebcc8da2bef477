//! Record and segment-header codecs: the bytes on disk (layout in
//! [`super`]'s module doc and docs/SPOOL.md). Encoding appends to a caller's
//! `Vec<u8>` and checks its own output; decoding borrows from the segment
//! bytes (the message body is never copied) and checks every length against
//! its documented maximum before allocating.

use super::crc::Crc32c;
use super::{
    MessageId, ADDRESS_BYTES_MAX, BODY_BYTES_MAX, FACT_COUNT_MAX, FACT_KEY_BYTES_MAX,
    FACT_VALUE_BYTES_MAX, FORMAT_VERSION, RCPT_COUNT_MAX, REASON_BYTES_MAX, RECORD_ALIGN,
    RECORD_HEADER_BYTES, RECORD_MAGIC, RECORD_PAYLOAD_BYTES_MAX, SEGMENT_HEADER_BYTES,
    SEGMENT_MAGIC, SYMBOLS_BYTES_MAX,
};

/// Delivery state of one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RcptState {
    /// Not yet delivered (still to try).
    Pending = 0,
    /// Accepted by the next hop.
    Delivered = 1,
    /// Failed permanently (a bounce/DSN is owed for it).
    Failed = 2,
}

impl RcptState {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Pending),
            1 => Some(Self::Delivered),
            2 => Some(Self::Failed),
            _ => None,
        }
    }
}

/// Non-terminal phase of a stored message (what a `Message` record may hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Durable, not yet scanned (recovery sends it back to the scanner).
    Received = 0,
    /// Scanned, due for its first delivery attempt.
    Scanned = 1,
    /// A delivery attempt failed temporarily; due again at `next_try_unix_ms`.
    Deferred = 2,
    /// Held in quarantine (not due) until released (a `Deferred` record) or deleted.
    Quarantined = 3,
}

impl Phase {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Received),
            1 => Some(Self::Scanned),
            2 => Some(Self::Deferred),
            3 => Some(Self::Quarantined),
            _ => None,
        }
    }
}

/// The action the filter stage decided (a summary; the full verdict goes to
/// the scribe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScanAction {
    /// Deliver unchanged.
    Pass = 0,
    /// Deliver with added headers.
    AddHeader = 1,
    /// Hold in quarantine.
    Quarantine = 2,
    /// Refuse: bounce.
    Reject = 3,
    /// Try the scan again later.
    Tempfail = 4,
}

impl ScanAction {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Pass),
            1 => Some(Self::AddHeader),
            2 => Some(Self::Quarantine),
            3 => Some(Self::Reject),
            4 => Some(Self::Tempfail),
            _ => None,
        }
    }
}

/// Verdict summary stored with a `Scanned` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanSummary<'a> {
    /// What the filter decided.
    pub action: ScanAction,
    /// Score in thousandths of a point.
    pub score_milli: i32,
    /// Matched symbols, comma separated, at most [`SYMBOLS_BYTES_MAX`] bytes.
    pub symbols: &'a [u8],
}

/// One recipient of a stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rcpt<'a> {
    /// Envelope address (without angle brackets), at most [`ADDRESS_BYTES_MAX`].
    pub address: &'a [u8],
    /// Its delivery state.
    pub state: RcptState,
}

/// A whole message with its envelope and current state. Written when the
/// message is received (phase `Received`, every recipient pending) and again
/// by compaction as a snapshot that folds every later state change in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord<'a> {
    /// When the message was received (unix ms; the runtime's clock).
    pub received_unix_ms: u64,
    /// Current phase (never terminal).
    pub phase: Phase,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Next delivery attempt (unix ms) when `phase` is `Deferred`, else 0.
    pub next_try_unix_ms: u64,
    /// The scan verdict summary once scanned.
    pub scan: Option<ScanSummary<'a>>,
    /// Envelope sender (empty for the null sender `<>`).
    pub sender: &'a [u8],
    /// Envelope recipients, at least one, at most [`RCPT_COUNT_MAX`].
    pub rcpts: Vec<Rcpt<'a>>,
    /// XFORWARD (or milter macro) facts: name, value.
    pub facts: Vec<(&'a [u8], &'a [u8])>,
    /// The message as received (headers and body), at most [`BODY_BYTES_MAX`].
    pub body: &'a [u8],
}

/// What one record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// kind 1: a message with its envelope and full state.
    Message(MessageRecord<'a>),
    /// kind 2: scanned, with the verdict summary.
    Scanned(ScanSummary<'a>),
    /// kind 3: deferred (or released from quarantine) until `next_try_unix_ms`.
    Deferred {
        /// When to try again (unix ms).
        next_try_unix_ms: u64,
        /// Attempts so far, this one included.
        attempts: u32,
        /// Why (the last SMTP reply, for the queue listing).
        reason: &'a [u8],
    },
    /// kind 4: these recipients (indices into the message's list) were delivered.
    Delivered {
        /// Recipient indices.
        rcpts: Vec<u32>,
    },
    /// kind 5: these recipients failed permanently (a DSN is owed).
    Bounced {
        /// Recipient indices.
        rcpts: Vec<u32>,
        /// Why (the permanent SMTP reply or the verdict).
        reason: &'a [u8],
    },
    /// kind 6: held in quarantine.
    Quarantined {
        /// Why (the verdict).
        reason: &'a [u8],
    },
    /// kind 7: removed (quarantine expiry or delete, or a tombstone copied
    /// forward by compaction).
    Deleted,
}

impl Record<'_> {
    /// The on-disk kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            Record::Message(_) => 1,
            Record::Scanned(_) => 2,
            Record::Deferred { .. } => 3,
            Record::Delivered { .. } => 4,
            Record::Bounced { .. } => 5,
            Record::Quarantined { .. } => 6,
            Record::Deleted => 7,
        }
    }
}

/// Why a record could not be encoded (a field over its maximum).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A field is longer than the format allows.
    #[error("spool record field {field} is {len} long, the maximum is {max}")]
    TooLarge {
        /// Which field.
        field: &'static str,
        /// Its length (bytes or items).
        len: usize,
        /// The documented maximum.
        max: usize,
    },
    /// A message record needs at least one pending recipient.
    #[error("a spool message record needs at least one pending recipient")]
    NoPendingRecipient,
}

/// Why bytes are not a valid record (or segment header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Damage {
    /// Fewer bytes than the header or the declared length.
    Truncated,
    /// The magic is wrong.
    BadMagic,
    /// A format version this build does not read.
    BadVersion,
    /// Declared payload length above [`RECORD_PAYLOAD_BYTES_MAX`].
    TooLong,
    /// The CRC32C does not match.
    Checksum,
    /// Unknown kind byte.
    BadKind,
    /// The checksum matches but the payload does not parse (a writer bug or a
    /// field over its maximum).
    BadPayload,
    /// A valid record written under another segment nonce: a stale record of
    /// a recycled file, or record-shaped bytes inside a message.
    ForeignNonce,
    /// Zero bytes where a record should be, with data after them.
    Hole,
    /// The segment header is damaged (records are still read).
    SegmentHeader,
    /// The segment header names another segment than the file name.
    SegmentId,
}

/// The fixed part of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Kind byte (1..=7).
    pub kind: u8,
    /// Payload bytes (without header and padding).
    pub payload_len: u32,
    /// Sequence number: strictly increasing over a shard's whole spool.
    pub seq: u64,
    /// Nonce of the segment the record was written to.
    pub nonce: u64,
    /// The message the record is about.
    pub id: MessageId,
}

impl RecordHeader {
    /// Bytes the record occupies on disk (header + payload + padding).
    pub fn total_len(&self) -> usize {
        padded_len(self.payload_len as usize)
    }
}

/// Bytes a record with `payload_len` payload bytes occupies on disk.
pub fn padded_len(payload_len: usize) -> usize {
    (RECORD_HEADER_BYTES + payload_len).next_multiple_of(RECORD_ALIGN)
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), EncodeError> {
    if len > max {
        return Err(EncodeError::TooLarge { field, len, max });
    }
    Ok(())
}

fn put_u16_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Callers checked `b.len()` against a maximum below 64 KiB.
    debug_assert!(b.len() <= usize::from(u16::MAX));
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_indices(out: &mut Vec<u8>, rcpts: &[u32]) -> Result<(), EncodeError> {
    check_len("recipient indices", rcpts.len(), RCPT_COUNT_MAX)?;
    out.extend_from_slice(&(rcpts.len() as u32).to_le_bytes());
    for r in rcpts {
        out.extend_from_slice(&r.to_le_bytes());
    }
    Ok(())
}

fn encode_payload(record: &Record<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match record {
        Record::Message(m) => {
            check_len("sender", m.sender.len(), ADDRESS_BYTES_MAX)?;
            check_len("recipients", m.rcpts.len(), RCPT_COUNT_MAX)?;
            check_len("facts", m.facts.len(), FACT_COUNT_MAX)?;
            check_len("body", m.body.len(), BODY_BYTES_MAX)?;
            if !m.rcpts.iter().any(|r| r.state == RcptState::Pending) {
                return Err(EncodeError::NoPendingRecipient);
            }
            out.extend_from_slice(&m.received_unix_ms.to_le_bytes());
            out.push(m.phase as u8);
            out.extend_from_slice(&m.attempts.to_le_bytes());
            out.extend_from_slice(&m.next_try_unix_ms.to_le_bytes());
            match &m.scan {
                None => out.push(0),
                Some(s) => {
                    out.push(1);
                    encode_scan(s, out)?;
                }
            }
            put_u16_bytes(out, m.sender);
            out.extend_from_slice(&(m.rcpts.len() as u32).to_le_bytes());
            for r in &m.rcpts {
                check_len("recipient address", r.address.len(), ADDRESS_BYTES_MAX)?;
                out.push(r.state as u8);
                put_u16_bytes(out, r.address);
            }
            out.extend_from_slice(&(m.facts.len() as u16).to_le_bytes());
            for (k, v) in &m.facts {
                check_len("fact name", k.len(), FACT_KEY_BYTES_MAX)?;
                check_len("fact value", v.len(), FACT_VALUE_BYTES_MAX)?;
                out.push(k.len() as u8);
                out.extend_from_slice(k);
                put_u16_bytes(out, v);
            }
            out.extend_from_slice(&(m.body.len() as u32).to_le_bytes());
            out.extend_from_slice(m.body);
        }
        Record::Scanned(s) => encode_scan(s, out)?,
        Record::Deferred {
            next_try_unix_ms,
            attempts,
            reason,
        } => {
            check_len("reason", reason.len(), REASON_BYTES_MAX)?;
            out.extend_from_slice(&next_try_unix_ms.to_le_bytes());
            out.extend_from_slice(&attempts.to_le_bytes());
            put_u16_bytes(out, reason);
        }
        Record::Delivered { rcpts } => put_indices(out, rcpts)?,
        Record::Bounced { rcpts, reason } => {
            check_len("reason", reason.len(), REASON_BYTES_MAX)?;
            put_indices(out, rcpts)?;
            put_u16_bytes(out, reason);
        }
        Record::Quarantined { reason } => {
            check_len("reason", reason.len(), REASON_BYTES_MAX)?;
            put_u16_bytes(out, reason);
        }
        Record::Deleted => {}
    }
    Ok(())
}

fn encode_scan(s: &ScanSummary<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    check_len("symbols", s.symbols.len(), SYMBOLS_BYTES_MAX)?;
    out.push(s.action as u8);
    out.extend_from_slice(&s.score_milli.to_le_bytes());
    put_u16_bytes(out, s.symbols);
    Ok(())
}

fn record_crc(header: &[u8], payload: &[u8]) -> u32 {
    Crc32c::new()
        .update(&header[0..12])
        .update(&header[16..RECORD_HEADER_BYTES])
        .update(payload)
        .finish()
}

/// Appends one record to `out` (header, payload, zero padding to
/// [`RECORD_ALIGN`]) and returns the bytes appended. On error `out` is left
/// as it was.
///
/// The checksum is checked on write: after encoding, the header is decoded
/// back and the CRC recomputed over the bytes in `out`; a mismatch is a bug
/// or memory corruption and panics (TigerStyle paired assertion).
pub fn encode_record(
    out: &mut Vec<u8>,
    seq: u64,
    nonce: u64,
    id: MessageId,
    record: &Record<'_>,
) -> Result<usize, EncodeError> {
    let start = out.len();
    out.resize(start + RECORD_HEADER_BYTES, 0);
    if let Err(e) = encode_payload(record, out) {
        out.truncate(start);
        return Err(e);
    }
    let payload_len = out.len() - start - RECORD_HEADER_BYTES;
    if payload_len > RECORD_PAYLOAD_BYTES_MAX {
        out.truncate(start);
        return Err(EncodeError::TooLarge {
            field: "payload",
            len: payload_len,
            max: RECORD_PAYLOAD_BYTES_MAX,
        });
    }
    let h = &mut out[start..start + RECORD_HEADER_BYTES];
    h[0..4].copy_from_slice(&RECORD_MAGIC);
    h[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[6] = record.kind();
    h[7] = 0;
    h[8..12].copy_from_slice(&(payload_len as u32).to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    h[24..32].copy_from_slice(&nonce.to_le_bytes());
    h[32..48].copy_from_slice(&id.0.to_le_bytes());
    let (head, payload) = out[start..].split_at(RECORD_HEADER_BYTES);
    let crc = record_crc(head, payload);
    out[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
    let total = padded_len(payload_len);
    out.resize(start + total, 0);
    // Checked on write: what is in the buffer is what we meant.
    match check_record(&out[start..]) {
        Ok(h) => assert!(
            h.seq == seq && h.id == id && h.total_len() == total,
            "spool record header does not read back"
        ),
        Err(d) => panic!("spool record fails its own check after encoding: {d:?}"),
    }
    Ok(total)
}

/// Checks the header and CRC of the record at the start of `bytes` (which may
/// extend past it) without parsing the payload.
pub fn check_record(bytes: &[u8]) -> Result<RecordHeader, Damage> {
    if bytes.len() < RECORD_HEADER_BYTES {
        return Err(Damage::Truncated);
    }
    let h = &bytes[..RECORD_HEADER_BYTES];
    if h[0..4] != RECORD_MAGIC {
        return Err(Damage::BadMagic);
    }
    if u16::from_le_bytes([h[4], h[5]]) != FORMAT_VERSION {
        return Err(Damage::BadVersion);
    }
    let payload_len = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if payload_len as usize > RECORD_PAYLOAD_BYTES_MAX {
        return Err(Damage::TooLong);
    }
    let end = RECORD_HEADER_BYTES + payload_len as usize;
    if bytes.len() < end {
        return Err(Damage::Truncated);
    }
    let stored = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    if record_crc(h, &bytes[RECORD_HEADER_BYTES..end]) != stored {
        return Err(Damage::Checksum);
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[32..48]);
    Ok(RecordHeader {
        kind: h[6],
        payload_len,
        seq: u64::from_le_bytes(le8(&h[16..24])),
        nonce: u64::from_le_bytes(le8(&h[24..32])),
        id: MessageId(u128::from_le_bytes(id)),
    })
}

fn le8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

/// Decodes the record at the start of `bytes`: header, CRC, then payload.
/// The record may be followed by other bytes; the padding is not checked
/// (it is outside the CRC, and the next record starts at the padded length).
pub fn decode_record(bytes: &[u8]) -> Result<(RecordHeader, Record<'_>), Damage> {
    let header = check_record(bytes)?;
    let payload = &bytes[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + header.payload_len as usize];
    // Missing padding (a file cut inside it) does not matter: the CRC covers
    // header and payload, and nothing is ever appended to a recovered segment.
    let record = decode_payload(header.kind, payload)?;
    Ok((header, record))
}

struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Damage> {
        if self.b.len() < n {
            return Err(Damage::BadPayload);
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, Damage> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Damage> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, Damage> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, Damage> {
        Ok(u64::from_le_bytes(le8(self.take(8)?)))
    }
    /// A u16-length-prefixed byte string of at most `max` bytes.
    fn bytes16(&mut self, max: usize) -> Result<&'a [u8], Damage> {
        let n = usize::from(self.u16()?);
        if n > max {
            return Err(Damage::BadPayload);
        }
        self.take(n)
    }
    /// A count of at most `max` items of at least `min_item` bytes each: the
    /// bound is checked before anything is allocated.
    fn count(&mut self, n: usize, max: usize, min_item: usize) -> Result<usize, Damage> {
        if n > max || n.saturating_mul(min_item) > self.b.len() {
            return Err(Damage::BadPayload);
        }
        Ok(n)
    }
    fn scan(&mut self) -> Result<ScanSummary<'a>, Damage> {
        let action = ScanAction::from_u8(self.u8()?).ok_or(Damage::BadPayload)?;
        let score_milli = self.u32()? as i32;
        let symbols = self.bytes16(SYMBOLS_BYTES_MAX)?;
        Ok(ScanSummary {
            action,
            score_milli,
            symbols,
        })
    }
    fn indices(&mut self) -> Result<Vec<u32>, Damage> {
        let raw = self.u32()? as usize;
        let n = self.count(raw, RCPT_COUNT_MAX, 4)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.u32()?);
        }
        Ok(v)
    }
}

fn decode_payload(kind: u8, payload: &[u8]) -> Result<Record<'_>, Damage> {
    let mut c = Cursor { b: payload };
    let record = match kind {
        1 => {
            let received_unix_ms = c.u64()?;
            let phase = Phase::from_u8(c.u8()?).ok_or(Damage::BadPayload)?;
            let attempts = c.u32()?;
            let next_try_unix_ms = c.u64()?;
            let scan = match c.u8()? {
                0 => None,
                1 => Some(c.scan()?),
                _ => return Err(Damage::BadPayload),
            };
            let sender = c.bytes16(ADDRESS_BYTES_MAX)?;
            let raw = c.u32()? as usize;
            let n = c.count(raw, RCPT_COUNT_MAX, 3)?;
            let mut rcpts = Vec::with_capacity(n);
            for _ in 0..n {
                let state = RcptState::from_u8(c.u8()?).ok_or(Damage::BadPayload)?;
                let address = c.bytes16(ADDRESS_BYTES_MAX)?;
                rcpts.push(Rcpt { address, state });
            }
            if !rcpts.iter().any(|r| r.state == RcptState::Pending) {
                return Err(Damage::BadPayload);
            }
            let raw = usize::from(c.u16()?);
            let n = c.count(raw, FACT_COUNT_MAX, 3)?;
            let mut facts = Vec::with_capacity(n);
            for _ in 0..n {
                let klen = usize::from(c.u8()?);
                if klen > FACT_KEY_BYTES_MAX {
                    return Err(Damage::BadPayload);
                }
                let k = c.take(klen)?;
                let v = c.bytes16(FACT_VALUE_BYTES_MAX)?;
                facts.push((k, v));
            }
            let blen = c.u32()? as usize;
            if blen > BODY_BYTES_MAX {
                return Err(Damage::BadPayload);
            }
            let body = c.take(blen)?;
            Record::Message(MessageRecord {
                received_unix_ms,
                phase,
                attempts,
                next_try_unix_ms,
                scan,
                sender,
                rcpts,
                facts,
                body,
            })
        }
        2 => Record::Scanned(c.scan()?),
        3 => Record::Deferred {
            next_try_unix_ms: c.u64()?,
            attempts: c.u32()?,
            reason: c.bytes16(REASON_BYTES_MAX)?,
        },
        4 => Record::Delivered {
            rcpts: c.indices()?,
        },
        5 => Record::Bounced {
            rcpts: c.indices()?,
            reason: c.bytes16(REASON_BYTES_MAX)?,
        },
        6 => Record::Quarantined {
            reason: c.bytes16(REASON_BYTES_MAX)?,
        },
        7 => Record::Deleted,
        _ => return Err(Damage::BadKind),
    };
    if !c.b.is_empty() {
        return Err(Damage::BadPayload);
    }
    Ok(record)
}

/// The first [`SEGMENT_HEADER_BYTES`] of every segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's number (also its file name).
    pub id: super::SegmentId,
    /// Random per-segment value (from the runtime) that every record in the
    /// segment repeats: a stale record of a recycled file, or record-shaped
    /// bytes inside a message, cannot pass for a record of this segment.
    pub nonce: u64,
    /// When the segment was created (unix ms).
    pub created_unix_ms: u64,
}

/// Appends the segment header ([`SEGMENT_HEADER_BYTES`] bytes).
pub fn encode_segment_header(out: &mut Vec<u8>, h: &SegmentHeader) {
    let start = out.len();
    out.resize(start + SEGMENT_HEADER_BYTES, 0);
    let b = &mut out[start..];
    b[0..4].copy_from_slice(&SEGMENT_MAGIC);
    b[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[8..16].copy_from_slice(&h.id.0.to_le_bytes());
    b[16..24].copy_from_slice(&h.nonce.to_le_bytes());
    b[24..32].copy_from_slice(&h.created_unix_ms.to_le_bytes());
    let crc = Crc32c::new().update(&b[0..32]).finish();
    b[32..36].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes a segment header.
pub fn decode_segment_header(bytes: &[u8]) -> Result<SegmentHeader, Damage> {
    if bytes.len() < SEGMENT_HEADER_BYTES {
        return Err(Damage::Truncated);
    }
    let b = &bytes[..SEGMENT_HEADER_BYTES];
    if b[0..4] != SEGMENT_MAGIC {
        return Err(Damage::SegmentHeader);
    }
    let crc = u32::from_le_bytes([b[32], b[33], b[34], b[35]]);
    if Crc32c::new().update(&b[0..32]).finish() != crc {
        return Err(Damage::SegmentHeader);
    }
    if u16::from_le_bytes([b[4], b[5]]) != FORMAT_VERSION {
        return Err(Damage::BadVersion);
    }
    Ok(SegmentHeader {
        id: super::SegmentId(u64::from_le_bytes(le8(&b[8..16]))),
        nonce: u64::from_le_bytes(le8(&b[16..24])),
        created_unix_ms: u64::from_le_bytes(le8(&b[24..32])),
    })
}
