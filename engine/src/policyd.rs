//! The Postfix policy delegation protocol (`check_policy_service`), sans I/O.
//!
//! Postfix's SMTPD_POLICY_README defines it: a request is a block of
//! `name=value` lines ended by an empty line; the answer is `action=...` and an
//! empty line. One connection carries many requests, one after the other.
//!
//! ```text
//! request=smtpd_access_policy        action=DEFER_IF_PERMIT Try later
//! protocol_state=RCPT                <empty line>
//! client_address=192.0.2.1
//! recipient=bob@example.org
//! <empty line>
//! ```
//!
//! [`Decoder::decode`] reads one request from the front of the caller's buffer
//! and remembers how far it got, so a request arriving one byte at a time is
//! still scanned once. Every bound is in [`Limits`] and is checked as soon as it
//! is crossed, before the rest of a hostile line arrives. Errors name the line
//! of the request; all are fatal for the connection (the stream cannot be
//! resynchronised), and the server answers [`Action::error_reply`] if it can.
//!
//! Attributes are kept in order and none is required: Postfix adds attributes
//! between versions, so unknown names are kept, never refused. Values must be
//! UTF-8 (Postfix sends 8-bit text only with SMTPUTF8, which is UTF-8).
//!
//! [`Action::encode`] writes the reply. Its text is sanitised (control bytes
//! become spaces, the length is capped), so a reply can never inject a second
//! line or attribute.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::eval::Facts;

/// Default [`Limits::line_bytes_max`]. Postfix's own `line_length_limit` is
/// 2048; SASL and certificate attributes can run longer.
pub const LINE_BYTES_DEFAULT: usize = 4096;
/// Default [`Limits::request_bytes_max`].
pub const REQUEST_BYTES_DEFAULT: usize = 64 * 1024;
/// Default [`Limits::attributes_max`]. Postfix 3.7 sends about 35.
pub const ATTRIBUTES_DEFAULT: usize = 256;
/// Most bytes of text in one encoded action (Postfix's SMTP reply lines are at
/// most 512 bytes including the code).
pub const ACTION_TEXT_BYTES_MAX: usize = 450;

/// Bounds on one request. Each is checked as soon as it is crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes in one line, before its `\n` (a `\r` before it counts).
    pub line_bytes_max: usize,
    /// Most bytes in one request, the final empty line included.
    pub request_bytes_max: usize,
    /// Most attributes (lines) in one request.
    pub attributes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            line_bytes_max: LINE_BYTES_DEFAULT,
            request_bytes_max: REQUEST_BYTES_DEFAULT,
            attributes_max: ATTRIBUTES_DEFAULT,
        }
    }
}

/// Why a request (or response) could not be decoded. `line` is the 1-based
/// line within the request. All are fatal for the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A line is longer than [`Limits::line_bytes_max`].
    #[error("policy request line {line}: longer than {max} bytes")]
    LineTooLong {
        /// The line.
        line: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The request is longer than [`Limits::request_bytes_max`].
    #[error("policy request line {line}: request longer than {max} bytes")]
    RequestTooLarge {
        /// The line being read when the limit was crossed.
        line: usize,
        /// Configured maximum.
        max: usize,
    },
    /// More attributes than [`Limits::attributes_max`].
    #[error("policy request line {line}: more than {max} attributes")]
    TooManyAttributes {
        /// The first line over the limit.
        line: usize,
        /// Configured maximum.
        max: usize,
    },
    /// A line without `=`.
    #[error("policy request line {line}: no '=' (expected name=value)")]
    MissingEquals {
        /// The line.
        line: usize,
    },
    /// A line starting with `=`.
    #[error("policy request line {line}: empty attribute name (expected name=value)")]
    EmptyName {
        /// The line.
        line: usize,
    },
    /// An attribute name with a byte other than printable ASCII.
    #[error("policy request line {line}: attribute name is not printable ASCII")]
    InvalidName {
        /// The line.
        line: usize,
    },
    /// A NUL byte.
    #[error("policy request line {line}: NUL byte")]
    Nul {
        /// The line.
        line: usize,
    },
    /// A value that is not UTF-8.
    #[error("policy request line {line}: value of {name:?} is not UTF-8")]
    NotUtf8 {
        /// The line.
        line: usize,
        /// The attribute.
        name: String,
    },
    /// An empty line with no attribute before it.
    #[error("policy request line {line}: empty request (blank line with no attributes)")]
    EmptyRequest {
        /// The line (1: the blank line).
        line: usize,
    },
    /// A response without an `action` attribute.
    #[error("policy response has no action attribute")]
    MissingAction,
    /// A response whose action this codec does not know.
    #[error("policy response action {action:?} is not one Postfix understands")]
    UnknownAction {
        /// The action value as received.
        action: String,
    },
}

