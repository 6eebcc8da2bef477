//! Session tests: whole conversations as Postfix's smtp client sends them to
//! a content filter, fed at every chunk size and split at every byte, and
//! every limit.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::smtp::dot;
use crate::smtp::xforward::XValue;

const T0: Duration = Duration::from_secs(1000);

fn settings() -> Settings {
    Settings::new("filter.example")
}

/// What a runtime saw from one session.
#[derive(Debug, Default, PartialEq, Eq)]
struct Transcript {
    replies: String,
    events: Vec<Event>,
    /// Content of each completed message.
    messages: Vec<Vec<u8>>,
    closed: bool,
    /// Bytes left unconsumed at the end.
    left: usize,
}

/// A runtime: keeps unconsumed bytes, answers each complete message with
/// `250 … queued as Q<n>` (the spool commit is instant here).
struct Runtime {
    session: Session,
    out: Output,
    buf: Vec<u8>,
    t: Transcript,
    now: Duration,
}

impl Runtime {
    fn new(settings: Settings) -> Self {
        let mut out = Output::default();
        let session = Session::new(settings, T0, &mut out);
        let mut rt = Runtime {
            session,
            out,
            buf: Vec::new(),
            t: Transcript::default(),
            now: T0,
        };
        rt.collect();
        rt
    }

    fn collect(&mut self) {
        self.t
            .replies
            .push_str(&String::from_utf8_lossy(&self.out.reply));
        self.out.reply.clear();
        for e in self.out.events.drain(..) {
            self.t.events.push(e);
        }
    }

    fn feed(&mut self, piece: &[u8]) {
        self.buf.extend_from_slice(piece);
        loop {
            let p = self.session.receive(&self.buf, self.now, &mut self.out);
            assert!(p.consumed <= self.buf.len());
            self.buf.drain(..p.consumed);
            self.collect();
            if p.close {
                self.t.closed = true;
                return;
            }
            if !p.awaiting_finish {
                return;
            }
            self.t.messages.push(std::mem::take(&mut self.out.data));
            let id = format!("Q{}", self.t.messages.len());
            self.session
                .finish_message(&Reply::queued(&id), &mut self.out);
            self.collect();
        }
    }

    fn done(mut self) -> Transcript {
        self.t.left = self.buf.len();
        self.t
    }
}

fn run_chunks<'a>(settings: Settings, pieces: impl IntoIterator<Item = &'a [u8]>) -> Transcript {
    let mut rt = Runtime::new(settings);
    for piece in pieces {
        rt.feed(piece);
    }
    rt.done()
}

fn run(wire: &[u8]) -> Transcript {
    run_chunks(settings(), [wire])
}

/// The same transcript at every chunk size and at every two-piece split.
fn check_every_chunking(settings: &Settings, wire: &[u8]) -> Transcript {
    let whole = run_chunks(settings.clone(), [wire]);
    for size in 1..wire.len() {
        let t = run_chunks(settings.clone(), wire.chunks(size));
        assert_eq!(t, whole, "chunk size {size}");
    }
    for cut in 1..wire.len() {
        let t = run_chunks(settings.clone(), [&wire[..cut], &wire[cut..]]);
        assert_eq!(t, whole, "split at {cut}");
    }
    whole
}

const EHLO_REPLY: &str = "250-filter.example\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n\
250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n\
250 XFORWARD NAME ADDR PROTO HELO IDENT SOURCE PORT\r\n";

/// Postfix 3.7's smtp client to a content filter with PIPELINING: EHLO on
/// its own, then XFORWARD, MAIL, RCPT, DATA as one group, the content, and
/// here (more aggressive than Postfix) the next transaction pipelined right
/// after the dot, then QUIT.
const POSTFIX: &[u8] = b"EHLO mx.example.org\r\n\
XFORWARD NAME=spike.porcupine.org ADDR=168.100.189.2 PORT=55124 PROTO=ESMTP HELO=spike.porcupine.org\r\n\
XFORWARD IDENT=3CF6B2AAE8 SOURCE=REMOTE\r\n\
MAIL FROM:<wietse@porcupine.org> SIZE=60 BODY=8BITMIME\r\n\
RCPT TO:<user@example.com>\r\n\
RCPT TO:<other@example.com>\r\n\
DATA\r\n\
Subject: hi\r\n\r\n..dotted\r\n.\r\n\
MAIL FROM:<>\r\n\
RCPT TO:<postmaster>\r\n\
DATA\r\n\
second\r\n.\r\n\
QUIT\r\n";

