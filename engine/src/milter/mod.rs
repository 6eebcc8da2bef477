//! Sendmail/Postfix milter protocol, version 6, **filter side**, sans-I/O.
//!
//! Wire format (libmilter `mfdef.h`, confirmed against Postfix 3.7.11 captures in
//! `../shared/harness/postfix/captures`):
//!
//! ```text
//! +----------------+--------+---------------------------+
//! | u32 BE length  | u8 cmd | payload (length - 1 bytes) |
//! +----------------+--------+---------------------------+
//! ```
//!
//! The length counts the command byte plus the payload. Strings in payloads are
//! NUL-terminated; MAIL and RCPT carry one string per argument (the address, then
//! each ESMTP parameter). `SMFIC_MACRO` ('D') carries the stage command byte then
//! name/value string pairs. Integers are big-endian.
//!
//! Modules:
//! - [`frame`]: the length-prefixed decoder with a size limit (`Incomplete`,
//!   `TooLarge`), borrowing frames from the caller's buffer.
//! - [`command`]: MTA → filter commands (decode for the filter, encode for the
//!   load generator, `mbctl test-socket` and tests).
//! - [`reply`]: filter → MTA replies and modification actions (encode for the
//!   filter, decode for the MTA-side tools).
//! - [`session`]: the per-connection conversation state machine that turns
//!   commands into replies using a [`crate::policy`] snapshot.

pub mod command;
pub mod frame;
pub mod reply;
pub mod session;

pub use command::{Command, Family, MacroStage};
pub use frame::{FrameDecoder, FrameError, RawFrame};
pub use reply::{Modification, Reply};
pub use session::{Conversation, ConversationError, Output, PendingScan, Settings};

/// Protocol version we speak (and the highest Postfix 3.7 speaks).
pub const VERSION: u32 = 6;

/// `SMFIF_*` action flags: what modifications the filter may request.
pub mod actions {
    /// SMFIF_ADDHDRS: add headers.
    pub const ADD_HEADERS: u32 = 0x0001;
    /// SMFIF_CHGBODY: replace the body.
    pub const CHANGE_BODY: u32 = 0x0002;
    /// SMFIF_ADDRCPT: add recipients.
    pub const ADD_RCPT: u32 = 0x0004;
    /// SMFIF_DELRCPT: delete recipients.
    pub const DELETE_RCPT: u32 = 0x0008;
    /// SMFIF_CHGHDRS: change or delete headers.
    pub const CHANGE_HEADERS: u32 = 0x0010;
    /// SMFIF_QUARANTINE: quarantine the message (Postfix: hold queue).
    pub const QUARANTINE: u32 = 0x0020;
    /// SMFIF_CHGFROM: change the envelope sender.
    pub const CHANGE_FROM: u32 = 0x0040;
    /// SMFIF_ADDRCPT_PAR: add recipients with ESMTP arguments.
    pub const ADD_RCPT_PAR: u32 = 0x0080;
    /// SMFIF_SETSYMLIST: request macro lists per stage.
    pub const SET_SYMLIST: u32 = 0x0100;
    /// Every action Postfix 3.7 offers (0x1FF). Asking for more is a hard failure.
    pub const ALL: u32 = 0x01FF;
}

/// `SMFIP_*` protocol step flags: which events the MTA skips (`NO_*`) or sends
/// without waiting for a reply (`NR_*`).
pub mod protocol {
    /// SMFIP_NOCONNECT: do not send CONNECT.
    pub const NO_CONNECT: u32 = 0x0000_0001;
    /// SMFIP_NOHELO: do not send HELO.
    pub const NO_HELO: u32 = 0x0000_0002;
    /// SMFIP_NOMAIL: do not send MAIL.
    pub const NO_MAIL: u32 = 0x0000_0004;
    /// SMFIP_NORCPT: do not send RCPT.
    pub const NO_RCPT: u32 = 0x0000_0008;
    /// SMFIP_NOBODY: do not send body chunks.
    pub const NO_BODY: u32 = 0x0000_0010;
    /// SMFIP_NOHDRS: do not send headers.
    pub const NO_HEADERS: u32 = 0x0000_0020;
    /// SMFIP_NOEOH: do not send end-of-headers.
    pub const NO_EOH: u32 = 0x0000_0040;
    /// SMFIP_NR_HDR: no reply to headers.
    pub const NR_HEADER: u32 = 0x0000_0080;
    /// SMFIP_NOUNKNOWN: do not send unknown SMTP commands.
    pub const NO_UNKNOWN: u32 = 0x0000_0100;
    /// SMFIP_NODATA: do not send DATA.
    pub const NO_DATA: u32 = 0x0000_0200;
    /// SMFIP_SKIP: the MTA understands SMFIR_SKIP.
    pub const SKIP: u32 = 0x0000_0400;
    /// SMFIP_RCPT_REJ: also send rejected recipients.
    pub const RCPT_REJ: u32 = 0x0000_0800;
    /// SMFIP_NR_CONN: no reply to CONNECT.
    pub const NR_CONNECT: u32 = 0x0000_1000;
    /// SMFIP_NR_HELO: no reply to HELO.
    pub const NR_HELO: u32 = 0x0000_2000;
    /// SMFIP_NR_MAIL: no reply to MAIL.
    pub const NR_MAIL: u32 = 0x0000_4000;
    /// SMFIP_NR_RCPT: no reply to RCPT.
    pub const NR_RCPT: u32 = 0x0000_8000;
    /// SMFIP_NR_DATA: no reply to DATA.
    pub const NR_DATA: u32 = 0x0001_0000;
    /// SMFIP_NR_UNKN: no reply to unknown commands.
    pub const NR_UNKNOWN: u32 = 0x0002_0000;
    /// SMFIP_NR_EOH: no reply to end-of-headers.
    pub const NR_EOH: u32 = 0x0004_0000;
    /// SMFIP_NR_BODY: no reply to body chunks.
    pub const NR_BODY: u32 = 0x0008_0000;
    /// SMFIP_HDR_LEADSPC: header values keep their leading space.
    pub const HEADER_LEADING_SPACE: u32 = 0x0010_0000;
    /// Every step flag Postfix 3.7 offers (0x1FFFFF).
    pub const ALL: u32 = 0x001F_FFFF;
}