/// Well-known attributes, indexed for O(1) lookup.
const KNOWN: [&str; 16] = [
    "request",
    "protocol_state",
    "protocol_name",
    "helo_name",
    "queue_id",
    "sender",
    "recipient",
    "recipient_count",
    "client_address",
    "client_name",
    "reverse_client_name",
    "instance",
    "sasl_username",
    "encryption_protocol",
    "size",
    "client_port",
];

fn known_index(name: &str) -> Option<usize> {
    Some(match name {
        "request" => 0,
        "protocol_state" => 1,
        "protocol_name" => 2,
        "helo_name" => 3,
        "queue_id" => 4,
        "sender" => 5,
        "recipient" => 6,
        "recipient_count" => 7,
        "client_address" => 8,
        "client_name" => 9,
        "reverse_client_name" => 10,
        "instance" => 11,
        "sasl_username" => 12,
        "encryption_protocol" => 13,
        "size" => 14,
        "client_port" => 15,
        _ => return None,
    })
}

const _: () = assert!(KNOWN.len() == 16);

/// One attribute's place in [`Request::text`]: name is `start..name_end`,
/// value is `name_end..value_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    name_end: usize,
    value_end: usize,
}

/// One policy request: its attributes in the order received (duplicates kept;
/// lookups answer the first). Two allocations however many attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    text: String,
    spans: Vec<Span>,
    known: [Option<u32>; KNOWN.len()],
}

impl Request {
    /// A request with these attributes, in order (for tests and tools).
    #[must_use]
    pub fn from_attrs(attrs: &[(&str, &str)]) -> Self {
        let mut r = Self::default();
        for (name, value) in attrs {
            r.push(name, value);
        }
        r
    }

    /// Appends one attribute.
    pub fn push(&mut self, name: &str, value: &str) {
        let start = self.text.len();
        self.text.push_str(name);
        let name_end = self.text.len();
        self.text.push_str(value);
        if let Some(k) = known_index(name) {
            if self.known[k].is_none() {
                self.known[k] = u32::try_from(self.spans.len()).ok();
            }
        }
        self.spans.push(Span {
            start,
            name_end,
            value_end: self.text.len(),
        });
    }

    fn clear(&mut self) {
        self.text.clear();
        self.spans.clear();
        self.known = Default::default();
    }

    fn span(&self, s: Span) -> (&str, &str) {
        (
            self.text.get(s.start..s.name_end).unwrap_or_default(),
            self.text.get(s.name_end..s.value_end).unwrap_or_default(),
        )
    }

