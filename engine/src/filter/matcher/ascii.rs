//! Patterns restricted to ASCII haystacks.
//!
//! Most mail's body text is plain ASCII, and many of SpamAssassin's
//! costliest patterns spend most of their states on bytes above `0x7F`: the
//! look-alike families spell each letter as an alternation of its Latin-1,
//! Greek and Cyrillic twins (`(?:[pP\xd1\xf1\xfe]|[\xce][\xa1]|...)`). On a
//! haystack with no byte above `0x7F` none of those branches can match, so
//! the pattern without them matches exactly where the original does.
//! [`ascii_only`] writes that pattern: it drops
//!
//! - alternation branches that cannot match without such a byte,
//! - class members above `0x7F` (a range is cut at `\x7F`),
//! - optional items (`x?`, `x*`, `x{0,n}`) that need one,
//!
//! and says when nothing is left ([`AsciiForm::Never`]). A negative
//! lookaround whose body needs such a byte always succeeds and is dropped.
//! Negated classes, `\W` and the like are kept as they are: they also match
//! ASCII bytes, and what they say about the others does not matter here.
//!
//! Anything this does not parse with certainty gives [`AsciiForm::Same`]:
//! backreferences (dropping a group would renumber them), `\Q..\E`, the
//! extended (`x`) flag, branch resets, Unicode escapes.

use super::translate;

/// What a pattern becomes on haystacks with no byte above `0x7F`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AsciiForm {
    /// Nothing to drop, or a construct this does not rewrite.
    Same,
    /// No match is possible: every way to match needs a byte above `0x7F`.
    Never,
    /// The pattern without what needs a byte above `0x7F`.
    Text(String),
}

/// The pattern `text` (Perl syntax, as Hyperscan reads it) for ASCII
/// haystacks; see the module doc. The pattern is read as bytes, as Perl and
/// Hyperscan read it: a non-ASCII character is its UTF-8 bytes, and a
/// quantifier after it takes the last byte only (`é?` is `\xC3\xA9?`).
pub(crate) fn ascii_only(text: &str) -> AsciiForm {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
        flag_groups: 0,
    };
    match p.alternation() {
        Ok(_) if p.i < text.len() => AsciiForm::Same, // an unbalanced `)`
        Ok(None) => AsciiForm::Never,
        Ok(Some(out)) if out == text => AsciiForm::Same,
        Ok(Some(out)) => AsciiForm::Text(out),
        Err(Bail) => AsciiForm::Same,
    }
}

/// A construct this module leaves alone: the whole pattern stays as it is.
struct Bail;

/// `Some(text)`: the piece for ASCII haystacks; `None`: it cannot match one.
type Piece = Result<Option<String>, Bail>;

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    /// Inline flag groups (`(?i)`) read so far.
    flag_groups: usize,
}

/// A class member: one byte value, or a set escape kept as written.
enum Member {
    Byte(u8),
    Set(String),
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn peek_at(&self, k: usize) -> Option<u8> {
        self.s.get(self.i + k).copied()
    }

    /// The pattern text from `start` to the cursor. Pieces start and end at
    /// ASCII bytes, so this is whole characters; anything else is not
    /// rewritten.
    fn since(&self, start: usize) -> Result<String, Bail> {
        std::str::from_utf8(&self.s[start..self.i])
            .map(str::to_owned)
            .map_err(|_| Bail)
    }

    /// The index of the first `byte` at or after `from`.
    fn find(&self, from: usize, byte: u8) -> Result<usize, Bail> {
        (from..self.s.len())
            .find(|&k| self.s[k] == byte)
            .ok_or(Bail)
    }

    /// Branches up to a `)` (not taken) or the end.
    fn alternation(&mut self) -> Piece {
        let mut kept: Vec<String> = Vec::new();
        loop {
            if let Some(branch) = self.sequence()? {
                kept.push(branch);
            }
            match self.peek() {
                Some(b'|') => self.i += 1,
                _ => break,
            }
        }
        Ok((!kept.is_empty()).then(|| kept.join("|")))
    }

