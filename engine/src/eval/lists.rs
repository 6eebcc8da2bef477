//! Sender block/allow lists: addresses, domains and subdomains, the null
//! sender, client IPs and CIDR ranges (v4 and v6), and HELO names.
//!
//! A list file has one entry per line (format in `docs/LISTS.md`):
//!
//! ```text
//! user@example.com        # one address (case-insensitive)
//! @example.com            # every address of that domain
//! .example.com            # that domain and all its subdomains (also @.example.com)
//! <>                      # the null sender (bounces)
//! 192.0.2.1               # one client address
//! 2001:db8::/32           # a client network (host bits must be zero)
//! helo:mail.example.com   # a HELO/EHLO name
//! helo:.example.com       # a HELO name in that domain or below
//! ```
//!
//! [`parse_list`] reports every error of a file at once, each with file,
//! line and column. A built [`List`] answers [`List::matches`] with one hash
//! probe per kind (and per domain label, per prefix length present): its size
//! does not slow a lookup. Keys are hashed with a small FxHash-style hasher that
//! folds ASCII case while hashing, so lookups never allocate. Lists come from
//! the admin, not from the sender: an attacker chooses only the probed key and
//! cannot lengthen the probe chains, so SipHash's flood resistance buys nothing.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::facts::{Facts, FileDiagnostic, Origin};

/// Longest line accepted in a list file, in bytes (comments included).
pub const LINE_BYTES_MAX: usize = 4096;
/// Longest entry, in bytes: an address is at most 64 + 1 + 253.
pub const ENTRY_BYTES_MAX: usize = 320;
/// Most entries read from one file.
pub const ENTRIES_MAX: usize = 10_000_000;

/// Bounds applied while reading a list or recipient file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListLimits {
    /// Longest line in bytes ([`LINE_BYTES_MAX`]).
    pub line_bytes: usize,
    /// Longest entry in bytes ([`ENTRY_BYTES_MAX`]).
    pub entry_bytes: usize,
    /// Most entries per file ([`ENTRIES_MAX`]).
    pub entries: usize,
}

impl Default for ListLimits {
    fn default() -> Self {
        Self {
            line_bytes: LINE_BYTES_MAX,
            entry_bytes: ENTRY_BYTES_MAX,
            entries: ENTRIES_MAX,
        }
    }
}

/// One entry of a sender list, normalised (ASCII lower case, no leading dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `user@example.com`: exactly that envelope sender.
    Address(String),
    /// `@example.com`: every sender address of that domain.
    Domain(String),
    /// `.example.com` or `@.example.com`: that domain and all subdomains
    /// (stored without the dot).
    Subdomain(String),
    /// `<>`: the null sender.
    NullSender,
    /// `192.0.2.0/24`, `2001:db8::1`: client addresses in the network.
    Net(IpNet),
    /// `helo:mail.example.com`: that HELO/EHLO name.
    Helo(String),
    /// `helo:.example.com`: a HELO name equal to or below the domain.
    HeloSubdomain(String),
}

impl fmt::Display for Entry {
    /// Writes the entry back in list-file syntax.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Address(a) => f.write_str(a),
            Self::Domain(d) => write!(f, "@{d}"),
            Self::Subdomain(d) => write!(f, ".{d}"),
            Self::NullSender => f.write_str("<>"),
            Self::Net(n) => write!(f, "{n}"),
            Self::Helo(h) => write!(f, "helo:{h}"),
            Self::HeloSubdomain(h) => write!(f, "helo:.{h}"),
        }
    }
}

