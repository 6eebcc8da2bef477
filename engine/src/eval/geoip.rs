//! Country and continent of a client address, from a MaxMind DB (`.mmdb`)
//! file's bytes: GeoIP2/GeoLite2 Country or City (`country.iso_code`,
//! falling back to `registered_country.iso_code`; `continent.code`) and DB-IP
//! style files (`country_code`).
//!
//! The runtime reads the file and calls [`GeoIp::from_bytes`] again to reload;
//! nothing here touches the file system.
//!
//! The `maxminddb` reader (0.26) indexes its buffer without bounds checks and
//! follows data pointers recursively, so a corrupt or hostile file could make
//! it panic, recurse without end, or decode gigabytes of repeated data. Before
//! handing the bytes to it, [`GeoIp::from_bytes`] therefore checks the whole
//! file with its own bounds-checked walker: the metadata, every search-tree
//! record (node, empty, or a data pointer inside the data section) and every
//! data record a record points to (types, sizes, UTF-8, pointer targets),
//! with the limits the MaxMind DB spec recommends: nesting depth
//! [`DEPTH_MAX`], [`VALUES_MAX`] decoded values and [`PAYLOAD_BYTES_MAX`]
//! string/bytes payload per record, counted flat (a value reached twice
//! through pointers counts twice). A file that fails is refused with a clear
//! error; lookups on an accepted file cannot go out of bounds. A lookup that
//! still fails (a record of an unexpected shape) gives `None` and is counted
//! ([`GeoIp::lookup_errors`]).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use super::facts::Code;

/// Deepest nesting of maps, arrays and pointers in one data record.
pub const DEPTH_MAX: u32 = 32;
/// Most values one data record decodes to (pointers expanded).
pub const VALUES_MAX: u64 = 65_536;
/// Most string and bytes payload one data record decodes to.
pub const PAYLOAD_BYTES_MAX: u64 = 2 * 1024 * 1024;

const METADATA_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";
/// The 16 zero bytes between the search tree and the data section.
const DATA_SEPARATOR: usize = 16;

/// Where a client address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// ISO 3166-1 country code.
    pub country: Option<Code>,
    /// Continent code (`AF AN AS EU NA OC SA`).
    pub continent: Option<Code>,
}

/// What a loaded database is (for `mbctl` and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoInfo {
    /// E.g. `GeoIP2-Country`, `GeoLite2-City`, `DBIP-Country-Lite`.
    pub database_type: String,
    /// When the database was built, seconds since the Unix epoch.
    pub build_epoch: u64,
    /// 4 (IPv4 only) or 6.
    pub ip_version: u16,
    /// Search-tree nodes.
    pub node_count: u32,
    /// Bits per search-tree record (24, 28 or 32).
    pub record_size: u16,
    /// Distinct data records checked at load.
    pub data_records: usize,
}

/// A loaded, checked GeoIP database. `Send + Sync`; share it behind an `Arc`
/// and swap the `Arc` to reload.
pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
    info: GeoInfo,
    lookup_errors: AtomicU64,
}

impl fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoIp")
            .field("info", &self.info)
            .field("lookup_errors", &self.lookup_errors())
            .finish()
    }
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct ContinentCode<'a> {
    #[serde(borrow)]
    code: Option<&'a str>,
}

/// The few fields read from a record; the rest is skipped.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow)]
    registered_country: Option<IsoCode<'a>>,
    #[serde(borrow)]
    continent: Option<ContinentCode<'a>>,
    /// DB-IP lite files.
    #[serde(borrow)]
    country_code: Option<&'a str>,
}