#[test]
fn postfix_session_at_every_chunking() {
    let t = check_every_chunking(&settings(), POSTFIX);
    let expected = format!(
        "220 filter.example ESMTP mailborder\r\n{EHLO_REPLY}\
250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n\
354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as Q1\r\n\
250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n\
250 2.0.0 Ok: queued as Q2\r\n221 2.0.0 Bye\r\n"
    );
    assert_eq!(t.replies, expected);
    assert_eq!(
        t.messages,
        vec![
            b"Subject: hi\r\n\r\n.dotted\r\n".to_vec(),
            b"second\r\n".to_vec()
        ]
    );
    assert!(t.closed);
    assert_eq!(t.left, 0);
    let [Event::Envelope(first), Event::MessageComplete { bytes: 24 }, Event::Envelope(second), Event::MessageComplete { bytes: 8 }] =
        &t.events[..]
    else {
        panic!("events {:?}", t.events);
    };
    assert_eq!(first.helo, "mx.example.org");
    assert!(first.esmtp);
    assert_eq!(first.sender, "wietse@porcupine.org");
    assert_eq!(
        first.recipients,
        vec!["user@example.com", "other@example.com"]
    );
    assert_eq!(first.body, BodyType::EightBitMime);
    assert_eq!(first.size_declared, Some(60));
    let x = &first.xforward;
    assert_eq!(x.name, Some(XValue::Value("spike.porcupine.org".into())));
    assert_eq!(x.addr_ip(), Some("168.100.189.2".parse().unwrap()));
    assert_eq!(x.port_number(), Some(55124));
    assert_eq!(x.proto, Some(XValue::Value("ESMTP".into())));
    assert_eq!(x.ident, Some(XValue::Value("3CF6B2AAE8".into())));
    assert_eq!(x.source, Some(XValue::Value("REMOTE".into())));
    // XFORWARD applies to one transaction.
    assert!(second.xforward.is_empty());
    assert_eq!(second.sender, "");
    assert_eq!(second.recipients, vec!["postmaster"]);
    let facts = first.facts();
    assert!(facts.contains(&("xforward.addr", "168.100.189.2".to_owned())));
    assert!(facts.contains(&("body", "8BITMIME".to_owned())));
}

#[test]
fn bytes_after_the_dot_wait_for_finish_message() {
    let mut out = Output::default();
    let mut s = Session::new(settings(), T0, &mut out);
    let wire = b"EHLO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n";
    let p = s.receive(wire, T0, &mut out);
    assert!(p.awaiting_finish && !p.close);
    assert_eq!(&wire[p.consumed..], b"QUIT\r\n");
    assert_eq!(out.data, b"x\r\n");
    assert!(!String::from_utf8_lossy(&out.reply).contains("2.0.0 Ok: queued"));
    // Nothing is consumed until the answer.
    let again = s.receive(&wire[p.consumed..], T0, &mut out);
    assert_eq!(again.consumed, 0);
    assert!(again.awaiting_finish);
    out.reply.clear();
    s.finish_message(&Reply::queued("ABC"), &mut out);
    assert!(out.data.is_empty());
    let p = s.receive(&wire[p.consumed..], T0, &mut out);
    assert!(p.close);
    assert_eq!(
        String::from_utf8_lossy(&out.reply),
        "250 2.0.0 Ok: queued as ABC\r\n221 2.0.0 Bye\r\n"
    );
    assert_eq!(s.messages(), 1);
}

#[test]
fn a_failed_commit_is_answered_4xx_and_the_session_goes_on() {
    let mut out = Output::default();
    let mut s = Session::new(settings(), T0, &mut out);
    let p = s.receive(
        b"HELO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n",
        T0,
        &mut out,
    );
    assert!(p.awaiting_finish);
    s.finish_message(&Reply::spool_failed(), &mut out);
    assert_eq!(s.messages(), 0);
    out.reply.clear();
    s.receive(b"MAIL FROM:<a@b>\r\n", T0, &mut out);
    assert_eq!(out.reply, b"250 2.1.0 Ok\r\n");
}

