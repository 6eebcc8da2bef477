//! Perl regular expressions as SpamAssassin writes them, translated to the
//! syntax of the `regex` crate's byte API (`regex::bytes`).
//!
//! SpamAssassin matches its rules against octet strings (Perl "byte"
//! semantics): `\w`, `\s`, `\b` and `(?i)` are ASCII-only and `\xc3` is one
//! byte. The translation therefore starts every pattern with `(?-u)` and
//! spells non-ASCII literals as the bytes of their UTF-8 encoding. It is meant
//! for `regex::bytes::Regex` (Unicode off), not for `regex::Regex`.
//!
//! Three outcomes, see [`Class`]:
//! - **Rust**: the translation runs on the `regex` crate as is.
//! - **Backtracking**: the pattern needs lookaround, backreferences, atomic
//!   groups or possessive quantifiers; the translation is written in the
//!   `fancy-regex` dialect (which adds exactly those), with possessive
//!   quantifiers rewritten as atomic groups.
//! - **Unsupported**: embedded Perl code, recursion, conditionals, `\G`,
//!   Unicode properties on byte semantics and the like; the reason says which.
//!
//! Where a construct only moves the match span (`\K`, `\Z`, a non-`/m` `$`),
//! the translation keeps the match/no-match answer and may change the span;
//! rules only ask whether (and how often) a pattern matches.

use std::fmt::Write as _;

/// A Perl regular expression from a rule, verbatim, with its translation.
#[derive(Debug, Clone, PartialEq)]
pub struct PerlRegex {
    /// The pattern between the delimiters, verbatim.
    pub source: String,
    /// The modifiers after the closing delimiter, verbatim (`i`, `s`, `m`,
    /// `x`; `g` and `o` are accepted and ignored).
    pub flags: String,
    /// The pattern after ReplaceTags expansion (`replace_rules`), when it
    /// differs from `source`; the translation is of this text.
    pub expanded: Option<String>,
    /// The pattern in `regex::bytes` syntax (flags folded in as `(?ims)`), or
    /// in `fancy-regex` syntax when [`PerlRegex::backtracking`] is set; or why
    /// it cannot be translated.
    pub translated: Result<String, String>,
    /// The pattern needs a backtracking engine: see
    /// [`PerlRegex::backtracking_features`].
    pub backtracking: bool,
    /// The constructs that need backtracking (`lookahead`, `lookbehind`,
    /// `backreference`, `atomic group`, `possessive quantifier`), each once.
    pub backtracking_features: Vec<&'static str>,
}

/// How a pattern can be run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Valid for the `regex` crate after translation.
    Rust,
    /// Translated, but needs a backtracking engine (`fancy-regex` syntax).
    Backtracking,
    /// Cannot be translated.
    Unsupported,
}

impl PerlRegex {
    /// Translates `source` with the modifiers `flags`.
    #[must_use]
    pub fn new(source: &str, flags: &str) -> Self {
        let mut t = Translator::new(source, flags);
        let translated = t.run();
        let backtracking = !t.features.is_empty();
        Self {
            source: source.to_owned(),
            flags: flags.to_owned(),
            expanded: None,
            translated,
            backtracking,
            backtracking_features: t.features,
        }
    }

    /// Which engine can run the translation.
    #[must_use]
    pub fn class(&self) -> Class {
        match (&self.translated, self.backtracking) {
            (Err(_), _) => Class::Unsupported,
            (Ok(_), true) => Class::Backtracking,
            (Ok(_), false) => Class::Rust,
        }
    }
}

struct Translator<'a> {
    src: Vec<char>,
    pos: usize,
    flags: &'a str,
    out: String,
    extended: bool,
    multiline: bool,
    features: Vec<&'static str>,
    /// Output offset where the last quantifiable atom starts.
    atom: Option<usize>,
    groups: Vec<usize>,
}

type Step = Result<(), String>;

fn hex(out: &mut String, byte: u32) {
    let _ = write!(out, "\\x{byte:02X}");
}

fn utf8_bytes(out: &mut String, c: char) {
    let mut buf = [0u8; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        hex(out, u32::from(b));
    }
}

