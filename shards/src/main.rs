//! `mbd`: the mailborder daemon.
//!
//! Boot: check the config (every diagnostic at once) → raise limits → resolve
//! paths → plan CPUs → start one pinned glommio executor per shard and wait
//! until each has bound its listeners → print the Postfix lines → run the
//! control plane on this thread until SIGTERM has drained every shard.
#![deny(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use glommio::{LocalExecutorBuilder, Placement};
use mb_engine::config::{self, Config, Severity};
use mb_engine::eval::ratelimit::RateTable;

mod admin;
mod cluster;
mod control;
mod deliver;
mod evalload;
mod ingress;
mod io;
mod logger;
mod policyd;
mod shard;
mod slab;
mod spool;
mod store;
mod sweeper;
#[allow(unsafe_code)]
mod sys;
mod tls;
#[allow(unsafe_code)]
mod topology;

use shard::{ShardCommand, ShardContext, Shared};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Longest wait for every shard to bind its listeners at start.
const SHARD_START_TIMEOUT: Duration = Duration::from_secs(15);
/// Capacity of each shard's command channel.
const COMMAND_CHANNEL_CAPACITY: usize = 64;
/// Capacity of each shard's hand-off channel (connections in flight from the
/// acceptor); beyond it the acceptor serves the connection itself.
const HANDOFF_CHANNEL_CAPACITY: usize = 1024;

/// mailborder daemon: a thread-per-core Postfix milter.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Config file (TOML). Without it, mbd runs on its embedded defaults.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// State directory for sockets (overrides daemon.state_dir).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    logger::init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    let checked = config::parse(&text);
    for d in &checked.diagnostics {
        match d.severity {
            Severity::Error => log::error!("{}: {d}", path.display()),
            Severity::Warning => log::warn!("{}: {d}", path.display()),
        }
    }
    match checked.config {
        Some(c) => Ok(c),
        None => bail!(
            "{} has errors (listed above); nothing started",
            path.display()
        ),
    }
}

