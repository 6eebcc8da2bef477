//! Parsers for the value forms of the config file, usable on their own (by
//! `mbctl`, tests, or the policy stage) and shared by the checker.
//!
//! ```text
//! duration   "500ms" "30s" "5m" "1h"          an integer and a unit, no spaces
//! bytes      4096  "4096" "256KiB" "50MiB"     KiB/MiB/GiB = 1024-based,
//!            "10MB" "1GB" "512B"               KB/MB/GB = 1000-based
//! pattern    "<>"                              the null sender
//!            "@.example.com"                   example.com and its subdomains
//!            "@example.com"                    example.com only
//!            "user@example.com" "<user@example.com>"   one address
//! reply      "550 5.7.1 Sender blocked"        code, enhanced code, text
//! ```
//!
//! Every parser is pure and never panics; the error says what to write instead.

use std::fmt;
use std::time::Duration;

use super::{AddressPattern, FilterAction, RuleAction, SmtpReply};

/// Why a single value was refused. The `Display` text is the diagnostic
/// message: it names the problem and shows a valid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not `<integer><unit>`.
    #[error(
        "`{0}` is not a duration: write an integer and a unit (ms, s, m or h) without spaces, \
         e.g. \"90s\""
    )]
    Duration(String),
    /// Not an integer or `<integer><unit>` with a byte unit.
    #[error(
        "`{0}` is not a byte size: write an integer of bytes or an integer and a unit \
         (B, KiB, MiB, GiB, KB, MB, GB), e.g. \"50MiB\""
    )]
    Bytes(String),
    /// A number too large to represent.
    #[error("`{0}` is too large")]
    TooLarge(String),
    /// An address pattern that cannot be understood; the reason names the fix.
    #[error("`{pattern}` is not an address pattern: {reason}")]
    Pattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong and what to write.
        reason: &'static str,
    },
    /// An SMTP reply that cannot be sent; the reason names the fix.
    #[error("`{reply}` is not an SMTP reply: {reason}")]
    Reply {
        /// The reply as written.
        reply: String,
        /// What is wrong and what to write.
        reason: &'static str,
    },
}

/// Parses a duration: an integer and one unit of `ms`, `s`, `m`, `h`
/// (`"500ms"`, `"90s"`, `"10m"`, `"1h"`). A bare number is refused because its
/// unit would be a guess.
pub fn parse_duration(text: &str) -> Result<Duration, ValueError> {
    let bad = || ValueError::Duration(text.to_owned());
    let (number, unit) = split_number(text).ok_or_else(bad)?;
    let n: u64 = number
        .parse()
        .map_err(|_| ValueError::TooLarge(text.to_owned()))?;
    let too_large = || ValueError::TooLarge(text.to_owned());
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => n
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(too_large),
        "h" => n
            .checked_mul(3600)
            .map(Duration::from_secs)
            .ok_or_else(too_large),
        _ => Err(bad()),
    }
}

/// Parses a byte size written as a string: `"4096"`, `"512B"`, `"256KiB"`,
/// `"50MiB"`, `"1GiB"` (powers of 1024) or `"10KB"`, `"10MB"`, `"1GB"` (powers
/// of 1000). One space between number and unit is allowed (`"50 MiB"`).
pub fn parse_bytes(text: &str) -> Result<u64, ValueError> {
    let bad = || ValueError::Bytes(text.to_owned());
    let (number, unit) = split_number(text).ok_or_else(bad)?;
    let unit = match unit.strip_prefix(' ') {
        Some("") => return Err(bad()),
        Some(rest) => rest,
        None => unit,
    };
    let n: u64 = number
        .parse()
        .map_err(|_| ValueError::TooLarge(text.to_owned()))?;
    let scale: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(scale)
        .ok_or_else(|| ValueError::TooLarge(text.to_owned()))
}

/// Splits leading ASCII digits from the rest; `None` without digits.
fn split_number(text: &str) -> Option<(&str, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    (digits > 0).then(|| text.split_at(digits))
}

