//! Rate limits: GCRA token buckets in one table of atomics shared by all
//! shards.
//!
//! - A [`Limit`] names key parts ([`KeyPart`], combinations allowed) and one or
//!   more [`Window`]s (`100/1m`, `2000/1h`). A request is admitted only when
//!   every window of every applicable limit admits it; when one refuses, the
//!   windows already counted for that request are refunded, so a refused
//!   request costs nothing.
//! - [`RateTable`] is a fixed-capacity, power-of-two, open-addressing table of
//!   slots, each two `AtomicU64`s: the key's 64-bit hash (0 = empty) and the
//!   bucket state (an 8-bit slot generation and the theoretical arrival time,
//!   TAT). One compare-and-swap admits; no lock, exact under contention.
//! - Bucket identity is `hash(seed, limit name, rendered key, window)`, so
//!   state lives in the table and survives building a new [`Limits`] (a config
//!   reload) as long as a limit keeps its name and windows.
//! - The engine has no clock: the caller passes `now_ms` (Unix milliseconds).
//! - Cluster-wide sharing: a table built with [`RateTable::for_cluster`] also
//!   counts, per bucket, the events admitted since the control plane last
//!   took them ([`RateTable::take_deltas`]); the control plane reconciles
//!   them through Redis and raises local buckets with [`RateTable::merge`].
//!
//! `docs/RATELIMIT.md` explains the design, sizing, eviction and the error
//! bound of cluster-wide sharing.
//!
//! # Arithmetic
//! Times are fixed point with [`FRAC_BITS`] fractional bits (1/4096 ms) so that
//! windows such as `7/1s` are exact. For a window of `count` per `period` the
//! emission interval is `T = ceil(period / count)` and the burst span
//! `count × T`: a full bucket admits exactly `count` events at one instant, and
//! the sustained rate is never above `count / period`. `now` is clamped to
//! [`NOW_MS_MAX`] (year 2248) and every step saturates, so no input (a clock
//! that goes backwards, `u64::MAX`) overflows or goes below zero.

use std::fmt;

use std::hint::spin_loop;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::eval::Facts;
use crate::verdict::SmtpText;

/// Slots probed from a key's home slot before the probe window counts as full.
pub const PROBE: usize = 16;
/// Default table capacity (slots): 16 bytes each (32 in a cluster table),
/// 16 MiB in all.
pub const DEFAULT_CAPACITY: usize = 1 << 20;
/// Largest table capacity accepted by [`RateTable::with_capacity`].
pub const CAPACITY_MAX: usize = 1 << 30;
/// Fractional bits of the fixed-point times in a bucket (1/4096 ms).
pub const FRAC_BITS: u32 = 12;
/// Times beyond this (ms since the Unix epoch, year 2248) are clamped to it.
pub const NOW_MS_MAX: u64 = (1 << 43) - 1;
/// Largest `count` of a parsed window.
pub const COUNT_MAX: u32 = 1_000_000;
/// Longest parsed window period: 31 days.
pub const PERIOD_MS_MAX: u64 = 31 * DAY_MS;
/// Shortest parsed window period: one second.
pub const PERIOD_MS_MIN: u64 = 1_000;

const DAY_MS: u64 = 86_400_000;
/// Longest period the arithmetic accepts for a hand-built [`Window`] (49 days).
const GCRA_PERIOD_MS_MAX: u64 = 1 << 32;
const TAT_BITS: u32 = 56;
const TAT_MASK: u64 = (1 << TAT_BITS) - 1;
/// TAT value marking a slot being handed to another key.
const BUSY: u64 = TAT_MASK;
const GEN_MASK: u64 = 0xff;
/// Spins on a busy slot before failing open.
const SPIN_MAX: u32 = 1 << 12;
/// Attempts to find or claim a slot before failing open.
const LOCATE_TRIES: usize = 8;

// ---------------------------------------------------------------------------
// Windows and GCRA arithmetic

/// `count` events per `period_ms`, e.g. `100/1m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Events admitted per period (and in one burst).
    pub count: u32,
    /// The period in milliseconds.
    pub period_ms: u64,
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.period_ms;
        for (unit, ms) in [("d", DAY_MS), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
            if p > 0 && p.is_multiple_of(ms) {
                return write!(f, "{}/{}{unit}", self.count, p / ms);
            }
        }
        write!(f, "{}/{p}ms", self.count)
    }
}

/// Parses `COUNT/PERIOD`: `100/1m`, `5/30s`, `2000/1h`, `10000/1d` (units
/// `ms`, `s`, `m`, `h`, `d`; `100/m` means `100/1m`). Periods run from 1 s to
/// 31 d, counts from 1 to [`COUNT_MAX`], and at most 1000 per second.
pub fn parse_window(text: &str) -> Result<Window, String> {
    let text = text.trim();
    let Some((count, period)) = text.split_once('/') else {
        return Err(format!(
            "rate `{text}` should be COUNT/PERIOD, e.g. `100/1m` or `2000/1h`"
        ));
    };
    let count: u32 = match count.trim().parse() {
        Ok(0) => return Err(format!("rate `{text}`: the count must be at least 1")),
        Ok(n) if n > COUNT_MAX => {
            return Err(format!(
                "rate `{text}`: the count is above {COUNT_MAX}; use a longer period"
            ))
        }
        Ok(n) => n,
        Err(_) => {
            return Err(format!(
                "rate `{text}`: `{}` is not a whole number of events",
                count.trim()
            ))
        }
    };
    let period = period.trim();
    let digits = period.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = period.split_at(digits);
    let number: u64 = if number.is_empty() {
        1
    } else {
        number
            .parse()
            .map_err(|_| format!("rate `{text}`: period `{period}` is too large"))?
    };
    let unit_ms = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => DAY_MS,
        other => {
            let hint = match other {
                "sec" | "secs" | "second" | "seconds" => "; did you mean `s`?",
                "min" | "mins" | "minute" | "minutes" => "; did you mean `m`?",
                "hour" | "hours" | "hr" => "; did you mean `h`?",
                "day" | "days" => "; did you mean `d`?",
                _ => "",
            };
            return Err(format!(
                "rate `{text}`: unknown period unit `{other}` (use ms, s, m, h or d){hint}"
            ));
        }
    };
    let period_ms = number.saturating_mul(unit_ms);
    if period_ms < PERIOD_MS_MIN {
        return Err(format!("rate `{text}`: the period must be at least 1s"));
    }
    if period_ms > PERIOD_MS_MAX {
        return Err(format!("rate `{text}`: the period must be at most 31d"));
    }
    if u64::from(count) > period_ms {
        return Err(format!(
            "rate `{text}` is more than 1000 per second; mail rate limits need far less"
        ));
    }
    Ok(Window { count, period_ms })
}

