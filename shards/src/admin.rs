//! `mbctl queue` and `mbctl quarantine` on a shard: listings from the
//! in-memory queue, details read from the spool, and changes written as
//! ordinary spool records (so they survive a restart exactly like the
//! delivery stage's own):
//!
//! | command | record |
//! |---|---|
//! | `queue retry ID`, `queue flush` | `Deferred` due now (attempts kept) |
//! | `quarantine release ID` | `Deferred` due now (leaves quarantine) |
//! | `queue delete ID`, `quarantine delete ID` | `Deleted` |
//!
//! A message being delivered while it is deleted may still reach the relay;
//! its `Delivered` record is then refused (the message is already gone).

use std::rc::Rc;

use mb_engine::ctl_api::{Answer, QueueEntry, QueueMessage, Request};
use mb_engine::spool::{Entry, MessageId, Phase, RcptState, Record, ScanAction};

use crate::deliver::Runtime;
use crate::store::{queue_id, unix_ms};

/// Most bytes of a message's header shown by `queue show`.
const HEADER_BYTES_MAX: usize = 64 * 1024;

/// Answers one queue request on this shard.
pub async fn handle(rt: Rc<Runtime>, request: Request) -> Result<Answer, String> {
    match request {
        Request::QueueList { quarantined, limit } => Ok(list(&rt, quarantined, limit)),
        Request::QueueShow { id, quarantined } => show(&rt, &id, quarantined).await,
        Request::QueueRetry { id } => {
            let (id, e) = live(&rt, &id)?;
            match e.phase {
                Phase::Scanned | Phase::Deferred => due_now(&rt, id, &e, "retry requested"),
                Phase::Received => Err("not scanned yet; it is delivered once scanned".into()),
                Phase::Quarantined => {
                    Err("held in quarantine: use `mbctl quarantine release`".into())
                }
            }
        }
        Request::QuarantineRelease { id } => {
            let (id, e) = live(&rt, &id)?;
            if e.phase != Phase::Quarantined {
                return Err(format!("{} is not in quarantine", queue_id(id)));
            }
            due_now(&rt, id, &e, "released from quarantine")
        }
        Request::QueueDelete { id, quarantined } => {
            let (id, e) = live(&rt, &id)?;
            if quarantined && e.phase != Phase::Quarantined {
                return Err(format!("{} is not in quarantine", queue_id(id)));
            }
            rt.store
                .append(id, &Record::Deleted, false)
                .map_err(|e| e.to_string())?;
            log::info!(
                "Shard {}: {} deleted by mbctl.",
                rt.store.shard(),
                queue_id(id)
            );
            Ok(Answer::QueueChanged { count: 1 })
        }
        Request::QueueFlush => {
            let deferred: Vec<Entry> = rt.store.with_queue(|q| {
                q.entries()
                    .filter(|e| e.phase == Phase::Deferred)
                    .cloned()
                    .collect()
            });
            let mut count = 0;
            for e in &deferred {
                if due_now(&rt, e.id, e, "flush requested").is_ok() {
                    count += 1;
                }
            }
            Ok(Answer::QueueChanged { count })
        }
        other => Err(format!("not a queue request: {other:?}")),
    }
}

/// The live message `text` names.
fn live(rt: &Runtime, text: &str) -> Result<(MessageId, Entry), String> {
    let id = crate::store::parse_queue_id(text)
        .ok_or_else(|| format!("`{text}` is not a queue id (hex digits, as in `queued as`)"))?;
    let entry = rt
        .store
        .entry(id)
        .ok_or_else(|| format!("{text}: no such message in the spool"))?;
    Ok((id, entry))
}

/// A `Deferred` record due now, and a nudge to the scheduler.
fn due_now(rt: &Runtime, id: MessageId, e: &Entry, why: &str) -> Result<Answer, String> {
    let record = Record::Deferred {
        next_try_unix_ms: unix_ms(),
        attempts: e.attempts,
        reason: why.as_bytes(),
    };
    rt.store
        .append(id, &record, false)
        .map_err(|e| e.to_string())?;
    rt.kick();
    Ok(Answer::QueueChanged { count: 1 })
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Received => "unscanned",
        Phase::Scanned => "active",
        Phase::Deferred => "deferred",
        Phase::Quarantined => "quarantined",
    }
}

fn action_name(a: ScanAction) -> &'static str {
    match a {
        ScanAction::Pass => "pass",
        ScanAction::AddHeader => "spam",
        ScanAction::Quarantine => "quarantine",
        ScanAction::Reject => "reject",
        ScanAction::Tempfail => "tempfail",
    }
}

fn entry_of(shard: u16, e: &Entry) -> QueueEntry {
    QueueEntry {
        id: queue_id(e.id),
        shard,
        phase: phase_name(e.phase).to_owned(),
        received_unix_ms: e.received_unix_ms,
        attempts: e.attempts,
        next_try_unix_ms: (e.phase == Phase::Deferred).then_some(e.next_try_unix_ms),
        recipients: e.rcpts.len() as u32,
        pending: e.rcpts.iter().filter(|s| **s == RcptState::Pending).count() as u32,
        bytes: u64::from(e.base.len),
        scan: e
            .scan
            .as_ref()
            .map(|(a, score, _)| (action_name(*a).to_owned(), *score as f32 / 1000.0)),
        last_reason: (!e.last_reason.is_empty())
            .then(|| String::from_utf8_lossy(&e.last_reason).into_owned()),
    }
}

fn list(rt: &Runtime, quarantined: bool, limit: u32) -> Answer {
    let shard = rt.store.shard();
    rt.store.with_queue(|q| {
        let mut matching: Vec<&Entry> = q
            .entries()
            .filter(|e| !quarantined || e.phase == Phase::Quarantined)
            .collect();
        let total = matching.len() as u64;
        matching.sort_by_key(|e| (e.received_unix_ms, e.id));
        Answer::Queue {
            entries: matching
                .into_iter()
                .take(limit as usize)
                .map(|e| entry_of(shard, e))
                .collect(),
            total,
        }
    })
}

async fn show(rt: &Runtime, text: &str, quarantined: bool) -> Result<Answer, String> {
    let (id, e) = live(rt, text)?;
    if quarantined && e.phase != Phase::Quarantined {
        return Err(format!("{} is not in quarantine", queue_id(id)));
    }
    let stored = rt.store.load(id).await?;
    let body = &stored.body;
    let head = &body[..body.len().min(HEADER_BYTES_MAX)];
    let end = head
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| p + 1)
        .or_else(|| {
            head.windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| p + 2)
        })
        .unwrap_or(head.len());
    let states = e.rcpts.iter().map(|s| match s {
        RcptState::Pending => "pending",
        RcptState::Delivered => "delivered",
        RcptState::Failed => "failed",
    });
    Ok(Answer::QueueMessage(Box::new(QueueMessage {
        entry: entry_of(rt.store.shard(), &e),
        sender: stored.sender.clone(),
        recipients: stored
            .rcpts
            .iter()
            .cloned()
            .zip(states.map(str::to_owned))
            .collect(),
        facts: stored.facts.clone(),
        symbols: e
            .scan
            .as_ref()
            .map(|(_, _, s)| String::from_utf8_lossy(s).into_owned())
            .unwrap_or_default(),
        header: String::from_utf8_lossy(&body[..end]).into_owned(),
        size: body.len() as u64,
    })))
}
