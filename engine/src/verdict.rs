//! What a stage decided, and why.
//!
//! A verdict is not an error: reject and tempfail are ordinary outcomes. Every
//! decision carries its [`Reason`]s (which rule, which list entry, which level)
//! so `mbctl` traces and the message log can say why.

use crate::milter::Modification;

/// The action taken on a message or a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Go on (accept so far; at end of message: deliver).
    Accept,
    /// Permanent refusal with an SMTP reply.
    Reject(SmtpText),
    /// Temporary refusal with an SMTP reply.
    TempFail(SmtpText),
    /// Accept and drop.
    Discard,
    /// Accept and hold for review.
    Quarantine(String),
}

/// An SMTP reply line: code, enhanced code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpText {
    /// 4xx or 5xx.
    pub code: u16,
    /// Enhanced status code and text, e.g. `5.7.1 Sender blocked by policy`.
    pub text: String,
}

/// Why a decision was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// The rule's key path, e.g. `policy.sender[0]`, or a built-in name such as
    /// `policy.message_bytes_max`.
    pub rule: String,
    /// What matched, e.g. `@spam.example`.
    pub detail: String,
}

/// The end-of-message verdict: action, score, reasons and modifications.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// What happens to the message.
    pub action: Action,
    /// Spam score (0 until the filter stage scores).
    pub score: f32,
    /// Why.
    pub reasons: Vec<Reason>,
    /// Changes to apply before the final reply (headers, body, recipients).
    pub modifications: Vec<Modification>,
}

/// The kind of a verdict, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictKind {
    /// Accepted.
    Accept,
    /// Rejected (5xx).
    Reject,
    /// Tempfailed (4xx).
    TempFail,
    /// Discarded.
    Discard,
    /// Quarantined.
    Quarantine,
}

impl Action {
    /// The counter bucket of this action.
    #[must_use]
    pub fn kind(&self) -> VerdictKind {
        match self {
            Action::Accept => VerdictKind::Accept,
            Action::Reject(_) => VerdictKind::Reject,
            Action::TempFail(_) => VerdictKind::TempFail,
            Action::Discard => VerdictKind::Discard,
            Action::Quarantine(_) => VerdictKind::Quarantine,
        }
    }
}
