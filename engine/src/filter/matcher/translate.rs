//! Pattern text rewriting, so that three engines agree on one meaning.
//!
//! Rule patterns use Perl/PCRE syntax and are matched against message
//! **bytes** (SpamAssassin matches byte strings; Perl's default `/d` rules
//! then give ASCII-only `\w`, `\d`, `\s`, `\b` and ASCII-only case folding).
//! Hyperscan in non-UTF-8 mode already has these semantics. The `regex` and
//! `fancy-regex` crates get them from a bytes regex with Unicode off, after
//! the rewrites below:
//!
//! - a non-ASCII character in the pattern becomes one `\xHH` escape per UTF-8
//!   byte (Perl reads the pattern source as bytes: `[é]` is a class of the two
//!   bytes `C3`, `A9`, exactly as Hyperscan reads it);
//! - `$` outside multi-line scope and `\Z` get Perl's meaning "end, or before a
//!   final `\n`" (the `regex` crate's `$` is the end only); a multi-line `^`
//!   does not match after a final `\n` (Perl and Hyperscan; the `regex` crate
//!   matches there), which takes a lookahead;
//! - inside a class, `[` (unless it opens `[:name:]`), `&` and `~` are escaped:
//!   the `regex` crate reads nested classes and `&&`/`~~` as set operations,
//!   Perl reads them as plain characters;
//! - backreferences and lookaround mark the pattern for `fancy-regex`.
//!
//! A pattern that uses `\p{..}`/`\P{..}` or a code point above `\xFF` needs
//! Unicode semantics: it keeps its text and is matched by `fancy-regex` in its
//! Unicode-on-bytes mode (never by Hyperscan, whose UTF-8 mode is undefined on
//! the invalid UTF-8 that mail carries).

use std::fmt::Write as _;

/// The rewritten text and what it needs from the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Translated {
    /// Text for `regex::bytes` / `fancy-regex` (bytes mode).
    pub(crate) text: String,
    /// Uses a backreference, lookaround, atomic group or a `$` whose Perl
    /// meaning needs a lookahead: only `fancy-regex` runs it.
    pub(crate) needs_fancy: bool,
    /// Uses Unicode properties or code points above `\xFF`.
    pub(crate) needs_unicode: bool,
}

/// Escapes a literal string as a pattern matching exactly its UTF-8 bytes:
/// ASCII letters and digits stay, every other byte becomes `\xHH`. The same
/// text serves Hyperscan, `regex::bytes` (Unicode off) and `fancy-regex`.
pub(crate) fn escape_literal(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len() * 2);
    for b in literal.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
    out
}

/// The pattern text handed to Hyperscan: the source unchanged except that a
/// NUL character (which a C string cannot hold) becomes `\x00`.
pub(crate) fn hyperscan_text(source: &str) -> String {
    source.replace('\0', "\\x00")
}

