//! Control-socket transport: one request line out, one response line back.
//!
//! The wire format is [`mb_engine::ctl_api`]'s: one JSON object per line over the
//! control unix socket.
//!
//! ```text
//! → {"cmd":"status"}\n
//! ← {"ok":{"status":{...}}}\n        or   {"error":"..."}\n
//! ```
//!
//! Invariants and limits:
//! - every blocking step (connect, write, read) is bounded by the caller's
//!   timeout, so `mbctl` never hangs on a stuck daemon;
//! - a response line is read through a `take(CTL_LINE_BYTES_MAX + 1)` window, so
//!   a runaway peer cannot make us buffer more than that.
//!
//! Socket resolution (first that applies): `--socket PATH`, `$MBCTL_SOCKET`, the
//! first existing of [`default_socket_candidates`], else the first candidate (so
//! the error message names the path `mbd` uses by default).

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mb_engine::ctl_api::{self, Answer, Request, Response};
use mb_engine::limits::CTL_LINE_BYTES_MAX;

/// Environment variable naming the control socket (below `--socket`).
pub const SOCKET_ENV: &str = "MBCTL_SOCKET";

/// Where `mbd` puts its control socket when `/run/mailborder` is writable.
pub const SYSTEM_SOCKET: &str = "/run/mailborder/mbd.ctl";

/// The default socket locations, in the order `mbd` itself tries its state
/// directory (`config::DaemonConfig::state_dir`).
#[must_use]
pub fn default_socket_candidates() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from(SYSTEM_SOCKET)];
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        out.push(PathBuf::from(xdg).join("mailborder").join("mbd.ctl"));
    }
    out.push(PathBuf::from("./state/mbd.ctl"));
    out
}

/// Picks the control socket: explicit path, then `$MBCTL_SOCKET`, then the
/// first existing default, then [`SYSTEM_SOCKET`].
#[must_use]
pub fn resolve_socket(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(env) = std::env::var_os(SOCKET_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(env);
    }
    let candidates = default_socket_candidates();
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| PathBuf::from(SYSTEM_SOCKET))
}

/// The text of an I/O error without Rust's " (os error N)" suffix, so messages
/// read like the C tools' (`No such file or directory`).
#[must_use]
pub fn io_text(err: &io::Error) -> String {
    let s = err.to_string();
    match s.rfind(" (os error ") {
        Some(at) if s.ends_with(')') => s[..at].to_string(),
        _ => s,
    }
}