    fn sequence(&mut self) -> Piece {
        let mut out = String::new();
        let mut possible = true;
        let flag_groups = self.flag_groups;
        while let Some(c) = self.peek() {
            if c == b'|' || c == b')' {
                break;
            }
            let atom = self.atom()?;
            let (quantifier, min) = self.quantifier()?;
            match atom {
                Some(a) => {
                    out.push_str(&a);
                    out.push_str(&quantifier);
                }
                // an optional item that needs a wide byte matches empty
                None if min == 0 => {}
                None => possible = false,
            }
        }
        // `(?i)` in a branch also sets the flag for the branches after it
        // (Perl): dropping the branch would drop the flag
        if !possible && self.flag_groups != flag_groups {
            return Err(Bail);
        }
        Ok(possible.then_some(out))
    }

    /// A quantifier after an atom: its text and its lower bound (1 when there
    /// is none).
    fn quantifier(&mut self) -> Result<(String, u32), Bail> {
        let start = self.i;
        let min = match self.peek() {
            Some(b'?' | b'*') => {
                self.i += 1;
                0
            }
            Some(b'+') => {
                self.i += 1;
                1
            }
            Some(b'{') => match translate::repeat_bounds(&self.s[self.i..]) {
                Some((len, min, _)) => {
                    self.i += len;
                    min
                }
                None => return Ok((String::new(), 1)),
            },
            _ => return Ok((String::new(), 1)),
        };
        // lazy or possessive
        if matches!(self.peek(), Some(b'?' | b'+')) {
            self.i += 1;
        }
        Ok((self.since(start)?, min))
    }

    fn atom(&mut self) -> Piece {
        let start = self.i;
        let Some(c) = self.peek() else {
            return Err(Bail);
        };
        match c {
            b'\\' => self.escape(),
            b'[' => self.class(),
            b'(' => self.group(),
            b'?' | b'*' | b'+' => Err(Bail),
            b'{' if translate::repeat_bounds(&self.s[self.i..]).is_some() => Err(Bail),
            _ => {
                self.i += 1;
                if c.is_ascii() {
                    self.since(start).map(Some)
                } else {
                    Ok(None)
                }
            }
        }
    }

    /// An escape outside a class.
    fn escape(&mut self) -> Piece {
        let start = self.i;
        match self.byte_escape()? {
            Member::Byte(v) if v.is_ascii() => self.since(start).map(Some),
            Member::Byte(_) => Ok(None),
            Member::Set(text) => Ok(Some(text)),
        }
    }

    /// An escape at the cursor (its backslash), as a class member would read
    /// it; outside a class the same escapes mean the same bytes, and the
    /// zero-width ones (`\b`, `\A`, ...) come back as [`Member::Set`].
    fn byte_escape(&mut self) -> Result<Member, Bail> {
        let start = self.i;
        self.i += 1;
        let c = self.peek().ok_or(Bail)?;
        self.i += 1;
        let value = match c {
            b'x' if self.peek() == Some(b'{') => {
                let close = self.find(self.i, b'}')?;
                let hex = std::str::from_utf8(&self.s[self.i + 1..close]).map_err(|_| Bail)?;
                self.i = close + 1;
                // a code point above 0xFF needs Unicode: not rewritten
                u8::try_from(u32::from_str_radix(hex.trim(), 16).map_err(|_| Bail)?)
                    .map_err(|_| Bail)?
            }
            // `\xHH` and `\0oo`: up to two more digits
            b'x' => self.digits(16),
            b'0' => self.digits(8),
            b'c' => {
                // `\cX`: a control character
                if self.peek().is_none() {
                    return Err(Bail);
                }
                self.i += 1;
                return Ok(Member::Set(self.since(start)?));
            }
            // backreferences, octal escapes that read like them, and what
            // this module does not rewrite
            b'1'..=b'9'
            | b'g'
            | b'k'
            | b'K'
            | b'G'
            | b'Q'
            | b'E'
            | b'p'
            | b'P'
            | b'X'
            | b'C'
            | b'N'
            | b'o' => return Err(Bail),
            b'n' => 0x0A,
            b't' => 0x09,
            b'r' => 0x0D,
            b'f' => 0x0C,
            b'e' => 0x1B,
            b'a' => 0x07,
            c if c.is_ascii_alphanumeric() => return Ok(Member::Set(self.since(start)?)),
            // an escaped punctuation character, or the first byte of an
            // escaped non-ASCII one: itself
            c => c,
        };
        Ok(Member::Byte(value))
    }