impl<'a> Translator<'a> {
    fn new(source: &str, flags: &'a str) -> Self {
        Self {
            src: source.chars().collect(),
            pos: 0,
            flags,
            out: String::with_capacity(source.len() + 16),
            extended: false,
            multiline: false,
            features: Vec::new(),
            atom: None,
            groups: Vec::new(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.src.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.src.get(self.pos + n).copied()
    }

    fn feature(&mut self, f: &'static str) {
        if !self.features.contains(&f) {
            self.features.push(f);
        }
    }

    fn run(&mut self) -> Result<String, String> {
        self.out.push_str("(?-u)");
        let mut inline = String::new();
        for f in self.flags.chars() {
            match f {
                'i' | 'm' | 's' => {
                    if !inline.contains(f) {
                        inline.push(f);
                    }
                    if f == 'm' {
                        self.multiline = true;
                    }
                }
                'x' => self.extended = true,
                'g' | 'o' | 'c' | 'p' | 'a' | 'u' | 'l' | 'd' => {}
                other => return Err(format!("modifier /{other} is not supported")),
            }
        }
        if !inline.is_empty() {
            let _ = write!(self.out, "(?{inline})");
        }
        while let Some(c) = self.peek() {
            self.pos += 1;
            self.step(c)?;
        }
        if !self.groups.is_empty() {
            return Err("unbalanced parenthesis".to_owned());
        }
        Ok(std::mem::take(&mut self.out))
    }

    fn atom_here(&mut self) {
        self.atom = Some(self.out.len());
    }

    fn step(&mut self, c: char) -> Step {
        match c {
            '\\' => {
                self.atom_here();
                self.escape()
            }
            '[' => {
                self.atom_here();
                self.class()
            }
            '(' => self.open_group(),
            ')' => {
                let start = self.groups.pop().ok_or("unbalanced parenthesis `)`")?;
                self.out.push(')');
                self.atom = Some(start);
                Ok(())
            }
            '*' | '+' | '?' => {
                self.out.push(c);
                self.quantifier_suffix();
                Ok(())
            }
            '{' => {
                if let Some(len) = self.counted_repetition() {
                    self.out.push('{');
                    for _ in 0..len {
                        if let Some(ch) = self.peek() {
                            self.out.push(ch);
                        }
                        self.pos += 1;
                    }
                    self.quantifier_suffix();
                } else {
                    self.atom_here();
                    self.out.push_str("\\{");
                }
                Ok(())
            }
            '}' => {
                self.atom_here();
                self.out.push_str("\\}");
                Ok(())
            }
            '$' => {
                self.atom = None;
                if self.multiline {
                    self.out.push('$');
                } else {
                    // Perl's `$` also matches before a final newline.
                    self.out.push_str("(?:\\n?\\z)");
                }
                Ok(())
            }
            '^' | '|' => {
                self.atom = None;
                self.out.push(c);
                Ok(())
            }
            c if self.extended && c.is_whitespace() => Ok(()),
            '#' if self.extended => {
                while let Some(ch) = self.peek() {
                    self.pos += 1;
                    if ch == '\n' {
                        break;
                    }
                }
                Ok(())
            }
            c if c.is_ascii() => {
                self.atom_here();
                if c == '.' || c.is_ascii_alphanumeric() || c == ' ' || c == '_' {
                    self.out.push(c);
                } else {
                    hex(&mut self.out, u32::from(c));
                }
                Ok(())
            }
            c => {
                // Byte semantics: a quantifier applies to the last byte.
                let mut buf = [0u8; 4];
                let bytes = c.encode_utf8(&mut buf).as_bytes();
                for (i, b) in bytes.iter().enumerate() {
                    if i + 1 == bytes.len() {
                        self.atom_here();
                    }
                    hex(&mut self.out, u32::from(*b));
                }
                Ok(())
            }
        }
    }

    /// Length (after `{`) of a valid `{n}`, `{n,}` or `{n,m}`, else `None`
    /// (Perl then reads the brace as a literal).
    fn counted_repetition(&self) -> Option<usize> {
        let mut i = self.pos;
        let digits = |i: &mut usize| {
            let start = *i;
            while self.src.get(*i).is_some_and(char::is_ascii_digit) {
                *i += 1;
            }
            *i - start
        };
        if digits(&mut i) == 0 {
            return None;
        }
        if self.src.get(i) == Some(&',') {
            i += 1;
            digits(&mut i);
        }
        if self.src.get(i) == Some(&'}') && self.atom.is_some() {
            Some(i + 1 - self.pos)
        } else {
            None
        }
    }

    fn quantifier_suffix(&mut self) {
        match self.peek() {
            Some('?') => {
                self.pos += 1;
                self.out.push('?');
            }
            Some('+') => {
                self.pos += 1;
                self.feature("possessive quantifier");
                if let Some(start) = self.atom {
                    self.out.insert_str(start, "(?>");
                    self.out.push(')');
                }
            }
            _ => {}
        }
        self.atom = None;
    }

    fn open_group(&mut self) -> Step {
        let start = self.out.len();
        if self.peek() == Some('*') {
            return Err("backtracking control verb `(*...)` is not supported".to_owned());
        }
        if self.peek() != Some('?') {
            self.groups.push(start);
            self.out.push('(');
            return Ok(());
        }
        self.pos += 1;
        let rest: String = self.src[self.pos..].iter().take(3).collect();
        let simple: &[(&str, &str, Option<&'static str>)] = &[
            (":", "(?:", None),
            ("=", "(?=", Some("lookahead")),
            ("!", "(?!", Some("lookahead")),
            ("<=", "(?<=", Some("lookbehind")),
            ("<!", "(?<!", Some("lookbehind")),
            (">", "(?>", Some("atomic group")),
            ("|", "(?:", None),
        ];
        for (prefix, emit, feature) in simple {
            if rest.starts_with(prefix) {
                self.pos += prefix.chars().count();
                if let Some(f) = feature {
                    self.feature(f);
                }
                self.groups.push(start);
                self.out.push_str(emit);
                return Ok(());
            }
        }
        match self.peek() {
            Some('#') => {
                while let Some(ch) = self.peek() {
                    self.pos += 1;
                    if ch == ')' {
                        return Ok(());
                    }
                }
                Err("unterminated `(?#` comment".to_owned())
            }
            Some('{') => Err("embedded Perl code `(?{...})` is not supported".to_owned()),
            Some('?') => Err("embedded Perl code `(??{...})` is not supported".to_owned()),
            Some('(') => Err("conditional group `(?(...)...)` is not supported".to_owned()),
            Some('R' | '&' | '+' | '0'..='9') => {
                Err("recursion `(?R)`/`(?N)`/`(?&name)` is not supported".to_owned())
            }
            Some('-') if self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) => {
                Err("recursion `(?-N)` is not supported".to_owned())
            }
            Some('<') | Some('\'') => {
                let close = if self.peek() == Some('<') { '>' } else { '\'' };
                self.pos += 1;
                self.named_group(start, close)
            }
            Some('P') => match self.peek_at(1) {
                Some('<') => {
                    self.pos += 2;
                    self.named_group(start, '>')
                }
                Some('=') => {
                    self.pos += 2;
                    let name = self.take_until(')')?;
                    self.feature("backreference");
                    self.atom_here();
                    let _ = write!(self.out, "\\k<{name}>");
                    Ok(())
                }
                _ => Err("recursion `(?P>name)` is not supported".to_owned()),
            },
            _ => self.inline_flags(start),
        }
    }

    fn take_until(&mut self, close: char) -> Result<String, String> {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            self.pos += 1;
            if ch == close {
                return Ok(name);
            }
            name.push(ch);
        }
        Err(format!("unterminated group name (expected `{close}`)"))
    }

    fn named_group(&mut self, start: usize, close: char) -> Step {
        let name = self.take_until(close)?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad group name `{name}`"));
        }
        self.groups.push(start);
        let _ = write!(self.out, "(?P<{name}>");
        Ok(())
    }