/// True for the error kinds a socket timeout produces (`EAGAIN` on Linux).
#[must_use]
pub fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Why a control request failed.
#[derive(Debug)]
pub enum ClientError {
    /// The socket could not be reached.
    Connect {
        /// Control socket path.
        path: PathBuf,
        /// The connect error.
        source: io::Error,
    },
    /// A read or write did not finish within the timeout.
    Timeout {
        /// Control socket path.
        path: PathBuf,
        /// "sending the request" or "waiting for the answer".
        during: &'static str,
        /// The timeout in force.
        timeout: Duration,
    },
    /// Other I/O failure after connecting.
    Io {
        /// Control socket path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The daemon closed the connection before a full line.
    Closed {
        /// Control socket path.
        path: PathBuf,
    },
    /// The answer exceeded `CTL_LINE_BYTES_MAX`.
    TooLong {
        /// Control socket path.
        path: PathBuf,
    },
    /// The answer was not the JSON we expect (version skew between mbctl and mbd?).
    BadResponse {
        /// Control socket path.
        path: PathBuf,
        /// What failed to parse, or which answer came back instead.
        why: String,
    },
    /// The daemon answered with an error.
    Daemon(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect { path, source } => write!(
                f,
                "cannot connect to control socket {}: {} (is mbd running? use --socket)",
                path.display(),
                io_text(source)
            ),
            Self::Timeout {
                path,
                during,
                timeout,
            } => write!(
                f,
                "control socket {}: timed out after {} {during} (raise --timeout)",
                path.display(),
                crate::table::format_duration(*timeout)
            ),
            Self::Io { path, source } => {
                write!(f, "control socket {}: {}", path.display(), io_text(source))
            }
            Self::Closed { path } => write!(
                f,
                "control socket {}: mbd closed the connection without answering",
                path.display()
            ),
            Self::TooLong { path } => write!(
                f,
                "control socket {}: answer longer than {CTL_LINE_BYTES_MAX} bytes",
                path.display()
            ),
            Self::BadResponse { path, why } => write!(
                f,
                "control socket {}: unexpected answer ({why}); are mbctl and mbd the same version?",
                path.display()
            ),
            Self::Daemon(msg) => write!(f, "mbd: {msg}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A control-socket client bound to one path and timeout.
#[derive(Debug, Clone)]
pub struct Client {
    path: PathBuf,
    timeout: Duration,
}

impl Client {
    /// A client for the socket at `path`; `timeout` bounds connect, write and read.
    #[must_use]
    pub fn new(path: PathBuf, timeout: Duration) -> Self {
        Self { path, timeout }
    }

    /// Sends one request and returns the daemon's successful answer.
    ///
    /// # Errors
    /// [`ClientError`] for transport failures, malformed answers and daemon-side
    /// errors (`{"error": ...}`).
    pub fn request(&self, req: &Request) -> Result<Answer, ClientError> {
        let path = self.path.clone();
        let stream = mbctl::endpoint::connect_unix(&self.path, self.timeout).map_err(|source| {
            ClientError::Connect {
                path: path.clone(),
                source,
            }
        })?;
        let io_err = |source: io::Error, during: &'static str| {
            if is_timeout(&source) {
                ClientError::Timeout {
                    path: path.clone(),
                    during,
                    timeout: self.timeout,
                }
            } else {
                ClientError::Io {
                    path: path.clone(),
                    source,
                }
            }
        };
        stream
            .set_read_timeout(Some(self.timeout))
            .map_err(|e| io_err(e, "configuring"))?;
        stream
            .set_write_timeout(Some(self.timeout))
            .map_err(|e| io_err(e, "configuring"))?;

        let line = ctl_api::to_line(req).map_err(|e| ClientError::BadResponse {
            path: path.clone(),
            why: e.to_string(),
        })?;
        (&stream)
            .write_all(&line)
            .map_err(|e| io_err(e, "sending the request"))?;

        let answer = read_line(&stream, CTL_LINE_BYTES_MAX).map_err(|e| match e {
            LineError::Io(e) => io_err(e, "waiting for the answer"),
            LineError::Closed => ClientError::Closed { path: path.clone() },
            LineError::TooLong => ClientError::TooLong { path: path.clone() },
        })?;
        match ctl_api::from_line::<Response>(&answer) {
            Ok(Response::Ok(a)) => Ok(a),
            Ok(Response::Error(msg)) => Err(ClientError::Daemon(msg)),
            Err(e) => Err(ClientError::BadResponse {
                path,
                why: e.to_string(),
            }),
        }
    }
}

/// Why [`read_line`] returned no line.
#[derive(Debug)]
pub enum LineError {
    /// Transport error (including timeouts).
    Io(io::Error),
    /// EOF before a newline.
    Closed,
    /// More than `max` bytes without a newline.
    TooLong,
}

/// Reads one `\n`-terminated line of at most `max` bytes (newline excluded).
///
/// # Errors
/// [`LineError`].
pub fn read_line(stream: impl Read, max: usize) -> Result<Vec<u8>, LineError> {
    let mut reader = BufReader::new(stream.take(max as u64 + 1));
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).map_err(LineError::Io)?;
    if line.last() == Some(&b'\n') {
        line.pop();
        return Ok(line);
    }
    if line.len() > max {
        Err(LineError::TooLong)
    } else {
        Err(LineError::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mb_engine::ctl_api::DaemonStatus;
    use std::os::unix::net::UnixListener;
    use std::thread;

    fn temp_socket(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mbctl-test-{}-{name}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join("mbd.ctl");
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn io_text_strips_os_error_suffix() {
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(io_text(&e), "No such file or directory");
        let e = io::Error::other("plain");
        assert_eq!(io_text(&e), "plain");
    }

    #[test]
    fn read_line_is_bounded() {
        assert_eq!(read_line(&b"abc\nrest"[..], 10).unwrap(), b"abc");
        assert!(matches!(read_line(&b"abc"[..], 10), Err(LineError::Closed)));
        assert!(matches!(
            read_line(&b"0123456789ab\n"[..], 10),
            Err(LineError::TooLong)
        ));
        assert_eq!(read_line(&b"0123456789\n"[..], 10).unwrap(), b"0123456789");
    }

    #[test]
    fn missing_socket_names_path_and_hint() {
        let p = temp_socket("missing");
        let err = Client::new(p.clone(), Duration::from_secs(1))
            .request(&Request::Status)
            .unwrap_err();
        let text = err.to_string();
        assert_eq!(
            text,
            format!(
                "cannot connect to control socket {}: No such file or directory (is mbd running? use --socket)",
                p.display()
            )
        );
    }

    #[test]
    fn request_round_trip_against_fake_daemon() {
        let p = temp_socket("fake");
        let listener = UnixListener::bind(&p).unwrap();
        let server = thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let line = read_line(&s, 1024).unwrap();
            assert_eq!(line, b"{\"cmd\":\"status\"}");
            let st = DaemonStatus {
                version: "0.1.0".into(),
                pid: 7,
                uptime_secs: 3723,
                config_path: None,
                config_generation: 1,
                last_reload_error: None,
                listeners: vec!["unix:/run/mailborder/mb-milter.sock".into()],
                control_socket: "/run/mailborder/mbd.ctl".into(),
                shards: 2,
                connections: 0,
                messages: 0,
                rss_bytes: 1 << 20,
                draining: false,
                cluster: None,
            };
            let out = ctl_api::to_line(&Response::Ok(Answer::Status(st))).unwrap();
            (&s).write_all(&out).unwrap();
        });
        let a = Client::new(p, Duration::from_secs(5))
            .request(&Request::Status)
            .unwrap();
        server.join().unwrap();
        match a {
            Answer::Status(st) => assert_eq!(st.pid, 7),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn silent_daemon_times_out() {
        let p = temp_socket("silent");
        let listener = UnixListener::bind(&p).unwrap();
        let server = thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            thread::sleep(Duration::from_millis(600));
            drop(s);
        });
        let err = Client::new(p, Duration::from_millis(200))
            .request(&Request::Shards)
            .unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn daemon_error_is_reported() {
        let p = temp_socket("error");
        let listener = UnixListener::bind(&p).unwrap();
        let server = thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let _ = read_line(&s, 1024).unwrap();
            (&s).write_all(b"{\"error\":\"reload already running\"}\n")
                .unwrap();
        });
        let err = Client::new(p, Duration::from_secs(5))
            .request(&Request::Reload)
            .unwrap_err();
        server.join().unwrap();
        assert_eq!(err.to_string(), "mbd: reload already running");
    }
}
