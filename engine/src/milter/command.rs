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
//!
//! Invariants: decoding borrows every string from the frame, never allocates
//! and never panics on any input ([`Command::decode`] lists what it tolerates).
//! Encoding copies raw lists (macro pairs, MAIL/RCPT arguments, body chunks)
//! verbatim, so decode then encode gives back the captured Postfix frames byte
//! for byte (`tests/captures.rs`, fixtures in `fixtures/milter`).

use super::cmd;
use super::frame::{self, be_u32, nul_string, RawFrame};

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
    /// Leniency, chosen to match what libmilter accepts: the final NUL of the
    /// last string (HELO, UNKNOWN, HEADER value, CONNECT address) may be
    /// missing, OPTNEG may carry bytes after its three integers, and the
    /// payload-less commands (DATA, EOH, ABORT, QUIT, QUIT_NC) ignore any
    /// payload. Everything else that breaks the layout is
    /// [`CommandError::Malformed`]: a missing separator, a truncated integer,
    /// an unknown address family, or bytes after the final NUL.
    ///
    /// Decoding borrows from the frame and never allocates.
    ///
    /// # Errors
    /// [`CommandError`] for unknown codes and malformed payloads. Never panics on
    /// any input.
    pub fn decode(frame: RawFrame<'a>) -> Result<Self, CommandError> {
        let p = frame.payload;
        let command = match frame.code {
            // mfdef.h: "SMFIC_OPTNEG 'O' option negotiation"; three u32 in
            // network order. libmilter reads the first 12 bytes and ignores the
            // rest, so do we.
            cmd::OPTNEG => {
                let (version, rest) = be_u32(p).ok_or(malformed("OPTNEG", OPTNEG_SHORT))?;
                let (actions, rest) = be_u32(rest).ok_or(malformed("OPTNEG", OPTNEG_SHORT))?;
                let (protocol, _) = be_u32(rest).ok_or(malformed("OPTNEG", OPTNEG_SHORT))?;
                Command::OptNeg {
                    version,
                    actions,
                    protocol,
                }
            }
            // The stage byte is mandatory; an empty pair list is legal
            // (Postfix sends `D H` with nothing else when no HELO macro is set).
            cmd::MACRO => {
                let (&stage, pairs) = p
                    .split_first()
                    .ok_or(malformed("MACRO", "missing stage byte"))?;
                Command::Macro { stage, pairs }
            }
            cmd::CONNECT => decode_connect(p)?,
            cmd::HELO => Command::Helo {
                name: last_string(p, "HELO")?,
            },
            cmd::MAIL if p.is_empty() => return Err(malformed("MAIL", "missing sender")),
            cmd::MAIL => Command::Mail { args: p },
            cmd::RCPT if p.is_empty() => return Err(malformed("RCPT", "missing recipient")),
            cmd::RCPT => Command::Rcpt { args: p },
            cmd::DATA => Command::Data,
            cmd::HEADER => {
                let (name, rest) = nul_string(p)
                    .ok_or(malformed("HEADER", "no NUL between header name and value"))?;
                Command::Header {
                    name,
                    value: last_string(rest, "HEADER")?,
                }
            }
            cmd::END_OF_HEADERS => Command::EndOfHeaders,
            cmd::BODY => Command::Body(p),
            cmd::END_OF_MESSAGE => Command::EndOfMessage(p),
            cmd::ABORT => Command::Abort,
            cmd::QUIT => Command::Quit,
            cmd::QUIT_NEW_CONNECTION => Command::QuitNewConnection,
            cmd::UNKNOWN => Command::Unknown(last_string(p, "UNKNOWN")?),
            other => return Err(CommandError::UnknownCode(other)),
        };
        Ok(command)
    }

    /// Appends this command as one frame to `out` (MTA side).
    ///
    /// Borrowed raw lists (MACRO pairs, MAIL/RCPT arguments, body chunks) are
    /// copied verbatim, so decode followed by encode gives back the exact frame
    /// whenever the frame carried its final NULs. Single strings get their NUL
    /// appended here; a string that itself contains a NUL is the caller's bug
    /// and would decode as a shorter string (or as malformed).
    ///
    /// # Panics
    /// Only if the payload exceeds `u32::MAX - 1` bytes (see [`frame::encode`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let code = self.code();
        match *self {
            Command::OptNeg {
                version,
                actions,
                protocol,
            } => frame::encode_with(out, code, |o| {
                o.extend_from_slice(&version.to_be_bytes());
                o.extend_from_slice(&actions.to_be_bytes());
                o.extend_from_slice(&protocol.to_be_bytes());
            }),
            Command::Macro { stage, pairs } => frame::encode_with(out, code, |o| {
                o.push(stage);
                o.extend_from_slice(pairs);
            }),
            Command::Connect {
                hostname,
                family,
                port,
                address,
            } => {
                frame::encode_with(out, code, |o| {
                    push_string(o, hostname);
                    o.push(family.byte());
                    if family != Family::Unknown {
                        o.extend_from_slice(&port.to_be_bytes());
                        push_string(o, address);
                    }
                });
            }
            Command::Helo { name: s } | Command::Unknown(s) => {
                frame::encode_with(out, code, |o| push_string(o, s));
            }
            Command::Mail { args: raw }
            | Command::Rcpt { args: raw }
            | Command::Body(raw)
            | Command::EndOfMessage(raw) => frame::encode(out, code, raw),
            Command::Header { name, value } => frame::encode_with(out, code, |o| {
                push_string(o, name);
                push_string(o, value);
            }),
            Command::Data
            | Command::EndOfHeaders
            | Command::Abort
            | Command::Quit
            | Command::QuitNewConnection => frame::encode(out, code, &[]),
        }
    }

    /// The command byte.
    #[must_use]
    pub fn code(&self) -> u8 {
        match self {
            Command::OptNeg { .. } => cmd::OPTNEG,
            Command::Macro { .. } => cmd::MACRO,
            Command::Connect { .. } => cmd::CONNECT,
            Command::Helo { .. } => cmd::HELO,
            Command::Mail { .. } => cmd::MAIL,
            Command::Rcpt { .. } => cmd::RCPT,
            Command::Data => cmd::DATA,
            Command::Header { .. } => cmd::HEADER,
            Command::EndOfHeaders => cmd::END_OF_HEADERS,
            Command::Body(_) => cmd::BODY,
            Command::EndOfMessage(_) => cmd::END_OF_MESSAGE,
            Command::Abort => cmd::ABORT,
            Command::Quit => cmd::QUIT,
            Command::QuitNewConnection => cmd::QUIT_NEW_CONNECTION,
            Command::Unknown(_) => cmd::UNKNOWN,
        }
    }

    /// Human name for logs and errors ("CONNECT", "MAIL", …).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Command::OptNeg { .. } => "OPTNEG",
            Command::Macro { .. } => "MACRO",
            Command::Connect { .. } => "CONNECT",
            Command::Helo { .. } => "HELO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Header { .. } => "HEADER",
            Command::EndOfHeaders => "EOH",
            Command::Body(_) => "BODY",
            Command::EndOfMessage(_) => "EOM",
            Command::Abort => "ABORT",
            Command::Quit => "QUIT",
            Command::QuitNewConnection => "QUIT_NC",
            Command::Unknown(_) => "UNKNOWN",
        }
    }
}

