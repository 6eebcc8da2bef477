//! Parser of the rule language: tokens to an untyped syntax tree, one file at
//! a time, recovering at the next `rule` after a syntax error.
//!
//! ```text
//! file    = *rule
//! rule    = "rule" NAME ":" [ "when" expr ] "then" action
//! expr    = and *( "or" and )
//! and     = unary *( "and" unary )
//! unary   = "not" unary / primary
//! primary = "(" expr ")" / "true" / "false" / FIELD [ op value ]
//! op      = "==" / "!=" / "<" / "<=" / ">" / ">=" / "~" / "in"
//!         / "starts_with" / "ends_with" / "contains"
//! value   = literal / "[" [ literal *( "," literal ) [ "," ] ] "]"
//! literal = STRING / WORD
//! action  = "allow" / "discard" / "quarantine"
//!         / ( "reject" / "tempfail" ) [ STRING ]
//! ```
//! `and`/`or` chains are collected into lists (no recursion per operand);
//! parentheses and `not` recurse and are bounded by [`EXPR_DEPTH_MAX`].

use std::borrow::Cow;

use super::lex::{Diag, Lexer, Pos, Tok};
use super::{DIAGNOSTICS_MAX, EXPR_DEPTH_MAX};

/// Words that structure a rule and can be neither a field nor a value.
const KEYWORDS: [&str; 6] = ["rule", "when", "then", "and", "or", "not"];

/// A comparison operator as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Match,
    In,
    StartsWith,
    EndsWith,
    Contains,
}

impl Op {
    pub(super) fn text(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Match => "~",
            Op::In => "in",
            Op::StartsWith => "starts_with",
            Op::EndsWith => "ends_with",
            Op::Contains => "contains",
        }
    }
}