fn run(args: &Args) -> Result<()> {
    let config = load_config(args.config.as_ref())?;
    let limits = topology::raise_limits()?;
    let paths = topology::resolve_paths(&config, args.state_dir.as_deref())?;
    let cpus = topology::cpu_plan(&config)?;
    let gid = config
        .milter
        .socket_group
        .as_deref()
        .map(topology::group_id)
        .transpose()?;
    if let Some(path) = &paths.milter_socket {
        topology::claim_socket_path(path)?;
    }
    if let Some(path) = &paths.policyd_socket {
        topology::claim_socket_path(path)?;
    }

    let shard_count = cpus.len();
    let shared = Arc::new(Shared {
        connections: (0..shard_count).map(|_| AtomicU32::new(0)).collect(),
    });
    evalload::refresh_utc_offset();
    let (slots, seed) = (config.eval.ratelimit_slots, config.eval.ratelimit_seed);
    let rate_table = Arc::new(if config.eval.redis.is_some() {
        RateTable::for_cluster(slots, seed)
    } else {
        RateTable::with_seed(slots, seed)
    });
    // Compiled content-filter databases survive restarts here.
    let _ = evalload::FILTER_CACHE_DIR.set(paths.state_dir.join("filter-cache"));
    let (policy, watched) = evalload::build_policy(&config, 1, &rate_table)
        .map_err(|e| anyhow::anyhow!("the eval policy has errors; nothing started:\n{e}"))?;
    if let Some(tree) = policy.eval() {
        log::info!("Eval policy loaded: {:?}", tree.summary());
        // The compile's temporaries (file text, parsed entries) are freed.
        sys::release_free_memory();
    }
    let (handoff_tx, handoff_rx): (Vec<_>, Vec<_>) = (0..shard_count)
        .map(|_| flume::bounded(HANDOFF_CHANNEL_CAPACITY))
        .unzip();
    let relay_tls = if config.delivery.enabled {
        tls::relay_setup(&config.delivery)?
    } else {
        None
    };
    if let Some(t) = &relay_tls {
        log::info!(
            "Delivery to the relay {}: relay_tls = \"{}\" ({}).",
            config.delivery.relay,
            t.mode.name(),
            t.trust
        );
    }
    let delivery = config.delivery.enabled.then(|| {
        Arc::new(deliver::Setup {
            config: config.delivery.clone(),
            tls: relay_tls.clone(),
            hostname: config
                .delivery
                .hostname
                .clone()
                .unwrap_or_else(topology::host_name),
            spool_dir: config
                .delivery
                .spool_dir
                .clone()
                .unwrap_or_else(|| paths.state_dir.join(config::defaults::SPOOL_SUBDIR)),
        })
    });
    if let Some(setup) = &delivery {
        if setup.spool_dir.starts_with("/run") || setup.spool_dir.starts_with("/dev/shm") {
            log::warn!(
                "The spool {} is on a tmpfs: a reboot loses every queued message. Set \
                 delivery.spool_dir to persistent storage (docs/CONFIG.md).",
                setup.spool_dir.display()
            );
        }
    }
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (finished_tx, finished_rx) = flume::unbounded();
    let mut handles = Vec::with_capacity(shard_count);
    let mut executors = Vec::with_capacity(shard_count);

    for (i, (&cpu, handoff_rx)) in cpus.iter().zip(handoff_rx).enumerate() {
        let id = u16::try_from(i).context("too many shards")?;
        let (cmd_tx, cmd_rx) = flume::bounded(COMMAND_CHANNEL_CAPACITY);
        let ctx = ShardContext {
            id,
            cpu,
            milter: config.milter.clone(),
            policy: Arc::clone(&policy),
            unix_socket: (i == 0)
                .then(|| {
                    paths
                        .milter_socket
                        .clone()
                        .map(|p| (p, config.milter.socket_mode, gid))
                })
                .flatten(),
            policyd_socket: (i == 0)
                .then(|| {
                    paths
                        .policyd_socket
                        .clone()
                        .map(|p| (p, config.milter.socket_mode, gid))
                })
                .flatten(),
            policyd_tcp: config.eval.policyd_tcp.clone(),
            commands: cmd_rx,
            handoff_rx,
            handoff_tx: handoff_tx.clone(),
            shared: Arc::clone(&shared),
            ready: ready_tx.clone(),
            grace: config.daemon.shutdown_grace,
            delivery: delivery.clone(),
        };
        let finished = finished_tx.clone();
        let executor = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard{i}"))
            .io_memory(config.shards.io_memory_bytes)
            .spawn(move || async move {
                let left = shard::run(ctx).await;
                let _ = finished.send((id, left));
            })
            .map_err(|e| anyhow::anyhow!("cannot start shard {i} on CPU {cpu}: {e}"))?;
        executors.push(executor);
        handles.push(control::ShardHandle {
            id,
            commands: cmd_tx,
        });
    }
    drop(ready_tx);

    let deadline = Instant::now() + SHARD_START_TIMEOUT;
    for _ in 0..shard_count {
        let left = deadline.saturating_duration_since(Instant::now());
        match ready_rx.recv_timeout(left) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                stop_shards(&handles);
                bail!("{e}");
            }
            Err(_) => {
                stop_shards(&handles);
                bail!("shards did not start within {SHARD_START_TIMEOUT:?}");
            }
        }
    }

    let mut listeners = Vec::new();
    if let Some(p) = &paths.milter_socket {
        listeners.push(format!("unix:{}", p.display()));
    }
    listeners.extend(config.milter.tcp.iter().map(|a| format!("inet:{a}")));
    let milter_listeners = listeners.len();
    if let Some(p) = &paths.policyd_socket {
        listeners.push(format!("policy unix:{}", p.display()));
    }
    listeners.extend(
        config
            .eval
            .policyd_tcp
            .iter()
            .map(|a| format!("policy inet:{a}")),
    );
    if let Some(setup) = &delivery {
        listeners.extend(setup.config.listen.iter().map(|a| format!("smtp inet:{a}")));
    }
    log::info!(
        "mbd {} started: {shard_count} shards on CPUs {cpus:?}, listening on {}, state directory {}, \
         control socket {}, memlock {} KiB, nofile {}.",
        env!("CARGO_PKG_VERSION"),
        listeners.join(", "),
        paths.state_dir.display(),
        paths.control_socket.display(),
        limits.memlock / 1024,
        limits.nofile,
    );
    print_postfix_lines(
        &listeners[..milter_listeners],
        config.milter.socket_group.is_none(),
    );
    if let Some(p) = &paths.policyd_socket {
        println!(
            "# Policy delegation (optional), in smtpd_recipient_restrictions after\n\
             # reject_unauth_destination:  check_policy_service unix:{}",
            p.display()
        );
    }

    if let Some(setup) = &delivery {
        if let Some(first) = setup.config.listen.first() {
            println!(
                "# After-queue content filter: in main.cf\n\
                 #   content_filter = smtp:[{ip}]:{port}\n\
                 # and in master.cf the way back in (delivery.relay = {relay}):\n\
                 #   {relay} inet n - n - - smtpd -o content_filter= \\\n\
                 #     -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters \\\n\
                 #     -o smtpd_authorized_xforward_hosts=127.0.0.0/8 -o mynetworks=127.0.0.0/8\n\
                 # Spool: {spool}",
                ip = first.ip(),
                port = first.port(),
                relay = setup.config.relay,
                spool = setup.spool_dir.display(),
            );
        }
    }
    let milter_socket = paths.milter_socket.clone();
    let policyd_socket = paths.policyd_socket.clone();
    let left = control::run(control::ControlContext {
        config_path: args.config.clone(),
        config,
        control_socket: paths.control_socket,
        listeners,
        shards: handles,
        shared,
        finished: finished_rx,
        rate_table,
        policy: Some(policy),
        watched,
    })?;
    for p in [milter_socket, policyd_socket].into_iter().flatten() {
        let _ = std::fs::remove_file(p);
    }
    if left > 0 {
        log::warn!("Grace period over: {left} conversations cut short (Postfix defers them).");
        // Executors still serving cut connections are not joined.
        return Ok(());
    }
    for executor in executors {
        let _ = executor.join();
    }
    log::info!("Drained; exiting.");
    Ok(())
}

fn stop_shards(handles: &[control::ShardHandle]) {
    for h in handles {
        let _ = h.commands.try_send(ShardCommand::Drain);
    }
}

/// The lines an admin adds to Postfix's main.cf.
fn print_postfix_lines(listeners: &[String], no_group: bool) {
    let Some(first) = listeners.first() else {
        return;
    };
    println!(
        "# Add to /etc/postfix/main.cf, then `postfix reload`:\n\
         smtpd_milters = {first}\n\
         non_smtpd_milters = $smtpd_milters\n\
         milter_protocol = 6\n\
         milter_default_action = tempfail\n\
         # With Debian's chrooted smtpd/cleanup, a unix socket path is resolved inside\n\
         # /var/spool/postfix: put the socket there or use milter.tcp (see docs/CONFIG.md)."
    );
    if no_group && first.starts_with("unix:") {
        println!(
            "# Postfix connects as user `postfix`: set milter.socket_group = \"postfix\" \
             (the socket is mode 0770 with no group set)."
        );
    }
}
