//! What each SpamAssassin `eval:` function needs, so the loader can say why a
//! rule is skipped: the network (DNS, DKIM keys, SPF, DCC/Razor/Pyzor), the
//! Bayes database, another persistent database (AWL, TxRep, access db), or
//! nothing but the message and the configuration ("local").

/// What an eval function needs to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EvalClass {
    /// DNS or another network service; skipped since network tests are off.
    Network,
    /// The Bayes database; skipped since Bayes is off.
    Bayes,
    /// A persistent per-sender database (AWL, TxRep, access db); skipped.
    Stateful,
    /// Only the message and the configuration: implementable here.
    Local,
}

impl EvalClass {
    /// A short label for reports.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Network => "network",
            Self::Bayes => "bayes",
            Self::Stateful => "database",
            Self::Local => "local",
        }
    }
}

/// Exact names that need the network.
const NETWORK: &[&str] = &[
    "check_rbl",
    "check_rbl_sub",
    "check_rbl_txt",
    "check_rbl_from_host",
    "check_rbl_from_domain",
    "check_rbl_envfrom",
    "check_rbl_headers",
    "check_rbl_accreditor",
    "check_uridnsbl",
    "check_dns_sender",
    "check_razor2",
    "check_razor2_range",
    "check_pyzor",
    "check_dcc",
    "check_dcc_reputation_range",
    "check_hashbl_bodyre",
    "check_hashbl_emails",
    "check_hashbl_uris",
    "check_hashbl_attachments",
    "short_url",
    "short_url_chained",
    "short_url_redir",
    "short_url_200",
    "short_url_404",
    "short_url_code",
    "check_asn",
];

/// Name prefixes that need the network (DKIM key lookups, SPF, DMARC, ARC).
const NETWORK_PREFIX: &[&str] = &[
    "check_dkim_",
    "check_arc_",
    "check_for_spf_",
    "check_for_def_spf_",
    "check_for_dkim_",
    "check_for_def_dkim_",
    "check_dmarc_",
    "check_rbl",
    "check_hashbl_",
];

const STATEFUL: &[&str] = &[
    "check_from_in_auto_whitelist",
    "check_from_in_auto_welcomelist",
    "check_senders_reputation",
    "check_access_database",
];

/// Classifies an eval function by name.
#[must_use]
pub fn classify(name: &str) -> EvalClass {
    if name == "check_bayes" || name.starts_with("check_bayes_") {
        EvalClass::Bayes
    } else if NETWORK.contains(&name) || NETWORK_PREFIX.iter().any(|p| name.starts_with(p)) {
        EvalClass::Network
    } else if STATEFUL.contains(&name) {
        EvalClass::Stateful
    } else {
        EvalClass::Local
    }
}

/// Splits `fn(args)` into the name and its arguments (quotes removed).
pub(crate) fn parse_call(text: &str) -> Result<(String, Vec<String>), (usize, String)> {
    let text = text.trim_end();
    let (name, rest) = match text.find('(') {
        Some(i) => (&text[..i], Some(&text[i..])),
        None => (text, None),
    };
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err((0, format!("bad eval function name `{name}`")));
    }
    let Some(rest) = rest else {
        return Ok((name.to_owned(), Vec::new()));
    };
    let open = text.len() - rest.len();
    if !rest.ends_with(')') {
        return Err((text.len(), "eval call lacks its closing `)`".to_owned()));
    }
    let inner = &rest[1..rest.len() - 1];
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for ch in inner.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(ch);
                any = true;
            }
            (None, ',') => {
                args.push(std::mem::take(&mut cur).trim().to_owned());
                any = false;
            }
            (None, c) => {
                if !c.is_whitespace() {
                    any = true;
                }
                cur.push(c);
            }
        }
    }
    if quote.is_some() {
        return Err((open, "unterminated quote in eval arguments".to_owned()));
    }
    if any || !args.is_empty() {
        args.push(cur.trim().to_owned());
    }
    Ok((name.to_owned(), args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(classify("check_rbl_sub"), EvalClass::Network);
        assert_eq!(classify("check_dkim_valid"), EvalClass::Network);
        assert_eq!(classify("check_for_spf_pass"), EvalClass::Network);
        assert_eq!(classify("check_bayes"), EvalClass::Bayes);
        assert_eq!(classify("check_senders_reputation"), EvalClass::Stateful);
        assert_eq!(classify("check_for_missing_to_header"), EvalClass::Local);
        assert_eq!(classify("html_range"), EvalClass::Local);
    }

    #[test]
    fn calls() {
        let c = |s: &str| parse_call(s).map_err(|e| e.1);
        assert_eq!(c("f()"), Ok(("f".to_owned(), vec![])));
        assert_eq!(c("f"), Ok(("f".to_owned(), vec![])));
        assert_eq!(
            c("check_rbl('set', 'zen.example.', '127.0.0.2')"),
            Ok((
                "check_rbl".to_owned(),
                vec![
                    "set".to_owned(),
                    "zen.example.".to_owned(),
                    "127.0.0.2".to_owned()
                ]
            ))
        );
        assert_eq!(
            c("f('a,b', 3)"),
            Ok(("f".to_owned(), vec!["a,b".to_owned(), "3".to_owned()]))
        );
        assert!(c("f('a").is_err());
        assert!(c("f(a").is_err());
        assert!(c("f-g()").is_err());
    }
}
