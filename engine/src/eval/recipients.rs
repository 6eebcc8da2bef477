//! Accepted domains and valid recipients, checked at RCPT: an unknown
//! recipient of one of our domains is rejected with `550 5.1.1`.
//!
//! Entries: `user@example.com` (exact), `sales-*@example.com` (one `*` in the
//! local part: prefix and/or suffix wildcard), `*@example.com` (catch-all),
//! and in files `@example.com` (declare the domain, validated, no address
//! yet). Address extensions (`user+tag@`) match `user@` when the delimiter is
//! configured. Everything is compared ASCII case-insensitively.
//!
//! Memory: exact addresses live in one arena `String` (each key followed by a
//! `\n`) and an [`IndexTable`] of 8-byte slots holding the key's hash and its
//! arena offset, so a 1,000,000-address table costs about the addresses'
//! bytes plus 17 bytes each, and no allocation per entry. A lookup hashes the
//! local part, `@` and domain as separate pieces (folding case on the fly), so
//! it never allocates and costs one probe whatever the table size.

use memchr::memchr;

use super::facts::FileDiagnostic;
use super::lists::{
    check_domain, check_local, eq_parts, fold_hash, scan_lines, EntryError, IndexTable, ListLimits,
};

/// How a recipient was found valid; each variant carries the entry text (lower
/// case) for the decision's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match<'a> {
    /// The address is listed (`user@example.com`).
    Exact(&'a str),
    /// `user+tag@` matched the listed `user@example.com` (the entry).
    Extension(&'a str),
    /// A wildcard entry matched (`sales-*@example.com`).
    Wildcard(&'a str),
    /// The domain has a catch-all (`*@example.com`).
    CatchAll(&'a str),
    /// The domain is accepted without recipient validation (the domain).
    DomainNotValidated(&'a str),
}

impl<'a> Match<'a> {
    /// The entry (or domain) that made the recipient valid.
    #[must_use]
    pub fn entry(&self) -> &'a str {
        match *self {
            Self::Exact(e)
            | Self::Extension(e)
            | Self::Wildcard(e)
            | Self::CatchAll(e)
            | Self::DomainNotValidated(e) => e,
        }
    }
}

/// The answer for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientCheck<'a> {
    /// The domain is not one of ours (relay rules decide, not this table).
    NotOurDomain,
    /// A valid recipient, and why.
    Valid(Match<'a>),
    /// Our domain, no such recipient: reject with `550 5.1.1`.
    Unknown {
        /// The accepted domain (lower case).
        domain: &'a str,
    },
}

#[derive(Debug)]
struct Wildcard {
    /// `pre*suf@domain`, lower case.
    text: Box<str>,
    /// Length of `pre`.
    prefix: usize,
    /// Length of `suf`.
    suffix: usize,
}

impl Wildcard {
    fn matches(&self, local: &str) -> bool {
        let text = self.text.as_bytes();
        let local = local.as_bytes();
        let (Some(pre), Some(suf)) = (
            text.get(..self.prefix),
            text.get(self.prefix + 1..self.prefix + 1 + self.suffix),
        ) else {
            return false;
        };
        local.len() >= pre.len() + suf.len()
            && local[..pre.len()].eq_ignore_ascii_case(pre)
            && local[local.len() - suf.len()..].eq_ignore_ascii_case(suf)
    }
}

#[derive(Debug)]
struct Domain {
    name: Box<str>,
    validate: bool,
    catch_all: Option<Box<str>>,
    /// Most literal characters first, so the most specific pattern wins.
    wildcards: Vec<Wildcard>,
}

/// The recipient table: accepted domains, each validated or not, with its
/// exact addresses, wildcards and catch-all. `Send + Sync`; built once per
/// reload, then only read.
#[derive(Debug, Default)]
pub struct Recipients {
    delimiters: Box<[u8]>,
    domains: Vec<Domain>,
    domain_table: IndexTable,
    /// Exact addresses, each followed by `\n`.
    arena: String,
    addresses: IndexTable,
    len: usize,
}

impl Recipients {
    /// An empty table; `extension_delimiters` are the ASCII characters that
    /// start an address extension (`"+"`, `"+-"`; `""` for none).
    #[must_use]
    pub fn new(extension_delimiters: &str) -> Self {
        Self {
            delimiters: extension_delimiters.bytes().filter(u8::is_ascii).collect(),
            ..Self::default()
        }
    }

    fn find_domain(&self, domain: &str) -> Option<u32> {
        self.domain_table
            .find(fold_hash(&[domain.as_bytes()]), |i| {
                self.domains
                    .get(i as usize)
                    .is_some_and(|d| d.name.eq_ignore_ascii_case(domain))
            })
    }

    fn domain_mut(&mut self, domain: &str, validate: bool) -> Option<&mut Domain> {
        let index = match self.find_domain(domain) {
            Some(i) => i,
            None => {
                let i = u32::try_from(self.domains.len())
                    .ok()
                    .filter(|&i| i < u32::MAX)?;
                self.domains.push(Domain {
                    name: domain.to_ascii_lowercase().into_boxed_str(),
                    validate,
                    catch_all: None,
                    wildcards: Vec::new(),
                });
                self.domain_table.insert(fold_hash(&[domain.as_bytes()]), i);
                i
            }
        };
        self.domains.get_mut(index as usize)
    }

    /// Accepts `domain`; `validate: false` makes every address of it valid.
    /// Adding a domain again updates its `validate` flag.
    pub fn add_domain(&mut self, domain: &str, validate: bool) {
        if let Some(d) = self.domain_mut(domain, validate) {
            d.validate = validate;
        }
    }

    /// The key text of the arena entry at `offset`.
    fn key_at(&self, offset: u32) -> &str {
        let rest = self.arena.get(offset as usize..).unwrap_or_default();
        rest.get(..memchr(b'\n', rest.as_bytes()).unwrap_or(rest.len()))
            .unwrap_or_default()
    }

    fn find_address(&self, local: &str, domain: &str) -> Option<&str> {
        let parts: [&[u8]; 3] = [local.as_bytes(), b"@", domain.as_bytes()];
        let offset = self.addresses.find(fold_hash(&parts), |offset| {
            let rest = self
                .arena
                .as_bytes()
                .get(offset as usize..)
                .unwrap_or_default();
            let total = local.len() + 1 + domain.len();
            rest.get(total) == Some(&b'\n')
                && rest.get(..total).is_some_and(|key| eq_parts(key, &parts))
        })?;
        Some(self.key_at(offset))
    }

    /// Adds `user@example.com`, `*@example.com` (catch-all) or
    /// `sales-*@example.com` (one `*` in the local part). Adding an address of
    /// a domain not yet added adds the domain with `validate = true`. Err:
    /// text for a diagnostic.
    pub fn add(&mut self, entry: &str) -> Result<(), String> {
        self.add_at(entry).map_err(|(_, message)| message)
    }

    fn add_at(&mut self, entry: &str) -> Result<(), EntryError> {
        let Some(at) = entry.rfind('@') else {
            return Err((
                0,
                format!(
                    "`{entry}` is not an address; write `user@domain`, `*@domain` or `@domain`"
                ),
            ));
        };
        let (local, domain) = (&entry[..at], &entry[at + 1..]);
        check_domain(domain).map_err(|(o, m)| (o + at + 1, m))?;
        if local.is_empty() {
            self.domain_mut(domain, true);
            return Ok(());
        }
        check_local(local, true)?;
        let lower = entry.to_ascii_lowercase();
        if let Some(star) = local.find('*') {
            let d = self
                .domain_mut(domain, true)
                .ok_or((0, "too many domains".to_owned()))?;
            if local == "*" {
                d.catch_all = Some(lower.into_boxed_str());
            } else if !d.wildcards.iter().any(|w| *w.text == *lower) {
                let w = Wildcard {
                    prefix: star,
                    suffix: local.len() - star - 1,
                    text: lower.into_boxed_str(),
                };
                let literal = w.prefix + w.suffix;
                let pos = d
                    .wildcards
                    .partition_point(|o| o.prefix + o.suffix >= literal);
                d.wildcards.insert(pos, w);
            }
            return Ok(());
        }
        if self.find_address(local, domain).is_some() {
            return Ok(());
        }
        let offset = u32::try_from(self.arena.len())
            .ok()
            .filter(|o| {
                o.checked_add(u32::try_from(lower.len() + 1).unwrap_or(u32::MAX))
                    .is_some()
            })
            .ok_or((0, "recipient table is full (4 GiB of addresses)".to_owned()))?;
        self.domain_mut(domain, true)
            .ok_or((0, "too many domains".to_owned()))?;
        self.addresses
            .insert(fold_hash(&[lower.as_bytes()]), offset);
        self.arena.push_str(&lower);
        self.arena.push('\n');
        self.len += 1;
        Ok(())
    }

    /// Reads a recipient file (list syntax: one entry per line, `#`
    /// comments), adding every valid entry; returns every error with file,
    /// line and column.
    pub fn parse_file(&mut self, file: &str, text: &str) -> Vec<FileDiagnostic> {
        self.parse_file_with(file, text, &ListLimits::default())
    }

    /// [`Self::parse_file`] with explicit bounds.
    pub fn parse_file_with(
        &mut self,
        file: &str,
        text: &str,
        limits: &ListLimits,
    ) -> Vec<FileDiagnostic> {
        scan_lines(file, text, limits, |entry, _| self.add_at(entry))
    }

    /// Decides one recipient (without angle brackets): exact address, then
    /// the address without its extension, wildcards (most literal characters
    /// first; the full local part, then without extension), catch-all.
    #[must_use]
    pub fn check(&self, recipient: &str) -> RecipientCheck<'_> {
        let Some(at) = recipient.rfind('@') else {
            return RecipientCheck::NotOurDomain;
        };
        let (local, domain) = (&recipient[..at], &recipient[at + 1..]);
        let Some(d) = self
            .find_domain(domain)
            .and_then(|i| self.domains.get(i as usize))
        else {
            return RecipientCheck::NotOurDomain;
        };
        if !d.validate {
            return RecipientCheck::Valid(Match::DomainNotValidated(&d.name));
        }
        if local.is_empty() {
            return RecipientCheck::Unknown { domain: &d.name };
        }
        if let Some(key) = self.find_address(local, domain) {
            return RecipientCheck::Valid(Match::Exact(key));
        }
        let base = local
            .bytes()
            .position(|b| self.delimiters.contains(&b))
            .filter(|&p| p > 0)
            .map(|p| &local[..p]);
        if let Some(key) = base.and_then(|b| self.find_address(b, domain)) {
            return RecipientCheck::Valid(Match::Extension(key));
        }
        for candidate in std::iter::once(local).chain(base) {
            if let Some(w) = d.wildcards.iter().find(|w| w.matches(candidate)) {
                return RecipientCheck::Valid(Match::Wildcard(&w.text));
            }
        }
        if let Some(c) = &d.catch_all {
            return RecipientCheck::Valid(Match::CatchAll(c));
        }
        RecipientCheck::Unknown { domain: &d.name }
    }

    /// Number of accepted domains.
    #[must_use]
    pub fn domains(&self) -> usize {
        self.domains.len()
    }

    /// Number of exact addresses (wildcards and catch-alls not counted).
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no exact addresses.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Approximate heap bytes held (arena, tables, domains).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        let domains: usize = self
            .domains
            .iter()
            .map(|d| {
                d.name.len()
                    + d.catch_all.as_ref().map_or(0, |c| c.len())
                    + d.wildcards.iter().map(|w| w.text.len()).sum::<usize>()
                    + d.wildcards.capacity() * std::mem::size_of::<Wildcard>()
            })
            .sum();
        self.arena.capacity()
            + self.addresses.heap_bytes()
            + self.domain_table.heap_bytes()
            + self.domains.capacity() * std::mem::size_of::<Domain>()
            + domains
    }
}