#[test]
#[should_panic(expected = "finish_message without a complete message")]
fn finish_without_a_message_is_a_runtime_bug() {
    let mut out = Output::default();
    let mut s = Session::new(settings(), T0, &mut out);
    s.finish_message(&Reply::queued("X"), &mut out);
}

fn replies(settings: Settings, wire: &[u8]) -> Vec<String> {
    let t = run_chunks(settings, [wire]);
    t.replies
        .split_terminator("\r\n")
        .skip(1)
        .map(str::to_owned)
        .collect()
}

#[test]
fn commands_and_sequence_errors() {
    let r = replies(
        settings(),
        b"MAIL FROM:<a@b>\r\nHELO client\r\nRCPT TO:<a@b>\r\nDATA\r\nMAIL FROM:<a@b> SIZE=1\r\n\
MAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\nDATA\r\nNOOP hello\r\nVRFY\r\nVRFY bob\r\nHELP\r\n\
RSET\r\nRSET x\r\nEXPN list\r\nSTARTTLS\r\nFOO\r\nmail from:<a@b>\r\nrcpt to:<c@d>\r\n\
RCPT TO:<c@d> NOTIFY=NEVER\r\nDATA x\r\n",
    );
    assert_eq!(
        r,
        vec![
            "503 5.5.1 Error: send HELO/EHLO first",
            "250 filter.example",
            "503 5.5.1 Error: need MAIL command",
            "503 5.5.1 Error: need MAIL command",
            "555 5.5.4 Error: MAIL parameters need EHLO",
            "250 2.1.0 Ok",
            "503 5.5.1 Error: nested MAIL command",
            "554 5.5.1 Error: no valid recipients",
            "250 2.0.0 Ok",
            "501 5.5.4 Syntax: VRFY address",
            "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery",
            "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP XFORWARD",
            "250 2.0.0 Ok",
            "501 5.5.4 Syntax: RSET",
            "502 5.5.1 Error: command not implemented",
            "502 5.5.1 Error: command not implemented",
            "500 5.5.1 Error: command not recognized",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "555 5.5.4 Error: unsupported RCPT parameter NOTIFY",
            "501 5.5.4 Syntax: DATA",
        ]
    );
}

#[test]
fn address_and_parameter_errors() {
    let r = replies(
        settings(),
        b"EHLO c\r\nMAIL FROM:a@b\r\nMAIL FROM:<a b@c>\r\nMAIL FROM:<a@>\r\nMAIL <a@b>\r\n\
MAIL FROM:<a@b> SIZE=x\r\nMAIL FROM:<a@b> BODY=BINARYMIME\r\nMAIL FROM:<a@b> RET=FULL\r\n\
MAIL FROM:<a@b> SIZE=99999999999\r\nMAIL FROM:<j\xc3\xb6@b>\r\n\
MAIL FROM:<j\xc3\xb6@b> SMTPUTF8\r\nRCPT TO:<>\r\nRCPT TO:<bob>\r\nRCPT TO:<b\xc3\xb6b@c>\r\n\
RSET\r\nMAIL FROM:<a@b>\r\nRCPT TO:<b\xc3\xb6b@c>\r\nMAIL\xff\r\n",
    );
    assert_eq!(
        r[8..],
        [
            "501 5.1.7 Error: bad sender address syntax",
            "501 5.1.7 Error: bad sender address syntax",
            "501 5.1.7 Error: bad sender address syntax",
            "501 5.5.4 Syntax: MAIL FROM:<address>",
            "501 5.5.4 Error: bad SIZE value",
            "555 5.5.4 Error: unsupported MAIL parameter BODY",
            "555 5.5.4 Error: unsupported MAIL parameter RET",
            "552 5.3.4 Error: message size exceeds fixed limit",
            "553 5.6.7 Error: non-ASCII sender address needs SMTPUTF8",
            "250 2.1.0 Ok",
            "501 5.1.3 Error: bad recipient address syntax",
            "501 5.1.3 Error: bad recipient address syntax",
            "250 2.1.5 Ok",
            "250 2.0.0 Ok",
            "250 2.1.0 Ok",
            "553 5.6.7 Error: non-ASCII recipient needs SMTPUTF8",
            "500 5.5.2 Error: bad UTF-8 syntax",
        ]
    );
}