/// Command bytes (`SMFIC_*`), MTA → filter.
pub mod cmd {
    /// SMFIC_ABORT.
    pub const ABORT: u8 = b'A';
    /// SMFIC_BODY.
    pub const BODY: u8 = b'B';
    /// SMFIC_CONNECT.
    pub const CONNECT: u8 = b'C';
    /// SMFIC_MACRO.
    pub const MACRO: u8 = b'D';
    /// SMFIC_BODYEOB.
    pub const END_OF_MESSAGE: u8 = b'E';
    /// SMFIC_HELO.
    pub const HELO: u8 = b'H';
    /// SMFIC_QUIT_NC.
    pub const QUIT_NEW_CONNECTION: u8 = b'K';
    /// SMFIC_HEADER.
    pub const HEADER: u8 = b'L';
    /// SMFIC_MAIL.
    pub const MAIL: u8 = b'M';
    /// SMFIC_EOH.
    pub const END_OF_HEADERS: u8 = b'N';
    /// SMFIC_OPTNEG.
    pub const OPTNEG: u8 = b'O';
    /// SMFIC_QUIT.
    pub const QUIT: u8 = b'Q';
    /// SMFIC_RCPT.
    pub const RCPT: u8 = b'R';
    /// SMFIC_DATA.
    pub const DATA: u8 = b'T';
    /// SMFIC_UNKNOWN.
    pub const UNKNOWN: u8 = b'U';
}

/// Reply and action bytes (`SMFIR_*`), filter → MTA.
pub mod rsp {
    /// SMFIR_ADDRCPT.
    pub const ADD_RCPT: u8 = b'+';
    /// SMFIR_DELRCPT.
    pub const DELETE_RCPT: u8 = b'-';
    /// SMFIR_ADDRCPT_PAR.
    pub const ADD_RCPT_PAR: u8 = b'2';
    /// SMFIR_SHUTDOWN (reserved by libmilter; never sent by us).
    pub const SHUTDOWN: u8 = b'4';
    /// SMFIR_ACCEPT.
    pub const ACCEPT: u8 = b'a';
    /// SMFIR_REPLBODY.
    pub const REPLACE_BODY: u8 = b'b';
    /// SMFIR_CONTINUE.
    pub const CONTINUE: u8 = b'c';
    /// SMFIR_DISCARD.
    pub const DISCARD: u8 = b'd';
    /// SMFIR_CHGFROM.
    pub const CHANGE_FROM: u8 = b'e';
    /// SMFIR_CONN_FAIL (reserved by libmilter; never sent by us).
    pub const CONNECTION_FAIL: u8 = b'f';
    /// SMFIR_ADDHEADER.
    pub const ADD_HEADER: u8 = b'h';
    /// SMFIR_INSHEADER.
    pub const INSERT_HEADER: u8 = b'i';
    /// SMFIR_SETSYMLIST (in the OPTNEG reply payload, not a packet).
    pub const SET_SYMLIST: u8 = b'l';
    /// SMFIR_CHGHEADER.
    pub const CHANGE_HEADER: u8 = b'm';
    /// SMFIR_PROGRESS.
    pub const PROGRESS: u8 = b'p';
    /// SMFIR_QUARANTINE.
    pub const QUARANTINE: u8 = b'q';
    /// SMFIR_REJECT.
    pub const REJECT: u8 = b'r';
    /// SMFIR_SKIP.
    pub const SKIP: u8 = b's';
    /// SMFIR_TEMPFAIL.
    pub const TEMPFAIL: u8 = b't';
    /// SMFIR_REPLYCODE.
    pub const REPLY_CODE: u8 = b'y';
    /// SMFIC_OPTNEG as a reply.
    pub const OPTNEG: u8 = b'O';
}
