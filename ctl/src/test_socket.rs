//! `mbctl test-socket SPEC`: talk to a milter the way Postfix 3.7 opens a session.
//!
//! Conversation (MTA side; milter protocol v6, libmilter `mfdef.h`):
//!
//! ```text
//! → O OPTNEG  version 6, actions 0x1FF, protocol 0x1FFFFF   (exactly what Postfix 3.7 offers)
//! ← O OPTNEG  version, actions, protocol [, (u32 stage, "macro names\0")*]
//! → D MACRO   'C' j, {daemon_name}, v, _                     (Postfix sends the macros even
//! → C CONNECT "mbctl-test-socket", '4', port 0, "127.0.0.1"    when NOCONNECT hides the event)
//! ← one reply, unless the filter set NR_CONN                  (progress packets are skipped)
//! → Q QUIT
//! ```
//!
//! Checks that mirror Postfix's (`milter8_connect`): the filter's version must
//! not exceed ours and its actions must be a subset of what we offered;
//! anything else makes Postfix drop the milter, so it is an error here too.
//! Protocol bits outside the offer only produce a warning (Postfix logs them
//! only in verbose mode).
//!
//! Every socket operation is bounded by the `--timeout`.

use std::fmt;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mb_engine::milter::frame::{FrameDecoder, FrameError};
use mb_engine::milter::reply::{stage, Response};
use mb_engine::milter::{self, actions, protocol, Command, Family, Reply};
use serde::Serialize;

use crate::client::{io_text, is_timeout};
use mbctl::endpoint::{Stream, Target};

/// Largest reply frame we accept (OPTNEG with symbol lists is small; this is
/// generous and still bounded).
const REPLY_FRAME_BYTES_MAX: u32 = 64 * 1024;

/// The host name sent in CONNECT, so the filter's logs show who probed it.
pub const PROBE_HOSTNAME: &str = "mbctl-test-socket";

/// Why the probe failed.
#[derive(Debug)]
pub enum ProbeError {
    /// Could not connect.
    Connect {
        /// Target.
        target: String,
        /// Error.
        source: io::Error,
    },
    /// A read or write did not finish in time.
    Timeout {
        /// Target.
        target: String,
        /// What we were doing.
        during: &'static str,
        /// The timeout.
        timeout: Duration,
    },
    /// The filter closed the connection.
    Closed {
        /// Target.
        target: String,
        /// What we were waiting for.
        during: &'static str,
    },
    /// Another I/O error.
    Io {
        /// Target.
        target: String,
        /// What we were doing.
        during: &'static str,
        /// Error.
        source: io::Error,
    },
    /// The filter sent something Postfix would refuse.
    BadReply {
        /// Target.
        target: String,
        /// What was wrong.
        why: String,
    },
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect { target, source } => {
                write!(f, "cannot connect to milter {target}: {}", io_text(source))
            }
            Self::Timeout {
                target,
                during,
                timeout,
            } => write!(
                f,
                "milter {target}: no answer within {} {during} (raise --timeout)",
                crate::table::format_duration(*timeout)
            ),
            Self::Closed { target, during } => {
                write!(
                    f,
                    "milter {target}: connection closed by the filter {during}"
                )
            }
            Self::Io {
                target,
                during,
                source,
            } => {
                write!(f, "milter {target}: {during}: {}", io_text(source))
            }
            Self::BadReply { target, why } => write!(f, "milter {target}: bad reply: {why}"),
        }
    }
}

impl std::error::Error for ProbeError {}

/// What happened to the CONNECT event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum ConnectOutcome {
    /// The filter set NOCONNECT: only the macros were sent.
    NotSent,
    /// The filter set NR_CONN: sent, no reply read.
    NoReply,
    /// The filter answered.
    Replied {
        /// Reply name (`continue`, `accept`, `reject`, `tempfail`, `replycode 550 …`).
        reply: String,
        /// Round trip, µs.
        rtt_us: u64,
    },
}

