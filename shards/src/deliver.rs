//! The after-queue path on a shard, after the ingress: scan, then deliver to
//! the relay with retries, and bounce what cannot be delivered.
//!
//! ```text
//! ingress (250 sent) ──received(id)──▶ scanner task ── [filter] verdict ──▶ spool records
//!                                            pass/spam: Scanned          (due now)
//!                                            quarantine: Scanned+Quarantined (held)
//!                                            reject: Scanned+Bounced + DSN to the sender
//!                                            tempfail: Scanned+Deferred (scanned again)
//!                                            discard: Deleted
//! scheduler task: Queue::due(now) ─▶ ready list ─▶ up to the window of workers
//! worker: connect (connect_timeout) ─▶ Client (every reply under command_timeout)
//!         ─▶ one message after another on the same connection while any is ready
//!         ─▶ dispose(): Delivered / Bounced (+ DSN) / Deferred(next try)
//!         ─▶ nothing ready: wait up to relay_idle_time for more (the scheduler
//!            wakes idle workers first), else QUIT
//! ```
//!
//! Every state change is a spool record appended before the next step
//! depends on it, so a crash at any point repeats at most the attempt in
//! flight: delivery is at least once, never lost. A DSN is queued as a new
//! spool message from the null sender (due at once, never scanned, never
//! bounced itself). The relay is one destination for
//! `mb_engine::delivery::Concurrency`: its window starts at
//! `relay_connections_initial`, grows per successful connection and shrinks
//! per failure. When a connection to the relay fails, every message that
//! was ready is deferred with that reason at once (the relay is down; no
//! point in a connect attempt per message).
//!
//! Added headers (the `[policy] header`, and `X-Spam-*` when `[filter]`
//! adds them) are built at delivery time from the scan summary in the spool
//! (action, score, symbols), so a message recovered after a restart gets the
//! same headers as one delivered at once; the `required=` shown is the
//! global threshold of the filter running at delivery time.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use mb_engine::config::{DeliveryConfig, RelayTls};
use mb_engine::delivery::{
    self, build_dsn, Concurrency, Diagnostic, Disposition, DsnRecipient, DsnRequest, Feedback,
    RetryPolicy, Slot,
};
use mb_engine::filter::content::{Cause, ContentAction, ContentFilter, ContentVerdict};
use mb_engine::filter::scan::ScanResult;
use mb_engine::milter::Modification;
use mb_engine::policy::{MessageFacts, Policy};
use mb_engine::smtp::client::{Outcome, RcptStatus, Stage, TlsMode};
use mb_engine::smtp::{
    BodyType, Client, ClientEvent, ClientSettings, Reply, Status, Transaction, TransactionResult,
};
use mb_engine::spool::{
    Entry, MessageId, MessageRecord, Phase, Rcpt, RcptState, Record, ScanAction, ScanSummary,
    REASON_BYTES_MAX, SYMBOLS_BYTES_MAX,
};
use mb_engine::verdict::{Action, SmtpText};

use crate::io::Socket;
use crate::shard::{batch_has_room, Local};
use crate::store::{queue_id, unix_ms, Notify, Store, Stored};

/// Most due messages moved to the ready list per scheduler pass.
const READY_BATCH_MAX: usize = 10_000;
/// Longest sleep of the scheduler when nothing is due sooner.
const SCHEDULER_IDLE: Duration = Duration::from_secs(30);
/// Bytes read from the relay at a time.
const CLIENT_READ_BYTES: usize = 16 * 1024;

/// What every shard's after-queue path starts with (built once, shared).
#[derive(Debug)]
pub struct Setup {
    /// `[delivery]`.
    pub config: DeliveryConfig,
    /// `relay_tls` other than `off`: the TLS client settings.
    pub tls: Option<Arc<crate::tls::RelaySetup>>,
    /// Our host name (greeting, EHLO, DSNs).
    pub hostname: String,
    /// The spool base directory; shard `n` uses `shard-<n>/` in it.
    pub spool_dir: PathBuf,
}

/// Delivery counters of one shard.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Messages spooled and answered 250.
    pub received: u64,
    /// Messages answered 451 because the spool failed.
    pub spool_failures: u64,
    /// Recipients delivered to the relay.
    pub delivered: u64,
    /// Recipients bounced.
    pub bounced: u64,
    /// Recipients deferred (per attempt).
    pub deferred: u64,
    /// DSNs queued.
    pub dsns: u64,
    /// Messages quarantined by the scan.
    pub quarantined: u64,
    /// Messages discarded by the scan.
    pub discarded: u64,
    /// Connections opened to the relay.
    pub connections: u64,
    /// Failed connections (refused, timed out, greeting refused).
    pub connection_failures: u64,
}

/// One shard's after-queue runtime.
pub struct Runtime {
    /// Shared settings.
    pub setup: Arc<Setup>,
    /// The spool.
    pub store: Rc<Store>,
    relay: String,
    to_scan: RefCell<VecDeque<MessageId>>,
    wake_scanner: Notify,
    wake_scheduler: Notify,
    ready: RefCell<VecDeque<MessageId>>,
    in_flight: RefCell<HashSet<MessageId>>,
    concurrency: RefCell<Concurrency>,
    workers: Cell<u32>,
    /// Workers whose connection waits for the next ready message.
    idle: RefCell<Vec<Rc<Notify>>>,
    counters: RefCell<Counters>,
    /// Open ingress connections.
    pub smtp_open: Cell<u32>,
    stopping: Cell<bool>,
}

