//! The spool's on-disk format: every record kind round-trips, the encoder
//! refuses fields over their maxima, and the segment reader reports damage
//! and resynchronises: truncation at every byte offset of a small segment,
//! a bit flip at every byte, zero holes, foreign nonces, a damaged header.

use mb_engine::spool::{
    decode_record, encode_record, encode_segment_header, Damage, EncodeError, Item, MessageId,
    MessageRecord, Phase, Rcpt, RcptState, Record, ScanAction, ScanSummary, SegmentHeader,
    SegmentId, SegmentReader, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};

const NONCE: u64 = 0x5EED_1234_ABCD_0001;
const SEG: SegmentId = SegmentId(7);

fn message(body: &[u8]) -> Record<'_> {
    Record::Message(MessageRecord {
        received_unix_ms: 1_700_000_000_000,
        phase: Phase::Received,
        attempts: 0,
        next_try_unix_ms: 0,
        scan: None,
        sender: b"alice@example.org",
        rcpts: vec![
            Rcpt {
                address: b"bob@example.net",
                state: RcptState::Pending,
            },
            Rcpt {
                address: b"carol@example.net",
                state: RcptState::Pending,
            },
        ],
        facts: vec![(b"ADDR".as_slice(), b"192.0.2.1".as_slice())],
        body,
    })
}

fn all_kinds() -> Vec<Record<'static>> {
    vec![
        message(b"Subject: hi\r\n\r\nbody\r\n"),
        Record::Message(MessageRecord {
            received_unix_ms: 5,
            phase: Phase::Deferred,
            attempts: 3,
            next_try_unix_ms: 99,
            scan: Some(ScanSummary {
                action: ScanAction::AddHeader,
                score_milli: -1500,
                symbols: b"A,B",
            }),
            sender: b"",
            rcpts: vec![
                Rcpt {
                    address: b"x@y",
                    state: RcptState::Delivered,
                },
                Rcpt {
                    address: b"z@y",
                    state: RcptState::Pending,
                },
            ],
            facts: vec![],
            body: b"",
        }),
        Record::Scanned(ScanSummary {
            action: ScanAction::Quarantine,
            score_milli: 12_345,
            symbols: b"BAYES_99,URIBL",
        }),
        Record::Deferred {
            next_try_unix_ms: 1_700_000_300_000,
            attempts: 2,
            reason: b"451 4.3.0 try later",
        },
        Record::Delivered { rcpts: vec![0, 1] },
        Record::Bounced {
            rcpts: vec![1],
            reason: b"550 5.1.1 no such user",
        },
        Record::Quarantined { reason: b"spam" },
        Record::Deleted,
    ]
}

/// A segment with the header and one record of each kind; returns the bytes
/// and each record's (offset, len).
fn segment() -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut buf = Vec::new();
    encode_segment_header(
        &mut buf,
        &SegmentHeader {
            id: SEG,
            nonce: NONCE,
            created_unix_ms: 1,
        },
    );
    let mut spans = Vec::new();
    for (i, r) in all_kinds().iter().enumerate() {
        let start = buf.len();
        let n = encode_record(&mut buf, 100 + i as u64, NONCE, MessageId(i as u128), r)
            .expect("encodes");
        assert_eq!(n % 8, 0);
        spans.push((start, n));
    }
    (buf, spans)
}

fn read(bytes: &[u8]) -> (Vec<(u64, u64)>, Vec<mb_engine::spool::Corruption>) {
    let mut recs = Vec::new();
    let mut bad = Vec::new();
    for item in SegmentReader::new(SEG, bytes) {
        match item {
            Item::Record(d) => recs.push((d.seq, d.at.offset)),
            Item::Corruption(c) => bad.push(c),
        }
    }
    (recs, bad)
}

#[test]
fn every_kind_round_trips() {
    for (i, r) in all_kinds().iter().enumerate() {
        let mut buf = vec![0xAA; 3];
        let n = encode_record(&mut buf, i as u64, NONCE, MessageId(42), r).expect("encodes");
        assert_eq!(buf.len(), 3 + n);
        let (h, back) = decode_record(&buf[3..]).expect("decodes");
        assert_eq!(&back, r);
        assert_eq!(
            (h.seq, h.nonce, h.id, h.kind),
            (i as u64, NONCE, MessageId(42), r.kind())
        );
        assert_eq!(h.total_len(), n);
    }
}

