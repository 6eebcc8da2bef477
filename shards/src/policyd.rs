//! The Postfix policy delegation server (`check_policy_service`), answered
//! by the same policy as the milter: `[policy]` lists, then the eval tree.
//!
//! One connection carries many requests (Postfix keeps it open for
//! `smtpd_policy_service_reuse_count_limit` requests or until idle). Only
//! `protocol_state=RCPT` requests are decided; every other state gets `DUNNO`,
//! so the service belongs in `smtpd_recipient_restrictions` (after
//! `reject_unauth_destination`). An allow answers `DUNNO` too, never `OK`:
//! `OK` would skip Postfix's own later restrictions, which an allow list must
//! not be able to turn into an open relay.
//!
//! Message-scope rate limits count once per message: at the first recipient
//! we accept for a new `instance` (Postfix's per-message request id).

use std::time::Instant;

use mb_engine::eval::Ask;
use mb_engine::policy::{Deferred, Outcome};
use mb_engine::policyd::{Action, Decoder, Limits, Request};
use mb_engine::verdict::{self, SmtpText};

use crate::io::Socket;
use crate::shard::{adjust, Local, ReadBuf};
use crate::sweeper::Watch;

/// Bytes read at a time (requests are about 500 bytes).
const READ_BYTES: usize = 4096;

/// The connection's I/O pieces, lent by the shard.
pub(crate) struct Io<'a, 'w> {
    pub(crate) watch: &'a Watch<'w>,
    pub(crate) stream: &'a Socket<'w>,
    pub(crate) buf: &'a mut ReadBuf,
    pub(crate) out: &'a mut Vec<u8>,
}

/// Per-connection memory of the message being asked about.
#[derive(Default)]
struct Message {
    instance: String,
    accepted: u32,
}

/// Serves one policy connection until EOF, an error, a timeout or drain.
pub(crate) async fn converse(
    local: &Local,
    io: &mut Io<'_, '_>,
    refuse: bool,
) -> Result<(), String> {
    let idle = local.milter.idle_timeout;
    let write_timeout = local.milter.write_timeout;
    let mut decoder = Decoder::new(Limits::default());
    let mut message = Message::default();
    loop {
        if local.draining() && io.buf.filled().is_empty() {
            return Ok(());
        }
        adjust(&local.buffer_bytes, io.buf.reserve(READ_BYTES));
        io.watch.arm(idle);
        let read = io.stream.read(io.buf.spare());
        let n = if local.draining() {
            Some(read.await)
        } else {
            futures_lite::future::or(async { Some(read.await) }, async {
                local.drained().await;
                None
            })
            .await
        };
        io.watch.disarm();
        if io.watch.expired() {
            return Err("idle timeout".into());
        }
        let Some(n) = n else { continue };
        let n = n.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        io.buf.end += n;
        let started = Instant::now();
        let mut answered = 0u64;
        let mut broken = None;
        loop {
            match decoder.decode(io.buf.filled()) {
                Ok(Some((request, used))) => {
                    let action = answer(local, &request, &mut message, refuse || local.draining());
                    action.encode(io.out);
                    io.buf.consume(used);
                    answered += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    Action::error_reply().encode(io.out);
                    broken = Some(format!("bad policy request: {e}"));
                    break;
                }
            }
        }
        if !io.out.is_empty() {
            io.watch.arm(write_timeout);
            let written = io.stream.write_all(io.out).await;
            io.watch.disarm();
            if io.watch.expired() {
                return Err("write timeout".into());
            }
            written.map_err(|e| format!("write: {e}"))?;
            io.out.clear();
        }
        if answered > 0 {
            local.record_policy(answered, started);
        }
        if let Some(why) = broken {
            return Err(why);
        }
        adjust(&local.buffer_bytes, io.buf.shrink_if_idle());
    }
}

/// The answer to one request.
fn answer(local: &Local, request: &Request, message: &mut Message, refuse: bool) -> Action {
    if !request.protocol_state().eq_ignore_ascii_case("RCPT") {
        return Action::Dunno;
    }
    if refuse {
        return Action::Code {
            code: 451,
            text: "4.3.2 Service busy, try again later".to_owned(),
        };
    }
    if request.instance().is_empty() || request.instance() != message.instance {
        message.instance.clear();
        message.instance.push_str(request.instance());
        message.accepted = 0;
    }
    let (now_ms, utc_offset) = crate::evalload::now();
    let mut facts = request.facts(now_ms / 1000, utc_offset);
    facts.recipient_count = message.accepted;
    let ask = Ask {
        facts,
        first_recipient: message.accepted == 0,
        sender_allowed: false,
        now_ms,
        trace: false,
    };
    let policy = local.policy.borrow().clone();
    let decision = policy.envelope(&ask, policy.rate_table());
    if !matches!(decision.outcome, Outcome::Refuse(_)) {
        message.accepted = message.accepted.saturating_add(1);
    }
    to_action(&decision.outcome)
}

/// Our outcome in Postfix's words.
fn to_action(outcome: &Outcome) -> Action {
    match outcome {
        Outcome::Continue | Outcome::Allow => Action::Dunno,
        Outcome::Refuse(verdict::Action::Reject(SmtpText { code, text }))
        | Outcome::Refuse(verdict::Action::TempFail(SmtpText { code, text })) => Action::Code {
            code: *code,
            text: without_address_prefix(text),
        },
        Outcome::Refuse(_) => Action::Dunno,
        Outcome::Defer(Deferred::Discard) => Action::Discard(None),
        Outcome::Defer(Deferred::Quarantine) => Action::Hold(None),
        // Postfix cannot replace a body from a policy answer.
        Outcome::Defer(Deferred::ReplaceBody(_)) => Action::Dunno,
    }
}

/// Postfix puts `<rcpt>: Recipient address rejected: ` before a policy
/// service's text itself, so the milter-style prefix of our replies
/// (`5.1.1 <a@b>: Recipient address rejected: User unknown`) is dropped here:
/// the client then reads the same line through either door.
fn without_address_prefix(text: &str) -> String {
    let (enhanced, rest) = text.split_once(' ').unwrap_or((text, ""));
    match rest
        .strip_prefix('<')
        .and_then(|r| r.split_once(" address rejected: "))
    {
        Some((_, reason)) => format!("{enhanced} {reason}"),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_address_prefix;

    #[test]
    fn drops_only_the_milter_style_address_prefix() {
        assert_eq!(
            without_address_prefix("5.1.1 <a@b.example>: Recipient address rejected: User unknown"),
            "5.1.1 User unknown"
        );
        assert_eq!(
            without_address_prefix("5.7.1 <s@x.example>: Sender address rejected: Access denied"),
            "5.7.1 Access denied"
        );
        assert_eq!(
            without_address_prefix("4.7.1 Rate limit exceeded"),
            "4.7.1 Rate limit exceeded"
        );
        assert_eq!(without_address_prefix("5.7.1 <odd text"), "5.7.1 <odd text");
    }
}
