//! The SMTP ingress session for Postfix's `content_filter` (after-queue path,
//! port 10024), sans-I/O.
//!
//! [`Session::receive`] takes the bytes the runtime read and the current
//! time; it appends replies to [`Output::reply`], message content to
//! [`Output::data`] and [`Event`]s to [`Output::events`], and says how many
//! bytes it consumed. The runtime keeps the unconsumed rest (a partial
//! command line, or everything after the end of a message) and feeds it
//! again, with more bytes, on the next call.
//!
//! **The final reply to a message is not the session's to give.** When the
//! end of data arrives, the session emits [`Event::MessageComplete`] and
//! stops consuming input; the runtime appends the message to the spool,
//! waits for the group commit, and only then calls
//! [`Session::finish_message`] with `250 2.0.0 Ok: queued as …` (or a 4xx
//! if the spool failed), and resumes feeding the bytes it kept. So no 250
//! leaves before the message is durable, and pipelined commands after the
//! dot are answered after it, in order.
//!
//! ```text
//! greeting ─▶ Command ──DATA 354──▶ Data ──CRLF.CRLF──▶ AwaitFinish ──finish_message──▶ Command
//!               │  └──BDAT n──▶ Bdat(n bytes) ──chunk done──▶ Command (or AwaitFinish if LAST)
//!               └──QUIT / 421 (errors, time budget, drain)──▶ Closed
//! ```
//!
//! Replies carry RFC 3463 enhanced status codes, except the greeting, the
//! EHLO/HELO replies (RFC 2034 §3 exempts them) and the 354 intermediate
//! reply. Limits, each answered with a clear reply:
//!
//! | limit | reply |
//! |---|---|
//! | command line over [`Settings::command_line_bytes_max`] (512) | `500 5.5.2` |
//! | text line over [`Settings::text_line_bytes_max`] (1000) | `500 5.5.2` at the end of data |
//! | more than [`Settings::rcpt_count_max`] recipients | `452 4.5.3` |
//! | `SIZE=` or content over [`Settings::message_bytes_max`] | `552 5.3.4` |
//! | [`Settings::errors_max`] client errors | `421 4.7.0`, close |
//! | [`Settings::session_time_max`] since the greeting | `421 4.4.2`, close |
//! | draining ([`Session::drain`]) | `421 4.3.2`, close |
//!
//! Memory per session is bounded: the envelope (recipients × address
//! length), XFORWARD values, and the content in [`Output::data`], which
//! never holds more than `message_bytes_max` bytes; the un-stuffer counts
//! what it does not store.

use std::time::Duration;

use memchr::memchr;

use super::address::{check_mailbox, parse_params, parse_path, PathError};
use super::dot::Unstuffer;
use super::reply::{Reply, Status};
use super::xforward::{Xforward, XforwardAttr};
use super::{
    BodyType, COMMAND_LINE_BYTES_CEILING, COMMAND_LINE_BYTES_MAX, ERRORS_DEFAULT,
    RCPT_COUNT_DEFAULT, SESSION_TIME_DEFAULT, TEXT_LINE_BYTES_MAX,
};
use crate::limits::{MESSAGE_BYTES_DEFAULT, RCPT_COUNT_MAX};

/// Per-listener options, fixed for a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Our host name, in the greeting, EHLO and 421 replies.
    pub hostname: String,
    /// Largest message (content bytes after un-stuffing), announced as
    /// `SIZE`. Default [`MESSAGE_BYTES_DEFAULT`]; clamped to the spool's
    /// [`crate::spool::BODY_BYTES_MAX`].
    pub message_bytes_max: u64,
    /// Most recipients per message; more get `452 4.5.3`. Default
    /// [`RCPT_COUNT_DEFAULT`], at most [`RCPT_COUNT_MAX`].
    pub rcpt_count_max: u32,
    /// Client errors (syntax, sequence, unknown commands) before `421 4.7.0`.
    /// Default [`ERRORS_DEFAULT`].
    pub errors_max: u32,
    /// Time from the greeting after which the session is closed with
    /// `421 4.4.2` (checked against the `now` the runtime passes in).
    /// Default [`SESSION_TIME_DEFAULT`].
    pub session_time_max: Duration,
    /// Longest command line, CRLF included. Default
    /// [`COMMAND_LINE_BYTES_MAX`]; clamped to [`COMMAND_LINE_BYTES_CEILING`].
    pub command_line_bytes_max: usize,
    /// Longest DATA text line, CRLF included. Default [`TEXT_LINE_BYTES_MAX`].
    pub text_line_bytes_max: usize,
    /// Announce and accept XFORWARD. Only for trusted peers (the runtime
    /// decides per connection, e.g. loopback only).
    pub xforward: bool,
    /// Announce and accept BDAT (RFC 3030 CHUNKING).
    pub chunking: bool,
    /// Announce and accept SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// Greet with `421 4.3.2` and close (connection over the shard's
    /// ceiling, or daemon draining): Postfix defers and retries.
    pub refuse: bool,
}

