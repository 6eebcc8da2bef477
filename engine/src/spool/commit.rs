//! Group commit as a pure policy: when to `fdatasync`, and which
//! acknowledgements (SMTP 250) that releases. Time is passed in as a
//! monotonic [`Duration`] since any fixed origin; there is no clock here.
//!
//! The rule: **a 250 for a record is released only when the synced
//! watermark is at or above its sequence number** ([`AckGate`]).
//!
//! The runtime loop (one writer per shard):
//!
//! ```text
//! append(record)      → commit.appended(seq, bytes, now); acks.push(seq, session)
//! loop:
//!   match commit.decide(&policy, now):
//!     Now        → t = commit.begin_sync(); write tail; fdatasync; commit.end_sync(t);
//!                  acks.release(commit.synced_seq(), &mut ready)   // send 250s
//!     Wait(d)    → sleep at most d (or until the next append)
//!     Idle       → wait for an append
//! ```
//!
//! With `max_delay = 0` this is the opportunistic group commit measured best
//! in research/tpc-feasibility.md §2 (sync as soon as the previous sync
//! returned and anything is pending; 54k msg/s vs 14k with a fixed 2 ms
//! timer): the batch size then follows the load.

use std::collections::VecDeque;
use std::time::Duration;

/// Default longest wait before a pending record is synced: 0, i.e. sync as
/// soon as the previous sync returned (opportunistic; see the module doc).
pub const GROUP_COMMIT_DELAY_DEFAULT: Duration = Duration::ZERO;
/// Default most records per sync before syncing at once.
pub const GROUP_COMMIT_RECORDS_DEFAULT: u32 = 256;
/// Default most pending bytes before syncing at once (4 MiB: about 20 ms of
/// the measured sequential write rate).
pub const GROUP_COMMIT_BYTES_DEFAULT: u64 = 4 * 1024 * 1024;
/// Longest a record nobody waits for (appended with
/// [`CommitState::appended_lazily`]: scanned, delivered, deferred) stays
/// unsynced when no acknowledged record is pending. Such a record lost in a
/// crash is only work done again (a scan, a delivery: at least once), so it
/// rides along with the next sync for a 250 rather than costing a device
/// flush of its own; the delivery benchmark measured 1.0–2.2 flushes per
/// message before.
pub const LAZY_SYNC_DELAY: Duration = Duration::from_millis(100);

/// The group commit policy (configurable per shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommit {
    /// Longest a pending record waits for a sync.
    pub max_delay: Duration,
    /// Sync at once when this many records are pending.
    pub max_records: u32,
    /// Sync at once when this many bytes are pending.
    pub max_bytes: u64,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            max_delay: GROUP_COMMIT_DELAY_DEFAULT,
            max_records: GROUP_COMMIT_RECORDS_DEFAULT,
            max_bytes: GROUP_COMMIT_BYTES_DEFAULT,
        }
    }
}

/// What to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncDecision {
    /// Start a sync now.
    Now,
    /// Nothing forces a sync yet; decide again within this long.
    Wait(Duration),
    /// Nothing pending, or a sync is in flight: wait for an event.
    Idle,
}

/// A sync in flight: it covers every record up to `upto_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "end_sync needs the ticket"]
pub struct SyncTicket {
    /// Highest sequence number the sync makes durable.
    pub upto_seq: u64,
}

/// Watermarks of one writer: appended, being synced, synced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitState {
    appended_seq: Option<u64>,
    synced_seq: Option<u64>,
    in_flight: Option<u64>,
    pending_records: u32,
    pending_bytes: u64,
    oldest_pending: Option<Duration>,
    /// When the oldest pending record somebody waits for was appended.
    oldest_urgent: Option<Duration>,
}

impl CommitState {
    /// A writer with nothing appended; `synced_seq` is the last durable
    /// sequence number found at recovery.
    pub fn new(synced_seq: Option<u64>) -> Self {
        Self {
            appended_seq: synced_seq,
            synced_seq,
            ..Self::default()
        }
    }