/// An IPv4 or IPv6 network: an address with all host bits zero and a prefix
/// length. IPv4-mapped IPv6 networks (`::ffff:192.0.2.0/120`) are stored as
/// IPv4, the form client addresses are matched in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// The network `addr/prefix`; `None` when the prefix is too long for the
    /// address family or `addr` has host bits set.
    #[must_use]
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let net = Self::containing(addr, prefix)?;
        (net.addr == canonical(addr)).then_some(net)
    }

    /// The network of length `prefix` containing `addr` (host bits cleared);
    /// `None` when the prefix is too long for the address family.
    #[must_use]
    pub fn containing(addr: IpAddr, prefix: u8) -> Option<Self> {
        match addr {
            IpAddr::V4(a) if prefix <= 32 => Some(Self {
                addr: IpAddr::V4(Ipv4Addr::from(mask4(u32::from(a), prefix))),
                prefix,
            }),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => Self::containing(IpAddr::V4(v4), prefix - 96),
                _ if prefix <= 128 => Some(Self {
                    addr: IpAddr::V6(Ipv6Addr::from(mask6(u128::from(a), prefix))),
                    prefix,
                }),
                _ => None,
            },
            IpAddr::V4(_) => None,
        }
    }

    /// The network address.
    #[must_use]
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    #[must_use]
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in the network (IPv4-mapped IPv6 counts as IPv4).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        Self::containing(canonical(ip), self.prefix).is_some_and(|n| n == *self)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// IPv4-mapped IPv6 addresses as IPv4, everything else unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn mask4(a: u32, prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p if p >= 32 => a,
        p => a & (u32::MAX << (32 - u32::from(p))),
    }
}

fn mask6(a: u128, prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p if p >= 128 => a,
        p => a & (u128::MAX << (128 - u32::from(p))),
    }
}

// ---------------------------------------------------------------------------
// Hashing and the index table shared with `recipients`.

const FX_SEED: u64 = 0x517c_c1b7_2722_0a95;

/// FxHash-style hash of the concatenation of `parts`, folding ASCII case, with
/// a final mix so the low bits (the table position) depend on every byte.
#[inline]
pub(crate) fn fold_hash(parts: &[&[u8]]) -> u32 {
    let mut h: u64 = 0;
    for part in parts {
        for &b in *part {
            h = (h.rotate_left(5) ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(FX_SEED);
        }
    }
    h ^= h >> 31;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (h >> 32) as u32
}

/// Whether `stored` (already lower case) equals the concatenation of `parts`
/// compared ASCII case-insensitively.
#[inline]
pub(crate) fn eq_parts(stored: &[u8], parts: &[&[u8]]) -> bool {
    let mut rest = stored;
    for part in parts {
        if rest.len() < part.len() {
            return false;
        }
        let (head, tail) = rest.split_at(part.len());
        if !head.eq_ignore_ascii_case(part) {
            return false;
        }
        rest = tail;
    }
    rest.is_empty()
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The key's [`fold_hash`]; also the probe start.
    hash: u32,
    /// The caller's index + 1; 0 is an empty slot.
    index: u32,
}

/// An open-addressing (linear probing) table of `u32` indices into the
/// caller's storage, which owns the keys: 8 bytes per slot, at most 3/4 full.
#[derive(Debug, Clone, Default)]
pub(crate) struct IndexTable {
    slots: Vec<Slot>,
    len: usize,
}

impl IndexTable {
    /// The index whose key `is_key` accepts, probing from `hash`.
    #[inline]
    pub(crate) fn find(&self, hash: u32, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot.index == 0 {
                return None;
            }
            if slot.hash == hash && is_key(slot.index - 1) {
                return Some(slot.index - 1);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `index` under `hash`; the caller checked with [`Self::find`] that
    /// its key is new. `index` must be below `u32::MAX`.
    pub(crate) fn insert(&mut self, hash: u32, index: u32) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        Self::place(
            &mut self.slots,
            Slot {
                hash,
                index: index + 1,
            },
        );
        self.len += 1;
    }

    fn place(slots: &mut [Slot], slot: Slot) {
        let mask = slots.len() - 1;
        let mut i = slot.hash as usize & mask;
        while slots[i].index != 0 {
            i = (i + 1) & mask;
        }
        slots[i] = slot;
    }

    fn grow(&mut self) {
        let capacity = (self.slots.len() * 2).max(16);
        let mut slots = vec![Slot::default(); capacity];
        for slot in self.slots.iter().filter(|s| s.index != 0) {
            Self::place(&mut slots, *slot);
        }
        self.slots = slots;
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
    }
}

/// FxHash for the integer keys of the CIDR maps.
#[derive(Debug, Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(FX_SEED);
    }

    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }
}

type FxMap<K> = HashMap<K, u32, BuildHasherDefault<FxHasher>>;

// ---------------------------------------------------------------------------
// The list.

