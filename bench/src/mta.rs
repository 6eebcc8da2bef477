//! The MTA side of the milter protocol, driven the way Postfix 3.7's milter8
//! client drives a filter (checked against `../shared/harness/postfix/captures`).
//!
//! One [`Session`] is one milter connection (Postfix opens one per SMTP
//! session):
//!
//! ```text
//! → O OPTNEG   version 6, actions 0x1FF, protocol 0x1FFFFF
//! ← O OPTNEG   version, actions, protocol [, SETSYMLIST lists]
//! → D 'C' j {daemon_name} {daemon_addr} v _     → C CONNECT   (reply unless NR_CONN)
//! → D 'H'                                        → H HELO      (reply unless NR_HELO)
//! per message:
//! → D 'M' {mail_addr} {mail_host} {mail_mailer}  → M MAIL      (reply unless NR_MAIL)
//! → D 'R' i {rcpt_addr} {rcpt_host} {rcpt_mailer}→ R RCPT      (per recipient)
//! → D 'T' i                                      → T DATA
//! → D 'L' i  → L HEADER name\0value\0   (per header, eoh macros)
//! → D 'N' i                                      → N EOH
//! → D 'B' i  → B BODY ≤ 65535 bytes      (per chunk, eod macros)
//! → D 'E' i                                      → E EOM       (always a reply)
//! ← modifications* then a final reply (accept, continue, reject, tempfail, discard, replycode)
//! → A ABORT                                       (Postfix resets the filter after each message)
//! end: → Q QUIT
//! ```
//!
//! Postfix behaviours reproduced:
//! - a stage's macro packet is sent even when the filter's `NO_*` flag hides the
//!   event itself (milter8.c sends macros first, then checks the event mask);
//! - `NR_*` events are sent without waiting for a reply;
//! - packets are buffered and written when a reply is expected (or when the
//!   buffer passes [`FLUSH_BYTES`]), like Postfix's buffered VSTREAM;
//! - header values lose one leading space unless `HDR_LEADSPC` was negotiated;
//! - a SETSYMLIST list replaces the default macros of its stage;
//! - `SMFIR_SKIP` stops further events of the same type (headers or body chunks);
//! - a final reply at CONNECT/HELO ends the whole session; before EOM it ends
//!   the message (a reject or tempfail at RCPT only drops that recipient while
//!   others remain).
//!
//! Every read and write is bounded by the socket timeouts; every loop over
//! replies is bounded ([`PROGRESS_MAX`], [`EOM_PACKETS_MAX`]).

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mb_engine::milter::frame::FrameDecoder;
use mb_engine::milter::reply::{stage, Response};
use mb_engine::milter::{self, actions, cmd, protocol, Command, Family, Modification, Reply};

use crate::corpus::Message;
use crate::target::{Stream, Target};

/// Write buffered packets once this many bytes are pending, even when no reply
/// is expected yet (bounds memory for long `NR_BODY` streams).
pub const FLUSH_BYTES: usize = 64 * 1024;
/// Most `SMFIR_PROGRESS` packets accepted while waiting for one reply.
pub const PROGRESS_MAX: usize = 100_000;
/// Most packets (modifications + progress) accepted at end of message.
pub const EOM_PACKETS_MAX: usize = 1_000_000;
/// Largest reply frame accepted (a REPLBODY chunk is at most 64 KiB in practice).
pub const REPLY_FRAME_BYTES_MAX: u32 = 16 * 1024 * 1024;
/// Largest body chunk Postfix sends (`MILTER_CHUNK_SIZE`).
pub const BODY_CHUNK_BYTES: usize = mb_engine::limits::MILTER_BODY_CHUNK_BYTES_MAX;

/// What the filter answered to OPTNEG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Protocol version.
    pub version: u32,
    /// `SMFIF_*` actions.
    pub actions: u32,
    /// `SMFIP_*` flags.
    pub protocol: u32,
    /// SETSYMLIST lists by `SMFIM_*` stage index (0..=6), as macro names.
    pub symlists: [Option<Vec<Vec<u8>>>; 7],
}

impl Negotiated {
    fn has(&self, flag: u32) -> bool {
        self.protocol & flag != 0
    }
}

/// Error classes, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Could not connect.
    Connect,
    /// A read or write timed out.
    Timeout,
    /// The filter closed the connection.
    Closed,
    /// The filter sent something invalid.
    Protocol,
    /// Other I/O errors.
    Io,
}

