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

/// mbd after a trickle; fields drop in order (mbd stops first).
struct Trickle {
    mbd: Mbd,
    _ingress: PortLease,
    _dir: TestDir,
}

/// Starts mbd (2 shards, retries an hour apart, so a deferral shows as a
/// message that does not arrive) with `relay_idle_time = idle`, sends
/// [`MESSAGES`] one after another, each only once the previous one reached
/// the relay and `gap` passed.
fn trickle(name: &str, relay: &Relay, relay_port: u16, idle: &str, gap: Duration) -> Trickle {
    let dir = TestDir::new(name).unwrap();
    let ingress = lease_port().unwrap();
    let extra = format!("relay_idle_time = \"{idle}\"");
    let mbd = Mbd::start(
        &dir.join("mbd"),
        &delivery_config_retry(ingress.port, relay_port, "1h", &extra),
    )
    .unwrap();
    for n in 1..=MESSAGES {
        send(ingress.port, &format!("trickle {n}"), "one of a trickle");
        let arrived = relay.wait(n, Duration::from_secs(20));
        assert!(
            arrived.is_ok(),
            "message {n} not delivered (deferred?): {}\n{}",
            relay.connections(),
            mbd.stderr()
        );
        std::thread::sleep(gap);
    }
    Trickle {
        mbd,
        _ingress: ingress,
        _dir: dir,
    }
}

#[test]
fn an_idle_connection_carries_the_next_message() {
    let port = lease_port().unwrap();
    let relay = Relay::accept_all(port.port).unwrap();
    let Trickle { mbd, .. } = &trickle(
        "reuse-linger",
        &relay,
        port.port,
        "20s",
        Duration::from_millis(150),
    );
    // Each shard opened at most one connection for all of its messages.
    assert!(
        relay.connections() <= 2,
        "{} connections for {MESSAGES} messages with relay_idle_time = 20s",
        relay.connections()
    );
    assert_eq!(queue_sum(mbd, "relay_connections"), relay.connections());
    assert_eq!(queue_sum(mbd, "deferrals"), 0);
    // The idle connections are still open, and counted as such.
    assert!(queue_sum(mbd, "delivery_connections") >= 1);
}

#[test]
fn without_idle_time_every_message_opens_a_connection() {
    let port = lease_port().unwrap();
    let relay = Relay::accept_all(port.port).unwrap();
    let Trickle { mbd, .. } = &trickle(
        "reuse-none",
        &relay,
        port.port,
        "0s",
        Duration::from_millis(150),
    );
    assert_eq!(relay.connections(), MESSAGES as u64);
    let closed = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        (queue_sum(mbd, "delivery_connections") == 0).then_some(())
    });
    assert!(
        closed.is_some(),
        "a connection stayed open with relay_idle_time = 0s"
    );
}

/// The relay says 421 and closes an idle connection after 300 ms; mbd
/// waits up to 20 s. Each message after a 1 s lull finds its connection
/// gone and opens a new one at once: nothing is deferred.
#[test]
fn a_relay_hanging_up_an_idle_connection_costs_no_deferral() {
    let port = lease_port().unwrap();
    let relay = Relay::hanging_up_idle(port.port, Duration::from_millis(300)).unwrap();
    let Trickle { mbd, .. } = &trickle(
        "reuse-hangup",
        &relay,
        port.port,
        "20s",
        Duration::from_secs(1),
    );
    assert_eq!(queue_sum(mbd, "deferrals"), 0, "{}", mbd.stderr());
    assert_eq!(relay.connections(), MESSAGES as u64);
    let closed = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        (queue_sum(mbd, "delivery_connections") == 0).then_some(())
    });
    assert!(
        closed.is_some(),
        "mbd kept connections the relay had closed"
    );
}
