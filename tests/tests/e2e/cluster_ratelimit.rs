//! Cluster-wide rate limits: two real mbd nodes share a `20/1m` per-sender
//! limit through a real `redis-server` (started here on a leased port, stopped
//! by PID), driven with real policy delegation requests (Postfix's
//! `check_policy_service` protocol on `<state_dir>/mb-policy.sock`),
//! alternating between the nodes.
//!
//! The bounds are docs/RATELIMIT.md's: over an interval of `t` seconds the
//! cluster admits at most `count + r·t + (N − 1)·min(count + r·D, a·D)` for
//! one key, `D = 2S + 2L` (S the sync interval, L the Redis round trip plus
//! control-plane delay, taken generously here), `a` the rate at which one
//! node is asked. Node-local limits admit `count + r·t` per node.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mb_engine::policyd::{decode_response, encode_request, Action};
use mb_tests::harness::{
    lease_port, port_listening, require_tool, wait_for, Daemon, Mbd, MbdConfig, PortLease, TestDir,
};

const COUNT: f64 = 20.0;
const PERIOD_S: f64 = 60.0;
/// `redis_sync_interval` of the nodes.
const SYNC: Duration = Duration::from_millis(100);
/// Assumed worst Redis round trip plus control-plane delay on a loaded CI
/// machine (the real one is well under a millisecond).
const LAG: Duration = Duration::from_millis(200);
/// Time between two requests (alternating nodes).
const PACE: Duration = Duration::from_millis(50);
const REQUESTS: u32 = 80;
const SEED: u64 = 4_242_424_242;

const POLICY_TREE: &str = r#"
[[ratelimit]]
name = "x"
key = ["sender"]
windows = ["20/1m"]
"#;

/// Our own redis-server, in `dir`, stopped (by PID) on drop.
fn redis(dir: &Path, port: u16, n: u32) -> Daemon {
    let server = require_tool("redis-server", "redis-server");
    let mut cmd = Command::new(server);
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &dir.display().to_string(),
    ]);
    let d = Daemon::spawn(
        "redis-server",
        &mut cmd,
        &dir.join(format!("redis-{n}.log")),
    )
    .expect("spawn redis-server");
    assert!(
        wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
            port_listening(port).then_some(())
        })
        .is_some(),
        "redis-server did not listen on {port}: {}",
        d.log_text()
    );
    d
}

fn node(dir: &TestDir, name: &str, redis_port: Option<u16>) -> Mbd {
    let home = dir.subdir(name).expect("node dir");
    let tree = home.join("policy.toml");
    std::fs::write(&tree, POLICY_TREE).expect("policy file");
    let redis = redis_port.map_or(String::new(), |p| {
        format!(
            "redis = \"redis://127.0.0.1:{p}/0\"\nredis_sync_interval = \"{}ms\"\n",
            SYNC.as_millis()
        )
    });
    let cfg = MbdConfig {
        shards: 1,
        policy: format!(
            "[eval]\npolicy = \"{}\"\nratelimit_seed = {SEED}\n{redis}",
            tree.display()
        ),
        ..MbdConfig::default()
    };
    Mbd::start(&home, &cfg).expect("mbd starts")
}

/// A policy delegation client on one node, one connection like smtpd.
struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
    seq: u64,
}

impl Client {
    fn new(mbd: &Mbd) -> Self {
        let path = mbd.state_dir.join("mb-policy.sock");
        let stream = UnixStream::connect(&path)
            .unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        Self {
            stream,
            buf: Vec::new(),
            seq: 0,
        }
    }

