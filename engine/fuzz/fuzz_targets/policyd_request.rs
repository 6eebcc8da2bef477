//! policyd `Decoder` + `decode_response` on raw and alphabet-mapped bytes.
//! Invariants: no panic; consumed bytes are within the buffer; whole-buffer
//! and byte-at-a-time decoding give the same requests and error; whatever
//! decodes re-encodes to a request that decodes the same (values with CR
//! excepted: encode rewrites CR).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mb_engine::policyd::{decode_response, DecodeError, Decoder, Limits, Request};

/// Bytes that mean something to the codec.
const ALPHABET: &[u8] = b"ab_=\n\n\r\0\xff\xc3\xa9 x1";

const LIMITS: Limits = Limits {
    line_bytes_max: 32,
    request_bytes_max: 512,
    attributes_max: 8,
};

fn drive(wire: &[u8], chunk: usize) -> (Vec<Request>, Option<DecodeError>) {
    let mut dec = Decoder::new(LIMITS);
    let mut buf = Vec::new();
    let mut rest = wire;
    let mut out = Vec::new();
    loop {
        match dec.decode(&buf) {
            Ok(Some((req, used))) => {
                assert!(used > 0 && used <= buf.len());
                out.push(req);
                buf.drain(..used);
            }
            Ok(None) if rest.is_empty() => return (out, None),
            Ok(None) => {
                let n = chunk.min(rest.len());
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
            }
            Err(e) => return (out, Some(e)),
        }
    }
}

fn check(wire: &[u8]) {
    let whole = drive(wire, wire.len().max(1));
    assert_eq!(whole, drive(wire, 1));
    for r in whole
        .0
        .iter()
        .filter(|r| !r.iter().any(|(_, v)| v.contains('\r')))
    {
        let mut again = Vec::new();
        r.encode(&mut again);
        let back = Decoder::new(Limits::default()).decode(&again);
        assert_eq!(back, Ok(Some((r.clone(), again.len()))));
    }
    let _ = decode_response(wire);
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mapped: Vec<u8> = data
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()])
        .collect();
    check(&mapped);
});
