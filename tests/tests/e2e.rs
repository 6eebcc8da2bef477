//! mailborder end-to-end tests: real `mbd` and `mbctl` (from the workspace
//! target dir), private Postfix instances, miltertest, raw sockets.
//!
//! Run: `cargo build --workspace --bins && cargo nextest run --workspace`
//! (or `cargo test --workspace`), as root, with `postfix`, `miltertest` and
//! `swaks` installed (`.ci/run` does all of it). Every test has its own temp
//! dir and ports, so they run in parallel. Missing tools fail the tests.
//!
//! Modules:
//! - `harness_selfcheck`: the Postfix harness without mbd (trust the rest);
//! - `milter_postfix`: mbd behind Postfix 3.7, every action, outages, reload;
//! - `milter_miltertest`: mbd driven by miltertest scripts;
//! - `robustness`: broken peers, many idle connections, SIGTERM;
//! - `ctl`: mbctl config verify / status / shard status / test-socket / reload;
//! - `eval_postfix`: the eval policy engine behind Postfix, milter and
//!   policy delegation doors, reloads of broken files, mbctl policy/ratelimit.
//! - `cluster_ratelimit`: two mbd nodes sharing rate limits through a real
//!   redis-server (policy delegation traffic, a Redis outage and restart).
//! - `filter_postfix`: the content filter (SpamAssassin-format rules) behind
//!   Postfix: X-Spam-* headers, hold queue and 550 by score thresholds.
//! - `delivery_postfix`: the after-queue content filter (`[delivery]`)
//!   behind Postfix's `content_filter`: reinjection, retries, DSNs.
//! - `delivery_crash`: SIGKILL of mbd three times under load; every
//!   message that got a 250 is delivered.
//! - `delivery_ctl`: `mbctl queue` and `mbctl quarantine` on the spool.
//! - `delivery_reuse`: a delivery connection kept for the next message
//!   (`relay_idle_time`), and a relay hanging up on it.
//! - `delivery_tls`: STARTTLS to the relay (`relay_tls`): a verified
//!   certificate, a wrong CA (deferred, no plaintext), `may` and `encrypt`
//!   against a relay without STARTTLS.

#[path = "e2e/cluster_ratelimit.rs"]
mod cluster_ratelimit;
#[path = "e2e/common.rs"]
mod common;
#[path = "e2e/ctl.rs"]
mod ctl;
#[path = "e2e/delivery_crash.rs"]
mod delivery_crash;
#[path = "e2e/delivery_ctl.rs"]
mod delivery_ctl;
#[path = "e2e/delivery_postfix.rs"]
mod delivery_postfix;
#[path = "e2e/delivery_reuse.rs"]
mod delivery_reuse;
#[path = "e2e/delivery_tls.rs"]
mod delivery_tls;
#[path = "e2e/eval_postfix.rs"]
mod eval_postfix;
#[path = "e2e/filter_postfix.rs"]
mod filter_postfix;
#[path = "e2e/harness_selfcheck.rs"]
mod harness_selfcheck;
#[path = "e2e/milter_miltertest.rs"]
mod milter_miltertest;
#[path = "e2e/milter_postfix.rs"]
mod milter_postfix;
#[path = "e2e/robustness.rs"]
mod robustness;
