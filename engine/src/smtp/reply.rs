//! SMTP replies: the value, its encoder (server side) and the incremental
//! parser (client side).
//!
//! ```text
//! reply      = *( code "-" [ status SP ] text CRLF ) code [ SP [ status SP ] text ] CRLF
//! code       = %x32-35 2DIGIT                 ; 2xx..5xx, the same on every line
//! status     = class "." 1*3DIGIT "." 1*3DIGIT ; RFC 3463, class = first digit of code
//! ```
//!
//! The enhanced status code is kept apart from the text: [`Reply::lines`]
//! never start with it, and [`Reply::encode`] writes it on every line, as RFC
//! 2034 asks. Encoding sanitises the text (control bytes become spaces, each
//! line is cut to [`REPLY_LINE_BYTES_MAX`]), so a reply can never inject a
//! second reply. The parser accepts `LF` without `CR`, a code without text,
//! and lines up to [`REPLY_LINE_BYTES_CEILING`]; anything else is a
//! [`ReplyError`], never a panic.

use std::fmt;

use super::{REPLY_LINES_MAX, REPLY_LINE_BYTES_CEILING, REPLY_LINE_BYTES_MAX};

/// An RFC 3463 enhanced status code, `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent).
    pub class: u8,
    /// The subject, 0..=999 (1 addressing, 2 mailbox, 3 mail system, 4
    /// network, 5 protocol, 6 content, 7 security).
    pub subject: u16,
    /// The detail, 0..=999.
    pub detail: u16,
}

impl Status {
    /// A status code.
    #[must_use]
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        Status {
            class,
            subject,
            detail,
        }
    }

    /// Parses `c.s.d` at the start of `text`, followed by a space or the end;
    /// returns the status and the text after it (and the space).
    #[must_use]
    pub fn parse_prefix(text: &str) -> Option<(Status, &str)> {
        let end = text.find(' ').unwrap_or(text.len());
        let status = Status::parse(&text[..end])?;
        let rest = text[end..].strip_prefix(' ').unwrap_or(&text[end..]);
        Some((status, rest))
    }

    /// Parses exactly `c.s.d` (class 2, 4 or 5; 1 to 3 digits each after).
    #[must_use]
    pub fn parse(s: &str) -> Option<Status> {
        let mut it = s.split('.');
        let class = it.next()?;
        let subject = it.next()?;
        let detail = it.next()?;
        if it.next().is_some() || !matches!(class, "2" | "4" | "5") {
            return None;
        }
        let num = |p: &str| -> Option<u16> {
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        Some(Status::new(
            class.as_bytes()[0] - b'0',
            num(subject)?,
            num(detail)?,
        ))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One SMTP reply: a code, an optional enhanced status, and one or more
/// lines of text (without the code and the status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code, 200..=599.
    pub code: u16,
    /// The enhanced status code, if the reply carries one.
    pub status: Option<Status>,
    /// The text lines; at least one (possibly empty).
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced status code.
    ///
    /// # Panics
    /// If `code` is not in 200..=599 or the status class does not match the
    /// code's first digit: replies are built by code, never from input.
    #[must_use]
    pub fn new(code: u16, status: Status, text: impl Into<String>) -> Self {
        Self::build(code, Some(status), vec![text.into()])
    }

    /// A one-line reply without a status code (greeting, EHLO/HELO, 354).
    ///
    /// # Panics
    /// If `code` is not in 200..=599.
    #[must_use]
    pub fn plain(code: u16, text: impl Into<String>) -> Self {
        Self::build(code, None, vec![text.into()])
    }

    /// A reply of several lines.
    ///
    /// # Panics
    /// As [`Reply::new`]; also if `lines` is empty.
    #[must_use]
    pub fn multiline(code: u16, status: Option<Status>, lines: Vec<String>) -> Self {
        Self::build(code, status, lines)
    }

    fn build(code: u16, status: Option<Status>, lines: Vec<String>) -> Self {
        assert!((200..600).contains(&code), "SMTP reply code {code}");
        assert!(!lines.is_empty(), "a reply has at least one line");
        if let Some(s) = status {
            assert_eq!(u16::from(s.class), code / 100, "status {s} for code {code}");
        }
        Reply {
            code,
            status,
            lines,
        }
    }

    /// `250 2.0.0 Ok: queued as <id>`: the answer to the final dot once the
    /// message is durable.
    #[must_use]
    pub fn queued(queue_id: &str) -> Self {
        Reply::new(
            250,
            Status::new(2, 0, 0),
            format!("Ok: queued as {queue_id}"),
        )
    }

    /// `451 4.3.0 Error: queue file write error`: the answer to the final dot
    /// when the spool could not make the message durable (Postfix keeps it
    /// and retries).
    #[must_use]
    pub fn spool_failed() -> Self {
        Reply::new(451, Status::new(4, 3, 0), "Error: queue file write error")
    }

    /// 2xx.
    #[must_use]
    pub fn is_positive(&self) -> bool {
        self.code / 100 == 2
    }

    /// 3xx (354 to DATA).
    #[must_use]
    pub fn is_intermediate(&self) -> bool {
        self.code / 100 == 3
    }

    /// 4xx.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        self.code / 100 == 4
    }

    /// 5xx.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        self.code / 100 == 5
    }

    /// The text of every line joined with a space.
    #[must_use]
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// Appends the wire form (`code[-| ][status ]text\r\n` per line).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let status = self.status.map(|s| s.to_string());
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let start = out.len();
            out.extend_from_slice(format!("{:03}", self.code).as_bytes());
            out.push(if i == last { b' ' } else { b'-' });
            if let Some(s) = &status {
                out.extend_from_slice(s.as_bytes());
                if !line.is_empty() {
                    out.push(b' ');
                }
            }
            // Room left for the text: the whole line, CRLF included, is at
            // most REPLY_LINE_BYTES_MAX.
            let room = REPLY_LINE_BYTES_MAX.saturating_sub(out.len() - start + 2);
            push_sanitised(out, line, room);
            out.extend_from_slice(b"\r\n");
        }
        if self.lines.is_empty() {
            out.extend_from_slice(format!("{:03}\r\n", self.code).as_bytes());
        }
    }

    /// The wire form as a new buffer.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