/// A list entry that matched, and where it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListHit<'a> {
    /// The entry.
    pub entry: &'a Entry,
    /// Its file, line and column (or TOML key path).
    pub origin: &'a Origin,
}

/// A sender list: entries by kind, immutable once built and shared by all
/// shards (`Send + Sync`). Duplicates keep the first entry's origin.
#[derive(Debug, Default)]
pub struct List {
    entries: Vec<(Entry, Origin)>,
    addresses: IndexTable,
    domains: IndexTable,
    subdomains: IndexTable,
    helos: IndexTable,
    helo_subdomains: IndexTable,
    null_sender: Option<u32>,
    /// One map per IPv4 prefix length present, longest first.
    v4: Vec<(u8, FxMap<u32>)>,
    /// One map per IPv6 prefix length present, longest first.
    v6: Vec<(u8, FxMap<u128>)>,
    duplicates: usize,
}

/// The key string of a string-keyed entry.
fn key_of(entry: &Entry) -> &str {
    match entry {
        Entry::Address(s)
        | Entry::Domain(s)
        | Entry::Subdomain(s)
        | Entry::Helo(s)
        | Entry::HeloSubdomain(s) => s,
        Entry::NullSender | Entry::Net(_) => "",
    }
}

impl List {
    /// An empty list.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry. A duplicate (same kind and key) is counted and dropped;
    /// the first one's origin stays.
    pub fn push(&mut self, entry: Entry, origin: Origin) {
        let Ok(index) = u32::try_from(self.entries.len()) else {
            self.duplicates += 1;
            return;
        };
        if index == u32::MAX {
            self.duplicates += 1;
            return;
        }
        let fresh = match &entry {
            Entry::NullSender => self
                .null_sender
                .is_none()
                .then(|| self.null_sender = Some(index)),
            Entry::Net(net) => self.push_net(*net, index),
            Entry::Address(k) => Self::push_key(&mut self.addresses, &self.entries, k, index),
            Entry::Domain(k) => Self::push_key(&mut self.domains, &self.entries, k, index),
            Entry::Subdomain(k) => Self::push_key(&mut self.subdomains, &self.entries, k, index),
            Entry::Helo(k) => Self::push_key(&mut self.helos, &self.entries, k, index),
            Entry::HeloSubdomain(k) => {
                Self::push_key(&mut self.helo_subdomains, &self.entries, k, index)
            }
        };
        if fresh.is_some() {
            self.entries.push((entry, origin));
        } else {
            self.duplicates += 1;
        }
    }

    fn push_key(
        table: &mut IndexTable,
        entries: &[(Entry, Origin)],
        key: &str,
        index: u32,
    ) -> Option<()> {
        let hash = fold_hash(&[key.as_bytes()]);
        let found = table.find(hash, |i| {
            entries
                .get(i as usize)
                .is_some_and(|(e, _)| key_of(e).eq_ignore_ascii_case(key))
        });
        if found.is_some() {
            return None;
        }
        table.insert(hash, index);
        Some(())
    }

    fn push_net(&mut self, net: IpNet, index: u32) -> Option<()> {
        fn add<K: std::hash::Hash + Eq>(
            maps: &mut Vec<(u8, FxMap<K>)>,
            prefix: u8,
            key: K,
            index: u32,
        ) -> Option<()> {
            let at = match maps.binary_search_by(|(p, _)| prefix.cmp(p)) {
                Ok(at) => at,
                Err(at) => {
                    maps.insert(at, (prefix, FxMap::default()));
                    at
                }
            };
            let map = &mut maps.get_mut(at)?.1;
            if map.contains_key(&key) {
                return None;
            }
            map.insert(key, index);
            Some(())
        }
        match net.addr {
            IpAddr::V4(a) => add(&mut self.v4, net.prefix, u32::from(a), index),
            IpAddr::V6(a) => add(&mut self.v6, net.prefix, u128::from(a), index),
        }
    }

    /// Number of distinct entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the list has no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries dropped by [`Self::push`] as duplicates.
    #[must_use]
    pub fn duplicates(&self) -> usize {
        self.duplicates
    }

