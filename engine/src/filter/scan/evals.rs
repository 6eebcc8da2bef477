//! SpamAssassin's local `eval:` functions, sans I/O: each reads the parsed
//! message, the per-message [`Facts`] computed once per scan (relays, the
//! envelope sender, date difference, MIME counts) and the rule set's
//! settings ([`Config`]: FreeMail domains). Named after and checked against
//! the Perl plugins of SpamAssassin 4.0.1 (HeaderEval, RelayEval, MIMEEval,
//! HTMLEval, FreeMail); where one is simplified the function says how.

use std::collections::{HashMap, HashSet};

use super::freemail::BodyEmails;
use super::relays::{self, Relays};
use super::style::TextStyle;
use crate::filter::mime::Message;
use crate::filter::sa::{Kind, RuleSet};

/// The eval functions implemented here (what `sa::Options::evals` lists by
/// default).
pub const IMPLEMENTED: &[&str] = &[
    "check_equal_from_domains",
    "check_for_matching_env_and_hdr_from",
    "check_freemail_from",
    "check_freemail_header",
    "check_freemail_replyto",
    "check_all_trusted",
    "check_no_relays",
    "check_relays_unparseable",
    "check_for_missing_to_header",
    "check_for_shifted_date",
    "subject_is_all_caps",
    "check_outlook_message_id",
    "html_test",
    "check_for_mime_html",
    "check_for_mime_html_only",
    "check_for_mime",
    "check_msg_parse_flags",
    "check_base64_length",
    "check_for_uppercase",
    "check_for_ascii_text_illegal",
    "check_for_no_rdns_dotcom_helo",
    "check_for_forged_yahoo_received_headers",
    "check_for_no_hotmail_received_headers",
    "check_for_forged_hotmail_received_headers",
    "check_for_faraway_charset",
    "check_for_faraway_charset_in_headers",
    "html_tag_exists",
    "tvd_vertical_words",
    "check_body_length",
    "check_mime_multipart_ratio",
    "image_count",
    "check_for_to_in_subject",
    "check_for_forged_gmail_received_headers",
    "html_tag_balance",
    "helo_ip_mismatch",
    "multipart_alternative_difference",
    "multipart_alternative_difference_count",
    "html_image_only",
    "html_eval",
    "html_text_match",
    "html_range",
    "html_image_ratio",
    "check_illegal_chars",
    "similar_recipients",
    "sorted_recipients",
    "check_from_in_list",
    "check_replyto_in_list",
    "check_uri_host_listed",
];

/// Settings the evals read from the rule set.
#[derive(Debug, Clone, Default)]
pub struct Config {
    freemail: HashSet<String>,
    freemail_wild: Vec<Vec<String>>,
    freemail_welcome: HashSet<String>,
    /// The regex arguments of the rule set's evals, compiled once (`None`:
    /// the argument is not a valid regex). Keyed by the text compiled.
    regexes: HashMap<String, Option<regex::Regex>>,
    /// FreeMail's body-address patterns, when a rule calls
    /// `check_freemail_replyto` (see [`Config::body_emails`]).
    body_emails: Option<BodyEmails>,
    /// `enlist_addrlist (NAME) addr...`: per list, its lower-case addresses
    /// and globs (`*`, `?`) and their anchored patterns as one set.
    addr_lists: HashMap<String, AddrList>,
    /// `enlist_uri_host (NAME) [!]host...`: per list, host or domain to
    /// verdict (false for a `!` entry).
    uri_host_lists: HashMap<String, HashMap<String, bool>>,
}

/// `(NAME) rest` of an `enlist_*` setting.
fn list_setting(value: &str) -> Option<(&str, &str)> {
    let v = value.trim_start().strip_prefix('(')?;
    let close = v.find(')')?;
    let name = v[..close].trim();
    (!name.is_empty()).then(|| (name, v[close + 1..].trim()))
}

/// One `enlist_addrlist` list: an address is listed when it is one of
/// `exact` or matches a pattern of `globs` (WLBLEval tries each entry's
/// pattern in turn; one [`regex::RegexSet`] gives the same answer in one
/// pass).
#[derive(Debug, Clone, Default)]
struct AddrList {
    exact: HashSet<String>,
    patterns: Vec<String>,
    globs: Option<regex::RegexSet>,
}

impl AddrList {
    fn add(&mut self, addr: String) {
        self.patterns.push(addr_glob(&addr));
        self.exact.insert(addr);
    }

    /// Compiles `globs` from `patterns`, once all entries are in. An entry
    /// whose pattern does not compile is still listed as written.
    fn seal(&mut self) {
        self.globs = regex::RegexSet::new(&self.patterns).ok().or_else(|| {
            self.patterns.retain(|p| regex::Regex::new(p).is_ok());
            regex::RegexSet::new(&self.patterns).ok()
        });
    }

    fn contains(&self, addr: &str) -> bool {
        self.exact.contains(addr) || self.globs.as_ref().is_some_and(|g| g.is_match(addr))
    }
}

