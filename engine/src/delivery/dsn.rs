//! Delivery status notifications (RFC 3464, in an RFC 6522
//! `multipart/report`): the bounce sent to the envelope sender when a
//! recipient fails for good, or the warning when delivery is delayed.
//!
//! ```text
//! From: Mail Delivery System <MAILER-DAEMON@reporting-mta>     (envelope: MAIL FROM:<>)
//! Content-Type: multipart/report; report-type=delivery-status; boundary="…"
//! ├─ text/plain                 what happened, for people
//! ├─ message/delivery-status    Reporting-MTA, Arrival-Date; then per recipient
//! │                             Final-Recipient, Action, Status, Remote-MTA,
//! │                             Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until
//! └─ text/rfc822-headers        the original message's header, not its body
//! ```
//!
//! Rules kept here, not left to callers:
//! - **never a DSN for a bounce**: a message with the null reverse-path
//!   (`MAIL FROM:<>`) gets none ([`DsnError::NullSender`]), and every DSN
//!   is sent from the null reverse-path, so two gateways can never bounce a
//!   bounce back and forth (RFC 5321 §4.5.5, RFC 3464 §2);
//! - text from the remote server is sanitised (no control bytes, one line,
//!   cut at [`DIAGNOSTIC_BYTES_MAX`]), so it cannot forge fields;
//! - the boundary never occurs in the parts (it is re-drawn if it does);
//! - the original header is cut at [`ORIGINAL_HEADER_BYTES_MAX`] on a line
//!   boundary, with line ends made CRLF;
//! - addresses or header bytes that are not ASCII make an RFC 6533 report
//!   (`utf-8` address type, `message/global-delivery-status`,
//!   `message/global-headers`) that needs SMTPUTF8/8BITMIME to send.

use std::fmt::Write as _;

use crate::smtp::client::{Outcome, RcptStatus};
use crate::smtp::{BodyType, Reply, Status};

/// Longest diagnostic text kept (one DSN field line stays well under the
/// 998-byte line limit).
pub const DIAGNOSTIC_BYTES_MAX: usize = 800;
/// Most bytes of the original header returned.
pub const ORIGINAL_HEADER_BYTES_MAX: usize = 64 * 1024;

/// RFC 3464 §2.3.3 `Action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Delivery failed for good.
    Failed,
    /// Still trying.
    Delayed,
    /// Delivered (success DSNs; unused until the DSN extension is offered).
    Delivered,
    /// Relayed to a system that does not send DSNs.
    Relayed,
    /// Expanded to several recipients.
    Expanded,
}

impl Action {
    fn keyword(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
            Action::Expanded => "expanded",
        }
    }
}

/// Why a recipient is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diagnostic {
    /// A reply from the remote server (`Diagnostic-Code: smtp; …`).
    Smtp(Reply),
    /// A local reason (`Diagnostic-Code: X-Mailborder; …`).
    Local(String),
}

/// One recipient's block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    /// The address as delivered to (`Final-Recipient`).
    pub final_recipient: String,
    /// The address as first received, if known and different.
    pub original_recipient: Option<String>,
    /// What happened.
    pub action: Action,
    /// RFC 3463 status; 5.x.x for failed, 4.x.x for delayed.
    pub status: Status,
    /// The remote server's host name (`Remote-MTA`), when one answered.
    pub remote_mta: Option<String>,
    /// Why.
    pub diagnostic: Option<Diagnostic>,
    /// The last attempt (unix ms).
    pub last_attempt_unix_ms: Option<u64>,
    /// For delayed recipients: when we give up (unix ms).
    pub will_retry_until_unix_ms: Option<u64>,
}

