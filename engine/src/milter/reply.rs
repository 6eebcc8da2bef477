//! Filter → MTA replies (`SMFIR_*`) and modification actions: encode (filter
//! side) and decode (MTA side, for the load generator, `mbctl test-socket` and
//! tests).
//!
//! Payload layouts (libmilter `mfdef.h`):
//!
//! ```text
//! O OPTNEG      u32 version, u32 actions, u32 protocol, then (u32 stage, macros\0)*  (SETSYMLIST)
//! a ACCEPT  c CONTINUE  r REJECT  t TEMPFAIL  d DISCARD  p PROGRESS  s SKIP   (empty)
//! y REPLYCODE   "NNN X.Y.Z text"\0   (one line; multi-line texts use "NNN-" continuation)
//! h ADDHEADER   name\0 value\0
//! i INSHEADER   u32 index, name\0 value\0
//! m CHGHEADER   u32 index (1-based among same-name headers), name\0 value\0 (empty value deletes)
//! + ADDRCPT     rcpt\0
//! 2 ADDRCPT_PAR rcpt\0 args\0
//! - DELRCPT     rcpt\0
//! e CHGFROM     sender\0 [args\0]
//! b REPLBODY    raw body chunk (send several for a large body)
//! q QUARANTINE  reason\0
//! ```
//!
//! Invariants: encoding always produces a well-formed frame: a NUL inside a
//! string becomes a space, and so do CR and LF in REPLYCODE text (we send
//! one-line replies only). [`Response::decode`] never panics, allocates at most
//! the size of the frame, and refuses the reserved SHUTDOWN and CONN_FAIL bytes.

use super::frame::{self, be_u32, nul_string, RawFrame};
use super::{actions, rsp};

/// A final or intermediate reply to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Option negotiation answer, with optional per-stage macro lists.
    OptNeg {
        /// Version we speak.
        version: u32,
        /// `SMFIF_*` actions we want.
        actions: u32,
        /// `SMFIP_*` steps we want.
        protocol: u32,
        /// SETSYMLIST entries: (stage index `SMFIM_*`, space-separated macro names).
        symlists: Vec<(u32, String)>,
    },
    /// Accept the message (or connection) without further filtering.
    Accept,
    /// Continue to the next step.
    Continue,
    /// Reject with the MTA's default 5xx text.
    Reject,
    /// Temporary failure with the MTA's default 4xx text.
    TempFail,
    /// Accept and silently drop the message.
    Discard,
    /// Keep-alive while a long operation runs (resets the MTA's timeout).
    Progress,
    /// Skip the remaining body chunks (only if SMFIP_SKIP was negotiated).
    Skip,
    /// Reject or tempfail with our own SMTP text, e.g. `550 5.7.1 Sender blocked`.
    ReplyCode {
        /// Three-digit SMTP code; 4xx or 5xx.
        code: u16,
        /// Enhanced status code and text, e.g. `5.7.1 Sender blocked`.
        text: String,
    },
}

/// `SMFIM_*` macro stage indices used by SETSYMLIST.
pub mod stage {
    /// SMFIM_CONNECT.
    pub const CONNECT: u32 = 0;
    /// SMFIM_HELO.
    pub const HELO: u32 = 1;
    /// SMFIM_ENVFROM.
    pub const MAIL: u32 = 2;
    /// SMFIM_ENVRCPT.
    pub const RCPT: u32 = 3;
    /// SMFIM_DATA.
    pub const DATA: u32 = 4;
    /// SMFIM_EOM.
    pub const END_OF_MESSAGE: u32 = 5;
    /// SMFIM_EOH.
    pub const END_OF_HEADERS: u32 = 6;
}

