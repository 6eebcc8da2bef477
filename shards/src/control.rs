//! The control plane: one OS thread outside the shard executors, running a
//! tokio current-thread runtime (sqlx and the Redis client need tokio; they
//! will live here, never on a shard).
//!
//! It serves `mbctl` over the control unix socket (line-delimited JSON, see
//! `mb_engine::ctl_api`), turns SIGHUP into a reload and SIGTERM/SIGINT into a
//! drain, and talks to shards only through their bounded command channels: it
//! never blocks a shard, and a shard never waits on it.
//!
//! A reload parses the file with the same checker as `mbctl config verify`;
//! on any error the old policy stays active and the error is reported (log,
//! `mbctl status`, the `mbctl reload` answer). `[policy]` is swapped into
//! every shard at a message boundary; changes to `[daemon]`, `[shards]` and
//! `[milter]` need a restart and are reported as warnings.
//!
//! With `[eval] redis` set it also runs the cluster rate-limit reconciler
//! (`crate::cluster`) on this runtime.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mb_engine::config::{self, Config, Severity};
use mb_engine::ctl_api::{self, Answer, BucketRow, DaemonStatus, Request, Response, ShardStatus};
use mb_engine::eval::ratelimit::RateTable;
use mb_engine::limits::CTL_LINE_BYTES_MAX;
use mb_engine::policy::Policy;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};

use crate::evalload::Watched;
use crate::shard::{ShardCommand, Shared};
use crate::topology;

