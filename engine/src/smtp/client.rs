//! The delivery client (relay, or Postfix reinjection on port 10025),
//! sans-I/O.
//!
//! The runtime opens the connection and feeds what it reads to
//! [`Client::receive`]; the client appends what to send to `out` and reports
//! [`ClientEvent`]s. It never reads a clock: timeouts are the runtime's.
//!
//! ```text
//!            220          250 (caps)     STARTTLS 220 + tls_established()
//! Greeting ───────▶ EHLO ───────────▶ [STARTTLS ──▶ TLS ──▶ EHLO] ──▶ Ready
//!                    └─5xx─▶ HELO ─250──────────────────────────────▶ Ready
//! Ready ──start(tx)──▶ [XFORWARD] MAIL RCPT… DATA ──354──▶ SendBody ──body()──▶ "." ──▶ Done ──▶ Ready
//!                      (one group with PIPELINING, one by one without)
//!        failed transaction ──▶ RSET ──▶ Ready          Ready ──quit()──▶ QUIT ──▶ Closed
//! ```
//!
//! - MAIL carries `SIZE=` only if the server announced SIZE (and the
//!   message is refused locally, permanently, if it exceeds the announced
//!   limit), `BODY=8BITMIME` only for an 8-bit message and a server that
//!   announced 8BITMIME, `SMTPUTF8` only if both need and offer it; a
//!   message whose addresses need SMTPUTF8 is refused locally when the
//!   server does not offer it (RFC 6531 §3.2).
//! - XFORWARD (the original client's facts) goes first when the server
//!   announces it, limited to the attributes it lists.
//! - With PIPELINING, XFORWARD, MAIL, the RCPTs and DATA go as one group
//!   (RFC 2920: DATA last). Without it, each waits for the previous reply,
//!   and nothing more is sent after a refused MAIL or when every RCPT was
//!   refused. If DATA gets 354 although no recipient was accepted (possible
//!   with pipelining), an empty message (a lone dot) ends it.
//! - The body is dot-stuffed with bare CR and LF turned into CRLF
//!   ([`Stuffer::normalizing`]), so no receiver can see a different end of
//!   data than we meant.
//! - Each recipient ends with a [`RcptStatus`]: its RCPT reply if refused,
//!   else the reply to MAIL (if refused), DATA (if refused) or the final
//!   dot. 2xx delivered, 4xx temporary, 5xx permanent. A 421 anywhere
//!   ends everything still open as temporary and closes.
//! - STARTTLS: the client stops at the 220 ([`ClientEvent::StartTls`]), the
//!   runtime runs the handshake and calls [`Client::tls_established`], which
//!   sends EHLO again. Bytes that arrive after the 220 in plaintext are an
//!   injection attempt (CVE-2011-0411 class) and an error.
//! - A malformed reply is a [`ClientError`], never a panic. After any error,
//!   or when the connection drops, [`Client::connection_lost`] turns what
//!   was in flight into temporary failures (a message whose final reply was
//!   lost may be delivered twice: at least once, never lost).

use std::collections::VecDeque;

use super::dot::Stuffer;
use super::reply::{Reply, ReplyError, ReplyParser, Status};
use super::xforward::{Xforward, XforwardAttr};
use super::BodyType;

/// When to use STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Never (loopback reinjection).
    #[default]
    Off,
    /// When the server offers it; plaintext otherwise.
    Opportunistic,
    /// Always; a server that does not offer it fails the session.
    Required,
}

/// Per-connection options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// Our name for EHLO/HELO.
    pub helo_name: String,
    /// STARTTLS policy.
    pub tls: TlsMode,
    /// Use PIPELINING when the server offers it.
    pub pipelining: bool,
}

impl ClientSettings {
    /// Plaintext, pipelining when offered.
    #[must_use]
    pub fn new(helo_name: impl Into<String>) -> Self {
        ClientSettings {
            helo_name: helo_name.into(),
            tls: TlsMode::Off,
            pipelining: true,
        }
    }
}

