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

use super::frame::RawFrame;

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
    pub fn encode(&self, out: &mut Vec<u8>) {
        let _ = out;
        todo!("helper")
    }

    /// Whether this reply ends the message (accept, reject, tempfail, discard,
    /// reply code) as opposed to continue/progress/skip.
    #[must_use]
    pub fn is_final(&self) -> bool {
        todo!("helper")
    }
}

impl Modification {
    /// The `SMFIF_*` action flag this modification needs.
    #[must_use]
    pub fn action_flag(&self) -> u32 {
        todo!("helper")
    }

    /// Appends this modification as one frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let _ = out;
        todo!("helper")
    }
}

impl Response {
    /// Decodes one frame sent by a filter (MTA side).
    ///
    /// # Errors
    /// [`ReplyError`] for unknown codes and malformed payloads; never panics.
    pub fn decode(frame: RawFrame<'_>) -> Result<Self, ReplyError> {
        let _ = frame;
        todo!("helper")
    }
}
