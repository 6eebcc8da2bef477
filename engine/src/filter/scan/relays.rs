//! Received headers as SpamAssassin reads them (`Message::Metadata::Received`):
//! one relay per parseable `Received:` line (IP, reverse DNS, HELO, `by`,
//! authentication), the trust boundary inferred as SpamAssassin does when no
//! `trusted_networks` is configured (a relay is trusted while its IP is
//! private or the hop was authenticated), and the `X-Spam-Relays-*`
//! pseudo-headers rules match. Also the RFC 822 date parser the date evals
//! use. No clock, no DNS: everything comes from the header text.
//!
//! SpamAssassin recognises dozens of MTA formats one by one; this parser reads
//! the common shapes generically (`from HELO (rDNS [IP])` for Sendmail and
//! Postfix, `from rDNS ([IP] helo=HELO)` for Exim, `from rDNS (HELO h) (IP)`
//! for qmail, `from HELO ([IP]) by … SMTPSVC` for Exchange), follows
//! Received.pm where the MTA decides what a form means (whether it looked
//! the IP up, which word is the rDNS), skips the IP-less handovers
//! Received.pm skips, and calls any other line unparseable when it finds no
//! IP or no `by` host, as SpamAssassin does.

/// One relay (hop) read from a `Received:` line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Relay {
    /// The connecting IP.
    pub ip: String,
    /// Its reverse DNS as the receiving MTA recorded it; empty if none.
    pub rdns: String,
    /// The HELO/EHLO name.
    pub helo: String,
    /// The receiving host.
    pub by: String,
    /// The MTA's queue id.
    pub id: String,
    /// The envelope sender, when the line records it.
    pub envfrom: String,
    /// How the client authenticated, if it did.
    pub auth: String,
    /// The IP is private (RFC 1918, loopback, link-local, CGN, ULA).
    pub private: bool,
    /// The MTA looked the IP up and found no reverse DNS (Postfix's
    /// `unknown [ip]`, Sendmail's `([ip])`), as opposed to not recording
    /// it (Exchange, qmail's `unknown`): Received.pm's `mta_looked_up_dns`.
    pub no_reverse_dns: bool,
}

/// What one `Received:` line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// Not a relay handover (local delivery, `by`-only lines): ignored.
    Ignored,
    /// Looks like a handover but lacks an IP or a `by` host.
    Unparseable,
    /// A relay.
    Relay(Relay),
}

/// The relays of a message, split at the inferred trust boundary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relays {
    /// Trusted relays, newest first (also the internal ones).
    pub trusted: Vec<Relay>,
    /// Untrusted relays, newest first (also the external ones).
    pub untrusted: Vec<Relay>,
    /// `Received:` lines that could not be parsed.
    pub unparseable: usize,
    /// Index (from the top, 0-based) of the last `Received:` line in the
    /// trusted (internal) area; -1 when none. `ALL-EXTERNAL` starts after it.
    pub last_internal_index: i64,
}

impl Relays {
    /// Reads the relays from the `Received:` header values, newest first.
    pub fn parse<'a>(received: impl Iterator<Item = &'a str>) -> Self {
        let mut out = Self {
            last_internal_index: -1,
            ..Self::default()
        };
        let mut in_trusted = true;
        for value in received {
            // A POP/IMAP fetch (fetchmail, getmail) restarts the parse while
            // still in the trusted area: what came before was the fetching
            // host's own delivery.
            let lower = value.trim_start().to_ascii_lowercase();
            if lower.starts_with("from ")
                && (value.contains("with POP3") || value.contains("with IMAP"))
            {
                if in_trusted {
                    out.trusted.clear();
                    out.last_internal_index += 1;
                }
                continue;
            }
            let relay = match parse_line(value) {
                Line::Ignored => {
                    out.last_internal_index += i64::from(in_trusted);
                    continue;
                }
                Line::Unparseable => {
                    out.unparseable += 1;
                    out.last_internal_index += i64::from(in_trusted);
                    continue;
                }
                Line::Relay(r) => r,
            };
            if in_trusted && !relay.private && relay.auth.is_empty() {
                in_trusted = false;
            }
            if in_trusted {
                out.last_internal_index += 1;
                out.trusted.push(relay);
            } else {
                out.untrusted.push(relay);
            }
        }
        out
    }

    /// `X-Spam-Relays-Trusted` (and `-Internal`).
    #[must_use]
    pub fn trusted_str(&self) -> String {
        relays_str(&self.trusted, true)
    }

    /// `X-Spam-Relays-Untrusted` (and `-External`).
    #[must_use]
    pub fn untrusted_str(&self) -> String {
        relays_str(&self.untrusted, false)
    }
}

fn relays_str(relays: &[Relay], internal: bool) -> String {
    let mut out = String::new();
    for r in relays {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format!(
            "[ ip={} rdns={} helo={} by={} ident= envfrom={} intl={} id={} auth={} msa=0 ]",
            r.ip,
            r.rdns,
            r.helo,
            r.by,
            r.envfrom,
            u8::from(internal),
            r.id,
            r.auth
        ));
    }
    out
}

