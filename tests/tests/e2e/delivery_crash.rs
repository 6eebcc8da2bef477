//! No acknowledged message is lost, whatever the moment mbd dies: clients
//! send N messages straight to mbd's SMTP ingress while the test kills mbd
//! with SIGKILL at three random points and restarts it each time; at the
//! end every message that got a 250 from mbd has reached the relay at least
//! once (duplicates are allowed: a delivery whose `Delivered` record did not
//! reach the disk is repeated; losses are not). And a SIGTERM drain keeps
//! the queue for the next mbd.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mb_tests::harness::{lease_port, wait_for, Mbd, TestDir};
use mb_tests::relay::Relay;
use mb_tests::smtp::SmtpSession;

use crate::delivery_postfix::{delivery_config, filter_config};

/// Messages sent in total.
const MESSAGES: usize = 600;
/// Client connections sending at once.
const CLIENTS: usize = 4;
/// Kills during the run.
const KILLS: usize = 3;

/// A tiny xorshift generator; the seed is printed so a failure can be
/// replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below.max(1)
    }
}

/// One message, with a Message-ID the test counts.
fn message(id: &str) -> String {
    format!(
        "From: <sender@source.example>\nTo: <rcpt@dest.example>\nSubject: crash test\n\
         Message-ID: <{id}>\nDate: Thu, 01 Jan 2026 00:00:00 +0000\n\n\
         body of {id}\n{}\n",
        format!("{}\n", "x".repeat(75)).repeat(25)
    )
}

/// Sends one message on `session`; true when the end of data got a 250.
fn send(session: &mut SmtpSession, id: &str) -> anyhow::Result<bool> {
    let r = session.cmd("MAIL FROM:<sender@source.example>")?;
    if r.code != 250 {
        session.cmd("RSET")?;
        return Ok(false);
    }
    let r = session.cmd("RCPT TO:<rcpt@dest.example>")?;
    if r.code != 250 {
        session.cmd("RSET")?;
        return Ok(false);
    }
    let (data, end) = session.data(&message(id))?;
    Ok(data.code == 354 && end.is_some_and(|e| e.code == 250))
}

