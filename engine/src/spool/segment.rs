//! Walking one segment's bytes: yields every valid record in order, and for
//! each damaged stretch one [`Corruption`] report, then resynchronises on the
//! next valid record so that records after the damage are not lost.
//!
//! End of data: segments are pre-zeroed (or grow), so the log ends where the
//! rest of the file is zero. Zero bytes followed by data again are a `Hole`.
//!
//! Resync: records start at multiples of [`RECORD_ALIGN`]; after damage at
//! offset `o` the reader tries every aligned offset after `o` whose first four
//! bytes are the record magic and takes the first one whose header, CRC,
//! payload and segment nonce all check. A forged record inside a message body
//! would need the segment's random nonce to pass.

use super::record::{check_record, decode_record, decode_segment_header, Damage, Record};
use super::{
    MessageId, SegmentId, FORMAT_VERSION, RECORD_ALIGN, RECORD_HEADER_BYTES, RECORD_MAGIC,
    SEGMENT_HEADER_BYTES,
};

/// Damage found in a segment: where, how many bytes were skipped, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corruption {
    /// The segment.
    pub segment: SegmentId,
    /// Byte offset of the first damaged byte the reader saw (a record start).
    pub offset: u64,
    /// Bytes skipped until the next valid record (or the end of data).
    pub len: u64,
    /// What was wrong at `offset`.
    pub reason: Damage,
}

/// One valid record read from a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// Where it is.
    pub at: Location,
    /// Its sequence number.
    pub seq: u64,
    /// The message it is about.
    pub id: MessageId,
    /// What it says.
    pub record: Record<'a>,
}

/// Where a record lives: segment, byte offset, bytes on disk (padded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    /// The segment.
    pub segment: SegmentId,
    /// Byte offset of the record header.
    pub offset: u64,
    /// Bytes on disk, padding included.
    pub len: u32,
}

impl Location {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

/// What the reader yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item<'a> {
    /// A valid record.
    Record(Decoded<'a>),
    /// A damaged stretch (reported once, then skipped).
    Corruption(Corruption),
}

/// Iterator over a segment's records and damage. See the module doc.
#[derive(Debug)]
pub struct SegmentReader<'a> {
    segment: SegmentId,
    bytes: &'a [u8],
    pos: usize,
    /// The segment nonce: from the header, or (header damaged) adopted from
    /// the first valid record.
    nonce: Option<u64>,
    /// Where the zero tail starts (end of data).
    data_end: usize,
    queued: Option<Corruption>,
}

fn zero_tail_start(bytes: &[u8]) -> usize {
    match bytes.iter().rposition(|b| *b != 0) {
        None => 0,
        Some(i) => i + 1,
    }
}

impl<'a> SegmentReader<'a> {
    /// A reader over the whole contents of segment `segment`.
    pub fn new(segment: SegmentId, bytes: &'a [u8]) -> Self {
        let data_end = zero_tail_start(bytes);
        let mut r = Self {
            segment,
            bytes,
            pos: SEGMENT_HEADER_BYTES,
            nonce: None,
            data_end,
            queued: None,
        };
        if data_end == 0 {
            // Empty, or created and never written: no records, no damage.
            r.pos = bytes.len();
            return r;
        }
        match decode_segment_header(bytes) {
            Ok(h) if h.id == segment => r.nonce = Some(h.nonce),
            Ok(h) => {
                // Renamed file: trust the records' nonce, report the mismatch.
                r.nonce = Some(h.nonce);
                r.queued = Some(r.corruption(0, 0, Damage::SegmentId));
            }
            Err(reason) => {
                let len = SEGMENT_HEADER_BYTES.min(bytes.len()) as u64;
                r.queued = Some(r.corruption(0, len, reason));
            }
        }
        r
    }

    /// The segment nonce in use (None until known).
    pub fn nonce(&self) -> Option<u64> {
        self.nonce
    }

    /// Offset one past the last valid record or damaged stretch seen so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn corruption(&self, offset: usize, len: u64, reason: Damage) -> Corruption {
        Corruption {
            segment: self.segment,
            offset: offset as u64,
            len,
            reason,
        }
    }

    /// A valid record at `at` (header, CRC, payload and nonce).
    fn valid_at(&self, at: usize) -> Result<Decoded<'a>, Damage> {
        let bytes: &'a [u8] = self.bytes;
        let rest = &bytes[at..];
        if at >= self.data_end {
            return Err(Damage::Truncated);
        }
        if rest.len() >= 4 && rest[..4] == [0, 0, 0, 0] {
            return Err(Damage::Hole);
        }
        let (h, record) = decode_record(rest)?;
        if let Some(n) = self.nonce {
            if n != h.nonce {
                return Err(Damage::ForeignNonce);
            }
        }
        Ok(Decoded {
            at: Location {
                segment: self.segment,
                offset: at as u64,
                len: h.total_len() as u32,
            },
            seq: h.seq,
            id: h.id,
            record,
        })
    }

    /// Whether the header at `at` could start a record of this segment,
    /// checked before any CRC: magic, version, kind, flags, and the nonce
    /// once known. Record-shaped bytes in a message body fail on the nonce,
    /// so a body full of magics cannot make the resync compute a CRC at
    /// every offset.
    fn plausible_at(&self, at: usize) -> bool {
        let Some(h) = self.bytes.get(at..at + RECORD_HEADER_BYTES) else {
            return false;
        };
        let nonce_ok = self.nonce.is_none_or(|n| h[24..32] == n.to_le_bytes());
        h[0..4] == RECORD_MAGIC
            && h[4..6] == FORMAT_VERSION.to_le_bytes()
            && (1..=7).contains(&h[6])
            && h[7] == 0
            && nonce_ok
    }

    /// The next aligned offset after `from` holding a valid record, if any.
    fn resync(&self, from: usize) -> Option<usize> {
        let mut at = (from + 1).next_multiple_of(RECORD_ALIGN);
        while at + 4 <= self.data_end {
            if self.plausible_at(at)
                && check_record(&self.bytes[at..]).is_ok()
                && self.valid_at(at).is_ok()
            {
                return Some(at);
            }
            at += RECORD_ALIGN;
        }
        None
    }
}

impl<'a> Iterator for SegmentReader<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        if let Some(c) = self.queued.take() {
            return Some(Item::Corruption(c));
        }
        if self.pos >= self.data_end || self.pos >= self.bytes.len() {
            self.pos = self.pos.max(self.data_end);
            return None;
        }
        match self.valid_at(self.pos) {
            Ok(d) => {
                if self.nonce.is_none() {
                    // Header damaged: adopt the nonce of the first valid record.
                    self.nonce = Some(u64::from_le_bytes(nonce_of(&self.bytes[self.pos..])));
                }
                self.pos += d.at.len as usize;
                Some(Item::Record(d))
            }
            Err(reason) => {
                let start = self.pos;
                // `start < data_end` (checked above), and resync only looks
                // after `start`, so the reader always moves forward.
                let next = self.resync(start).unwrap_or(self.data_end);
                debug_assert!(next > start);
                self.pos = next;
                let len = (next - start) as u64;
                Some(Item::Corruption(self.corruption(start, len, reason)))
            }
        }
    }
}

fn nonce_of(record: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&record[24..32]);
    a
}
