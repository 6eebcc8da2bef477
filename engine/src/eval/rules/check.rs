//! Type checking: untyped syntax to compiled conditions and actions, every
//! error collected (a rule with errors is dropped, the next one checked).

use std::net::IpAddr;

use regex::RegexBuilder;

use super::expr::{
    canonical_ip, Cmp, CodeTest, Expr, Field, IntField, IntTest, IpTest, Net, StrTest, FIELDS,
};
use super::lex::{Diag, Pos};
use super::parse::{ActionAst, Ast, Lit, Op, Value};
use super::{RuleAction, REGEX_BYTES_MAX};
use crate::eval::Code;
use crate::verdict::SmtpText;

/// Edit distance (insert, delete, substitute) between two short words.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest of `candidates` to `word`, if it is close enough to be a typo.
pub(super) fn suggest<'c>(
    word: &str,
    candidates: impl Iterator<Item = &'c str>,
) -> Option<&'c str> {
    if word.len() > 64 {
        return None;
    }
    let word = word.to_ascii_lowercase();
    candidates
        .map(|c| (distance(&word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) || c.starts_with(word.as_str()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn did_you_mean(found: Option<&str>) -> String {
    found.map_or_else(String::new, |s| format!("; did you mean `{s}`?"))
}

/// The type name of a field for messages.
fn type_name(field: Field) -> &'static str {
    match field {
        Field::Ip => "an IP address",
        Field::Str(_) => "a string",
        Field::Code(_) => "a two-letter code",
        Field::Int(_) => "an integer",
        Field::Bool(_) => "a boolean",
    }
}

fn ops_of(field: Field) -> &'static str {
    match field {
        Field::Ip => "==, !=, in",
        Field::Str(_) => "==, !=, ~, in, starts_with, ends_with, contains",
        Field::Code(_) => "==, !=, in",
        Field::Int(_) => "==, !=, <, <=, >, >=, in",
        Field::Bool(_) => "==, != (with true or false), or the field alone",
    }
}

const WEEKDAYS: [[&str; 2]; 7] = [
    ["mon", "monday"],
    ["tue", "tuesday"],
    ["wed", "wednesday"],
    ["thu", "thursday"],
    ["fri", "friday"],
    ["sat", "saturday"],
    ["sun", "sunday"],
];

/// Checks conditions of one file; errors go to `diags`.
pub(super) struct Checker<'d> {
    pub diags: &'d mut Vec<Diag>,
}