/// One window as GCRA parameters, in fixed point (1/4096 ms): the pure bucket
/// arithmetic, exposed for tests and tools. A bucket's state is its
/// theoretical arrival time (TAT) in the same units; TAT ≤ now is a full
/// bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    emission: u64,
    span: u64,
    count: u32,
}

/// `now_ms` in bucket units, clamped to [`NOW_MS_MAX`].
#[must_use]
pub fn now_fixed(now_ms: u64) -> u64 {
    now_ms.min(NOW_MS_MAX) << FRAC_BITS
}

fn fixed_to_ms_ceil(x: u64) -> u64 {
    (x >> FRAC_BITS) + u64::from(x & ((1 << FRAC_BITS) - 1) != 0)
}

impl Gcra {
    /// Compiles a window. Out-of-range hand-built windows are clamped (count
    /// at least 1, period 1 ms to 49 days) instead of failing.
    #[must_use]
    pub fn new(window: Window) -> Self {
        let count = window.count.max(1);
        let period = window.period_ms.clamp(1, GCRA_PERIOD_MS_MAX) << FRAC_BITS;
        let emission = period.div_ceil(u64::from(count));
        Self {
            emission,
            span: emission.saturating_mul(u64::from(count)),
            count,
        }
    }

    /// Emission interval `T` (bucket units per event).
    #[must_use]
    pub fn emission(&self) -> u64 {
        self.emission
    }

    /// Burst span `count × T` (bucket units).
    #[must_use]
    pub fn span(&self) -> u64 {
        self.span
    }

    /// One event at `now_ms` on a bucket with `tat`: the new TAT when
    /// admitted, else the milliseconds until it would be.
    pub fn admit(&self, tat: u64, now_ms: u64) -> Result<u64, u64> {
        let now = now_fixed(now_ms);
        let next = tat.max(now).saturating_add(self.emission);
        let ahead = next - now;
        if ahead <= self.span {
            Ok(next)
        } else {
            Err(fixed_to_ms_ceil(ahead - self.span))
        }
    }

    /// Undoes one admitted event.
    #[must_use]
    pub fn refund(&self, tat: u64) -> u64 {
        tat.saturating_sub(self.emission)
    }

    /// Events the bucket would admit at `now_ms`.
    #[must_use]
    pub fn remaining(&self, tat: u64, now_ms: u64) -> u32 {
        let debt = tat.saturating_sub(now_fixed(now_ms));
        let free = self.span.saturating_sub(debt) / self.emission;
        u32::try_from(free).unwrap_or(u32::MAX).min(self.count)
    }

    /// Milliseconds until the bucket admits one event (0 when it does now).
    #[must_use]
    pub fn retry_after_ms(&self, tat: u64, now_ms: u64) -> u64 {
        self.admit(tat, now_ms).err().unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------
// Key parts

/// One part of a limit's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPart {
    /// `client_ip`: the client address.
    ClientIp,
    /// `client_ip/V4` or `client_ip/V4/V6`: the client's network, IPv4 prefix
    /// `v4` and IPv6 prefix `v6` (64 unless written).
    ClientNet {
        /// IPv4 prefix length, 0..=32.
        v4: u8,
        /// IPv6 prefix length, 0..=128.
        v6: u8,
    },
    /// `sender`: the envelope sender address (not the null sender).
    Sender,
    /// `sender_domain`: the part of the sender after the last `@`.
    SenderDomain,
    /// `recipient`: the recipient address (counted per recipient).
    Recipient,
    /// `recipient_domain`: the recipient's domain (counted per recipient).
    RecipientDomain,
    /// `sasl_user`: the SASL login name.
    SaslUser,
    /// `helo`: the HELO/EHLO name.
    Helo,
}

const PART_NAMES: [&str; 9] = [
    "client_ip",
    "client_ip/24",
    "client_ip/24/64",
    "sender",
    "sender_domain",
    "recipient",
    "recipient_domain",
    "sasl_user",
    "helo",
];

impl KeyPart {
    /// Whether the part names the recipient (the limit is counted per
    /// recipient).
    #[must_use]
    pub fn is_per_recipient(&self) -> bool {
        matches!(self, Self::Recipient | Self::RecipientDomain)
    }

    fn simple_name(&self) -> &'static str {
        match self {
            Self::ClientIp | Self::ClientNet { .. } => "client_ip",
            Self::Sender => "sender",
            Self::SenderDomain => "sender_domain",
            Self::Recipient => "recipient",
            Self::RecipientDomain => "recipient_domain",
            Self::SaslUser => "sasl_user",
            Self::Helo => "helo",
        }
    }
}

impl fmt::Display for KeyPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientNet { v4, v6: 64 } => write!(f, "client_ip/{v4}"),
            Self::ClientNet { v4, v6 } => write!(f, "client_ip/{v4}/{v6}"),
            other => f.write_str(other.simple_name()),
        }
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = (up + 1).min(row[j] + 1).min(diag + usize::from(ca != *cb));
            diag = up;
        }
    }
    row[b.len()]
}

