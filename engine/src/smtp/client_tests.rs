//! Client tests: scripted server replies (fed at every chunk size), and the
//! client against our own server session.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::smtp::dot::normalize_line_ends;
use crate::smtp::server::{self, Event, Output, Session};
use crate::smtp::xforward::XValue;

/// A runtime driving the client: starts the queued transactions when
/// ready, sends the body when asked, quits when out of work.
struct Driver {
    client: Client,
    buf: Vec<u8>,
    sent: Vec<u8>,
    events: Vec<ClientEvent>,
    queue: Vec<(Transaction, Vec<u8>)>,
    body: Vec<u8>,
    error: Option<ClientError>,
}

impl Driver {
    fn new(settings: ClientSettings, queue: Vec<(Transaction, Vec<u8>)>) -> Self {
        Driver {
            client: Client::new(settings),
            buf: Vec::new(),
            sent: Vec::new(),
            events: Vec::new(),
            queue,
            body: Vec::new(),
            error: None,
        }
    }

    fn feed(&mut self, piece: &[u8]) {
        if self.error.is_some() {
            return;
        }
        self.buf.extend_from_slice(piece);
        // As a runtime does: act on the events, then feed the rest again.
        while self.error.is_none() {
            let mut events = Vec::new();
            match self.client.receive(&self.buf, &mut self.sent, &mut events) {
                Ok(used) => {
                    self.buf.drain(..used);
                    let acted = !events.is_empty();
                    self.react(events);
                    if self.buf.is_empty() || (used == 0 && !acted) {
                        return;
                    }
                }
                Err(e) => self.error = Some(e),
            }
        }
    }

    fn react(&mut self, events: Vec<ClientEvent>) {
        for e in events {
            match &e {
                ClientEvent::Ready if self.client.is_ready() => {
                    let mut more = Vec::new();
                    if self.queue.is_empty() {
                        self.client.quit(&mut self.sent).unwrap();
                    } else {
                        let (tx, body) = self.queue.remove(0);
                        self.body = body;
                        self.client.start(tx, &mut self.sent, &mut more).unwrap();
                    }
                    self.events.push(e);
                    self.react(more);
                    continue;
                }
                ClientEvent::SendBody => {
                    let body = std::mem::take(&mut self.body);
                    self.client.body(&body, &mut self.sent).unwrap();
                }
                _ => {}
            }
            self.events.push(e);
        }
    }

    fn sent(&self) -> String {
        String::from_utf8_lossy(&self.sent).into_owned()
    }
}

fn tx(rcpts: &[&str]) -> Transaction {
    Transaction {
        sender: "a@example.org".into(),
        recipients: rcpts.iter().map(|r| (*r).to_owned()).collect(),
        size: 12,
        ..Transaction::default()
    }
}

fn settings() -> ClientSettings {
    ClientSettings::new("filter.example")
}

/// Runs a scripted server at every chunk size; all runs must agree.
fn scripted(
    settings: &ClientSettings,
    queue: &[(Transaction, Vec<u8>)],
    server: &[u8],
) -> (String, Vec<ClientEvent>, Option<ClientError>) {
    let mut first = None;
    for size in (1..=server.len()).rev() {
        let mut d = Driver::new(settings.clone(), queue.to_vec());
        for piece in server.chunks(size) {
            d.feed(piece);
        }
        let got = (d.sent(), d.events, d.error);
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(&got, f, "chunk size {size}"),
        }
    }
    first.unwrap()
}

const POSTFIX_EHLO: &[u8] = b"220 mx.example ESMTP Postfix\r\n\
250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n\
250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n\
250 XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT\r\n";

fn status(r: &RcptStatus) -> (Outcome, Stage, u16, bool) {
    (r.outcome, r.stage, r.reply.code, r.remote)
}

