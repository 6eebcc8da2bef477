//! Model-based test of the spool (Vector `vector-buffers` tests/model in
//! spirit): random operations (append, state changes, group commit by time,
//! sync, compaction, crashes that drop unsynced bytes and tear the last write,
//! bit flips in synced data, recovery) run against a simulated disk (one
//! `Vec<u8>` per segment with a synced length) through the engine's spool
//! API, and against a plain in-memory model of the messages.
//!
//! Invariants:
//! - every acknowledged message was durable when acked (ack only at or below
//!   the synced watermark);
//! - after a crash, every message with a synced version is recovered in its
//!   latest synced state or a later one that happened to reach the disk
//!   (nothing unacknowledged is required); terminal messages (delivered,
//!   bounced, deleted) are never resurrected, compaction or not;
//! - without bit flips, damage is only reported in the torn, never-synced
//!   tail, and the recovered queue equals the live queue;
//! - with bit flips, only the messages owning the flipped record may differ;
//! - recovery is idempotent (the same disk gives the same queue and report);
//! - the live queue agrees with the model after every operation (phases,
//!   recipient states, attempts, delivery order).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mb_engine::spool::{
    decode_record, encode_record, encode_segment_header, plan_compaction, recover, AckGate,
    CommitState, CompactionPolicy, Corruption, GroupCommit, Location, MessageId, MessageRecord,
    Phase, Queue, Rcpt, RcptState, Record, ScanAction, ScanSummary, SegmentHeader, SegmentId,
    SyncDecision,
};
use proptest::prelude::*;

// ---------------------------------------------------------------- the disk

#[derive(Debug, Clone, Default)]
struct SimFile {
    data: Vec<u8>,
    synced: usize,
    /// Lowest offset a crash tore (damage is expected from there on).
    torn_from: Option<usize>,
}

#[derive(Debug, Clone, Default)]
struct Disk {
    files: BTreeMap<u64, SimFile>,
}

impl Disk {
    fn sync_all(&mut self) {
        for f in self.files.values_mut() {
            f.synced = f.data.len();
        }
    }
    fn segments(&self) -> Vec<(SegmentId, &[u8])> {
        self.files
            .iter()
            .map(|(id, f)| (SegmentId(*id), f.data.as_slice()))
            .collect()
    }
}

// ---------------------------------------------------------------- the model

