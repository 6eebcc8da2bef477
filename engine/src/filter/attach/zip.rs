//! ZIP archives read from their central directory, as Windows Explorer and
//! `unzip` do, with every offset and size checked against the data.
//!
//! Per archive: find the end of central directory record (and its ZIP64
//! form), read the entries (capped), check the declared sizes and ratios,
//! refuse overlapping entries, then per entry: the name rules, the local
//! header (its name must match), the first [`SNIFF_BYTES`] inflated for the
//! magic bytes, and nested ZIPs inflated within the budget and walked.

use super::{
    check_content, check_name, zip_named, AttachPolicy, Findings, Place, Rule, RATIO_MIN_BYTES,
    SNIFF_BYTES, ZIP_DEPTH_HARD_MAX,
};
use crate::filter::mime::sniff;
use miniz_oxide::inflate::{decompress_to_vec_with_limit, TINFLStatus};

const EOCD_SIG: &[u8; 4] = b"PK\x05\x06";
const EOCD_LEN: usize = 22;
const ZIP64_LOCATOR_SIG: &[u8; 4] = b"PK\x06\x07";
const ZIP64_LOCATOR_LEN: usize = 20;
const ZIP64_EOCD_SIG: &[u8; 4] = b"PK\x06\x06";
const CENTRAL_SIG: &[u8; 4] = b"PK\x01\x02";
const CENTRAL_LEN: usize = 46;
const LOCAL_SIG: &[u8; 4] = b"PK\x03\x04";
const LOCAL_LEN: usize = 30;
/// The EOCD is followed by a comment of at most this many bytes.
const COMMENT_MAX: usize = 0xffff;

/// Stored (no compression).
const METHOD_STORED: u16 = 0;
/// Deflate.
const METHOD_DEFLATE: u16 = 8;
/// Flag bit 0: the entry is encrypted (traditional or AES).
const FLAG_ENCRYPTED: u16 = 1;

/// Walks the archive `data` attached at `place`. `sniffed`: the data starts
/// like a ZIP; otherwise only the name or declared type says so, and data
/// without an end of central directory is not an archive (no finding), while
/// one with junk before it (which 7-Zip and WinRAR open) is walked.
pub(super) fn inspect(
    policy: &AttachPolicy,
    data: &[u8],
    sniffed: bool,
    place: &Place<'_>,
    out: &mut Findings,
) {
    if !sniffed && directory(data).is_none() {
        return;
    }
    let mut w = Walker {
        policy,
        out,
        entries_left: policy.zip_entries_max,
        inflate_left: policy.zip_inflate_max,
        declared_total: 0,
        depth_max: policy.zip_depth_max.clamp(1, ZIP_DEPTH_HARD_MAX),
        stop: false,
        too_deep: false,
    };
    w.archive(data, place, 1);
}

/// State shared by the whole walk of one attachment.
struct Walker<'p, 'o> {
    policy: &'p AttachPolicy,
    out: &'o mut Findings,
    /// Entries that may still be read.
    entries_left: usize,
    /// Bytes that may still be inflated for nested archives.
    inflate_left: usize,
    /// Uncompressed bytes declared so far, over all archives.
    declared_total: u64,
    /// Clamped [`AttachPolicy::zip_depth_max`].
    depth_max: usize,
    /// A bomb or the entry cap was found: read nothing more.
    stop: bool,
    /// [`Rule::ArchiveTooDeep`] was reported (once per attachment).
    too_deep: bool,
}

/// One central directory entry, checked against the archive bounds.
struct Entry {
    name: String,
    flags: u16,
    method: u16,
    compressed: u64,
    uncompressed: u64,
    /// Offset of the local header.
    local: usize,
}

/// Where the central directory is, per the end records.
struct Directory {
    /// Entries declared.
    count: u64,
    /// Offset of the first central header.
    offset: usize,
    /// Bytes of data before the archive proper (a self-extractor stub or
    /// junk), added to every offset the archive states.
    shift: usize,
}

impl Walker<'_, '_> {
    fn malformed(&mut self, place: &Place<'_>, what: &str) {
        let text = format!("{}: unreadable ZIP archive ({what})", place.path);
        place.push(self.out, Rule::ArchiveMalformed, text);
    }

    fn bomb(&mut self, place: &Place<'_>, what: String) {
        let text = format!("{}: ZIP bomb ({what})", place.path);
        place.push(self.out, Rule::ArchiveBomb, text);
        self.stop = true;
    }

