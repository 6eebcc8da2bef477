//! The spool segment reader and recovery on arbitrary bytes, both as a whole
//! file and behind a valid segment header (so that records are decoded).
//! Invariants: no panic and no huge allocation (every length is bounded); the
//! reader always moves forward; every record it yields re-encodes to the
//! same header and payload bytes; recovery is a function of the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mb_engine::spool::{
    decode_record, encode_record, encode_segment_header, recover, Item, SegmentHeader, SegmentId,
    SegmentReader, RECORD_HEADER_BYTES,
};

const SEG: SegmentId = SegmentId(1);

fn check(bytes: &[u8]) {
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
                assert_eq!(&out[..n], &bytes[start..start + n], "re-encoding differs");
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
    let a = recover([(SEG, bytes)]);
    let b = recover([(SEG, bytes)]);
    assert_eq!(a.queue, b.queue);
    assert_eq!(a.report, b.report);
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let nonce = 0x0123_4567_89AB_CDEF;
    let mut seg = Vec::with_capacity(64 + data.len());
    encode_segment_header(
        &mut seg,
        &SegmentHeader {
            id: SEG,
            nonce,
            created_unix_ms: 0,
        },
    );
    seg.extend_from_slice(data);
    check(&seg);
});