#[test]
fn command_line_limit_is_512_bytes_with_crlf() {
    let ok = format!("NOOP {}\r\n", "x".repeat(512 - 7));
    let long = format!("NOOP {}\r\n", "x".repeat(512 - 6));
    assert_eq!(ok.len(), 512);
    let wire = format!("{ok}{long}NOOP\r\n");
    let t = check_every_chunking(&settings(), wire.as_bytes());
    assert_eq!(
        t.replies,
        "220 filter.example ESMTP mailborder\r\n250 2.0.0 Ok\r\n\
500 5.5.2 Error: command line longer than 512 bytes\r\n250 2.0.0 Ok\r\n"
    );
    // A line that never ends is discarded as it arrives: the runtime never
    // has to keep more than 512 bytes.
    let mut out = Output::default();
    let mut s = Session::new(settings(), T0, &mut out);
    let junk = vec![b'a'; 100_000];
    let p = s.receive(&junk, T0, &mut out);
    assert_eq!(p.consumed, junk.len());
    let p = s.receive(&junk, T0, &mut out);
    assert_eq!(p.consumed, junk.len());
    out.reply.clear();
    s.receive(b"\r\nNOOP\r\n", T0, &mut out);
    assert_eq!(
        String::from_utf8_lossy(&out.reply),
        "500 5.5.2 Error: command line longer than 512 bytes\r\n250 2.0.0 Ok\r\n"
    );
    // A partial line is left with the runtime.
    let p = s.receive(b"NOOP", T0, &mut out);
    assert_eq!(p.consumed, 0);
}

#[test]
fn too_many_errors_close_with_421() {
    let s = Settings {
        errors_max: 3,
        ..settings()
    };
    let t = run_chunks(s, [&b"FOO\r\nBAR\r\nNOOP\r\nBAZ\r\nNOOP\r\n"[..]]);
    assert_eq!(
        t.replies,
        "220 filter.example ESMTP mailborder\r\n500 5.5.1 Error: command not recognized\r\n\
500 5.5.1 Error: command not recognized\r\n250 2.0.0 Ok\r\n\
421 4.7.0 filter.example Error: too many errors\r\n"
    );
    assert!(t.closed);
    assert_eq!(t.left, 0, "input after the close is dropped");
}

#[test]
fn recipient_cap_answers_452() {
    let s = Settings {
        rcpt_count_max: 2,
        ..settings()
    };
    let r = replies(
        s,
        b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<1@b>\r\nRCPT TO:<2@b>\r\nRCPT TO:<3@b>\r\n\
RCPT TO:<4@b>\r\nDATA\r\nx\r\n.\r\n",
    );
    assert_eq!(
        r[8..],
        [
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "250 2.1.5 Ok",
            "452 4.5.3 Error: too many recipients",
            "452 4.5.3 Error: too many recipients",
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: queued as Q1",
        ]
    );
}

#[test]
fn message_size_limit_is_announced_and_enforced() {
    let s = Settings {
        message_bytes_max: 10,
        ..settings()
    };
    let wire = b"EHLO c\r\nMAIL FROM:<a@b> SIZE=11\r\nMAIL FROM:<a@b> SIZE=10\r\nRCPT TO:<c@d>\r\n\
DATA\r\n0123456789\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n01234567\r\n.\r\n";
    let t = check_every_chunking(&s, wire);
    let r: Vec<&str> = t.replies.split_terminator("\r\n").collect();
    assert!(r.contains(&"250-SIZE 10"));
    assert_eq!(
        r[9..],
        [
            "552 5.3.4 Error: message size exceeds fixed limit",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            "552 5.3.4 Error: message file too big",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: queued as Q1",
        ]
    );
    assert_eq!(t.messages, vec![b"01234567\r\n".to_vec()]);
    assert!(t
        .events
        .contains(&Event::MessageAborted(AbortReason::TooBig)));
}