/// Parses a key part: `client_ip`, `client_ip/24` (IPv4 /24, IPv6 /64),
/// `client_ip/24/56` (IPv4 /24, IPv6 /56), `sender`, `sender_domain`,
/// `recipient`, `recipient_domain`, `sasl_user`, `helo`. Unknown names get a
/// "did you mean" hint.
pub fn parse_key_part(text: &str) -> Result<KeyPart, String> {
    let text = text.trim();
    if let Some(prefixes) = text.strip_prefix("client_ip/") {
        let (v4, v6) = match prefixes.split_once('/') {
            Some((v4, v6)) => (v4, Some(v6)),
            None => (prefixes, None),
        };
        let v4: u8 = match v4.parse() {
            Ok(n) if n <= 32 => n,
            Ok(n) if n <= 128 => {
                return Err(format!(
                    "key part `{text}`: IPv4 prefix {n} is above 32; for an IPv6 prefix \
                     write both, e.g. `client_ip/24/{n}`"
                ))
            }
            _ => {
                return Err(format!(
                    "key part `{text}`: `{v4}` is not an IPv4 prefix length 0..=32"
                ))
            }
        };
        let v6: u8 = match v6.map(str::parse::<u8>) {
            None => 64,
            Some(Ok(n)) if n <= 128 => n,
            Some(_) => {
                return Err(format!(
                    "key part `{text}`: the IPv6 prefix must be a length 0..=128"
                ))
            }
        };
        return Ok(KeyPart::ClientNet { v4, v6 });
    }
    let part = match text {
        "client_ip" => KeyPart::ClientIp,
        "sender" => KeyPart::Sender,
        "sender_domain" => KeyPart::SenderDomain,
        "recipient" => KeyPart::Recipient,
        "recipient_domain" => KeyPart::RecipientDomain,
        "sasl_user" => KeyPart::SaslUser,
        "helo" => KeyPart::Helo,
        _ => return Err(unknown_part(text)),
    };
    Ok(part)
}

fn unknown_part(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let alias = match lower.as_str() {
        "ip" | "client" | "client_address" | "client_addr" | "addr" | "address" => {
            Some("client_ip")
        }
        "net" | "network" | "subnet" | "client_net" => Some("client_ip/24"),
        "from" | "mail_from" | "envelope_from" | "mailfrom" => Some("sender"),
        "to" | "rcpt" | "rcpt_to" | "rcptto" => Some("recipient"),
        "domain" | "from_domain" => Some("sender_domain"),
        "rcpt_domain" | "to_domain" => Some("recipient_domain"),
        "sasl_username" | "user" | "login" | "username" | "auth" => Some("sasl_user"),
        "ehlo" | "helo_name" => Some("helo"),
        _ => None,
    };
    let best = alias.or_else(|| {
        PART_NAMES
            .iter()
            .map(|n| (edit_distance(&lower, n), *n))
            .filter(|(d, n)| *d <= 3.max(n.len() / 3))
            .min_by_key(|(d, _)| *d)
            .map(|(_, n)| n)
    });
    let hint = best
        .map(|n| format!("; did you mean `{n}`?"))
        .unwrap_or_default();
    format!(
        "unknown key part `{text}`{hint} (known: {})",
        PART_NAMES.join(", ")
    )
}

// ---------------------------------------------------------------------------
// Limits

/// Whether a limit is counted once per message or once per recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Once per message (at MAIL FROM or the first decision of a message).
    Message,
    /// Once per recipient (at each RCPT TO).
    Recipient,
}

/// One configured rate limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    /// Name, part of every bucket's identity (keep it to keep state on reload).
    pub name: String,
    /// Key parts, rendered in this order; empty is one bucket for all mail.
    pub key: Vec<KeyPart>,
    /// Windows; every one must admit.
    pub windows: Vec<Window>,
    /// Reply when over the limit; `None`: `450 4.7.1` with a retry hint. A
    /// `{retry}` in the text is replaced by the seconds to wait, otherwise
    /// `, try again in N s` is appended.
    pub reply: Option<SmtpText>,
    /// Where it was configured (config key path), for traces.
    pub origin: String,
}

impl Limit {
    /// [`Scope::Recipient`] when a key part names the recipient.
    #[must_use]
    pub fn scope(&self) -> Scope {
        if self.key.iter().any(KeyPart::is_per_recipient) {
            Scope::Recipient
        } else {
            Scope::Message
        }
    }
}

/// A request over a limit: which, for whom, and the SMTP answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    /// The limit's name.
    pub limit: String,
    /// The rendered key, e.g. `client_ip/24=192.0.2.0/24,sender=a@b.example`.
    pub key: String,
    /// The window that refused.
    pub window: Window,
    /// Milliseconds until that window admits one event.
    pub retry_after_ms: u64,
    /// `450 4.7.1 ... try again in N s` (or the limit's own reply).
    pub reply: SmtpText,
}

/// One bucket as `mbctl ratelimit show` prints it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BucketView {
    /// The limit's name.
    pub limit: String,
    /// The rendered key.
    pub key: String,
    /// The window, e.g. `100/1m`.
    pub window: String,
    /// Events it would admit now.
    pub remaining: u32,
    /// Milliseconds until it admits one event (0 when `remaining > 0`).
    pub retry_after_ms: u64,
}

#[derive(Debug)]
struct Compiled {
    limit: Limit,
    scope: Scope,
    gcras: Vec<Gcra>,
}

/// The configured limits, compiled; immutable and shared by all shards. The
/// bucket state lives in a [`RateTable`], so a new `Limits` (reload) keeps it.
#[derive(Debug, Default)]
pub struct Limits {
    limits: Vec<Compiled>,
}

/// What one request has counted so far, for refunds.
#[derive(Debug, Clone, Copy)]
struct Counted {
    slot: usize,
    key: u64,
    gen: u64,
    gcra: Gcra,
}

/// A small stack of counted buckets: inline for the usual few, then a `Vec`.
struct CountedList {
    inline: [Option<Counted>; 8],
    len: usize,
    spill: Vec<Counted>,
}

