//! URL extraction from plain text, and the de-duplicating, capped URL list.

use std::collections::HashSet;

/// Most URLs kept per message; later ones are dropped (the first ones are the
/// ones rules and blocklists look at).
pub const URLS_MAX: usize = 10_000;
/// Longest URL kept, in bytes; longer ones are cut at a character boundary.
pub const URL_BYTES_MAX: usize = 8 * 1024;

/// URLs in first-seen order, without duplicates.
#[derive(Debug, Default)]
pub(crate) struct Urls {
    list: Vec<String>,
    seen: HashSet<String>,
}

impl Urls {
    /// Adds one URL (trimmed, cut to [`URL_BYTES_MAX`]) unless already present.
    pub fn add(&mut self, url: &str) {
        if self.list.len() >= URLS_MAX {
            return;
        }
        let mut url = url.trim();
        if url.len() > URL_BYTES_MAX {
            let mut end = URL_BYTES_MAX;
            while !url.is_char_boundary(end) {
                end -= 1;
            }
            url = &url[..end];
        }
        if url.is_empty() || self.seen.contains(url) {
            return;
        }
        let owned = if starts_with_ci(url, "www.") {
            format!("http://{url}")
        } else {
            url.to_owned()
        };
        self.seen.insert(url.to_owned());
        if owned != url && !self.seen.insert(owned.clone()) {
            return;
        }
        self.list.push(owned);
    }

    /// Adds the value of an HTML `href`/`src`/`action`/`background`
    /// attribute when it is absolute (`scheme:` or `www.`); relative links,
    /// fragments, `cid:` and `data:` URIs are not URLs a blocklist can judge.
    pub fn add_attribute(&mut self, value: &str) {
        let v = value.trim();
        if starts_with_ci(v, "www.") {
            self.add(v);
            return;
        }
        let Some(colon) = v.find(':') else { return };
        let scheme = &v[..colon];
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            || scheme.eq_ignore_ascii_case("cid")
            || scheme.eq_ignore_ascii_case("data")
        {
            return;
        }
        self.add(v);
    }

    /// The URLs found so far.
    pub fn into_vec(self) -> Vec<String> {
        self.list
    }
}

