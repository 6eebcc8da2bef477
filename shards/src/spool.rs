//! The file side of a shard's spool on glommio: segment files opened with
//! O_DIRECT (`DmaFile`), an append buffer that keeps the unaligned tail block
//! in memory and rewrites it at each commit, `fdatasync` per group commit,
//! and start-up recovery that reads every segment back through the engine's
//! sans-I/O reader. The format, the states, the commit rule and the crash
//! argument are in `mb_engine::spool` and docs/SPOOL.md; this module only
//! moves bytes.
//!
//! Not wired into the shard yet (the SMTP ingress and delivery are the next
//! steps of the delivery issue).
//!
//! ```text
//! <dir>/.dma-probe                 4 KiB, opened first on every executor (glommio#605/#670)
//! <dir>/seg-<16 hex digits>.mbs    segments, in id order
//! ```
//!
//! Commit: the bytes in `[tail_base, end)` are padded with zeros to a 4 KiB
//! multiple and written at `tail_base` (a 4 KiB boundary), then
//! `fdatasync`. The first part of that block is already on disk and is
//! rewritten with the same bytes, so a torn write leaves synced bytes
//! unchanged. After the sync only the last partial block stays in memory.
//! Research (tpc-feasibility.md §2) measured this mode as the fastest:
//! `DmaStreamWriter::sync` rewrites its whole buffer every time.

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions};
use mb_engine::spool::{
    encode_record, encode_segment_header, EncodeError, Location, MessageId, Record, Recoverer,
    Recovery, SegmentHeader, SegmentId, SEGMENT_FILE_BYTES_MAX,
};

/// O_DIRECT block size: writes start at multiples of it and have lengths
/// that are multiples of it.
const BLOCK: usize = 4096;

/// The file the DMA probe reads first (see the module doc).
pub const PROBE_FILE: &str = ".dma-probe";

/// The path of segment `id` in `dir`.
pub fn segment_path(dir: &Path, id: SegmentId) -> PathBuf {
    dir.join(format!("seg-{:016x}.mbs", id.0))
}

/// The segment id of a file name, if it is one of ours.
pub fn parse_segment_name(name: &str) -> Option<SegmentId> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".mbs")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(SegmentId)
}

/// Segment ids found in `dir`, ascending.
pub fn list_segments(dir: &Path) -> io::Result<Vec<SegmentId>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(id) = entry.file_name().to_str().and_then(parse_segment_name) {
            ids.push(id);
        }
    }
    ids.sort();
    Ok(ids)
}

/// Opens a non-empty file with O_DIRECT before any segment, so glommio's
/// per-device IOPOLL probe reads real data (an empty first file makes every
/// later DMA read on the device fail with EOPNOTSUPP: glommio#605/#670,
/// research/tpc-feasibility.md §1.5). Run on every executor thread.
pub async fn probe_dma(dir: &Path) -> io::Result<()> {
    let path = dir.join(PROBE_FILE);
    let ok = std::fs::metadata(&path).is_ok_and(|m| m.len() >= BLOCK as u64);
    if !ok {
        std::fs::write(&path, [0u8; BLOCK])?;
    }
    let f = DmaFile::open(&path).await?;
    let read = f.read_at(0, BLOCK).await?;
    let n = read.len();
    drop(read);
    f.close().await?;
    if n != BLOCK {
        return Err(io::Error::other(format!(
            "spool DMA probe {} read {n} bytes, expected {BLOCK}",
            path.display()
        )));
    }
    Ok(())
}

/// `fsync` of the directory, so creates and unlinks are durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Reads one whole segment file (bounded by `SEGMENT_FILE_BYTES_MAX`),
/// `fdatasync`s it (records that reached the disk without a sync become part
/// of the recovered state, so they must be durable), and returns its bytes.
async fn read_segment(path: &Path) -> io::Result<Vec<u8>> {
    let f = DmaFile::open(path).await?;
    let size = f.file_size().await?;
    if size > SEGMENT_FILE_BYTES_MAX {
        f.close().await?;
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "spool segment {} is {size} bytes, above the {SEGMENT_FILE_BYTES_MAX} maximum: \
                 not a segment of ours; move it out of the spool directory",
                path.display()
            ),
        ));
    }
    let bytes = if size == 0 {
        Vec::new()
    } else {
        f.read_at(0, size as usize).await?.to_vec()
    };
    f.fdatasync().await?;
    f.close().await?;
    Ok(bytes)
}