    /// The value of the first attribute called `name`. Well-known names
    /// (`protocol_state`, `client_address`, `recipient`, …) are an index lookup;
    /// others a scan.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        match known_index(name) {
            Some(k) => {
                let i = usize::try_from(self.known[k]?).ok()?;
                self.spans.get(i).map(|s| self.span(*s).1)
            }
            None => self
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, value)| value),
        }
    }

    fn get_or_empty(&self, name: &str) -> &str {
        self.get(name).unwrap_or_default()
    }

    /// The attributes in order, as `(name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.spans.iter().map(|s| self.span(*s))
    }

    /// How many attributes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are no attributes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// `request`: `smtpd_access_policy` for every request Postfix sends.
    #[must_use]
    pub fn request_type(&self) -> &str {
        self.get_or_empty("request")
    }

    /// `protocol_state`: `CONNECT`, `EHLO`, `HELO`, `MAIL`, `RCPT`, `DATA`,
    /// `END-OF-MESSAGE`, `VRFY` or `ETRN`; `""` when absent.
    #[must_use]
    pub fn protocol_state(&self) -> &str {
        self.get_or_empty("protocol_state")
    }

    /// `instance`: the same for every request of one message transaction;
    /// `""` when absent.
    #[must_use]
    pub fn instance(&self) -> &str {
        self.get_or_empty("instance")
    }

    /// The client address, parsed; `None` when absent, `unknown` or invalid.
    /// An `IPv6:` prefix is tolerated.
    #[must_use]
    pub fn client_ip(&self) -> Option<IpAddr> {
        let a = self.get("client_address")?;
        let a = a.strip_prefix("IPv6:").unwrap_or(a);
        a.parse().ok()
    }

    /// The eval facts of this request. `recipient_count` is the count Postfix
    /// sends (0 at RCPT; saturating; 0 when absent or not a number),
    /// `tls` is whether `encryption_protocol` is non-empty, sender and recipient
    /// lose one pair of angle brackets if present. Postfix does not send a
    /// message count, so it is 0. The time comes from the caller.
    #[must_use]
    pub fn facts(&self, unix_time: u64, utc_offset_minutes: i16) -> Facts<'_> {
        Facts {
            client_ip: self.client_ip(),
            client_name: self.get_or_empty("client_name"),
            helo: self.get_or_empty("helo_name"),
            sender: strip_brackets(self.get_or_empty("sender")),
            recipient: strip_brackets(self.get_or_empty("recipient")),
            recipient_count: parse_count(self.get_or_empty("recipient_count")),
            message_count: 0,
            sasl_user: self.get_or_empty("sasl_username"),
            tls: !self.get_or_empty("encryption_protocol").is_empty(),
            country: None,
            continent: None,
            unix_time,
            utc_offset_minutes,
        }
    }

    /// Appends this request in wire form (see [`encode_request`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        for (name, value) in self.iter() {
            encode_attr(name, value, out);
        }
        out.push(b'\n');
    }
}

fn strip_brackets(s: &str) -> &str {
    s.strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(s)
}

/// Decimal digits to u32, saturating; anything else is 0.
fn parse_count(s: &str) -> u32 {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    s.bytes().fold(0u32, |n, b| {
        n.saturating_mul(10).saturating_add(u32::from(b - b'0'))
    })
}

/// Incremental request decoder. See the module doc.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    /// Start of the first line not yet parsed (lines before it are in `pending`).
    line_start: usize,
    /// Where to resume looking for `\n`.
    search_from: usize,
    /// 1-based number of the line at `line_start`.
    line_no: usize,
    pending: Request,
}