impl DsnRecipient {
    /// The block for a recipient from the delivery client's result.
    /// `expired` turns a temporary failure into a final one (the queue
    /// lifetime ran out; status 5.4.7 unless the reply was already 5.x.x).
    #[must_use]
    pub fn from_status(
        address: &str,
        status: &RcptStatus,
        remote_mta: Option<&str>,
        now_unix_ms: u64,
        expired: bool,
    ) -> Self {
        let action = match status.outcome {
            Outcome::Delivered => Action::Relayed,
            Outcome::PermFailed => Action::Failed,
            Outcome::TempFailed if expired => Action::Failed,
            Outcome::TempFailed => Action::Delayed,
        };
        let code = status
            .reply
            .status
            .unwrap_or(match status.reply.code / 100 {
                2 => Status::new(2, 0, 0),
                4 => Status::new(4, 0, 0),
                _ => Status::new(5, 0, 0),
            });
        let code = match action {
            Action::Failed if code.class != 5 => Status::new(5, 4, 7),
            _ => code,
        };
        let diagnostic = if status.remote {
            Diagnostic::Smtp(status.reply.clone())
        } else {
            Diagnostic::Local(status.reply.text())
        };
        DsnRecipient {
            final_recipient: address.to_owned(),
            original_recipient: None,
            action,
            status: code,
            remote_mta: remote_mta.filter(|_| status.remote).map(str::to_owned),
            diagnostic: Some(diagnostic),
            last_attempt_unix_ms: Some(now_unix_ms),
            will_retry_until_unix_ms: None,
        }
    }
}

/// Everything a DSN says.
#[derive(Debug, Clone, Copy)]
pub struct DsnRequest<'a> {
    /// Our host name (`Reporting-MTA`, the From domain).
    pub reporting_mta: &'a str,
    /// The message's queue id (for the human part and the Message-ID).
    pub queue_id: &'a str,
    /// The original envelope sender: the DSN's recipient. Empty = `<>`.
    pub original_sender: &'a str,
    /// When the original message arrived (unix ms).
    pub arrival_unix_ms: u64,
    /// Now (unix ms), for the Date header.
    pub now_unix_ms: u64,
    /// The local offset from UTC in minutes, for dates.
    pub utc_offset_minutes: i16,
    /// The client the original came from (`Received-From-MTA`), if known.
    pub received_from_mta: Option<&'a str>,
    /// The recipients to report on, at least one.
    pub recipients: &'a [DsnRecipient],
    /// The original message (only its header is returned).
    pub original: &'a [u8],
    /// A value unique to this DSN (random, or from the spool's counter):
    /// the Message-ID and the boundary are built from it.
    pub unique: u64,
}

/// A DSN ready to be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// The envelope sender: always empty, the null reverse-path.
    pub sender: String,
    /// The envelope recipient: the original sender.
    pub recipient: String,
    /// The message, CRLF line ends.
    pub content: Vec<u8>,
    /// 8BITMIME when it carries non-ASCII bytes.
    pub body: BodyType,
    /// Needs SMTPUTF8 (non-ASCII addresses).
    pub smtputf8: bool,
}

/// Why no DSN is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    /// The original was itself a bounce (`MAIL FROM:<>`).
    #[error("no DSN for a message with the null sender")]
    NullSender,
    /// Nothing to report.
    #[error("a DSN needs at least one recipient")]
    NoRecipients,
}

/// Builds the DSN for `req`.
///
/// # Errors
/// [`DsnError::NullSender`] for a bounce, [`DsnError::NoRecipients`].
pub fn build(req: &DsnRequest<'_>) -> Result<Dsn, DsnError> {
    if req.original_sender.is_empty() {
        return Err(DsnError::NullSender);
    }
    if req.recipients.is_empty() {
        return Err(DsnError::NoRecipients);
    }
    let headers = original_header(req.original);
    let global = !req.original_sender.is_ascii()
        || req.recipients.iter().any(|r| {
            !r.final_recipient.is_ascii()
                || r.original_recipient.as_ref().is_some_and(|o| !o.is_ascii())
        });
    let eight_bit = global || !headers.is_ascii();
    let human = human_part(req);
    let status = status_part(req, global);
    let boundary = (0u32..)
        .map(|n| format!("=_mb_{:016x}_{n}", req.unique))
        .find(|b| {
            let delimiter = format!("--{b}");
            [&human[..], &status[..], &headers[..]]
                .iter()
                .all(|part| memchr::memmem::find(part, delimiter.as_bytes()).is_none())
        })
        .unwrap_or_default();
    let mut out = Vec::with_capacity(human.len() + status.len() + headers.len() + 1024);
    top_header(req, &boundary, eight_bit, &mut out);
    let cte = if eight_bit { "8bit" } else { "7bit" };
    let (status_type, headers_type) = if global {
        ("message/global-delivery-status", "message/global-headers")
    } else {
        ("message/delivery-status", "text/rfc822-headers")
    };
    push_part(
        &mut out,
        &boundary,
        "Notification",
        &format!("text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {cte}"),
        &human,
    );
    push_part(&mut out, &boundary, "Delivery report", status_type, &status);
    let description = if req.recipients.iter().all(|r| r.action == Action::Delayed) {
        "Delayed Message Headers"
    } else {
        "Undelivered Message Headers"
    };
    push_part(&mut out, &boundary, description, headers_type, &headers);
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Ok(Dsn {
        sender: String::new(),
        recipient: req.original_sender.to_owned(),
        content: out,
        body: if eight_bit {
            BodyType::EightBitMime
        } else {
            BodyType::SevenBit
        },
        smtputf8: global,
    })
}

