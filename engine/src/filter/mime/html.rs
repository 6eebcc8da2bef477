//! HTML rendered to text the way SpamAssassin's body rules see it: tags
//! dropped, `script`/`style` content and comments dropped, entities decoded,
//! whitespace runs collapsed to one space, and the whitespace SpamAssassin
//! puts for elements: a line break for `br`/`div`, a blank line for `p`-like
//! blocks, a space for cells, list items and headings.
//! Link targets (`href`, `src`, `action`, `background`) go to the URL list.
//! One linear pass; no tree is built.

use super::url::Urls;

/// The whitespace an element puts into the rendered text, start and end
/// tag alike, as SpamAssassin's HTML renderer does (`html_whitespace`): a
/// line break, a blank line (a paragraph break for body rules), or a space.
/// Every other tag adds nothing.
fn element_whitespace(name: &str) -> Option<&'static str> {
    match name {
        "br" | "div" => Some("\n"),
        "p" | "hr" | "blockquote" | "pre" | "listing" | "plaintext" | "xmp" | "title" => {
            Some("\n\n")
        }
        "li" | "th" | "td" | "dt" | "dd" | "embed" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
            Some(" ")
        }
        _ => None,
    }
}

/// Attributes whose values are link targets.
const LINK_ATTRS: &[&str] = &["href", "src", "action", "background"];

/// Renders `html` to text, adding link targets to `urls`.
pub(crate) fn render(html: &str, urls: &mut Urls) -> String {
    let b = html.as_bytes();
    let mut r = Render {
        out: String::with_capacity(html.len() / 2),
        space: false,
        after_ws: false,
    };
    let mut i = 0;
    while i < b.len() {
        let Some(off) = memchr::memchr(b'<', &b[i..]) else {
            r.text(&html[i..]);
            break;
        };
        r.text(&html[i..i + off]);
        i += off;
        let next = b.get(i + 1).copied().unwrap_or(0);
        if b[i..].starts_with(b"<!--") {
            i = match memchr::memmem::find(&b[i + 4..], b"-->") {
                Some(e) => i + 4 + e + 3,
                None => b.len(),
            };
            continue;
        }
        if next == b'!' || next == b'?' {
            i = memchr::memchr(b'>', &b[i..]).map_or(b.len(), |e| i + e + 1);
            continue;
        }
        let closing = next == b'/';
        let name_start = i + 1 + usize::from(closing);
        if !b.get(name_start).is_some_and(u8::is_ascii_alphabetic) {
            r.text("<");
            i += 1;
            continue;
        }
        let mut j = name_start;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'-' || b[j] == b':') {
            j += 1;
        }
        let name = html[name_start..j].to_ascii_lowercase();
        let end = tag_end(b, j);
        if !closing {
            attributes(&html[j..end.min(b.len())], urls);
        }
        i = (end + 1).min(b.len());
        if let Some(ws) = element_whitespace(&name) {
            r.whitespace(ws);
        }
        if !closing && (name == "script" || name == "style") {
            i = skip_raw_text(b, i, &name);
        }
    }
    let mut out = r.out;
    let kept = out.trim_end().len();
    out.truncate(kept);
    out
}

struct Render {
    out: String,
    /// Whitespace seen since the last visible character (one space, or
    /// none after an element's whitespace).
    space: bool,
    /// The last thing rendered was an element's whitespace.
    after_ws: bool,
}

impl Render {
    fn text(&mut self, t: &str) {
        let mut rest = t;
        while let Some(amp) = rest.find('&') {
            self.chars(&rest[..amp]);
            let (s, used) = entity(&rest[amp..]);
            match s {
                Some(e) => self.chars(e.as_str()),
                None => self.chars("&"),
            }
            rest = &rest[amp + used..];
        }
        self.chars(rest);
    }