/// A modification, sent at end-of-message before the final reply. Each needs
/// its action flag negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modification {
    /// Append a header (SMFIF_ADDHDRS).
    AddHeader {
        /// Field name.
        name: String,
        /// Field value.
        value: String,
    },
    /// Insert a header at `index` (0 = first) (SMFIF_ADDHDRS).
    InsertHeader {
        /// Position among all headers.
        index: u32,
        /// Field name.
        name: String,
        /// Field value.
        value: String,
    },
    /// Change the `index`-th (1-based) header named `name`; an empty value
    /// deletes it (SMFIF_CHGHDRS).
    ChangeHeader {
        /// 1-based occurrence among headers with this name.
        index: u32,
        /// Field name.
        name: String,
        /// New value; empty deletes the header.
        value: String,
    },
    /// Add a recipient (SMFIF_ADDRCPT).
    AddRcpt(String),
    /// Add a recipient with ESMTP arguments (SMFIF_ADDRCPT_PAR).
    AddRcptPar {
        /// Recipient address.
        rcpt: String,
        /// ESMTP arguments, space separated.
        args: String,
    },
    /// Delete a recipient (SMFIF_DELRCPT).
    DeleteRcpt(String),
    /// Change the envelope sender, with optional ESMTP arguments (SMFIF_CHGFROM).
    ChangeFrom {
        /// New sender.
        sender: String,
        /// ESMTP arguments, space separated (empty for none).
        args: String,
    },
    /// One chunk of a replacement body (SMFIF_CHGBODY). The runtime splits a
    /// body into chunks of at most [`crate::limits::MILTER_BODY_CHUNK_BYTES_MAX`].
    ReplaceBody(Vec<u8>),
    /// Put the message on hold with a reason (SMFIF_QUARANTINE).
    Quarantine(String),
}

/// Why a reply could not be decoded (MTA side).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A reply byte outside `SMFIR_*`.
    #[error("unknown milter reply byte 0x{0:02x}")]
    UnknownCode(u8),
    /// The payload does not have the layout the reply requires.
    #[error("malformed {reply} payload: {why}")]
    Malformed {
        /// Reply name.
        reply: &'static str,
        /// What was wrong.
        why: &'static str,
    },
}

/// Anything the filter may send: a reply or a modification (MTA-side decode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A reply.
    Reply(Reply),
    /// A modification action.
    Modification(Modification),
}

impl Reply {
    /// Appends this reply as one frame.
    ///
    /// REPLYCODE is written as `format!("{code} {text}\0")`. CR, LF and NUL in
    /// `text` are replaced by spaces: a bare CR or LF would make the MTA send a
    /// broken multi-line SMTP reply, and a NUL would cut the text short. The
    /// SETSYMLIST macro lists of OPTNEG get the same NUL treatment (the config
    /// checker rejects them earlier; this keeps the frame well-formed anyway).
    ///
    /// # Panics
    /// Never for the payload sizes a reply can have (see [`frame::encode`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::OptNeg {
                version,
                actions,
                protocol,
                symlists,
            } => {
                frame::encode_with(out, rsp::OPTNEG, |o| {
                    o.extend_from_slice(&version.to_be_bytes());
                    o.extend_from_slice(&actions.to_be_bytes());
                    o.extend_from_slice(&protocol.to_be_bytes());
                    for (stage, macros) in symlists {
                        o.extend_from_slice(&stage.to_be_bytes());
                        push_string(o, macros.as_bytes(), false);
                    }
                });
            }
            Reply::ReplyCode { code, text } => frame::encode_with(out, rsp::REPLY_CODE, |o| {
                debug_assert!(
                    (400..600).contains(code),
                    "reply code {code} is not 4xx or 5xx"
                );
                push_code(o, *code);
                o.push(b' ');
                push_string(o, text.as_bytes(), true);
            }),
            simple => frame::encode(out, simple.code(), &[]),
        }
    }

    /// The reply byte (`SMFIR_*`).
    #[must_use]
    pub fn code(&self) -> u8 {
        match self {
            Reply::OptNeg { .. } => rsp::OPTNEG,
            Reply::Accept => rsp::ACCEPT,
            Reply::Continue => rsp::CONTINUE,
            Reply::Reject => rsp::REJECT,
            Reply::TempFail => rsp::TEMPFAIL,
            Reply::Discard => rsp::DISCARD,
            Reply::Progress => rsp::PROGRESS,
            Reply::Skip => rsp::SKIP,
            Reply::ReplyCode { .. } => rsp::REPLY_CODE,
        }
    }

    /// Human name for logs and errors ("ACCEPT", "REPLYCODE", …).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Reply::OptNeg { .. } => "OPTNEG",
            Reply::Accept => "ACCEPT",
            Reply::Continue => "CONTINUE",
            Reply::Reject => "REJECT",
            Reply::TempFail => "TEMPFAIL",
            Reply::Discard => "DISCARD",
            Reply::Progress => "PROGRESS",
            Reply::Skip => "SKIP",
            Reply::ReplyCode { .. } => "REPLYCODE",
        }
    }

    /// Whether this reply ends the message (accept, reject, tempfail, discard,
    /// reply code) as opposed to continue/progress/skip.
    ///
    /// OPTNEG is not final: it only opens the session.
    #[must_use]
    pub fn is_final(&self) -> bool {
        match self {
            Reply::Accept
            | Reply::Reject
            | Reply::TempFail
            | Reply::Discard
            | Reply::ReplyCode { .. } => true,
            Reply::OptNeg { .. } | Reply::Continue | Reply::Progress | Reply::Skip => false,
        }
    }
}

