//! Cluster-wide rate limits: the control plane reconciles the local bucket
//! table with Redis, off the decision path (docs/RATELIMIT.md, "Cluster-wide
//! sharing").
//!
//! Every `redis_sync_interval` it takes the events each bucket admitted since
//! the last sync ([`RateTable::take_deltas`]), sends them in one pipeline of
//! `EVALSHA` calls (at most [`BATCH`] buckets per call) to a Lua script that
//! applies `tat = max(tat, now) + Δ·T` per bucket and returns the merged TATs,
//! and raises the local buckets to them ([`RateTable::merge`]). Shards never
//! wait for any of it: they keep deciding from the local table.
//!
//! Times sent to Redis are the node's clock (see the doc for why), as
//! fixed-point ticks (1/4096 ms) since [`SYNC_EPOCH_MS`] so that they stay
//! exact in the script's doubles until 2094.
//!
//! Every await is under a timeout. On an error the connection is dropped and
//! re-made after a capped exponential back-off; meanwhile the deltas of each
//! interval are discarded (the local table keeps limiting on its own) and the
//! error shows in `mbctl status`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mb_engine::ctl_api::ClusterStatus;
use mb_engine::eval::ratelimit::{now_fixed, Delta, Merged, RateTable, FRAC_BITS};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

/// Buckets per `EVALSHA` call; one sync sends all its calls in one pipeline.
pub const BATCH: usize = 1000;
/// Start of the time scale sent to Redis: 2025-01-01T00:00:00Z, Unix ms.
pub const SYNC_EPOCH_MS: u64 = 1_735_689_600_000;
/// Shortest wait before reconnecting after an error.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Longest wait before reconnecting after errors.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Longest time to connect (TCP + handshake + `SCRIPT LOAD`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest error text kept for `mbctl status`.
const ERROR_TEXT_MAX: usize = 300;

/// The reconciling script. `KEYS[i]`: bucket keys; `ARGV[1]`: now; then
/// per key its emission interval `T` and its event count `Δ` (all in ticks
/// since [`SYNC_EPOCH_MS`]). Stores `max(tat, now) + Δ·T` and lets the key
/// expire when that TAT is reached (the bucket is full again, as an absent
/// key is); returns the new TATs in key order. Integer-valued doubles are
/// exact below 2^53, and `%.0f` keeps every digit (`tostring` would not).
pub const SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local t = tonumber(ARGV[2 * i])
  local d = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i])) or 0
  if tat < now then tat = now end
  tat = tat + d * t
  redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX',
    math.floor((tat - now) / 4096) + 1)
  out[i] = tat
end
return out
";

/// What the reconciler needs from `[eval]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `redis`: the server URL.
    pub url: String,
    /// `redis_sync_interval`.
    pub interval: Duration,
    /// `redis_key_prefix`.
    pub prefix: String,
}

/// Shared with the control plane's `mbctl status`.
pub type SharedStatus = Arc<Mutex<ClusterStatus>>;

/// A fresh status for `settings` (the URL without its password).
pub fn new_status(settings: &Settings) -> SharedStatus {
    Arc::new(Mutex::new(ClusterStatus {
        redis: redact(&settings.url),
        interval_ms: u64::try_from(settings.interval.as_millis()).unwrap_or(u64::MAX),
        ..ClusterStatus::default()
    }))
}

/// `redis://user:secret@host/0` → `redis://user:***@host/0`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(pair) => pair,
        None => return url.to_owned(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://***@{host}"),
    }
}

/// Node time in the ticks the script works in.
pub fn ticks_since_epoch(now_ms: u64) -> u64 {
    now_fixed(now_ms).saturating_sub(SYNC_EPOCH_MS << FRAC_BITS)
}

/// A TAT from the script back on the table's scale.
pub fn ticks_to_tat(ticks: u64) -> u64 {
    ticks.saturating_add(SYNC_EPOCH_MS << FRAC_BITS)
}

/// The Redis key of a bucket.
pub fn key_of(prefix: &str, hash: u64) -> String {
    format!("{prefix}{hash:016x}")
}