/// Parses one `Received:` value (unfolded or not).
#[must_use]
pub fn parse_line(value: &str) -> Line {
    let mut s: String = value.split_whitespace().collect::<Vec<_>>().join(" ");
    while s.ends_with(';') || s.ends_with(' ') {
        s.pop();
    }
    let lower = s.to_ascii_lowercase();
    if !(lower.starts_with("from ") || lower.starts_with("(from ")) {
        return Line::Ignored;
    }
    if lower.contains(" with local for ") {
        return Line::Ignored;
    }
    // `from host by host ;` without any detail: ignored unless the host is
    // an IP literal.
    if let Some(rest) = lower.strip_prefix("from ") {
        let mut words = rest.split(' ');
        if let (Some(a), Some("by"), Some(c)) = (words.next(), words.next(), words.next()) {
            let next = words.next();
            let ends = c.ends_with(';') || next.is_none_or(|n| n.starts_with(';'));
            if ends && !(a.starts_with('[') && a.ends_with(']')) {
                return Line::Ignored;
            }
        }
    }
    // `(from user@localhost) by host`: a local submission.
    if let Some(rest) = lower.strip_prefix("(from ") {
        if rest
            .split(' ')
            .next()
            .is_some_and(|w| w.contains('@') && w.ends_with(')'))
        {
            return Line::Ignored;
        }
    }
    // Drop the date after the last `;`.
    let body = match s.rfind(';') {
        Some(i) => s[..i].trim_end().to_owned(),
        None => s.clone(),
    };
    let body = body.replace(")by ", ") by ");
    let lbody = body.to_ascii_lowercase();
    let mut relay = Relay::default();
    if let Some(i) = body.find(" id ") {
        let id: String = body[i + 4..]
            .trim_start_matches('<')
            .chars()
            .take_while(|c| !c.is_whitespace() && !matches!(c, '<' | '>' | ';'))
            .collect();
        if id.len() >= 3 {
            relay.id = id;
        }
    }
    let helo_char = |c: char| c.is_ascii_alphanumeric() || "-.^+_&:=?!@%*$\\/".contains(c);
    if let Some(i) = body.find("helo=") {
        relay.helo = body[i + 5..]
            .chars()
            .take_while(|&c| helo_char(c))
            .collect();
    } else if let Some(i) = body.find("HELO ").or_else(|| body.find("EHLO ")) {
        relay.helo = body[i + 5..]
            .chars()
            .take_while(|&c| helo_char(c))
            .collect();
    }
    let by_at = lbody.find(" by ");
    if let Some(i) = by_at {
        // ` by (\S+)`: the whole word, a glued comment included
        // (`mx.example(JetMail`, `(AIMC`), as SpamAssassin reads it
        relay.by = body[i + 4..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        while relay.by.ends_with(';') {
            relay.by.pop();
        }
    }
    relay.auth = auth(&body, &lbody);
    // the whole line: Postfix puts `(envelope-from a@b)` after the date
    if let Some(i) = lower
        .find("envelope-from ")
        .or_else(|| lower.find("envelope-from="))
        .or_else(|| lower.find("envelope-sender "))
        .or_else(|| lower.find("return-path: "))
    {
        let after = &s[i..];
        let start = after.find([' ', '=']).map_or(after.len(), |j| j + 1);
        relay.envfrom = after[start..]
            .chars()
            .take_while(|c| !c.is_whitespace() && !matches!(c, ')' | ';'))
            .collect::<String>()
            .trim_matches(|c| c == '<' || c == '>')
            .to_owned();
    }
    let start = if lbody.starts_with("(from ") { 6 } else { 5 };
    let from_part = match by_at {
        Some(i) if i >= start => &body[start..i],
        _ => &body[start.min(body.len())..],
    };
    let first: String = from_part
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '(')
        .collect();
    let comment = from_part[first.len()..].trim_start();
    // the line after `from `, as SpamAssassin's MTA patterns read it
    let rest = &body[start.min(body.len())..];
    let mut rdns = String::new();
    let mut ip = String::new();
    // qmail's `(HELO h)` names the HELO even when it is empty
    let mut helo_given = false;
    // whether the MTA records a missing reverse DNS as such (Received.pm's
    // `mta_looked_up_dns`); Postfix's `unknown [ip]` always does
    let mut looked_up = false;
    if let Some(inner) = paren(comment) {
        // `(rdns [ip])`, `([ip])`, `([ip] helo=x)`, `(ip)`, `(HELO x)`.
        if let Some(b) = inner.find('[') {
            let after = &inner[b + 1..];
            if let Some(e) = after.find(']') {
                if let Some(lit) = ip_literal(&after[..e]) {
                    ip = lit;
                    let before = inner[..b].trim();
                    if before.is_empty() {
                        // `from X ([ip])`: what SpamAssassin makes of it
                        // depends on the MTA (see `bare_bracket_ip`).
                        match bare_bracket_ip(rest, inner.contains("helo=")) {
                            BareIp::RdnsFirst => rdns = first.clone(),
                            BareIp::NoRdns => looked_up = true,
                            BareIp::NotLookedUp => {}
                        }
                    } else {
                        let word = before.rsplit(' ').next().unwrap_or(before);
                        rdns = word.rsplit('@').next().unwrap_or(word).to_owned();
                        // Sendmail and Postfix write `(rdns [ip])` after
                        // their own lookup (`unknown` when it found none)
                        looked_up = true;
                    }
                }
            }
        } else if let Some(lit) = qmail_ip(inner) {
            // qmail without HELO: `from rdns ([ident@]ip)`.
            ip = lit;
            rdns = first.clone();
            // qmail's own form records `unknown` without a lookup of its
            // own; the other forms looked it up
            looked_up = !(qmail_form(rest) && first.eq_ignore_ascii_case("unknown"));
        } else if inner.starts_with("HELO ") || inner.starts_with("EHLO ") {
            // qmail: `from rdns (HELO helo) (ip)`.
            let after = comment[inner.len() + 2..].trim_start();
            if let Some(lit) = paren(after).and_then(qmail_ip) {
                ip = lit;
                rdns = first.clone();
                looked_up = !(qmail_form(rest) && first.eq_ignore_ascii_case("unknown"));
                // `\((?:HELO|EHLO) ([^ ()]*)\)`: as written, even empty
                relay.helo = inner[5..]
                    .chars()
                    .take_while(|&c| c != ' ' && c != '(' && c != ')')
                    .collect();
                helo_given = true;
            }
        }
    }
    if ip.is_empty() {
        // `from [ip] (helo=x)`, `from 1.2.3.4 by`: the HELO is the IP.
        if let Some(lit) = ip_literal(&first) {
            ip = lit;
        }
    }
    if ip.is_empty() {
        // Any bracketed IP before `by`.
        let mut rest = from_part;
        while let Some(b) = rest.find('[') {
            let after = &rest[b + 1..];
            let Some(e) = after.find(']') else { break };
            if let Some(lit) = ip_literal(&after[..e]) {
                ip = lit;
                break;
            }
            rest = &after[e..];
        }
    }
    if relay.helo.is_empty() && !helo_given {
        // SpamAssassin's last guess, `^(\S+)[^-A-Za-z0-9.]`: the whole first
        // word, a comment glued to it included (`1.2.3.4([5.6.7.8])`)
        relay.helo = from_part.split(' ').next().unwrap_or_default().to_owned();
    }
    if ip.is_empty() {
        // No IP anywhere: a local or gateway handover SpamAssassin
        // recognises and skips, else a line it cannot parse.
        return if sa_skips(rest) {
            Line::Ignored
        } else {
            Line::Unparseable
        };
    }
    if relay.by.is_empty() {
        return Line::Unparseable;
    }
    while rdns.ends_with('.') {
        rdns.pop();
    }
    if rdns.eq_ignore_ascii_case("unknown") || rdns.starts_with('[') {
        rdns.clear();
    }
    relay.no_reverse_dns = rdns.is_empty() && looked_up;
    relay.private = is_private(&ip);
    relay.ip = ip;
    relay.rdns = strip_chars(&rdns);
    relay.helo = strip_chars(&relay.helo);
    relay.by = strip_chars(&relay.by);
    Line::Relay(relay)
}

