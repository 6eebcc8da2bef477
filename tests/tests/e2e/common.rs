//! Shared setup for the scenarios: the policy of the contract, and a stack of
//! temp dir + mbd + Postfix that tears down in the right order.

#![allow(dead_code)]

use std::time::Duration;

use mb_tests::harness::{wait_for, Mbd, MbdConfig, TestDir};
use mb_tests::postfix::{Delivered, Postfix, PostfixOpts};

/// Custom reply of the blocked-sender rule.
pub const BLOCKED_REPLY: &str = "550 5.7.1 Sender blocked by mailborder test";
/// Replacement body of the replace-body rule (as configured, CRLF).
pub const REPLACED_BODY: &str = "The original body was replaced by policy.\r\n";

/// The policy every Postfix scenario runs with: one rule per action.
pub const POLICY: &str = r#"
[policy]
message_bytes_max = "1MiB"
header = "X-Mailborder"

[[policy.sender]]
match = ["@blocked.example"]
action = "reject"
reply = "550 5.7.1 Sender blocked by mailborder test"

[[policy.sender]]
match = "default-reject@source.example"
action = "reject"

[[policy.sender]]
match = "tempfail@source.example"
action = "tempfail"

[[policy.sender]]
match = "rewrite@source.example"
action = "replace-body"
body = "The original body was replaced by policy.\r\n"

[[policy.sender]]
match = "discard@source.example"
action = "discard"

[[policy.recipient]]
match = "@held.example"
action = "quarantine"

[[policy.recipient]]
match = "@nobody.example"
action = "reject"
"#;

/// mbd and Postfix in one temp dir. Fields drop in order: Postfix first (it
/// holds milter connections), then mbd, then the directory.
pub struct Stack {
    pub pf: Postfix,
    pub mbd: Mbd,
    pub dir: TestDir,
}

impl Stack {
    /// mbd with `cfg`, Postfix in front of it (SMTP and sendmail paths).
    pub fn start(name: &str, cfg: &MbdConfig) -> Self {
        let dir = TestDir::new(name).unwrap();
        let mbd = Mbd::start(&dir.join("mbd"), cfg).unwrap();
        let pf = Postfix::start(
            &dir.join("postfix"),
            &PostfixOpts::with_milter(&mbd.milter_spec()),
        )
        .unwrap();
        Self { pf, mbd, dir }
    }

    /// With the shared [`POLICY`].
    pub fn with_policy(name: &str) -> Self {
        Self::start(name, &MbdConfig::with_policy(POLICY))
    }

    /// Asserts that nothing was (or will be) delivered: the queue has settled
    /// (nothing in maildrop/incoming/active/deferred), then a grace period.
    pub fn assert_nothing_delivered(&self) {
        assert_nothing_delivered(&self.pf);
    }
}

/// See [`Stack::assert_nothing_delivered`].
pub fn assert_nothing_delivered(pf: &Postfix) {
    pf.wait_queue_settled(Duration::from_secs(30)).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let d = pf.delivered();
    assert!(
        d.is_empty(),
        "expected no delivery, smtp-sink got: {:#?}",
        d.iter().map(|m| &m.raw).collect::<Vec<_>>()
    );
    assert_eq!(pf.sink_messages(), 0, "smtp-sink counted a message");
}

/// Waits until exactly one message is in Postfix's hold queue and its
/// `milter-hold` log line names it; returns its queue id.
pub fn assert_one_held(pf: &Postfix) -> String {
    let wait = Duration::from_secs(30);
    let held = wait_for(wait, Duration::from_millis(200), || {
        let h = pf.hold_queue();
        (!h.is_empty()).then_some(h)
    })
    .unwrap_or_else(|| panic!("nothing in the hold queue: {:?}", pf.queue()));
    assert_eq!(held.len(), 1, "{held:?}");
    let log = pf.wait_log("milter-hold", wait).unwrap();
    assert!(
        log.contains(&held[0]),
        "hold logged for another queue id:\n{log}"
    );
    held[0].clone()
}

/// The X-Mailborder header of a delivered message: exactly one, of the form
/// `score=0.00 shard=<n>` with `n < shards`. Returns the shard.
pub fn assert_mailborder_header(m: &Delivered, shards: u16) -> u16 {
    let values = m.header_values("X-Mailborder");
    assert_eq!(
        values.len(),
        1,
        "want exactly one X-Mailborder header:\n{}",
        m.raw
    );
    let v = &values[0];
    let shard = v
        .strip_prefix("score=0.00 shard=")
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("X-Mailborder value {v:?} is not `score=0.00 shard=<n>`"));
    assert!(
        shard < shards,
        "shard {shard} out of range 0..{shards} in {v:?}"
    );
    shard
}