/// Why a session failed. The session is unusable afterwards.
#[derive(Debug)]
pub enum MtaError {
    /// Could not connect.
    Connect(io::Error),
    /// A read or write timed out.
    Timeout {
        /// What we were doing.
        during: &'static str,
    },
    /// The filter closed the connection.
    Closed {
        /// What we were doing.
        during: &'static str,
    },
    /// Other I/O errors.
    Io {
        /// What we were doing.
        during: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The filter sent something Postfix would refuse.
    Protocol(String),
}

impl MtaError {
    /// The class of this error.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Connect(_) => ErrorKind::Connect,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::Closed { .. } => ErrorKind::Closed,
            Self::Io { .. } => ErrorKind::Io,
            Self::Protocol(_) => ErrorKind::Protocol,
        }
    }

    fn from_io(source: io::Error, during: &'static str) -> Self {
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Self::Timeout { during },
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => Self::Closed { during },
            _ => Self::Io { during, source },
        }
    }
}

impl std::fmt::Display for MtaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "connect: {e}"),
            Self::Timeout { during } => write!(f, "timeout {during}"),
            Self::Closed { during } => write!(f, "connection closed by the filter {during}"),
            Self::Io { during, source } => write!(f, "{during}: {source}"),
            Self::Protocol(why) => write!(f, "protocol error: {why}"),
        }
    }
}

impl std::error::Error for MtaError {}

/// A final decision, as Postfix classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// SMFIR_ACCEPT.
    Accept,
    /// SMFIR_CONTINUE at end of message (Postfix treats it as accept).
    Continue,
    /// SMFIR_REJECT or a 5xx REPLYCODE.
    Reject,
    /// SMFIR_TEMPFAIL or a 4xx REPLYCODE.
    TempFail,
    /// SMFIR_DISCARD.
    Discard,
}

impl Verdict {
    fn of(reply: &Reply) -> Option<Self> {
        Some(match reply {
            Reply::Accept => Self::Accept,
            Reply::Continue => Self::Continue,
            Reply::Reject => Self::Reject,
            Reply::TempFail => Self::TempFail,
            Reply::Discard => Self::Discard,
            Reply::ReplyCode { code, .. } if *code / 100 == 4 => Self::TempFail,
            Reply::ReplyCode { .. } => Self::Reject,
            Reply::OptNeg { .. } | Reply::Progress | Reply::Skip => return None,
        })
    }
}

/// How one message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgOutcome {
    /// The message reached end of message and got a final reply.
    Completed {
        /// The final reply.
        verdict: Verdict,
        /// Modification packets received before it.
        modifications: u32,
        /// Whether one of them was SMFIR_QUARANTINE.
        quarantined: bool,
    },
    /// A final reply before end of message ended it.
    EndedEarly {
        /// The command it answered ("MAIL", "RCPT", ...).
        stage: &'static str,
        /// The reply.
        verdict: Verdict,
    },
}

/// Envelope and client data of one message.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// Postfix queue id (macro `i`).
    pub queue_id: &'a str,
    /// Envelope sender, without angle brackets.
    pub sender: &'a str,
    /// Recipients, without angle brackets.
    pub recipients: &'a [String],
}

/// Values of the macros we know how to fill.
struct MacroValues<'a> {
    queue_id: Option<&'a [u8]>,
    mail_addr: &'a [u8],
    rcpt_addr: &'a [u8],
}

/// The `j`/`{daemon_name}` Postfix would send.
const DAEMON_NAME: &str = "mx.loadgen.example";
/// The client address sent in CONNECT.
const CLIENT_ADDR: &str = "127.0.0.1";
/// The client host name sent in CONNECT (Postfix's `localhost` for 127.0.0.1).
const CLIENT_NAME: &str = "localhost";
/// The HELO name.
const HELO_NAME: &str = "client.loadgen.example";

fn lookup<'a>(name: &[u8], v: &MacroValues<'a>) -> Option<&'a [u8]> {
    Some(match name {
        b"j" | b"{daemon_name}" => DAEMON_NAME.as_bytes(),
        b"{daemon_addr}" => b"127.0.0.1",
        b"v" => b"Postfix 3.7.11",
        b"_" => b"localhost [127.0.0.1]",
        b"{client_addr}" => CLIENT_ADDR.as_bytes(),
        b"{client_name}" => CLIENT_NAME.as_bytes(),
        b"i" => return v.queue_id,
        b"{mail_addr}" => v.mail_addr,
        b"{mail_host}" | b"{rcpt_host}" => b"[127.0.0.1]:10025",
        b"{mail_mailer}" | b"{rcpt_mailer}" => b"smtp",
        b"{rcpt_addr}" => v.rcpt_addr,
        _ => return None,
    })
}