#[test]
fn encoder_refuses_oversized_fields_and_leaves_the_buffer() {
    let long = vec![b'a'; 2000];
    let mut buf = vec![1, 2, 3];
    let r = Record::Quarantined { reason: &long };
    assert!(matches!(
        encode_record(&mut buf, 1, NONCE, MessageId(1), &r),
        Err(EncodeError::TooLarge {
            field: "reason",
            ..
        })
    ));
    assert_eq!(buf, [1, 2, 3]);
    let Record::Message(mut m) = message(b"x") else {
        unreachable!()
    };
    for r in &mut m.rcpts {
        r.state = RcptState::Delivered;
    }
    assert_eq!(
        encode_record(&mut buf, 1, NONCE, MessageId(1), &Record::Message(m)),
        Err(EncodeError::NoPendingRecipient)
    );
    assert_eq!(buf, [1, 2, 3]);
}

#[test]
fn clean_segment_reads_every_record_and_no_damage() {
    let (mut buf, spans) = segment();
    let (recs, bad) = read(&buf);
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(recs.len(), spans.len());
    // A pre-zeroed tail is the end of data, not damage.
    buf.resize(buf.len() + 4096, 0);
    let (recs2, bad) = read(&buf);
    assert!(bad.is_empty());
    assert_eq!(recs, recs2);
    // Empty and all-zero files are empty segments.
    assert_eq!(read(&[]), (vec![], vec![]));
    assert_eq!(read(&[0; 4096]), (vec![], vec![]));
}

/// Truncation at every byte offset: the records wholly before the cut are
/// read, at most one damage report covers the cut record, and it lies at or
/// after that record's start.
#[test]
fn truncation_at_every_offset() {
    let (buf, spans) = segment();
    for cut in 0..=buf.len() {
        let (recs, bad) = read(&buf[..cut]);
        let whole: Vec<usize> = spans
            .iter()
            .enumerate()
            .filter(|(_, (o, n))| {
                o + n <= cut || o + RECORD_HEADER_BYTES + payload(&buf, *o) <= cut
            })
            .map(|(i, _)| i)
            .collect();
        assert_eq!(recs.len(), whole.len(), "cut {cut}: {recs:?} {bad:?}");
        for (r, i) in recs.iter().zip(&whole) {
            assert_eq!(r.0, 100 + *i as u64);
        }
        assert!(bad.len() <= 1, "cut {cut}: {bad:?}");
        if let Some(c) = bad.first() {
            if cut < SEGMENT_HEADER_BYTES {
                assert_eq!(c.offset, 0);
            } else {
                let next = spans.get(whole.len()).map_or(usize::MAX, |s| s.0);
                assert_eq!(c.offset as usize, next, "cut {cut}");
                assert_eq!(c.reason, Damage::Truncated, "cut {cut}");
            }
        }
    }
}

fn payload(buf: &[u8], offset: usize) -> usize {
    u32::from_le_bytes(buf[offset + 8..offset + 12].try_into().expect("4")) as usize
}

/// A flipped bit anywhere: each record not containing the flipped byte is
/// still read; the damaged record is reported (unless the flip is in
/// padding, which no check covers and nothing reads).
#[test]
fn bit_flip_at_every_byte_loses_only_that_record() {
    let (buf, spans) = segment();
    for pos in 0..buf.len() {
        let mut b = buf.clone();
        b[pos] ^= 1 << (pos % 8);
        let (recs, bad) = read(&b);
        let hit = spans.iter().position(|(o, n)| pos >= *o && pos < o + n);
        for (i, _) in spans.iter().enumerate() {
            let present = recs.iter().any(|r| r.0 == 100 + i as u64);
            if Some(i) != hit {
                assert!(present, "flip at {pos}: record {i} lost; {bad:?}");
            }
        }
        match hit {
            Some(i) => {
                let (o, _) = spans[i];
                let in_padding = pos >= o + RECORD_HEADER_BYTES + payload(&buf, o);
                if !in_padding {
                    assert!(
                        bad.iter().any(|c| c.offset as usize == o),
                        "flip at {pos} in record {i} not reported: {bad:?}"
                    );
                    assert!(recs.iter().all(|r| r.0 != 100 + i as u64));
                }
            }
            None => {
                assert!(pos < SEGMENT_HEADER_BYTES);
                // Bytes 36..64 of the header are zero and not checked.
                if pos < 36 {
                    assert_eq!(bad.first().map(|c| c.offset), Some(0), "flip at {pos}");
                }
            }
        }
    }
}