    fn inline_flags(&mut self, start: usize) -> Step {
        let mut on = String::new();
        let mut off = String::new();
        let mut negate = false;
        loop {
            let ch = self.peek().ok_or("unterminated `(?` group")?;
            self.pos += 1;
            match ch {
                '^' => {
                    off.push_str("ims");
                }
                '-' => negate = true,
                'i' | 'm' | 's' => {
                    if negate {
                        off.push(ch);
                    } else {
                        on.push(ch);
                        if ch == 'm' {
                            self.multiline = true;
                        }
                    }
                }
                'x' => return Err("inline `x` modifier is not supported".to_owned()),
                'a' | 'u' | 'l' | 'd' | 'n' | 'p' | 'o' => {}
                ':' | ')' => {
                    off.retain(|c| !on.contains(c));
                    let mut flags = on.clone();
                    if !off.is_empty() {
                        flags.push('-');
                        flags.push_str(&off);
                    }
                    if ch == ':' {
                        self.groups.push(start);
                        if flags.is_empty() {
                            self.out.push_str("(?:");
                        } else {
                            let _ = write!(self.out, "(?{flags}:");
                        }
                    } else if !flags.is_empty() {
                        let _ = write!(self.out, "(?{flags})");
                    }
                    return Ok(());
                }
                other => return Err(format!("unknown group construct `(?{other}`")),
            }
        }
    }

