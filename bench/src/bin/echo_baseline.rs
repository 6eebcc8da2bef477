//! `echo_baseline`: the tokio-per-core baseline mbd's CPU cost is compared with.
//!
//! A tokio current-thread runtime (optionally pinned to one CPU) that speaks
//! just enough milter to be driven by `loadgen` and does no work at all:
//!
//! ```text
//! ← O OPTNEG   → O version 6, actions 0, protocol (--protocol & what the MTA offered)
//! ← C H M R T L N B U   → 'c' unless the matching NR_* flag was negotiated
//! ← E EOM               → 'a'
//! ← D MACRO, A ABORT, K QUIT_NC   → nothing
//! ← Q QUIT              → close
//! ```
//!
//! Frames are decoded with the engine's `FrameDecoder` (limit 256 KiB); all
//! replies for one read are written with one write. Run until killed, or
//! until `--sessions N` connections have been served (then linger 1 s so
//! `loadgen --server-pid` can read the final CPU time).
//!
//! ```text
//! echo_baseline --socket /tmp/echo.sock --cpu 1
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mb_engine::limits::MILTER_FRAME_BYTES_DEFAULT;
use mb_engine::milter::frame::FrameDecoder;
use mb_engine::milter::{cmd, protocol, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;

/// The default step flags: no reply to CONNECT, HELO, headers, EOH, body, DATA
/// and unknown commands; no DATA and no unknown commands at all. Only MAIL,
/// RCPT and EOM are answered, which is what a content filter that decides at
/// MAIL/RCPT and end of message needs.
const DEFAULT_PROTOCOL: u32 = protocol::NR_CONNECT
    | protocol::NR_HELO
    | protocol::NR_HEADER
    | protocol::NR_EOH
    | protocol::NR_BODY
    | protocol::NR_DATA
    | protocol::NR_UNKNOWN
    | protocol::NO_UNKNOWN
    | protocol::NO_DATA;

/// How long to stay after the last of `--sessions` connections ended.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

const CONTINUE: [u8; 5] = [0, 0, 0, 1, b'c'];
const ACCEPT: [u8; 5] = [0, 0, 0, 1, b'a'];

#[derive(Debug, Parser)]
#[command(
    name = "echo_baseline",
    about = "do-nothing milter on a tokio current-thread runtime"
)]
struct Args {
    /// Unix socket to listen on (replaced if it exists).
    #[arg(long)]
    socket: PathBuf,
    /// Pin the runtime thread to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// SMFIP_* flags to ask for, hex (e.g. 0x3f3240) or decimal.
    #[arg(long, value_parser = parse_flags)]
    protocol: Option<u32>,
    /// Exit after serving this many connections.
    #[arg(long)]
    sessions: Option<u64>,
}

fn parse_flags(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("invalid flags {s:?}: {e}"))
}

fn main() -> ExitCode {
    let a = Args::parse();
    if let Some(cpu) = a.cpu {
        if let Err(e) = mb_bench::sys::pin_current_thread(cpu) {
            eprintln!("echo_baseline: cannot pin to CPU {cpu}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("echo_baseline: cannot build the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let proto = a.protocol.unwrap_or(DEFAULT_PROTOCOL);
    match rt.block_on(serve(a.socket, proto, a.sessions)) {
        Ok(()) => {
            // Stay alive briefly so a load generator run with --server-pid can
            // still read our final CPU time from /proc.
            std::thread::sleep(LINGER);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("echo_baseline: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(path: PathBuf, proto: u32, sessions: Option<u64>) -> std::io::Result<()> {
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    println!(
        "echo_baseline listening on unix:{} pid {} protocol 0x{proto:x}",
        path.display(),
        std::process::id()
    );
    let mut tasks = JoinSet::new();
    let mut accepted = 0u64;
    while sessions.is_none_or(|max| accepted < max) {
        let (stream, _) = listener.accept().await?;
        accepted += 1;
        tasks.spawn(async move {
            // A broken connection only ends that connection.
            let _ = conversation(stream, proto).await;
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn conversation(mut s: UnixStream, wanted: u32) -> std::io::Result<()> {
    let decoder = FrameDecoder::new(MILTER_FRAME_BYTES_DEFAULT);
    let mut buf = vec![0u8; 128 * 1024];
    let (mut start, mut end) = (0usize, 0usize);
    let mut out = Vec::with_capacity(4096);
    let mut proto = wanted;
    loop {
        let mut quit = false;
        while let Some((frame, used)) = decoder
            .decode(&buf[start..end])
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
        {
            let nr = |flag: u32| proto & flag != 0;
            match frame.code {
                cmd::OPTNEG => {
                    let offered = frame
                        .payload
                        .get(8..12)
                        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    proto = wanted & offered;
                    Reply::OptNeg {
                        version: 6,
                        actions: 0,
                        protocol: proto,
                        symlists: Vec::new(),
                    }
                    .encode(&mut out);
                }
                cmd::CONNECT if !nr(protocol::NR_CONNECT) => out.extend_from_slice(&CONTINUE),
                cmd::HELO if !nr(protocol::NR_HELO) => out.extend_from_slice(&CONTINUE),
                cmd::MAIL if !nr(protocol::NR_MAIL) => out.extend_from_slice(&CONTINUE),
                cmd::RCPT if !nr(protocol::NR_RCPT) => out.extend_from_slice(&CONTINUE),
                cmd::DATA if !nr(protocol::NR_DATA) => out.extend_from_slice(&CONTINUE),
                cmd::HEADER if !nr(protocol::NR_HEADER) => out.extend_from_slice(&CONTINUE),
                cmd::END_OF_HEADERS if !nr(protocol::NR_EOH) => out.extend_from_slice(&CONTINUE),
                cmd::BODY if !nr(protocol::NR_BODY) => out.extend_from_slice(&CONTINUE),
                cmd::UNKNOWN if !nr(protocol::NR_UNKNOWN) => out.extend_from_slice(&CONTINUE),
                cmd::END_OF_MESSAGE => out.extend_from_slice(&ACCEPT),
                cmd::QUIT => quit = true,
                _ => {}
            }
            start += used;
            if quit {
                break;
            }
        }
        if !out.is_empty() {
            s.write_all(&out).await?;
            out.clear();
        }
        if quit {
            return Ok(());
        }
        if start == end {
            start = 0;
            end = 0;
        }
        let wanted_bytes = decoder.bytes_wanted(&buf[start..end]).max(1);
        if buf.len() - end < wanted_bytes {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
            if buf.len() - end < wanted_bytes {
                buf.resize(end + wanted_bytes, 0);
            }
        }
        let n = s.read(&mut buf[end..]).await?;
        if n == 0 {
            return Ok(());
        }
        end += n;
    }
}