#[test]
fn zero_hole_is_reported_and_skipped() {
    let (mut buf, spans) = segment();
    let (o, n) = spans[3];
    buf[o..o + n].fill(0);
    let (recs, bad) = read(&buf);
    assert_eq!(recs.len(), spans.len() - 1);
    assert_eq!(bad.len(), 1);
    assert_eq!(
        (bad[0].offset, bad[0].len, bad[0].reason),
        (o as u64, n as u64, Damage::Hole)
    );
}

#[test]
fn foreign_nonce_records_are_not_adopted() {
    // A record-shaped message body written under another nonce, placed at an
    // aligned offset after damage, is skipped by the resync.
    let (mut buf, spans) = segment();
    let mut forged = Vec::new();
    encode_record(&mut forged, 999, NONCE ^ 1, MessageId(9), &Record::Deleted).expect("enc");
    let (o, n) = spans[2];
    assert!(n >= forged.len());
    buf[o..o + forged.len()].copy_from_slice(&forged);
    let (recs, bad) = read(&buf);
    assert!(recs.iter().all(|r| r.0 != 999));
    assert_eq!(bad[0].reason, Damage::ForeignNonce);
    assert_eq!(recs.len(), spans.len() - 1);
}

#[test]
fn damaged_segment_header_keeps_the_records() {
    let (mut buf, spans) = segment();
    buf[0] = b'X';
    let (recs, bad) = read(&buf);
    assert_eq!(recs.len(), spans.len());
    assert_eq!(bad[0].offset, 0);
    // Wrong id in an intact header: reported, records still read.
    let (buf, _) = segment();
    let mut n = 0;
    let mut ids = 0;
    for item in SegmentReader::new(SegmentId(8), &buf) {
        match item {
            Item::Record(_) => n += 1,
            Item::Corruption(c) => {
                assert_eq!(c.reason, Damage::SegmentId);
                ids += 1;
            }
        }
    }
    assert_eq!((n, ids), (spans.len(), 1));
}

#[test]
fn huge_declared_lengths_do_not_allocate() {
    let (buf, spans) = segment();
    let (o, _) = spans[4];
    let mut b = buf.clone();
    b[o + 8..o + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    let (_, bad) = read(&b);
    assert_eq!(bad[0].reason, Damage::TooLong);
}

/// The fuzz target's invariants (engine/fuzz/fuzz_targets/spool_segment.rs)
/// on random bytes and on mutated valid segments, so CI runs them on stable:
/// no panic, the reader moves forward, every record it yields re-encodes to
/// the same bytes, recovery is a function of the bytes.
fn reader_invariants(bytes: &[u8]) {
    let mut end = 0u64;
    for item in SegmentReader::new(SEG, bytes) {
        match item {
            Item::Record(d) => {
                assert!(d.at.offset >= end, "reader went backwards");
                end = d.at.end();
                let (h, _) = decode_record(&bytes[d.at.offset as usize..]).expect("valid");
                let mut out = Vec::new();
                encode_record(&mut out, d.seq, h.nonce, d.id, &d.record).expect("re-encodes");
                let n = RECORD_HEADER_BYTES + h.payload_len as usize;
                let start = d.at.offset as usize;
                assert_eq!(&out[..n], &bytes[start..start + n]);
            }
            Item::Corruption(c) => {
                assert!(
                    c.offset >= end || c.offset == 0,
                    "damage reported backwards"
                );
                end = end.max(c.offset + c.len);
            }
        }
    }
    let a = mb_engine::spool::recover([(SEG, bytes)]);
    let b = mb_engine::spool::recover([(SEG, bytes)]);
    assert_eq!(a.queue, b.queue);
    assert_eq!(a.report, b.report);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
        reader_invariants(&data);
        let (mut seg, _) = segment();
        seg.truncate(SEGMENT_HEADER_BYTES);
        seg.extend_from_slice(&data);
        reader_invariants(&seg);
    }

    #[test]
    fn mutated_segments_never_panic(
        edits in proptest::collection::vec((proptest::prelude::any::<u16>(), proptest::prelude::any::<u8>()), 1..8),
        cut in proptest::prelude::any::<u16>(),
    ) {
        let (mut seg, _) = segment();
        for (pos, byte) in edits {
            let p = pos as usize % seg.len();
            seg[p] = byte;
        }
        let cut = cut as usize % (seg.len() + 1);
        reader_invariants(&seg[..cut]);
        reader_invariants(&seg);
    }
}