/// Received.pm's handovers without an IP that it skips rather than call
/// unparseable (`rest`: the line after `from ` or `(from `, date cut):
/// local submissions, content scanners, list managers, webmail and API
/// gateways, and any `X by Y with|via|for|(…` line.
fn sa_skips(rest: &str) -> bool {
    use std::sync::LazyLock;
    const LOCALHOST: &str = r"(?:localhost(?:\.localdomain)?|127\.0\.0\.1|::1|IPv6:::1)";
    static SKIPS: LazyLock<Vec<regex::Regex>> = LazyLock::new(|| {
        [
            r"^mail pickup service by \S+ with Microsoft SMTPSVC$".to_owned(),
            r"^\S+ by \S+ with BSMTP".to_owned(),
            r"^\S+ \(\S+\) by \S+ \(Content Technologies ".to_owned(),
            format!(r"^\S+ \([^\s@]+@{LOCALHOST}\) by \S+ \("),
            r"^\S+ \S+ by \S+ with local-e?smtp ".to_owned(),
            r"^127\.0\.0\.1 \(AVG SMTP \S+ \[\S+\]\)".to_owned(),
            r"^\S+@\S+ by \S+ ".to_owned(),
            r"^Unknown/Local \(".to_owned(),
            format!(r"^{LOCALHOST} \((?:\S+@)?{LOCALHOST}[)\[]"),
            format!(r"^\S+ \((?:\S+@)?{LOCALHOST}\) "),
            format!(r"^\S+ \(\S+@\S+ \[{LOCALHOST}\]\) "),
            r"^\(AUTH: \S+\) by \S+ with ".to_owned(),
            r"^localhost \(localhost \[\[UNIX: localhost\]\]\) by ".to_owned(),
            r"^\S+\.amazon\.com by \S+\.amazon\.com with ESMTP \(peer crosscheck: ".to_owned(),
            r"^[^.]+ by \S+ with Novell_GroupWise".to_owned(),
            r"^no\.name\.available by \S+ via smtpd \(for ".to_owned(),
            r"^\S+ by \S+ \(.{0,100}\) with qmail-scanner".to_owned(),
            r"^\S+ by \S+ with local".to_owned(),
            r"^\S+ \(\[unix socket\]\) by \S+ \(Cyrus v[0-9]*?\.[0-9]*?\.[0-9]*?\) with LMTPA"
                .to_owned(),
            r"^\S+ by \S+ (?:with|via|for|\()".to_owned(),
            r"^\S+ (?:(?:with|via|for) \S+|\(unverified\)) by\b".to_owned(),
            r"^\S+ \(unknown\) by \S+ \(SG\) with \b".to_owned(),
            r"^\S+ \(\S+ \[local\]\) by \S+ \(OpenSMTPD\) with \b".to_owned(),
            r"\(LSMTP for".to_owned(),
            format!(r"^\(\[{LOCALHOST}\]\) with MailEnable "),
            r"^facebook\.com \([^)]+\) by facebook\.com with Thrift id \S+$".to_owned(),
            r"^\S+ named \S+ by gmailapi\.google\.com with HTTPREST$".to_owned(),
            r"^\S+ id \S+$".to_owned(),
            r"^\[<.*? \(Jetsend".to_owned(),
            // `(from user@localhost) by host`, and Juno's queue
            r"^\S+@localhost\) by \S+ ".to_owned(),
            r"^[^\s@]+@[^)]+\) by \S+\(jqueuemail\) id [^\s;]+".to_owned(),
        ]
        .iter()
        .filter_map(|re| regex::Regex::new(re).ok())
        .collect()
    });
    (rest.contains("Exim") && has_word(rest, "with local"))
        || SKIPS.iter().any(|re| re.is_match(rest))
}