impl AddressPattern {
    /// Parses a list pattern: `"<>"`, `"@.example.com"`, `"@example.com"` or
    /// `"user@example.com"` (surrounding `<>` allowed). The result is
    /// lowercased (ASCII), matching how the policy compares addresses.
    pub fn parse(text: &str) -> Result<AddressPattern, ValueError> {
        let bad = |reason| ValueError::Pattern {
            pattern: text.to_owned(),
            reason,
        };
        if text.is_empty() {
            return Err(bad(
                "it is empty; write `user@example.com`, `@example.com` or `<>`",
            ));
        }
        if text == "<>" {
            return Ok(AddressPattern::NullSender);
        }
        if text.chars().any(char::is_whitespace) {
            return Err(bad("it contains a space; write one address per string"));
        }
        if text.chars().any(char::is_control) {
            return Err(bad("it contains a control character"));
        }
        let (inner, bracketed) = match (text.strip_prefix('<'), text.ends_with('>')) {
            (Some(rest), true) => (&rest[..rest.len() - 1], true),
            (None, false) => (text, false),
            _ => {
                return Err(bad(
                    "unbalanced `<` `>`; write `<user@example.com>` or drop both",
                ))
            }
        };
        if inner.contains(['<', '>']) {
            return Err(bad("`<` and `>` may only surround the whole address"));
        }
        let Some(at) = inner.find('@') else {
            return Err(bad(
                "missing `@`: write `user@example.com`, `@example.com` (that domain) or \
                 `@.example.com` (that domain and its subdomains)",
            ));
        };
        if inner[at + 1..].contains('@') {
            return Err(bad("it has a second `@`; write one address per string"));
        }
        let (local, domain) = (&inner[..at], &inner[at + 1..]);
        let domain = domain.to_ascii_lowercase();
        if local.is_empty() {
            if bracketed {
                return Err(bad(
                    "`<>` only surround full addresses; write `@example.com`",
                ));
            }
            return match domain.strip_prefix('.') {
                Some(parent) => check_domain(parent)
                    .map(|()| AddressPattern::Subdomain(parent.to_owned()))
                    .map_err(bad),
                None => check_domain(&domain)
                    .map(|()| AddressPattern::Domain(domain))
                    .map_err(bad),
            };
        }
        check_domain(&domain).map_err(bad)?;
        Ok(AddressPattern::Exact(format!(
            "{}@{domain}",
            local.to_ascii_lowercase()
        )))
    }
}

/// Checks the domain part of a pattern: non-empty dot-separated labels.
fn check_domain(domain: &str) -> Result<(), &'static str> {
    if domain.is_empty() {
        return Err("the domain after `@` is empty; write e.g. `@example.com`");
    }
    if domain.split('.').any(str::is_empty) {
        return Err("the domain has an empty label (a leading, trailing or doubled `.`)");
    }
    if domain.contains([',', ';', '"', '(', ')', '\\']) {
        return Err("the domain contains a character that cannot appear in a domain");
    }
    Ok(())
}

impl fmt::Display for AddressPattern {
    /// The pattern as written in the config file (normalized).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressPattern::Exact(address) => f.write_str(address),
            AddressPattern::Domain(domain) => write!(f, "@{domain}"),
            AddressPattern::Subdomain(domain) => write!(f, "@.{domain}"),
            AddressPattern::NullSender => f.write_str("<>"),
        }
    }
}

impl SmtpReply {
    /// Parses `"550 5.7.1 Text"`: a 4xx or 5xx code, one space, an enhanced
    /// status code of the same class (RFC 3463 `class.subject.detail`), one
    /// space, and non-empty text of printable ASCII (RFC 5321 §4.2
    /// `textstring = 1*(%d09 / %d32-126)`). Whether 4xx or 5xx fits depends on
    /// the rule's action and is checked by the caller.
    pub fn parse(text: &str) -> Result<SmtpReply, ValueError> {
        let bad = |reason| ValueError::Reply {
            reply: text.to_owned(),
            reason,
        };
        let bytes = text.as_bytes();
        let code_ok = bytes.len() >= 3
            && matches!(bytes[0], b'4' | b'5')
            && matches!(bytes[1], b'0'..=b'5')
            && bytes[2].is_ascii_digit();
        if !code_ok {
            return Err(bad(
                "it must start with a 4xx or 5xx code, e.g. \"550 5.7.1 Blocked\"",
            ));
        }
        if text.len() == 3 {
            return Err(bad("an enhanced status code and text must follow the code"));
        }
        let Some(rest) = text[3..].strip_prefix(' ') else {
            return Err(bad(
                "write one space after the code, e.g. \"550 5.7.1 Blocked\"",
            ));
        };
        if rest.contains(['\r', '\n']) {
            return Err(bad("it must be one line (no CR or LF)"));
        }
        if !rest
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            return Err(bad("SMTP reply text must be printable ASCII"));
        }
        let (enhanced, message) = rest.split_once(' ').unwrap_or((rest, ""));
        let mut parts = enhanced.split('.');
        let class = parts.next().unwrap_or("");
        let shape_ok = class.len() == 1
            && class.as_bytes()[0].is_ascii_digit()
            && parts.clone().count() == 2
            && parts.all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
        if !shape_ok {
            return Err(bad(
                "an enhanced status code must follow the code, e.g. \"550 5.7.1 Blocked\"",
            ));
        }
        if class.as_bytes()[0] != bytes[0] {
            return Err(bad(
                "the enhanced status code must have the class of the reply code \
                 (5.x.x with 5xx, 4.x.x with 4xx)",
            ));
        }
        if message.trim().is_empty() {
            return Err(bad("text must follow the enhanced status code"));
        }
        let code = u16::from(bytes[0] - b'0') * 100
            + u16::from(bytes[1] - b'0') * 10
            + u16::from(bytes[2] - b'0');
        Ok(SmtpReply {
            code,
            text: rest.to_owned(),
        })
    }
}