/// Conf::Parser's `add_to_addrlist` pattern of an address glob: `^...$`
/// with `?` one character and `*` any run.
fn addr_glob(addr: &str) -> String {
    let mut re = String::from("^");
    let mut star = false;
    for c in addr.chars() {
        if c == '*' {
            if !star {
                re.push_str(".*");
            }
            star = true;
            continue;
        }
        star = false;
        match c {
            '?' => re.push('.'),
            '\0' | '\\' | '(' => re.push('_'),
            c if c.is_ascii_alphanumeric() || c == '_' => re.push(c),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    re
}

impl Config {
    /// Reads `freemail_domains` and `freemail_welcomelist` (and its old
    /// spelling) from the rule set's settings.
    #[must_use]
    pub fn from_set(set: &RuleSet) -> Self {
        let mut c = Self::default();
        for s in &set.settings {
            match s.name.as_str() {
                "freemail_domains" => {
                    for d in s.value.split_whitespace() {
                        let d = d.to_ascii_lowercase();
                        if d.contains('*') {
                            c.freemail_wild
                                .push(d.split('.').map(str::to_owned).collect());
                        } else {
                            c.freemail.insert(d);
                        }
                    }
                }
                "freemail_welcomelist" | "freemail_whitelist" => {
                    for d in s.value.split_whitespace() {
                        c.freemail_welcome.insert(d.to_ascii_lowercase());
                    }
                }
                "enlist_addrlist" => {
                    if let Some((name, addrs)) = list_setting(&s.value) {
                        let list = c.addr_lists.entry(name.to_owned()).or_default();
                        for a in addrs.split_whitespace() {
                            list.add(a.to_ascii_lowercase());
                        }
                    }
                }
                "enlist_uri_host" => {
                    if let Some((name, hosts)) = list_setting(&s.value) {
                        let list = c.uri_host_lists.entry(name.to_owned()).or_default();
                        for h in hosts.split_whitespace() {
                            let (verdict, h) = match h.strip_prefix('!') {
                                Some(rest) => (false, rest),
                                None => (true, h),
                            };
                            list.insert(h.to_ascii_lowercase(), verdict);
                        }
                    }
                }
                "delist_uri_host" => {
                    let (name, hosts) = match list_setting(&s.value) {
                        Some((n, h)) => (Some(n), h),
                        None => (None, s.value.as_str()),
                    };
                    for (list_name, list) in &mut c.uri_host_lists {
                        if name.is_none_or(|n| n == list_name) {
                            for h in hosts.split_whitespace() {
                                list.remove(&h.trim_start_matches('!').to_ascii_lowercase());
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        for list in c.addr_lists.values_mut() {
            list.seal();
        }
        for rule in &set.rules {
            if let Kind::Eval { function, args, .. } = &rule.kind {
                if function == "check_freemail_replyto" && c.body_emails.is_none() {
                    c.body_emails = BodyEmails::compile(&set.util_rb_tld);
                }
                if let Some(text) = regex_text(function, args) {
                    let compiled = regex::Regex::new(&text).ok();
                    c.regexes.entry(text).or_insert(compiled);
                }
            }
        }
        c
    }

    /// FreeMail's body-address finder, when the rule set needs it: the
    /// scanner fills [`Facts::body_emails`] with it from the body elements.
    #[must_use]
    pub fn body_emails(&self) -> Option<&BodyEmails> {
        self.body_emails.as_ref()
    }

    /// The compiled regex argument of eval `function` (see [`regex_text`]).
    /// `Err(())` when the argument is not a valid regex.
    fn regex(&self, function: &str, args: &[String]) -> Result<Option<&regex::Regex>, ()> {
        let Some(text) = regex_text(function, args) else {
            return Ok(None);
        };
        match self.regexes.get(&text) {
            Some(Some(re)) => Ok(Some(re)),
            // not compiled at load (an eval run outside its rule set): an
            // error, like an invalid regex, rather than compiling per message
            Some(None) | None => Err(()),
        }
    }

    /// FreeMail's `_is_freemail` (without the welcomelist_auth imports),
    /// with its built-in welcomelist of role and bounce addresses
    /// (postmaster@, info@, Gmail's message-id senders, ...).
    fn is_freemail(&self, email: &str) -> bool {
        static ROLES: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
            regex::Regex::new(
                r"(?i)^(?:abuse|support|sales|info|helpdesk|contact|kontakt|(?:post|host|domain)master|undisclosed.*|request-[a-f0-9]{16}|bounced?-|[a-f0-9]{8}(?:\.[a-f0-9]{8}|-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})|.+=.+=.+)@",
            )
            .ok()
        });
        let Some((_, domain)) = email.rsplit_once('@') else {
            return false;
        };
        if email.is_empty()
            || self.freemail_welcome.contains(email)
            || self.freemail_welcome.contains(domain)
            || ROLES.as_ref().is_some_and(|r| r.is_match(email))
        {
            return false;
        }
        if self.freemail.contains(domain) {
            return true;
        }
        let labels: Vec<&str> = domain.split('.').collect();
        self.freemail_wild.iter().any(|pat| {
            pat.len() == labels.len() && pat.iter().zip(&labels).all(|(p, l)| glob(p, l))
        })
    }
}

/// `*` matches any run of characters within one label.
fn glob(pat: &str, s: &str) -> bool {
    match pat.split_once('*') {
        None => pat == s,
        Some((head, tail)) => {
            let Some(rest) = s.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len()).any(|i| rest.is_char_boundary(i) && glob(tail, &rest[i..]))
        }
    }
}

/// What several evals and pseudo-headers share, computed once per message.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Per cent of upper-case letters in the body text
    /// ([`uppercase_percent`]; set by the scanner when a rule needs it).
    pub uppercase: f64,
    /// The distinct addresses FreeMail finds in the body (`mailto:` links
    /// first), lower case; set by the scanner when a rule needs them.
    pub body_emails: Vec<String>,
    /// The `href`s of HTML anchors that start with `mailto:` (at most 20).
    pub html_mailtos: Vec<String>,
    /// The relays and the trust boundary.
    pub relays: Relays,
    /// The canonical URI list ([`Facts::uris`]), built on first use.
    uris: std::cell::OnceCell<Vec<String>>,
    /// The distinct lower-case hosts of [`Facts::uris`] (not `mailto:`), in
    /// order; built by the first `check_uri_host_listed`.
    uri_hosts: std::cell::OnceCell<Vec<String>>,
    /// The sender addresses WLBLEval and FreeMail read ([`from_addrs`]),
    /// parsed on first use: four stock rules and FreeMail ask for them.
    from_addrs: std::cell::OnceCell<Vec<String>>,
    /// `X-Spam-Relays-Untrusted` / `-External`.
    pub untrusted_str: String,
    /// `X-Spam-Relays-Trusted` / `-Internal`.
    pub trusted_str: String,
    /// The envelope sender, as `PerMsgStatus::get_envelope_from` finds it.
    pub envfrom: Option<String>,
    /// Date header minus the nearest Received date, in seconds (0 if either
    /// is missing).
    date_diff: i64,
    html_count: usize,
    text_count: usize,
    base64_text: bool,
    /// ImageInfo's image counts: base64 leaves of type image/gif, image/png
    /// and image/jpeg (or jpg), in that order.
    images: [usize; 3],
    /// MIMEEval's `mime_multipart_ratio`: the raw bytes of the last
    /// text/plain part over those of the last text/html part, in a message
    /// with a multipart/alternative (1 otherwise).
    multipart_ratio: f64,
    /// Message.pm's `pristine_body_length`: bytes after the blank line
    /// that ends the header, line endings as received.
    body_length: usize,
    /// MIMEEval's `mime_base64_count` and `mime_qp_count`: entities whose
    /// Content-Transfer-Encoding names base64 (or else quoted-printable).
    base64_count: usize,
    qp_count: usize,
    /// MIMEEval's `mime_bad_iso_charset`: an `iso-X-Y` charset other than
    /// ISO-8859-N and ISO-2022-JP/KR.
    bad_iso_charset: bool,
    attachments: usize,
    ascii_illegal: bool,
    /// Lower-case names of the tags seen in the HTML parts.
    html_tags: HashSet<String>,
    html_font_face_bad: bool,
    /// HTML.pm's `font_low_contrast` and `font_invalid_color`: visible text
    /// drawn in a colour close to its background, or in a colour it cannot
    /// parse (see `style`).
    html_low_contrast: bool,
    html_invalid_color: bool,
    /// Per HTML part with tags: HTML.pm's `closed_extra_ratio`, end tags
    /// closing nothing over all tags.
    html_closed_extra: Vec<f64>,
    /// Open-minus-close count per tag of the last HTML part (floored at 0).
    html_inside: std::collections::HashMap<String, i64>,
    /// Per HTML part: source length in characters and whether it has an
    /// `<img>` (HTMLEval's `length`, `inside{img}`).
    html_parts: Vec<(i64, bool)>,
    /// Per HTML part: non-whitespace length of the rendered text and the
    /// summed area of its sized images (HTML.pm's `non_space_len`,
    /// `image_area`).
    html_images: Vec<(u64, u64)>,
    /// Per HTML part: the largest font size its text style reached
    /// (HTML.pm's `max_size`, 3 when nothing changes it).
    html_max_size: Vec<i64>,
    /// HTML comments (`<!…>`), anchor texts (`<img>` for an image inside a
    /// link) and titles, for `html_text_match`.
    html_comments: Vec<String>,
    html_anchors: Vec<String>,
    html_titles: Vec<String>,
    /// The top-level header fields as raw bytes (lower-case name, unfolded
    /// value), for `check_illegal_chars`.
    raw_headers: Vec<(String, Vec<u8>)>,
    /// BodyEval's `madiff`: % of HTML words missing from the text part.
    madiff: f64,
    /// BodyEval's `madiff_html` and `madiff_text`: the distinct HTML and
    /// text words of the last multipart/alternative part with HTML words.
    madiff_words: (usize, usize),
    /// BodyEval's `tvd_vertical_words` value (-1 when no element is long
    /// enough); set by the scanner from the body elements
    /// ([`vertical_words`]) when a rule needs it.
    pub vertical_words: i64,
}

impl Facts {
    /// The message's canonical URI list: each URI with the variants
    /// SpamAssassin's URI rules also see (`Util::uri_list_canonicalize`),
    /// distinct, in order. Built once per message, for the URI class text
    /// and `check_uri_host_listed`.
    pub fn uris(&self, message: &Message) -> &[String] {
        self.uris.get_or_init(|| {
            let mut seen: HashSet<String> = HashSet::new();
            let mut uris = Vec::new();
            for u in &message.urls {
                for v in crate::filter::mime::url::sa_variants(u) {
                    if seen.insert(v.clone()) {
                        uris.push(v);
                    }
                }
            }
            uris
        })
    }

    /// Date header minus the nearest Received date, in seconds.
    #[must_use]
    pub fn date_diff(&self) -> i64 {
        self.date_diff
    }

    /// Computes the facts of `message`.
    #[must_use]
    pub fn of(message: &Message, raw: &[u8]) -> Self {
        let received: Vec<&str> = message
            .header("received")
            .map(|h| h.value.as_str())
            .collect();
        let relays = Relays::parse(received.iter().copied());
        let envfrom = envelope_from(message, &relays);
        let mut f = Self {
            untrusted_str: relays.untrusted_str(),
            trusted_str: relays.trusted_str(),
            relays,
            envfrom,
            date_diff: date_diff(message, &received),
            raw_headers: raw_headers(raw),
            body_length: pristine_body_length(raw),
            ..Self::default()
        };
        // MIMEEval's `_check_mime_header` over every entity, the top level
        // and multipart containers included.
        for part in &message.parts {
            let kind = match part.content_type.as_str() {
                "image/gif" => Some(0),
                "image/png" => Some(1),
                "image/jpeg" | "image/jpg" => Some(2),
                _ => None,
            };
            let cte = part_header(part, "content-transfer-encoding").to_ascii_lowercase();
            if let Some(k) = kind {
                if cte == "base64" {
                    f.images[k] += 1;
                }
            }
            if cte.contains("base64") {
                f.base64_count += 1;
            } else if cte.contains("quoted-printable") {
                f.qp_count += 1;
            }
            let charset = part.charset.as_deref().unwrap_or("");
            if bad_iso_charset(charset) {
                f.bad_iso_charset = true;
            }
        }
        for part in message
            .parts
            .iter()
            .skip(usize::from(message.parts.len() > 1))
        {
            if part.content_type.starts_with("multipart/") || part.content_type == "message/rfc822"
            {
                continue;
            }
            let cte = part_header(part, "content-transfer-encoding").to_ascii_lowercase();
            let cd = part_header(part, "content-disposition").to_ascii_lowercase();
            let charset = part.charset.as_deref().unwrap_or("").to_ascii_lowercase();
            if cd.contains("attachment") {
                f.attachments += 1;
            }
            if part.content_type == "text/html" {
                f.html_count += 1;
            } else if part.content_type.starts_with("text") {
                f.text_count += 1;
            }
            if part.content_type.starts_with("text")
                && cte.contains("base64")
                && (charset.is_empty() || charset.contains("ascii") || charset == "us")
                && !(cd.starts_with("attachment") || cd.starts_with("inline"))
            {
                f.base64_text = true;
            }
            if part.content_type == "text/plain"
                && (charset.is_empty() || charset == "us-ascii")
                && !cte.contains("base64")
                && !cte.contains("quoted-printable")
            {
                if let Some(t) = &part.raw_text {
                    let bare_cr = t.replace("\r\n", "\n").contains('\r');
                    if bare_cr || t.chars().any(|c| c == '\0' || !c.is_ascii()) {
                        f.ascii_illegal = true;
                    }
                }
            }
        }
        for part in message.parts.iter().filter(|p| p.is_html) {
            if let Some(t) = &part.raw_text {
                f.html_inside.clear();
                let (max_size, image_area) = scan_html(t, &mut f);
                f.html_max_size.push(max_size);
                let len = i64::try_from(t.chars().count()).unwrap_or(i64::MAX);
                f.html_parts.push((len, f.html_inside.contains_key("img")));
                let rendered = part.text.as_deref().unwrap_or("");
                f.html_images
                    .push((non_space_len(rendered, part.charset.as_deref()), image_area));
            }
        }
        (f.madiff, f.madiff_words) = madiff(message);
        f.multipart_ratio = multipart_ratio(message);
        // A single-part message: its only part is the top level.
        if message.parts.len() == 1 {
            f.html_count = usize::from(message.parts[0].content_type == "text/html");
            f.text_count = usize::from(
                message.parts[0].content_type != "text/html"
                    && message.parts[0].content_type.starts_with("text"),
            );
        }
        f
    }
}

/// Records the tags of an HTML text, HTMLEval's `font_face_bad` and the
/// text-style tests (`font_low_contrast`, `font_invalid_color`); returns
/// the part's largest font size (HTML.pm's `max_size`) and the summed area
/// of its sized images (`image_area`). The text of `<script>` and `<style>`
/// is skipped as HTML::Parser skips it: raw text up to the end tag.
fn scan_html(html: &str, f: &mut Facts) -> (i64, u64) {
    let mut style = TextStyle::default();
    let mut images = 0u64;
    // HTML.pm's `tags` (start and end tags, and a doctype) and
    // `closed_extra` (end tags with no open tag of their name)
    let (mut tags, mut closed_extra) = (0u32, 0u32);
    let b = html.as_bytes();
    let mut i = 0;
    // Where the text since the last markup starts.
    let mut text_from = 0;
    let mut in_anchor = false;
    while let Some(off) = memchr::memchr(b'<', &b[i..]) {
        let mut start = i + off + 1;
        let markup = b
            .get(start)
            .is_some_and(|&c| c == b'!' || c == b'/' || c.is_ascii_alphanumeric());
        if markup {
            style.text(&html[text_from..start - 1]);
        }
        if b.get(start) == Some(&b'!') {
            let end = if b[start..].starts_with(b"!--") {
                memchr::memmem::find(&b[start..], b"-->").map_or(b.len(), |p| start + p + 3)
            } else {
                memchr::memchr(b'>', &b[start..]).map_or(b.len(), |p| start + p + 1)
            };
            if f.html_comments.len() < 100 {
                f.html_comments.push(html[start - 1..end].to_owned());
            }
            if b[start + 1..].len() >= 7 && b[start + 1..start + 8].eq_ignore_ascii_case(b"doctype")
            {
                tags += 1;
            }
            i = end;
            text_from = end;
            continue;
        }
        let closing = b.get(start) == Some(&b'/');
        if closing {
            start += 1;
        }
        let name_end = b[start.min(b.len())..]
            .iter()
            .position(|c| !c.is_ascii_alphanumeric())
            .map_or(b.len(), |p| start + p);
        if name_end <= start {
            i = start.min(b.len());
            // Not a tag after all: the text goes on.
            continue;
        }
        let name = html[start..name_end].to_ascii_lowercase();
        let end = memchr::memchr(b'>', &b[name_end..]).map_or(b.len(), |p| name_end + p);
        let attrs = &html[name_end..end];
        style.tag(&name, closing, attrs);
        if !closing && name == "img" {
            if let (Some(w), Some(h)) = (attribute(attrs, "width"), attribute(attrs, "height")) {
                images = images.saturating_add(image_area(&w, &h));
            }
        }
        if !closing && name == "font" && !f.html_font_face_bad {
            if let Some(face) = attribute(attrs, "face") {
                f.html_font_face_bad = !face_ok(&face);
            }
        }
        match (name.as_str(), closing) {
            ("a", false) => {
                in_anchor = true;
                f.html_anchors.push(String::new());
                if let Some(href) = attribute(attrs, "href") {
                    let href = href.trim();
                    if f.html_mailtos.len() < 20 && strip_ci(href, "mailto:").is_some() {
                        f.html_mailtos.push(href.to_owned());
                    }
                }
            }
            ("a", true) => in_anchor = false,
            ("img", false) if in_anchor => {
                if let Some(a) = f.html_anchors.last_mut() {
                    a.push_str("<img>\n");
                }
            }
            ("title", false) => {
                let rest = &html[(end + 1).min(html.len())..];
                let stop = rest.find('<').unwrap_or(rest.len());
                f.html_titles.push(rest[..stop].trim().to_owned());
            }
            _ => {}
        }
        if in_anchor {
            let rest = &html[(end + 1).min(html.len())..];
            let stop = rest.find('<').unwrap_or(rest.len());
            if let Some(a) = f.html_anchors.last_mut() {
                a.push_str(&rest[..stop]);
            }
        }
        let inside = f.html_inside.entry(name.clone()).or_insert(0);
        tags += 1;
        if closing && *inside == 0 {
            closed_extra += 1;
        }
        *inside = if closing {
            (*inside - 1).max(0)
        } else {
            *inside + 1
        };
        i = end.max(start);
        text_from = (end + 1).min(b.len());
        if !closing && (name == "script" || name == "style") {
            i = crate::filter::mime::raw_text_end(b, text_from, &name);
            text_from = i;
        }
        f.html_tags.insert(name);
    }
    style.text(&html[text_from..]);
    if tags > 0 {
        f.html_closed_extra
            .push(f64::from(closed_extra) / f64::from(tags));
    }
    f.html_low_contrast |= style.low_contrast;
    f.html_invalid_color |= style.invalid_color;
    (style.max, images)
}

/// HeaderEval's `check_for_to_in_subject`: the first To address
/// (`address`) or its local part (`user`) in the Subject, in the places
/// HeaderEval looks: `user` as the whole Subject, after `Re:`/`Fw:` (and
/// at most one word), or first and followed by punctuation.
fn to_in_subject(message: &Message, test: &str) -> bool {
    let Some(full_to) = first_address(message, "to")
        // a bare word (`To: XX`) is no address to SpamAssassin
        .filter(|a| a.contains('@'))
    else {
        return false;
    };
    let subject = message.header_value("subject").unwrap_or("");
    let subject = subject.strip_suffix('\n').unwrap_or(subject);
    match test {
        "address" => regex::RegexBuilder::new(&format!(r"\b{}\b", regex::escape(&full_to)))
            .case_insensitive(true)
            .build()
            .is_ok_and(|re| re.is_match(subject)),
        "user" => {
            let to = full_to.split('@').next().unwrap_or("");
            let punct = |c: char| ",:;!?-".contains(c);
            // re:/fw: [word ]TO$
            let reply = subject
                .get(..3)
                .filter(|p| p.eq_ignore_ascii_case("re:") || p.eq_ignore_ascii_case("fw:"))
                .map(|_| subject[3..].trim_start_matches(perl_space))
                .is_some_and(|rest| {
                    let word = rest
                        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .filter(|&n| n > 0)
                        .and_then(|n| {
                            let after = rest[n..].trim_start_matches(perl_space);
                            (after.len() < rest.len() - n).then_some(after)
                        });
                    strip_ci(rest, to) == Some("") || word.and_then(|w| strip_ci(w, to)) == Some("")
                });
            // TO\s*[,:;!?-](?:$|\s), TO case-sensitive
            let leading = subject.strip_prefix(to).is_some_and(|rest| {
                let mut r = rest.trim_start_matches(perl_space).chars();
                r.next().is_some_and(punct) && r.next().is_none_or(perl_space)
            });
            // ,\s*TO[,:;!?-]$
            let listed = subject
                .strip_prefix(',')
                .map(|r| r.trim_start_matches(perl_space))
                .and_then(|r| strip_ci(r, to))
                .is_some_and(|rest| {
                    let mut r = rest.chars();
                    r.next().is_some_and(punct) && r.next().is_none()
                });
            reply || leading || subject.eq_ignore_ascii_case(to) || listed
        }
        _ => false,
    }
}

/// `s` without a leading `prefix` (ASCII case-blind).
fn strip_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &s[prefix.len()..])
}

/// Perl's `\s`.
pub(super) fn perl_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c' | '\x0b')
}

/// MIMEEval's `mime_multipart_ratio`. Walking the entities in order, once
/// a multipart/alternative has been seen every text/plain and text/html
/// leaf that is not an attachment counts its raw (encoded) bytes; then the
/// last text/plain over the last text/html, when both exist and the HTML
/// has bytes. 1 otherwise.
fn multipart_ratio(message: &Message) -> f64 {
    let mut alternative = false;
    // (type, bytes; None for an attachment)
    let mut leaves: Vec<(&str, Option<usize>)> = Vec::new();
    for part in &message.parts {
        let ct = part.content_type.as_str();
        if ct == "multipart/alternative" {
            alternative = true;
        }
        if ct.starts_with("multipart/") || ct == "message/rfc822" {
            continue;
        }
        let cd = part_header(part, "content-disposition").to_ascii_lowercase();
        let bytes = (!cd.contains("attachment")).then(|| {
            if alternative && (ct == "text/plain" || ct == "text/html") {
                part.raw_size
            } else {
                0
            }
        });
        leaves.push((ct, bytes));
    }
    if !alternative {
        return 1.0;
    }
    let last = |want: &str| {
        leaves
            .iter()
            .rev()
            .find_map(|(ct, b)| if *ct == want { *b } else { None })
    };
    match (last("text/plain"), last("text/html")) {
        #[allow(clippy::cast_precision_loss)]
        (Some(text), Some(html)) if html > 0 => text as f64 / html as f64,
        _ => 1.0,
    }
}

/// The length of the body of `raw`: the bytes after the first empty line
/// (`\n` or `\r\n`); 0 without one.
fn pristine_body_length(raw: &[u8]) -> usize {
    let blank = |rest: &[u8]| {
        if rest.starts_with(b"\n") {
            Some(rest.len() - 1)
        } else if rest.starts_with(b"\r\n") {
            Some(rest.len() - 2)
        } else {
            None
        }
    };
    if let Some(n) = blank(raw) {
        return n;
    }
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'\n', &raw[i..]) {
        i += p + 1;
        if let Some(n) = blank(&raw[i..]) {
            return n;
        }
    }
    0
}

