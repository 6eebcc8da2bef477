//! Human output: aligned text tables and unit formatting.
//!
//! Everything here returns `String`s; only `main` prints. Numbers are
//! right-aligned, text left-aligned, columns separated by two spaces:
//!
//! ```text
//! shard  cpu  conns   max  ...  p50    p99    p99.9  buffers
//!     0    0     12  4096  ...  85µs   1.2ms  3.4ms  48.0 KiB
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use mb_engine::ctl_api::{DaemonStatus, ShardStatus};

/// Column alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A text table with a header row.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles and alignments.
    #[must_use]
    pub fn new(header: &[(&str, Align)]) -> Self {
        Self {
            header: header.iter().map(|(h, a)| ((*h).to_string(), *a)).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells print empty, extra cells are ignored.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders the table, one line per row, each ending in `\n`, without
    /// trailing spaces.
    #[must_use]
    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|(h, _)| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().take(n).enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|(h, _)| h.clone()).collect();
        for cells in std::iter::once(&header).chain(self.rows.iter()) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = cells.get(i).map_or("", String::as_str);
                let pad = width.saturating_sub(cell.chars().count());
                if i > 0 {
                    line.push_str("  ");
                }
                match self.header[i].1 {
                    Align::Left => {
                        line.push_str(cell);
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The after-queue figures of `mbctl shard status` (shards with `[delivery]`
/// on): spool depth by phase, then counters since start.
#[must_use]
pub fn queue_table(shards: &[ShardStatus]) -> String {
    use Align::Right as R;
    let mut t = Table::new(&[
        ("shard", R),
        ("queued", R),
        ("unscanned", R),
        ("active", R),
        ("deferred", R),
        ("held", R),
        ("in", R),
        ("out", R),
        ("received", R),
        ("delivered", R),
        ("bounced", R),
        ("deferrals", R),
        ("dsns", R),
        ("syncs", R),
        ("segments", R),
    ]);
    for s in shards {
        let Some(q) = &s.queue else { continue };
        t.row(vec![
            s.shard.to_string(),
            q.messages.to_string(),
            q.unscanned.to_string(),
            q.active.to_string(),
            q.deferred.to_string(),
            q.quarantined.to_string(),
            q.ingress_connections.to_string(),
            q.delivery_connections.to_string(),
            q.received.to_string(),
            q.delivered.to_string(),
            q.bounced.to_string(),
            q.deferrals.to_string(),
            q.dsns.to_string(),
            q.syncs.to_string(),
            q.segments.to_string(),
        ]);
    }
    let mut out = t.render();
    for s in shards {
        if s.queue.is_some_and(|q| q.broken) {
            let _ = writeln!(
                out,
                "shard {}: the spool cannot be written; new messages get 451",
                s.shard
            );
        }
    }
    out
}

/// Formats an uptime as `1h 2m 3s` (`2d 0h 0m 5s` past a day, `42s` under a minute).
#[must_use]
pub fn format_uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h {m}m {s}s")
    } else if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// Formats microseconds: `85µs`, `1.2ms`, `3.40s`.
#[must_use]
pub fn format_micros(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

/// Formats a [`Duration`] with [`format_micros`]'s units.
#[must_use]
pub fn format_duration(d: Duration) -> String {
    format_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Formats bytes as MiB with one decimal (`12.3 MiB`).
#[must_use]
pub fn format_mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Formats bytes with a binary unit: `512 B`, `48.0 KiB`, `1.5 MiB`, `2.0 GiB`.
#[must_use]
pub fn format_bytes(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if bytes < 1024 {
        format!("{bytes} B")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else {
        format!("{:.1} GiB", b / (KIB * KIB * KIB))
    }
}

/// `mbctl status` as a two-column table.
#[must_use]
pub fn status_text(st: &DaemonStatus) -> String {
    let mut t = Table::new(&[("", Align::Left), ("", Align::Left)]);
    let mut kv = |k: &str, v: String| t.row(vec![k.to_string(), v]);
    kv("version", st.version.clone());
    kv("pid", st.pid.to_string());
    kv("uptime", format_uptime(st.uptime_secs));
    kv(
        "config",
        st.config_path
            .clone()
            .unwrap_or_else(|| "(embedded defaults)".to_string()),
    );
    kv("generation", st.config_generation.to_string());
    kv(
        "listeners",
        if st.listeners.is_empty() {
            "(none)".to_string()
        } else {
            st.listeners.join(", ")
        },
    );
    kv("control", st.control_socket.clone());
    kv("shards", st.shards.to_string());
    kv("connections", st.connections.to_string());
    kv("messages", st.messages.to_string());
    kv("rss", format_mib(st.rss_bytes));
    kv(
        "draining",
        if st.draining {
            "yes".to_string()
        } else {
            "no".to_string()
        },
    );
    kv(
        "last reload error",
        st.last_reload_error
            .clone()
            .unwrap_or_else(|| "(none)".to_string()),
    );
    if let Some(c) = &st.cluster {
        let state = if c.connected {
            "connected"
        } else {
            "NOT connected"
        };
        kv(
            "cluster",
            format!("{} {state}, sync every {} ms", c.redis, c.interval_ms),
        );
        kv(
            "cluster syncs",
            format!(
                "{} ok, {} buckets / {} events sent, {} merges ({} absent), {} events dropped",
                c.syncs, c.buckets_sent, c.events_sent, c.merges, c.merges_absent, c.events_dropped
            ),
        );
        kv(
            "cluster errors",
            match &c.last_error {
                Some(e) => format!("{} (last: {e})", c.errors),
                None => c.errors.to_string(),
            },
        );
    }
    // The header row is empty for a key/value table: drop it.
    let rendered = t.render();
    rendered
        .split_once('\n')
        .map_or(rendered.clone(), |(_, rest)| rest.to_string())
}

/// `mbctl shard status` as a table, one row per shard.
#[must_use]
pub fn shards_table(shards: &[ShardStatus]) -> String {
    use Align::Right as R;
    let mut t = Table::new(&[
        ("shard", R),
        ("cpu", R),
        ("conns", R),
        ("max", R),
        ("total", R),
        ("refused", R),
        ("errors", R),
        ("msgs", R),
        ("accept", R),
        ("reject", R),
        ("tempfail", R),
        ("discard", R),
        ("quar", R),
        ("scanned", R),
        ("batch", R),
        ("p50", R),
        ("p99", R),
        ("p99.9", R),
        ("buffers", R),
    ]);
    for s in shards {
        t.row(vec![
            s.shard.to_string(),
            s.cpu.map_or_else(|| "-".to_string(), |c| c.to_string()),
            s.connections.to_string(),
            s.connections_max.to_string(),
            s.connections_total.to_string(),
            s.connections_refused.to_string(),
            s.protocol_errors.to_string(),
            s.messages.to_string(),
            s.verdicts.accept.to_string(),
            s.verdicts.reject.to_string(),
            s.verdicts.tempfail.to_string(),
            s.verdicts.discard.to_string(),
            s.verdicts.quarantine.to_string(),
            s.scanned.to_string(),
            // the content filter's mean batch
            if s.scan_batches == 0 {
                "-".to_string()
            } else {
                format!("{:.1}", s.scanned as f64 / s.scan_batches as f64)
            },
            format_micros(s.latency_p50_us),
            format_micros(s.latency_p99_us),
            format_micros(s.latency_p999_us),
            format_bytes(s.buffer_bytes),
        ]);
    }
    let mut out = t.render();
    if shards.is_empty() {
        let _ = writeln!(out, "(no shards)");
    }
    if shards.iter().any(|s| s.queue.is_some()) {
        out.push('\n');
        out.push_str(&queue_table(shards));
    }
    out
}

/// `mbctl policy test`: one block per recipient with its decision and reasons.
pub fn policy_traces(traces: &[mb_engine::ctl_api::PolicyTrace]) -> String {
    let mut out = String::new();
    for t in traces {
        out.push_str(&format!("{}: {}", t.recipient, t.decision));
        if let Some(reply) = &t.reply {
            out.push_str(&format!(" ({reply})"));
        }
        out.push('\n');
        if t.reasons.is_empty() {
            out.push_str("  no rule matched\n");
        }
        for (rule, detail) in &t.reasons {
            out.push_str(&format!("  {rule}: {detail}\n"));
        }
    }
    out
}

/// `mbctl ratelimit show`: one row per bucket.
pub fn buckets(key: &str, rows: &[mb_engine::ctl_api::BucketRow]) -> String {
    if rows.is_empty() {
        return format!(
            "no bucket for `{key}`: nothing counted for it yet (a fresh bucket is full), or no limit has this key\n"
        );
    }
    let mut out = format!(
        "{:<24} {:<40} {:<12} {:>9} {:>12}\n",
        "LIMIT", "KEY", "WINDOW", "REMAINING", "RETRY AFTER"
    );
    for r in rows {
        let retry = if r.retry_after_ms == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}s", r.retry_after_ms as f64 / 1000.0)
        };
        out.push_str(&format!(
            "{:<24} {:<40} {:<12} {:>9} {:>12}\n",
            r.limit, r.key, r.window, r.remaining, retry
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mb_engine::ctl_api::VerdictCounts;

    #[test]
    fn uptime_formats() {
        assert_eq!(format_uptime(0), "0s");
        assert_eq!(format_uptime(59), "59s");
        assert_eq!(format_uptime(61), "1m 1s");
        assert_eq!(format_uptime(3723), "1h 2m 3s");
        assert_eq!(format_uptime(3600), "1h 0m 0s");
        assert_eq!(format_uptime(86_400 + 5), "1d 0h 0m 5s");
    }

    #[test]
    fn micros_format() {
        assert_eq!(format_micros(0), "0µs");
        assert_eq!(format_micros(85), "85µs");
        assert_eq!(format_micros(999), "999µs");
        assert_eq!(format_micros(1_000), "1.0ms");
        assert_eq!(format_micros(1_234), "1.2ms");
        assert_eq!(format_micros(999_000), "999.0ms");
        assert_eq!(format_micros(3_400_000), "3.40s");
        assert_eq!(format_duration(Duration::from_secs(5)), "5.00s");
    }

    #[test]
    fn bytes_format() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(48 * 1024), "48.0 KiB");
        assert_eq!(format_bytes(3 << 19), "1.5 MiB");
        assert_eq!(format_mib(64 << 20), "64.0 MiB");
    }

    #[test]
    fn table_aligns_and_trims() {
        let mut t = Table::new(&[("name", Align::Left), ("n", Align::Right)]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["longer".into(), "12345".into()]);
        t.row(vec!["short".into()]);
        assert_eq!(
            t.render(),
            "name        n\na           1\nlonger  12345\nshort\n"
        );
    }

    #[test]
    fn table_counts_chars_not_bytes() {
        let mut t = Table::new(&[("p50", Align::Right), ("x", Align::Left)]);
        t.row(vec!["85µs".into(), "y".into()]);
        assert_eq!(t.render(), " p50  x\n85µs  y\n");
    }

    #[test]
    fn shard_table_has_every_column() {
        let s = ShardStatus {
            shard: 1,
            cpu: Some(1),
            connections: 12,
            connections_max: 4096,
            connections_total: 1000,
            connections_refused: 0,
            protocol_errors: 2,
            policy_requests: 0,
            messages: 990,
            verdicts: VerdictCounts {
                accept: 980,
                reject: 5,
                tempfail: 3,
                discard: 1,
                quarantine: 1,
            },
            scanned: 700,
            scan_batches: 280,
            latency_p50_us: 85,
            latency_p99_us: 1_234,
            latency_p999_us: 3_456,
            buffer_bytes: 48 * 1024,
            config_generation: 1,
            queue: None,
        };
        let out = shards_table(std::slice::from_ref(&s));
        let with_queue = ShardStatus {
            queue: Some(mb_engine::ctl_api::QueueStatus {
                messages: 7,
                deferred: 3,
                ..Default::default()
            }),
            ..s
        };
        let q = shards_table(&[with_queue]);
        assert!(q.contains("queued") && q.contains("deferrals"), "{q}");
        let mut lines = out.lines();
        let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            head,
            [
                "shard", "cpu", "conns", "max", "total", "refused", "errors", "msgs", "accept",
                "reject", "tempfail", "discard", "quar", "scanned", "batch", "p50", "p99", "p99.9",
                "buffers"
            ]
        );
        let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            row,
            [
                "1", "1", "12", "4096", "1000", "0", "2", "990", "980", "5", "3", "1", "1", "700",
                "2.5", "85µs", "1.2ms", "3.5ms", "48.0", "KiB"
            ]
        );
        assert!(shards_table(&[]).contains("(no shards)"));
    }

    #[test]
    fn status_text_lists_fields() {
        let st = DaemonStatus {
            version: "0.1.0".into(),
            pid: 42,
            uptime_secs: 3723,
            config_path: None,
            config_generation: 3,
            last_reload_error: Some("bad key".into()),
            listeners: vec!["unix:/a".into(), "inet:127.0.0.1:8891".into()],
            control_socket: "/run/mailborder/mbd.ctl".into(),
            shards: 2,
            connections: 5,
            messages: 100,
            rss_bytes: 10 << 20,
            draining: true,
            cluster: Some(Box::new(mb_engine::ctl_api::ClusterStatus {
                redis: "redis://127.0.0.1:6379/0".into(),
                connected: false,
                interval_ms: 1000,
                syncs: 4,
                errors: 2,
                last_error: Some("sync: connection refused".into()),
                ..Default::default()
            })),
        };
        let out = status_text(&st);
        assert!(out.starts_with("version"), "{out}");
        for want in [
            "uptime             1h 2m 3s",
            "config             (embedded defaults)",
            "generation         3",
            "listeners          unix:/a, inet:127.0.0.1:8891",
            "rss                10.0 MiB",
            "draining           yes",
            "last reload error  bad key",
            "cluster            redis://127.0.0.1:6379/0 NOT connected, sync every 1000 ms",
            "cluster errors     2 (last: sync: connection refused)",
        ] {
            assert!(out.lines().any(|l| l == want), "missing {want:?} in\n{out}");
        }
    }
}