#[test]
fn content_over_the_limit_is_not_stored() {
    let s = Settings {
        message_bytes_max: 1000,
        ..settings()
    };
    let mut out = Output::default();
    let mut session = Session::new(s, T0, &mut out);
    session.receive(
        b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n",
        T0,
        &mut out,
    );
    let line = [b"y".repeat(98), b"\r\n".to_vec()].concat();
    for _ in 0..1000 {
        let p = session.receive(&line, T0, &mut out);
        assert_eq!(p.consumed, line.len());
        assert!(out.data.len() <= 1000);
    }
    out.reply.clear();
    session.receive(b".\r\n", T0, &mut out);
    assert_eq!(out.reply, b"552 5.3.4 Error: message file too big\r\n");
    assert!(out.data.is_empty());
}

#[test]
fn text_line_limit_is_1000_bytes_with_crlf() {
    let ok = format!("{}\r\n", "a".repeat(998));
    let long = format!("{}\r\n", "a".repeat(999));
    let wire = format!(
        "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n{ok}.\r\n\
MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n{long}.\r\n"
    );
    let r = replies(settings(), wire.as_bytes());
    assert_eq!(
        r.last().unwrap(),
        "500 5.5.2 Error: message line longer than 1000 bytes"
    );
    assert_eq!(r[r.len() - 5], "250 2.0.0 Ok: queued as Q1");
}

#[test]
fn session_time_budget() {
    let s = Settings {
        session_time_max: Duration::from_secs(60),
        ..settings()
    };
    let mut out = Output::default();
    let mut session = Session::new(s, T0, &mut out);
    assert_eq!(session.deadline(), T0 + Duration::from_secs(60));
    session.receive(
        b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nabc",
        T0,
        &mut out,
    );
    assert!(!session.tick(T0 + Duration::from_secs(59), &mut out));
    out.reply.clear();
    let p = session.receive(b"def\r\n", T0 + Duration::from_secs(60), &mut out);
    assert!(p.close);
    assert_eq!(
        out.reply,
        b"421 4.4.2 filter.example Error: session time limit exceeded\r\n"
    );
    assert_eq!(
        out.events.last(),
        Some(&Event::MessageAborted(AbortReason::Closed))
    );
    assert!(out.data.is_empty());
}

#[test]
fn time_budget_waits_for_the_pending_answer() {
    let s = Settings {
        session_time_max: Duration::from_secs(60),
        ..settings()
    };
    let mut out = Output::default();
    let mut session = Session::new(s, T0, &mut out);
    session.receive(
        b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n.\r\n",
        T0,
        &mut out,
    );
    let late = T0 + Duration::from_secs(61);
    assert!(!session.tick(late, &mut out), "the 250 must go first");
    out.reply.clear();
    session.finish_message(&Reply::queued("Q"), &mut out);
    assert!(session.tick(late, &mut out));
    assert_eq!(
        String::from_utf8_lossy(&out.reply),
        "250 2.0.0 Ok: queued as Q\r\n421 4.4.2 filter.example Error: session time limit exceeded\r\n"
    );
}

#[test]
fn drain_closes_idle_sessions_and_refuses_the_next_mail() {
    let mut out = Output::default();
    let mut s = Session::new(settings(), T0, &mut out);
    assert!(s.drain(&mut out));
    assert!(s.is_closed());
    let mut out = Output::default();
    let mut s = Session::new(settings(), T0, &mut out);
    s.receive(
        b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n",
        T0,
        &mut out,
    );
    assert!(!s.drain(&mut out));
    out.reply.clear();
    let p = s.receive(b"DATA\r\nx\r\n.\r\nMAIL FROM:<a@b>\r\n", T0, &mut out);
    assert!(p.awaiting_finish);
    s.finish_message(&Reply::queued("Q"), &mut out);
    let p = s.receive(b"MAIL FROM:<a@b>\r\n", T0, &mut out);
    assert!(p.close);
    assert!(String::from_utf8_lossy(&out.reply)
        .ends_with("250 2.0.0 Ok: queued as Q\r\n421 4.3.2 filter.example Service shutting down, closing channel\r\n"));
}

#[test]
fn refusing_settings_greet_with_421() {
    let t = run_chunks(
        Settings {
            refuse: true,
            ..settings()
        },
        [&b"EHLO x\r\n"[..]],
    );
    assert_eq!(
        t.replies,
        "421 4.3.2 filter.example Service not available, try again later\r\n"
    );
    assert!(t.closed);
}