fn top_header(req: &DsnRequest<'_>, boundary: &str, eight_bit: bool, out: &mut Vec<u8>) {
    let failed = req.recipients.iter().any(|r| r.action == Action::Failed);
    let delayed = req.recipients.iter().any(|r| r.action == Action::Delayed);
    let subject = if failed {
        "Undelivered Mail Returned to Sender"
    } else if delayed {
        "Delayed Mail (still being retried)"
    } else {
        "Successful Mail Delivery Report"
    };
    let host = one_line(req.reporting_mta, 255);
    let mut h = String::new();
    let _ = write!(
        h,
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
         To: <{}>\r\n\
         Subject: {subject}\r\n\
         Date: {}\r\n\
         Message-ID: <{}.{:016x}@{host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         Content-Transfer-Encoding: {}\r\n\r\n\
         This is a MIME-encapsulated message.\r\n\r\n",
        one_line(req.original_sender, 1024),
        rfc5322_date(req.now_unix_ms, req.utc_offset_minutes),
        token(req.queue_id),
        req.unique,
        if eight_bit { "8bit" } else { "7bit" },
    );
    out.extend_from_slice(h.as_bytes());
}

fn push_part(out: &mut Vec<u8>, boundary: &str, description: &str, ctype: &str, body: &[u8]) {
    let head = format!(
        "--{boundary}\r\nContent-Description: {description}\r\nContent-Type: {ctype}\r\n\r\n"
    );
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    if !body.is_empty() && !body.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn human_part(req: &DsnRequest<'_>) -> Vec<u8> {
    let host = one_line(req.reporting_mta, 255);
    let mut t = String::new();
    let _ = write!(t, "This is the mail system at host {host}.\r\n\r\n");
    let failed = req.recipients.iter().any(|r| r.action == Action::Failed);
    if failed {
        t.push_str(
            "I'm sorry to have to inform you that your message could not\r\n\
             be delivered to one or more recipients. It's attached below.\r\n\r\n",
        );
    } else {
        t.push_str(
            "Your message could not be delivered yet to one or more recipients.\r\n\
             The mail system will keep trying; you do not have to send it again.\r\n\r\n",
        );
    }
    let _ = write!(
        t,
        "For further assistance, please send mail to postmaster.\r\n\
         Please include this report (queue id {}).\r\n\r\n",
        token(req.queue_id)
    );
    for r in req.recipients {
        let _ = write!(t, "<{}>: ", one_line(&r.final_recipient, 1024));
        match (&r.diagnostic, &r.remote_mta) {
            (Some(Diagnostic::Smtp(reply)), Some(mta)) => {
                let _ = write!(t, "host {} said: ", one_line(mta, 255));
                t.push_str(&one_line(&reply.to_string(), DIAGNOSTIC_BYTES_MAX));
            }
            (Some(Diagnostic::Smtp(reply)), None) => {
                t.push_str(&one_line(&reply.to_string(), DIAGNOSTIC_BYTES_MAX));
            }
            (Some(Diagnostic::Local(text)), _) => {
                t.push_str(&one_line(text, DIAGNOSTIC_BYTES_MAX));
            }
            (None, _) => t.push_str(r.action.keyword()),
        }
        t.push_str("\r\n\r\n");
    }
    t.into_bytes()
}

fn status_part(req: &DsnRequest<'_>, global: bool) -> Vec<u8> {
    let date = |ms| rfc5322_date(ms, req.utc_offset_minutes);
    let address_type = if global { "utf-8" } else { "rfc822" };
    let mut t = String::new();
    let _ = write!(
        t,
        "Reporting-MTA: dns; {}\r\n",
        one_line(req.reporting_mta, 255)
    );
    let _ = write!(t, "X-Mailborder-Queue-ID: {}\r\n", token(req.queue_id));
    if let Some(from) = req.received_from_mta {
        let _ = write!(t, "Received-From-MTA: dns; {}\r\n", one_line(from, 255));
    }
    let _ = write!(t, "Arrival-Date: {}\r\n", date(req.arrival_unix_ms));
    for r in req.recipients {
        t.push_str("\r\n");
        let _ = write!(
            t,
            "Final-Recipient: {address_type}; {}\r\n",
            one_line(&r.final_recipient, 1024)
        );
        if let Some(orig) = &r.original_recipient {
            let _ = write!(
                t,
                "Original-Recipient: {address_type}; {}\r\n",
                one_line(orig, 1024)
            );
        }
        let _ = write!(
            t,
            "Action: {}\r\nStatus: {}\r\n",
            r.action.keyword(),
            r.status
        );
        if let Some(mta) = &r.remote_mta {
            let _ = write!(t, "Remote-MTA: dns; {}\r\n", one_line(mta, 255));
        }
        match &r.diagnostic {
            Some(Diagnostic::Smtp(reply)) => {
                let text = one_line(&reply.to_string(), DIAGNOSTIC_BYTES_MAX);
                let _ = write!(t, "Diagnostic-Code: smtp; {text}\r\n");
            }
            Some(Diagnostic::Local(text)) => {
                let text = one_line(text, DIAGNOSTIC_BYTES_MAX);
                let _ = write!(t, "Diagnostic-Code: X-Mailborder; {text}\r\n");
            }
            None => {}
        }
        if let Some(ms) = r.last_attempt_unix_ms {
            let _ = write!(t, "Last-Attempt-Date: {}\r\n", date(ms));
        }
        if let (Action::Delayed, Some(ms)) = (r.action, r.will_retry_until_unix_ms) {
            let _ = write!(t, "Will-Retry-Until: {}\r\n", date(ms));
        }
    }
    t.into_bytes()
}

/// The original's header block (up to the first empty line), cut at
/// [`ORIGINAL_HEADER_BYTES_MAX`] on a line boundary, line ends made CRLF.
fn original_header(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in message.split_inclusive(|b| *b == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.is_empty() || out.len() + text.len() + 2 > ORIGINAL_HEADER_BYTES_MAX {
            break;
        }
        // A bare CR inside a line would end it for some readers.
        out.extend(text.iter().map(|b| if *b == b'\r' { b' ' } else { *b }));
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `text` on one line: control characters become spaces, cut at `max`
/// bytes on a character boundary.
fn one_line(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// A queue id reduced to characters safe in a Message-ID.
fn token(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect()
}

/// An RFC 5322 date-time (`Thu, 13 Feb 1989 23:32:00 -0330`).
#[must_use]
pub fn rfc5322_date(unix_ms: u64, utc_offset_minutes: i16) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let offset = i64::from(utc_offset_minutes.clamp(-1439, 1439));
    let secs = i64::try_from(unix_ms / 1000).unwrap_or(i64::MAX / 2) + offset * 60;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let weekday = DAYS[usize::try_from((days + 4).rem_euclid(7)).unwrap_or(0)];
    let month = MONTHS[usize::try_from(m - 1).unwrap_or(0)];
    let sign = if offset < 0 { '-' } else { '+' };
    format!(
        "{weekday}, {d} {month} {y} {:02}:{:02}:{:02} {sign}{:02}{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        offset.abs() / 60,
        offset.abs() % 60
    )
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31), from Howard
/// Hinnant's `civil_from_days` (proleptic Gregorian).
#[must_use]
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
#[path = "dsn_tests.rs"]
mod tests;