/// SpamAssassin's URI list for one URI (`Util::uri_list_canonicalize`
/// without configured `redirector_pattern`s and IDN conversion): the URI
/// with line breaks and surrounding space removed, then the variants its
/// URI rules also see: `%`-decoded, scheme added or repaired, user info
/// and a trailing junk host character dropped, a lower-case host, a
/// default port dropped, a numeric or hex host as a dotted quad, a bare
/// word host as `www.word.com`, and the target of an embedded `http://`
/// redirect (canonicalized in turn). Email addresses get their cleaned
/// `mailto:` forms.
pub(crate) fn sa_variants(uri: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut queue: Vec<String> = vec![uri.to_owned()];
    let mut done = 0usize;
    while done < queue.len() && queue.len() < 16 {
        let raw = queue[done].clone();
        done += 1;
        let mut uri: String = raw.chars().filter(|&c| c != '\n' && c != '\r').collect();
        uri = uri.trim().to_owned();
        push_unique(&mut out, &uri);
        if uri.len() <= 1
            || uri.starts_with(['#', '?', '&'])
            || (uri.starts_with('/') && !uri.starts_with("//"))
        {
            continue;
        }
        if starts_with_ci(&uri, "mailto:")
            || uri.split(':').next().is_some_and(|head| head.contains('@'))
        {
            email_variants(&uri, &mut out);
            continue;
        }
        let mut n = uri.replace('\\', "/");
        // http:www.foo.biz -> http://www.foo.biz
        for scheme in ["http:", "https:"] {
            if starts_with_ci(&n, scheme) {
                let rest = n[scheme.len()..].trim_start_matches('/');
                let rest_start = n.len() - rest.len();
                let slashes = rest_start - scheme.len();
                if slashes <= 2 {
                    n = format!("{}//{}", &n[..scheme.len()], rest);
                }
                break;
            }
        }
        if has_escape(&n) {
            n = percent_decode_printable(&n);
        }
        if !n.split(':').next().is_some_and(|s| {
            !s.is_empty()
                && s.len() < n.len()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }) {
            n = if n.starts_with("ftp.") {
                format!("ftp://{n}")
            } else {
                format!("http://{n}")
            };
        }
        // http://www.foo.biz?id=3 -> http://www.foo.biz/?id=3
        if let Some(after) = scheme_rest(&n) {
            let host_end = after.find(['/', '?', '#']).unwrap_or(after.len());
            if host_end > 0 && matches!(after.as_bytes().get(host_end), Some(b'?' | b'#')) {
                let at = n.len() - after.len() + host_end;
                n.insert(at, '/');
            }
        }
        n = decode_entities(&n);
        if n != uri {
            push_unique(&mut out, &n);
        }
        let Some(after) = scheme_rest(&n) else {
            continue;
        };
        let proto = &n[..n.len() - after.len()];
        let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (auth, host_port) = match after[..authority_end].rfind('@') {
            Some(a) => (&after[..=a], &after[a + 1..]),
            None => ("", after),
        };
        let host_end = host_port
            .find(['/', '?', '#', ':'])
            .unwrap_or(host_port.len());
        let mut host = host_port[..host_end].to_owned();
        let rest = &host_port[host_end..];
        if host.is_empty() {
            continue;
        }
        let http = proto.eq_ignore_ascii_case("http://");
        let default = if http { "80" } else { "443" };
        let port: String = match rest.strip_prefix(':') {
            Some(p) => {
                let port: String = p.chars().take_while(char::is_ascii_digit).collect();
                let after = &p[port.len()..];
                if port == default && !after.starts_with(|c: char| c.is_alphanumeric() || c == '_')
                {
                    push_unique(&mut out, &format!("{proto}{auth}{host}{after}"));
                }
                port
            }
            None => default.to_owned(),
        };
        let lower = host.to_ascii_lowercase();
        if host.is_ascii() && lower != host {
            push_unique(&mut out, &format!("{proto}{auth}{lower}{rest}"));
            host = lower;
        }
        if host.bytes().any(|b| b <= 0x20) {
            host.retain(|c| c as u32 > 0x20);
            push_unique(&mut out, &format!("{proto}{auth}{host}{rest}"));
        }
        // a redirect inside the rest (the hard-coded redirector)
        if let Some(i) = find_ci(rest, "http:").or_else(|| find_ci(rest, "https:")) {
            let target: String = rest[i..]
                .chars()
                .take_while(|&c| c != '&' && c != '#')
                .collect();
            if target.contains('.') {
                queue.push(target);
            }
        }
        if !auth.is_empty() {
            push_unique(&mut out, &format!("{proto}{host}{rest}"));
        }
        let trimmed = host.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
        if trimmed.len() != host.len() {
            host = trimmed.to_owned();
            push_unique(&mut out, &format!("{proto}{host}{rest}"));
        }
        if let Some(ip) = numeric_host(&host) {
            push_unique(&mut out, &format!("{proto}{ip}{rest}"));
        } else if http
            && auth.is_empty()
            && port == "80"
            && host != "localhost"
            && !host.contains('.')
        {
            push_unique(&mut out, &format!("{proto}www.{host}.com{rest}"));
        }
    }
    out
}

fn push_unique(out: &mut Vec<String>, s: &str) {
    if !s.is_empty() && !out.iter().any(|o| o == s) {
        out.push(s.to_owned());
    }
}

/// After `http://` or `https://` (any case).
fn scheme_rest(uri: &str) -> Option<&str> {
    ["http://", "https://"]
        .iter()
        .find(|p| starts_with_ci(uri, p))
        .map(|p| &uri[p.len()..])
}