/// A message body made of record-shaped headers (right magic, version and
/// kind, huge lengths, a guessed nonce) after a damaged record: the resync
/// rejects each on the nonce before computing any CRC, so this finishes at
/// once instead of checksumming the rest of the segment at every offset.
#[test]
fn resync_through_a_body_of_forged_headers_is_linear() {
    let mut forged = Vec::new();
    while forged.len() < 256 * 1024 {
        let mut h = [0u8; RECORD_HEADER_BYTES];
        h[0..4].copy_from_slice(b"MBSR");
        h[4..6].copy_from_slice(&1u16.to_le_bytes());
        h[6] = 1;
        h[8..12].copy_from_slice(&(200_000u32).to_le_bytes());
        h[24..32].copy_from_slice(&(NONCE ^ 0xFF).to_le_bytes());
        forged.extend_from_slice(&h);
    }
    let mut buf = Vec::new();
    encode_segment_header(
        &mut buf,
        &SegmentHeader {
            id: SEG,
            nonce: NONCE,
            created_unix_ms: 1,
        },
    );
    let first = buf.len();
    encode_record(&mut buf, 1, NONCE, MessageId(1), &message(&forged)).expect("enc");
    encode_record(&mut buf, 2, NONCE, MessageId(2), &Record::Deleted).expect("enc");
    buf[first] ^= 1; // damage the big record's magic
    let started = std::time::Instant::now();
    let (recs, bad) = read(&buf);
    assert_eq!(recs.iter().map(|r| r.0).collect::<Vec<_>>(), [2]);
    assert_eq!(bad.len(), 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// The queue keeps the last deferral's reason for `mbctl queue show`, until
/// a compaction snapshot of the message (which recovery would not see it in).
#[test]
fn the_queue_keeps_the_last_deferral_reason() {
    use mb_engine::spool::{Location, Queue, REASON_BYTES_MAX};
    let mut q = Queue::new();
    q.add_segment(SegmentId(1));
    let id = MessageId(7);
    let at = |offset: u64| Location {
        segment: SegmentId(1),
        offset,
        len: 64,
    };
    let scanned = Record::Scanned(ScanSummary {
        action: ScanAction::Pass,
        score_milli: 0,
        symbols: b"",
    });
    q.apply(at(64), 1, id, &message(b"x")).expect("message");
    q.apply(at(128), 2, id, &scanned).expect("scanned");
    let long = vec![b'4'; REASON_BYTES_MAX];
    for (n, reason) in [b"451 4.3.0 try later".as_slice(), &long]
        .into_iter()
        .enumerate()
    {
        q.apply(
            at(192 + 64 * n as u64),
            3 + n as u64,
            id,
            &Record::Deferred {
                next_try_unix_ms: 1,
                attempts: 1 + n as u32,
                reason,
            },
        )
        .expect("deferred");
        let kept = &q.get(id).expect("live").last_reason;
        assert_eq!(kept.as_slice(), reason);
    }
    // a compaction snapshot (a newer Message record) starts afresh
    q.apply(at(320), 5, id, &message(b"x")).expect("snapshot");
    assert!(q.get(id).expect("live").last_reason.is_empty());
}
