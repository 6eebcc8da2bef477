//! The part of `mbctl` other tools reuse: milter endpoints (socket specs and
//! connections with timeouts) and CLI units, shared with the load generator in
//! `mb-bench`.
#![forbid(unsafe_code)]

pub mod endpoint;
pub mod units;