    /// A record was appended to the write buffer.
    ///
    /// # Panics
    /// If `seq` does not increase (one writer per shard hands out sequence
    /// numbers in order).
    pub fn appended(&mut self, seq: u64, bytes: u64, now: Duration) {
        self.appended_lazily(seq, bytes, now);
        self.oldest_urgent.get_or_insert(now);
    }

    /// A record nobody waits for was appended: it is synced with the next
    /// sync, or after [`LAZY_SYNC_DELAY`] at the latest.
    ///
    /// # Panics
    /// If `seq` does not increase.
    pub fn appended_lazily(&mut self, seq: u64, bytes: u64, now: Duration) {
        assert!(
            self.appended_seq.is_none_or(|s| seq > s),
            "spool sequence numbers must increase"
        );
        self.appended_seq = Some(seq);
        self.pending_records = self.pending_records.saturating_add(1);
        self.pending_bytes = self.pending_bytes.saturating_add(bytes);
        self.oldest_pending.get_or_insert(now);
    }

    /// Whether to sync now, given the policy and the time.
    pub fn decide(&self, policy: &GroupCommit, now: Duration) -> SyncDecision {
        let Some(oldest) = self.oldest_pending else {
            return SyncDecision::Idle;
        };
        if self.in_flight.is_some() {
            return SyncDecision::Idle;
        }
        let (since, delay) = match self.oldest_urgent {
            Some(urgent) => (urgent, policy.max_delay),
            None => (oldest, LAZY_SYNC_DELAY.max(policy.max_delay)),
        };
        let waited = now.saturating_sub(since);
        if self.pending_records >= policy.max_records
            || self.pending_bytes >= policy.max_bytes
            || waited >= delay
        {
            SyncDecision::Now
        } else {
            SyncDecision::Wait(delay - waited)
        }
    }

    /// Starts a sync of everything appended so far. None if nothing is
    /// pending or a sync is already in flight.
    pub fn begin_sync(&mut self) -> Option<SyncTicket> {
        if self.in_flight.is_some() || self.oldest_pending.is_none() {
            return None;
        }
        let upto_seq = self.appended_seq?;
        self.in_flight = Some(upto_seq);
        self.pending_records = 0;
        self.pending_bytes = 0;
        self.oldest_pending = None;
        self.oldest_urgent = None;
        Some(SyncTicket { upto_seq })
    }

    /// The sync of `ticket` returned successfully.
    ///
    /// # Panics
    /// If `ticket` is not the sync in flight.
    pub fn end_sync(&mut self, ticket: SyncTicket) {
        assert_eq!(
            self.in_flight,
            Some(ticket.upto_seq),
            "not the sync in flight"
        );
        self.in_flight = None;
        self.synced_seq = Some(ticket.upto_seq);
    }

    /// Highest durable sequence number.
    pub fn synced_seq(&self) -> Option<u64> {
        self.synced_seq
    }

    /// Highest appended sequence number.
    pub fn appended_seq(&self) -> Option<u64> {
        self.appended_seq
    }

    /// Whether record `seq` is durable.
    pub fn is_durable(&self, seq: u64) -> bool {
        self.synced_seq.is_some_and(|s| seq <= s)
    }

    /// Records appended and not yet in a sync.
    pub fn pending_records(&self) -> u32 {
        self.pending_records
    }
}

/// Acknowledgements waiting for durability, in sequence order.
#[derive(Debug, Clone)]
pub struct AckGate<T> {
    waiting: VecDeque<(u64, T)>,
}

impl<T> Default for AckGate<T> {
    fn default() -> Self {
        Self {
            waiting: VecDeque::new(),
        }
    }
}

impl<T> AckGate<T> {
    /// An empty gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// `token` may be acknowledged once record `seq` is durable.
    ///
    /// # Panics
    /// If `seq` is lower than the last one pushed.
    pub fn push(&mut self, seq: u64, token: T) {
        assert!(
            self.waiting.back().is_none_or(|(s, _)| *s <= seq),
            "acks are pushed in sequence order"
        );
        self.waiting.push_back((seq, token));
    }

