//! Milter codec benchmarks: the per-frame cost a shard pays on every packet.
//!
//! - `decode/*`: a captured Postfix conversation (engine fixtures) through
//!   `FrameDecoder` + `Command::decode`, the way a shard drains its read
//!   buffer. `A-default` is a typical small message (32 frames, 1.2 KB);
//!   `B-session` is two 150 KB messages (76 frames, mostly body chunks).
//! - `encode/*`: what a shard writes: the replies of a whole conversation, the
//!   modifications at end of message, one 64 KiB REPLBODY chunk.
//! - `decode/responses`: the MTA side (load generator) reading those replies.
//!
//! Every iteration checks its result (frame count, byte count), so a fast wrong
//! answer fails instead of producing a number. Throughput is in input bytes
//! for decoders and output bytes for encoders.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mb_engine::limits::{MILTER_BODY_CHUNK_BYTES_MAX, MILTER_FRAME_BYTES_DEFAULT};
use mb_engine::milter::command::{self, Command};
use mb_engine::milter::reply::{stage, Modification, Reply, Response};
use mb_engine::milter::{actions, FrameDecoder};

const A_DEFAULT: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../engine/fixtures/milter/A-default.mta.bin"
));
const B_SESSION: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../engine/fixtures/milter/B-session.mta.bin"
));

/// Frames, macro pairs and body bytes seen while decoding a conversation.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Tally {
    frames: usize,
    macro_pairs: usize,
    body_bytes: usize,
}

/// Decodes a whole conversation the way a shard drains its buffer. Touches
/// the macro pairs and MAIL/RCPT arguments, as the conversation would.
fn decode_conversation(decoder: &FrameDecoder, wire: &[u8]) -> Tally {
    let mut tally = Tally {
        frames: 0,
        macro_pairs: 0,
        body_bytes: 0,
    };
    let mut rest = wire;
    while let Some((frame, used)) = decoder.decode(rest).expect("fixture frames are valid") {
        match Command::decode(frame).expect("fixture commands are valid") {
            Command::Macro { pairs, .. } => {
                tally.macro_pairs += command::macro_pairs(pairs).count()
            }
            Command::Mail { args } | Command::Rcpt { args } => {
                black_box(command::args(args).next());
            }
            Command::Body(chunk) => tally.body_bytes += chunk.len(),
            other => {
                black_box(other);
            }
        }
        tally.frames += 1;
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
    tally
}

fn bench_decode(c: &mut Criterion) {
    let decoder = FrameDecoder::new(MILTER_FRAME_BYTES_DEFAULT);
    let mut group = c.benchmark_group("decode");
    for (name, wire, expected) in [
        (
            "postfix_A_default",
            A_DEFAULT,
            Tally {
                frames: 32,
                macro_pairs: 24,
                body_bytes: 236,
            },
        ),
        (
            "postfix_B_session",
            B_SESSION,
            Tally {
                frames: 76,
                macro_pairs: 61,
                body_bytes: 2 * 149_996,
            },
        ),
    ] {
        assert_eq!(decode_conversation(&decoder, wire), expected, "{name}");
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let tally = decode_conversation(&decoder, black_box(wire));
                assert_eq!(tally.frames, expected.frames);
                tally
            });
        });
    }
    group.finish();
}

/// The replies of one typical conversation (A-default without NR_* flags).
fn conversation_replies() -> Vec<Reply> {
    let mut replies = vec![Reply::OptNeg {
        version: 6,
        actions: actions::ADD_HEADERS | actions::CHANGE_HEADERS | actions::QUARANTINE,
        protocol: 0,
        symlists: vec![
            (stage::MAIL, "i {mail_addr} {auth_authen}".to_owned()),
            (stage::END_OF_MESSAGE, "i {client_addr}".to_owned()),
        ],
    }];
    // CONNECT, HELO, MAIL, 2 x RCPT, DATA, 5 x HEADER, EOH, BODY
    replies.extend(std::iter::repeat_n(Reply::Continue, 13));
    replies.push(Reply::ReplyCode {
        code: 550,
        text: "5.7.1 Message refused by policy".to_owned(),
    });
    replies
}

fn eom_modifications() -> Vec<Modification> {
    vec![
        Modification::AddHeader {
            name: "X-Mailborder".to_owned(),
            value: "score=3.20 shard=1 rules=spf_fail,dkim_none".to_owned(),
        },
        Modification::InsertHeader {
            index: 0,
            name: "X-Mailborder-Id".to_owned(),
            value: "99FF199E089".to_owned(),
        },
        Modification::ChangeHeader {
            index: 1,
            name: "Subject".to_owned(),
            value: "[SUSPECT] pf-harness probe".to_owned(),
        },
        Modification::Quarantine("mailborder policy.suspect[2]".to_owned()),
    ]
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    let mut out = Vec::with_capacity(128 * 1024);

    let replies = conversation_replies();
    let replies_len = {
        out.clear();
        replies.iter().for_each(|r| r.encode(&mut out));
        out.len()
    };
    assert_eq!(
        replies_len,
        4 + 1 + 12 + 2 * 4 + 28 + 16 + 13 * 5 + 4 + 1 + 36
    );
    group.throughput(Throughput::Bytes(replies_len as u64));
    group.bench_function("conversation_replies", |b| {
        b.iter(|| {
            out.clear();
            for reply in black_box(&replies) {
                reply.encode(&mut out);
            }
            assert_eq!(out.len(), replies_len);
        });
    });

    let mods = eom_modifications();
    let mods_len = {
        out.clear();
        mods.iter().for_each(|m| m.encode(&mut out));
        out.len()
    };
    group.throughput(Throughput::Bytes(mods_len as u64));
    group.bench_function("eom_modifications", |b| {
        b.iter(|| {
            out.clear();
            for modification in black_box(&mods) {
                modification.encode(&mut out);
            }
            assert_eq!(out.len(), mods_len);
        });
    });

    let body = Modification::ReplaceBody(vec![b'x'; MILTER_BODY_CHUNK_BYTES_MAX]);
    let body_len = 4 + 1 + MILTER_BODY_CHUNK_BYTES_MAX;
    group.throughput(Throughput::Bytes(body_len as u64));
    group.bench_function("replace_body_64k", |b| {
        b.iter(|| {
            out.clear();
            black_box(&body).encode(&mut out);
            assert_eq!(out.len(), body_len);
        });
    });
    group.finish();
}

fn bench_decode_responses(c: &mut Criterion) {
    let mut wire = Vec::new();
    conversation_replies()
        .iter()
        .for_each(|r| r.encode(&mut wire));
    eom_modifications().iter().for_each(|m| m.encode(&mut wire));
    let frames = conversation_replies().len() + eom_modifications().len();
    let decoder = FrameDecoder::new(MILTER_FRAME_BYTES_DEFAULT);
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("responses", |b| {
        b.iter(|| {
            let mut rest = black_box(&wire[..]);
            let mut n = 0;
            while let Some((frame, used)) = decoder.decode(rest).unwrap() {
                black_box(Response::decode(frame).unwrap());
                n += 1;
                rest = &rest[used..];
            }
            assert_eq!(n, frames);
        });
    });
    group.finish();
}

criterion_group!(benches, bench_decode, bench_encode, bench_decode_responses);
criterion_main!(benches);
