//! The in-memory queue of one shard, rebuilt from its records: the live
//! messages with their state (not their bytes: those stay on disk at
//! [`Entry::base`]), the delivery order, and the byte accounting that
//! compaction needs.
//!
//! The same [`Queue::apply`] runs on the write path (after each append) and
//! during recovery (for each record read back), so the live queue and a
//! recovered queue are equal once everything is synced (the model test checks
//! this).
//!
//! Transitions (a record for a message in another phase is refused with
//! [`Reject`]; recovery counts refusals, it never panics on disk contents):
//!
//! ```text
//!   Message ──▶ Received ──Scanned──▶ Scanned ──Deferred──▶ Deferred ─┐
//!                  │                    │  │                ▲   │      │
//!                  │                    │  └─Quarantined─▶ Quarantined ┘ (release = Deferred)
//!                  │                    └──Delivered/Bounced (some rcpts)── stays
//!   any live ──Bounced(all left)/Delivered(all left)/Deleted──▶ dead (terminal)
//! ```
//!
//! Terminal messages leave the queue. The records that made them terminal
//! (every record since the newest `Message` record: `Delivered` for some
//! recipients and `Bounced` for the others together are terminal) must
//! outlive every `Message` record of the same id, otherwise a deleted segment
//! could resurrect a delivered message. The queue keeps such [`Tombstone`]s
//! until the segments holding `Message` records of the id are gone, and
//! compaction replaces evidence it would delete with one `Deleted` record.

use std::collections::{BTreeMap, BTreeSet};

use super::record::{MessageRecord, Phase, RcptState, Record, ScanAction, ScanSummary};
use super::segment::{Corruption, Item, Location, SegmentReader};
use super::{MessageId, SegmentId, SEGMENT_HEADER_BYTES};

/// The state of one live message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The message.
    pub id: MessageId,
    /// Its newest `Message` record (the original or a compaction snapshot):
    /// where the envelope and the body are read from.
    pub base: Location,
    /// Sequence number of `base`.
    pub base_seq: u64,
    /// When it was received (unix ms).
    pub received_unix_ms: u64,
    /// Current phase.
    pub phase: Phase,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Next attempt (unix ms) when deferred.
    pub next_try_unix_ms: u64,
    /// The scan summary once scanned: action, score, symbols.
    pub scan: Option<(ScanAction, i32, Vec<u8>)>,
    /// One state per recipient, in envelope order.
    pub rcpts: Vec<RcptState>,
    /// Why the last attempt was deferred (the relay's reply or the
    /// connection error; a record holds at most
    /// [`super::REASON_BYTES_MAX`] bytes), until compaction folds the
    /// `Deferred` record into a snapshot (or the next attempt replaces it).
    pub last_reason: Vec<u8>,
    /// Record bytes of this message per segment since `base` (live bytes).
    live: BTreeMap<SegmentId, u64>,
    /// Segments holding any `Message` record of this id.
    bases: BTreeSet<SegmentId>,
}

impl Entry {
    /// When it is due for delivery (unix ms), or None if it is not waiting
    /// for delivery (unscanned or quarantined).
    pub fn due_unix_ms(&self) -> Option<u64> {
        match self.phase {
            Phase::Scanned => Some(self.received_unix_ms),
            Phase::Deferred => Some(self.next_try_unix_ms),
            Phase::Received | Phase::Quarantined => None,
        }
    }

    fn has_pending(&self) -> bool {
        self.rcpts.contains(&RcptState::Pending)
    }
}

/// A terminal message whose terminal evidence must be kept.
///
/// "Terminal" may follow from several records (`Delivered` for some
/// recipients, then `Bounced` for the rest), so the evidence is every record
/// since the newest `Message` record; compaction replaces it with one
/// self-contained `Deleted` record when it deletes a segment holding any of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    /// Where the terminal record is.
    pub at: Location,
    /// Segments still holding `Message` records of the id: while any is left,
    /// the evidence must be too.
    bases: BTreeSet<SegmentId>,
    /// Bytes of the evidence per segment.
    evidence: BTreeMap<SegmentId, u64>,
}