    /// Every entry with its origin, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = ListHit<'_>> {
        self.entries
            .iter()
            .map(|(entry, origin)| ListHit { entry, origin })
    }

    /// Approximate heap bytes held (entries, tables, key strings; origins'
    /// shared file names not included).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(Entry, Origin)>();
        let strings: usize = self.entries.iter().map(|(e, _)| key_of(e).len()).sum();
        let map4: usize = self
            .v4
            .iter()
            .map(|(_, m)| m.capacity() * (std::mem::size_of::<(u32, u32)>() + 1))
            .sum();
        let map6: usize = self
            .v6
            .iter()
            .map(|(_, m)| m.capacity() * (std::mem::size_of::<(u128, u32)>() + 1))
            .sum();
        self.entries.capacity() * entry
            + strings
            + self.addresses.heap_bytes()
            + self.domains.heap_bytes()
            + self.subdomains.heap_bytes()
            + self.helos.heap_bytes()
            + self.helo_subdomains.heap_bytes()
            + map4
            + map6
    }

    /// The most specific entry matching the sender address, the client IP or
    /// the HELO name of `facts` (check order: exact address, domain,
    /// subdomains from the longest, null sender, IP longest prefix, HELO), or
    /// None.
    #[must_use]
    pub fn matches(&self, facts: &Facts<'_>) -> Option<ListHit<'_>> {
        self.match_sender(facts.sender)
            .or_else(|| facts.client_ip.and_then(|ip| self.match_ip(ip)))
            .or_else(|| self.match_helo(facts.helo))
    }

    fn hit(&self, index: u32) -> Option<ListHit<'_>> {
        self.entries
            .get(index as usize)
            .map(|(entry, origin)| ListHit { entry, origin })
    }

    fn probe(&self, table: &IndexTable, parts: &[&[u8]]) -> Option<ListHit<'_>> {
        let index = table.find(fold_hash(parts), |i| {
            self.entries
                .get(i as usize)
                .is_some_and(|(e, _)| eq_parts(key_of(e).as_bytes(), parts))
        })?;
        self.hit(index)
    }

    /// `name` and each parent domain, longest first, in `table`.
    fn probe_suffixes(&self, table: &IndexTable, name: &str) -> Option<ListHit<'_>> {
        let mut rest = name;
        loop {
            if let Some(hit) = self.probe(table, &[rest.as_bytes()]) {
                return Some(hit);
            }
            rest = &rest[rest.find('.')? + 1..];
        }
    }

    /// The entry matching an envelope sender (`""` is the null sender):
    /// exact address, then domain, then subdomains from the longest.
    #[must_use]
    pub fn match_sender(&self, sender: &str) -> Option<ListHit<'_>> {
        if sender.is_empty() {
            return self.null_sender.and_then(|i| self.hit(i));
        }
        if let Some(hit) = self.probe(&self.addresses, &[sender.as_bytes()]) {
            return Some(hit);
        }
        let domain = &sender[sender.rfind('@')? + 1..];
        if domain.is_empty() {
            return None;
        }
        self.probe(&self.domains, &[domain.as_bytes()])
            .or_else(|| self.probe_suffixes(&self.subdomains, domain))
    }

    /// The entry with the longest prefix containing `ip`.
    #[must_use]
    pub fn match_ip(&self, ip: IpAddr) -> Option<ListHit<'_>> {
        let index = match canonical(ip) {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .find_map(|(p, m)| m.get(&mask4(a, *p)).copied())
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6
                    .iter()
                    .find_map(|(p, m)| m.get(&mask6(a, *p)).copied())
            }
        }?;
        self.hit(index)
    }

    /// The entry matching a HELO name (one trailing dot ignored): exact, then
    /// subdomains from the longest.
    #[must_use]
    pub fn match_helo(&self, helo: &str) -> Option<ListHit<'_>> {
        let helo = helo.strip_suffix('.').unwrap_or(helo);
        if helo.is_empty() {
            return None;
        }
        self.probe(&self.helos, &[helo.as_bytes()])
            .or_else(|| self.probe_suffixes(&self.helo_subdomains, helo))
    }
}

// ---------------------------------------------------------------------------
// Parsing.

/// An error inside one entry: byte offset into the entry, and the message.
pub(crate) type EntryError = (usize, String);