impl fmt::Display for Reply {
    /// One line, `code status text text…`, for logs and DSN diagnostics.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(s) = self.status {
            write!(f, " {s}")?;
        }
        for line in &self.lines {
            if !line.is_empty() {
                f.write_str(" ")?;
                for c in line.chars() {
                    let c = if c.is_control() { ' ' } else { c };
                    write!(f, "{c}")?;
                }
            }
        }
        Ok(())
    }
}

/// Appends `text` with control characters replaced by spaces, cut at a
/// character boundary so that at most `room` bytes are written.
fn push_sanitised(out: &mut Vec<u8>, text: &str, room: usize) {
    let mut used = 0;
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        let n = c.len_utf8();
        if used + n > room {
            break;
        }
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        used += n;
    }
}

/// Why a reply could not be parsed. The connection cannot continue: the
/// runtime closes it and treats what was in flight as a temporary failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A line without `LF` longer than [`REPLY_LINE_BYTES_CEILING`].
    #[error("SMTP reply line longer than {max} bytes")]
    LineTooLong {
        /// The limit.
        max: usize,
    },
    /// More than [`REPLY_LINES_MAX`] lines in one reply.
    #[error("SMTP reply with more than {max} lines")]
    TooManyLines {
        /// The limit.
        max: usize,
    },
    /// A line that does not start with a code 200..=599 followed by a space,
    /// a hyphen or the end of the line.
    #[error("malformed SMTP reply line")]
    Malformed,
    /// The lines of a multi-line reply carry different codes.
    #[error("SMTP reply code changed within a multi-line reply ({first} then {then})")]
    CodeMismatch {
        /// The first line's code.
        first: u16,
        /// The differing code.
        then: u16,
    },
}

/// Incremental reply parser: remembers the lines of a multi-line reply that
/// arrived so far, so every byte is scanned once whatever the chunking.
#[derive(Debug, Default, Clone)]
pub struct ReplyParser {
    code: Option<u16>,
    status: Option<Status>,
    lines: Vec<String>,
}

/// What [`ReplyParser::parse`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Bytes of complete lines consumed from the front of the input; the
    /// caller drops them and keeps the rest.
    pub consumed: usize,
    /// The reply, once its last line arrived.
    pub reply: Option<Reply>,
}

impl ReplyParser {
    /// A parser between replies.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether part of a multi-line reply has been read.
    #[must_use]
    pub fn in_reply(&self) -> bool {
        self.code.is_some()
    }