/// Longest wait for a shard to answer a status request.
const SHARD_STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for a shard to answer a queue request (`queue show` reads
/// the spool).
const SHARD_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest time one `mbctl` connection may stay idle.
const CTL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A shard as the control plane sees it.
pub struct ShardHandle {
    /// Shard index.
    pub id: u16,
    /// Command channel.
    pub commands: flume::Sender<ShardCommand>,
}

/// Everything the control plane starts with.
pub struct ControlContext {
    /// Config file (`None`: embedded defaults).
    pub config_path: Option<PathBuf>,
    /// The running config.
    pub config: Config,
    /// Control socket path.
    pub control_socket: PathBuf,
    /// Listener descriptions for status.
    pub listeners: Vec<String>,
    /// Shards.
    pub shards: Vec<ShardHandle>,
    /// Shared gauges.
    pub shared: Arc<Shared>,
    /// Each shard sends (id, connections left) when it has finished draining.
    pub finished: flume::Receiver<(u16, u32)>,
    /// The rate-limit buckets, kept across reloads.
    pub rate_table: Arc<RateTable>,
    /// The policy the shards started with (taken into the control state at
    /// start, so that no second reference keeps an old tree alive).
    pub policy: Option<Arc<Policy>>,
    /// Files of that policy to watch for changes (GeoIP database).
    pub watched: Watched,
}

struct State {
    config: Config,
    generation: u64,
    last_reload_error: Option<String>,
    draining: bool,
    policy: Arc<Policy>,
    watched: Watched,
}

/// How long a replaced policy snapshot is kept before it is freed.
const RETIRE_AFTER: Duration = Duration::from_secs(2);

/// Longest time between refreshes of the UTC offset (the GeoIP database is
/// looked at every `eval.watch_interval`, at most this long).
const TICK: Duration = Duration::from_secs(30);

struct Control {
    ctx: ControlContext,
    state: Mutex<State>,
    started: Instant,
    cluster: Option<crate::cluster::SharedStatus>,
}

/// Runs the control plane until every shard has drained after SIGTERM/SIGINT.
/// Returns the number of connections cut short by the grace period.
pub fn run(mut ctx: ControlContext) -> Result<u32> {
    let policy = ctx
        .policy
        .take()
        .ok_or_else(|| anyhow::anyhow!("the control plane needs the initial policy"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("cannot start the control-plane runtime")?;
    runtime.block_on(async move {
        let cluster = ctx.config.eval.redis.as_ref().map(|url| {
            let settings = crate::cluster::Settings {
                url: url.clone(),
                interval: ctx.config.eval.redis_sync_interval,
                prefix: ctx.config.eval.redis_key_prefix.clone(),
            };
            let status = crate::cluster::new_status(&settings);
            log::info!(
                "Cluster rate limits through {} every {:?}.",
                crate::cluster::redact(url),
                settings.interval
            );
            tokio::spawn(crate::cluster::run(
                Arc::clone(&ctx.rate_table),
                settings,
                Arc::clone(&status),
            ));
            status
        });
        let control = Arc::new(Control {
            cluster,
            state: Mutex::new(State {
                config: ctx.config.clone(),
                generation: 1,
                last_reload_error: None,
                draining: false,
                policy,
                watched: ctx.watched.clone(),
            }),
            ctx,
            started: Instant::now(),
        });
        topology::claim_socket_path(&control.ctx.control_socket)?;
        let listener = UnixListener::bind(&control.ctx.control_socket).with_context(|| {
            format!(
                "cannot bind control socket {}",
                control.ctx.control_socket.display()
            )
        })?;
        topology::set_socket_access(&control.ctx.control_socket, 0o660, None)?;
        tokio::spawn(serve_ctl(Arc::clone(&control), listener));

        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut tick = tokio::time::interval(control.ctx.config.eval.watch_interval.min(TICK));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    crate::evalload::refresh_utc_offset();
                    let changed = control
                        .state
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .watched
                        .changed();
                    if changed {
                        match control.reload().await {
                            Ok((generation, _)) => log::info!(
                                "GeoIP database changed on disk; policy reloaded, generation {generation}."
                            ),
                            Err(e) => {
                                log::error!(
                                    "GeoIP database changed on disk but the reload was refused; old policy stays: {e}"
                                );
                                control
                                    .state
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .watched
                                    .mark_seen();
                            }
                        }
                    }
                }
                _ = hup.recv() => {
                    match control.reload().await {
                        Ok((generation, warnings)) => {
                            log::info!("Config reloaded on SIGHUP; generation {generation}.");
                            for w in warnings {
                                log::warn!("{w}");
                            }
                        }
                        Err(e) => log::error!("Reload refused, old config stays active: {e}"),
                    }
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        log::info!("Draining: finishing conversations in progress.");
        control
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .draining = true;
        for shard in &control.ctx.shards {
            let _ = shard.commands.send_async(ShardCommand::Drain).await;
        }
        let mut left = 0;
        for _ in &control.ctx.shards {
            match control.ctx.finished.recv_async().await {
                Ok((_, n)) => left += n,
                Err(_) => break,
            }
        }
        let _ = std::fs::remove_file(&control.ctx.control_socket);
        Ok(left)
    })
}

impl Control {
    async fn answer(&self, request: Request) -> Response {
        match request {
            Request::Status => Response::Ok(Answer::Status(self.status().await)),
            Request::Shards => Response::Ok(Answer::Shards(self.shard_status().await)),
            Request::PolicyTest(query) => {
                let policy = self.current_policy();
                let (now_ms, utc_offset) = crate::evalload::now();
                Response::Ok(Answer::PolicyTest(
                    policy.test_envelope(&query, now_ms, utc_offset),
                ))
            }
            Request::RatelimitShow { key } => {
                let policy = self.current_policy();
                let Some(tree) = policy.eval() else {
                    return Response::Error("no eval policy is configured ([eval] policy)".into());
                };
                let (now_ms, _) = crate::evalload::now();
                let rows = tree
                    .limits()
                    .show(policy.rate_table(), &key, now_ms)
                    .into_iter()
                    .map(|b| BucketRow {
                        limit: b.limit,
                        key: b.key,
                        window: b.window,
                        remaining: b.remaining,
                        retry_after_ms: b.retry_after_ms,
                    })
                    .collect();
                Response::Ok(Answer::Ratelimit(rows))
            }
            Request::QueueList { limit, .. } => {
                let mut entries = Vec::new();
                let mut total = 0;
                for shard in &self.ctx.shards {
                    match self.shard_queue(shard, request.clone()).await {
                        Ok(Answer::Queue {
                            entries: e,
                            total: t,
                        }) => {
                            entries.extend(e);
                            total += t;
                        }
                        Ok(_) => {}
                        Err(e) => return Response::Error(e),
                    }
                }
                entries
                    .sort_by(|a, b| (a.received_unix_ms, &a.id).cmp(&(b.received_unix_ms, &b.id)));
                entries.truncate(limit as usize);
                Response::Ok(Answer::Queue { entries, total })
            }
            Request::QueueFlush => {
                let mut count = 0;
                for shard in &self.ctx.shards {
                    match self.shard_queue(shard, Request::QueueFlush).await {
                        Ok(Answer::QueueChanged { count: n }) => count += n,
                        Ok(_) => {}
                        Err(e) => return Response::Error(e),
                    }
                }
                Response::Ok(Answer::QueueChanged { count })
            }
            Request::QueueShow { ref id, .. }
            | Request::QueueRetry { ref id }
            | Request::QueueDelete { ref id, .. }
            | Request::QuarantineRelease { ref id } => {
                let Some(shard) = crate::store::parse_queue_id(id)
                    .map(crate::store::shard_of)
                    .and_then(|s| self.ctx.shards.iter().find(|h| h.id == s))
                else {
                    return Response::Error(format!(
                        "`{id}` is not a queue id of this mbd (hex digits, as in `queued as`)"
                    ));
                };
                match self.shard_queue(shard, request.clone()).await {
                    Ok(answer) => Response::Ok(answer),
                    Err(e) => Response::Error(e),
                }
            }
            Request::Reload | Request::PolicyReload => match self.reload().await {
                Ok((generation, warnings)) => Response::Ok(Answer::Reloaded {
                    generation,
                    warnings,
                }),
                Err(e) => Response::Error(e),
            },
        }
    }

    /// One queue request on one shard.
    async fn shard_queue(&self, shard: &ShardHandle, request: Request) -> Result<Answer, String> {
        let (tx, rx) = flume::bounded(1);
        shard
            .commands
            .try_send(ShardCommand::Queue(request, tx))
            .map_err(|_| format!("shard {} is busy or gone", shard.id))?;
        match tokio::time::timeout(SHARD_QUEUE_TIMEOUT, rx.recv_async()).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(format!("shard {} did not answer", shard.id)),
            Err(_) => Err(format!(
                "shard {} did not answer within {SHARD_QUEUE_TIMEOUT:?}",
                shard.id
            )),
        }
    }

    fn current_policy(&self) -> Arc<Policy> {
        Arc::clone(&self.state.lock().unwrap_or_else(|e| e.into_inner()).policy)
    }

    async fn shard_status(&self) -> Vec<ShardStatus> {
        let mut out = Vec::with_capacity(self.ctx.shards.len());
        for shard in &self.ctx.shards {
            let (tx, rx) = flume::bounded(1);
            if shard.commands.try_send(ShardCommand::Status(tx)).is_err() {
                continue;
            }
            if let Ok(Ok(status)) =
                tokio::time::timeout(SHARD_STATUS_TIMEOUT, rx.recv_async()).await
            {
                out.push(status);
            }
        }
        out
    }

    async fn status(&self) -> DaemonStatus {
        let shards = self.shard_status().await;
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        DaemonStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            config_path: self
                .ctx
                .config_path
                .as_ref()
                .map(|p| p.display().to_string()),
            config_generation: state.generation,
            last_reload_error: state.last_reload_error.clone(),
            listeners: self.ctx.listeners.clone(),
            control_socket: self.ctx.control_socket.display().to_string(),
            shards: u16::try_from(self.ctx.shards.len()).unwrap_or(u16::MAX),
            connections: self
                .ctx
                .shared
                .connections
                .iter()
                .map(|c| u64::from(c.load(std::sync::atomic::Ordering::Relaxed)))
                .sum(),
            messages: shards.iter().map(|s| s.messages).sum(),
            rss_bytes: topology::rss_bytes(),
            draining: state.draining,
            cluster: self
                .cluster
                .as_ref()
                .map(|c| Box::new(c.lock().unwrap_or_else(|e| e.into_inner()).clone())),
        }
    }

    /// Re-reads the config file; swaps the policy into every shard.
    async fn reload(&self) -> Result<(u64, Vec<String>), String> {
        let result = self.reload_inner().await;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.last_reload_error = result.as_ref().err().cloned();
        result
    }

    async fn reload_inner(&self) -> Result<(u64, Vec<String>), String> {
        let (new, mut warnings) = match &self.ctx.config_path {
            None => (
                Config::default(),
                vec!["mbd runs on embedded defaults; nothing to re-read".into()],
            ),
            Some(path) => {
                // A config file is small; reading it blocks this thread only.
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let checked = config::parse(&text);
                let (errors, warnings): (Vec<_>, Vec<_>) = checked
                    .diagnostics
                    .iter()
                    .partition(|d| d.severity == Severity::Error);
                let Some(config) = checked.config else {
                    let all: Vec<String> = errors
                        .iter()
                        .map(|d| format!("{}: {d}", path.display()))
                        .collect();
                    return Err(all.join("\n"));
                };
                (
                    config,
                    warnings
                        .iter()
                        .map(|d| format!("{}: {d}", path.display()))
                        .collect(),
                )
            }
        };
        // Compile before taking the generation: a refused tree changes nothing.
        let next = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .generation
            + 1;
        let (policy, watched) = crate::evalload::build_policy(&new, next, &self.ctx.rate_table)?;
        let generation = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            for (section, changed) in [
                ("daemon", new.daemon != state.config.daemon),
                ("shards", new.shards != state.config.shards),
                ("milter", new.milter != state.config.milter),
                ("delivery", new.delivery != state.config.delivery),
            ] {
                if changed {
                    warnings.push(format!(
                        "[{section}] changed; it takes effect at the next restart"
                    ));
                }
            }
            if new.eval.ratelimit_slots != state.config.eval.ratelimit_slots
                || new.eval.policyd_socket != state.config.eval.policyd_socket
                || new.eval.policyd_tcp != state.config.eval.policyd_tcp
            {
                warnings.push(
                    "[eval] ratelimit_slots or policyd listeners changed; they take effect at the next restart"
                        .into(),
                );
            }
            let old = &state.config.eval;
            if new.eval.redis != old.redis
                || new.eval.redis_sync_interval != old.redis_sync_interval
                || new.eval.redis_key_prefix != old.redis_key_prefix
                || new.eval.ratelimit_seed != old.ratelimit_seed
            {
                warnings.push(
                    "[eval] redis, redis_sync_interval, redis_key_prefix or ratelimit_seed changed; they take effect at the next restart"
                        .into(),
                );
            }
            state.generation = next;
            state.config.policy = new.policy.clone();
            state.config.eval.policy = new.eval.policy.clone();
            let old = std::mem::replace(&mut state.policy, Arc::clone(&policy));
            state.watched = watched;
            (state.generation, old)
        };
        let (generation, old) = generation;
        for shard in &self.ctx.shards {
            shard
                .commands
                .send_async(ShardCommand::Swap(Arc::clone(&policy)))
                .await
                .map_err(|_| format!("shard {} is gone", shard.id))?;
        }
        // Drop the old snapshot here, after the shards have let go of it (a
        // conversation in a message may hold it a little longer), and hand
        // the freed pages back to the OS: a large policy tree would otherwise
        // stay resident twice over.
        tokio::spawn(async move {
            tokio::time::sleep(RETIRE_AFTER).await;
            drop(old);
            crate::sys::release_free_memory();
        });
        Ok((generation, warnings))
    }
}

async fn serve_ctl(control: Arc<Control>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(ctl_connection(Arc::clone(&control), stream));
            }
            Err(e) => {
                log::warn!("Control socket accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn ctl_connection(control: Arc<Control>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limited = (&mut reader).take(CTL_LINE_BYTES_MAX as u64 + 1);
        let mut limited = limited;
        let n = match tokio::time::timeout(CTL_IDLE_TIMEOUT, limited.read_until(b'\n', &mut line))
            .await
        {
            Ok(Ok(n)) => n,
            _ => return,
        };
        if n == 0 {
            return;
        }
        let response = if line.len() > CTL_LINE_BYTES_MAX {
            Response::Error(format!("request longer than {CTL_LINE_BYTES_MAX} bytes"))
        } else {
            match ctl_api::from_line::<Request>(&line) {
                Ok(request) => control.answer(request).await,
                Err(e) => Response::Error(format!("bad request: {e}")),
            }
        };
        let Ok(bytes) = ctl_api::to_line(&response) else {
            return;
        };
        if write.write_all(&bytes).await.is_err() || line.len() > CTL_LINE_BYTES_MAX {
            return;
        }
    }
}
