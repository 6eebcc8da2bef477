//! Typed, compiled conditions and the per-decision view of the facts they read.
//!
//! Strings compare ASCII-case-insensitively: compile time lower-cases every
//! constant, evaluation folds the fact byte by byte (no allocation).

use std::net::IpAddr;

use regex::Regex;

use super::prefilter::Matches;
use crate::eval::{Code, Facts};

/// String-valued fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum StrField {
    ClientName,
    Helo,
    Sender,
    SenderDomain,
    SenderLocal,
    Recipient,
    RecipientDomain,
    RecipientLocal,
    SaslUser,
}

/// Two-letter code fields (unknown when GeoIP has no answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum CodeField {
    Country,
    Continent,
}

/// Integer fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IntField {
    RecipientCount,
    MessageCount,
    Hour,
    Minute,
    Weekday,
}

/// Boolean fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BoolField {
    Authenticated,
    Tls,
    NullSender,
}

/// A field with its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Ip,
    Str(StrField),
    Code(CodeField),
    Int(IntField),
    Bool(BoolField),
}

/// Every field by name, in documentation order.
pub(super) const FIELDS: [(&str, Field); 20] = [
    ("client_ip", Field::Ip),
    ("client_name", Field::Str(StrField::ClientName)),
    ("country", Field::Code(CodeField::Country)),
    ("continent", Field::Code(CodeField::Continent)),
    ("helo", Field::Str(StrField::Helo)),
    ("sender", Field::Str(StrField::Sender)),
    ("sender_domain", Field::Str(StrField::SenderDomain)),
    ("sender_local", Field::Str(StrField::SenderLocal)),
    ("recipient", Field::Str(StrField::Recipient)),
    ("recipient_domain", Field::Str(StrField::RecipientDomain)),
    ("recipient_local", Field::Str(StrField::RecipientLocal)),
    ("sasl_user", Field::Str(StrField::SaslUser)),
    ("recipient_count", Field::Int(IntField::RecipientCount)),
    ("message_count", Field::Int(IntField::MessageCount)),
    ("hour", Field::Int(IntField::Hour)),
    ("minute", Field::Int(IntField::Minute)),
    ("weekday", Field::Int(IntField::Weekday)),
    ("authenticated", Field::Bool(BoolField::Authenticated)),
    ("tls", Field::Bool(BoolField::Tls)),
    ("null_sender", Field::Bool(BoolField::NullSender)),
];

/// An IP network (an address is a full-length prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Net {
    pub(super) fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let diff = u32::from(net) ^ u32::from(ip);
                self.prefix == 0 || diff >> (32 - u32::from(self.prefix.min(32))) == 0
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let diff = u128::from(net) ^ u128::from(ip);
                self.prefix == 0 || diff >> (128 - u32::from(self.prefix.min(128))) == 0
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) compare as IPv4.
pub(super) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Integer comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A test on a string field; constants are lower-cased.
#[derive(Debug, Clone)]
pub(super) enum StrTest {
    Eq(Box<str>),
    /// Sorted and deduplicated.
    In(Box<[Box<str>]>),
    /// A regex and its slot: its number among the distinct regexes of its
    /// field, assigned after checking (see `prefilter`).
    Match(Regex, u32),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Contains(Box<str>),
}

/// A test on a code field (false when the code is unknown).
#[derive(Debug, Clone)]
pub(super) enum CodeTest {
    Eq(Code),
    Ne(Code),
    In(Box<[Code]>),
}

/// A test on `client_ip` (false when the address is unknown).
#[derive(Debug, Clone)]
pub(super) enum IpTest {
    Eq(IpAddr),
    Ne(IpAddr),
    In(Box<[Net]>),
}

/// A test on an integer field.
#[derive(Debug, Clone)]
pub(super) enum IntTest {
    Cmp(Cmp, u32),
    In(Box<[u32]>),
}