/// The IP of qmail's `(ip)`, `(ident@ip)` or `(ident@ip with login)`.
fn qmail_ip(inner: &str) -> Option<String> {
    let word = inner.split(' ').next()?;
    ip_literal(word.rsplit('@').next()?)
}

/// What SpamAssassin's MTA patterns make of `from X ([ip])`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BareIp {
    /// `X` is the reverse DNS (Exim, qmail).
    RdnsFirst,
    /// The MTA looked the IP up and found no reverse DNS (Sendmail).
    NoRdns,
    /// No reverse DNS recorded, and none looked up (Exchange, XMail,
    /// ecelerity, Lotus Domino, webmail).
    NotLookedUp,
}

/// Received.pm's reading of `from X ([ip]) …` (`rest`: the line after
/// `from `), in its order: Exchange's SMTPSVC and SMTP Server, XMail and
/// ecelerity record no lookup; Exim and qmail put the reverse DNS first;
/// Lotus Domino and webmail handovers record no lookup; and otherwise
/// (Sendmail) an IP in brackets alone means the lookup found nothing.
fn bare_bracket_ip(rest: &str, exim_helo: bool) -> BareIp {
    use std::sync::LazyLock;
    static EXCHANGE: LazyLock<Option<regex::Regex>> = LazyLock::new(|| {
        regex::Regex::new(
            r" with (?:Microsoft SMTP Server|mapi id) (?:\([^)]+\) )?\d+\.\d+\.\d+\.\d+(?:$| )",
        )
        .ok()
    });
    let first = rest.split(' ').next().unwrap_or_default();
    if rest.contains(" SMTPSVC")
        || EXCHANGE.as_ref().is_some_and(|r| r.is_match(rest))
        || rest.contains("[XMail ")
        || rest.contains("(ecelerity")
    {
        return BareIp::NotLookedUp;
    }
    if rest.contains("Exim") || exim_helo {
        return BareIp::RdnsFirst;
    }
    if rest.contains(" (Lotus Domino ") && rest.contains(") by ") && rest.contains(" (Lotus")
        || rest.contains(" via smtpd (for ")
        || (ip_literal(first).is_some() && has_word(rest, "with HTTP"))
    {
        return BareIp::NotLookedUp;
    }
    if qmail_form(rest) {
        return if first.eq_ignore_ascii_case("unknown") {
            BareIp::NotLookedUp
        } else {
            BareIp::RdnsFirst
        };
    }
    BareIp::NoRdns
}

/// `\b{word}\b` in `s`.
fn has_word(s: &str, word: &str) -> bool {
    s.match_indices(word).any(|(i, _)| {
        let before = s[..i].chars().last();
        let after = s[i + word.len()..].chars().next();
        let wordy = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        !wordy(before) && !wordy(after)
    })
}