/// Postfix 3.7's default macro lists (`postconf -d milter_*_macros`), by
/// `SMFIM_*` stage, restricted to the macros that have values without TLS or
/// SASL.
fn default_macros(stage_index: u32) -> &'static [&'static [u8]] {
    match stage_index {
        stage::CONNECT => &[b"j", b"{daemon_name}", b"{daemon_addr}", b"v", b"_"],
        stage::MAIL => &[b"{mail_addr}", b"{mail_host}", b"{mail_mailer}"],
        stage::RCPT => &[b"i", b"{rcpt_addr}", b"{rcpt_host}", b"{rcpt_mailer}"],
        stage::DATA | stage::END_OF_MESSAGE | stage::END_OF_HEADERS => &[b"i"],
        _ => &[],
    }
}

/// One milter connection, MTA side.
pub struct Session {
    stream: Stream,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    wbuf: Vec<u8>,
    scratch: Vec<u8>,
    decoder: FrameDecoder,
    neg: Negotiated,
}

impl Session {
    /// Connects and negotiates options (one round trip, reported to `rt`).
    ///
    /// # Errors
    /// [`MtaError`]; also a protocol error when the filter's answer would make
    /// Postfix drop it (version above 6, actions beyond 0x1FF).
    pub fn open(
        target: &Target,
        timeout: Duration,
        rt: &mut impl FnMut(Duration),
    ) -> Result<Self, MtaError> {
        let stream = Stream::connect(target, timeout).map_err(MtaError::Connect)?;
        let mut s = Self {
            stream,
            rbuf: vec![0; 16 * 1024],
            rstart: 0,
            rend: 0,
            wbuf: Vec::with_capacity(FLUSH_BYTES + BODY_CHUNK_BYTES + 64),
            scratch: Vec::with_capacity(256),
            decoder: FrameDecoder::new(REPLY_FRAME_BYTES_MAX),
            neg: Negotiated {
                version: 0,
                actions: 0,
                protocol: 0,
                symlists: Default::default(),
            },
        };
        Command::OptNeg {
            version: milter::VERSION,
            actions: actions::ALL,
            protocol: protocol::ALL,
        }
        .encode(&mut s.wbuf);
        let t = Instant::now();
        s.flush("sending OPTNEG")?;
        let resp = s.read_response("waiting for OPTNEG")?;
        rt(t.elapsed());
        let Response::Reply(Reply::OptNeg {
            version,
            actions: acts,
            protocol: proto,
            symlists,
        }) = resp
        else {
            return Err(MtaError::Protocol(format!(
                "expected OPTNEG, got {}",
                resp_name(&resp)
            )));
        };
        if !(2..=milter::VERSION).contains(&version) {
            return Err(MtaError::Protocol(format!(
                "filter protocol version {version} > 6"
            )));
        }
        if acts & !actions::ALL != 0 {
            return Err(MtaError::Protocol(format!(
                "filter actions 0x{acts:x} beyond 0x1ff"
            )));
        }
        s.neg.version = version;
        s.neg.actions = acts;
        // Postfix keeps only the flags it offered.
        s.neg.protocol = proto & protocol::ALL;
        if acts & actions::SET_SYMLIST != 0 {
            for (idx, names) in symlists {
                if let Some(slot) = s.neg.symlists.get_mut(idx as usize) {
                    *slot = Some(
                        names
                            .split_ascii_whitespace()
                            .map(|n| n.as_bytes().to_vec())
                            .collect(),
                    );
                }
            }
        }
        Ok(s)
    }

    /// What the filter negotiated.
    #[must_use]
    pub fn negotiated(&self) -> &Negotiated {
        &self.neg
    }

    /// Sends CONNECT and HELO. Returns `Some` when a final reply ended the
    /// session (the caller should [`Session::quit`]).
    ///
    /// # Errors
    /// [`MtaError`].
    pub fn connect_helo(
        &mut self,
        client_port: u16,
        rt: &mut impl FnMut(Duration),
    ) -> Result<Option<(&'static str, Verdict)>, MtaError> {
        let none = MacroValues {
            queue_id: None,
            mail_addr: b"",
            rcpt_addr: b"",
        };
        self.macros(cmd::CONNECT, stage::CONNECT, &none);
        let reply = self.event(
            protocol::NO_CONNECT,
            protocol::NR_CONNECT,
            |o| {
                Command::Connect {
                    hostname: CLIENT_NAME.as_bytes(),
                    family: Family::Inet,
                    port: client_port,
                    address: CLIENT_ADDR.as_bytes(),
                }
                .encode(o);
            },
            "CONNECT",
            rt,
        )?;
        if let Some(v) = final_before_eom(reply.as_ref(), "CONNECT")? {
            return Ok(Some(("CONNECT", v)));
        }
        self.macros(cmd::HELO, stage::HELO, &none);
        let reply = self.event(
            protocol::NO_HELO,
            protocol::NR_HELO,
            |o| {
                Command::Helo {
                    name: HELO_NAME.as_bytes(),
                }
                .encode(o)
            },
            "HELO",
            rt,
        )?;
        if let Some(v) = final_before_eom(reply.as_ref(), "HELO")? {
            return Ok(Some(("HELO", v)));
        }
        Ok(None)
    }

