//! The compaction planner: which segments are mostly dead, and what must be
//! copied forward before they can be deleted.
//!
//! Executing a plan (the runtime; the model test does the same):
//!
//! ```text
//! 1. for id in plan.snapshots:  read the record at queue.get(id).base, decode it,
//!                               append queue.snapshot(id, &base) (a Message record)
//!    for id in plan.tombstones: append Record::Deleted for id
//!    (each append is applied to the queue like any other record)
//! 2. sync (group commit) and wait until every copy is durable
//! 3. delete the victim files, fsync the spool directory
//! 4. queue.segments_deleted(&plan.victims)
//! ```
//!
//! A crash between any two steps is safe: before step 3 the victims are
//! intact and the copies are either lost (never durable) or redundant (a
//! snapshot supersedes older records of its id; a copied tombstone repeats a
//! terminal state). The active segment is never a victim.

use std::collections::BTreeSet;

use super::queue::Queue;
use super::{MessageId, SegmentId};

/// Default: a segment whose live bytes are at most this share of its bytes
/// (in percent) is compacted. 50% bounds the space amplification at 2×.
pub const COMPACT_LIVE_PERCENT_DEFAULT: u8 = 50;
/// Default most live bytes one compaction copies forward (so one run does not
/// monopolise the shard's disk bandwidth).
pub const COMPACT_COPY_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Compaction policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Compact segments with at most this percentage of live bytes.
    pub live_percent_max: u8,
    /// Stop adding victims once this many live bytes would be copied (a
    /// segment with no live bytes is always taken).
    pub copy_bytes_max: u64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self {
            live_percent_max: COMPACT_LIVE_PERCENT_DEFAULT,
            copy_bytes_max: COMPACT_COPY_BYTES_DEFAULT,
        }
    }
}

/// What to do. Empty when nothing is worth compacting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionPlan {
    /// Segments to delete once the copies are durable.
    pub victims: BTreeSet<SegmentId>,
    /// Live messages to rewrite as snapshot records.
    pub snapshots: Vec<MessageId>,
    /// Terminal messages whose tombstone must be rewritten.
    pub tombstones: Vec<MessageId>,
    /// Live bytes in the victims (what the copies cost, roughly).
    pub copy_bytes: u64,
}

impl CompactionPlan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.victims.is_empty()
    }
}

/// Plans one compaction of `queue`'s segments, never touching `active` (the
/// segment being appended to). Emptiest segments first.
pub fn plan(queue: &Queue, active: SegmentId, policy: &CompactionPolicy) -> CompactionPlan {
    let mut candidates: Vec<(u64, SegmentId)> = queue
        .usage()
        .into_iter()
        .filter(|(s, u)| {
            *s != active
                && u.live.saturating_mul(100)
                    <= u.total.saturating_mul(policy.live_percent_max.into())
        })
        .map(|(s, u)| (u.live, s))
        .collect();
    candidates.sort();
    let mut out = CompactionPlan::default();
    for (live, s) in candidates {
        if live > 0 && out.copy_bytes.saturating_add(live) > policy.copy_bytes_max {
            break;
        }
        out.copy_bytes += live;
        out.victims.insert(s);
    }
    if !out.victims.is_empty() {
        out.snapshots = queue.live_in(&out.victims);
        out.tombstones = queue.tombstones_in(&out.victims);
    }
    out
}