#[test]
fn xforward_rules() {
    let r = replies(
        settings(),
        b"EHLO c\r\nXFORWARD\r\nXFORWARD COLOR=red\r\nXFORWARD ADDR=a+zz\r\nXFORWARD NAME=x\r\n\
MAIL FROM:<a@b>\r\nXFORWARD NAME=y\r\nRSET\r\n",
    );
    assert_eq!(
        r[8..],
        [
            "501 5.5.4 Error: syntax: XFORWARD attribute=value...",
            "501 5.5.4 Error: bad XFORWARD attribute name: COLOR",
            "501 5.5.4 Error: bad XFORWARD attribute value syntax: ADDR",
            "250 2.0.0 Ok",
            "250 2.1.0 Ok",
            "503 5.5.1 Error: MAIL transaction in progress",
            "250 2.0.0 Ok",
        ]
    );
    // Not announced and refused when the listener does not trust the peer.
    let s = Settings {
        xforward: false,
        chunking: false,
        smtputf8: false,
        ..settings()
    };
    let t = run_chunks(s, [&b"EHLO c\r\nXFORWARD NAME=x\r\nBDAT 1 LAST\r\n"[..]]);
    assert!(!t.replies.contains("XFORWARD NAME"));
    assert!(!t.replies.contains("CHUNKING"));
    assert!(!t.replies.contains("SMTPUTF8"));
    assert!(t.replies.ends_with(
        "502 5.5.1 Error: command not implemented\r\n502 5.5.1 Error: command not implemented\r\n"
    ));
}

#[test]
fn xforward_is_forgotten_after_rset_and_ehlo() {
    let mut out = Output::default();
    let mut s = Session::new(settings(), T0, &mut out);
    s.receive(b"EHLO c\r\nXFORWARD ADDR=192.0.2.1\r\n", T0, &mut out);
    assert!(!s.xforward().is_empty());
    s.receive(b"RSET\r\n", T0, &mut out);
    assert!(s.xforward().is_empty());
    s.receive(b"XFORWARD ADDR=192.0.2.1\r\nEHLO c\r\n", T0, &mut out);
    assert!(s.xforward().is_empty());
}

const BDAT: &[u8] = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n\
BDAT 5\r\nab\r\ncBDAT 0\r\nBDAT 3 LAST\r\n.\r\nNOOP\r\n\
MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 0 LAST\r\nQUIT\r\n";

#[test]
fn bdat_chunks_at_every_chunking() {
    let t = check_every_chunking(&settings(), BDAT);
    let r: Vec<&str> = t.replies.split_terminator("\r\n").collect();
    assert_eq!(
        r[9..],
        [
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "250 2.0.0 Ok: 5 octets received",
            "250 2.0.0 Ok: 0 octets received",
            "250 2.0.0 Ok: queued as Q1",
            "250 2.0.0 Ok",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "250 2.0.0 Ok: queued as Q2",
            "221 2.0.0 Bye",
        ]
    );
    assert_eq!(t.messages, vec![b"ab\r\nc.\r\n".to_vec(), Vec::new()]);
    let Event::Envelope(e) = &t.events[0] else {
        panic!("{:?}", t.events)
    };
    assert!(e.chunked);
}

#[test]
fn bdat_errors_skip_the_chunk() {
    let s = Settings {
        message_bytes_max: 4,
        ..settings()
    };
    let wire = b"EHLO c\r\nBDAT 4\r\nNOOPMAIL FROM:<a@b>\r\nBDAT 2\r\nxyRCPT TO:<c@d>\r\n\
BDAT 3\r\nabcBDAT 3\r\ndefBDAT 1 LAST\r\ngRSET\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n\
BDAT 2\r\nabDATA\r\nRSET\r\nNOOP\r\n";
    let t = check_every_chunking(&s, wire);
    let r: Vec<&str> = t.replies.split_terminator("\r\n").collect();
    assert_eq!(
        r[9..],
        [
            "503 5.5.1 Error: need MAIL command",
            "250 2.1.0 Ok",
            "554 5.5.1 Error: no valid recipients",
            "250 2.1.5 Ok",
            "250 2.0.0 Ok: 3 octets received",
            "552 5.3.4 Error: message file too big",
            "552 5.3.4 Error: message file too big",
            "250 2.0.0 Ok",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "250 2.0.0 Ok: 2 octets received",
            "503 5.5.1 Error: DATA after BDAT",
            "250 2.0.0 Ok",
            "250 2.0.0 Ok",
        ]
    );
    assert!(t.messages.is_empty());
    assert_eq!(
        t.events
            .iter()
            .filter(|e| matches!(e, Event::MessageAborted(_)))
            .count(),
        2,
        "{:?}",
        t.events
    );
}

