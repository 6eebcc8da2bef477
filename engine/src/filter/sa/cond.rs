//! `if` conditions of `.cf` files: `version`, `perl_version`, `plugin(X)`,
//! `can(X::feature)`, `has(X::feature)`, numbers, comparisons, `!`, `&&`,
//! `||` and parentheses.

/// What a condition can ask about.
pub(crate) struct Env<'a> {
    pub plugins: &'a [String],
    pub features: &'a [String],
    pub version: f64,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Word(String),
    Op(&'static str),
}

const OPS: &[&str] = &["&&", "||", ">=", "<=", "==", "!=", "!", "<", ">", "(", ")"];

fn lex(text: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || c == b'.' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
            let n = text[s..i].replace('_', "");
            out.push(Tok::Num(
                n.parse().map_err(|_| format!("bad number `{n}`"))?,
            ));
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            out.push(Tok::Word(text[s..i].to_owned()));
        } else if let Some(op) = OPS.iter().find(|o| text[i..].starts_with(**o)) {
            out.push(Tok::Op(op));
            i += op.len();
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err(format!("unexpected `{ch}` in condition"));
        }
    }
    Ok(out)
}

struct P<'a, 'e> {
    toks: Vec<Tok>,
    pos: usize,
    env: &'a Env<'e>,
    depth: usize,
}

/// Evaluates a condition; `Err` names the first thing not understood.
pub(crate) fn eval(text: &str, env: &Env<'_>) -> Result<bool, String> {
    let toks = lex(text)?;
    let mut p = P {
        toks,
        pos: 0,
        env,
        depth: 0,
    };
    let v = p.or()?;
    if p.pos != p.toks.len() {
        return Err("trailing tokens in condition".to_owned());
    }
    Ok(v != 0.0)
}

impl P<'_, '_> {
    fn peek_op(&self, op: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Op(o)) if *o == op)
    }

    fn or(&mut self) -> Result<f64, String> {
        let mut v = self.and()?;
        while self.peek_op("||") {
            self.pos += 1;
            let r = self.and()?;
            v = if v != 0.0 { v } else { r };
        }
        Ok(v)
    }

    fn and(&mut self) -> Result<f64, String> {
        let mut v = self.cmp()?;
        while self.peek_op("&&") {
            self.pos += 1;
            let r = self.cmp()?;
            v = if v == 0.0 { v } else { r };
        }
        Ok(v)
    }

    fn cmp(&mut self) -> Result<f64, String> {
        let l = self.unary()?;
        for op in [">=", "<=", "==", "!=", "<", ">"] {
            if self.peek_op(op) {
                self.pos += 1;
                let r = self.unary()?;
                let t = match op {
                    ">=" => l >= r,
                    "<=" => l <= r,
                    "==" => l == r,
                    "!=" => l != r,
                    "<" => l < r,
                    _ => l > r,
                };
                return Ok(if t { 1.0 } else { 0.0 });
            }
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<f64, String> {
        self.depth += 1;
        if self.depth > 100 {
            return Err("condition nested too deeply".to_owned());
        }
        let tok = self
            .toks
            .get(self.pos)
            .cloned()
            .ok_or("condition ends early")?;
        self.pos += 1;
        let v = match tok {
            Tok::Num(n) => n,
            Tok::Op("!") => {
                if self.unary()? == 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Tok::Op("(") => {
                let v = self.or()?;
                if !self.peek_op(")") {
                    return Err("missing `)` in condition".to_owned());
                }
                self.pos += 1;
                v
            }
            Tok::Word(w) if w == "version" => self.env.version,
            Tok::Word(w) if w == "perl_version" => 5.036,
            Tok::Word(w) if w == "plugin" || w == "can" || w == "has" => {
                if !self.peek_op("(") {
                    return Err(format!("expected `(` after `{w}`"));
                }
                self.pos += 1;
                let Some(Tok::Word(arg)) = self.toks.get(self.pos).cloned() else {
                    return Err(format!("expected a name in `{w}(...)`"));
                };
                self.pos += 1;
                if !self.peek_op(")") {
                    return Err(format!("missing `)` after `{w}({arg}`"));
                }
                self.pos += 1;
                let known = if w == "plugin" {
                    self.env.plugins.contains(&arg)
                } else {
                    let plugin_loaded = match arg.rsplit_once("::") {
                        Some((pkg, _)) if pkg.starts_with("Mail::SpamAssassin::Plugin::") => {
                            self.env.plugins.iter().any(|p| p == pkg)
                        }
                        _ => true,
                    };
                    plugin_loaded && self.env.features.contains(&arg)
                };
                if known {
                    1.0
                } else {
                    0.0
                }
            }
            t => return Err(format!("unexpected `{t:?}` in condition")),
        };
        self.depth -= 1;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions() {
        let plugins = vec!["Mail::SpamAssassin::Plugin::DKIM".to_owned()];
        let features = vec!["Mail::SpamAssassin::Conf::feature_x".to_owned()];
        let env = Env {
            plugins: &plugins,
            features: &features,
            version: 4.000001,
        };
        let t = |s: &str| eval(s, &env);
        assert_eq!(t("(version >= 3.004002)"), Ok(true));
        assert_eq!(t("(version >= 4.000002)"), Ok(false));
        assert_eq!(t("!((version >= 3.004000))"), Ok(false));
        assert_eq!(t("plugin(Mail::SpamAssassin::Plugin::DKIM)"), Ok(true));
        assert_eq!(t("!plugin(Mail::SpamAssassin::Plugin::SPF)"), Ok(true));
        assert_eq!(t("can(Mail::SpamAssassin::Conf::feature_x)"), Ok(true));
        assert_eq!(t("can(Mail::SpamAssassin::Conf::feature_y)"), Ok(false));
        assert_eq!(t("version >= 4 && !can(A::b) || 0"), Ok(true));
        assert!(t("frobnicate(1)").is_err());
        assert!(t("(version").is_err());
    }
}