impl Runtime {
    /// A runtime on an opened spool; messages found unscanned at recovery
    /// are queued for the scanner.
    pub fn new(setup: Arc<Setup>, store: Rc<Store>) -> Rc<Self> {
        let unscanned: VecDeque<MessageId> = store.with_queue(|q| q.unscanned().collect());
        let relay = setup.config.relay.to_string();
        let concurrency = Concurrency::new(setup.config.concurrency);
        Rc::new(Runtime {
            setup,
            store,
            relay,
            to_scan: RefCell::new(unscanned),
            wake_scanner: Notify::default(),
            wake_scheduler: Notify::default(),
            ready: RefCell::default(),
            in_flight: RefCell::default(),
            concurrency: RefCell::new(concurrency),
            workers: Cell::new(0),
            idle: RefCell::default(),
            counters: RefCell::default(),
            smtp_open: Cell::new(0),
            stopping: Cell::new(false),
        })
    }

    /// The spool cannot take messages now.
    pub fn store_broken(&self) -> bool {
        self.store.broken()
    }

    /// Counts an ingress message.
    pub fn count_received(&self, spooled: bool) {
        let mut c = self.counters.borrow_mut();
        if spooled {
            c.received += 1;
        } else {
            c.spool_failures += 1;
        }
    }

    /// A message was spooled: scan it.
    pub fn received(&self, id: MessageId) {
        self.to_scan.borrow_mut().push_back(id);
        self.wake_scanner.notify();
    }

    /// Something became due (release, retry, flush): look again now.
    pub fn kick(&self) {
        self.wake_scheduler.notify();
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        *self.counters.borrow()
    }

    /// Delivery connections open now.
    pub fn workers(&self) -> u32 {
        self.workers.get()
    }

    /// Stops scanning and scheduling; workers finish the message they are
    /// on and quit.
    pub fn stop(&self) {
        self.stopping.set(true);
        self.wake_scanner.notify();
        self.wake_scheduler.notify();
        self.wake_idle(usize::MAX);
    }

    /// Wakes up to `n` workers waiting on an idle connection.
    fn wake_idle(&self, n: usize) {
        let mut idle = self.idle.borrow_mut();
        for _ in 0..n {
            match idle.pop() {
                Some(worker) => worker.notify(),
                None => return,
            }
        }
    }

    fn next_ready(&self) -> Option<MessageId> {
        if self.stopping.get() {
            return None;
        }
        self.ready.borrow_mut().pop_front()
    }

    fn done(&self, id: MessageId) {
        self.in_flight.borrow_mut().remove(&id);
    }

    fn retry(&self) -> &RetryPolicy {
        &self.setup.config.retry
    }

    fn append(&self, id: MessageId, record: &Record<'_>) -> bool {
        match self.store.append(id, record, false) {
            Ok(_) => true,
            Err(e) => {
                log::warn!(
                    "Spool on shard {}: record for {} not written: {e}",
                    self.store.shard(),
                    queue_id(id)
                );
                false
            }
        }
    }
}

// ------------------------------------------------------------------ scan

/// What the policy decided for a message on this path.
#[derive(Debug, Clone)]
enum Act {
    /// Deliver.
    Deliver,
    /// Keep in the spool as quarantined.
    Quarantine(String),
    /// Bounce every recipient with this reply.
    Reject(SmtpText),
    /// Scan again later.
    TempFail(SmtpText),
    /// Drop.
    Discard,
}

/// A scan summary (what the `Scanned` record stores) and the decision.
#[derive(Debug, Clone)]
struct Decision {
    action: ScanAction,
    score_milli: i32,
    symbols: String,
    act: Act,
}

/// Scans (when configured) a batch of messages and decides each, as the
/// milter does at end of message, for the message's recipients.
fn decide_batch(
    local: &Local,
    policy: &Arc<Policy>,
    batch: &[Rc<Stored>],
    scan: bool,
) -> Vec<Decision> {
    let filter = policy.filter().filter(|_| scan);
    let contents: Vec<Option<ContentVerdict>> = match filter {
        Some(f) => {
            let messages: Vec<(&[u8], bool)> = batch
                .iter()
                .map(|stored| {
                    let n = f.scan_bytes_max().min(stored.body.len());
                    (&stored.body[..n], n < stored.body.len())
                })
                .collect();
            local
                .scan_batch(f, &messages)
                .into_iter()
                .map(Some)
                .collect()
        }
        None => vec![None; batch.len()],
    };
    batch
        .iter()
        .zip(contents)
        .map(|(stored, content)| decide(local, policy, filter, stored, content))
        .collect()
}