impl Checker<'_> {
    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diag::new(pos, message));
    }

    /// Compiles a condition; `None` if any part had an error.
    pub(super) fn expr(&mut self, ast: &Ast<'_>) -> Option<Expr> {
        match ast {
            Ast::Const(b) => Some(Expr::Const(*b)),
            Ast::And(items) => self.list(items).map(Expr::And),
            Ast::Or(items) => self.list(items).map(Expr::Or),
            Ast::Not(inner) => self.expr(inner).map(|e| Expr::Not(Box::new(e))),
            Ast::Test {
                field,
                field_pos,
                cmp,
            } => {
                let Some(typed) = FIELDS.iter().find(|(n, _)| n == field).map(|(_, f)| *f) else {
                    let hint = suggest(field, FIELDS.iter().map(|(n, _)| *n));
                    self.error(
                        *field_pos,
                        format!("unknown field `{field}`{}", did_you_mean(hint)),
                    );
                    return None;
                };
                match cmp {
                    None => match typed {
                        Field::Bool(b) => Some(Expr::Bool(b, true)),
                        _ => {
                            self.error(
                                *field_pos,
                                format!(
                                    "`{field}` is {}, not a condition; compare it with one of {}",
                                    type_name(typed),
                                    ops_of(typed)
                                ),
                            );
                            None
                        }
                    },
                    Some((op, op_pos, value)) => self.test(field, typed, *op, *op_pos, value),
                }
            }
        }
    }

    fn list(&mut self, items: &[Ast<'_>]) -> Option<Box<[Expr]>> {
        // Check every item (to report every error) before giving up.
        let typed: Vec<Option<Expr>> = items.iter().map(|a| self.expr(a)).collect();
        typed
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .map(Vec::into_boxed_slice)
    }

    fn test(
        &mut self,
        name: &str,
        field: Field,
        op: Op,
        op_pos: Pos,
        value: &Value<'_>,
    ) -> Option<Expr> {
        let allowed = match field {
            Field::Ip | Field::Code(_) => matches!(op, Op::Eq | Op::Ne | Op::In),
            Field::Str(_) => !matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge),
            Field::Int(_) => matches!(
                op,
                Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::In
            ),
            Field::Bool(_) => matches!(op, Op::Eq | Op::Ne),
        };
        if !allowed {
            self.error(
                op_pos,
                format!(
                    "operator `{}` does not apply to `{name}` ({}); use one of {}",
                    op.text(),
                    type_name(field),
                    ops_of(field)
                ),
            );
            return None;
        }
        match (op, value) {
            (Op::In, Value::List(items, _)) => self.in_list(name, field, items),
            (Op::In, Value::One(lit, pos)) if field == Field::Ip => {
                let net = self.net(name, lit, *pos)?;
                Some(Expr::Ip(IpTest::In(Box::new([net]))))
            }
            (Op::In, Value::One(_, pos)) => {
                self.error(
                    *pos,
                    format!("`in` takes a list in brackets, e.g. `{name} in [a, b]`"),
                );
                None
            }
            (_, Value::List(_, pos)) => {
                self.error(
                    *pos,
                    format!("a list only goes after `in`; write `{name} in [...]`"),
                );
                None
            }
            (_, Value::One(lit, pos)) => self.scalar(name, field, op, lit, *pos),
        }
    }

    fn scalar(
        &mut self,
        name: &str,
        field: Field,
        op: Op,
        lit: &Lit<'_>,
        pos: Pos,
    ) -> Option<Expr> {
        match field {
            Field::Str(f) => {
                let text = self.string(name, lit, pos)?;
                let lower = text.to_ascii_lowercase().into_boxed_str();
                let test = match op {
                    Op::Eq => StrTest::Eq(lower),
                    Op::Ne => return Some(Expr::Not(Box::new(Expr::Str(f, StrTest::Eq(lower))))),
                    Op::Match => StrTest::Match(self.regex(text, pos)?, 0),
                    Op::StartsWith => StrTest::StartsWith(lower),
                    Op::EndsWith => StrTest::EndsWith(lower),
                    _ => StrTest::Contains(lower),
                };
                Some(Expr::Str(f, test))
            }
            Field::Code(f) => {
                let code = self.code(name, lit, pos)?;
                let test = if op == Op::Eq {
                    CodeTest::Eq(code)
                } else {
                    CodeTest::Ne(code)
                };
                Some(Expr::Code(f, test))
            }
            Field::Ip => {
                let net = self.net(name, lit, pos)?;
                let full = if net.addr.is_ipv4() { 32 } else { 128 };
                if net.prefix != full {
                    self.error(
                        pos,
                        format!(
                            "`{}` takes one address; for a range write `{name} in NET/LEN`",
                            op.text()
                        ),
                    );
                    return None;
                }
                Some(Expr::Ip(if op == Op::Eq {
                    IpTest::Eq(net.addr)
                } else {
                    IpTest::Ne(net.addr)
                }))
            }
            Field::Int(f) => {
                let n = self.int(name, f, lit, pos)?;
                let cmp = match op {
                    Op::Eq => Cmp::Eq,
                    Op::Ne => Cmp::Ne,
                    Op::Lt => Cmp::Lt,
                    Op::Le => Cmp::Le,
                    Op::Gt => Cmp::Gt,
                    _ => Cmp::Ge,
                };
                Some(Expr::Int(f, IntTest::Cmp(cmp, n)))
            }
            Field::Bool(f) => match lit {
                Lit::Word(w @ ("true" | "false")) => {
                    Some(Expr::Bool(f, (*w == "true") == (op == Op::Eq)))
                }
                _ => {
                    self.error(
                        pos,
                        format!("`{name}` is a boolean: compare it with true or false"),
                    );
                    None
                }
            },
        }
    }

    fn in_list(&mut self, name: &str, field: Field, items: &[(Lit<'_>, Pos)]) -> Option<Expr> {
        match field {
            Field::Str(f) => {
                let mut keys: Vec<Box<str>> = Vec::with_capacity(items.len());
                let mut ok = true;
                for (lit, pos) in items {
                    match self.string(name, lit, *pos) {
                        Some(s) => keys.push(s.to_ascii_lowercase().into_boxed_str()),
                        None => ok = false,
                    }
                }
                keys.sort_unstable();
                keys.dedup();
                ok.then(|| Expr::Str(f, StrTest::In(keys.into_boxed_slice())))
            }
            Field::Code(f) => {
                let codes: Vec<Option<Code>> = items
                    .iter()
                    .map(|(lit, pos)| self.code(name, lit, *pos))
                    .collect();
                let codes: Vec<Code> = codes.into_iter().collect::<Option<_>>()?;
                Some(Expr::Code(f, CodeTest::In(codes.into_boxed_slice())))
            }
            Field::Ip => {
                let nets: Vec<Option<Net>> = items
                    .iter()
                    .map(|(lit, pos)| self.net(name, lit, *pos))
                    .collect();
                let nets: Vec<Net> = nets.into_iter().collect::<Option<_>>()?;
                Some(Expr::Ip(IpTest::In(nets.into_boxed_slice())))
            }
            Field::Int(f) => {
                let ints: Vec<Option<u32>> = items
                    .iter()
                    .map(|(lit, pos)| self.int(name, f, lit, *pos))
                    .collect();
                let ints: Vec<u32> = ints.into_iter().collect::<Option<_>>()?;
                Some(Expr::Int(f, IntTest::In(ints.into_boxed_slice())))
            }
            Field::Bool(_) => None, // `in` was refused for booleans above
        }
    }

    fn string<'s>(&mut self, name: &str, lit: &'s Lit<'_>, pos: Pos) -> Option<&'s str> {
        match lit {
            Lit::Str(s) => Some(s),
            Lit::Word(w) => {
                self.error(
                    pos,
                    format!("`{name}` is a string: write the value in double quotes, \"{w}\""),
                );
                None
            }
        }
    }

    fn regex(&mut self, pattern: &str, pos: Pos) -> Option<regex::Regex> {
        let built = RegexBuilder::new(pattern)
            .case_insensitive(true)
            .size_limit(REGEX_BYTES_MAX)
            .dfa_size_limit(REGEX_BYTES_MAX)
            .build();
        match built {
            Ok(re) => Some(re),
            Err(regex::Error::CompiledTooBig(limit)) => {
                self.error(
                    pos,
                    format!(
                        "regex is too big: it compiles to more than {limit} bytes; simplify it"
                    ),
                );
                None
            }
            Err(e) => {
                // The crate renders the pattern with a caret line, then
                // `error: what`; keep the `what`.
                let text = e.to_string();
                let what = text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("error: "))
                    .unwrap_or_else(|| text.trim());
                self.error(pos, format!("bad regex \"{pattern}\": {what}"));
                None
            }
        }
    }

    fn code(&mut self, name: &str, lit: &Lit<'_>, pos: Pos) -> Option<Code> {
        let text = match lit {
            Lit::Str(s) => s.as_ref(),
            Lit::Word(w) => w,
        };
        let code = Code::parse(text);
        if code.is_none() {
            self.error(
                pos,
                format!("`{name}` takes a two-letter code such as DE or EU, found `{text}`"),
            );
        }
        code
    }

    fn net(&mut self, name: &str, lit: &Lit<'_>, pos: Pos) -> Option<Net> {
        let Lit::Word(text) = lit else {
            self.error(
                pos,
                format!(
                    "`{name}` is an IP address: write addresses and ranges without quotes, \
                     e.g. 192.0.2.1 or 2001:db8::/32"
                ),
            );
            return None;
        };
        match parse_net(text) {
            Ok(net) => Some(net),
            Err(message) => {
                self.error(pos, message);
                None
            }
        }
    }

    fn int(&mut self, name: &str, field: IntField, lit: &Lit<'_>, pos: Pos) -> Option<u32> {
        let (text, quoted) = match lit {
            Lit::Str(s) => (s.as_ref(), true),
            Lit::Word(w) => (*w, false),
        };
        if field == IntField::Weekday {
            let lower = text.to_ascii_lowercase();
            if let Some(day) = WEEKDAYS
                .iter()
                .position(|names| names.contains(&lower.as_str()))
            {
                return u32::try_from(day + 1).ok();
            }
        }
        let (max, example) = match field {
            IntField::Hour => (23, "0 to 23"),
            IntField::Minute => (59, "0 to 59"),
            IntField::Weekday => (7, "mon, tue, wed, thu, fri, sat, sun (or 1 to 7)"),
            IntField::RecipientCount | IntField::MessageCount => (u32::MAX, "a whole number"),
        };
        match text.parse::<u32>() {
            Ok(n) if !quoted && n <= max && (field != IntField::Weekday || n >= 1) => Some(n),
            Ok(_) if quoted => {
                self.error(
                    pos,
                    format!("`{name}` is an integer: write {text} without quotes"),
                );
                None
            }
            _ => {
                self.error(pos, format!("`{name}` takes {example}, found `{text}`"));
                None
            }
        }
    }

    /// Compiles an action; `rule` names the default reply text.
    pub(super) fn action(&mut self, rule: &str, ast: &ActionAst<'_>) -> Option<RuleAction> {
        let reply = |this: &mut Self, class: u16| -> Option<SmtpText> {
            let Some((text, pos)) = &ast.text else {
                let (verb, enhanced) = if class == 5 {
                    ("Rejected", "5.7.1")
                } else {
                    ("Deferred", "4.7.1")
                };
                return Some(SmtpText {
                    code: if class == 5 { 550 } else { 451 },
                    text: format!("{enhanced} {verb} by policy rule {rule}"),
                });
            };
            match parse_reply(text, class) {
                Ok(reply) => Some(reply),
                Err(message) => {
                    this.error(*pos, message);
                    None
                }
            }
        };
        match ast.word {
            "allow" => Some(RuleAction::Allow),
            "discard" => Some(RuleAction::Discard),
            "quarantine" => Some(RuleAction::Quarantine),
            "reject" => reply(self, 5).map(RuleAction::Reject),
            "tempfail" => reply(self, 4).map(RuleAction::TempFail),
            other => {
                let actions = ["allow", "reject", "tempfail", "discard", "quarantine"];
                let hint = suggest(other, actions.into_iter());
                self.error(
                    ast.pos,
                    format!(
                        "unknown action `{other}`; expected allow, reject, tempfail, discard or \
                         quarantine{}",
                        did_you_mean(hint)
                    ),
                );
                None
            }
        }
    }
}

