//! `mbctl queue` and `mbctl quarantine` against a running mbd with
//! `[delivery]` on: messages sent straight to the ingress while the relay is
//! down (retry interval 1 h, so only mbctl makes them due), then listed,
//! shown, deleted, flushed and released; `mbctl shard status` shows the
//! queue depth.

use std::time::Duration;

use mb_tests::harness::{describe, lease_port, wait_for, Mbd, TestDir};
use mb_tests::postfix::message;
use mb_tests::relay::Relay;
use mb_tests::smtp::SmtpSession;

use crate::delivery_postfix::{delivery_config_retry, filter_config};

/// Sends one message to the ingress; its queue id from the 250.
pub(crate) fn send(port: u16, subject: &str, body: &str) -> String {
    let (mut s, greeting) = SmtpSession::connect(port).unwrap();
    assert_eq!(greeting.code, 220, "{greeting}");
    assert_eq!(s.cmd("EHLO client.mbtest.example").unwrap().code, 250);
    assert_eq!(
        s.cmd("MAIL FROM:<sender@source.example>").unwrap().code,
        250
    );
    assert_eq!(s.cmd("RCPT TO:<rcpt@dest.example>").unwrap().code, 250);
    let msg = message("sender@source.example", "rcpt@dest.example", subject, body);
    let (_, end) = s.data(&msg).unwrap();
    let end = end.unwrap();
    assert_eq!(end.code, 250, "{}", s.transcript);
    s.quit();
    end.text
        .rsplit(' ')
        .next()
        .expect("queued as <id>")
        .to_string()
}