/// MIMEEval's bad ISO charset: `iso-\S+-\S+\b` but not
/// `iso-(?:8859-\d{1,2}|2022-(?:jp|kr))\b` (case-blind).
fn bad_iso_charset(charset: &str) -> bool {
    static ISO: std::sync::LazyLock<Option<(regex::Regex, regex::Regex)>> =
        std::sync::LazyLock::new(|| {
            Some((
                regex::Regex::new(r"(?i)iso-\S+-\S+\b").ok()?,
                regex::Regex::new(r"(?i)iso-(?:8859-\d{1,2}|2022-(?:jp|kr))\b").ok()?,
            ))
        });
    ISO.as_ref()
        .is_some_and(|(any, good)| any.is_match(charset) && !good.is_match(charset))
}

/// HTMLEval's `html_range` bounds: a number, and a number, `inf` or
/// nothing (no upper bound: `unbounded`); `None` when either does not parse.
fn range_bounds<T: std::str::FromStr>(min: &str, max: &str, unbounded: T) -> Option<(T, T)> {
    let min = min.trim().parse::<T>().ok()?;
    let max = match max.trim() {
        "inf" | "" => unbounded,
        m => m.parse::<T>().ok()?,
    };
    Some((min, max))
}

/// `value OP n` for HTMLEval's expressions (`!= 0`, `> 2`, `<= 1`…).
fn compare(value: i64, expr: &str) -> bool {
    let e = expr.trim();
    let (op, rest) = ["!=", "==", "<=", ">=", "<", ">"]
        .iter()
        .find_map(|op| e.strip_prefix(op).map(|r| (*op, r)))
        .unwrap_or(("", e));
    let Ok(n) = rest.trim().parse::<i64>() else {
        return false;
    };
    match op {
        "!=" => value != n,
        "==" => value == n,
        "<=" => value <= n,
        ">=" => value >= n,
        "<" => value < n,
        ">" => value > n,
        _ => false,
    }
}

