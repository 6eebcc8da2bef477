//! A shard's spool at run time: the segment writer (`spool.rs`), the queue
//! rebuilt at start-up, and the group commit that releases a 250 only for
//! records that are on disk.
//!
//! ```text
//! ingress ──append(Message, wait)──▶ writer tail + queue.apply ──▶ AckWait ─┐
//! delivery ──append(Delivered…)───▶        │                                 │ 250 / 451
//!                                           ▼                                 │
//!              committer task: CommitState::decide ─▶ write tail ─▶ fdatasync ─▶ AckGate::release
//! ```
//!
//! Everything here is shard-local (`Rc`, `RefCell`), and no borrow is held
//! across an await: the committer copies the tail into a DMA buffer
//! synchronously ([`SegmentWriter::prepare_commit`]) and runs the write and
//! the sync without touching the writer, so sessions keep appending while a
//! sync is in flight and the next batch grows with the load (opportunistic
//! group commit, `docs/SPOOL.md`).
//!
//! Every record is applied to the in-memory queue when it is appended, the
//! same [`Queue::apply`] recovery runs, so the live queue equals the
//! recovered one once everything is synced. A sync that fails answers every
//! waiting session with 451 (Postfix keeps the message and retries), and the
//! writer moves to a new segment; until that works, new messages get 451.
//!
//! Message bodies are read back from the segment files for delivery, except
//! for messages received since start-up, whose envelope and body stay in a
//! byte-bounded in-memory cache until they leave the queue.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use mb_engine::spool::{
    decode_record, plan_compaction, AckGate, CommitState, CompactionPolicy, EncodeError, Entry,
    GroupCommit, MessageId, Queue, Record, RecoveryReport, Reject, ScanSummary, SyncDecision,
    SEGMENT_BYTES_DEFAULT,
};

use crate::spool::{self, SegmentWriter};

/// Bytes of message envelopes and bodies a shard keeps in memory for
/// delivery; beyond it, bodies are read back from the spool. 64 MiB: a few
/// seconds of traffic at the measured ingress rate, well inside the
/// delivery stage's 1 GB budget on any shard count up to 16.
pub const CACHE_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// How often a shard looks for segments to compact.
pub const COMPACT_INTERVAL: Duration = Duration::from_secs(30);

/// Wait before a writer that failed tries a new segment again.
const BROKEN_RETRY: Duration = Duration::from_secs(5);

/// A message's envelope and content, owned.
#[derive(Debug, Clone)]
pub struct Stored {
    /// When it arrived (unix ms).
    pub received_unix_ms: u64,
    /// Envelope sender; empty for `<>`.
    pub sender: String,
    /// Envelope recipients, in spool order.
    pub rcpts: Vec<String>,
    /// XFORWARD and ingress facts.
    pub facts: Vec<(String, String)>,
    /// The message.
    pub body: Vec<u8>,
}

impl Stored {
    fn bytes(&self) -> u64 {
        (self.body.len()
            + self.sender.len()
            + self.rcpts.iter().map(String::len).sum::<usize>()
            + self
                .facts
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()) as u64
    }
}

/// Why a record was not appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The queue refuses the transition (a runtime bug or a race with an
    /// admin command).
    #[error("spool refused the record: {0}")]
    Reject(#[from] Reject),
    /// A field over the format's maximum.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The writer failed and no new segment could be started yet.
    #[error("the spool cannot be written")]
    Broken,
}

/// A one-shot, single-waiter completion (the ack of one record).
#[derive(Default)]
struct AckSlot {
    done: Cell<Option<bool>>,
    waker: RefCell<Option<Waker>>,
}