impl Modification {
    /// The `SMFIF_*` action flag this modification needs.
    #[must_use]
    pub fn action_flag(&self) -> u32 {
        match self {
            Modification::AddHeader { .. } | Modification::InsertHeader { .. } => {
                actions::ADD_HEADERS
            }
            Modification::ChangeHeader { .. } => actions::CHANGE_HEADERS,
            Modification::AddRcpt(_) => actions::ADD_RCPT,
            Modification::AddRcptPar { .. } => actions::ADD_RCPT_PAR,
            Modification::DeleteRcpt(_) => actions::DELETE_RCPT,
            Modification::ChangeFrom { .. } => actions::CHANGE_FROM,
            Modification::ReplaceBody(_) => actions::CHANGE_BODY,
            Modification::Quarantine(_) => actions::QUARANTINE,
        }
    }

    /// The action byte (`SMFIR_*`).
    #[must_use]
    pub fn code(&self) -> u8 {
        match self {
            Modification::AddHeader { .. } => rsp::ADD_HEADER,
            Modification::InsertHeader { .. } => rsp::INSERT_HEADER,
            Modification::ChangeHeader { .. } => rsp::CHANGE_HEADER,
            Modification::AddRcpt(_) => rsp::ADD_RCPT,
            Modification::AddRcptPar { .. } => rsp::ADD_RCPT_PAR,
            Modification::DeleteRcpt(_) => rsp::DELETE_RCPT,
            Modification::ChangeFrom { .. } => rsp::CHANGE_FROM,
            Modification::ReplaceBody(_) => rsp::REPLACE_BODY,
            Modification::Quarantine(_) => rsp::QUARANTINE,
        }
    }

    /// Human name for logs and errors ("ADDHEADER", "CHGFROM", …).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Modification::AddHeader { .. } => "ADDHEADER",
            Modification::InsertHeader { .. } => "INSHEADER",
            Modification::ChangeHeader { .. } => "CHGHEADER",
            Modification::AddRcpt(_) => "ADDRCPT",
            Modification::AddRcptPar { .. } => "ADDRCPT_PAR",
            Modification::DeleteRcpt(_) => "DELRCPT",
            Modification::ChangeFrom { .. } => "CHGFROM",
            Modification::ReplaceBody(_) => "REPLBODY",
            Modification::Quarantine(_) => "QUARANTINE",
        }
    }

    /// Appends this modification as one frame.
    ///
    /// A NUL inside a string field is replaced by a space: it would end the
    /// string early and shift every field after it. REPLBODY is sent verbatim;
    /// the caller keeps each chunk within
    /// [`crate::limits::MILTER_BODY_CHUNK_BYTES_MAX`].
    ///
    /// # Panics
    /// Only if a body chunk exceeds `u32::MAX - 1` bytes (see [`frame::encode`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let code = self.code();
        match self {
            Modification::AddHeader { name, value } => frame::encode_with(out, code, |o| {
                push_string(o, name.as_bytes(), false);
                push_string(o, value.as_bytes(), false);
            }),
            Modification::InsertHeader { index, name, value }
            | Modification::ChangeHeader { index, name, value } => {
                frame::encode_with(out, code, |o| {
                    o.extend_from_slice(&index.to_be_bytes());
                    push_string(o, name.as_bytes(), false);
                    push_string(o, value.as_bytes(), false);
                });
            }
            Modification::AddRcpt(s)
            | Modification::DeleteRcpt(s)
            | Modification::Quarantine(s) => {
                frame::encode_with(out, code, |o| push_string(o, s.as_bytes(), false));
            }
            Modification::AddRcptPar { rcpt, args } => frame::encode_with(out, code, |o| {
                push_string(o, rcpt.as_bytes(), false);
                push_string(o, args.as_bytes(), false);
            }),
            // mfdef.h / smfi_chgfrom(3): "args: ESMTP arguments, or NULL"; libmilter
            // sends the second string only when there are arguments.
            Modification::ChangeFrom { sender, args } => frame::encode_with(out, code, |o| {
                push_string(o, sender.as_bytes(), false);
                if !args.is_empty() {
                    push_string(o, args.as_bytes(), false);
                }
            }),
            Modification::ReplaceBody(chunk) => frame::encode(out, code, chunk),
        }
    }
}