impl Family {
    /// The family byte on the wire (`SMFIA_*`: '4', '6', 'L', 'U').
    #[must_use]
    pub fn byte(self) -> u8 {
        match self {
            Family::Inet => b'4',
            Family::Inet6 => b'6',
            Family::Unix => b'L',
            Family::Unknown => b'U',
        }
    }

    /// The family for a wire byte, or `None` outside `SMFIA_*`.
    #[must_use]
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            b'4' => Some(Family::Inet),
            b'6' => Some(Family::Inet6),
            b'L' => Some(Family::Unix),
            b'U' => Some(Family::Unknown),
            _ => None,
        }
    }
}

const OPTNEG_SHORT: &str = "shorter than 12 bytes (u32 version, actions, protocol)";

fn malformed(command: &'static str, why: &'static str) -> CommandError {
    CommandError::Malformed { command, why }
}

/// [`super::frame::last_string`] with this module's error.
fn last_string<'a>(p: &'a [u8], command: &'static str) -> Result<&'a [u8], CommandError> {
    super::frame::last_string(p).ok_or_else(|| malformed(command, "bytes after the final NUL"))
}

/// `hostname\0 family [port address\0]`, see the module table.
fn decode_connect(p: &[u8]) -> Result<Command<'_>, CommandError> {
    let (hostname, rest) =
        nul_string(p).ok_or(malformed("CONNECT", "hostname is not NUL-terminated"))?;
    let (&byte, rest) = rest
        .split_first()
        .ok_or(malformed("CONNECT", "missing family byte"))?;
    let family = Family::from_byte(byte).ok_or(malformed(
        "CONNECT",
        "family byte is not '4', '6', 'L' or 'U'",
    ))?;
    if family == Family::Unknown {
        // mfdef.h: "SMFIA_UNKNOWN 'U' unknown"; libmilter reads nothing after it.
        if !rest.is_empty() {
            return Err(malformed("CONNECT", "bytes after family 'U'"));
        }
        return Ok(Command::Connect {
            hostname,
            family,
            port: 0,
            address: &[],
        });
    }
    let (port, rest) = rest
        .split_first_chunk::<2>()
        .ok_or(malformed("CONNECT", "missing port"))?;
    let address = last_string(rest, "CONNECT")?;
    Ok(Command::Connect {
        hostname,
        family,
        port: u16::from_be_bytes(*port),
        address,
    })
}

fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

/// Iterates NUL-terminated strings in `raw` (a missing final NUL still yields
/// the last string). Used for MAIL/RCPT arguments.
///
/// `a\0b\0` and `a\0b` both yield `a`, `b`; `a\0\0` yields `a` and an empty
/// string; an empty `raw` yields nothing. Zero-copy, never panics.
pub fn args(raw: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut rest = raw;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match nul_string(rest) {
            Some((s, tail)) => {
                rest = tail;
                Some(s)
            }
            None => Some(std::mem::take(&mut rest)),
        }
    })
}

/// Iterates `(name, value)` pairs of a macro payload. Names keep their braces
/// as sent (`{mail_addr}`, `i`). A trailing name without a value is dropped.
///
/// Zero-copy, never panics; the final NUL of the last value may be missing.
pub fn macro_pairs(raw: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
    let mut strings = args(raw);
    std::iter::from_fn(move || {
        let name = strings.next()?;
        let value = strings.next()?;
        Some((name, value))
    })
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

    fn decode(code: u8, payload: &[u8]) -> Result<Command<'_>, CommandError> {
        Command::decode(RawFrame { code, payload })
    }

    fn malformed_why(code: u8, payload: &[u8]) -> &'static str {
        match decode(code, payload) {
            Err(CommandError::Malformed { why, .. }) => why,
            other => panic!("expected Malformed for {payload:?}, got {other:?}"),
        }
    }

    /// Every variant with its payload, written by hand from the module table.
    /// The CONNECT, HELO, MAIL, RCPT, HEADER and MACRO payloads are the bytes
    /// Postfix 3.7.11 sent in `captures/A-default.log`.
    fn table() -> Vec<(Command<'static>, u8, &'static [u8])> {
        vec![
            (
                Command::OptNeg {
                    version: 6,
                    actions: 0x1ff,
                    protocol: 0x1f_ffff,
                },
                b'O',
                b"\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff",
            ),
            (
                Command::Macro {
                    stage: b'C',
                    pairs: b"j\0mx.pfh.example\0v\0Postfix 3.7.11\0",
                },
                b'D',
                b"Cj\0mx.pfh.example\0v\0Postfix 3.7.11\0",
            ),
            (
                Command::Macro {
                    stage: b'H',
                    pairs: b"",
                },
                b'D',
                b"H",
            ),
            (
                Command::Connect {
                    hostname: b"localhost",
                    family: Family::Inet,
                    port: 53344,
                    address: b"127.0.0.1",
                },
                b'C',
                b"localhost\x004\xd0\x60127.0.0.1\0",
            ),
            (
                Command::Connect {
                    hostname: b"mail.example",
                    family: Family::Inet6,
                    port: 25,
                    address: b"2001:db8::1",
                },
                b'C',
                b"mail.example\x006\x00\x192001:db8::1\0",
            ),
            (
                Command::Connect {
                    hostname: b"localhost",
                    family: Family::Unix,
                    port: 0,
                    address: b"/run/smtp.sock",
                },
                b'C',
                b"localhost\0L\x00\x00/run/smtp.sock\0",
            ),
            (
                Command::Connect {
                    hostname: b"unknown",
                    family: Family::Unknown,
                    port: 0,
                    address: b"",
                },
                b'C',
                b"unknown\0U",
            ),
            (
                Command::Helo {
                    name: b"probe.pfh.example",
                },
                b'H',
                b"probe.pfh.example\0",
            ),
            (
                Command::Mail {
                    args: b"<probe@source.example>\0SIZE=300\0",
                },
                b'M',
                b"<probe@source.example>\0SIZE=300\0",
            ),
            (
                Command::Rcpt {
                    args: b"<rcpt@dest.example>\0",
                },
                b'R',
                b"<rcpt@dest.example>\0",
            ),
            (Command::Data, b'T', b""),
            (
                Command::Header {
                    name: b"From",
                    value: b"<probe@source.example>",
                },
                b'L',
                b"From\0<probe@source.example>\0",
            ),
            (
                Command::Header {
                    name: b"X-Empty",
                    value: b"",
                },
                b'L',
                b"X-Empty\0\0",
            ),
            (Command::EndOfHeaders, b'N', b""),
            (Command::Body(b"line\r\n"), b'B', b"line\r\n"),
            (Command::EndOfMessage(b""), b'E', b""),
            (Command::EndOfMessage(b"tail\r\n"), b'E', b"tail\r\n"),
            (Command::Abort, b'A', b""),
            (Command::Quit, b'Q', b""),
            (Command::QuitNewConnection, b'K', b""),
            (Command::Unknown(b"XYZZY"), b'U', b"XYZZY\0"),
        ]
    }

    #[test]
    fn encode_writes_the_documented_bytes() {
        for (command, code, payload) in table() {
            let mut out = Vec::new();
            command.encode(&mut out);
            assert_eq!(out, frame_bytes(code, payload), "{command:?}");
            assert_eq!(command.code(), code, "{command:?}");
        }
    }

    #[test]
    fn decode_reads_the_documented_bytes() {
        for (command, code, payload) in table() {
            assert_eq!(decode(code, payload), Ok(command.clone()), "{command:?}");
        }
    }

    #[test]
    fn encode_appends_without_touching_earlier_bytes() {
        let mut out = b"keep".to_vec();
        Command::Quit.encode(&mut out);
        Command::Helo { name: b"h" }.encode(&mut out);
        assert_eq!(out, b"keep\0\0\0\x01Q\0\0\0\x03Hh\0");
    }

    #[test]
    fn names_are_distinct_and_match_libmilter() {
        let names: Vec<_> = table().iter().map(|(c, _, _)| c.name()).collect();
        for name in [
            "OPTNEG", "MACRO", "CONNECT", "HELO", "MAIL", "RCPT", "DATA", "HEADER",
        ] {
            assert!(names.contains(&name), "{name}");
        }
        for name in ["EOH", "BODY", "EOM", "ABORT", "QUIT", "QUIT_NC", "UNKNOWN"] {
            assert!(names.contains(&name), "{name}");
        }
    }

    #[test]
    fn optneg_needs_twelve_bytes_and_ignores_the_rest() {
        // mfdef.h: MILTER_OPTLEN = 3 * sizeof(mi_int32).
        assert_eq!(malformed_why(b'O', &[0; 11]), OPTNEG_SHORT);
        assert_eq!(malformed_why(b'O', b""), OPTNEG_SHORT);
        assert_eq!(
            decode(b'O', b"\0\0\0\x02\0\0\0\x01\0\0\0\x03extra"),
            Ok(Command::OptNeg {
                version: 2,
                actions: 1,
                protocol: 3
            })
        );
    }

    #[test]
    fn macro_needs_its_stage_byte() {
        assert_eq!(malformed_why(b'D', b""), "missing stage byte");
    }

    #[test]
    fn connect_rejects_broken_layouts() {
        assert_eq!(malformed_why(b'C', b""), "hostname is not NUL-terminated");
        assert_eq!(
            malformed_why(b'C', b"localhost"),
            "hostname is not NUL-terminated"
        );
        assert_eq!(malformed_why(b'C', b"localhost\0"), "missing family byte");
        assert_eq!(malformed_why(b'C', b"localhost\x004"), "missing port");
        assert_eq!(malformed_why(b'C', b"localhost\x004\xd0"), "missing port");
        assert_eq!(
            malformed_why(b'C', b"localhost\0X\0\x19127.0.0.1\0"),
            "family byte is not '4', '6', 'L' or 'U'"
        );
        assert_eq!(
            malformed_why(b'C', b"localhost\0U\0\x19"),
            "bytes after family 'U'"
        );
        assert_eq!(
            malformed_why(b'C', b"localhost\x004\0\x19127.0.0.1\0junk"),
            "bytes after the final NUL"
        );
    }

    #[test]
    fn connect_tolerates_a_missing_final_nul_and_an_empty_address() {
        let expected = |address| Command::Connect {
            hostname: b"h",
            family: Family::Inet,
            port: 25,
            address,
        };
        assert_eq!(
            decode(b'C', b"h\x004\0\x19127.0.0.1"),
            Ok(expected(b"127.0.0.1"))
        );
        assert_eq!(decode(b'C', b"h\x004\0\x19"), Ok(expected(b"")));
    }

    #[test]
    fn single_strings_tolerate_a_missing_nul_but_not_trailing_bytes() {
        assert_eq!(decode(b'H', b"probe"), Ok(Command::Helo { name: b"probe" }));
        assert_eq!(decode(b'H', b""), Ok(Command::Helo { name: b"" }));
        assert_eq!(
            malformed_why(b'H', b"probe\0x"),
            "bytes after the final NUL"
        );
        assert_eq!(decode(b'U', b"XYZZY"), Ok(Command::Unknown(b"XYZZY")));
        assert_eq!(
            malformed_why(b'U', b"XYZZY\0\0"),
            "bytes after the final NUL"
        );
    }

    #[test]
    fn header_needs_the_separator() {
        assert_eq!(
            malformed_why(b'L', b"From"),
            "no NUL between header name and value"
        );
        assert_eq!(
            malformed_why(b'L', b""),
            "no NUL between header name and value"
        );
        assert_eq!(
            malformed_why(b'L', b"From\0a\0b\0"),
            "bytes after the final NUL"
        );
        assert_eq!(
            decode(b'L', b"From\0a"),
            Ok(Command::Header {
                name: b"From",
                value: b"a"
            })
        );
    }

    #[test]
    fn mail_and_rcpt_need_an_address() {
        assert_eq!(malformed_why(b'M', b""), "missing sender");
        assert_eq!(malformed_why(b'R', b""), "missing recipient");
        // The null sender is an address: Postfix sends "<>\0".
        assert_eq!(decode(b'M', b"<>\0"), Ok(Command::Mail { args: b"<>\0" }));
    }

    #[test]
    fn payload_less_commands_ignore_a_payload() {
        // libmilter never reads these payloads; neither do we.
        assert_eq!(decode(b'T', b"x"), Ok(Command::Data));
        assert_eq!(decode(b'Q', b"\0"), Ok(Command::Quit));
    }

    #[test]
    fn unknown_codes_are_errors() {
        assert_eq!(decode(0x00, b""), Err(CommandError::UnknownCode(0x00)));
        assert_eq!(
            decode(b'Z', b"payload"),
            Err(CommandError::UnknownCode(b'Z'))
        );
        // Reply bytes are not commands.
        assert_eq!(decode(b'a', b""), Err(CommandError::UnknownCode(b'a')));
        assert_eq!(
            CommandError::UnknownCode(b'Z').to_string(),
            "unknown milter command byte 0x5a"
        );
    }

    #[test]
    fn args_splits_on_nul() {
        let collect = |raw: &'static [u8]| args(raw).collect::<Vec<_>>();
        assert_eq!(collect(b""), Vec::<&[u8]>::new());
        assert_eq!(collect(b"<a@b>\0"), vec![&b"<a@b>"[..]]);
        assert_eq!(
            collect(b"<a@b>\0SIZE=1\0BODY=8BITMIME\0"),
            vec![&b"<a@b>"[..], b"SIZE=1", b"BODY=8BITMIME"]
        );
        assert_eq!(collect(b"<a@b>\0SIZE=1"), vec![&b"<a@b>"[..], b"SIZE=1"]);
        assert_eq!(collect(b"a\0\0"), vec![&b"a"[..], b""]);
        assert_eq!(collect(b"\0"), vec![&b""[..]]);
    }

    #[test]
    fn macro_pairs_pairs_up_and_drops_a_lone_name() {
        let collect = |raw: &'static [u8]| macro_pairs(raw).collect::<Vec<_>>();
        assert_eq!(collect(b""), vec![]);
        assert_eq!(
            collect(b"i\x0099FF199E089\0{mail_addr}\0a@b\0"),
            vec![(&b"i"[..], &b"99FF199E089"[..]), (b"{mail_addr}", b"a@b")]
        );
        assert_eq!(collect(b"i\0v\0dangling\0"), vec![(&b"i"[..], &b"v"[..])]);
        assert_eq!(collect(b"i\0v"), vec![(&b"i"[..], &b"v"[..])]);
        assert_eq!(collect(b"{x}\0\0"), vec![(&b"{x}"[..], &b""[..])]);
    }

    #[test]
    fn family_bytes_round_trip() {
        for family in [Family::Inet, Family::Inet6, Family::Unix, Family::Unknown] {
            assert_eq!(Family::from_byte(family.byte()), Some(family));
        }
        assert_eq!(Family::from_byte(b'5'), None);
    }
}