/// The pipeline for one sync: one `EVALSHA` per [`BATCH`] deltas.
pub fn pipeline(sha: &str, prefix: &str, deltas: &[Delta], now_ticks: u64) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for chunk in deltas.chunks(BATCH) {
        let cmd = pipe.cmd("EVALSHA").arg(sha).arg(chunk.len());
        for d in chunk {
            cmd.arg(key_of(prefix, d.hash));
        }
        cmd.arg(now_ticks);
        for d in chunk {
            cmd.arg(d.emission).arg(d.count);
        }
    }
    pipe
}

/// Runs the reconciler forever (on the control plane's runtime).
pub async fn run(table: Arc<RateTable>, settings: Settings, status: SharedStatus) {
    let client = match redis::Client::open(settings.url.as_str()) {
        Ok(c) => c,
        Err(e) => {
            // The config checker validated the URL; this is a last resort.
            log::error!("Cluster rate limits disabled: bad redis URL: {e}");
            record_error(&status, &format!("bad redis URL: {e}"));
            return;
        }
    };
    let op_timeout = settings
        .interval
        .clamp(Duration::from_millis(500), Duration::from_secs(5));
    let sha = redis::Script::new(SCRIPT).get_hash().to_owned();
    let mut sync = Sync {
        table,
        settings,
        status,
        client,
        conn: None,
        sha,
        op_timeout,
        backoff: BACKOFF_MIN,
        retry_at: Instant::now(),
        deltas: Vec::new(),
    };
    let mut tick = tokio::time::interval(sync.settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sync.once().await;
    }
}

struct Sync {
    table: Arc<RateTable>,
    settings: Settings,
    status: SharedStatus,
    client: redis::Client,
    conn: Option<MultiplexedConnection>,
    sha: String,
    op_timeout: Duration,
    backoff: Duration,
    retry_at: Instant,
    deltas: Vec<Delta>,
}

impl Sync {
    fn status(&self) -> std::sync::MutexGuard<'_, ClusterStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One interval: take the deltas, send them, merge the answers.
    async fn once(&mut self) {
        self.deltas.clear();
        self.table.take_deltas(&mut self.deltas);
        if self.conn.is_none() && (Instant::now() < self.retry_at || !self.connect().await) {
            self.discard();
            return;
        }
        let result = if self.deltas.is_empty() {
            self.ping().await
        } else {
            self.send().await
        };
        match result {
            Ok(()) => {
                self.backoff = BACKOFF_MIN;
                let mut st = self.status();
                st.connected = true;
                st.syncs += 1;
            }
            Err(e) => {
                self.discard();
                self.failed(&e);
            }
        }
    }