/// A spool opened at start-up: what recovery found, and a writer on a fresh
/// segment after the last one.
pub struct Opened {
    /// The queue and the recovery report (corruptions to emit as events).
    pub recovery: Recovery,
    /// The writer (its segment is already registered in the queue).
    pub writer: SegmentWriter,
}

/// Opens (or creates) the spool in `dir`: DMA probe, recovery of every
/// segment one at a time, then a new active segment with `nonce` (random,
/// from the runtime).
pub async fn open(dir: &Path, nonce: u64, now_unix_ms: u64) -> io::Result<Opened> {
    std::fs::create_dir_all(dir)?;
    probe_dma(dir).await?;
    let mut recoverer = Recoverer::new();
    for id in list_segments(dir)? {
        let bytes = read_segment(&segment_path(dir, id)).await?;
        recoverer.segment(id, &bytes);
    }
    let mut recovery = recoverer.finish();
    let next = SegmentId(recovery.queue.last_segment().map_or(1, |s| s.0 + 1));
    let writer = SegmentWriter::create(dir, next, nonce, now_unix_ms).await?;
    recovery.queue.add_segment(next);
    Ok(Opened { recovery, writer })
}

/// Reads the record at `at` (a message's base record for delivery or a
/// compaction snapshot). The caller decodes it with
/// `mb_engine::spool::decode_record`.
pub async fn read_record(dir: &Path, at: Location) -> io::Result<Vec<u8>> {
    let f = DmaFile::open(segment_path(dir, at.segment)).await?;
    let bytes = f.read_at(at.offset, at.len as usize).await?.to_vec();
    f.close().await?;
    Ok(bytes)
}

/// Deletes compacted segments and makes the unlinks durable. Call only after
/// the records the plan copied forward are synced (docs/SPOOL.md).
pub async fn delete_segments(
    dir: &Path,
    ids: impl IntoIterator<Item = SegmentId>,
) -> io::Result<()> {
    for id in ids {
        glommio::io::remove(segment_path(dir, id)).await?;
    }
    sync_dir(dir)
}

/// The writer of the active segment.
pub struct SegmentWriter {
    file: Rc<DmaFile>,
    id: SegmentId,
    nonce: u64,
    /// File offset of `tail[0]`: a multiple of `BLOCK`.
    tail_base: u64,
    /// Bytes from `tail_base` to the end of data.
    tail: Vec<u8>,
    /// End of data as of the last successful commit.
    synced_len: u64,
}

impl SegmentWriter {
    /// Creates segment `id` (which must not exist) with its header pending,
    /// and makes the directory entry durable.
    pub async fn create(
        dir: &Path,
        id: SegmentId,
        nonce: u64,
        now_unix_ms: u64,
    ) -> io::Result<Self> {
        let path = segment_path(dir, id);
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .dma_open(&path)
            .await?;
        sync_dir(dir)?;
        let mut tail = Vec::with_capacity(BLOCK);
        encode_segment_header(
            &mut tail,
            &SegmentHeader {
                id,
                nonce,
                created_unix_ms: now_unix_ms,
            },
        );
        Ok(Self {
            file: Rc::new(file),
            id,
            nonce,
            tail_base: 0,
            tail,
            synced_len: 0,
        })
    }

    /// The segment.
    pub fn id(&self) -> SegmentId {
        self.id
    }

    /// End of data (synced or not).
    pub fn len(&self) -> u64 {
        self.tail_base + self.tail.len() as u64
    }

    /// Whether everything appended is durable.
    pub fn is_synced(&self) -> bool {
        self.synced_len == self.len()
    }

    /// Appends a record to the in-memory tail (durable after the next
    /// [`SegmentWriter::commit`]) and returns where it lives.
    pub fn append(
        &mut self,
        seq: u64,
        id: MessageId,
        record: &Record<'_>,
    ) -> Result<Location, EncodeError> {
        let offset = self.len();
        let n = encode_record(&mut self.tail, seq, self.nonce, id, record)?;
        Ok(Location {
            segment: self.id,
            offset,
            len: n as u32,
        })
    }