/// A compiled condition.
#[derive(Debug, Clone)]
pub(super) enum Expr {
    Const(bool),
    And(Box<[Expr]>),
    Or(Box<[Expr]>),
    Not(Box<Expr>),
    Bool(BoolField, bool),
    Str(StrField, StrTest),
    Code(CodeField, CodeTest),
    Ip(IpTest),
    Int(IntField, IntTest),
}

/// The facts as the rules see them: split addresses, local time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Subject<'a> {
    facts: &'a Facts<'a>,
    client_ip: Option<IpAddr>,
    sender: (&'a str, &'a str),
    recipient: (&'a str, &'a str),
    hour: u32,
    minute: u32,
    weekday: u32,
}

/// `local@domain` split at the last `@`; without one, all of it is local.
fn split_address(address: &str) -> (&str, &str) {
    address.rsplit_once('@').unwrap_or((address, ""))
}

/// Local hour (0-23), minute (0-59) and ISO weekday (1 = Monday .. 7 = Sunday).
pub(super) fn local_time(unix_time: u64, utc_offset_minutes: i16) -> (u32, u32, u32) {
    let local = i64::try_from(unix_time)
        .unwrap_or(i64::MAX)
        .saturating_add(i64::from(utc_offset_minutes) * 60);
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    // 1970-01-01 was a Thursday (ISO day 4).
    let weekday = (days + 3).rem_euclid(7) + 1;
    let clamp = |v: i64| u32::try_from(v).unwrap_or(0);
    (clamp(secs / 3600), clamp(secs % 3600 / 60), clamp(weekday))
}

impl<'a> Subject<'a> {
    pub(super) fn new(facts: &'a Facts<'a>) -> Self {
        let (hour, minute, weekday) = local_time(facts.unix_time, facts.utc_offset_minutes);
        Self {
            facts,
            client_ip: facts.client_ip.map(canonical_ip),
            sender: split_address(facts.sender),
            recipient: split_address(facts.recipient),
            hour,
            minute,
            weekday,
        }
    }

    pub(super) fn str(&self, field: StrField) -> &'a str {
        match field {
            StrField::ClientName => self.facts.client_name,
            StrField::Helo => self.facts.helo,
            StrField::Sender => self.facts.sender,
            StrField::SenderLocal => self.sender.0,
            StrField::SenderDomain => self.sender.1,
            StrField::Recipient => self.facts.recipient,
            StrField::RecipientLocal => self.recipient.0,
            StrField::RecipientDomain => self.recipient.1,
            StrField::SaslUser => self.facts.sasl_user,
        }
    }

    /// The client address, IPv4-mapped addresses as IPv4.
    pub(super) fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }

    pub(super) fn code(&self, field: CodeField) -> Option<Code> {
        match field {
            CodeField::Country => self.facts.country,
            CodeField::Continent => self.facts.continent,
        }
    }

    fn int(&self, field: IntField) -> u32 {
        match field {
            IntField::RecipientCount => self.facts.recipient_count,
            IntField::MessageCount => self.facts.message_count,
            IntField::Hour => self.hour,
            IntField::Minute => self.minute,
            IntField::Weekday => self.weekday,
        }
    }

    fn bool(&self, field: BoolField) -> bool {
        match field {
            BoolField::Authenticated => !self.facts.sasl_user.is_empty(),
            BoolField::Tls => self.facts.tls,
            BoolField::NullSender => self.facts.sender.is_empty(),
        }
    }
}

/// Compares `value` folded to lower case with an already lower-case `key`.
fn cmp_folded(value: &str, key: &str) -> std::cmp::Ordering {
    value
        .bytes()
        .map(|b| b.to_ascii_lowercase())
        .cmp(key.bytes())
}