/// The decision for one message and its scan verdict (`None`: not scanned).
fn decide(
    local: &Local,
    policy: &Arc<Policy>,
    filter: Option<&Arc<ContentFilter>>,
    stored: &Stored,
    content: Option<ContentVerdict>,
) -> Decision {
    let rcpts = || stored.rcpts.iter().map(String::as_str);
    let decided = match (filter, &content) {
        (Some(f), Some(c)) => Some(f.for_recipients(c, rcpts())),
        _ => None,
    };
    let facts = MessageFacts {
        body_bytes: stored.body.len() as u64,
        deferred: Vec::new(),
        score: content.as_ref().map_or(0.0, |c| c.result.score),
        content,
        recipients: stored.rcpts.clone(),
        shard: local.id,
    };
    let verdict = policy.end_of_message(&facts);
    let spam = decided
        .as_ref()
        .is_some_and(|d| d.action != ContentAction::Pass);
    let (action, act) = match verdict.action {
        Action::Accept if spam => (ScanAction::AddHeader, Act::Deliver),
        Action::Accept => (ScanAction::Pass, Act::Deliver),
        Action::Quarantine(reason) => (ScanAction::Quarantine, Act::Quarantine(reason)),
        Action::Reject(text) => (ScanAction::Reject, Act::Reject(text)),
        Action::TempFail(text) => (ScanAction::Tempfail, Act::TempFail(text)),
        Action::Discard => (ScanAction::Pass, Act::Discard),
    };
    let mut symbols = String::new();
    if let Some(d) = &decided {
        for s in d.symbols() {
            if symbols.len() + s.len() + 1 > SYMBOLS_BYTES_MAX {
                break;
            }
            if !symbols.is_empty() {
                symbols.push(',');
            }
            symbols.push_str(s);
        }
    }
    Decision {
        action,
        score_milli: (verdict.score * 1000.0).round() as i32,
        symbols,
        act,
    }
}

/// The scanner task: scans received messages in arrival order, in batches
/// of what is waiting (as `shard::batch_has_room` bounds them; one message
/// waiting is scanned at once), and
/// writes the verdicts' records.
pub async fn scanner(local: Rc<Local>, rt: Rc<Runtime>) {
    loop {
        if rt.stopping.get() {
            return;
        }
        if rt.to_scan.borrow().is_empty() {
            rt.wake_scanner.wait().await;
            continue;
        }
        let mut batch: Vec<(MessageId, Rc<Stored>)> = Vec::new();
        let mut bytes = 0usize;
        while batch_has_room(batch.len(), bytes) {
            let next = rt.to_scan.borrow_mut().pop_front();
            let Some(id) = next else {
                break;
            };
            if rt
                .store
                .entry(id)
                .is_none_or(|e| e.phase != Phase::Received)
            {
                continue;
            }
            match rt.store.load(id).await {
                Ok(s) => {
                    bytes += s.body.len();
                    batch.push((id, s));
                }
                Err(e) => {
                    log::error!(
                        "Shard {}: message {} cannot be read for the scan: {e}",
                        local.id,
                        queue_id(id)
                    );
                }
            }
        }
        let policy = local.policy.borrow().clone();
        let (ids, stored): (Vec<MessageId>, Vec<Rc<Stored>>) = batch.into_iter().unzip();
        let decisions = decide_batch(&local, &policy, &stored, rt.setup.config.scan);
        for ((id, stored), d) in ids.into_iter().zip(&stored).zip(decisions) {
            let summary = Record::Scanned(ScanSummary {
                action: d.action,
                score_milli: d.score_milli,
                symbols: d.symbols.as_bytes(),
            });
            if matches!(d.act, Act::Discard) {
                rt.append(id, &Record::Deleted);
                rt.counters.borrow_mut().discarded += 1;
            } else if rt.append(id, &summary) {
                settle(&rt, id, stored, &d.act, 0);
            }
        }
        rt.wake_scheduler.notify();
        glommio::yield_if_needed().await;
    }
}

/// Writes the records of a non-delivery decision for a scanned message
/// (quarantine, reject, tempfail); nothing for `Deliver`.
fn settle(rt: &Runtime, id: MessageId, stored: &Stored, act: &Act, attempts: u32) {
    let now = unix_ms();
    match act {
        Act::Deliver => {}
        Act::Discard => {
            rt.append(id, &Record::Deleted);
            rt.counters.borrow_mut().discarded += 1;
        }
        Act::Quarantine(reason) => {
            let reason = clip(reason, REASON_BYTES_MAX);
            rt.append(
                id,
                &Record::Quarantined {
                    reason: reason.as_bytes(),
                },
            );
            rt.counters.borrow_mut().quarantined += 1;
        }
        Act::Reject(text) => {
            let Some(entry) = rt.store.entry(id) else {
                return;
            };
            let reply = reply_of(text);
            let status = RcptStatus {
                outcome: Outcome::PermFailed,
                reply,
                stage: Stage::EndOfData,
                remote: false,
            };
            let bounced: Vec<(u32, RcptStatus)> = pending(&entry)
                .into_iter()
                .map(|i| (i, status.clone()))
                .collect();
            bounce(rt, id, stored, &entry, &bounced, &[]);
        }
        Act::TempFail(text) => {
            let Some(entry) = rt.store.entry(id) else {
                return;
            };
            let status = RcptStatus {
                outcome: Outcome::TempFailed,
                reply: reply_of(text),
                stage: Stage::EndOfData,
                remote: false,
            };
            let d = delivery::defer(
                pending(&entry),
                rt.retry(),
                entry.received_unix_ms,
                attempts.max(1),
                now,
                rt.store.rng().next(),
            );
            record(rt, id, stored, &entry, &d, |_| status.clone(), attempts);
        }
    }
}

/// A reply from a policy text (`5.7.1 Message content rejected`).
fn reply_of(text: &SmtpText) -> Reply {
    match Status::parse_prefix(&text.text) {
        Some((status, rest)) => Reply::new(text.code, status, rest),
        None => Reply::plain(text.code, text.text.clone()),
    }
}

