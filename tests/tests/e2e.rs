//! mailborder end-to-end tests: real `mbd` and `mbctl` (from the workspace
//! target dir), private Postfix instances, miltertest, raw sockets.
//!
//! Run: `cargo build --workspace --bins && cargo nextest run --workspace`
//! (or `cargo test --workspace`), as root, with `postfix`, `miltertest` and
//! `swaks` installed (`.ci/run` does all of it). Every test has its own temp
//! dir and ports, so they run in parallel.

#[path = "e2e/harness_selfcheck.rs"]
mod harness_selfcheck;