    /// Sends one message and reads its verdict, then ABORT (as Postfix does
    /// after every transaction).
    ///
    /// # Errors
    /// [`MtaError`].
    pub fn message(
        &mut self,
        msg: &Message,
        env: &Envelope<'_>,
        rt: &mut impl FnMut(Duration),
    ) -> Result<MsgOutcome, MtaError> {
        let outcome = self.transaction(msg, env, rt)?;
        Command::Abort.encode(&mut self.wbuf);
        Ok(outcome)
    }

    fn transaction(
        &mut self,
        msg: &Message,
        env: &Envelope<'_>,
        rt: &mut impl FnMut(Duration),
    ) -> Result<MsgOutcome, MtaError> {
        let qid = Some(env.queue_id.as_bytes());
        let mut mv = MacroValues {
            queue_id: None,
            mail_addr: env.sender.as_bytes(),
            rcpt_addr: b"",
        };

        // MAIL FROM:<sender> SIZE=n
        self.macros(cmd::MAIL, stage::MAIL, &mv);
        let reply = self.event(
            protocol::NO_MAIL,
            protocol::NR_MAIL,
            |o| {
                frame_args(
                    o,
                    cmd::MAIL,
                    &[
                        &format!("<{}>", env.sender),
                        &format!("SIZE={}", msg.smtp_bytes),
                    ],
                );
            },
            "MAIL",
            rt,
        )?;
        if let Some(v) = final_before_eom(reply.as_ref(), "MAIL")? {
            return Ok(MsgOutcome::EndedEarly {
                stage: "MAIL",
                verdict: v,
            });
        }

        // RCPT TO:<rcpt>, one per recipient. Postfix has the queue id by now.
        mv.queue_id = qid;
        let mut accepted = 0usize;
        let mut last_refusal = None;
        for rcpt in env.recipients {
            mv.rcpt_addr = rcpt.as_bytes();
            self.macros(cmd::RCPT, stage::RCPT, &mv);
            let reply = self.event(
                protocol::NO_RCPT,
                protocol::NR_RCPT,
                |o| frame_args(o, cmd::RCPT, &[&format!("<{rcpt}>")]),
                "RCPT",
                rt,
            )?;
            match final_before_eom(reply.as_ref(), "RCPT")? {
                None => accepted += 1,
                Some(v @ (Verdict::Reject | Verdict::TempFail)) => last_refusal = Some(v),
                // Accept or discard at RCPT: final for the whole message.
                Some(v) => {
                    return Ok(MsgOutcome::EndedEarly {
                        stage: "RCPT",
                        verdict: v,
                    })
                }
            }
        }
        if accepted == 0 {
            if let Some(v) = last_refusal {
                return Ok(MsgOutcome::EndedEarly {
                    stage: "RCPT",
                    verdict: v,
                });
            }
        }

        // DATA
        self.macros(cmd::DATA, stage::DATA, &mv);
        let reply = self.event(
            protocol::NO_DATA,
            protocol::NR_DATA,
            |o| Command::Data.encode(o),
            "DATA",
            rt,
        )?;
        if let Some(v) = final_before_eom(reply.as_ref(), "DATA")? {
            return Ok(MsgOutcome::EndedEarly {
                stage: "DATA",
                verdict: v,
            });
        }

        // Headers (eoh macros), then EOH.
        let leadspc = self.neg.has(protocol::HEADER_LEADING_SPACE);
        for h in &msg.headers {
            self.macros(cmd::HEADER, stage::END_OF_HEADERS, &mv);
            let value = if leadspc { &h.raw_value[..] } else { h.value() };
            let reply = self.event(
                protocol::NO_HEADERS,
                protocol::NR_HEADER,
                |o| {
                    Command::Header {
                        name: &h.name,
                        value,
                    }
                    .encode(o)
                },
                "HEADER",
                rt,
            )?;
            if reply == Some(Reply::Skip) {
                break;
            }
            if let Some(v) = final_before_eom(reply.as_ref(), "HEADER")? {
                return Ok(MsgOutcome::EndedEarly {
                    stage: "HEADER",
                    verdict: v,
                });
            }
        }
        self.macros(cmd::END_OF_HEADERS, stage::END_OF_HEADERS, &mv);
        let reply = self.event(
            protocol::NO_EOH,
            protocol::NR_EOH,
            |o| Command::EndOfHeaders.encode(o),
            "EOH",
            rt,
        )?;
        if let Some(v) = final_before_eom(reply.as_ref(), "EOH")? {
            return Ok(MsgOutcome::EndedEarly {
                stage: "EOH",
                verdict: v,
            });
        }

        // Body chunks (eod macros).
        for chunk in msg.body.chunks(BODY_CHUNK_BYTES) {
            self.macros(cmd::BODY, stage::END_OF_MESSAGE, &mv);
            let reply = self.event(
                protocol::NO_BODY,
                protocol::NR_BODY,
                |o| Command::Body(chunk).encode(o),
                "BODY",
                rt,
            )?;
            if reply == Some(Reply::Skip) {
                break;
            }
            if let Some(v) = final_before_eom(reply.as_ref(), "BODY")? {
                return Ok(MsgOutcome::EndedEarly {
                    stage: "BODY",
                    verdict: v,
                });
            }
        }

        // End of message: modifications, then a final reply.
        self.macros(cmd::END_OF_MESSAGE, stage::END_OF_MESSAGE, &mv);
        Command::EndOfMessage(b"").encode(&mut self.wbuf);
        let t = Instant::now();
        self.flush("sending EOM")?;
        let mut modifications = 0u32;
        let mut quarantined = false;
        for _ in 0..EOM_PACKETS_MAX {
            match self.read_response("waiting for the end-of-message reply")? {
                Response::Modification(m) => {
                    if m.action_flag() & self.neg.actions == 0 {
                        return Err(MtaError::Protocol(format!(
                            "{} without negotiating its action",
                            m.name()
                        )));
                    }
                    quarantined |= matches!(m, Modification::Quarantine(_));
                    modifications += 1;
                }
                Response::Reply(Reply::Progress) => {}
                Response::Reply(r) => {
                    rt(t.elapsed());
                    let Some(verdict) = Verdict::of(&r) else {
                        return Err(MtaError::Protocol(format!(
                            "{} at end of message",
                            r.name()
                        )));
                    };
                    return Ok(MsgOutcome::Completed {
                        verdict,
                        modifications,
                        quarantined,
                    });
                }
            }
        }
        Err(MtaError::Protocol(format!(
            "more than {EOM_PACKETS_MAX} packets at end of message"
        )))
    }