#[test]
fn pipelined_delivery_with_one_temporary_refusal() {
    let mut t = tx(&["u1@example.com", "u2@example.com"]);
    t.body = BodyType::EightBitMime;
    t.xforward
        .apply("NAME=client.example ADDR=192.0.2.7 PROTO=ESMTP HELO=client.example")
        .unwrap();
    let body = b"Subject: x\r\n\r\n.hello\nbye".to_vec();
    let server = [
        POSTFIX_EHLO,
        b"250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n",
        b"450-4.2.0 <u2@example.com>: Recipient address rejected:\r\n450 4.2.0 try again\r\n",
        b"354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as 4XyZ\r\n221 2.0.0 Bye\r\n",
    ]
    .concat();
    let (sent, events, error) = scripted(&settings(), &[(t, body)], &server);
    assert_eq!(error, None);
    assert_eq!(
        sent,
        "EHLO filter.example\r\n\
XFORWARD NAME=client.example ADDR=192.0.2.7 PROTO=ESMTP HELO=client.example\r\n\
MAIL FROM:<a@example.org> SIZE=12 BODY=8BITMIME\r\n\
RCPT TO:<u1@example.com>\r\nRCPT TO:<u2@example.com>\r\nDATA\r\n\
Subject: x\r\n\r\n..hello\r\nbye\r\n.\r\nQUIT\r\n"
    );
    let ClientEvent::Done(result) = &events[2] else {
        panic!("{events:?}");
    };
    assert_eq!(
        status(&result.recipients[0]),
        (Outcome::Delivered, Stage::EndOfData, 250, true)
    );
    assert_eq!(
        status(&result.recipients[1]),
        (Outcome::TempFailed, Stage::Rcpt, 450, true)
    );
    assert_eq!(
        result.recipients[1].reply.text(),
        "<u2@example.com>: Recipient address rejected: try again"
    );
    assert_eq!(result.indices(Outcome::Delivered).collect::<Vec<_>>(), [0]);
    assert_eq!(events.last(), Some(&ClientEvent::Closed));
}

#[test]
fn rejection_at_data_then_connection_reuse() {
    let server = [
        POSTFIX_EHLO,
        b"250 2.1.0 Ok\r\n550 5.1.1 <x@example.com>: unknown\r\n250 2.1.5 Ok\r\n",
        b"554 5.7.1 Transaction failed\r\n250 2.0.0 Ok\r\n",
        b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n",
    ]
    .concat();
    let queue = vec![
        (tx(&["x@example.com", "y@example.com"]), b"one\r\n".to_vec()),
        (tx(&["z@example.com"]), b"two\r\n".to_vec()),
    ];
    let (sent, events, error) = scripted(&settings(), &queue, &server);
    assert_eq!(error, None);
    assert_eq!(
        sent,
        "EHLO filter.example\r\nMAIL FROM:<a@example.org> SIZE=12\r\n\
RCPT TO:<x@example.com>\r\nRCPT TO:<y@example.com>\r\nDATA\r\nRSET\r\n\
MAIL FROM:<a@example.org> SIZE=12\r\nRCPT TO:<z@example.com>\r\nDATA\r\ntwo\r\n.\r\nQUIT\r\n"
    );
    let results: Vec<&TransactionResult> = events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Done(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), 2);
    assert_eq!(
        status(&results[0].recipients[0]),
        (Outcome::PermFailed, Stage::Rcpt, 550, true)
    );
    assert_eq!(
        status(&results[0].recipients[1]),
        (Outcome::PermFailed, Stage::Data, 554, true)
    );
    assert_eq!(
        status(&results[1].recipients[0]),
        (Outcome::Delivered, Stage::EndOfData, 250, true)
    );
}

#[test]
fn without_pipelining_commands_wait_and_stop_early() {
    let ehlo = b"220 old.example\r\n250-old.example\r\n250 SIZE\r\n";
    // MAIL refused: no RCPT is sent.
    let server = [&ehlo[..], b"451 4.3.0 busy\r\n250 Ok\r\n221 Bye\r\n"].concat();
    let (sent, events, _) = scripted(&settings(), &[(tx(&["b@c"]), b"x".to_vec())], &server);
    assert_eq!(
        sent,
        "EHLO filter.example\r\nMAIL FROM:<a@example.org> SIZE=12\r\nRSET\r\nQUIT\r\n"
    );
    let ClientEvent::Done(r) = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(
        status(&r.recipients[0]),
        (Outcome::TempFailed, Stage::Mail, 451, true)
    );
    // Every RCPT refused: no DATA.
    let server = [
        &ehlo[..],
        b"250 Ok\r\n550 5.1.1 no\r\n550 5.1.1 no\r\n250 Ok\r\n221 Bye\r\n",
    ]
    .concat();
    let (sent, events, _) = scripted(
        &settings(),
        &[(tx(&["b@c", "d@e"]), b"x".to_vec())],
        &server,
    );
    assert_eq!(
        sent,
        "EHLO filter.example\r\nMAIL FROM:<a@example.org> SIZE=12\r\nRCPT TO:<b@c>\r\n\
RCPT TO:<d@e>\r\nRSET\r\nQUIT\r\n"
    );
    let ClientEvent::Done(r) = &events[1] else {
        panic!("{events:?}")
    };
    assert!(r
        .recipients
        .iter()
        .all(|s| s.outcome == Outcome::PermFailed));
}