/// A literal value as written.
#[derive(Debug, Clone)]
pub(super) enum Lit<'a> {
    /// A quoted string.
    Str(Cow<'a, str>),
    /// A bare word (number, address, CIDR, code, weekday, `true`).
    Word(&'a str),
}

/// The right-hand side of a test.
#[derive(Debug, Clone)]
pub(super) enum Value<'a> {
    One(Lit<'a>, Pos),
    List(Vec<(Lit<'a>, Pos)>, Pos),
}

/// A condition, untyped.
#[derive(Debug, Clone)]
pub(super) enum Ast<'a> {
    Const(bool),
    And(Vec<Ast<'a>>),
    Or(Vec<Ast<'a>>),
    Not(Box<Ast<'a>>),
    /// `FIELD` alone (booleans) or `FIELD op value`.
    Test {
        field: &'a str,
        field_pos: Pos,
        cmp: Option<(Op, Pos, Value<'a>)>,
    },
}

/// The action as written.
#[derive(Debug, Clone)]
pub(super) struct ActionAst<'a> {
    pub word: &'a str,
    pub pos: Pos,
    pub text: Option<(Cow<'a, str>, Pos)>,
}

/// One rule as written.
#[derive(Debug, Clone)]
pub(super) struct RuleAst<'a> {
    /// Position of the `rule` keyword.
    pub pos: Pos,
    pub name: &'a str,
    pub cond: Option<Ast<'a>>,
    pub action: ActionAst<'a>,
}

/// Parses one file: the rules that parsed and the syntax errors.
pub(super) fn parse(src: &str) -> (Vec<RuleAst<'_>>, Vec<Diag>) {
    let mut parser = Parser {
        lexer: Lexer::new(src),
        tok: Tok::Eof,
        pos: Pos::default(),
    };
    let mut rules = Vec::new();
    let mut diags = Vec::new();
    if let Err(d) = parser.advance() {
        diags.push(d);
        parser.recover(None);
    }
    while diags.len() < DIAGNOSTICS_MAX {
        match parser.tok {
            Tok::Eof => break,
            Tok::Word("rule") => {
                let start = parser.pos;
                match parser.rule() {
                    Ok(rule) => rules.push(rule),
                    Err(d) => {
                        diags.push(d);
                        parser.recover(Some(start));
                    }
                }
            }
            _ => {
                let found = parser.tok.to_string();
                diags.push(Diag::new(
                    parser.pos,
                    format!("expected `rule` to start a rule, found {found}"),
                ));
                parser.recover(None);
            }
        }
    }
    (rules, diags)
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    tok: Tok<'a>,
    pos: Pos,
}

type Parsed<T> = Result<T, Diag>;

impl<'a> Parser<'a> {
    fn advance(&mut self) -> Parsed<()> {
        match self.lexer.next_token() {
            Ok((tok, pos)) => {
                self.tok = tok;
                self.pos = pos;
                Ok(())
            }
            Err(d) => {
                self.tok = Tok::Error;
                self.pos = d.pos;
                Err(d)
            }
        }
    }

    /// Skips to the next `rule` keyword (or the end), ignoring lexing errors.
    /// Stays on the current token if it is a `rule` other than `start`.
    fn recover(&mut self, start: Option<Pos>) {
        if self.tok == Tok::Word("rule") && Some(self.pos) != start {
            return;
        }
        loop {
            match self.advance() {
                Ok(()) if matches!(self.tok, Tok::Word("rule") | Tok::Eof) => return,
                _ => {}
            }
        }
    }

    fn unexpected(&self, expected: &str) -> Diag {
        Diag::new(self.pos, format!("expected {expected}, found {}", self.tok))
    }

    fn rule(&mut self) -> Parsed<RuleAst<'a>> {
        let pos = self.pos;
        let (name, name_pos) = self.lexer.name();
        if name.is_empty() {
            return Err(Diag::new(
                name_pos,
                "expected a rule name (letters, digits, `_`, `.`, `-`) after `rule`",
            ));
        }
        if self.lexer.eat_char(':').is_none() {
            let here = self.lexer.here();
            return Err(Diag::new(
                here,
                format!("expected `:` after the rule name `{name}`"),
            ));
        }
        self.advance()?;
        let cond = if self.tok == Tok::Word("when") {
            self.advance()?;
            Some(self.expr(0)?)
        } else {
            None
        };
        if self.tok != Tok::Word("then") {
            let expected = if cond.is_some() {
                "`and`, `or` or `then`"
            } else {
                "`when` or `then`"
            };
            return Err(self.unexpected(expected));
        }
        self.advance()?;
        let action = self.action()?;
        Ok(RuleAst {
            pos,
            name,
            cond,
            action,
        })
    }

    fn action(&mut self) -> Parsed<ActionAst<'a>> {
        let Tok::Word(word) = self.tok else {
            return Err(self.unexpected("an action (allow, reject, tempfail, discard, quarantine)"));
        };
        let pos = self.pos;
        self.advance()?;
        let text = match (&self.tok, word) {
            (Tok::Str(s), "reject" | "tempfail") => {
                let text = (s.clone(), self.pos);
                self.advance()?;
                Some(text)
            }
            _ => None,
        };
        Ok(ActionAst { word, pos, text })
    }

    fn expr(&mut self, depth: usize) -> Parsed<Ast<'a>> {
        let first = self.and(depth)?;
        if self.tok != Tok::Word("or") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.tok == Tok::Word("or") {
            self.advance()?;
            items.push(self.and(depth)?);
        }
        Ok(Ast::Or(items))
    }

    fn and(&mut self, depth: usize) -> Parsed<Ast<'a>> {
        let first = self.unary(depth)?;
        if self.tok != Tok::Word("and") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.tok == Tok::Word("and") {
            self.advance()?;
            items.push(self.unary(depth)?);
        }
        Ok(Ast::And(items))
    }

    fn deeper(&self, depth: usize) -> Parsed<usize> {
        if depth >= EXPR_DEPTH_MAX {
            return Err(Diag::new(
                self.pos,
                format!(
                    "expression nests deeper than {EXPR_DEPTH_MAX} levels of `(` and `not`; \
                     split the rule"
                ),
            ));
        }
        Ok(depth + 1)
    }

    fn unary(&mut self, depth: usize) -> Parsed<Ast<'a>> {
        match self.tok {
            Tok::Word("not") => {
                let depth = self.deeper(depth)?;
                self.advance()?;
                Ok(Ast::Not(Box::new(self.unary(depth)?)))
            }
            Tok::LParen => {
                let depth = self.deeper(depth)?;
                self.advance()?;
                let inner = self.expr(depth)?;
                if self.tok != Tok::RParen {
                    return Err(self.unexpected("`)`, `and` or `or`"));
                }
                self.advance()?;
                Ok(inner)
            }
            Tok::Word("true") => {
                self.advance()?;
                Ok(Ast::Const(true))
            }
            Tok::Word("false") => {
                self.advance()?;
                Ok(Ast::Const(false))
            }
            Tok::Word(field) if !KEYWORDS.contains(&field) => {
                let field_pos = self.pos;
                self.advance()?;
                let cmp = match self.op() {
                    Some(op) => {
                        let op_pos = self.pos;
                        self.advance()?;
                        Some((op, op_pos, self.value()?))
                    }
                    None => None,
                };
                Ok(Ast::Test {
                    field,
                    field_pos,
                    cmp,
                })
            }
            _ => Err(self.unexpected("a condition (a field, `not`, `(`, `true` or `false`)")),
        }
    }

    fn op(&self) -> Option<Op> {
        Some(match self.tok {
            Tok::EqEq => Op::Eq,
            Tok::Ne => Op::Ne,
            Tok::Lt => Op::Lt,
            Tok::Le => Op::Le,
            Tok::Gt => Op::Gt,
            Tok::Ge => Op::Ge,
            Tok::Tilde => Op::Match,
            Tok::Word("in") => Op::In,
            Tok::Word("starts_with") => Op::StartsWith,
            Tok::Word("ends_with") => Op::EndsWith,
            Tok::Word("contains") => Op::Contains,
            _ => return None,
        })
    }

    fn literal(&mut self) -> Parsed<(Lit<'a>, Pos)> {
        let pos = self.pos;
        let lit = match &self.tok {
            Tok::Str(s) => Lit::Str(s.clone()),
            Tok::Word(w) if !KEYWORDS.contains(w) => Lit::Word(w),
            _ => return Err(self.unexpected("a value (a quoted string, number or address)")),
        };
        self.advance()?;
        Ok((lit, pos))
    }

    fn value(&mut self) -> Parsed<Value<'a>> {
        if self.tok != Tok::LBracket {
            let (lit, pos) = self.literal()?;
            return Ok(Value::One(lit, pos));
        }
        let pos = self.pos;
        self.advance()?;
        let mut items = Vec::new();
        loop {
            if self.tok == Tok::RBracket {
                break;
            }
            items.push(self.literal()?);
            match self.tok {
                Tok::Comma => self.advance()?,
                Tok::RBracket => break,
                _ => return Err(self.unexpected("`,` or `]`")),
            }
        }
        self.advance()?;
        Ok(Value::List(items, pos))
    }
}
