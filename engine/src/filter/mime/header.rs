//! Header values: RFC 2047 encoded words, structured parameters (RFC 2045 with
//! RFC 2231 continuations and charsets) and address lists.

use super::decode;

/// Longest charset label accepted inside an encoded word.
const CHARSET_LABEL_MAX: usize = 64;
/// Highest RFC 2231 continuation section index kept (`name*0` .. `name*99`).
const SECTION_MAX: usize = 99;

/// One header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The field name as written (compare case-insensitively).
    pub name: String,
    /// The value unfolded (line breaks removed, the blanks after them kept),
    /// trimmed, not decoded; bytes that are not UTF-8 become U+FFFD. This is
    /// SpamAssassin's `Header:raw`.
    pub raw: String,
    /// The value unfolded, RFC 2047 encoded words decoded, every charset
    /// converted to UTF-8. This is SpamAssassin's `Header`.
    pub value: String,
}

impl Header {
    /// Builds a header from its name and unfolded value bytes.
    pub(crate) fn new(name: &[u8], value: &[u8]) -> Self {
        Header {
            name: String::from_utf8_lossy(name).into_owned(),
            raw: String::from_utf8_lossy(value).into_owned(),
            value: decode_words(value),
        }
    }

    /// The addresses (`local@domain`) of an address-list header (From, To,
    /// Cc, Reply-To, ...), in order; `Header:addr` in SpamAssassin is the
    /// first. Group names are skipped; an entry without `@` is kept as is.
    pub fn addrs(&self) -> Vec<String> {
        mailboxes(&self.value)
            .into_iter()
            .filter_map(|(_, a)| (!a.is_empty()).then_some(a))
            .collect()
    }

    /// The display names of an address-list header (the phrase before
    /// `<addr>`, or the comment after a bare address), unquoted, in order;
    /// `Header:name` in SpamAssassin is the first. Mailboxes without a name
    /// are skipped.
    pub fn names(&self) -> Vec<String> {
        mailboxes(&self.value)
            .into_iter()
            .filter_map(|(n, _)| (!n.is_empty()).then_some(n))
            .collect()
    }
}

/// Decodes RFC 2047 encoded words in a header value and converts the rest to
/// UTF-8 (UTF-8 if valid, else windows-1252). Blanks between two adjacent
/// encoded words are dropped, as the RFC says. Linear in the input: a
/// candidate word ends at the first `?` after its encoding letter.
pub(crate) fn decode_words(v: &[u8]) -> String {
    let mut out = String::with_capacity(v.len());
    let mut plain_start = 0;
    let mut i = 0;
    let mut last_word_end: Option<usize> = None;
    while let Some(off) = memchr::memmem::find(&v[i..], b"=?") {
        let start = i + off;
        match encoded_word(&v[start..]) {
            Some((text, len)) => {
                let between = &v[plain_start..start];
                let adjacent = last_word_end == Some(plain_start)
                    && between.iter().all(|b| b.is_ascii_whitespace());
                if !adjacent {
                    out.push_str(&decode::to_utf8(between, None));
                }
                out.push_str(&text);
                i = start + len;
                plain_start = i;
                last_word_end = Some(i);
            }
            None => i = start + 2,
        }
    }
    out.push_str(&decode::to_utf8(&v[plain_start..], None));
    out
}

/// Parses `=?charset[*lang]?B|Q?text?=` at the start of `w`: the decoded text
/// and the length consumed.
fn encoded_word(w: &[u8]) -> Option<(String, usize)> {
    let rest = w.get(2..)?;
    let q1 = memchr::memchr(b'?', &rest[..rest.len().min(CHARSET_LABEL_MAX + 1)])?;
    let charset = std::str::from_utf8(&rest[..q1]).ok()?;
    let charset = charset.split('*').next().unwrap_or(charset);
    if charset.is_empty() || charset.bytes().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let enc = *rest.get(q1 + 1)?;
    if rest.get(q1 + 2) != Some(&b'?') {
        return None;
    }
    let text_start = q1 + 3;
    let text_len = memchr::memchr(b'?', &rest[text_start..])?;
    let text = &rest[text_start..text_start + text_len];
    if rest.get(text_start + text_len + 1) != Some(&b'=') {
        return None;
    }
    if text
        .iter()
        .any(|b| *b == b' ' || *b == b'\t' || *b == b'\n')
    {
        return None;
    }
    let bytes = match enc {
        b'B' | b'b' => decode::base64(text, text.len()).bytes,
        b'Q' | b'q' => decode::quoted_printable(text, text.len(), true).bytes,
        _ => return None,
    };
    let decoded = match decode::encoding_for(charset) {
        Some(_) => decode::to_utf8(&bytes, Some(charset)),
        None => decode::to_utf8(&bytes, None),
    };
    Some((decoded, 2 + text_start + text_len + 2))
}

