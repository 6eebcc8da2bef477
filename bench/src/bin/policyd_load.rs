//! `policyd_load`: load a Postfix policy delegation server (check_policy_service)
//! the way Postfix 3.7's smtpd does, and measure.
//!
//! ```text
//! policyd_load --target unix:/tmp/policyd.sock --connections 8 --duration 20s
//! policyd_load --target inet:127.0.0.1:61001 --connections 1 --requests 50000 --json
//! policyd_load --target inet:127.0.0.1:61001 --rate 2000 --duration 30s
//! ```
//!
//! One std thread and one blocking socket per connection; each connection has
//! one request outstanding at a time, like smtpd (it reuses the connection and
//! never pipelines). Requests are RCPT-state requests with the Postfix 3.7
//! attribute set; client address, HELO, sender and recipient are drawn from a
//! small generated pool (`--clients`, `--senders`, `--recipients`) with a
//! fixed-seed xorshift, so runs are repeatable and rate-limit rules see the
//! same keys again and again.
//!
//! Closed loop (`--rate 0`, the default): the next request leaves when the
//! answer arrives. Open loop (`--rate R`): requests are scheduled at R/s over
//! all connections and latency is measured from the scheduled time, so a
//! stalled server shows up in the tail (no coordinated omission).
//!
//! Always bounded: it stops after `--requests` (default 100000 when no
//! `--duration` is given) or `--duration`, whichever comes first; every read
//! and write is bounded by `--timeout`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use mb_bench::target::{Stream, Target};
use mb_bench::units::{format_nanos, parse_duration};
use mb_engine::policyd::{encode_request, Action, Decoder, Limits};
use serde_json::{json, Value};

/// Highest latency recorded (larger values are clamped): 60 s.
const LATENCY_NS_MAX: u64 = 60_000_000_000;

#[derive(Debug, Parser)]
#[command(
    name = "policyd_load",
    about = "Postfix policy delegation load generator (smtpd side, Postfix 3.7 requests)"
)]
struct Args {
    /// The policy server: unix:/path, /path, inet:host:port or host:port.
    #[arg(long)]
    target: Target,
    /// Concurrent connections (one thread each).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Measured requests in total [default: 100000 unless --duration is given].
    #[arg(long)]
    requests: Option<u64>,
    /// Measure for this long, e.g. 20s (stops earlier if --requests is reached).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Offered requests per second over all connections (open loop); 0 = next
    /// request as soon as the answer arrives (closed loop).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Unmeasured requests per connection before measuring starts.
    #[arg(long, default_value_t = 100)]
    warmup: u64,
    /// Distinct client addresses in the pool (198.18.0.0/15).
    #[arg(long, default_value_t = 64)]
    clients: u32,
    /// Distinct envelope senders in the pool.
    #[arg(long, default_value_t = 32)]
    senders: u32,
    /// Distinct recipients in the pool.
    #[arg(long, default_value_t = 128)]
    recipients: u32,
    /// Seed for the pool draws (connection i uses seed + i).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Bound on each connect, read and write.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Account the CPU time of this server process (user+sys from
    /// /proc/PID/stat, 10 ms resolution); repeat for a pre-fork server's
    /// master, helpers and children (processes forked later are not seen).
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// What a run measured, over all connections.
struct Outcome {
    requests: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    actions: BTreeMap<String, u64>,
    errors: Vec<String>,
    /// CPU of the `--server-pid` processes during the measured span.
    server_cpu: Option<Duration>,
    /// CPU of this process during the measured span.
    loadgen_cpu: Option<Duration>,
}

/// Sum of the CPU time of `pids` (`None` if any cannot be read or none given).
fn pids_cpu(pids: &[u32]) -> Option<Duration> {
    if pids.is_empty() {
        return None;
    }
    pids.iter()
        .map(|p| mb_bench::sys::process_cpu(*p).ok())
        .sum()
}

/// What one connection measured.
struct Tally {
    latency: Histogram<u64>,
    actions: BTreeMap<String, u64>,
    requests: u64,
    error: Option<String>,
}

fn histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3) {
        Ok(h) => h,
        Err(e) => unreachable!("constant histogram bounds are valid: {e}"),
    }
}

