//! The path arguments of MAIL and RCPT (RFC 5321 §4.1.2, RFC 6531 for
//! UTF-8), and their ESMTP parameters.
//!
//! ```text
//! Reverse-path  = Path / "<>"
//! Forward-path  = Path / "<Postmaster>"
//! Path          = "<" [ A-d-l ":" ] Mailbox ">"      ; the source route is dropped
//! Mailbox       = Local-part "@" ( Domain / address-literal )
//! Local-part    = Dot-string / Quoted-string
//! Mail-parameters = esmtp-param *(SP esmtp-param)  ; esmtp-keyword ["=" esmtp-value]
//! ```
//!
//! The check is deliberately structural: brackets, a non-empty local part
//! and domain, no spaces outside a quoted local part, no control bytes. It
//! is not a full RFC 5322 validator: Postfix in front of us has already
//! checked the envelope, and a stricter parser would only bounce mail
//! Postfix accepted. The address is returned as written (quotes kept), which
//! is the form the delivery client sends on.

use super::ADDRESS_BYTES_MAX;

/// Why a path argument was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not `<...>`, an unterminated quote, spaces or junk after `>`.
    #[error("bad address syntax")]
    Syntax,
    /// Longer than [`ADDRESS_BYTES_MAX`].
    #[error("address too long")]
    TooLong,
    /// An empty local part or domain, or a bad domain.
    #[error("bad address")]
    BadAddress,
}

/// A parsed MAIL/RCPT argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathArg<'a> {
    /// The mailbox without brackets and source route; empty for `<>`.
    pub address: &'a str,
    /// The parameters after the path, trimmed (may be empty).
    pub params: &'a str,
}

/// Splits `FROM:`/`TO:`'s argument (after the colon) into the address and
/// the parameters. Spaces between the colon and `<` are tolerated.
///
/// # Errors
/// A [`PathError`].
pub fn parse_path(arg: &str) -> Result<PathArg<'_>, PathError> {
    let arg = arg.trim_start_matches(' ');
    let inner = arg.strip_prefix('<').ok_or(PathError::Syntax)?;
    let bytes = inner.as_bytes();
    let mut start = 0;
    if bytes.first() == Some(&b'@') {
        // A source route (`@a,@b:`), obsolete and ignored (RFC 5321 §4.1.2).
        let colon = inner.find(':').ok_or(PathError::Syntax)?;
        start = colon + 1;
    }
    let mut i = start;
    let mut quoted = false;
    let end = loop {
        let Some(&b) = bytes.get(i) else {
            return Err(PathError::Syntax);
        };
        match b {
            b'\\' if quoted => {
                i += 1;
                if bytes.get(i).is_none_or(|&c| c < 0x20 || c == 0x7F) {
                    return Err(PathError::Syntax);
                }
            }
            b'"' => quoted = !quoted,
            b'>' if !quoted => break i,
            b' ' | b'<' if !quoted => return Err(PathError::Syntax),
            _ => {}
        }
        if b < 0x20 || b == 0x7F {
            return Err(PathError::Syntax);
        }
        i += 1;
    };
    let address = &inner[start..end];
    let rest = &inner[end + 1..];
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(PathError::Syntax);
    }
    if address.len() > ADDRESS_BYTES_MAX {
        return Err(PathError::TooLong);
    }
    Ok(PathArg {
        address,
        params: rest.trim_matches(' '),
    })
}

/// Checks a non-null mailbox: a local part, `@`, and a domain (or, when
/// `allow_bare` is set, the special local part `postmaster` alone).
///
/// # Errors
/// [`PathError::BadAddress`].
pub fn check_mailbox(address: &str, allow_bare: bool) -> Result<(), PathError> {
    let Some(at) = address.rfind('@') else {
        return if allow_bare && address.eq_ignore_ascii_case("postmaster") {
            Ok(())
        } else {
            Err(PathError::BadAddress)
        };
    };
    let (local, domain) = (&address[..at], &address[at + 1..]);
    if local.is_empty() || !check_domain(domain) {
        return Err(PathError::BadAddress);
    }
    Ok(())
}

