//! mb-bench: criterion benches and the milter load generator.
//!
//! Modules:
//! - [`target`]: socket specs (`unix:/path`, `inet:host:port`, …) and blocking
//!   connections with timeouts.
//! - [`corpus`]: messages to replay, split into headers and a CRLF body the way
//!   Postfix hands them to a milter; or synthesised `smtp-source` style.
//! - [`mta`]: the MTA side of the milter protocol, behaving like Postfix 3.7.
//! - [`loadgen`]: the load generator (one std thread per connection, open- or
//!   closed-loop, hdrhistogram latencies, CPU accounting).
//! - [`units`]: duration parsing and human formatting shared by the binaries.
//! - [`sys`]: `getrusage`, `/proc/PID/stat` and CPU pinning (the only `unsafe`).
#![warn(missing_docs)]

pub mod corpus;
pub mod loadgen;
pub mod mta;
pub mod sys;
/// Milter endpoints, shared with `mbctl test-socket`.
pub use mbctl::endpoint as target;
/// CLI duration parsing and formatting, shared with `mbctl`.
pub use mbctl::units;