/// `mbctl --json ARGS`, parsed; panics unless it succeeded.
fn ctl_json(mbd: &Mbd, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = mbd.ctl(&all);
    assert!(out.status.success(), "mbctl {args:?}: {}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)))
}

/// `mbctl ARGS` that must fail; its stderr.
fn ctl_fails(mbd: &Mbd, args: &[&str]) -> String {
    let out = mbd.ctl(args);
    assert!(
        !out.status.success(),
        "mbctl {args:?} succeeded: {}",
        describe(&out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub(crate) fn queue_sum(mbd: &Mbd, field: &str) -> u64 {
    mbd.shard_status()
        .unwrap()
        .iter()
        .map(|s| s["queue"][field].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn queue_and_quarantine_commands() {
    let dir = TestDir::new("delivery-ctl").unwrap();
    let rules = TestDir::new("delivery-ctl-rules").unwrap();
    let ingress = lease_port().unwrap();
    let relay_port = lease_port().unwrap();
    let mbd = Mbd::start(
        &dir.join("mbd"),
        &delivery_config_retry(ingress.port, relay_port.port, "1h", &filter_config(&rules)),
    )
    .unwrap();
    let a = send(ingress.port, "keep me", "first");
    let b = send(ingress.port, "delete me", "second");
    let h = send(ingress.port, "hold me", "hold-me-marker");
    let settled = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
        (queue_sum(&mbd, "deferred") == 2 && queue_sum(&mbd, "quarantined") == 1).then_some(())
    });
    assert!(settled.is_some(), "{:?}", mbd.shard_status());

    // Listings.
    let list = ctl_json(&mbd, &["queue", "list"]);
    assert_eq!(list["total"], 3, "{list}");
    let entries = list["entries"].as_array().unwrap();
    let phase = |id: &str| {
        entries
            .iter()
            .find(|e| e["id"] == id)
            .map(|e| e["phase"].as_str().unwrap().to_string())
    };
    assert_eq!(phase(&a).as_deref(), Some("deferred"), "{list}");
    assert_eq!(phase(&b).as_deref(), Some("deferred"), "{list}");
    assert_eq!(phase(&h).as_deref(), Some("quarantined"), "{list}");
    let held = ctl_json(&mbd, &["quarantine", "list"]);
    assert_eq!(held["total"], 1, "{held}");
    assert_eq!(held["entries"][0]["id"], h.as_str());
    assert_eq!(held["entries"][0]["scan"][0], "quarantine");
    let limited = ctl_json(&mbd, &["queue", "list", "--limit", "1"]);
    assert_eq!(limited["entries"].as_array().unwrap().len(), 1);
    assert_eq!(limited["total"], 3);
    let text = mbd.ctl(&["queue", "list"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&a) && text.contains("3 message(s)"), "{text}");

    // Details.
    let shown = ctl_json(&mbd, &["queue", "show", &a.to_ascii_lowercase()]);
    assert_eq!(shown["sender"], "sender@source.example", "{shown}");
    assert_eq!(shown["recipients"][0][0], "rcpt@dest.example");
    assert_eq!(shown["recipients"][0][1], "pending");
    assert!(
        shown["header"]
            .as_str()
            .unwrap()
            .contains("Subject: keep me"),
        "{shown}"
    );
    assert!(shown["entry"]["attempts"].as_u64().unwrap() >= 1, "{shown}");
    let held_shown = ctl_json(&mbd, &["quarantine", "show", &h]);
    assert!(
        held_shown["symbols"]
            .as_str()
            .unwrap()
            .contains("MB_TEST_HOLD"),
        "{held_shown}"
    );

    // Refusals say why.
    assert!(ctl_fails(&mbd, &["queue", "show", "XYZ"]).contains("not a queue id"));
    assert!(ctl_fails(&mbd, &["queue", "retry", &h]).contains("quarantine release"));
    assert!(ctl_fails(&mbd, &["quarantine", "delete", &a]).contains("not in quarantine"));
    assert!(ctl_fails(&mbd, &["quarantine", "show", &a]).contains("not in quarantine"));

    // Delete one, then bring the relay up: nothing moves before a flush
    // (the next retry is an hour away).
    let deleted = ctl_json(&mbd, &["queue", "delete", &b]);
    assert_eq!(deleted["count"], 1);
    assert!(ctl_fails(&mbd, &["queue", "show", &b]).contains("no such message"));
    let relay = Relay::accept_all(relay_port.port).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(relay.accepted().is_empty());
    let flushed = ctl_json(&mbd, &["queue", "flush"]);
    assert_eq!(flushed["count"], 1, "{flushed}");
    let got = relay.wait(1, Duration::from_secs(20)).unwrap();
    assert_eq!(got[0].header_values("Subject"), ["keep me"]);

    // Release the held one: delivered, flagged.
    let released = ctl_json(&mbd, &["quarantine", "release", &h]);
    assert_eq!(released["count"], 1);
    let got = relay.wait(2, Duration::from_secs(20)).unwrap();
    let held_msg = got
        .iter()
        .find(|m| m.header_values("Subject") == ["hold me"])
        .unwrap_or_else(|| panic!("{got:#?}"));
    assert_eq!(
        held_msg.header_values("X-Spam-Flag"),
        ["YES"],
        "{}",
        held_msg.data
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        relay.accepted().len(),
        2,
        "the deleted message stays undelivered"
    );

    // The spool is empty; shard status shows what happened.
    let empty = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        (queue_sum(&mbd, "messages") == 0).then_some(())
    });
    assert!(empty.is_some(), "{:?}", mbd.shard_status());
    assert_eq!(ctl_json(&mbd, &["queue", "list"])["total"], 0);
    assert_eq!(queue_sum(&mbd, "received"), 3);
    assert_eq!(queue_sum(&mbd, "delivered"), 2);
    let status = mbd.ctl(&["shard", "status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("queued") && status.contains("deferrals"),
        "{status}"
    );
}

#[test]
fn queue_commands_without_delivery_say_so() {
    let dir = TestDir::new("delivery-ctl-off").unwrap();
    let mbd = Mbd::start(&dir.join("mbd"), &mb_tests::harness::MbdConfig::default()).unwrap();
    assert!(ctl_fails(&mbd, &["queue", "list"]).contains("[delivery] is not enabled"));
    let status = ctl_json(&mbd, &["shard", "status"]);
    assert!(status[0]["queue"].is_null(), "{status}");
}