    /// Reads complete lines from the front of `input` until one reply is
    /// complete (it stops there, so a caller can treat the bytes after a
    /// reply differently, as after STARTTLS).
    ///
    /// # Errors
    /// A [`ReplyError`]; the parser is then in an unspecified state and the
    /// connection must be dropped.
    pub fn parse(&mut self, input: &[u8]) -> Result<Parsed, ReplyError> {
        let mut consumed = 0;
        loop {
            let rest = &input[consumed..];
            let Some(lf) = memchr::memchr(b'\n', rest) else {
                if rest.len() > REPLY_LINE_BYTES_CEILING {
                    return Err(ReplyError::LineTooLong {
                        max: REPLY_LINE_BYTES_CEILING,
                    });
                }
                return Ok(Parsed {
                    consumed,
                    reply: None,
                });
            };
            if lf > REPLY_LINE_BYTES_CEILING {
                return Err(ReplyError::LineTooLong {
                    max: REPLY_LINE_BYTES_CEILING,
                });
            }
            let line = rest[..lf].strip_suffix(b"\r").unwrap_or(&rest[..lf]);
            consumed += lf + 1;
            if let Some(reply) = self.line(line)? {
                return Ok(Parsed {
                    consumed,
                    reply: Some(reply),
                });
            }
        }
    }

    /// One line without its line end; the reply if it was the last line.
    fn line(&mut self, line: &[u8]) -> Result<Option<Reply>, ReplyError> {
        if line.len() < 3
            || !(b'2'..=b'5').contains(&line[0])
            || !line[1].is_ascii_digit()
            || !line[2].is_ascii_digit()
        {
            return Err(ReplyError::Malformed);
        }
        let code = u16::from(line[0] - b'0') * 100
            + u16::from(line[1] - b'0') * 10
            + u16::from(line[2] - b'0');
        let (last, text) = match line.get(3) {
            None => (true, &[][..]),
            Some(b' ') => (true, &line[4..]),
            Some(b'-') => (false, &line[4..]),
            Some(_) => return Err(ReplyError::Malformed),
        };
        match self.code {
            Some(first) if first != code => {
                return Err(ReplyError::CodeMismatch { first, then: code });
            }
            Some(_) => {}
            None => self.code = Some(code),
        }
        if self.lines.len() >= REPLY_LINES_MAX {
            return Err(ReplyError::TooManyLines {
                max: REPLY_LINES_MAX,
            });
        }
        let text = String::from_utf8_lossy(text);
        let text = self.strip_status(code, &text);
        self.lines.push(text);
        if !last {
            return Ok(None);
        }
        self.code = None;
        Ok(Some(Reply {
            code,
            status: self.status.take(),
            lines: std::mem::take(&mut self.lines),
        }))
    }

    /// Takes the enhanced status off a line: the first line decides whether
    /// the reply has one (its class must match the code); later lines lose
    /// the same prefix when they repeat it.
    fn strip_status(&mut self, code: u16, text: &str) -> String {
        if self.lines.is_empty() {
            if let Some((status, rest)) = Status::parse_prefix(text) {
                if u16::from(status.class) == code / 100 {
                    self.status = Some(status);
                    return rest.to_owned();
                }
            }
            return text.to_owned();
        }
        if let Some(status) = self.status {
            if let Some((s, rest)) = Status::parse_prefix(text) {
                if s == status {
                    return rest.to_owned();
                }
            }
        }
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(wire: &[u8]) -> Result<Vec<Reply>, ReplyError> {
        let mut p = ReplyParser::new();
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let parsed = p.parse(&wire[at..])?;
            at += parsed.consumed;
            match parsed.reply {
                Some(r) => out.push(r),
                None => return Ok(out),
            }
        }
    }

    #[test]
    fn status_parses_and_displays() {
        assert_eq!(Status::parse("5.1.1"), Some(Status::new(5, 1, 1)));
        assert_eq!(Status::parse("4.7.123"), Some(Status::new(4, 7, 123)));
        assert_eq!(Status::parse("3.1.1"), None);
        assert_eq!(Status::parse("5.1"), None);
        assert_eq!(Status::parse("5.1.1.1"), None);
        assert_eq!(Status::parse("5.1111.1"), None);
        assert_eq!(Status::parse("5..1"), None);
        assert_eq!(Status::new(2, 0, 0).to_string(), "2.0.0");
    }