/// BodyEval's `_multipart_alternative_difference` over the flat part list
/// (a part's children are the parts after it with a greater depth): the
/// largest difference, and the distinct HTML and text words of the last
/// multipart/alternative part with HTML words (as `madiff_html` and
/// `madiff_text`, which each such part overwrites).
fn madiff(message: &Message) -> (f64, (usize, usize)) {
    let parts = &message.parts;
    let mut best = 0.0f64;
    let mut words = (0, 0);
    for (i, alt) in parts.iter().enumerate() {
        if alt.content_type != "multipart/alternative" {
            continue;
        }
        let mut html: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
        let mut text: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
        for p in parts[i + 1..].iter().take_while(|p| p.depth > alt.depth) {
            if p.content_type != "text/plain" && p.content_type != "text/html" {
                continue;
            }
            let Some(t) = &p.text else { continue };
            let words = t
                .split_whitespace()
                .filter(|w| w.chars().any(|c| c.is_alphanumeric() || c == '_'));
            let map = if p.is_html { &mut html } else { &mut text };
            for w in words {
                *map.entry(w).or_insert(0) += 1;
            }
            if p.is_html
                && html.is_empty()
                && p.raw_text
                    .as_deref()
                    .is_some_and(|r| r.to_ascii_lowercase().contains("<img"))
            {
                html.insert("\n", 1);
            }
        }
        let orig = html.len();
        if orig == 0 {
            continue;
        }
        words = (orig, text.len());
        for (k, v) in &text {
            if html.get(k).is_some_and(|h| h - v < 1) {
                html.remove(k);
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let diff = html.len() as f64 / orig as f64 * 100.0;
        best = best.max(diff);
    }
    (best, words)
}

/// HTML.pm's area of an `<img>` with both `width` and `height`: a value
/// of digits (a percentage of an 800x600 screen with `%`), 200 when it is
/// anything else or 0.
fn image_area(width: &str, height: &str) -> u64 {
    let side = |v: &str, per_cent: u64| -> u64 {
        let (digits, pct) = match v.strip_suffix('%') {
            Some(d) => (d, true),
            None => (v, false),
        };
        let n = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            digits.parse::<u64>().unwrap_or(u64::MAX / 1024)
        } else {
            0
        };
        let n = if pct { n.saturating_mul(per_cent) } else { n };
        if n == 0 {
            200
        } else {
            n
        }
    };
    side(width, 8).saturating_mul(side(height, 6))
}

/// Node.pm's `non_space_len` of a rendered HTML part: its length less its
/// ASCII whitespace. SpamAssassin (without `normalize_charset`) measures
/// the part's octets: characters for single-byte charsets, UTF-8 bytes
/// otherwise (exact for UTF-8, an estimate for other multi-byte ones).
fn non_space_len(rendered: &str, charset: Option<&str>) -> u64 {
    let cs = charset.unwrap_or("").to_ascii_lowercase();
    let single = cs.is_empty()
        || cs.contains("ascii")
        || cs.starts_with("iso-8859")
        || cs.starts_with("windows-")
        || cs.starts_with("cp125")
        || cs.starts_with("koi8");
    let len = if single {
        rendered.chars().count()
    } else {
        rendered.len()
    };
    let space = rendered
        .bytes()
        .filter(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b))
        .count();
    (len - space) as u64
}

/// The value of attribute `name` in a tag's attribute text.
pub(super) fn attribute(attrs: &str, name: &str) -> Option<String> {
    let lower = attrs.to_ascii_lowercase();
    let mut from = 0;
    while let Some(p) = lower[from..].find(name) {
        let at = from + p;
        from = at + name.len();
        let before_ok = at == 0 || lower.as_bytes()[at - 1].is_ascii_whitespace();
        let rest = lower[from..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let vstart = attrs.len() - rest.len() + 1;
        let v = attrs[vstart..].trim_start();
        let value = if let Some(q) = v.strip_prefix('"') {
            q.split('"').next().unwrap_or("")
        } else if let Some(q) = v.strip_prefix('\'') {
            q.split('\'').next().unwrap_or("")
        } else {
            v.split(|c: char| c.is_whitespace()).next().unwrap_or("")
        };
        return Some(value.to_owned());
    }
    None
}

/// HTML.pm's font face check: `^\s*["'.]?[a-z ][a-z -]*[a-z]\d?["']?(?:,\s*…)*;?$`.
fn face_ok(face: &str) -> bool {
    let name_ok = |n: &str, first: bool| -> bool {
        let mut n = n;
        if first {
            n = n.trim_start();
            n = n.strip_prefix(['"', '\'', '.']).unwrap_or(n);
        } else {
            n = n.trim_start();
            n = n.strip_prefix(['"', '\'']).unwrap_or(n);
        }
        n = n.strip_suffix(['"', '\'']).unwrap_or(n);
        if let Some(last) = n.chars().last() {
            if last.is_ascii_digit() {
                n = &n[..n.len() - 1];
            }
        }
        let c: Vec<char> = n.chars().collect();
        c.len() >= 2
            && (c[0].is_ascii_alphabetic() || (first && c[0] == ' '))
            && c[c.len() - 1].is_ascii_alphabetic()
            && c.iter()
                .all(|x| x.is_ascii_alphabetic() || *x == ' ' || *x == '-')
            && (first || c[0].is_ascii_alphabetic())
    };
    let face = face.strip_suffix(';').unwrap_or(face);
    face.split(',').enumerate().all(|(i, n)| name_ok(n, i == 0))
}

/// BodyEval's `tvd_vertical_words` value over the body elements (`body`,
/// one element per line, the Subject first): the largest share of spaces
/// to other bytes, in per cent (100 when spaces outnumber the rest), of
/// the elements longer than 5 bytes; -1 when there is none. SpamAssassin's
/// elements keep their line feed (`split /^/m`), which counts as a byte
/// that is not a space; the last one has none.
#[must_use]
pub fn vertical_words(body: &str) -> i64 {
    let mut best = -1i64;
    let mut lines = body.split_inclusive('\n').peekable();
    while let Some(segment) = lines.next() {
        let line = if lines.peek().is_none() {
            segment.strip_suffix('\n').unwrap_or(segment)
        } else {
            segment
        };
        let l = line.len();
        if l <= 5 {
            continue;
        }
        let spaces = line.bytes().filter(|&b| b == b' ').count();
        let non = l - spaces;
        let pct = if spaces > non || non == 0 {
            100
        } else {
            i64::try_from(100 * spaces / non).unwrap_or(100)
        };
        best = best.max(pct);
    }
    best
}

fn part_header<'a>(part: &'a crate::filter::mime::Part, name: &str) -> &'a str {
    part.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map_or("", |h| h.value.trim())
}

/// `PerMsgStatus::get_envelope_from` without `envelope_sender_header`.
fn envelope_from(message: &Message, relays: &Relays) -> Option<String> {
    let lasthop = relays.untrusted.first().or_else(|| relays.trusted.last());
    if let Some(hop) = lasthop {
        if hop.envfrom.contains('@') && !hop.envfrom.starts_with('@') {
            return Some(hop.envfrom.clone());
        }
    }
    let first_addr = |name: &str| first_address(message, name);
    if first_addr("x-sender").is_some_and(|a| a.contains('@'))
        && message
            .header("received")
            .any(|h| h.value.contains("(fetchmail"))
    {
        return None;
    }
    // A header counts only when none of its fields is below a Received one.
    let before_received = |name: &str| -> bool {
        // `^Received:.*?^Name:`: any `name` field below any Received
        // field makes every one of them untrustworthy
        let mut below = false;
        for h in &message.headers {
            if h.name.eq_ignore_ascii_case("received") {
                below = true;
            } else if below && h.name.eq_ignore_ascii_case(name) {
                return false;
            }
        }
        true
    };
    if let Some(a) = first_addr("x-envelope-from") {
        return before_received("x-envelope-from").then_some(a);
    }
    for name in ["envelope-sender", "return-path"] {
        if let Some(a) = first_addr(name) {
            if before_received(name) {
                return Some(a);
            }
        }
    }
    None
}

/// HeaderEval's `_check_date_diff`.
fn date_diff(message: &Message, received: &[&str]) -> i64 {
    let date = ["resent-date", "date"]
        .iter()
        .find_map(|n| message.header(n).find_map(|h| relays::parse_date(&h.value)));
    let Some(date) = date else { return 0 };
    // The local handover and a fetchmail hop at the top are not transit
    // times (HeaderEval's `_get_received_header_times`).
    let mut received = received;
    let is_local = |r: &str| {
        let l = r.trim_start();
        l.starts_with("from localhost ")
            || (l.starts_with("from ")
                && l.split(' ')
                    .skip(1)
                    .take(3)
                    .any(|w| w.contains("127.0.0.1")))
            || (l.contains("qmail ") && l.contains(" invoked by uid "))
    };
    if received.first().is_some_and(|r| is_local(r)) {
        let rest = &received[1..];
        if rest
            .first()
            .is_some_and(|r| r.contains("by localhost with ") && r.contains("(fetchmail-"))
        {
            received = &received[2..];
        }
    }
    let times: Vec<i64> = received
        .iter()
        .filter_map(|r| r.rsplit_once(';').and_then(|(_, d)| relays::parse_date(d)))
        .collect();
    let mut diffs: Vec<i64> = times.iter().map(|t| date - t).collect();
    if diffs.len() > 1 && diffs.last() == Some(&0) {
        diffs.pop();
    }
    diffs.sort_by_key(|d| d.abs());
    diffs.first().copied().unwrap_or(0)
}