    /// Up to two digits of `radix` at the cursor, as a value (none is 0).
    fn digits(&mut self, radix: u32) -> u8 {
        let n = (0..2)
            .take_while(|&k| {
                self.peek_at(k)
                    .is_some_and(|c| char::from(c).is_digit(radix))
            })
            .count();
        let value = self.s[self.i..self.i + n]
            .iter()
            .filter_map(|&c| char::from(c).to_digit(radix))
            .fold(0, |v, d| v * radix + d);
        self.i += n;
        // two hex or octal digits are at most 0xFF
        u8::try_from(value).unwrap_or(u8::MAX)
    }

    fn class(&mut self) -> Piece {
        let start = self.i;
        self.i += 1;
        let negated = self.peek() == Some(b'^');
        if negated {
            self.i += 1;
        }
        // (low, high, text) of what is kept; `text` set for set escapes
        let mut kept: Vec<(u8, u8, Option<String>)> = Vec::new();
        let mut changed = false;
        let mut first = true;
        loop {
            let c = self.peek().ok_or(Bail)?;
            if c == b']' && !first {
                self.i += 1;
                break;
            }
            first = false;
            let low = self.member()?;
            // a range `a-b` (a `-` before `]` is literal)
            let range = self.peek() == Some(b'-') && self.peek_at(1).is_some_and(|c| c != b']');
            if range {
                self.i += 1;
                let high = self.member()?;
                let (Member::Byte(lo), Member::Byte(hi)) = (low, high) else {
                    return Err(Bail);
                };
                if lo > hi {
                    return Err(Bail);
                }
                if !lo.is_ascii() {
                    changed = true;
                } else {
                    changed |= !hi.is_ascii();
                    kept.push((lo, hi.min(0x7F), None));
                }
                continue;
            }
            match low {
                Member::Byte(v) if v.is_ascii() => kept.push((v, v, None)),
                Member::Byte(_) => changed = true,
                Member::Set(text) => kept.push((0, 0, Some(text))),
            }
        }
        if negated || !changed {
            return self.since(start).map(Some);
        }
        if kept.is_empty() {
            return Ok(None);
        }
        let mut out = String::from("[");
        for (lo, hi, text) in kept {
            match text {
                Some(t) => out.push_str(&t),
                None => {
                    push_byte(&mut out, lo);
                    if hi != lo {
                        out.push('-');
                        push_byte(&mut out, hi);
                    }
                }
            }
        }
        out.push(']');
        Ok(Some(out))
    }

    /// One class member at the cursor (a non-ASCII character is several
    /// members, one per byte).
    fn member(&mut self) -> Result<Member, Bail> {
        let start = self.i;
        match self.peek().ok_or(Bail)? {
            b'[' if self.peek_at(1) == Some(b':') => {
                let close = (self.i + 2..self.s.len().saturating_sub(1))
                    .find(|&k| self.s[k] == b':' && self.s[k + 1] == b']')
                    .ok_or(Bail)?;
                self.i = close + 2;
                Ok(Member::Set(self.since(start)?))
            }
            b'\\' => match self.byte_escape()? {
                // in a class `\b` is a backspace
                Member::Set(t) if t == "\\b" => Ok(Member::Byte(0x08)),
                m => Ok(m),
            },
            c => {
                self.i += 1;
                Ok(Member::Byte(c))
            }
        }
    }