/// What the server announced in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// EHLO succeeded (false after a HELO fallback).
    pub esmtp: bool,
    /// PIPELINING.
    pub pipelining: bool,
    /// SIZE, with its limit (0 = no fixed limit).
    pub size: Option<u64>,
    /// 8BITMIME.
    pub eight_bit_mime: bool,
    /// SMTPUTF8.
    pub smtputf8: bool,
    /// STARTTLS.
    pub starttls: bool,
    /// CHUNKING.
    pub chunking: bool,
    /// ENHANCEDSTATUSCODES.
    pub enhanced_status_codes: bool,
    /// XFORWARD and the attributes it accepts.
    pub xforward: Vec<XforwardAttr>,
}

impl Capabilities {
    /// Reads an EHLO reply (the first line is the server's name).
    #[must_use]
    pub fn from_ehlo(reply: &Reply) -> Self {
        let mut caps = Capabilities {
            esmtp: true,
            ..Capabilities::default()
        };
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "CHUNKING" => caps.chunking = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "XFORWARD" => caps.xforward = words.filter_map(XforwardAttr::from_name).collect(),
                _ => {}
            }
        }
        caps
    }
}

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transaction {
    /// The reverse-path without brackets; empty for `<>`.
    pub sender: String,
    /// The recipients (at least one), without brackets.
    pub recipients: Vec<String>,
    /// Content bytes, for `SIZE=`.
    pub size: u64,
    /// `BODY=` to ask for.
    pub body: BodyType,
    /// The message needs SMTPUTF8.
    pub smtputf8: bool,
    /// The original client's facts, sent with XFORWARD when offered.
    pub xforward: Xforward,
}

impl Transaction {
    /// Reads `body` and `smtputf8` from spool facts (as
    /// [`super::server::Envelope::facts`] wrote them) and the XFORWARD
    /// attributes.
    pub fn apply_facts<'a>(&mut self, facts: impl IntoIterator<Item = (&'a str, &'a str)> + Clone) {
        for (name, value) in facts.clone() {
            match name {
                "body" if value.eq_ignore_ascii_case("8BITMIME") => {
                    self.body = BodyType::EightBitMime;
                }
                "smtputf8" => self.smtputf8 = value == "1",
                _ => {}
            }
        }
        self.xforward = Xforward::from_facts(facts);
    }

    fn needs_utf8(&self) -> bool {
        !self.sender.is_ascii() || self.recipients.iter().any(|r| !r.is_ascii())
    }
}

/// Where in the transaction a recipient's fate was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The reply to MAIL (or a local check before it).
    Mail,
    /// The reply to this recipient's RCPT.
    Rcpt,
    /// The reply to DATA.
    Data,
    /// The reply to the final dot.
    EndOfData,
    /// The connection: lost, a malformed reply, or a 421.
    Connection,
}

/// How one recipient fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx to the final dot: the server took responsibility.
    Delivered,
    /// 4xx (or the connection failed): try again later.
    TempFailed,
    /// 5xx: bounce.
    PermFailed,
}

/// One recipient's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptStatus {
    /// Delivered, temporary or permanent failure.
    pub outcome: Outcome,
    /// The reply that decided it (a local one when `remote` is false).
    pub reply: Reply,
    /// Which command's reply it was.
    pub stage: Stage,
    /// The reply came from the server (for the DSN's Diagnostic-Code and
    /// Remote-MTA).
    pub remote: bool,
}

impl RcptStatus {
    fn from_reply(reply: &Reply, stage: Stage) -> Self {
        let outcome = if reply.is_positive() {
            Outcome::Delivered
        } else if reply.is_permanent() {
            Outcome::PermFailed
        } else {
            Outcome::TempFailed
        };
        RcptStatus {
            outcome,
            reply: reply.clone(),
            stage,
            remote: true,
        }
    }

