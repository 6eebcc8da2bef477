//! Postfix's XFORWARD extension (XFORWARD_README): the client forwards the
//! facts of the *original* SMTP client through a content filter, so that the
//! policy sees the Internet client, not Postfix on 127.0.0.1.
//!
//! ```text
//! xforward-command = XFORWARD 1*( SP attribute-name "=" attribute-value )
//! attribute-name   = ( NAME | ADDR | PORT | PROTO | HELO | IDENT | SOURCE )
//! attribute-value  = xtext
//! ```
//!
//! - Names are case-insensitive; values are xtext (see [`super::xtext`]),
//!   at most [`XFORWARD_VALUE_BYTES_MAX`] bytes once decoded.
//! - `[UNAVAILABLE]` means the upstream does not know the value;
//!   `[TEMPUNAVAIL]` (NAME) means its reverse lookup failed temporarily.
//! - ADDR is not bracketed; Postfix may prefix IPv6 addresses with `IPv6:`,
//!   which is removed. PORT is a decimal port; SOURCE is LOCAL or REMOTE.
//! - Attributes arrive incrementally (Postfix sends two commands, the client
//!   attributes then IDENT and SOURCE); each command is applied whole or not
//!   at all. The server forgets them after each transaction (end of data,
//!   RSET) and at EHLO/HELO; Postfix sends them again before every MAIL.

use std::net::IpAddr;

use super::{xtext, XFORWARD_VALUE_BYTES_MAX};

/// One XFORWARD attribute name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XforwardAttr {
    /// The upstream client's hostname (reverse DNS).
    Name,
    /// The upstream client's address.
    Addr,
    /// The upstream client's port.
    Port,
    /// The protocol it used (SMTP, ESMTP, …).
    Proto,
    /// Its HELO/EHLO name.
    Helo,
    /// The upstream's queue id for the message.
    Ident,
    /// LOCAL or REMOTE.
    Source,
}

impl XforwardAttr {
    /// Every attribute, in the order we announce and send them.
    pub const ALL: [XforwardAttr; 7] = [
        XforwardAttr::Name,
        XforwardAttr::Addr,
        XforwardAttr::Proto,
        XforwardAttr::Helo,
        XforwardAttr::Ident,
        XforwardAttr::Source,
        XforwardAttr::Port,
    ];

    /// The wire name, upper case.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            XforwardAttr::Name => "NAME",
            XforwardAttr::Addr => "ADDR",
            XforwardAttr::Port => "PORT",
            XforwardAttr::Proto => "PROTO",
            XforwardAttr::Helo => "HELO",
            XforwardAttr::Ident => "IDENT",
            XforwardAttr::Source => "SOURCE",
        }
    }

    /// The attribute called `name` (case-insensitive).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }
}

/// One attribute's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XValue {
    /// A known value.
    Value(String),
    /// `[UNAVAILABLE]`.
    Unavailable,
    /// `[TEMPUNAVAIL]`.
    TempUnavailable,
}

impl XValue {
    /// The value as sent on the wire (before xtext encoding).
    #[must_use]
    pub fn as_wire(&self) -> &str {
        match self {
            XValue::Value(v) => v,
            XValue::Unavailable => "[UNAVAILABLE]",
            XValue::TempUnavailable => "[TEMPUNAVAIL]",
        }
    }

    /// The known value, if any.
    #[must_use]
    pub fn value(&self) -> Option<&str> {
        match self {
            XValue::Value(v) => Some(v),
            _ => None,
        }
    }

    fn from_wire(v: String) -> Self {
        if v.eq_ignore_ascii_case("[UNAVAILABLE]") {
            XValue::Unavailable
        } else if v.eq_ignore_ascii_case("[TEMPUNAVAIL]") {
            XValue::TempUnavailable
        } else {
            XValue::Value(v)
        }
    }
}

