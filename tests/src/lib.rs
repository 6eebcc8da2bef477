//! mailborder end-to-end test support: real `mbd`/`mbctl` binaries, private
//! Postfix instances, miltertest scripts and raw milter sockets.
//!
//! Used by the single test binary `tests/e2e.rs`. Build the binaries first:
//! `cargo build --workspace --bins && cargo nextest run --workspace`.

pub mod harness;
pub mod miltertest;
pub mod postfix;
pub mod relay;
pub mod smtp;
pub mod wire;