/// The request generator: a Postfix 3.7 RCPT request over a small pool.
struct Gen {
    x: u64,
    conn: usize,
    seq: u64,
    clients: u32,
    senders: u32,
    recipients: u32,
}

impl Gen {
    fn next_u32(&mut self, n: u32) -> u32 {
        // xorshift64
        self.x ^= self.x << 13;
        self.x ^= self.x >> 7;
        self.x ^= self.x << 17;
        (self.x % u64::from(n.max(1))) as u32
    }

    fn request(&mut self, out: &mut Vec<u8>) {
        let c = self.next_u32(self.clients);
        let s = self.next_u32(self.senders);
        let r = self.next_u32(self.recipients);
        self.seq += 1;
        let addr = format!(
            "198.{}.{}.{}",
            18 + (c >> 16) % 2,
            (c >> 8) & 0xff,
            c & 0xff
        );
        let name = format!("mx{c}.client{}.example.net", c % 7);
        let sender = format!("user{s}@sender{}.example.com", s % 5);
        let rcpt = format!("rcpt{r}@example.org");
        let instance = format!("{:x}.{:x}.0", self.conn, self.seq);
        let port = (1024 + self.seq % 60_000).to_string();
        encode_request(
            &[
                ("request", "smtpd_access_policy"),
                ("protocol_state", "RCPT"),
                ("protocol_name", "ESMTP"),
                ("helo_name", &name),
                ("queue_id", ""),
                ("sender", &sender),
                ("recipient", &rcpt),
                ("recipient_count", "0"),
                ("client_address", &addr),
                ("client_name", &name),
                ("reverse_client_name", &name),
                ("instance", &instance),
                ("sasl_method", ""),
                ("sasl_username", ""),
                ("sasl_sender", ""),
                ("size", "12345"),
                ("ccert_subject", ""),
                ("ccert_issuer", ""),
                ("ccert_fingerprint", ""),
                ("ccert_pubkey_fingerprint", ""),
                ("encryption_protocol", "TLSv1.3"),
                ("encryption_cipher", "TLS_AES_256_GCM_SHA384"),
                ("encryption_keysize", "256"),
                ("etrn_domain", ""),
                ("stress", ""),
                ("client_port", &port),
                ("policy_context", ""),
                ("server_address", "127.0.0.1"),
                ("server_port", "25"),
                ("compatibility_level", "3.6"),
                ("mail_version", "3.7.11"),
            ],
            out,
        );
    }
}