/// Why a record was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// A state change for a message the queue does not hold (its `Message`
    /// record was compacted away, damaged, or never durable).
    #[error("record for unknown message")]
    UnknownMessage,
    /// A record for a message that already reached a terminal state.
    #[error("record for a message in a terminal state")]
    Terminal,
    /// The record's kind does not apply in the message's phase.
    #[error("record kind {kind} does not apply in phase {from:?}")]
    BadTransition {
        /// Current phase.
        from: Phase,
        /// The record kind.
        kind: u8,
    },
    /// A recipient index out of range or not pending.
    #[error("recipient {index} is out of range or not pending")]
    BadRecipient {
        /// The index.
        index: u32,
    },
}

/// Byte accounting of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentUsage {
    /// Bytes written (header, records, damage), up to the end of data.
    pub total: u64,
    /// Bytes of records still needed.
    pub live: u64,
}

/// The queue. See the module doc.
///
/// Equality compares the state (messages, tombstones, order, segments), not
/// `last_seq`: the live queue remembers sequence numbers of records that
/// compaction has since deleted, a recovered one cannot (harmless: new
/// records still get numbers above every record on disk).
#[derive(Debug, Clone, Default)]
pub struct Queue {
    live: BTreeMap<MessageId, Entry>,
    dead: BTreeMap<MessageId, Tombstone>,
    /// Delivery order: (due unix ms, id).
    due: BTreeSet<(u64, MessageId)>,
    /// End of data per segment.
    segments: BTreeMap<SegmentId, u64>,
    last_seq: Option<u64>,
}

impl PartialEq for Queue {
    fn eq(&self, other: &Self) -> bool {
        self.live == other.live
            && self.dead == other.dead
            && self.due == other.due
            && self.segments == other.segments
    }
}

impl Eq for Queue {}

/// What recovery found besides the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Every damaged stretch, in segment and offset order.
    pub corruptions: Vec<Corruption>,
    /// Valid records that were not applied, with the reason. `UnknownMessage`
    /// is normal after compaction (state changes older than a snapshot whose
    /// original segment is gone); others point at damage.
    pub rejected: Vec<(Location, Reject)>,
    /// Records whose sequence number did not increase (damage, or two
    /// writers).
    pub seq_regressions: u64,
    /// Valid records read.
    pub records: u64,
}

/// A recovered queue and its report.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// The rebuilt queue.
    pub queue: Queue,
    /// What was found.
    pub report: RecoveryReport,
}

