//! `mbctl`: the mailborder control CLI.
//!
//! ```text
//! mbctl [--socket PATH] [--json] [--timeout 5s] status
//! mbctl shard status
//! mbctl reload
//! mbctl config verify [FILE]          (alias: config check; no daemon needed)
//! mbctl test-socket SPEC              (unix:/path, /path, inet:host:port, host:port)
//! mbctl policy test --from A --rcpt B [--rcpt C] [--ip IP] [--helo NAME] [--sasl-user U] [--tls]
//! mbctl policy reload
//! mbctl policy check [FILE]           (no daemon needed)
//! mbctl ratelimit show KEY            (192.0.2.0/24, sender=a@example.com, LIMIT:KEY)
//! mbctl queue list|show ID|retry ID|delete ID|flush       (the after-queue spool)
//! mbctl quarantine list|show ID|release ID|delete ID
//! mbctl scan [--rules DIR|FILE].. [--backend hyperscan|naive] FILE|DIR..   (no daemon needed)
//! ```
//!
//! Exit codes: 0 success, 1 failure (daemon unreachable, error answer, config
//! with errors, milter probe failed), 2 usage (clap's default).
//!
//! Talks to `mbd` over its control socket ([`mb_engine::ctl_api`]: one JSON line
//! each way) and to milters with the engine's codec. std only: no async runtime.
#![forbid(unsafe_code)]

mod client;
mod queue;
mod scan;
mod table;
mod test_socket;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mb_engine::config::{self, Severity};
use mb_engine::ctl_api::{Answer, PolicyQuery, Request};
use serde_json::json;

use crate::client::{io_text, Client};

/// The daemon's allocator: `mbctl scan` runs the daemon's scanner, and its
/// figures should be the daemon's (the scan allocates per message).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Config file used by `config verify` without an argument.
const DEFAULT_CONFIG: &str = "/etc/mailborder/mbd.toml";