impl CountedList {
    fn new() -> Self {
        Self {
            inline: [None; 8],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, c: Counted) {
        if let Some(slot) = self.inline.get_mut(self.len) {
            *slot = Some(c);
            self.len += 1;
        } else {
            self.spill.push(c);
        }
    }

    fn refund_all(&self, table: &RateTable) {
        for c in self.inline.iter().flatten().chain(self.spill.iter()) {
            table.refund(c);
        }
    }
}

impl Limits {
    /// Compiles the limits (no validation: the config checker parses names,
    /// windows and key parts with [`parse_window`] and [`parse_key_part`]).
    #[must_use]
    pub fn new(limits: Vec<Limit>) -> Self {
        let limits = limits
            .into_iter()
            .map(|limit| Compiled {
                scope: limit.scope(),
                gcras: limit.windows.iter().map(|w| Gcra::new(*w)).collect(),
                limit,
            })
            .collect();
        Self { limits }
    }

    /// No limits configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// The limits, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Limit> {
        self.limits.iter().map(|c| &c.limit)
    }

    /// Whether any limit is counted at `scope` (a caller can skip the call).
    #[must_use]
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.limits.iter().any(|c| c.scope == scope)
    }

    /// Counts one event for every limit of `scope` that applies to `facts`;
    /// Err on the first limit over its rate (nothing counted for that request
    /// then). A limit whose key part is absent from `facts` (no SASL user, the
    /// null sender, no recipient yet) does not apply.
    pub fn check(
        &self,
        table: &RateTable,
        facts: &Facts<'_>,
        scope: Scope,
        now_ms: u64,
    ) -> Result<(), Exceeded> {
        let mut counted = CountedList::new();
        for c in self.limits.iter().filter(|c| c.scope == scope) {
            if !applies(&c.limit.key, facts) {
                continue;
            }
            let mut base = KeyHasher::new(table.seed);
            base.text(&c.limit.name);
            base.byte(0xff);
            render(&c.limit.key, facts, &mut base);
            for (window, gcra) in c.limit.windows.iter().zip(&c.gcras) {
                let key = slot_key(base, *window);
                match table.count(key, *window, gcra, now_ms) {
                    Count::Admitted { slot, gen } => counted.push(Counted {
                        slot,
                        key,
                        gen,
                        gcra: *gcra,
                    }),
                    Count::Open => {}
                    Count::Refused { retry_after_ms } => {
                        counted.refund_all(table);
                        return Err(exceeded(&c.limit, facts, *window, retry_after_ms));
                    }
                }
            }
        }
        Ok(())
    }

    /// For `mbctl ratelimit show KEY`: every bucket whose rendered key text
    /// equals `key` (or whose `name:key` equals it), without counting. Keys
    /// compare ASCII case-insensitively; buckets not in the table (never used,
    /// or reclaimed after they refilled) are full and not listed.
    pub fn show(&self, table: &RateTable, key: &str, now_ms: u64) -> Vec<BucketView> {
        let key = key.trim();
        let (only, text) = match key.split_once(':') {
            Some((name, rest)) if self.limits.iter().any(|c| c.limit.name == name) => {
                (Some(name), rest)
            }
            _ => (None, key),
        };
        let text = text.to_ascii_lowercase();
        let mut out = Vec::new();
        for c in &self.limits {
            if only.is_some_and(|n| n != c.limit.name) || !same_parts(&c.limit.key, &text) {
                continue;
            }
            let mut base = KeyHasher::new(table.seed);
            base.text(&c.limit.name);
            base.byte(0xff);
            base.text(&text);
            for (window, gcra) in c.limit.windows.iter().zip(&c.gcras) {
                if let Some(tat) = table.peek(slot_key(base, *window)) {
                    out.push(BucketView {
                        limit: c.limit.name.clone(),
                        key: text.clone(),
                        window: window.to_string(),
                        remaining: gcra.remaining(tat, now_ms),
                        retry_after_ms: gcra.retry_after_ms(tat, now_ms),
                    });
                }
            }
        }
        out
    }
}

/// Whether `text` names exactly the parts of `parts`, in order.
fn same_parts(parts: &[KeyPart], text: &str) -> bool {
    if text.is_empty() {
        return parts.is_empty();
    }
    let mut names = text.split(',').map(|p| p.split_once('=').map(|(n, _)| n));
    let mut scratch = String::new();
    for part in parts {
        scratch.clear();
        let _ = fmt::write(&mut scratch, format_args!("{part}"));
        match names.next() {
            Some(Some(name)) if name == scratch => {}
            _ => return false,
        }
    }
    names.next().is_none()
}

fn exceeded(limit: &Limit, facts: &Facts<'_>, window: Window, retry_after_ms: u64) -> Exceeded {
    let mut key = String::new();
    render(&limit.key, facts, &mut key);
    let secs = retry_after_ms.div_ceil(1000).max(1);
    let reply = match &limit.reply {
        Some(r) if r.text.contains("{retry}") => SmtpText {
            code: r.code,
            text: r.text.replace("{retry}", &secs.to_string()),
        },
        Some(r) => SmtpText {
            code: r.code,
            text: format!("{}, try again in {secs} s", r.text),
        },
        None => SmtpText {
            code: 450,
            text: format!("4.7.1 Rate limit exceeded, try again in {secs} s"),
        },
    };
    Exceeded {
        limit: limit.name.clone(),
        key,
        window,
        retry_after_ms,
        reply,
    }
}

// ---------------------------------------------------------------------------
// Rendering keys

/// Where a rendered key goes: the hasher (hot path) or a `String` (replies,
/// `show`). Both receive exactly the same bytes.
trait Sink: fmt::Write {
    fn text(&mut self, s: &str);
    fn lower(&mut self, s: &str);
}

impl Sink for String {
    fn text(&mut self, s: &str) {
        self.push_str(s);
    }
    fn lower(&mut self, s: &str) {
        self.extend(s.chars().map(|c| c.to_ascii_lowercase()));
    }
}

fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The part's value in `facts`; empty when absent.
fn value<'a>(part: KeyPart, facts: &Facts<'a>) -> &'a str {
    match part {
        KeyPart::ClientIp | KeyPart::ClientNet { .. } => {
            if facts.client_ip.is_some() {
                "ip"
            } else {
                ""
            }
        }
        KeyPart::Sender => facts.sender,
        KeyPart::SenderDomain => domain_of(facts.sender),
        KeyPart::Recipient => facts.recipient,
        KeyPart::RecipientDomain => domain_of(facts.recipient),
        KeyPart::SaslUser => facts.sasl_user,
        KeyPart::Helo => facts.helo,
    }
}

fn applies(parts: &[KeyPart], facts: &Facts<'_>) -> bool {
    parts.iter().all(|p| !value(*p, facts).is_empty())
}

/// Renders `name=value` pairs joined by `,`; call after [`applies`].
fn render(parts: &[KeyPart], facts: &Facts<'_>, sink: &mut impl Sink) {
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            sink.text(",");
        }
        match *part {
            KeyPart::ClientIp => {
                if let Some(ip) = facts.client_ip {
                    let _ = write!(sink, "client_ip={}", canonical_ip(ip));
                }
            }
            KeyPart::ClientNet { v4, v6 } => {
                let _ = write!(sink, "{part}=");
                match facts.client_ip.map(canonical_ip) {
                    Some(IpAddr::V4(ip)) => {
                        let mask = u32::MAX.checked_shl(32 - u32::from(v4.min(32)));
                        let net = std::net::Ipv4Addr::from(u32::from(ip) & mask.unwrap_or(0));
                        let _ = write!(sink, "{net}/{v4}");
                    }
                    Some(IpAddr::V6(ip)) => {
                        let mask = u128::MAX.checked_shl(128 - u32::from(v6.min(128)));
                        let net = std::net::Ipv6Addr::from(u128::from(ip) & mask.unwrap_or(0));
                        let _ = write!(sink, "{net}/{v6}");
                    }
                    None => {}
                }
            }
            other => {
                sink.text(other.simple_name());
                sink.text("=");
                sink.lower(value(other, facts));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Stable keyed hash

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;
const P3: u64 = 0x5899_65cc_7537_4cc3;

fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// A streaming 64-bit hash (wyhash-style multiply-fold, 8 bytes per step),
/// the same on every platform and for every split of its input, keyed by the
/// table's seed.
#[derive(Debug, Clone, Copy)]
struct KeyHasher {
    acc: u64,
    buf: u64,
    fill: u32,
    len: u64,
}

impl KeyHasher {
    fn new(seed: u64) -> Self {
        Self {
            acc: mum(seed ^ P0, P1),
            buf: 0,
            fill: 0,
            len: 0,
        }
    }

    fn absorb(&mut self, word: u64) {
        self.acc = mum(self.acc ^ word ^ P2, P1);
    }

    fn byte(&mut self, b: u8) {
        self.buf |= u64::from(b) << (8 * self.fill);
        self.fill += 1;
        self.len += 1;
        if self.fill == 8 {
            let w = self.buf;
            self.absorb(w);
            self.buf = 0;
            self.fill = 0;
        }
    }

    fn bytes(&mut self, mut bytes: &[u8]) {
        while self.fill != 0 {
            let Some((&b, rest)) = bytes.split_first() else {
                return;
            };
            self.byte(b);
            bytes = rest;
        }
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            self.absorb(u64::from_le_bytes(w));
            self.len += 8;
        }
        for &b in chunks.remainder() {
            self.byte(b);
        }
    }

    fn finish(mut self) -> u64 {
        if self.fill > 0 {
            let w = self.buf;
            self.absorb(w);
        }
        let h = mum(self.acc ^ self.len ^ P3, P0);
        let h = h ^ (h >> 31);
        if h == 0 {
            1
        } else {
            h
        }
    }
}

impl fmt::Write for KeyHasher {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}

impl Sink for KeyHasher {
    fn text(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn lower(&mut self, s: &str) {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            for b in s.bytes() {
                self.byte(b.to_ascii_lowercase());
            }
        } else {
            self.bytes(s.as_bytes());
        }
    }
}

/// The slot key of one window of a limit, from the hasher that has seen the
/// limit name and the rendered key.
fn slot_key(mut base: KeyHasher, window: Window) -> u64 {
    base.byte(0xff);
    base.bytes(&window.count.to_le_bytes());
    base.bytes(&window.period_ms.to_le_bytes());
    base.finish()
}

/// The stable hash of `limit`, rendered `key` and `window` under `seed`, as
/// the table keys buckets (for the cluster reconciler and tests).
#[must_use]
pub fn bucket_hash(seed: u64, limit: &str, key: &str, window: Window) -> u64 {
    let mut h = KeyHasher::new(seed);
    h.text(limit);
    h.byte(0xff);
    h.text(key);
    slot_key(h, window)
}

// ---------------------------------------------------------------------------
// The shared table

/// One bucket of a node-local table: 16 bytes.
#[derive(Debug, Default)]
struct Slot {
    key: AtomicU64,
    state: AtomicU64,
}

/// One bucket of a cluster table, 32 bytes aligned so that it never
/// straddles a cache line: the cluster words sit on the line the admitting
/// CAS already owns.
#[derive(Debug, Default)]
#[repr(align(32))]
struct ClusterSlot {
    key: AtomicU64,
    state: AtomicU64,
    /// Events admitted since the last [`RateTable::take_deltas`].
    delta: AtomicU64,
    /// The bucket's window, [`window_meta`]; 0 until its claimer stores it.
    meta: AtomicU64,
}

/// The slots: node-local tables stay at 16 bytes per slot.
enum Slots {
    Local(Box<[Slot]>),
    Cluster(Box<[ClusterSlot]>),
}

/// The words of one slot; `sync` (delta, meta) only in a cluster table.
#[derive(Clone, Copy)]
struct SlotRef<'a> {
    key: &'a AtomicU64,
    state: &'a AtomicU64,
    sync: Option<(&'a AtomicU64, &'a AtomicU64)>,
}

