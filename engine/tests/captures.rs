//! Captured Postfix 3.7.11 conversations through the milter codec.
//!
//! Fixtures (`engine/fixtures/milter/`, made by `extract.py` from the
//! pf-harness logs in `shared/harness/postfix/captures`):
//!
//! ```text
//! <name>.mta.bin            MTA -> filter frames, length prefix included, in wire order
//! <name>.expect.txt         one line per frame: "<command letter> <payload bytes>"
//! <name>.filter.bin         filter -> MTA frames (tap captures only)
//! <name>.filter.expect.txt  same format
//! ```
//!
//! Each file is fed to [`FrameDecoder`] the way a runtime reads a socket: in
//! chunks of 1 to 64 bytes and in one piece, appended to a buffer, with frames
//! decoded as soon as they are complete. Every frame must decode (as a
//! [`Command`] or a [`Response`]) with the same code, and re-encoding it must
//! give back the identical bytes.

use std::fs;
use std::path::{Path, PathBuf};

use mb_engine::limits::MILTER_FRAME_BYTES_DEFAULT;
use mb_engine::milter::command::{self, Command, Family};
use mb_engine::milter::frame::FrameDecoder;
use mb_engine::milter::reply::Response;
use mb_engine::milter::Reply;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/milter")
}

/// `(stem, bin path, expect path)` for every fixture ending in `suffix`.
fn fixture_files(suffix: &str, expect_suffix: &str) -> Vec<(String, PathBuf, PathBuf)> {
    let mut found = Vec::new();
    for entry in fs::read_dir(fixtures()).expect("fixtures/milter exists") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if let Some(stem) = name.strip_suffix(suffix) {
            let expect = path.with_file_name(format!("{stem}{expect_suffix}"));
            assert!(
                expect.exists(),
                "{} has no {}",
                path.display(),
                expect.display()
            );
            found.push((stem.to_owned(), path, expect));
        }
    }
    found.sort();
    found
}

fn read_expect(path: &Path) -> Vec<(char, usize)> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let (code, len) = line.split_once(' ').expect("'<letter> <len>'");
            assert_eq!(code.len(), 1, "{line}");
            (char::from(code.as_bytes()[0]), len.parse().unwrap())
        })
        .collect()
}

/// One decoded frame: its code, payload length and exact wire bytes.
#[derive(Debug, PartialEq)]
struct Seen {
    code: u8,
    len: usize,
    wire: Vec<u8>,
}

/// Feeds `wire` in `chunk`-byte reads and calls `each` for every frame as soon
/// as it is complete.
fn stream(wire: &[u8], chunk: usize, mut each: impl FnMut(&Seen, &[u8])) -> Vec<Seen> {
    let decoder = FrameDecoder::new(MILTER_FRAME_BYTES_DEFAULT);
    let mut buf = Vec::new();
    let mut seen = Vec::new();
    for read in wire.chunks(chunk) {
        buf.extend_from_slice(read);
        while let Some((frame, used)) = decoder.decode(&buf).expect("captured frames are valid") {
            let s = Seen {
                code: frame.code,
                len: frame.payload.len(),
                wire: buf[..used].to_vec(),
            };
            each(&s, frame.payload);
            seen.push(s);
            buf.drain(..used);
        }
        if !buf.is_empty() {
            assert!(
                decoder.bytes_wanted(&buf) > 0,
                "an incomplete frame wants more bytes"
            );
        }
    }
    assert!(
        buf.is_empty(),
        "{} bytes left after the last frame",
        buf.len()
    );
    seen
}

fn chunk_sizes(len: usize) -> impl Iterator<Item = usize> {
    (1..=64).chain([len])
}

#[test]
fn mta_captures_decode_at_every_chunk_size() {
    let files = fixture_files(".mta.bin", ".expect.txt");
    for required in [
        "A-default",
        "B-session",
        "C-symlist",
        "D-noreply",
        "E-sendmail",
    ] {
        assert!(
            files.iter().any(|(stem, ..)| stem == required),
            "missing fixture {required}"
        );
    }
    for (stem, bin, expect) in files {
        let wire = fs::read(&bin).unwrap();
        let expect = read_expect(&expect);
        for chunk in chunk_sizes(wire.len()) {
            let seen = stream(&wire, chunk, |s, payload| {
                let frame = mb_engine::milter::RawFrame {
                    code: s.code,
                    payload,
                };
                let command = Command::decode(frame)
                    .unwrap_or_else(|e| panic!("{stem} chunk {chunk}: {e} in {s:?}"));
                assert_eq!(command.code(), s.code, "{stem}");
                let mut again = Vec::new();
                command.encode(&mut again);
                assert_eq!(
                    again,
                    s.wire,
                    "{stem} chunk {chunk}: {} re-encodes differently",
                    command.name()
                );
            });
            let got: Vec<_> = seen.iter().map(|s| (char::from(s.code), s.len)).collect();
            assert_eq!(got, expect, "{stem} at chunk size {chunk}");
        }
    }
}

#[test]
fn filter_captures_decode_at_every_chunk_size() {
    let files = fixture_files(".filter.bin", ".filter.expect.txt");
    assert!(!files.is_empty(), "the tap captures carry filter replies");
    for (stem, bin, expect) in files {
        let wire = fs::read(&bin).unwrap();
        let expect = read_expect(&expect);
        for chunk in chunk_sizes(wire.len()) {
            let seen = stream(&wire, chunk, |s, payload| {
                let frame = mb_engine::milter::RawFrame {
                    code: s.code,
                    payload,
                };
                let response = Response::decode(frame)
                    .unwrap_or_else(|e| panic!("{stem} chunk {chunk}: {e} in {s:?}"));
                assert_eq!(response.code(), s.code, "{stem}");
                let mut again = Vec::new();
                response.encode(&mut again);
                assert_eq!(again, s.wire, "{stem} chunk {chunk}: {response:?}");
            });
            let got: Vec<_> = seen.iter().map(|s| (char::from(s.code), s.len)).collect();
            assert_eq!(got, expect, "{stem} at chunk size {chunk}");
        }
    }
}