/// Runs eval `name` with `args`; false for a function not implemented.
#[must_use]
pub fn run(name: &str, args: &[String], message: &Message, facts: &Facts, cfg: &Config) -> bool {
    let arg = |i: usize| args.get(i).map_or("", String::as_str);
    match name {
        "check_equal_from_domains" => equal_from_domains(message, facts),
        // HeaderEval: EnvelopeFrom:addr eq From:addr, case-blind (two
        // missing addresses match)
        "check_for_matching_env_and_hdr_from" => {
            let from = first_address(message, "from").unwrap_or_default();
            let env = facts.envfrom.as_deref().unwrap_or_default();
            from.to_lowercase() == env.to_lowercase()
        }
        "check_freemail_from" => {
            // an invalid pattern: FreeMail warns and matches every address
            let re = cfg.regex(name, args).unwrap_or(None);
            from_addrs(message, facts)
                .iter()
                .any(|e| cfg.is_freemail(e) && re.as_ref().is_none_or(|r| r.is_match(e)))
        }
        "check_freemail_header" => {
            let re = cfg.regex(name, args).unwrap_or(None);
            header_addrs(message, facts, arg(0))
                .iter()
                .any(|e| cfg.is_freemail(e) && re.as_ref().is_none_or(|r| r.is_match(e)))
        }
        "check_freemail_replyto" => {
            freemail_replyto(message, facts, cfg, args.first().map(|a| a.trim()))
        }
        "check_all_trusted" => {
            !facts.relays.trusted.is_empty()
                && facts.relays.untrusted.is_empty()
                && facts.relays.unparseable == 0
        }
        "check_no_relays" => {
            facts.relays.trusted.is_empty()
                && facts.relays.untrusted.is_empty()
                && facts.relays.unparseable == 0
        }
        "check_relays_unparseable" => facts.relays.unparseable > 0,
        "check_for_missing_to_header" => {
            header_text(message, "to").trim().is_empty()
                && header_text(message, "apparently-to").trim().is_empty()
        }
        "check_for_shifted_date" => {
            let bound = |s: &str| -> Option<Option<i64>> {
                if s == "undef" {
                    Some(None)
                } else {
                    s.trim().parse::<i64>().ok().map(Some)
                }
            };
            match (bound(arg(0)), bound(arg(1))) {
                (Some(min), Some(max)) => {
                    min.is_none_or(|m| facts.date_diff >= 3600 * m)
                        && max.is_none_or(|m| facts.date_diff < 3600 * m)
                }
                _ => false,
            }
        }
        "subject_is_all_caps" => subject_is_all_caps(message),
        "check_outlook_message_id" => outlook_message_id(message),
        "html_test" => match arg(0) {
            "html" => message
                .parts
                .iter()
                .any(|p| p.is_html && p.raw_text.as_deref().is_some_and(|t| !t.is_empty())),
            "font_face_bad" => facts.html_font_face_bad,
            "font_low_contrast" => facts.html_low_contrast,
            "font_invalid_color" => facts.html_invalid_color,
            _ => false,
        },
        "check_for_mime_html" => top_ctype_html(message) || facts.html_count > 0,
        "check_for_mime_html_only" => {
            top_ctype_html(message) || (facts.html_count > 0 && facts.text_count == 0)
        }
        "check_for_mime" => match arg(0) {
            "mime_base64_encoded_text" => facts.base64_text,
            "mime_attachment" => facts.attachments > 0,
            "mime_qp_long_line" => message.flags.qp_long_line,
            "mime_base64_count" => facts.base64_count > 0,
            "mime_qp_count" => facts.qp_count > 0,
            "mime_bad_iso_charset" => facts.bad_iso_charset,
            _ => false,
        },
        "check_for_uppercase" => {
            let (Ok(min), Ok(max)) = (arg(0).trim().parse::<f64>(), arg(1).trim().parse::<f64>())
            else {
                return false;
            };
            facts.uppercase > min && facts.uppercase <= max
        }
        "check_base64_length" => {
            // (min, optional max): the longest base64 line, line feed counted
            let longest = message.flags.base64_line_max;
            let Ok(min) = arg(0).trim().parse::<usize>() else {
                return false;
            };
            let under_max = arg(1)
                .trim()
                .parse::<usize>()
                .map_or(true, |max| longest <= max);
            under_max && longest >= min
        }
        "check_msg_parse_flags" => match arg(0) {
            "mime_epilogue_exists" => message.flags.epilogue,
            "missing_mime_headers" => message.flags.missing_headers,
            "missing_mime_head_body_separator" => message.flags.missing_separator,
            // `missing_head_body_separator` and `truncated_header`: not
            // recorded (SpamAssassin 4.0.1 deletes the first from the
            // message before any eval can read it)
            _ => false,
        },
        "check_for_ascii_text_illegal" => facts.ascii_illegal,
        "html_tag_exists" => facts.html_tags.contains(&arg(0).to_ascii_lowercase()),
        "check_for_to_in_subject" => to_in_subject(message, arg(0).trim()),
        "check_from_in_list" => from_addrs(message, facts)
            .iter()
            .any(|a| in_addr_list(cfg, arg(0).trim(), a)),
        "check_replyto_in_list" => first_address(message, "reply-to")
            .filter(|a| !a.is_empty())
            .is_some_and(|a| in_addr_list(cfg, arg(0).trim(), &a)),
        "check_uri_host_listed" => uri_host_listed(message, facts, cfg, arg(0).trim()),
        "check_for_forged_gmail_received_headers" => forged_gmail(message),
        // ImageInfo: base64 image/gif, png and jpeg leaves
        "image_count" => {
            let count = match arg(0).trim() {
                "all" => facts.images.iter().sum(),
                "gif" => facts.images[0],
                "png" => facts.images[1],
                "jpeg" => facts.images[2],
                _ => return false,
            };
            let Ok(min) = arg(1).trim().parse::<usize>() else {
                return false;
            };
            let max = arg(2).trim().parse::<usize>().ok();
            count >= min && max.is_none_or(|m| count <= m)
        }
        "check_mime_multipart_ratio" => {
            let (Ok(min), Ok(max)) = (arg(0).trim().parse::<f64>(), arg(1).trim().parse::<f64>())
            else {
                return false;
            };
            facts.multipart_ratio >= min && facts.multipart_ratio < max
        }
        // BodyEval: the raw body, as received, is at most `min` bytes
        "check_body_length" => arg(0)
            .trim()
            .parse::<f64>()
            .is_ok_and(|min| facts.body_length as f64 <= min),
        "tvd_vertical_words" => {
            let (Ok(min), Ok(max)) = (arg(0).trim().parse::<i64>(), arg(1).trim().parse::<i64>())
            else {
                return false;
            };
            let max = if max >= 100 { 101 } else { max };
            facts.vertical_words >= min && facts.vertical_words < max
        }
        "html_tag_balance" => {
            let Some(&value) = facts.html_inside.get(&arg(0).to_ascii_lowercase()) else {
                return false;
            };
            compare(value, arg(1))
        }
        "helo_ip_mismatch" => facts.relays.untrusted.iter().any(|r| {
            let public4 = |s: &str| {
                relays::ip_literal(s).is_some_and(|ip| ip == s && s.split('.').count() == 4)
                    && !relays::is_private(s)
            };
            public4(&r.helo)
                && public4(&r.ip)
                && r.helo != r.ip
                && r.helo
                    .rfind('.')
                    .is_some_and(|k| !r.ip.starts_with(&r.helo[..=k]))
        }),
        "multipart_alternative_difference" => {
            let (Ok(min), Ok(max)) = (arg(0).trim().parse::<f64>(), arg(1).trim().parse::<f64>())
            else {
                return false;
            };
            (min == 0.0 || facts.madiff > min) && facts.madiff <= max
        }
        // more than `minhtml` distinct HTML words, and more than `ratio`
        // times as many distinct text words
        "multipart_alternative_difference_count" => {
            let (Ok(ratio), Ok(min_html)) =
                (arg(0).trim().parse::<f64>(), arg(1).trim().parse::<f64>())
            else {
                return false;
            };
            let (html, text) = facts.madiff_words;
            #[allow(clippy::cast_precision_loss)]
            let (html, text) = (html as f64, text as f64);
            html > min_html && text / html > ratio
        }
        "html_image_only" => {
            let (Ok(min), Ok(max)) = (arg(0).trim().parse::<i64>(), arg(1).trim().parse::<i64>())
            else {
                return false;
            };
            facts
                .html_parts
                .iter()
                .any(|&(len, img)| img && len > min && len <= max)
        }
        "html_eval" => {
            arg(0) == "length"
                && facts
                    .html_parts
                    .iter()
                    .any(|&(len, _)| compare(len, arg(1)))
        }
        "html_range" if arg(0) == "closed_extra_ratio" => {
            range_bounds(arg(1), arg(2), f64::INFINITY).is_some_and(|(min, max)| {
                facts.html_closed_extra.iter().any(|&v| v > min && v <= max)
            })
        }
        "html_range" if arg(0) == "length" => {
            let (Ok(min), Ok(max)) = (arg(1).trim().parse::<i64>(), arg(2).trim().parse::<i64>())
            else {
                return false;
            };
            facts
                .html_parts
                .iter()
                .any(|&(len, _)| len > min && len <= max)
        }
        "html_range" if arg(0) == "max_size" => range_bounds(arg(1), arg(2), i64::MAX)
            .is_some_and(|(min, max)| facts.html_max_size.iter().any(|&v| v > min && v <= max)),
        "html_image_ratio" => {
            let (Ok(min), Ok(max)) = (arg(0).trim().parse::<f64>(), arg(1).trim().parse::<f64>())
            else {
                return false;
            };
            facts.html_images.iter().any(|&(text, area)| {
                area > 0 && {
                    let ratio = text as f64 / area as f64;
                    ratio > min && ratio <= max
                }
            })
        }
        "html_text_match" => {
            let list = match arg(0) {
                "comment" => &facts.html_comments,
                "anchor" => &facts.html_anchors,
                "title" => &facts.html_titles,
                _ => return false,
            };
            let Ok(Some(re)) = cfg.regex(name, args) else {
                return false;
            };
            list.iter().any(|t| re.is_match(t))
        }
        "similar_recipients" => {
            let (similar, _) = recipients(message);
            let bound = |s: &str| s.trim().parse::<f64>().ok();
            bound(arg(0)).is_none_or(|m| similar >= m) && bound(arg(1)).is_none_or(|m| similar < m)
        }
        "sorted_recipients" => recipients(message).1,
        "check_illegal_chars" => illegal_chars(facts, arg(0), arg(1), arg(2)),
        "check_for_no_rdns_dotcom_helo" => no_rdns_dotcom_helo(facts),
        "check_for_forged_yahoo_received_headers" => forged_yahoo(message, facts),
        // only a hotmail.com sender can lack hotmail's Received headers:
        // asked first, it spares the Received regexes on other mail
        "check_for_no_hotmail_received_headers" => {
            from_hotmail(message, facts) && hotmail(message) == Hotmail::Unvouched
        }
        "check_for_forged_hotmail_received_headers" => hotmail(message) == Hotmail::Forged,
        // `ok_locales all` (the default) makes both return false.
        _ => false,
    }
}

