//! `loadgen`: replay mail to a milter like Postfix 3.7 does, and measure.
//!
//! ```text
//! loadgen --target unix:/run/mailborder/mb-milter.sock --connections 16 --messages 20000
//! loadgen --target inet:127.0.0.1:8891 --duration 10s --rate 2000 --size 2048 --json
//! ```
//!
//! See `mb_bench::loadgen` for what is measured and how.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use mb_bench::target::Target;
use mb_bench::units::parse_duration;
use mb_bench::{corpus, loadgen};

/// Default corpus: the SpamAssassin ham set (2,750 real messages). The
/// `spamassassin-sample` folder beside it holds a single message.
/// `shared/` sits beside the repository checkout.
const DEFAULT_CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/corpus/ham/spamassassin"
);

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "milter load generator (MTA side, Postfix 3.7 behaviour)"
)]
struct Args {
    /// The filter: unix:/path, /path, inet:host:port, inet:port@host or host:port.
    #[arg(long)]
    target: Target,
    /// Concurrent milter connections (one thread each).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Measured messages in total [default: 10000 unless --duration is given].
    #[arg(long)]
    messages: Option<u64>,
    /// Measure for this long instead of (or as well as) a message count, e.g. 10s.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Offered messages per second over all connections (open loop); 0 = as fast
    /// as replies come back (closed loop).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// A directory (read recursively) or a single message file.
    #[arg(long, default_value = DEFAULT_CORPUS, conflicts_with = "size")]
    corpus: PathBuf,
    /// Synthesise one message of about this many bytes (smtp-source style) instead
    /// of reading a corpus.
    #[arg(long)]
    size: Option<usize>,
    /// Messages per milter connection (Postfix: one connection per SMTP session).
    #[arg(long, default_value_t = 1)]
    messages_per_connection: u32,
    /// Recipients per message.
    #[arg(long, default_value_t = 1)]
    recipients: usize,
    /// Messages sent before measuring starts.
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// Bound on each connect, read and write.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Account the CPU time of this server process (from /proc/PID/stat).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let a = Args::parse();
    if !a.rate.is_finite() || a.rate < 0.0 {
        eprintln!("loadgen: --rate must be 0 (closed loop) or a positive number of messages/s");
        return ExitCode::from(2);
    }
    if a.connections == 0 || a.connections > 10_000 {
        eprintln!("loadgen: --connections must be between 1 and 10000");
        return ExitCode::from(2);
    }
    let messages = match (a.messages, a.duration) {
        (None, None) => Some(10_000),
        (m, _) => m,
    };
    let corpus = match a.size {
        Some(size) => vec![corpus::synthesize(size)],
        None => match corpus::load(&a.corpus) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("loadgen: cannot load corpus {}: {e}", a.corpus.display());
                return ExitCode::FAILURE;
            }
        },
    };
    let cfg = loadgen::Config {
        target: a.target,
        connections: a.connections,
        messages,
        duration: a.duration,
        rate: a.rate,
        messages_per_connection: a.messages_per_connection.max(1),
        warmup: a.warmup,
        recipients: a.recipients.clamp(1, mb_engine::limits::RCPT_COUNT_MAX),
        timeout: a.timeout,
        server_pid: a.server_pid,
    };
    match loadgen::run(&cfg, Arc::new(corpus)) {
        Ok(report) => {
            if a.json {
                match serde_json::to_string_pretty(&report.json) {
                    Ok(s) => println!("{s}"),
                    Err(e) => eprintln!("loadgen: {e}"),
                }
            } else {
                print!("{}", loadgen::render(&report.json));
            }
            if report.stalled || report.transactions == 0 {
                // Stuck threads may still hold sockets; exit without joining them.
                std::process::exit(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