    fn local(reply: Reply, stage: Stage) -> Self {
        let outcome = if reply.is_permanent() {
            Outcome::PermFailed
        } else {
            Outcome::TempFailed
        };
        RcptStatus {
            outcome,
            reply,
            stage,
            remote: false,
        }
    }
}

/// The end of one transaction: a status per recipient, in the order of
/// [`Transaction::recipients`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionResult {
    /// One per recipient.
    pub recipients: Vec<RcptStatus>,
}

impl TransactionResult {
    /// Indices of the recipients with `outcome`.
    pub fn indices(&self, outcome: Outcome) -> impl Iterator<Item = usize> + '_ {
        self.recipients
            .iter()
            .enumerate()
            .filter(move |(_, r)| r.outcome == outcome)
            .map(|(i, _)| i)
    }
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Idle and ready: call [`Client::start`] (or [`Client::quit`]).
    Ready,
    /// The server said 220 to STARTTLS: run the TLS handshake on the socket,
    /// then call [`Client::tls_established`].
    StartTls,
    /// DATA was answered 354: send the message with [`Client::body`] (or
    /// [`Client::body_chunk`] then [`Client::body_end`]).
    SendBody,
    /// A transaction ended.
    Done(TransactionResult),
    /// The session could not be set up (greeting, EHLO/HELO or required
    /// STARTTLS refused, or RSET failed): the reply says why; write `out`
    /// (a QUIT, unless the server said 421) and close.
    SessionFailed(Reply),
    /// QUIT was answered or the server closed with 421: close the socket.
    Closed,
}

/// A protocol violation by the server, or a misuse by the runtime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// A malformed reply.
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// A reply nobody asked for, or one that makes no sense where it came
    /// (354 to MAIL, 2xx to DATA).
    #[error("unexpected SMTP reply {code} in state {state}")]
    UnexpectedReply {
        /// Its code.
        code: u16,
        /// Our state.
        state: &'static str,
    },
    /// Plaintext bytes after the 220 to STARTTLS.
    #[error("data after the STARTTLS reply (injection attempt)")]
    StartTlsInjection,
    /// A method called in a state that does not allow it (runtime bug).
    #[error("{call} not allowed in state {state}")]
    NotAllowed {
        /// The method.
        call: &'static str,
        /// Our state.
        state: &'static str,
    },
    /// [`Client::start`] with no recipients.
    #[error("transaction without recipients")]
    NoRecipients,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    TlsHandshake,
    Ready,
    Transaction,
    Body,
    Resetting,
    Quitting,
    Closed,
    Broken,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Handshake => "handshake",
            Phase::TlsHandshake => "tls-handshake",
            Phase::Ready => "ready",
            Phase::Transaction => "transaction",
            Phase::Body => "body",
            Phase::Resetting => "resetting",
            Phase::Quitting => "quitting",
            Phase::Closed => "closed",
            Phase::Broken => "broken",
        }
    }
}

/// The reply the client waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Xforward,
    Mail,
    Rcpt(usize),
    Data,
    /// The final dot; `discard` when only sent to end a pointless DATA.
    EndOfData {
        discard: bool,
    },
    Rset,
    Quit,
}

/// The transaction in flight.
#[derive(Debug, Clone)]
struct Active {
    tx: Transaction,
    results: Vec<Option<RcptStatus>>,
    accepted: Vec<bool>,
    mail_failed: Option<Reply>,
    /// Commands not yet sent (without PIPELINING).
    unsent: VecDeque<(Vec<u8>, Expect)>,
    stuffer: Option<Stuffer>,
}

impl Active {
    fn any_accepted(&self) -> bool {
        self.mail_failed.is_none() && self.accepted.iter().any(|a| *a)
    }
}

const fn st(class: u8, subject: u16, detail: u16) -> Status {
    Status::new(class, subject, detail)
}