impl Response {
    /// Decodes one frame sent by a filter (MTA side).
    ///
    /// Leniency mirrors [`super::Command::decode`]: the final NUL of the last
    /// string may be missing and the payload-less replies ignore any payload.
    /// Strings must be UTF-8 (the types hold `String`). A REPLYCODE must start
    /// with three digits, the first `4` or `5` (Postfix `milter8.c` refuses
    /// anything else); the text is the rest after one optional space, so a
    /// multi-line reply keeps its `NNN-` continuation lines inside `text`.
    ///
    /// SMFIR_SHUTDOWN ('4') and SMFIR_CONN_FAIL ('f') are
    /// [`ReplyError::UnknownCode`]: libmilter reserves them, we never send them,
    /// and [`Reply`] has no variant with their meaning (Postfix answers
    /// SHUTDOWN with a 421 and closes the SMTP session, which is neither
    /// `TempFail` nor `Reject`), so mapping them would misreport the peer.
    ///
    /// Allocation is bounded by the frame: strings are copied once, and each
    /// SETSYMLIST entry takes at least 4 payload bytes.
    ///
    /// # Errors
    /// [`ReplyError`] for unknown codes and malformed payloads; never panics.
    pub fn decode(frame: RawFrame<'_>) -> Result<Self, ReplyError> {
        let p = frame.payload;
        let reply = match frame.code {
            rsp::OPTNEG => decode_optneg(p)?,
            rsp::ACCEPT => Reply::Accept,
            rsp::CONTINUE => Reply::Continue,
            rsp::REJECT => Reply::Reject,
            rsp::TEMPFAIL => Reply::TempFail,
            rsp::DISCARD => Reply::Discard,
            rsp::PROGRESS => Reply::Progress,
            rsp::SKIP => Reply::Skip,
            rsp::REPLY_CODE => decode_reply_code(p)?,
            code => return decode_modification(code, p).map(Response::Modification),
        };
        Ok(Response::Reply(reply))
    }

    /// The reply or action byte (`SMFIR_*`).
    #[must_use]
    pub fn code(&self) -> u8 {
        match self {
            Response::Reply(r) => r.code(),
            Response::Modification(m) => m.code(),
        }
    }

    /// Appends this response as one frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Response::Reply(r) => r.encode(out),
            Response::Modification(m) => m.encode(out),
        }
    }
}

fn malformed(reply: &'static str, why: &'static str) -> ReplyError {
    ReplyError::Malformed { reply, why }
}

/// Appends `s` and its NUL. NUL (and, for SMTP text, CR and LF) become spaces.
fn push_string(out: &mut Vec<u8>, s: &[u8], smtp_text: bool) {
    let start = out.len();
    out.extend_from_slice(s);
    let clean = |b: &mut u8| {
        if *b == 0 || (smtp_text && (*b == b'\r' || *b == b'\n')) {
            *b = b' ';
        }
    };
    out[start..].iter_mut().for_each(clean);
    out.push(0);
}