fn find_ci(s: &str, needle: &str) -> Option<usize> {
    s.to_ascii_lowercase().find(needle)
}

fn has_escape(s: &str) -> bool {
    s.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

/// `Util::url_encode`: `%XX` of a printable byte (0x21-0x7f, not 0x7f) is
/// decoded, any other kept; raw space, control, high, `"`, `%`, `<` and
/// `>` bytes outside escapes are encoded.
fn percent_decode_printable(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            let hi = b[i + 1];
            let v = u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(0);
            if matches!(hi, b'2'..=b'7') && v != 0x20 && v != 0x7f {
                out.push(char::from(v));
            } else {
                out.push_str(&s[i..i + 3]);
            }
            i += 3;
            continue;
        }
        let c = s[i..].chars().next().unwrap_or('\0');
        if c.is_ascii() && (c as u32) > 0x20 && c != '\u{7f}' && !matches!(c, '"' | '%' | '<' | '>')
        {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{byte:02x}"));
            }
        }
        i += c.len_utf8();
    }
    out
}

/// Printable numeric character references (`&#46;`, `&#x2e;`) and the
/// Unicode full stops as `.`.
fn decode_entities(s: &str) -> String {
    if !s.contains("&#") {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("&#") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 2..];
        let (hex, digits_start) = match tail.as_bytes().first() {
            Some(b'x' | b'X') => (true, 1),
            _ => (false, 0),
        };
        let digits: String = tail[digits_start..]
            .chars()
            .take_while(|c| {
                if hex {
                    c.is_ascii_hexdigit()
                } else {
                    c.is_ascii_digit()
                }
            })
            .collect();
        let end = digits_start + digits.len();
        let value = if hex {
            u32::from_str_radix(&digits, 16).ok()
        } else {
            digits.parse::<u32>().ok()
        };
        match (value, tail.as_bytes().get(end)) {
            (Some(v), Some(b';')) if (0x21..=0x7e).contains(&v) => {
                out.push(char::from_u32(v).unwrap_or('?'));
                rest = &tail[end + 1..];
            }
            (Some(0x3002 | 0xff0e | 0xff61), Some(b';')) => {
                out.push('.');
                rest = &tail[end + 1..];
            }
            _ => {
                out.push_str("&#");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A host written as a number: `a.b.c.d` with hex or octal parts, one hex
/// number or one decimal number, as a dotted quad.
fn numeric_host(host: &str) -> Option<String> {
    let part = |p: &str| -> Option<u64> {
        if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
            u64::from_str_radix(h, 16).ok()
        } else if p.len() > 1 && p.starts_with('0') {
            u64::from_str_radix(p.trim_start_matches('0'), 8)
                .ok()
                .or(Some(0))
        } else {
            p.parse().ok()
        }
    };
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() == 4 {
        if !parts.iter().all(|p| {
            !p.is_empty()
                && (p.bytes().all(|b| b.is_ascii_digit())
                    || (p.len() > 2
                        && p.as_bytes()[..2].eq_ignore_ascii_case(b"0x")
                        && p.as_bytes()[2..].iter().all(u8::is_ascii_hexdigit)))
        }) {
            return None;
        }
        let v: Vec<String> = parts
            .iter()
            .map(|p| part(p).map_or_else(|| (*p).to_owned(), |n| n.to_string()))
            .collect();
        return Some(v.join("."));
    }
    let n = if let Some(h) = host.strip_prefix("0x").or_else(|| host.strip_prefix("0X")) {
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(&h[h.len().saturating_sub(8)..], 16).ok()?
    } else if !host.is_empty() && host.bytes().all(|b| b.is_ascii_digit()) {
        host.parse::<u64>().ok()? & 0xffff_ffff
    } else {
        return None;
    };
    let n = n & 0xffff_ffff;
    Some(format!(
        "{}.{}.{}.{}",
        n >> 24,
        (n >> 16) & 255,
        (n >> 8) & 255,
        n & 255
    ))
}

/// The cleaned `mailto:` forms of an address URI (`?subject=` and `&`
/// tails and `%20` padding dropped, `Name <addr>` unwrapped).
fn email_variants(uri: &str, out: &mut Vec<String>) {
    if let Some(at) = uri.find('@') {
        if let Some(q) = uri[at..].find('?') {
            push_unique(out, &uri[..at + q]);
        }
        if let Some(a) = uri[at..]
            .find(['?', '&'])
            .filter(|&k| uri.as_bytes()[at + k] == b'&')
        {
            push_unique(out, &uri[..at + a]);
        }
    }
    if uri.contains("%20") {
        let body = if starts_with_ci(uri, "mailto:") {
            &uri[7..]
        } else {
            uri
        };
        let body = body.trim_start_matches("%20");
        if let Some(at) = body.find('@') {
            let end = body[at..]
                .find(['?', '&', '%'])
                .map_or(body.len(), |k| at + k);
            if at > 0 && end > at + 1 {
                push_unique(out, &format!("mailto:{}", &body[..end]));
            }
        }
    }
    if let (Some(lt), Some(gt)) = (uri.find('<'), uri.rfind('>')) {
        if lt < gt && !uri[..lt].contains(['?', '&']) && uri[lt + 1..gt].contains('@') {
            push_unique(out, &format!("mailto:{}", &uri[lt + 1..gt]));
        }
    }
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

const SCHEMES: [&str; 5] = ["http://", "https://", "ftp://", "mailto:", "www."];

/// Finds `http://`, `https://`, `ftp://`, `mailto:` and `www.` URLs in text.
/// A URL ends at whitespace, a quote or angle bracket; trailing punctuation
/// (and a closing parenthesis without an opening one) is not part of it.
pub(crate) fn extract_text(text: &str, urls: &mut Urls) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] | 0x20;
        if !matches!(c, b'h' | b'f' | b'm' | b'w') {
            i += 1;
            continue;
        }
        let Some(scheme) = SCHEMES.iter().find(|s| {
            b.len() - i >= s.len() && b[i..i + s.len()].eq_ignore_ascii_case(s.as_bytes())
        }) else {
            i += 1;
            continue;
        };
        // Inside a word ("xhttp://", "awww.") is not a URL start.
        if i > 0 && (b[i - 1].is_ascii_alphanumeric() || (*scheme == "www." && b[i - 1] == b'.')) {
            i += 1;
            continue;
        }
        let mut end = i + scheme.len();
        while end < b.len() && !is_url_stop(b[end]) {
            end += 1;
        }
        let mut url = &text[i..end];
        loop {
            let trimmed = url.trim_end_matches(['.', ',', ';', ':', '!', '?', '\'', '*']);
            let trimmed = if trimmed.ends_with(')') && !trimmed.contains('(') {
                &trimmed[..trimmed.len() - 1]
            } else {
                trimmed
            };
            let trimmed = if trimmed.ends_with(']') && !trimmed.contains('[') {
                &trimmed[..trimmed.len() - 1]
            } else {
                trimmed
            };
            if trimmed.len() == url.len() {
                break;
            }
            url = trimmed;
        }
        if url.len() > scheme.len() {
            urls.add(url);
        }
        i = end.max(i + 1);
    }
}

