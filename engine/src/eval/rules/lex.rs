//! Lexer of the rule language: a pull lexer over one file, tracking 1-based
//! line and column (in characters) of every token.
//!
//! Tokens:
//! ```text
//! word    = 1*( ALPHA / DIGIT / "_" / "." / ":" / "/" / "-" )   keywords, fields, numbers, IPs, CIDRs
//! string  = DQUOTE *( char / "\\" / "\"" ) DQUOTE                 one line; other "\x" kept as is
//! ops     = "==" / "!=" / "<" / "<=" / ">" / ">=" / "~" / "(" / ")" / "[" / "]" / ","
//! comment = "#" to end of line
//! ```
//! Rule names are lexed separately ([`Lexer::name`]) so that `rule x:` ends the
//! name at the colon even though `:` is a word character (IPv6 addresses).

use std::borrow::Cow;
use std::fmt;

/// A 1-based source position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(super) struct Pos {
    pub line: u32,
    pub column: u32,
}

/// A positioned error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Diag {
    pub pos: Pos,
    pub message: String,
}

impl Diag {
    pub(super) fn new(pos: Pos, message: impl Into<String>) -> Self {
        Self {
            pos,
            message: message.into(),
        }
    }
}

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok<'a> {
    /// A bare word: keyword, field, number, address, code, name.
    Word(&'a str),
    /// A double-quoted string with its escapes resolved.
    Str(Cow<'a, str>),
    EqEq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Tilde,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    /// End of input.
    Eof,
    /// Placeholder after a lexing error (never matched by the parser).
    Error,
}

impl fmt::Display for Tok<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Tok::Word(w) => return write!(f, "`{w}`"),
            Tok::Str(s) => {
                let short: String = s.chars().take(32).collect();
                let more = if short.len() < s.len() { "..." } else { "" };
                return write!(f, "string \"{short}{more}\"");
            }
            Tok::EqEq => "`==`",
            Tok::Ne => "`!=`",
            Tok::Lt => "`<`",
            Tok::Le => "`<=`",
            Tok::Gt => "`>`",
            Tok::Ge => "`>=`",
            Tok::Tilde => "`~`",
            Tok::LParen => "`(`",
            Tok::RParen => "`)`",
            Tok::LBracket => "`[`",
            Tok::RBracket => "`]`",
            Tok::Comma => "`,`",
            Tok::Eof => "end of file",
            Tok::Error => "an invalid token",
        };
        f.write_str(text)
    }
}

/// Whether `c` may appear in a bare word.
pub(super) fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-')
}

/// Whether `c` may appear in a rule name.
pub(super) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// The lexer: a cursor over one file.
pub(super) struct Lexer<'a> {
    src: &'a str,
    /// Byte offset of the next character.
    at: usize,
    pos: Pos,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(src: &'a str) -> Self {
        Self {
            src,
            at: 0,
            pos: Pos { line: 1, column: 1 },
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.at..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut chars = self.src[self.at..].chars();
        chars.next();
        chars.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        if c == '\n' {
            self.pos.line = self.pos.line.saturating_add(1);
            self.pos.column = 1;
        } else {
            self.pos.column = self.pos.column.saturating_add(1);
        }
        Some(c)
    }

    /// Skips white space and comments.
    fn skip_trivia(&mut self) {
        while let Some(c) = self.peek() {
            if c == '#' {
                while let Some(c) = self.peek() {
                    if c == '\n' {
                        break;
                    }
                    self.bump();
                }
            } else if c.is_whitespace() {
                self.bump();
            } else {
                break;
            }
        }
    }

    /// Takes characters while `keep` holds; returns the slice.
    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let start = self.at;
        while let Some(c) = self.peek() {
            if !keep(c) {
                break;
            }
            self.bump();
        }
        &self.src[start..self.at]
    }

    /// The next token and where it starts. On an error the lexer has moved
    /// past the offending text, so calling again makes progress.
    pub(super) fn next_token(&mut self) -> Result<(Tok<'a>, Pos), Diag> {
        self.skip_trivia();
        let pos = self.pos;
        let Some(c) = self.peek() else {
            return Ok((Tok::Eof, pos));
        };
        if is_word_char(c) {
            return Ok((Tok::Word(self.take_while(is_word_char)), pos));
        }
        if c == '"' {
            return self.string(pos).map(|s| (Tok::Str(s), pos));
        }
        self.bump();
        let two = |lexer: &mut Self, tok| {
            lexer.bump();
            Ok((tok, pos))
        };
        match (c, self.peek()) {
            ('=', Some('=')) => two(self, Tok::EqEq),
            ('!', Some('=')) => two(self, Tok::Ne),
            ('<', Some('=')) => two(self, Tok::Le),
            ('>', Some('=')) => two(self, Tok::Ge),
            ('<', _) => Ok((Tok::Lt, pos)),
            ('>', _) => Ok((Tok::Gt, pos)),
            ('~', _) => Ok((Tok::Tilde, pos)),
            ('(', _) => Ok((Tok::LParen, pos)),
            (')', _) => Ok((Tok::RParen, pos)),
            ('[', _) => Ok((Tok::LBracket, pos)),
            (']', _) => Ok((Tok::RBracket, pos)),
            (',', _) => Ok((Tok::Comma, pos)),
            ('=', _) => Err(Diag::new(pos, "unexpected `=`; compare with `==`")),
            ('!', _) => Err(Diag::new(pos, "unexpected `!`; write `not` or `!=`")),
            (other, _) => Err(Diag::new(
                pos,
                format!("unexpected character {other:?}; text values go in double quotes"),
            )),
        }
    }

    /// A double-quoted string starting at the current `"`.
    fn string(&mut self, pos: Pos) -> Result<Cow<'a, str>, Diag> {
        self.bump();
        let start = self.at;
        let mut owned: Option<String> = None;
        loop {
            match self.peek() {
                None | Some('\n') | Some('\r') => {
                    return Err(Diag::new(
                        pos,
                        "unterminated string: add the closing `\"` on the same line",
                    ));
                }
                Some('"') => {
                    let end = self.at;
                    self.bump();
                    return Ok(match owned {
                        Some(s) => Cow::Owned(s),
                        None => Cow::Borrowed(&self.src[start..end]),
                    });
                }
                Some('\\') if matches!(self.peek2(), Some('"') | Some('\\')) => {
                    let s = owned.get_or_insert_with(|| self.src[start..self.at].to_owned());
                    self.bump();
                    if let Some(c) = self.bump() {
                        s.push(c);
                    }
                }
                Some(c) => {
                    if let Some(s) = owned.as_mut() {
                        s.push(c);
                    }
                    self.bump();
                }
            }
        }
    }

    /// A rule name (letters, digits, `_`, `.`, `-`), for the header
    /// `rule NAME:`. Returns an empty name when the next character cannot
    /// start one (the caller reports it).
    pub(super) fn name(&mut self) -> (&'a str, Pos) {
        self.skip_trivia();
        let pos = self.pos;
        (self.take_while(is_name_char), pos)
    }

    /// Consumes `c` if it comes next (after trivia); returns its position.
    pub(super) fn eat_char(&mut self, c: char) -> Option<Pos> {
        self.skip_trivia();
        let pos = self.pos;
        if self.peek() == Some(c) {
            self.bump();
            Some(pos)
        } else {
            None
        }
    }

    /// The position of the next non-trivia character.
    pub(super) fn here(&mut self) -> Pos {
        self.skip_trivia();
        self.pos
    }
}