/// Parses one entry (surrounding whitespace ignored), e.g. written inline in
/// the TOML config. The error text says what is wrong and what to write.
pub fn parse_entry(text: &str) -> Result<Entry, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty entry".to_owned());
    }
    if let Some(at) = text.find(char::is_whitespace) {
        return Err(format!(
            "one entry per list item; `{}` starts a second one",
            text[at..].trim_start()
        ));
    }
    if text.len() > ENTRY_BYTES_MAX {
        return Err(format!(
            "entry is {} bytes; the limit is {ENTRY_BYTES_MAX}",
            text.len()
        ));
    }
    parse_entry_at(text).map_err(|(_, message)| message)
}

/// Parses a trimmed entry without whitespace; errors carry the byte offset.
pub(crate) fn parse_entry_at(text: &str) -> Result<Entry, EntryError> {
    if text == "<>" {
        return Ok(Entry::NullSender);
    }
    if text.len() >= 5 && text.is_char_boundary(5) && text[..5].eq_ignore_ascii_case("helo:") {
        return parse_helo(&text[5..]).map_err(|(at, m)| (at + 5, m));
    }
    if let Some(at) = text.rfind('@') {
        let domain = &text[at + 1..];
        if at == 0 {
            return match domain.strip_prefix('.') {
                Some(sub) => {
                    check_domain(sub).map_err(|(o, m)| (o + 2, m))?;
                    Ok(Entry::Subdomain(sub.to_ascii_lowercase()))
                }
                None => {
                    check_domain(domain).map_err(|(o, m)| (o + 1, m))?;
                    Ok(Entry::Domain(domain.to_ascii_lowercase()))
                }
            };
        }
        check_local(&text[..at], false)?;
        check_domain(domain).map_err(|(o, m)| (o + at + 1, m))?;
        return Ok(Entry::Address(text.to_ascii_lowercase()));
    }
    if let Some(sub) = text.strip_prefix('.') {
        check_domain(sub).map_err(|(o, m)| (o + 1, m))?;
        return Ok(Entry::Subdomain(sub.to_ascii_lowercase()));
    }
    if let Some(colon) = text.find(':') {
        let head = &text[..colon];
        let is_word = !head.is_empty() && head.bytes().all(|b| b.is_ascii_alphabetic());
        if is_word && parse_net(text).is_err() {
            return Err((
                0,
                format!("unknown prefix `{head}:`; the only prefix is `helo:` (e.g. `helo:mail.example.com`)"),
            ));
        }
        return parse_net(text).map(Entry::Net);
    }
    if text.starts_with(|c: char| c.is_ascii_digit()) {
        return parse_net(text).map(Entry::Net);
    }
    Err((
        0,
        format!(
            "`{text}` is not an entry; write `@{text}` for the domain, `.{text}` for it and its \
             subdomains, or `helo:{text}` for a HELO name"
        ),
    ))
}

fn parse_helo(name: &str) -> Result<Entry, EntryError> {
    if name.is_empty() {
        return Err((
            0,
            "`helo:` needs a name, e.g. `helo:mail.example.com`".to_owned(),
        ));
    }
    if let Some(sub) = name.strip_prefix('.') {
        check_domain(sub).map_err(|(o, m)| (o + 1, m))?;
        return Ok(Entry::HeloSubdomain(sub.to_ascii_lowercase()));
    }
    if let Some(inner) = name.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return Err((
                name.len(),
                "address literal lacks its closing `]`".to_owned(),
            ));
        };
        let ip = inner
            .get(..5)
            .filter(|p| p.eq_ignore_ascii_case("ipv6:"))
            .map_or(inner, |_| &inner[5..]);
        if ip.parse::<IpAddr>().is_err() {
            return Err((1, format!("`{inner}` is not an IP address")));
        }
        return Ok(Entry::Helo(name.to_ascii_lowercase()));
    }
    check_domain(name)?;
    Ok(Entry::Helo(name.to_ascii_lowercase()))
}