#[derive(Debug, Clone, PartialEq, Eq)]
enum MPhase {
    Live(Phase),
    Gone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MState {
    phase: MPhase,
    rcpts: Vec<RcptState>,
    attempts: u32,
    next_try: u64,
}

#[derive(Debug, Clone)]
struct MMsg {
    received: u64,
    /// (seq of the record that made this version, state), oldest first.
    versions: Vec<(u64, MState)>,
    tainted: bool,
}

impl MMsg {
    fn now(&self) -> &MState {
        &self.versions[self.versions.len() - 1].1
    }
}

fn state_of(q: &Queue, id: MessageId) -> MState {
    match q.get(id) {
        None => MState {
            phase: MPhase::Gone,
            rcpts: vec![],
            attempts: 0,
            next_try: 0,
        },
        Some(e) => MState {
            phase: MPhase::Live(e.phase),
            rcpts: e.rcpts.clone(),
            attempts: e.attempts,
            next_try: e.next_try_unix_ms,
        },
    }
}

/// Gone states compare equal whatever their other fields.
fn same(a: &MState, b: &MState) -> bool {
    match (&a.phase, &b.phase) {
        (MPhase::Gone, MPhase::Gone) => true,
        _ => a == b,
    }
}

// ---------------------------------------------------------------- operations

#[derive(Debug, Clone)]
enum Op {
    Append { rcpts: u8, body: u16 },
    Scan { pick: u8, quarantine: bool },
    Defer { pick: u8, delay: u16 },
    Deliver { pick: u8, mask: u8 },
    Bounce { pick: u8, mask: u8 },
    Quarantine { pick: u8 },
    Delete { pick: u8 },
    Tick { ms: u8 },
    Sync,
    Compact { crash_at: u8 },
    Crash { keep: u16, garbage: u8 },
    Flip { file: u8, pos: u32, bit: u8 },
    Recover,
}

fn op(flips: bool) -> impl Strategy<Value = Op> {
    // Without flips the Flip slot becomes a Sync (a union weight cannot be 0).
    let flip = (any::<u8>(), any::<u32>(), 0u8..8).prop_map(move |(file, pos, bit)| {
        if flips {
            Op::Flip { file, pos, bit }
        } else {
            Op::Sync
        }
    });
    prop_oneof![
        8 => (1u8..=3, 0u16..700).prop_map(|(rcpts, body)| Op::Append { rcpts, body }),
        4 => (any::<u8>(), any::<bool>()).prop_map(|(pick, quarantine)| Op::Scan { pick, quarantine }),
        3 => (any::<u8>(), 0u16..1000).prop_map(|(pick, delay)| Op::Defer { pick, delay }),
        4 => (any::<u8>(), any::<u8>()).prop_map(|(pick, mask)| Op::Deliver { pick, mask }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(pick, mask)| Op::Bounce { pick, mask }),
        1 => any::<u8>().prop_map(|pick| Op::Quarantine { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Delete { pick }),
        3 => (0u8..30).prop_map(|ms| Op::Tick { ms }),
        2 => Just(Op::Sync),
        2 => (0u8..4).prop_map(|crash_at| Op::Compact { crash_at }),
        2 => (any::<u16>(), 0u8..12).prop_map(|(keep, garbage)| Op::Crash { keep, garbage }),
        2 => flip,
        1 => Just(Op::Recover),
    ]
}

// ---------------------------------------------------------------- the harness

struct Harness {
    disk: Disk,
    queue: Queue,
    commit: CommitState,
    acks: AckGate<MessageId>,
    acked: BTreeSet<MessageId>,
    policy: GroupCommit,
    segment_target: usize,
    active: SegmentId,
    nonce: u64,
    next_seq: u64,
    next_id: u128,
    now: Duration,
    model: BTreeMap<MessageId, MMsg>,
    /// Every record on disk: (segment, offset) -> (padded len, header +
    /// payload len, id).
    extents: BTreeMap<(u64, u64), (u32, u32, MessageId)>,
    /// Bits flipped in synced data and not flipped back: (segment, offset)
    /// -> xor mask. Recovery must report each one inside a record.
    flips: BTreeMap<(u64, usize), u8>,
    flipped: bool,
}

const EPOCH_MS: u64 = 1_700_000_000_000;

impl Harness {
    fn new(policy: GroupCommit, segment_target: usize) -> Self {
        let mut h = Self {
            disk: Disk::default(),
            queue: Queue::new(),
            commit: CommitState::new(None),
            acks: AckGate::new(),
            acked: BTreeSet::new(),
            policy,
            segment_target,
            active: SegmentId(0),
            nonce: 0,
            next_seq: 1,
            next_id: 1,
            now: Duration::ZERO,
            model: BTreeMap::new(),
            extents: BTreeMap::new(),
            flips: BTreeMap::new(),
            flipped: false,
        };
        h.open_segment(SegmentId(1));
        h
    }

    fn unix_ms(&self) -> u64 {
        EPOCH_MS + self.now.as_millis() as u64
    }

    fn open_segment(&mut self, id: SegmentId) {
        self.active = id;
        self.nonce = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(id.0 + 1);
        let mut data = Vec::new();
        encode_segment_header(
            &mut data,
            &SegmentHeader {
                id,
                nonce: self.nonce,
                created_unix_ms: self.unix_ms(),
            },
        );
        self.disk.files.insert(
            id.0,
            SimFile {
                data,
                ..SimFile::default()
            },
        );
        self.queue.add_segment(id);
    }

    /// Appends one record through the engine API and applies it to the live
    /// queue; returns its sequence number.
    fn append(&mut self, id: MessageId, record: &Record<'_>) -> u64 {
        assert_eq!(self.queue.check(id, record), Ok(()), "{id:?} {record:?}");
        if self.disk.files[&self.active.0].data.len() >= self.segment_target {
            // A record never spans segments, and the old segment is synced
            // before the new one gets a record: the log then survives a crash
            // as a prefix across files (the simulated crash keeps a prefix of
            // each file's unsynced bytes).
            self.sync();
            let next = SegmentId(self.active.0 + 1);
            self.open_segment(next);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let file = self.disk.files.get_mut(&self.active.0).expect("active");
        let offset = file.data.len();
        let n = encode_record(&mut file.data, seq, self.nonce, id, record).expect("encodes");
        let at = Location {
            segment: self.active,
            offset: offset as u64,
            len: n as u32,
        };
        let unpadded = {
            let b = &self.disk.files[&self.active.0].data[offset + 8..offset + 12];
            48 + u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        };
        self.extents
            .insert((at.segment.0, at.offset), (at.len, unpadded, id));
        self.queue.apply(at, seq, id, record).expect("applies");
        self.commit.appended(seq, n as u64, self.now);
        seq
    }

    fn maybe_sync(&mut self) {
        if self.commit.decide(&self.policy, self.now) == SyncDecision::Now {
            self.sync();
        }
    }

    fn sync(&mut self) {
        if let Some(t) = self.commit.begin_sync() {
            self.disk.sync_all();
            self.commit.end_sync(t);
        }
        let mut out = Vec::new();
        self.acks.release(self.commit.synced_seq(), &mut out);
        for id in out {
            // Acknowledged only if durable: its first version is synced.
            let m = &self.model[&id];
            assert!(
                self.commit.is_durable(m.versions[0].0),
                "ack of {id:?} before its record is durable"
            );
            self.acked.insert(id);
        }
    }

    fn live_picks(&self) -> Vec<MessageId> {
        self.model
            .iter()
            .filter(|(_, m)| !m.tainted && m.now().phase != MPhase::Gone)
            .map(|(id, _)| *id)
            .collect()
    }

    fn pick(&self, pick: u8) -> Option<(MessageId, MState)> {
        let ids = self.live_picks();
        if ids.is_empty() {
            return None;
        }
        let id = ids[pick as usize % ids.len()];
        Some((id, self.model[&id].now().clone()))
    }

    fn change(&mut self, id: MessageId, record: &Record<'_>, next: MState) {
        let seq = self.append(id, record);
        let m = self.model.get_mut(&id).expect("model");
        m.versions.push((seq, next));
        self.maybe_sync();
    }

    fn pending_by_mask(s: &MState, mask: u8) -> Vec<u32> {
        let pending: Vec<u32> = (0..s.rcpts.len() as u32)
            .filter(|i| s.rcpts[*i as usize] == RcptState::Pending)
            .collect();
        let chosen: Vec<u32> = pending
            .iter()
            .copied()
            .filter(|i| mask & (1 << i) != 0)
            .collect();
        if chosen.is_empty() {
            pending.into_iter().take(1).collect()
        } else {
            chosen
        }
    }

    fn run(&mut self, op: &Op) {
        match *op {
            Op::Append { rcpts, body } => {
                let id = MessageId(self.next_id);
                self.next_id += 1;
                let addrs: Vec<Vec<u8>> = (0..rcpts)
                    .map(|i| format!("r{i}@m{}.example", id.0).into_bytes())
                    .collect();
                let body: Vec<u8> = (0..body).map(|i| (i as u8) ^ (id.0 as u8)).collect();
                let received = self.unix_ms();
                let rec = Record::Message(MessageRecord {
                    received_unix_ms: received,
                    phase: Phase::Received,
                    attempts: 0,
                    next_try_unix_ms: 0,
                    scan: None,
                    sender: b"s@example.org",
                    rcpts: addrs
                        .iter()
                        .map(|a| Rcpt {
                            address: a,
                            state: RcptState::Pending,
                        })
                        .collect(),
                    facts: vec![(b"ADDR".as_slice(), b"192.0.2.7".as_slice())],
                    body: &body,
                });
                let seq = self.append(id, &rec);
                self.model.insert(
                    id,
                    MMsg {
                        received,
                        versions: vec![(
                            seq,
                            MState {
                                phase: MPhase::Live(Phase::Received),
                                rcpts: vec![RcptState::Pending; rcpts as usize],
                                attempts: 0,
                                next_try: 0,
                            },
                        )],
                        tainted: false,
                    },
                );
                self.acks.push(seq, id);
                self.maybe_sync();
            }
            Op::Scan { pick, quarantine } => {
                let Some((id, s)) = self.pick(pick) else {
                    return;
                };
                if s.phase != MPhase::Live(Phase::Received) {
                    return;
                }
                let action = if quarantine {
                    ScanAction::Quarantine
                } else {
                    ScanAction::Pass
                };
                let rec = Record::Scanned(ScanSummary {
                    action,
                    score_milli: 1234,
                    symbols: b"X,Y",
                });
                let mut next = s.clone();
                next.phase = MPhase::Live(Phase::Scanned);
                self.change(id, &rec, next.clone());
                if quarantine {
                    next.phase = MPhase::Live(Phase::Quarantined);
                    self.change(id, &Record::Quarantined { reason: b"spam" }, next);
                }
            }
            Op::Defer { pick, delay } => {
                let Some((id, s)) = self.pick(pick) else {
                    return;
                };
                if !matches!(
                    s.phase,
                    MPhase::Live(Phase::Scanned | Phase::Deferred | Phase::Quarantined)
                ) {
                    return;
                }
                let next_try = self.unix_ms() + u64::from(delay);
                let rec = Record::Deferred {
                    next_try_unix_ms: next_try,
                    attempts: s.attempts + 1,
                    reason: b"451 later",
                };
                let next = MState {
                    phase: MPhase::Live(Phase::Deferred),
                    attempts: s.attempts + 1,
                    next_try,
                    ..s
                };
                self.change(id, &rec, next);
            }
            Op::Deliver { pick, mask } | Op::Bounce { pick, mask } => {
                let Some((id, s)) = self.pick(pick) else {
                    return;
                };
                let deliver = matches!(op, Op::Deliver { .. });
                if deliver && !matches!(s.phase, MPhase::Live(Phase::Scanned | Phase::Deferred)) {
                    return;
                }
                let rcpts = Self::pending_by_mask(&s, mask);
                let mut next = s.clone();
                for &i in &rcpts {
                    next.rcpts[i as usize] = if deliver {
                        RcptState::Delivered
                    } else {
                        RcptState::Failed
                    };
                }
                if !next.rcpts.contains(&RcptState::Pending) {
                    next.phase = MPhase::Gone;
                }
                let rec = if deliver {
                    Record::Delivered { rcpts }
                } else {
                    Record::Bounced {
                        rcpts,
                        reason: b"550 no",
                    }
                };
                self.change(id, &rec, next);
            }
            Op::Quarantine { pick } => {
                let Some((id, s)) = self.pick(pick) else {
                    return;
                };
                if !matches!(s.phase, MPhase::Live(Phase::Scanned | Phase::Deferred)) {
                    return;
                }
                let next = MState {
                    phase: MPhase::Live(Phase::Quarantined),
                    ..s
                };
                self.change(id, &Record::Quarantined { reason: b"q" }, next);
            }
            Op::Delete { pick } => {
                let Some((id, s)) = self.pick(pick) else {
                    return;
                };
                let next = MState {
                    phase: MPhase::Gone,
                    ..s
                };
                self.change(id, &Record::Deleted, next);
            }
            Op::Tick { ms } => {
                self.now += Duration::from_millis(u64::from(ms));
                self.maybe_sync();
            }
            Op::Sync => self.sync(),
            Op::Compact { crash_at } => self.compact(crash_at),
            Op::Crash { keep, garbage } => self.crash(keep, garbage),
            Op::Flip { file, pos, bit } => self.flip(file, pos, bit),
            Op::Recover => self.clean_recover(),
        }
    }

    fn compact(&mut self, crash_at: u8) {
        let policy = CompactionPolicy {
            live_percent_max: 60,
            copy_bytes_max: 1 << 20,
        };
        let plan = plan_compaction(&self.queue, self.active, &policy);
        if plan.is_empty() {
            return;
        }
        assert!(!plan.victims.contains(&self.active));
        for id in &plan.snapshots {
            let Some(e) = self.queue.get(*id) else {
                panic!("planned snapshot of a dead message {id:?}")
            };
            let base = e.base;
            let bytes = self.disk.files[&base.segment.0].data[base.offset as usize..].to_vec();
            let Ok((_, Record::Message(m))) = decode_record(&bytes) else {
                // The base record was damaged after it was read (a bit
                // flip): keep the victims, as the runtime must.
                assert!(self.flipped, "base of {id:?} unreadable without damage");
                return;
            };
            let snap = self.queue.snapshot(*id, &m).expect("live");
            let snap = owned(&snap);
            self.append(*id, &snap.as_record());
        }
        for id in &plan.tombstones {
            self.append(*id, &Record::Deleted);
        }
        if crash_at == 1 {
            return self.crash(0, 0);
        }
        self.sync();
        if crash_at == 2 {
            return self.crash(0, 0);
        }
        for v in &plan.victims {
            self.disk.files.remove(&v.0);
        }
        self.extents
            .retain(|(s, _), _| !plan.victims.contains(&SegmentId(*s)));
        self.flips
            .retain(|(s, _), _| !plan.victims.contains(&SegmentId(*s)));
        self.queue.segments_deleted(&plan.victims);
        self.check_live();
        if crash_at == 3 {
            self.crash(u16::MAX, 0);
        }
    }

    fn flip(&mut self, file: u8, pos: u32, bit: u8) {
        let ids: Vec<u64> = self
            .disk
            .files
            .iter()
            .filter(|(_, f)| f.synced > 0)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return;
        }
        let seg = ids[file as usize % ids.len()];
        let f = self.disk.files.get_mut(&seg).expect("file");
        let p = pos as usize % f.synced;
        f.data[p] ^= 1 << bit;
        self.flipped = true;
        let mask = self.flips.entry((seg, p)).or_insert(0);
        *mask ^= 1 << bit;
        if *mask == 0 {
            self.flips.remove(&(seg, p));
        }
        if std::env::var_os("MB_TRACE").is_some() {
            eprintln!(
                "FLIP seg {seg} at {p}; extents {:?}",
                self.extents
                    .range((seg, 0)..(seg + 1, 0))
                    .collect::<Vec<_>>()
            );
        }
        // Taint the message owning the flipped byte, if any.
        if let Some((_, (_, _, id))) = self
            .extents
            .range(..=(seg, p as u64))
            .next_back()
            .filter(|((s, o), (len, _, _))| *s == seg && (p as u64) < o + u64::from(*len))
            .map(|(k, v)| (*k, *v))
        {
            if let Some(m) = self.model.get_mut(&id) {
                m.tainted = true;
            }
        }
    }

    /// Crash: unsynced bytes are lost except a prefix (`keep` of 65535 of
    /// them), optionally followed by `garbage` junk bytes (a torn write).
    fn crash(&mut self, keep: u16, garbage: u8) {
        let synced_seq = self.commit.synced_seq();
        for f in self.disk.files.values_mut() {
            let unsynced = f.data.len() - f.synced;
            if unsynced == 0 {
                continue;
            }
            let kept = f.synced + unsynced * usize::from(keep) / usize::from(u16::MAX);
            let junk = usize::from(garbage).min(f.data.len() - kept);
            f.data.truncate(kept + junk);
            for (i, b) in f.data[kept..].iter_mut().enumerate() {
                *b = 0xA5 ^ (i as u8);
            }
            f.torn_from = Some(f.torn_from.map_or(f.synced, |t| t.min(f.synced)));
        }
        // A record cut inside its padding still reads back: keep records
        // whose header and payload are still in the file.
        let lens: BTreeMap<u64, usize> = self
            .disk
            .files
            .iter()
            .map(|(k, f)| (*k, f.data.len()))
            .collect();
        self.extents
            .retain(|(s, o), (_, unpadded, _)| (o + u64::from(*unpadded)) as usize <= lens[s]);
        self.restart(synced_seq);
    }

    /// Restart without losing anything: sync, recover, and the recovered
    /// queue must equal the live one.
    fn clean_recover(&mut self) {
        self.sync();
        let before = self.queue.clone();
        self.restart_checked(self.commit.synced_seq(), Some(before));
    }

    /// Recovery from the disk, checked against the model; the harness then
    /// continues on the recovered state, as the runtime does.
    fn restart(&mut self, synced_seq: Option<u64>) {
        self.restart_checked(synced_seq, None);
    }

    fn restart_checked(&mut self, synced_seq: Option<u64>, live: Option<Queue>) {
        let rec = recover(self.disk.segments());
        if std::env::var_os("MB_TRACE").is_some() {
            eprintln!("RECOVER {:?}", rec.report);
        }
        if let (Some(live), false) = (live, self.flipped) {
            let t = |q: &Queue| {
                q.tombstones()
                    .map(|(id, t)| format!("{id:?} {t:?}"))
                    .collect::<Vec<_>>()
            };
            assert_eq!(t(&rec.queue), t(&live), "tombstones differ");
            assert_eq!(
                rec.queue, live,
                "recovered queue differs from the live queue"
            );
        }
        // Idempotent: the same disk gives the same result.
        let again = recover(self.disk.segments());
        assert_eq!(rec.queue, again.queue);
        assert_eq!(rec.report, again.report);
        if !self.flipped {
            for c in &rec.report.corruptions {
                check_torn_only(c, &self.disk);
            }
        }
        // Every flipped bit inside a checked byte is reported: in the segment
        // header's checked part, or inside a record's header or payload.
        for &(seg, p) in self.flips.keys() {
            let covered = |at: u64| {
                rec.report.corruptions.iter().any(|c| {
                    c.segment == SegmentId(seg) && c.offset <= at && at < c.offset + c.len.max(1)
                })
            };
            if p < 36 {
                assert!(
                    covered(0),
                    "flip in segment {seg} header at {p} not reported"
                );
                continue;
            }
            let owner = self.extents.range(..=(seg, p as u64)).next_back().filter(
                |((s, o), (_, unpadded, _))| *s == seg && (p as u64) < o + u64::from(*unpadded),
            );
            if let Some(((_, o), _)) = owner {
                assert!(
                    covered(*o),
                    "flip at {seg}:{p} in the record at {o} not reported: {:?}",
                    rec.report.corruptions
                );
            }
        }
        let q = rec.queue;
        let durable = |seq: u64| synced_seq.is_some_and(|s| seq <= s);
        for (id, m) in self.model.iter_mut() {
            if m.tainted {
                continue;
            }
            let got = state_of(&q, *id);
            let last_durable = m.versions.iter().rposition(|(s, _)| durable(*s));
            let allowed: &[(u64, MState)] = match last_durable {
                Some(i) => &m.versions[i..],
                None => &m.versions,
            };
            let ok = allowed.iter().any(|(_, s)| same(s, &got))
                || (last_durable.is_none() && got.phase == MPhase::Gone);
            assert!(
                ok,
                "{id:?} recovered as {got:?}; allowed {allowed:?} (synced up to {synced_seq:?}, acked: {})",
                self.acked.contains(id)
            );
            if self.acked.contains(id) {
                assert!(last_durable.is_some(), "{id:?} acked but not durable");
            }
            // The recovered state is on disk now (recovery syncs what it read).
            m.versions = vec![(0, got)];
        }
        for e in q.entries() {
            assert!(
                self.model.contains_key(&e.id),
                "recovered unknown {:?}",
                e.id
            );
        }
        self.queue = q;
        self.disk.sync_all();
        let last = self.queue.last_seq().unwrap_or(0);
        self.next_seq = self.next_seq.max(last + 1);
        self.commit = CommitState::new(Some(self.next_seq - 1));
        self.acks = AckGate::new();
        let next = SegmentId(self.queue.last_segment().map_or(1, |s| s.0 + 1));
        self.open_segment(next);
        self.check_live();
    }

    /// The live queue agrees with the model: states and delivery order.
    fn check_live(&self) {
        for (id, m) in &self.model {
            if m.tainted {
                continue;
            }
            let got = state_of(&self.queue, *id);
            assert!(
                same(&got, m.now()),
                "{id:?}: queue {got:?}, model {:?}",
                m.now()
            );
        }
        let tainted: BTreeSet<MessageId> = self
            .model
            .iter()
            .filter(|(_, m)| m.tainted)
            .map(|(id, _)| *id)
            .collect();
        let order: Vec<MessageId> = self
            .queue
            .due(u64::MAX)
            .filter(|id| !tainted.contains(id))
            .collect();
        let mut expect: Vec<(u64, MessageId)> = self
            .model
            .iter()
            .filter(|(_, m)| !m.tainted)
            .filter_map(|(id, m)| match m.now().phase {
                MPhase::Live(Phase::Scanned) => Some((m.received, *id)),
                MPhase::Live(Phase::Deferred) => Some((m.now().next_try, *id)),
                _ => None,
            })
            .collect();
        expect.sort();
        let expect: Vec<MessageId> = expect.into_iter().map(|(_, id)| id).collect();
        assert_eq!(order, expect, "delivery order");
        let quarantined: Vec<MessageId> = self
            .queue
            .quarantined()
            .filter(|id| !tainted.contains(id))
            .collect();
        let want: Vec<MessageId> = self
            .model
            .iter()
            .filter(|(_, m)| !m.tainted && m.now().phase == MPhase::Live(Phase::Quarantined))
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(quarantined, want);
    }
}

fn check_torn_only(c: &Corruption, disk: &Disk) {
    let f = &disk.files[&c.segment.0];
    let torn = f.torn_from.unwrap_or(usize::MAX);
    assert!(
        c.offset as usize >= torn,
        "damage {c:?} before the torn tail at {torn} (no bit flips in this run)"
    );
}

/// An owned copy of a snapshot record (it borrows the harness's buffers).
struct OwnedMessage {
    m: MessageRecord<'static>,
}

impl OwnedMessage {
    fn as_record(&self) -> Record<'_> {
        Record::Message(self.m.clone())
    }
}

fn leak(b: &[u8]) -> &'static [u8] {
    Box::leak(b.to_vec().into_boxed_slice())
}

