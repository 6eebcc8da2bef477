//! Replays real Postfix 3.7.11 milter conversations (captured on the wire,
//! `fixtures/milter/*.mta.bin`) through the filter-side conversation, at
//! several read sizes, and checks every reply it gives. The captures were
//! taken with a milter that asked for every event, so they also carry DATA and
//! unknown-command packets that our negotiation would switch off: the
//! conversation must take them without answering (NR_DATA, NR_UNKNOWN).

use std::sync::Arc;

use mb_engine::config::{self, AddressPattern, AddressRule, RuleAction};
use mb_engine::milter::frame::FrameDecoder;
use mb_engine::milter::reply::{Modification, Response};
use mb_engine::milter::{cmd, Conversation, Reply, Settings};
use mb_engine::policy::Policy;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/milter");

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(FIXTURES)
        .expect("fixtures dir")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_str()?.to_owned();
            name.ends_with(".mta.bin")
                .then(|| (name, std::fs::read(&path).expect("read")))
        })
        .collect();
    v.sort();
    assert!(v.len() >= 5, "the five Postfix captures are present: {v:?}");
    v
}

/// Command letters of every frame in a fixture.
fn codes(wire: &[u8]) -> Vec<u8> {
    let dec = FrameDecoder::new(1 << 20);
    let mut rest = wire;
    let mut v = Vec::new();
    while let Some((f, used)) = dec.decode(rest).expect("fixture frames") {
        v.push(f.code);
        rest = &rest[used..];
    }
    v
}

fn replay(wire: &[u8], chunk: usize, policy: &Arc<Policy>) -> Vec<Response> {
    let mut conv = Conversation::new(Settings {
        shard: 0,
        frame_bytes_max: 1 << 20,
        refuse: false,
    });
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    for piece in wire.chunks(chunk) {
        buf.extend_from_slice(piece);
        let o = conv
            .process(&buf, policy, &mut out)
            .expect("a real Postfix conversation is valid");
        buf.drain(..o.consumed);
        if o.close {
            break;
        }
    }
    let dec = FrameDecoder::new(1 << 20);
    let mut rest = &out[..];
    let mut v = Vec::new();
    while let Some((f, used)) = dec.decode(rest).expect("our frames") {
        v.push(Response::decode(f).expect("our replies decode"));
        rest = &rest[used..];
    }
    v
}

#[test]
fn every_capture_gets_exactly_the_decision_replies() {
    let policy = Arc::new(Policy::new(&config::Config::default().policy, 1));
    for (name, wire) in fixtures() {
        let codes = codes(&wire);
        let count = |c: u8| codes.iter().filter(|&&x| x == c).count();
        for chunk in [1, 3, 64, wire.len()] {
            let resp = replay(&wire, chunk, &policy);
            let continues = resp
                .iter()
                .filter(|r| **r == Response::Reply(Reply::Continue))
                .count();
            let accepts = resp
                .iter()
                .filter(|r| **r == Response::Reply(Reply::Accept))
                .count();
            let headers = resp
                .iter()
                .filter(|r| matches!(r, Response::Modification(Modification::AddHeader { name, .. }) if name == "X-Mailborder"))
                .count();
            assert!(
                matches!(resp[0], Response::Reply(Reply::OptNeg { .. })),
                "{name}"
            );
            assert_eq!(
                continues,
                count(cmd::MAIL) + count(cmd::RCPT),
                "{name} chunk {chunk}"
            );
            assert_eq!(accepts, count(cmd::END_OF_MESSAGE), "{name} chunk {chunk}");
            assert_eq!(headers, count(cmd::END_OF_MESSAGE), "{name} chunk {chunk}");
            assert_eq!(
                resp.len(),
                1 + continues + accepts + headers,
                "{name}: no other replies"
            );
        }
    }
}

#[test]
fn captured_senders_can_be_refused_at_mail() {
    // Every capture's sender is in source.example (E-sendmail sends it without
    // angle brackets).
    let mut policy_config = config::Config::default().policy;
    policy_config.sender.push(AddressRule {
        origin: "policy.sender[0]".into(),
        patterns: vec![AddressPattern::Domain("source.example".into())],
        action: RuleAction::Reject,
        reply: None,
        body: None,
    });
    let policy = Arc::new(Policy::new(&policy_config, 2));
    for (name, wire) in fixtures() {
        let mails = codes(&wire).iter().filter(|&&c| c == cmd::MAIL).count();
        let resp = replay(&wire, 64, &policy);
        let rejects = resp
            .iter()
            .filter(|r| matches!(r, Response::Reply(Reply::ReplyCode { code: 550, .. })))
            .count();
        assert!(
            rejects >= mails,
            "{name}: {mails} MAIL, {rejects} rejects: {resp:?}"
        );
        assert!(!resp.contains(&Response::Reply(Reply::Accept)), "{name}");
    }
}