impl GeoIp {
    /// Checks and loads a database from the file's bytes. The error says what
    /// is wrong (not an mmdb, a pointer outside the data section, a record
    /// over the limits, ...).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GeoIp, String> {
        let layout = check(&bytes)?;
        let reader = maxminddb::Reader::from_source(bytes)
            .map_err(|e| format!("not a usable MaxMind DB file: {e}"))?;
        let info = GeoInfo {
            database_type: reader.metadata.database_type.clone(),
            build_epoch: reader.metadata.build_epoch,
            ip_version: reader.metadata.ip_version,
            node_count: reader.metadata.node_count,
            record_size: reader.metadata.record_size,
            data_records: layout.data_records,
        };
        Ok(GeoIp {
            reader,
            info,
            lookup_errors: AtomicU64::new(0),
        })
    }

    /// Country and continent of `ip` (IPv4-mapped IPv6 looked up as IPv4);
    /// `None` when the database has no data for it. Never panics; a record
    /// that cannot be read gives `None` and counts in [`Self::lookup_errors`].
    #[must_use]
    pub fn lookup(&self, ip: IpAddr) -> Option<Place> {
        let ip = match ip {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        if ip.is_ipv6() && self.info.ip_version != 6 {
            return None;
        }
        let record = match self.reader.lookup::<Record<'_>>(ip) {
            Ok(record) => record?,
            Err(_) => {
                self.lookup_errors.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let country = record
            .country
            .and_then(|c| c.iso_code)
            .or(record.country_code)
            .or_else(|| record.registered_country.and_then(|c| c.iso_code))
            .and_then(Code::parse);
        let continent = record.continent.and_then(|c| c.code).and_then(Code::parse);
        if country.is_none() && continent.is_none() {
            return None;
        }
        Some(Place { country, continent })
    }

    /// Lookups that failed on a record of unexpected shape since load.
    #[must_use]
    pub fn lookup_errors(&self) -> u64 {
        self.lookup_errors.load(Ordering::Relaxed)
    }

    /// What the database is.
    #[must_use]
    pub fn describe(&self) -> GeoInfo {
        self.info.clone()
    }
}

// ---------------------------------------------------------------------------
// The checker. It decodes exactly as `maxminddb` 0.26 does (including how it
// reads the size bits of a pointer's control byte), so every byte that reader
// can touch has been checked first.

/// What [`check`] learned about a file.
struct Layout {
    data_records: usize,
}

/// Cost of one decoded value, counted flat.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    values: u64,
    payload: u64,
    /// Nesting below (and including) the value.
    depth: u32,
}

impl Cost {
    fn add(&mut self, other: Cost) {
        self.values = self.values.saturating_add(other.values);
        self.payload = self.payload.saturating_add(other.payload);
        self.depth = self.depth.max(other.depth);
    }
}

/// Bounds-checked decoder over one section (data or metadata), with pointer
/// targets memoised so fan-out costs one visit per target.
struct Walker<'a> {
    buf: &'a [u8],
    memo: HashMap<usize, Cost>,
}

/// A decoded control byte: type, size, and where the payload starts.
struct Header {
    kind: u8,
    size: usize,
    payload: usize,
}

fn err<T>(at: usize, what: &str) -> Result<T, String> {
    Err(format!("corrupt data at offset {at}: {what}"))
}

fn be(bytes: &[u8], base: usize) -> usize {
    bytes
        .iter()
        .fold(base, |acc, &b| (acc << 8) | usize::from(b))
}