impl Decoder {
    /// A decoder with these bounds.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            line_start: 0,
            search_from: 0,
            line_no: 1,
            pending: Request::default(),
        }
    }

    /// The configured bounds.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Forgets a partly scanned request (the next call starts at `buf[0]`).
    pub fn reset(&mut self) {
        self.line_start = 0;
        self.search_from = 0;
        self.line_no = 1;
        self.pending.clear();
    }

    /// Decodes one request from the front of `buf`: the bytes received so far,
    /// possibly several requests or a partial one. Between calls that return
    /// `Ok(None)` the caller may only append to `buf`; the decoder remembers how
    /// far it scanned (a shorter `buf` than last time restarts the scan).
    ///
    /// Returns `Ok(None)` when more bytes are needed, or the request and the
    /// number of bytes it occupied; the caller drops them.
    ///
    /// # Errors
    /// [`DecodeError`]: the stream is broken; answer [`Action::error_reply`] if
    /// possible and close. The decoder is reset.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<(Request, usize)>, DecodeError> {
        let r = self.step(buf);
        if !matches!(r, Ok(None)) {
            self.reset();
        }
        r
    }

    fn step(&mut self, buf: &[u8]) -> Result<Option<(Request, usize)>, DecodeError> {
        if buf.len() < self.search_from {
            self.reset();
        }
        loop {
            let Some(rest) = buf.get(self.search_from..) else {
                return Ok(None);
            };
            let Some(i) = memchr::memchr(b'\n', rest) else {
                self.overflow(buf.len())?;
                self.search_from = buf.len();
                return Ok(None);
            };
            let nl = self.search_from + i;
            self.overflow(nl)?;
            let line = buf.get(self.line_start..nl).unwrap_or_default();
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                if self.pending.is_empty() {
                    return Err(DecodeError::EmptyRequest { line: self.line_no });
                }
                let request = std::mem::take(&mut self.pending);
                return Ok(Some((request, nl + 1)));
            }
            self.parse_line(line)?;
            self.line_start = nl + 1;
            self.search_from = nl + 1;
            self.line_no += 1;
        }
    }

    /// Checks the bounds when the current line holds `end - line_start` bytes
    /// and no newline yet. Reports whichever bound a byte-at-a-time stream
    /// would have crossed first, so the error does not depend on chunking.
    fn overflow(&self, end: usize) -> Result<(), DecodeError> {
        // Buffer lengths at which each bound is crossed.
        let line_at = self
            .line_start
            .saturating_add(self.limits.line_bytes_max)
            .saturating_add(1);
        let request_at = self.limits.request_bytes_max;
        let line_over = end >= line_at;
        let request_over = end >= request_at;
        match (line_over, request_over) {
            (true, true) if line_at < request_at => Err(self.line_too_long()),
            (_, true) => Err(DecodeError::RequestTooLarge {
                line: self.line_no,
                max: self.limits.request_bytes_max,
            }),
            (true, false) => Err(self.line_too_long()),
            (false, false) => Ok(()),
        }
    }

    fn line_too_long(&self) -> DecodeError {
        DecodeError::LineTooLong {
            line: self.line_no,
            max: self.limits.line_bytes_max,
        }
    }

    fn parse_line(&mut self, line: &[u8]) -> Result<(), DecodeError> {
        let n = self.line_no;
        if self.pending.len() >= self.limits.attributes_max {
            return Err(DecodeError::TooManyAttributes {
                line: n,
                max: self.limits.attributes_max,
            });
        }
        if memchr::memchr(0, line).is_some() {
            return Err(DecodeError::Nul { line: n });
        }
        let Some(eq) = memchr::memchr(b'=', line) else {
            return Err(DecodeError::MissingEquals { line: n });
        };
        let (name, value) = (&line[..eq], &line[eq + 1..]);
        if name.is_empty() {
            return Err(DecodeError::EmptyName { line: n });
        }
        if !name.iter().all(u8::is_ascii_graphic) {
            return Err(DecodeError::InvalidName { line: n });
        }
        let name = std::str::from_utf8(name).map_err(|_| DecodeError::InvalidName { line: n })?;
        let value = std::str::from_utf8(value).map_err(|_| DecodeError::NotUtf8 {
            line: n,
            name: name.to_owned(),
        })?;
        self.pending.push(name, value);
        Ok(())
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

/// A policy server's answer, as Postfix's access(5) understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `DUNNO`: no opinion; Postfix goes on with its restrictions.
    Dunno,
    /// `OK`: accept (this restriction list).
    Ok,
    /// `REJECT [text]`: permanent rejection.
    Reject(Option<String>),
    /// `DEFER [text]`: temporary rejection.
    Defer(Option<String>),
    /// `DEFER_IF_PERMIT text`: temporary rejection unless a later restriction
    /// rejects.
    DeferIfPermit(String),
    /// `DEFER_IF_REJECT text`: temporary rejection if a later restriction
    /// rejects.
    DeferIfReject(String),
    /// `4NN text` / `5NN text`: an explicit SMTP reply, e.g. code 450 with text
    /// `4.7.1 Slow down`. A code outside 400..=599 is sent as 451.
    Code {
        /// The SMTP reply code.
        code: u16,
        /// The text after the code (usually starting with an enhanced status).
        text: String,
    },
    /// `PREPEND header: value`: add a header, then go on like DUNNO.
    Prepend(String),
    /// `HOLD [text]`: put the message on hold.
    Hold(Option<String>),
    /// `DISCARD [text]`: accept and drop the message.
    Discard(Option<String>),
    /// `WARN text`: log a warning, then go on like DUNNO.
    Warn(String),
}