    /// Walks one archive at nesting `depth` (1 for an attachment).
    fn archive(&mut self, data: &[u8], place: &Place<'_>, depth: usize) {
        let Some(dir) = directory(data) else {
            self.malformed(place, "no end of central directory");
            return;
        };
        let Some(entries) = self.entries(data, &dir, place) else {
            return;
        };
        let declared: u64 = entries
            .iter()
            .fold(0u64, |t, e| t.saturating_add(e.uncompressed));
        self.declared_total = self.declared_total.saturating_add(declared);
        if self.declared_total > self.policy.zip_uncompressed_max {
            let what = format!(
                "declares {} bytes uncompressed, over {}",
                self.declared_total, self.policy.zip_uncompressed_max
            );
            return self.bomb(place, what);
        }
        let ratio_max = self.policy.zip_ratio_max;
        let archive_ratio = declared / (data.len() as u64).max(1);
        if declared >= RATIO_MIN_BYTES && archive_ratio > ratio_max {
            let what = format!("compression ratio {archive_ratio}:1, over {ratio_max}:1");
            return self.bomb(place, what);
        }
        for e in &entries {
            let ratio = e.uncompressed / e.compressed.max(1);
            if e.uncompressed >= RATIO_MIN_BYTES && ratio > ratio_max {
                let what = format!("an entry's compression ratio is {ratio}:1, over {ratio_max}:1");
                return self.bomb(place, what);
            }
        }
        if overlapping(data, &entries) {
            return self.bomb(place, "overlapping entries".to_owned());
        }
        let mut encrypted = false;
        for e in &entries {
            if self.stop || self.out.full() {
                return;
            }
            let inner = place.child(&e.name);
            check_name(self.policy, &e.name, &inner, self.out);
            if e.name.ends_with('/') && e.uncompressed == 0 {
                continue;
            }
            if e.flags & FLAG_ENCRYPTED != 0 {
                encrypted = true;
                continue;
            }
            self.entry(data, e, &inner, depth);
        }
        if encrypted && self.policy.block_encrypted_archives {
            let text = format!(
                "{}: encrypted ZIP archive, its content cannot be inspected",
                place.path
            );
            place.push(self.out, Rule::ArchiveEncrypted, text);
        }
    }

    /// Reads the central directory, at most `entries_left` entries; `None`
    /// (after a finding) when it is unreadable.
    fn entries(&mut self, data: &[u8], dir: &Directory, place: &Place<'_>) -> Option<Vec<Entry>> {
        let mut entries = Vec::new();
        let mut pos = dir.offset;
        let mut read = 0u64;
        while read < dir.count {
            if self.entries_left == 0 {
                let text = format!(
                    "{}: more than {} archive entries",
                    place.path, self.policy.zip_entries_max
                );
                place.push(self.out, Rule::ArchiveTooManyEntries, text);
                self.stop = true;
                break;
            }
            let Some((e, next)) = central_entry(data, pos, dir.shift) else {
                self.malformed(place, "bad central directory entry");
                return None;
            };
            self.entries_left -= 1;
            read += 1;
            pos = next;
            entries.push(e);
        }
        Some(entries)
    }