    async fn connect(&mut self) -> bool {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(self.op_timeout);
        let client = &self.client;
        let attempt = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let sha: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(SCRIPT)
                .query_async(&mut conn)
                .await?;
            Ok::<_, redis::RedisError>((conn, sha))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok((conn, sha))) => {
                if sha != self.sha {
                    log::warn!("Redis returned script SHA {sha}, expected {}", self.sha);
                    self.sha = sha;
                }
                self.conn = Some(conn);
                log::info!("Cluster rate limits: connected to {}", self.status().redis);
                true
            }
            Ok(Err(e)) => {
                self.failed(&format!("connect: {e}"));
                false
            }
            Err(_) => {
                self.failed(&format!("connect: no answer within {CONNECT_TIMEOUT:?}"));
                false
            }
        }
    }

    async fn ping(&mut self) -> Result<(), String> {
        let Some(conn) = self.conn.as_mut() else {
            return Err("not connected".into());
        };
        let ping = redis::cmd("PING");
        match tokio::time::timeout(self.op_timeout, ping.query_async::<String>(conn)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("ping: {e}")),
            Err(_) => Err(format!("ping: no answer within {:?}", self.op_timeout)),
        }
    }

    async fn send(&mut self) -> Result<(), String> {
        let (now_ms, _) = crate::evalload::now();
        let now = ticks_since_epoch(now_ms);
        let mut reloaded = false;
        let tats = loop {
            let pipe = pipeline(&self.sha, &self.settings.prefix, &self.deltas, now);
            let Some(conn) = self.conn.as_mut() else {
                return Err("not connected".into());
            };
            let call = pipe.query_async::<Vec<Vec<u64>>>(conn);
            match tokio::time::timeout(self.op_timeout, call).await {
                Ok(Ok(tats)) => break tats,
                // A restarted Redis has forgotten the script: load it again, once.
                Ok(Err(e)) if e.kind() == redis::ErrorKind::NoScriptError && !reloaded => {
                    reloaded = true;
                    let mut load = redis::cmd("SCRIPT");
                    load.arg("LOAD").arg(SCRIPT);
                    let load = load.query_async::<String>(conn);
                    match tokio::time::timeout(self.op_timeout, load).await {
                        Ok(Ok(sha)) => self.sha = sha,
                        Ok(Err(e)) => return Err(format!("script load: {e}")),
                        Err(_) => return Err("script load: timed out".into()),
                    }
                }
                Ok(Err(e)) => return Err(format!("sync: {e}")),
                Err(_) => return Err(format!("sync: no answer within {:?}", self.op_timeout)),
            }
        };
        let answers: Vec<u64> = tats.into_iter().flatten().collect();
        if answers.len() != self.deltas.len() {
            return Err(format!(
                "sync: {} answers for {} buckets",
                answers.len(),
                self.deltas.len()
            ));
        }
        let (mut raised, mut absent) = (0u64, 0u64);
        for (d, tat) in self.deltas.iter().zip(answers) {
            match self.table.merge(d.hash, ticks_to_tat(tat)) {
                Merged::Raised => raised += 1,
                Merged::Unchanged => {}
                Merged::Absent => absent += 1,
            }
        }
        let mut st = self.status();
        st.buckets_sent += self.deltas.len() as u64;
        st.events_sent += self.deltas.iter().map(|d| d.count).sum::<u64>();
        st.merges += raised;
        st.merges_absent += absent;
        st.last_sync_unix_ms = Some(now_ms);
        Ok(())
    }

    /// Deltas that could not be sent are dropped: sending them late would
    /// charge old events at a later `now` (docs/RATELIMIT.md).
    fn discard(&mut self) {
        let events: u64 = self.deltas.iter().map(|d| d.count).sum();
        self.status().events_dropped += events;
        self.deltas.clear();
    }

    fn failed(&mut self, error: &str) {
        let first = {
            let st = self.status();
            st.connected || st.errors == 0
        };
        if first {
            log::warn!(
                "Cluster rate limits: Redis error, limiting locally until it is back: {error}"
            );
        }
        self.conn = None;
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        record_error(&self.status, error);
    }
}

fn record_error(status: &SharedStatus, error: &str) {
    let mut st = status.lock().unwrap_or_else(|e| e.into_inner());
    st.connected = false;
    st.errors += 1;
    let mut text = error.to_owned();
    if text.len() > ERROR_TEXT_MAX {
        let mut cut = ERROR_TEXT_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    st.last_error = Some(text);
    st.last_error_unix_ms = Some(crate::evalload::now().0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("redis://u:pw@127.0.0.1:6379/0"),
            "redis://u:***@127.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://:pw@h/0"), "redis://:***@h/0");
        assert_eq!(redact("redis://127.0.0.1/0"), "redis://127.0.0.1/0");
    }

    #[test]
    fn ticks_round_trip_and_stay_exact_in_doubles() {
        let now_ms = 1_790_000_000_000; // 2026
        let t = ticks_since_epoch(now_ms);
        assert_eq!(ticks_to_tat(t), now_fixed(now_ms));
        // Exact in an f64 (the script's numbers) until 2094.
        let late = ticks_since_epoch(SYNC_EPOCH_MS + 69 * 365 * 86_400_000);
        assert!(late < 1 << 53);
        assert_eq!(ticks_since_epoch(0), 0);
    }

    #[test]
    fn pipeline_batches() {
        let d = Delta {
            hash: 0xab,
            emission: 4096,
            span: 4096 * 20,
            count: 2,
        };
        let deltas = vec![d; BATCH + 1];
        let pipe = pipeline("sha", "mb:rl:", &deltas, 7);
        assert_eq!(pipe.cmd_iter().count(), 2);
        assert_eq!(key_of("mb:rl:", 0xab), "mb:rl:00000000000000ab");
    }
}