/// A window packed in one word: count (high 32 bits, at least 1) and period
/// in ms (low 32 bits, at most `u32::MAX`; only hand-built windows of 49 days
/// or more are cut, which changes their emission interval by under 1/4096 ms).
/// Never 0.
fn window_meta(window: Window) -> u64 {
    let period = window.period_ms.clamp(1, u64::from(u32::MAX));
    (u64::from(window.count.max(1)) << 32) | period
}

fn meta_window(meta: u64) -> Window {
    Window {
        count: (meta >> 32) as u32,
        period_ms: meta & u64::from(u32::MAX),
    }
}

/// One bucket's events admitted on this node since the last
/// [`RateTable::take_deltas`], with what a reconciler needs to apply them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    /// The bucket's hash ([`bucket_hash`]): its identity on every node.
    pub hash: u64,
    /// Emission interval `T` of its window, in bucket units (1/4096 ms).
    pub emission: u64,
    /// Burst span `count × T` of its window, in bucket units.
    pub span: u64,
    /// Events admitted (minus those refunded) since the last take; at least 1.
    pub count: u64,
}

/// What [`RateTable::merge`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merged {
    /// The local TAT was below the merged one and was raised to it.
    Raised,
    /// The local TAT was already at or above it.
    Unchanged,
    /// The bucket is not in the table (it refilled and its slot was handed
    /// over, or it was evicted): nothing was created.
    Absent,
}

fn pack(gen: u64, tat: u64) -> u64 {
    ((gen & GEN_MASK) << TAT_BITS) | (tat & TAT_MASK)
}

fn gen_of(state: u64) -> u64 {
    state >> TAT_BITS
}

fn tat_of(state: u64) -> u64 {
    state & TAT_MASK
}

/// Event counters, on their own cache lines away from the read-mostly fields.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Counters {
    reclaimed: AtomicU64,
    full: AtomicU64,
    failed_open: AtomicU64,
}

/// The bucket table shared by all shards (`Arc<RateTable>`): fixed capacity,
/// power of two, open addressing with [`PROBE`] slots of linear probing. Keep
/// it across reloads; build it once at startup.
pub struct RateTable {
    slots: Slots,
    mask: usize,
    seed: u64,
    counters: Counters,
}

impl fmt::Debug for RateTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateTable")
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

/// Table occupancy and the events that cost exactness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct TableStats {
    /// Slots in the table.
    pub capacity: usize,
    /// Slots holding a key (expired buckets included until reclaimed).
    pub used: usize,
    /// Expired (full) buckets handed to another key: no state lost.
    pub reclaimed: u64,
    /// Probe windows with no free or expired slot: the bucket closest to full
    /// was evicted (its key restarts full, so it may over-admit).
    pub full: u64,
    /// Requests not counted because no slot could be had (fail open).
    pub failed_open: u64,
}

/// What counting one window did.
enum Count {
    Admitted { slot: usize, gen: u64 },
    Refused { retry_after_ms: u64 },
    Open,
}

enum Step {
    Admitted(u64),
    Refused(u64),
    Moved,
    Open,
}

impl RateTable {
    /// A table of `slots` slots (rounded up to a power of two, at least
    /// [`PROBE`], at most [`CAPACITY_MAX`]) with the built-in hash seed.
    #[must_use]
    pub fn with_capacity(slots: usize) -> Self {
        Self::with_seed(slots, 0)
    }

    /// Like [`with_capacity`](Self::with_capacity) with a hash seed. A secret
    /// random seed keeps senders from crafting keys that collide with
    /// another's bucket; nodes sharing buckets through Redis need the same
    /// seed.
    #[must_use]
    pub fn with_seed(slots: usize, seed: u64) -> Self {
        let cap = slots.clamp(PROBE, CAPACITY_MAX).next_power_of_two();
        Self {
            slots: Slots::Local((0..cap).map(|_| Slot::default()).collect()),
            mask: cap - 1,
            seed,
            counters: Counters::default(),
        }
    }

    /// Like [`with_seed`](Self::with_seed), for a node that shares buckets
    /// with others: every admitted event is also counted (one relaxed atomic
    /// add on the bucket's cache line) for [`take_deltas`](Self::take_deltas).
    /// Slots take 32 bytes instead of 16. All nodes need the same `seed`.
    #[must_use]
    pub fn for_cluster(slots: usize, seed: u64) -> Self {
        let cap = slots.clamp(PROBE, CAPACITY_MAX).next_power_of_two();
        Self {
            slots: Slots::Cluster((0..cap).map(|_| ClusterSlot::default()).collect()),
            mask: cap - 1,
            seed,
            counters: Counters::default(),
        }
    }

    /// The hash seed.
    #[must_use]
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether the table counts deltas ([`for_cluster`](Self::for_cluster)).
    #[must_use]
    pub fn is_cluster(&self) -> bool {
        matches!(self.slots, Slots::Cluster(_))
    }

    /// Appends to `out` every bucket that admitted events since the last call
    /// and resets their counts: for the control plane, every sync interval.
    /// Reads every slot once (not for the hot path). Nothing on a table
    /// without [`for_cluster`](Self::for_cluster).
    ///
    /// Exact: every admitted event is in exactly one take, minus refunds that
    /// came before the take. Bounded exceptions: a refund after the take is
    /// not subtracted (Redis is told one event too many), and the count of a
    /// bucket whose slot changes hands during the scan is dropped.
    pub fn take_deltas(&self, out: &mut Vec<Delta>) {
        let Slots::Cluster(slots) = &self.slots else {
            return;
        };
        for slot in slots.iter() {
            if slot.delta.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let state = slot.state.load(Ordering::SeqCst);
            let key = slot.key.load(Ordering::SeqCst);
            let meta = slot.meta.load(Ordering::SeqCst);
            if tat_of(state) == BUSY || key == 0 || meta == 0 {
                // Being handed over, or claimed and not yet described: next time.
                continue;
            }
            let count = slot.delta.swap(0, Ordering::SeqCst);
            if count == 0 {
                continue;
            }
            // A hand-over between the reads and the swap would make the count
            // someone else's: drop it then (see the doc comment).
            if gen_of(slot.state.load(Ordering::SeqCst)) != gen_of(state)
                || slot.key.load(Ordering::SeqCst) != key
            {
                continue;
            }
            let gcra = Gcra::new(meta_window(meta));
            out.push(Delta {
                hash: key,
                emission: gcra.emission,
                span: gcra.span,
                count,
            });
        }
    }