impl Settings {
    /// The defaults, with our host name.
    #[must_use]
    pub fn new(hostname: impl Into<String>) -> Self {
        Settings {
            hostname: hostname.into(),
            message_bytes_max: MESSAGE_BYTES_DEFAULT,
            rcpt_count_max: RCPT_COUNT_DEFAULT,
            errors_max: ERRORS_DEFAULT,
            session_time_max: SESSION_TIME_DEFAULT,
            command_line_bytes_max: COMMAND_LINE_BYTES_MAX,
            text_line_bytes_max: TEXT_LINE_BYTES_MAX,
            xforward: true,
            chunking: true,
            smtputf8: true,
            refuse: false,
        }
    }
}

/// The envelope of a message, final once DATA was accepted (or the first
/// BDAT chunk arrived).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The client's EHLO/HELO name (Postfix's `myhostname`).
    pub helo: String,
    /// EHLO (true) or HELO.
    pub esmtp: bool,
    /// The reverse-path without brackets; empty for the null sender `<>`.
    pub sender: String,
    /// The forward-paths without brackets, in order, at least one.
    pub recipients: Vec<String>,
    /// `BODY=` of MAIL.
    pub body: BodyType,
    /// `SMTPUTF8` was given at MAIL.
    pub smtputf8: bool,
    /// `SIZE=` of MAIL, if given.
    pub size_declared: Option<u64>,
    /// The original client's facts (empty without XFORWARD).
    pub xforward: Xforward,
    /// The content arrives in BDAT chunks (raw) rather than DATA.
    pub chunked: bool,
}

impl Envelope {
    /// Facts for the spool record (`helo`, `body`, `smtputf8`, then the
    /// XFORWARD attributes as [`Xforward::facts`] names them).
    #[must_use]
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        let mut facts = vec![("helo", self.helo.clone())];
        if self.body != BodyType::SevenBit {
            facts.push(("body", self.body.keyword().to_owned()));
        }
        if self.smtputf8 {
            facts.push(("smtputf8", "1".to_owned()));
        }
        for (name, value) in self.xforward.facts() {
            facts.push((name, value.to_owned()));
        }
        facts
    }
}

/// Why a message in progress was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortReason {
    /// More content than `message_bytes_max` (`552 5.3.4` sent).
    TooBig,
    /// A text line over `text_line_bytes_max` (`500 5.5.2` sent).
    LineTooLong,
    /// RSET, EHLO or HELO between BDAT chunks.
    Reset,
    /// QUIT between BDAT chunks.
    Quit,
    /// The session closed (time budget, too many errors, the peer went
    /// away, [`Session::disconnected`]).
    Closed,
}

/// What happened, beyond the replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// DATA got its 354 (or the first BDAT chunk was accepted): the
    /// envelope is final and the content starts arriving in
    /// [`Output::data`] (cleared at this point).
    Envelope(Box<Envelope>),
    /// The end of the message arrived: [`Output::data`] holds the whole
    /// content (un-stuffed, line ends as received). The session consumes
    /// nothing more until [`Session::finish_message`].
    MessageComplete {
        /// Content bytes.
        bytes: u64,
    },
    /// The message in progress was dropped; [`Output::data`] was cleared.
    MessageAborted(AbortReason),
}

/// Where the session writes. The runtime owns it (one per connection),
/// writes and clears `reply` after each call, takes `data` at
/// [`Event::MessageComplete`], and drains `events`.
#[derive(Debug, Default)]
pub struct Output {
    /// Reply bytes to send, in order.
    pub reply: Vec<u8>,
    /// The current message's content; at most `message_bytes_max` bytes.
    pub data: Vec<u8>,
    /// Events, in order.
    pub events: Vec<Event>,
}