    fn chars(&mut self, t: &str) {
        for c in t.chars() {
            if c.is_whitespace() || c == '\u{a0}' {
                self.space = true;
            } else if c != '\u{ad}' && c != '\u{200b}' && c != '\u{200c}' && c != '\u{200d}' {
                if self.space && !self.out.is_empty() && !self.after_ws {
                    self.out.push(' ');
                }
                self.space = false;
                self.after_ws = false;
                self.out.push(c);
            }
        }
    }

    /// An element's whitespace: the space pending before it and the one
    /// after it are dropped.
    fn whitespace(&mut self, ws: &str) {
        self.out.push_str(ws);
        self.space = false;
        self.after_ws = true;
    }
}

/// The index of the `>` closing a tag whose name ends at `j` (quoted
/// attribute values may contain `>`), or the input length.
fn tag_end(b: &[u8], mut j: usize) -> usize {
    let mut quote: Option<u8> = None;
    while j < b.len() {
        match (quote, b[j]) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') if b[j - 1] == b'=' || b[j - 1].is_ascii_whitespace() => {
                quote = Some(b[j]);
            }
            (None, b'>') => return j,
            _ => {}
        }
        j += 1;
    }
    b.len()
}

/// Skips the raw text of `<script>`/`<style>` up to and including its end tag.
fn skip_raw_text(b: &[u8], i: usize, name: &str) -> usize {
    let at = raw_text_end(b, i, name);
    memchr::memchr(b'>', &b[at..]).map_or(b.len(), |e| at + e + 1)
}

/// Where the raw text of a `<script>` or `<style>` starting at `from`
/// ends: at its end tag (`</name`, any case), else at the end of `b`.
pub(crate) fn raw_text_end(b: &[u8], mut from: usize, name: &str) -> usize {
    while let Some(off) = memchr::memmem::find(&b[from..], b"</") {
        let s = from + off + 2;
        if b.len() - s >= name.len() && b[s..s + name.len()].eq_ignore_ascii_case(name.as_bytes()) {
            return s - 2;
        }
        from = s;
    }
    b.len()
}

/// Reads `name=value` pairs of a tag and keeps link targets.
fn attributes(t: &str, urls: &mut Urls) {
    let b = t.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        let ns = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' && b[i] != b'>' {
            i += 1;
        }
        let name = &t[ns..i];
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            if i == ns {
                i += 1;
            }
            continue;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let value = match b.get(i) {
            Some(&q) if q == b'"' || q == b'\'' => {
                let vs = i + 1;
                let ve = memchr::memchr(q, &b[vs..]).map_or(b.len(), |e| vs + e);
                i = ve + 1;
                &t[vs..ve]
            }
            _ => {
                let vs = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                &t[vs..i]
            }
        };
        if LINK_ATTRS.iter().any(|a| a.eq_ignore_ascii_case(name)) {
            urls.add_attribute(&decode_entities(value));
        }
    }
}

/// Decodes the character references in an attribute value.
pub(crate) fn decode_entities(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let (s, used) = entity(&rest[amp..]);
        match s {
            Some(e) => out.push_str(&e),
            None => out.push('&'),
        }
        rest = &rest[amp + used..];
    }
    out.push_str(rest);
    out
}

/// Decodes the character reference at the start of `s` (which starts with
/// `&`): the text and the bytes consumed, or `None` and 1.
fn entity(s: &str) -> (Option<String>, usize) {
    let b = s.as_bytes();
    let limit = b.len().min(34);
    let mut end = 1;
    while end < limit && (b[end].is_ascii_alphanumeric() || (end == 1 && b[end] == b'#')) {
        end += 1;
    }
    let body = &s[1..end];
    let used = if b.get(end) == Some(&b';') {
        end + 1
    } else {
        end
    };
    if let Some(num) = body.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(h) => u32::from_str_radix(h, 16).ok(),
            None => num.parse::<u32>().ok(),
        };
        return match code.map(|c| char::from_u32(c).unwrap_or('\u{fffd}')) {
            Some(c) if code != Some(0) => (Some(c.to_string()), used),
            _ => (None, 1),
        };
    }
    let named = named_entity(body).or_else(|| named_entity(&body.to_ascii_lowercase()));
    match named {
        Some(c) if used > end || matches!(body, "amp" | "lt" | "gt" | "quot" | "nbsp") => {
            (Some(c.to_owned()), used)
        }
        _ => (None, 1),
    }
}