/// Why an XFORWARD command was refused (501 5.5.4, nothing applied).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XforwardError {
    /// No attributes, or an element without `=`.
    #[error("syntax: XFORWARD attribute=value...")]
    Syntax,
    /// An attribute name we do not know.
    #[error("bad XFORWARD attribute name: {0}")]
    UnknownAttribute(String),
    /// A value that is not xtext.
    #[error("bad XFORWARD attribute value syntax: {0}")]
    Xtext(&'static str),
    /// A decoded value longer than [`XFORWARD_VALUE_BYTES_MAX`].
    #[error("XFORWARD {0} value too long")]
    TooLong(&'static str),
    /// PORT not a number 0..=65535, or SOURCE not LOCAL/REMOTE.
    #[error("bad XFORWARD {0} value")]
    BadValue(&'static str),
}

/// The XFORWARD facts of one transaction; `None` = never sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Xforward {
    /// NAME.
    pub name: Option<XValue>,
    /// ADDR, without an `IPv6:` prefix.
    pub addr: Option<XValue>,
    /// PORT (digits).
    pub port: Option<XValue>,
    /// PROTO.
    pub proto: Option<XValue>,
    /// HELO.
    pub helo: Option<XValue>,
    /// IDENT.
    pub ident: Option<XValue>,
    /// SOURCE (`LOCAL` or `REMOTE`, upper-cased).
    pub source: Option<XValue>,
}

impl Xforward {
    /// Whether no attribute was sent.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        XforwardAttr::ALL.iter().all(|a| self.get(*a).is_none())
    }

    /// One attribute.
    #[must_use]
    pub fn get(&self, attr: XforwardAttr) -> Option<&XValue> {
        match attr {
            XforwardAttr::Name => self.name.as_ref(),
            XforwardAttr::Addr => self.addr.as_ref(),
            XforwardAttr::Port => self.port.as_ref(),
            XforwardAttr::Proto => self.proto.as_ref(),
            XforwardAttr::Helo => self.helo.as_ref(),
            XforwardAttr::Ident => self.ident.as_ref(),
            XforwardAttr::Source => self.source.as_ref(),
        }
    }

    fn slot(&mut self, attr: XforwardAttr) -> &mut Option<XValue> {
        match attr {
            XforwardAttr::Name => &mut self.name,
            XforwardAttr::Addr => &mut self.addr,
            XforwardAttr::Port => &mut self.port,
            XforwardAttr::Proto => &mut self.proto,
            XforwardAttr::Helo => &mut self.helo,
            XforwardAttr::Ident => &mut self.ident,
            XforwardAttr::Source => &mut self.source,
        }
    }

    /// ADDR as an IP address, when it is one.
    #[must_use]
    pub fn addr_ip(&self) -> Option<IpAddr> {
        self.addr.as_ref()?.value()?.parse().ok()
    }

    /// PORT as a number, when known.
    #[must_use]
    pub fn port_number(&self) -> Option<u16> {
        self.port.as_ref()?.value()?.parse().ok()
    }

    /// Applies the arguments of one XFORWARD command (`NAME=x ADDR=y`), all
    /// or nothing.
    ///
    /// # Errors
    /// An [`XforwardError`]; `self` is then unchanged.
    pub fn apply(&mut self, args: &str) -> Result<(), XforwardError> {
        let mut next = self.clone();
        let mut any = false;
        for element in args.split(' ').filter(|e| !e.is_empty()) {
            let (name, value) = element.split_once('=').ok_or(XforwardError::Syntax)?;
            let attr = XforwardAttr::from_name(name)
                .ok_or_else(|| XforwardError::UnknownAttribute(name.to_owned()))?;
            *next.slot(attr) = Some(parse_value(attr, value)?);
            any = true;
        }
        if !any {
            return Err(XforwardError::Syntax);
        }
        *self = next;
        Ok(())
    }

    /// The known attributes as `(lower-case name, wire value)` pairs, for the
    /// spool record's facts; [`Xforward::from_facts`] reads them back.
    #[must_use]
    pub fn facts(&self) -> Vec<(&'static str, &str)> {
        FACT_NAMES
            .iter()
            .filter_map(|(attr, fact)| Some((*fact, self.get(*attr)?.as_wire())))
            .collect()
    }

    /// Rebuilds the attributes from spool facts (other facts are ignored).
    #[must_use]
    pub fn from_facts<'a>(facts: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut x = Xforward::default();
        for (name, value) in facts {
            if let Some((attr, _)) = FACT_NAMES.iter().find(|(_, f)| *f == name) {
                *x.slot(*attr) = Some(XValue::from_wire(value.to_owned()));
            }
        }
        x
    }

    /// Appends XFORWARD commands for the attributes the server `offered`,
    /// each command line at most [`super::COMMAND_LINE_BYTES_MAX`] bytes
    /// (Postfix splits them the same way). Nothing when none applies.
    pub fn encode_commands(&self, offered: &[XforwardAttr], out: &mut Vec<u8>) {
        let mut line = String::new();
        for attr in XforwardAttr::ALL {
            let Some(value) = self.get(attr).filter(|_| offered.contains(&attr)) else {
                continue;
            };
            let mut element = format!(" {}=", attr.name());
            xtext::encode(value.as_wire().as_bytes(), &mut element);
            if !line.is_empty() && line.len() + element.len() + 2 > super::COMMAND_LINE_BYTES_MAX {
                out.extend_from_slice(line.as_bytes());
                out.extend_from_slice(b"\r\n");
                line.clear();
            }
            if line.is_empty() {
                line.push_str("XFORWARD");
            }
            line.push_str(&element);
        }
        if !line.is_empty() {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

const FACT_NAMES: [(XforwardAttr, &str); 7] = [
    (XforwardAttr::Name, "xforward.name"),
    (XforwardAttr::Addr, "xforward.addr"),
    (XforwardAttr::Port, "xforward.port"),
    (XforwardAttr::Proto, "xforward.proto"),
    (XforwardAttr::Helo, "xforward.helo"),
    (XforwardAttr::Ident, "xforward.ident"),
    (XforwardAttr::Source, "xforward.source"),
];

fn parse_value(attr: XforwardAttr, raw: &str) -> Result<XValue, XforwardError> {
    let mut bytes = Vec::new();
    xtext::decode(raw.as_bytes(), &mut bytes).map_err(|_| XforwardError::Xtext(attr.name()))?;
    if bytes.len() > XFORWARD_VALUE_BYTES_MAX {
        return Err(XforwardError::TooLong(attr.name()));
    }
    // Values are host names, addresses and protocol words; anything else
    // that is not UTF-8 is kept readable rather than refused.
    let value = XValue::from_wire(String::from_utf8_lossy(&bytes).into_owned());
    let XValue::Value(v) = value else {
        return Ok(value);
    };
    match attr {
        XforwardAttr::Addr => {
            let v = match v.get(..5) {
                Some(p) if p.eq_ignore_ascii_case("IPv6:") => v[5..].to_owned(),
                _ => v,
            };
            Ok(XValue::Value(v))
        }
        XforwardAttr::Port => {
            let ok = !v.is_empty() && v.len() <= 5 && v.bytes().all(|b| b.is_ascii_digit());
            match v.parse::<u16>() {
                Ok(_) if ok => Ok(XValue::Value(v)),
                _ => Err(XforwardError::BadValue("PORT")),
            }
        }
        XforwardAttr::Source => {
            if v.eq_ignore_ascii_case("LOCAL") || v.eq_ignore_ascii_case("REMOTE") {
                Ok(XValue::Value(v.to_ascii_uppercase()))
            } else {
                Err(XforwardError::BadValue("SOURCE"))
            }
        }
        _ => Ok(XValue::Value(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Option<XValue> {
        Some(XValue::Value(s.to_owned()))
    }

    #[test]
    fn postfix_commands_apply_incrementally() {
        let mut x = Xforward::default();
        x.apply("NAME=spike.porcupine.org ADDR=168.100.189.2 PORT=55124 PROTO=ESMTP HELO=spike.porcupine.org")
            .unwrap();
        x.apply("IDENT=3CF6B2AAE8 SOURCE=REMOTE").unwrap();
        assert_eq!(x.name, v("spike.porcupine.org"));
        assert_eq!(x.addr_ip(), Some("168.100.189.2".parse().unwrap()));
        assert_eq!(x.port_number(), Some(55124));
        assert_eq!(x.proto, v("ESMTP"));
        assert_eq!(x.ident, v("3CF6B2AAE8"));
        assert_eq!(x.source, v("REMOTE"));
    }

    #[test]
    fn special_values_ipv6_prefix_and_xtext() {
        let mut x = Xforward::default();
        x.apply(
            "name=[TEMPUNAVAIL] addr=IPv6:2001:db8::1 helo=[UNAVAILABLE] ident=a+2Bb source=local",
        )
        .unwrap();
        assert_eq!(x.name, Some(XValue::TempUnavailable));
        assert_eq!(x.addr_ip(), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(x.helo, Some(XValue::Unavailable));
        assert_eq!(x.ident, v("a+b"));
        assert_eq!(x.source, v("LOCAL"));
        x.apply("PORT=[UNAVAILABLE]").unwrap();
        assert_eq!(x.port_number(), None);
    }

    #[test]
    fn bad_commands_change_nothing() {
        let mut x = Xforward::default();
        x.apply("NAME=a").unwrap();
        let before = x.clone();
        for bad in [
            "",
            "NAME",
            "NAME=b COLOR=red",
            "NAME=b ADDR=a=b",
            "PORT=99999",
            "PORT=-1",
            "SOURCE=MARS",
        ] {
            assert!(x.apply(bad).is_err(), "{bad}");
            assert_eq!(x, before, "{bad}");
        }
        let long = format!("HELO={}", "a".repeat(XFORWARD_VALUE_BYTES_MAX + 1));
        assert_eq!(x.apply(&long), Err(XforwardError::TooLong("HELO")));
    }

    #[test]
    fn facts_round_trip() {
        let mut x = Xforward::default();
        x.apply(
            "NAME=[UNAVAILABLE] ADDR=192.0.2.1 PORT=25 PROTO=SMTP HELO=h IDENT=Q SOURCE=REMOTE",
        )
        .unwrap();
        let facts = x.facts();
        assert_eq!(facts.len(), 7);
        assert_eq!(Xforward::from_facts(facts), x);
    }

    #[test]
    fn encodes_only_offered_attributes_within_512_bytes() {
        let mut x = Xforward::default();
        let long = "h".repeat(250);
        x.apply(&format!("NAME={long} ADDR=192.0.2.1 HELO={long} IDENT=Q"))
            .unwrap();
        let mut out = Vec::new();
        x.encode_commands(
            &[XforwardAttr::Name, XforwardAttr::Addr, XforwardAttr::Helo],
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.split_terminator("\r\n").collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines.iter().all(|l| l.len() + 2 <= 512));
        assert!(!text.contains("IDENT"));
        let mut back = Xforward::default();
        for l in &lines {
            back.apply(l.strip_prefix("XFORWARD ").unwrap()).unwrap();
        }
        assert_eq!(back.name, x.name);
        assert_eq!(back.helo, x.helo);
        let mut none = Vec::new();
        Xforward::default().encode_commands(&XforwardAttr::ALL, &mut none);
        assert!(none.is_empty());
    }
}