/// What one [`Session::receive`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Bytes consumed from the front of the input; keep the rest.
    pub consumed: usize,
    /// A message is complete and waits for [`Session::finish_message`];
    /// the unconsumed bytes must be fed again after it.
    pub awaiting_finish: bool,
    /// Write what is in [`Output::reply`], then close the connection.
    pub close: bool,
}

#[derive(Debug, Clone)]
enum State {
    Command,
    /// Skipping a command line that is too long, up to its LF.
    DiscardLine,
    Data(Unstuffer),
    Bdat(Chunk),
    AwaitFinish,
    Closed,
}

/// A BDAT chunk being read.
#[derive(Debug, Clone)]
struct Chunk {
    size: u64,
    remaining: u64,
    last: bool,
    /// The reply when the chunk is refused (its bytes are still read), and
    /// whether it counts as a client error.
    refusal: Option<(Reply, bool)>,
}

/// One MAIL transaction.
#[derive(Debug, Clone, Default)]
struct Transaction {
    sender: String,
    recipients: Vec<String>,
    body: BodyType,
    smtputf8: bool,
    size_declared: Option<u64>,
    /// The [`Event::Envelope`] was emitted and no abort or end followed.
    started: bool,
    /// BDAT was used.
    bdat: bool,
    /// BDAT content bytes so far.
    bytes: u64,
    /// A BDAT failure, repeated for every later chunk until LAST or RSET.
    failed: Option<Reply>,
}

/// How a command was answered.
enum Answer {
    /// A reply; not an error.
    Reply(Reply),
    /// A client error: counts towards `errors_max`.
    Error(Reply),
    /// Reply, then close.
    Close(Reply),
    /// Answered later (BDAT, after its chunk).
    Later,
}

/// Smallest command line limit honoured (a lower setting would refuse EHLO).
const COMMAND_LINE_BYTES_FLOOR: usize = 64;

const fn st(class: u8, subject: u16, detail: u16) -> Status {
    Status::new(class, subject, detail)
}

/// One SMTP ingress session.
#[derive(Debug, Clone)]
pub struct Session {
    settings: Settings,
    state: State,
    started: Duration,
    helo: Option<String>,
    esmtp: bool,
    xforward: Xforward,
    tx: Option<Transaction>,
    errors: u32,
    messages: u32,
    draining: bool,
}

impl Session {
    /// A session that has just been accepted at `now` (any monotonic
    /// clock); writes the greeting to `out`.
    #[must_use]
    pub fn new(mut settings: Settings, now: Duration, out: &mut Output) -> Self {
        settings.command_line_bytes_max = settings
            .command_line_bytes_max
            .clamp(COMMAND_LINE_BYTES_FLOOR, COMMAND_LINE_BYTES_CEILING);
        settings.rcpt_count_max = settings.rcpt_count_max.clamp(1, RCPT_COUNT_MAX as u32);
        // A message must fit one spool record.
        settings.message_bytes_max = settings
            .message_bytes_max
            .min(crate::spool::BODY_BYTES_MAX as u64);
        settings.errors_max = settings.errors_max.max(1);
        let mut session = Session {
            state: State::Command,
            started: now,
            helo: None,
            esmtp: false,
            xforward: Xforward::default(),
            tx: None,
            errors: 0,
            messages: 0,
            draining: false,
            settings,
        };
        if session.settings.refuse {
            let text = format!("{} Service not available, try again later", session.host());
            Reply::new(421, st(4, 3, 2), text).encode(&mut out.reply);
            session.state = State::Closed;
        } else {
            let text = format!("{} ESMTP mailborder", session.host());
            Reply::plain(220, text).encode(&mut out.reply);
        }
        session
    }

    fn host(&self) -> &str {
        &self.settings.hostname
    }

    /// The session was closed (QUIT, a 421, or [`Session::disconnected`]).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// A message is complete and waits for [`Session::finish_message`].
    #[must_use]
    pub fn awaiting_finish(&self) -> bool {
        matches!(self.state, State::AwaitFinish)
    }

    /// A MAIL transaction is open (a draining runtime waits for it).
    #[must_use]
    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    /// Messages answered with a 2xx by [`Session::finish_message`].
    #[must_use]
    pub fn messages(&self) -> u32 {
        self.messages
    }

    /// The client's EHLO/HELO name, once given.
    #[must_use]
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    /// The XFORWARD facts received so far for the next transaction.
    #[must_use]
    pub fn xforward(&self) -> &Xforward {
        &self.xforward
    }

    /// When the session-time budget runs out (same clock as `now`).
    #[must_use]
    pub fn deadline(&self) -> Duration {
        self.started.saturating_add(self.settings.session_time_max)
    }

