//! Milter endpoints: parse a socket spec and connect with timeouts.
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
use std::path::PathBuf;
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

/// Parses a socket spec (see the module doc).
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
    if let Some((port, host)) = rest.split_once('@') {
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad());
        }
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        return Ok(Target::Inet(format!("{host}:{port}")));
    }
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(bad());
    }
    Ok(Target::Inet(format!("{host}:{port}")))
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
        let s = match target {
            Target::Unix(p) => Self::Unix(UnixStream::connect(p)?),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let u = |p: &str| Ok(Target::Unix(PathBuf::from(p)));
        let i = |hp: &str| Ok(Target::Inet(hp.to_string()));
        assert_eq!(parse("unix:/run/x.sock"), u("/run/x.sock"));
        assert_eq!(parse("/run/x.sock"), u("/run/x.sock"));
        assert_eq!(parse("inet:127.0.0.1:8891"), i("127.0.0.1:8891"));
        assert_eq!(parse("127.0.0.1:8891"), i("127.0.0.1:8891"));
        assert_eq!(parse("inet:8891@127.0.0.1"), i("127.0.0.1:8891"));
        assert_eq!(parse("inet6:[::1]:8891"), i("[::1]:8891"));
        for bad in ["", "unix:", "inet:host", "inet:h:70000", "::1:25", "word"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Target::Inet("h:1".into()).to_string(), "inet:h:1");
    }
}