    /// The TAT of bucket `hash` (table units), if it is in the table: for
    /// tests and tools.
    #[must_use]
    pub fn bucket_tat(&self, hash: u64) -> Option<u64> {
        self.peek(hash)
    }

    /// Raises the TAT of bucket `hash` to `tat` (a reconciled value, same
    /// units as the table) if it is lower; never lowers it, so a merge never
    /// re-admits what was spent. Monotonic and idempotent: merging the same
    /// or a lower value again changes nothing. Uses the same compare-and-swap
    /// and generation as admitting, so it never writes into a slot that has
    /// changed hands. A bucket not in the table is not created: claiming a
    /// slot could evict another bucket, and an absent bucket is one that
    /// refilled here (its next event brings the merged state back within one
    /// sync).
    pub fn merge(&self, hash: u64, tat: u64) -> Merged {
        if hash == 0 {
            return Merged::Absent;
        }
        let tat = tat.min(BUSY - 1);
        let home = self.home(hash);
        for i in 0..PROBE {
            let slot = self.slot(home.wrapping_add(i));
            match slot.key.load(Ordering::SeqCst) {
                0 => return Merged::Absent,
                k if k == hash => return self.raise(slot, hash, tat),
                _ => {}
            }
        }
        Merged::Absent
    }

    fn raise(&self, slot: SlotRef<'_>, hash: u64, tat: u64) -> Merged {
        let mut spins = 0;
        loop {
            let state = slot.state.load(Ordering::SeqCst);
            if tat_of(state) == BUSY {
                spins += 1;
                if spins > SPIN_MAX {
                    return Merged::Absent;
                }
                spin_loop();
                continue;
            }
            if slot.key.load(Ordering::SeqCst) != hash {
                return Merged::Absent;
            }
            if tat_of(state) >= tat {
                return Merged::Unchanged;
            }
            let new = pack(gen_of(state), tat);
            if slot
                .state
                .compare_exchange_weak(state, new, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return Merged::Raised;
            }
        }
    }

    /// Slots in the table.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Occupancy and counters. Reads every slot once (16 MiB at the default size):
    /// for `mbctl`, not the hot path.
    #[must_use]
    pub fn stats(&self) -> TableStats {
        TableStats {
            capacity: self.capacity(),
            used: (0..self.capacity())
                .filter(|&i| self.slot(i).key.load(Ordering::Relaxed) != 0)
                .count(),
            reclaimed: self.counters.reclaimed.load(Ordering::Relaxed),
            full: self.counters.full.load(Ordering::Relaxed),
            failed_open: self.counters.failed_open.load(Ordering::Relaxed),
        }
    }

