//! eval: the policy engine, answered before DATA (milter MAIL/RCPT) and over
//! Postfix policy delegation (`check_policy_service`).
//!
//! Pure and clock-free like the rest of the engine: callers pass the session
//! [`Facts`] (including the time) and get decisions with their reasons.
//!
//! Map:
//! - [`facts`]: what a decision is computed from, and where a policy source
//!   line came from ([`Origin`], [`FileDiagnostic`]).
//! - [`lists`]: sender block/allow lists (addresses, domains, subdomains, IPs
//!   and CIDR ranges, HELO names) and their file format.
//! - [`recipients`]: accepted domains and valid recipients (1,000,000 entries
//!   cost one hash probe).
//! - [`geoip`]: country and continent of a client address from an mmdb.
//! - [`ratelimit`]: token buckets shared by all shards as atomics (GCRA).
//! - [`rules`]: the custom rule language, compiled once per reload.
//! - [`source`]: the policy file (tenant → domain → recipient tree) as data.
//! - [`tree`]: the compiled tree and the decision at RCPT.

pub mod facts;
pub mod geoip;
pub mod lists;
pub mod ratelimit;
pub mod recipients;
pub mod rules;
pub mod source;
pub mod tree;

pub use facts::{Code, Facts, FileDiagnostic, Origin};
pub use tree::{Ask, EvalDecision, PolicyTree};