#[test]
fn pipelined_data_after_every_rcpt_refused_sends_a_lone_dot() {
    let server = [
        POSTFIX_EHLO,
        b"250 2.1.0 Ok\r\n550 5.1.1 no\r\n354 go\r\n554 5.5.1 no valid recipients\r\n",
        b"250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n",
    ]
    .concat();
    let (sent, events, error) = scripted(&settings(), &[(tx(&["b@c"]), b"x".to_vec())], &server);
    assert_eq!(error, None);
    assert!(
        sent.ends_with("RCPT TO:<b@c>\r\nDATA\r\n.\r\nRSET\r\nQUIT\r\n"),
        "{sent}"
    );
    let ClientEvent::Done(r) = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(
        status(&r.recipients[0]),
        (Outcome::PermFailed, Stage::Rcpt, 550, true)
    );
}

#[test]
fn connection_dropped_after_the_dot() {
    let mut d = Driver::new(
        settings(),
        vec![(tx(&["b@c", "d@e"]), b"body\r\n".to_vec())],
    );
    d.feed(POSTFIX_EHLO);
    d.feed(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 unknown\r\n354 go\r\n");
    assert!(d.sent().ends_with("body\r\n.\r\n"));
    let r = d.client.connection_lost().unwrap();
    assert_eq!(
        status(&r.recipients[0]),
        (Outcome::TempFailed, Stage::Connection, 451, false)
    );
    assert_eq!(
        status(&r.recipients[1]),
        (Outcome::PermFailed, Stage::Rcpt, 550, true)
    );
    assert!(d.client.is_closed());
    assert_eq!(d.client.connection_lost(), None);
}

#[test]
fn server_421_in_the_middle_ends_everything() {
    let server = [POSTFIX_EHLO, b"250 2.1.0 Ok\r\n421 4.3.2 shutting down\r\n"].concat();
    let (sent, events, error) = scripted(&settings(), &[(tx(&["b@c"]), b"x".to_vec())], &server);
    assert_eq!(error, None);
    assert!(!sent.contains("QUIT"));
    let ClientEvent::Done(r) = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(
        status(&r.recipients[0]),
        (Outcome::TempFailed, Stage::Connection, 421, true)
    );
    assert_eq!(events.last(), Some(&ClientEvent::Closed));
    // Also instead of the reply to the final dot, or when idle.
    let mut c = Client::new(settings());
    let mut out = Vec::new();
    let mut ev = Vec::new();
    c.receive(POSTFIX_EHLO, &mut out, &mut ev).unwrap();
    c.start(tx(&["b@c"]), &mut out, &mut ev).unwrap();
    let wire = b"250 Ok\r\n250 Ok\r\n354 go\r\n421 4.4.2 timeout\r\n";
    let used = c.receive(wire, &mut out, &mut ev).unwrap();
    assert_eq!(
        &wire[used..],
        b"421 4.4.2 timeout\r\n",
        "stops for the body"
    );
    assert_eq!(c.receive(&wire[used..], &mut out, &mut ev), Ok(0));
    c.body(b"x", &mut out).unwrap();
    c.receive(&wire[used..], &mut out, &mut ev).unwrap();
    assert!(c.is_closed());
    assert!(matches!(&ev[ev.len() - 2], ClientEvent::Done(r) if r.recipients[0].reply.code == 421));
    let mut c = Client::new(settings());
    let mut ev = Vec::new();
    c.receive(POSTFIX_EHLO, &mut out, &mut ev).unwrap();
    c.receive(b"421 4.4.2 idle timeout\r\n", &mut out, &mut ev)
        .unwrap();
    assert!(c.is_closed());
    assert_eq!(ev.last(), Some(&ClientEvent::Closed));
}

#[test]
fn greeting_refusals() {
    let (sent, events, _) = scripted(&settings(), &[], b"554 5.7.1 go away\r\n");
    assert_eq!(sent, "QUIT\r\n");
    assert!(matches!(&events[0], ClientEvent::SessionFailed(r) if r.code == 554));
    let (sent, events, _) = scripted(&settings(), &[], b"421 4.3.2 busy\r\n");
    assert_eq!(sent, "");
    assert!(matches!(&events[0], ClientEvent::SessionFailed(r) if r.code == 421));
    assert_eq!(events[1], ClientEvent::Closed);
}

#[test]
fn helo_fallback_and_no_extensions() {
    let mut t = tx(&["b@c"]);
    t.body = BodyType::EightBitMime;
    t.xforward.apply("ADDR=192.0.2.1").unwrap();
    let server = b"220 old\r\n502 5.5.1 what\r\n250 old\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n221 bye\r\n";
    let (sent, _, error) = scripted(&settings(), &[(t, b"x\r\n".to_vec())], server);
    assert_eq!(error, None);
    assert_eq!(
        sent,
        "EHLO filter.example\r\nHELO filter.example\r\nMAIL FROM:<a@example.org>\r\n\
RCPT TO:<b@c>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n"
    );
}

#[test]
fn local_refusals_from_the_servers_announcements() {
    let server = b"220 s\r\n250-s\r\n250-PIPELINING\r\n250 SIZE 10\r\n221 bye\r\n";
    let mut big = tx(&["b@c"]);
    big.size = 11;
    let mut utf8 = tx(&["b\u{f6}b@c"]);
    utf8.smtputf8 = true;
    utf8.size = 5;
    let (sent, events, _) = scripted(
        &settings(),
        &[(big, b"x".to_vec()), (utf8, b"x".to_vec())],
        server,
    );
    assert_eq!(sent, "EHLO filter.example\r\nQUIT\r\n");
    let outcomes: Vec<(Outcome, u16, bool)> = events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Done(r) => Some((
                r.recipients[0].outcome,
                r.recipients[0].reply.code,
                r.recipients[0].remote,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            (Outcome::PermFailed, 552, false),
            (Outcome::PermFailed, 553, false)
        ]
    );
}

#[test]
fn smtputf8_sent_only_when_needed_and_offered() {
    let mut t = tx(&["b\u{f6}b@c"]);
    t.smtputf8 = true;
    let server = [
        POSTFIX_EHLO,
        b"250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n221 bye\r\n",
    ]
    .concat();
    let (sent, _, _) = scripted(&settings(), &[(t, b"x".to_vec())], &server);
    assert!(sent.contains("MAIL FROM:<a@example.org> SIZE=12 SMTPUTF8\r\n"));
}

#[test]
fn starttls_negotiation() {
    let s = ClientSettings {
        tls: TlsMode::Opportunistic,
        ..settings()
    };
    let mut c = Client::new(s.clone());
    let mut out = Vec::new();
    let mut ev = Vec::new();
    c.receive(
        b"220 s\r\n250-s\r\n250-STARTTLS\r\n250 PIPELINING\r\n",
        &mut out,
        &mut ev,
    )
    .unwrap();
    assert_eq!(out, b"EHLO filter.example\r\nSTARTTLS\r\n");
    assert!(ev.is_empty());
    let used = c
        .receive(b"220 2.0.0 go ahead\r\n", &mut out, &mut ev)
        .unwrap();
    assert_eq!(used, 20);
    assert_eq!(ev, [ClientEvent::StartTls]);
    assert!(c.start(tx(&["b@c"]), &mut out, &mut ev).is_err());
    out.clear();
    c.tls_established(&mut out).unwrap();
    assert_eq!(out, b"EHLO filter.example\r\n");
    ev.clear();
    c.receive(b"250-s\r\n250 PIPELINING\r\n", &mut out, &mut ev)
        .unwrap();
    assert_eq!(ev, [ClientEvent::Ready]);
    assert!(c.tls_active());
    assert!(c.capabilities().pipelining);

    // Plaintext injected after the 220 is refused.
    let mut c = Client::new(s.clone());
    c.receive(b"220 s\r\n250-s\r\n250 STARTTLS\r\n", &mut out, &mut ev)
        .unwrap();
    assert_eq!(
        c.receive(b"220 go\r\n250 injected\r\n", &mut out, &mut ev),
        Err(ClientError::StartTlsInjection)
    );
    assert!(c.is_closed());

    // Required but not offered, or refused.
    let required = ClientSettings {
        tls: TlsMode::Required,
        ..settings()
    };
    let (_, events, _) = scripted(&required, &[], b"220 s\r\n250-s\r\n250 PIPELINING\r\n");
    assert!(
        matches!(&events[0], ClientEvent::SessionFailed(r) if r.status == Some(Status::new(4, 7, 4)))
    );
    let (_, events, _) = scripted(
        &required,
        &[],
        b"220 s\r\n250-s\r\n250 STARTTLS\r\n454 4.7.0 TLS not available\r\n",
    );
    assert!(matches!(&events[0], ClientEvent::SessionFailed(r) if r.code == 454));
    // Opportunistic carries on in plaintext when STARTTLS is refused.
    let (_, events, _) = scripted(
        &s,
        &[],
        b"220 s\r\n250-s\r\n250 STARTTLS\r\n454 4.7.0 TLS not available\r\n",
    );
    assert_eq!(events[0], ClientEvent::Ready);
}

#[test]
fn malformed_and_unexpected_replies_are_errors() {
    for bad in [
        &b"220 s\r\nhello\r\n"[..],
        b"220 s\r\n250-s\r\n550 x\r\n",
        b"220 s\r\n250 s\r\n250 unasked\r\n",
    ] {
        let mut c = Client::new(settings());
        let (mut out, mut ev) = (Vec::new(), Vec::new());
        let mut rest = bad;
        let r = loop {
            match c.receive(rest, &mut out, &mut ev) {
                Ok(0) => break Ok(0),
                Ok(used) => rest = &rest[used..],
                Err(e) => break Err(e),
            }
        };
        assert!(r.is_err(), "{bad:?}");
        assert!(c.is_closed());
    }
    // 2xx to DATA makes no sense.
    let mut c = Client::new(settings());
    let (mut out, mut ev) = (Vec::new(), Vec::new());
    c.receive(POSTFIX_EHLO, &mut out, &mut ev).unwrap();
    c.start(tx(&["b@c"]), &mut out, &mut ev).unwrap();
    let r = c.receive(b"250 ok\r\n250 ok\r\n250 ok\r\n", &mut out, &mut ev);
    assert_eq!(
        r,
        Err(ClientError::UnexpectedReply {
            code: 250,
            state: "data"
        })
    );
    let lost = c.connection_lost().unwrap();
    assert_eq!(lost.recipients[0].outcome, Outcome::TempFailed);
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    let mut c = Client::new(settings());
    let mut out = Vec::new();
    let mut ev = Vec::new();
    assert!(c.start(tx(&["b@c"]), &mut out, &mut ev).is_err());
    assert!(c.body(b"x", &mut out).is_err());
    assert!(c.quit(&mut out).is_err());
    assert!(c.tls_established(&mut out).is_err());
    c.receive(POSTFIX_EHLO, &mut out, &mut ev).unwrap();
    assert_eq!(
        c.start(tx(&[]), &mut out, &mut ev),
        Err(ClientError::NoRecipients)
    );
    out.clear();
    c.reset(&mut out).unwrap();
    assert_eq!(out, b"RSET\r\n");
    ev.clear();
    c.receive(b"250 2.0.0 Ok\r\n", &mut out, &mut ev).unwrap();
    assert_eq!(ev, [ClientEvent::Ready]);
}

/// Connects a client to our own server session in memory, both reading
/// `pipe` bytes at a time; returns the client's events and the server's
/// events and messages.
fn loopback(
    queue: Vec<(Transaction, Vec<u8>)>,
    server_settings: server::Settings,
    pipe: usize,
) -> (Vec<ClientEvent>, Vec<Event>, Vec<Vec<u8>>) {
    let now = Duration::from_secs(1);
    let mut sout = Output::default();
    let mut session = Session::new(server_settings, now, &mut sout);
    let mut sbuf = Vec::new();
    let mut d = Driver::new(settings(), queue);
    let mut server_events = Vec::new();
    let mut messages = Vec::new();
    for _ in 0..100_000 {
        let to_client = std::mem::take(&mut sout.reply);
        for piece in to_client.chunks(pipe) {
            d.feed(piece);
        }
        let to_server = std::mem::take(&mut d.sent);
        if to_client.is_empty() && to_server.is_empty() {
            break;
        }
        for piece in to_server.chunks(pipe) {
            sbuf.extend_from_slice(piece);
            loop {
                let p = session.receive(&sbuf, now, &mut sout);
                sbuf.drain(..p.consumed);
                if !p.awaiting_finish {
                    break;
                }
                messages.push(std::mem::take(&mut sout.data));
                session.finish_message(&Reply::queued("L1"), &mut sout);
            }
        }
        server_events.append(&mut sout.events);
    }
    assert_eq!(d.error, None);
    (d.events, server_events, messages)
}

#[test]
fn client_and_server_agree() {
    let mut t = tx(&["b@example.com", "c@example.com"]);
    t.xforward
        .apply("NAME=[UNAVAILABLE] ADDR=IPv6:2001:db8::7 PORT=4711 HELO=x")
        .unwrap();
    t.body = BodyType::EightBitMime;
    let body = b".leading\nbare lf\r\n\r\n.\r\nend".to_vec();
    let queue = vec![
        (t, body.clone()),
        (tx(&["d@example.com"]), b"2\r\n".to_vec()),
    ];
    for pipe in [1, 3, 7, 64, 4096] {
        let (client_events, server_events, messages) =
            loopback(queue.clone(), server::Settings::new("filter.example"), pipe);
        assert_eq!(messages.len(), 2, "pipe {pipe}");
        let mut expected = normalize_line_ends(&body);
        expected.extend_from_slice(b"\r\n");
        assert_eq!(messages[0], expected);
        let Event::Envelope(env) = &server_events[0] else {
            panic!("{server_events:?}")
        };
        assert_eq!(env.body, BodyType::EightBitMime);
        assert_eq!(env.xforward.name, Some(XValue::Unavailable));
        assert_eq!(env.xforward.addr_ip(), Some("2001:db8::7".parse().unwrap()));
        assert_eq!(env.xforward.port_number(), Some(4711));
        let done: Vec<&TransactionResult> = client_events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Done(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(done.len(), 2);
        assert!(done
            .iter()
            .all(|r| r.recipients.iter().all(|s| s.outcome == Outcome::Delivered)));
        assert_eq!(client_events.last(), Some(&ClientEvent::Closed));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any content reaches our server as the normalised content.
    #[test]
    fn any_content_survives_the_loopback(
        content in proptest::collection::vec(
            prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), any::<u8>()], 0..300),
        pipe in 1usize..50,
    ) {
        let queue = vec![(tx(&["b@example.com"]), content.clone())];
        let (events, _, messages) = loopback(queue, server::Settings::new("s"), pipe);
        let mut expected = normalize_line_ends(&content);
        if !expected.is_empty() && !expected.ends_with(b"\r\n") {
            expected.extend_from_slice(b"\r\n");
        }
        prop_assert_eq!(messages, vec![expected]);
        prop_assert_eq!(events.last(), Some(&ClientEvent::Closed));
    }
}

#[test]
fn results_survive_the_spool_facts() {
    let mut env_tx = Transaction::default();
    let facts = [
        ("helo", "mx"),
        ("body", "8BITMIME"),
        ("smtputf8", "1"),
        ("xforward.addr", "192.0.2.1"),
    ];
    env_tx.apply_facts(facts);
    assert_eq!(env_tx.body, BodyType::EightBitMime);
    assert!(env_tx.smtputf8);
    assert_eq!(
        env_tx.xforward.addr_ip(),
        Some("192.0.2.1".parse().unwrap())
    );
}