    /// Writes the tail (from its block boundary, zero-padded to whole
    /// blocks) and `fdatasync`s. On error nothing appended since the last
    /// commit may be acknowledged; the runtime answers those sessions with
    /// 4xx and starts a new segment.
    pub async fn commit(&mut self) -> io::Result<()> {
        let Some(pending) = self.prepare_commit() else {
            return Ok(());
        };
        let done = pending.run().await?;
        self.finish_commit(done);
        Ok(())
    }

    /// The first half of a commit, without I/O: copies the tail into a DMA
    /// buffer. Records appended while the returned commit runs are not part
    /// of it (they go into the next one). `None` when everything is synced.
    /// At most one commit may be in flight.
    pub fn prepare_commit(&mut self) -> Option<PendingCommit> {
        if self.is_synced() {
            return None;
        }
        let padded = self.tail.len().next_multiple_of(BLOCK);
        let mut buf = self.file.alloc_dma_buffer(padded);
        let bytes = buf.as_bytes_mut();
        bytes[..self.tail.len()].copy_from_slice(&self.tail);
        bytes[self.tail.len()..].fill(0);
        Some(PendingCommit {
            file: Rc::clone(&self.file),
            id: self.id,
            buf,
            at: self.tail_base,
            padded,
            end: self.len(),
        })
    }

    /// The second half of a commit that succeeded: raises the synced length
    /// and keeps only the last partial block of what it covered in memory.
    pub fn finish_commit(&mut self, done: CommitDone) {
        debug_assert_eq!(done.at, self.tail_base, "one commit in flight at a time");
        self.synced_len = self.synced_len.max(done.end);
        let covered = usize::try_from(done.end - self.tail_base).unwrap_or(usize::MAX);
        let whole = covered / BLOCK * BLOCK;
        self.tail.drain(..whole);
        self.tail_base += whole as u64;
        debug_assert!(self.tail_base.is_multiple_of(BLOCK as u64));
    }

    /// Commits and closes the file.
    pub async fn close(mut self) -> io::Result<()> {
        self.commit().await?;
        // A commit in flight would still hold the file (not after
        // `commit`); its last reference then closes it when dropped.
        if let Ok(file) = Rc::try_unwrap(self.file) {
            file.close().await?;
        }
        Ok(())
    }
}

/// A commit prepared by [`SegmentWriter::prepare_commit`]: the bytes to
/// write and where. Running it needs no borrow of the writer, so records can
/// be appended while it waits for the disk.
pub struct PendingCommit {
    file: Rc<DmaFile>,
    id: SegmentId,
    buf: glommio::io::DmaBuffer,
    at: u64,
    padded: usize,
    end: u64,
}

/// A commit that reached the disk; hand it to
/// [`SegmentWriter::finish_commit`].
#[derive(Debug, Clone, Copy)]
pub struct CommitDone {
    at: u64,
    end: u64,
}