/// Received.pm's qmail pattern (`rest`: the line after `from `):
/// `X [(HELO h)] ([ident@][ip]) [(envelope-sender <s>)] by H [(...)...]
/// with [... ]SMTP|QMQP`, where the protocol is not followed by ` id `
/// (that is Sendmail).
fn qmail_form(rest: &str) -> bool {
    use std::sync::LazyLock;
    static HEAD: LazyLock<Option<regex::Regex>> = LazyLock::new(|| {
        regex::Regex::new(
            r"^\S+(?: \((?:HELO|EHLO) \S*\))? \((?:\S+@)?\[?(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]*:[0-9A-Fa-f:.]+)\]?\)(?: \(envelope-sender <\S+>\))? by \S+",
        )
        .ok()
    });
    let Some(head) = HEAD.as_ref().and_then(|r| r.find(rest)) else {
        return false;
    };
    let tail = &rest[head.end()..];
    // ` (…)` groups, then ` with `: any ` with ` whose lead-in is empty or
    // starts with ` (` and ends with `)`
    tail.match_indices(" with ").any(|(i, _)| {
        let lead = &tail[..i];
        let ok_lead = lead.is_empty() || (lead.starts_with(" (") && lead.ends_with(')'));
        ok_lead && {
            let proto = &tail[i + " with ".len()..];
            ["SMTP", "QMQP"].iter().any(|p| {
                proto.match_indices(p).any(|(j, _)| {
                    (j == 0 || proto[..j].ends_with(' '))
                        && !proto[j + p.len()..].starts_with(" id ")
                })
            })
        }
    })
}

fn strip_chars(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_whitespace() || "\0#[]()<>|".contains(c) {
                '!'
            } else {
                c
            }
        })
        .collect()
}

/// The text inside a leading `( … )` (nesting counted).
fn paren(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('(')?;
    let mut depth = 1usize;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&rest[..i]);
                }
            }
            _ => {}
        }
    }
    None
}

fn auth(body: &str, lower: &str) -> String {
    if lower.contains(" by ") {
        if let Some(i) = lower.find(" with ") {
            let word: String = body[i + 6..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != ';')
                .collect();
            let w = word.to_ascii_uppercase();
            let ok = matches!(
                w.as_str(),
                "ESMTPA"
                    | "ESMTPSA"
                    | "LMTPA"
                    | "LMTPSA"
                    | "UTF8SMTPA"
                    | "UTF8SMTPSA"
                    | "UTF8LMTPA"
                    | "UTF8LMTPSA"
                    | "ASMTP"
                    | "HTTP"
                    | "HTTPS"
                    | "HTTPU"
            );
            if ok {
                return word;
            }
        }
    }
    if lower.contains("(authenticated sender: ") {
        return "Postfix".to_owned();
    }
    if let Some(by) = lower.find(" by ") {
        let head = &lower[..by];
        if head.contains("authenticated") && (head.contains("])") || head.contains(")]")) {
            return "Sendmail".to_owned();
        }
    }
    String::new()
}

/// `1.2.3.4`, `[1.2.3.4]`, `IPv6:…` or an IPv6 address: the IP text.
#[must_use]
pub fn ip_literal(s: &str) -> Option<String> {
    let s = s.trim_matches(|c| c == '[' || c == ']');
    let s = s.split(':').count().gt(&1).then_some(s).map_or(s, |s| {
        s.strip_prefix("IPv6:")
            .or_else(|| s.strip_prefix("ipv6:"))
            .unwrap_or(s)
    });
    if is_ipv4(s) {
        return Some(s.to_owned());
    }
    let v6 = s.split('%').next().unwrap_or(s);
    if v6.contains(':')
        && v6.len() >= 2
        && v6
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
    {
        // IPv4-mapped addresses are read as IPv4.
        if let Some(tail) = v6.rsplit(':').next() {
            if is_ipv4(tail) && v6.to_ascii_lowercase().contains("ffff:") {
                return Some(tail.to_owned());
            }
        }
        return Some(v6.to_owned());
    }
    None
}

fn is_ipv4(s: &str) -> bool {
    let mut n = 0;
    for part in s.split('.') {
        n += 1;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        if part.parse::<u16>().map_or(true, |v| v > 255) {
            return false;
        }
    }
    n == 4
}

/// SpamAssassin's `IP_PRIVATE`.
#[must_use]
pub fn is_private(ip: &str) -> bool {
    if is_ipv4(ip) {
        let o: Vec<u16> = ip.split('.').filter_map(|p| p.parse().ok()).collect();
        let (a, b) = (
            o.first().copied().unwrap_or(0),
            o.get(1).copied().unwrap_or(0),
        );
        return a == 10
            || a == 127
            || (a == 169 && b == 254)
            || (a == 172 && (16..=31).contains(&b))
            || (a == 192 && b == 168)
            || (a == 100 && (64..=127).contains(&b));
    }
    let l = ip.to_ascii_lowercase();
    l == "::1"
        || l.starts_with("fe8")
        || l.starts_with("fe9")
        || l.starts_with("fea")
        || l.starts_with("feb")
        || l.starts_with("fc")
        || l.starts_with("fd")
}