    /// One RCPT request of a new message from `sender`; true when admitted.
    fn ask(&mut self, sender: &str) -> bool {
        self.seq += 1;
        let instance = format!("{:x}.{}", std::process::id(), self.seq);
        let mut req = Vec::new();
        encode_request(
            &[
                ("request", "smtpd_access_policy"),
                ("protocol_state", "RCPT"),
                ("protocol_name", "ESMTP"),
                ("client_address", "192.0.2.10"),
                ("client_name", "mx.example.net"),
                ("helo_name", "mx.example.net"),
                ("sender", sender),
                ("recipient", "rcpt@example.org"),
                ("recipient_count", "0"),
                ("instance", &instance),
            ],
            &mut req,
        );
        self.stream.write_all(&req).expect("send request");
        let mut chunk = [0u8; 1024];
        loop {
            if let Some((action, used)) = decode_response(&self.buf).expect("valid answer") {
                self.buf.drain(..used);
                return match action {
                    Action::Dunno => true,
                    Action::Code { code: 450, text } if text.contains("Rate limit") => false,
                    other => panic!("unexpected answer {other:?}"),
                };
            }
            let n = self.stream.read(&mut chunk).expect("read answer");
            assert!(n > 0, "mbd closed the policy connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Sends [`REQUESTS`] requests for `sender`, alternating between the nodes,
/// one per [`PACE`]; returns (admitted, elapsed).
fn drive(clients: &mut [Client], sender: &str) -> (u32, Duration) {
    let start = Instant::now();
    let mut admitted = 0;
    for i in 0..REQUESTS {
        let due = start + PACE * i;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let n = clients.len();
        if clients[i as usize % n].ask(sender) {
            admitted += 1;
        }
    }
    (admitted, start.elapsed())
}

/// The doc's bound for one key over `elapsed`, two nodes, Redis shared.
fn shared_bound(elapsed: Duration) -> u32 {
    let r = COUNT / PERIOD_S;
    let d = 2.0 * SYNC.as_secs_f64() + 2.0 * LAG.as_secs_f64();
    let a = 1.0 / (2.0 * PACE.as_secs_f64()); // requests per second per node
    let other = (COUNT + r * d).min(a * d);
    (COUNT + r * elapsed.as_secs_f64() + other).floor() as u32
}

/// What N nodes limiting alone admit at most: `N·(count + r·t)`.
fn local_bound(nodes: u32, elapsed: Duration) -> u32 {
    let r = COUNT / PERIOD_S;
    (f64::from(nodes) * (COUNT + r * elapsed.as_secs_f64())).floor() as u32
}

fn cluster(mbd: &Mbd) -> serde_json::Value {
    mbd.status().expect("status")["cluster"].clone()
}

fn redis_port() -> PortLease {
    lease_port().expect("port")
}

#[test]
fn two_nodes_share_a_limit_through_redis_and_survive_an_outage() {
    let dir = TestDir::new("cluster-rl").expect("dir");
    let lease = redis_port();
    let port = lease.port;
    let redis_dir = dir.subdir("redis").expect("redis dir");
    let server = redis(&redis_dir, port, 0);
    let a = node(&dir, "a", Some(port));
    let b = node(&dir, "b", Some(port));
    for m in [&a, &b] {
        let ok = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
            (cluster(m)["connected"] == true).then_some(())
        });
        assert!(ok.is_some(), "not connected: {}", cluster(m));
    }
    let mut clients = [Client::new(&a), Client::new(&b)];

    // Shared: about one node's allowance in all.
    let (admitted, elapsed) = drive(&mut clients, "one@example.com");
    let bound = shared_bound(elapsed);
    assert!(
        (COUNT as u32..=bound).contains(&admitted),
        "shared: admitted {admitted}, want 20..={bound} over {elapsed:?}"
    );
    for m in [&a, &b] {
        let c = cluster(m);
        assert!(c["syncs"].as_u64() > Some(0), "{c}");
        assert!(c["events_sent"].as_u64() > Some(0), "{c}");
        assert!(
            c["merges"].as_u64() > Some(0),
            "the other node's use was merged: {c}"
        );
        assert_eq!(c["errors"], 0, "{c}");
    }
    eprintln!("shared: admitted {admitted} (bound {bound}) in {elapsed:?}");

    // Redis stops: the nodes keep answering and limit alone.
    drop(server);
    let (admitted, elapsed) = drive(&mut clients, "two@example.com");
    let (lo, hi) = (2 * COUNT as u32, local_bound(2, elapsed));
    assert!(
        (lo..=hi).contains(&admitted),
        "Redis down: admitted {admitted}, want {lo}..={hi}"
    );
    eprintln!("Redis down: admitted {admitted} (node-local {lo}..={hi}) in {elapsed:?}");
    for m in [&a, &b] {
        let c = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            let c = cluster(m);
            (c["connected"] == false && c["errors"].as_u64() > Some(0)).then_some(c)
        })
        .unwrap_or_else(|| panic!("error not shown: {}", cluster(m)));
        assert!(c["last_error"].is_string(), "{c}");
        let text = m.ctl(&["status"]);
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("NOT connected"), "{text}");
    }

    // Redis is back (empty): syncing resumes, and limits are shared again.
    let _server = redis(&redis_dir, port, 1);
    for m in [&a, &b] {
        let before = cluster(m)["syncs"].as_u64().unwrap_or(0);
        let ok = wait_for(Duration::from_secs(40), Duration::from_millis(200), || {
            let c = cluster(m);
            (c["connected"] == true && c["syncs"].as_u64() > Some(before)).then_some(())
        });
        assert!(ok.is_some(), "sync did not resume: {}", cluster(m));
    }
    let (admitted, elapsed) = drive(&mut clients, "three@example.com");
    let bound = shared_bound(elapsed);
    assert!(
        (COUNT as u32..=bound).contains(&admitted),
        "after the restart: admitted {admitted}, want 20..={bound}"
    );
    eprintln!("after the restart: admitted {admitted} (bound {bound}) in {elapsed:?}");
    drop(clients);
    drop(lease);
}

#[test]
fn without_redis_each_node_limits_alone() {
    let dir = TestDir::new("cluster-rl-local").expect("dir");
    let a = node(&dir, "a", None);
    let b = node(&dir, "b", None);
    assert!(cluster(&a).is_null(), "no cluster status without redis");
    let mut clients = [Client::new(&a), Client::new(&b)];
    let (admitted, elapsed) = drive(&mut clients, "one@example.com");
    let (lo, hi) = (2 * COUNT as u32, local_bound(2, elapsed));
    assert!(
        (lo..=hi).contains(&admitted),
        "node-local: admitted {admitted}, want {lo}..={hi}"
    );
    eprintln!("node-local: admitted {admitted} ({lo}..={hi}) in {elapsed:?}");
    assert!(
        admitted > shared_bound(elapsed),
        "the shared bound must tell the two apart"
    );
}