/// A pattern for the `regex` crate that matches wherever the translated
/// `fancy` pattern can (a superset): lookarounds are dropped, atomic groups
/// become plain groups and backreferences match anything. Running it first
/// (a DFA, linear time) spares the backtracking engine most of the
/// haystacks a Hyperscan prefilter lets through. `None` when the text has
/// nothing to drop (or uses a construct this does not know); the caller
/// also drops it when the `regex` crate refuses the result.
pub(crate) fn fancy_superset(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    let mut in_class = false;
    let mut class_start = 0usize;
    let mut i = 0usize;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            let next = *b.get(i + 1)?;
            if !in_class && (next.is_ascii_digit() && next != b'0' || next == b'k' || next == b'g')
            {
                // a backreference: `\N`, `\k<name>`, `\k{name}`, `\g{N}`, `\gN`
                let mut j = i + 2;
                if next.is_ascii_digit() {
                    while b.get(j).is_some_and(u8::is_ascii_digit) {
                        j += 1;
                    }
                } else {
                    match b.get(j) {
                        Some(b'<') => j = j + text[j..].find('>')? + 1,
                        Some(b'{') => j = j + text[j..].find('}')? + 1,
                        Some(d) if d.is_ascii_digit() || *d == b'-' => {
                            j += 1;
                            while b.get(j).is_some_and(u8::is_ascii_digit) {
                                j += 1;
                            }
                        }
                        _ => return None,
                    }
                }
                out.push_str("(?s:.*)");
                changed = true;
                i = j;
                continue;
            }
            // copy the escape whole (`\xHH`, `\x{..}`, `\Q..\E` are not
            // special to the scan; only `\` + one char matters here)
            out.push_str(&text[i..i + 1 + text[i + 1..].chars().next()?.len_utf8()]);
            i += 1 + text[i + 1..].chars().next()?.len_utf8();
            continue;
        }
        if in_class {
            if c == b']' && i > class_start {
                in_class = false;
            }
            let ch = text[i..].chars().next()?;
            out.push(ch);
            i += ch.len_utf8();
            continue;
        }
        match c {
            b'[' => {
                in_class = true;
                out.push('[');
                i += 1;
                if b.get(i) == Some(&b'^') {
                    out.push('^');
                    i += 1;
                }
                class_start = i;
                if b.get(i) == Some(&b']') {
                    out.push(']');
                    i += 1;
                }
            }
            b'(' if b.get(i + 1) == Some(&b'?') => {
                let rest = &b[i + 2..];
                let lookaround = rest.starts_with(b"=")
                    || rest.starts_with(b"!")
                    || rest.starts_with(b"<=")
                    || rest.starts_with(b"<!");
                if lookaround {
                    i = group_end(text, i)?;
                    // a quantified lookaround would leave a dangling quantifier
                    if matches!(b.get(i), Some(b'*' | b'+' | b'?' | b'{')) {
                        return None;
                    }
                    changed = true;
                } else if rest.starts_with(b">") {
                    out.push_str("(?:");
                    changed = true;
                    i += 3;
                } else if rest.starts_with(b"(") || rest.starts_with(b"|") {
                    return None; // conditionals, branch reset
                } else {
                    out.push('(');
                    i += 1;
                }
            }
            _ => {
                let ch = text[i..].chars().next()?;
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    changed.then_some(out)
}

/// The index just past the group that opens at `open` (a `(`).
fn group_end(text: &str, open: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut in_class = false;
    let mut class_start = 0usize;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                i += 2;
                continue;
            }
            b']' if in_class && i > class_start => in_class = false,
            _ if in_class => {}
            b'[' => {
                in_class = true;
                class_start = i + 1;
                if b.get(i + 1) == Some(&b'^') {
                    class_start += 1;
                }
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Hyperscan compiles a bounded repeat `x{n,m}` by unrolling it into about
/// `m` states, and a few stock rules (wide repeats around alternations, as in
/// `__SPOOFED_URL` or `__FILL_THIS_FORM_*`) take tens of seconds to compile
/// that way. Widening `{n,m}` to `{n,}` gives a pattern that matches a
/// superset of the original's haystacks and compiles in milliseconds, so it
/// can run as a Hyperscan prefilter whose hits the backtracking engine
/// confirms with the exact pattern.
///
/// Returns the widened text when at least one repeat has an upper bound of at
/// least `min_upper`, else `None`. Escapes, `\Q..\E` and character classes
/// are copied unchanged; `{n}`, `{n,}` and a `{` that does not open a repeat
/// are left alone.
pub(crate) fn relax_bounded_repeats(source: &str, min_upper: u32) -> Option<String> {
    let b = source.as_bytes();
    rewrite_outside_classes(source, |i| {
        if b[i] != b'{' {
            return None;
        }
        match repeat_bounds(&b[i..]) {
            Some((len, _, Some(upper))) if upper >= min_upper => {
                // keep `{n,`, drop the upper bound
                let comma = i + b[i..i + len].iter().position(|&c| c == b',').unwrap_or(0);
                Some((len, format!("{}}}", &source[i..=comma])))
            }
            _ => None,
        }
    })
}

/// Hyperscan refuses a start anchor inside a pattern (`/^Message-Id:.*?^Received:/m`,
/// `(?:\A|\s)x`). Without its inner `^` and `\A` a pattern matches a
/// superset of the original's haystacks (an assertion only ever removes
/// matches), so it can run as a Hyperscan prefilter confirmed by the exact
/// pattern instead of running the backtracking engine on every haystack.
///
/// Returns the text without them when there is at least one, else `None`.
/// A leading anchor (after inline flag groups such as `(?x)`) is kept;
/// escapes, `\Q..\E` and character classes are copied unchanged.
pub(crate) fn drop_inner_start_anchors(source: &str) -> Option<String> {
    let b = source.as_bytes();
    // leading `(?flags)` groups
    let mut lead = 0usize;
    while b[lead..].starts_with(b"(?") {
        let flags = b[lead + 2..]
            .iter()
            .take_while(|c| c.is_ascii_alphabetic())
            .count();
        if b.get(lead + 2 + flags) != Some(&b')') {
            break;
        }
        lead += 3 + flags;
    }
    rewrite_outside_classes(source, |i| match &b[i..] {
        _ if i <= lead => None,
        [b'^', ..] => Some((1, String::new())),
        [b'\\', b'A', ..] => Some((2, String::new())),
        _ => None,
    })
}

/// A body rule's `\A`, `\z` and `\Z` (the ends of the string: of one body
/// element in SpamAssassin) as `^` and `$`, which multi-line mode puts at
/// the ends of each line of the body text. Escapes, `\Q..\E` and
/// character classes are copied unchanged.
pub(crate) fn element_anchors(source: &str) -> Option<String> {
    rewrite_outside_classes(source, |i| match &source.as_bytes()[i..] {
        [b'\\', b'A', ..] => Some((2, "^".to_owned())),
        [b'\\', b'z' | b'Z', ..] => Some((2, "$".to_owned())),
        _ => None,
    })
}

/// A body rule's pattern confined to one body element. SpamAssassin
/// matches body rules against each element (a paragraph, with its
/// whitespace runs folded to one space) alone, so no match contains a
/// newline; the body text joins the elements with newlines, so the
/// pattern's newline-matching constructs must not take one:
///
/// - `\s` becomes `[\t\x0b\x0c\r ]`, `\W` `[^\w\n]`, `\D` `[^\d\n]`;
/// - a negated class gets `\n` (`[^<]` becomes `[^\n<]`);
/// - inside a class that is not negated, `\s` becomes `\t\x0b\x0c\r `
///   and `\W` and `\D` their byte ranges without `\n` (`[_\W]`, common in
///   the drug rules, becomes `[_\x00-\x09\x0b-\x2f...]`).
///
/// (`.` takes no newline unless the pattern is `/s`, which the caller
/// drops for body rules.) `None` when nothing changed.
pub(crate) fn within_element(source: &str) -> Option<String> {
    const SPACE: &str = r"\t\x0b\x0c\r ";
    // `\W` and `\D` on bytes (Perl's `/d` rules: ASCII `\w`), less `\n`
    const NON_WORD: &str = r"\x00-\x09\x0b-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\xff";
    const NON_DIGIT: &str = r"\x00-\x09\x0b-\x2f\x3a-\xff";
    let b = source.as_bytes();
    rewrite(source, |i, at| match (at, &b[i..]) {
        (At::Outside, [b'\\', b's', ..]) => Some((2, format!("[{SPACE}]"))),
        (At::Outside, [b'\\', b'W', ..]) => Some((2, r"[^\w\n]".to_owned())),
        (At::Outside, [b'\\', b'D', ..]) => Some((2, r"[^\d\n]".to_owned())),
        (At::Negated, _) => Some((0, r"\n".to_owned())),
        (At::Class { negated: false }, [b'\\', class @ (b's' | b'W' | b'D'), rest @ ..]) => {
            let ranges = match class {
                b's' => SPACE,
                b'W' => NON_WORD,
                _ => NON_DIGIT,
            };
            // Perl reads `\s-x` in a class as `\s`, `-`, `x`: the hyphen
            // after a class escape stays literal, not a range
            match rest {
                [b'-', next, ..] if *next != b']' => Some((3, format!(r"{ranges}\-"))),
                _ => Some((2, ranges.to_owned())),
            }
        }
        _ => None,
    })
}

/// Copies `source`, asking `edit` at each position outside character
/// classes and `\Q..\E` runs (an escape is offered at its backslash, then
/// skipped whole) whether to replace the bytes there: `Some((len, text))`
/// puts `text` for the next `len` bytes. `None` when nothing was replaced.
fn rewrite_outside_classes(
    source: &str,
    mut edit: impl FnMut(usize) -> Option<(usize, String)>,
) -> Option<String> {
    rewrite(source, |i, at| match at {
        At::Outside => edit(i),
        _ => None,
    })
}

/// Where [`rewrite`] offers an edit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// Outside character classes (and `\Q..\E` runs).
    Outside,
    /// Right after the `^` that negates a class (an insertion point: only
    /// `len` 0 is meaningful).
    Negated,
    /// Inside a class, at a member (an escape at its backslash); not at the
    /// class's `[`, `^` or closing `]`, nor inside `[:name:]`.
    Class { negated: bool },
}

/// The walker behind every rewrite here: copies `source`, asking `edit` at
/// each position ([`At`] says where) whether to put `text` for the next
/// `len` bytes. An escape is offered at its backslash, then skipped whole;
/// `\Q..\E` runs are never offered. `None` when nothing was replaced.
fn rewrite(
    source: &str,
    mut edit: impl FnMut(usize, At) -> Option<(usize, String)>,
) -> Option<String> {
    let b = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut changed = false;
    let mut copied = 0usize; // source[..copied] is already in `out`
    let mut put = |i: usize, len: usize, text: &str, out: &mut String, copied: &mut usize| {
        out.push_str(&source[*copied..i]);
        out.push_str(text);
        *copied = i + len;
        changed = true;
    };
    let mut in_class = false;
    let mut negated = false;
    let mut class_start = 0usize;
    let mut i = 0usize;
    while i < b.len() {
        let at = if !in_class {
            Some(At::Outside)
        } else if i >= class_start && !(b[i] == b']' && i > class_start) {
            Some(At::Class { negated })
        } else {
            None
        };
        if let Some((len, text)) = at.and_then(|at| edit(i, at)) {
            if len > 0 {
                put(i, len, &text, &mut out, &mut copied);
                i += len;
                continue;
            }
        }
        match b[i] {
            b'\\' if b.get(i + 1) == Some(&b'Q') => {
                // quoted run: literal through `\E` (or the end)
                i = source[i + 2..]
                    .find("\\E")
                    .map_or(b.len(), |k| i + 2 + k + 2);
            }
            b'\\' => i += 2,
            b']' if in_class && i > class_start => {
                in_class = false;
                i += 1;
            }
            b'[' if in_class && b.get(i + 1) == Some(&b':') => {
                // `[:name:]` inside a class
                i = source[i + 2..]
                    .find(":]")
                    .map_or(b.len(), |k| i + 2 + k + 2);
            }
            b'[' if !in_class => {
                in_class = true;
                i += 1;
                negated = b.get(i) == Some(&b'^');
                if negated {
                    i += 1;
                    if let Some((0, text)) = edit(i, At::Negated) {
                        put(i, 0, &text, &mut out, &mut copied);
                    }
                }
                class_start = i;
                if b.get(i) == Some(&b']') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&source[copied.min(b.len())..]);
    Some(out)
}

/// `{n,m}` at the start of `b`: its length, `n` and `Some(m)`; `{n}` and
/// `{n,}` give `None` for the upper bound; not a repeat gives `None`.
pub(crate) fn repeat_bounds(b: &[u8]) -> Option<(usize, u32, Option<u32>)> {
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let number = |from: usize, len: usize| {
        std::str::from_utf8(&b[from..from + len])
            .ok()?
            .parse::<u32>()
            .ok()
    };
    let n = digits(1);
    if n == 0 {
        return None;
    }
    // a bound too large for u32 is as good as u32::MAX
    let lower = number(1, n).unwrap_or(u32::MAX);
    let mut i = 1 + n;
    match b.get(i)? {
        b'}' => Some((i + 1, lower, None)),
        b',' => {
            i += 1;
            let m = digits(i);
            let upper = number(i, m);
            i += m;
            (b.get(i)? == &b'}').then_some((i + 1, lower, if m == 0 { None } else { upper }))
        }
        _ => None,
    }
}

/// Whether the pattern needs Unicode semantics (see the module doc).
fn needs_unicode(source: &str) -> bool {
    let bytes = source.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'p' | b'P' | b'X' => return true,
                b'x' if bytes.get(i + 2) == Some(&b'{') => {
                    let rest = &source[i + 3..];
                    let hex: String = rest.chars().take_while(|c| *c != '}').collect();
                    let value = u32::from_str_radix(hex.trim(), 16).unwrap_or(0);
                    if value > 0xFF {
                        return true;
                    }
                }
                _ => {}
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// Rewrites a regex pattern (see the module doc). `multiline` is the
/// pattern-level flag; inline `(?m)`/`(?-m)` groups are tracked.
pub(crate) fn translate(source: &str, multiline: bool) -> Translated {
    let unicode = needs_unicode(source);
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len() + 16);
    let mut needs_fancy = false;
    // multi-line flag per open group; the last entry is the current scope
    let mut scopes: Vec<bool> = vec![multiline];
    let mut in_class = false;
    let mut class_start = 0usize;
    let mut i = 0usize;
    let push_char = |out: &mut String, c: char| {
        if c.is_ascii() || unicode {
            if c == '\0' {
                out.push_str("\\x00");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            let Some(&next) = chars.get(i + 1) else {
                out.push('\\');
                break;
            };
            // Perl octal: `\0`, `\0N`, `\0NN`, or three octal digits
            // (`\042`, `\223`; SpamAssassin's WEIRD_QUOTING). The `regex`
            // crate has no octal escapes: write the byte as `\xHH`.
            let octal = chars[i + 1..]
                .iter()
                .take(3)
                .take_while(|c| ('0'..='7').contains(*c))
                .count();
            if next == '0' || octal == 3 {
                let digits: String = chars[i + 1..i + 1 + octal.max(1)].iter().collect();
                let value = u32::from_str_radix(&digits, 8).unwrap_or(0) & 0xFF;
                let _ = write!(out, "\\x{value:02X}");
                i += 1 + octal.max(1);
                continue;
            }
            match next {
                // Perl's escape character; the `regex` crate has no `\e`
                'e' => out.push_str("\\x1B"),
                'Z' if !in_class => {
                    out.push_str("(?=\\n?\\z)");
                    needs_fancy = true;
                }
                '1'..='9' | 'k' | 'g' | 'G' if !in_class => {
                    needs_fancy = true;
                    out.push('\\');
                    out.push(next);
                }
                _ => {
                    out.push('\\');
                    push_char(&mut out, next);
                }
            }
            i += 2;
            continue;
        }
        if in_class {
            match c {
                ']' if i > class_start => in_class = false,
                '[' if chars.get(i + 1) == Some(&':') => {
                    // POSIX class `[:name:]`: copy through its closing `:]`
                    let mut j = i + 2;
                    while j + 1 < chars.len() && !(chars[j] == ':' && chars[j + 1] == ']') {
                        j += 1;
                    }
                    let end = (j + 2).min(chars.len());
                    out.extend(&chars[i..end]);
                    i = end;
                    continue;
                }
                '[' | '&' | '~' => {
                    out.push('\\');
                    out.push(c);
                    i += 1;
                    continue;
                }
                _ => {}
            }
            push_char(&mut out, c);
            i += 1;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                out.push('[');
                i += 1;
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                // a `]` first in the class is a literal
                class_start = i;
                if chars.get(i) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
                continue;
            }
            '(' => {
                let current = scopes.last().copied().unwrap_or(multiline);
                if chars.get(i + 1) == Some(&'?') {
                    let kind = chars.get(i + 2).copied();
                    let kind2 = chars.get(i + 3).copied();
                    match (kind, kind2) {
                        (Some('=' | '!' | '>'), _) | (Some('<'), Some('=' | '!')) => {
                            needs_fancy = true;
                            scopes.push(current);
                        }
                        (Some(f), _) if "imsxuU-".contains(f) => {
                            // inline flags: `(?flags)` or `(?flags:...)`
                            let mut j = i + 2;
                            let mut on = true;
                            let mut m = current;
                            while let Some(&fc) = chars.get(j) {
                                match fc {
                                    '-' => on = false,
                                    'm' => m = on,
                                    ':' | ')' => break,
                                    _ => {}
                                }
                                j += 1;
                            }
                            if chars.get(j) == Some(&')') {
                                // applies to the rest of the enclosing group
                                if let Some(top) = scopes.last_mut() {
                                    *top = m;
                                }
                                out.extend(&chars[i..=j]);
                                i = j + 1;
                                continue;
                            }
                            scopes.push(m);
                        }
                        _ => scopes.push(current),
                    }
                } else {
                    scopes.push(current);
                }
                out.push('(');
                i += 1;
                continue;
            }
            ')' => {
                if scopes.len() > 1 {
                    scopes.pop();
                }
                out.push(')');
            }
            '^' if scopes.last().copied().unwrap_or(multiline) => {
                // Perl's multi-line `^` does not match after a final `\n`
                out.push_str("(?:\\A|(?m:^)(?!\\z))");
                needs_fancy = true;
            }
            '$' => {
                let multi = scopes.last().copied().unwrap_or(multiline);
                if multi {
                    out.push_str("(?m:$)");
                } else if chars[i + 1..].iter().all(|&r| r == ')') {
                    // nothing can follow: consuming the final `\n` is the same
                    out.push_str("(?:\\n?\\z)");
                } else {
                    out.push_str("(?=\\n?\\z)");
                    needs_fancy = true;
                }
            }
            _ => push_char(&mut out, c),
        }
        i += 1;
    }
    Translated {
        text: out,
        needs_fancy,
        needs_unicode: unicode,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites() {
        let t = translate("é$", false);
        assert_eq!(t.text, "\\xC3\\xA9(?:\\n?\\z)");
        assert!(!t.needs_fancy);
        assert_eq!(translate("a$b", false).text, "a(?=\\n?\\z)b");
        assert_eq!(translate("a$", true).text, "a(?m:$)");
        assert_eq!(translate("(?m)a$", false).text, "(?m)a(?m:$)");
        assert_eq!(translate("(?-m:a$)", true).text, "(?-m:a(?:\\n?\\z))");
        assert_eq!(translate("[]a[&]", false).text, "[\\]a\\[\\&]");
        assert_eq!(translate("[^b]([a]$)", false).text, "[^b]([a](?:\\n?\\z))");
        assert_eq!(translate("[[:alpha:]x]", false).text, "[[:alpha:]x]");
        assert!(translate("(a)\\1", false).needs_fancy);
        assert!(translate("foo(?=bar)", false).needs_fancy);
        assert!(!translate("[\\1]", false).needs_fancy);
        assert!(translate("\\p{L}", false).needs_unicode);
        assert!(translate("\\x{263A}", false).needs_unicode);
        assert!(!translate("\\x{E9}", false).needs_unicode);
        assert_eq!(escape_literal("a.b"), "a\\x2Eb");
        assert_eq!(translate("[\\042\\223]{2}", false).text, "[\\x22\\x93]{2}");
        assert_eq!(translate("a\\0b\\012", false).text, "a\\x00b\\x0A");
        assert_eq!(translate("\\e\\$B[\\e]", false).text, "\\x1B\\$B[\\x1B]");
        assert!(
            translate("(a)\\1\\12", false).needs_fancy,
            "\\1 and \\12 stay backreferences"
        );
    }

    #[test]
    fn fancy_superset_drops_what_the_dfa_cannot_run() {
        let f = |s: &str| fancy_superset(s);
        assert_eq!(f("(?!viagra)v[i1]agra").as_deref(), Some("v[i1]agra"));
        assert_eq!(f("a(?<=x(?:y|z))b").as_deref(), Some("ab"));
        assert_eq!(f("(\\w+) \\1").as_deref(), Some("(\\w+) (?s:.*)"));
        assert_eq!(f("(?>\\s*)x\\k<n>").as_deref(), Some("(?:\\s*)x(?s:.*)"));
        assert_eq!(f("[(?=]x(?=y)").as_deref(), Some("[(?=]x"));
        assert_eq!(f("a\\(?=b\\)"), None, "escaped parentheses are literals");
        assert_eq!(f("(?:a)(?i)b"), None, "nothing to drop");
        assert_eq!(f("(?=a)*b"), None, "quantified lookaround");
        assert_eq!(f("x(?=\\n?\\z)").as_deref(), Some("x"));
        assert_eq!(f("[]a](?!b)").as_deref(), Some("[]a]"));
        assert_eq!(f("\\x{E9}(?=a)").as_deref(), Some("\\x{E9}"));
    }

    #[test]
    fn body_patterns_are_kept_within_one_element() {
        let within = |s: &str| within_element(s).unwrap_or_else(|| s.to_owned());
        assert_eq!(within(r"a\sb"), r"a[\t\x0b\x0c\r ]b");
        assert_eq!(within(r"\W+\D"), r"[^\w\n]+[^\d\n]");
        assert_eq!(within(r"[^<>]{3}"), r"[^\n<>]{3}");
        assert_eq!(within(r"[^]x]"), r"[^\n]x]");
        assert_eq!(within(r"[\s,:]{1,5}"), r"[\t\x0b\x0c\r ,:]{1,5}");
        assert_eq!(within(r"[\s-x]"), r"[\t\x0b\x0c\r \-x]");
        assert_eq!(within(r"[x\s-]"), r"[x\t\x0b\x0c\r -]");
        assert_eq!(
            within(r"[_\W]{0,3}"),
            r"[_\x00-\x09\x0b-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\xff]{0,3}"
        );
        assert_eq!(within(r"[\Dx]"), r"[\x00-\x09\x0b-\x2f\x3a-\xffx]");
        assert_eq!(within(r"[\D-x]"), r"[\x00-\x09\x0b-\x2f\x3a-\xff\-x]");
        // negated classes keep `\s` (the `\n` added first excludes it)
        assert_eq!(within(r"[^\s\d]"), r"[^\n\s\d]");
        // escapes, `\Q..\E` and POSIX classes are not members to rewrite
        assert_eq!(within(r"\\s\Q\s[^\E[[:space:]]"), r"\\s\Q\s[^\E[[:space:]]");
        assert_eq!(within(r"\S\w\d\.x"), r"\S\w\d\.x");
        assert!(within_element(r"abc\S").is_none());
        // every rewrite matches what the original matches, except a newline
        for (pattern, haystack) in [
            (r"a\sb", "a b"),
            (r"[^<]+", "x y"),
            (r"\W", "!"),
            (r"[\s,]+x", " ,x"),
            (r"a[_\W]b", "a!b"),
            (r"a[_\W]b", "a_b"),
            (r"[\D]", "!"),
        ] {
            let rewritten = within(pattern);
            let re = regex::bytes::Regex::new(&format!(r"\A(?:{rewritten})\z")).unwrap();
            assert!(
                re.is_match(haystack.as_bytes()),
                "{rewritten} on {haystack:?}"
            );
            let crossing = haystack.replace([' ', '!'], "\n");
            if crossing != haystack {
                assert!(
                    !re.is_match(crossing.as_bytes()),
                    "{rewritten} on {crossing:?}"
                );
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// On text without a newline the rewrite changes nothing; on any
        /// text, no match of the rewritten pattern holds a newline.
        #[test]
        fn within_element_only_takes_the_newline_away(
            atoms in proptest::collection::vec(proptest::sample::select(vec![
                r"a", r"b", r"\s", r"\W", r"\D", r"\S", r"\w", r".", r"[^a]", r"[_\W]",
                r"[\s,]", r"[\D]", r"[^\s]", r"\x0a", r"(?:a|\s)", r"[b\s-]",
            ]), 1..6),
            quantifiers in proptest::collection::vec(
                proptest::sample::select(vec!["", "*", "+", "?", "{1,3}"]), 6),
            haystack in proptest::collection::vec(proptest::sample::select(vec![
                b'a', b'b', b'_', b' ', b'\t', b'\n', b',', b'-', b'1', 0xe9,
            ]), 0..16),
        ) {
            let source: String = atoms
                .iter()
                .zip(&quantifiers)
                .map(|(a, q)| format!("(?:{a}){q}"))
                .collect();
            let build = |p: &str| regex::bytes::RegexBuilder::new(p).unicode(false).build().unwrap();
            let (perl, ours) = (
                build(&source),
                build(&within_element(&source).unwrap_or_else(|| source.clone())),
            );
            let flat: Vec<u8> = haystack.iter().map(|&b| if b == b'\n' { b' ' } else { b }).collect();
            let spans = |re: &regex::bytes::Regex, h: &[u8]| {
                re.find_iter(h).map(|m| m.range()).collect::<Vec<_>>()
            };
            proptest::prop_assert_eq!(spans(&perl, &flat), spans(&ours, &flat), "{}", source);
            for m in ours.find_iter(&haystack) {
                // `\x0a` is a newline the pattern asks for by name: left alone
                proptest::prop_assert!(
                    source.contains(r"\x0a") || !m.as_bytes().contains(&b'\n'),
                    "{} matched {:?}", source, m.as_bytes()
                );
            }
        }
    }

    /// The byte ranges that stand for `\W` and `\D` in a class are exactly
    /// those classes less `\n`, byte by byte.
    #[test]
    fn class_ranges_are_the_classes_less_newline() {
        for class in [r"[\W]", r"[\D]", r"[\s]", r"[_\W]"] {
            let bytes = |p: &str| {
                regex::bytes::RegexBuilder::new(&format!(r"\A{p}\z"))
                    .unicode(false)
                    .build()
                    .unwrap()
            };
            let (perl, ours) = (bytes(class), bytes(&within_element(class).unwrap()));
            for b in 0..=255u8 {
                let want = b != b'\n' && perl.is_match(&[b]);
                assert_eq!(ours.is_match(&[b]), want, "{class} on byte {b:#04x}");
            }
        }
    }

    #[test]
    fn string_anchors_become_element_anchors() {
        let element_anchors = |s: &str| element_anchors(s).unwrap_or_else(|| s.to_owned());
        assert_eq!(element_anchors(r"^[a-z]{6,24}\s*\z"), r"^[a-z]{6,24}\s*$");
        assert_eq!(element_anchors(r"(?:\A|[\s\x00])x\Z"), r"(?:^|[\s\x00])x$");
        // escaped backslash, and inside classes: unchanged
        assert_eq!(element_anchors(r"a\\z[\z\A]"), r"a\\z[\z\A]");
        assert_eq!(element_anchors(r"[]\z]\z"), r"[]\z]$");
        assert_eq!(element_anchors(r"[^]x]\A"), r"[^]x]^");
    }

    #[test]
    fn drops_inner_start_anchors_only() {
        assert_eq!(
            drop_inner_start_anchors(r"^Message-Id:.*?^Received:").as_deref(),
            Some(r"^Message-Id:.*?Received:")
        );
        assert_eq!(
            drop_inner_start_anchors(r"(?x)^ a (?:\A|\s) b").as_deref(),
            Some(r"(?x)^ a (?:|\s) b")
        );
        // leading anchors, classes, escapes and quoted runs stay
        assert_eq!(drop_inner_start_anchors(r"^ab\^c[^^]\\A\Qx^\E"), None);
        assert_eq!(drop_inner_start_anchors(r"\Aab"), None);
        assert_eq!(drop_inner_start_anchors(r"[[:^alpha:]^]x"), None);
    }

    #[test]
    fn relaxes_bounded_repeats_only() {
        let r = |s: &str| relax_bounded_repeats(s, 2);
        assert_eq!(r("a{2,30}b").as_deref(), Some("a{2,}b"));
        assert_eq!(
            r("(?:x|y){0,40}?z{1,3}").as_deref(),
            Some("(?:x|y){0,}?z{1,}")
        );
        assert_eq!(r("a{3}b{2,}"), None);
        assert_eq!(r("\\{1,5}"), None);
        assert_eq!(r("[{1,5}]x"), None);
        assert_eq!(r("[]{1,5}]"), None);
        assert_eq!(r("[[:alpha:]{]{1,5}").as_deref(), Some("[[:alpha:]{]{1,}"));
        assert_eq!(r("\\Q{1,5}\\Ea{0,9}").as_deref(), Some("\\Q{1,5}\\Ea{0,}"));
        assert_eq!(r("a{,5}b{x}c{1,2"), None);
        assert_eq!(r("a{0,1}"), None, "below min_upper 2");
        assert_eq!(
            relax_bounded_repeats("a{0,9}b{0,20}", 16).as_deref(),
            Some("a{0,9}b{0,}")
        );
        assert_eq!(r("é{1,4}").as_deref(), Some("é{1,}"));
    }
}