#[test]
fn bdat_without_a_size_closes() {
    let t = run(b"EHLO c\r\nBDAT x\r\nNOOP\r\n");
    assert!(t
        .replies
        .ends_with("501 5.5.4 Syntax: BDAT chunk-size [LAST]; closing\r\n"));
    assert!(t.closed);
}

#[test]
fn disconnect_in_data_aborts_the_message() {
    let mut out = Output::default();
    let mut s = Session::new(settings(), T0, &mut out);
    s.receive(
        b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npartial",
        T0,
        &mut out,
    );
    assert_eq!(out.data, b"partial");
    s.disconnected(&mut out);
    assert!(s.is_closed());
    assert!(out.data.is_empty());
    assert_eq!(
        out.events.last(),
        Some(&Event::MessageAborted(AbortReason::Closed))
    );
}

#[test]
fn smuggling_attempts_stay_inside_the_message() {
    // LF.LF and CR.CR are content; only CRLF.CRLF ends the data.
    let t = check_every_chunking(
        &settings(),
        b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n\
a\n.\nMAIL FROM:<evil@x>\r\nb\r.\rc\r\n.\r\nQUIT\r\n",
    );
    assert_eq!(
        t.messages,
        vec![b"a\n.\nMAIL FROM:<evil@x>\r\nb\r.\rc\r\n".to_vec()]
    );
    assert_eq!(t.replies.matches("2.1.0 Ok").count(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any content, stuffed, goes through DATA unchanged (CRLF added when
    /// missing) whatever the chunking.
    #[test]
    fn content_survives_any_chunking(
        content in proptest::collection::vec(
            prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), any::<u8>()], 0..300),
        cuts in proptest::collection::vec(0usize..400, 0..8),
    ) {
        let mut wire = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n".to_vec();
        wire.extend_from_slice(&dot::stuff(&content));
        wire.extend_from_slice(b"QUIT\r\n");
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(wire.len())).collect();
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut at = 0;
        for c in cuts {
            pieces.push(&wire[at..c]);
            at = c;
        }
        pieces.push(&wire[at..]);
        let t = run_chunks(settings(), pieces);
        let mut expected = content.clone();
        if !expected.is_empty() && !expected.ends_with(b"\r\n") {
            expected.extend_from_slice(b"\r\n");
        }
        prop_assert_eq!(&t.messages, &vec![expected]);
        prop_assert!(t.closed);
        prop_assert_eq!(t, run(&wire));
    }

    /// Random command soup never panics and never makes the runtime keep
    /// more than a command line.
    #[test]
    fn command_soup_is_bounded(
        words in proptest::collection::vec(prop_oneof![
            Just(&b"EHLO c\r\n"[..]), Just(&b"MAIL FROM:<a@b>\r\n"[..]),
            Just(&b"RCPT TO:<c@d>\r\n"[..]), Just(&b"DATA\r\n"[..]), Just(&b".\r\n"[..]),
            Just(&b"BDAT 3\r\n"[..]), Just(&b"BDAT 2 LAST\r\n"[..]), Just(&b"RSET\r\n"[..]),
            Just(&b"XFORWARD NAME=a\r\n"[..]), Just(&b"x"[..]), Just(&b"\r\n"[..]),
        ], 0..60),
        chunk in 1usize..30,
    ) {
        let wire: Vec<u8> = words.concat();
        let mut rt = Runtime::new(settings());
        for piece in wire.chunks(chunk) {
            rt.feed(piece);
            prop_assert!(rt.buf.len() < 512);
        }
    }
}

#[test]
fn message_size_is_capped_by_the_spool_record() {
    let s = Settings {
        message_bytes_max: u64::MAX,
        ..settings()
    };
    let t = run_chunks(s, [&b"EHLO c\r\n"[..]]);
    let max = crate::spool::BODY_BYTES_MAX;
    assert!(t.replies.contains(&format!("250-SIZE {max}\r\n")));
}