/// The regex an eval takes as an argument, as compiled: FreeMail's optional
/// address pattern, and `html_text_match`'s pattern (in `/s` mode).
fn regex_text(function: &str, args: &[String]) -> Option<String> {
    let arg = |i: usize| args.get(i).map_or("", String::as_str);
    let text = match function {
        "check_freemail_from" => arg(0),
        "check_freemail_header" => arg(1),
        "html_text_match" => return Some(format!("(?s){}", arg(1))),
        _ => return None,
    };
    (!text.is_empty()).then(|| text.to_owned())
}

/// All values of a header joined by newlines ('' when absent).
fn header_text(message: &Message, name: &str) -> String {
    message
        .header(name)
        .map(|h| h.value.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn top_ctype_html(message: &Message) -> bool {
    message
        .header_value("content-type")
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"))
}

/// Lower-cased addresses of a header (`EnvelopeFrom` included).
fn header_addrs(message: &Message, facts: &Facts, name: &str) -> Vec<String> {
    if name.eq_ignore_ascii_case("envelopefrom") {
        return facts
            .envfrom
            .iter()
            .map(|a| a.to_ascii_lowercase())
            .collect();
    }
    message
        .header(&name.to_ascii_lowercase())
        .flat_map(|h| h.addrs())
        .map(|a| a.to_ascii_lowercase())
        .collect()
}

/// WLBLEval's `_check_welcomelist`: `addr` (lower-cased) is in list `name`
/// as written or matches one of its globs.
fn in_addr_list(cfg: &Config, name: &str, addr: &str) -> bool {
    cfg.addr_lists
        .get(name)
        .is_some_and(|list| list.contains(&addr.to_ascii_lowercase()))
}

/// WLBLEval's `check_uri_host_listed`: a host of the message's URIs (not
/// `mailto:`) is in list `name`, the most specific entry deciding (the
/// host, then its parent domains; an IP address only as written).
fn uri_host_listed(message: &Message, facts: &Facts, cfg: &Config, name: &str) -> bool {
    let Some(list) = cfg.uri_host_lists.get(name).filter(|l| !l.is_empty()) else {
        return false;
    };
    let hosts = facts.uri_hosts.get_or_init(|| {
        let mut seen: HashSet<String> = HashSet::new();
        let mut hosts = Vec::new();
        for host in facts.uris(message).iter().filter_map(|u| uri_host(u)) {
            if seen.insert(host.clone()) {
                hosts.push(host);
            }
        }
        hosts
    });
    for host in hosts {
        let literal = host.starts_with('[')
            || (host.split('.').count() == 4
                && host
                    .split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())));
        let verdict = if literal {
            list.get(host.trim_start_matches('[').trim_end_matches(']'))
                .copied()
        } else {
            let mut keys: Vec<&str> = Vec::new();
            let mut h = host.as_str();
            loop {
                keys.push(h);
                match h.split_once('.') {
                    Some((_, rest)) => h = rest,
                    None => break,
                }
            }
            // SpamAssassin keeps the last 11 keys of a very long host
            let skip = keys.len().saturating_sub(11);
            keys.into_iter()
                .skip(skip)
                .find_map(|k| list.get(k).copied())
        };
        if verdict == Some(true) {
            return true;
        }
    }
    false
}

/// The lower-case host of a `scheme://[user@]host[:port]/...` URI.
fn uri_host(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    if scheme.is_empty() || scheme.eq_ignore_ascii_case("mailto") {
        return None;
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        &host_port[..host_port.find(']').map_or(host_port.len(), |e| e + 1)]
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// `PerMsgStatus::all_from_addrs`: the first Resent-From address when
/// there is one (bug 672), else the From and envelope-sender headers.
fn from_addrs<'f>(message: &Message, facts: &'f Facts) -> &'f [String] {
    facts
        .from_addrs
        .get_or_init(|| sender_addrs(message, facts))
}