fn is_url_stop(b: u8) -> bool {
    b.is_ascii_whitespace()
        || b.is_ascii_control()
        || matches!(b, b'"' | b'<' | b'>' | b'`')
        || b == b'{'
        || b == b'}'
        || b == b'|'
        || b == b'\\'
        || b == b'^'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(text: &str) -> Vec<String> {
        let mut u = Urls::default();
        extract_text(text, &mut u);
        u.into_vec()
    }

    /// SpamAssassin's canonical URI list: the URI as found (line breaks
    /// out) and the variants its URI rules also see.
    #[test]
    fn sa_variants_like_uri_list_canonicalize() {
        let has = |uri: &str, want: &str| {
            let v = sa_variants(uri);
            assert!(v.iter().any(|x| x == want), "{want} not in {v:?}");
        };
        // an escaped host behind user info, split over lines
        let spam = "http://%31%30@%34%2E%34%37%2E%39%36%2E%31%34%31/msg\na.html";
        has(
            spam,
            "http://%31%30@%34%2E%34%37%2E%39%36%2E%31%34%31/msga.html",
        );
        has(spam, "http://10@4.47.96.141/msga.html");
        has(spam, "http://4.47.96.141/msga.html");
        // numeric hosts
        has("http://0x7f.0.0.1/", "http://127.0.0.1/");
        has("http://3232235777/x", "http://192.168.1.1/x");
        has("http://0xC0A80101/", "http://192.168.1.1/");
        // scheme repair, case, default port, query right after the host
        has("http:www.example.com/a", "http://www.example.com/a");
        has("HTTP://WWW.Example.COM/A", "HTTP://www.example.com/A");
        has("http://a.example:80/x", "http://a.example/x");
        has("http://a.example?x=1", "http://a.example/?x=1");
        has("www.example.com", "http://www.example.com");
        // the target of a redirect, a bare word host, entities
        has(
            "http://r.example/go?u=http://evil.example/p&x=1",
            "http://evil.example/p",
        );
        has("http://intranet/x", "http://www.intranet.com/x");
        has("http://a.example/&#120;y", "http://a.example/xy");
        // mailto cleaned
        has("mailto:a@b.example?subject=hi", "mailto:a@b.example");
        // nothing to vary: the URI alone
        assert_eq!(sa_variants("http://a.example/x"), ["http://a.example/x"]);
        assert_eq!(sa_variants("#top"), ["#top"]);
        // hostile input: never a panic
        for odd in [
            "http://é.é.é.é/",
            "http://%e9%@ü/",
            "mailto:<@>",
            "http:",
            "http://@",
            "%%%",
            "http://a.example/&#xffffffff;&#",
            "https://0x/",
            "http://[::1]:80/",
            "é@é?é&",
        ] {
            let _ = sa_variants(odd);
        }
    }

    proptest::proptest! {
        /// Any string: no panic, and the cleaned URI itself comes first.
        #[test]
        fn sa_variants_never_panic(uri in "\\PC{0,60}", prefix in proptest::sample::select(vec!["", "http://", "HTTPS:", "mailto:", "www."])) {
            let uri = format!("{prefix}{uri}");
            let v = sa_variants(&uri);
            let cleaned: String = uri.chars().filter(|&c| c != '\n' && c != '\r').collect();
            let cleaned = cleaned.trim();
            if !cleaned.is_empty() {
                proptest::prop_assert_eq!(v.first().map(String::as_str), Some(cleaned));
            }
        }
    }

    #[test]
    fn text_urls() {
        assert_eq!(
            urls("see http://a.example/x?y=1. and (www.b.example) or mailto:c@d.example, HTTPS://E.example/"),
            [
                "http://a.example/x?y=1",
                "http://www.b.example",
                "mailto:c@d.example",
                "HTTPS://E.example/"
            ]
        );
        assert_eq!(
            urls("http://a.example http://a.example"),
            ["http://a.example"]
        );
        assert_eq!(
            urls("xhttp://no.example awww.no http:// "),
            Vec::<String>::new()
        );
        assert_eq!(urls("<http://a.example/(x)>"), ["http://a.example/(x)"]);
    }

    #[test]
    fn attribute_urls() {
        let mut u = Urls::default();
        for v in [
            "#top",
            "cid:x@y",
            "/rel",
            "data:image/png;base64,AAA",
            " http://a/ ",
            "www.b",
        ] {
            u.add_attribute(v);
        }
        assert_eq!(u.into_vec(), ["http://a/", "http://www.b"]);
    }
}