fn contains_folded(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

impl StrTest {
    fn eval(&self, value: &str) -> bool {
        let bytes = value.as_bytes();
        match self {
            StrTest::Eq(key) => value.eq_ignore_ascii_case(key),
            StrTest::In(keys) => keys
                .binary_search_by(|k| cmp_folded(value, k).reverse())
                .is_ok(),
            StrTest::Match(re, _) => re.is_match(value),
            StrTest::StartsWith(p) => {
                bytes.len() >= p.len() && bytes[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            }
            StrTest::EndsWith(s) => {
                bytes.len() >= s.len()
                    && bytes[bytes.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
            StrTest::Contains(n) => contains_folded(value, n),
        }
    }
}

impl Expr {
    /// Evaluates the condition; recursion is bounded by the parser's depth
    /// limit.
    pub(super) fn eval(&self, s: &Subject<'_>) -> bool {
        match self {
            Expr::Const(b) => *b,
            Expr::And(items) => items.iter().all(|e| e.eval(s)),
            Expr::Or(items) => items.iter().any(|e| e.eval(s)),
            Expr::Not(inner) => !inner.eval(s),
            Expr::Bool(field, want) => s.bool(*field) == *want,
            Expr::Str(field, test) => test.eval(s.str(*field)),
            Expr::Code(field, test) => match (s.code(*field), test) {
                (None, _) => false,
                (Some(c), CodeTest::Eq(want)) => c == *want,
                (Some(c), CodeTest::Ne(want)) => c != *want,
                (Some(c), CodeTest::In(set)) => set.contains(&c),
            },
            Expr::Ip(test) => match (s.client_ip, test) {
                (None, _) => false,
                (Some(ip), IpTest::Eq(want)) => ip == *want,
                (Some(ip), IpTest::Ne(want)) => ip != *want,
                (Some(ip), IpTest::In(nets)) => nets.iter().any(|n| n.contains(ip)),
            },
            Expr::Int(field, test) => {
                let v = s.int(*field);
                match test {
                    IntTest::Cmp(Cmp::Eq, k) => v == *k,
                    IntTest::Cmp(Cmp::Ne, k) => v != *k,
                    IntTest::Cmp(Cmp::Lt, k) => v < *k,
                    IntTest::Cmp(Cmp::Le, k) => v <= *k,
                    IntTest::Cmp(Cmp::Gt, k) => v > *k,
                    IntTest::Cmp(Cmp::Ge, k) => v >= *k,
                    IntTest::In(set) => set.contains(&v),
                }
            }
        }
    }

    /// Evaluates the condition as [`Expr::eval`] does, but answers regex
    /// tests from the per-decision regex set matches in `m`.
    pub(super) fn eval_fast(&self, s: &Subject<'_>, m: &mut Matches<'_>) -> bool {
        match self {
            Expr::And(items) => items.iter().all(|e| e.eval_fast(s, m)),
            Expr::Or(items) => items.iter().any(|e| e.eval_fast(s, m)),
            Expr::Not(inner) => !inner.eval_fast(s, m),
            Expr::Str(field, StrTest::Match(_, slot)) => m.is_match(*field, *slot, s),
            leaf => leaf.eval(s),
        }
    }

    /// Calls `visit` on every regex test with its field and slot.
    pub(super) fn for_each_regex_mut(
        &mut self,
        visit: &mut impl FnMut(StrField, &Regex, &mut u32),
    ) {
        match self {
            Expr::And(items) | Expr::Or(items) => {
                items.iter_mut().for_each(|e| e.for_each_regex_mut(visit));
            }
            Expr::Not(inner) => inner.for_each_regex_mut(visit),
            Expr::Str(field, StrTest::Match(re, slot)) => visit(*field, re, slot),
            _ => {}
        }
    }

    /// Calls `visit` on every field test (for [`super::Needs`]).
    pub(super) fn for_each_field(&self, visit: &mut impl FnMut(Field)) {
        match self {
            Expr::Const(_) => {}
            Expr::And(items) | Expr::Or(items) => {
                items.iter().for_each(|e| e.for_each_field(visit));
            }
            Expr::Not(inner) => inner.for_each_field(visit),
            Expr::Bool(f, _) => visit(Field::Bool(*f)),
            Expr::Str(f, _) => visit(Field::Str(*f)),
            Expr::Code(f, _) => visit(Field::Code(*f)),
            Expr::Ip(_) => visit(Field::Ip),
            Expr::Int(f, _) => visit(Field::Int(*f)),
        }
    }
}
