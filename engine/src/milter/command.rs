//! MTA → filter commands (`SMFIC_*`): decode (filter side) and encode (MTA side,
//! for the load generator, `mbctl test-socket` and tests).
//!
//! Payload layouts (libmilter `mfdef.h`, checked against Postfix 3.7.11):
//!
//! ```text
//! O OPTNEG   u32 version, u32 actions, u32 protocol
//! D MACRO    u8 stage-cmd, then (name\0 value\0)*
//! C CONNECT  hostname\0, u8 family ('4' '6' 'L' 'U'), [u16 port, address\0]   (port+addr absent for 'U'nknown)
//! H HELO     name\0
//! M MAIL     sender\0 (esmtp-arg\0)*
//! R RCPT     recipient\0 (esmtp-arg\0)*
//! T DATA     (empty)
//! L HEADER   name\0 value\0
//! N EOH      (empty)
//! B BODY     raw chunk (≤ 65535 bytes from Postfix), CRLF line ends
//! E EOM      optional final body chunk (Postfix sends none)
//! A ABORT    (empty)           Q QUIT (empty)       K QUIT_NC (empty)
//! U UNKNOWN  command\0
//! ```

use super::frame::RawFrame;

/// Address family of the SMTP client in CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// '4': IPv4.
    Inet,
    /// '6': IPv6.
    Inet6,
    /// 'L': unix socket.
    Unix,
    /// 'U': unknown (no port or address follow).
    Unknown,
}

/// The stage a macro packet belongs to (the command byte it precedes).
pub type MacroStage = u8;

/// Why a command payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A command byte outside `SMFIC_*`.
    #[error("unknown milter command byte 0x{0:02x}")]
    UnknownCode(u8),
    /// The payload does not have the layout the command requires.
    #[error("malformed {command} payload: {why}")]
    Malformed {
        /// Command name, e.g. "CONNECT".
        command: &'static str,
        /// What was wrong.
        why: &'static str,
    },
}

/// One decoded command, borrowing its strings from the frame (without their
/// terminating NULs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// Option negotiation.
    OptNeg {
        /// Protocol version offered by the MTA.
        version: u32,
        /// `SMFIF_*` actions the MTA allows.
        actions: u32,
        /// `SMFIP_*` steps the MTA offers.
        protocol: u32,
    },
    /// Macros for the command that follows.
    Macro {
        /// The command byte these macros belong to.
        stage: MacroStage,
        /// Raw `name\0value\0…` pairs; iterate with [`macro_pairs`].
        pairs: &'a [u8],
    },
    /// SMTP client connection.
    Connect {
        /// Client host name (as resolved by the MTA).
        hostname: &'a [u8],
        /// Address family.
        family: Family,
        /// Client port (0 for unix or unknown).
        port: u16,
        /// Client address text (empty for unknown).
        address: &'a [u8],
    },
    /// HELO/EHLO argument.
    Helo {
        /// The name the client gave.
        name: &'a [u8],
    },
    /// MAIL FROM: the sender then ESMTP arguments, raw `arg\0…`.
    Mail {
        /// Raw NUL-separated argument list; iterate with [`args`].
        args: &'a [u8],
    },
    /// RCPT TO: the recipient then ESMTP arguments, raw `arg\0…`.
    Rcpt {
        /// Raw NUL-separated argument list; iterate with [`args`].
        args: &'a [u8],
    },
    /// DATA.
    Data,
    /// One header.
    Header {
        /// Header field name.
        name: &'a [u8],
        /// Header value (leading space only if HDR_LEADSPC was negotiated).
        value: &'a [u8],
    },
    /// End of headers.
    EndOfHeaders,
    /// One body chunk.
    Body(&'a [u8]),
    /// End of message, with an optional final body chunk.
    EndOfMessage(&'a [u8]),
    /// Abort the current message (connection stays).
    Abort,
    /// Close the connection.
    Quit,
    /// Close this session, a new one starts on the same connection.
    QuitNewConnection,
    /// An SMTP command the MTA did not recognise (verb only, from Postfix).
    Unknown(&'a [u8]),
}

impl<'a> Command<'a> {
    /// Decodes a frame into a command.
    ///
    /// # Errors
    /// [`CommandError`] for unknown codes and malformed payloads. Never panics on
    /// any input.
    pub fn decode(frame: RawFrame<'a>) -> Result<Self, CommandError> {
        let _ = frame;
        todo!("helper: decode every SMFIC_* command")
    }

    /// Appends this command as one frame to `out` (MTA side).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let _ = out;
        todo!("helper: encode every SMFIC_* command")
    }

    /// The command byte.
    #[must_use]
    pub fn code(&self) -> u8 {
        todo!("helper")
    }

    /// Human name for logs and errors ("CONNECT", "MAIL", …).
    #[must_use]
    pub fn name(&self) -> &'static str {
        todo!("helper")
    }
}

/// Iterates NUL-terminated strings in `raw` (a missing final NUL still yields
/// the last string). Used for MAIL/RCPT arguments.
pub fn args(raw: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let _ = raw;
    todo!("helper");
    #[allow(unreachable_code)]
    std::iter::empty()
}

/// Iterates `(name, value)` pairs of a macro payload. Names keep their braces
/// as sent (`{mail_addr}`, `i`). A trailing name without a value is dropped.
pub fn macro_pairs(raw: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
    let _ = raw;
    todo!("helper");
    #[allow(unreachable_code)]
    std::iter::empty()
}