    /// Moves every token whose record is at or below `synced_seq` to `out`.
    pub fn release(&mut self, synced_seq: Option<u64>, out: &mut Vec<T>) {
        let Some(synced) = synced_seq else { return };
        while self.waiting.front().is_some_and(|(s, _)| *s <= synced) {
            if let Some((_, t)) = self.waiting.pop_front() {
                out.push(t);
            }
        }
    }

    /// Tokens still waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Drops every waiting token (the writer failed: the runtime answers
    /// them with 4xx, never 250).
    pub fn fail_all(&mut self, out: &mut Vec<T>) {
        out.extend(self.waiting.drain(..).map(|(_, t)| t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn opportunistic_by_default() {
        let p = GroupCommit::default();
        let mut c = CommitState::new(None);
        assert_eq!(c.decide(&p, MS), SyncDecision::Idle);
        c.appended(1, 100, MS);
        assert_eq!(c.decide(&p, MS), SyncDecision::Now);
        let t = c.begin_sync().expect("pending");
        c.appended(2, 100, MS * 2);
        assert_eq!(
            c.decide(&p, MS * 2),
            SyncDecision::Idle,
            "one sync at a time"
        );
        assert!(!c.is_durable(1));
        c.end_sync(t);
        assert!(c.is_durable(1) && !c.is_durable(2));
        assert_eq!(c.decide(&p, MS * 2), SyncDecision::Now);
    }

    #[test]
    fn delay_records_and_bytes_thresholds() {
        let p = GroupCommit {
            max_delay: MS * 5,
            max_records: 3,
            max_bytes: 1000,
        };
        let mut c = CommitState::new(Some(10));
        c.appended(11, 10, MS * 100);
        assert_eq!(c.decide(&p, MS * 102), SyncDecision::Wait(MS * 3));
        assert_eq!(c.decide(&p, MS * 105), SyncDecision::Now);
        c.appended(12, 10, MS * 103);
        c.appended(13, 10, MS * 103);
        assert_eq!(c.decide(&p, MS * 103), SyncDecision::Now, "3 records");
        let t = c.begin_sync().expect("pending");
        c.end_sync(t);
        c.appended(14, 1000, MS * 200);
        assert_eq!(c.decide(&p, MS * 200), SyncDecision::Now, "bytes");
    }

    #[test]
    fn records_nobody_waits_for_ride_along_or_wait_the_lazy_delay() {
        let p = GroupCommit::default();
        let mut c = CommitState::new(None);
        c.appended_lazily(1, 100, MS);
        assert_eq!(
            c.decide(&p, MS),
            SyncDecision::Wait(LAZY_SYNC_DELAY),
            "no flush of its own at once"
        );
        assert_eq!(c.decide(&p, MS + LAZY_SYNC_DELAY), SyncDecision::Now);
        // an acknowledged record arrives: sync now, the lazy one with it
        c.appended(2, 100, MS * 2);
        assert_eq!(c.decide(&p, MS * 2), SyncDecision::Now);
        let t = c.begin_sync().expect("pending");
        assert_eq!(t.upto_seq, 2);
        c.end_sync(t);
        assert!(c.is_durable(1) && c.is_durable(2));
        // after the sync only a lazy record is pending: it waits again
        c.appended_lazily(3, 100, MS * 3);
        assert_eq!(c.decide(&p, MS * 3), SyncDecision::Wait(LAZY_SYNC_DELAY));
        // thresholds still apply
        let few = GroupCommit {
            max_records: 2,
            ..GroupCommit::default()
        };
        c.appended_lazily(4, 100, MS * 3);
        assert_eq!(c.decide(&few, MS * 3), SyncDecision::Now);
    }

    #[test]
    fn acks_released_only_at_or_below_the_watermark() {
        let mut g = AckGate::new();
        g.push(1, "a");
        g.push(2, "b");
        g.push(5, "c");
        let mut out = Vec::new();
        g.release(None, &mut out);
        assert!(out.is_empty());
        g.release(Some(2), &mut out);
        assert_eq!(out, ["a", "b"]);
        g.release(Some(4), &mut out);
        assert_eq!(out.len(), 2);
        g.release(Some(5), &mut out);
        assert_eq!(out, ["a", "b", "c"]);
        assert!(g.is_empty());
    }
}