/// Parses an RFC 822 date as SpamAssassin's `parse_rfc822_date` does (a
/// leading day name, 2-digit years, numeric or named zones; no zone is
/// UTC): seconds since the epoch.
#[must_use]
pub fn parse_date(text: &str) -> Option<i64> {
    let t = text.replace(',', " ");
    let words: Vec<&str> = t.split_whitespace().collect();
    // Find `D Mon YYYY hh:mm[:ss] [zone]`.
    for w in 0..words.len() {
        let Some(day) = words.get(w).and_then(|d| d.parse::<i64>().ok()) else {
            continue;
        };
        let Some(month) = words.get(w + 1).and_then(|m| month(m)) else {
            continue;
        };
        let Some(year_text) = words.get(w + 2) else {
            continue;
        };
        let Some(mut year) = year_text.parse::<i64>().ok() else {
            continue;
        };
        let Some(time) = words.get(w + 3) else {
            continue;
        };
        let hms: Vec<i64> = time.split(':').map_while(|p| p.parse().ok()).collect();
        if hms.len() < 2 || !(1..=31).contains(&day) {
            continue;
        }
        // Util::parse_rfc822_date: two digits below 50 are 20xx, any
        // other length but four counts from 1900 (`101` is 2001)
        if year_text.len() == 2 && year < 50 {
            year += 2000;
        } else if year_text.len() != 4 {
            year += 1900;
        }
        let (h, m, s) = (hms[0], hms[1], hms.get(2).copied().unwrap_or(0));
        if h > 23 || m > 59 || s > 60 {
            return None;
        }
        let zone = words.get(w + 4).map_or(0, |z| zone(z));
        let days = days_from_civil(year, month, day);
        return Some(days * 86400 + h * 3600 + m * 60 + s - zone);
    }
    None
}

fn month(m: &str) -> Option<i64> {
    let m = m.get(..3)?.to_ascii_lowercase();
    let i = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    .iter()
    .position(|x| *x == m)?;
    i64::try_from(i).ok().map(|i| i + 1)
}

