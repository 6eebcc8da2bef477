//! The addresses FreeMail finds in a message's body (its `_parse_body`),
//! for `check_freemail_replyto`: the `mailto:` links of HTML anchors, then
//! the addresses written in the body elements, after dropping addresses
//! inside URLs, addresses in `<…>` and addresses before a `word:` (as in
//! "joe@example.com wrote:").
//!
//! FreeMail's address pattern ends in a known top-level domain: the rule
//! set's `util_rb_tld` list, as SpamAssassin's RegistryBoundaries builds it.

use pcre2::bytes::{Regex, RegexBuilder};

/// FreeMail stops after this many body addresses (its "sanity" bounds).
const MAX_BODY: usize = 40;
const MAX_MAILTO: usize = 20;

/// The compiled patterns.
#[derive(Debug, Clone)]
pub struct BodyEmails {
    /// An address (capture 1).
    email: Regex,
    /// `mailto:` then an address (capture 1).
    mailto: Regex,
    /// A URL with an `@` (or `%40`) inside: dropped first.
    url_with_at: Regex,
    /// An address in `<…>`, or followed by `word:` other than fax, tel,
    /// phone or mail: dropped next.
    quoted: Regex,
}

impl BodyEmails {
    /// Compiles FreeMail's patterns over `tlds`; `None` without a usable
    /// top-level domain (SpamAssassin then matches no address at all).
    #[must_use]
    pub fn compile(tlds: &[String]) -> Option<Self> {
        let tlds: Vec<&str> = tlds
            .iter()
            .map(String::as_str)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .collect();
        if tlds.is_empty() {
            return None;
        }
        const LOCAL: &str = "[a-z0-9!#$%&'*+/=?^_`{|}~-]";
        let email = format!(
            "(?=.{{0,64}}@)(?<!{LOCAL})({LOCAL}+(?:\\.{LOCAL}+)*@\
             (?:[a-z0-9](?:[a-z0-9-]{{0,59}}[a-z0-9])?\\.){{1,4}}\
             (?<![a-zA-Z0-9-])(?:{})(?!(?:[a-zA-Z0-9-]|\\.[a-zA-Z0-9])))",
            tlds.join("|")
        );
        let build = |p: &str| {
            RegexBuilder::new()
                .caseless(true)
                .jit_if_available(true)
                .build(p)
                .ok()
        };
        Some(Self {
            mailto: build(&format!("^mailto:{email}"))?,
            url_with_at: build(r"<?https?://\S{0,255}(?:@|%40)\S{0,255}")?,
            quoted: build(&format!(
                "<?(?<!mailto:){email}(?:>|\\s{{1,10}}(?!(?:fa(?:x|csi)|tel|phone|e?-?mail))[a-z]{{2,11}}:)"
            ))?,
            email: build(&email)?,
        })
    }

    /// The distinct addresses (lower case) of `mailtos` (the `href`s of HTML
    /// anchors) and of the body elements (`body`, one element per line), in
    /// FreeMail's order and bounds.
    #[must_use]
    pub fn find(&self, body: &str, mailtos: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for href in mailtos {
            if let Ok(Some(c)) = self.mailto.captures(href.as_bytes()) {
                if let Some(m) = c.get(1) {
                    let email = String::from_utf8_lossy(m.as_bytes()).to_lowercase();
                    if !out.contains(&email) {
                        out.push(email);
                    }
                    if out.len() >= MAX_MAILTO {
                        break;
                    }
                }
            }
        }
        for element in body.split('\n') {
            if !element.contains('@') {
                continue;
            }
            let kept = replace(&self.url_with_at, element.as_bytes());
            let kept = replace(&self.quoted, &kept);
            for m in self.email.find_iter(&kept).filter_map(Result::ok) {
                let email = String::from_utf8_lossy(m.as_bytes()).to_lowercase();
                if !out.contains(&email) {
                    out.push(email);
                }
                if out.len() >= MAX_BODY {
                    return out;
                }
            }
        }
        out
    }
}

/// Perl's `s/re/ /g`: every match, left to right, replaced by one space.
fn replace(re: &Regex, haystack: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut last = 0;
    for m in re.find_iter(haystack).filter_map(Result::ok) {
        out.extend_from_slice(&haystack[last..m.start()]);
        out.push(b' ');
        last = m.end();
    }
    out.extend_from_slice(&haystack[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emails(text: &str, mailtos: &[&str]) -> Vec<String> {
        let tlds: Vec<String> = ["com", "net", "org", "uk", "co"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let be = BodyEmails::compile(&tlds).expect("compiles");
        let mailtos: Vec<String> = mailtos.iter().map(|s| (*s).to_owned()).collect();
        be.find(text, &mailtos)
    }

    #[test]
    fn finds_addresses_as_freemail_does() {
        assert_eq!(
            emails("write to Joe.Smith@Mail.Example.co.uk today", &[]),
            ["joe.smith@mail.example.co.uk"]
        );
        // no known top-level domain, no address
        assert!(emails("joe@example.invalid", &[]).is_empty());
        // inside a URL, in <…>, or before "wrote:": dropped
        assert!(emails("see http://x.example.com/?u=joe@example.com", &[]).is_empty());
        assert!(emails("Joe <joe@example.com>", &[]).is_empty());
        assert!(emails("joe@example.com wrote:", &[]).is_empty());
        // but kept before fax: or email:
        assert_eq!(emails("joe@example.com fax: 1", &[]), ["joe@example.com"]);
        assert_eq!(
            emails(
                "a@example.com\nA@EXAMPLE.COM b@example.net",
                &["mailto:c@example.org?subject=x"]
            ),
            ["c@example.org", "a@example.com", "b@example.net"]
        );
        // a local part longer than 64 characters is not an address
        let long = format!("{}@example.com", "a".repeat(70));
        assert!(emails(&long, &[]).is_empty());
    }

    #[test]
    fn no_tlds_no_patterns() {
        assert!(BodyEmails::compile(&[]).is_none());
        assert!(BodyEmails::compile(&["a.b".to_owned()]).is_none());
    }
}