#[test]
fn kill_9_three_times_loses_no_acknowledged_message() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let dir = TestDir::new("delivery-crash").unwrap();
    let relay_port = lease_port().unwrap();
    let relay = Relay::accept_all(relay_port.port).unwrap();
    let ingress = lease_port().unwrap();
    let port = ingress.port;
    let mbd_dir = dir.join("mbd");
    // The content filter on: with four clients sending, the scanner task
    // takes what is waiting in batches, and kills land mid-batch.
    let config = delivery_config(
        port,
        relay_port.port,
        &format!("connections_max_per_shard = 64\n{}", filter_config(&dir)),
    );
    let mut mbd = Mbd::start(&mbd_dir, &config).unwrap();
    let (config_path, state_dir) = (mbd.config_path.clone(), mbd.state_dir.clone());

    let next = Arc::new(AtomicUsize::new(0));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let pid = std::process::id();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (next, acked, acked_count) = (
                Arc::clone(&next),
                Arc::clone(&acked),
                Arc::clone(&acked_count),
            );
            thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(240);
                let mut session: Option<SmtpSession> = None;
                let mut refused = 0u32;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= MESSAGES {
                        break;
                    }
                    let id = format!("crash-{i}.{pid}@client.mbtest.example");
                    // Until this message got an answer (250 or a refusal)
                    // from a live mbd, or the test gives up.
                    loop {
                        assert!(Instant::now() < deadline, "client {c} stuck at {i}");
                        if session.is_none() {
                            if let Ok((mut s, greeting)) = SmtpSession::connect(port) {
                                let hello = s.cmd("EHLO client.mbtest.example");
                                if greeting.code == 220 && hello.is_ok() {
                                    session = Some(s);
                                }
                            }
                            if session.is_none() {
                                thread::sleep(Duration::from_millis(50));
                                continue;
                            }
                        }
                        let Some(s) = session.as_mut() else { continue };
                        match send(s, &id) {
                            Ok(true) => {
                                acked.lock().unwrap().insert(id.clone());
                                acked_count.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            // 4xx (e.g. the spool refused it): send it again.
                            Ok(false) => {
                                refused += 1;
                                assert!(refused < 1000, "client {c}: too many refusals");
                                thread::sleep(Duration::from_millis(20));
                            }
                            // mbd died under us: this one counts as not
                            // acknowledged; send it again to the new mbd.
                            Err(_) => session = None,
                        }
                    }
                }
                if let Some(s) = session {
                    s.quit();
                }
            })
        })
        .collect();

    // Kill at random points of the run: after a random number of acks.
    let mut kills = Vec::new();
    for k in 0..KILLS {
        let slice = (MESSAGES / (KILLS + 1)) as u64;
        let at = (k as u64 * slice + rng.next(slice)) as usize + 5;
        let reached = wait_for(Duration::from_secs(120), Duration::from_millis(1), || {
            (acked_count.load(Ordering::Relaxed) >= at).then_some(())
        });
        assert!(reached.is_some(), "the clients stalled before {at} acks");
        thread::sleep(Duration::from_micros(rng.next(3000)));
        let before = acked_count.load(Ordering::Relaxed);
        mbd.kill();
        kills.push(before);
        mbd = Mbd::start_with_config(&mbd_dir, &config_path, &state_dir).unwrap();
    }
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), MESSAGES, "every message was acknowledged once");
    eprintln!("killed after {kills:?} acknowledged messages");
    assert!(
        kills.iter().all(|&k| k < MESSAGES),
        "a kill came after the last message: {kills:?}"
    );

    // Every acknowledged message reaches the relay.
    let arrived = wait_for(Duration::from_secs(90), Duration::from_millis(200), || {
        let got: BTreeSet<String> = relay
            .accepted()
            .iter()
            .flat_map(|m| m.header_values("Message-ID"))
            .map(|v| v.trim_matches(['<', '>']).to_string())
            .collect();
        acked.is_subset(&got).then_some(got)
    });
    let Some(_) = arrived else {
        let got: BTreeSet<String> = relay
            .accepted()
            .iter()
            .flat_map(|m| m.header_values("Message-ID"))
            .map(|v| v.trim_matches(['<', '>']).to_string())
            .collect();
        let missing: Vec<_> = acked.difference(&got).take(20).collect();
        panic!(
            "{} acknowledged messages never reached the relay, e.g. {missing:?}; shard status {:?}",
            acked.difference(&got).count(),
            mbd.shard_status()
        );
    };
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for m in relay.accepted() {
        for v in m.header_values("Message-ID") {
            *copies.entry(v).or_default() += 1;
        }
    }
    let duplicates = copies.values().filter(|&&n| n > 1).count();
    // every delivered message was scanned, none twice
    for m in relay.accepted() {
        let status = m.header_values("X-Spam-Status");
        assert!(
            status.len() == 1 && status[0].starts_with("No, score=0.0"),
            "{}",
            m.data
        );
    }
    eprintln!(
        "{} messages acknowledged, {} deliveries, {duplicates} delivered more than once",
        acked.len(),
        relay.accepted().len()
    );
    // The spools drain completely.
    let empty = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        let queued: u64 = mbd
            .shard_status()
            .ok()?
            .iter()
            .map(|s| s["queue"]["messages"].as_u64().unwrap_or(0))
            .sum();
        (queued == 0).then_some(())
    });
    assert!(empty.is_some(), "{:?}", mbd.shard_status());
}

/// SIGTERM with messages waiting for a relay that is down: mbd drains and
/// exits on its own, and the next mbd delivers them once the relay is up.
#[test]
fn sigterm_drains_and_the_next_mbd_delivers_the_queue() {
    let dir = TestDir::new("delivery-sigterm").unwrap();
    let relay_port = lease_port().unwrap();
    let ingress = lease_port().unwrap();
    let mbd_dir = dir.join("mbd");
    let mut mbd = Mbd::start(
        &mbd_dir,
        &delivery_config(ingress.port, relay_port.port, ""),
    )
    .unwrap();
    let (config_path, state_dir) = (mbd.config_path.clone(), mbd.state_dir.clone());
    let ids: Vec<String> = (0..3)
        .map(|i| format!("sigterm-{i}.{}@client.mbtest.example", std::process::id()))
        .collect();
    let (mut s, _) = SmtpSession::connect(ingress.port).unwrap();
    s.cmd("EHLO client.mbtest.example").unwrap();
    for id in &ids {
        assert!(send(&mut s, id).unwrap(), "{}", s.transcript);
    }
    s.quit();
    let (status, on_its_own) = mbd.terminate(Duration::from_secs(20)).unwrap();
    assert!(
        on_its_own && status.success(),
        "{status:?}\n{}",
        mbd.stderr()
    );
    assert!(mbd.stderr().contains("Drained"), "{}", mbd.stderr());
    let relay = Relay::accept_all(relay_port.port).unwrap();
    let mbd = Mbd::start_with_config(&mbd_dir, &config_path, &state_dir).unwrap();
    let got = relay.wait(ids.len(), Duration::from_secs(30)).unwrap();
    let mut seen: Vec<String> = got
        .iter()
        .flat_map(|m| m.header_values("Message-ID"))
        .map(|v| v.trim_matches(['<', '>']).to_string())
        .collect();
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want);
    drop(mbd);
}