impl AckSlot {
    fn complete(&self, durable: bool) {
        self.done.set(Some(durable));
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

/// Resolves to whether the record became durable (`false`: the sync failed).
pub struct AckWait(Rc<AckSlot>);

impl Future for AckWait {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        if let Some(done) = self.0.done.get() {
            return Poll::Ready(done);
        }
        let mut waker = self.0.waker.borrow_mut();
        match &*waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// A single-waiter wake-up flag (the committer, the delivery scheduler).
#[derive(Default)]
pub struct Notify {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    /// Wakes the waiter (or the next one to wait).
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Resolves after the next (or a pending) [`Notify::notify`].
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        futures_lite::future::poll_fn(move |cx| {
            if self.set.replace(false) {
                return Poll::Ready(());
            }
            let mut waker = self.waker.borrow_mut();
            match &*waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
    }
}

/// A SplitMix64 generator: segment nonces, message id counters, retry
/// jitter. Not for secrets.
pub struct Rng(Cell<u64>);

impl Rng {
    /// Seeded from the kernel's random pool (or the clock if that fails).
    pub fn new(salt: u64) -> Self {
        use std::io::Read;
        let mut b = [0u8; 8];
        let seed = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut b))
            .map(|()| u64::from_le_bytes(b))
            .unwrap_or_else(|_| unix_ms() ^ u64::from(std::process::id()) << 32);
        Self(Cell::new(seed ^ salt.rotate_left(17)))
    }

    /// The next value.
    pub fn next(&self) -> u64 {
        let mut z = self.0.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.0.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Now, unix ms.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A message id: unix ms in the high 64 bits, the shard in the next 16, a
/// per-process counter (random start) in the low 48. Unique per shard as
/// long as the clock does not run backwards across a restart by more than
/// the counter's random start can absorb; the shard in it lets `mbctl`
/// commands find the message's owner.
pub fn message_id(unix_ms: u64, shard: u16, counter: u64) -> MessageId {
    MessageId(
        u128::from(unix_ms) << 64
            | u128::from(shard) << 48
            | u128::from(counter & 0xFFFF_FFFF_FFFF),
    )
}

/// The queue id shown to people (`250 … queued as <id>`, `mbctl queue`):
/// the id in upper-case hex (27 digits until the year 2527).
pub fn queue_id(id: MessageId) -> String {
    format!("{:X}", id.0)
}

/// Parses [`queue_id`]'s form (either case).
pub fn parse_queue_id(text: &str) -> Option<MessageId> {
    if text.is_empty() || text.len() > 32 {
        return None;
    }
    u128::from_str_radix(text, 16).ok().map(MessageId)
}

/// The shard whose spool holds message `id` (see [`message_id`]).
pub fn shard_of(id: MessageId) -> u16 {
    (id.0 >> 48) as u16
}

struct Inner {
    queue: Queue,
    commit: CommitState,
    acks: AckGate<Rc<AckSlot>>,
    writer: SegmentWriter,
    next_seq: u64,
    counter: u64,
    cache: HashMap<MessageId, Rc<Stored>>,
    cache_bytes: u64,
    /// The writer failed; appends are refused until a new segment exists.
    broken: bool,
    /// Bytes in the spool directory's segments (approximate: written bytes).
    syncs: u64,
}

/// One shard's spool.
pub struct Store {
    dir: PathBuf,
    shard: u16,
    policy: GroupCommit,
    epoch: Instant,
    rng: Rng,
    inner: RefCell<Inner>,
    wake_committer: Notify,
    /// Set when the shard drains: the committer flushes and returns.
    stopping: Cell<bool>,
}

/// What start-up recovery found.
pub struct Opened {
    /// The spool.
    pub store: Rc<Store>,
    /// Damage and refused records found on disk.
    pub report: RecoveryReport,
}

impl Store {
    /// Opens (recovering) the spool of `shard` in `dir`.
    pub async fn open(dir: &Path, shard: u16, policy: GroupCommit) -> std::io::Result<Opened> {
        let rng = Rng::new(u64::from(shard));
        let opened = spool::open(dir, rng.next(), unix_ms()).await?;
        let queue = opened.recovery.queue;
        let last = queue.last_seq();
        let store = Store {
            dir: dir.to_path_buf(),
            shard,
            policy,
            epoch: Instant::now(),
            inner: RefCell::new(Inner {
                commit: CommitState::new(last),
                acks: AckGate::new(),
                writer: opened.writer,
                next_seq: last.map_or(1, |s| s + 1),
                counter: rng.next(),
                cache: HashMap::new(),
                cache_bytes: 0,
                broken: false,
                syncs: 0,
                queue,
            }),
            rng,
            wake_committer: Notify::default(),
            stopping: Cell::new(false),
        };
        Ok(Opened {
            store: Rc::new(store),
            report: opened.recovery.report,
        })
    }

    /// The shard.
    pub fn shard(&self) -> u16 {
        self.shard
    }

    /// The random generator (jitter).
    pub fn rng(&self) -> &Rng {
        &self.rng
    }

    /// A new message id.
    pub fn new_id(&self) -> MessageId {
        let mut inner = self.inner.borrow_mut();
        inner.counter = inner.counter.wrapping_add(1);
        message_id(unix_ms(), self.shard, inner.counter)
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Runs `f` on the queue.
    pub fn with_queue<T>(&self, f: impl FnOnce(&Queue) -> T) -> T {
        f(&self.inner.borrow().queue)
    }

    /// A copy of the queue entry of `id`.
    pub fn entry(&self, id: MessageId) -> Option<Entry> {
        self.inner.borrow().queue.get(id).cloned()
    }

    /// Appends a record, applies it to the queue and asks for a sync. With
    /// `wait`, the returned [`AckWait`] resolves once the record is durable
    /// (or the sync failed).
    pub fn append(
        &self,
        id: MessageId,
        record: &Record<'_>,
        wait: bool,
    ) -> Result<Option<AckWait>, AppendError> {
        let now = self.now();
        let mut inner = self.inner.borrow_mut();
        if inner.broken {
            return Err(AppendError::Broken);
        }
        inner.queue.check(id, record)?;
        let seq = inner.next_seq;
        let at = inner.writer.append(seq, id, record)?;
        inner.next_seq += 1;
        // `check` passed on the same queue, so `apply` cannot refuse.
        if let Err(e) = inner.queue.apply(at, seq, id, record) {
            unreachable!("a checked spool record was refused: {e}");
        }
        if wait {
            inner.commit.appended(seq, u64::from(at.len), now);
        } else {
            inner.commit.appended_lazily(seq, u64::from(at.len), now);
        }
        let ack = wait.then(|| {
            let slot = Rc::new(AckSlot::default());
            inner.acks.push(seq, Rc::clone(&slot));
            AckWait(slot)
        });
        if inner.queue.get(id).is_none() {
            // Terminal: its body is no longer needed.
            if let Some(s) = inner.cache.remove(&id) {
                inner.cache_bytes -= s.bytes();
            }
        }
        drop(inner);
        self.wake_committer.notify();
        Ok(ack)
    }

    /// Keeps a message's envelope and body in memory for delivery, if the
    /// cache has room.
    pub fn cache(&self, id: MessageId, stored: Rc<Stored>) {
        let mut inner = self.inner.borrow_mut();
        let bytes = stored.bytes();
        if inner.cache_bytes + bytes <= CACHE_BYTES_MAX && inner.queue.get(id).is_some() {
            if let Some(old) = inner.cache.insert(id, stored) {
                inner.cache_bytes -= old.bytes();
            }
            inner.cache_bytes += bytes;
        }
    }

    /// The envelope and body of a live message: from the cache, else read
    /// back from its base record.
    pub async fn load(&self, id: MessageId) -> Result<Rc<Stored>, String> {
        let at = {
            let inner = self.inner.borrow();
            if let Some(s) = inner.cache.get(&id) {
                return Ok(Rc::clone(s));
            }
            inner
                .queue
                .get(id)
                .map(|e| e.base)
                .ok_or_else(|| "not in the queue".to_owned())?
        };
        let bytes = spool::read_record(&self.dir, at)
            .await
            .map_err(|e| format!("cannot read the spool record at {at:?}: {e}"))?;
        let (_, record) = decode_record(&bytes)
            .map_err(|d| format!("spool record at {at:?} is damaged: {d:?}"))?;
        let Record::Message(m) = record else {
            return Err(format!("spool record at {at:?} is not a message"));
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Ok(Rc::new(Stored {
            received_unix_ms: m.received_unix_ms,
            sender: text(m.sender),
            rcpts: m.rcpts.iter().map(|r| text(r.address)).collect(),
            facts: m.facts.iter().map(|(k, v)| (text(k), text(v))).collect(),
            body: m.body.to_vec(),
        }))
    }

    /// The writer failed and no new segment exists yet: appends are refused.
    pub fn broken(&self) -> bool {
        self.inner.borrow().broken
    }

    /// Queue depth figures for status (walks the queue: for status only).
    pub fn depth(&self) -> Depth {
        let inner = self.inner.borrow();
        let q = &inner.queue;
        let mut d = Depth {
            messages: q.len() as u64,
            syncs: inner.syncs,
            broken: inner.broken,
            ..Depth::default()
        };
        for e in q.entries() {
            match e.phase {
                mb_engine::spool::Phase::Received => d.unscanned += 1,
                mb_engine::spool::Phase::Scanned => d.active += 1,
                mb_engine::spool::Phase::Deferred => d.deferred += 1,
                mb_engine::spool::Phase::Quarantined => d.quarantined += 1,
            }
        }
        d.segments = q.segments().count() as u64;
        d
    }

    /// Resolves once every record appended so far is durable (`false`: the
    /// sync failed).
    pub async fn synced(&self) -> bool {
        let wait = {
            let mut inner = self.inner.borrow_mut();
            match inner.commit.appended_seq() {
                Some(seq) if !inner.commit.is_durable(seq) => {
                    let slot = Rc::new(AckSlot::default());
                    inner.acks.push(seq, Rc::clone(&slot));
                    Some(AckWait(slot))
                }
                _ => None,
            }
        };
        self.wake_committer.notify();
        match wait {
            Some(w) => w.await,
            None => true,
        }
    }

    /// One compaction (`docs/SPOOL.md`, "Compaction"): segments other than
    /// the active one whose records are mostly dead are deleted, after the
    /// live messages in them were rewritten as snapshots and the terminal
    /// evidence still needed as `Deleted` records, and all of that synced.
    /// Returns the number of segments deleted.
    pub async fn compact(&self, policy: &CompactionPolicy) -> Result<usize, String> {
        let victims = {
            let inner = self.inner.borrow();
            plan_compaction(&inner.queue, inner.writer.id(), policy).victims
        };
        if victims.is_empty() {
            return Ok(0);
        }
        // Copy forward until nothing in the victims is needed; records
        // appended meanwhile go to the active segment, so this converges
        // (a message can only move out of the victims).
        for _round in 0..4 {
            let (live, tombstones) =
                self.with_queue(|q| (q.live_in(&victims), q.tombstones_in(&victims)));
            if live.is_empty() && tombstones.is_empty() {
                break;
            }
            for id in live {
                self.snapshot(id).await?;
            }
            for id in tombstones {
                self.append(id, &Record::Deleted, false)
                    .map_err(|e| e.to_string())?;
            }
            if !self.synced().await {
                return Err("the sync of the copies failed".into());
            }
        }
        let clear = self
            .with_queue(|q| q.live_in(&victims).is_empty() && q.tombstones_in(&victims).is_empty());
        if !clear {
            return Ok(0);
        }
        spool::delete_segments(&self.dir, victims.iter().copied())
            .await
            .map_err(|e| format!("cannot delete spool segments: {e}"))?;
        self.inner.borrow_mut().queue.segments_deleted(&victims);
        Ok(victims.len())
    }

    /// Rewrites live message `id` as a snapshot record in the active
    /// segment (its base record with the current state folded in).
    async fn snapshot(&self, id: MessageId) -> Result<(), String> {
        let Some(at) = self.entry(id).map(|e| e.base) else {
            return Ok(());
        };
        let bytes = spool::read_record(&self.dir, at)
            .await
            .map_err(|e| format!("cannot read the spool record at {at:?}: {e}"))?;
        let (_, record) = decode_record(&bytes)
            .map_err(|d| format!("spool record at {at:?} is damaged: {d:?}"))?;
        let Record::Message(base) = record else {
            return Err(format!("spool record at {at:?} is not a message"));
        };
        // The state as of now (no await between reading it and appending).
        let Some(e) = self.entry(id) else {
            return Ok(());
        };
        if e.base != at {
            // Rewritten meanwhile (a concurrent compaction): nothing to do.
            return Ok(());
        }
        let mut m = base;
        m.phase = e.phase;
        m.attempts = e.attempts;
        m.next_try_unix_ms = e.next_try_unix_ms;
        m.scan = e
            .scan
            .as_ref()
            .map(|(action, score_milli, symbols)| ScanSummary {
                action: *action,
                score_milli: *score_milli,
                symbols,
            });
        for (r, state) in m.rcpts.iter_mut().zip(&e.rcpts) {
            r.state = *state;
        }
        self.append(id, &Record::Message(m), false)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// The compaction task: every [`COMPACT_INTERVAL`] (and once at start,
    /// which frees the segments of earlier runs whose mail was delivered).
    pub async fn compactor(self: Rc<Self>) {
        let policy = CompactionPolicy::default();
        loop {
            if self.stopping.get() {
                return;
            }
            match self.compact(&policy).await {
                Ok(0) => {}
                Ok(n) => log::info!(
                    "Spool on shard {}: {n} segment(s) compacted away.",
                    self.shard
                ),
                Err(e) => log::warn!("Spool compaction on shard {} failed: {e}", self.shard),
            }
            glommio::timer::sleep(COMPACT_INTERVAL).await;
        }
    }

    /// Asks the committer to flush what is pending and return.
    pub fn stop(&self) {
        self.stopping.set(true);
        self.wake_committer.notify();
    }

    /// The committer task: syncs by the group-commit policy, releases acks,
    /// rolls to a new segment when the active one is full or broken.
    pub async fn committer(self: Rc<Self>) {
        loop {
            let decision = {
                let inner = self.inner.borrow();
                if inner.broken {
                    None
                } else {
                    Some(inner.commit.decide(&self.policy, self.now()))
                }
            };
            match decision {
                None => {
                    glommio::timer::sleep(BROKEN_RETRY).await;
                    self.roll(true).await;
                }
                Some(SyncDecision::Now) => {
                    self.sync_once().await;
                    let full = self.inner.borrow().writer.len() >= SEGMENT_BYTES_DEFAULT;
                    if full {
                        self.roll(false).await;
                    }
                }
                Some(SyncDecision::Wait(d)) => {
                    futures_lite::future::or(glommio::timer::sleep(d), self.wake_committer.wait())
                        .await;
                }
                Some(SyncDecision::Idle) => {
                    if self.stopping.get() {
                        return;
                    }
                    self.wake_committer.wait().await;
                }
            }
        }
    }

    /// One sync of everything appended so far; acks released or failed.
    async fn sync_once(&self) {
        let (ticket, pending) = {
            let mut inner = self.inner.borrow_mut();
            let ticket = inner.commit.begin_sync();
            (ticket, inner.writer.prepare_commit())
        };
        let result = match pending {
            Some(p) => p.run().await.map(Some),
            None => Ok(None),
        };
        let mut released = Vec::new();
        let ok = {
            let mut inner = self.inner.borrow_mut();
            match result {
                Ok(done) => {
                    if let Some(done) = done {
                        inner.writer.finish_commit(done);
                    }
                    if let Some(t) = ticket {
                        inner.commit.end_sync(t);
                    }
                    inner.syncs += 1;
                    let synced = inner.commit.synced_seq();
                    inner.acks.release(synced, &mut released);
                    true
                }
                Err(e) => {
                    log::error!(
                        "Spool sync failed on shard {} (segment {:?}): {e}; answering 451 to \
                         waiting sessions and starting a new segment.",
                        self.shard,
                        inner.writer.id()
                    );
                    let synced = inner.commit.synced_seq();
                    inner.commit = CommitState::new(synced);
                    inner.acks.fail_all(&mut released);
                    inner.broken = true;
                    false
                }
            }
        };
        for slot in released {
            slot.complete(ok);
        }
    }

    /// Starts the next segment. A healthy writer is synced to its end first,
    /// so unsynced records only ever sit at the end of the log; a broken one
    /// is abandoned (its unsynced records were answered 451).
    async fn roll(&self, broken: bool) {
        let next = {
            let inner = self.inner.borrow();
            mb_engine::spool::SegmentId(inner.writer.id().0 + 1)
        };
        let created = SegmentWriter::create(&self.dir, next, self.rng.next(), unix_ms()).await;
        let new = match created {
            Ok(w) => w,
            Err(e) => {
                log::error!(
                    "Spool on shard {}: cannot create segment {next:?}: {e}; new messages get \
                     451 until it works.",
                    self.shard
                );
                self.inner.borrow_mut().broken = true;
                return;
            }
        };
        if !broken {
            while !self.inner.borrow().writer.is_synced() && !self.inner.borrow().broken {
                self.sync_once().await;
            }
        }
        let old = {
            let mut inner = self.inner.borrow_mut();
            inner.queue.add_segment(new.id());
            inner.broken = false;
            std::mem::replace(&mut inner.writer, new)
        };
        // Synced (or abandoned): closing only releases the file.
        if !broken {
            glommio::spawn_local(async move {
                if let Err(e) = old.close().await {
                    log::warn!("closing a full spool segment: {e}");
                }
            })
            .detach();
        }
    }
}

/// Queue depth of one shard.
#[derive(Debug, Clone, Copy, Default)]
pub struct Depth {
    /// Live messages.
    pub messages: u64,
    /// Waiting for the scan.
    pub unscanned: u64,
    /// Scanned, waiting for their first attempt (or in flight).
    pub active: u64,
    /// Waiting for a retry.
    pub deferred: u64,
    /// Held.
    pub quarantined: u64,
    /// Syncs so far.
    pub syncs: u64,
    /// Segment files.
    pub segments: u64,
    /// The writer failed.
    pub broken: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_time_shard_counter() {
        let id = message_id(1_700_000_000_000, 3, 0x1234_5678_9ABC_DEF0);
        assert_eq!(shard_of(id), 3);
        assert_eq!((id.0 >> 64) as u64, 1_700_000_000_000);
        let text = queue_id(id);
        assert_eq!(text.len(), 27);
        assert_eq!(parse_queue_id(&text), Some(id));
        assert_eq!(parse_queue_id(&text.to_ascii_lowercase()), Some(id));
        assert_eq!(parse_queue_id("xyz"), None);
        assert_eq!(parse_queue_id(""), None);
    }

    fn message<'a>(body: &'a [u8], rcpt: &'a [u8]) -> Record<'a> {
        Record::Message(mb_engine::spool::MessageRecord {
            received_unix_ms: 1_000,
            phase: mb_engine::spool::Phase::Received,
            attempts: 0,
            next_try_unix_ms: 0,
            scan: None,
            sender: b"a@example.org",
            rcpts: vec![mb_engine::spool::Rcpt {
                address: rcpt,
                state: mb_engine::spool::RcptState::Pending,
            }],
            facts: vec![],
            body,
        })
    }

    /// Messages received, scanned, some delivered; the segment rolls; a
    /// compaction deletes the old segment after rewriting the live messages,
    /// and a restart recovers exactly the live ones (nothing delivered comes
    /// back).
    #[test]
    fn compaction_keeps_the_live_and_forgets_the_delivered() {
        let dir = std::env::temp_dir().join(format!("mb-store-compact-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d = dir.clone();
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let opened = Store::open(&d, 0, GroupCommit::default()).await.unwrap();
                let store = opened.store;
                let committer = glommio::spawn_local(Rc::clone(&store).committer());
                let scanned = Record::Scanned(ScanSummary {
                    action: mb_engine::spool::ScanAction::Pass,
                    score_milli: 0,
                    symbols: b"",
                });
                let mut ids = Vec::new();
                for i in 0..20u8 {
                    let id = store.new_id();
                    let body = vec![b'a' + i % 26; 3000];
                    let wait = store.append(id, &message(&body, b"b@example.net"), true);
                    assert!(wait.unwrap().unwrap().await);
                    store.append(id, &scanned, false).unwrap();
                    ids.push(id);
                }
                // Even ones delivered, odd ones deferred.
                for (i, id) in ids.iter().enumerate() {
                    let r = if i % 2 == 0 {
                        Record::Delivered { rcpts: vec![0] }
                    } else {
                        Record::Deferred {
                            next_try_unix_ms: 5,
                            attempts: 1,
                            reason: b"451 later",
                        }
                    };
                    store.append(*id, &r, false).unwrap();
                }
                assert!(store.synced().await);
                let first = store.inner.borrow().writer.id();
                store.roll(false).await;
                assert_ne!(store.inner.borrow().writer.id(), first);
                let policy = CompactionPolicy {
                    live_percent_max: 100,
                    ..CompactionPolicy::default()
                };
                assert_eq!(store.compact(&policy).await, Ok(1));
                assert!(!crate::spool::segment_path(&d, first).exists());
                assert_eq!(store.depth().messages, 10);
                store.stop();
                committer.await;
                let again = Store::open(&d, 0, GroupCommit::default()).await.unwrap();
                assert!(again.report.corruptions.is_empty(), "{:?}", again.report);
                let live: Vec<MessageId> = again
                    .store
                    .with_queue(|q| q.entries().map(|e| e.id).collect());
                let odd: Vec<MessageId> = ids.iter().skip(1).step_by(2).copied().collect();
                assert_eq!(live, odd, "only the deferred ones come back");
                let e = again.store.entry(odd[0]).unwrap();
                assert_eq!(
                    (e.phase, e.attempts),
                    (mb_engine::spool::Phase::Deferred, 1)
                );
                let body = again.store.load(odd[0]).await.unwrap();
                assert_eq!(body.body, vec![b'b'; 3000]);
            })
            .unwrap()
            .join()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rng_values_differ() {
        let r = Rng::new(1);
        let (a, b) = (r.next(), r.next());
        assert_ne!(a, b);
    }
}
