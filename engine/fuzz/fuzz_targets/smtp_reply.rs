//! The SMTP reply parser and the delivery client on arbitrary server
//! bytes, raw and mapped onto reply words, at chunk sizes seeded by the
//! first byte. Invariants: no panic (a malformed reply is an error); a
//! parsed reply without control bytes or long lines survives encode →
//! parse; the client never consumes more than it was given, and after an
//! error or a dropped connection every recipient has a status.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mb_engine::smtp::client::{Client, ClientEvent, ClientSettings, TlsMode, Transaction};
use mb_engine::smtp::reply::ReplyParser;
use mb_engine::smtp::BodyType;

const WORDS: &[&[u8]] = &[
    b"220 mx\r\n",
    b"250-mx\r\n",
    b"250-PIPELINING\r\n",
    b"250-SIZE 100\r\n",
    b"250-8BITMIME\r\n",
    b"250-SMTPUTF8\r\n",
    b"250-STARTTLS\r\n",
    b"250-XFORWARD NAME ADDR HELO\r\n",
    b"250 ENHANCEDSTATUSCODES\r\n",
    b"250 2.1.0 Ok\r\n",
    b"250 Ok\r\n",
    b"354 go\r\n",
    b"221 bye\r\n",
    b"421 4.4.2 bye\r\n",
    b"450 4.2.0 later\r\n",
    b"550-5.1.1 no\r\n",
    b"550 5.1.1 no\r\n",
    b"554 5.7.1 no\r\n",
    b"502 5.5.1 what\r\n",
    b"\r\n",
    b"2",
    b"5",
    b" ",
    b"-",
];

fn words(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 12);
    for &b in data {
        if b < 0x80 {
            out.extend_from_slice(WORDS[usize::from(b) % WORDS.len()]);
        } else {
            out.push(b);
        }
    }
    out
}

fn parser(input: &[u8]) {
    let mut p = ReplyParser::new();
    let mut at = 0;
    while let Ok(parsed) = p.parse(&input[at..]) {
        assert!(parsed.consumed <= input.len() - at);
        at += parsed.consumed;
        let Some(reply) = parsed.reply else {
            break;
        };
        assert!((200..600).contains(&reply.code));
        let plain = reply
            .lines
            .iter()
            .all(|l| l.len() < 400 && !l.chars().any(char::is_control) && !l.starts_with(' '));
        if plain {
            let wire = reply.to_bytes();
            let again = ReplyParser::new()
                .parse(&wire)
                .expect("own encoding parses");
            assert_eq!(again.consumed, wire.len());
            let again = again.reply.expect("one whole reply");
            assert_eq!(again.code, reply.code);
            assert_eq!(again.lines.len(), reply.lines.len());
        }
    }
}

fn client(seed: u8, input: &[u8]) {
    let settings = ClientSettings {
        tls: if seed & 1 == 0 {
            TlsMode::Off
        } else {
            TlsMode::Opportunistic
        },
        pipelining: seed & 2 == 0,
        ..ClientSettings::new("fuzz.example")
    };
    let mut c = Client::new(settings);
    let mut tx = Transaction {
        sender: "a@b".into(),
        recipients: vec!["c@d".into(), "e@f".into(), "\u{f6}@g".into()],
        size: 50,
        body: BodyType::EightBitMime,
        smtputf8: seed & 4 == 0,
        ..Transaction::default()
    };
    let _ = tx.xforward.apply("NAME=x ADDR=192.0.2.1 HELO=y");
    let mut rng = u32::from(seed) | 0x5EED_0000;
    let (mut buf, mut out, mut at) = (Vec::new(), Vec::new(), 0);
    let mut transactions = 0;
    while at < input.len() && !c.is_closed() {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let n = 1 + (rng % 61) as usize;
        let piece = &input[at..(at + n).min(input.len())];
        at += piece.len();
        buf.extend_from_slice(piece);
        loop {
            let mut events = Vec::new();
            let Ok(used) = c.receive(&buf, &mut out, &mut events) else {
                let lost = c.connection_lost();
                if let Some(r) = lost {
                    assert_eq!(r.recipients.len(), tx.recipients.len());
                }
                return;
            };
            assert!(used <= buf.len());
            buf.drain(..used);
            let acted = !events.is_empty();
            for e in events {
                match e {
                    ClientEvent::Ready if c.is_ready() => {
                        let mut more = Vec::new();
                        if transactions < 3 {
                            transactions += 1;
                            c.start(tx.clone(), &mut out, &mut more).expect("ready");
                        } else {
                            c.quit(&mut out).expect("ready");
                        }
                    }
                    ClientEvent::SendBody => c.body(b".x\n.\r\n", &mut out).expect("body due"),
                    ClientEvent::StartTls => c.tls_established(&mut out).expect("handshake due"),
                    ClientEvent::Done(r) => assert_eq!(r.recipients.len(), tx.recipients.len()),
                    _ => {}
                }
            }
            if buf.is_empty() || (used == 0 && !acted) {
                break;
            }
        }
        out.clear();
    }
    if let Some(r) = c.connection_lost() {
        assert_eq!(r.recipients.len(), tx.recipients.len());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    parser(rest);
    let mapped = words(rest);
    parser(&mapped);
    client(seed, rest);
    client(seed, &mapped);
});