fn sender_addrs(message: &Message, facts: &Facts) -> Vec<String> {
    if let Some(resent) = first_address(message, "resent-from").filter(|a| !a.is_empty()) {
        return vec![resent.to_ascii_lowercase()];
    }
    let mut out = Vec::new();
    for name in [
        "from",
        "envelope-sender",
        "resent-sender",
        "x-envelope-from",
        "envelopefrom",
    ] {
        for a in header_addrs(message, facts, name) {
            if !a.is_empty() && !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

fn last_two_labels(addr: &str) -> String {
    let domain = addr.rsplit_once('@').map_or("", |(_, d)| d);
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() > 2 && !labels[..labels.len() - 2].join(".").is_empty() {
        labels[labels.len() - 2..].join(".")
    } else {
        domain.to_owned()
    }
}

/// HeaderEval's `check_for_forged_gmail_received_headers`: From is a
/// gmail.com address, but neither an X-Received nor a Received line shows
/// Google's own relays, and X-Gm-Message-State and X-Google-Smtp-Source
/// are not both at least 60 characters long.
fn forged_gmail(message: &Message) -> bool {
    static GOOGLE: std::sync::LazyLock<Option<(regex::Regex, regex::Regex, regex::Regex)>> =
        std::sync::LazyLock::new(|| {
            Some((
                regex::Regex::new(r"by 10\.\S+ with SMTP id \S+").ok()?,
                regex::Regex::new(r"by 2002:a\d\d:\w+:\S+ with SMTP id \S+").ok()?,
                regex::Regex::new(r"by smtp\.googlemail\.com with ESMTPSA id \S+").ok()?,
            ))
        });
    let from = first_address(message, "from").unwrap_or_default();
    let gmail = from.len() >= 9 && {
        let tail = &from.as_bytes()[from.len() - 9..];
        tail.eq_ignore_ascii_case(b"gmail.com")
            && from.as_bytes()[..from.len() - 9]
                .last()
                .is_none_or(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
    };
    let Some((ten, v6, esmtpsa)) = GOOGLE.as_ref() else {
        return false;
    };
    if !gmail {
        return false;
    }
    let xreceived = header_text(message, "x-received");
    if ten.is_match(&xreceived) || v6.is_match(&xreceived) {
        return false;
    }
    if esmtpsa.is_match(&header_text(message, "received")) {
        return false;
    }
    let long = |name: &str| header_text(message, name).chars().count() >= 60;
    !(long("x-gm-message-state") && long("x-google-smtp-source"))
}

/// The first address of the first `name` header field (`Name:addr` in
/// SpamAssassin's scalar context).
fn first_address(message: &Message, name: &str) -> Option<String> {
    message
        .header(name)
        .next()
        .and_then(|h| h.addrs().into_iter().next())
}

/// HeaderEval's `check_equal_from_domains`.
fn equal_from_domains(message: &Message, facts: &Facts) -> bool {
    let from = first_address(message, "from").unwrap_or_default();
    let env = facts.envfrom.clone().unwrap_or_default();
    let (a, b) = (last_two_labels(&from), last_two_labels(&env));
    !a.is_empty() && !b.is_empty() && !a.eq_ignore_ascii_case(&b)
}

/// Whether `check_freemail_replyto` can reach its body part for this
/// message: a free-mail From or Reply-To, and no bulk envelope sender.
/// The scanner looks for body addresses only then.
#[must_use]
pub fn wants_body_emails(message: &Message, facts: &Facts, cfg: &Config) -> bool {
    if bulk_envelope_sender(facts) {
        return false;
    }
    ["from", "reply-to"].iter().any(|h| {
        header_addrs(message, facts, h)
            .iter()
            .any(|a| cfg.is_freemail(a))
    })
}

/// FreeMail's `check_freemail_replyto(what)`: From and Reply-To are
/// different free-mail addresses; else (`what` = `replyto`: a free-mail
/// Reply-To; `reply`: that, or no Reply-To and a free-mail From) a
/// free-mail address in the body differs from the one to reply to. Skipped
/// for a bulk-looking envelope sender, and (the body part) for a body with
/// five or more addresses or three or more free-mail ones.
fn freemail_replyto(message: &Message, facts: &Facts, cfg: &Config, what: Option<&str>) -> bool {
    let what = what.unwrap_or("replyto");
    if what != "replyto" && what != "reply" {
        return false;
    }
    if bulk_envelope_sender(facts) {
        return false;
    }
    let from = header_addrs(message, facts, "from");
    let reply = header_addrs(message, facts, "reply-to");
    let from_fm = from.iter().any(|a| cfg.is_freemail(a));
    let reply_fm = reply.iter().any(|a| cfg.is_freemail(a));
    let not_in = !from.iter().any(|f| reply.contains(f));
    if from_fm && reply_fm && not_in {
        return true;
    }
    if what == "replyto" && !reply_fm {
        return false;
    }
    if what == "reply" && (!reply.is_empty() && !reply_fm || !from_fm) {
        return false;
    }
    let (mut all, mut free) = (0, 0);
    let mut body = Vec::new();
    for email in &facts.body_emails {
        all += 1;
        if all == 5 {
            return false;
        }
        if cfg.is_freemail(email) {
            free += 1;
            if free == 3 {
                return false;
            }
            body.push(email);
        }
    }
    let to = if what == "replyto" || reply_fm {
        &reply
    } else {
        &from
    };
    body.iter().any(|b| to.iter().any(|r| *b != r))
}

/// Whether the envelope sender looks like a bounce, list or no-reply robot
/// (FreeMail's `$skip_replyto_envfrom`).
fn bulk_envelope_sender(facts: &Facts) -> bool {
    facts
        .envfrom
        .as_deref()
        .is_some_and(|e| BULK_ENVFROM.as_ref().is_some_and(|re| re.is_match(e)))
}

/// FreeMail's `$skip_replyto_envfrom`: envelope senders of bounces, lists
/// and no-reply robots.
static BULK_ENVFROM: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
    regex::Regex::new(
        r"(?i)(?:^(?:post|host|domain)master|^double-bounce|^(?:sentto|owner|return|(?:gr)?bounced?)-.+|-(?:request|bounces?|admin|owner)|\b(?:do[._-t]?)?no[._-t]?repl(?:y|ies)|.+=.+)@",
    )
    .ok()
});

/// HeaderEval's `_check_recipients`: (`tocc_similar`, `tocc_sorted`).
fn recipients(message: &Message) -> (f64, bool) {
    let mut inputs: Vec<String> = Vec::new();
    for names in [&["to", "cc"][..], &["bcc"][..]] {
        for n in names {
            for h in message.header(n) {
                inputs.extend(h.addrs());
            }
        }
        if inputs.len() >= 5 {
            break;
        }
    }
    let mut address: Vec<String> = Vec::new();
    let mut previous = String::new();
    for cur in inputs {
        if cur.is_empty() {
            break;
        }
        if !cur.eq_ignore_ascii_case(&previous) {
            previous.clone_from(&cur);
            address.push(cur);
        }
        if address.len() == 256 {
            break;
        }
    }
    let mut sorted_copy = address.clone();
    sorted_copy.sort();
    let sorted = address.len() >= 7 && sorted_copy == address;
    if address.len() < 5 {
        return (0.0, sorted);
    }
    let prefix = |s: &str| s.chars().take(2).collect::<String>();
    let user: Vec<String> = address.iter().map(|a| prefix(a)).collect();
    let fqhn: Vec<&str> = address
        .iter()
        .map(|a| a.split_once('@').map_or("", |(_, h)| h))
        .collect();
    let host: Vec<String> = fqhn.iter().map(|h| prefix(h)).collect();
    let (mut hits, mut combos) = (0u32, 0u32);
    for i in 0..address.len() {
        for j in i + 1..address.len() {
            if user[i] == user[j] {
                hits += 1;
            }
            if host[i] == host[j] && fqhn[i] != fqhn[j] {
                hits += 1;
            }
            combos += 1;
        }
    }
    (f64::from(hits) / f64::from(combos.max(1)), sorted)
}

/// HeaderEval's `subject_is_all_caps`.
fn subject_is_all_caps(message: &Message) -> bool {
    let subject = header_text(message, "subject");
    let mut s = subject.trim();
    loop {
        let lower = s.to_ascii_lowercase();
        let mut stripped = false;
        for p in [
            "re", "fwd", "fw", "aw", "antwort", "wg", "sv", "vb", "vs", "vl",
        ] {
            if lower.starts_with(p) && lower[p.len()..].starts_with(':') {
                s = s[p.len() + 1..].trim_start();
                stripped = true;
                break;
            }
        }
        if !stripped {
            break;
        }
    }
    if !s.contains(char::is_whitespace) || s.len() < 10 {
        return false;
    }
    let raw = message
        .header("subject")
        .map(|h| h.raw.to_ascii_lowercase())
        .collect::<String>();
    for cs in [
        "=?iso-2022-jp?",
        "=?euc-kr?",
        "=?gb2312?",
        "=?big5?",
        "=?koi8-r?",
        "=?windows-1251?",
        "=?shift_jis?",
        "=?euc-jp?",
        "=?ks_c_5601-1987?",
        "=?utf-8?",
    ] {
        if raw.contains(cs) {
            return false;
        }
    }
    let letters: String = s.chars().filter(char::is_ascii_alphabetic).collect();
    !letters.is_empty() && letters == letters.to_ascii_uppercase()
}

/// HeaderEval's `check_outlook_message_id`.
fn outlook_message_id(message: &Message) -> bool {
    let id = ["message-id", "resent-message-id", "x-message-id"]
        .iter()
        .find_map(|n| message.header(n).next().map(|h| h.value.trim().to_owned()))
        .unwrap_or_default();
    let b = id.as_bytes();
    let hex = |r: std::ops::Range<usize>| {
        b.get(r.clone()).is_some_and(|s| {
            s.iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        })
    };
    if !(b.first() == Some(&b'<')
        && hex(1..13)
        && b.get(13) == Some(&b'$')
        && hex(14..22)
        && b.get(22) == Some(&b'$')
        && hex(23..31)
        && b.get(31) == Some(&b'@'))
    {
        return false;
    }
    let Ok(token) = i64::from_str_radix(&id[5..13], 16) else {
        return false;
    };
    let expected = |t: i64| {
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let e = (t as f64 * 0.002_328_306_436_538_7 + 27_111_902.832_984_9) as i64;
        e
    };
    let date = message
        .header("date")
        .next()
        .and_then(|h| relays::parse_date(&h.value))
        .unwrap_or(0);
    if (token - expected(date)).abs() < 250 {
        return false;
    }
    // The last Received header's date.
    let rcvd = message
        .header("received")
        .last()
        .and_then(|h| {
            h.value
                .rsplit_once(';')
                .and_then(|(_, d)| relays::parse_date(d))
        })
        .unwrap_or(0);
    (token - expected(rcvd)).abs() >= 250
}

/// RelayEval's `_check_received_helos` (`no_rdns_dotcom_helo`): the last
/// public untrusted relay decides.
fn no_rdns_dotcom_helo(facts: &Facts) -> bool {
    let mut flag = false;
    for r in facts.relays.untrusted.iter().filter(|r| !r.private) {
        let helo = r.helo.to_ascii_lowercase();
        flag = r.no_reverse_dns
            && [
                "lycos.com",
                "lycos.co.uk",
                "hotmail.com",
                "localhost.com",
                "excite.com",
                "caramail.com",
                "cs.com",
                "aol.com",
                "msn.com",
                "yahoo.com",
                "drizzle.com",
            ]
            .iter()
            .any(|d| helo == *d || helo.ends_with(&format!(".{d}")));
    }
    flag
}

/// MIMEEval's `check_for_uppercase` measure: the per cent of upper-case
/// letters among letters and digits over the body elements (`body`, one per
/// line: the Subject, then the paragraphs) that hold two words, skipping
/// lines that look like base64 and ISO-2022-JP escapes; 0 for less than 200
/// bytes of such text, and for messages in a charset whose text is often
/// all capitals to this test (Cyrillic, Japanese, Chinese, ...).
pub fn uppercase_percent(message: &Message, body: &str) -> f64 {
    use std::sync::LazyLock;
    static FP_CHARSET: LazyLock<Option<regex::Regex>> = LazyLock::new(|| {
        regex::Regex::new(
            r"(?i)^[-_a-z0-9]*(?:koi|jp|jis|euc|gb|big5|isoir|cp1251|windows-1251|georgianps|pt154|tis)[-_a-z0-9]*$",
        )
        .ok()
    });
    static TWO_WORDS: LazyLock<Option<regex::Regex>> =
        LazyLock::new(|| regex::Regex::new(r"\S\s+\S").ok());
    static BASE64: LazyLock<Option<regex::Regex>> =
        LazyLock::new(|| regex::Regex::new(r"^(?:[A-Za-z0-9+/=]{60,76} ){2}").ok());
    // the top level's charset (`parts[0]`) and every part's
    let fp = message
        .parts
        .iter()
        .filter_map(|p| p.charset.as_ref())
        .any(|c| FP_CHARSET.as_ref().is_some_and(|r| r.is_match(c)));
    let (Some(two_words), Some(base64)) = (TWO_WORDS.as_ref(), BASE64.as_ref()) else {
        return 0.0;
    };
    if fp {
        return 0.0;
    }
    let (mut len, mut lower, mut upper) = (0usize, 0usize, 0usize);
    for line in body.lines() {
        if !two_words.is_match(line) || base64.is_match(line) {
            continue;
        }
        let line = strip_jis_escapes(line);
        len += line.len();
        lower += line
            .bytes()
            .filter(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            .count();
        upper += line.bytes().filter(u8::is_ascii_uppercase).count();
    }
    if len < 200 || upper + lower == 0 {
        return 0.0;
    }
    upper as f64 * 100.0 / (upper + lower) as f64
}

/// A line without its ISO-2022-JP runs (`ESC $ B` … `ESC ( B`, greedy as
/// Perl's `/\x1b\$B.*\x1b\(B/`).
fn strip_jis_escapes(line: &str) -> std::borrow::Cow<'_, str> {
    match (line.find("\x1b$B"), line.rfind("\x1b(B")) {
        (Some(a), Some(b)) if b > a => format!("{}{}", &line[..a], &line[b + 3..]).into(),
        _ => line.into(),
    }
}

/// What HeaderEval's hotmail check finds in the Received headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hotmail {
    /// A Received line is Hotmail's own (or no Received lines to judge).
    Fine,
    /// A relay HELO'd as hotmail.com without being Hotmail
    /// (`FORGED_HOTMAIL_RCVD`).
    Forged,
    /// No Received line is Hotmail's: `FORGED_HOTMAIL_RCVD2` when the
    /// sender is at hotmail.com ([`from_hotmail`]).
    Unvouched,
}

/// The first From address ends in `\bhotmail\.com`.
fn from_hotmail(message: &Message, facts: &Facts) -> bool {
    header_addrs(message, facts, "from")
        .first()
        .is_some_and(|a| {
            a.ends_with("hotmail.com") && {
                // a word boundary before `hotmail`
                let head = &a[..a.len() - "hotmail.com".len()];
                head.chars()
                    .last()
                    .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
            }
        })
}

/// HeaderEval's `_check_for_forged_hotmail_received_headers`, with a
/// simpler MSN Groups exception (a Received line from groups.msn.com, not
/// `check_for_msn_groups_headers`); `X-Originating-IP` counts when it holds
/// a dotted IPv4 address or an IPv6 one. Whether the sender is at
/// hotmail.com is [`from_hotmail`]'s to say.
fn hotmail(message: &Message) -> Hotmail {
    use std::sync::LazyLock;
    static GENUINE: LazyLock<Vec<(regex::Regex, bool)>> = LazyLock::new(|| {
        const IP: &str =
            r"(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7})";
        [
            (r"from (?:\S*\.)?hotmail.com \(\S+\.hotmail(?:\.msn)?\.com[ )]".to_owned(), true),
            (r"from \S*\.outbound\.protection\.outlook\.com \(\S+\.outbound\.protection\.outlook\.com[ )]".to_owned(), false),
            (format!(r"from \S*\.(?:eur|nam)prd\d+\.prod\.outlook\.com \({IP}\)"), false),
            (format!(r"from \S*\.hotmail.com \(\[{IP}\][ ):]"), true),
            (r"from \S+ by \S+\.hotmail(?:\.msn)?\.com with HTTP;".to_owned(), true),
            (r"from \[66\.218.\S+\] by \S+\.yahoo\.com".to_owned(), true),
        ]
        .into_iter()
        .filter_map(|(re, needs_ip)| regex::Regex::new(&re).ok().map(|r| (r, needs_ip)))
        .collect()
    });
    static HELO: LazyLock<Option<regex::Regex>> =
        LazyLock::new(|| regex::Regex::new(r"(?:from |HELO |helo=)\S*hotmail\.com\b").ok());
    static IPV: LazyLock<Option<regex::Regex>> = LazyLock::new(|| {
        regex::Regex::new(
            r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b|[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{0,4}){2,7}",
        )
        .ok()
    });
    if received_remover(message) {
        return Hotmail::Fine;
    }
    let rcvd = header_text(message, "received")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if rcvd.contains("from mail pickup service by hotmail.com with Microsoft SMTPSVC;")
        || (rcvd.contains("from groups.msn.com (") && rcvd.contains(".msn.com "))
    {
        return Hotmail::Fine;
    }
    let ip = message
        .header_value("x-originating-ip")
        .is_some_and(|v| IPV.as_ref().is_some_and(|r| r.is_match(v)));
    let orig = message
        .header_value("x-originatororg")
        .is_some_and(|v| v.contains("hotmail.com") || v.contains("msonline-outlook"));
    if GENUINE
        .iter()
        .any(|(re, needs_ip)| (if *needs_ip { ip } else { orig }) && re.is_match(&rcvd))
    {
        return Hotmail::Fine;
    }
    if HELO.as_ref().is_some_and(|r| r.is_match(&rcvd)) {
        return Hotmail::Forged;
    }
    Hotmail::Unvouched
}

/// HeaderEval's `gated_through_received_hdr_remover`: the message came
/// through something that strips Received lines (an ezmlm list, MSN
/// Groups), or it has none, so the forged-relay checks have nothing to
/// judge.
fn received_remover(message: &Message) -> bool {
    use std::sync::LazyLock;
    static EZMLM: LazyLock<Option<[regex::Regex; 3]>> = LazyLock::new(|| {
        Some([
            regex::Regex::new(r"(?m)^contact \S+@\S+; run by ezmlm$").ok()?,
            regex::Regex::new(r"(?m)^mailing list \S+@\S+").ok()?,
            regex::Regex::new(r"qmail \d+ invoked (?:from network|by .{3,20})\); \d+ ... \d+")
                .ok()?,
        ])
    });
    let rcvd = header_text(message, "received");
    if let Some([list, dlto, qmail]) = EZMLM.as_ref() {
        if message.header("mailing-list").next().is_some()
            && list.is_match(&header_text(message, "mailing-list"))
            && dlto.is_match(&header_text(message, "delivered-to"))
            && qmail.is_match(&rcvd)
        {
            return true;
        }
    }
    message.header("received").next().is_none()
        || rcvd.contains("from groups.msn.com (") && {
            let at = rcvd.find("from groups.msn.com (").unwrap_or(0);
            rcvd[at + "from groups.msn.com (".len()..]
                .split(char::is_whitespace)
                .next()
                .is_some_and(|host| host.len() > ".msn.com".len() && host.ends_with(".msn.com"))
        }
}

/// HeaderEval's `check_for_forged_yahoo_received_headers`: From is a
/// yahoo.com address but no relay or Received line is Yahoo's own.
fn forged_yahoo(message: &Message, facts: &Facts) -> bool {
    use std::sync::LazyLock;
    static GENUINE: LazyLock<Vec<regex::Regex>> = LazyLock::new(|| {
        const IP: &str =
            r"(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7})";
        [
            r"by web\S+\.mail\S*\.yahoo\.com via HTTP".to_owned(),
            r"by sonic\S+\.consmr\.mail\S*\.yahoo\.com with HTTP".to_owned(),
            r"by smtp\S+\.yahoo\.com with SMTP".to_owned(),
            format!(r"from \[{IP}\] by \S+\.(?:groups|scd|dcn)\.yahoo\.com with NNFMP"),
            r"by \w+\.\w+\.yahoo\.com \(\d+\.\d+\.\d+/\d+\.\d+\.\d+\)(?: with ESMTP)? id \w+"
                .to_owned(),
        ]
        .iter()
        .filter_map(|re| regex::Regex::new(re).ok())
        .collect()
    });
    static BULK: LazyLock<Option<regex::Regex>> =
        LazyLock::new(|| regex::Regex::new(r"\bmailer\d+\.bulk\.scd\.yahoo\.com\b").ok());
    let from = first_address(message, "from").unwrap_or_default();
    let lower = from.to_ascii_lowercase();
    // `\byahoo\.com$`
    let yahoo = lower.strip_suffix("yahoo.com").is_some_and(|head| {
        head.chars()
            .last()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
    });
    if !yahoo || received_remover(message) {
        return false;
    }
    let mut rcvd = header_text(message, "received");
    if !header_text(message, "resent-from").is_empty()
        && !header_text(message, "resent-to").is_empty()
    {
        let x = header_text(message, "x-received");
        if !x.is_empty() {
            rcvd = x;
        }
    }
    let rcvd = rcvd.split_whitespace().collect::<Vec<_>>().join(" ");
    let yahoo_rdns = |s: &str, first_only: bool| -> bool {
        let scope = if first_only {
            s.split(']').next().unwrap_or("")
        } else {
            s
        };
        scope.split(' ').any(|w| {
            w.strip_prefix("rdns=")
                .is_some_and(|d| d.len() > ".yahoo.com".len() && d.ends_with(".yahoo.com"))
        })
    };
    if yahoo_rdns(&facts.trusted_str, false) || yahoo_rdns(&facts.untrusted_str, true) {
        return false;
    }
    if GENUINE.iter().any(|re| re.is_match(&rcvd)) {
        return false;
    }
    !(BULK.as_ref().is_some_and(|re| re.is_match(&rcvd)) && lower.ends_with("@reply.yahoo.com"))
}

/// The header block of `raw`: (lower-case name, value with folding
/// newlines removed) per field, at most 1000 fields.
fn raw_headers(raw: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || out.len() > 1000 {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(last) = out.last_mut() {
                last.1.extend_from_slice(line);
            }
            continue;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon])
            .trim()
            .to_ascii_lowercase();
        let value = line[colon + 1..]
            .strip_prefix(b" ")
            .unwrap_or(&line[colon + 1..]);
        out.push((name, value.to_vec()));
    }
    out
}

