//! The milter load generator: N std threads, one milter connection each,
//! replaying messages the way Postfix 3.7 does ([`crate::mta`]).
//!
//! Work distribution and measurement:
//!
//! ```text
//! ticket = next.fetch_add(1)          one ticket per message, shared by all threads
//!   ticket <  warmup                  sent, not measured
//!   ticket == warmup                  the thread that draws it marks the start
//!                                     (wall clock, our CPU, the server's CPU)
//!   ticket >= warmup + messages       stop (or: mark + duration has passed)
//! ```
//!
//! - **Closed loop** (`rate = 0`): each thread sends its next message as soon
//!   as the previous one is answered.
//! - **Open loop** (`rate = R`): thread `j` of `N` starts its `k`-th message at
//!   `t0 + (j/N + k) · N/R`; latency is measured from that *scheduled* start, so a
//!   slow server shows up as latency instead of silently lowering the offered
//!   load (no coordinated omission).
//! - **Transaction latency**: from the message's first command to the final
//!   end-of-message reply. The first message of a connection starts at the
//!   socket connect, so OPTNEG, CONNECT and HELO count (with one message per
//!   connection, as Postfix does, that is one SMTP session's milter cost).
//! - **Round trip**: one command that expects a reply → that reply.
//! - A stall watchdog ends the run when nothing completes for
//!   `2 · timeout + 1 s` (a unix connect to a full backlog has no timeout of
//!   its own).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::corpus::Message;
use crate::mta::{Envelope, ErrorKind, MsgOutcome, MtaError, Negotiated, Session, Verdict};
use crate::sys;
use crate::target::Target;
use crate::units::format_nanos;

/// Highest latency recorded without saturation: one hour, in ns.
const LATENCY_NS_MAX: u64 = 3_600_000_000_000;
/// Error messages kept for the report, per run.
const ERROR_SAMPLES_MAX: usize = 8;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The filter.
    pub target: Target,
    /// Concurrent connections (= threads).
    pub connections: usize,
    /// Measured messages (after warm-up); `None`: until `duration`.
    pub messages: Option<u64>,
    /// Measured wall time; `None`: until `messages`.
    pub duration: Option<Duration>,
    /// Offered messages per second over all connections; 0 = closed loop.
    pub rate: f64,
    /// Messages per milter connection (Postfix: one connection per SMTP session).
    pub messages_per_connection: u32,
    /// Messages sent before measuring.
    pub warmup: u64,
    /// Recipients per message.
    pub recipients: usize,
    /// Socket timeout for every read, write and TCP connect.
    pub timeout: Duration,
    /// A server process whose CPU time to account (`/proc/PID/stat`).
    pub server_pid: Option<u32>,
}

/// Counters of one worker (summed for the report).
#[derive(Debug, Default, Clone)]
struct Counts {
    completed: u64,
    ended_early: u64,
    round_trips: u64,
    sessions: u64,
    message_bytes: u64,
    accept: u64,
    continue_: u64,
    reject: u64,
    tempfail: u64,
    discard: u64,
    quarantined: u64,
    modifications: u64,
    err_connect: u64,
    err_timeout: u64,
    err_closed: u64,
    err_protocol: u64,
    err_io: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.completed += o.completed;
        self.ended_early += o.ended_early;
        self.round_trips += o.round_trips;
        self.sessions += o.sessions;
        self.message_bytes += o.message_bytes;
        self.accept += o.accept;
        self.continue_ += o.continue_;
        self.reject += o.reject;
        self.tempfail += o.tempfail;
        self.discard += o.discard;
        self.quarantined += o.quarantined;
        self.modifications += o.modifications;
        self.err_connect += o.err_connect;
        self.err_timeout += o.err_timeout;
        self.err_closed += o.err_closed;
        self.err_protocol += o.err_protocol;
        self.err_io += o.err_io;
    }

    fn verdict(&mut self, v: Verdict) {
        match v {
            Verdict::Accept => self.accept += 1,
            Verdict::Continue => self.continue_ += 1,
            Verdict::Reject => self.reject += 1,
            Verdict::TempFail => self.tempfail += 1,
            Verdict::Discard => self.discard += 1,
        }
    }

    fn errors(&self) -> u64 {
        self.err_connect + self.err_timeout + self.err_closed + self.err_protocol + self.err_io
    }
}