/// Parses `ip` or `ip/len`; a network with host bits set is an error whose
/// hint names the network.
pub(crate) fn parse_net(text: &str) -> Result<IpNet, EntryError> {
    let (addr_text, len_text) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let Ok(addr) = addr_text.parse::<IpAddr>() else {
        return Err((0, format!("`{addr_text}` is not an IPv4 or IPv6 address")));
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match len_text {
        None => max,
        Some(l) => {
            let at = addr_text.len() + 1;
            let ok = !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit());
            match l.parse::<u8>() {
                Ok(p) if ok && p <= max => p,
                _ => {
                    return Err((
                        at,
                        format!("prefix length `{l}` is not a number from 0 to {max}"),
                    ))
                }
            }
        }
    };
    match IpNet::new(addr, prefix) {
        Some(net) => Ok(net),
        None => {
            let hint = IpNet::containing(addr, prefix)
                .map(|n| format!("; the network is {n}"))
                .unwrap_or_default();
            Err((0, format!("`{text}` has host bits set{hint}")))
        }
    }
}

/// Checks a domain name: labels of letters, digits, `-`, `_` (or non-ASCII),
/// 1 to 63 bytes each, 253 bytes in all.
pub(crate) fn check_domain(domain: &str) -> Result<(), EntryError> {
    if domain.is_empty() {
        return Err((0, "a domain name is missing".to_owned()));
    }
    if domain.len() > 253 {
        return Err((
            0,
            format!("domain is {} bytes; the limit is 253", domain.len()),
        ));
    }
    let mut start = 0;
    for label in domain.split('.') {
        if label.is_empty() {
            let what = if start == 0 {
                "starts with"
            } else {
                "has an empty label at"
            };
            return Err((start, format!("domain `{domain}` {what} `.`")));
        }
        if label.len() > 63 {
            return Err((
                start,
                format!("label is {} bytes; the limit is 63", label.len()),
            ));
        }
        for (i, c) in label.char_indices() {
            if !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || !c.is_ascii()) {
                return Err((start + i, format!("`{c}` is not allowed in a domain name")));
            }
        }
        start += label.len() + 1;
    }
    Ok(())
}

/// Checks a local part (at most 64 bytes, no spaces, controls or
/// `<>()[]\,;:"@`); `wildcard` allows one `*`.
pub(crate) fn check_local(local: &str, wildcard: bool) -> Result<(), EntryError> {
    if local.is_empty() {
        return Err((0, "the local part before `@` is empty".to_owned()));
    }
    if local.len() > 64 {
        return Err((
            0,
            format!("local part is {} bytes; the limit is 64", local.len()),
        ));
    }
    let mut stars = 0;
    for (i, c) in local.char_indices() {
        if c == '*' && wildcard {
            stars += 1;
            if stars > 1 {
                return Err((i, "only one `*` is allowed in the local part".to_owned()));
            }
            continue;
        }
        if c.is_control() || c.is_whitespace() || "<>()[]\\,;:\"@*".contains(c) {
            return Err((
                i,
                format!("`{}` is not allowed in an address", c.escape_default()),
            ));
        }
    }
    Ok(())
}

/// 1-based character column of byte `at` in `line`.
fn column(line: &str, at: usize) -> u32 {
    let mut at = at.min(line.len());
    while !line.is_char_boundary(at) {
        at -= 1;
    }
    u32::try_from(line[..at].chars().count() + 1).unwrap_or(u32::MAX)
}