/// Indices of the pending recipients.
fn pending(entry: &Entry) -> Vec<u32> {
    entry
        .rcpts
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == RcptState::Pending)
        .map(|(i, _)| i as u32)
        .collect()
}

/// `text` cut to at most `max` bytes on a character boundary.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

// ------------------------------------------------------------- records

/// Writes the records of one attempt's disposition and queues a DSN for
/// what bounced. `status(i)` is the status of spool recipient `i`.
fn record(
    rt: &Runtime,
    id: MessageId,
    stored: &Stored,
    entry: &Entry,
    d: &Disposition,
    status: impl Fn(u32) -> RcptStatus,
    attempts: u32,
) {
    if !d.delivered.is_empty() {
        rt.append(
            id,
            &Record::Delivered {
                rcpts: d.delivered.clone(),
            },
        );
        rt.counters.borrow_mut().delivered += d.delivered.len() as u64;
    }
    if !d.bounced.is_empty() {
        let bounced: Vec<(u32, RcptStatus)> = d.bounced.iter().map(|&i| (i, status(i))).collect();
        bounce(rt, id, stored, entry, &bounced, &d.expired);
    }
    if !d.deferred.is_empty() {
        let reason = d
            .deferred
            .first()
            .map(|&i| status(i).reply.text())
            .unwrap_or_default();
        let reason = clip(&reason, REASON_BYTES_MAX);
        rt.append(
            id,
            &Record::Deferred {
                next_try_unix_ms: d.next_try_unix_ms.unwrap_or_else(unix_ms),
                attempts,
                reason: reason.as_bytes(),
            },
        );
        rt.counters.borrow_mut().deferred += d.deferred.len() as u64;
    }
}

/// Queues a DSN for `bounced` recipients (unless the sender is null), then
/// writes their `Bounced` record.
fn bounce(
    rt: &Runtime,
    id: MessageId,
    stored: &Stored,
    entry: &Entry,
    bounced: &[(u32, RcptStatus)],
    expired: &[u32],
) {
    if bounced.is_empty() {
        return;
    }
    let now = unix_ms();
    let recipients: Vec<DsnRecipient> = bounced
        .iter()
        .map(|(i, status)| {
            let address = stored.rcpts.get(*i as usize).map_or("", String::as_str);
            let mut r = DsnRecipient::from_status(
                address,
                status,
                Some(&rt.relay),
                now,
                expired.contains(i),
            );
            if !status.remote {
                r.diagnostic = Some(Diagnostic::Local(status.reply.text()));
            }
            r
        })
        .collect();
    let received_from = stored
        .facts
        .iter()
        .find(|(k, _)| k == "xforward.name")
        .map(|(_, v)| v.as_str());
    let qid = queue_id(id);
    let (_, utc_offset) = crate::evalload::now();
    let req = DsnRequest {
        reporting_mta: &rt.setup.hostname,
        queue_id: &qid,
        original_sender: &stored.sender,
        arrival_unix_ms: entry.received_unix_ms,
        now_unix_ms: now,
        utc_offset_minutes: utc_offset,
        received_from_mta: received_from,
        recipients: &recipients,
        original: &stored.body,
        unique: rt.store.rng().next(),
    };
    // The DSN goes first: if the Bounced record made it to disk without
    // the DSN, the sender would never hear of the failure.
    match build_dsn(&req) {
        Ok(dsn) => {
            let dsn_id = rt.store.new_id();
            let mut facts: Vec<(String, String)> = Vec::new();
            if dsn.body == BodyType::EightBitMime {
                facts.push(("body".into(), "8BITMIME".into()));
            }
            if dsn.smtputf8 {
                facts.push(("smtputf8".into(), "1".into()));
            }
            let message = Record::Message(MessageRecord {
                received_unix_ms: now,
                phase: Phase::Scanned,
                attempts: 0,
                next_try_unix_ms: 0,
                scan: None,
                sender: b"",
                rcpts: vec![Rcpt {
                    address: dsn.recipient.as_bytes(),
                    state: RcptState::Pending,
                }],
                facts: facts
                    .iter()
                    .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
                    .collect(),
                body: &dsn.content,
            });
            if rt.append(dsn_id, &message) {
                rt.store.cache(
                    dsn_id,
                    Rc::new(Stored {
                        received_unix_ms: now,
                        sender: String::new(),
                        rcpts: vec![dsn.recipient.clone()],
                        facts,
                        body: dsn.content.clone(),
                    }),
                );
                rt.counters.borrow_mut().dsns += 1;
                log::info!(
                    "Shard {}: {} bounced for {} recipient(s); DSN {} to <{}>.",
                    rt.store.shard(),
                    qid,
                    bounced.len(),
                    queue_id(dsn_id),
                    dsn.recipient
                );
            }
        }
        Err(e) => log::info!(
            "Shard {}: {} bounced for {} recipient(s), no DSN: {e}",
            rt.store.shard(),
            qid,
            bounced.len()
        ),
    }
    let reason = clip(&bounced[0].1.reply.text(), REASON_BYTES_MAX);
    let indices: Vec<u32> = bounced.iter().map(|(i, _)| *i).collect();
    if rt.append(
        id,
        &Record::Bounced {
            rcpts: indices,
            reason: reason.as_bytes(),
        },
    ) {
        rt.counters.borrow_mut().bounced += bounced.len() as u64;
    }
}

// ------------------------------------------------------------ headers