/// Rebuilds a shard's queue from its segments, given in ascending id order
/// (the order they were written). Never fails: damage is reported and skipped.
pub fn recover<'a, I>(segments: I) -> Recovery
where
    I: IntoIterator<Item = (SegmentId, &'a [u8])>,
{
    let mut r = Recoverer::new();
    for (segment, bytes) in segments {
        r.segment(segment, bytes);
    }
    r.finish()
}

/// Recovery one segment at a time, so the runtime holds one segment's bytes
/// in memory at once (the queue keeps no borrow of them).
#[derive(Debug, Default)]
pub struct Recoverer {
    queue: Queue,
    report: RecoveryReport,
}

impl Recoverer {
    /// Nothing read yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the next segment (ascending id order).
    pub fn segment(&mut self, segment: SegmentId, bytes: &[u8]) {
        let (queue, report) = (&mut self.queue, &mut self.report);
        queue.add_segment(segment);
        for item in SegmentReader::new(segment, bytes) {
            match item {
                Item::Corruption(c) => {
                    queue.note_end(segment, c.offset + c.len);
                    report.corruptions.push(c);
                }
                Item::Record(d) => {
                    report.records += 1;
                    if queue.last_seq.is_some_and(|s| d.seq <= s) {
                        report.seq_regressions += 1;
                    }
                    if let Err(r) = queue.apply(d.at, d.seq, d.id, &d.record) {
                        report.rejected.push((d.at, r));
                    }
                }
            }
        }
    }

    /// The queue and the report.
    pub fn finish(self) -> Recovery {
        Recovery {
            queue: self.queue,
            report: self.report,
        }
    }
}

impl Queue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a segment (a new active segment, or one found at recovery).
    /// Its header bytes count as written, never as live.
    pub fn add_segment(&mut self, segment: SegmentId) {
        self.segments
            .entry(segment)
            .or_insert(SEGMENT_HEADER_BYTES as u64);
    }

    fn note_end(&mut self, segment: SegmentId, end: u64) {
        let e = self
            .segments
            .entry(segment)
            .or_insert(SEGMENT_HEADER_BYTES as u64);
        *e = (*e).max(end);
    }

    /// Highest sequence number seen (the next record gets a higher one).
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// Highest segment id known (the next segment gets a higher one).
    pub fn last_segment(&self) -> Option<SegmentId> {
        self.segments.keys().next_back().copied()
    }

    /// Known segments.
    pub fn segments(&self) -> impl Iterator<Item = SegmentId> + '_ {
        self.segments.keys().copied()
    }

    /// A live message.
    pub fn get(&self, id: MessageId) -> Option<&Entry> {
        self.live.get(&id)
    }

    /// Every live message, by id.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.live.values()
    }

    /// Number of live messages.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// No live message.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Kept tombstones.
    pub fn tombstones(&self) -> impl Iterator<Item = (MessageId, &Tombstone)> {
        self.dead.iter().map(|(k, v)| (*k, v))
    }

    /// Messages due for delivery at `now_unix_ms`, earliest first (ties by id).
    pub fn due(&self, now_unix_ms: u64) -> impl Iterator<Item = MessageId> + '_ {
        self.due
            .range(..=(now_unix_ms, MessageId(u128::MAX)))
            .map(|(_, id)| *id)
    }

    /// When the next message falls due (for the delivery timer).
    pub fn next_due_unix_ms(&self) -> Option<u64> {
        self.due.first().map(|(t, _)| *t)
    }

    /// Quarantined messages, by id.
    pub fn quarantined(&self) -> impl Iterator<Item = MessageId> + '_ {
        self.live
            .values()
            .filter(|e| e.phase == Phase::Quarantined)
            .map(|e| e.id)
    }

    /// Messages received but not scanned (recovery hands them to the filter).
    pub fn unscanned(&self) -> impl Iterator<Item = MessageId> + '_ {
        self.live
            .values()
            .filter(|e| e.phase == Phase::Received)
            .map(|e| e.id)
    }

    /// Whether `record` would apply to `id` (the write path asks before it
    /// appends; same rules as [`Queue::apply`]).
    pub fn check(&self, id: MessageId, record: &Record<'_>) -> Result<(), Reject> {
        if let Record::Message(_) = record {
            return if self.dead.contains_key(&id) {
                Err(Reject::Terminal)
            } else {
                Ok(())
            };
        }
        let Some(e) = self.live.get(&id) else {
            return match (record, self.dead.contains_key(&id)) {
                (Record::Deleted, _) => Ok(()),
                (_, true) => Err(Reject::Terminal),
                (_, false) => Err(Reject::UnknownMessage),
            };
        };
        let bad = Err(Reject::BadTransition {
            from: e.phase,
            kind: record.kind(),
        });
        let rcpts_ok = |rcpts: &[u32]| -> Result<(), Reject> {
            let mut seen = BTreeSet::new();
            for &i in rcpts {
                let pending = e.rcpts.get(i as usize) == Some(&RcptState::Pending);
                if !pending || !seen.insert(i) {
                    return Err(Reject::BadRecipient { index: i });
                }
            }
            Ok(())
        };
        match (record, e.phase) {
            (Record::Scanned(_), Phase::Received) => Ok(()),
            (Record::Deferred { .. }, Phase::Scanned | Phase::Deferred | Phase::Quarantined) => {
                Ok(())
            }
            (Record::Delivered { rcpts }, Phase::Scanned | Phase::Deferred) => rcpts_ok(rcpts),
            (Record::Bounced { rcpts, .. }, _) => rcpts_ok(rcpts),
            (Record::Quarantined { .. }, Phase::Scanned | Phase::Deferred) => Ok(()),
            (Record::Deleted, _) => Ok(()),
            _ => bad,
        }
    }

    /// Applies one record (just appended, or read back at recovery).
    pub fn apply(
        &mut self,
        at: Location,
        seq: u64,
        id: MessageId,
        record: &Record<'_>,
    ) -> Result<(), Reject> {
        self.note_end(at.segment, at.end());
        self.last_seq = Some(self.last_seq.map_or(seq, |s| s.max(seq)));
        self.check(id, record)?;
        if let Record::Message(m) = record {
            self.apply_message(at, seq, id, m);
            return Ok(());
        }
        if !self.live.contains_key(&id) {
            // A Deleted record for a dead or unknown message: a tombstone
            // copied forward by compaction (or an old one).
            if let Some(t) = self.dead.get_mut(&id) {
                t.at = at;
                t.evidence = BTreeMap::from([(at.segment, u64::from(at.len))]);
            }
            return Ok(());
        }
        self.unindex(id);
        let Some(e) = self.live.get_mut(&id) else {
            return Err(Reject::UnknownMessage);
        };
        *e.live.entry(at.segment).or_insert(0) += u64::from(at.len);
        let mut terminal = false;
        match record {
            Record::Message(_) => {}
            Record::Scanned(s) => {
                e.phase = Phase::Scanned;
                e.scan = Some((s.action, s.score_milli, s.symbols.to_vec()));
            }
            Record::Deferred {
                next_try_unix_ms,
                attempts,
                reason,
            } => {
                e.phase = Phase::Deferred;
                e.next_try_unix_ms = *next_try_unix_ms;
                e.attempts = *attempts;
                if !reason.is_empty() {
                    e.last_reason = reason.to_vec();
                }
            }
            Record::Delivered { rcpts } => {
                for &i in rcpts {
                    e.rcpts[i as usize] = RcptState::Delivered;
                }
                terminal = !e.has_pending();
            }
            Record::Bounced { rcpts, .. } => {
                for &i in rcpts {
                    e.rcpts[i as usize] = RcptState::Failed;
                }
                terminal = !e.has_pending();
            }
            Record::Quarantined { .. } => e.phase = Phase::Quarantined,
            Record::Deleted => terminal = true,
        }
        if terminal {
            if let Some(e) = self.live.remove(&id) {
                // `bases` holds at least the base record's segment.
                debug_assert!(!e.bases.is_empty());
                // A `Deleted` record is terminal on its own; `Delivered` and
                // `Bounced` are terminal together with the records before.
                // (Canonical, so a recovered queue equals the live one.)
                let evidence = if matches!(record, Record::Deleted) {
                    BTreeMap::from([(at.segment, u64::from(at.len))])
                } else {
                    e.live
                };
                self.dead.insert(
                    id,
                    Tombstone {
                        at,
                        bases: e.bases,
                        evidence,
                    },
                );
            }
        } else {
            self.index(id);
        }
        Ok(())
    }

    fn apply_message(&mut self, at: Location, seq: u64, id: MessageId, m: &MessageRecord<'_>) {
        self.unindex(id);
        let mut bases = self
            .live
            .remove(&id)
            .map(|old| old.bases)
            .unwrap_or_default();
        bases.insert(at.segment);
        let entry = Entry {
            id,
            base: at,
            base_seq: seq,
            received_unix_ms: m.received_unix_ms,
            phase: m.phase,
            attempts: m.attempts,
            next_try_unix_ms: m.next_try_unix_ms,
            scan: m
                .scan
                .as_ref()
                .map(|s| (s.action, s.score_milli, s.symbols.to_vec())),
            rcpts: m.rcpts.iter().map(|r| r.state).collect(),
            // not in the snapshot record: the live queue must equal what
            // recovery rebuilds, which no longer sees a compacted Deferred
            last_reason: Vec::new(),
            live: BTreeMap::from([(at.segment, u64::from(at.len))]),
            bases,
        };
        self.live.insert(id, entry);
        self.index(id);
    }

    fn unindex(&mut self, id: MessageId) {
        if let Some(t) = self.live.get(&id).and_then(Entry::due_unix_ms) {
            self.due.remove(&(t, id));
        }
    }

    fn index(&mut self, id: MessageId) {
        if let Some(t) = self.live.get(&id).and_then(Entry::due_unix_ms) {
            self.due.insert((t, id));
        }
    }

    /// Written and live bytes per known segment.
    pub fn usage(&self) -> BTreeMap<SegmentId, SegmentUsage> {
        let mut out: BTreeMap<SegmentId, SegmentUsage> = self
            .segments
            .iter()
            .map(|(s, total)| {
                (
                    *s,
                    SegmentUsage {
                        total: *total,
                        live: 0,
                    },
                )
            })
            .collect();
        for e in self.live.values() {
            for (s, n) in &e.live {
                out.entry(*s).or_default().live += n;
            }
        }
        for t in self.dead.values() {
            for (s, n) in &t.evidence {
                // Evidence guards against the Message records of the id in
                // other segments; beside its only base it guards nothing (the
                // two go together), so a segment of delivered messages is
                // all dead.
                if t.bases.iter().any(|b| b != s) {
                    out.entry(*s).or_default().live += n;
                }
            }
        }
        out
    }

    /// Live messages with live bytes in any of `segments` (compaction copies
    /// them forward as snapshots).
    pub fn live_in(&self, segments: &BTreeSet<SegmentId>) -> Vec<MessageId> {
        self.live
            .values()
            .filter(|e| e.live.keys().any(|s| segments.contains(s)))
            .map(|e| e.id)
            .collect()
    }

    /// Kept tombstones with evidence in one of `segments` and a Message
    /// record of the id outside them (compaction writes a `Deleted` record
    /// for each; a tombstone whose every base goes with `segments` is simply
    /// forgotten by [`Queue::segments_deleted`]).
    pub fn tombstones_in(&self, segments: &BTreeSet<SegmentId>) -> Vec<MessageId> {
        self.dead
            .iter()
            .filter(|(_, t)| {
                t.evidence.keys().any(|s| segments.contains(s))
                    && t.bases.iter().any(|b| !segments.contains(b))
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// The snapshot record compaction writes for live message `id`: the
    /// envelope and body of its base record (`base`, decoded from the bytes
    /// at [`Entry::base`]) with the current state folded in. None if `id` is
    /// not live.
    pub fn snapshot<'a>(&'a self, id: MessageId, base: &MessageRecord<'a>) -> Option<Record<'a>> {
        let e = self.live.get(&id)?;
        let mut m = base.clone();
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
        for (r, s) in m.rcpts.iter_mut().zip(&e.rcpts) {
            r.state = *s;
        }
        Some(Record::Message(m))
    }

    /// Forgets segments whose files were deleted (after compaction synced the
    /// records it copied forward).
    ///
    /// # Panics
    /// If a deleted segment still held live bytes or a kept tombstone: the
    /// runtime deleted it without executing the plan first (a bug).
    pub fn segments_deleted(&mut self, segments: &BTreeSet<SegmentId>) {
        for s in segments {
            self.segments.remove(s);
        }
        for e in self.live.values_mut() {
            for s in segments {
                let live = e.live.remove(s);
                assert!(
                    live.is_none(),
                    "spool segment {s:?} deleted while message {:?} had live records in it",
                    e.id
                );
                e.bases.remove(s);
            }
        }
        self.dead.retain(|id, t| {
            for s in segments {
                t.bases.remove(s);
            }
            if t.bases.is_empty() {
                // Nothing left to resurrect: the evidence is not needed.
                return false;
            }
            for s in segments {
                assert!(
                    !t.evidence.contains_key(s),
                    "spool segment {s:?} deleted with the terminal evidence of {id:?}"
                );
            }
            true
        });
    }
}