/// Sends one request and reads its answer; returns the action keyword.
fn round_trip(
    stream: &mut Stream,
    req: &[u8],
    buf: &mut Vec<u8>,
    dec: &mut Decoder,
) -> Result<String, String> {
    stream.write_all(req).map_err(|e| format!("write: {e}"))?;
    let mut chunk = [0u8; 4096];
    loop {
        match dec.decode(buf) {
            Ok(Some((resp, used))) => {
                buf.drain(..used);
                let Some(value) = resp.get("action") else {
                    return Err("response without action=".into());
                };
                return Ok(match Action::parse(value) {
                    Some(a) => a.keyword().to_owned(),
                    None => format!(
                        "OTHER:{}",
                        value.split_whitespace().next().unwrap_or_default()
                    ),
                });
            }
            Ok(None) => {}
            Err(e) => return Err(format!("bad response: {e}")),
        }
        let n = stream.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("server closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

struct Plan {
    target: Target,
    timeout: Duration,
    warmup: u64,
    /// Seconds between this connection's requests (open loop), or 0.
    interval: f64,
    total: u64,
    issued: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

fn connection(plan: &Plan, mut generator: Gen, start: &std::sync::Barrier) -> Tally {
    let mut t = Tally {
        latency: histogram(),
        actions: BTreeMap::new(),
        requests: 0,
        error: None,
    };
    let stream = Stream::connect(&plan.target, plan.timeout);
    let mut stream = match stream {
        Ok(s) => Some(s),
        Err(e) => {
            t.error = Some(format!("connect {}: {e}", plan.target));
            None
        }
    };
    let (mut buf, mut req) = (Vec::new(), Vec::new());
    let mut dec = Decoder::new(Limits::default());
    if let Some(s) = stream.as_mut() {
        for _ in 0..plan.warmup {
            req.clear();
            generator.request(&mut req);
            if let Err(e) = round_trip(s, &req, &mut buf, &mut dec) {
                t.error = Some(format!("warmup: {e}"));
                break;
            }
        }
    }
    start.wait();
    let Some(s) = stream.as_mut().filter(|_| t.error.is_none()) else {
        return t;
    };
    let began = Instant::now();
    let mut k = 0u64;
    while !plan.stop.load(Ordering::Relaxed) {
        if plan.issued.fetch_add(1, Ordering::Relaxed) >= plan.total {
            break;
        }
        req.clear();
        generator.request(&mut req);
        let sent = if plan.interval > 0.0 {
            let due = began + Duration::from_secs_f64(plan.interval * k as f64);
            k += 1;
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            due
        } else {
            Instant::now()
        };
        match round_trip(s, &req, &mut buf, &mut dec) {
            Ok(keyword) => {
                let ns = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
                t.latency.saturating_record(ns.clamp(1, LATENCY_NS_MAX));
                *t.actions.entry(keyword).or_insert(0) += 1;
                t.requests += 1;
            }
            Err(e) => {
                t.error = Some(e);
                break;
            }
        }
    }
    t
}

fn main() -> ExitCode {
    let a = Args::parse();
    if !a.rate.is_finite() || a.rate < 0.0 {
        eprintln!(
            "policyd_load: --rate must be 0 (closed loop) or a positive number of requests/s"
        );
        return ExitCode::from(2);
    }
    if a.connections == 0 || a.connections > 10_000 {
        eprintln!("policyd_load: --connections must be between 1 and 10000");
        return ExitCode::from(2);
    }
    let o = match run(&a) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("policyd_load: {e}");
            // Threads already started may hold sockets; exit without joining.
            std::process::exit(1);
        }
    };
    let report = report(&a, &o);
    if a.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("policyd_load: {e}"),
        }
    } else {
        print!("{}", render(&report, &o.latency));
    }
    if o.requests == 0 || !o.errors.is_empty() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Opens the connections, runs the load and gathers what every connection
/// measured.
fn run(a: &Args) -> Result<Outcome, String> {
    let total = match (a.requests, a.duration) {
        (Some(n), _) => n,
        (None, None) => 100_000,
        (None, Some(_)) => u64::MAX,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let plan = Arc::new(Plan {
        target: a.target.clone(),
        timeout: a.timeout,
        warmup: a.warmup,
        interval: if a.rate > 0.0 {
            a.connections as f64 / a.rate
        } else {
            0.0
        },
        total,
        issued: Arc::new(AtomicU64::new(0)),
        stop: Arc::clone(&stop),
    });
    // Everyone (connections + this thread) starts measuring together.
    let start = Arc::new(std::sync::Barrier::new(a.connections + 1));
    let mut handles = Vec::with_capacity(a.connections);
    for i in 0..a.connections {
        let plan = Arc::clone(&plan);
        let start = Arc::clone(&start);
        let generator = Gen {
            x: a.seed
                .wrapping_add(i as u64)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                | 1,
            conn: i,
            seq: 0,
            clients: a.clients,
            senders: a.senders,
            recipients: a.recipients,
        };
        let h = thread::Builder::new()
            .name(format!("policyd-load-{i}"))
            .spawn(move || connection(&plan, generator, &start))
            .map_err(|e| format!("cannot start thread {i}: {e}"))?;
        handles.push(h);
    }
    start.wait();
    let began = Instant::now();
    let server_before = pids_cpu(&a.server_pids);
    let self_before = mb_bench::sys::self_cpu().ok();
    if let Some(d) = a.duration {
        // Poll so a --requests bound that is reached first ends the run early.
        while began.elapsed() < d && handles.iter().any(|h| !h.is_finished()) {
            thread::sleep(Duration::from_millis(20).min(d.saturating_sub(began.elapsed())));
        }
        stop.store(true, Ordering::Relaxed);
    }
    let mut o = Outcome {
        requests: 0,
        elapsed: Duration::ZERO,
        latency: histogram(),
        actions: BTreeMap::new(),
        errors: Vec::new(),
        server_cpu: None,
        loadgen_cpu: None,
    };
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(t) => {
                // Same bounds on both sides, so add cannot fail.
                let _ = o.latency.add(&t.latency);
                for (k, v) in t.actions {
                    *o.actions.entry(k).or_insert(0) += v;
                }
                o.requests += t.requests;
                if let Some(e) = t.error {
                    o.errors.push(format!("connection {i}: {e}"));
                }
            }
            Err(_) => o.errors.push(format!("connection {i}: thread panicked")),
        }
    }
    o.elapsed = began.elapsed();
    o.server_cpu = server_before
        .zip(pids_cpu(&a.server_pids))
        .map(|(b, e)| e.saturating_sub(b));
    if !a.server_pids.is_empty() && o.server_cpu.is_none() {
        o.errors
            .push("cannot read /proc/PID/stat of every --server-pid".to_owned());
    }
    o.loadgen_cpu = self_before
        .zip(mb_bench::sys::self_cpu().ok())
        .map(|(b, e)| e.saturating_sub(b));
    Ok(o)
}

