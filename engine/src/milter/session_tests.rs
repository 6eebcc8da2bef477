//! Conversation tests: whole Postfix-like conversations, fed at every chunk
//! size, against policies built in the test.

use std::sync::Arc;

use super::*;
use crate::config::{AddressPattern, AddressRule, PolicyConfig, RuleAction};
use crate::milter::cmd;
use crate::milter::command::Family;
use crate::milter::frame::FrameDecoder;
use crate::milter::reply::Response;

const POSTFIX_ACTIONS: u32 = actions::ALL;
const POSTFIX_PROTOCOL: u32 = protocol::ALL;

fn settings() -> Settings {
    Settings {
        shard: 1,
        frame_bytes_max: 256 * 1024,
        refuse: false,
    }
}

fn rule(patterns: &[&str], action: RuleAction) -> AddressRule {
    AddressRule {
        origin: "policy.test[0]".to_owned(),
        patterns: patterns
            .iter()
            .map(|p| match p.strip_prefix('@') {
                Some(d) => AddressPattern::Domain(d.to_owned()),
                None => AddressPattern::Exact((*p).to_owned()),
            })
            .collect(),
        action,
        reply: None,
        body: (action == RuleAction::ReplaceBody).then(|| "Replaced.\r\n".to_owned()),
    }
}

fn policy(sender: Vec<AddressRule>, recipient: Vec<AddressRule>) -> Arc<Policy> {
    Arc::new(Policy::new(
        &PolicyConfig {
            message_bytes_max: 10_000,
            header: Some("X-Mailborder".to_owned()),
            sender,
            recipient,
        },
        1,
    ))
}

fn mta_frames(commands: &[Command<'_>]) -> Vec<u8> {
    let mut wire = Vec::new();
    for c in commands {
        c.encode(&mut wire);
    }
    wire
}

/// One message as Postfix 3.7 sends it (see captures/A-default.log).
fn postfix_message<'a>(sender: &'a [u8], rcpts: &[&'a [u8]], body: &'a [u8]) -> Vec<Command<'a>> {
    let mut c = vec![
        Command::Macro {
            stage: cmd::MAIL,
            pairs: b"{mail_addr}\0x\0",
        },
        Command::Mail { args: sender },
    ];
    for r in rcpts {
        c.push(Command::Macro {
            stage: cmd::RCPT,
            pairs: b"i\0QID1\0",
        });
        c.push(Command::Rcpt { args: r });
    }
    c.extend([
        Command::Data,
        Command::Header {
            name: b"From",
            value: b"<a@source.example>",
        },
        Command::Header {
            name: b"Subject",
            value: b"test",
        },
        Command::EndOfHeaders,
        Command::Body(body),
        Command::Macro {
            stage: cmd::END_OF_MESSAGE,
            pairs: b"i\0QID1\0",
        },
        Command::EndOfMessage(b""),
    ]);
    c
}

fn session_start(protocol: u32) -> Vec<Command<'static>> {
    vec![
        Command::OptNeg {
            version: 6,
            actions: POSTFIX_ACTIONS,
            protocol,
        },
        Command::Macro {
            stage: cmd::CONNECT,
            pairs: b"j\0mx.example\0{daemon_name}\0mx\0",
        },
        Command::Connect {
            hostname: b"localhost",
            family: Family::Inet,
            port: 4242,
            address: b"127.0.0.1",
        },
        Command::Helo {
            name: b"client.example",
        },
    ]
}

/// Feeds `wire` in chunks of `chunk` bytes, as a runtime would, and returns
/// the decoded responses and the summed output.
fn run(
    conv: &mut Conversation,
    wire: &[u8],
    chunk: usize,
    policy: &Arc<Policy>,
) -> Result<(Vec<Response>, Output), ConversationError> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut total = Output::default();
    for piece in wire.chunks(chunk) {
        buf.extend_from_slice(piece);
        let o = conv.process(&buf, policy, &mut out)?;
        buf.drain(..o.consumed);
        total.replies += o.replies;
        total.messages += o.messages;
        total.close |= o.close;
        total.verdicts += o.verdicts;
    }
    assert!(buf.is_empty(), "all input consumed");
    Ok((responses(&out), total))
}

