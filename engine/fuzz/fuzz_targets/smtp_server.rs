//! The SMTP ingress session on arbitrary bytes at arbitrary chunk sizes,
//! raw and mapped onto SMTP words (so pipelined commands, DATA, BDAT and
//! XFORWARD are reached). The first byte seeds the chunk sizes and the
//! runtime's answers. Invariants: no panic; the runtime never keeps more
//! than a command line; the stored content never exceeds the message size
//! limit; replies grow at most linearly with the input.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mb_engine::smtp::server::{Output, Session, Settings};
use mb_engine::smtp::Reply;

const MESSAGE_BYTES_MAX: u64 = 4096;
const LINE_MAX: usize = 128;

/// Pieces of the protocol; a byte below 0x80 picks one, others stay raw.
const WORDS: &[&[u8]] = &[
    b"EHLO x\r\n",
    b"HELO x\r\n",
    b"MAIL FROM:<a@b>",
    b"MAIL FROM:<>",
    b" SIZE=100",
    b" BODY=8BITMIME",
    b" SMTPUTF8",
    b"RCPT TO:<c@d>",
    b"RCPT TO:<postmaster>",
    b"DATA\r\n",
    b"BDAT ",
    b" LAST",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b"VRFY x\r\n",
    b"XFORWARD NAME=a ADDR=IPv6:::1 PORT=25 SOURCE=LOCAL",
    b"XFORWARD HELO=+5B IDENT=[UNAVAILABLE]",
    b"\r\n",
    b".\r\n",
    b"\r\n.\r\n",
    b"..",
    b".",
    b"\r",
    b"\n",
    b"0",
    b"1",
    b"7",
    b"<",
    b">",
    b"@",
    b"\xc3\xb6",
];

fn words(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 8);
    for &b in data {
        if b < 0x80 {
            out.extend_from_slice(WORDS[usize::from(b) % WORDS.len()]);
        } else {
            out.push(b);
        }
    }
    out
}

fn run(seed: u8, input: &[u8]) {
    let mut settings = Settings::new("fuzz.example");
    settings.message_bytes_max = MESSAGE_BYTES_MAX;
    settings.rcpt_count_max = 4;
    settings.errors_max = 64;
    settings.command_line_bytes_max = LINE_MAX;
    settings.text_line_bytes_max = 200;
    settings.session_time_max = Duration::from_secs(1000);
    let mut out = Output::default();
    let mut session = Session::new(settings, Duration::ZERO, &mut out);
    let mut rng = u32::from(seed) | 0x9E37_0000;
    let mut buf = Vec::new();
    let mut at = 0;
    let mut now = Duration::ZERO;
    while at < input.len() {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let n = 1 + (rng % 97) as usize;
        let piece = &input[at..(at + n).min(input.len())];
        at += piece.len();
        buf.extend_from_slice(piece);
        now += Duration::from_secs(u64::from(rng % 8));
        let mut consumed = 0;
        loop {
            let p = session.receive(&buf, now, &mut out);
            assert!(p.consumed <= buf.len());
            consumed += p.consumed;
            buf.drain(..p.consumed);
            assert!(out.data.len() as u64 <= MESSAGE_BYTES_MAX);
            if !p.awaiting_finish {
                break;
            }
            let reply = if rng & 1 == 0 {
                Reply::queued("Q")
            } else {
                Reply::spool_failed()
            };
            session.finish_message(&reply, &mut out);
        }
        assert!(
            buf.len() < LINE_MAX,
            "the runtime keeps at most a partial line"
        );
        assert!(out.reply.len() <= 64 * (consumed + piece.len()) + 1024);
        out.reply.clear();
        out.events.clear();
    }
    session.disconnected(&mut out);
    assert!(session.is_closed());
    assert!(out.data.is_empty());
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    run(seed, rest);
    run(seed, &words(rest));
});