    /// Sends QUIT and closes the connection.
    ///
    /// # Errors
    /// When the final write fails.
    pub fn quit(mut self) -> Result<(), MtaError> {
        Command::Quit.encode(&mut self.wbuf);
        self.flush("sending QUIT")
    }

    /// Appends the macro packet of a stage (SETSYMLIST list or Postfix default).
    fn macros(&mut self, cmd_byte: u8, stage_index: u32, v: &MacroValues<'_>) {
        self.scratch.clear();
        let custom = self
            .neg
            .symlists
            .get(stage_index as usize)
            .and_then(Option::as_ref);
        let push = |name: &[u8], out: &mut Vec<u8>| {
            if let Some(value) = lookup(name, v) {
                out.extend_from_slice(name);
                out.push(0);
                out.extend_from_slice(value);
                out.push(0);
            }
        };
        match custom {
            Some(names) => names.iter().for_each(|n| push(n, &mut self.scratch)),
            None => default_macros(stage_index)
                .iter()
                .for_each(|n| push(n, &mut self.scratch)),
        }
        Command::Macro {
            stage: cmd_byte,
            pairs: &self.scratch,
        }
        .encode(&mut self.wbuf);
    }

    /// Sends one event unless `no_flag` is negotiated; reads one reply unless
    /// `nr_flag` is (progress packets skipped, round trip reported to `rt`).
    fn event(
        &mut self,
        no_flag: u32,
        nr_flag: u32,
        encode: impl FnOnce(&mut Vec<u8>),
        what: &'static str,
        rt: &mut impl FnMut(Duration),
    ) -> Result<Option<Reply>, MtaError> {
        if self.neg.has(no_flag) {
            self.flush_if_large()?;
            return Ok(None);
        }
        encode(&mut self.wbuf);
        if self.neg.has(nr_flag) {
            self.flush_if_large()?;
            return Ok(None);
        }
        let t = Instant::now();
        self.flush(what)?;
        for _ in 0..PROGRESS_MAX {
            match self.read_response(what)? {
                Response::Reply(Reply::Progress) => {}
                Response::Reply(r) => {
                    rt(t.elapsed());
                    return Ok(Some(r));
                }
                Response::Modification(m) => {
                    return Err(MtaError::Protocol(format!(
                        "{} after {what} (modifications are only allowed at end of message)",
                        m.name()
                    )))
                }
            }
        }
        Err(MtaError::Protocol(format!(
            "more than {PROGRESS_MAX} PROGRESS replies to {what}"
        )))
    }