fn owned(r: &Record<'_>) -> OwnedMessage {
    let Record::Message(m) = r else {
        panic!("snapshot is a message record")
    };
    OwnedMessage {
        m: MessageRecord {
            received_unix_ms: m.received_unix_ms,
            phase: m.phase,
            attempts: m.attempts,
            next_try_unix_ms: m.next_try_unix_ms,
            scan: m.scan.as_ref().map(|s| ScanSummary {
                action: s.action,
                score_milli: s.score_milli,
                symbols: leak(s.symbols),
            }),
            sender: leak(m.sender),
            rcpts: m
                .rcpts
                .iter()
                .map(|r| Rcpt {
                    address: leak(r.address),
                    state: r.state,
                })
                .collect(),
            facts: m.facts.iter().map(|(k, v)| (leak(k), leak(v))).collect(),
            body: leak(m.body),
        },
    }
}

fn policy() -> impl Strategy<Value = GroupCommit> {
    (0u64..20, 1u32..8, 200u64..5000).prop_map(|(ms, max_records, max_bytes)| GroupCommit {
        max_delay: Duration::from_millis(ms),
        max_records,
        max_bytes,
    })
}

fn run(policy: GroupCommit, segment_target: usize, ops: &[Op]) {
    let mut h = Harness::new(policy, segment_target);
    for op in ops {
        if std::env::var_os("MB_TRACE").is_some() {
            eprintln!("OP {op:?}");
        }
        h.run(op);
        h.check_live();
    }
    // Finally: a clean restart after a full sync loses nothing.
    h.clean_recover();
}

