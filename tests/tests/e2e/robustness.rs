//! Hostile or broken peers on mbd's milter socket (raw unix streams, no
//! Postfix): each bad connection must be closed, and mbd must keep serving
//! well-formed conversations. Plus many idle connections and SIGTERM.

use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mb_tests::harness::{raise_limits, wait_for, Mbd, MbdConfig, TestDir};
use mb_tests::wire::{Frame, MilterConn};

use crate::common::POLICY;

/// How long mbd may take to close a connection after a protocol error.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

struct Setup {
    mbd: Mbd,
    _dir: TestDir,
}

fn setup(name: &str, cfg: &MbdConfig) -> Setup {
    let dir = TestDir::new(name).unwrap();
    let mbd = Mbd::start(&dir.join("mbd"), cfg).unwrap();
    Setup { mbd, _dir: dir }
}

fn default_setup(name: &str) -> Setup {
    setup(name, &MbdConfig::with_policy(POLICY))
}

/// After a bad connection: mbd is alive and a normal conversation works.
fn assert_still_serving(s: &mut Setup) {
    assert!(s.mbd.alive(), "mbd died:\n{}", s.mbd.stderr());
    let mut c = MilterConn::connect(&s.mbd.socket).unwrap();
    let conv = c
        .accepted_message()
        .unwrap_or_else(|e| panic!("normal conversation failed: {e:#}"));
    assert!(
        conv.modifications
            .iter()
            .any(|f| matches!(f.code, b'h' | b'i') && f.payload.starts_with(b"X-Mailborder\0")),
        "accepted message without X-Mailborder header: {conv:?}"
    );
    c.quit();
}

/// The connection was refused as broken: closed, and whatever came before the
/// close is not a go-ahead.
fn assert_closed_without_go_ahead(c: &mut MilterConn, what: &str) {
    let frames = c
        .expect_closed(CLOSE_WITHIN)
        .unwrap_or_else(|e| panic!("{what}: {e:#}"));
    assert!(
        !frames
            .iter()
            .any(|f: &Frame| matches!(f.code, b'c' | b'a' | b'O')),
        "{what}: mbd answered as if the input were valid: {frames:?}"
    );
}

fn protocol_errors(mbd: &Mbd) -> u64 {
    mbd.shard_sum("protocol_errors").unwrap()
}

fn assert_protocol_errors_counted(mbd: &Mbd, at_least: u64) {
    let n = wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        let n = protocol_errors(mbd);
        (n >= at_least).then_some(n)
    });
    assert!(
        n.is_some(),
        "protocol_errors = {} < {at_least}",
        protocol_errors(mbd)
    );
}

#[test]
fn oversized_frame_length_closes_the_connection() {
    let mut s = default_setup("rb-bigframe");
    // declared length far above frame_bytes_max (default 256 KiB), after OPTNEG
    let mut c = MilterConn::connect(&s.mbd.socket).unwrap();
    c.negotiate().unwrap();
    let mut bytes = 0x7FFF_FFF0u32.to_be_bytes().to_vec();
    bytes.push(b'B');
    bytes.extend_from_slice(&[b'x'; 1024]);
    c.send_raw(&bytes).unwrap();
    assert_closed_without_go_ahead(&mut c, "2 GiB frame after OPTNEG");
    // and as the very first bytes
    let mut c = MilterConn::connect(&s.mbd.socket).unwrap();
    c.send_raw(&[0xFF, 0xFF, 0xFF, 0xFF, b'O']).unwrap();
    assert_closed_without_go_ahead(&mut c, "4 GiB frame before OPTNEG");
    // just above the default limit (256 KiB + 1)
    let mut c = MilterConn::connect(&s.mbd.socket).unwrap();
    c.negotiate().unwrap();
    c.send_raw(&(256u32 * 1024 + 1).to_be_bytes()).unwrap();
    assert_closed_without_go_ahead(&mut c, "frame of limit + 1 bytes");
    assert_still_serving(&mut s);
    assert_protocol_errors_counted(&s.mbd, 3);
}

#[test]
fn zero_length_frame_closes_the_connection() {
    let mut s = default_setup("rb-zeroframe");
    let mut c = MilterConn::connect(&s.mbd.socket).unwrap();
    c.negotiate().unwrap();
    c.send_raw(&[0, 0, 0, 0]).unwrap();
    assert_closed_without_go_ahead(&mut c, "zero-length frame");
    assert_still_serving(&mut s);
}

#[test]
fn unknown_command_byte_closes_cleanly() {
    let mut s = default_setup("rb-unknowncmd");
    let mut c = MilterConn::connect(&s.mbd.socket).unwrap();
    c.negotiate().unwrap();
    c.send(b'Z', b"what is this\0").unwrap();
    assert_closed_without_go_ahead(&mut c, "unknown command 'Z'");
    let mut c = MilterConn::connect(&s.mbd.socket).unwrap();
    c.negotiate().unwrap();
    c.send(0x00, &[]).unwrap();
    assert_closed_without_go_ahead(&mut c, "command byte 0x00");
    assert_still_serving(&mut s);
    assert_protocol_errors_counted(&s.mbd, 2);
}

