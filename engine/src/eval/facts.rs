//! The facts a policy decision is computed from, and source positions.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// Everything eval knows about a session when it decides, borrowed from the
/// milter conversation or the policy delegation request. Strings are as the
/// MTA sent them (case preserved); lookups fold ASCII case themselves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    /// The SMTP client's address (`None` when the MTA did not say, e.g. a
    /// local submission).
    pub client_ip: Option<IpAddr>,
    /// The client's verified reverse name, `"unknown"` or `""` when none.
    pub client_name: &'a str,
    /// The HELO/EHLO argument (`""` before HELO).
    pub helo: &'a str,
    /// The envelope sender without angle brackets; `""` is the null sender.
    pub sender: &'a str,
    /// The recipient being decided (without angle brackets); `""` at MAIL.
    pub recipient: &'a str,
    /// Recipients already accepted in this transaction (before this one).
    pub recipient_count: u32,
    /// Messages already finished in this SMTP session (before this one).
    pub message_count: u32,
    /// SASL login name, `""` when the client did not authenticate.
    pub sasl_user: &'a str,
    /// Whether the SMTP session is TLS-encrypted.
    pub tls: bool,
    /// Client country from GeoIP, filled by eval before rules run.
    pub country: Option<Code>,
    /// Client continent from GeoIP, filled by eval before rules run.
    pub continent: Option<Code>,
    /// Wall-clock time, seconds since the Unix epoch (the caller's clock).
    pub unix_time: u64,
    /// Offset of local time from UTC in minutes (for `hour`, `weekday`).
    pub utc_offset_minutes: i16,
}

/// A two-letter upper-case code: ISO 3166 country (`DE`) or continent (`EU`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub [u8; 2]);

impl Code {
    /// Parses two ASCII letters, any case.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    /// The code as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a list entry or a rule was written: file, 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// File name as the admin wrote it (or a key path for inline entries).
    pub file: Arc<str>,
    /// 1-based line; 0 when the position is a key path or the whole file.
    pub line: u32,
    /// 1-based column (in characters).
    pub column: u32,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // Inline entries and whole-file problems have no position.
            return f.write_str(&self.file);
        }
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One problem in a policy source file (list or rule file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiagnostic {
    /// Where.
    pub origin: Origin,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for FileDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: error: {}", self.origin, self.message)
    }
}