    fn take_hex(&mut self) -> Result<u32, String> {
        if self.peek() == Some('{') {
            self.pos += 1;
            let body = self.take_until('}')?;
            let body = body.trim();
            return u32::from_str_radix(body, 16)
                .map_err(|_| format!("bad escape `\\x{{{body}}}`"));
        }
        let mut v = 0u32;
        for _ in 0..2 {
            match self.peek().and_then(|c| c.to_digit(16)) {
                Some(d) => {
                    v = v * 16 + d;
                    self.pos += 1;
                }
                None => break,
            }
        }
        Ok(v)
    }

    fn take_octal(&mut self, first: u32) -> u32 {
        let mut v = first;
        for _ in 0..2 {
            match self.peek().and_then(|c| c.to_digit(8)) {
                Some(d) => {
                    v = v * 8 + d;
                    self.pos += 1;
                }
                None => break,
            }
        }
        v
    }

    /// A code point as bytes (outside a class).
    fn code_point(&mut self, v: u32) -> Step {
        if v <= 0xFF {
            hex(&mut self.out, v);
            Ok(())
        } else {
            let c = char::from_u32(v).ok_or_else(|| format!("bad code point {v:#x}"))?;
            self.out.push_str("(?:");
            utf8_bytes(&mut self.out, c);
            self.out.push(')');
            Ok(())
        }
    }