#[test]
fn commands_out_of_order_close_the_connection() {
    let mut s = default_setup("rb-outoforder");
    // BODY before OPTNEG
    let mut c = MilterConn::connect(&s.mbd.socket).unwrap();
    c.send(b'B', b"body before negotiation\r\n").unwrap();
    assert_closed_without_go_ahead(&mut c, "BODY before OPTNEG");
    // MAIL before OPTNEG
    let mut c = MilterConn::connect(&s.mbd.socket).unwrap();
    c.send(b'M', b"<a@b.example>\0").unwrap();
    assert_closed_without_go_ahead(&mut c, "MAIL before OPTNEG");
    // a second OPTNEG in the middle of a conversation
    let mut c = MilterConn::connect(&s.mbd.socket).unwrap();
    c.negotiate().unwrap();
    let mut p = Vec::new();
    for v in [6u32, 0x1FF, 0x1F_FFFF] {
        p.extend_from_slice(&v.to_be_bytes());
    }
    c.send(b'O', &p).unwrap();
    let frames = c
        .expect_closed(CLOSE_WITHIN)
        .unwrap_or_else(|e| panic!("second OPTNEG: {e:#}"));
    assert!(
        !frames.iter().any(|f| f.code == b'O'),
        "second OPTNEG answered: {frames:?}"
    );
    assert_still_serving(&mut s);
    assert_protocol_errors_counted(&s.mbd, 2);
}

#[test]
fn truncated_packet_then_eof_is_cleaned_up() {
    let mut s = default_setup("rb-truncated");
    let before = s.mbd.shard_sum("connections").unwrap();
    let mut c = MilterConn::connect(&s.mbd.socket).unwrap();
    c.negotiate().unwrap();
    // announces 100 bytes, sends 10, then half-closes
    let mut bytes = 100u32.to_be_bytes().to_vec();
    bytes.push(b'M');
    bytes.extend_from_slice(b"<a@b.exa");
    c.send_raw(&bytes).unwrap();
    c.stream.shutdown(Shutdown::Write).unwrap();
    let frames = c
        .expect_closed(CLOSE_WITHIN)
        .unwrap_or_else(|e| panic!("truncated packet: {e:#}"));
    assert!(frames.is_empty(), "reply to a truncated packet: {frames:?}");
    drop(c);
    // the connection is gone from mbd's books
    let n = wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        let n = s.mbd.shard_sum("connections").ok()?;
        (n <= before).then_some(n)
    });
    assert!(
        n.is_some(),
        "connection still counted: {:?}",
        s.mbd.shard_status()
    );
    // truncated inside the length prefix
    let mut c = MilterConn::connect(&s.mbd.socket).unwrap();
    c.send_raw(&[0, 0]).unwrap();
    c.stream.shutdown(Shutdown::Write).unwrap();
    c.expect_closed(CLOSE_WITHIN).unwrap();
    assert_still_serving(&mut s);
}

#[test]
fn garbage_bytes_close_the_connection() {
    let mut s = default_setup("rb-garbage");
    // deterministic pseudo-random bytes (xorshift), several seeds
    for seed in [0x9E37_79B9_7F4A_7C15u64, 1, 0xDEAD_BEEF] {
        let mut x = seed;
        let garbage: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let mut c = MilterConn::connect(&s.mbd.socket).unwrap();
        // the peer may close while we still write: ignore EPIPE
        c.stream.write_all(&garbage).ok();
        c.expect_closed(CLOSE_WITHIN)
            .unwrap_or_else(|e| panic!("garbage seed {seed:#x}: {e:#}"));
    }
    // an HTTP request on the milter socket
    let mut c = MilterConn::connect(&s.mbd.socket).unwrap();
    c.stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok();
    assert_closed_without_go_ahead(&mut c, "HTTP request");
    assert_still_serving(&mut s);
}

/// Opens `n` connections in a helper thread (a blocked connect on a full
/// backlog must not hang the test): returns them, or panics after `within`.
fn open_idle(path: &std::path::Path, n: usize, within: Duration) -> Vec<UnixStream> {
    let (tx, rx) = mpsc::channel();
    let p = path.to_path_buf();
    thread::spawn(move || {
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            match UnixStream::connect(&p) {
                Ok(sck) => v.push(sck),
                Err(e) => {
                    tx.send(Err(format!("connect #{i}: {e}"))).ok();
                    return;
                }
            }
        }
        tx.send(Ok(v)).ok();
    });
    match rx.recv_timeout(within) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("opening {n} idle connections: {e}"),
        Err(_) => panic!("opening {n} idle connections took longer than {within:?}"),
    }
}