proptest! {
    // 256 cases of each property run in a few seconds in debug; set
    // PROPTEST_CASES for a longer soak.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn spool_survives_crashes_and_compaction(
        policy in policy(),
        segment_target in 512usize..4096,
        ops in proptest::collection::vec(op(false), 1..160),
    ) {
        run(policy, segment_target, &ops);
    }

    #[test]
    fn spool_bit_flips_only_hurt_their_own_record(
        policy in policy(),
        segment_target in 512usize..4096,
        ops in proptest::collection::vec(op(true), 1..160),
    ) {
        run(policy, segment_target, &ops);
    }
}

/// A fixed scenario: a delivered message whose original segment outlives its
/// tombstone's segment is not resurrected (the tombstone is copied forward).
#[test]
fn delivered_message_is_not_resurrected_by_compaction() {
    let p = GroupCommit {
        max_delay: Duration::ZERO,
        max_records: 1,
        max_bytes: 1,
    };
    let mut h = Harness::new(p, 600);
    let ops = [
        Op::Append {
            rcpts: 1,
            body: 400,
        }, // id 1 in segment 1
        Op::Append {
            rcpts: 1,
            body: 400,
        }, // id 2 in segment 2 (keeps 1 live)
        Op::Scan {
            pick: 0,
            quarantine: false,
        },
        Op::Deliver { pick: 0, mask: 1 }, // id 1 delivered: tombstone
        Op::Append {
            rcpts: 1,
            body: 400,
        },
        Op::Compact { crash_at: 0 },
        Op::Compact { crash_at: 3 },
        Op::Recover,
    ];
    for op in &ops {
        h.run(op);
        h.check_live();
    }
    assert_eq!(state_of(&h.queue, MessageId(1)).phase, MPhase::Gone);
}

