//! FrameDecoder + Response::decode (MTA side) on raw and alphabet-mapped
//! bytes. Invariants: no panic; decode is a projection except for REPLYCODE
//! text with CR/LF, which encode turns into spaces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mb_engine_fuzz::{check_response, frames, to_alphabet};

fuzz_target!(|data: &[u8]| {
    frames(data, check_response);
    frames(&to_alphabet(data), check_response);
});