/// `n` idle connections held open; then a normal conversation must work,
/// shard status must count them, and RSS must stay under `rss_max_mib`.
fn idle_connections(name: &str, n: usize, rss_max_mib: u64) {
    let need = u64::try_from(n).unwrap() + 1_000;
    let have = raise_limits(need);
    assert!(
        have >= need,
        "RLIMIT_NOFILE soft limit {have} < {need} needed for {n} connections \
         (raise the hard limit: `ulimit -Hn`; .ci/run raises the soft one)"
    );
    let cfg = MbdConfig {
        milter_extra: "connections_max_per_shard = 20000\n".into(),
        ..MbdConfig::with_policy(POLICY)
    };
    let mut s = setup(name, &cfg);
    let rss0 = s.mbd.rss_kib().unwrap();
    let t0 = Instant::now();
    let conns = open_idle(&s.mbd.socket, n, Duration::from_secs(60));
    let opened = t0.elapsed();
    let counted = wait_for(Duration::from_secs(20), Duration::from_millis(200), || {
        let c = s.mbd.shard_sum("connections").ok()?;
        (c >= n as u64).then_some(c)
    });
    let shards = s.mbd.shard_status().unwrap();
    assert!(
        counted.is_some(),
        "shard status does not count {n} connections: {shards:?}"
    );
    let status = s.mbd.status().unwrap();
    assert!(
        status["connections"].as_u64().unwrap_or(0) >= n as u64,
        "status: {status}"
    );
    // a real conversation still gets through
    let t1 = Instant::now();
    assert_still_serving(&mut s);
    let conv_time = t1.elapsed();
    let rss = s.mbd.rss_kib().unwrap();
    eprintln!(
        "{n} idle connections: opened in {opened:?}; conversation {conv_time:?}; \
         RSS {} KiB -> {} KiB ({:.2} KiB/connection); per shard {:?}",
        rss0,
        rss,
        (rss.saturating_sub(rss0)) as f64 / n as f64,
        shards
            .iter()
            .map(|x| x["connections"].as_u64())
            .collect::<Vec<_>>()
    );
    assert!(
        rss < rss_max_mib * 1024,
        "mbd RSS {rss} KiB with {n} idle connections exceeds {rss_max_mib} MiB"
    );
    assert!(
        conv_time < Duration::from_secs(5),
        "conversation took {conv_time:?} under load"
    );
    // closing them all: mbd notices
    drop(conns);
    let gone = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        let c = s.mbd.shard_sum("connections").ok()?;
        (c == 0).then_some(())
    });
    assert!(
        gone.is_some(),
        "connections not released: {:?}",
        s.mbd.shard_status()
    );
    assert!(s.mbd.alive());
}

// RSS bounds: mbd's baseline is ~30 MiB (2 shards, glommio rings and I/O
// memory). An idle milter connection needs its socket, a small read buffer
// (1 KiB initially) and conversation state, well under 8 KiB. 2,000 × 8 KiB =
// 16 MiB and 10,000 × 8 KiB = 80 MiB; with the baseline and allocator slack,
// 96 MiB and 192 MiB leave room while still catching a per-connection buffer
// of 64 KiB (which would cost 125 MiB / 625 MiB).
#[test]
fn two_thousand_idle_connections() {
    idle_connections("rb-idle-2k", 2_000, 96);
}

#[test]
fn ten_thousand_idle_connections() {
    let t0 = Instant::now();
    idle_connections("rb-idle-10k", 10_000, 192);
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "10k idle test took {:?}",
        t0.elapsed()
    );
}

/// SIGTERM while a message transaction is in progress (MAIL and RCPT
/// accepted): that transaction still completes, then mbd exits 0 and stops
/// accepting connections. (Connections with no transaction open may be
/// closed at once; Postfix then answers 451 at that session's next MAIL.)
#[test]
fn sigterm_lets_the_open_transaction_finish_and_exits_zero() {
    let mut s = default_setup("rb-sigterm");
    let mut c = MilterConn::connect(&s.mbd.socket).unwrap();
    c.negotiate().unwrap();
    let mut conv = c
        .envelope("alice@source.example", &["bob@dest.example"])
        .unwrap();
    assert!(conv.last.is_none(), "envelope refused: {conv:?}");
    assert!(mb_tests::harness::signal(s.mbd.pid, libc::SIGTERM));
    std::thread::sleep(Duration::from_millis(300));
    c.content(&mut conv, &[("Subject", "during drain")], b"drain\r\n")
        .unwrap_or_else(|e| panic!("transaction cut by SIGTERM: {e:#}\n{}", s.mbd.stderr()));
    assert!(
        matches!(conv.last.as_ref().map(|f| f.code), Some(b'a' | b'c')),
        "transaction during drain not accepted: {conv:?}"
    );
    c.quit();
    let exited = s.mbd.wait_exit(Duration::from_secs(15)).unwrap();
    let Some(status) = exited else {
        panic!(
            "mbd did not exit within 15 s of SIGTERM:\n{}",
            s.mbd.stderr()
        );
    };
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    assert!(
        UnixStream::connect(&s.mbd.socket).is_err(),
        "milter socket still accepting after exit"
    );
}
