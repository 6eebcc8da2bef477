//! `mbctl queue …` and `mbctl quarantine …`: the after-queue spool of a
//! running mbd (`[delivery] enabled`).
//!
//! ```text
//! mbctl queue list [--limit N]        every spooled message, oldest first
//! mbctl queue show ID                 envelope, recipients' state, header
//! mbctl queue retry ID                a deferred message is due now
//! mbctl queue delete ID               removed without delivery (no DSN)
//! mbctl queue flush                   every deferred message is due now
//! mbctl quarantine list [--limit N]   held messages
//! mbctl quarantine show ID
//! mbctl quarantine release ID         delivered (with its X-Spam headers)
//! mbctl quarantine delete ID
//! ```
//!
//! IDs are the queue ids of `250 2.0.0 Ok: queued as <ID>` (hex, any case).

use std::fmt::Write as _;

use clap::Subcommand;
use mb_engine::ctl_api::{Answer, QueueEntry, QueueMessage, Request};

use crate::client::Client;
use crate::table::{Align, Table};

/// Entries listed by default.
const LIST_LIMIT_DEFAULT: u32 = 1000;

/// `mbctl queue …`.
#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// Spooled messages of every shard, oldest first.
    List {
        /// Most messages shown.
        #[arg(long, default_value_t = LIST_LIMIT_DEFAULT)]
        limit: u32,
    },
    /// One message: envelope, recipients' state, scan, header.
    Show {
        /// Queue id (as in `queued as ID`).
        id: String,
    },
    /// Make a deferred message due now.
    Retry {
        /// Queue id.
        id: String,
    },
    /// Remove a message without delivering it (no DSN is sent).
    Delete {
        /// Queue id.
        id: String,
    },
    /// Make every deferred message due now.
    Flush,
}

/// `mbctl quarantine …`.
#[derive(Debug, Subcommand)]
pub enum QuarantineCmd {
    /// Messages held by the content filter, oldest first.
    List {
        /// Most messages shown.
        #[arg(long, default_value_t = LIST_LIMIT_DEFAULT)]
        limit: u32,
    },
    /// One held message: envelope, scan, header.
    Show {
        /// Queue id.
        id: String,
    },
    /// Deliver a held message.
    Release {
        /// Queue id.
        id: String,
    },
    /// Remove a held message without delivering it.
    Delete {
        /// Queue id.
        id: String,
    },
}

/// The request for a queue command.
#[must_use]
pub fn queue_request(cmd: &QueueCmd) -> Request {
    match cmd {
        QueueCmd::List { limit } => Request::QueueList {
            quarantined: false,
            limit: *limit,
        },
        QueueCmd::Show { id } => Request::QueueShow {
            id: id.clone(),
            quarantined: false,
        },
        QueueCmd::Retry { id } => Request::QueueRetry { id: id.clone() },
        QueueCmd::Delete { id } => Request::QueueDelete {
            id: id.clone(),
            quarantined: false,
        },
        QueueCmd::Flush => Request::QueueFlush,
    }
}

/// The request for a quarantine command.
#[must_use]
pub fn quarantine_request(cmd: &QuarantineCmd) -> Request {
    match cmd {
        QuarantineCmd::List { limit } => Request::QueueList {
            quarantined: true,
            limit: *limit,
        },
        QuarantineCmd::Show { id } => Request::QueueShow {
            id: id.clone(),
            quarantined: true,
        },
        QuarantineCmd::Release { id } => Request::QuarantineRelease { id: id.clone() },
        QuarantineCmd::Delete { id } => Request::QueueDelete {
            id: id.clone(),
            quarantined: true,
        },
    }
}

/// Sends `request` and prints the answer (JSON or text).
///
/// # Errors
/// Transport failures and error answers (the daemon's text).
pub fn run(client: &Client, request: &Request, json: bool) -> anyhow::Result<()> {
    let answer = client.request(request)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer_json(&answer))?);
        return Ok(());
    }
    match &answer {
        Answer::Queue { entries, total } => print!("{}", list_text(entries, *total)),
        Answer::QueueMessage(m) => print!("{}", show_text(m)),
        Answer::QueueChanged { count } => {
            let what = match request {
                Request::QueueRetry { .. } | Request::QueueFlush => "due now",
                Request::QuarantineRelease { .. } => "released",
                _ => "deleted",
            };
            println!("{count} message(s) {what}");
        }
        other => anyhow::bail!("mbd answered with {other:?}"),
    }
    Ok(())
}