    /// Handles the bytes at the front of `input` (see the module docs).
    pub fn receive(&mut self, input: &[u8], now: Duration, out: &mut Output) -> Progress {
        self.tick(now, out);
        let mut pos = 0;
        while pos < input.len() {
            let rest = &input[pos..];
            let used = match self.state {
                State::Closed => rest.len(),
                State::AwaitFinish => break,
                State::Command => match self.command(rest, out) {
                    Some(used) => used,
                    None => break,
                },
                State::DiscardLine => self.discard_line(rest, out),
                State::Data(_) => self.data_step(rest, out),
                State::Bdat(_) => self.bdat_step(rest, out),
            };
            pos += used;
        }
        Progress {
            consumed: pos,
            awaiting_finish: self.awaiting_finish(),
            close: self.is_closed(),
        }
    }

    /// Answers the message announced by [`Event::MessageComplete`], once
    /// the runtime made it durable (`250`), or could not (`4xx`), or
    /// refuses it (`5xx`). Clears [`Output::data`] and ends the transaction;
    /// then feed the bytes kept since.
    ///
    /// # Panics
    /// If no message is waiting (a runtime bug: it would send a reply the
    /// client never asked for), or if `reply` is not 2xx, 4xx or 5xx.
    pub fn finish_message(&mut self, reply: &Reply, out: &mut Output) {
        assert!(
            self.awaiting_finish(),
            "finish_message without a complete message"
        );
        assert!(!reply.is_intermediate(), "a final reply is 2xx, 4xx or 5xx");
        reply.encode(&mut out.reply);
        if reply.is_positive() {
            self.messages += 1;
        }
        out.data.clear();
        self.end_transaction();
        self.state = State::Command;
    }

    /// Checks the session-time budget at `now` (also done by
    /// [`Session::receive`]); call it from the runtime's timer. Past the
    /// budget the session answers `421 4.4.2` and closes, unless a message
    /// waits for [`Session::finish_message`] (that answer comes first; the
    /// next call closes). Returns whether the session is closed.
    pub fn tick(&mut self, now: Duration, out: &mut Output) -> bool {
        if matches!(self.state, State::Closed | State::AwaitFinish) || now < self.deadline() {
            return self.is_closed();
        }
        let text = format!("{} Error: session time limit exceeded", self.host());
        Reply::new(421, st(4, 4, 2), text).encode(&mut out.reply);
        self.close(out);
        true
    }

    /// Starts draining: an idle session is answered `421 4.3.2` and closed
    /// now (returns true); one in a transaction finishes it, and its next
    /// MAIL gets the 421.
    pub fn drain(&mut self, out: &mut Output) -> bool {
        self.draining = true;
        if self.tx.is_none() && matches!(self.state, State::Command) {
            self.shutting_down(out);
            return true;
        }
        self.is_closed()
    }

    /// The connection is gone (EOF, I/O error, idle timeout): drops the
    /// message in progress ([`Event::MessageAborted`]) and closes.
    pub fn disconnected(&mut self, out: &mut Output) {
        if !self.is_closed() {
            self.close(out);
        }
    }

    fn shutting_down(&mut self, out: &mut Output) {
        let text = format!("{} Service shutting down, closing channel", self.host());
        Reply::new(421, st(4, 3, 2), text).encode(&mut out.reply);
        self.close(out);
    }

    fn close(&mut self, out: &mut Output) {
        self.abort_transaction(AbortReason::Closed, out);
        self.state = State::Closed;
    }

    /// Drops the open transaction; a started message is reported aborted.
    fn abort_transaction(&mut self, reason: AbortReason, out: &mut Output) {
        if let Some(tx) = self.tx.take() {
            if tx.started {
                out.data.clear();
                out.events.push(Event::MessageAborted(reason));
            }
        }
    }

    /// The transaction is over (answered or refused at its end): XFORWARD
    /// facts apply to one transaction only.
    fn end_transaction(&mut self) {
        self.tx = None;
        self.xforward = Xforward::default();
    }

    /// One command line, if complete; the bytes used.
    fn command(&mut self, input: &[u8], out: &mut Output) -> Option<usize> {
        let max = self.settings.command_line_bytes_max;
        match memchr(b'\n', input) {
            Some(lf) if lf < max => {
                let line = &input[..lf];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let answer = self.dispatch(line, out);
                self.answer(answer, out);
                Some(lf + 1)
            }
            Some(lf) => {
                self.line_too_long(out);
                Some(lf + 1)
            }
            None if input.len() >= max => {
                self.state = State::DiscardLine;
                Some(input.len())
            }
            None => None,
        }
    }