/// Appends the decimal digits of `code` without allocating.
fn push_code(out: &mut Vec<u8>, code: u16) {
    let mut digits = [0u8; 5];
    let mut n = code;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// [`super::frame::last_string`] with this module's error.
fn last_string<'a>(p: &'a [u8], reply: &'static str) -> Result<&'a [u8], ReplyError> {
    super::frame::last_string(p).ok_or_else(|| malformed(reply, "bytes after the final NUL"))
}

fn utf8(s: &[u8], reply: &'static str) -> Result<String, ReplyError> {
    std::str::from_utf8(s)
        .map(str::to_owned)
        .map_err(|_| malformed(reply, "string is not UTF-8"))
}

/// `name\0 value[\0]`.
fn header_pair(p: &[u8], reply: &'static str) -> Result<(String, String), ReplyError> {
    let (name, rest) =
        nul_string(p).ok_or(malformed(reply, "no NUL between header name and value"))?;
    Ok((utf8(name, reply)?, utf8(last_string(rest, reply)?, reply)?))
}

fn decode_optneg(p: &[u8]) -> Result<Reply, ReplyError> {
    const SHORT: &str = "shorter than 12 bytes (u32 version, actions, protocol)";
    let (version, rest) = be_u32(p).ok_or(malformed("OPTNEG", SHORT))?;
    let (actions, rest) = be_u32(rest).ok_or(malformed("OPTNEG", SHORT))?;
    let (protocol, mut rest) = be_u32(rest).ok_or(malformed("OPTNEG", SHORT))?;
    let mut symlists = Vec::new();
    while !rest.is_empty() {
        let (stage, tail) = be_u32(rest).ok_or(malformed("OPTNEG", "truncated symlist stage"))?;
        let (macros, tail) = match nul_string(tail) {
            Some(split) => split,
            None => (tail, &[][..]),
        };
        symlists.push((stage, utf8(macros, "OPTNEG")?));
        rest = tail;
    }
    Ok(Reply::OptNeg {
        version,
        actions,
        protocol,
        symlists,
    })
}

fn decode_reply_code(p: &[u8]) -> Result<Reply, ReplyError> {
    let line = last_string(p, "REPLYCODE")?;
    let (digits, rest) = line
        .split_first_chunk::<3>()
        .ok_or(malformed("REPLYCODE", "shorter than a 3-digit code"))?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(malformed("REPLYCODE", "does not start with a 3-digit code"));
    }
    if !matches!(digits[0], b'4' | b'5') {
        return Err(malformed("REPLYCODE", "code is not 4xx or 5xx"));
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let text = rest.strip_prefix(b" ").unwrap_or(rest);
    Ok(Reply::ReplyCode {
        code,
        text: utf8(text, "REPLYCODE")?,
    })
}

fn decode_modification(code: u8, p: &[u8]) -> Result<Modification, ReplyError> {
    let modification = match code {
        rsp::ADD_HEADER => {
            let (name, value) = header_pair(p, "ADDHEADER")?;
            Modification::AddHeader { name, value }
        }
        rsp::INSERT_HEADER => {
            let (index, rest) = be_u32(p).ok_or(malformed("INSHEADER", "missing u32 index"))?;
            let (name, value) = header_pair(rest, "INSHEADER")?;
            Modification::InsertHeader { index, name, value }
        }
        rsp::CHANGE_HEADER => {
            let (index, rest) = be_u32(p).ok_or(malformed("CHGHEADER", "missing u32 index"))?;
            let (name, value) = header_pair(rest, "CHGHEADER")?;
            Modification::ChangeHeader { index, name, value }
        }
        rsp::ADD_RCPT => Modification::AddRcpt(utf8(last_string(p, "ADDRCPT")?, "ADDRCPT")?),
        rsp::DELETE_RCPT => Modification::DeleteRcpt(utf8(last_string(p, "DELRCPT")?, "DELRCPT")?),
        rsp::QUARANTINE => {
            Modification::Quarantine(utf8(last_string(p, "QUARANTINE")?, "QUARANTINE")?)
        }
        // The arguments string is optional on decode (libmilter omits it for
        // NULL args) and always present when we encode.
        rsp::ADD_RCPT_PAR | rsp::CHANGE_FROM => {
            let name = if code == rsp::ADD_RCPT_PAR {
                "ADDRCPT_PAR"
            } else {
                "CHGFROM"
            };
            let (first, rest) = match nul_string(p) {
                Some(split) => split,
                None => (p, &[][..]),
            };
            let first = utf8(first, name)?;
            let args = utf8(last_string(rest, name)?, name)?;
            if code == rsp::ADD_RCPT_PAR {
                Modification::AddRcptPar { rcpt: first, args }
            } else {
                Modification::ChangeFrom {
                    sender: first,
                    args,
                }
            }
        }
        rsp::REPLACE_BODY => Modification::ReplaceBody(p.to_vec()),
        other => return Err(ReplyError::UnknownCode(other)),
    };
    Ok(modification)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_bytes(code: u8, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len() + 1).unwrap();
        let mut v = len.to_be_bytes().to_vec();
        v.push(code);
        v.extend_from_slice(payload);
        v
    }

    fn decode(code: u8, payload: &[u8]) -> Result<Response, ReplyError> {
        Response::decode(RawFrame { code, payload })
    }

    fn malformed_why(code: u8, payload: &[u8]) -> &'static str {
        match decode(code, payload) {
            Err(ReplyError::Malformed { why, .. }) => why,
            other => panic!("expected Malformed for {payload:?}, got {other:?}"),
        }
    }

    fn s(text: &str) -> String {
        text.to_owned()
    }

    /// Every reply and modification with its payload, written by hand from the
    /// module table.
    fn table() -> Vec<(Response, u8, &'static [u8])> {
        use Modification as M;
        use Response::{Modification as Mod, Reply as R};
        vec![
            (
                R(Reply::OptNeg {
                    version: 6,
                    actions: 0x1ff,
                    protocol: 0,
                    symlists: vec![],
                }),
                b'O',
                b"\0\0\0\x06\0\0\x01\xff\0\0\0\0",
            ),
            (
                R(Reply::OptNeg {
                    version: 6,
                    actions: 0x1ff,
                    protocol: 0x80,
                    symlists: vec![
                        (stage::CONNECT, s("j {daemon_name}")),
                        (stage::END_OF_MESSAGE, s("i")),
                    ],
                }),
                b'O',
                b"\0\0\0\x06\0\0\x01\xff\0\0\0\x80\0\0\0\0j {daemon_name}\0\0\0\0\x05i\0",
            ),
            (R(Reply::Accept), b'a', b""),
            (R(Reply::Continue), b'c', b""),
            (R(Reply::Reject), b'r', b""),
            (R(Reply::TempFail), b't', b""),
            (R(Reply::Discard), b'd', b""),
            (R(Reply::Progress), b'p', b""),
            (R(Reply::Skip), b's', b""),
            (
                R(Reply::ReplyCode {
                    code: 550,
                    text: s("5.7.1 Sender blocked"),
                }),
                b'y',
                b"550 5.7.1 Sender blocked\0",
            ),
            (
                R(Reply::ReplyCode {
                    code: 451,
                    text: s("4.7.1 Try later"),
                }),
                b'y',
                b"451 4.7.1 Try later\0",
            ),
            (
                Mod(M::AddHeader {
                    name: s("X-Mailborder"),
                    value: s("clean"),
                }),
                b'h',
                b"X-Mailborder\0clean\0",
            ),
            (
                Mod(M::InsertHeader {
                    index: 0,
                    name: s("X-First"),
                    value: s("1"),
                }),
                b'i',
                b"\0\0\0\0X-First\x001\0",
            ),
            (
                Mod(M::ChangeHeader {
                    index: 2,
                    name: s("Subject"),
                    value: s("[SPAM] hi"),
                }),
                b'm',
                b"\0\0\0\x02Subject\0[SPAM] hi\0",
            ),
            (
                Mod(M::ChangeHeader {
                    index: 1,
                    name: s("X-Old"),
                    value: s(""),
                }),
                b'm',
                b"\0\0\0\x01X-Old\0\0",
            ),
            (
                Mod(M::AddRcpt(s("<bcc@example.org>"))),
                b'+',
                b"<bcc@example.org>\0",
            ),
            (
                Mod(M::AddRcptPar {
                    rcpt: s("<a@example.org>"),
                    args: s("NOTIFY=NEVER"),
                }),
                b'2',
                b"<a@example.org>\0NOTIFY=NEVER\0",
            ),
            (
                Mod(M::AddRcptPar {
                    rcpt: s("<a@example.org>"),
                    args: s(""),
                }),
                b'2',
                b"<a@example.org>\0\0",
            ),
            (
                Mod(M::DeleteRcpt(s("<a@example.org>"))),
                b'-',
                b"<a@example.org>\0",
            ),
            (
                Mod(M::ChangeFrom {
                    sender: s("<bounce@example.org>"),
                    args: s(""),
                }),
                b'e',
                b"<bounce@example.org>\0",
            ),
            (
                Mod(M::ChangeFrom {
                    sender: s("<b@example.org>"),
                    args: s("SIZE=1 BODY=8BITMIME"),
                }),
                b'e',
                b"<b@example.org>\0SIZE=1 BODY=8BITMIME\0",
            ),
            (
                Mod(M::ReplaceBody(b"new body\r\n".to_vec())),
                b'b',
                b"new body\r\n",
            ),
            (Mod(M::ReplaceBody(Vec::new())), b'b', b""),
            (Mod(M::Quarantine(s("virus found"))), b'q', b"virus found\0"),
        ]
    }

    #[test]
    fn encode_writes_the_documented_bytes() {
        for (response, code, payload) in table() {
            let mut out = Vec::new();
            response.encode(&mut out);
            assert_eq!(out, frame_bytes(code, payload), "{response:?}");
            assert_eq!(response.code(), code, "{response:?}");
            // The per-type encoders agree with the Response one.
            let mut direct = Vec::new();
            match &response {
                Response::Reply(r) => r.encode(&mut direct),
                Response::Modification(m) => m.encode(&mut direct),
            }
            assert_eq!(direct, out);
        }
    }

    #[test]
    fn decode_reads_the_documented_bytes() {
        for (response, code, payload) in table() {
            assert_eq!(decode(code, payload), Ok(response.clone()), "{response:?}");
        }
    }

    #[test]
    fn reply_code_text_is_one_line() {
        let mut out = Vec::new();
        Reply::ReplyCode {
            code: 554,
            text: s("5.7.1 a\r\nb\0c\nd\re"),
        }
        .encode(&mut out);
        assert_eq!(out, frame_bytes(b'y', b"554 5.7.1 a  b c d e\0"));
    }

    #[test]
    fn nul_in_modification_strings_becomes_a_space() {
        let mut out = Vec::new();
        Modification::AddHeader {
            name: s("X-A\0B"),
            value: s("v\0w"),
        }
        .encode(&mut out);
        assert_eq!(out, frame_bytes(b'h', b"X-A B\0v w\0"));
        out.clear();
        Reply::OptNeg {
            version: 6,
            actions: 0,
            protocol: 0,
            symlists: vec![(1, s("a\0b"))],
        }
        .encode(&mut out);
        assert_eq!(
            out,
            frame_bytes(b'O', b"\0\0\0\x06\0\0\0\0\0\0\0\0\0\0\0\x01a b\0")
        );
    }

    #[test]
    fn reply_code_decoding_splits_code_and_text() {
        let code = |payload: &'static [u8]| match decode(b'y', payload) {
            Ok(Response::Reply(Reply::ReplyCode { code, text })) => (code, text),
            other => panic!("{other:?}"),
        };
        assert_eq!(code(b"421 4.3.2 busy\0"), (421, s("4.3.2 busy")));
        assert_eq!(code(b"550\0"), (550, s("")));
        assert_eq!(code(b"550 text without nul"), (550, s("text without nul")));
        // Multi-line replies keep their continuation in the text.
        assert_eq!(
            code(b"550-5.7.1 a\r\n550 5.7.1 b\0"),
            (550, s("-5.7.1 a\r\n550 5.7.1 b"))
        );
        assert_eq!(malformed_why(b'y', b"55\0"), "shorter than a 3-digit code");
        assert_eq!(
            malformed_why(b'y', b"5x0 t\0"),
            "does not start with a 3-digit code"
        );
        assert_eq!(
            malformed_why(b'y', b"250 2.0.0 ok\0"),
            "code is not 4xx or 5xx"
        );
        assert_eq!(malformed_why(b'y', b"550 \xff\0"), "string is not UTF-8");
        assert_eq!(
            malformed_why(b'y', b"550 a\0b"),
            "bytes after the final NUL"
        );
    }

    #[test]
    fn optneg_decoding_rejects_short_payloads_and_cut_symlists() {
        assert_eq!(
            malformed_why(b'O', &[0; 11]),
            "shorter than 12 bytes (u32 version, actions, protocol)"
        );
        assert_eq!(malformed_why(b'O', &[0; 15]), "truncated symlist stage");
        // A last macro list without its NUL is accepted.
        assert_eq!(
            decode(b'O', b"\0\0\0\x06\0\0\0\0\0\0\0\0\0\0\0\x02i"),
            Ok(Response::Reply(Reply::OptNeg {
                version: 6,
                actions: 0,
                protocol: 0,
                symlists: vec![(stage::MAIL, s("i"))],
            }))
        );
    }

    #[test]
    fn modification_decoding_rejects_broken_layouts() {
        assert_eq!(
            malformed_why(b'h', b"X-A"),
            "no NUL between header name and value"
        );
        assert_eq!(
            malformed_why(b'h', b"X-A\0v\0more"),
            "bytes after the final NUL"
        );
        assert_eq!(malformed_why(b'i', b"\0\0\0"), "missing u32 index");
        assert_eq!(
            malformed_why(b'm', b"\0\0\0\x01X-A"),
            "no NUL between header name and value"
        );
        assert_eq!(malformed_why(b'+', b"\xc3\x28\0"), "string is not UTF-8");
        assert_eq!(
            malformed_why(b'e', b"<a>\0SIZE=1\0x"),
            "bytes after the final NUL"
        );
        assert_eq!(malformed_why(b'q', b"r\0\0"), "bytes after the final NUL");
    }

    #[test]
    fn modification_decoding_is_lenient_where_libmilter_is() {
        // smfi_addrcpt_par with NULL args sends only the recipient.
        assert_eq!(
            decode(b'2', b"<a@b>\0"),
            Ok(Response::Modification(Modification::AddRcptPar {
                rcpt: s("<a@b>"),
                args: s("")
            }))
        );
        assert_eq!(
            decode(b'-', b"<a@b>"),
            Ok(Response::Modification(Modification::DeleteRcpt(s("<a@b>"))))
        );
    }

    #[test]
    fn simple_replies_ignore_a_payload() {
        assert_eq!(decode(b'c', b"x"), Ok(Response::Reply(Reply::Continue)));
    }

    #[test]
    fn unknown_and_reserved_codes_are_errors() {
        for code in [
            0x00,
            b'Z',
            rsp::SHUTDOWN,
            rsp::CONNECTION_FAIL,
            rsp::SET_SYMLIST,
            b'C',
        ] {
            assert_eq!(
                decode(code, b""),
                Err(ReplyError::UnknownCode(code)),
                "{code:#x}"
            );
        }
    }

    #[test]
    fn final_replies() {
        let finals = [
            Reply::Accept,
            Reply::Reject,
            Reply::TempFail,
            Reply::Discard,
            Reply::ReplyCode {
                code: 550,
                text: s("5.7.1 no"),
            },
        ];
        let not_finals = [
            Reply::Continue,
            Reply::Progress,
            Reply::Skip,
            Reply::OptNeg {
                version: 6,
                actions: 0,
                protocol: 0,
                symlists: vec![],
            },
        ];
        assert!(finals.iter().all(Reply::is_final));
        assert!(!not_finals.iter().any(Reply::is_final));
    }

    #[test]
    fn action_flags() {
        use Modification as M;
        let cases = [
            (
                M::AddHeader {
                    name: s("a"),
                    value: s("b"),
                },
                actions::ADD_HEADERS,
            ),
            (
                M::InsertHeader {
                    index: 0,
                    name: s("a"),
                    value: s("b"),
                },
                actions::ADD_HEADERS,
            ),
            (
                M::ChangeHeader {
                    index: 1,
                    name: s("a"),
                    value: s(""),
                },
                actions::CHANGE_HEADERS,
            ),
            (M::AddRcpt(s("a")), actions::ADD_RCPT),
            (
                M::AddRcptPar {
                    rcpt: s("a"),
                    args: s(""),
                },
                actions::ADD_RCPT_PAR,
            ),
            (M::DeleteRcpt(s("a")), actions::DELETE_RCPT),
            (
                M::ChangeFrom {
                    sender: s("a"),
                    args: s(""),
                },
                actions::CHANGE_FROM,
            ),
            (M::ReplaceBody(vec![]), actions::CHANGE_BODY),
            (M::Quarantine(s("r")), actions::QUARANTINE),
        ];
        for (m, flag) in cases {
            assert_eq!(m.action_flag(), flag, "{m:?}");
            assert_eq!(
                m.action_flag() & actions::ALL,
                flag,
                "within what Postfix offers"
            );
        }
    }

    #[test]
    fn push_code_writes_decimal() {
        for (code, text) in [(0u16, "0"), (7, "7"), (421, "421"), (u16::MAX, "65535")] {
            let mut out = Vec::new();
            push_code(&mut out, code);
            assert_eq!(out, text.as_bytes());
        }
    }
}