    fn flush_if_large(&mut self) -> Result<(), MtaError> {
        if self.wbuf.len() >= FLUSH_BYTES {
            self.flush("sending")?;
        }
        Ok(())
    }

    fn flush(&mut self, during: &'static str) -> Result<(), MtaError> {
        if !self.wbuf.is_empty() {
            self.stream
                .write_all(&self.wbuf)
                .map_err(|e| MtaError::from_io(e, during))?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Reads one packet. Each read adds at least one byte and is bounded by the
    /// socket timeout; frames are bounded by [`REPLY_FRAME_BYTES_MAX`].
    fn read_response(&mut self, during: &'static str) -> Result<Response, MtaError> {
        loop {
            let pending = &self.rbuf[self.rstart..self.rend];
            match self.decoder.decode(pending) {
                Ok(Some((frame, used))) => {
                    let resp = Response::decode(frame)
                        .map_err(|e| MtaError::Protocol(format!("{e} {during}")));
                    self.rstart += used;
                    if self.rstart == self.rend {
                        self.rstart = 0;
                        self.rend = 0;
                    }
                    return resp;
                }
                Ok(None) => {}
                Err(e) => return Err(MtaError::Protocol(format!("{e} {during}"))),
            }
            let wanted = self.decoder.bytes_wanted(pending).max(1);
            if self.rbuf.len() - self.rend < wanted {
                self.rbuf.copy_within(self.rstart..self.rend, 0);
                self.rend -= self.rstart;
                self.rstart = 0;
                if self.rbuf.len() - self.rend < wanted {
                    self.rbuf.resize(self.rend + wanted.max(16 * 1024), 0);
                }
            }
            let n = self
                .stream
                .read(&mut self.rbuf[self.rend..])
                .map_err(|e| MtaError::from_io(e, during))?;
            if n == 0 {
                return Err(MtaError::Closed { during });
            }
            self.rend += n;
        }
    }
}

/// Encodes MAIL/RCPT with NUL-terminated arguments.
fn frame_args(out: &mut Vec<u8>, code: u8, args: &[&str]) {
    let mut raw = Vec::with_capacity(args.iter().map(|a| a.len() + 1).sum());
    for a in args {
        raw.extend_from_slice(a.as_bytes());
        raw.push(0);
    }
    match code {
        cmd::MAIL => Command::Mail { args: &raw }.encode(out),
        _ => Command::Rcpt { args: &raw }.encode(out),
    }
}

/// Classifies a reply before end of message: `None` to go on, `Some` for a
/// final decision, an error for replies Postfix refuses at this stage.
fn final_before_eom(
    reply: Option<&Reply>,
    what: &'static str,
) -> Result<Option<Verdict>, MtaError> {
    match reply {
        None | Some(Reply::Continue) => Ok(None),
        // Only meaningful for headers and body chunks; Postfix then skips the
        // remaining events of that type.
        Some(Reply::Skip) if matches!(what, "HEADER" | "BODY") => Ok(None),
        Some(r @ (Reply::OptNeg { .. } | Reply::Skip | Reply::Progress)) => Err(
            MtaError::Protocol(format!("{} is not a valid reply to {what}", r.name())),
        ),
        Some(Reply::Discard) if matches!(what, "CONNECT" | "HELO") => Err(MtaError::Protocol(
            format!("DISCARD is not allowed at {what} (Postfix uses milter_default_action)"),
        )),
        Some(r) => Ok(Verdict::of(r)),
    }
}

fn resp_name(r: &Response) -> &'static str {
    match r {
        Response::Reply(r) => r.name(),
        Response::Modification(m) => m.name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus;
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::PathBuf;

    /// Every (code, payload) a scripted filter received.
    type FrameLog = Vec<(u8, Vec<u8>)>;

    fn read_frame(s: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).ok()?;
        Some((body[0], body[1..].to_vec()))
    }

    fn frame(code: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
        f.push(code);
        f.extend_from_slice(payload);
        f
    }

    /// A scripted filter: negotiates `proto`, answers 'c' to every event that
    /// expects one, sends `eom` frames at end of message, and logs
    /// (code, payload) of everything received.
    fn filter(
        name: &str,
        acts: u32,
        proto: u32,
        eom: Vec<Vec<u8>>,
        extra: Vec<u8>,
    ) -> (PathBuf, std::thread::JoinHandle<FrameLog>) {
        let dir = std::env::temp_dir().join(format!("mb-bench-mta-{}-{name}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("f.sock");
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut log = Vec::new();
            for _ in 0..10_000 {
                let Some((code, payload)) = read_frame(&mut s) else {
                    break;
                };
                log.push((code, payload.clone()));
                let nr = |f: u32| proto & f != 0;
                let reply = match code {
                    b'O' => {
                        let mut p = Vec::new();
                        p.extend_from_slice(&6u32.to_be_bytes());
                        p.extend_from_slice(&acts.to_be_bytes());
                        p.extend_from_slice(&proto.to_be_bytes());
                        p.extend_from_slice(&extra);
                        Some(frame(b'O', &p))
                    }
                    b'C' if !nr(protocol::NR_CONNECT) => Some(frame(b'c', b"")),
                    b'H' if !nr(protocol::NR_HELO) => Some(frame(b'c', b"")),
                    b'M' if !nr(protocol::NR_MAIL) => Some(frame(b'c', b"")),
                    b'R' if !nr(protocol::NR_RCPT) => Some(frame(b'c', b"")),
                    b'T' if !nr(protocol::NR_DATA) => Some(frame(b'c', b"")),
                    b'L' if !nr(protocol::NR_HEADER) => Some(frame(b'c', b"")),
                    b'N' if !nr(protocol::NR_EOH) => Some(frame(b'c', b"")),
                    b'B' if !nr(protocol::NR_BODY) => Some(frame(b'c', b"")),
                    b'E' => Some(eom.concat()),
                    b'Q' => break,
                    _ => None,
                };
                if let Some(r) = reply {
                    s.write_all(&r).unwrap();
                }
            }
            log
        });
        (path, h)
    }

    fn run_one(path: PathBuf, msg: &Message) -> (Negotiated, Result<MsgOutcome, MtaError>, u32) {
        let mut rts = 0u32;
        let mut rt = |_d: Duration| rts += 1;
        let mut s = Session::open(&Target::Unix(path), Duration::from_secs(5), &mut rt).unwrap();
        assert_eq!(s.connect_helo(1234, &mut rt).unwrap(), None);
        let rcpts = vec!["r@dest.example".to_string()];
        let env = Envelope {
            queue_id: "4ABCDEF0123",
            sender: "s@source.example",
            recipients: &rcpts,
        };
        let out = s.message(msg, &env, &mut rt);
        let neg = s.negotiated().clone();
        s.quit().unwrap();
        (neg, out, rts)
    }

    #[test]
    fn full_conversation_without_flags() {
        let msg = corpus::parse_message(b"Subject: hi\nX-Folded: a\n b\n\nbody\n", "t");
        let eom = vec![
            frame(b'h', b"X-Scanned\0yes\0"),
            frame(b'p', b""),
            frame(b'q', b"held\0"),
            frame(b'a', b""),
        ];
        let (path, h) = filter("full", actions::ALL, 0, eom, Vec::new());
        let (_, out, rts) = run_one(path, &msg);
        assert_eq!(
            out.unwrap(),
            MsgOutcome::Completed {
                verdict: Verdict::Accept,
                modifications: 2,
                quarantined: true
            }
        );
        // OPTNEG, CONNECT, HELO, MAIL, RCPT, DATA, 2 headers, EOH, BODY, EOM.
        assert_eq!(rts, 11);
        let log = h.join().unwrap();
        let codes: Vec<u8> = log.iter().map(|(c, _)| *c).collect();
        assert_eq!(codes, b"ODCDHDMDRDTDLDLDNDBDEAQ");
        let find = |c: u8| log.iter().find(|(x, _)| *x == c).unwrap().1.clone();
        assert_eq!(find(b'M'), b"<s@source.example>\0SIZE=38\0");
        assert_eq!(find(b'R'), b"<r@dest.example>\0");
        assert_eq!(find(b'L'), b"Subject\0hi\0");
        assert_eq!(find(b'B'), b"body\r\n");
        assert_eq!(find(b'E'), b"");
        assert_eq!(&find(b'C')[..10], b"localhost\0");
        // Macro packets: CONNECT defaults, then `i` from RCPT on.
        let macros: Vec<&Vec<u8>> = log
            .iter()
            .filter(|(c, _)| *c == b'D')
            .map(|(_, p)| p)
            .collect();
        assert!(macros[0].starts_with(b"Cj\0mx.loadgen.example\0{daemon_name}\0"));
        assert_eq!(macros[1], b"H");
        assert!(macros[2].starts_with(b"M{mail_addr}\0s@source.example\0"));
        assert!(macros[3].starts_with(b"Ri\x004ABCDEF0123\0{rcpt_addr}\0r@dest.example\0"));
        assert_eq!(macros[4], b"Ti\x004ABCDEF0123\0");
        assert_eq!(macros.last().unwrap().as_slice(), b"Ei\x004ABCDEF0123\0");
    }

    #[test]
    fn honours_no_and_nr_flags_and_leadspc() {
        let msg = corpus::parse_message(b"Subject: hi\n\nbody\n", "t");
        let proto = protocol::NO_CONNECT
            | protocol::NR_HELO
            | protocol::NO_DATA
            | protocol::NR_HEADER
            | protocol::NR_EOH
            | protocol::NR_BODY
            | protocol::HEADER_LEADING_SPACE;
        let (path, h) = filter("flags", 0, proto, vec![frame(b'c', b"")], Vec::new());
        let (neg, out, rts) = run_one(path, &msg);
        assert_eq!(neg.protocol, proto);
        assert_eq!(
            out.unwrap(),
            MsgOutcome::Completed {
                verdict: Verdict::Continue,
                modifications: 0,
                quarantined: false
            }
        );
        // OPTNEG, MAIL, RCPT, EOM.
        assert_eq!(rts, 4);
        let log = h.join().unwrap();
        let codes: Vec<u8> = log.iter().map(|(c, _)| *c).collect();
        // CONNECT and DATA are skipped, but their macros are still sent.
        assert_eq!(codes, b"ODDHDMDRDDLDNDBDEAQ");
        let hdr = &log.iter().find(|(c, _)| *c == b'L').unwrap().1;
        assert_eq!(hdr, b"Subject\0 hi\0");
    }

    #[test]
    fn symlist_replaces_default_macros() {
        let msg = corpus::synthesize(300);
        let mut extra = Vec::new();
        extra.extend_from_slice(&stage::MAIL.to_be_bytes());
        extra.extend_from_slice(b"{mail_addr} {unknown}\0");
        let (path, h) = filter(
            "symlist",
            actions::SET_SYMLIST,
            0,
            vec![frame(b'a', b"")],
            extra,
        );
        let (neg, out, _) = run_one(path, &msg);
        assert!(neg.symlists[stage::MAIL as usize].is_some());
        assert!(matches!(
            out.unwrap(),
            MsgOutcome::Completed {
                verdict: Verdict::Accept,
                ..
            }
        ));
        let log = h.join().unwrap();
        let mail_macros = log
            .iter()
            .find(|(c, p)| *c == b'D' && p.first() == Some(&b'M'))
            .unwrap();
        assert_eq!(mail_macros.1, b"M{mail_addr}\0s@source.example\0");
    }

    #[test]
    fn early_reject_ends_message_and_bad_modification_is_an_error() {
        // Reject at MAIL: a scripted filter that rejects every MAIL.
        let dir = std::env::temp_dir().join(format!("mb-bench-mta-{}-rej", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("f.sock");
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut codes = Vec::new();
            while let Some((code, _)) = read_frame(&mut s) {
                codes.push(code);
                match code {
                    b'O' => s
                        .write_all(&frame(b'O', &[0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0]))
                        .unwrap(),
                    b'C' | b'H' => s.write_all(&frame(b'c', b"")).unwrap(),
                    b'M' => s.write_all(&frame(b'y', b"550 5.7.1 go away\0")).unwrap(),
                    b'Q' => break,
                    _ => {}
                }
            }
            codes
        });
        let (_, out, _) = run_one(path, &corpus::synthesize(500));
        assert_eq!(
            out.unwrap(),
            MsgOutcome::EndedEarly {
                stage: "MAIL",
                verdict: Verdict::Reject
            }
        );
        assert_eq!(h.join().unwrap(), b"ODCDHDMAQ");

        // A header change without the CHGHDRS action is refused like Postfix would.
        let (path, h) = filter(
            "badmod",
            0,
            0,
            vec![frame(b'm', b"\0\0\0\x01Subject\0x\0"), frame(b'a', b"")],
            Vec::new(),
        );
        let (_, out, _) = run_one(path, &corpus::synthesize(500));
        assert_eq!(out.unwrap_err().kind(), ErrorKind::Protocol);
        let _ = h.join();
    }

    #[test]
    fn large_body_is_chunked_at_65535() {
        let msg = corpus::synthesize(150_000);
        let (path, h) = filter(
            "big",
            0,
            protocol::NR_BODY,
            vec![frame(b'a', b"")],
            Vec::new(),
        );
        let (_, out, _) = run_one(path, &msg);
        assert!(out.is_ok());
        let log = h.join().unwrap();
        let sizes: Vec<usize> = log
            .iter()
            .filter(|(c, _)| *c == b'B')
            .map(|(_, p)| p.len())
            .collect();
        assert_eq!(sizes.len(), 3);
        assert_eq!(sizes[0], 65_535);
        assert_eq!(sizes[1], 65_535);
        assert_eq!(sizes.iter().sum::<usize>(), msg.body.len());
    }
}
