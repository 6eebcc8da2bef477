//! The delivery stage's decisions, sans-I/O: when to retry, how many
//! connections to open, and the bounce to send. The SMTP conversation
//! itself is [`crate::smtp::client`]; the spool records the outcome
//! (`Delivered`, `Bounced`, `Deferred`); docs/DELIVERY.md is the long form.
//!
//! - [`retry`]: exponential backoff with jitter (the randomness is an
//!   input), a cap, and the queue lifetime after which a message bounces.
//! - [`concurrency`]: connections per destination and in total, with a
//!   window that grows on success and shrinks on failure.
//! - [`dsn`]: RFC 3464 delivery status notifications, from the null
//!   reverse-path, never for a bounce.
//! - [`dispose`]: one attempt's [`TransactionResult`] split into the spool
//!   records to write.

pub mod concurrency;
pub mod dsn;
pub mod retry;

pub use concurrency::{Busy, Concurrency, ConcurrencyLimits, Feedback, Slot};
pub use dsn::{build as build_dsn, Action, Diagnostic, Dsn, DsnError, DsnRecipient, DsnRequest};
pub use retry::{Retry, RetryPolicy, RetryPolicyError};

use crate::smtp::client::{Outcome, TransactionResult};

/// What to record after one delivery attempt of a message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disposition {
    /// Recipient indices (the spool's) now delivered: a `Delivered` record.
    pub delivered: Vec<u32>,
    /// Recipient indices that failed for good: a `Bounced` record and a
    /// DSN (unless the sender is null).
    pub bounced: Vec<u32>,
    /// Recipient indices still pending.
    pub deferred: Vec<u32>,
    /// When `deferred` is not empty: the next attempt (a `Deferred`
    /// record).
    pub next_try_unix_ms: Option<u64>,
    /// Some recipients bounced because the queue lifetime ran out (their
    /// DSN says 5.4.7 / expired rather than the server's refusal).
    pub expired: Vec<u32>,
}

/// Splits the result of an attempt. `rcpts[i]` is the spool index of the
/// `i`-th recipient of the transaction; `attempts` counts this one. Temporary
/// failures are deferred by `policy`, or bounced when the message has
/// expired.
///
/// # Panics
/// If `rcpts` and the result do not have the same length (a runtime bug).
#[must_use]
pub fn dispose(
    result: &TransactionResult,
    rcpts: &[u32],
    policy: &RetryPolicy,
    received_unix_ms: u64,
    attempts: u32,
    now_unix_ms: u64,
    jitter: u64,
) -> Disposition {
    assert_eq!(
        result.recipients.len(),
        rcpts.len(),
        "one index per recipient"
    );
    let mut d = Disposition::default();
    let mut temporary = Vec::new();
    for (status, &index) in result.recipients.iter().zip(rcpts) {
        match status.outcome {
            Outcome::Delivered => d.delivered.push(index),
            Outcome::PermFailed => d.bounced.push(index),
            Outcome::TempFailed => temporary.push(index),
        }
    }
    let failed = defer(
        temporary,
        policy,
        received_unix_ms,
        attempts,
        now_unix_ms,
        jitter,
    );
    d.bounced.extend_from_slice(&failed.bounced);
    d.expired = failed.expired;
    d.deferred = failed.deferred;
    d.next_try_unix_ms = failed.next_try_unix_ms;
    d
}

/// Defers every recipient in `rcpts` (the attempt failed before any
/// per-recipient answer: no connection, greeting refused, connection lost
/// before MAIL), or bounces them all if the message has expired.
#[must_use]
pub fn defer(
    rcpts: Vec<u32>,
    policy: &RetryPolicy,
    received_unix_ms: u64,
    attempts: u32,
    now_unix_ms: u64,
    jitter: u64,
) -> Disposition {
    if rcpts.is_empty() {
        return Disposition::default();
    }
    match policy.after_failure(received_unix_ms, attempts, now_unix_ms, jitter) {
        Retry::At { unix_ms } => Disposition {
            deferred: rcpts,
            next_try_unix_ms: Some(unix_ms),
            ..Disposition::default()
        },
        Retry::Bounce => Disposition {
            bounced: rcpts.clone(),
            expired: rcpts,
            ..Disposition::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::client::{RcptStatus, Stage};
    use crate::smtp::{Reply, Status};

    fn status(outcome: Outcome, code: u16) -> RcptStatus {
        let class = u8::try_from(code / 100).unwrap();
        RcptStatus {
            outcome,
            reply: Reply::new(code, Status::new(class, 0, 0), "x"),
            stage: Stage::Rcpt,
            remote: true,
        }
    }

    #[test]
    fn an_attempt_splits_into_records() {
        let result = TransactionResult {
            recipients: vec![
                status(Outcome::Delivered, 250),
                status(Outcome::TempFailed, 450),
                status(Outcome::PermFailed, 550),
            ],
        };
        let policy = RetryPolicy {
            jitter_percent: 0,
            ..RetryPolicy::default()
        };
        let d = dispose(&result, &[4, 7, 9], &policy, 0, 1, 1000, 0);
        assert_eq!(d.delivered, [4]);
        assert_eq!(d.deferred, [7]);
        assert_eq!(d.bounced, [9]);
        assert!(d.expired.is_empty());
        assert_eq!(d.next_try_unix_ms, Some(1000 + 300_000));
        // Past the queue lifetime the temporary failure bounces too.
        let late = policy.expiry(0);
        let d = dispose(&result, &[4, 7, 9], &policy, 0, 90, late, 0);
        assert_eq!(d.bounced, [9, 7]);
        assert_eq!(d.expired, [7]);
        assert!(d.deferred.is_empty());
        assert_eq!(d.next_try_unix_ms, None);
    }

    #[test]
    fn a_failed_session_defers_everything() {
        let d = defer(vec![0, 1], &RetryPolicy::default(), 0, 1, 10, 0);
        assert_eq!(d.deferred, [0, 1]);
        assert!(d.next_try_unix_ms.is_some());
        assert_eq!(
            defer(vec![], &RetryPolicy::default(), 0, 1, 10, 0),
            Disposition::default()
        );
    }
}