    /// The content of one entry: magic bytes, nested archives.
    fn entry(&mut self, data: &[u8], e: &Entry, place: &Place<'_>, depth: usize) {
        let Some(body) = local_body(data, e) else {
            self.malformed(place, "bad local header");
            return;
        };
        let body = match body {
            LocalBody::Data(b) => b,
            LocalBody::NameMismatch => {
                self.malformed(place, "local and central names differ");
                return;
            }
        };
        if e.method == METHOD_STORED && e.compressed != e.uncompressed {
            self.malformed(place, "stored entry with two sizes");
            return;
        }
        if e.method != METHOD_STORED && e.method != METHOD_DEFLATE {
            if self.policy.block_unsupported_archives {
                let text = format!(
                    "{}: compression method {} cannot be inspected",
                    place.path, e.method
                );
                place.push(self.out, Rule::ArchiveUnsupported, text);
            }
            return;
        }
        let head = match self.inflate(body, e.method, SNIFF_BYTES) {
            Ok(h) | Err(Inflated::Partial(h) | Inflated::Truncated(h)) => h,
            Err(Inflated::Corrupt) => {
                self.malformed(place, "corrupt deflate data");
                return;
            }
        };
        let head = &head[..];
        let sniffed = sniff::sniff(head);
        check_content(self.policy, head, sniffed, place, self.out);
        // a nested archive: by its magic, or by its name (junk before a ZIP
        // hides the magic but not the archive from 7-Zip and WinRAR)
        let is_zip = sniffed == Some(sniff::ZIP);
        if !is_zip && !zip_named(&e.name) {
            return;
        }
        if depth >= self.depth_max {
            if std::mem::replace(&mut self.too_deep, true) {
                return;
            }
            let text = format!(
                "{}: archives nested deeper than {}",
                place.path, self.depth_max
            );
            place.push(self.out, Rule::ArchiveTooDeep, text);
            return;
        }
        // Inflate the nested archive whole, within the budget; one byte more
        // than declared shows a lying size.
        let want = usize::try_from(e.uncompressed).unwrap_or(usize::MAX);
        if want > self.inflate_left {
            let text = format!(
                "{}: nested archive of {} bytes, over the {} bytes left to inspect",
                place.path, e.uncompressed, self.inflate_left
            );
            place.push(self.out, Rule::ArchiveTooLarge, text);
            return;
        }
        let nested = match self.inflate(body, e.method, want.saturating_add(1)) {
            Ok(n) if n.len() == want => n,
            Ok(_) => {
                self.malformed(place, "entry size differs from its declared size");
                return;
            }
            Err(Inflated::Partial(_)) => {
                return self.bomb(place, "an entry inflates past its declared size".to_owned());
            }
            Err(Inflated::Truncated(_)) => {
                self.malformed(place, "truncated deflate data");
                return;
            }
            Err(Inflated::Corrupt) => {
                self.malformed(place, "corrupt deflate data");
                return;
            }
        };
        self.inflate_left -= nested.len();
        if !is_zip && directory(&nested).is_none() {
            return;
        }
        self.archive(&nested, place, depth + 1);
    }

    /// Up to `cap` bytes of an entry's content.
    fn inflate(&self, body: &[u8], method: u16, cap: usize) -> Result<Vec<u8>, Inflated> {
        if method == METHOD_STORED {
            return if body.len() > cap {
                Err(Inflated::Partial(body[..cap].to_vec()))
            } else {
                Ok(body.to_vec())
            };
        }
        if cap == 0 {
            return if body.is_empty() {
                Ok(Vec::new())
            } else {
                Err(Inflated::Partial(Vec::new()))
            };
        }
        match decompress_to_vec_with_limit(body, cap) {
            Ok(v) if v.len() < cap => Ok(v),
            Ok(v) => Err(Inflated::Partial(v)),
            Err(e) if e.status == TINFLStatus::HasMoreOutput => Err(Inflated::Partial(e.output)),
            Err(e) if e.status == TINFLStatus::FailedCannotMakeProgress && !e.output.is_empty() => {
                Err(Inflated::Truncated(e.output))
            }
            Err(_) => Err(Inflated::Corrupt),
        }
    }
}

/// An inflate that did not end cleanly within its cap.
enum Inflated {
    /// The cap was reached: the bytes so far.
    Partial(Vec<u8>),
    /// The stream ends before its last block: the bytes so far (still worth
    /// sniffing).
    Truncated(Vec<u8>),
    /// Not deflate data.
    Corrupt,
}

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    let b = data.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

/// The end of central directory record (the last one, searched from the
/// end over the longest comment), with ZIP64 values where the record defers
/// to them.
fn directory(data: &[u8]) -> Option<Directory> {
    let floor = data.len().saturating_sub(EOCD_LEN + COMMENT_MAX);
    let tail = data.get(floor..)?;
    let eocd = floor + memchr::memmem::rfind(tail, EOCD_SIG)?;
    data.get(eocd..eocd.checked_add(EOCD_LEN)?)?;
    let mut count = u64::from(u16_at(data, eocd + 10)?);
    let mut size = u64::from(u32_at(data, eocd + 12)?);
    let mut offset = u64::from(u32_at(data, eocd + 16)?);
    let mut end = eocd;
    if let Some(loc) = eocd.checked_sub(ZIP64_LOCATOR_LEN) {
        if data.get(loc..loc + 4) == Some(ZIP64_LOCATOR_SIG) {
            let at = usize::try_from(u64_at(data, loc + 8)?).ok()?;
            // the record may sit after prepended data like everything else
            let at = if data.get(at..at.checked_add(4)?) == Some(ZIP64_EOCD_SIG) {
                at
            } else {
                memchr::memmem::rfind(data.get(..loc)?, ZIP64_EOCD_SIG)?
            };
            count = u64_at(data, at + 32)?;
            size = u64_at(data, at + 40)?;
            offset = u64_at(data, at + 48)?;
            end = at;
        }
    }
    let size = usize::try_from(size).ok()?;
    let offset = usize::try_from(offset).ok()?;
    let stated_end = offset.checked_add(size)?;
    let shift = end.checked_sub(stated_end)?;
    // a central header is at least CENTRAL_LEN bytes: the count cannot
    // exceed what the directory can hold
    if count > (size / CENTRAL_LEN) as u64 + 1 {
        return None;
    }
    Some(Directory {
        count,
        offset: offset.checked_add(shift)?,
        shift,
    })
}

