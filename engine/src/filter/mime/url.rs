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