    fn discard_line(&mut self, input: &[u8], out: &mut Output) -> usize {
        match memchr(b'\n', input) {
            Some(lf) => {
                self.state = State::Command;
                self.line_too_long(out);
                lf + 1
            }
            None => input.len(),
        }
    }

    fn line_too_long(&mut self, out: &mut Output) {
        let text = format!(
            "Error: command line longer than {} bytes",
            self.settings.command_line_bytes_max
        );
        self.answer(Answer::Error(Reply::new(500, st(5, 5, 2), text)), out);
    }

    fn answer(&mut self, answer: Answer, out: &mut Output) {
        match answer {
            Answer::Reply(reply) => reply.encode(&mut out.reply),
            Answer::Close(reply) => {
                reply.encode(&mut out.reply);
                self.close(out);
            }
            Answer::Error(reply) => {
                self.errors += 1;
                if self.errors >= self.settings.errors_max {
                    let text = format!("{} Error: too many errors", self.host());
                    Reply::new(421, st(4, 7, 0), text).encode(&mut out.reply);
                    self.close(out);
                } else {
                    reply.encode(&mut out.reply);
                }
            }
            Answer::Later => {}
        }
    }

    fn dispatch(&mut self, line: &[u8], out: &mut Output) -> Answer {
        let Ok(line) = std::str::from_utf8(line) else {
            return Answer::Error(Reply::new(500, st(5, 5, 2), "Error: bad UTF-8 syntax"));
        };
        let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
        let is = |name: &str| verb.eq_ignore_ascii_case(name);
        if is("EHLO") || is("HELO") {
            self.hello(arg, is("EHLO"), out)
        } else if is("MAIL") {
            self.mail(arg, out)
        } else if is("RCPT") {
            self.rcpt(arg)
        } else if is("DATA") {
            self.data(arg, out)
        } else if is("BDAT") && self.settings.chunking {
            self.bdat(arg, out)
        } else if is("RSET") {
            if !arg.trim().is_empty() {
                return Answer::Error(Reply::new(501, st(5, 5, 4), "Syntax: RSET"));
            }
            self.abort_transaction(AbortReason::Reset, out);
            self.end_transaction();
            Answer::Reply(Reply::new(250, st(2, 0, 0), "Ok"))
        } else if is("NOOP") {
            Answer::Reply(Reply::new(250, st(2, 0, 0), "Ok"))
        } else if is("QUIT") {
            self.abort_transaction(AbortReason::Quit, out);
            Answer::Close(Reply::new(221, st(2, 0, 0), "Bye"))
        } else if is("VRFY") {
            if arg.trim().is_empty() {
                return Answer::Error(Reply::new(501, st(5, 5, 4), "Syntax: VRFY address"));
            }
            let text = "Cannot VRFY user, but will accept message and attempt delivery";
            Answer::Reply(Reply::new(252, st(2, 0, 0), text))
        } else if is("HELP") {
            let text = "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP XFORWARD";
            Answer::Reply(Reply::new(214, st(2, 0, 0), text))
        } else if is("XFORWARD") && self.settings.xforward {
            self.xforward_command(arg)
        } else if [
            "STARTTLS", "AUTH", "ETRN", "EXPN", "TURN", "ATRN", "BDAT", "XFORWARD",
        ]
        .iter()
        .any(|c| is(c))
        {
            Answer::Error(Reply::new(
                502,
                st(5, 5, 1),
                "Error: command not implemented",
            ))
        } else {
            Answer::Error(Reply::new(
                500,
                st(5, 5, 1),
                "Error: command not recognized",
            ))
        }
    }