/// Shrunk from a proptest failure (bit flip run).
#[test]
fn regression_flip_after_torn_crash() {
    let p = GroupCommit {
        max_delay: Duration::from_millis(1),
        max_records: 4,
        max_bytes: 449,
    };
    use Op::*;
    let ops = [
        Append {
            rcpts: 1,
            body: 210,
        },
        Append {
            rcpts: 1,
            body: 226,
        },
        Scan {
            pick: 71,
            quarantine: true,
        },
        Append { rcpts: 3, body: 0 },
        Scan {
            pick: 44,
            quarantine: false,
        },
        Append { rcpts: 1, body: 0 },
        Append { rcpts: 1, body: 0 },
        Recover,
        Append {
            rcpts: 1,
            body: 370,
        },
        Append {
            rcpts: 1,
            body: 402,
        },
        Append { rcpts: 1, body: 0 },
        Tick { ms: 1 },
        Crash {
            keep: 0,
            garbage: 0,
        },
        Append {
            rcpts: 1,
            body: 378,
        },
        Deliver {
            pick: 200,
            mask: 21,
        },
        Scan {
            pick: 12,
            quarantine: false,
        },
        Crash {
            keep: 30720,
            garbage: 0,
        },
        Flip {
            file: 34,
            pos: 1246624,
            bit: 0,
        },
        Bounce { pick: 2, mask: 35 },
        Append {
            rcpts: 1,
            body: 115,
        },
        Tick { ms: 1 },
        Crash {
            keep: 35872,
            garbage: 5,
        },
        Compact { crash_at: 0 },
    ];
    run(p, 1097, &ops);
}