/// HeaderEval's `check_illegal_chars` on the raw header bytes.
fn illegal_chars(facts: &Facts, header: &str, ratio: &str, count: &str) -> bool {
    let (Ok(ratio), Ok(count)) = (ratio.trim().parse::<f64>(), count.trim().parse::<usize>())
    else {
        return false;
    };
    let name = header.trim_end_matches(":raw").to_ascii_lowercase();
    let mut text: Vec<u8> = Vec::new();
    for (n, v) in &facts.raw_headers {
        let take = if name == "all" {
            n != "subject" && n != "from"
        } else {
            *n == name
        };
        if take {
            if name == "all" {
                text.extend_from_slice(n.as_bytes());
                text.extend_from_slice(b": ");
            }
            text.extend_from_slice(v);
            text.push(b'\n');
        }
    }
    if !text.iter().any(|b| !b.is_ascii_whitespace()) {
        return false;
    }
    let ctrl = |b: u8| matches!(b, 0..=8 | 0x0b | 0x0c | 0x0e..=0x1f);
    if !text.is_ascii() && std::str::from_utf8(&text).is_ok() && !text.iter().any(|&b| ctrl(b)) {
        return false;
    }
    let mut illegal = text.iter().filter(|&&b| ctrl(b) || b >= 0x7f).count();
    if illegal > 0 && name == "subject" {
        let exempt = text
            .iter()
            .filter(|b| matches!(b, 0xa2 | 0xa3 | 0xae))
            .count();
        if exempt == 1 {
            illegal -= 1;
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let r = illegal as f64 / text.len() as f64;
    r >= ratio && illegal >= count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::mime::{parse, Limits};

    #[test]
    fn an_address_list_answers_as_its_entries_one_by_one() {
        let mut list = AddrList::default();
        for a in ["*@*.top", "boss@example.com", "a?c@x.org", "we(ird@x.org"] {
            list.add(a.to_owned());
        }
        list.seal();
        for (addr, listed) in [
            ("spam@mail.top", true),
            ("spam@top", false),
            ("boss@example.com", true),
            ("boss@example.comx", false),
            ("xboss@example.com", false),
            ("abc@x.org", true),
            ("ac@x.org", false),
            // WLBLEval's pattern reads `(` as `_`; the entry as written
            // still lists its own address
            ("we(ird@x.org", true),
            ("we_ird@x.org", true),
            ("weXird@x.org", false),
        ] {
            let one_by_one = list.exact.contains(addr)
                || list
                    .patterns
                    .iter()
                    .any(|p| regex::Regex::new(p).unwrap().is_match(addr));
            assert_eq!(list.contains(addr), listed, "{addr}");
            assert_eq!(one_by_one, listed, "{addr}");
        }
    }

    fn msg(raw: &str) -> Message {
        parse(raw.as_bytes(), &Limits::default())
    }

    #[test]
    fn glob_matches_within_labels() {
        assert!(glob("aol", "aol"));
        assert!(glob("co*", "com"));
        assert!(glob("*", "anything"));
        assert!(!glob("co*", "net"));
    }

    #[test]
    fn shifted_date_and_outlook_id() {
        let m = msg("Received: from a (b [203.0.113.1]) by c with SMTP id 1; Mon, 1 Jan 2024 00:00:00 +0000\nDate: Mon, 1 Jan 2024 08:00:00 +0000\nMessage-ID: <0000deadbeef$00000000$00000000@x>\n\nhi\n");
        let f = Facts::of(&m, b"");
        let cfg = Config::default();
        let a = |x: &str, y: &str| vec![x.to_owned(), y.to_owned()];
        assert!(run("check_for_shifted_date", &a("6", "12"), &m, &f, &cfg));
        assert!(!run("check_for_shifted_date", &a("3", "6"), &m, &f, &cfg));
        assert!(run("check_outlook_message_id", &[], &m, &f, &cfg));
    }
}