    fn hello(&mut self, arg: &str, esmtp: bool, out: &mut Output) -> Answer {
        let name = arg.trim_matches(' ');
        if name.is_empty() {
            let text = if esmtp {
                "Syntax: EHLO hostname"
            } else {
                "Syntax: HELO hostname"
            };
            return Answer::Error(Reply::new(501, st(5, 5, 4), text));
        }
        // RFC 5321 §4.1.4: EHLO/HELO in a session resets it like RSET.
        self.abort_transaction(AbortReason::Reset, out);
        self.end_transaction();
        self.helo = Some(name.to_owned());
        self.esmtp = esmtp;
        if !esmtp {
            return Answer::Reply(Reply::plain(250, self.host().to_owned()));
        }
        let mut lines = vec![
            self.host().to_owned(),
            "PIPELINING".to_owned(),
            format!("SIZE {}", self.settings.message_bytes_max),
            "8BITMIME".to_owned(),
        ];
        if self.settings.smtputf8 {
            lines.push("SMTPUTF8".to_owned());
        }
        lines.push("ENHANCEDSTATUSCODES".to_owned());
        if self.settings.chunking {
            lines.push("CHUNKING".to_owned());
        }
        if self.settings.xforward {
            let names: Vec<&str> = XforwardAttr::ALL.iter().map(|a| a.name()).collect();
            lines.push(format!("XFORWARD {}", names.join(" ")));
        }
        Answer::Reply(Reply::multiline(250, None, lines))
    }

    fn mail(&mut self, arg: &str, out: &mut Output) -> Answer {
        if self.helo.is_none() {
            return Answer::Error(Reply::new(503, st(5, 5, 1), "Error: send HELO/EHLO first"));
        }
        if self.tx.is_some() {
            return Answer::Error(Reply::new(503, st(5, 5, 1), "Error: nested MAIL command"));
        }
        if self.draining {
            self.shutting_down(out);
            return Answer::Later;
        }
        let Some(path) = strip_prefix_ci(arg.trim_start_matches(' '), "FROM:") else {
            let text = "Syntax: MAIL FROM:<address>";
            return Answer::Error(Reply::new(501, st(5, 5, 4), text));
        };
        let path = match parse_path(path) {
            Ok(p) if p.address.is_empty() || check_mailbox(p.address, false).is_ok() => p,
            Ok(_) | Err(PathError::Syntax | PathError::BadAddress) => {
                let text = "Error: bad sender address syntax";
                return Answer::Error(Reply::new(501, st(5, 1, 7), text));
            }
            Err(PathError::TooLong) => {
                let text = "Error: sender address too long";
                return Answer::Error(Reply::new(501, st(5, 1, 7), text));
            }
        };
        let mut tx = Transaction {
            sender: path.address.to_owned(),
            ..Transaction::default()
        };
        if let Err(answer) = self.mail_params(path.params, &mut tx) {
            return answer;
        }
        if !tx.sender.is_ascii() && !tx.smtputf8 {
            let text = "Error: non-ASCII sender address needs SMTPUTF8";
            return Answer::Error(Reply::new(553, st(5, 6, 7), text));
        }
        self.tx = Some(tx);
        Answer::Reply(Reply::new(250, st(2, 1, 0), "Ok"))
    }

    fn mail_params(&self, params: &str, tx: &mut Transaction) -> Result<(), Answer> {
        let error = |code, s, text: String| Err(Answer::Error(Reply::new(code, s, text)));
        let Ok(params) = parse_params(params) else {
            return error(501, st(5, 5, 4), "Error: bad MAIL parameter syntax".into());
        };
        if !params.is_empty() && !self.esmtp {
            return error(555, st(5, 5, 4), "Error: MAIL parameters need EHLO".into());
        }
        for (key, value) in params {
            match (key.to_ascii_uppercase().as_str(), value) {
                ("SIZE", Some(v)) => {
                    let Some(n) = parse_decimal(v) else {
                        return error(501, st(5, 5, 4), "Error: bad SIZE value".into());
                    };
                    if n > self.settings.message_bytes_max {
                        let text = "Error: message size exceeds fixed limit";
                        return Err(Answer::Reply(Reply::new(552, st(5, 3, 4), text)));
                    }
                    tx.size_declared = Some(n);
                }
                ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => {
                    tx.body = BodyType::SevenBit;
                }
                ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => {
                    tx.body = BodyType::EightBitMime;
                }
                ("SMTPUTF8", None) if self.settings.smtputf8 => tx.smtputf8 = true,
                _ => {
                    let text = format!("Error: unsupported MAIL parameter {key}");
                    return error(555, st(5, 5, 4), text);
                }
            }
        }
        Ok(())
    }

