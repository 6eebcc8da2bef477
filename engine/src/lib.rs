//! mailborder engine: the pure logic of the gateway.
//!
//! No async runtime, no I/O, no clock: every function here takes bytes and
//! snapshots and returns bytes, decisions and events, so it can be tested with
//! byte fixtures at every chunk size, fuzzed and benchmarked without a reactor.
//! The runtime (`mb-shards`, binary `mbd`) drives these state machines over
//! sockets; `mbctl` shares the config checker and the control wire types.
//!
//! Map:
//! - [`milter`]: milter protocol v6, filter side (frames, commands, replies,
//!   the per-connection [`milter::Conversation`]).
//! - [`policy`]: our rules, compiled from config into lookup tables; answers at
//!   MAIL, RCPT and end of message. The seam for the eval stage (issue 3).
//! - [`eval`]: the policy engine (lists, recipients, rate limits, GeoIP,
//!   rules) answering at MAIL/RCPT and over policy delegation.
//! - [`policyd`]: the Postfix policy delegation protocol (sans-I/O codec).
//! - [`verdict`]: what a stage decided and why.
//! - [`config`]: one TOML file, parsed and checked with every diagnostic at once.
//! - [`ctl_api`]: `mbctl` ⇄ `mbd` request/response types and framing.
//! - [`limits`]: every bound in one place.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod config;
pub mod ctl_api;
pub mod delivery;
pub mod eval;
pub mod filter;
pub mod limits;
pub mod milter;
pub mod policy;
pub mod policyd;
pub mod smtp;
pub mod spool;
pub mod verdict;
