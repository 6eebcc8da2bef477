//! filter: the content scanner (issue 4), built in pieces.
//!
//! - [`mime`]: the message model (MIME parts, decoded headers, text and
//!   HTML-rendered bodies, attachments, URLs) with hard caps.
//! - [`sa`]: SpamAssassin `.cf` rule files read into rule definitions, with
//!   a report of what is active and what is skipped, and why.
//! - [`matcher`]: pattern sets compiled into one Hyperscan database per class
//!   (prefilter plus confirmation where Hyperscan cannot run a pattern
//!   exactly), aho-corasick for literals, and a naive oracle.
//! - [`scan`]: the three put together: rules per class, one scan per class,
//!   meta rules, score and symbols.
//! - [`content`]: the filter as the daemon runs it: thresholds, actions,
//!   `X-Spam-*` headers, per-shard scratch.

pub mod attach;
pub mod content;
pub mod matcher;
pub mod mime;
pub mod sa;
pub mod scan;