    fn group(&mut self) -> Piece {
        let start = self.i;
        self.i += 1;
        enum Kind {
            Plain,
            Lookahead { negative: bool },
            Flags,
        }
        let kind = if self.peek() == Some(b'?') {
            self.i += 1;
            match self.peek().ok_or(Bail)? {
                b':' | b'>' => {
                    self.i += 1;
                    Kind::Plain
                }
                b'=' | b'!' => {
                    let negative = self.peek() == Some(b'!');
                    self.i += 1;
                    Kind::Lookahead { negative }
                }
                b'<' if matches!(self.peek_at(1), Some(b'=' | b'!')) => {
                    let negative = self.peek_at(1) == Some(b'!');
                    self.i += 2;
                    Kind::Lookahead { negative }
                }
                b'<' | b'\'' | b'P' => {
                    // a named group: `(?<n>`, `(?'n'`, `(?P<n>` (`(?P=n)`
                    // and `(?P>n)` are a backreference and a recursion)
                    if self.peek() == Some(b'P') {
                        if self.peek_at(1) != Some(b'<') {
                            return Err(Bail);
                        }
                        self.i += 1;
                    }
                    let close = if self.peek() == Some(b'\'') {
                        b'\''
                    } else {
                        b'>'
                    };
                    self.i = self.find(self.i + 1, close)? + 1;
                    Kind::Plain
                }
                b'#' => {
                    self.i = self.find(self.i, b')')? + 1;
                    return self.since(start).map(Some);
                }
                _ => {
                    // inline flags; `x` changes how the rest reads, and
                    // anything else here (recursion, callouts, conditions)
                    // is not rewritten
                    while self.peek().is_some_and(|c| b"imsn-".contains(&c)) {
                        self.i += 1;
                    }
                    match self.peek() {
                        Some(b')') => {
                            self.i += 1;
                            self.flag_groups += 1;
                            return self.since(start).map(Some);
                        }
                        Some(b':') => {
                            self.i += 1;
                            Kind::Flags
                        }
                        _ => return Err(Bail),
                    }
                }
            }
        } else {
            Kind::Plain
        };
        let open = self.since(start)?;
        let body = self.alternation()?;
        if self.peek() != Some(b')') {
            return Err(Bail);
        }
        self.i += 1;
        Ok(match (kind, body) {
            // a negative lookaround that cannot match always succeeds
            (Kind::Lookahead { negative: true }, None) => Some(String::new()),
            (_, None) => None,
            (Kind::Plain | Kind::Flags | Kind::Lookahead { .. }, Some(body)) => {
                Some(format!("{open}{body})"))
            }
        })
    }
}