    fn slot(&self, i: usize) -> SlotRef<'_> {
        match &self.slots {
            Slots::Local(slots) => {
                let s = &slots[i & self.mask];
                SlotRef {
                    key: &s.key,
                    state: &s.state,
                    sync: None,
                }
            }
            Slots::Cluster(slots) => {
                let s = &slots[i & self.mask];
                SlotRef {
                    key: &s.key,
                    state: &s.state,
                    sync: Some((&s.delta, &s.meta)),
                }
            }
        }
    }

    fn home(&self, key: u64) -> usize {
        (key ^ (key >> 32)) as usize
    }

    /// The TAT of `key`'s bucket, if it is in the table.
    fn peek(&self, key: u64) -> Option<u64> {
        let home = self.home(key);
        for i in 0..PROBE {
            let slot = self.slot(home.wrapping_add(i));
            match slot.key.load(Ordering::SeqCst) {
                0 => return None,
                k if k == key => {
                    let tat = tat_of(slot.state.load(Ordering::SeqCst));
                    return (tat != BUSY).then_some(tat);
                }
                _ => {}
            }
        }
        None
    }

    /// Finds `key`'s slot or claims one for it: the first empty slot, else the
    /// first expired one, else evicts the bucket nearest to full. `None` when
    /// racing claims kept failing (fail open).
    fn locate(&self, key: u64, meta: u64, now: u64) -> Option<usize> {
        let home = self.home(key);
        for _ in 0..LOCATE_TRIES {
            let mut empty = None;
            let mut expired = None;
            let mut oldest: Option<(usize, u64)> = None;
            for i in 0..PROBE {
                let at = home.wrapping_add(i) & self.mask;
                let slot = self.slot(at);
                let k = slot.key.load(Ordering::SeqCst);
                if k == key {
                    return Some(at);
                }
                if k == 0 {
                    // Slots never become empty again, so `key` is not further.
                    empty = Some(at);
                    break;
                }
                let state = slot.state.load(Ordering::SeqCst);
                let tat = tat_of(state);
                if tat == BUSY {
                    continue;
                }
                if tat < now {
                    expired = expired.or(Some((at, state)));
                } else if oldest.is_none_or(|(_, s)| tat < tat_of(s)) {
                    oldest = Some((at, state));
                }
            }
            if let Some(at) = empty {
                match self
                    .slot(at)
                    .key
                    .compare_exchange(0, key, Ordering::SeqCst, Ordering::SeqCst)
                {
                    Ok(_) => {
                        if let Some((_, meta_word)) = self.slot(at).sync {
                            // Same value from anyone who writes it: the key
                            // hash includes the window.
                            meta_word.store(meta, Ordering::SeqCst);
                        }
                        return Some(at);
                    }
                    Err(k) if k == key => return Some(at),
                    Err(_) => continue,
                }
            }
            let (at, state, evict) = match (expired, oldest) {
                (Some((at, s)), _) => (at, s, false),
                (None, Some((at, s))) => (at, s, true),
                (None, None) => continue,
            };
            let slot = self.slot(at);
            let gen = (gen_of(state) + 1) & GEN_MASK;
            if slot
                .state
                .compare_exchange(state, pack(gen, BUSY), Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                continue;
            }
            // BUSY is ours: nobody else changes this slot until we publish.
            slot.key.store(key, Ordering::SeqCst);
            if let Some((delta, meta_word)) = slot.sync {
                // The old bucket's unsent events are dropped: it had refilled
                // (or is evicted, its state lost anyway).
                meta_word.store(meta, Ordering::SeqCst);
                delta.store(0, Ordering::SeqCst);
            }
            slot.state.store(pack(gen, 0), Ordering::SeqCst);
            let counter = if evict {
                &self.counters.full
            } else {
                &self.counters.reclaimed
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return Some(at);
        }
        None
    }

    /// One GCRA step on the slot at `at`, if it still holds `key`.
    fn step(&self, at: usize, key: u64, gcra: &Gcra, now_ms: u64) -> Step {
        let slot = self.slot(at);
        let mut spins = 0;
        loop {
            let state = slot.state.load(Ordering::SeqCst);
            if tat_of(state) == BUSY {
                spins += 1;
                if spins > SPIN_MAX {
                    return Step::Open;
                }
                spin_loop();
                continue;
            }
            // The state read belongs to `key` only if the key is still ours
            // now; a later hand-over changes the generation, failing the CAS.
            if slot.key.load(Ordering::SeqCst) != key {
                return Step::Moved;
            }
            match gcra.admit(tat_of(state), now_ms) {
                Err(retry) => return Step::Refused(retry),
                Ok(next) => {
                    let new = pack(gen_of(state), next);
                    if slot
                        .state
                        .compare_exchange_weak(state, new, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        return Step::Admitted(gen_of(state));
                    }
                }
            }
        }
    }

    /// Counts one event for `key` under `gcra`.
    fn count(&self, key: u64, window: Window, gcra: &Gcra, now_ms: u64) -> Count {
        let now = now_fixed(now_ms);
        for _ in 0..LOCATE_TRIES {
            let Some(at) = self.locate(key, window_meta(window), now) else {
                break;
            };
            match self.step(at, key, gcra, now_ms) {
                Step::Admitted(gen) => {
                    if let Some((delta, _)) = self.slot(at).sync {
                        delta.fetch_add(1, Ordering::Relaxed);
                    }
                    return Count::Admitted { slot: at, gen };
                }
                Step::Refused(retry_after_ms) => return Count::Refused { retry_after_ms },
                Step::Moved => continue,
                Step::Open => break,
            }
        }
        self.counters.failed_open.fetch_add(1, Ordering::Relaxed);
        Count::Open
    }

    /// Takes back one counted event, unless its bucket was handed over since.
    fn refund(&self, c: &Counted) {
        let slot = self.slot(c.slot);
        loop {
            let state = slot.state.load(Ordering::SeqCst);
            if tat_of(state) == BUSY
                || gen_of(state) != c.gen
                || slot.key.load(Ordering::SeqCst) != c.key
            {
                return;
            }
            let new = pack(c.gen, c.gcra.refund(tat_of(state)));
            if slot
                .state
                .compare_exchange_weak(state, new, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                if let Some((delta, _)) = slot.sync {
                    // Not below 0: after a take, the event has been sent.
                    let _ = delta
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1));
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_independent_of_how_input_is_split() {
        let text = "limit\u{ff}client_ip/24=192.0.2.0/24,sender=someone@example.org";
        let mut whole = KeyHasher::new(7);
        whole.bytes(text.as_bytes());
        for split in 0..text.len() {
            let mut parts = KeyHasher::new(7);
            parts.bytes(&text.as_bytes()[..split]);
            parts.bytes(&text.as_bytes()[split..]);
            assert_eq!(parts.finish(), whole.finish(), "split at {split}");
        }
    }

    #[test]
    fn hash_depends_on_seed_length_and_content() {
        let h = |seed, s: &str| {
            let mut k = KeyHasher::new(seed);
            k.bytes(s.as_bytes());
            k.finish()
        };
        assert_ne!(h(0, "a"), h(1, "a"));
        assert_ne!(h(0, "a"), h(0, "a\0"));
        assert_ne!(h(0, ""), h(0, "\0"));
        assert_ne!(h(0, "sender=a@b"), h(0, "sender=a@c"));
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000u32 {
            assert!(seen.insert(h(0, &format!("sender=user{i}@example.org"))));
        }
    }

    #[test]
    fn hash_is_pinned() {
        // Cluster nodes compare bucket hashes: changing the function is a
        // protocol change. Update together with docs/RATELIMIT.md.
        let w = Window {
            count: 100,
            period_ms: 60_000,
        };
        let h = bucket_hash(0, "per-sender", "sender=a@b.example", w);
        assert_eq!(h, bucket_hash(0, "per-sender", "sender=a@b.example", w));
        assert_eq!(format!("{h:016x}"), PINNED);
    }

    const PINNED: &str = "68d6bc22df963d68";

    #[test]
    fn rendered_key_and_hashed_key_agree() {
        let facts = Facts {
            client_ip: Some("2001:db8:1:2:3::4".parse().expect("ip")),
            sender: "Someone@Example.ORG",
            ..Facts::default()
        };
        let parts = [
            KeyPart::ClientNet { v4: 24, v6: 48 },
            KeyPart::SenderDomain,
            KeyPart::ClientIp,
        ];
        let mut text = String::new();
        render(&parts, &facts, &mut text);
        assert_eq!(
            text,
            "client_ip/24/48=2001:db8:1::/48,sender_domain=example.org,\
             client_ip=2001:db8:1:2:3::4"
        );
        let mut streamed = KeyHasher::new(3);
        render(&parts, &facts, &mut streamed);
        let mut direct = KeyHasher::new(3);
        direct.bytes(text.as_bytes());
        assert_eq!(streamed.finish(), direct.finish());
    }
}