/// Parses `ADDR` or `ADDR/LEN` (host bits must be zero).
pub(super) fn parse_net(text: &str) -> Result<Net, String> {
    let (addr_text, len_text) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let Ok(addr) = addr_text.parse::<IpAddr>() else {
        return Err(format!("`{text}` is not an IP address or CIDR range"));
    };
    let full: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match len_text {
        None => full,
        Some(l) => match l.parse::<u8>() {
            Ok(p) if p <= full && !l.starts_with('+') => p,
            _ => {
                return Err(format!(
                    "bad prefix length in `{text}`: it must be 0 to {full}"
                ))
            }
        },
    };
    let net = Net { addr, prefix };
    let masked = mask(addr, prefix);
    if masked != addr {
        return Err(format!(
            "`{text}` has host bits set; did you mean {masked}/{prefix}?"
        ));
    }
    // A mapped IPv4 address is compared as IPv4 (so are client addresses).
    let canonical = canonical_ip(addr);
    if canonical != addr && prefix >= 96 {
        return Ok(Net {
            addr: canonical,
            prefix: prefix - 96,
        });
    }
    Ok(net)
}

/// `addr` with all bits after `prefix` cleared.
fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & keep).into())
        }
        IpAddr::V6(a) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & keep).into())
        }
    }
}