struct WorkerStats {
    counts: Counts,
    txn: Histogram<u64>,
    rtt: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3) {
        Ok(h) => h,
        Err(e) => unreachable!("constant histogram bounds are valid: {e:?}"),
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A point in time with the CPU clocks read at it.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Instant,
    self_cpu: Option<Duration>,
    server_cpu: Option<Duration>,
}

impl Mark {
    fn now(server_pid: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            self_cpu: sys::self_cpu().ok(),
            server_cpu: server_pid.and_then(|p| sys::process_cpu(p).ok()),
        }
    }
}

struct Shared {
    next_ticket: AtomicU64,
    end_ticket: u64,
    warmup: u64,
    start: OnceLock<Mark>,
    stop: AtomicBool,
    progress: AtomicU64,
    negotiated: OnceLock<Negotiated>,
    error_samples: Mutex<Vec<String>>,
}

impl Shared {
    fn sample_error(&self, e: &MtaError) {
        if let Ok(mut v) = self.error_samples.lock() {
            if v.len() < ERROR_SAMPLES_MAX {
                v.push(e.to_string());
            }
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The JSON form (also the source of the text form).
    pub json: Value,
    /// True when the watchdog ended a stalled run.
    pub stalled: bool,
    /// Errors counted while measuring.
    pub errors: u64,
    /// Transactions measured.
    pub transactions: u64,
}

/// Runs the load.
///
/// # Errors
/// When no thread could be started, or one panicked.
///
/// # Panics
/// If `corpus` is empty (a programmer error: [`crate::corpus::load`] refuses
/// empty corpora).
pub fn run(cfg: &Config, corpus: Arc<Vec<Message>>) -> Result<Report, String> {
    assert!(
        !corpus.is_empty(),
        "the corpus loader refuses empty corpora"
    );
    let connections = cfg.connections.max(1);
    let end_ticket = match cfg.messages {
        Some(m) => cfg.warmup.saturating_add(m),
        None => u64::MAX,
    };
    let shared = Arc::new(Shared {
        next_ticket: AtomicU64::new(0),
        end_ticket,
        warmup: cfg.warmup,
        start: OnceLock::new(),
        stop: AtomicBool::new(false),
        progress: AtomicU64::new(0),
        negotiated: OnceLock::new(),
        error_samples: Mutex::new(Vec::new()),
    });
    let t0 = Instant::now();
    if cfg.warmup == 0 {
        let _ = shared.start.set(Mark::now(cfg.server_pid));
    }

    let mut handles = Vec::with_capacity(connections);
    for j in 0..connections {
        let shared = Arc::clone(&shared);
        let corpus = Arc::clone(&corpus);
        let cfg = cfg.clone();
        let h = thread::Builder::new()
            .name(format!("loadgen-{j}"))
            .spawn(move || worker(j, connections, t0, &cfg, &shared, &corpus))
            .map_err(|e| format!("cannot start thread {j}: {e}"))?;
        handles.push(Some(h));
    }

    // Watchdog and duration limit; the loop ends when all threads have.
    let stall_limit = cfg.timeout * 2 + Duration::from_secs(1);
    let mut last_progress = (0u64, Instant::now());
    let mut stalled = false;
    let mut stats = Vec::with_capacity(connections);
    loop {
        for slot in handles.iter_mut() {
            if slot.as_ref().is_some_and(|h| h.is_finished()) {
                if let Some(h) = slot.take() {
                    match h.join() {
                        Ok(s) => stats.push(s),
                        Err(_) => return Err("a load generator thread panicked".into()),
                    }
                }
            }
        }
        if handles.iter().all(Option::is_none) {
            break;
        }
        if let (Some(d), Some(m)) = (cfg.duration, shared.start.get()) {
            if m.at.elapsed() >= d {
                shared.stop.store(true, Ordering::Relaxed);
            }
        }
        let p = shared.progress.load(Ordering::Relaxed);
        if p != last_progress.0 {
            last_progress = (p, Instant::now());
        } else if last_progress.1.elapsed() > stall_limit {
            shared.stop.store(true, Ordering::Relaxed);
            stalled = true;
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let end = Mark::now(cfg.server_pid);
    let start = shared.start.get().copied().unwrap_or(Mark {
        at: t0,
        self_cpu: None,
        server_cpu: None,
    });

    let mut counts = Counts::default();
    let mut txn = histogram();
    let mut rtt = histogram();
    for s in &stats {
        counts.add(&s.counts);
        // Same bounds everywhere, so adding cannot fail.
        let _ = txn.add(&s.txn);
        let _ = rtt.add(&s.rtt);
    }
    let samples = shared
        .error_samples
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    let json = build_json(
        cfg,
        &corpus,
        &counts,
        &txn,
        &rtt,
        start,
        end,
        stalled,
        shared.negotiated.get(),
        &samples,
    );
    Ok(Report {
        json,
        stalled,
        errors: counts.errors(),
        transactions: counts.completed + counts.ended_early,
    })
}

fn worker(
    j: usize,
    n: usize,
    t0: Instant,
    cfg: &Config,
    shared: &Shared,
    corpus: &[Message],
) -> WorkerStats {
    let mut st = WorkerStats {
        counts: Counts::default(),
        txn: histogram(),
        rtt: histogram(),
    };
    let interval = (cfg.rate > 0.0).then(|| Duration::from_secs_f64(n as f64 / cfg.rate));
    let offset = interval.map(|i| i.mul_f64(j as f64 / n as f64));
    let recipients: Vec<String> = (0..cfg.recipients.max(1))
        .map(|r| format!("rcpt{r}@dest.example"))
        .collect();
    let mut queue_id = String::with_capacity(16);
    let mut session: Option<(Session, u32)> = None;
    let mut k: u32 = 0;
    let mut sessions_opened: u64 = 0;

    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let ticket = shared.next_ticket.fetch_add(1, Ordering::Relaxed);
        if ticket >= shared.end_ticket {
            break;
        }
        if ticket == shared.warmup && shared.warmup > 0 {
            let _ = shared.start.set(Mark::now(cfg.server_pid));
        }
        let measuring = ticket >= shared.warmup;

        let started = match (interval, offset) {
            (Some(iv), Some(off)) => {
                let scheduled = t0 + off + iv * k;
                k = k.wrapping_add(1);
                let now = Instant::now();
                if scheduled > now {
                    thread::sleep(scheduled - now);
                }
                scheduled
            }
            _ => Instant::now(),
        };

        let msg = &corpus[(ticket % corpus.len() as u64) as usize];
        queue_id.clear();
        let _ = write!(queue_id, "{:03X}{:08X}", j & 0xFFF, ticket & 0xFFFF_FFFF);
        let env = Envelope {
            queue_id: &queue_id,
            sender: "loadgen@source.example",
            recipients: &recipients,
        };

        let rtt_hist = &mut st.rtt;
        let mut rtts = 0u64;
        let mut rt = |d: Duration| {
            if measuring {
                rtt_hist.saturating_record(nanos(d));
                rtts += 1;
            }
        };

        let opened_before = sessions_opened;
        let result = one_message(
            cfg,
            shared,
            &mut session,
            &mut sessions_opened,
            msg,
            &env,
            &mut rt,
        );
        let c = &mut st.counts;
        if measuring {
            c.round_trips += rtts;
            c.sessions += sessions_opened - opened_before;
        }
        match result {
            Ok(outcome) => {
                if measuring {
                    st.txn.saturating_record(nanos(started.elapsed()));
                    c.message_bytes += msg.smtp_bytes as u64;
                    match outcome {
                        MsgOutcome::Completed {
                            verdict,
                            modifications,
                            quarantined,
                        } => {
                            c.completed += 1;
                            c.verdict(verdict);
                            c.modifications += u64::from(modifications);
                            c.quarantined += u64::from(quarantined);
                        }
                        MsgOutcome::EndedEarly { verdict, .. } => {
                            c.ended_early += 1;
                            c.verdict(verdict);
                        }
                    }
                }
            }
            Err(e) => {
                session = None;
                if measuring {
                    match e.kind() {
                        ErrorKind::Connect => c.err_connect += 1,
                        ErrorKind::Timeout => c.err_timeout += 1,
                        ErrorKind::Closed => c.err_closed += 1,
                        ErrorKind::Protocol => c.err_protocol += 1,
                        ErrorKind::Io => c.err_io += 1,
                    }
                    shared.sample_error(&e);
                }
            }
        }
        shared.progress.fetch_add(1, Ordering::Relaxed);
    }
    if let Some((s, _)) = session.take() {
        // Postfix ignores QUIT write errors too.
        let _ = s.quit();
    }
    st
}

/// Sends one message, opening a session first when needed and closing it
/// after `messages_per_connection` messages or a session-ending reply.
fn one_message(
    cfg: &Config,
    shared: &Shared,
    session: &mut Option<(Session, u32)>,
    sessions_opened: &mut u64,
    msg: &Message,
    env: &Envelope<'_>,
    rt: &mut impl FnMut(Duration),
) -> Result<MsgOutcome, MtaError> {
    if session.is_none() {
        let mut s = Session::open(&cfg.target, cfg.timeout, rt)?;
        *sessions_opened += 1;
        let _ = shared.negotiated.set(s.negotiated().clone());
        let port = 10_000 + (*sessions_opened % 50_000) as u16;
        if let Some((stage, verdict)) = s.connect_helo(port, rt)? {
            let _ = s.quit();
            return Ok(MsgOutcome::EndedEarly { stage, verdict });
        }
        *session = Some((s, 0));
    }
    let Some((s, done)) = session.as_mut() else {
        unreachable!("a session was just opened");
    };
    let out = s.message(msg, env, rt)?;
    *done += 1;
    if *done >= cfg.messages_per_connection.max(1) {
        if let Some((s, _)) = session.take() {
            let _ = s.quit();
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn build_json(
    cfg: &Config,
    corpus: &[Message],
    c: &Counts,
    txn: &Histogram<u64>,
    rtt: &Histogram<u64>,
    start: Mark,
    end: Mark,
    stalled: bool,
    neg: Option<&Negotiated>,
    samples: &[String],
) -> Value {
    let elapsed = end
        .at
        .saturating_duration_since(start.at)
        .as_secs_f64()
        .max(1e-9);
    let transactions = c.completed + c.ended_early;
    let lat = |h: &Histogram<u64>| {
        if h.is_empty() {
            return json!(null);
        }
        json!({
            "count": h.len(),
            "p50_ns": h.value_at_quantile(0.50),
            "p99_ns": h.value_at_quantile(0.99),
            "p999_ns": h.value_at_quantile(0.999),
            "max_ns": h.max(),
            "mean_ns": h.mean().round() as u64,
        })
    };
    let per = |total: Option<f64>, n: u64| match total {
        Some(t) if n > 0 => json!((t * 1e6 / n as f64 * 10.0).round() / 10.0),
        _ => json!(null),
    };
    let secs = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => Some((b.saturating_sub(a).as_secs_f64() * 1e3).round() / 1e3),
        _ => None,
    };
    let client_cpu = secs(start.self_cpu, end.self_cpu);
    let server_cpu = secs(start.server_cpu, end.server_cpu);
    let corpus_bytes: usize = corpus.iter().map(|m| m.smtp_bytes).sum();
    json!({
        "target": cfg.target.to_string(),
        "connections": cfg.connections,
        "messages_per_connection": cfg.messages_per_connection,
        "rate_offered": cfg.rate,
        "warmup": cfg.warmup,
        "corpus": { "messages": corpus.len(), "mean_bytes": corpus_bytes / corpus.len().max(1) },
        "negotiated": neg.map(|n| json!({
            "version": n.version,
            "actions": format!("0x{:x}", n.actions),
            "protocol": format!("0x{:x}", n.protocol),
        })),
        "elapsed_s": (elapsed * 1e6).round() / 1e6,
        "stalled": stalled,
        "transactions": transactions,
        "completed": c.completed,
        "ended_early": c.ended_early,
        "sessions": c.sessions,
        "round_trips": c.round_trips,
        "transactions_per_s": (transactions as f64 / elapsed * 10.0).round() / 10.0,
        "round_trips_per_s": (c.round_trips as f64 / elapsed * 10.0).round() / 10.0,
        "message_mb_per_s": (c.message_bytes as f64 / elapsed / 1e6 * 100.0).round() / 100.0,
        "transaction_latency": lat(txn),
        "round_trip_latency": lat(rtt),
        "verdicts": {
            "accept": c.accept, "continue": c.continue_, "reject": c.reject,
            "tempfail": c.tempfail, "discard": c.discard,
            "quarantined": c.quarantined, "modifications": c.modifications,
        },
        "errors": {
            "connect": c.err_connect, "timeout": c.err_timeout, "closed": c.err_closed,
            "protocol": c.err_protocol, "io": c.err_io, "samples": samples,
        },
        "client_cpu_s": client_cpu,
        "client_cpu_us_per_transaction": per(client_cpu, transactions),
        "server_pid": cfg.server_pid,
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_transaction": per(server_cpu, transactions),
        "server_cpu_us_per_round_trip": per(server_cpu, c.round_trips),
    })
}

/// The human form of a report.
#[must_use]
pub fn render(v: &Value) -> String {
    let mut s = String::new();
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    let lat = |v: &Value| {
        if v.is_null() {
            return "-".to_string();
        }
        let f = |k: &str| format_nanos(v[k].as_u64().unwrap_or(0));
        format!(
            "p50 {}  p99 {}  p99.9 {}  max {}",
            f("p50_ns"),
            f("p99_ns"),
            f("p999_ns"),
            f("max_ns")
        )
    };
    let _ = writeln!(
        s,
        "target        {}  ({} connections, {} msg/connection, rate {})",
        v["target"].as_str().unwrap_or("?"),
        v["connections"],
        v["messages_per_connection"],
        if num(&v["rate_offered"]) > 0.0 {
            format!("{}/s open loop", v["rate_offered"])
        } else {
            "closed loop".into()
        }
    );
    let _ = writeln!(
        s,
        "corpus        {} messages, mean {} bytes",
        v["corpus"]["messages"], v["corpus"]["mean_bytes"]
    );
    if let Some(n) = v["negotiated"].as_object() {
        let _ = writeln!(
            s,
            "negotiated    version {}, actions {}, protocol {}",
            n["version"],
            n["actions"].as_str().unwrap_or("?"),
            n["protocol"].as_str().unwrap_or("?")
        );
    }
    let _ = writeln!(
        s,
        "measured      {} transactions ({} completed, {} ended early) in {:.3}s, {} sessions",
        v["transactions"],
        v["completed"],
        v["ended_early"],
        num(&v["elapsed_s"]),
        v["sessions"]
    );
    let _ = writeln!(
        s,
        "throughput    {:.0} transactions/s, {:.0} round trips/s, {:.2} MB/s of mail",
        num(&v["transactions_per_s"]),
        num(&v["round_trips_per_s"]),
        num(&v["message_mb_per_s"])
    );
    let _ = writeln!(s, "transaction   {}", lat(&v["transaction_latency"]));
    let _ = writeln!(s, "round trip    {}", lat(&v["round_trip_latency"]));
    let vd = &v["verdicts"];
    let _ = writeln!(
        s,
        "verdicts      accept {}  continue {}  reject {}  tempfail {}  discard {}  quarantined {}  modifications {}",
        vd["accept"], vd["continue"], vd["reject"], vd["tempfail"], vd["discard"], vd["quarantined"], vd["modifications"]
    );
    let e = &v["errors"];
    let _ = writeln!(
        s,
        "errors        connect {}  timeout {}  closed {}  protocol {}  io {}",
        e["connect"], e["timeout"], e["closed"], e["protocol"], e["io"]
    );
    if let Some(samples) = e["samples"].as_array() {
        for x in samples {
            let _ = writeln!(s, "  e.g.        {}", x.as_str().unwrap_or(""));
        }
    }
    let opt = |x: &Value, unit: &str| {
        if x.is_null() {
            "-".to_string()
        } else {
            format!("{x}{unit}")
        }
    };
    let _ = writeln!(
        s,
        "client cpu    {} ({} per transaction)",
        opt(&v["client_cpu_s"], "s"),
        opt(&v["client_cpu_us_per_transaction"], "µs")
    );
    if !v["server_pid"].is_null() {
        let _ = writeln!(
            s,
            "server cpu    {} (pid {}; {} per transaction, {} per round trip)",
            opt(&v["server_cpu_s"], "s"),
            v["server_pid"],
            opt(&v["server_cpu_us_per_transaction"], "µs"),
            opt(&v["server_cpu_us_per_round_trip"], "µs")
        );
    }
    if v["stalled"].as_bool() == Some(true) {
        let _ = writeln!(
            s,
            "STALLED       no progress within 2×timeout+1s; results are partial"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;

    /// A minimal filter: protocol 0x0FB0C0 (NR for CONNECT, HELO, RCPT, DATA,
    /// headers, body, unknown; NOEOH), so only MAIL ('c') and EOM ('a') are
    /// answered.
    fn serve(name: &str, sessions: usize) -> (PathBuf, thread::JoinHandle<usize>) {
        let dir = std::env::temp_dir().join(format!("mb-bench-lg-{}-{name}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("f.sock");
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).unwrap();
        let h = thread::spawn(move || {
            let mut eoms = 0;
            for _ in 0..sessions {
                let (mut s, _) = l.accept().unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                loop {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).is_err() {
                        break;
                    }
                    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
                    s.read_exact(&mut body).unwrap();
                    let reply: &[u8] = match body[0] {
                        b'O' => &[
                            0, 0, 0, 13, b'O', 0, 0, 0, 6, 0, 0, 0, 0, 0, 0x0F, 0xB0, 0xC0,
                        ],
                        b'M' => &[0, 0, 0, 1, b'c'],
                        b'E' => {
                            eoms += 1;
                            &[0, 0, 0, 1, b'a']
                        }
                        b'Q' => break,
                        _ => &[],
                    };
                    s.write_all(reply).unwrap();
                }
            }
            eoms
        });
        (path, h)
    }

    fn cfg(path: PathBuf) -> Config {
        Config {
            target: Target::Unix(path),
            connections: 2,
            messages: Some(20),
            duration: None,
            rate: 0.0,
            messages_per_connection: 1,
            warmup: 4,
            recipients: 1,
            timeout: Duration::from_secs(5),
            server_pid: None,
        }
    }

    #[test]
    fn closed_loop_run_counts_everything() {
        let (path, h) = serve("closed", 24);
        let corpus = Arc::new(vec![corpus::synthesize(2048), corpus::synthesize(100_000)]);
        let r = run(&cfg(path), corpus).unwrap();
        assert_eq!(h.join().unwrap(), 24);
        let v = &r.json;
        assert!(!r.stalled);
        assert_eq!(r.errors, 0, "{v}");
        assert_eq!(v["transactions"], 20);
        assert_eq!(v["verdicts"]["accept"], 20);
        assert_eq!(v["sessions"], 20);
        assert_eq!(v["transaction_latency"]["count"], 20);
        let text = render(v);
        assert!(text.contains("transactions/s"), "{text}");
    }

    #[test]
    fn open_loop_paces_and_reuses_connections() {
        let (path, h) = serve("open", 2);
        let mut c = cfg(path);
        c.rate = 400.0;
        c.messages = Some(16);
        c.warmup = 0;
        c.messages_per_connection = 100;
        let t = Instant::now();
        let r = run(&c, Arc::new(vec![corpus::synthesize(500)])).unwrap();
        // 16 messages at 400/s take at least ~37 ms of schedule.
        assert!(t.elapsed() >= Duration::from_millis(30));
        assert_eq!(h.join().unwrap(), 16);
        assert_eq!(r.json["sessions"], 2);
        assert_eq!(r.transactions, 16);
    }

    #[test]
    fn connect_errors_are_counted_not_fatal() {
        let dir = std::env::temp_dir().join(format!("mb-bench-lg-{}-none", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let mut c = cfg(dir.join("missing.sock"));
        c.warmup = 0;
        let r = run(&c, Arc::new(vec![corpus::synthesize(500)])).unwrap();
        assert_eq!(r.json["errors"]["connect"], 20);
        assert_eq!(r.transactions, 0);
    }
}