    fn escape(&mut self) -> Step {
        let c = self.peek().ok_or("trailing backslash")?;
        self.pos += 1;
        match c {
            'd' | 'D' | 'w' | 'W' | 's' | 'S' => {
                self.out.push('\\');
                self.out.push(c);
            }
            'b' | 'B' | 'A' | 'z' => {
                self.atom = None;
                self.out.push('\\');
                self.out.push(c);
            }
            'Z' => {
                self.atom = None;
                self.out.push_str("(?:\\n?\\z)");
            }
            'h' => self.out.push_str("[\\t ]"),
            'H' => self.out.push_str("[^\\t ]"),
            'v' => self.out.push_str("[\\n\\x0B\\x0C\\r]"),
            'V' => self.out.push_str("[^\\n\\x0B\\x0C\\r]"),
            'R' => self.out.push_str("(?:\\r\\n|[\\n\\x0B\\x0C\\r])"),
            'N' if self.peek() == Some('{') => {
                return Err("named character `\\N{...}` is not supported".to_owned())
            }
            'N' => self.out.push_str("[^\\n]"),
            'n' => self.out.push_str("\\n"),
            't' => self.out.push_str("\\t"),
            'r' => self.out.push_str("\\r"),
            'f' => self.out.push_str("\\x0C"),
            'e' => self.out.push_str("\\x1B"),
            'a' => self.out.push_str("\\x07"),
            'c' => {
                let ch = self.peek().ok_or("`\\c` at end of pattern")?;
                self.pos += 1;
                hex(&mut self.out, u32::from(ch.to_ascii_uppercase()) ^ 0x40);
            }
            'x' => {
                let v = self.take_hex()?;
                self.code_point(v)?;
            }
            'o' if self.peek() == Some('{') => {
                self.pos += 1;
                let body = self.take_until('}')?;
                let v = u32::from_str_radix(body.trim(), 8)
                    .map_err(|_| format!("bad escape `\\o{{{body}}}`"))?;
                self.code_point(v)?;
            }
            '0' => {
                let v = self.take_octal(0);
                hex(&mut self.out, v);
            }
            '1'..='9' => {
                let mut n = String::from(c);
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    n.push(d);
                    self.pos += 1;
                }
                self.feature("backreference");
                self.out.push('\\');
                self.out.push_str(&n);
            }
            'g' => {
                let name = if self.peek() == Some('{') {
                    self.pos += 1;
                    self.take_until('}')?
                } else {
                    let mut n = String::new();
                    while let Some(d) = self.peek().filter(|c| c.is_ascii_digit() || *c == '-') {
                        n.push(d);
                        self.pos += 1;
                    }
                    n
                };
                if name.starts_with('-') || name.is_empty() {
                    return Err(format!(
                        "relative backreference `\\g{name}` is not supported"
                    ));
                }
                self.feature("backreference");
                if name.chars().all(|c| c.is_ascii_digit()) {
                    let _ = write!(self.out, "\\{name}");
                } else {
                    let _ = write!(self.out, "\\k<{name}>");
                }
            }
            'k' => {
                let close = match self.peek() {
                    Some('<') => '>',
                    Some('{') => '}',
                    Some('\'') => '\'',
                    _ => return Err("bad named backreference `\\k`".to_owned()),
                };
                self.pos += 1;
                let name = self.take_until(close)?;
                self.feature("backreference");
                let _ = write!(self.out, "\\k<{name}>");
            }
            'K' => {
                // Only moves the start of the reported match.
                self.atom = None;
            }
            'Q' => {
                while let Some(ch) = self.peek() {
                    if ch == '\\' && self.peek_at(1) == Some('E') {
                        self.pos += 2;
                        break;
                    }
                    self.pos += 1;
                    self.atom_here();
                    self.literal(ch);
                }
            }
            'E' => self.atom = None,
            'G' => return Err("`\\G` is not supported".to_owned()),
            'p' | 'P' => {
                return Err(format!(
                    "Unicode property `\\{c}` is not supported on byte semantics"
                ))
            }
            'X' | 'C' | 'l' | 'u' | 'L' | 'U' => {
                return Err(format!("escape `\\{c}` is not supported"))
            }
            c if c.is_ascii_alphanumeric() => return Err(format!("unknown escape `\\{c}`")),
            c => self.literal(c),
        }
        Ok(())
    }

    fn literal(&mut self, c: char) {
        if c.is_ascii_alphanumeric() || c == '_' {
            self.out.push(c);
        } else if c.is_ascii() {
            hex(&mut self.out, u32::from(c));
        } else {
            utf8_bytes(&mut self.out, c);
        }
    }

    /// One item of a bracketed class: a single byte value, or text to emit.
    fn class_item(&mut self) -> Result<ClassItem, String> {
        let c = self.peek().ok_or("unterminated character class")?;
        self.pos += 1;
        if c == '[' && self.peek() == Some(':') {
            let mut text = String::from("[:");
            let mut i = self.pos + 1;
            while let Some(&ch) = self.src.get(i) {
                i += 1;
                if ch == ':' && self.src.get(i) == Some(&']') {
                    text.push_str(":]");
                    self.pos = i + 1;
                    return Ok(ClassItem::Text(text));
                }
                if !(ch.is_ascii_alphabetic() || ch == '^') {
                    break;
                }
                text.push(ch);
            }
            return Ok(ClassItem::Byte(u32::from('[')));
        }
        if c != '\\' {
            return if c.is_ascii() {
                Ok(ClassItem::Byte(u32::from(c)))
            } else {
                Ok(ClassItem::Char(c))
            };
        }
        let e = self.peek().ok_or("trailing backslash")?;
        self.pos += 1;
        Ok(match e {
            'd' | 'D' | 'w' | 'W' | 's' | 'S' => ClassItem::Text(format!("\\{e}")),
            'h' => ClassItem::Text("\\t ".to_owned()),
            'v' => ClassItem::Text("\\n\\x0B\\x0C\\r".to_owned()),
            'b' => ClassItem::Byte(8),
            'n' => ClassItem::Byte(10),
            't' => ClassItem::Byte(9),
            'r' => ClassItem::Byte(13),
            'f' => ClassItem::Byte(12),
            'e' => ClassItem::Byte(27),
            'a' => ClassItem::Byte(7),
            'c' => {
                let ch = self.peek().ok_or("`\\c` at end of pattern")?;
                self.pos += 1;
                ClassItem::Byte(u32::from(ch.to_ascii_uppercase()) ^ 0x40)
            }
            'x' => {
                let v = self.take_hex()?;
                if v > 0xFF {
                    return Err(format!(
                        "code point {v:#x} in a character class is not supported on bytes"
                    ));
                }
                ClassItem::Byte(v)
            }
            '0'..='7' => {
                let first = e.to_digit(8).unwrap_or(0);
                ClassItem::Byte(self.take_octal(first) & 0xFF)
            }
            'p' | 'P' => {
                return Err(format!(
                    "Unicode property `\\{e}` is not supported on byte semantics"
                ))
            }
            e if e.is_ascii_alphanumeric() => {
                return Err(format!(
                    "escape `\\{e}` in a character class is not supported"
                ))
            }
            e if e.is_ascii() => ClassItem::Byte(u32::from(e)),
            e => ClassItem::Char(e),
        })
    }

    fn class(&mut self) -> Step {
        self.out.push('[');
        if self.peek() == Some('^') {
            self.pos += 1;
            self.out.push('^');
        }
        let mut first = true;
        loop {
            let c = self.peek().ok_or("unterminated character class")?;
            if c == ']' && !first {
                self.pos += 1;
                self.out.push(']');
                return Ok(());
            }
            first = false;
            let item = self.class_item()?;
            let is_range = self.peek() == Some('-')
                && self.peek_at(1).is_some_and(|n| n != ']')
                && matches!(item, ClassItem::Byte(_) | ClassItem::Char(_));
            if is_range {
                self.pos += 1;
                let end = self.class_item()?;
                match (item, end) {
                    (ClassItem::Byte(a), ClassItem::Byte(b)) => {
                        if a > b {
                            return Err(format!("invalid class range {a:#x}-{b:#x}"));
                        }
                        hex(&mut self.out, a);
                        self.out.push('-');
                        hex(&mut self.out, b);
                    }
                    _ => {
                        return Err(
                            "class range with a multi-byte or class endpoint is not supported"
                                .to_owned(),
                        )
                    }
                }
                continue;
            }
            match item {
                ClassItem::Byte(b) => {
                    let ch = char::from_u32(b).unwrap_or('\0');
                    if ch.is_ascii_alphanumeric() {
                        self.out.push(ch);
                    } else {
                        hex(&mut self.out, b);
                    }
                }
                ClassItem::Char(c) => utf8_bytes(&mut self.out, c),
                ClassItem::Text(t) => self.out.push_str(&t),
            }
        }
    }
}