fn answer_json(answer: &Answer) -> serde_json::Value {
    match answer {
        Answer::Queue { entries, total } => {
            serde_json::json!({ "entries": entries, "total": total })
        }
        Answer::QueueMessage(m) => serde_json::to_value(m).unwrap_or_default(),
        Answer::QueueChanged { count } => serde_json::json!({ "count": count }),
        other => serde_json::to_value(other).unwrap_or_default(),
    }
}

/// `2026-12-06 20:41:45` (UTC) for a Unix ms time.
fn utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = mb_engine::delivery::dsn::civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The listing as a table, with a count line.
#[must_use]
pub fn list_text(entries: &[QueueEntry], total: u64) -> String {
    use Align::{Left as L, Right as R};
    let mut t = Table::new(&[
        ("id", L),
        ("shard", R),
        ("phase", L),
        ("received (UTC)", L),
        ("tries", R),
        ("next try (UTC)", L),
        ("rcpts", R),
        ("bytes", R),
        ("scan", L),
    ]);
    for e in entries {
        t.row(vec![
            e.id.clone(),
            e.shard.to_string(),
            e.phase.clone(),
            utc(e.received_unix_ms),
            e.attempts.to_string(),
            e.next_try_unix_ms.map(utc).unwrap_or_else(|| "-".into()),
            format!("{}/{}", e.pending, e.recipients),
            e.bytes.to_string(),
            e.scan
                .as_ref()
                .map(|(a, s)| format!("{a} {s:.1}"))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut out = t.render();
    let _ = writeln!(
        out,
        "{} message(s){}",
        total,
        if (entries.len() as u64) < total {
            format!(", {} shown (--limit)", entries.len())
        } else {
            String::new()
        }
    );
    out
}

/// One message in detail.
#[must_use]
pub fn show_text(m: &QueueMessage) -> String {
    let e = &m.entry;
    let mut out = String::new();
    let _ = writeln!(out, "id:        {} (shard {})", e.id, e.shard);
    let _ = writeln!(out, "phase:     {}", e.phase);
    let _ = writeln!(out, "received:  {} UTC", utc(e.received_unix_ms));
    let _ = writeln!(out, "attempts:  {}", e.attempts);
    if let Some(t) = e.next_try_unix_ms {
        let _ = writeln!(out, "next try:  {} UTC", utc(t));
    }
    if let Some(reason) = &e.last_reason {
        let _ = writeln!(out, "deferred:  {reason}");
    }
    let _ = writeln!(out, "size:      {} bytes", m.size);
    let sender = if m.sender.is_empty() { "<>" } else { &m.sender };
    let _ = writeln!(out, "sender:    {sender}");
    for (address, state) in &m.recipients {
        let _ = writeln!(out, "recipient: {address} ({state})");
    }
    if let Some((action, score)) = &e.scan {
        let _ = writeln!(out, "scan:      {action}, score {score:.1}");
        if !m.symbols.is_empty() {
            let _ = writeln!(out, "symbols:   {}", m.symbols);
        }
    }
    for (k, v) in &m.facts {
        let _ = writeln!(out, "fact:      {k}={v}");
    }
    let _ = writeln!(out, "\n{}", m.header.trim_end());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_796_590_212_669), "2026-12-06 20:50:12");
    }

    #[test]
    fn list_says_how_many_were_left_out() {
        let e = QueueEntry {
            id: "1A2B".into(),
            shard: 1,
            phase: "deferred".into(),
            received_unix_ms: 0,
            attempts: 2,
            next_try_unix_ms: Some(60_000),
            recipients: 2,
            pending: 1,
            bytes: 1234,
            scan: Some(("pass".into(), 0.5)),
            last_reason: Some("TLS handshake with the relay failed".into()),
        };
        let text = list_text(std::slice::from_ref(&e), 3);
        assert!(text.contains("1A2B") && text.contains("1/2") && text.contains("pass 0.5"));
        assert!(text.contains("3 message(s), 1 shown"), "{text}");
        let shown = show_text(&QueueMessage {
            entry: e,
            sender: String::new(),
            recipients: Vec::new(),
            facts: Vec::new(),
            symbols: String::new(),
            header: String::new(),
            size: 0,
        });
        assert!(
            shown.contains("deferred:  TLS handshake with the relay failed"),
            "{shown}"
        );
    }
}