/// The central header at `pos`, and where the next one starts.
fn central_entry(data: &[u8], pos: usize, shift: usize) -> Option<(Entry, usize)> {
    if data.get(pos..pos.checked_add(4)?)? != CENTRAL_SIG {
        return None;
    }
    let flags = u16_at(data, pos + 8)?;
    let method = u16_at(data, pos + 10)?;
    let mut compressed = u64::from(u32_at(data, pos + 20)?);
    let mut uncompressed = u64::from(u32_at(data, pos + 24)?);
    let name_len = usize::from(u16_at(data, pos + 28)?);
    let extra_len = usize::from(u16_at(data, pos + 30)?);
    let comment_len = usize::from(u16_at(data, pos + 32)?);
    let mut local = u64::from(u32_at(data, pos + 42)?);
    let name_at = pos + CENTRAL_LEN;
    let name = data.get(name_at..name_at + name_len)?;
    let extra = data.get(name_at + name_len..name_at + name_len + extra_len)?;
    let next = name_at + name_len + extra_len + comment_len;
    if next > data.len() {
        return None;
    }
    // ZIP64 extra field: the 64-bit values of the fields set to all ones,
    // in this order
    let mut x = 0;
    while let (Some(id), Some(len)) = (u16_at(extra, x), u16_at(extra, x + 2)) {
        let body = extra.get(x + 4..x + 4 + usize::from(len))?;
        if id == 1 {
            let mut values = body.chunks_exact(8).map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                u64::from_le_bytes(a)
            });
            for field in [&mut uncompressed, &mut compressed, &mut local] {
                if *field == u64::from(u32::MAX) {
                    *field = values.next()?;
                }
            }
        }
        x += 4 + usize::from(len);
    }
    let local = usize::try_from(local).ok()?.checked_add(shift)?;
    if local >= data.len() {
        return None;
    }
    let entry = Entry {
        name: String::from_utf8_lossy(name).into_owned(),
        flags,
        method,
        compressed,
        uncompressed,
        local,
    };
    Some((entry, next))
}

/// What the local header of an entry leads to.
enum LocalBody<'a> {
    /// The compressed bytes.
    Data(&'a [u8]),
    /// The local header names another file than the central directory: the
    /// trick that shows one name to a scanner and another to the user.
    NameMismatch,
}

/// The local header at `e.local` and the entry's compressed bytes; `None`
/// when out of bounds or not a local header.
fn local_body<'a>(data: &'a [u8], e: &Entry) -> Option<LocalBody<'a>> {
    let (start, end) = local_span(data, e)?;
    let name_len = usize::from(u16_at(data, e.local + 26)?);
    let name = data.get(e.local + LOCAL_LEN..e.local + LOCAL_LEN + name_len)?;
    if String::from_utf8_lossy(name) != e.name {
        return Some(LocalBody::NameMismatch);
    }
    Some(LocalBody::Data(data.get(start..end)?))
}

/// Where an entry's compressed bytes are: after its local header.
fn local_span(data: &[u8], e: &Entry) -> Option<(usize, usize)> {
    if data.get(e.local..e.local.checked_add(4)?)? != LOCAL_SIG {
        return None;
    }
    let name_len = usize::from(u16_at(data, e.local + 26)?);
    let extra_len = usize::from(u16_at(data, e.local + 28)?);
    let start = e.local + LOCAL_LEN + name_len + extra_len;
    let end = start.checked_add(usize::try_from(e.compressed).ok()?)?;
    (end <= data.len()).then_some((start, end))
}

/// Whether two entries share bytes (Fifield's non-recursive bomb points
/// many central entries at one compressed kernel). Entries whose local
/// header is unreadable are left to the per-entry checks.
fn overlapping(data: &[u8], entries: &[Entry]) -> bool {
    let mut spans: Vec<(usize, usize)> = entries
        .iter()
        .filter_map(|e| local_span(data, e).map(|(_, end)| (e.local, end)))
        .collect();
    spans.sort_unstable();
    spans.windows(2).any(|w| w[1].0 < w[0].1)
}