fn report(a: &Args, o: &Outcome) -> Value {
    let h = &o.latency;
    let (requests, elapsed) = (o.requests, o.elapsed.as_secs_f64());
    let per_request = |cpu: Option<Duration>| match cpu {
        Some(c) if requests > 0 => {
            json!((c.as_secs_f64() * 1e7 / requests as f64).round() / 10.0)
        }
        _ => json!(null),
    };
    let us = |q: f64| (h.value_at_quantile(q) as f64 / 100.0).round() / 10.0;
    let latency = if h.is_empty() {
        json!(null)
    } else {
        json!({
            "p50_us": us(0.5),
            "p90_us": us(0.9),
            "p99_us": us(0.99),
            "p999_us": us(0.999),
            "max_us": (h.max() as f64 / 100.0).round() / 10.0,
            "mean_us": (h.mean() / 100.0).round() / 10.0,
        })
    };
    json!({
        "target": a.target.to_string(),
        "connections": a.connections,
        "mode": if a.rate > 0.0 { "open" } else { "closed" },
        "offered_rate": a.rate,
        "pool": { "clients": a.clients, "senders": a.senders, "recipients": a.recipients },
        "requests": requests,
        "elapsed_s": (elapsed * 1000.0).round() / 1000.0,
        "requests_per_s": if elapsed > 0.0 { (requests as f64 / elapsed).round() } else { 0.0 },
        "latency": latency,
        "actions": o.actions,
        "server_cpu_us_per_request": per_request(o.server_cpu),
        "loadgen_cpu_us_per_request": per_request(o.loadgen_cpu),
        "errors": o.errors,
    })
}

