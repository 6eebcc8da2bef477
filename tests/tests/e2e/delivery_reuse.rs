//! Delivery connection reuse across a lull (`relay_idle_time`): a shard
//! keeps its connection to the relay open for the next message instead of
//! opening one per message, and a relay that hangs up on the idle
//! connection costs no deferral.

use std::time::Duration;

use mb_tests::harness::{lease_port, wait_for, Mbd, PortLease, TestDir};
use mb_tests::relay::Relay;

use crate::delivery_ctl::{queue_sum, send};
use crate::delivery_postfix::delivery_config_retry;

/// Messages sent one at a time, each delivered before the next is sent.
const MESSAGES: usize = 6;

/// mbd and its relay after a trickle; fields drop in order (mbd stops
/// first).
struct Trickle {
    mbd: Mbd,
    relay: Relay,
    _ports: [PortLease; 2],
    _dir: TestDir,
}

/// Starts a relay (`relay(port)`) and mbd (2 shards, retries an hour apart,
/// so a deferral shows as a message that does not arrive) with
/// `relay_idle_time = idle`, then sends [`MESSAGES`] one after another, each
/// only once the previous one reached the relay and `gap` passed.
fn trickle(
    name: &str,
    relay: fn(u16) -> anyhow::Result<Relay>,
    idle: &str,
    gap: Duration,
) -> Trickle {
    let dir = TestDir::new(name).unwrap();
    let (ingress, relay_port) = (lease_port().unwrap(), lease_port().unwrap());
    let relay = relay(relay_port.port).unwrap();
    let extra = format!("relay_idle_time = \"{idle}\"");
    let mbd = Mbd::start(
        &dir.join("mbd"),
        &delivery_config_retry(ingress.port, relay_port.port, "1h", &extra),
    )
    .unwrap();
    for n in 1..=MESSAGES {
        send(ingress.port, &format!("trickle {n}"), "one of a trickle");
        let arrived = relay.wait(n, Duration::from_secs(20));
        assert!(
            arrived.is_ok(),
            "message {n} not delivered (deferred?): {} connections\n{}",
            relay.connections(),
            mbd.stderr()
        );
        std::thread::sleep(gap);
    }
    Trickle {
        mbd,
        relay,
        _ports: [ingress, relay_port],
        _dir: dir,
    }
}

/// Every delivery connection of `mbd` is closed within 10 s.
fn all_closed(mbd: &Mbd) -> bool {
    wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        (queue_sum(mbd, "delivery_connections") == 0).then_some(())
    })
    .is_some()
}

#[test]
fn an_idle_connection_carries_the_next_message() {
    let t = trickle(
        "reuse-linger",
        Relay::accept_all,
        "20s",
        Duration::from_millis(150),
    );
    // Each shard opened at most one connection for all of its messages.
    let opened = t.relay.connections();
    assert!(
        opened <= 2,
        "{opened} connections for {MESSAGES} messages with relay_idle_time = 20s"
    );
    assert_eq!(queue_sum(&t.mbd, "relay_connections"), opened);
    assert_eq!(queue_sum(&t.mbd, "deferrals"), 0);
    // The idle connections are still open, and counted as such.
    assert!(queue_sum(&t.mbd, "delivery_connections") >= 1);
}

#[test]
fn without_idle_time_every_message_opens_a_connection() {
    let t = trickle(
        "reuse-none",
        Relay::accept_all,
        "0s",
        Duration::from_millis(150),
    );
    assert_eq!(t.relay.connections(), MESSAGES as u64);
    assert!(
        all_closed(&t.mbd),
        "a connection stayed open with relay_idle_time = 0s"
    );
}

/// The relay says 421 and closes an idle connection after 300 ms; mbd
/// waits up to 20 s. Each message after a 1 s lull finds its connection
/// gone and opens a new one at once: nothing is deferred.
#[test]
fn a_relay_hanging_up_an_idle_connection_costs_no_deferral() {
    let hangs_up = |port| Relay::hanging_up_idle(port, Duration::from_millis(300));
    let t = trickle("reuse-hangup", hangs_up, "20s", Duration::from_secs(1));
    assert_eq!(queue_sum(&t.mbd, "deferrals"), 0, "{}", t.mbd.stderr());
    assert_eq!(t.relay.connections(), MESSAGES as u64);
    assert!(
        all_closed(&t.mbd),
        "mbd kept connections the relay had closed"
    );
}
