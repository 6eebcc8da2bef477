//! Shared pieces of the milter fuzz targets.
//!
//! Random bytes rarely form a valid length prefix or payload layout, so each
//! target runs its input twice: as is, and mapped onto [`ALPHABET`] (command
//! and reply letters, NUL, small integers, family bytes, digits), the way
//! mail-parser's `into_alphabet` steers its fuzzer onto the grammar.
#![forbid(unsafe_code)]

use mb_engine::milter::command::Command;
use mb_engine::milter::frame::FrameDecoder;
use mb_engine::milter::reply::{Reply, Response};
use mb_engine::milter::RawFrame;

/// Bytes that mean something to the milter codec.
pub const ALPHABET: &[u8] =
    b"ABCDEHKLMNOQRTU+-24abcdefhilmpqrsty\0\x01\x02\x03\x04\x05\x0c\x0d\xff46LU0559 .<>@{}\r\n";

/// Maps every byte onto [`ALPHABET`].
#[must_use]
pub fn to_alphabet(data: &[u8]) -> Vec<u8> {
    data.iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()])
        .collect()
}

/// The frames at the front of `data` (stops at the first incomplete or
/// refused frame), then the first byte as a code with the rest as payload, so
/// every payload decoder is reached even when the framing does not line up.
pub fn frames(data: &[u8], mut each: impl FnMut(RawFrame<'_>)) {
    let decoder = FrameDecoder::new(64 * 1024);
    let mut rest = data;
    while let Ok(Some((frame, used))) = decoder.decode(rest) {
        assert!(used > 4 && used <= rest.len());
        each(frame);
        rest = &rest[used..];
    }
    if let Some((&code, payload)) = data.split_first() {
        each(RawFrame { code, payload });
    }
}

/// Decodes one frame as a command; whatever decodes must survive encode and
/// decode unchanged.
pub fn check_command(frame: RawFrame<'_>) {
    let Ok(command) = Command::decode(frame) else {
        return;
    };
    assert_eq!(command.code(), frame.code);
    let mut wire = Vec::new();
    command.encode(&mut wire);
    let (again, used) = FrameDecoder::new(u32::MAX).decode(&wire).unwrap().unwrap();
    assert_eq!(used, wire.len());
    assert_eq!(Command::decode(again), Ok(command));
}

/// Decodes one frame as a filter response; same projection property, except
/// REPLYCODE text with CR/LF, which encode sanitises by design.
pub fn check_response(frame: RawFrame<'_>) {
    let Ok(response) = Response::decode(frame) else {
        return;
    };
    assert_eq!(response.code(), frame.code);
    if let Response::Reply(Reply::ReplyCode { text, .. }) = &response {
        if text.contains(['\r', '\n']) {
            return;
        }
    }
    let mut wire = Vec::new();
    response.encode(&mut wire);
    let (again, used) = FrameDecoder::new(u32::MAX).decode(&wire).unwrap().unwrap();
    assert_eq!(used, wire.len());
    assert_eq!(Response::decode(again), Ok(response));
}