/// One delivery connection.
#[derive(Debug, Clone)]
pub struct Client {
    settings: ClientSettings,
    phase: Phase,
    parser: ReplyParser,
    pending: VecDeque<Expect>,
    caps: Capabilities,
    tls_active: bool,
    pipelining: bool,
    active: Option<Active>,
}

impl Client {
    /// A client on a fresh connection, waiting for the greeting.
    #[must_use]
    pub fn new(settings: ClientSettings) -> Self {
        Client {
            settings,
            phase: Phase::Handshake,
            parser: ReplyParser::new(),
            pending: VecDeque::from([Expect::Greeting]),
            caps: Capabilities::default(),
            tls_active: false,
            pipelining: false,
            active: None,
        }
    }

    /// What the server announced (empty before EHLO).
    #[must_use]
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// TLS was negotiated.
    #[must_use]
    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// Idle between transactions.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// Closed (or failed): nothing more will happen on this connection.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed | Phase::Broken)
    }

    fn not_allowed(&self, call: &'static str) -> ClientError {
        ClientError::NotAllowed {
            call,
            state: self.phase.name(),
        }
    }

    fn send(&mut self, line: &[u8], expect: Expect, out: &mut Vec<u8>) {
        out.extend_from_slice(line);
        self.pending.push_back(expect);
    }

    /// Handles the replies at the front of `input`; returns the bytes
    /// consumed (keep the rest). It stops after a reply that needs the
    /// runtime to act ([`ClientEvent::Ready`], [`ClientEvent::SendBody`],
    /// [`ClientEvent::StartTls`]) and consumes nothing while that is due or
    /// once closed: act on the events, then call again with the rest. While
    /// idle (ready) it still reads, so a 421 from the server is noticed.
    ///
    /// # Errors
    /// A [`ClientError`]: the connection must be dropped; call
    /// [`Client::connection_lost`] for the transaction in flight.
    pub fn receive(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        events: &mut Vec<ClientEvent>,
    ) -> Result<usize, ClientError> {
        let mut pos = 0;
        while !matches!(
            self.phase,
            Phase::TlsHandshake | Phase::Body | Phase::Closed | Phase::Broken
        ) {
            let parsed = match self.parser.parse(&input[pos..]) {
                Ok(p) => p,
                Err(e) => {
                    self.phase = Phase::Broken;
                    return Err(e.into());
                }
            };
            pos += parsed.consumed;
            let Some(reply) = parsed.reply else {
                break;
            };
            let was_ready = self.phase == Phase::Ready;
            if let Err(e) = self.handle(&reply, pos < input.len(), out, events) {
                self.phase = Phase::Broken;
                return Err(e);
            }
            if self.phase == Phase::Ready && !was_ready {
                break;
            }
        }
        Ok(pos)
    }

    fn handle(
        &mut self,
        reply: &Reply,
        more_input: bool,
        out: &mut Vec<u8>,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), ClientError> {
        // RFC 5321 §3.8: a server may answer anything with 421 and close,
        // even when no reply is due (a timeout while we send the body).
        if reply.code == 421 && self.pending.front() != Some(&Expect::Quit) {
            self.server_closing(reply, events);
            return Ok(());
        }
        let Some(expect) = self.pending.pop_front() else {
            return Err(ClientError::UnexpectedReply {
                code: reply.code,
                state: self.phase.name(),
            });
        };
        match expect {
            Expect::Greeting => self.on_greeting(reply, out, events),
            Expect::Ehlo => self.on_ehlo(reply, out, events),
            Expect::Helo => self.on_helo(reply, out, events),
            Expect::StartTls => self.on_starttls(reply, more_input, out, events)?,
            Expect::Xforward => self.next_command(out, events),
            Expect::Mail => self.on_mail(reply, out, events),
            Expect::Rcpt(i) => self.on_rcpt(i, reply, out, events),
            Expect::Data => self.on_data(reply, out, events)?,
            Expect::EndOfData { discard } => self.on_end_of_data(reply, discard, out, events),
            Expect::Rset => {
                if reply.is_positive() {
                    self.phase = Phase::Ready;
                    events.push(ClientEvent::Ready);
                } else {
                    self.session_failed(reply.clone(), out, events);
                }
            }
            Expect::Quit => {
                self.phase = Phase::Closed;
                events.push(ClientEvent::Closed);
            }
        }
        Ok(())
    }

    /// 421: the server is going away; everything open fails temporarily.
    fn server_closing(&mut self, reply: &Reply, events: &mut Vec<ClientEvent>) {
        self.pending.clear();
        match self.active.take() {
            Some(active) => {
                let status = RcptStatus::from_reply(reply, Stage::Connection);
                events.push(ClientEvent::Done(finish(active, |_| status.clone())));
            }
            None if self.phase == Phase::Handshake => {
                events.push(ClientEvent::SessionFailed(reply.clone()));
            }
            None => {}
        }
        self.phase = Phase::Closed;
        events.push(ClientEvent::Closed);
    }

    fn session_failed(&mut self, reply: Reply, out: &mut Vec<u8>, events: &mut Vec<ClientEvent>) {
        out.extend_from_slice(b"QUIT\r\n");
        self.pending.clear();
        self.phase = Phase::Closed;
        events.push(ClientEvent::SessionFailed(reply));
    }

    fn on_greeting(&mut self, reply: &Reply, out: &mut Vec<u8>, events: &mut Vec<ClientEvent>) {
        if reply.code != 220 {
            return self.session_failed(reply.clone(), out, events);
        }
        let line = format!("EHLO {}\r\n", self.settings.helo_name);
        self.send(line.as_bytes(), Expect::Ehlo, out);
    }

    fn on_ehlo(&mut self, reply: &Reply, out: &mut Vec<u8>, events: &mut Vec<ClientEvent>) {
        if reply.is_permanent() {
            // RFC 5321 §3.2: a server that does not know EHLO gets HELO.
            self.caps = Capabilities::default();
            let line = format!("HELO {}\r\n", self.settings.helo_name);
            return self.send(line.as_bytes(), Expect::Helo, out);
        }
        if !reply.is_positive() {
            return self.session_failed(reply.clone(), out, events);
        }
        self.caps = Capabilities::from_ehlo(reply);
        self.pipelining = self.settings.pipelining && self.caps.pipelining;
        let want_tls = self.settings.tls != TlsMode::Off && !self.tls_active;
        if want_tls && self.caps.starttls {
            return self.send(b"STARTTLS\r\n", Expect::StartTls, out);
        }
        if want_tls && self.settings.tls == TlsMode::Required {
            let text = "TLS is required, but was not offered by the server";
            return self.session_failed(Reply::new(451, st(4, 7, 4), text), out, events);
        }
        self.phase = Phase::Ready;
        events.push(ClientEvent::Ready);
    }

    fn on_helo(&mut self, reply: &Reply, out: &mut Vec<u8>, events: &mut Vec<ClientEvent>) {
        if !reply.is_positive() {
            return self.session_failed(reply.clone(), out, events);
        }
        if self.settings.tls == TlsMode::Required && !self.tls_active {
            let text = "TLS is required, but the server does not speak ESMTP";
            return self.session_failed(Reply::new(451, st(4, 7, 4), text), out, events);
        }
        self.pipelining = false;
        self.phase = Phase::Ready;
        events.push(ClientEvent::Ready);
    }

    fn on_starttls(
        &mut self,
        reply: &Reply,
        more_input: bool,
        out: &mut Vec<u8>,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), ClientError> {
        if reply.code == 220 {
            if more_input {
                return Err(ClientError::StartTlsInjection);
            }
            self.phase = Phase::TlsHandshake;
            events.push(ClientEvent::StartTls);
        } else if self.settings.tls == TlsMode::Required {
            self.session_failed(reply.clone(), out, events);
        } else {
            self.phase = Phase::Ready;
            events.push(ClientEvent::Ready);
        }
        Ok(())
    }

    /// The TLS handshake after [`ClientEvent::StartTls`] succeeded: forgets
    /// what the server said in plaintext and sends EHLO again (RFC 3207
    /// §4.2).
    ///
    /// # Errors
    /// [`ClientError::NotAllowed`] if no handshake was due.
    pub fn tls_established(&mut self, out: &mut Vec<u8>) -> Result<(), ClientError> {
        if self.phase != Phase::TlsHandshake {
            return Err(self.not_allowed("tls_established"));
        }
        self.tls_active = true;
        self.caps = Capabilities::default();
        self.parser = ReplyParser::new();
        self.phase = Phase::Handshake;
        let line = format!("EHLO {}\r\n", self.settings.helo_name);
        self.send(line.as_bytes(), Expect::Ehlo, out);
        Ok(())
    }

    /// Starts a transaction (only when ready). A message the server cannot
    /// take (over its SIZE, or needing SMTPUTF8 it lacks) ends at once with
    /// [`ClientEvent::Done`] and permanent failures, without a command sent.
    ///
    /// # Errors
    /// [`ClientError::NotAllowed`] when not ready, [`ClientError::NoRecipients`].
    pub fn start(
        &mut self,
        tx: Transaction,
        out: &mut Vec<u8>,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), ClientError> {
        if self.phase != Phase::Ready {
            return Err(self.not_allowed("start"));
        }
        if tx.recipients.is_empty() {
            return Err(ClientError::NoRecipients);
        }
        let n = tx.recipients.len();
        let mut active = Active {
            results: vec![None; n],
            accepted: vec![false; n],
            mail_failed: None,
            unsent: VecDeque::new(),
            stuffer: None,
            tx,
        };
        if let Some(reply) = self.refuse_locally(&active.tx) {
            let status = RcptStatus::local(reply, Stage::Mail);
            events.push(ClientEvent::Done(finish(active, |_| status.clone())));
            events.push(ClientEvent::Ready);
            return Ok(());
        }
        active.unsent = self.commands(&active.tx);
        self.active = Some(active);
        self.phase = Phase::Transaction;
        if self.pipelining {
            while let Some((line, expect)) = self.active.as_mut().and_then(|a| a.unsent.pop_front())
            {
                self.send(&line, expect, out);
            }
        } else {
            self.next_command(out, events);
        }
        Ok(())
    }

    /// Why the server cannot take `tx`, from its announcements.
    fn refuse_locally(&self, tx: &Transaction) -> Option<Reply> {
        if let Some(limit) = self.caps.size.filter(|l| *l > 0 && tx.size > *l) {
            let text = format!(
                "message size {} exceeds the server's limit {limit}",
                tx.size
            );
            return Some(Reply::new(552, st(5, 3, 4), text));
        }
        if tx.needs_utf8() && !self.caps.smtputf8 {
            let text = "SMTPUTF8 is required, but was not offered by the server";
            return Some(Reply::new(553, st(5, 6, 7), text));
        }
        None
    }

    /// The commands of a transaction, in order.
    fn commands(&self, tx: &Transaction) -> VecDeque<(Vec<u8>, Expect)> {
        let mut cmds = VecDeque::new();
        if !self.caps.xforward.is_empty() && !tx.xforward.is_empty() {
            let mut wire = Vec::new();
            tx.xforward.encode_commands(&self.caps.xforward, &mut wire);
            for line in wire.split_inclusive(|b| *b == b'\n') {
                cmds.push_back((line.to_vec(), Expect::Xforward));
            }
        }
        let mut mail = format!("MAIL FROM:<{}>", tx.sender);
        if self.caps.size.is_some() {
            mail.push_str(&format!(" SIZE={}", tx.size));
        }
        if tx.body == BodyType::EightBitMime && self.caps.eight_bit_mime {
            mail.push_str(" BODY=8BITMIME");
        }
        if tx.smtputf8 && self.caps.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        mail.push_str("\r\n");
        cmds.push_back((mail.into_bytes(), Expect::Mail));
        for (i, rcpt) in tx.recipients.iter().enumerate() {
            let line = format!("RCPT TO:<{rcpt}>\r\n");
            cmds.push_back((line.into_bytes(), Expect::Rcpt(i)));
        }
        cmds.push_back((b"DATA\r\n".to_vec(), Expect::Data));
        cmds
    }

    /// Without PIPELINING: sends the next command, or ends the transaction
    /// when MAIL was refused or DATA would go without an accepted recipient.
    fn next_command(&mut self, out: &mut Vec<u8>, events: &mut Vec<ClientEvent>) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let Some((_, expect)) = active.unsent.front() else {
            return;
        };
        let pointless = active.mail_failed.is_some()
            || (*expect == Expect::Data && !active.accepted.iter().any(|a| *a));
        if pointless {
            return self.end_failed(out, events);
        }
        if let Some((line, expect)) = active.unsent.pop_front() {
            self.send(&line, expect, out);
        }
    }

    fn on_mail(&mut self, reply: &Reply, out: &mut Vec<u8>, events: &mut Vec<ClientEvent>) {
        if let Some(active) = self.active.as_mut() {
            if !reply.is_positive() {
                active.mail_failed = Some(reply.clone());
            }
        }
        if !self.pipelining {
            self.next_command(out, events);
        }
    }

    fn on_rcpt(
        &mut self,
        i: usize,
        reply: &Reply,
        out: &mut Vec<u8>,
        events: &mut Vec<ClientEvent>,
    ) {
        if let Some(active) = self.active.as_mut() {
            if reply.is_positive() {
                active.accepted[i] = true;
            } else if active.mail_failed.is_none() {
                active.results[i] = Some(RcptStatus::from_reply(reply, Stage::Rcpt));
            }
        }
        if !self.pipelining {
            self.next_command(out, events);
        }
    }

    fn on_data(
        &mut self,
        reply: &Reply,
        out: &mut Vec<u8>,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), ClientError> {
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        let useful = active.any_accepted();
        if reply.code == 354 {
            if useful {
                active.stuffer = Some(Stuffer::normalizing());
                self.phase = Phase::Body;
                events.push(ClientEvent::SendBody);
            } else {
                // RFC 2920 §3.1: DATA accepted with no valid recipient;
                // end it with an empty message.
                self.send(b".\r\n", Expect::EndOfData { discard: true }, out);
            }
            return Ok(());
        }
        if reply.is_positive() || reply.is_intermediate() {
            return Err(ClientError::UnexpectedReply {
                code: reply.code,
                state: "data",
            });
        }
        if useful {
            let status = RcptStatus::from_reply(reply, Stage::Data);
            for (r, accepted) in active.results.iter_mut().zip(&active.accepted) {
                if *accepted {
                    *r = Some(status.clone());
                }
            }
        }
        self.end_failed(out, events);
        Ok(())
    }

    fn on_end_of_data(
        &mut self,
        reply: &Reply,
        discard: bool,
        out: &mut Vec<u8>,
        events: &mut Vec<ClientEvent>,
    ) {
        if discard {
            return self.end_failed(out, events);
        }
        let Some(mut active) = self.active.take() else {
            return;
        };
        let status = RcptStatus::from_reply(reply, Stage::EndOfData);
        for (r, accepted) in active.results.iter_mut().zip(&active.accepted) {
            if *accepted {
                *r = Some(status.clone());
            }
        }
        events.push(ClientEvent::Done(finish(active, |_| status.clone())));
        // The transaction is over on the server either way: no RSET needed.
        self.phase = Phase::Ready;
        events.push(ClientEvent::Ready);
    }

    /// Ends a transaction that did not reach the final dot, then RSET.
    fn end_failed(&mut self, out: &mut Vec<u8>, events: &mut Vec<ClientEvent>) {
        let Some(active) = self.active.take() else {
            return;
        };
        let mail = active
            .mail_failed
            .clone()
            .map(|r| RcptStatus::from_reply(&r, Stage::Mail));
        let never = RcptStatus::local(
            Reply::new(
                451,
                st(4, 3, 0),
                "transaction ended before the message was sent",
            ),
            Stage::Data,
        );
        events.push(ClientEvent::Done(finish(active, |_| {
            mail.clone().unwrap_or_else(|| never.clone())
        })));
        self.phase = Phase::Resetting;
        self.send(b"RSET\r\n", Expect::Rset, out);
    }

    /// Sends the whole message (after [`ClientEvent::SendBody`]).
    ///
    /// # Errors
    /// [`ClientError::NotAllowed`] when no body is due.
    pub fn body(&mut self, content: &[u8], out: &mut Vec<u8>) -> Result<(), ClientError> {
        self.body_chunk(content, out)?;
        self.body_end(out)
    }

    /// Sends part of the message, dot-stuffed.
    ///
    /// # Errors
    /// [`ClientError::NotAllowed`] when no body is due.
    pub fn body_chunk(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), ClientError> {
        match self.active.as_mut().and_then(|a| a.stuffer.as_mut()) {
            Some(stuffer) if self.phase == Phase::Body => {
                stuffer.push(chunk, out);
                Ok(())
            }
            _ => Err(self.not_allowed("body_chunk")),
        }
    }

    /// Ends the message with the final dot.
    ///
    /// # Errors
    /// [`ClientError::NotAllowed`] when no body is due.
    pub fn body_end(&mut self, out: &mut Vec<u8>) -> Result<(), ClientError> {
        match self.active.as_mut().and_then(|a| a.stuffer.take()) {
            Some(stuffer) if self.phase == Phase::Body => {
                stuffer.finish(out);
                self.phase = Phase::Transaction;
                self.pending.push_back(Expect::EndOfData { discard: false });
                Ok(())
            }
            _ => Err(self.not_allowed("body_end")),
        }
    }

    /// Sends RSET while idle (to check a cached connection before reuse);
    /// [`ClientEvent::Ready`] follows its 250.
    ///
    /// # Errors
    /// [`ClientError::NotAllowed`] when not ready.
    pub fn reset(&mut self, out: &mut Vec<u8>) -> Result<(), ClientError> {
        if self.phase != Phase::Ready {
            return Err(self.not_allowed("reset"));
        }
        self.phase = Phase::Resetting;
        self.send(b"RSET\r\n", Expect::Rset, out);
        Ok(())
    }

    /// Sends QUIT (when ready); [`ClientEvent::Closed`] follows its reply.
    ///
    /// # Errors
    /// [`ClientError::NotAllowed`] when not ready.
    pub fn quit(&mut self, out: &mut Vec<u8>) -> Result<(), ClientError> {
        if self.phase != Phase::Ready {
            return Err(self.not_allowed("quit"));
        }
        self.phase = Phase::Quitting;
        self.send(b"QUIT\r\n", Expect::Quit, out);
        Ok(())
    }

    /// The connection is gone (EOF, reset, timeout, or after a
    /// [`ClientError`]): every recipient still open fails temporarily. Returns
    /// the result of the transaction in flight, if any.
    pub fn connection_lost(&mut self) -> Option<TransactionResult> {
        self.phase = Phase::Broken;
        self.pending.clear();
        let active = self.active.take()?;
        let status = RcptStatus::local(
            Reply::new(451, st(4, 4, 2), "lost connection with the server"),
            Stage::Connection,
        );
        Some(finish(active, |_| status.clone()))
    }
}

/// Completes the results: recipients without a status get `fill(i)`.
fn finish(active: Active, fill: impl Fn(usize) -> RcptStatus) -> TransactionResult {
    TransactionResult {
        recipients: active
            .results
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.unwrap_or_else(|| fill(i)))
            .collect(),
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