impl PendingCommit {
    /// Writes the blocks and `fdatasync`s.
    pub async fn run(self) -> io::Result<CommitDone> {
        let written = self.file.write_at(self.buf, self.at).await?;
        if written != self.padded {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "spool segment {:?}: short write of {written} of {} bytes at {}",
                    self.id, self.padded, self.at
                ),
            ));
        }
        self.file.fdatasync().await?;
        Ok(CommitDone {
            at: self.at,
            end: self.end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mb_engine::spool::{
        decode_record, Damage, MessageRecord, Phase, Rcpt, RcptState, ScanAction, ScanSummary,
    };

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mb-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn message(body: &[u8]) -> Record<'_> {
        Record::Message(MessageRecord {
            received_unix_ms: 1_000,
            phase: Phase::Received,
            attempts: 0,
            next_try_unix_ms: 0,
            scan: None,
            sender: b"a@example.org",
            rcpts: vec![
                Rcpt {
                    address: b"b@example.net",
                    state: RcptState::Pending,
                },
                Rcpt {
                    address: b"c@example.net",
                    state: RcptState::Pending,
                },
            ],
            facts: vec![],
            body,
        })
    }

    /// Runs `f` on a fresh glommio executor thread and waits for it.
    fn run<G, F>(f: G)
    where
        G: FnOnce() -> F + Send + 'static,
        F: std::future::Future<Output = ()> + 'static,
    {
        glommio::LocalExecutorBuilder::default()
            .spawn(f)
            .expect("executor")
            .join()
            .expect("the test body panicked");
    }

    #[test]
    fn names_round_trip() {
        let p = segment_path(Path::new("/x"), SegmentId(0xAB));
        let name = p.file_name().and_then(|n| n.to_str()).expect("name");
        assert_eq!(name, "seg-00000000000000ab.mbs");
        assert_eq!(parse_segment_name(name), Some(SegmentId(0xAB)));
        assert_eq!(parse_segment_name("seg-ab.mbs"), None);
        assert_eq!(parse_segment_name(".dma-probe"), None);
    }

    /// Append, commit in small and block-crossing steps, "crash" (drop the
    /// writer with records appended but not committed), reopen: committed
    /// records come back with their states, uncommitted ones do not, and a
    /// new segment is started. Then damage a record on disk: it is reported
    /// and its neighbours survive.
    #[test]
    fn commit_crash_recover_and_damage() {
        let dir = temp_dir("recover");
        let d = dir.clone();
        run(move || async move {
            {
                let dir = d;
                let mut o = open(&dir, 0xA1, 1).await.expect("open empty");
                assert!(o.recovery.queue.is_empty());
                assert_eq!(o.writer.id(), SegmentId(1));
                let w = &mut o.writer;
                let big = vec![b'x'; 9000];
                let mut seq = 0;
                let mut at = Vec::new();
                for i in 0..5u128 {
                    seq += 1;
                    let body: &[u8] = if i == 2 { &big } else { b"hello" };
                    at.push(w.append(seq, MessageId(i), &message(body)).expect("append"));
                    w.commit().await.expect("commit");
                }
                seq += 1;
                let scan = Record::Scanned(ScanSummary {
                    action: ScanAction::Pass,
                    score_milli: 0,
                    symbols: b"",
                });
                w.append(seq, MessageId(1), &scan).expect("append");
                seq += 1;
                w.append(seq, MessageId(1), &Record::Delivered { rcpts: vec![0, 1] })
                    .expect("append");
                w.commit().await.expect("commit");
                // Appended, never committed: lost at the "crash".
                seq += 1;
                w.append(seq, MessageId(99), &message(b"lost"))
                    .expect("append");
                drop(o);

                let o = open(&dir, 0xA2, 2).await.expect("reopen");
                let q = &o.recovery.queue;
                assert!(
                    o.recovery.report.corruptions.is_empty(),
                    "{:?}",
                    o.recovery.report
                );
                assert_eq!(o.writer.id(), SegmentId(2));
                let ids: Vec<u128> = q.entries().map(|e| e.id.0).collect();
                assert_eq!(ids, [0, 2, 3, 4], "1 delivered, 99 never committed");
                assert_eq!(q.get(MessageId(2)).map(|e| e.base), Some(at[2]));
                // The base record reads back from its location.
                let bytes = read_record(&dir, at[2]).await.expect("read");
                let (_, rec) = decode_record(&bytes).expect("decode");
                assert!(matches!(rec, Record::Message(m) if m.body.len() == 9000));
                o.writer.close().await.expect("close");

                // Flip a byte inside message 3's record in segment 1.
                let path = segment_path(&dir, SegmentId(1));
                let mut raw = std::fs::read(&path).expect("read seg");
                raw[at[3].offset as usize + 60] ^= 0x10;
                std::fs::write(&path, &raw).expect("write seg");
                let o = open(&dir, 0xA3, 3).await.expect("reopen damaged");
                let c = &o.recovery.report.corruptions;
                assert_eq!(c.len(), 1, "{c:?}");
                assert_eq!((c[0].segment, c[0].offset), (SegmentId(1), at[3].offset));
                assert_eq!(c[0].reason, Damage::Checksum);
                let ids: Vec<u128> = o.recovery.queue.entries().map(|e| e.id.0).collect();
                assert_eq!(ids, [0, 2, 4], "neighbours of the damaged record survive");
                assert_eq!(o.writer.id(), SegmentId(3));

                // Compaction's last step: delete segments.
                delete_segments(&dir, [SegmentId(2)]).await.expect("delete");
                assert_eq!(
                    list_segments(&dir).expect("list"),
                    [SegmentId(1), SegmentId(3)]
                );
            }
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}