/// The header lines added at delivery (CRLF line ends), from the scan
/// summary in the spool: the `[policy] header`, and `X-Spam-*` when the
/// running filter adds them. Nothing for a message that was never scanned
/// (a DSN).
fn added_headers(
    policy: &Policy,
    scan: Option<&(ScanAction, i32, Vec<u8>)>,
    shard: u16,
    scanning: bool,
) -> Vec<u8> {
    let Some((action, score_milli, symbols)) = scan else {
        return Vec::new();
    };
    let score = *score_milli as f32 / 1000.0;
    let mut lines: Vec<(String, String)> = Vec::new();
    let verdict = policy.end_of_message(&MessageFacts {
        score,
        shard,
        ..MessageFacts::default()
    });
    for m in verdict.modifications {
        if let Modification::AddHeader { name, value } = m {
            lines.push((name, value));
        }
    }
    if let Some(filter) = policy.filter().filter(|f| scanning && f.adds_headers()) {
        let action = match action {
            ScanAction::Pass => ContentAction::Pass,
            ScanAction::AddHeader => ContentAction::Spam,
            ScanAction::Quarantine => ContentAction::Quarantine,
            ScanAction::Reject => ContentAction::Reject,
            ScanAction::Tempfail => ContentAction::TempFail,
        };
        let symbols = String::from_utf8_lossy(symbols);
        let verdict = ContentVerdict {
            result: ScanResult {
                score,
                required_score: filter.thresholds().required,
                symbols: symbols
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| (s.to_owned(), 0.0))
                    .collect(),
            },
            action,
            cause: Cause::Score,
            score_action: action,
            truncated: false,
            violations: Vec::new(),
            findings: Vec::new(),
            limits: Vec::new(),
            add_headers: true,
            domain: None,
        };
        lines.extend(verdict.headers());
    }
    let mut out = Vec::new();
    for (name, value) in lines {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.replace('\n', "\r\n").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

// ---------------------------------------------------------- scheduling

/// The scheduler task: moves due messages to the ready list and starts
/// workers within the relay's window.
pub async fn scheduler(local: Rc<Local>, rt: Rc<Runtime>) {
    loop {
        if rt.stopping.get() {
            return;
        }
        if rt.store_broken() {
            // Nothing a delivery would record could be written: wait.
            glommio::timer::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let now = unix_ms();
        let (next_due, moved) = {
            let mut in_flight = rt.in_flight.borrow_mut();
            let mut ready = rt.ready.borrow_mut();
            rt.store.with_queue(|q| {
                let mut moved = 0;
                let mut next = None;
                for id in q.due(u64::MAX) {
                    let Some(due) = q.get(id).and_then(Entry::due_unix_ms) else {
                        continue;
                    };
                    if due > now {
                        next = Some(due);
                        break;
                    }
                    if moved + ready.len() >= READY_BATCH_MAX {
                        // More is due: look again as soon as workers free up.
                        next = Some(now);
                        break;
                    }
                    if in_flight.insert(id) {
                        ready.push_back(id);
                        moved += 1;
                    }
                }
                (next, moved)
            })
        };
        // Connections already open and idle take the new messages first.
        rt.wake_idle(moved);
        loop {
            let want = rt.ready.borrow().len() as u32;
            if rt.workers.get() >= want {
                break;
            }
            let slot = rt.concurrency.borrow_mut().try_acquire(&rt.relay);
            let Ok(slot) = slot else { break };
            rt.workers.set(rt.workers.get() + 1);
            glommio::spawn_local(worker(Rc::clone(&local), Rc::clone(&rt), slot)).detach();
        }
        let wait = next_due.map_or(SCHEDULER_IDLE, |t| {
            Duration::from_millis(t.saturating_sub(now))
                .clamp(Duration::from_millis(5), SCHEDULER_IDLE)
        });
        futures_lite::future::or(glommio::timer::sleep(wait), rt.wake_scheduler.wait()).await;
    }
}

/// One delivery connection: delivers ready messages one after another on
/// it, waits up to `relay_idle_time` for more when none is ready, then says
/// QUIT.
async fn worker(local: Rc<Local>, rt: Rc<Runtime>, slot: Slot) {
    let mut conn: Option<Conn<'_>> = None;
    let mut feedback = Feedback::Neutral;
    let mut idle_since: Option<std::time::Instant> = None;
    loop {
        let Some(id) = rt.next_ready() else {
            let Some(c) = conn.as_mut() else { break };
            let since = *idle_since.get_or_insert_with(std::time::Instant::now);
            let left = rt
                .setup
                .config
                .relay_idle_time
                .saturating_sub(since.elapsed());
            if left.is_zero() || rt.stopping.get() || c.client.is_closed() {
                break;
            }
            if !c.linger(&rt, left).await {
                log::debug!(
                    "Shard {}: relay {} closed an idle delivery connection.",
                    local.id,
                    rt.relay
                );
                conn = None;
                break;
            }
            continue;
        };
        idle_since = None;
        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            rt.counters.borrow_mut().connections += 1;
            match Conn::connect(&local, &rt).await {
                Ok(c) => {
                    conn = Some(c);
                    feedback = Feedback::Success;
                }
                Err(status) => {
                    rt.counters.borrow_mut().connection_failures += 1;
                    feedback = Feedback::Failure;
                    log::info!(
                        "Shard {}: relay {} unavailable: {}; deferring ready messages.",
                        local.id,
                        rt.relay,
                        status.reply.text()
                    );
                    defer_all(&rt, id, &status).await;
                    while let Some(other) = rt.next_ready() {
                        defer_all(&rt, other, &status).await;
                    }
                    conn = None;
                    break;
                }
            }
        }
        let Some(c) = conn.as_mut() else { break };
        let ok = deliver_one(&local, &rt, c, id).await;
        rt.done(id);
        if !ok {
            conn = None;
        }
    }
    if let Some(mut c) = conn {
        c.quit().await;
    }
    rt.concurrency.borrow_mut().release(slot, feedback);
    rt.workers.set(rt.workers.get() - 1);
    rt.wake_scheduler.notify();
}

/// Defers (or, past the queue lifetime, bounces) every pending recipient of
/// `id` after a failed connection.
async fn defer_all(rt: &Runtime, id: MessageId, status: &RcptStatus) {
    if let Some(entry) = rt.store.entry(id).filter(|e| e.due_unix_ms().is_some()) {
        match rt.store.load(id).await {
            Ok(stored) => {
                let attempts = entry.attempts.saturating_add(1);
                let d = delivery::defer(
                    pending(&entry),
                    rt.retry(),
                    entry.received_unix_ms,
                    attempts,
                    unix_ms(),
                    rt.store.rng().next(),
                );
                record(rt, id, &stored, &entry, &d, |_| status.clone(), attempts);
            }
            Err(e) => log::error!("message {} cannot be read: {e}", queue_id(id)),
        }
    }
    rt.done(id);
}

/// Delivers one message on `conn`; false when the connection is unusable
/// afterwards.
async fn deliver_one(local: &Local, rt: &Runtime, conn: &mut Conn<'_>, id: MessageId) -> bool {
    let Some(entry) = rt.store.entry(id).filter(|e| e.due_unix_ms().is_some()) else {
        // Delivered, deleted or held meanwhile (an admin command).
        return true;
    };
    let stored = match rt.store.load(id).await {
        Ok(s) => s,
        Err(e) => {
            log::error!(
                "Shard {}: message {} cannot be read for delivery: {e}",
                local.id,
                queue_id(id)
            );
            let status = local_status(451, Status::new(4, 3, 0), "cannot read the spool");
            defer_all(rt, id, &status).await;
            return true;
        }
    };
    let attempts = entry.attempts.saturating_add(1);
    let policy = local.policy.borrow().clone();
    let mut scan = entry.scan.clone();
    if scan
        .as_ref()
        .is_some_and(|(a, _, _)| *a == ScanAction::Tempfail)
    {
        // The filter asked to try later: ask it again.
        let scanned = decide_batch(
            local,
            &policy,
            std::slice::from_ref(&stored),
            rt.setup.config.scan,
        );
        let Some(d) = scanned.into_iter().next() else {
            return true;
        };
        if !matches!(d.act, Act::Deliver) {
            settle(rt, id, &stored, &d.act, attempts);
            return true;
        }
        scan = Some((d.action, d.score_milli, d.symbols.into_bytes()));
    }
    let indices = pending(&entry);
    if indices.is_empty() {
        return true;
    }
    let headers = added_headers(&policy, scan.as_ref(), local.id, rt.setup.config.scan);
    let mut content = Vec::with_capacity(headers.len() + stored.body.len());
    content.extend_from_slice(&headers);
    content.extend_from_slice(&stored.body);
    let mut tx = Transaction {
        sender: stored.sender.clone(),
        recipients: indices
            .iter()
            .map(|&i| stored.rcpts[i as usize].clone())
            .collect(),
        size: content.len() as u64,
        ..Transaction::default()
    };
    tx.apply_facts(stored.facts.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let (result, usable) = conn.transaction(tx, &content).await;
    let now = unix_ms();
    let d = delivery::dispose(
        &result,
        &indices,
        rt.retry(),
        entry.received_unix_ms,
        attempts,
        now,
        rt.store.rng().next(),
    );
    let status_of = |i: u32| -> RcptStatus {
        let pos = indices.iter().position(|&x| x == i).unwrap_or(0);
        result.recipients[pos].clone()
    };
    record(rt, id, &stored, &entry, &d, status_of, attempts);
    usable
}

/// Starts a non-blocking TCP connect (completion: [`Socket::connected`]).
fn connect(addr: std::net::SocketAddr) -> std::io::Result<std::os::fd::OwnedFd> {
    use socket2::{Domain, Socket as RawSocket, Type};
    let s = RawSocket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_nonblocking(true)?;
    s.set_nodelay(true)?;
    s.set_cloexec(true)?;
    match s.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(std::os::fd::OwnedFd::from(s))
}

fn local_status(code: u16, status: Status, text: &str) -> RcptStatus {
    RcptStatus {
        outcome: if code >= 500 {
            Outcome::PermFailed
        } else {
            Outcome::TempFailed
        },
        reply: Reply::new(code, status, text),
        stage: Stage::Connection,
        remote: false,
    }
}

// ---------------------------------------------------------- connection

/// Why a connection could not be opened.
enum Failed {
    /// The TLS handshake (or the certificate) failed.
    Tls(RcptStatus),
    /// Anything else (connect, greeting, EHLO, STARTTLS refused).
    Other(RcptStatus),
}

impl Failed {
    fn status(self) -> RcptStatus {
        match self {
            Failed::Tls(s) | Failed::Other(s) => s,
        }
    }
}

/// A connection to the relay driving the sans-I/O client, every wait under
/// a timeout.
struct Conn<'a> {
    socket: Socket<'a>,
    client: Client,
    /// After STARTTLS: `out` is encrypted into `wire`, and what is read
    /// decrypted into `input`.
    tls: Option<crate::tls::Session>,
    input: Vec<u8>,
    out: Vec<u8>,
    wire: Vec<u8>,
    events: VecDeque<ClientEvent>,
    timeout: Duration,
}

impl<'a> Conn<'a> {
    /// Connects and runs the handshake to `Ready`, with STARTTLS as
    /// `relay_tls` says. With `may`, a failed TLS handshake is logged and
    /// the connection opened again in plaintext; with `encrypt` and
    /// `verify` it is the failure of the attempt.
    async fn connect(local: &'a Local, rt: &Runtime) -> Result<Conn<'a>, RcptStatus> {
        let tls = rt.setup.tls.as_deref();
        match Conn::open(local, rt, tls).await {
            Err(Failed::Tls(status)) if tls.is_some_and(|t| t.mode == RelayTls::May) => {
                log::warn!(
                    "Shard {}: relay {}: {}; relay_tls = \"may\": delivering in plaintext on \
                     a new connection.",
                    local.id,
                    rt.relay,
                    status.reply.text()
                );
                Conn::open(local, rt, None).await.map_err(Failed::status)
            }
            other => other.map_err(Failed::status),
        }
    }

    /// Connects and runs the handshake to `Ready` (with STARTTLS when `tls`
    /// is set); the failure as a temporary status for every recipient.
    async fn open(
        local: &'a Local,
        rt: &Runtime,
        tls: Option<&crate::tls::RelaySetup>,
    ) -> Result<Conn<'a>, Failed> {
        let cfg = &rt.setup.config;
        let fail = |text: String| Failed::Other(local_status(451, Status::new(4, 4, 1), &text));
        let fd = connect(cfg.relay).map_err(|e| fail(format!("connect to {}: {e}", rt.relay)))?;
        let socket = local
            .readiness
            .register(fd)
            .map_err(|e| fail(format!("cannot poll a socket: {e}")))?;
        match glommio::timer::timeout(cfg.connect_timeout, async { Ok(socket.connected().await) })
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(fail(format!("connect to {}: {e}", rt.relay))),
            Err(_) => {
                return Err(fail(format!(
                    "connect to {}: timed out after {:?}",
                    rt.relay, cfg.connect_timeout
                )))
            }
        }
        let mut settings = ClientSettings::new(rt.setup.hostname.clone());
        settings.tls = match tls.map(|t| t.mode) {
            None | Some(RelayTls::Off) => TlsMode::Off,
            Some(RelayTls::May) => TlsMode::Opportunistic,
            Some(RelayTls::Encrypt | RelayTls::Verify) => TlsMode::Required,
        };
        let mut conn = Conn {
            socket,
            client: Client::new(settings),
            tls: None,
            input: Vec::new(),
            out: Vec::new(),
            wire: Vec::new(),
            events: VecDeque::new(),
            timeout: cfg.command_timeout,
        };
        loop {
            match conn.next_event().await {
                Ok(ClientEvent::Ready) => return Ok(conn),
                Ok(ClientEvent::StartTls) => {
                    let Some(setup) = tls else {
                        return Err(fail("STARTTLS without TLS settings".into()));
                    };
                    conn.start_tls(local, rt, setup).await?;
                }
                Ok(ClientEvent::SessionFailed(reply)) => {
                    let _ = conn.flush().await;
                    return Err(Failed::Other(RcptStatus {
                        outcome: Outcome::TempFailed,
                        reply,
                        stage: Stage::Connection,
                        remote: true,
                    }));
                }
                Ok(ClientEvent::Closed) => {
                    return Err(fail("the relay closed the connection".into()))
                }
                Ok(_) => {}
                Err(e) => return Err(fail(e)),
            }
        }
    }

    /// The TLS handshake after the relay's 220 to STARTTLS, under
    /// `command_timeout`; then EHLO again over TLS.
    async fn start_tls(
        &mut self,
        local: &Local,
        rt: &Runtime,
        setup: &crate::tls::RelaySetup,
    ) -> Result<(), Failed> {
        let tls_fail = |text: String| Failed::Tls(local_status(451, Status::new(4, 7, 5), &text));
        if !self.input.is_empty() {
            // The client refuses this already (injection); never pass
            // plaintext bytes on as TLS.
            return Err(tls_fail("plaintext after the STARTTLS reply".into()));
        }
        let socket = &self.socket;
        let handshake = glommio::timer::timeout(self.timeout, async {
            Ok(crate::tls::Session::handshake(setup, socket).await)
        })
        .await;
        let session = match handshake {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(tls_fail(e)),
            Err(_) => {
                return Err(tls_fail(format!(
                    "TLS handshake with the relay timed out after {:?}",
                    self.timeout
                )))
            }
        };
        log::info!(
            "Shard {}: TLS to the relay {} established: {} ({}).",
            local.id,
            rt.relay,
            session.describe(),
            setup.trust
        );
        self.tls = Some(session);
        self.client
            .tls_established(&mut self.out)
            .map_err(|e| Failed::Other(local_status(451, Status::new(4, 4, 0), &e.to_string())))
    }

    /// Writes what the client queued.
    async fn flush(&mut self) -> Result<(), String> {
        if self.out.is_empty() {
            return Ok(());
        }
        let socket = &self.socket;
        let out = match &mut self.tls {
            Some(tls) => {
                self.wire.clear();
                tls.encrypt(&self.out, &mut self.wire)?;
                &self.wire
            }
            None => &self.out,
        };
        let written =
            glommio::timer::timeout(self.timeout, async { Ok(socket.write_all(out).await) }).await;
        self.out.clear();
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write to the relay: {e}")),
            Err(_) => Err(format!(
                "write to the relay timed out after {:?}",
                self.timeout
            )),
        }
    }

    /// The next client event, reading (and writing) as needed.
    async fn next_event(&mut self) -> Result<ClientEvent, String> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(e);
            }
            self.flush().await?;
            if !self.input.is_empty() {
                let mut events = Vec::new();
                let n = self
                    .client
                    .receive(&self.input, &mut self.out, &mut events)
                    .map_err(|e| format!("relay protocol error: {e}"))?;
                self.input.drain(..n);
                self.events.extend(events);
                if !self.events.is_empty() || !self.out.is_empty() {
                    continue;
                }
            }
            if self.client.is_closed() {
                return Err("the connection is closed".into());
            }
            let mut buf = vec![0u8; CLIENT_READ_BYTES];
            let socket = &self.socket;
            let read =
                glommio::timer::timeout(self.timeout, async { Ok(socket.read(&mut buf).await) })
                    .await;
            match read {
                Ok(Ok(0)) => return Err("the relay closed the connection".into()),
                Ok(Ok(n)) => match &mut self.tls {
                    Some(tls) => {
                        self.wire.clear();
                        let closed = tls.decrypt(&buf[..n], &mut self.input, &mut self.wire)?;
                        if !self.wire.is_empty() {
                            let _ = self.socket.write_all(&self.wire).await;
                        }
                        if closed && self.input.is_empty() {
                            return Err("the relay closed the TLS session".into());
                        }
                    }
                    None => self.input.extend_from_slice(&buf[..n]),
                },
                Ok(Err(e)) => return Err(format!("read from the relay: {e}")),
                Err(_) => return Err(format!("no reply from the relay within {:?}", self.timeout)),
            }
        }
    }

    /// Runs one transaction; the result, and whether the connection can
    /// carry another one.
    async fn transaction(&mut self, tx: Transaction, content: &[u8]) -> (TransactionResult, bool) {
        let rcpts = tx.recipients.len();
        let lost = |client: &mut Client, why: &str| {
            log::debug!("relay connection lost: {why}");
            client
                .connection_lost()
                .unwrap_or_else(|| TransactionResult {
                    recipients: vec![
                        local_status(
                            451,
                            Status::new(4, 4, 2),
                            "lost connection with the relay"
                        );
                        rcpts
                    ],
                })
        };
        // Leftover Ready events of the previous transaction.
        self.events.retain(|e| !matches!(e, ClientEvent::Ready));
        while !self.client.is_ready() {
            match self.next_event().await {
                Ok(ClientEvent::Ready) => {}
                Ok(ClientEvent::SessionFailed(_) | ClientEvent::Closed) | Err(_) => {
                    return (lost(&mut self.client, "not ready"), false);
                }
                Ok(_) => {}
            }
        }
        let mut events = Vec::new();
        if let Err(e) = self.client.start(tx, &mut self.out, &mut events) {
            return (lost(&mut self.client, &e.to_string()), false);
        }
        self.events.extend(events);
        loop {
            match self.next_event().await {
                Ok(ClientEvent::SendBody) => {
                    if let Err(e) = self.client.body(content, &mut self.out) {
                        return (lost(&mut self.client, &e.to_string()), false);
                    }
                }
                Ok(ClientEvent::Done(result)) => {
                    let usable = !self.client.is_closed();
                    return (result, usable);
                }
                Ok(ClientEvent::Ready | ClientEvent::StartTls) => {}
                Ok(ClientEvent::SessionFailed(_) | ClientEvent::Closed) => {
                    return (lost(&mut self.client, "closed"), false);
                }
                Err(e) => return (lost(&mut self.client, &e), false),
            }
        }
    }

    /// Waits, with nothing to send, until the scheduler has a message for
    /// this connection (true), `left` passes (true: the caller quits), or
    /// the relay sends anything or hangs up (false: the connection is not
    /// used again; a relay only speaks unasked to say 421 or close).
    async fn linger(&mut self, rt: &Runtime, left: Duration) -> bool {
        let wake = Rc::new(Notify::default());
        rt.idle.borrow_mut().push(Rc::clone(&wake));
        let mut byte = [0u8; 64];
        let socket = &self.socket;
        let usable = futures_lite::future::or(
            async {
                wake.wait().await;
                true
            },
            futures_lite::future::or(
                async {
                    glommio::timer::sleep(left).await;
                    true
                },
                async {
                    let _ = socket.read(&mut byte).await;
                    false
                },
            ),
        )
        .await;
        rt.idle.borrow_mut().retain(|w| !Rc::ptr_eq(w, &wake));
        usable
    }

    /// QUIT, politely and briefly.
    async fn quit(&mut self) {
        if self.client.is_ready() && self.client.quit(&mut self.out).is_ok() {
            let _ = self.flush().await;
            let _ = glommio::timer::timeout(Duration::from_secs(1), async {
                let _ = self.next_event().await;
                Ok(())
            })
            .await;
        }
    }
}