/// A structured header value: `main; name=value; ...` (Content-Type,
/// Content-Disposition).
#[derive(Debug, Default)]
pub(crate) struct Structured {
    /// The value before the first `;`, lower-cased and trimmed.
    pub main: String,
    /// Parameters, names lower-cased, RFC 2231 sections joined and decoded,
    /// RFC 2047 words decoded.
    pub params: Vec<(String, String)>,
}

impl Structured {
    /// A parameter's value by (lower-case) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a structured header value (raw, unfolded bytes).
pub(crate) fn structured(v: &[u8]) -> Structured {
    let end = memchr::memchr(b';', v).unwrap_or(v.len());
    let main = String::from_utf8_lossy(strip_comments(&v[..end]).trim_ascii()).to_ascii_lowercase();
    let mut raw: Vec<(String, Vec<u8>)> = Vec::new();
    let mut i = end;
    while i < v.len() {
        // Skip separators.
        while i < v.len() && (v[i] == b';' || v[i].is_ascii_whitespace()) {
            i += 1;
        }
        let name_start = i;
        while i < v.len() && v[i] != b'=' && v[i] != b';' {
            i += 1;
        }
        let name = String::from_utf8_lossy(v[name_start..i].trim_ascii()).to_ascii_lowercase();
        if i >= v.len() || v[i] == b';' {
            continue;
        }
        i += 1; // '='
        while i < v.len() && (v[i] == b' ' || v[i] == b'\t') {
            i += 1;
        }
        let mut value = Vec::new();
        if v.get(i) == Some(&b'"') {
            i += 1;
            while i < v.len() && v[i] != b'"' {
                if v[i] == b'\\' && i + 1 < v.len() {
                    i += 1;
                }
                value.push(v[i]);
                i += 1;
            }
            i += 1; // closing quote
            while i < v.len() && v[i] != b';' {
                i += 1;
            }
        } else {
            let s = i;
            while i < v.len() && v[i] != b';' {
                i += 1;
            }
            value.extend_from_slice(v[s..i].trim_ascii());
        }
        if !name.is_empty() {
            raw.push((name, value));
        }
    }
    Structured {
        main,
        params: join_rfc2231(raw),
    }
}

fn strip_comments(v: &[u8]) -> &[u8] {
    match memchr::memchr(b'(', v) {
        Some(p) => &v[..p],
        None => v,
    }
}

fn percent_decode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' && i + 2 < v.len() {
            if let (Some(h), Some(l)) = (hex(v[i + 1]), hex(v[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Joins RFC 2231 parameter sections (`name*0*=utf-8''a%20b; name*1=c`) and
/// decodes extended values; plain values get RFC 2047 decoding (clients put
/// encoded words in quoted file names although the RFC forbids it).
fn join_rfc2231(raw: Vec<(String, Vec<u8>)>) -> Vec<(String, String)> {
    struct Ext {
        base: String,
        sections: Vec<(usize, bool, Vec<u8>)>,
    }
    let mut plain: Vec<(String, String)> = Vec::new();
    let mut exts: Vec<Ext> = Vec::new();
    for (name, value) in raw {
        let Some(star) = name.find('*') else {
            plain.push((name, decode_words(&value)));
            continue;
        };
        let base = name[..star].to_owned();
        let rest = &name[star + 1..];
        let (index, extended) = match rest {
            "" => (0, true),
            r => {
                let extended = r.ends_with('*');
                let digits = r.trim_end_matches('*');
                match digits.parse::<usize>() {
                    Ok(n) if n <= SECTION_MAX => (n, extended),
                    _ => continue,
                }
            }
        };
        let pos = match exts.iter().position(|e| e.base == base) {
            Some(p) => p,
            None => {
                exts.push(Ext {
                    base,
                    sections: Vec::new(),
                });
                exts.len() - 1
            }
        };
        exts[pos].sections.push((index, extended, value));
    }
    for mut ext in exts {
        ext.sections.sort_by_key(|s| s.0);
        let mut charset: Option<String> = None;
        let mut bytes = Vec::new();
        for (n, (_, extended, value)) in ext.sections.iter().enumerate() {
            if *extended {
                let mut v = value.as_slice();
                if n == 0 {
                    // charset'language'value
                    let mut it = v.splitn(3, |b| *b == b'\'');
                    if let (Some(cs), Some(_), Some(rest)) = (it.next(), it.next(), it.next()) {
                        charset = Some(String::from_utf8_lossy(cs).into_owned());
                        v = rest;
                    }
                }
                bytes.extend_from_slice(&percent_decode(v));
            } else {
                bytes.extend_from_slice(value);
            }
        }
        let value = decode::to_utf8(&bytes, charset.as_deref().filter(|c| !c.is_empty()));
        plain.retain(|(n, _)| *n != ext.base);
        plain.push((ext.base, value));
    }
    plain
}

/// Splits an address list into `(display name, address)` pairs.
fn mailboxes(v: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut seg = String::new();
    let mut comment = String::new();
    let (mut quoted, mut depth, mut angle) = (false, 0usize, false);
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '\\' => seg.extend(chars.next()),
                '"' => {
                    quoted = false;
                    seg.push(c);
                }
                _ => seg.push(c),
            }
            continue;
        }
        if depth > 0 {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth > 0 && !(c == '(' && depth == 1) {
                comment.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                seg.push(c);
            }
            '(' => {
                depth = 1;
                if !comment.is_empty() {
                    comment.push(' ');
                }
            }
            '<' => {
                angle = true;
                seg.push(c);
            }
            '>' => {
                angle = false;
                seg.push(c);
            }
            ',' | ';' if !angle => {
                push_mailbox(&mut out, &seg, &comment);
                seg.clear();
                comment.clear();
            }
            ':' if !angle && !seg.contains('<') => {
                // A group name ("undisclosed-recipients:").
                seg.clear();
                comment.clear();
            }
            _ => seg.push(c),
        }
    }
    push_mailbox(&mut out, &seg, &comment);
    out
}

fn push_mailbox(out: &mut Vec<(String, String)>, seg: &str, comment: &str) {
    let seg = seg.trim();
    if seg.is_empty() {
        return;
    }
    let (name, addr) = match (seg.find('<'), seg.rfind('>')) {
        (Some(l), r) => {
            let r = r.filter(|r| *r > l).unwrap_or(seg.len());
            let name = seg[..l].trim();
            let name = if name.is_empty() {
                comment.trim()
            } else {
                name
            };
            (name, seg[l + 1..r].trim())
        }
        (None, _) => (comment.trim(), seg),
    };
    let name = name.trim_matches('"').trim();
    out.push((name.to_owned(), addr.trim_matches('"').to_owned()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2047_words() {
        assert_eq!(
            decode_words(b"=?ISO-8859-1?Q?caf=E9?= au lait"),
            "café au lait"
        );
        assert_eq!(decode_words(b"=?utf-8?B?w6k=?= =?utf-8?B?w6k=?="), "éé");
        assert_eq!(decode_words(b"a =?koi8-r?B?wdXT?= b"), "a аус b");
        assert_eq!(decode_words(b"=?x?Q?bad word?="), "=?x?Q?bad word?=");
        assert_eq!(decode_words(b"=?=?=?"), "=?=?=?");
        assert_eq!(decode_words(b"=?utf-8*en?Q?a_b?="), "a b");
    }

    #[test]
    fn params_and_rfc2231() {
        let s = structured(b"Text/HTML; charset=\"ISO-8859-1\"; name=a.txt");
        assert_eq!(s.main, "text/html");
        assert_eq!(s.param("charset"), Some("ISO-8859-1"));
        assert_eq!(s.param("name"), Some("a.txt"));
        let s = structured(b"attachment; filename*0*=utf-8''na%C3%AFve; filename*1=\".exe\"");
        assert_eq!(s.param("filename"), Some("naïve.exe"));
        let s = structured(b"attachment; filename*=iso-8859-1'en'caf%E9.pdf");
        assert_eq!(s.param("filename"), Some("café.pdf"));
        let s = structured(b"attachment; filename=\"=?utf-8?B?w6kuZG9j?=\"");
        assert_eq!(s.param("filename"), Some("é.doc"));
        let s = structured(b"multipart/mixed; boundary=\"a\\\"b\"");
        assert_eq!(s.param("boundary"), Some("a\"b"));
    }

    #[test]
    fn addresses() {
        let h = Header::new(
            b"To",
            b"\"Doe, John\" <john@x.org>, jane@y.org (Jane Roe), group: a@b.c, d@e.f;, <g@h.i>",
        );
        assert_eq!(
            h.addrs(),
            ["john@x.org", "jane@y.org", "a@b.c", "d@e.f", "g@h.i"]
        );
        assert_eq!(h.names(), ["Doe, John", "Jane Roe"]);
        let h = Header::new(b"From", b"=?utf-8?Q?Ren=C3=A9?= <rene@x.fr>");
        assert_eq!(h.names(), ["René"]);
        assert_eq!(h.addrs(), ["rene@x.fr"]);
    }
}