#[derive(Debug, Parser)]
#[command(name = "mbctl", version, about = "mailborder control CLI")]
struct Cli {
    /// Control socket of mbd [default: $MBCTL_SOCKET, else the first existing of
    /// /run/mailborder/mbd.ctl, $XDG_RUNTIME_DIR/mailborder/mbd.ctl, ./state/mbd.ctl].
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Bound on every connect, read and write (e.g. 500ms, 5s, 1m).
    #[arg(long, global = true, value_name = "DURATION", default_value = "5s", value_parser = mbctl::units::parse_duration)]
    timeout: Duration,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Process-wide status of mbd.
    Status,
    /// Per-shard commands.
    Shard {
        #[command(subcommand)]
        cmd: ShardCmd,
    },
    /// Re-read the config file in mbd and swap it into every shard (like SIGHUP).
    Reload,
    /// Config file commands.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Open a milter session like Postfix 3.7 and report what the filter negotiates.
    TestSocket {
        /// unix:/path, /path, inet:host:port, inet:port@host or host:port.
        spec: String,
    },
    /// The eval policy: test an envelope, reload, check files.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Rate-limit buckets.
    Ratelimit {
        #[command(subcommand)]
        cmd: RatelimitCmd,
    },
    /// The after-queue spool ([delivery]): list, show, retry, delete, flush.
    Queue {
        #[command(subcommand)]
        cmd: queue::QueueCmd,
    },
    /// Messages held by the content filter on the after-queue path.
    Quarantine {
        #[command(subcommand)]
        cmd: queue::QuarantineCmd,
    },
    /// Scan messages offline with the content filter's rule engine (SpamAssassin rules).
    Scan {
        /// Message files or directories (read recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Rule files or directories of *.cf files, in order [default: /usr/share/spamassassin].
        #[arg(long = "rules", value_name = "DIR|FILE")]
        rules: Vec<PathBuf>,
        /// Matcher: hyperscan (one database per rule class) or naive (every regex in turn: the oracle).
        #[arg(long, default_value = "hyperscan", value_parser = ["hyperscan", "naive"])]
        backend: String,
        /// Print file names relative to this directory.
        #[arg(long)]
        root: Option<PathBuf>,
        /// Also time the raw Hyperscan floor: every class database over the raw message bytes
        /// (no parsing, no confirmation, no evals), and print it beside the real scan.
        #[arg(long)]
        floor: bool,
        /// Print how each pattern rule runs on the matcher (prefiltered and confirmed, confirm-only,
        /// rejected) and why, one line per rule that is not run exactly, before scanning.
        #[arg(long)]
        modes: bool,
        /// Print where the time went: each rule class (body, rawbody, uri, full, each header and
        /// form) with its pattern count, total and per-message time and share, then parsing and
        /// the rule logic (exists, evals, metas).
        #[arg(long)]
        profile: bool,
        /// After the scan, compile every pattern rule alone, time it over its class's text of
        /// every message and print the N costliest (slow: one compile per pattern).
        #[arg(long, value_name = "N")]
        pattern_costs: Option<usize>,
        /// Scan each message N times and count the fastest (steadier timings on a shared
        /// machine; the verdicts are the same every time).
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
        best_of: u32,
        /// Scan N messages together, rule class by rule class, so that each class's databases
        /// are read once per batch rather than once per message (faster; the verdicts are the
        /// same). A message's time is then its batch's time divided by the batch size.
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
        batch: u16,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCmd {
    /// Decide an envelope with the running policy and print every reason (counts nothing).
    Test {
        /// Envelope sender ("" or "<>" for the null sender).
        #[arg(long)]
        from: String,
        /// A recipient; repeat for several (decided in order as one message).
        #[arg(long, required = true)]
        rcpt: Vec<String>,
        /// Client IP address.
        #[arg(long)]
        ip: Option<String>,
        /// HELO name.
        #[arg(long, default_value = "")]
        helo: String,
        /// Client host name (reverse DNS).
        #[arg(long, default_value = "")]
        client_name: String,
        /// SASL login name.
        #[arg(long, default_value = "")]
        sasl_user: String,
        /// The session is TLS-encrypted.
        #[arg(long)]
        tls: bool,
        /// Decide at this Unix time instead of now (for time-of-day rules).
        #[arg(long)]
        time: Option<u64>,
    },
    /// Re-read the policy (config [policy], the policy tree, lists, rules, GeoIP).
    Reload,
    /// Compile a policy file with its lists, rules and GeoIP database (no daemon needed).
    Check {
        /// The policy file.
        #[arg(default_value = "/etc/mailborder/policy.toml")]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum RatelimitCmd {
    /// Buckets of a key: 192.0.2.0/24, sender=a@example.com, or LIMIT:KEY.
    Show {
        /// The key.
        key: String,
    },
}

#[derive(Debug, Subcommand)]
enum ShardCmd {
    /// Per-shard counters and latencies.
    Status,
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Check a config file with the daemon's own checker (no daemon needed).
    #[command(alias = "check")]
    Verify {
        /// The file to check.
        #[arg(default_value = DEFAULT_CONFIG)]
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mbctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let client = || Client::new(client::resolve_socket(cli.socket.as_deref()), cli.timeout);
    match &cli.cmd {
        Cmd::Status => match client().request(&Request::Status)? {
            Answer::Status(st) => {
                if cli.json {
                    print_json(&st)?;
                } else {
                    print!("{}", table::status_text(&st));
                }
                Ok(ExitCode::SUCCESS)
            }
            other => anyhow::bail!("mbd answered status with {other:?}"),
        },
        Cmd::Shard {
            cmd: ShardCmd::Status,
        } => match client().request(&Request::Shards)? {
            Answer::Shards(shards) => {
                if cli.json {
                    print_json(&shards)?;
                } else {
                    print!("{}", table::shards_table(&shards));
                }
                Ok(ExitCode::SUCCESS)
            }
            other => anyhow::bail!("mbd answered shard status with {other:?}"),
        },
        Cmd::Reload => match client().request(&Request::Reload)? {
            Answer::Reloaded {
                generation,
                warnings,
            } => {
                if cli.json {
                    print_json(&json!({ "generation": generation, "warnings": warnings }))?;
                } else {
                    println!("reloaded: config generation {generation}");
                    for w in &warnings {
                        println!("warning: {w}");
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            other => anyhow::bail!("mbd answered reload with {other:?}"),
        },
        Cmd::Config {
            cmd: ConfigCmd::Verify { file },
        } => verify_config(file, cli.json),
        Cmd::Policy {
            cmd:
                PolicyCmd::Test {
                    from,
                    rcpt,
                    ip,
                    helo,
                    client_name,
                    sasl_user,
                    tls,
                    time,
                },
        } => {
            let query = PolicyQuery {
                from: if from == "<>" {
                    String::new()
                } else {
                    from.clone()
                },
                rcpt: rcpt.clone(),
                ip: ip.clone(),
                client_name: client_name.clone(),
                helo: helo.clone(),
                sasl_user: sasl_user.clone(),
                tls: *tls,
                unix_time: *time,
            };
            match client().request(&Request::PolicyTest(query))? {
                Answer::PolicyTest(traces) => {
                    if cli.json {
                        print_json(&traces)?;
                    } else {
                        print!("{}", table::policy_traces(&traces));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                other => anyhow::bail!("mbd answered policy test with {other:?}"),
            }
        }
        Cmd::Policy {
            cmd: PolicyCmd::Reload,
        } => match client().request(&Request::PolicyReload)? {
            Answer::Reloaded {
                generation,
                warnings,
            } => {
                if cli.json {
                    print_json(&json!({ "generation": generation, "warnings": warnings }))?;
                } else {
                    println!("policy reloaded: config generation {generation}");
                    for w in &warnings {
                        println!("warning: {w}");
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            other => anyhow::bail!("mbd answered policy reload with {other:?}"),
        },
        Cmd::Policy {
            cmd: PolicyCmd::Check { file },
        } => check_policy(file, cli.json),
        Cmd::Scan {
            paths,
            rules,
            backend,
            root,
            floor,
            modes,
            profile,
            pattern_costs,
            best_of,
            batch,
        } => {
            let default_rules = [PathBuf::from(scan::STOCK_RULES)];
            let rules: &[PathBuf] = if rules.is_empty() {
                &default_rules
            } else {
                rules
            };
            let backend = if backend == "naive" {
                mb_engine::filter::matcher::Backend::Naive
            } else {
                mb_engine::filter::matcher::Backend::Hyperscan
            };
            scan::run(&scan::Args {
                paths,
                rules,
                backend,
                json: cli.json,
                root: root.as_deref(),
                floor: *floor,
                modes: *modes,
                profile: *profile,
                pattern_costs: *pattern_costs,
                best_of: *best_of,
                batch: usize::from(*batch),
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Ratelimit {
            cmd: RatelimitCmd::Show { key },
        } => match client().request(&Request::RatelimitShow { key: key.clone() })? {
            Answer::Ratelimit(rows) => {
                if cli.json {
                    print_json(&rows)?;
                } else {
                    print!("{}", table::buckets(key, &rows));
                }
                Ok(ExitCode::SUCCESS)
            }
            other => anyhow::bail!("mbd answered ratelimit show with {other:?}"),
        },
        Cmd::Queue { cmd } => {
            queue::run(&client(), &queue::queue_request(cmd), cli.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Quarantine { cmd } => {
            queue::run(&client(), &queue::quarantine_request(cmd), cli.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::TestSocket { spec } => {
            let target = mbctl::endpoint::parse(spec).map_err(anyhow::Error::msg)?;
            match test_socket::run(&target, cli.timeout) {
                Ok(report) => {
                    if cli.json {
                        print_json(&json!({ "ok": true, "report": report }))?;
                    } else {
                        print!("{}", test_socket::render(&report));
                        println!("OK");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    if cli.json {
                        print_json(
                            &json!({ "ok": false, "target": target.to_string(), "error": e.to_string() }),
                        )?;
                    }
                    eprintln!("mbctl: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

/// `mbctl policy check FILE`: parses and compiles a policy tree with every
/// file it names, as `mbd` does at start and reload.
fn check_policy(file: &Path, json_out: bool) -> anyhow::Result<ExitCode> {
    use mb_engine::eval::{source, PolicyTree};
    let shown = file.display().to_string();
    let result = std::fs::read_to_string(file)
        .map_err(|e| vec![format!("{shown}: cannot read: {}", io_text(&e))])
        .and_then(|text| {
            let show = |d: Vec<mb_engine::eval::FileDiagnostic>| {
                d.iter().map(ToString::to_string).collect::<Vec<_>>()
            };
            let parsed = source::parse(&shown, &text).map_err(show)?;
            let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
            let mut read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| io_text(&e));
            PolicyTree::compile(&parsed, &mut read).map_err(show)
        });
    match result {
        Ok(tree) => {
            if json_out {
                print_json(&json!({ "ok": true, "file": shown, "summary": tree.summary() }))?;
            } else {
                let s = tree.summary();
                println!(
                    "{shown}: OK: {} tenants, {} domains, {} recipients, {} list entries, {} rules, {} rate limits, GeoIP {}",
                    s.tenants,
                    s.domains,
                    s.recipients,
                    s.list_entries,
                    s.rules,
                    s.ratelimits,
                    if s.geoip { "loaded" } else { "none" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            if json_out {
                print_json(&json!({ "ok": false, "file": shown, "errors": errors }))?;
            } else {
                for e in &errors {
                    println!("{e}");
                }
                println!(
                    "{shown}: {} error(s); mbd would refuse this policy",
                    errors.len()
                );
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `mbctl config verify FILE`: the same checks as `mbd` at start and reload.
fn verify_config(file: &Path, json_out: bool) -> anyhow::Result<ExitCode> {
    let shown = file.display();
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            let msg = format!("cannot read config file {shown}: {}", io_text(&e));
            if json_out {
                print_json(
                    &json!({ "ok": false, "file": shown.to_string(), "error": msg, "diagnostics": [] }),
                )?;
            }
            eprintln!("mbctl: {msg}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let checked = config::parse(&text);
    let errors = checked
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = checked.diagnostics.len() - errors;
    let ok = errors == 0 && checked.config.is_some();
    if json_out {
        let diags: Vec<_> = checked
            .diagnostics
            .iter()
            .map(|d| {
                json!({
                    "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
                    "key": d.key,
                    "line": d.position.map(|(l, _)| l),
                    "column": d.position.map(|(_, c)| c),
                    "message": d.message,
                })
            })
            .collect();
        print_json(&json!({ "ok": ok, "file": shown.to_string(), "diagnostics": diags }))?;
    } else {
        for d in &checked.diagnostics {
            println!("{shown}: {d}");
        }
        if ok {
            println!(
                "{shown}: OK ({warnings} warning{})",
                if warnings == 1 { "" } else { "s" }
            );
        } else {
            println!(
                "{shown}: FAILED ({errors} error{}, {warnings} warning{})",
                if errors == 1 { "" } else { "s" },
                if warnings == 1 { "" } else { "s" }
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse() {
        assert_eq!(
            mbctl::units::parse_duration("5s").unwrap(),
            Duration::from_secs(5)
        );
        assert_eq!(
            mbctl::units::parse_duration("5").unwrap(),
            Duration::from_secs(5)
        );
        assert_eq!(
            mbctl::units::parse_duration("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            mbctl::units::parse_duration("1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            mbctl::units::parse_duration("2m").unwrap(),
            Duration::from_secs(120)
        );
        assert_eq!(
            mbctl::units::parse_duration("250us").unwrap(),
            Duration::from_micros(250)
        );
        for bad in ["", "0", "-1s", "5x", "s", "169h", "1..2s"] {
            assert!(mbctl::units::parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_verify_exit_codes() {
        let dir = std::env::temp_dir().join(format!("mbctl-verify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let good = dir.join("good.toml");
        std::fs::write(&good, "").unwrap();
        assert_eq!(verify_config(&good, false).unwrap(), ExitCode::SUCCESS);
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[milter]\nno_such_key = 1\n").unwrap();
        assert_eq!(verify_config(&bad, true).unwrap(), ExitCode::FAILURE);
        assert_eq!(
            verify_config(&dir.join("missing.toml"), false).unwrap(),
            ExitCode::FAILURE
        );
    }

    #[test]
    fn global_flags_after_subcommand() {
        let cli =
            Cli::try_parse_from(["mbctl", "shard", "status", "--json", "--timeout", "1s"]).unwrap();
        assert!(cli.json);
        assert_eq!(cli.timeout, Duration::from_secs(1));
        assert!(matches!(
            cli.cmd,
            Cmd::Shard {
                cmd: ShardCmd::Status
            }
        ));
        let cli = Cli::try_parse_from(["mbctl", "config", "check"]).unwrap();
        assert!(
            matches!(cli.cmd, Cmd::Config { cmd: ConfigCmd::Verify { ref file } } if file == Path::new(DEFAULT_CONFIG))
        );
        assert!(Cli::try_parse_from(["mbctl", "frobnicate"]).is_err());
    }
}