/// A domain: labels of letters, digits, hyphens (and UTF-8 for SMTPUTF8)
/// separated by dots, or an address literal `[...]`.
fn check_domain(domain: &str) -> bool {
    if let Some(literal) = domain.strip_prefix('[') {
        let Some(inner) = literal.strip_suffix(']') else {
            return false;
        };
        return !inner.is_empty()
            && inner
                .bytes()
                .all(|b| (33..=126).contains(&b) && !matches!(b, b'[' | b']' | b'\\'));
    }
    !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80)
        })
}

/// Why ESMTP parameters were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bad ESMTP parameter syntax")]
pub struct ParamError;

/// Splits ESMTP parameters into `(keyword, value)` pairs.
///
/// # Errors
/// [`ParamError`] for an empty keyword, a keyword that is not
/// letters/digits/hyphens, or a value with control bytes, spaces or `=`.
pub fn parse_params(params: &str) -> Result<Vec<(&str, Option<&str>)>, ParamError> {
    let mut out = Vec::new();
    for element in params.split(' ').filter(|e| !e.is_empty()) {
        let (key, value) = match element.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (element, None),
        };
        let key_ok = key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let value_ok = value
            .is_none_or(|v| !v.is_empty() && v.bytes().all(|b| b > b' ' && b != b'=' && b != 0x7F));
        if !key_ok || !value_ok {
            return Err(ParamError);
        }
        out.push((key, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> Result<(&str, &str), PathError> {
        parse_path(s).map(|p| (p.address, p.params))
    }

    #[test]
    fn paths() {
        assert_eq!(path("<a@b.example>"), Ok(("a@b.example", "")));
        assert_eq!(
            path(" <a@b> SIZE=10 BODY=8BITMIME"),
            Ok(("a@b", "SIZE=10 BODY=8BITMIME"))
        );
        assert_eq!(path("<>"), Ok(("", "")));
        assert_eq!(path("<@r1,@r2:u@d>"), Ok(("u@d", "")));
        assert_eq!(path("<\"a b>c\"@d>"), Ok(("\"a b>c\"@d", "")));
        assert_eq!(path("<\"a\\\"b\"@d>"), Ok(("\"a\\\"b\"@d", "")));
        assert_eq!(
            path("<δοκιμή@παράδειγμα.δοκιμή>"),
            Ok(("δοκιμή@παράδειγμα.δοκιμή", ""))
        );
        for bad in [
            "a@b", "<a@b", "<a b@c>", "<a@b>x", "<\"a@b>", "<a\0@b>", "<<a@b>>",
        ] {
            assert_eq!(path(bad), Err(PathError::Syntax), "{bad}");
        }
        let long = format!("<{}@b>", "a".repeat(ADDRESS_BYTES_MAX));
        assert_eq!(path(&long), Err(PathError::TooLong));
    }

    #[test]
    fn mailboxes() {
        assert!(check_mailbox("a@b.example", false).is_ok());
        assert!(check_mailbox("a@[192.0.2.1]", false).is_ok());
        assert!(check_mailbox("a@[IPv6:2001:db8::1]", false).is_ok());
        assert!(check_mailbox("Postmaster", true).is_ok());
        assert!(check_mailbox("postmaster", false).is_err());
        for bad in ["a", "@b", "a@", "a@b..c", "a@b_c", "a@[x", "a@[]"] {
            assert!(check_mailbox(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn params() {
        assert_eq!(
            parse_params("SIZE=10  BODY=8BITMIME SMTPUTF8"),
            Ok(vec![
                ("SIZE", Some("10")),
                ("BODY", Some("8BITMIME")),
                ("SMTPUTF8", None)
            ])
        );
        assert_eq!(parse_params(""), Ok(vec![]));
        for bad in ["=1", "SIZE=", "A=b=c", "-X", "SI_ZE=1"] {
            assert_eq!(parse_params(bad), Err(ParamError), "{bad}");
        }
    }
}