fn named_entity(name: &str) -> Option<&'static str> {
    Some(match name {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        "nbsp" | "ensp" | "emsp" | "thinsp" => " ",
        "shy" | "zwnj" | "zwj" => "",
        "copy" => "©",
        "reg" => "®",
        "trade" => "™",
        "hellip" => "…",
        "mdash" => "—",
        "ndash" => "–",
        "lsquo" => "‘",
        "rsquo" => "’",
        "sbquo" => "‚",
        "ldquo" => "“",
        "rdquo" => "”",
        "bdquo" => "„",
        "bull" => "•",
        "middot" => "·",
        "euro" => "€",
        "pound" => "£",
        "yen" => "¥",
        "cent" => "¢",
        "sect" => "§",
        "para" => "¶",
        "deg" => "°",
        "plusmn" => "±",
        "times" => "×",
        "divide" => "÷",
        "laquo" => "«",
        "raquo" => "»",
        "iexcl" => "¡",
        "iquest" => "¿",
        "frac12" => "½",
        "frac14" => "¼",
        "frac34" => "¾",
        "micro" => "µ",
        "szlig" => "ß",
        "agrave" => "à",
        "aacute" => "á",
        "acirc" => "â",
        "atilde" => "ã",
        "auml" => "ä",
        "aring" => "å",
        "aelig" => "æ",
        "ccedil" => "ç",
        "egrave" => "è",
        "eacute" => "é",
        "ecirc" => "ê",
        "euml" => "ë",
        "igrave" => "ì",
        "iacute" => "í",
        "icirc" => "î",
        "iuml" => "ï",
        "ntilde" => "ñ",
        "ograve" => "ò",
        "oacute" => "ó",
        "ocirc" => "ô",
        "otilde" => "õ",
        "ouml" => "ö",
        "oslash" => "ø",
        "ugrave" => "ù",
        "uacute" => "ú",
        "ucirc" => "û",
        "uuml" => "ü",
        "yacute" => "ý",
        "yuml" => "ÿ",
        "Agrave" => "À",
        "Aacute" => "Á",
        "Acirc" => "Â",
        "Auml" => "Ä",
        "Aring" => "Å",
        "Ccedil" => "Ç",
        "Egrave" => "È",
        "Eacute" => "É",
        "Ecirc" => "Ê",
        "Ntilde" => "Ñ",
        "Oacute" => "Ó",
        "Ouml" => "Ö",
        "Uacute" => "Ú",
        "Uuml" => "Ü",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(html: &str) -> (String, Vec<String>) {
        let mut u = Urls::default();
        let t = render(html, &mut u);
        (t, u.into_vec())
    }

    #[test]
    fn renders_text() {
        let (t, u) = run("<html><head><title>T</title><style>p{color:red}</style>\
             <script>if (a<b) x='</p>';</script></head><body><p>Hello&nbsp;&amp; \
             <b>wor</b>ld</p><!-- hidden --><div>caf&eacute; &#233;&#xE9; &bogus; a&b</div>\
             <a href=\"http://x.example/?a=1&amp;b=2\">click</a><img src='www.y.example/i.png'>\
             <a href=#top>t</a>1 < 2</body></html>");
        // title and p: a blank line at start and end tag; div: a line break
        assert_eq!(
            t,
            "\n\nT\n\n\n\nHello & world\n\n\ncafé éé &bogus; a&b\nclickt1 < 2"
        );
        assert_eq!(
            u,
            ["http://x.example/?a=1&b=2", "http://www.y.example/i.png"]
        );
    }

    #[test]
    fn unterminated_constructs_end() {
        assert_eq!(run("a<!-- x").0, "a");
        assert_eq!(run("a<script>x").0, "a");
        assert_eq!(run("a<b href=\"x").0, "a");
        assert_eq!(run("a <").0, "a <");
    }
}