impl Action {
    /// Writes `action=...\n\n`. Text is sanitised: control characters (CR, LF,
    /// NUL, TAB, …) become spaces and it is cut at [`ACTION_TEXT_BYTES_MAX`]
    /// bytes on a character boundary, so a reply can never inject a second line.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"action=");
        let (word, text): (&str, Option<&str>) = match self {
            Self::Dunno => ("DUNNO", None),
            Self::Ok => ("OK", None),
            Self::Reject(t) => ("REJECT", t.as_deref()),
            Self::Defer(t) => ("DEFER", t.as_deref()),
            Self::DeferIfPermit(t) => ("DEFER_IF_PERMIT", Some(t)),
            Self::DeferIfReject(t) => ("DEFER_IF_REJECT", Some(t)),
            Self::Code { code, text } => {
                let code = if (400..=599).contains(code) {
                    *code
                } else {
                    451
                };
                let mut s = String::with_capacity(3);
                // Writing to a String cannot fail.
                let _ = write!(s, "{code}");
                out.extend_from_slice(s.as_bytes());
                push_text(out, text);
                out.extend_from_slice(b"\n\n");
                return;
            }
            Self::Prepend(t) => ("PREPEND", Some(t)),
            Self::Hold(t) => ("HOLD", t.as_deref()),
            Self::Discard(t) => ("DISCARD", t.as_deref()),
            Self::Warn(t) => ("WARN", Some(t)),
        };
        out.extend_from_slice(word.as_bytes());
        if let Some(t) = text {
            push_text(out, t);
        }
        out.extend_from_slice(b"\n\n");
    }

    /// The answer when the server cannot decide (broken request, internal
    /// error): `DEFER_IF_PERMIT Service temporarily unavailable`, the same
    /// fail-safe Postfix's own examples use.
    #[must_use]
    pub fn error_reply() -> Action {
        Action::DeferIfPermit("Service temporarily unavailable".to_owned())
    }

    /// Parses the value of an `action=` attribute (keyword case-insensitive,
    /// text trimmed; empty optional text is `None`). `None` for actions this
    /// codec does not model (`FILTER`, `REDIRECT`, `BCC`, …).
    #[must_use]
    pub fn parse(value: &str) -> Option<Action> {
        let v = value.trim();
        let (word, rest) = match v.find(|c: char| c.is_ascii_whitespace()) {
            Some(i) => (&v[..i], v[i..].trim()),
            None => (v, ""),
        };
        let opt = || (!rest.is_empty()).then(|| rest.to_owned());
        let w = word.to_ascii_uppercase();
        Some(match w.as_str() {
            "DUNNO" => Self::Dunno,
            "OK" => Self::Ok,
            "REJECT" => Self::Reject(opt()),
            "DEFER" => Self::Defer(opt()),
            "DEFER_IF_PERMIT" => Self::DeferIfPermit(rest.to_owned()),
            "DEFER_IF_REJECT" => Self::DeferIfReject(rest.to_owned()),
            "PREPEND" => Self::Prepend(rest.to_owned()),
            "HOLD" => Self::Hold(opt()),
            "DISCARD" => Self::Discard(opt()),
            "WARN" => Self::Warn(rest.to_owned()),
            _ => {
                let b = w.as_bytes();
                if b.len() == 3 && matches!(b[0], b'4' | b'5') && b.iter().all(u8::is_ascii_digit) {
                    let code = b.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
                    Self::Code {
                        code,
                        text: rest.to_owned(),
                    }
                } else {
                    return None;
                }
            }
        })
    }

    /// The keyword, for counting: `DUNNO`, `OK`, `REJECT`, `DEFER`,
    /// `DEFER_IF_PERMIT`, `DEFER_IF_REJECT`, `4XX`, `5XX`, `PREPEND`, `HOLD`,
    /// `DISCARD` or `WARN`.
    #[must_use]
    pub fn keyword(&self) -> &'static str {
        match self {
            Self::Dunno => "DUNNO",
            Self::Ok => "OK",
            Self::Reject(_) => "REJECT",
            Self::Defer(_) => "DEFER",
            Self::DeferIfPermit(_) => "DEFER_IF_PERMIT",
            Self::DeferIfReject(_) => "DEFER_IF_REJECT",
            Self::Code { code, .. } if *code >= 500 && *code <= 599 => "5XX",
            Self::Code { .. } => "4XX",
            Self::Prepend(_) => "PREPEND",
            Self::Hold(_) => "HOLD",
            Self::Discard(_) => "DISCARD",
            Self::Warn(_) => "WARN",
        }
    }
}