enum ClassItem {
    Byte(u32),
    Char(char),
    Text(String),
}

/// Splits `text` (starting at a delimiter) into a pattern and its modifiers:
/// `/re/flags`, `m{re}flags`, `m!re!flags`. Returns the pattern, the flags
/// and the byte length consumed, or an error with the byte offset it
/// applies to.
pub(crate) fn split_delimited(text: &str) -> Result<(&str, &str, usize), (usize, String)> {
    let mut chars = text.char_indices();
    let (open, body_start) = match chars.next() {
        Some((_, '/')) => ('/', 1),
        Some((_, 'm')) => match chars.next() {
            Some((i, c)) if !c.is_alphanumeric() && !c.is_whitespace() && c != '_' => {
                (c, i + c.len_utf8())
            }
            _ => return Err((0, "expected a regex like /.../ or m{...}".to_owned())),
        },
        _ => return Err((0, "expected a regex like /.../ or m{...}".to_owned())),
    };
    let close = match open {
        '{' => '}',
        '(' => ')',
        '[' => ']',
        '<' => '>',
        c => c,
    };
    let mut depth = 0usize;
    let mut escaped = false;
    for (i, c) in text[body_start..].char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
        } else if c == open && open != close {
            depth += 1;
        } else if c == close {
            if depth == 0 {
                let end = body_start + i;
                let after = end + c.len_utf8();
                let flags_len = text[after..]
                    .find(|ch: char| !ch.is_ascii_alphabetic())
                    .unwrap_or(text.len() - after);
                return Ok((
                    &text[body_start..end],
                    &text[after..after + flags_len],
                    after + flags_len,
                ));
            }
            depth -= 1;
        }
    }
    Err((0, format!("unterminated regex: no closing `{close}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(src: &str, flags: &str) -> String {
        match PerlRegex::new(src, flags).translated {
            Ok(t) => t,
            Err(e) => format!("ERR {e}"),
        }
    }

    #[test]
    fn table() {
        let cases: &[(&str, &str, &str)] = &[
            ("abc", "", "(?-u)abc"),
            ("abc", "i", "(?-u)(?i)abc"),
            ("a.b", "is", "(?-u)(?is)a.b"),
            ("^foo$", "", "(?-u)^foo(?:\\n?\\z)"),
            ("^foo$", "m", "(?-u)(?m)^foo$"),
            ("foo\\z", "", "(?-u)foo\\z"),
            ("foo\\Z", "", "(?-u)foo(?:\\n?\\z)"),
            ("a\\/b", "", "(?-u)a\\x2Fb"),
            ("a\\hb", "", "(?-u)a[\\t ]b"),
            ("[\\h,]", "", "(?-u)[\\t \\x2C]"),
            ("\\xc3\\xa9", "", "(?-u)\\xC3\\xA9"),
            ("\\x{e9}", "", "(?-u)\\xE9"),
            ("\\x{263a}", "", "(?-u)(?:\\xE2\\x98\\xBA)"),
            ("é", "", "(?-u)\\xC3\\xA9"),
            ("[é]", "", "(?-u)[\\xC3\\xA9]"),
            (
                "[a-z0-9_.-]",
                "",
                "(?-u)[\\x61-\\x7A\\x30-\\x39\\x5F\\x2E\\x2D]",
            ),
            ("[]a]", "", "(?-u)[\\x5Da]"),
            ("[[:alpha:]]", "", "(?-u)[[:alpha:]]"),
            ("[&~]", "", "(?-u)[\\x26\\x7E]"),
            ("a{2,3}", "", "(?-u)a{2,3}"),
            ("a{,3}", "", "(?-u)a\\{\\x2C3\\}"),
            ("{foo}", "", "(?-u)\\{foo\\}"),
            ("a b # c\n d", "x", "(?-u)abd"),
            ("[ ]", "x", "(?-u)[\\x20]"),
            ("(?i:ab)", "", "(?-u)(?i:ab)"),
            ("(?^i:ab)", "", "(?-u)(?i-ms:ab)"),
            ("(?<n>a)", "", "(?-u)(?P<n>a)"),
            ("(?#note)a", "", "(?-u)a"),
            ("(?|a|b)", "", "(?-u)(?:a|b)"),
            ("foo\\Kbar", "", "(?-u)foobar"),
            ("\\Qa.b\\E", "", "(?-u)a\\x2Eb"),
            ("\\e\\cA\\012", "", "(?-u)\\x1B\\x01\\x0A"),
            ("a(?=b)", "", "(?-u)a(?=b)"),
            ("(a)\\1", "", "(?-u)(a)\\1"),
            ("a++b", "", "(?-u)(?>a+)b"),
            ("(ab)*+c", "", "(?-u)(?>(ab)*)c"),
            ("a{2,3}+", "", "(?-u)(?>a{2,3})"),
            ("(?>ab)", "", "(?-u)(?>ab)"),
            (
                "a(?{ 1 })",
                "",
                "ERR embedded Perl code `(?{...})` is not supported",
            ),
            (
                "(?R)",
                "",
                "ERR recursion `(?R)`/`(?N)`/`(?&name)` is not supported",
            ),
            ("\\G", "", "ERR `\\G` is not supported"),
            (
                "\\p{L}",
                "",
                "ERR Unicode property `\\p` is not supported on byte semantics",
            ),
            ("(a", "", "ERR unbalanced parenthesis"),
            ("a)", "", "ERR unbalanced parenthesis `)`"),
            ("a", "e", "ERR modifier /e is not supported"),
        ];
        let bad: Vec<String> = cases
            .iter()
            .filter(|(src, flags, want)| tr(src, flags) != *want)
            .map(|(src, flags, want)| format!("/{src}/{flags}: got {} want {want}", tr(src, flags)))
            .collect();
        assert!(bad.is_empty(), "{bad:#?}");
    }

    #[test]
    fn classes() {
        assert_eq!(PerlRegex::new("a", "").class(), Class::Rust);
        let b = PerlRegex::new("a(?!b)\\1", "");
        assert_eq!(b.class(), Class::Backtracking);
        assert_eq!(b.backtracking_features, vec!["lookahead", "backreference"]);
        assert_eq!(PerlRegex::new("(?{1})", "").class(), Class::Unsupported);
    }

    #[test]
    fn delimiters() {
        assert_eq!(split_delimited("/a\\/b/i rest"), Ok(("a\\/b", "i", 7)));
        assert_eq!(split_delimited("m{a{1}b}s"), Ok(("a{1}b", "s", 9)));
        assert_eq!(split_delimited("m!a/b!"), Ok(("a/b", "", 6)));
        assert!(split_delimited("/abc").is_err());
        assert!(split_delimited("abc").is_err());
    }
}