fn render(r: &Value, h: &Histogram<u64>) -> String {
    let mut s = format!(
        "target {}  connections {}  {} loop\nrequests {}  in {}s  = {} req/s\n",
        r["target"].as_str().unwrap_or_default(),
        r["connections"],
        r["mode"].as_str().unwrap_or_default(),
        r["requests"],
        r["elapsed_s"],
        r["requests_per_s"],
    );
    if !h.is_empty() {
        let q = |x: f64| format_nanos(h.value_at_quantile(x));
        s += &format!(
            "latency p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n",
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            format_nanos(h.max())
        );
    }
    for (key, who) in [
        ("server_cpu_us_per_request", "server"),
        ("loadgen_cpu_us_per_request", "loadgen"),
    ] {
        if let Some(us) = r[key].as_f64() {
            s += &format!("{who} CPU {us}µs/request\n");
        }
    }
    if let Some(actions) = r["actions"].as_object() {
        let total: u64 = actions.values().filter_map(Value::as_u64).sum();
        s += "actions";
        for (k, v) in actions {
            let n = v.as_u64().unwrap_or(0);
            s += &format!("  {k} {n} ({:.1}%)", 100.0 * n as f64 / total.max(1) as f64);
        }
        s += "\n";
    }
    if let Some(errors) = r["errors"].as_array() {
        for e in errors {
            s += &format!("error: {}\n", e.as_str().unwrap_or_default());
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A loopback policy server built on the codec: REJECT for 198.18.0.5,
    /// DUNNO otherwise. Serves `conns` connections, then returns how many
    /// requests it answered and how many it rejected.
    fn serve(listener: TcpListener, conns: usize) -> thread::JoinHandle<(u64, u64)> {
        thread::spawn(move || {
            let workers: Vec<_> = (0..conns)
                .map(|_| {
                    let (mut s, _) = listener.accept().unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    thread::spawn(move || {
                        let (mut dec, mut buf, mut chunk) =
                            (Decoder::default(), Vec::new(), [0u8; 4096]);
                        let (mut answered, mut rejected) = (0, 0);
                        loop {
                            match dec.decode(&buf).unwrap() {
                                Some((req, used)) => {
                                    buf.drain(..used);
                                    let mut out = Vec::new();
                                    if req.get("client_address") == Some("198.18.0.5") {
                                        rejected += 1;
                                        Action::Reject(Some("5.7.1 test".into())).encode(&mut out);
                                    } else {
                                        Action::Dunno.encode(&mut out);
                                    }
                                    answered += 1;
                                    s.write_all(&out).unwrap();
                                }
                                None => match s.read(&mut chunk) {
                                    Ok(0) | Err(_) => return (answered, rejected),
                                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                                },
                            }
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap())
                .fold((0, 0), |(a, r), (a2, r2)| (a + a2, r + r2))
        })
    }

    #[test]
    fn counts_every_request_and_action_against_a_loopback_server() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = serve(listener, 3);
        let args = Args::parse_from([
            "policyd_load",
            "--target",
            &format!("inet:127.0.0.1:{port}"),
            "--connections",
            "3",
            "--requests",
            "600",
            "--warmup",
            "5",
            "--clients",
            "8",
        ]);
        let o = run(&args).unwrap();
        let (answered, rejected) = server.join().unwrap();
        assert_eq!(o.errors, Vec::<String>::new());
        assert_eq!(o.requests, 600);
        assert_eq!(
            answered,
            600 + 3 * 5,
            "warm-up requests are sent but not counted"
        );
        assert_eq!(o.latency.len(), 600);
        let dunno = o.actions.get("DUNNO").copied().unwrap_or(0);
        let reject = o.actions.get("REJECT").copied().unwrap_or(0);
        assert_eq!(dunno + reject, 600, "{:?}", o.actions);
        // 8 clients, one of them rejected: about 1 in 8, and never 0.
        assert!(reject > 20 && reject < 150, "{reject}");
        assert!(reject <= rejected);
        let r = report(&args, &o);
        assert_eq!(r["requests"], 600);
        assert_eq!(r["actions"]["REJECT"], reject);
        assert!(render(&r, &o.latency).contains("REJECT"));
    }

    #[test]
    fn a_refused_connection_is_an_error_not_a_hang() {
        // Bind then drop, so the port is (very likely) closed.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let args = Args::parse_from([
            "policyd_load",
            "--target",
            &format!("inet:127.0.0.1:{port}"),
            "--connections",
            "2",
            "--duration",
            "5s",
        ]);
        let t = Instant::now();
        let o = run(&args).unwrap();
        assert!(t.elapsed() < Duration::from_secs(4));
        assert_eq!(o.requests, 0);
        assert_eq!(o.errors.len(), 2, "{:?}", o.errors);
    }

    #[test]
    fn generated_requests_decode_as_postfix_rcpt_requests() {
        let mut g = Gen {
            x: 7,
            conn: 2,
            seq: 0,
            clients: 4,
            senders: 3,
            recipients: 5,
        };
        let mut wire = Vec::new();
        for _ in 0..50 {
            g.request(&mut wire);
        }
        let mut dec = Decoder::default();
        let (mut n, mut at) = (0, 0);
        let mut clients = std::collections::BTreeSet::new();
        while let Some((r, used)) = dec.decode(&wire[at..]).unwrap() {
            at += used;
            n += 1;
            assert_eq!(r.protocol_state(), "RCPT");
            assert_eq!(r.len(), 31);
            assert!(r.facts(0, 0).client_ip.is_some());
            assert_eq!(r.instance(), format!("2.{n:x}.0"));
            clients.insert(r.get("client_address").unwrap().to_owned());
        }
        assert_eq!((n, at), (50, wire.len()));
        assert!(clients.len() > 1 && clients.len() <= 4, "{clients:?}");
    }
}