/// One byte as a class member: letters and digits as they are, every other
/// byte as `\xHH` (no `-`, `^` or `]` can take a meaning it did not have).
fn push_byte(out: &mut String, v: u8) {
    if v.is_ascii_alphanumeric() {
        out.push(char::from(v));
    } else {
        out.push_str(&format!("\\x{v:02X}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> String {
        match ascii_only(t) {
            AsciiForm::Text(s) => s,
            other => panic!("{t}: {other:?}"),
        }
    }

    #[test]
    fn drops_branches_members_and_optional_items_that_need_wide_bytes() {
        assert_eq!(
            text(r"(?:[pP\xd1\xf1\xfe]|[\xce][\xa1]|[\xd0][\xa0])h"),
            "(?:[pP])h"
        );
        assert_eq!(text(r"a[\x7b-\xff]b"), r"a[\x7B-\x7F]b");
        assert_eq!(text(r"a\xe9?b"), "ab");
        assert_eq!(text(r"a(?:\xc3\xa9){0,2}b"), "ab");
        assert_eq!(text("caf(?:e|é)"), "caf(?:e)");
        // `é?` is `\xC3\xA9?`: its first byte is not optional
        assert_eq!(text("(?:a|b?é?)c"), "(?:a)c");
        assert_eq!(ascii_only("^é?A"), AsciiForm::Never);
        assert_eq!(text(r"a(?:é)?b"), "ab");
        assert_eq!(text(r"x(?!\xd1)y"), "xy");
        assert_eq!(text(r"x(?!a|\xd1)y"), "x(?!a)y");
        assert_eq!(text(r"[a\xd1^-]"), r"[a\x5E\x2D]");
        assert_eq!(text(r"(?i:[a\xe0])"), "(?i:[a])");
    }

    #[test]
    fn says_never_when_nothing_is_left() {
        assert_eq!(ascii_only(r"\xd1\x80"), AsciiForm::Never);
        assert_eq!(ascii_only(r"a(?:[\xce][\xa1]|\xd0)"), AsciiForm::Never);
        assert_eq!(ascii_only(r"x(?=\xd1)"), AsciiForm::Never);
        assert_eq!(ascii_only("é"), AsciiForm::Never);
    }

    #[test]
    fn leaves_alone_what_it_cannot_rewrite_with_certainty() {
        for t in [
            r"(a)\xd1?\1",
            r"\Q\xd1\E",
            r"(?x) a \xd1?",
            r"(?|a|\xd1)",
            r"\p{L}\xd1?",
            r"[\w-\xd1]",
            r"a)\xd1?(",
            r"[a\xd1",
            "plain",
            r"[^\xd1]\W\xff*?",
        ] {
            // the last one: negated classes and `\W` stay, and the optional
            // wide byte goes
            if t.starts_with("[^") {
                assert_eq!(text(t), r"[^\xd1]\W");
                continue;
            }
            assert_eq!(ascii_only(t), AsciiForm::Same, "{t}");
        }
    }

    #[test]
    fn groups_named_commented_and_flagged() {
        assert_eq!(text(r"(?<n>a|\xd1)(?'m'b|\xd2)"), "(?<n>a)(?'m'b)");
        assert_eq!(text(r"(?P<n>a|\xd1)(?#c)(?i)x"), "(?P<n>a)(?#c)(?i)x");
        assert_eq!(text(r"(?i-m:a|\xd1)"), "(?i-m:a)");
        for t in [
            r"\xd1(?i)|A",
            r"(?:b\xd1(?i)|A)",
            r"(?P=n)\xd1?",
            r"(?P>n)\xd1?",
            r"(?R)\xd1?",
            r"(?1)\xd1?",
            r"(?(1)a|b)\xd1?",
            r"\c",
        ] {
            assert_eq!(ascii_only(t), AsciiForm::Same, "{t}");
        }
    }

    proptest::proptest! {
        /// Any text, and text made of the syntax this module reads: no
        /// panic.
        #[test]
        fn never_panics(
            t in "\\PC{0,60}",
            u in proptest::collection::vec(proptest::sample::select(vec![
                "\\", "[", "]", "^", "-", "(", ")", "(?", ":", "=", "!", "<", ">", "'", "P",
                "|", "?", "*", "+", "{", "}", "1", ",", "x", "c", "0", "e9", "\\xd1", "[:alpha:]",
                "a", "é", "#", "i", "\\Q", "\\E", "\\b", "\\w", "$", ".",
            ]), 0..30),
        ) {
            let _ = ascii_only(&t);
            let _ = ascii_only(&u.concat());
        }
    }

    #[test]
    fn quantifiers_and_literal_braces() {
        assert_eq!(text(r"a{2,3}\xd1{0}b{x"), "a{2,3}b{x");
        assert_eq!(ascii_only(r"\xd1{1,3}"), AsciiForm::Never);
        assert_eq!(text(r"(?:\xd1|b)+?c"), "(?:b)+?c");
    }
}