/// Parses `NNN X.Y.Z text` for reply class `class` (4 or 5).
pub(super) fn parse_reply(text: &str, class: u16) -> Result<SmtpText, String> {
    let what = if class == 5 { "reject" } else { "tempfail" };
    let example = if class == 5 {
        "\"550 5.7.1 Refused by policy\""
    } else {
        "\"451 4.7.1 Try again later\""
    };
    let digits = text
        .get(..3)
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
    let Some(code) = digits.and_then(|d| d.parse::<u16>().ok()) else {
        return Err(format!(
            "{what} text must start with a reply code, e.g. {example}"
        ));
    };
    if code / 100 != class {
        return Err(format!(
            "{what} needs a {class}xx reply code, found {code}; e.g. {example}"
        ));
    }
    let Some(rest) = text[3..].strip_prefix(' ') else {
        return Err(format!(
            "expected a space and an enhanced status code after {code}, e.g. {example}"
        ));
    };
    let enhanced = rest.split(' ').next().unwrap_or_default();
    let parts: Vec<&str> = enhanced.split('.').collect();
    let well_formed = parts.len() == 3
        && parts.iter().zip([1, 3, 3]).all(|(p, max)| {
            !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit())
        });
    if !well_formed {
        return Err(format!(
            "expected an enhanced status code (class.subject.detail) after {code}, \
             found `{enhanced}`; e.g. {example}"
        ));
    }
    if parts[0] != class.to_string() {
        return Err(format!(
            "enhanced status code {enhanced} does not match reply code {code}: it must start \
             with {class}."
        ));
    }
    if let Some(bad) = rest.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(format!("reply text must be printable ASCII, found {bad:?}"));
    }
    if rest.len() > super::REPLY_TEXT_BYTES_MAX {
        return Err(format!(
            "reply text is {} bytes; the limit is {}",
            rest.len(),
            super::REPLY_TEXT_BYTES_MAX
        ));
    }
    Ok(SmtpText {
        code,
        text: rest.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_only() {
        let fields = || FIELDS.iter().map(|(n, _)| *n);
        assert_eq!(suggest("sendr_domain", fields()), Some("sender_domain"));
        assert_eq!(suggest("HELO", fields()), Some("helo"));
        assert_eq!(suggest("countr", fields()), Some("country"));
        assert_eq!(suggest("zzzzzzzz", fields()), None);
    }

    #[test]
    fn nets_parse_and_refuse_host_bits() {
        assert_eq!(parse_net("192.0.2.0/24").map(|n| n.prefix), Ok(24));
        assert_eq!(parse_net("2001:db8::/32").map(|n| n.prefix), Ok(32));
        assert_eq!(
            parse_net("::ffff:192.0.2.0/120").map(|n| (n.addr.is_ipv4(), n.prefix)),
            Ok((true, 24))
        );
        assert!(parse_net("192.0.2.1/24").is_err_and(|e| e.contains("did you mean 192.0.2.0/24")));
        assert!(parse_net("192.0.2.0/33").is_err());
        assert!(parse_net("192.0.2.0/+8").is_err());
        assert!(parse_net("abc").is_err());
        assert_eq!(parse_net("0.0.0.0/0").map(|n| n.prefix), Ok(0));
    }

    #[test]
    fn replies_need_matching_classes() {
        let ok = parse_reply("550 5.7.1 No thanks", 5);
        assert_eq!(
            ok.map(|r| (r.code, r.text)),
            Ok((550, "5.7.1 No thanks".to_owned()))
        );
        assert_eq!(
            parse_reply("451 4.7.1", 4).map(|r| r.text),
            Ok("4.7.1".to_owned())
        );
        assert!(parse_reply("450 4.7.1 x", 5).is_err_and(|e| e.contains("5xx")));
        assert!(parse_reply("550 4.7.1 x", 5).is_err_and(|e| e.contains("does not match")));
        assert!(parse_reply("550 x", 5).is_err_and(|e| e.contains("enhanced")));
        assert!(parse_reply("55", 5).is_err());
        assert!(parse_reply("550 5.7.1 caf\u{e9}", 5).is_err());
        assert!(parse_reply("550 5.7.1234 x", 5).is_err());
    }
}