fn commands(wire: &[u8]) -> Vec<Command<'_>> {
    let decoder = FrameDecoder::new(MILTER_FRAME_BYTES_DEFAULT);
    let mut rest = wire;
    let mut out = Vec::new();
    while let Some((frame, used)) = decoder.decode(rest).unwrap() {
        out.push(Command::decode(frame).unwrap());
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
    out
}

/// What Postfix actually sent, field by field, in the fully hex-logged capture.
#[test]
fn a_default_fields() {
    let wire = fs::read(fixtures().join("A-default.mta.bin")).unwrap();
    let cmds = commands(&wire);
    assert_eq!(
        cmds[0],
        Command::OptNeg {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1f_ffff
        }
    );
    let Command::Macro { stage: b'C', pairs } = cmds[1] else {
        panic!("{:?}", cmds[1])
    };
    let pairs: Vec<_> = command::macro_pairs(pairs).collect();
    assert_eq!(
        pairs,
        vec![
            (&b"j"[..], &b"mx.pfh.example"[..]),
            (b"{daemon_name}", b"mx.pfh.example"),
            (b"{daemon_addr}", b"127.0.0.1"),
            (b"v", b"Postfix 3.7.11"),
            (b"_", b"localhost [127.0.0.1]"),
        ]
    );
    assert_eq!(
        cmds[2],
        Command::Connect {
            hostname: b"localhost",
            family: Family::Inet,
            port: 53344,
            address: b"127.0.0.1"
        }
    );
    assert_eq!(
        cmds[3],
        Command::Macro {
            stage: b'H',
            pairs: b""
        }
    );
    assert_eq!(
        cmds[4],
        Command::Helo {
            name: b"probe.pfh.example"
        }
    );
    let Command::Mail { args } = cmds[6] else {
        panic!("{:?}", cmds[6])
    };
    assert_eq!(
        command::args(args).collect::<Vec<_>>(),
        vec![&b"<probe@source.example>"[..]]
    );
    // The message ends with EOM, then ABORT twice (end of message, end of
    // session) and QUIT.
    let tail: Vec<_> = cmds[cmds.len() - 4..].iter().map(Command::name).collect();
    assert_eq!(tail, ["EOM", "ABORT", "ABORT", "QUIT"]);
}

/// Postfix splits a 150 KB body into 65535-byte chunks, each preceded by its
/// own MACRO packet; EOM carries no data.
#[test]
fn b_session_body_chunks() {
    let wire = fs::read(fixtures().join("B-session.mta.bin")).unwrap();
    let cmds = commands(&wire);
    let bodies: Vec<usize> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Body(chunk) => Some(chunk.len()),
            _ => None,
        })
        .collect();
    assert_eq!(bodies, [65_535, 65_535, 18_926, 65_535, 65_535, 18_926]);
    assert!(bodies
        .iter()
        .all(|&n| n <= mb_engine::limits::MILTER_BODY_CHUNK_BYTES_MAX));
    assert!(cmds
        .iter()
        .all(|c| !matches!(c, Command::EndOfMessage(d) if !d.is_empty())));
    // --unknown: one UNKNOWN with the verb only.
    assert!(cmds.contains(&Command::Unknown(b"XYZZY")));
}

/// Every MACRO packet in every capture is immediately followed by the command
/// of its stage: the state machine may attach macros to "the next command".
#[test]
fn macros_precede_their_command() {
    for (stem, bin, _) in fixture_files(".mta.bin", ".expect.txt") {
        let wire = fs::read(&bin).unwrap();
        let cmds = commands(&wire);
        for (i, pair) in cmds.windows(2).enumerate() {
            if let Command::Macro { stage, .. } = pair[0] {
                assert_eq!(
                    pair[1].code(),
                    stage,
                    "{stem} frame {i}: MACRO for {}",
                    stage as char
                );
            }
        }
    }
}

/// The filter side of the tap captures: pymilter replies to every step, rspamd
/// negotiates NR_* for everything and only answers OPTNEG and EOM.
#[test]
fn tap_replies() {
    let decode_all = |name: &str| {
        let wire = fs::read(fixtures().join(name)).unwrap();
        let decoder = FrameDecoder::new(MILTER_FRAME_BYTES_DEFAULT);
        let mut rest = &wire[..];
        let mut out = Vec::new();
        while let Some((frame, used)) = decoder.decode(rest).unwrap() {
            out.push(Response::decode(frame).unwrap());
            rest = &rest[used..];
        }
        out
    };
    let rspamd = decode_all("tap-rspamd.filter.bin");
    assert_eq!(
        rspamd,
        vec![
            Response::Reply(Reply::OptNeg {
                version: 6,
                actions: 0x1ff,
                protocol: 0xf_f080,
                symlists: vec![]
            }),
            Response::Reply(Reply::Accept),
        ]
    );
    let pymilter = decode_all("tap-pymilter.filter.bin");
    assert_eq!(pymilter.last(), Some(&Response::Reply(Reply::Accept)));
    assert_eq!(
        pymilter
            .iter()
            .filter(|r| **r == Response::Reply(Reply::Continue))
            .count(),
        12
    );
}