    fn rcpt(&mut self, arg: &str) -> Answer {
        let error = |code, s, text: &str| Answer::Error(Reply::new(code, s, text));
        let Some(tx) = self.tx.as_mut() else {
            return error(503, st(5, 5, 1), "Error: need MAIL command");
        };
        if tx.bdat {
            return error(503, st(5, 5, 1), "Error: RCPT after BDAT");
        }
        let Some(path) = strip_prefix_ci(arg.trim_start_matches(' '), "TO:") else {
            return error(501, st(5, 5, 4), "Syntax: RCPT TO:<address>");
        };
        let path = match parse_path(path) {
            Ok(p) if check_mailbox(p.address, true).is_ok() => p,
            Ok(_) | Err(PathError::Syntax | PathError::BadAddress) => {
                return error(501, st(5, 1, 3), "Error: bad recipient address syntax");
            }
            Err(PathError::TooLong) => {
                return error(501, st(5, 1, 3), "Error: recipient address too long");
            }
        };
        if !path.params.is_empty() {
            let key = path.params.split([' ', '=']).next().unwrap_or_default();
            let text = format!("Error: unsupported RCPT parameter {key}");
            return Answer::Error(Reply::new(555, st(5, 5, 4), text));
        }
        if !path.address.is_ascii() && !tx.smtputf8 {
            return error(
                553,
                st(5, 6, 7),
                "Error: non-ASCII recipient needs SMTPUTF8",
            );
        }
        if tx.recipients.len() >= self.settings.rcpt_count_max as usize {
            let text = "Error: too many recipients";
            return Answer::Reply(Reply::new(452, st(4, 5, 3), text));
        }
        tx.recipients.push(path.address.to_owned());
        Answer::Reply(Reply::new(250, st(2, 1, 5), "Ok"))
    }

    /// Emits the envelope of the open transaction and clears the content.
    fn start_message(&mut self, chunked: bool, out: &mut Output) {
        let helo = self.helo.clone().unwrap_or_default();
        let (esmtp, xforward) = (self.esmtp, self.xforward.clone());
        let Some(tx) = self.tx.as_mut() else {
            return;
        };
        tx.started = true;
        out.data.clear();
        out.events.push(Event::Envelope(Box::new(Envelope {
            helo,
            esmtp,
            sender: tx.sender.clone(),
            recipients: std::mem::take(&mut tx.recipients),
            body: tx.body,
            smtputf8: tx.smtputf8,
            size_declared: tx.size_declared,
            xforward,
            chunked,
        })));
    }

    fn data(&mut self, arg: &str, out: &mut Output) -> Answer {
        if !arg.trim().is_empty() {
            return Answer::Error(Reply::new(501, st(5, 5, 4), "Syntax: DATA"));
        }
        let Some(tx) = &self.tx else {
            return Answer::Error(Reply::new(503, st(5, 5, 1), "Error: need MAIL command"));
        };
        if tx.bdat {
            return Answer::Error(Reply::new(503, st(5, 5, 1), "Error: DATA after BDAT"));
        }
        if tx.recipients.is_empty() {
            return Answer::Error(Reply::new(554, st(5, 5, 1), "Error: no valid recipients"));
        }
        self.start_message(false, out);
        self.state = State::Data(Unstuffer::new(
            self.settings.text_line_bytes_max,
            self.settings.message_bytes_max,
        ));
        Answer::Reply(Reply::plain(354, "End data with <CR><LF>.<CR><LF>"))
    }

    fn data_step(&mut self, input: &[u8], out: &mut Output) -> usize {
        let State::Data(unstuffer) = &mut self.state else {
            unreachable!("data_step outside DATA");
        };
        let fed = unstuffer.feed(input, &mut out.data);
        if !fed.ended {
            return fed.consumed;
        }
        let (too_big, long_line, bytes) = (
            unstuffer.too_big(),
            unstuffer.long_line(),
            unstuffer.total(),
        );
        self.state = State::Command;
        if too_big {
            self.abort_transaction(AbortReason::TooBig, out);
            self.end_transaction();
            let reply = Reply::new(552, st(5, 3, 4), "Error: message file too big");
            reply.encode(&mut out.reply);
        } else if long_line {
            self.abort_transaction(AbortReason::LineTooLong, out);
            self.end_transaction();
            let text = format!(
                "Error: message line longer than {} bytes",
                self.settings.text_line_bytes_max
            );
            Reply::new(500, st(5, 5, 2), text).encode(&mut out.reply);
        } else {
            out.events.push(Event::MessageComplete { bytes });
            self.state = State::AwaitFinish;
        }
        fed.consumed
    }