/// Appends `" " + sanitised text` (nothing for empty text).
fn push_text(out: &mut Vec<u8>, text: &str) {
    if text.is_empty() {
        return;
    }
    out.push(b' ');
    let mut used = 0;
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        used += c.len_utf8();
        if used > ACTION_TEXT_BYTES_MAX {
            break;
        }
        let mut tmp = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
    }
}

/// Appends `name=value\n`, with CR, LF and NUL in either replaced by spaces
/// and `=` in the name replaced by `_`, so the output is always one line.
fn encode_attr(name: &str, value: &str, out: &mut Vec<u8>) {
    let clean = |b: u8| match b {
        b'\r' | b'\n' | 0 => b' ',
        _ => b,
    };
    out.extend(
        name.bytes()
            .map(|b| if b == b'=' { b'_' } else { clean(b) }),
    );
    out.push(b'=');
    out.extend(value.bytes().map(clean));
    out.push(b'\n');
}

/// Parses the response at the front of `buf`: attribute lines and an empty
/// line, one of them `action=...` (others are ignored). Bounded by the default
/// [`Limits`]; stateless, so it rescans on every call (responses are short).
///
/// # Errors
/// A [`DecodeError`] from the framing, [`DecodeError::MissingAction`] or
/// [`DecodeError::UnknownAction`].
pub fn decode_response(buf: &[u8]) -> Result<Option<(Action, usize)>, DecodeError> {
    let Some((r, used)) = Decoder::default().decode(buf)? else {
        return Ok(None);
    };
    let value = r.get("action").ok_or(DecodeError::MissingAction)?;
    let action = Action::parse(value).ok_or_else(|| DecodeError::UnknownAction {
        action: value.to_owned(),
    })?;
    Ok(Some((action, used)))
}

/// Appends a request: `name=value\n` per attribute, then `\n`. CR, LF and NUL
/// become spaces (and `=` in a name `_`) so the output is always one request.
pub fn encode_request(attrs: &[(&str, &str)], out: &mut Vec<u8>) {
    for (name, value) in attrs {
        encode_attr(name, value, out);
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_table_matches_lookup() {
        for (i, name) in KNOWN.iter().enumerate() {
            assert_eq!(known_index(name), Some(i), "{name}");
        }
    }

    #[test]
    fn counts_saturate() {
        assert_eq!(parse_count("7"), 7);
        assert_eq!(parse_count("99999999999999"), u32::MAX);
        assert_eq!(parse_count("-1"), 0);
        assert_eq!(parse_count(""), 0);
    }
}