/// The result of a successful probe.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The target as `unix:/path` or `inet:host:port`.
    pub target: String,
    /// Time to connect, µs.
    pub connect_us: u64,
    /// OPTNEG round trip, µs.
    pub optneg_rtt_us: u64,
    /// Negotiated protocol version.
    pub version: u32,
    /// `SMFIF_*` actions the filter asked for.
    pub actions: u32,
    /// Their names.
    pub action_names: Vec<String>,
    /// `SMFIP_*` protocol flags the filter asked for.
    pub protocol: u32,
    /// Their names.
    pub protocol_names: Vec<String>,
    /// SETSYMLIST entries: (stage name, macro names).
    pub symlists: Vec<(String, String)>,
    /// The CONNECT event.
    pub connect: ConnectOutcome,
    /// Things Postfix tolerates but that look wrong.
    pub warnings: Vec<String>,
}

const ACTION_NAMES: &[(u32, &str)] = &[
    (actions::ADD_HEADERS, "ADDHDRS"),
    (actions::CHANGE_BODY, "CHGBODY"),
    (actions::ADD_RCPT, "ADDRCPT"),
    (actions::DELETE_RCPT, "DELRCPT"),
    (actions::CHANGE_HEADERS, "CHGHDRS"),
    (actions::QUARANTINE, "QUARANTINE"),
    (actions::CHANGE_FROM, "CHGFROM"),
    (actions::ADD_RCPT_PAR, "ADDRCPT_PAR"),
    (actions::SET_SYMLIST, "SETSYMLIST"),
];

const PROTOCOL_NAMES: &[(u32, &str)] = &[
    (protocol::NO_CONNECT, "NOCONNECT"),
    (protocol::NO_HELO, "NOHELO"),
    (protocol::NO_MAIL, "NOMAIL"),
    (protocol::NO_RCPT, "NORCPT"),
    (protocol::NO_BODY, "NOBODY"),
    (protocol::NO_HEADERS, "NOHDRS"),
    (protocol::NO_EOH, "NOEOH"),
    (protocol::NR_HEADER, "NR_HDR"),
    (protocol::NO_UNKNOWN, "NOUNKNOWN"),
    (protocol::NO_DATA, "NODATA"),
    (protocol::SKIP, "SKIP"),
    (protocol::RCPT_REJ, "RCPT_REJ"),
    (protocol::NR_CONNECT, "NR_CONN"),
    (protocol::NR_HELO, "NR_HELO"),
    (protocol::NR_MAIL, "NR_MAIL"),
    (protocol::NR_RCPT, "NR_RCPT"),
    (protocol::NR_DATA, "NR_DATA"),
    (protocol::NR_UNKNOWN, "NR_UNKN"),
    (protocol::NR_EOH, "NR_EOH"),
    (protocol::NR_BODY, "NR_BODY"),
    (protocol::HEADER_LEADING_SPACE, "HDR_LEADSPC"),
];

