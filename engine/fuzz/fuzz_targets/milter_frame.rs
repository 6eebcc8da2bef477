//! FrameDecoder + Command::decode (filter side) on raw and alphabet-mapped
//! bytes. Invariants: no panic; decode is a projection (decode, encode, decode
//! gives the same command).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mb_engine_fuzz::{check_command, frames, to_alphabet};

fuzz_target!(|data: &[u8]| {
    frames(data, check_command);
    frames(&to_alphabet(data), check_command);
});