fn responses(out: &[u8]) -> Vec<Response> {
    let dec = FrameDecoder::new(1 << 20);
    let mut rest = out;
    let mut v = Vec::new();
    while let Some((frame, used)) = dec.decode(rest).unwrap() {
        v.push(Response::decode(frame).unwrap());
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
    v
}

fn header(value: &str) -> Response {
    Response::Modification(Modification::AddHeader {
        name: "X-Mailborder".to_owned(),
        value: value.to_owned(),
    })
}

#[test]
fn postfix_conversation_at_every_chunk_size() {
    let policy = policy(vec![], vec![]);
    let mut cmds = session_start(POSTFIX_PROTOCOL);
    cmds.extend(postfix_message(
        b"<a@source.example>\0",
        &[b"<r1@dest.example>\0", b"<r2@dest.example>\0"],
        b"hello\r\n",
    ));
    cmds.extend([Command::Abort, Command::Abort, Command::Quit]);
    let wire = mta_frames(&cmds);
    for chunk in (1..=64).chain([wire.len()]) {
        let mut conv = Conversation::new(settings());
        let (resp, out) = run(&mut conv, &wire, chunk, &policy).unwrap();
        assert_eq!(
            resp,
            vec![
                Response::Reply(Reply::OptNeg {
                    version: 6,
                    actions: ACTIONS_WANTED,
                    protocol: protocol_for(policy.events()),
                    symlists: vec![]
                }),
                Response::Reply(Reply::Continue), // MAIL
                Response::Reply(Reply::Continue), // RCPT 1
                Response::Reply(Reply::Continue), // RCPT 2
                header("score=0.00 shard=1"),
                Response::Reply(Reply::Accept),
            ],
            "chunk size {chunk}"
        );
        assert!(out.close);
        assert_eq!(out.messages, 1);
        assert_eq!(out.verdicts.accept, 1);
        assert_eq!(conv.client_address(), "127.0.0.1");
        assert_eq!(conv.helo(), "client.example");
    }
}

#[test]
fn mta_without_no_reply_flags_gets_continue_for_every_event() {
    let policy = policy(vec![], vec![]);
    let mut cmds = session_start(0);
    cmds.extend(postfix_message(
        b"<a@source.example>\0",
        &[b"<r@dest.example>\0"],
        b"x\r\n",
    ));
    let (resp, _) = run(
        &mut Conversation::new(settings()),
        &mta_frames(&cmds),
        7,
        &policy,
    )
    .unwrap();
    // optneg, connect, helo, mail, rcpt, data, 2 headers, eoh, body, header mod, accept
    assert_eq!(resp.len(), 12);
    assert_eq!(
        resp.iter()
            .filter(|r| **r == Response::Reply(Reply::Continue))
            .count(),
        9
    );
    assert_eq!(resp.last(), Some(&Response::Reply(Reply::Accept)));
}

#[test]
fn blocked_sender_is_refused_at_mail_with_our_text() {
    let policy = policy(vec![rule(&["@spam.example"], RuleAction::Reject)], vec![]);
    let mut cmds = session_start(POSTFIX_PROTOCOL);
    cmds.extend([
        Command::Mail {
            args: b"<x@SPAM.example>\0BODY=8BITMIME\0",
        },
        Command::Abort,
        Command::Quit,
    ]);
    let (resp, out) = run(
        &mut Conversation::new(settings()),
        &mta_frames(&cmds),
        3,
        &policy,
    )
    .unwrap();
    assert_eq!(
        resp[1],
        Response::Reply(Reply::ReplyCode {
            code: 550,
            text: "5.7.1 Sender address rejected by policy".to_owned()
        })
    );
    assert_eq!(out.verdicts.reject, 1);
    assert_eq!(out.messages, 1);
}

#[test]
fn tempfail_recipient_only_refuses_that_recipient() {
    let policy = policy(
        vec![],
        vec![rule(&["later@dest.example"], RuleAction::TempFail)],
    );
    let mut cmds = session_start(POSTFIX_PROTOCOL);
    cmds.extend(postfix_message(
        b"<a@source.example>\0",
        &[b"<later@dest.example>\0", b"<now@dest.example>\0"],
        b"x\r\n",
    ));
    let (resp, out) = run(
        &mut Conversation::new(settings()),
        &mta_frames(&cmds),
        64,
        &policy,
    )
    .unwrap();
    assert!(matches!(
        &resp[2],
        Response::Reply(Reply::ReplyCode { code: 451, .. })
    ));
    assert_eq!(resp[3], Response::Reply(Reply::Continue));
    assert_eq!(resp.last(), Some(&Response::Reply(Reply::Accept)));
    assert_eq!((out.verdicts.tempfail, out.verdicts.accept), (1, 1));
}

#[test]
fn quarantine_replace_body_and_discard_at_end_of_message() {
    let cases: [(RuleAction, Vec<Response>); 3] = [
        (
            RuleAction::Quarantine,
            vec![
                header("score=0.00 shard=1"),
                Response::Modification(Modification::Quarantine(
                    "mailborder policy.test[0]".to_owned(),
                )),
                Response::Reply(Reply::Accept),
            ],
        ),
        (
            RuleAction::ReplaceBody,
            vec![
                header("score=0.00 shard=1"),
                Response::Modification(Modification::ReplaceBody(b"Replaced.\r\n".to_vec())),
                Response::Reply(Reply::Accept),
            ],
        ),
        (RuleAction::Discard, vec![Response::Reply(Reply::Discard)]),
    ];
    for (action, expected_tail) in cases {
        let policy = policy(vec![], vec![rule(&["@held.example"], action)]);
        let mut cmds = session_start(POSTFIX_PROTOCOL);
        cmds.extend(postfix_message(
            b"<a@source.example>\0",
            &[b"<r@held.example>\0"],
            b"x\r\n",
        ));
        let (resp, _) = run(
            &mut Conversation::new(settings()),
            &mta_frames(&cmds),
            5,
            &policy,
        )
        .unwrap();
        assert_eq!(&resp[3..], &expected_tail[..], "{action:?}");
    }
}

#[test]
fn quarantine_without_the_action_negotiated_tempfails() {
    let policy = policy(vec![rule(&["@a.example"], RuleAction::Quarantine)], vec![]);
    let mut cmds = session_start(POSTFIX_PROTOCOL);
    cmds[0] = Command::OptNeg {
        version: 6,
        actions: actions::ADD_HEADERS,
        protocol: POSTFIX_PROTOCOL,
    };
    cmds.extend(postfix_message(
        b"<q@a.example>\0",
        &[b"<r@dest.example>\0"],
        b"x\r\n",
    ));
    let (resp, out) = run(
        &mut Conversation::new(settings()),
        &mta_frames(&cmds),
        64,
        &policy,
    )
    .unwrap();
    assert!(matches!(
        resp.last(),
        Some(Response::Reply(Reply::ReplyCode { code: 451, .. }))
    ));
    assert_eq!(out.verdicts.tempfail, 1);
}

#[test]
fn oversized_messages_are_refused_at_mail_and_at_end() {
    let policy = policy(vec![], vec![]);
    let mut cmds = session_start(POSTFIX_PROTOCOL);
    cmds.push(Command::Mail {
        args: b"<a@b.example>\0SIZE=10001\0",
    });
    cmds.push(Command::Abort);
    let big = vec![b'x'; 10_001];
    cmds.extend(postfix_message(
        b"<a@b.example>\0SIZE=100\0",
        &[b"<r@d.example>\0"],
        &big,
    ));
    let (resp, out) = run(
        &mut Conversation::new(settings()),
        &mta_frames(&cmds),
        4096,
        &policy,
    )
    .unwrap();
    let too_big = Response::Reply(Reply::ReplyCode {
        code: 552,
        text: "5.3.4 Message size exceeds fixed maximum message size".to_owned(),
    });
    assert_eq!(resp[1], too_big);
    assert_eq!(resp.last(), Some(&too_big));
    assert_eq!(out.verdicts.reject, 2);
    assert_eq!(out.messages, 2);
}

#[test]
fn refusing_connection_tempfails_every_transaction() {
    let policy = policy(vec![], vec![]);
    let mut conv = Conversation::new(Settings {
        refuse: true,
        ..settings()
    });
    let mut cmds = session_start(POSTFIX_PROTOCOL);
    cmds.extend([
        Command::Mail {
            args: b"<a@b.example>\0",
        },
        Command::Rcpt { args: b"<r@d>\0" },
    ]);
    let (resp, out) = run(&mut conv, &mta_frames(&cmds), 64, &policy).unwrap();
    assert!(matches!(
        &resp[1],
        Response::Reply(Reply::ReplyCode { code: 451, .. })
    ));
    assert!(matches!(
        &resp[2],
        Response::Reply(Reply::ReplyCode { code: 451, .. })
    ));
    assert_eq!(out.verdicts.tempfail, 2);
}

/// A drain that starts between RCPT and end-of-message (the runtime calls
/// `set_refuse` at its next read) lets that message finish with its verdict
/// and tempfails only the next MAIL. Fed at every chunk size so the split
/// falls on every frame boundary.
#[test]
fn refuse_set_inside_a_message_lets_it_finish() {
    let policy = policy(vec![], vec![]);
    let mut start = session_start(POSTFIX_PROTOCOL);
    let message = postfix_message(b"<a@b.example>\0", &[b"<r@d.example>\0"], b"hi\r\n");
    let split = message
        .iter()
        .position(|c| matches!(c, Command::Data))
        .unwrap();
    start.extend_from_slice(&message[..split]);
    let before = mta_frames(&start);
    let after = mta_frames(&message[split..]);
    let again = mta_frames(&[Command::Mail {
        args: b"<a@b.example>\0",
    }]);
    for chunk in [1, 7, 64, 4096] {
        let mut conv = Conversation::new(settings());
        run(&mut conv, &before, chunk, &policy).unwrap();
        assert!(conv.in_message());
        conv.set_refuse(true);
        let (resp, out) = run(&mut conv, &after, chunk, &policy).unwrap();
        assert!(
            resp.iter()
                .any(|r| matches!(r, Response::Reply(Reply::Accept | Reply::Continue))),
            "chunk {chunk}: message cut by the drain: {resp:?}"
        );
        assert_eq!(out.verdicts.tempfail, 0, "chunk {chunk}");
        assert_eq!(out.messages, 1, "chunk {chunk}");
        assert!(!conv.in_message());
        let (resp, out) = run(&mut conv, &again, chunk, &policy).unwrap();
        assert!(
            matches!(
                resp.last(),
                Some(Response::Reply(Reply::ReplyCode { code: 451, .. }))
            ),
            "chunk {chunk}: MAIL after the drain: {resp:?}"
        );
        assert_eq!(out.verdicts.tempfail, 1);
    }
}

#[test]
fn policy_is_pinned_at_mail_until_the_message_ends() {
    let old = policy(vec![], vec![]);
    let new = policy(vec![], vec![rule(&["@d.example"], RuleAction::Reject)]);
    let mut conv = Conversation::new(settings());
    let mut start = session_start(POSTFIX_PROTOCOL);
    start.push(Command::Mail {
        args: b"<a@b.example>\0",
    });
    run(&mut conv, &mta_frames(&start), 64, &old).unwrap();
    // A reload happened: the shard now passes the new policy.
    let rest = mta_frames(&[
        Command::Rcpt {
            args: b"<r@d.example>\0",
        },
        Command::Abort,
    ]);
    let (resp, _) = run(&mut conv, &rest, 64, &new).unwrap();
    assert_eq!(resp, vec![Response::Reply(Reply::Continue)]);
    // The next message uses the new policy.
    let next = mta_frames(&[
        Command::Mail {
            args: b"<a@b.example>\0",
        },
        Command::Rcpt {
            args: b"<r@d.example>\0",
        },
    ]);
    let (resp, _) = run(&mut conv, &next, 64, &new).unwrap();
    assert!(matches!(
        &resp[1],
        Response::Reply(Reply::ReplyCode { code: 550, .. })
    ));
}

#[test]
fn non_smtp_mail_without_brackets_and_quit_new_connection() {
    let policy = policy(
        vec![rule(&["local@source.example"], RuleAction::Reject)],
        vec![],
    );
    let mut cmds = session_start(POSTFIX_PROTOCOL);
    cmds.push(Command::Mail {
        args: b"local@source.example\0",
    });
    cmds.push(Command::QuitNewConnection);
    cmds.push(Command::Connect {
        hostname: b"h",
        family: Family::Unknown,
        port: 0,
        address: b"",
    });
    cmds.extend(postfix_message(
        b"<ok@source.example>\0",
        &[b"r@dest.example\0"],
        b"",
    ));
    let (resp, out) = run(
        &mut Conversation::new(settings()),
        &mta_frames(&cmds),
        9,
        &policy,
    )
    .unwrap();
    assert!(matches!(
        &resp[1],
        Response::Reply(Reply::ReplyCode { code: 550, .. })
    ));
    assert_eq!(resp.last(), Some(&Response::Reply(Reply::Accept)));
    assert_eq!(out.messages, 2);
}

#[test]
fn macros_are_kept_per_stage() {
    let policy = policy(vec![], vec![]);
    let mut conv = Conversation::new(settings());
    let mut cmds = session_start(POSTFIX_PROTOCOL);
    cmds.push(Command::Macro {
        stage: cmd::MAIL,
        pairs: b"{auth_authen}\0alice\0i\0Q1\0",
    });
    cmds.push(Command::Mail {
        args: b"<a@b.example>\0",
    });
    cmds.push(Command::Macro {
        stage: cmd::RCPT,
        pairs: b"i\0Q2\0",
    });
    run(&mut conv, &mta_frames(&cmds), 64, &policy).unwrap();
    assert_eq!(conv.macro_value("{auth_authen}"), Some(&b"alice"[..]));
    assert_eq!(conv.macro_value("i"), Some(&b"Q2"[..]));
    assert_eq!(conv.macro_value("j"), Some(&b"mx.example"[..]));
    assert_eq!(conv.macro_value("{nope}"), None);
}

#[test]
fn out_of_order_and_malformed_input_are_errors_not_panics() {
    let policy = policy(vec![], vec![]);
    let optneg = Command::OptNeg {
        version: 6,
        actions: POSTFIX_ACTIONS,
        protocol: POSTFIX_PROTOCOL,
    };
    let cases: Vec<(Vec<Command<'_>>, &str)> = vec![
        (vec![Command::Body(b"x")], "BODY before OPTNEG"),
        (vec![optneg.clone(), optneg.clone()], "second OPTNEG"),
        (
            vec![optneg.clone(), Command::Rcpt { args: b"<r@d>\0" }],
            "RCPT before MAIL",
        ),
        (
            vec![
                optneg.clone(),
                Command::Header {
                    name: b"a",
                    value: b"b",
                },
            ],
            "HEADER outside message",
        ),
        (
            vec![optneg.clone(), Command::EndOfMessage(b"")],
            "EOM outside message",
        ),
        (
            vec![optneg.clone(), Command::Quit, Command::Helo { name: b"x" }],
            "after QUIT",
        ),
        (
            vec![Command::OptNeg {
                version: 1,
                actions: 0,
                protocol: 0,
            }],
            "version 1",
        ),
    ];
    for (cmds, what) in cases {
        let wire = mta_frames(&cmds);
        let mut conv = Conversation::new(settings());
        let mut out = Vec::new();
        let mut consumed = 0;
        let mut failed = false;
        // QUIT stops a `process` call; feed the rest as the runtime would not.
        while consumed < wire.len() {
            match conv.process(&wire[consumed..], &policy, &mut out) {
                Ok(o) if o.consumed == 0 => break,
                Ok(o) => consumed += o.consumed,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "{what} must be refused");
    }
    let mut conv = Conversation::new(settings());
    let oversized = [0u8, 0x10, 0, 0, b'B'];
    assert!(matches!(
        conv.process(&oversized, &policy, &mut Vec::new()),
        Err(ConversationError::Frame(FrameError::TooLarge { .. }))
    ));
    let mut conv = Conversation::new(settings());
    assert!(matches!(
        conv.process(&[0, 0, 0, 1, b'Z'], &policy, &mut Vec::new()),
        Err(ConversationError::Command(CommandError::UnknownCode(b'Z')))
    ));
}

#[test]
fn large_replacement_body_is_sent_in_chunks() {
    let mut r = rule(&["@big.example"], RuleAction::ReplaceBody);
    r.body = Some("y".repeat(150_000));
    let policy = policy(vec![], vec![r]);
    let mut cmds = session_start(POSTFIX_PROTOCOL);
    cmds.extend(postfix_message(
        b"<a@s.example>\0",
        &[b"<r@big.example>\0"],
        b"x",
    ));
    let (resp, _) = run(
        &mut Conversation::new(settings()),
        &mta_frames(&cmds),
        4096,
        &policy,
    )
    .unwrap();
    let chunks: Vec<usize> = resp
        .iter()
        .filter_map(|r| match r {
            Response::Modification(Modification::ReplaceBody(b)) => Some(b.len()),
            _ => None,
        })
        .collect();
    assert_eq!(chunks, vec![65_535, 65_535, 18_930]);
}

#[test]
fn recipients_the_mta_rejected_itself_are_not_judged() {
    let policy = policy(vec![], vec![rule(&["@dest.example"], RuleAction::Reject)]);
    let mut cmds = session_start(POSTFIX_PROTOCOL);
    cmds.push(Command::Mail {
        args: b"<a@b.example>\0",
    });
    cmds.push(Command::Macro {
        stage: cmd::RCPT,
        pairs: b"{rcpt_mailer}\0error\0{rcpt_host}\x005.7.1\0",
    });
    cmds.push(Command::Rcpt {
        args: b"<x@dest.example>\0",
    });
    cmds.push(Command::Macro {
        stage: cmd::RCPT,
        pairs: b"{rcpt_mailer}\0smtp\0",
    });
    cmds.push(Command::Rcpt {
        args: b"<y@dest.example>\0",
    });
    let (resp, out) = run(
        &mut Conversation::new(settings()),
        &mta_frames(&cmds),
        64,
        &policy,
    )
    .unwrap();
    assert_eq!(resp[2], Response::Reply(Reply::Continue));
    assert!(matches!(
        &resp[3],
        Response::Reply(Reply::ReplyCode { code: 550, .. })
    ));
    assert_eq!(out.verdicts.reject, 1);
}

#[test]
fn events_the_policy_ignores_are_negotiated_away() {
    let policy = policy(vec![rule(&["@x.example"], RuleAction::Reject)], vec![]);
    let wire = mta_frames(&[Command::OptNeg {
        version: 6,
        actions: POSTFIX_ACTIONS,
        protocol: POSTFIX_PROTOCOL,
    }]);
    let (resp, _) = run(&mut Conversation::new(settings()), &wire, 64, &policy).unwrap();
    let Response::Reply(Reply::OptNeg { protocol: p, .. }) = resp[0] else {
        panic!("{resp:?}")
    };
    for skipped in [
        protocol::NO_CONNECT,
        protocol::NO_HELO,
        protocol::NO_HEADERS,
        protocol::NO_EOH,
    ] {
        assert_ne!(p & skipped, 0, "flag {skipped:#x} negotiated");
    }
    // The size limit needs the body, and MAIL/RCPT need answers.
    assert_eq!(
        p & (protocol::NO_BODY | protocol::NR_MAIL | protocol::NR_RCPT),
        0
    );
    // Never more than the MTA offered.
    let wire = mta_frames(&[Command::OptNeg {
        version: 6,
        actions: POSTFIX_ACTIONS,
        protocol: protocol::NR_BODY,
    }]);
    let (resp, _) = run(&mut Conversation::new(settings()), &wire, 64, &policy).unwrap();
    assert!(matches!(
        resp[0],
        Response::Reply(Reply::OptNeg {
            protocol: protocol::NR_BODY,
            ..
        })
    ));
}

/// A policy with a content filter over one 6-point body rule, headers on.
fn filtered_policy() -> Arc<Policy> {
    use crate::filter::content::{compile_rules, ContentFilter, FilterSettings};
    use crate::filter::matcher::Backend;
    let cfg = crate::config::parse("[filter]\nrules = [\"/x\"]\n")
        .config
        .expect("valid");
    let rules = "body SPAMMY /spammy-marker/\nscore SPAMMY 6.0\n";
    let (set, scanner) = compile_rules(&[("t.cf".into(), rules.into())], Backend::Naive, 1, None);
    let filter = ContentFilter::new(
        Arc::new(scanner),
        set.required_score,
        &FilterSettings::from_config(&cfg.filter),
    );
    let p = Policy::new(
        &PolicyConfig {
            message_bytes_max: 10_000,
            header: Some("X-Mailborder".to_owned()),
            sender: vec![],
            recipient: vec![],
        },
        1,
    );
    Arc::new(p.with_filter(Some(Arc::new(filter))))
}

/// [`Conversation::process_deferred`] hands each end of message's scan to
/// the caller and stops there; with the caller's verdict,
/// [`Conversation::finish_scan`] writes exactly what a scan at once
/// ([`Conversation::process`]) writes, at every chunk size. While a scan is
/// outstanding no further frame is decoded, the scan is handed out once,
/// and a verdict nobody asked for changes nothing.
#[test]
fn deferred_scans_answer_as_scans_at_once() {
    let policy = filtered_policy();
    let mut cmds = session_start(POSTFIX_PROTOCOL);
    cmds.extend(postfix_message(
        b"<a@source.example>\0",
        &[b"<r@dest.example>\0"],
        b"buy spammy-marker now\r\n",
    ));
    cmds.extend(postfix_message(
        b"<b@source.example>\0",
        &[b"<r@dest.example>\0"],
        b"lunch?\r\n",
    ));
    cmds.push(Command::Quit);
    let wire = mta_frames(&cmds);
    let (at_once, reference) = run(&mut Conversation::new(settings()), &wire, 7, &policy).unwrap();
    assert_eq!(reference.messages, 2);
    let filter = Arc::clone(policy.filter().expect("a filter"));
    for chunk in [1, 3, 64, wire.len()] {
        let mut conv = Conversation::new(settings());
        let mut state = filter.scanner().state();
        let (mut buf, mut out, mut total, mut scans) =
            (Vec::new(), Vec::new(), Output::default(), 0);
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                let o = conv.process_deferred(&buf, &policy, &mut out).unwrap();
                buf.drain(..o.consumed);
                total.absorb(&o);
                let Some(scan) = conv.take_scan() else {
                    break;
                };
                scans += 1;
                assert!(conv.in_message());
                assert!(conv.take_scan().is_none(), "handed out once");
                // nothing is decoded while the scan is outstanding
                let before = out.len();
                let o = conv.process_deferred(&buf, &policy, &mut out).unwrap();
                assert_eq!((o.consumed, out.len()), (0, before));
                let verdict = scan.filter.judge(&mut state, &scan.raw, scan.truncated);
                conv.finish_scan(verdict, &mut out, &mut total);
                assert!(!conv.in_message());
            }
        }
        assert!(buf.is_empty(), "all input consumed at chunk {chunk}");
        assert_eq!(scans, 2, "chunk {chunk}");
        assert_eq!(responses(&out), at_once, "chunk {chunk}");
        assert_eq!(
            (total.messages, total.replies, total.close, total.verdicts),
            (
                reference.messages,
                reference.replies,
                reference.close,
                reference.verdicts
            )
        );
        // a verdict with no scan outstanding is ignored
        let stray = filter.judge(&mut state, b"Subject: x\r\n\r\ny\r\n", false);
        let before = out.len();
        conv.finish_scan(stray, &mut out, &mut total);
        assert_eq!(out.len(), before);
    }
    // the spammy message got its score in the added header
    assert!(
        at_once.contains(&header("score=6.00 shard=1")),
        "{at_once:?}"
    );
}
