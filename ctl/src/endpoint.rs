//! Milter endpoints: parse a socket spec and connect with timeouts. Shared by
//! `mbctl test-socket` and the load generator (`mb-bench`), so both accept
//! the same spellings.
//!
//! Accepted specs (Postfix `smtpd_milters` and libmilter spellings):
//!
//! ```text
//! unix:/path   local:/path   /path   ./path
//! inet:host:port   inet:port@host   inet6:[::1]:port   host:port
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Where the filter listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A unix socket path.
    Unix(PathBuf),
    /// `host:port` (host may be a name, an IPv4 address or `[v6]`).
    Inet(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Inet(hp) => write!(f, "inet:{hp}"),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse(s)
    }
}

/// Parses `unix:/path`, `local:/path`, `/path`, `inet:host:port`,
/// `inet:port@host` (libmilter's spelling), `inet6:[::1]:port` or `host:port`.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse(spec: &str) -> Result<Target, String> {
    let bad = || {
        format!(
            "cannot parse socket spec {spec:?}: use unix:/path, /path, inet:host:port or host:port"
        )
    };
    let spec = spec.trim();
    if let Some(path) = spec
        .strip_prefix("unix:")
        .or_else(|| spec.strip_prefix("local:"))
    {
        if path.is_empty() {
            return Err(bad());
        }
        return Ok(Target::Unix(PathBuf::from(path)));
    }
    if spec.starts_with('/') || spec.starts_with("./") || spec.starts_with("../") {
        return Ok(Target::Unix(PathBuf::from(spec)));
    }
    let rest = spec
        .strip_prefix("inet:")
        .or_else(|| spec.strip_prefix("inet6:"))
        .or_else(|| spec.strip_prefix("tcp:"))
        .unwrap_or(spec);
    // libmilter: inet:PORT@HOST.
    if let Some((port, host)) = rest.split_once('@') {
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad());
        }
        return Ok(Target::Inet(join_host_port(host, port)));
    }
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        // A bare IPv6 address needs brackets to tell the port apart.
        return Err(bad());
    }
    Ok(Target::Inet(format!("{host}:{port}")))
}

fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A connected, blocking socket with read and write timeouts.
#[derive(Debug)]
pub enum Stream {
    /// Unix domain socket.
    Unix(UnixStream),
    /// TCP (Nagle off, like Postfix's milter client).
    Tcp(TcpStream),
}

impl Stream {
    /// Connects to `target`; `timeout` bounds the TCP connect and every later
    /// read and write. A unix connect only blocks while the listener's backlog
    /// is full; the load generator's stall watchdog bounds that case.
    ///
    /// # Errors
    /// The connect or socket-option error.
    pub fn connect(target: &Target, timeout: Duration) -> io::Result<Self> {
        Self::open(target, timeout, |p| UnixStream::connect(p))
    }

    /// Like [`Stream::connect`], but a unix connect is bounded by `timeout`
    /// too (it runs on a helper thread: std has no unix `connect_timeout`).
    /// For one-off probes such as `mbctl test-socket`, not for load.
    ///
    /// # Errors
    /// The connect or socket-option error, or `TimedOut`.
    pub fn connect_bounded(target: &Target, timeout: Duration) -> io::Result<Self> {
        Self::open(target, timeout, |p| connect_unix(p, timeout))
    }

    fn open(
        target: &Target,
        timeout: Duration,
        unix: impl FnOnce(&Path) -> io::Result<UnixStream>,
    ) -> io::Result<Self> {
        let s = match target {
            Target::Unix(p) => Self::Unix(unix(p)?),
            Target::Inet(hp) => {
                let mut last = None;
                let mut found = None;
                for addr in hp.to_socket_addrs()? {
                    match TcpStream::connect_timeout(&addr, timeout) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let s = match found {
                    Some(s) => s,
                    None => {
                        return Err(last.unwrap_or_else(|| {
                            io::Error::new(io::ErrorKind::NotFound, "host name has no address")
                        }))
                    }
                };
                s.set_nodelay(true)?;
                Self::Tcp(s)
            }
        };
        match &s {
            Self::Unix(u) => {
                u.set_read_timeout(Some(timeout))?;
                u.set_write_timeout(Some(timeout))?;
            }
            Self::Tcp(t) => {
                t.set_read_timeout(Some(timeout))?;
                t.set_write_timeout(Some(timeout))?;
            }
        }
        Ok(s)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Unix(s) => s.read(buf),
            Self::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Unix(s) => s.write(buf),
            Self::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Connects to a unix socket, giving up after `timeout`.
///
/// std has no unix `connect_timeout`; a blocking connect only blocks when the
/// listener's backlog is full, so the connect runs on a helper thread and we
/// stop waiting for it after `timeout`. A helper that is still blocked is left
/// behind; it ends when the connect does or when the process exits.
///
/// # Errors
/// The connect error, or `TimedOut`.
pub fn connect_unix(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let (tx, rx) = mpsc::channel();
    let owned = path.to_path_buf();
    thread::Builder::new()
        .name("mbctl-connect".into())
        .spawn(move || {
            // The receiver may be gone after a timeout; nothing to do then.
            let _ = tx.send(UnixStream::connect(&owned));
        })?;
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "connect did not complete within {}",
                format_args!("{timeout:?}")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let u = |p: &str| Ok(Target::Unix(PathBuf::from(p)));
        let i = |hp: &str| Ok(Target::Inet(hp.to_string()));
        assert_eq!(parse("unix:/run/x.sock"), u("/run/x.sock"));
        assert_eq!(parse("local:/run/x.sock"), u("/run/x.sock"));
        assert_eq!(parse("/run/x.sock"), u("/run/x.sock"));
        assert_eq!(parse("./state/m.sock"), u("./state/m.sock"));
        assert_eq!(parse("inet:127.0.0.1:8891"), i("127.0.0.1:8891"));
        assert_eq!(parse("inet:localhost:8891"), i("localhost:8891"));
        assert_eq!(parse("127.0.0.1:8891"), i("127.0.0.1:8891"));
        assert_eq!(parse("inet:8891@127.0.0.1"), i("127.0.0.1:8891"));
        assert_eq!(parse("inet6:[::1]:8891"), i("[::1]:8891"));
        assert_eq!(parse("inet6:8891@::1"), i("[::1]:8891"));
        for bad in [
            "",
            "unix:",
            "inet:",
            "inet:host",
            "host:port",
            "inet:h:99999",
            "::1:25",
            "x",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("unix:/path"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn displays_as_a_postfix_spec() {
        assert_eq!(Target::Inet("h:1".into()).to_string(), "inet:h:1");
        assert_eq!(Target::Unix("/a".into()).to_string(), "unix:/a");
    }

    #[test]
    fn bounded_unix_connect_reports_a_missing_socket() {
        let err = Stream::connect_bounded(
            &Target::Unix(PathBuf::from("/nonexistent/mb.sock")),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