    #[test]
    fn encodes_status_on_every_line() {
        let r = Reply::multiline(
            250,
            Some(Status::new(2, 0, 0)),
            vec!["one".into(), "two".into()],
        );
        assert_eq!(r.to_bytes(), b"250-2.0.0 one\r\n250 2.0.0 two\r\n");
        assert_eq!(Reply::plain(354, "go").to_bytes(), b"354 go\r\n");
        assert_eq!(
            Reply::new(250, Status::new(2, 0, 0), "").to_bytes(),
            b"250 2.0.0\r\n"
        );
    }

    #[test]
    fn encoding_cannot_inject_a_line() {
        let r = Reply::new(550, Status::new(5, 7, 1), "no\r\n250 ok\0x");
        assert_eq!(r.to_bytes(), b"550 5.7.1 no  250 ok x\r\n");
    }

    #[test]
    fn encoding_caps_the_line_at_512_bytes() {
        let r = Reply::new(550, Status::new(5, 0, 0), "é".repeat(600));
        let wire = r.to_bytes();
        assert!(wire.len() <= REPLY_LINE_BYTES_MAX, "{}", wire.len());
        assert!(wire.ends_with(b"\r\n"));
        assert!(std::str::from_utf8(&wire).is_ok(), "cut at a char boundary");
    }

    #[test]
    fn parses_multiline_with_status() {
        let replies = parse_all(b"250-2.0.0 a\r\n250-2.0.0 b\r\n250 2.0.0 c\r\n").unwrap();
        assert_eq!(
            replies,
            vec![Reply::multiline(
                250,
                Some(Status::new(2, 0, 0)),
                vec!["a".into(), "b".into(), "c".into()]
            )]
        );
    }

    #[test]
    fn parses_ehlo_style_and_bare_lf_and_empty_text() {
        let r = parse_all(b"250-mx.example\n250-PIPELINING\r\n250 SIZE 100\r\n221\r\n").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].lines, vec!["mx.example", "PIPELINING", "SIZE 100"]);
        assert_eq!(r[0].status, None);
        assert_eq!(r[1].code, 221);
        assert_eq!(r[1].lines, vec![""]);
    }

    #[test]
    fn status_class_must_match_the_code() {
        let r = parse_all(b"250 5.0.0 odd\r\n").unwrap();
        assert_eq!(r[0].status, None);
        assert_eq!(r[0].lines, vec!["5.0.0 odd"]);
    }

    #[test]
    fn malformed_replies_are_errors() {
        assert_eq!(parse_all(b"25\r\n"), Err(ReplyError::Malformed));
        assert_eq!(parse_all(b"abc hi\r\n"), Err(ReplyError::Malformed));
        assert_eq!(parse_all(b"150 hi\r\n"), Err(ReplyError::Malformed));
        assert_eq!(parse_all(b"250xhi\r\n"), Err(ReplyError::Malformed));
        assert_eq!(
            parse_all(b"250-a\r\n550 b\r\n"),
            Err(ReplyError::CodeMismatch {
                first: 250,
                then: 550
            })
        );
        let long = vec![b'2'; REPLY_LINE_BYTES_CEILING + 1];
        assert!(matches!(
            parse_all(&long),
            Err(ReplyError::LineTooLong { .. })
        ));
        let many = b"250-x\r\n".repeat(REPLY_LINES_MAX + 1);
        assert!(matches!(
            parse_all(&many),
            Err(ReplyError::TooManyLines { .. })
        ));
    }

    #[test]
    fn parse_is_incremental_at_every_split() {
        let wire = b"250-2.1.0 a\r\n250 2.1.0 b\r\n550 5.1.1 no such user\r\n";
        let whole = parse_all(wire).unwrap();
        for chunk in 1..wire.len() {
            let mut p = ReplyParser::new();
            let mut buf = Vec::new();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                loop {
                    let parsed = p.parse(&buf).unwrap();
                    buf.drain(..parsed.consumed);
                    match parsed.reply {
                        Some(r) => got.push(r),
                        None => break,
                    }
                }
            }
            assert_eq!(got, whole, "chunk {chunk}");
        }
    }

    #[test]
    fn encode_then_parse_is_the_identity() {
        let r = Reply::multiline(
            451,
            Some(Status::new(4, 3, 0)),
            vec!["try".into(), "later".into()],
        );
        assert_eq!(parse_all(&r.to_bytes()).unwrap(), vec![r.clone()]);
        assert_eq!(r.to_string(), "451 4.3.0 try later");
    }
}
