//! SMTP for the after-queue path, sans-I/O: the ingress session Postfix's
//! `content_filter` talks to (port 10024), and the delivery client that
//! relays or reinjects (port 10025). docs/DELIVERY.md is the long form.
//!
//! ```text
//! Postfix smtp ──▶ server::Session ──Envelope, data, MessageComplete──▶ runtime
//!                    ▲                                                    │ spool append,
//!                    └──────────── finish_message(250 queued) ◀───────────┘ group commit
//! runtime ──Transaction, body──▶ client::Client ──▶ relay / Postfix :10025
//!         ◀──per-recipient TransactionResult──┘
//! ```
//!
//! Both state machines take the bytes the runtime read and append the bytes
//! it must write; neither reads a clock (time is an argument) nor blocks.
//! Wire details shared by both sides live here:
//! - [`reply`]: reply values with RFC 3463 enhanced status codes, the encoder
//!   and the incremental multi-line reply parser;
//! - [`dot`]: dot-stuffing and the streaming un-stuffer that finds the end
//!   of DATA (`CRLF.CRLF`) across arbitrary chunk boundaries;
//! - [`xtext`] and [`xforward`]: Postfix's XFORWARD attributes;
//! - [`address`]: the reverse- and forward-path syntax of MAIL and RCPT.
//!
//! Limits (RFC 5321 §4.5.3.1) are the constants below; every one is checked
//! before the work it bounds, and input never makes a state machine panic.

pub mod address;
pub mod client;
pub mod dot;
pub mod reply;
pub mod server;
pub mod xforward;
pub mod xtext;

pub use client::{
    Client, ClientError, ClientEvent, ClientSettings, Outcome, RcptStatus, Transaction,
    TransactionResult,
};
pub use reply::{Reply, ReplyError, ReplyParser, Status};
pub use server::{Envelope, Event, Output, Progress, Session, Settings};
pub use xforward::{XValue, Xforward, XforwardAttr};

use std::time::Duration;

/// Longest command line, `CRLF` included (RFC 5321 §4.5.3.1.4).
pub const COMMAND_LINE_BYTES_MAX: usize = 512;
/// Ceiling for [`Settings::command_line_bytes_max`]: SMTP extensions may
/// raise the 512-byte limit, but never past this.
pub const COMMAND_LINE_BYTES_CEILING: usize = 4096;
/// Longest text line of a message, `CRLF` included (RFC 5321 §4.5.3.1.6).
pub const TEXT_LINE_BYTES_MAX: usize = 1000;
/// Longest reply line we write, code and `CRLF` included (RFC 5321
/// §4.5.3.1.5).
pub const REPLY_LINE_BYTES_MAX: usize = 512;
/// Longest reply line the client accepts before the `LF` (servers exceed
/// 512 in the wild; more than this is a broken or hostile peer).
pub const REPLY_LINE_BYTES_CEILING: usize = 2048;
/// Most lines in one reply the client accepts (EHLO replies have about 15).
pub const REPLY_LINES_MAX: usize = 64;
/// Default for [`Settings::rcpt_count_max`], Postfix's own
/// `smtpd_recipient_limit`.
pub const RCPT_COUNT_DEFAULT: u32 = 1000;
/// Default for [`Settings::errors_max`], Postfix's `smtpd_hard_error_limit`.
pub const ERRORS_DEFAULT: u32 = 20;
/// Default for [`Settings::session_time_max`]. Postfix reuses a
/// content-filter connection for at most `smtp_connection_reuse_time_limit`
/// (300 s) before starting a transaction, so 30 minutes leaves room for the
/// last message on a slow disk while still ending a stuck session.
pub const SESSION_TIME_DEFAULT: Duration = Duration::from_secs(30 * 60);
/// Longest XFORWARD attribute value after xtext decoding (Postfix sends at
/// most 255).
pub const XFORWARD_VALUE_BYTES_MAX: usize = 255;
/// Longest address we accept in MAIL or RCPT (the spool's field limit).
pub const ADDRESS_BYTES_MAX: usize = crate::spool::ADDRESS_BYTES_MAX;

const _: () = assert!(COMMAND_LINE_BYTES_MAX <= COMMAND_LINE_BYTES_CEILING);
const _: () = assert!(REPLY_LINE_BYTES_MAX <= REPLY_LINE_BYTES_CEILING);
const _: () = assert!(TEXT_LINE_BYTES_MAX > COMMAND_LINE_BYTES_MAX);
const _: () = assert!(RCPT_COUNT_DEFAULT as usize <= crate::limits::RCPT_COUNT_MAX);
// A path fits in a command line, so the spool can always store it.
const _: () = assert!(COMMAND_LINE_BYTES_CEILING <= 4 * ADDRESS_BYTES_MAX);

/// The body type a message was announced with (`BODY=` of MAIL, RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyType {
    /// No `BODY=`, or `BODY=7BIT`.
    #[default]
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

impl BodyType {
    /// The `BODY=` keyword value.
    #[must_use]
    pub fn keyword(self) -> &'static str {
        match self {
            BodyType::SevenBit => "7BIT",
            BodyType::EightBitMime => "8BITMIME",
        }
    }
}