/// Names the set bits of `mask` (Postfix's spelling, as in its logs); unknown
/// bits print as hex.
#[must_use]
pub fn flag_names(mask: u32, table: &[(u32, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut known = 0;
    for &(bit, name) in table {
        known |= bit;
        if mask & bit != 0 {
            out.push(name.to_string());
        }
    }
    if mask & !known != 0 {
        out.push(format!("0x{:x}", mask & !known));
    }
    out
}

/// Names of the actions in `mask`.
#[must_use]
pub fn action_names(mask: u32) -> Vec<String> {
    flag_names(mask, ACTION_NAMES)
}

/// Names of the protocol flags in `mask`.
#[must_use]
pub fn protocol_names(mask: u32) -> Vec<String> {
    flag_names(mask, PROTOCOL_NAMES)
}

/// Name of a SETSYMLIST stage index.
#[must_use]
pub fn stage_name(index: u32) -> String {
    match index {
        stage::CONNECT => "connect".into(),
        stage::HELO => "helo".into(),
        stage::MAIL => "mail".into(),
        stage::RCPT => "rcpt".into(),
        stage::DATA => "data".into(),
        stage::END_OF_MESSAGE => "eom".into(),
        stage::END_OF_HEADERS => "eoh".into(),
        other => format!("stage {other}"),
    }
}

fn reply_name(r: &Reply) -> String {
    match r {
        Reply::OptNeg { .. } => "optneg".into(),
        Reply::Accept => "accept".into(),
        Reply::Continue => "continue".into(),
        Reply::Reject => "reject".into(),
        Reply::TempFail => "tempfail".into(),
        Reply::Discard => "discard".into(),
        Reply::Progress => "progress".into(),
        Reply::Skip => "skip".into(),
        Reply::ReplyCode { code, text } => format!("replycode {code} {text}"),
    }
}

struct Probe {
    conn: Stream,
    buf: Vec<u8>,
    decoder: FrameDecoder,
    target: String,
    timeout: Duration,
}

impl Probe {
    fn send(&mut self, bytes: &[u8], during: &'static str) -> Result<(), ProbeError> {
        self.conn
            .write_all(bytes)
            .map_err(|e| self.io_err(e, during))
    }

    fn io_err(&self, source: io::Error, during: &'static str) -> ProbeError {
        let target = self.target.clone();
        if is_timeout(&source) {
            ProbeError::Timeout {
                target,
                during,
                timeout: self.timeout,
            }
        } else if matches!(
            source.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
        ) {
            ProbeError::Closed { target, during }
        } else {
            ProbeError::Io {
                target,
                during,
                source,
            }
        }
    }

    /// Reads one response frame. The number of reads is bounded by the frame
    /// limit (each read adds at least one byte) and each read by the timeout.
    fn read_response(&mut self, during: &'static str) -> Result<Response, ProbeError> {
        loop {
            match self.decoder.decode(&self.buf) {
                Ok(Some((frame, used))) => {
                    let resp = Response::decode(frame).map_err(|e| ProbeError::BadReply {
                        target: self.target.clone(),
                        why: format!("{e} {during}"),
                    });
                    self.buf.drain(..used);
                    return resp;
                }
                Ok(None) => {}
                Err(e @ (FrameError::TooLarge { .. } | FrameError::Empty)) => {
                    return Err(ProbeError::BadReply {
                        target: self.target.clone(),
                        why: format!("{e} {during}"),
                    })
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .conn
                .read(&mut chunk)
                .map_err(|e| self.io_err(e, during))?;
            if n == 0 {
                return Err(ProbeError::Closed {
                    target: self.target.clone(),
                    during,
                });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn bad(&self, why: String) -> ProbeError {
        ProbeError::BadReply {
            target: self.target.clone(),
            why,
        }
    }
}

/// Runs the probe against `target`.
///
/// # Errors
/// [`ProbeError`]: connection refused, timeout, connection closed, or a reply
/// Postfix would refuse.
pub fn run(target: &Target, timeout: Duration) -> Result<Report, ProbeError> {
    let name = target.to_string();
    let t0 = Instant::now();
    let conn = Stream::connect_bounded(target, timeout).map_err(|source| ProbeError::Connect {
        target: name.clone(),
        source,
    })?;
    let connect_us = micros(t0.elapsed());
    let mut p = Probe {
        conn,
        buf: Vec::new(),
        decoder: FrameDecoder::new(REPLY_FRAME_BYTES_MAX),
        target: name.clone(),
        timeout,
    };

    let mut out = Vec::new();
    Command::OptNeg {
        version: milter::VERSION,
        actions: actions::ALL,
        protocol: protocol::ALL,
    }
    .encode(&mut out);
    let t1 = Instant::now();
    p.send(&out, "sending OPTNEG")?;
    let resp = p.read_response("after OPTNEG")?;
    let optneg_rtt_us = micros(t1.elapsed());
    let (version, acts, proto, symlists) = match resp {
        Response::Reply(Reply::OptNeg {
            version,
            actions,
            protocol,
            symlists,
        }) => (version, actions, protocol, symlists),
        other => return Err(p.bad(format!("expected OPTNEG ('O') after OPTNEG, got {other:?}"))),
    };
    if !(2..=milter::VERSION).contains(&version) {
        return Err(p.bad(format!(
            "protocol version {version} conflicts with the MTA's version {} (Postfix drops the milter)",
            milter::VERSION
        )));
    }
    if acts & !actions::ALL != 0 {
        return Err(p.bad(format!(
            "actions 0x{acts:x} include 0x{:x}, which Postfix did not offer (0x{:x}); Postfix drops the milter",
            acts & !actions::ALL,
            actions::ALL
        )));
    }
    let mut warnings = Vec::new();
    if proto & !protocol::ALL != 0 {
        warnings.push(format!(
            "protocol flags 0x{proto:x} include 0x{:x}, which Postfix did not offer",
            proto & !protocol::ALL
        ));
    }
    if !symlists.is_empty() && acts & actions::SET_SYMLIST == 0 {
        warnings
            .push("symbol lists sent without the SETSYMLIST action; Postfix ignores them".into());
    }

    // CONNECT, preceded by its macros as Postfix does (even under NOCONNECT).
    out.clear();
    let mut pairs = Vec::new();
    for (k, v) in [
        ("j", "mbctl.localhost"),
        ("{daemon_name}", "mbctl"),
        ("v", concat!("mbctl ", env!("CARGO_PKG_VERSION"))),
        ("_", "mbctl-test-socket [127.0.0.1]"),
    ] {
        pairs.extend_from_slice(k.as_bytes());
        pairs.push(0);
        pairs.extend_from_slice(v.as_bytes());
        pairs.push(0);
    }
    Command::Macro {
        stage: milter::cmd::CONNECT,
        pairs: &pairs,
    }
    .encode(&mut out);
    let connect = if proto & protocol::NO_CONNECT != 0 {
        p.send(&out, "sending CONNECT macros")?;
        ConnectOutcome::NotSent
    } else {
        Command::Connect {
            hostname: PROBE_HOSTNAME.as_bytes(),
            family: Family::Inet,
            port: 0,
            address: b"127.0.0.1",
        }
        .encode(&mut out);
        let t2 = Instant::now();
        p.send(&out, "sending CONNECT")?;
        if proto & protocol::NR_CONNECT != 0 {
            ConnectOutcome::NoReply
        } else {
            // Progress keeps the MTA waiting; bound how many we tolerate.
            let mut reply = None;
            for _ in 0..1_000 {
                match p.read_response("after CONNECT")? {
                    Response::Reply(Reply::Progress) => continue,
                    Response::Reply(r @ Reply::OptNeg { .. })
                    | Response::Reply(r @ Reply::Skip) => {
                        return Err(p.bad(format!(
                            "{} is not a valid reply to CONNECT",
                            reply_name(&r)
                        )))
                    }
                    Response::Reply(r) => {
                        reply = Some(r);
                        break;
                    }
                    Response::Modification(m) => {
                        return Err(p.bad(format!(
                            "modification {m:?} after CONNECT (only allowed at end of message)"
                        )))
                    }
                }
            }
            let Some(r) = reply else {
                return Err(p.bad("more than 1000 PROGRESS replies to CONNECT".into()));
            };
            ConnectOutcome::Replied {
                reply: reply_name(&r),
                rtt_us: micros(t2.elapsed()),
            }
        }
    };

    out.clear();
    Command::Quit.encode(&mut out);
    p.send(&out, "sending QUIT")?;

    Ok(Report {
        target: name,
        connect_us,
        optneg_rtt_us,
        version,
        actions: acts,
        action_names: action_names(acts),
        protocol: proto,
        protocol_names: protocol_names(proto),
        symlists: symlists
            .into_iter()
            .map(|(s, m)| (stage_name(s), m))
            .collect(),
        connect,
        warnings,
    })
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The human rendering of a [`Report`].
#[must_use]
pub fn render(r: &Report) -> String {
    use crate::table::format_micros;
    let names = |v: &[String]| {
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v.join(" ")
        }
    };
    let mut s = String::new();
    s.push_str(&format!("milter:    {}\n", r.target));
    s.push_str(&format!("connect:   {}\n", format_micros(r.connect_us)));
    s.push_str(&format!(
        "optneg:    {} round trip\n",
        format_micros(r.optneg_rtt_us)
    ));
    s.push_str(&format!("version:   {}\n", r.version));
    s.push_str(&format!(
        "actions:   0x{:03x} {}\n",
        r.actions,
        names(&r.action_names)
    ));
    s.push_str(&format!(
        "protocol:  0x{:06x} {}\n",
        r.protocol,
        names(&r.protocol_names)
    ));
    if r.symlists.is_empty() {
        s.push_str("macros:    (Postfix defaults; no SETSYMLIST)\n");
    } else {
        for (stage, macros) in &r.symlists {
            s.push_str(&format!("macros:    {stage}: {macros}\n"));
        }
    }
    match &r.connect {
        ConnectOutcome::NotSent => s.push_str("CONNECT:   not sent (filter set NOCONNECT)\n"),
        ConnectOutcome::NoReply => s.push_str("CONNECT:   sent, no reply expected (NR_CONN)\n"),
        ConnectOutcome::Replied { reply, rtt_us } => {
            s.push_str(&format!(
                "CONNECT:   {reply} ({} round trip)\n",
                format_micros(*rtt_us)
            ));
        }
    }
    for w in &r.warnings {
        s.push_str(&format!("warning:   {w}\n"));
    }
    s.push_str("QUIT:      sent\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::os::unix::net::UnixStream;
    use std::path::PathBuf;
    use std::thread;

    #[test]
    fn names_flags() {
        assert_eq!(action_names(0x1FF).len(), 9);
        assert_eq!(action_names(0x201), ["ADDHDRS", "0x200"]);
        assert_eq!(
            protocol_names(protocol::NR_CONNECT | protocol::NO_DATA),
            ["NODATA", "NR_CONN"]
        );
        assert_eq!(protocol_names(protocol::ALL).len(), 21);
        assert_eq!(stage_name(stage::END_OF_HEADERS), "eoh");
    }

    /// A fixed OPTNEG reply: version 6, actions ADDHDRS|QUARANTINE, protocol
    /// `proto`, and one SETSYMLIST entry for the MAIL stage.
    fn optneg_frame(proto: u32) -> Vec<u8> {
        let mut payload = Vec::new();
        payload.extend_from_slice(&6u32.to_be_bytes());
        payload.extend_from_slice(&0x21u32.to_be_bytes());
        payload.extend_from_slice(&proto.to_be_bytes());
        payload.extend_from_slice(&2u32.to_be_bytes());
        payload.extend_from_slice(b"{mail_addr} i\0");
        let mut f = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
        f.push(b'O');
        f.extend_from_slice(&payload);
        f
    }

    fn read_frame(s: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).ok()?;
        Some((body[0], body[1..].to_vec()))
    }

    /// A tiny milter: answers OPTNEG with a fixed frame, CONNECT with 'c'
    /// unless NR_CONN, and records every command byte it saw until QUIT/EOF.
    fn tiny_milter(name: &str, proto: u32) -> (PathBuf, thread::JoinHandle<Vec<u8>>) {
        let dir = std::env::temp_dir().join(format!("mbctl-ts-{}-{name}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("milter.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let h = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut seen = Vec::new();
            let mut n = 0;
            while let Some((code, payload)) = read_frame(&mut s) {
                n += 1;
                assert!(n < 100, "too many frames");
                seen.push(code);
                match code {
                    b'O' => {
                        assert_eq!(payload, [0, 0, 0, 6, 0, 0, 1, 0xFF, 0, 0x1F, 0xFF, 0xFF]);
                        s.write_all(&optneg_frame(proto)).unwrap();
                    }
                    b'C' if proto & protocol::NR_CONNECT == 0 => {
                        assert!(payload.starts_with(b"mbctl-test-socket\0"));
                        s.write_all(&[0, 0, 0, 1, b'p', 0, 0, 0, 1, b'c']).unwrap();
                    }
                    b'Q' => break,
                    _ => {}
                }
            }
            seen
        });
        (path, h)
    }

    #[test]
    fn probes_tiny_milter_with_connect_reply() {
        let (path, h) = tiny_milter("reply", 0);
        let r = run(&Target::Unix(path), Duration::from_secs(5)).unwrap();
        assert_eq!(h.join().unwrap(), b"ODCQ");
        assert_eq!(r.version, 6);
        assert_eq!(r.actions, 0x21);
        assert_eq!(r.action_names, ["ADDHDRS", "QUARANTINE"]);
        assert_eq!(
            r.symlists,
            [("mail".to_string(), "{mail_addr} i".to_string())]
        );
        assert!(matches!(&r.connect, ConnectOutcome::Replied { reply, .. } if reply == "continue"));
        let text = render(&r);
        assert!(
            text.contains("actions:   0x021 ADDHDRS QUARANTINE"),
            "{text}"
        );
        assert!(text.contains("CONNECT:   continue"), "{text}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["connect"]["outcome"], "replied");
    }

    #[test]
    fn honours_nr_conn_and_noconnect() {
        let (path, h) = tiny_milter("nr", protocol::NR_CONNECT);
        let r = run(&Target::Unix(path), Duration::from_secs(5)).unwrap();
        assert_eq!(h.join().unwrap(), b"ODCQ");
        assert_eq!(r.connect, ConnectOutcome::NoReply);

        let (path, h) = tiny_milter("no", protocol::NO_CONNECT);
        let r = run(&Target::Unix(path), Duration::from_secs(5)).unwrap();
        assert_eq!(h.join().unwrap(), b"ODQ");
        assert_eq!(r.connect, ConnectOutcome::NotSent);
    }

    #[test]
    fn refuses_actions_beyond_offer() {
        let dir = std::env::temp_dir().join(format!("mbctl-ts-{}-bad", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("milter.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let h = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _ = read_frame(&mut s);
            let mut f = vec![0, 0, 0, 13, b'O'];
            f.extend_from_slice(&6u32.to_be_bytes());
            f.extend_from_slice(&0x3FFu32.to_be_bytes());
            f.extend_from_slice(&0u32.to_be_bytes());
            s.write_all(&f).unwrap();
        });
        let err = run(&Target::Unix(path), Duration::from_secs(5)).unwrap_err();
        h.join().unwrap();
        assert!(
            err.to_string()
                .contains("0x200, which Postfix did not offer"),
            "{err}"
        );
    }

    #[test]
    fn refused_and_silent_filters_fail_clearly() {
        let dir = std::env::temp_dir().join(format!("mbctl-ts-{}-gone", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("none.sock");
        let _ = std::fs::remove_file(&path);
        let err = run(&Target::Unix(path.clone()), Duration::from_secs(1)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot connect to milter unix:"),
            "{err}"
        );

        let listener = UnixListener::bind(&path).unwrap();
        let h = thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            thread::sleep(Duration::from_millis(500));
            drop(s);
        });
        let err = run(&Target::Unix(path), Duration::from_millis(150)).unwrap_err();
        assert!(matches!(err, ProbeError::Timeout { .. }), "{err}");
        h.join().unwrap();

        // Closed connection on TCP loopback: listener accepts and drops.
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let h = thread::spawn(move || {
            let (s, _) = tcp.accept().unwrap();
            drop(s);
        });
        let err = run(&Target::Inet(addr.to_string()), Duration::from_secs(2)).unwrap_err();
        h.join().unwrap();
        assert!(
            matches!(err, ProbeError::Closed { .. } | ProbeError::Io { .. }),
            "{err}"
        );
    }
}