/// Walks the entries of a list-format file: strips comments and blanks,
/// enforces `limits`, and calls `each(entry, origin)` for each entry. Errors of
/// `each` carry a byte offset into the entry; every error becomes a
/// diagnostic, and all lines are read (except past the entry limit).
pub(crate) fn scan_lines(
    file: &str,
    text: &str,
    limits: &ListLimits,
    mut each: impl FnMut(&str, Origin) -> Result<(), EntryError>,
) -> Vec<FileDiagnostic> {
    let file: Arc<str> = Arc::from(file);
    let mut diagnostics = Vec::new();
    let mut entries = 0usize;
    let at = |line_no: usize, line: &str, byte: usize| Origin {
        file: Arc::clone(&file),
        line: u32::try_from(line_no + 1).unwrap_or(u32::MAX),
        column: column(line, byte),
    };
    for (line_no, line) in text.lines().enumerate() {
        let line = if line_no == 0 {
            line.trim_start_matches('\u{feff}')
        } else {
            line
        };
        if line.len() > limits.line_bytes {
            diagnostics.push(FileDiagnostic {
                origin: at(line_no, line, limits.line_bytes),
                message: format!(
                    "line is {} bytes; the limit is {}",
                    line.len(),
                    limits.line_bytes
                ),
            });
            continue;
        }
        // A comment starts at a `#` that begins the line or follows whitespace
        // (`#` is legal inside an address).
        let bytes = line.as_bytes();
        let end = (0..bytes.len())
            .find(|&i| bytes[i] == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()))
            .unwrap_or(bytes.len());
        let content = &line[..end];
        let entry = content.trim();
        if entry.is_empty() {
            continue;
        }
        let start = content.len() - content.trim_start().len();
        if let Some(space) = entry.find(char::is_whitespace) {
            let second = space + (entry.len() - space - entry[space..].trim_start().len());
            diagnostics.push(FileDiagnostic {
                origin: at(line_no, line, start + second),
                message: format!(
                    "one entry per line; `{}` starts a second entry (comments start with ` #`)",
                    entry[second..]
                        .split(char::is_whitespace)
                        .next()
                        .unwrap_or_default()
                ),
            });
            continue;
        }
        if entry.len() > limits.entry_bytes {
            diagnostics.push(FileDiagnostic {
                origin: at(line_no, line, start + limits.entry_bytes),
                message: format!(
                    "entry is {} bytes; the limit is {}",
                    entry.len(),
                    limits.entry_bytes
                ),
            });
            continue;
        }
        if entries == limits.entries {
            diagnostics.push(FileDiagnostic {
                origin: at(line_no, line, start),
                message: format!(
                    "too many entries: the limit is {}; this line and the rest are ignored",
                    limits.entries
                ),
            });
            break;
        }
        match each(entry, at(line_no, line, start)) {
            Ok(()) => entries += 1,
            Err((offset, message)) => diagnostics.push(FileDiagnostic {
                origin: at(line_no, line, start + offset),
                message,
            }),
        }
    }
    diagnostics
}

/// Parses a whole list file: every valid entry with its origin, and every
/// error (file, line, column). Never panics.
#[must_use]
pub fn parse_list(file: &str, text: &str) -> (Vec<(Entry, Origin)>, Vec<FileDiagnostic>) {
    parse_list_with(file, text, &ListLimits::default())
}

/// [`parse_list`] with explicit bounds.
#[must_use]
pub fn parse_list_with(
    file: &str,
    text: &str,
    limits: &ListLimits,
) -> (Vec<(Entry, Origin)>, Vec<FileDiagnostic>) {
    let mut entries = Vec::new();
    let diagnostics = scan_lines(file, text, limits, |entry, origin| {
        entries.push((parse_entry_at(entry)?, origin));
        Ok(())
    });
    (entries, diagnostics)
}

impl FromIterator<(Entry, Origin)> for List {
    fn from_iter<I: IntoIterator<Item = (Entry, Origin)>>(iter: I) -> Self {
        let mut list = Self::new();
        for (entry, origin) in iter {
            list.push(entry, origin);
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_table_grows_and_finds() {
        let keys: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
        let mut t = IndexTable::default();
        for (i, k) in keys.iter().enumerate() {
            t.insert(fold_hash(&[k.as_bytes()]), i as u32);
        }
        for (i, k) in keys.iter().enumerate() {
            let found = t.find(fold_hash(&[k.as_bytes()]), |j| keys[j as usize] == *k);
            assert_eq!(found, Some(i as u32));
        }
        assert_eq!(t.find(fold_hash(&[b"nope"]), |_| true), None);
    }

    #[test]
    fn hash_folds_case_and_splits_parts() {
        assert_eq!(
            fold_hash(&[b"User@Example.COM"]),
            fold_hash(&[b"user@", b"example.com"])
        );
        assert_ne!(
            fold_hash(&[b"user@example.com"]),
            fold_hash(&[b"user@example.org"])
        );
        assert!(eq_parts(
            b"user@example.com",
            &[b"USER", b"@", b"Example.com"]
        ));
        assert!(!eq_parts(b"user@example.com", &[b"user", b"@example.co"]));
    }

    #[test]
    fn masks() {
        assert_eq!(mask4(0xc000_0201, 24), 0xc000_0200);
        assert_eq!(mask4(0xc000_0201, 0), 0);
        assert_eq!(mask6(u128::MAX, 1), 1u128 << 127);
    }
}