/// A zone's offset east of UTC, in seconds.
fn zone(z: &str) -> i64 {
    let b = z.as_bytes();
    if b.len() >= 5 && (b[0] == b'+' || b[0] == b'-') && b[1..5].iter().all(u8::is_ascii_digit) {
        let n: i64 = z[1..5].parse().unwrap_or(0);
        let secs = (n / 100) * 3600 + (n % 100) * 60;
        return if b[0] == b'-' { -secs } else { secs };
    }
    let hours = match z
        .trim_matches(|c| c == '(' || c == ')')
        .to_ascii_uppercase()
        .as_str()
    {
        "EDT" => -4,
        "EST" | "CDT" => -5,
        "CST" | "MDT" => -6,
        "MST" | "PDT" => -7,
        "PST" => -8,
        _ => 0,
    };
    hours * 3600
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(line: &str) -> Relay {
        match parse_line(line) {
            Line::Relay(r) => r,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn postfix_and_sendmail() {
        let r = relay("from mail.example.com (mx.example.com [203.0.113.5]) by mx.local (Postfix) with ESMTP id ABC123; Mon, 1 Jan 2024 00:00:00 +0000");
        assert_eq!(
            (
                r.ip.as_str(),
                r.rdns.as_str(),
                r.helo.as_str(),
                r.by.as_str()
            ),
            (
                "203.0.113.5",
                "mx.example.com",
                "mail.example.com",
                "mx.local"
            )
        );
        let r = relay("from helo.example (unknown [198.51.100.7]) by mx.local (Postfix) with SMTP id X1; Mon, 1 Jan 2024 00:00:00 +0000");
        assert_eq!(r.rdns, "");
        assert!(!r.private);
        let r = relay("from localhost (localhost [127.0.0.1]) by a.b (Postfix) id Q; Mon, 1 Jan 2024 00:00:00 +0000");
        assert!(r.private);
    }

    #[test]
    fn qmail_exim_and_ignored() {
        let r = relay("from unknown (HELO bob.example) (198.51.100.9) by mail.example with SMTP; 1 Jan 2024 00:00:00 -0000");
        assert_eq!(
            (r.ip.as_str(), r.rdns.as_str(), r.helo.as_str()),
            ("198.51.100.9", "", "bob.example")
        );
        let r = relay("from host.example ([198.51.100.10] helo=hello.example) by mx.example with esmtp (Exim 4.0) id 1abc; Mon, 1 Jan 2024 00:00:00 +0000");
        assert_eq!(
            (r.rdns.as_str(), r.helo.as_str()),
            ("host.example", "hello.example")
        );
        assert_eq!(
            parse_line("by mx.example (Postfix, from userid 0) id 1; Mon, 1 Jan 2024"),
            Line::Ignored
        );
        assert_eq!(
            parse_line("from foo.example by bar.example; Mon, 1 Jan 2024"),
            Line::Ignored
        );
        // no IP and no form Received.pm skips
        assert_eq!(
            parse_line("from foo.example (helo) by bar.example with SMTP id 1; Mon"),
            Line::Unparseable
        );
        assert_eq!(
            parse_line("from foo.example ([198.51.100.2]); Mon, 1 Jan 2024"),
            Line::Unparseable
        );
        let r = relay("from foo.example (198.51.100.3) by bar.example with SMTP; 1 Jan 2024");
        assert_eq!(r.rdns, "foo.example");
        assert!(!r.no_reverse_dns);
        assert!(relay("from x (unknown [198.51.100.4]) by y with SMTP id 1; Mon").no_reverse_dns);
        let r = relay("from a.example ([198.51.100.1]) by b.example with ESMTPA id 9; Mon, 1 Jan 2024 00:00:00 +0000");
        assert_eq!(r.auth, "ESMTPA");
    }

    /// Whether the MTA looked the IP up and found no reverse DNS, as
    /// Received.pm decides it per MTA form (NO_RDNS_DOTCOM_HELO and
    /// SPOOFED_FREEMAIL_NO_RDNS read it).
    #[test]
    fn no_reverse_dns_follows_the_mta_form() {
        let no_rdns = |line: &str| relay(line).no_reverse_dns;
        // Sendmail writes the bracketed IP alone when its lookup failed
        assert!(no_rdns("from smtp0532.mail.yahoo.com ([210.83.114.125]) by cluster.example (AIX4.3/8.9.3/8.9.3) with SMTP id QAA130820; Tue, 27 Aug 2002 16:11:45 -0500"));
        assert!(no_rdns(
            "from x (unknown [198.51.100.4]) by y (Postfix) with SMTP id 1; Mon"
        ));
        // Exchange records no lookup; Exim and qmail put the rDNS first
        assert!(!no_rdns("from helo.example ([198.51.100.5]) by ex.example with Microsoft SMTPSVC(6.0.3790.0); Mon"));
        let r = relay(
            "from host.example ([198.51.100.6]) by mx.example with esmtp (Exim 4.0) id 1a; Mon",
        );
        assert_eq!((r.rdns.as_str(), r.no_reverse_dns), ("host.example", false));
        let r = relay(
            "from host.example ([198.51.100.6]) by mx.example with SMTP; 1 Jan 2024 00:00:00 -0000",
        );
        assert_eq!((r.rdns.as_str(), r.no_reverse_dns), ("host.example", false));
        // qmail's `unknown`: it was told nothing and did not look
        assert!(!no_rdns("from unknown (HELO bob.example) (198.51.100.9) by mail.example with SMTP; 1 Jan 2024 00:00:00 -0000"));
        // the same words with a Sendmail-style ` id ` after the protocol
        assert!(no_rdns("from unknown (HELO bob.example) (198.51.100.9) by mail.example with SMTP id 7; 1 Jan 2024 00:00:00 -0000"));
        // an rDNS that is an IP address is kept, as SpamAssassin keeps it
        let r = relay("from smtp0291.mail.yahoo.com (210.83.114.125 [210.83.114.125]) by gw.example with SMTP (Microsoft Exchange Internet Mail Service Version 5.5.2653.13) id QP7CPKKZ; Sat, 24 Aug 2002 02:20:16 +0300");
        assert_eq!(
            (r.rdns.as_str(), r.no_reverse_dns),
            ("210.83.114.125", false)
        );
    }

    /// A line without an IP is unparseable (UNPARSEABLE_RELAY) unless
    /// Received.pm knows it as a handover it skips.
    #[test]
    fn lines_without_an_ip_are_unparseable_unless_known() {
        for line in [
            "from hud.ac.uk by cata.hud.ac.uk id <13167-0@cata.hud.ac.uk>; Tue, 26 Dec 2000 21:47:28 +0000",
            "from msg00.seamail.go.com (Sun Internet Mail Server sims.4.0.2000.05.17.04.13.p6) id <0G1V00703JN1C6@msg00.seamail.go.com>; Tue, 03 Oct 2000 14:57:02 -0700 (PDT)",
            "from mx7.mail.example ([] verified) by mail2006.example (testlerMail 6.1 SMTP 6.1a7) with ESMTP id 60578244 for t@example.com; Mon, 27 Apr 2020 19:45:05 +0300",
            "from r-smtp.example - 203.122.2.197 by dd_it7  with Microsoft SMTPSVC(5.5.1775.675.6); Sat, 24 Aug 2002 09:42:10 +0900",
        ] {
            assert_eq!(parse_line(line), Line::Unparseable, "{line}");
        }
        for line in [
            "from www-data by web.example with local (Exim 4.50) id 1GFbZc; Tue, 22 Aug 2006 21:06:04 +0200",
            "from mail pickup service by hotmail.com with Microsoft SMTPSVC; Mon, 1 Jan 2024 00:00:00 +0000",
            "from DL1GSPMX02 (dl1gspmx02.example.com) by email.example.com (LSMTP for Windows NT v1.1b) with SMTP id <21.000575A0@email.example.com>; Tue, 12 Sep 2006 21:06:43 -0500",
            "from mail.payex.example id <B5b8f11e30004>; Wed, 05 Sep 2018 01:14:43 +0200",
            "from zimbra.example (unverified) by sweep.example (Clearswift SMTPRS 5.1.7) with ESMTP id <T7@x>; Tue, 30 May 2006 15:56:15 +0100",
        ] {
            assert_eq!(parse_line(line), Line::Ignored, "{line}");
        }
    }

    /// qmail's `(ident@ip)` and Yahoo's `(ident@ip with login)`, and a
    /// `by` word with a comment glued to it.
    #[test]
    fn qmail_idents_and_glued_by_words() {
        let r = relay("from p977.as2.example.net (HELO mfrenchw2k) (mfrench42@159.134.179.209 with login) by smtp.mail.vip.sc5.yahoo.com with SMTP; 22 Aug 2002 22:02:25 -0000");
        assert_eq!(
            (r.ip.as_str(), r.rdns.as_str(), r.helo.as_str()),
            ("159.134.179.209", "p977.as2.example.net", "mfrenchw2k")
        );
        let r = relay("from unknown (HELO ) (185.137.84.106) by smtp.example.net with SMTP; 24 May 2016 12:30:11 -0000");
        assert_eq!(
            (r.ip.as_str(), r.helo.as_str(), r.rdns.as_str()),
            ("185.137.84.106", "", "")
        );
        let r = relay("from unagi.example.org (root@205.158.174.211) by lepen.example.com with SMTP; 5 Jun 2002 16:33:23 -0000");
        assert_eq!(
            (r.ip.as_str(), r.rdns.as_str()),
            ("205.158.174.211", "unagi.example.org")
        );
        let r = relay("from smtp0592.mail.yahoo.com([10.1.0.7]) by (AIMC 2.9.5.1) with SMTP id zzzz433d871ef3; Tue, 17 Sep 2002 19:22:32 +0800");
        assert_eq!((r.ip.as_str(), r.by.as_str()), ("10.1.0.7", "!AIMC"));
    }

    /// With no HELO given, SpamAssassin takes the whole first word, a
    /// comment glued to it included, and flags its brackets with `!`: such
    /// a HELO is no IP address (no RCVD_HELO_IP_MISMATCH).
    #[test]
    fn a_comment_glued_to_the_first_word_is_part_of_the_helo() {
        let r = relay("from 68.17.46.205([217.125.101.38]) by freemail.nx.cninfo.net(JetMail 2.5.3.0) with SMTP id zzzza3d8281b2; Fri, 13 Sep 2002 22:33:22 -0000");
        assert_eq!(
            (r.ip.as_str(), r.helo.as_str()),
            ("217.125.101.38", "68.17.46.205!!217.125.101.38!!")
        );
        let r = relay("from 192.0.2.8 ([198.51.100.7]) by mx.example with SMTP id 1; Mon");
        assert_eq!(
            (r.ip.as_str(), r.helo.as_str()),
            ("198.51.100.7", "192.0.2.8")
        );
    }

    #[test]
    fn trust_boundary() {
        let rs = Relays::parse(
            [
                "from a (localhost [127.0.0.1]) by b with SMTP id 1; Mon, 1 Jan 2024 00:00:00 +0000",
                "from c (d.example [203.0.113.1]) by e with SMTP id 2; Mon, 1 Jan 2024 00:00:00 +0000",
                "from f (g [10.0.0.1]) by h with SMTP id 3; Mon, 1 Jan 2024 00:00:00 +0000",
            ]
            .into_iter(),
        );
        assert_eq!((rs.trusted.len(), rs.untrusted.len()), (1, 2));
        let rs = Relays::parse(
            [
                "from a (localhost [127.0.0.1]) by b with SMTP id 1; Mon, 1 Jan 2024 00:00:00 +0000",
                "from pop.example [203.0.113.2] by localhost with POP3 (fetchmail-5.9.0); Mon",
                "from c (d.example [203.0.113.1]) by e with SMTP id 2; Mon, 1 Jan 2024 00:00:00 +0000",
            ]
            .into_iter(),
        );
        assert_eq!((rs.trusted.len(), rs.untrusted.len()), (0, 1));
        assert_eq!(rs.last_internal_index, 1);
        assert!(rs
            .untrusted_str()
            .starts_with("[ ip=203.0.113.1 rdns=d.example helo=c by=e "));
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("Thu, 1 Jan 1970 00:00:00 +0000"), Some(0));
        assert_eq!(parse_date("Thu, 1 Jan 1970 01:00:00 +0100"), Some(0));
        assert_eq!(parse_date("1 Jan 70 00:00 EST"), Some(5 * 3600));
        assert_eq!(
            parse_date("Mon, 29 Feb 2024 12:00:00 GMT"),
            Some(1_709_208_000)
        );
        assert_eq!(parse_date("garbage"), None);
        // SMTP32's three-digit year counts from 1900, as SpamAssassin reads it
        assert_eq!(
            parse_date("Mon,  2 Apr 101 04:20:10 +0000"),
            parse_date("Mon, 2 Apr 2001 04:20:10 +0000")
        );
        assert_eq!(
            parse_date("1 Jan 01 00:00 +0000"),
            parse_date("1 Jan 2001 00:00 +0000")
        );
    }
}