    fn bdat(&mut self, arg: &str, out: &mut Output) -> Answer {
        let mut words = arg.split(' ').filter(|w| !w.is_empty());
        let size = words.next().and_then(parse_decimal);
        let last = match words.next() {
            None => Some(false),
            Some(w) if w.eq_ignore_ascii_case("LAST") => Some(true),
            Some(_) => None,
        };
        let (Some(size), Some(last), None) = (size, last, words.next()) else {
            // The chunk length is unknown, so the byte stream cannot be
            // followed any further.
            let text = "Syntax: BDAT chunk-size [LAST]; closing";
            return Answer::Close(Reply::new(501, st(5, 5, 4), text));
        };
        let refusal = self.bdat_refusal(size, out);
        if refusal.is_none() {
            let start = self.tx.as_ref().is_some_and(|tx| !tx.started);
            if start {
                self.start_message(true, out);
            }
            if let Some(tx) = self.tx.as_mut() {
                tx.bdat = true;
            }
        }
        self.state = State::Bdat(Chunk {
            size,
            remaining: size,
            last,
            refusal,
        });
        if size == 0 {
            self.chunk_done(out);
        }
        Answer::Later
    }

    /// Why a BDAT chunk of `size` bytes is refused, if it is (the reply and
    /// whether it is a client error).
    fn bdat_refusal(&mut self, size: u64, out: &mut Output) -> Option<(Reply, bool)> {
        let max = self.settings.message_bytes_max;
        let Some(tx) = self.tx.as_mut() else {
            let reply = Reply::new(503, st(5, 5, 1), "Error: need MAIL command");
            return Some((reply, true));
        };
        if let Some(failed) = &tx.failed {
            return Some((failed.clone(), false));
        }
        if !tx.bdat && tx.recipients.is_empty() {
            let reply = Reply::new(554, st(5, 5, 1), "Error: no valid recipients");
            return Some((reply, true));
        }
        if tx.bytes.saturating_add(size) > max {
            let reply = Reply::new(552, st(5, 3, 4), "Error: message file too big");
            tx.failed = Some(reply.clone());
            if tx.started {
                tx.started = false;
                out.data.clear();
                out.events.push(Event::MessageAborted(AbortReason::TooBig));
            }
            return Some((reply, false));
        }
        None
    }

    fn bdat_step(&mut self, input: &[u8], out: &mut Output) -> usize {
        let State::Bdat(chunk) = &mut self.state else {
            unreachable!("bdat_step outside BDAT");
        };
        let n = usize::try_from(chunk.remaining).map_or(input.len(), |r| r.min(input.len()));
        chunk.remaining -= n as u64;
        let (accepted, done) = (chunk.refusal.is_none(), chunk.remaining == 0);
        if accepted {
            // Within message_bytes_max: checked before the chunk was accepted.
            out.data.extend_from_slice(&input[..n]);
            if let Some(tx) = self.tx.as_mut() {
                tx.bytes += n as u64;
            }
        }
        if done {
            self.chunk_done(out);
        }
        n
    }

    fn chunk_done(&mut self, out: &mut Output) {
        let State::Bdat(chunk) = std::mem::replace(&mut self.state, State::Command) else {
            unreachable!("chunk_done outside BDAT");
        };
        match chunk.refusal {
            Some((reply, counted)) => {
                if chunk.last {
                    self.abort_transaction(AbortReason::Reset, out);
                    self.end_transaction();
                }
                let answer = if counted {
                    Answer::Error(reply)
                } else {
                    Answer::Reply(reply)
                };
                self.answer(answer, out);
            }
            None if chunk.last => {
                let bytes = self.tx.as_ref().map_or(0, |tx| tx.bytes);
                out.events.push(Event::MessageComplete { bytes });
                self.state = State::AwaitFinish;
            }
            None => {
                let text = format!("Ok: {} octets received", chunk.size);
                Reply::new(250, st(2, 0, 0), text).encode(&mut out.reply);
            }
        }
    }

    fn xforward_command(&mut self, arg: &str) -> Answer {
        if self.tx.is_some() {
            let text = "Error: MAIL transaction in progress";
            return Answer::Error(Reply::new(503, st(5, 5, 1), text));
        }
        match self.xforward.apply(arg) {
            Ok(()) => Answer::Reply(Reply::new(250, st(2, 0, 0), "Ok")),
            Err(e) => Answer::Error(Reply::new(501, st(5, 5, 4), format!("Error: {e}"))),
        }
    }
}

/// `s` without `prefix` (ASCII case-insensitive).
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// A decimal number of 1 to 20 digits that fits a u64.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