impl fmt::Display for SmtpReply {
    /// `550 5.7.1 Text`, as written in the config file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

impl RuleAction {
    /// Every action with its config spelling, in documentation order.
    pub const ALL: [(&'static str, RuleAction); 6] = [
        ("allow", RuleAction::Allow),
        ("reject", RuleAction::Reject),
        ("tempfail", RuleAction::TempFail),
        ("discard", RuleAction::Discard),
        ("quarantine", RuleAction::Quarantine),
        ("replace-body", RuleAction::ReplaceBody),
    ];

    /// The config spelling, e.g. `replace-body`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Allow => "allow",
            RuleAction::Reject => "reject",
            RuleAction::TempFail => "tempfail",
            RuleAction::Discard => "discard",
            RuleAction::Quarantine => "quarantine",
            RuleAction::ReplaceBody => "replace-body",
        }
    }

    /// The action spelled `text` in a config file, if any (exact, lowercase).
    pub fn from_name(text: &str) -> Option<RuleAction> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == text)
            .map(|&(_, action)| action)
    }
}

impl fmt::Display for RuleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FilterAction {
    /// Every action with its config spelling, weakest first.
    pub const ALL: [(&'static str, FilterAction); 5] = [
        ("accept", FilterAction::Accept),
        ("header", FilterAction::Header),
        ("quarantine", FilterAction::Quarantine),
        ("tempfail", FilterAction::TempFail),
        ("reject", FilterAction::Reject),
    ];

    /// The config spelling, e.g. `quarantine`.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterAction::Accept => "accept",
            FilterAction::Header => "header",
            FilterAction::Quarantine => "quarantine",
            FilterAction::TempFail => "tempfail",
            FilterAction::Reject => "reject",
        }
    }

    /// The action spelled `text` in a config file, if any (exact, lowercase).
    pub fn from_name(text: &str) -> Option<FilterAction> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == text)
            .map(|&(_, action)| action)
    }
}

impl fmt::Display for FilterAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Optimal string alignment distance (Levenshtein plus adjacent
/// transpositions), for "did you mean" hints on short keys.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: two back (for transpositions), previous, current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `word` within edit distance 2 (and closer than
/// the candidate's own length, so `x` does not suggest `tcp`), first on ties.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let d = edit_distance(word, candidate);
        if d <= 2 && d < candidate.chars().count() && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "30", "s", "30 s", "30sec", "-1s", "1.5s", "1h30m"] {
            assert_eq!(
                parse_duration(bad),
                Err(ValueError::Duration(bad.into())),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_duration("99999999999999999999s"),
            Err(ValueError::TooLarge(_))
        ));
        assert!(matches!(
            parse_duration("9999999999999999999h"),
            Err(ValueError::TooLarge(_))
        ));
    }

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("512B"), Ok(512));
        assert_eq!(parse_bytes("256KiB"), Ok(256 * 1024));
        assert_eq!(parse_bytes("50MiB"), Ok(50 * 1024 * 1024));
        assert_eq!(parse_bytes("50 MiB"), Ok(50 * 1024 * 1024));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("10KB"), Ok(10_000));
        assert_eq!(parse_bytes("10MB"), Ok(10_000_000));
        assert_eq!(parse_bytes("1GB"), Ok(1_000_000_000));
        for bad in ["", "MiB", "10mb", "10 ", "10  MiB", "1.5MiB", "-1", "10TiB"] {
            assert_eq!(
                parse_bytes(bad),
                Err(ValueError::Bytes(bad.into())),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_bytes("99999999999GiB"),
            Err(ValueError::TooLarge(_))
        ));
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("socket", "socket"), 0);
        assert_eq!(edit_distance("sokcet", "socket"), 1);
        assert_eq!(edit_distance("sockt", "socket"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(
            closest("idle_timout", ["write_timeout", "idle_timeout"]),
            Some("idle_timeout")
        );
        assert_eq!(closest("x", ["tcp"]), None);
        assert_eq!(closest("completely", ["tcp", "socket"]), None);
    }

    #[test]
    fn reply_shapes() {
        let ok = SmtpReply::parse("550 5.7.1 Sender blocked").unwrap();
        assert_eq!(
            ok,
            SmtpReply {
                code: 550,
                text: "5.7.1 Sender blocked".into()
            }
        );
        assert_eq!(ok.to_string(), "550 5.7.1 Sender blocked");
        assert_eq!(SmtpReply::parse("451 4.7.1 Later").unwrap().code, 451);
        assert_eq!(SmtpReply::parse("554 5.7.100 x").unwrap().code, 554);
    }

    #[test]
    fn action_names_round_trip() {
        for (name, action) in RuleAction::ALL {
            assert_eq!(action.as_str(), name);
            assert_eq!(RuleAction::from_name(name), Some(action));
        }
        assert_eq!(RuleAction::from_name("Reject"), None);
    }
}