/// Shrunk from a proptest failure (live and recovered tombstones differed).
#[test]
fn regression_tombstones_after_crash_and_compaction() {
    let p = GroupCommit {
        max_delay: Duration::from_millis(1),
        max_records: 3,
        max_bytes: 1241,
    };
    use Op::*;
    let a = |rcpts, body| Append { rcpts, body };
    let ops = [
        a(1, 0),
        a(1, 0),
        a(1, 0),
        a(1, 0),
        a(1, 0),
        a(1, 0),
        a(1, 0),
        Delete { pick: 0 },
        a(1, 0),
        Scan {
            pick: 0,
            quarantine: false,
        },
        a(1, 0),
        a(1, 0),
        Defer {
            pick: 144,
            delay: 660,
        },
        Crash {
            keep: 17573,
            garbage: 0,
        },
        a(3, 224),
        Compact { crash_at: 0 },
        a(2, 187),
        Bounce {
            pick: 200,
            mask: 183,
        },
        a(2, 118),
        a(2, 114),
        Scan {
            pick: 212,
            quarantine: false,
        },
        a(2, 393),
        a(3, 221),
        a(3, 692),
        a(3, 502),
        Recover,
        Recover,
        a(3, 274),
        a(1, 605),
        Delete { pick: 209 },
        a(1, 692),
        a(3, 580),
        a(2, 371),
        Sync,
        a(2, 138),
        a(2, 306),
        a(3, 618),
        a(3, 283),
        Bounce {
            pick: 112,
            mask: 126,
        },
        a(2, 117),
        a(3, 667),
        Crash {
            keep: 61939,
            garbage: 2,
        },
        Compact { crash_at: 0 },
    ];
    run(p, 841, &ops);
}