impl<'a> Walker<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            memo: HashMap::new(),
        }
    }

    fn bytes(&self, at: usize, len: usize) -> Result<&'a [u8], String> {
        match at.checked_add(len).and_then(|end| self.buf.get(at..end)) {
            Some(b) => Ok(b),
            None => err(at, "value runs past the end of the file"),
        }
    }

    fn header(&self, at: usize) -> Result<Header, String> {
        let ctrl = self.bytes(at, 1)?[0];
        let mut p = at + 1;
        let mut kind = ctrl >> 5;
        if kind == 0 {
            let ext = self.bytes(p, 1)?[0];
            p += 1;
            if !(1..=8).contains(&ext) {
                return err(at, "unknown extended type");
            }
            kind = ext + 7;
        }
        let size = usize::from(ctrl & 0x1f);
        let extra = size.saturating_sub(28);
        let size_bytes = self.bytes(p, extra)?;
        p += extra;
        let size = match size {
            s if s < 29 => s,
            29 => 29 + be(size_bytes, 0),
            30 => 285 + be(size_bytes, 0),
            _ => 65_821 + be(size_bytes, 0),
        };
        Ok(Header {
            kind,
            size,
            payload: p,
        })
    }

    /// A pointer's target and the offset after the pointer.
    fn pointer(&self, h: &Header) -> Result<(usize, usize), String> {
        const OFFSETS: [usize; 5] = [0, 0, 2048, 526_336, 0];
        let len = ((h.size >> 3) & 0x3) + 1;
        let bytes = self.bytes(h.payload, len)?;
        let base = if len == 4 { 0 } else { h.size & 0x7 };
        Ok((be(bytes, base) + OFFSETS[len], h.payload + len))
    }

    /// Checks the value at `at`; returns its end and its cost.
    fn value(&mut self, at: usize, depth: u32) -> Result<(usize, Cost), String> {
        if depth > DEPTH_MAX {
            return err(at, "nested deeper than the limit (or a pointer loop)");
        }
        let h = self.header(at)?;
        let fixed = |max: usize, exact: bool| -> Result<(), String> {
            if (exact && h.size != max) || h.size > max {
                return err(at, "number of unexpected size");
            }
            Ok(())
        };
        let leaf = |payload: usize| Cost {
            values: 1,
            payload: payload as u64,
            depth: 1,
        };
        match h.kind {
            1 => {
                let (target, end) = self.pointer(&h)?;
                let cost = self.target(target, depth + 1)?;
                Ok((end, cost))
            }
            2 => {
                let s = self.bytes(h.payload, h.size)?;
                if std::str::from_utf8(s).is_err() {
                    return err(at, "string is not UTF-8");
                }
                Ok((h.payload + h.size, leaf(h.size)))
            }
            4 => {
                self.bytes(h.payload, h.size)?;
                Ok((h.payload + h.size, leaf(h.size)))
            }
            3 | 5 | 6 | 8 | 9 | 10 | 15 => {
                match h.kind {
                    3 => fixed(8, true)?,
                    5 => fixed(2, false)?,
                    6 | 8 => fixed(4, false)?,
                    9 => fixed(8, false)?,
                    10 => fixed(16, false)?,
                    _ => fixed(4, true)?,
                }
                self.bytes(h.payload, h.size)?;
                Ok((h.payload + h.size, leaf(0)))
            }
            14 => {
                fixed(1, false)?;
                Ok((h.payload, leaf(0)))
            }
            7 | 11 => {
                let items = if h.kind == 7 {
                    h.size.saturating_mul(2)
                } else {
                    h.size
                };
                let mut cost = Cost {
                    values: 1,
                    payload: 0,
                    depth: 0,
                };
                let mut p = h.payload;
                for _ in 0..items {
                    let (end, c) = self.value(p, depth + 1)?;
                    cost.add(c);
                    if cost.values > VALUES_MAX || cost.payload > PAYLOAD_BYTES_MAX {
                        return err(at, "record decodes to more than the value or payload limit");
                    }
                    p = end;
                }
                cost.depth += 1;
                Ok((p, cost))
            }
            _ => err(at, "unknown data type"),
        }
    }

    /// Checks a pointer target (memoised) reached at nesting `depth`.
    fn target(&mut self, target: usize, depth: u32) -> Result<Cost, String> {
        let cost = match self.memo.get(&target) {
            Some(c) => *c,
            None => {
                let (_, c) = self.value(target, depth)?;
                self.memo.insert(target, c);
                c
            }
        };
        if depth + cost.depth > DEPTH_MAX + 1 {
            return err(target, "nested deeper than the limit (or a pointer loop)");
        }
        if cost.values > VALUES_MAX || cost.payload > PAYLOAD_BYTES_MAX {
            return err(
                target,
                "record decodes to more than the value or payload limit",
            );
        }
        Ok(Cost {
            depth: cost.depth + 1,
            ..cost
        })
    }

    /// The value at `at` with one pointer followed.
    fn resolve(&self, at: usize) -> Result<Header, String> {
        let h = self.header(at)?;
        if h.kind == 1 {
            let (target, _) = self.pointer(&h)?;
            return self.header(target);
        }
        Ok(h)
    }

    /// End of the value at `at` (pointers not followed).
    fn skip(&mut self, at: usize) -> Result<usize, String> {
        Ok(self.value(at, 0)?.0)
    }

    /// The top-level map at offset 0 as (key, value offset) pairs.
    fn map_entries(&mut self) -> Result<Vec<(&'a str, usize)>, String> {
        let h = self.resolve(0)?;
        if h.kind != 7 {
            return err(0, "metadata is not a map");
        }
        let mut out = Vec::new();
        let mut p = h.payload;
        for _ in 0..h.size {
            let k = self.resolve(p)?;
            let key = if k.kind == 2 {
                std::str::from_utf8(self.bytes(k.payload, k.size)?).unwrap_or_default()
            } else {
                ""
            };
            let value = self.skip(p)?;
            out.push((key, value));
            p = self.skip(value)?;
        }
        Ok(out)
    }

    fn uint(&self, at: usize) -> Result<u64, String> {
        let h = self.resolve(at)?;
        if !matches!(h.kind, 5 | 6 | 9) {
            return err(at, "expected an unsigned integer");
        }
        let b = self.bytes(h.payload, h.size)?;
        Ok(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }
}

/// Checks the whole file; see the module documentation.
fn check(buf: &[u8]) -> Result<Layout, String> {
    let Some(marker) = memchr::memmem::rfind(buf, METADATA_MARKER) else {
        return Err("not a MaxMind DB file: no metadata marker".to_owned());
    };
    let meta_start = marker + METADATA_MARKER.len();
    let mut meta = Walker::new(buf.get(meta_start..).unwrap_or_default());
    meta.value(0, 0).map_err(|e| format!("metadata: {e}"))?;
    let mut node_count = None;
    let mut record_size = None;
    let mut ip_version = None;
    for (key, at) in meta.map_entries().map_err(|e| format!("metadata: {e}"))? {
        let slot = match key {
            "node_count" => &mut node_count,
            "record_size" => &mut record_size,
            "ip_version" => &mut ip_version,
            _ => continue,
        };
        *slot = Some(
            meta.uint(at)
                .map_err(|e| format!("metadata `{key}`: {e}"))?,
        );
    }
    let (Some(node_count), Some(record_size), Some(ip_version)) =
        (node_count, record_size, ip_version)
    else {
        return Err("metadata lacks node_count, record_size or ip_version".to_owned());
    };
    if !matches!(record_size, 24 | 28 | 32) {
        return Err(format!("record size {record_size} is not 24, 28 or 32"));
    }
    if !matches!(ip_version, 4 | 6) {
        return Err(format!("ip_version {ip_version} is not 4 or 6"));
    }
    let nodes = usize::try_from(node_count)
        .ok()
        .filter(|&n| n > 0 && n <= u32::MAX as usize)
        .ok_or_else(|| format!("node count {node_count} is out of range"))?;
    let tree_bytes = nodes * (record_size as usize) / 4;
    let data_start = tree_bytes + DATA_SEPARATOR;
    if data_start > marker {
        return Err(format!(
            "search tree of {nodes} nodes ({tree_bytes} bytes) does not fit before the metadata \
             at {marker}"
        ));
    }
    let data_len = buf.len() - data_start;
    let mut data = Walker::new(buf.get(data_start..).unwrap_or_default());
    let mut records = 0usize;
    for node in 0..nodes {
        for side in 0..2 {
            let value = read_node(buf, node, side, record_size)?;
            if value <= nodes {
                // Another node, or (equal) the "no data" marker.
                continue;
            }
            let Some(offset) = value
                .checked_sub(nodes + DATA_SEPARATOR)
                .filter(|&o| o < data_len)
            else {
                return Err(format!(
                    "search tree node {node} points outside the data section ({value})"
                ));
            };
            if !data.memo.contains_key(&offset) {
                data.target(offset, 1)
                    .map_err(|e| format!("data record of node {node}: {e}"))?;
                records += 1;
            }
        }
    }
    Ok(Layout {
        data_records: records,
    })
}

/// Record `side` (0 left, 1 right) of `node`, bounds-checked.
fn read_node(buf: &[u8], node: usize, side: usize, record_size: u64) -> Result<usize, String> {
    let bad = || format!("search tree node {node} lies outside the file");
    let base = node * (record_size as usize) / 4;
    let get = |at: usize, len: usize| buf.get(at..at + len).ok_or_else(bad);
    Ok(match record_size {
        24 => be(get(base + side * 3, 3)?, 0),
        28 => {
            let middle = get(base + 3, 1)?[0];
            let high = if side == 0 {
                middle >> 4
            } else {
                middle & 0x0f
            };
            be(get(base + side * 4, 3)?, usize::from(high))
        }
        _ => be(get(base + side * 4, 4)?, 0),
    })
}
